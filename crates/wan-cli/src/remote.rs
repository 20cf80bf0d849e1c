//! `wan generate --server URL`: submits the job to a running `wan serve`, shows its progress
//! from the server's event stream, and downloads the MP4.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// Transport attempts for each request; the create carries an `Idempotency-Key`, so a retried
/// create never makes a second job.
const ATTEMPTS: u32 = 3;

struct Client {
    agent: ureq::Agent,
    base: String,
    auth: Option<String>,
}

impl Client {
    fn new(server: &str, api_key: Option<&str>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        Self {
            agent,
            base: server.trim_end_matches('/').to_string(),
            auth: api_key.map(|k| format!("Bearer {k}")),
        }
    }

    fn get(&self, path: &str) -> Result<ureq::http::Response<ureq::Body>> {
        let url = format!("{}{path}", self.base);
        let mut last = None;
        for attempt in 1..=ATTEMPTS {
            let mut req = self.agent.get(&url);
            if let Some(auth) = &self.auth {
                req = req.header("authorization", auth);
            }
            match req.call() {
                Ok(resp) => return Ok(resp),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(300 * u64::from(attempt)));
        }
        Err(anyhow::anyhow!(
            "GET {url}: {}",
            last.map_or_else(String::new, |e| e.to_string())
        ))
    }
}

/// The server's error message from an error body, or the raw body.
fn server_error(status: u16, body: &str) -> anyhow::Error {
    match serde_json::from_str::<Value>(body) {
        Ok(v) if v["error"]["message"].is_string() => {
            let message = v["error"]["message"].as_str().unwrap_or_default();
            match v["error"]["field"].as_str() {
                Some(field) => anyhow::anyhow!(
                    "the server rejected the request (HTTP {status}): --{}: {message}",
                    field.replace('_', "-")
                ),
                None => anyhow::anyhow!("the server answered HTTP {status}: {message}"),
            }
        }
        _ => anyhow::anyhow!("the server answered HTTP {status}: {body}"),
    }
}

fn read_json(resp: ureq::http::Response<ureq::Body>) -> Result<(u16, Value, String)> {
    let status = resp.status().as_u16();
    let text = resp
        .into_body()
        .read_to_string()
        .context("reading the server's answer")?;
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok((status, value, text))
}

fn progress_bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} steps {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("queued");
    bar
}

fn is_terminal(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

/// Follows the job's event stream until it ends, reconnecting when the stream drops (a server
/// restart, for instance). Returns the final job object.
fn follow(client: &Client, id: &str, bar: &ProgressBar) -> Result<Value> {
    loop {
        let resp = client.get(&format!("/v1/videos/{id}/events"))?;
        if resp.status().as_u16() != 200 {
            let (status, _, text) = read_json(resp)?;
            return Err(server_error(status, &text));
        }
        let reader = BufReader::new(resp.into_body().into_reader());
        let mut event = String::new();
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
                continue;
            }
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let Ok(data) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            if let Some(total) = data["total_steps"].as_u64() {
                bar.set_length(total);
            }
            if let Some(step) = data["step"].as_u64() {
                bar.set_position(step);
            }
            match event.as_str() {
                "progress" => {
                    if let Some(stage) = data["stage"].as_str() {
                        bar.set_message(stage.to_string());
                    }
                }
                "status" => {
                    if let Some(status) = data["status"].as_str() {
                        bar.set_message(status.replace('_', " "));
                    }
                    if is_terminal(&data) {
                        return Ok(data);
                    }
                }
                "deleted" => bail!("video {id} was deleted on the server"),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_secs(1));
        let (status, job, text) = read_json(client.get(&format!("/v1/videos/{id}"))?)?;
        if status != 200 {
            return Err(server_error(status, &text));
        }
        if is_terminal(&job) {
            return Ok(job);
        }
    }
}

fn download(client: &Client, id: &str, output: &Path) -> Result<()> {
    let resp = client.get(&format!("/v1/videos/{id}/content"))?;
    if resp.status().as_u16() != 200 {
        let (status, _, text) = read_json(resp)?;
        return Err(server_error(status, &text));
    }
    let mut bytes = Vec::new();
    resp.into_body()
        .into_reader()
        .read_to_end(&mut bytes)
        .context("downloading the video")?;
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output.mp4".into());
    let tmp = output.with_file_name(format!(".{name}.partial"));
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

/// Creates a job on `server` from `body` (the fields of `POST /v1/videos`), follows its events
/// with a progress bar unless `quiet`, downloads the MP4 to `output`, and returns the final job
/// object. Fails with the server's message (naming the field) when the request is rejected, and
/// with the job's error when it fails or is cancelled.
pub fn submit(
    server: &str,
    api_key: Option<&str>,
    body: &Value,
    output: &Path,
    quiet: bool,
) -> Result<Value> {
    let ext = output.extension().and_then(|e| e.to_str());
    if !ext.is_some_and(|e| e.eq_ignore_ascii_case("mp4")) {
        bail!(
            "output {}: a server returns MP4 only; use an output path ending in .mp4",
            output.display()
        );
    }
    let client = Client::new(server, api_key);
    let url = format!("{}/v1/videos", client.base);
    let key = format!("wan-cli-{:032x}", rand::random::<u128>());
    let payload = body.to_string();
    let mut answer = None;
    for attempt in 1..=ATTEMPTS {
        let mut req = client
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .header("idempotency-key", &key);
        if let Some(auth) = &client.auth {
            req = req.header("authorization", auth);
        }
        match req.send(&payload) {
            Ok(resp) => {
                answer = Some(read_json(resp)?);
                break;
            }
            Err(e) if attempt == ATTEMPTS => {
                return Err(anyhow::anyhow!("POST {url}: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(300 * u64::from(attempt))),
        }
    }
    let Some((status, job, text)) = answer else {
        bail!("POST {url}: no answer");
    };
    if status != 202 {
        return Err(server_error(status, &text));
    }
    let id = job["id"]
        .as_str()
        .context("the server's job object has no id")?
        .to_string();
    let bar = progress_bar(quiet);
    let result = follow(&client, &id, &bar);
    bar.finish_and_clear();
    let job = result?;
    match job["status"].as_str() {
        Some("completed") => {}
        Some("failed") => bail!(
            "job {id} failed on the server: {} ({})",
            job["error"]["message"]
                .as_str()
                .unwrap_or("no reason given"),
            job["error"]["code"].as_str().unwrap_or("unknown")
        ),
        other => bail!("job {id} ended as {}", other.unwrap_or("unknown")),
    }
    download(&client, &id, output)?;
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;
    use std::time::Duration;
    use wan_serve::{BackgroundServer, DiagnosticGenerator, ServerConfig};

    fn server(data: &Path, keys: &[&str]) -> BackgroundServer {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: data.to_path_buf(),
            api_keys: keys.iter().map(|k| k.to_string()).collect(),
            ..ServerConfig::default()
        };
        BackgroundServer::start(
            config,
            Arc::new(DiagnosticGenerator::new(Duration::from_millis(5))),
        )
        .expect("server")
    }

    #[test]
    fn submits_follows_and_downloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let srv = server(&dir.path().join("data"), &["remote-key-1"]);
        let url = format!("http://{}", srv.addr());
        let out = dir.path().join("clip.mp4");
        let body = json!({"prompt": "a lighthouse", "steps": 3, "width": 32, "height": 32, "frames": 5, "seed": 11});
        let job = submit(&url, Some("remote-key-1"), &body, &out, true).expect("submit");
        assert_eq!(
            (job["status"].as_str(), job["seed"].as_u64()),
            (Some("completed"), Some(11))
        );
        let bytes = std::fs::read(&out).expect("downloaded");
        assert_eq!(&bytes[4..8], b"ftyp");
        let err = submit(&url, None, &body, &out, true).expect_err("no key");
        assert!(err.to_string().contains("401"), "{err}");
        srv.shutdown().expect("shutdown");
    }

    #[test]
    fn rejected_fields_are_named_as_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let srv = server(&dir.path().join("data"), &[]);
        let url = format!("http://{}", srv.addr());
        let out = dir.path().join("clip.mp4");
        let err = submit(
            &url,
            None,
            &json!({"prompt": "x", "negative_prompt": "y", "width": 30}),
            &out,
            true,
        )
        .expect_err("bad width");
        assert!(err.to_string().contains("--width"), "{err}");
        let err = submit(
            &url,
            None,
            &json!({"prompt": "x"}),
            &dir.path().join("clip.gif"),
            true,
        )
        .expect_err("not mp4");
        assert!(err.to_string().contains(".mp4"), "{err}");
        assert!(!out.exists());
    }
}
