//! The durable job queue's interface.
//!
//! The interface is shaped for several worker processes sharing one database: a worker
//! *claims* the best queued job (highest priority, then oldest) under a *lease* that it renews
//! with heartbeats; a job whose lease expired (its worker died) is taken back by
//! [`JobStore::reap_expired`], queued again or, past the attempt limit, failed with a reason.
//! The embedded SQLite backend ([`crate::SqliteStore`]) implements it; a PostgreSQL backend
//! would claim with `SELECT ... FOR UPDATE SKIP LOCKED` behind the same methods.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::job::{JobError, JobRecord, JobStatus, JobTimings, VideoRequest, WebhookEvent};
use wan_pipeline::ResolvedRequest;

/// A job to insert.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its id.
    pub id: String,
    /// The model that runs it.
    pub model: String,
    /// Queue priority.
    pub priority: i32,
    /// The request as submitted.
    pub request: VideoRequest,
    /// The validated request.
    pub resolved: ResolvedRequest,
    /// Webhook URL.
    pub webhook: Option<String>,
    /// Webhook events.
    pub webhook_events: Vec<WebhookEvent>,
    /// The `Idempotency-Key` header and a digest of the body it came with.
    pub idempotency: Option<(String, String)>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
}

/// What [`JobStore::create`] did.
#[derive(Debug, Clone)]
pub enum Created {
    /// The job was inserted.
    New(JobRecord),
    /// A job with the same idempotency key and body exists; it is returned unchanged.
    Existing(JobRecord),
    /// The idempotency key was used before with a different body (the earlier job's id).
    KeyConflict(String),
}

/// A batch of jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    /// Its id (`batch_` and 32 hex digits).
    pub id: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// URL notified once every job has ended.
    pub webhook: Option<String>,
    /// The jobs, in submission order.
    pub job_ids: Vec<String>,
    /// Jobs per status.
    pub counts: BTreeMap<JobStatus, u64>,
    /// Whether the batch webhook was already sent.
    pub notified: bool,
}

impl BatchRecord {
    /// Whether every job of the batch has ended.
    pub fn is_done(&self) -> bool {
        self.counts
            .iter()
            .all(|(status, n)| status.is_terminal() || *n == 0)
    }
}

/// How a worker's attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The video was written.
    Completed(JobTimings),
    /// Generation failed.
    Failed(JobError),
    /// It stopped because a cancel was asked for.
    Cancelled,
    /// The worker is shutting down: put the job back without counting the attempt.
    Requeue,
}

/// The state of a lease after a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Still held; `cancel_requested` tells whether the job should stop.
    Held {
        /// A cancel was asked for.
        cancel_requested: bool,
    },
    /// The lease was lost (expired and reaped, or the job was deleted): stop working on it.
    Lost,
}

/// A webhook delivery taken from the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Outbox row id.
    pub seq: i64,
    /// The Standard Webhooks message id, the same on every attempt.
    pub msg_id: String,
    /// Target URL.
    pub url: String,
    /// Event name (`video.completed`, `batch.completed`, ...).
    pub event: String,
    /// The JSON body.
    pub body: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed; try again at this Unix time in milliseconds.
    RetryAt(i64),
    /// It failed and no attempt is left.
    GaveUp,
}

/// Builds the webhook delivery that announces a job's end, when the job asked for one.
///
/// The store calls it inside the transaction that ends the job and queues what it returns
/// there, so a crash can never record the end without its webhook (or the reverse).
pub type EndWebhook<'a> = &'a dyn Fn(&JobRecord) -> Option<NewDelivery>;

/// A durable job queue, with the outbox of its webhook deliveries.
pub trait JobStore: Send + Sync {
    /// Inserts a job, or finds the one created earlier with the same idempotency key.
    fn create(&self, job: NewJob) -> Result<Created>;
    /// Inserts a batch and its jobs in one transaction.
    fn create_batch(
        &self,
        id: &str,
        webhook: Option<&str>,
        jobs: Vec<NewJob>,
        created_at: i64,
    ) -> Result<BatchRecord>;
    /// A job by id.
    fn get(&self, id: &str) -> Result<Option<JobRecord>>;
    /// Jobs newest first, optionally of one status, strictly older than job `after`.
    /// `None` when `after` names no job.
    fn list(
        &self,
        status: Option<JobStatus>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Option<Vec<JobRecord>>>;
    /// Claims the queued job with the highest priority (oldest first among equals) for
    /// `worker` until `now + lease_ms`, counting an attempt.
    fn claim(&self, worker: &str, now: i64, lease_ms: i64) -> Result<Option<JobRecord>>;
    /// Renews `worker`'s lease on job `id`.
    fn heartbeat(&self, id: &str, worker: &str, now: i64, lease_ms: i64) -> Result<Lease>;
    /// Records denoising progress of a claimed job.
    fn set_progress(
        &self,
        id: &str,
        worker: &str,
        step: u32,
        total: u32,
        progress: u32,
    ) -> Result<()>;
    /// Ends `worker`'s attempt on job `id`. Returns the updated job, or `None` when the worker
    /// no longer holds it. When the job ended, the delivery `on_end` builds for it is queued in
    /// the same transaction.
    fn finish(
        &self,
        id: &str,
        worker: &str,
        outcome: Outcome,
        now: i64,
        on_end: EndWebhook<'_>,
    ) -> Result<Option<JobRecord>>;
    /// Cancels a job: a queued one at once (queuing `on_end`'s delivery in the same
    /// transaction); a running one is flagged and stops between steps. Returns the updated job,
    /// `None` for an unknown id.
    fn cancel(&self, id: &str, now: i64, on_end: EndWebhook<'_>) -> Result<Option<JobRecord>>;
    /// Removes a job that is not running. `Ok(None)` for an unknown id; the job back unchanged
    /// (`Err` side of the inner result) when it is running.
    fn delete(&self, id: &str) -> Result<Option<std::result::Result<JobRecord, JobRecord>>>;
    /// Takes back running jobs whose lease expired: queued again, or failed with reason
    /// `worker_lost` once they used `max_attempts` attempts (queuing `on_end`'s delivery for
    /// each in the same transaction). Returns the jobs it changed.
    fn reap_expired(
        &self,
        now: i64,
        max_attempts: u32,
        on_end: EndWebhook<'_>,
    ) -> Result<Vec<JobRecord>>;
    /// Expires every lease at once; used at start-up by a server that owns the database alone,
    /// so that jobs of a previous process that died are taken back without waiting.
    fn expire_all_leases(&self) -> Result<usize>;
    /// Jobs per status.
    fn counts(&self) -> Result<BTreeMap<JobStatus, u64>>;
    /// A batch by id.
    fn batch(&self, id: &str) -> Result<Option<BatchRecord>>;
    /// Marks a batch as notified and queues its webhook delivery, in one step; `false` (and
    /// nothing queued) when it was already notified.
    fn notify_batch_once(&self, id: &str, delivery: &NewDelivery, now: i64) -> Result<bool>;
    /// Queues a webhook delivery, due at once.
    fn enqueue_webhook(&self, delivery: &NewDelivery, now: i64) -> Result<()>;
    /// Takes up to `limit` due deliveries, counting an attempt each and holding them for
    /// `lease_ms` (after which an unanswered one is due again).
    fn claim_webhooks(&self, now: i64, lease_ms: i64, limit: usize)
    -> Result<Vec<WebhookDelivery>>;
    /// Records how an attempt ended.
    fn webhook_attempted(
        &self,
        seq: i64,
        outcome: DeliveryOutcome,
        error: Option<&str>,
    ) -> Result<()>;
}

/// A webhook delivery to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The Standard Webhooks message id.
    pub msg_id: String,
    /// Target URL.
    pub url: String,
    /// Event name.
    pub event: String,
    /// The JSON body.
    pub body: String,
}
