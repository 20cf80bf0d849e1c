//! Webhook delivery, signed as Standard Webhooks do (<https://www.standardwebhooks.com>):
//! headers `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64>`, the signature
//! being HMAC-SHA256 over `id.timestamp.body` with the secret's bytes (`whsec_<base64>`).
//! Deliveries retry with exponential backoff on their own threads; a failing webhook never
//! affects the job.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::metrics::Metrics;

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
                std::fs::write(&path, &secret).map_err(|e| Error::io(&path, e))?;
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

/// Sends webhooks in the background.
#[derive(Clone)]
pub struct Webhooks {
    signer: WebhookSigner,
    agent: ureq::Agent,
    attempts: u32,
    backoff: Duration,
    metrics: Arc<Metrics>,
}

impl Webhooks {
    /// A sender signing with `signer`, trying each delivery `attempts` times with `backoff`
    /// before the first retry, doubled after each.
    pub fn new(
        signer: WebhookSigner,
        attempts: u32,
        backoff: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self {
            signer,
            agent,
            attempts: attempts.max(1),
            backoff,
            metrics,
        }
    }

    /// POSTs `body` to `url` on a background thread; `event` goes in the `wan-event` header.
    pub fn send(&self, url: &str, event: &str, body: &serde_json::Value) {
        let this = self.clone();
        let target = url.to_string();
        let event = event.to_string();
        let body = body.to_string().into_bytes();
        let msg_id = format!("msg_{}", crate::ids::random_hex());
        let spawned = std::thread::Builder::new()
            .name("webhook".into())
            .spawn(move || this.deliver(&target, &event, &msg_id, &body));
        if let Err(e) = spawned {
            tracing::warn!("webhook {url}: could not start a delivery thread: {e}");
            self.metrics.webhook_result(false);
        }
    }

    fn deliver(&self, url: &str, event: &str, msg_id: &str, body: &[u8]) {
        let mut delay = self.backoff;
        for attempt in 1..=self.attempts {
            let timestamp = crate::job::unix_millis() / 1000;
            let signature = self.signer.sign(msg_id, timestamp, body);
            let result = self
                .agent
                .post(url)
                .header("content-type", "application/json")
                .header("webhook-id", msg_id)
                .header("webhook-timestamp", &timestamp.to_string())
                .header("webhook-signature", &signature)
                .header("wan-event", event)
                .send(body);
            match result {
                Ok(resp) if resp.status().is_success() => {
                    self.metrics.webhook_result(true);
                    return;
                }
                Ok(resp) => tracing::warn!(
                    "webhook {url} ({event}) attempt {attempt}/{}: HTTP {}",
                    self.attempts,
                    resp.status()
                ),
                Err(e) => tracing::warn!(
                    "webhook {url} ({event}) attempt {attempt}/{}: {e}",
                    self.attempts
                ),
            }
            if attempt < self.attempts {
                std::thread::sleep(delay);
                delay = delay.saturating_mul(2);
            }
        }
        self.metrics.webhook_result(false);
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
    }
}
