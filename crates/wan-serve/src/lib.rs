//! `wan serve`: the generation service. A JSON-over-HTTP API (documented by the OpenAPI
//! document [`OPENAPI`], served at `/openapi.json`) in front of a durable job queue (embedded
//! SQLite by default, behind the [`JobStore`] interface) and workers that keep their model
//! loaded between jobs.
//!
//! Embedding: build any [`Generator`] (or [`open_generator`] for configured model names), then
//! [`run_until_signal`], or [`Server::start`] + [`Server::run`] inside your own runtime.

mod api;
pub mod config;
pub mod diagnostic;
pub mod error;
mod events;
pub mod generator;
mod ids;
pub mod job;
mod metrics;
pub mod pipeline;
mod server;
mod service;
pub mod sqlite;
pub mod store;
pub mod webhook;
mod worker;

pub use api::{OPENAPI, ROUTES};
pub use config::{Limits, ServerConfig};
pub use diagnostic::{DIAGNOSTIC_MODEL, DiagnosticGenerator};
pub use error::{Error, Result};
pub use generator::{GenerateError, GenerateReport, Generator, GeneratorSet, OutputPaths};
pub use job::{JobError, JobRecord, JobStatus, JobTimings, VideoRequest, WebhookEvent};
pub use pipeline::PipelineGenerator;
pub use server::{BackgroundServer, Server, open_generator, run_until_signal};
pub use sqlite::SqliteStore;
pub use store::{BatchRecord, Created, EndWebhook, JobStore, Lease, NewJob, Outcome};
pub use webhook::WebhookSigner;
