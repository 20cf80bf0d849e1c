//! `wan serve`: runs the generation service.
//!
//! Settings come from a JSON config file (`--config`, fields of `wan_serve::ServerConfig`),
//! overridden by environment variables and flags.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use wan_pipeline::HubOptions;
use wan_serve::ServerConfig;

/// Arguments of `wan serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A model to serve: a local folder, a Hugging Face repo id, or NAME=SPEC to choose the name
    /// requests use. Repeat for more; the first is the default. `diagnostic[:MS_PER_STEP]`
    /// serves a weightless test-pattern model for checking a deployment.
    #[arg(long = "model", env = "WAN_SERVE_MODELS", value_delimiter = ',')]
    models: Vec<String>,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "WAN_LISTEN")]
    listen: Option<SocketAddr>,
    /// Folder for the job database and the outputs (default ./wan-data).
    #[arg(long, env = "WAN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// JSON config file with any of the settings (flags and environment override it).
    #[arg(long, env = "WAN_SERVE_CONFIG")]
    config: Option<PathBuf>,
    /// An accepted API key (repeat, or comma-separate in WAN_API_KEYS); with keys set, every
    /// route but /healthz needs `Authorization: Bearer <key>`.
    #[arg(
        long = "api-key",
        env = "WAN_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_keys: Vec<String>,
    /// Listen on a non-loopback address without API keys.
    #[arg(long)]
    allow_unauthenticated: bool,
    /// Webhook signing secret, `whsec_` + base64 (default: generated once into the data dir).
    #[arg(long, env = "WAN_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Worker threads (default 1: one per device).
    #[arg(long)]
    workers: Option<usize>,
    /// Attempts before a job whose worker keeps dying is failed (default 3).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Job lease in seconds, renewed three times per lease (default 30).
    #[arg(long)]
    lease_seconds: Option<f64>,
    /// Webhook delivery attempts (default 5).
    #[arg(long)]
    webhook_attempts: Option<u32>,
    /// Delay before the first webhook retry in milliseconds, doubled after each (default 500).
    #[arg(long)]
    webhook_backoff_ms: Option<u64>,
    /// Largest frame count a request may ask for (default 129).
    #[arg(long)]
    max_frames: Option<u32>,
    /// Largest width or height a request may ask for (default 1280).
    #[arg(long)]
    max_side: Option<u32>,
    /// Largest step count a request may ask for (default 100).
    #[arg(long)]
    max_steps: Option<u32>,
    /// Largest request body in bytes (default 262144).
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Load the models at start-up instead of on their first job.
    #[arg(long)]
    preload: bool,
    /// Never touch the network: Hub models must already be in the Hugging Face cache.
    #[arg(long)]
    offline: bool,
}

impl ServeArgs {
    fn config(&self) -> Result<ServerConfig> {
        let mut cfg = match &self.config {
            Some(path) => ServerConfig::from_json_file(path)?,
            None => ServerConfig::default(),
        };
        if !self.models.is_empty() {
            cfg.models = self.models.clone();
        }
        if !self.api_keys.is_empty() {
            cfg.api_keys = self.api_keys.clone();
        }
        cfg.allow_unauthenticated |= self.allow_unauthenticated;
        cfg.preload |= self.preload;
        if let Some(v) = self.listen {
            cfg.listen = v;
        }
        if let Some(v) = &self.data_dir {
            cfg.data_dir = v.clone();
        }
        if let Some(v) = &self.webhook_secret {
            cfg.webhook_secret = Some(v.clone());
        }
        if let Some(v) = self.workers {
            cfg.workers = v;
        }
        if let Some(v) = self.max_attempts {
            cfg.max_attempts = v;
        }
        if let Some(v) = self.lease_seconds {
            cfg.lease_seconds = v;
        }
        if let Some(v) = self.webhook_attempts {
            cfg.webhook_attempts = v;
        }
        if let Some(v) = self.webhook_backoff_ms {
            cfg.webhook_backoff_ms = v;
        }
        if let Some(v) = self.max_frames {
            cfg.limits.max_frames = v;
        }
        if let Some(v) = self.max_side {
            cfg.limits.max_side = v;
        }
        if let Some(v) = self.max_steps {
            cfg.limits.max_steps = v;
        }
        if let Some(v) = self.max_body_bytes {
            cfg.limits.max_body_bytes = v;
        }
        cfg.check()?;
        Ok(cfg)
    }
}

/// Runs the service until SIGINT/SIGTERM. Prints `wan serve listening on http://ADDR` on stdout
/// once it accepts connections.
pub fn run(args: ServeArgs) -> Result<()> {
    let config = args.config()?;
    let hub = HubOptions {
        offline: args.offline || HubOptions::from_env().offline,
        ..HubOptions::default()
    };
    let generator = wan_serve::open_generator(&config, &hub).context("preparing the models")?;
    let data_dir = config.data_dir.clone();
    wan_serve::run_until_signal(config, generator, |addr| {
        let mut out = std::io::stdout();
        let _ = writeln!(
            out,
            "wan serve listening on http://{addr} (data in {})",
            data_dir.display()
        );
        let _ = out.flush();
    })?;
    Ok(())
}
