//! Workers: each claims the best queued job, runs it under a lease renewed by a heartbeat
//! thread, reports progress, and records how it ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;
use wan_pipeline::{Progress, ProgressEvent, Stage};

use crate::generator::GenerateError;
use crate::ids::random_hex;
use crate::job::{JobError, JobRecord, JobTimings, unix_millis};
use crate::service::Service;
use crate::store::{Lease, Outcome};

/// How long an idle worker waits before looking at the queue again.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Starts `count` worker threads.
pub(crate) fn spawn(service: &Arc<Service>, count: usize) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..count)
        .map(|i| {
            let service = Arc::clone(service);
            let name = format!("worker-{}-{i}-{}", std::process::id(), &random_hex()[..8]);
            std::thread::Builder::new()
                .name(format!("wan-worker-{i}"))
                .spawn(move || run(&service, &name))
        })
        .collect()
}

fn lease_ms(service: &Service) -> i64 {
    (service.config.lease_seconds * 1000.0) as i64
}

fn run(service: &Service, worker: &str) {
    while !service.shutting_down() {
        match service.store.reap_expired(
            unix_millis(),
            service.config.max_attempts,
            &Service::end_webhook,
        ) {
            Ok(changed) => {
                for job in changed {
                    if job.status.is_terminal() {
                        service.job_ended(&job);
                    } else {
                        service.job_changed(&job);
                    }
                }
            }
            Err(e) => tracing::error!("{worker}: taking back expired jobs: {e}"),
        }
        match service
            .store
            .claim(worker, unix_millis(), lease_ms(service))
        {
            Ok(Some(job)) => run_job(service, worker, job),
            Ok(None) => service.wait_for_work(IDLE_POLL),
            Err(e) => {
                tracing::error!("{worker}: claiming a job: {e}");
                service.wait_for_work(IDLE_POLL);
            }
        }
    }
}

/// Reports a job's progress to the queue and the event streams, and tells the generator to
/// stop on cancel, lost lease or shutdown.
struct JobProgress<'a> {
    service: &'a Service,
    worker: &'a str,
    job: &'a JobRecord,
    cancel: &'a AtomicBool,
    lost: &'a AtomicBool,
    step_started: Instant,
}

impl JobProgress<'_> {
    fn report(&self, stage: Stage, step: u32, total: u32, progress: u32) {
        if let Err(e) =
            self.service
                .store
                .set_progress(&self.job.id, self.worker, step, total, progress)
        {
            tracing::warn!("job {}: recording progress: {e}", self.job.id);
        }
        self.service.job_progress(
            self.job,
            json!({
                "id": self.job.id,
                "status": "in_progress",
                "stage": stage,
                "step": step,
                "total_steps": total,
                "progress": progress,
            }),
        );
    }
}

fn ratio(done: usize, total: usize, span: u32) -> u32 {
    if total == 0 {
        return span;
    }
    u32::try_from(done.min(total) * span as usize / total).unwrap_or(span)
}

impl Progress for JobProgress<'_> {
    fn event(&mut self, event: &ProgressEvent) {
        match *event {
            ProgressEvent::StageStarted {
                stage: Stage::Denoise,
                ..
            } => self.step_started = Instant::now(),
            ProgressEvent::Advanced {
                stage: Stage::Denoise,
                done,
                total,
            } => {
                self.service
                    .metrics
                    .step(self.step_started.elapsed().as_secs_f64());
                self.step_started = Instant::now();
                let total_u32 = u32::try_from(total).unwrap_or(u32::MAX);
                let done_u32 = u32::try_from(done).unwrap_or(u32::MAX);
                self.report(Stage::Denoise, done_u32, total_u32, ratio(done, total, 90));
            }
            ProgressEvent::Advanced {
                stage: Stage::Decode,
                done,
                total,
            } => {
                let steps = self.job.resolved.steps;
                self.report(Stage::Decode, steps, steps, 90 + ratio(done, total, 9));
            }
            _ => {}
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
            || self.lost.load(Ordering::SeqCst)
            || self.service.shutting_down()
    }
}

/// Renews the lease until `done`, raising `cancel` or `lost` as the queue says.
fn heartbeat(
    service: &Service,
    worker: &str,
    id: &str,
    done: &AtomicBool,
    cancel: &AtomicBool,
    lost: &AtomicBool,
) {
    let every = Duration::from_millis((lease_ms(service) / 3).max(50) as u64);
    let mut last = Instant::now();
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        match service
            .store
            .heartbeat(id, worker, unix_millis(), lease_ms(service))
        {
            Ok(Lease::Held { cancel_requested }) => {
                if cancel_requested {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
            Ok(Lease::Lost) => {
                tracing::warn!("job {id}: {worker} lost its lease; stopping");
                lost.store(true, Ordering::SeqCst);
            }
            Err(e) => tracing::warn!("job {id}: heartbeat: {e}"),
        }
    }
}

fn run_job(service: &Service, worker: &str, job: JobRecord) {
    let cancel = Arc::new(AtomicBool::new(job.cancel_requested));
    service.register_running(&job.id, Arc::clone(&cancel));
    service.job_started(&job);
    let lost = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let paths = service.output_paths(&job.id);
    let start = Instant::now();
    let result = match std::fs::create_dir_all(service.job_dir(&job.id)) {
        Err(e) => Err(GenerateError::Failed {
            code: "write_failed",
            message: format!("creating {}: {e}", service.job_dir(&job.id).display()),
        }),
        Ok(()) => std::thread::scope(|s| {
            s.spawn(|| heartbeat(service, worker, &job.id, &done, &cancel, &lost));
            let mut progress = JobProgress {
                service,
                worker,
                job: &job,
                cancel: &cancel,
                lost: &lost,
                step_started: Instant::now(),
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                service
                    .generator
                    .generate(&job.model, &job.resolved, &paths, &mut progress)
            }))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                Err(GenerateError::Failed {
                    code: "generation_panicked",
                    message: format!("the generator panicked: {what}"),
                })
            });
            done.store(true, Ordering::SeqCst);
            result
        }),
    };
    let seconds = start.elapsed().as_secs_f64();
    service.unregister_running(&job.id);
    let outcome = match result {
        Ok(report) => {
            service.metrics.job_finished(seconds);
            let queued = job
                .started_at
                .map_or(0.0, |s| (s - job.created_at) as f64 / 1000.0);
            Outcome::Completed(JobTimings {
                queued,
                load: report.load,
                encode: report.encode,
                denoise: report.denoise,
                decode: report.decode,
                write: report.write,
                generate: seconds,
            })
        }
        Err(GenerateError::Cancelled) if lost.load(Ordering::SeqCst) => {
            tracing::warn!("job {}: abandoned after losing the lease", job.id);
            return;
        }
        Err(GenerateError::Cancelled) if cancel.load(Ordering::SeqCst) => Outcome::Cancelled,
        Err(GenerateError::Cancelled) => Outcome::Requeue,
        Err(GenerateError::UnknownModel(model)) => Outcome::Failed(JobError {
            code: "unknown_model".into(),
            message: format!("model {model:?} is not served by this worker"),
        }),
        Err(GenerateError::Failed { code, message }) => Outcome::Failed(JobError {
            code: code.into(),
            message,
        }),
    };
    if !matches!(outcome, Outcome::Completed(_)) {
        let dir = service.job_dir(&job.id);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("removing {}: {e}", dir.display());
        }
    }
    match service.store.finish(
        &job.id,
        worker,
        outcome,
        unix_millis(),
        &Service::end_webhook,
    ) {
        Ok(Some(rec)) if rec.status.is_terminal() => service.job_ended(&rec),
        Ok(Some(rec)) => service.job_changed(&rec),
        Ok(None) => tracing::warn!("job {}: {worker} no longer held it at the end", job.id),
        Err(e) => tracing::error!("job {}: recording its end: {e}", job.id),
    }
}
