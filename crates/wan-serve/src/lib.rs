//! `wan serve`: the generation service. A JSON-over-HTTP API in front of a durable job queue
//! (embedded SQLite by default) and one worker per device, each keeping its model loaded.

pub mod error;
pub mod job;
pub mod sqlite;
pub mod store;

pub use error::{Error, Result};
pub use job::{JobError, JobRecord, JobStatus, JobTimings, VideoRequest, WebhookEvent};
pub use sqlite::SqliteStore;
pub use store::{BatchRecord, Created, JobStore, Lease, NewJob, Outcome};
