//! A generation job: its API request, its status and the record the queue keeps.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wan_pipeline::{GenerateRequest, ResolvedRequest};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker is generating it.
    InProgress,
    /// The video is ready.
    Completed,
    /// It ended with an error.
    Failed,
    /// It was cancelled.
    Cancelled,
}

impl JobStatus {
    /// Every status, in life order.
    pub const ALL: [JobStatus; 5] = [
        Self::Queued,
        Self::InProgress,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses an API/database name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the job has ended (completed, failed or cancelled).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// Webhook events a job can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    /// A worker started the job.
    Started,
    /// A denoising step finished.
    Progress,
    /// The job ended (completed, failed or cancelled).
    Completed,
}

impl WebhookEvent {
    /// Every event, the default subscription.
    pub const ALL: [WebhookEvent; 3] = [Self::Started, Self::Progress, Self::Completed];

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Progress => "progress",
            Self::Completed => "completed",
        }
    }

    /// Parses an API name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// The body of `POST /v1/videos` (and each entry of a batch): the generation settings of
/// [`GenerateRequest`] plus the service's own fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoRequest {
    /// The prompt.
    pub prompt: String,
    /// The negative prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// The model name; the server's first model when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The task; only `t2v` so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Frame count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<u32>,
    /// Denoising steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Guidance scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
    /// Flow shift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<f64>,
    /// Sampler name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
    /// Noise seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Frames per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<u32>,
    /// Queue priority: higher runs first, equal priorities run oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// URL to POST the job object to on the subscribed events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// The events the webhook receives; all of them when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_events: Option<Vec<String>>,
}

impl VideoRequest {
    /// The generation settings, as the pipeline's shared validation takes them.
    pub fn generate_request(&self) -> GenerateRequest {
        GenerateRequest {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            width: self.width,
            height: self.height,
            frames: self.frames,
            steps: self.steps,
            guidance: self.guidance,
            shift: self.shift,
            sampler: self.sampler.clone(),
            seed: self.seed,
            fps: self.fps,
        }
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// A stable machine-readable code (`generation_failed`, `worker_lost`, ...).
    pub code: String,
    /// What happened.
    pub message: String,
}

/// Seconds spent in each stage of a job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobTimings {
    /// From creation to the start of the attempt that completed it.
    pub queued: f64,
    /// Loading the model (0 when it was already in memory).
    pub load: f64,
    /// Prompt encoding.
    pub encode: f64,
    /// The denoising loop.
    pub denoise: f64,
    /// VAE decoding.
    pub decode: f64,
    /// Writing the MP4 and the thumbnail.
    pub write: f64,
    /// The whole generation call, as the worker timed it.
    pub generate: f64,
}

/// A job as the queue stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// The job id (`vid_` and 32 hex digits).
    pub id: String,
    /// Its status.
    pub status: JobStatus,
    /// The model that runs it.
    pub model: String,
    /// Queue priority.
    pub priority: i32,
    /// The request as submitted.
    pub request: VideoRequest,
    /// The validated request, with the seed resolved.
    pub resolved: ResolvedRequest,
    /// The webhook URL.
    pub webhook: Option<String>,
    /// The webhook's events.
    pub webhook_events: Vec<WebhookEvent>,
    /// The batch the job belongs to.
    pub batch_id: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Start of the latest attempt, Unix milliseconds.
    pub started_at: Option<i64>,
    /// End time, Unix milliseconds.
    pub completed_at: Option<i64>,
    /// How many times a worker claimed it.
    pub attempts: u32,
    /// Denoising steps done.
    pub step: u32,
    /// Denoising steps in all.
    pub total_steps: u32,
    /// Progress, 0 to 100.
    pub progress: u32,
    /// Why it failed.
    pub error: Option<JobError>,
    /// Stage timings, once completed.
    pub timings: Option<JobTimings>,
    /// Whether a cancel was asked for while it ran.
    pub cancel_requested: bool,
}

/// Unix time now, in milliseconds.
pub fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

impl JobRecord {
    /// The job object of the API (`GET /v1/videos/{id}`); times are Unix seconds.
    pub fn to_json(&self, now_ms: i64) -> Value {
        let eta = match (self.status, self.started_at) {
            (JobStatus::InProgress, Some(start)) if self.progress > 0 && self.progress < 100 => {
                let elapsed = seconds(now_ms - start).max(0.0);
                let p = f64::from(self.progress);
                Some((elapsed * (100.0 - p) / p * 10.0).round() / 10.0)
            }
            _ => None,
        };
        json!({
            "id": self.id,
            "object": "video",
            "status": self.status,
            "model": self.model,
            "task": "t2v",
            "priority": self.priority,
            "progress": self.progress,
            "step": self.step,
            "total_steps": self.total_steps,
            "eta_seconds": eta,
            "seed": self.resolved.seed,
            "request": self.request,
            "resolved": self.resolved,
            "batch_id": self.batch_id,
            "attempts": self.attempts,
            "cancel_requested": self.cancel_requested,
            "created_at": seconds(self.created_at),
            "started_at": self.started_at.map(seconds),
            "completed_at": self.completed_at.map(seconds),
            "error": self.error,
            "timings": self.timings,
        })
    }
}
