//! The state shared by the HTTP handlers and the workers, and what happens when a job starts,
//! advances and ends (events, webhooks, batch notifications).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::ServerConfig;
use crate::events::{EventHub, JobEvent};
use crate::generator::{Generator, OutputPaths};
use crate::job::{JobRecord, WebhookEvent, unix_millis};
use crate::metrics::Metrics;
use crate::store::{BatchRecord, JobStore, NewDelivery};
use crate::webhook::Webhooks;

/// Everything the handlers and workers share.
pub(crate) struct Service {
    pub(crate) config: ServerConfig,
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) generator: Arc<dyn Generator>,
    pub(crate) hub: EventHub,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) webhooks: Webhooks,
    videos_dir: PathBuf,
    cancel_flags: Mutex<HashMap<String, Arc<AtomicBool>>>,
    wake: (Mutex<u64>, Condvar),
    shutting_down: AtomicBool,
}

impl Service {
    pub(crate) fn new(
        config: ServerConfig,
        data_dir: &Path,
        store: Arc<dyn JobStore>,
        generator: Arc<dyn Generator>,
        metrics: Arc<Metrics>,
        webhooks: Webhooks,
    ) -> Self {
        Self {
            config,
            store,
            generator,
            hub: EventHub::new(),
            metrics,
            webhooks,
            videos_dir: data_dir.join("videos"),
            cancel_flags: Mutex::new(HashMap::new()),
            wake: (Mutex::new(0), Condvar::new()),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// The folder of a job's outputs. `id` must have passed [`crate::ids::is_job_id`].
    pub(crate) fn job_dir(&self, id: &str) -> PathBuf {
        self.videos_dir.join(id)
    }

    /// The output files of a job. `id` must have passed [`crate::ids::is_job_id`].
    pub(crate) fn output_paths(&self, id: &str) -> OutputPaths {
        let dir = self.job_dir(id);
        OutputPaths {
            video: dir.join("video.mp4"),
            thumbnail: dir.join("thumbnail.png"),
        }
    }

    /// Wakes idle workers after jobs were queued.
    pub(crate) fn notify_workers(&self) {
        let (lock, cvar) = &self.wake;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        cvar.notify_all();
    }

    /// Blocks an idle worker until jobs are queued, shutdown starts, or `timeout` passes.
    pub(crate) fn wait_for_work(&self, timeout: Duration) {
        let (lock, cvar) = &self.wake;
        let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = *guard;
        let _ = cvar
            .wait_timeout_while(guard, timeout, |n| {
                *n == seen && !self.shutting_down.load(Ordering::SeqCst)
            })
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Starts a graceful shutdown: workers take no new job and stop the running one after its
    /// current step (it is queued again); event streams end.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.notify_workers();
        self.hub.shutdown();
    }

    /// Whether a shutdown has started.
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Registers the cancel flag of a job a worker of this process runs.
    pub(crate) fn register_running(&self, id: &str, flag: Arc<AtomicBool>) {
        self.cancel_flags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_string(), flag);
    }

    /// Forgets a job's cancel flag.
    pub(crate) fn unregister_running(&self, id: &str) {
        self.cancel_flags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// Raises the cancel flag of a job running here (other processes see it at their next
    /// heartbeat).
    pub(crate) fn flag_cancel(&self, id: &str) {
        if let Some(flag) = self
            .cancel_flags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
        {
            flag.store(true, Ordering::SeqCst);
        }
    }

    fn webhook(&self, job: &JobRecord, event: WebhookEvent, body: &Value) {
        if let Some(url) = &job.webhook
            && job.webhook_events.contains(&event)
        {
            self.webhooks
                .send(url, &format!("video.{}", event.as_str()), body);
        }
    }

    /// Publishes a status change that does not end the job (queued again, started).
    pub(crate) fn job_changed(&self, job: &JobRecord) {
        let data = job.to_json(unix_millis());
        self.hub.publish(JobEvent {
            job_id: job.id.clone(),
            kind: "status",
            data,
            terminal: false,
        });
    }

    /// A worker started `job`.
    pub(crate) fn job_started(&self, job: &JobRecord) {
        let data = job.to_json(unix_millis());
        self.webhook(job, WebhookEvent::Started, &data);
        self.hub.publish(JobEvent {
            job_id: job.id.clone(),
            kind: "status",
            data,
            terminal: false,
        });
    }

    /// `job` advanced; `data` is the progress event.
    pub(crate) fn job_progress(&self, job: &JobRecord, data: Value) {
        if job.webhook.is_some()
            && job.webhook_events.contains(&WebhookEvent::Progress)
            && let Ok(Some(current)) = self.store.get(&job.id)
        {
            self.webhook(
                &current,
                WebhookEvent::Progress,
                &current.to_json(unix_millis()),
            );
        }
        self.hub.publish(JobEvent {
            job_id: job.id.clone(),
            kind: "progress",
            data,
            terminal: false,
        });
    }

    /// The delivery announcing `job`'s end, when it asked for one: handed to the store, which
    /// queues it in the transaction that ends the job.
    pub(crate) fn end_webhook(job: &JobRecord) -> Option<NewDelivery> {
        let url = job.webhook.as_deref()?;
        job.webhook_events
            .contains(&WebhookEvent::Completed)
            .then(|| {
                Webhooks::delivery(
                    url,
                    &format!("video.{}", job.status.as_str()),
                    &job.to_json(unix_millis()),
                )
            })
    }

    /// `job` ended (completed, failed or cancelled): final event, batch notification, and the
    /// webhook dispatcher woken for the delivery the store queued with the end.
    pub(crate) fn job_ended(&self, job: &JobRecord) {
        let data = job.to_json(unix_millis());
        if job.webhook.is_some() {
            self.webhooks.wake();
        }
        self.hub.publish(JobEvent {
            job_id: job.id.clone(),
            kind: "status",
            data,
            terminal: true,
        });
        self.check_batch(job);
    }

    /// `job` was deleted: its streams end, and its batch may now be complete.
    pub(crate) fn job_removed(&self, job: &JobRecord) {
        self.hub.publish(JobEvent {
            job_id: job.id.clone(),
            kind: "deleted",
            data: json!({"id": job.id, "deleted": true}),
            terminal: true,
        });
        self.check_batch(job);
    }

    fn check_batch(&self, job: &JobRecord) {
        if let Some(batch_id) = &job.batch_id {
            match self.store.batch(batch_id) {
                Ok(Some(batch)) if batch.is_done() => self.batch_done(&batch),
                Ok(_) => {}
                Err(e) => tracing::warn!("batch {batch_id}: {e}"),
            }
        }
    }

    fn batch_done(&self, batch: &BatchRecord) {
        let Some(url) = &batch.webhook else {
            return;
        };
        let delivery = Webhooks::delivery(url, "batch.completed", &batch_json(batch));
        match self
            .store
            .notify_batch_once(&batch.id, &delivery, unix_millis())
        {
            Ok(true) => self.webhooks.wake(),
            Ok(false) => {}
            Err(e) => tracing::warn!("batch {}: {e}", batch.id),
        }
    }
}

/// The batch object of the API.
pub(crate) fn batch_json(batch: &BatchRecord) -> Value {
    let counts: serde_json::Map<String, Value> = batch
        .counts
        .iter()
        .map(|(status, n)| (status.as_str().to_string(), json!(n)))
        .collect();
    json!({
        "id": batch.id,
        "object": "batch",
        "status": if batch.is_done() { "completed" } else { "in_progress" },
        "created_at": batch.created_at as f64 / 1000.0,
        "webhook": batch.webhook,
        "total": batch.job_ids.len(),
        "counts": counts,
        "job_ids": batch.job_ids,
    })
}
