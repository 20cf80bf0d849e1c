//! Job events fanned out to the Server-Sent Events streams.

use serde_json::Value;
use tokio::sync::broadcast;

/// One event about one job.
#[derive(Debug, Clone)]
pub struct JobEvent {
    /// The job id; empty for the shutdown notice that ends every stream.
    pub job_id: String,
    /// The SSE event name: `status` (data: the job object) or `progress`.
    pub kind: &'static str,
    /// The event's JSON data.
    pub data: Value,
    /// Whether the job has ended with this event.
    pub terminal: bool,
}

/// Broadcasts [`JobEvent`]s from the workers and handlers to every open stream.
#[derive(Debug, Clone)]
pub struct EventHub {
    sender: broadcast::Sender<JobEvent>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    /// A hub buffering up to 1024 events per slow subscriber.
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
        }
    }

    /// Sends an event to every subscriber (none is fine).
    pub fn publish(&self, event: JobEvent) {
        let _ = self.sender.send(event);
    }

    /// Tells every stream that the server is shutting down.
    pub fn shutdown(&self) {
        self.publish(JobEvent {
            job_id: String::new(),
            kind: "shutdown",
            data: Value::Null,
            terminal: true,
        });
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.sender.subscribe()
    }
}
