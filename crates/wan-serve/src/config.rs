//! The service's settings, from flags, environment variables or a JSON config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Limits the server puts on requests, on top of the shared validation rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest frame count.
    pub max_frames: u32,
    /// Largest width or height in pixels.
    pub max_side: u32,
    /// Largest number of denoising steps.
    pub max_steps: u32,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most jobs in one batch.
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frames: 129,
            max_side: 1280,
            max_steps: 100,
            max_body_bytes: 256 * 1024,
            max_batch: 100,
        }
    }
}

/// Every setting of `wan serve`. The JSON config file has these fields (all optional but
/// `models` and `data_dir`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Folder holding the queue database and the outputs.
    pub data_dir: PathBuf,
    /// Models to serve: `SPEC` or `NAME=SPEC`, where SPEC is a model folder, a Hugging Face repo
    /// id or `diagnostic[:MS_PER_STEP]`. The first is the default.
    pub models: Vec<String>,
    /// Accepted API keys; when any is set, every route but `/healthz` needs
    /// `Authorization: Bearer <key>`.
    pub api_keys: Vec<String>,
    /// Allow listening on a non-loopback address without API keys.
    pub allow_unauthenticated: bool,
    /// Webhook signing secret (`whsec_` + base64); generated once and kept under the data
    /// directory when not given.
    pub webhook_secret: Option<String>,
    /// Worker threads (one per device; 1 on CPU).
    pub workers: usize,
    /// Attempts before a job whose worker keeps dying is failed.
    pub max_attempts: u32,
    /// Lease length in seconds; workers renew it three times per lease.
    pub lease_seconds: f64,
    /// Webhook delivery attempts.
    pub webhook_attempts: u32,
    /// Delay before the first webhook retry, in milliseconds; doubled after each failure.
    pub webhook_backoff_ms: u64,
    /// Load every model at start-up instead of on its first job.
    pub preload: bool,
    /// Request limits.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("wan-data"),
            models: Vec::new(),
            api_keys: Vec::new(),
            allow_unauthenticated: false,
            webhook_secret: None,
            workers: 1,
            max_attempts: 3,
            lease_seconds: 30.0,
            webhook_attempts: 5,
            webhook_backoff_ms: 500,
            preload: false,
            limits: Limits::default(),
        }
    }
}

impl ServerConfig {
    /// Reads a JSON config file.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            Error::Config(format!(
                "{}: at {}: {}",
                path.display(),
                e.path(),
                e.inner()
            ))
        })
    }

    /// Checks the settings other than the models (see [`crate::open_generator`]).
    pub fn check(&self) -> Result<()> {
        if self.workers == 0 || self.workers > 64 {
            return Err(Error::Config(format!(
                "workers {} is not allowed: use 1 to 64",
                self.workers
            )));
        }
        if self.max_attempts == 0 {
            return Err(Error::Config("max_attempts must be at least 1".into()));
        }
        if !self.lease_seconds.is_finite() || !(0.3..=3600.0).contains(&self.lease_seconds) {
            return Err(Error::Config(format!(
                "lease_seconds {} is not allowed: use 0.3 to 3600",
                self.lease_seconds
            )));
        }
        if self.api_keys.iter().any(|k| k.trim().len() < 8) {
            return Err(Error::Config(
                "API keys must be at least 8 characters long".into(),
            ));
        }
        if self.api_keys.is_empty()
            && !self.listen.ip().is_loopback()
            && !self.allow_unauthenticated
        {
            return Err(Error::Config(format!(
                "refusing to listen on {} without API keys: set --api-key (or WAN_API_KEYS), \
                 listen on a loopback address, or pass --allow-unauthenticated",
                self.listen
            )));
        }
        Ok(())
    }

    /// The models as `(name, spec)` pairs.
    pub fn model_specs(&self) -> Vec<(String, String)> {
        self.models
            .iter()
            .map(|m| match m.split_once('=') {
                Some((name, spec)) if !name.is_empty() && !name.contains('/') => {
                    (name.to_string(), spec.to_string())
                }
                _ => {
                    let name = m.split(':').next().unwrap_or(m);
                    let name = if name == crate::DIAGNOSTIC_MODEL {
                        name
                    } else {
                        m
                    };
                    (name.to_string(), m.clone())
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_listen_needs_keys_or_explicit_opt_out() {
        let mut cfg = ServerConfig {
            models: vec!["diagnostic".into()],
            listen: "0.0.0.0:8080".parse().expect("addr"),
            ..ServerConfig::default()
        };
        let err = cfg.check().expect_err("must refuse");
        assert!(err.to_string().contains("without API keys"), "{err}");
        cfg.api_keys = vec!["secret-key-1".into()];
        cfg.check().expect("keys set");
        cfg.api_keys.clear();
        cfg.allow_unauthenticated = true;
        cfg.check().expect("opted out");
    }

    #[test]
    fn model_names() {
        let cfg = ServerConfig {
            models: vec![
                "tiny=/models/tiny".into(),
                "Wan-AI/Wan2.1-T2V-1.3B-Diffusers".into(),
                "diagnostic:50".into(),
            ],
            ..ServerConfig::default()
        };
        let names: Vec<_> = cfg.model_specs().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["tiny", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "diagnostic"]
        );
    }

    #[test]
    fn config_file_errors_name_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("serve.json");
        std::fs::write(
            &path,
            r#"{"models": ["diagnostic"], "limits": {"max_frames": "x"}}"#,
        )
        .expect("write");
        let err = ServerConfig::from_json_file(&path).expect_err("bad type");
        assert!(err.to_string().contains("limits.max_frames"), "{err}");
        std::fs::write(&path, r#"{"models": ["diagnostic"], "workers": 2}"#).expect("write");
        let cfg = ServerConfig::from_json_file(&path).expect("valid");
        assert_eq!((cfg.workers, cfg.max_attempts), (2, 3));
    }
}
