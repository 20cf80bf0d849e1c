//! The embedded SQLite job queue (the default backend): one database file under the data
//! directory, written with `synchronous=FULL` so that an accepted job survives a crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{Error, Result};
use crate::job::{JobError, JobRecord, JobStatus, WebhookEvent};
use crate::store::{
    BatchRecord, Created, DeliveryOutcome, EndWebhook, JobStore, Lease, NewDelivery, NewJob,
    Outcome, WebhookDelivery,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    model TEXT NOT NULL,
    priority INTEGER NOT NULL,
    request TEXT NOT NULL,
    resolved TEXT NOT NULL,
    webhook TEXT,
    webhook_events TEXT NOT NULL,
    batch_id TEXT,
    idempotency_key TEXT UNIQUE,
    request_digest TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    timings TEXT
);
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (status, priority DESC, seq);
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    webhook TEXT,
    notified INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS webhooks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_due ON webhooks (state, next_at);
";

const COLUMNS: &str = "id, status, model, priority, request, resolved, webhook, webhook_events, \
    batch_id, created_at, started_at, completed_at, attempts, step, total_steps, progress, \
    error_code, error_message, timings, cancel_requested";

/// A [`JobStore`] in one SQLite file.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// A row as read, before its JSON columns are decoded.
struct RawJob {
    id: String,
    status: String,
    model: String,
    priority: i32,
    request: String,
    resolved: String,
    webhook: Option<String>,
    webhook_events: String,
    batch_id: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    attempts: u32,
    step: u32,
    total_steps: u32,
    progress: u32,
    error_code: Option<String>,
    error_message: Option<String>,
    timings: Option<String>,
    cancel_requested: bool,
}

fn raw_job(row: &Row<'_>) -> rusqlite::Result<RawJob> {
    Ok(RawJob {
        id: row.get(0)?,
        status: row.get(1)?,
        model: row.get(2)?,
        priority: row.get(3)?,
        request: row.get(4)?,
        resolved: row.get(5)?,
        webhook: row.get(6)?,
        webhook_events: row.get(7)?,
        batch_id: row.get(8)?,
        created_at: row.get(9)?,
        started_at: row.get(10)?,
        completed_at: row.get(11)?,
        attempts: row.get(12)?,
        step: row.get(13)?,
        total_steps: row.get(14)?,
        progress: row.get(15)?,
        error_code: row.get(16)?,
        error_message: row.get(17)?,
        timings: row.get(18)?,
        cancel_requested: row.get(19)?,
    })
}

fn decode<T: serde::de::DeserializeOwned>(id: &str, column: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        what: format!("job {id} column {column}"),
        message: e.to_string(),
    })
}

impl RawJob {
    fn into_record(self) -> Result<JobRecord> {
        let status = JobStatus::parse(&self.status).ok_or_else(|| Error::Corrupt {
            what: format!("job {} status", self.id),
            message: format!("unknown status {:?}", self.status),
        })?;
        let error = match (self.error_code, self.error_message) {
            (Some(code), Some(message)) => Some(JobError { code, message }),
            _ => None,
        };
        let webhook_events: Vec<WebhookEvent> =
            decode(&self.id, "webhook_events", &self.webhook_events)?;
        Ok(JobRecord {
            status,
            model: self.model,
            priority: self.priority,
            request: decode(&self.id, "request", &self.request)?,
            resolved: decode(&self.id, "resolved", &self.resolved)?,
            webhook: self.webhook,
            webhook_events,
            batch_id: self.batch_id,
            created_at: self.created_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
            attempts: self.attempts,
            step: self.step,
            total_steps: self.total_steps,
            progress: self.progress,
            error,
            timings: self
                .timings
                .as_deref()
                .map(|t| decode(&self.id, "timings", t))
                .transpose()?,
            cancel_requested: self.cancel_requested,
            id: self.id,
        })
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Corrupt {
        what: "job field".into(),
        message: e.to_string(),
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the queue database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let store = Self {
            conn: Mutex::new(Connection::open(path).map_err(|e| db_err(path, e))?),
            path: path.to_path_buf(),
        };
        {
            let conn = store.lock();
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .map_err(|e| store.err(e))?;
            conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
                .map_err(|e| store.err(e))?;
            conn.execute_batch(SCHEMA).map_err(|e| store.err(e))?;
        }
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        db_err(&self.path, e)
    }

    /// Queues the delivery `on_end` builds for `rec` when `rec` has ended.
    fn queue_end_webhook(
        &self,
        conn: &Connection,
        rec: &JobRecord,
        on_end: EndWebhook<'_>,
        now: i64,
    ) -> Result<()> {
        if rec.status.is_terminal()
            && let Some(delivery) = on_end(rec)
        {
            insert_delivery(conn, &delivery, now).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn get_locked(&self, conn: &Connection, id: &str) -> Result<Option<JobRecord>> {
        let raw = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                raw_job,
            )
            .optional()
            .map_err(|e| self.err(e))?;
        raw.map(RawJob::into_record).transpose()
    }

    fn insert_locked(&self, conn: &Connection, job: &NewJob, batch: Option<&str>) -> Result<()> {
        let (key, digest) = match &job.idempotency {
            Some((k, d)) => (Some(k.as_str()), Some(d.as_str())),
            None => (None, None),
        };
        conn.execute(
            "INSERT INTO jobs (id, status, model, priority, request, resolved, webhook, \
             webhook_events, batch_id, idempotency_key, request_digest, created_at, total_steps) \
             VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                job.id,
                job.model,
                job.priority,
                to_json(&job.request)?,
                to_json(&job.resolved)?,
                job.webhook,
                to_json(&job.webhook_events)?,
                batch,
                key,
                digest,
                job.created_at,
                job.resolved.steps,
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn query_jobs(
        &self,
        conn: &Connection,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<JobRecord>> {
        let mut stmt = conn.prepare(sql).map_err(|e| self.err(e))?;
        let raws = stmt
            .query_map(args, raw_job)
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        raws.into_iter().map(RawJob::into_record).collect()
    }

    fn batch_locked(&self, conn: &Connection, id: &str) -> Result<Option<BatchRecord>> {
        let head = conn
            .query_row(
                "SELECT created_at, webhook, notified FROM batches WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, bool>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((created_at, webhook, notified)) = head else {
            return Ok(None);
        };
        let mut stmt = conn
            .prepare("SELECT id, status FROM jobs WHERE batch_id = ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        let mut counts: BTreeMap<JobStatus, u64> =
            JobStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        let mut job_ids = Vec::with_capacity(rows.len());
        for (job, status) in rows {
            let status = JobStatus::parse(&status).ok_or_else(|| Error::Corrupt {
                what: format!("job {job} status"),
                message: format!("unknown status {status:?}"),
            })?;
            *counts.entry(status).or_default() += 1;
            job_ids.push(job);
        }
        Ok(Some(BatchRecord {
            id: id.to_string(),
            created_at,
            webhook,
            job_ids,
            counts,
            notified,
        }))
    }
}

fn db_err(path: &Path, source: rusqlite::Error) -> Error {
    Error::Database {
        path: path.display().to_string(),
        source,
    }
}

impl JobStore for SqliteStore {
    fn create(&self, job: NewJob) -> Result<Created> {
        let conn = self.lock();
        if let Some((key, digest)) = &job.idempotency {
            let found = conn
                .query_row(
                    "SELECT id, request_digest FROM jobs WHERE idempotency_key = ?1",
                    params![key],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
                )
                .optional()
                .map_err(|e| self.err(e))?;
            if let Some((id, stored)) = found {
                if stored.as_deref() != Some(digest.as_str()) {
                    return Ok(Created::KeyConflict(id));
                }
                return match self.get_locked(&conn, &id)? {
                    Some(rec) => Ok(Created::Existing(rec)),
                    None => Ok(Created::KeyConflict(id)),
                };
            }
        }
        self.insert_locked(&conn, &job, None)?;
        let rec = self
            .get_locked(&conn, &job.id)?
            .ok_or_else(|| Error::Corrupt {
                what: format!("job {}", job.id),
                message: "not found right after insertion".into(),
            })?;
        Ok(Created::New(rec))
    }

    fn create_batch(
        &self,
        id: &str,
        webhook: Option<&str>,
        jobs: Vec<NewJob>,
        created_at: i64,
    ) -> Result<BatchRecord> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO batches (id, created_at, webhook) VALUES (?1, ?2, ?3)",
            params![id, created_at, webhook],
        )
        .map_err(|e| self.err(e))?;
        for job in &jobs {
            self.insert_locked(&tx, job, Some(id))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        self.batch_locked(&conn, id)?.ok_or_else(|| Error::Corrupt {
            what: format!("batch {id}"),
            message: "not found right after insertion".into(),
        })
    }

    fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        let conn = self.lock();
        self.get_locked(&conn, id)
    }

    fn list(
        &self,
        status: Option<JobStatus>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Option<Vec<JobRecord>>> {
        let conn = self.lock();
        let before = match after {
            Some(after) => {
                let seq = conn
                    .query_row("SELECT seq FROM jobs WHERE id = ?1", params![after], |r| {
                        r.get::<_, i64>(0)
                    })
                    .optional()
                    .map_err(|e| self.err(e))?;
                match seq {
                    Some(seq) => seq,
                    None => return Ok(None),
                }
            }
            None => i64::MAX,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let jobs = match status {
            Some(st) => self.query_jobs(
                &conn,
                &format!(
                    "SELECT {COLUMNS} FROM jobs WHERE seq < ?1 AND status = ?2 \
                     ORDER BY seq DESC LIMIT ?3"
                ),
                &[&before, &st.as_str(), &limit],
            )?,
            None => self.query_jobs(
                &conn,
                &format!("SELECT {COLUMNS} FROM jobs WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2"),
                &[&before, &limit],
            )?,
        };
        Ok(Some(jobs))
    }

    fn claim(&self, worker: &str, now: i64, lease_ms: i64) -> Result<Option<JobRecord>> {
        let conn = self.lock();
        let id = conn
            .query_row(
                "UPDATE jobs SET status = 'in_progress', lease_owner = ?1, lease_until = ?2, \
                 attempts = attempts + 1, started_at = ?3, step = 0, progress = 0 \
                 WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' \
                              ORDER BY priority DESC, seq ASC LIMIT 1) \
                 RETURNING id",
                params![worker, now + lease_ms, now],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match id {
            Some(id) => self.get_locked(&conn, &id),
            None => Ok(None),
        }
    }

    fn heartbeat(&self, id: &str, worker: &str, now: i64, lease_ms: i64) -> Result<Lease> {
        let conn = self.lock();
        let cancel = conn
            .query_row(
                "UPDATE jobs SET lease_until = ?3 \
                 WHERE id = ?1 AND lease_owner = ?2 AND status = 'in_progress' \
                 RETURNING cancel_requested",
                params![id, worker, now + lease_ms],
                |r| r.get::<_, bool>(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(match cancel {
            Some(cancel_requested) => Lease::Held { cancel_requested },
            None => Lease::Lost,
        })
    }

    fn set_progress(
        &self,
        id: &str,
        worker: &str,
        step: u32,
        total: u32,
        progress: u32,
    ) -> Result<()> {
        let conn = self.lock();
        conn.execute(
            "UPDATE jobs SET step = ?3, total_steps = ?4, progress = ?5 \
             WHERE id = ?1 AND lease_owner = ?2 AND status = 'in_progress'",
            params![id, worker, step, total, progress],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn finish(
        &self,
        id: &str,
        worker: &str,
        outcome: Outcome,
        now: i64,
        on_end: EndWebhook<'_>,
    ) -> Result<Option<JobRecord>> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let changed = match outcome {
            Outcome::Completed(timings) => tx.execute(
                "UPDATE jobs SET status = 'completed', completed_at = ?3, progress = 100, \
                 step = total_steps, timings = ?4, lease_owner = NULL, lease_until = NULL \
                 WHERE id = ?1 AND lease_owner = ?2 AND status = 'in_progress'",
                params![id, worker, now, to_json(&timings)?],
            ),
            Outcome::Failed(err) => tx.execute(
                "UPDATE jobs SET status = 'failed', completed_at = ?3, error_code = ?4, \
                 error_message = ?5, lease_owner = NULL, lease_until = NULL \
                 WHERE id = ?1 AND lease_owner = ?2 AND status = 'in_progress'",
                params![id, worker, now, err.code, err.message],
            ),
            Outcome::Cancelled => tx.execute(
                "UPDATE jobs SET status = 'cancelled', completed_at = ?3, \
                 lease_owner = NULL, lease_until = NULL \
                 WHERE id = ?1 AND lease_owner = ?2 AND status = 'in_progress'",
                params![id, worker, now],
            ),
            Outcome::Requeue => tx.execute(
                "UPDATE jobs SET status = 'queued', attempts = MAX(attempts - 1, 0), \
                 started_at = NULL, step = 0, progress = 0, lease_owner = NULL, \
                 lease_until = NULL \
                 WHERE id = ?1 AND lease_owner = ?2 AND status = 'in_progress'",
                params![id, worker],
            ),
        }
        .map_err(|e| self.err(e))?;
        if changed == 0 {
            return Ok(None);
        }
        let rec = self.get_locked(&tx, id)?;
        if let Some(rec) = &rec {
            self.queue_end_webhook(&tx, rec, on_end, now)?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(rec)
    }

    fn cancel(&self, id: &str, now: i64, on_end: EndWebhook<'_>) -> Result<Option<JobRecord>> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let cancelled_queued = tx
            .execute(
                "UPDATE jobs SET status = 'cancelled', completed_at = ?2 \
                 WHERE id = ?1 AND status = 'queued'",
                params![id, now],
            )
            .map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND status = 'in_progress'",
            params![id],
        )
        .map_err(|e| self.err(e))?;
        let rec = self.get_locked(&tx, id)?;
        if let Some(rec) = &rec
            && cancelled_queued == 1
        {
            self.queue_end_webhook(&tx, rec, on_end, now)?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(rec)
    }

    fn delete(&self, id: &str) -> Result<Option<std::result::Result<JobRecord, JobRecord>>> {
        let conn = self.lock();
        let Some(rec) = self.get_locked(&conn, id)? else {
            return Ok(None);
        };
        if rec.status == JobStatus::InProgress {
            return Ok(Some(Err(rec)));
        }
        conn.execute(
            "DELETE FROM jobs WHERE id = ?1 AND status <> 'in_progress'",
            params![id],
        )
        .map_err(|e| self.err(e))?;
        Ok(Some(Ok(rec)))
    }

    fn reap_expired(
        &self,
        now: i64,
        max_attempts: u32,
        on_end: EndWebhook<'_>,
    ) -> Result<Vec<JobRecord>> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let expired = {
            let mut stmt = tx
                .prepare(
                    "SELECT id, attempts FROM jobs \
                     WHERE status = 'in_progress' AND lease_until < ?1",
                )
                .map_err(|e| self.err(e))?;
            stmt.query_map(params![now], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?
        };
        let mut changed = Vec::with_capacity(expired.len());
        for (id, attempts) in &expired {
            if *attempts >= max_attempts {
                tx.execute(
                    "UPDATE jobs SET status = 'failed', completed_at = ?2, \
                     error_code = 'worker_lost', error_message = ?3, \
                     lease_owner = NULL, lease_until = NULL WHERE id = ?1",
                    params![
                        id,
                        now,
                        format!(
                            "the worker running this job stopped without finishing it on each \
                             of {attempts} attempts (retry limit {max_attempts})"
                        )
                    ],
                )
                .map_err(|e| self.err(e))?;
            } else {
                tx.execute(
                    "UPDATE jobs SET status = 'queued', step = 0, progress = 0, \
                     lease_owner = NULL, lease_until = NULL WHERE id = ?1",
                    params![id],
                )
                .map_err(|e| self.err(e))?;
            }
            if let Some(rec) = self.get_locked(&tx, id)? {
                self.queue_end_webhook(&tx, &rec, on_end, now)?;
                changed.push(rec);
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(changed)
    }

    fn expire_all_leases(&self) -> Result<usize> {
        let conn = self.lock();
        conn.execute(
            "UPDATE jobs SET lease_until = -1 WHERE status = 'in_progress'",
            [],
        )
        .map_err(|e| self.err(e))
    }

    fn counts(&self) -> Result<BTreeMap<JobStatus, u64>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        let mut counts: BTreeMap<JobStatus, u64> =
            JobStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        for (status, n) in rows {
            if let Some(st) = JobStatus::parse(&status) {
                counts.insert(st, u64::try_from(n).unwrap_or(0));
            }
        }
        Ok(counts)
    }

    fn batch(&self, id: &str) -> Result<Option<BatchRecord>> {
        let conn = self.lock();
        self.batch_locked(&conn, id)
    }

    fn notify_batch_once(&self, id: &str, delivery: &NewDelivery, now: i64) -> Result<bool> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let n = tx
            .execute(
                "UPDATE batches SET notified = 1 WHERE id = ?1 AND notified = 0",
                params![id],
            )
            .map_err(|e| self.err(e))?;
        if n == 1 {
            insert_delivery(&tx, delivery, now).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn enqueue_webhook(&self, delivery: &NewDelivery, now: i64) -> Result<()> {
        let conn = self.lock();
        insert_delivery(&conn, delivery, now).map_err(|e| self.err(e))
    }

    fn claim_webhooks(
        &self,
        now: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>> {
        let conn = self.lock();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = conn
            .prepare(
                "UPDATE webhooks SET attempts = attempts + 1, next_at = ?2 \
                 WHERE seq IN (SELECT seq FROM webhooks WHERE state = 'pending' AND next_at <= ?1 \
                               ORDER BY next_at, seq LIMIT ?3) \
                 RETURNING seq, msg_id, url, event, body, attempts",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query_map(params![now, now + lease_ms, limit], |r| {
                Ok(WebhookDelivery {
                    seq: r.get(0)?,
                    msg_id: r.get(1)?,
                    url: r.get(2)?,
                    event: r.get(3)?,
                    body: r.get(4)?,
                    attempts: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        rows.sort_by_key(|d| d.seq);
        Ok(rows)
    }

    fn webhook_attempted(
        &self,
        seq: i64,
        outcome: DeliveryOutcome,
        error: Option<&str>,
    ) -> Result<()> {
        let conn = self.lock();
        let (state, next_at) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", None),
            DeliveryOutcome::RetryAt(t) => ("pending", Some(t)),
            DeliveryOutcome::GaveUp => ("failed", None),
        };
        conn.execute(
            "UPDATE webhooks SET state = ?2, next_at = COALESCE(?3, next_at), last_error = ?4 \
             WHERE seq = ?1",
            params![seq, state, next_at, error],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }
}

fn insert_delivery(conn: &Connection, d: &NewDelivery, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO webhooks (msg_id, url, event, body, next_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![d.msg_id, d.url, d.event, d.body, now],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobTimings;
    use wan_pipeline::ResolvedRequest;

    fn resolved(steps: u32) -> ResolvedRequest {
        ResolvedRequest {
            prompt: "a cat".into(),
            negative_prompt: String::new(),
            width: 32,
            height: 32,
            frames: 1,
            steps,
            guidance: 1.0,
            shift: 3.0,
            sampler: "unipc".into(),
            seed: 1,
            fps: 16,
        }
    }

    fn new_job(id: &str, priority: i32, created_at: i64) -> NewJob {
        NewJob {
            id: id.into(),
            model: "m".into(),
            priority,
            request: crate::job::VideoRequest {
                prompt: "a cat".into(),
                ..Default::default()
            },
            resolved: resolved(4),
            webhook: None,
            webhook_events: vec![WebhookEvent::Completed],
            idempotency: None,
            created_at,
        }
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("jobs.sqlite")).expect("open");
        (dir, store)
    }

    #[test]
    fn claims_by_priority_then_age() {
        let (_dir, s) = store();
        s.create(new_job("a", 0, 1)).expect("a");
        s.create(new_job("b", 5, 2)).expect("b");
        s.create(new_job("c", 5, 3)).expect("c");
        let order: Vec<String> = (0..3)
            .map(|_| s.claim("w", 10, 1000).expect("claim").expect("job").id)
            .collect();
        assert_eq!(order, ["b", "c", "a"]);
        assert!(s.claim("w", 10, 1000).expect("claim").is_none());
        let a = s.get("a").expect("get").expect("a");
        assert_eq!(
            (a.status, a.attempts, a.started_at),
            (JobStatus::InProgress, 1, Some(10))
        );
    }

    #[test]
    fn jobs_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.sqlite");
        {
            let s = SqliteStore::open(&path).expect("open");
            s.create(new_job("a", 0, 1)).expect("a");
            s.claim("w", 5, 1000).expect("claim");
        }
        let s = SqliteStore::open(&path).expect("reopen");
        let a = s.get("a").expect("get").expect("a");
        assert_eq!(a.status, JobStatus::InProgress);
        assert_eq!(s.expire_all_leases().expect("expire"), 1);
        let reaped = s.reap_expired(6, 3, &no_hook).expect("reap");
        assert_eq!(reaped[0].status, JobStatus::Queued);
        let again = s.claim("w2", 7, 1000).expect("claim").expect("job");
        assert_eq!((again.id.as_str(), again.attempts), ("a", 2));
    }

    #[test]
    fn expired_lease_requeues_then_fails_at_the_retry_limit() {
        let (_dir, s) = store();
        s.create(new_job("a", 0, 1)).expect("a");
        s.claim("w", 0, 100).expect("claim");
        assert_eq!(
            s.heartbeat("a", "w", 50, 100).expect("hb"),
            Lease::Held {
                cancel_requested: false
            }
        );
        assert!(
            s.reap_expired(120, 2, &no_hook).expect("reap").is_empty(),
            "renewed lease"
        );
        let reaped = s.reap_expired(151, 2, &no_hook).expect("reap");
        assert_eq!(reaped[0].status, JobStatus::Queued);
        assert_eq!(s.heartbeat("a", "w", 152, 100).expect("hb"), Lease::Lost);
        assert!(
            s.finish(
                "a",
                "w",
                Outcome::Completed(JobTimings::default()),
                153,
                &no_hook
            )
            .expect("finish")
            .is_none(),
            "a worker that lost its lease cannot finish the job"
        );
        s.claim("w2", 200, 100).expect("claim").expect("job");
        let reaped = s.reap_expired(301, 2, &no_hook).expect("reap");
        let failed = &reaped[0];
        assert_eq!(failed.status, JobStatus::Failed);
        let err = failed.error.as_ref().expect("reason");
        assert_eq!(err.code, "worker_lost");
        assert!(err.message.contains("2 attempts"), "{}", err.message);
    }

    #[test]
    fn cancel_queued_at_once_and_running_by_flag() {
        let (_dir, s) = store();
        s.create(new_job("a", 0, 1)).expect("a");
        s.create(new_job("b", 0, 2)).expect("b");
        s.claim("w", 3, 1000).expect("claim");
        let b = s.cancel("b", 4, &no_hook).expect("cancel").expect("b");
        assert_eq!(b.status, JobStatus::Cancelled);
        let a = s.cancel("a", 4, &no_hook).expect("cancel").expect("a");
        assert_eq!(
            (a.status, a.cancel_requested),
            (JobStatus::InProgress, true)
        );
        assert_eq!(
            s.heartbeat("a", "w", 5, 1000).expect("hb"),
            Lease::Held {
                cancel_requested: true
            }
        );
        let a = s
            .finish("a", "w", Outcome::Cancelled, 6, &no_hook)
            .expect("finish")
            .expect("a");
        assert_eq!(a.status, JobStatus::Cancelled);
        assert!(s.cancel("zzz", 7, &no_hook).expect("cancel").is_none());
    }

    #[test]
    fn requeue_on_shutdown_does_not_count_the_attempt() {
        let (_dir, s) = store();
        s.create(new_job("a", 0, 1)).expect("a");
        s.claim("w", 2, 1000).expect("claim");
        s.set_progress("a", "w", 2, 4, 45).expect("progress");
        let a = s
            .finish("a", "w", Outcome::Requeue, 3, &no_hook)
            .expect("finish")
            .expect("a");
        assert_eq!((a.status, a.attempts, a.step), (JobStatus::Queued, 0, 0));
    }

    #[test]
    fn idempotency_key_returns_the_same_job_or_a_conflict() {
        let (_dir, s) = store();
        let mut job = new_job("a", 0, 1);
        job.idempotency = Some(("key".into(), "digest".into()));
        assert!(matches!(
            s.create(job.clone()).expect("create"),
            Created::New(_)
        ));
        let mut retry = job.clone();
        retry.id = "b".into();
        match s.create(retry.clone()).expect("retry") {
            Created::Existing(rec) => assert_eq!(rec.id, "a"),
            other => panic!("expected the existing job, got {other:?}"),
        }
        retry.idempotency = Some(("key".into(), "other".into()));
        assert!(matches!(
            s.create(retry).expect("conflict"),
            Created::KeyConflict(id) if id == "a"
        ));
        assert!(s.get("b").expect("get").is_none());
    }

    #[test]
    fn list_is_newest_first_with_cursor_and_status_filter() {
        let (_dir, s) = store();
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            s.create(new_job(id, 0, i as i64)).expect("create");
        }
        s.cancel("c", 9, &no_hook).expect("cancel");
        let ids = |v: Vec<JobRecord>| v.into_iter().map(|j| j.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.list(None, 2, None).expect("list").expect("some")),
            ["d", "c"]
        );
        assert_eq!(
            ids(s.list(None, 2, Some("c")).expect("list").expect("some")),
            ["b", "a"]
        );
        assert_eq!(
            ids(s
                .list(Some(JobStatus::Queued), 10, None)
                .expect("list")
                .expect("some")),
            ["d", "b", "a"]
        );
        assert!(s.list(None, 2, Some("nope")).expect("list").is_none());
        assert_eq!(s.counts().expect("counts")[&JobStatus::Queued], 3);
    }

    #[test]
    fn batch_counts_and_single_notification() {
        let (_dir, s) = store();
        let jobs = vec![new_job("a", 0, 1), new_job("b", 0, 1)];
        let batch = s
            .create_batch("batch_1", Some("http://x"), jobs, 1)
            .expect("batch");
        assert_eq!(batch.job_ids, ["a", "b"]);
        assert!(!batch.is_done());
        s.cancel("a", 2, &no_hook).expect("cancel");
        s.cancel("b", 2, &no_hook).expect("cancel");
        let batch = s.batch("batch_1").expect("batch").expect("some");
        assert!(batch.is_done());
        assert_eq!(batch.counts[&JobStatus::Cancelled], 2);
        let d = delivery("m1");
        assert!(s.notify_batch_once("batch_1", &d, 3).expect("notify"));
        assert!(!s.notify_batch_once("batch_1", &d, 3).expect("notify"));
        assert_eq!(
            s.claim_webhooks(3, 1000, 10).expect("claim").len(),
            1,
            "queued once"
        );
    }

    fn no_hook(_: &JobRecord) -> Option<NewDelivery> {
        None
    }

    fn hook_for_every_end(job: &JobRecord) -> Option<NewDelivery> {
        Some(NewDelivery {
            msg_id: format!("end_{}", job.id),
            event: format!("video.{}", job.status.as_str()),
            ..delivery("unused")
        })
    }

    #[test]
    fn a_job_end_and_its_webhook_are_queued_together() {
        let (_dir, s) = store();
        for id in ["a", "b", "c", "d"] {
            s.create(new_job(id, 0, 1)).expect("create");
        }
        s.claim("w", 2, 100).expect("claim").expect("a");
        s.finish("a", "w", Outcome::Requeue, 3, &hook_for_every_end)
            .expect("requeue");
        s.claim("w", 4, 100).expect("claim").expect("a");
        s.finish(
            "a",
            "w",
            Outcome::Completed(JobTimings::default()),
            5,
            &hook_for_every_end,
        )
        .expect("finish");
        s.cancel("b", 6, &hook_for_every_end)
            .expect("cancel queued");
        s.claim("w", 7, 100).expect("claim").expect("c");
        s.cancel("c", 8, &hook_for_every_end).expect("flag running");
        s.reap_expired(500, 1, &hook_for_every_end).expect("reap");
        let mut events: Vec<(String, String)> = s
            .claim_webhooks(1000, 1000, 10)
            .expect("claim")
            .into_iter()
            .map(|d| (d.msg_id, d.event))
            .collect();
        events.sort();
        let want = [
            ("end_a", "video.completed"),
            ("end_b", "video.cancelled"),
            ("end_c", "video.failed"),
        ];
        assert_eq!(
            events,
            want.map(|(m, e)| (m.to_string(), e.to_string())),
            "one delivery per ended job; none for the requeue, the flag or the queued job d"
        );
    }

    fn delivery(msg_id: &str) -> NewDelivery {
        NewDelivery {
            msg_id: msg_id.into(),
            url: "http://127.0.0.1:9/hook".into(),
            event: "video.completed".into(),
            body: "{}".into(),
        }
    }

    #[test]
    fn webhook_outbox_retries_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.sqlite");
        {
            let s = SqliteStore::open(&path).expect("open");
            s.enqueue_webhook(&delivery("a"), 10).expect("a");
            s.enqueue_webhook(&delivery("b"), 10).expect("b");
            let got = s.claim_webhooks(10, 100, 10).expect("claim");
            assert_eq!(got.iter().map(|d| d.attempts).collect::<Vec<_>>(), [1, 1]);
            assert!(
                s.claim_webhooks(50, 100, 10).expect("claim").is_empty(),
                "held"
            );
            s.webhook_attempted(got[0].seq, DeliveryOutcome::Delivered, None)
                .expect("delivered");
            s.webhook_attempted(got[1].seq, DeliveryOutcome::RetryAt(200), Some("HTTP 500"))
                .expect("retry");
            assert!(
                s.claim_webhooks(150, 100, 10).expect("claim").is_empty(),
                "not yet due"
            );
        }
        let s = SqliteStore::open(&path).expect("reopen");
        let again = s.claim_webhooks(200, 100, 10).expect("claim");
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].msg_id.as_str(), again[0].attempts), ("b", 2));
        s.webhook_attempted(again[0].seq, DeliveryOutcome::GaveUp, Some("HTTP 500"))
            .expect("gave up");
        assert!(s.claim_webhooks(10_000, 100, 10).expect("claim").is_empty());
        s.enqueue_webhook(&delivery("c"), 20_000).expect("c");
        let lost = s.claim_webhooks(20_000, 100, 10).expect("claim");
        let redo = s.claim_webhooks(20_101, 100, 10).expect("claim");
        assert_eq!(
            (lost[0].seq, redo[0].attempts),
            (redo[0].seq, 2),
            "an unanswered attempt is due again after its lease"
        );
    }

    #[test]
    fn delete_refuses_running_jobs() {
        let (_dir, s) = store();
        s.create(new_job("a", 0, 1)).expect("a");
        s.create(new_job("b", 0, 2)).expect("b");
        s.claim("w", 3, 1000).expect("claim");
        assert!(matches!(s.delete("a").expect("delete"), Some(Err(_))));
        assert!(matches!(s.delete("b").expect("delete"), Some(Ok(_))));
        assert!(s.delete("b").expect("delete").is_none());
    }
}
