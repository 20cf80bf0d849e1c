//! The wan generation service: HTTP API over a durable job queue.
