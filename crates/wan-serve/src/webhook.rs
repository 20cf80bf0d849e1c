//! Webhook delivery, signed as Standard Webhooks do (<https://www.standardwebhooks.com>):
//! headers `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64>`, the signature
//! being HMAC-SHA256 over `id.timestamp.body` with the secret's bytes (`whsec_<base64>`).
//! Deliveries go through a durable outbox in the queue database, retry with exponential backoff
//! and survive restarts (at least once; receivers dedupe on `webhook-id`); a failing webhook
//! never affects the job.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::job::unix_millis;
use crate::metrics::Metrics;
use crate::store::{DeliveryOutcome, JobStore, NewDelivery, WebhookDelivery};

/// Prefix of Standard Webhooks secrets.
const SECRET_PREFIX: &str = "whsec_";

/// A webhook signing key.
#[derive(Clone)]
pub struct WebhookSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSigner(..)")
    }
}

impl WebhookSigner {
    /// Parses a `whsec_<base64>` secret.
    pub fn from_secret(secret: &str) -> Result<Self> {
        let b64 = secret.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            Error::Config(format!(
                "the webhook secret must start with {SECRET_PREFIX}"
            ))
        })?;
        let key = B64.decode(b64.trim()).map_err(|e| {
            Error::Config(format!(
                "the webhook secret after {SECRET_PREFIX} is not base64: {e}"
            ))
        })?;
        if key.len() < 16 {
            return Err(Error::Config(format!(
                "the webhook secret has {} bytes; use at least 16",
                key.len()
            )));
        }
        Ok(Self { key })
    }

    /// The secret given, else the one kept in `<data_dir>/webhook-secret`, created on first use.
    pub fn configured_or_stored(secret: Option<&str>, data_dir: &Path) -> Result<Self> {
        if let Some(secret) = secret {
            return Self::from_secret(secret);
        }
        let path = data_dir.join("webhook-secret");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_secret(text.trim()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let secret = format!("{SECRET_PREFIX}{}", B64.encode(key));
                write_private(&path, &secret).map_err(|e| Error::io(&path, e))?;
                tracing::info!("generated a webhook signing secret in {}", path.display());
                Self::from_secret(&secret)
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// The `webhook-signature` header value for a message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }

    /// Checks a `webhook-signature` header (which may hold several space-separated signatures).
    pub fn verify(&self, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let expected = self.sign(msg_id, timestamp, body);
        header.split(' ').any(|sig| {
            sig.len() == expected.len()
                && subtle::ConstantTimeEq::ct_eq(sig.as_bytes(), expected.as_bytes()).into()
        })
    }
}

/// Creates `path` readable by its owner only (on Unix) and writes `text` to it.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// How long a claimed delivery is held before it is due again (longer than the HTTP timeout).
const DELIVERY_LEASE_MS: i64 = 60_000;
/// Deliveries taken from the outbox at a time.
const DELIVERY_BATCH: usize = 16;
/// How often the dispatcher looks at the outbox when nothing wakes it.
const DISPATCH_POLL: Duration = Duration::from_millis(250);
/// Timeout of one delivery attempt.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends webhooks from the queue's durable outbox: a delivery is stored first, then sent by a
/// dispatcher thread, retried with exponential backoff, and taken up again after a restart.
#[derive(Clone)]
pub(crate) struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn JobStore>,
    signer: WebhookSigner,
    agent: ureq::Agent,
    attempts: u32,
    backoff: Duration,
    metrics: Arc<Metrics>,
    wake: (Mutex<u64>, Condvar),
    stop: AtomicBool,
}

impl Webhooks {
    /// A sender signing with `signer`, trying each delivery `attempts` times, waiting `backoff`
    /// before the first retry and twice as long before each next one.
    pub(crate) fn new(
        store: Arc<dyn JobStore>,
        signer: WebhookSigner,
        attempts: u32,
        backoff: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(DELIVERY_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self {
            inner: Arc::new(Inner {
                store,
                signer,
                agent,
                attempts: attempts.max(1),
                backoff,
                metrics,
                wake: (Mutex::new(0), Condvar::new()),
                stop: AtomicBool::new(false),
            }),
        }
    }

    /// A delivery of `body` to `url`, with a fresh message id.
    pub(crate) fn delivery(url: &str, event: &str, body: &serde_json::Value) -> NewDelivery {
        NewDelivery {
            msg_id: format!("msg_{}", crate::ids::random_hex()),
            url: url.to_string(),
            event: event.to_string(),
            body: body.to_string(),
        }
    }

    /// Queues a POST of `body` to `url`; `event` goes in the `wan-event` header.
    pub(crate) fn send(&self, url: &str, event: &str, body: &serde_json::Value) {
        let delivery = Self::delivery(url, event, body);
        match self.inner.store.enqueue_webhook(&delivery, unix_millis()) {
            Ok(()) => self.wake(),
            Err(e) => tracing::error!("webhook {url} ({event}): queueing failed: {e}"),
        }
    }

    /// Wakes the dispatcher after deliveries were queued.
    pub(crate) fn wake(&self) {
        let (lock, cvar) = &self.inner.wake;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        cvar.notify_all();
    }

    /// Starts the dispatcher thread.
    pub(crate) fn start(&self) -> std::io::Result<JoinHandle<()>> {
        let this = self.clone();
        std::thread::Builder::new()
            .name("wan-webhooks".into())
            .spawn(move || this.dispatch())
    }

    /// Stops the dispatcher; undelivered webhooks stay queued for the next start.
    pub(crate) fn stop(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn dispatch(&self) {
        let inner = &self.inner;
        while !inner.stop.load(Ordering::SeqCst) {
            let (lock, cvar) = &inner.wake;
            let seen = *lock.lock().unwrap_or_else(PoisonError::into_inner);
            match inner
                .store
                .claim_webhooks(unix_millis(), DELIVERY_LEASE_MS, DELIVERY_BATCH)
            {
                Ok(due) => {
                    for delivery in due {
                        let this = self.clone();
                        let spawned = std::thread::Builder::new()
                            .name("wan-webhook".into())
                            .spawn(move || this.attempt(&delivery));
                        if let Err(e) = spawned {
                            tracing::warn!("webhook: could not start a delivery thread: {e}");
                        }
                    }
                }
                Err(e) => tracing::error!("webhook outbox: {e}"),
            }
            let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = cvar
                .wait_timeout_while(guard, DISPATCH_POLL, |n| {
                    *n == seen && !inner.stop.load(Ordering::SeqCst)
                })
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn attempt(&self, d: &WebhookDelivery) {
        let inner = &self.inner;
        let timestamp = unix_millis() / 1000;
        let signature = inner.signer.sign(&d.msg_id, timestamp, d.body.as_bytes());
        let result = inner
            .agent
            .post(&d.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.msg_id)
            .header("webhook-timestamp", &timestamp.to_string())
            .header("webhook-signature", &signature)
            .header("wan-event", &d.event)
            .send(d.body.as_bytes());
        let error = match result {
            Ok(resp) if resp.status().is_success() => None,
            Ok(resp) => Some(format!("HTTP {}", resp.status())),
            Err(e) => Some(e.to_string()),
        };
        let outcome = match &error {
            None => DeliveryOutcome::Delivered,
            Some(_) if d.attempts >= inner.attempts => DeliveryOutcome::GaveUp,
            Some(_) => {
                let factor = 1u32 << d.attempts.saturating_sub(1).min(16);
                let delay = inner.backoff.saturating_mul(factor);
                DeliveryOutcome::RetryAt(
                    unix_millis() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2),
                )
            }
        };
        if let Some(error) = &error {
            tracing::warn!(
                "webhook {} ({}) attempt {}/{}: {error}",
                d.url,
                d.event,
                d.attempts,
                inner.attempts
            );
        }
        match outcome {
            DeliveryOutcome::Delivered => inner.metrics.webhook_result(true),
            DeliveryOutcome::GaveUp => inner.metrics.webhook_result(false),
            DeliveryOutcome::RetryAt(_) => {}
        }
        if let Err(e) = inner
            .store
            .webhook_attempted(d.seq, outcome, error.as_deref())
        {
            tracing::error!("webhook outbox: recording an attempt: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (spec/standard-webhooks.md).
        let signer =
            WebhookSigner::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let body = br#"{"test": 2432232314}"#;
        let sig = signer.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(signer.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, &sig));
        assert!(!signer.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body, &sig));
    }

    #[test]
    fn bad_secrets_are_rejected() {
        assert!(WebhookSigner::from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSigner::from_secret("whsec_!!!").is_err());
        assert!(WebhookSigner::from_secret("whsec_c2hvcnQ=").is_err());
    }

    #[test]
    fn a_secret_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = WebhookSigner::configured_or_stored(None, dir.path()).expect("generate");
        let b = WebhookSigner::configured_or_stored(None, dir.path()).expect("reuse");
        assert_eq!(a.key, b.key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(dir.path().join("webhook-secret")).expect("secret file");
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
    }
}
