//! Counters and histograms exported at `/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::job::JobStatus;

/// Upper bounds of the job duration histogram, in seconds.
const JOB_BUCKETS: [f64; 8] = [1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0];
/// Upper bounds of the step duration histogram, in seconds.
const STEP_BUCKETS: [f64; 8] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (bound, n) in self.bounds.iter().zip(&mut self.counts) {
            if v <= *bound {
                *n += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// The service's metrics.
#[derive(Debug)]
pub struct Metrics {
    created: AtomicU64,
    webhooks_ok: AtomicU64,
    webhooks_failed: AtomicU64,
    job_seconds: Mutex<Histogram>,
    step_seconds: Mutex<Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            created: AtomicU64::new(0),
            webhooks_ok: AtomicU64::new(0),
            webhooks_failed: AtomicU64::new(0),
            job_seconds: Mutex::new(Histogram::new(&JOB_BUCKETS)),
            step_seconds: Mutex::new(Histogram::new(&STEP_BUCKETS)),
        }
    }
}

impl Metrics {
    /// Counts accepted jobs.
    pub fn job_created(&self, n: u64) {
        self.created.fetch_add(n, Ordering::Relaxed);
    }

    /// Records a finished generation's duration.
    pub fn job_finished(&self, seconds: f64) {
        if let Ok(mut h) = self.job_seconds.lock() {
            h.observe(seconds);
        }
    }

    /// Records one denoising step's duration.
    pub fn step(&self, seconds: f64) {
        if let Ok(mut h) = self.step_seconds.lock() {
            h.observe(seconds);
        }
    }

    /// Counts a webhook delivered or given up.
    pub fn webhook_result(&self, delivered: bool) {
        let c = if delivered {
            &self.webhooks_ok
        } else {
            &self.webhooks_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition, given the queue's counts per status.
    pub fn render(&self, counts: &BTreeMap<JobStatus, u64>) -> String {
        let mut out = String::new();
        let queued = counts.get(&JobStatus::Queued).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "# HELP wan_queue_depth Jobs waiting for a worker.\n# TYPE wan_queue_depth gauge\nwan_queue_depth {queued}"
        );
        let _ = writeln!(
            out,
            "# HELP wan_jobs Jobs in the queue database by status.\n# TYPE wan_jobs gauge"
        );
        for status in JobStatus::ALL {
            let n = counts.get(&status).copied().unwrap_or(0);
            let _ = writeln!(out, "wan_jobs{{status=\"{}\"}} {n}", status.as_str());
        }
        let _ = writeln!(
            out,
            "# HELP wan_jobs_created_total Jobs accepted since start.\n# TYPE wan_jobs_created_total counter\nwan_jobs_created_total {}",
            self.created.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP wan_webhooks_total Webhook deliveries by result.\n# TYPE wan_webhooks_total counter\nwan_webhooks_total{{result=\"delivered\"}} {}\nwan_webhooks_total{{result=\"failed\"}} {}",
            self.webhooks_ok.load(Ordering::Relaxed),
            self.webhooks_failed.load(Ordering::Relaxed)
        );
        if let Ok(h) = self.job_seconds.lock() {
            h.render(
                &mut out,
                "wan_job_duration_seconds",
                "Wall time of each generation, load to write.",
            );
        }
        if let Ok(h) = self.step_seconds.lock() {
            h.render(
                &mut out,
                "wan_step_duration_seconds",
                "Wall time of each denoising step.",
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::default();
        m.job_created(2);
        m.step(0.2);
        m.job_finished(3.0);
        let counts = BTreeMap::from([(JobStatus::Queued, 4), (JobStatus::Completed, 1)]);
        let text = m.render(&counts);
        for line in [
            "wan_queue_depth 4",
            "wan_jobs{status=\"completed\"} 1",
            "wan_jobs{status=\"failed\"} 0",
            "wan_jobs_created_total 2",
            "wan_step_duration_seconds_bucket{le=\"0.5\"} 1",
            "wan_step_duration_seconds_bucket{le=\"0.1\"} 0",
            "wan_job_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
