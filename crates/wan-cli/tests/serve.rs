//! `wan serve` over real HTTP: each test starts the `wan` binary on a loopback port with its own
//! data directory, with the tiny random Wan2.1 model of `fixtures/tiny-t2v` or the diagnostic
//! model (slow, deterministic jobs for cancel, kill -9 and shutdown).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn tiny_model() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny-t2v");
    format!("tiny={}", root.display())
}

/// A running `wan serve` process.
struct Server {
    child: Child,
    url: String,
    data: PathBuf,
}

impl Server {
    fn start(data: &Path, args: &[&str]) -> Self {
        let log = std::fs::File::create(data.with_extension("log")).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_wan"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(["--webhook-secret", SECRET])
            .args(args)
            .env_remove("WAN_API_KEYS")
            .env_remove("WAN_SERVE_CONFIG")
            .env_remove("WAN_SERVE_MODELS")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start wan serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Self {
            child,
            url,
            data: data.to_path_buf(),
        }
    }

    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// `(status, headers, body)` of a request.
fn call(
    method: &str,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, ureq::http::HeaderMap, Vec<u8>) {
    let agent = agent();
    let mut resp = match (method, body) {
        ("POST", body) => {
            let mut req = agent.post(url).header("content-type", "application/json");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.send(body.unwrap_or(""))
        }
        ("DELETE", _) => {
            let mut req = agent.delete(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.call()
        }
        _ => {
            let mut req = agent.get(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.call()
        }
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .expect("body");
    (status, headers, bytes)
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, bytes) = call(
        "POST",
        &format!("{}{path}", server.url),
        Some(&body.to_string()),
        &[],
    );
    (status, json_of(&bytes))
}

fn get(server: &Server, path: &str) -> (u16, Value) {
    let (status, _, bytes) = call("GET", &format!("{}{path}", server.url), None, &[]);
    (status, json_of(&bytes))
}

fn create(server: &Server, body: &Value) -> String {
    let (status, job) = post(server, "/v1/videos", body);
    assert_eq!(status, 202, "{job}");
    job["id"].as_str().expect("id").to_string()
}

/// Polls a job until `done` holds or `timeout` passes.
fn wait_for(server: &Server, id: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (status, job) = get(server, &format!("/v1/videos/{id}"));
        assert_eq!(status, 200, "{job}");
        if done(&job) {
            return job;
        }
        assert!(start.elapsed() < timeout, "timed out waiting on {job}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn ended(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

/// Reads the SSE stream of a job to its end: `(event, data)` pairs.
fn follow_events(base: &str, id: &str) -> Vec<(String, Value)> {
    follow_events_from(base, id, None)
}

/// [`follow_events`], telling `connected` once the stream is open.
fn follow_events_from(
    base: &str,
    id: &str,
    connected: Option<mpsc::Sender<()>>,
) -> Vec<(String, Value)> {
    let resp = agent()
        .get(&format!("{base}/v1/videos/{id}/events"))
        .call()
        .expect("events");
    if let Some(tx) = connected {
        let _ = tx.send(());
    }
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let reader = BufReader::new(resp.into_body().into_reader());
    let mut events = Vec::new();
    let mut event = String::new();
    for line in reader.lines() {
        let line = line.expect("line");
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            events.push((event.clone(), json_of(data.as_bytes())));
        }
    }
    events
}

fn assert_mp4(bytes: &[u8]) {
    assert!(bytes.len() > 100, "{} bytes", bytes.len());
    assert_eq!(&bytes[4..8], b"ftyp", "not an MP4");
    let mut offset = 0;
    let mut boxes = Vec::new();
    while offset + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[offset..offset + 4].try_into().expect("4")) as usize;
        boxes.push(String::from_utf8_lossy(&bytes[offset + 4..offset + 8]).to_string());
        assert!(size >= 8, "bad box size at {offset}");
        offset += size;
    }
    assert_eq!(offset, bytes.len(), "boxes do not tile the file: {boxes:?}");
    for b in ["moov", "mdat"] {
        assert!(boxes.iter().any(|x| x == b), "no {b} in {boxes:?}");
    }
}

#[test]
fn create_follow_events_and_download_the_mp4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &["--model", &tiny_model()]);
    let (status, health) = get(&server, "/healthz");
    assert_eq!((status, &health["models"]), (200, &json!(["tiny"])));

    let id = create(
        &server,
        &json!({"prompt": "a red fox", "width": 32, "height": 32, "frames": 5, "steps": 2, "seed": 7}),
    );
    let events = follow_events(&server.url, &id);
    let (last_kind, last) = events.last().expect("events");
    assert_eq!(
        (last_kind.as_str(), last["status"].as_str()),
        ("status", Some("completed"))
    );
    let job = wait_for(&server, &id, Duration::from_secs(5), ended);
    assert_eq!(job["status"], "completed");
    assert_eq!(
        (job["progress"].as_u64(), job["seed"].as_u64()),
        (Some(100), Some(7))
    );
    assert_eq!(
        (job["step"].as_u64(), job["total_steps"].as_u64()),
        (Some(2), Some(2))
    );
    for stage in ["encode", "denoise", "decode", "write", "generate"] {
        assert!(
            job["timings"][stage].as_f64().is_some(),
            "timing {stage} in {job}"
        );
    }
    assert!(job["completed_at"].as_f64() >= job["started_at"].as_f64());

    let content = format!("{}/v1/videos/{id}/content", server.url);
    let (status, headers, mp4) = call("GET", &content, None, &[]);
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "video/mp4");
    assert_mp4(&mp4);
    let (status, headers, part) = call("GET", &content, None, &[("range", "bytes=4-11")]);
    assert_eq!(status, 206);
    assert_eq!(part, &mp4[4..12]);
    assert_eq!(
        headers["content-range"].to_str().expect("ascii"),
        format!("bytes 4-11/{}", mp4.len())
    );
    let (status, _, _) = call("GET", &content, None, &[("range", "bytes=999999-")]);
    assert_eq!(status, 416);
    let (status, headers, png) = call("GET", &format!("{content}?variant=thumbnail"), None, &[]);
    assert_eq!(
        (status, headers["content-type"].to_str().expect("ascii")),
        (200, "image/png")
    );
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let (status, list) = get(&server, "/v1/videos?status=completed&limit=10");
    assert_eq!(
        (status, list["data"][0]["id"].as_str()),
        (200, Some(id.as_str()))
    );
    let (_, _, metrics) = call("GET", &format!("{}/metrics", server.url), None, &[]);
    let metrics = String::from_utf8(metrics).expect("utf-8");
    assert!(
        metrics.contains("wan_jobs{status=\"completed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wan_step_duration_seconds_count 2"),
        "{metrics}"
    );
    let (status, spec) = get(&server, "/openapi.json");
    assert_eq!(status, 200);
    assert!(spec["paths"]["/v1/videos/{id}/events"]["get"].is_object());

    let (status, _, _) = call(
        "DELETE",
        &format!("{}/v1/videos/{id}", server.url),
        None,
        &[],
    );
    assert_eq!(status, 200);
    assert!(
        !server.data.join("videos").join(&id).exists(),
        "files removed"
    );
    assert_eq!(get(&server, &format!("/v1/videos/{id}")).0, 404);
}

#[test]
fn bad_requests_are_rejected_with_the_field_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--model",
            &tiny_model(),
            "--max-frames",
            "81",
            "--max-body-bytes",
            "4096",
        ],
    );
    let cases = [
        (json!({"width": 32}), "prompt"),
        (json!({"prompt": " "}), "prompt"),
        (json!({"prompt": "x", "width": 33}), "width"),
        (json!({"prompt": "x", "height": 0}), "height"),
        (json!({"prompt": "x", "frames": 4}), "frames"),
        (json!({"prompt": "x", "frames": 85}), "frames"),
        (json!({"prompt": "x", "steps": 0}), "steps"),
        (json!({"prompt": "x", "steps": 101}), "steps"),
        (json!({"prompt": "x", "guidance": -1}), "guidance"),
        (json!({"prompt": "x", "shift": 0}), "shift"),
        (json!({"prompt": "x", "sampler": "ddim"}), "sampler"),
        (json!({"prompt": "x", "fps": 0}), "fps"),
        (json!({"prompt": "x", "seed": -1}), "seed"),
        (json!({"prompt": "x", "model": "nope"}), "model"),
        (json!({"prompt": "x", "task": "i2v"}), "task"),
        (json!({"prompt": "x", "priority": 1000}), "priority"),
        (
            json!({"prompt": "x", "webhook": "file:///etc/passwd"}),
            "webhook",
        ),
        (
            json!({"prompt": "x", "webhook": "http://127.0.0.1:1/", "webhook_events": ["done"]}),
            "webhook_events",
        ),
        (json!({"prompt": "x", "width": "wide"}), "width"),
        (json!({"prompt": "x", "colour": "red"}), "colour"),
    ];
    for (body, field) in &cases {
        let (status, err) = post(&server, "/v1/videos", body);
        assert_eq!(status, 400, "{body} -> {err}");
        assert_eq!(err["error"]["field"], *field, "{body} -> {err}");
        assert!(!err["error"]["message"].as_str().unwrap_or("").is_empty());
    }
    let (status, err) = post(&server, "/v1/videos", &json!({"prompt": "x", "width": 40}));
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("this server allows at most 1280"),
        "{err}"
    );
    let (status, err) = post(&server, "/v1/videos", &json!({"prompt": "x", "frames": 85}));
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("up to 81"),
        "{err}"
    );
    let (status, err) = post(
        &server,
        "/v1/batches",
        &json!({"requests": [{"prompt": "x"}, {"prompt": "y", "steps": 0}]}),
    );
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("requests[1].steps"))
    );
    let (status, _, body) = call(
        "POST",
        &format!("{}/v1/videos", server.url),
        Some("{\"prompt\": "),
        &[],
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let big = json!({"prompt": "x".repeat(5000)}).to_string();
    let (status, _, _) = call(
        "POST",
        &format!("{}/v1/videos", server.url),
        Some(&big),
        &[],
    );
    assert_eq!(status, 413);
    assert_eq!(get(&server, "/v1/videos?limit=0").0, 400);
    assert_eq!(get(&server, "/v1/videos?status=done").0, 400);
    assert_eq!(
        call("GET", &format!("{}/metrics", server.url), None, &[]).0,
        200
    );
    assert_eq!(
        get(&server, "/v1/videos?limit=5").1["data"],
        json!([]),
        "nothing was queued"
    );

    // Unknown ids and path traversal attempts.
    for path in [
        "/v1/videos/vid_00000000000000000000000000000000",
        "/v1/videos/vid_00000000000000000000000000000000/content",
        "/v1/videos/vid_00000000000000000000000000000000/events",
        "/v1/batches/batch_00000000000000000000000000000000",
        "/v1/videos/..%2F..%2Fetc%2Fpasswd",
        "/v1/videos/..%2Fjobs.sqlite/content",
        "/v1/videos/%2Fetc%2Fpasswd/content",
        "/v1/videos/vid_x/../../jobs.sqlite",
        "/v1/batches/..%2Fwebhook-secret",
        "/nope",
    ] {
        let (status, _, body) = call("GET", &format!("{}{path}", server.url), None, &[]);
        assert_eq!(status, 404, "{path}: {}", String::from_utf8_lossy(&body));
    }
    for path in [
        "/v1/videos/vid_00000000000000000000000000000000/cancel",
        "/v1/videos/..%2F/cancel",
    ] {
        assert_eq!(post(&server, path, &json!({})).0, 404, "{path}");
    }
    let (status, _, _) = call(
        "DELETE",
        &format!("{}/v1/videos/..%2Fjobs.sqlite", server.url),
        None,
        &[],
    );
    assert_eq!(status, 404);
    assert!(
        server.data.join("jobs.sqlite").is_file(),
        "the database is untouched"
    );
    let id = create(
        &server,
        &json!({"prompt": "x", "width": 32, "height": 32, "frames": 1, "steps": 1}),
    );
    let (status, _, _) = call(
        "GET",
        &format!(
            "{}/v1/videos/{id}/content?variant=..%2F..%2Fjobs.sqlite",
            server.url
        ),
        None,
        &[],
    );
    assert_eq!(status, 400);
}

#[test]
fn idempotent_create_returns_the_same_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &["--model", "diagnostic:0"]);
    let body =
        json!({"prompt": "a boat", "steps": 1, "width": 16, "height": 16, "frames": 1}).to_string();
    let url = format!("{}/v1/videos", server.url);
    let key = [("idempotency-key", "order-42")];
    let (s1, _, first) = call("POST", &url, Some(&body), &key);
    let (s2, headers, again) = call("POST", &url, Some(&body), &key);
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(json_of(&first)["id"], json_of(&again)["id"]);
    assert_eq!(headers["idempotent-replayed"], "true");
    let other = json!({"prompt": "a car"}).to_string();
    let (status, _, err) = call("POST", &url, Some(&other), &key);
    assert_eq!(
        (status, json_of(&err)["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
    let (_, list) = get(&server, "/v1/videos");
    assert_eq!(list["data"].as_array().expect("list").len(), 1);
}

#[test]
fn api_keys_are_required_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--model",
            "diagnostic:0",
            "--api-key",
            "key-one-123",
            "--api-key",
            "key-two-456",
        ],
    );
    let url = format!("{}/v1/videos", server.url);
    let body = json!({"prompt": "x", "steps": 1, "frames": 1}).to_string();
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong-key-1")],
        vec![("authorization", "key-one-123")],
    ] {
        let (status, h, err) = call("POST", &url, Some(&body), &headers);
        assert_eq!(status, 401, "{headers:?}");
        assert_eq!(h["www-authenticate"], "Bearer");
        assert_eq!(json_of(&err)["error"]["code"], "unauthorized");
    }
    for path in [
        "/v1/videos",
        "/metrics",
        "/openapi.json",
        "/v1/batches/batch_00000000000000000000000000000000",
    ] {
        assert_eq!(
            call("GET", &format!("{}{path}", server.url), None, &[]).0,
            401,
            "{path}"
        );
    }
    assert_eq!(
        call("GET", &format!("{}/healthz", server.url), None, &[]).0,
        200
    );
    for key in ["Bearer key-one-123", "Bearer key-two-456"] {
        let (status, _, _) = call("POST", &url, Some(&body), &[("authorization", key)]);
        assert_eq!(status, 202);
    }
}

#[test]
fn cancel_a_queued_and_a_running_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &["--model", "diagnostic:100"]);
    let body = json!({"prompt": "x", "steps": 50, "width": 16, "height": 16, "frames": 1});
    let running = create(&server, &body);
    let queued = create(&server, &body);
    wait_for(&server, &running, Duration::from_secs(10), |j| {
        j["step"].as_u64() >= Some(1)
    });

    let (status, job) = post(&server, &format!("/v1/videos/{queued}/cancel"), &json!({}));
    assert_eq!(
        (status, job["status"].as_str()),
        (200, Some("cancelled")),
        "queued job cancelled at once"
    );
    let asked = Instant::now();
    let (status, job) = post(&server, &format!("/v1/videos/{running}/cancel"), &json!({}));
    assert_eq!(
        (status, job["cancel_requested"].as_bool()),
        (200, Some(true))
    );
    let job = wait_for(&server, &running, Duration::from_secs(5), ended);
    eprintln!(
        "running job cancelled {:.0} ms after the request",
        asked.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(job["status"], "cancelled");
    assert!(
        job["step"].as_u64() < Some(50),
        "stopped between steps: {job}"
    );
    assert_eq!(
        get(&server, &format!("/v1/videos/{queued}")).1["status"],
        "cancelled"
    );
    let (status, _, _) = call(
        "GET",
        &format!("{}/v1/videos/{running}/content", server.url),
        None,
        &[],
    );
    assert_eq!(status, 409);
    assert!(!server.data.join("videos").join(&running).exists());
}

/// One received webhook: lower-cased headers and the body.
type Delivery = (Vec<(String, String)>, Vec<u8>);

/// Accepts webhook POSTs on a loopback port.
fn webhook_listener() -> (String, mpsc::Receiver<Delivery>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut headers = Vec::new();
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.trim().split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
            let _ = tx.send((headers, body));
        }
    });
    (url, rx)
}

#[test]
fn batch_with_signed_webhooks() {
    let (hook, deliveries) = webhook_listener();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &["--model", &tiny_model()]);
    let requests: Vec<Value> = (0..3)
        .map(|i| {
            json!({"prompt": format!("scene {i}"), "width": 32, "height": 32, "frames": 1, "steps": 1,
                   "webhook": hook, "webhook_events": ["completed"]})
        })
        .collect();
    let (status, batch) = post(
        &server,
        "/v1/batches",
        &json!({"requests": requests, "webhook": hook}),
    );
    assert_eq!(status, 202, "{batch}");
    let batch_id = batch["id"].as_str().expect("id").to_string();
    assert_eq!(batch["job_ids"].as_array().expect("ids").len(), 3);

    let signer = wan_serve::WebhookSigner::from_secret(SECRET).expect("secret");
    let mut job_hooks = 0;
    let mut batch_hooks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while batch_hooks.is_empty() || job_hooks < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let (headers, body) = deliveries.recv_timeout(left).expect("webhook in time");
        let h = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name} header"))
        };
        let ts: i64 = h("webhook-timestamp").parse().expect("timestamp");
        assert!(
            signer.verify(&h("webhook-id"), ts, &body, &h("webhook-signature")),
            "bad signature"
        );
        assert!(!signer.verify(&h("webhook-id"), ts + 1, &body, &h("webhook-signature")));
        let payload = json_of(&body);
        match h("wan-event").as_str() {
            "video.completed" => {
                assert_eq!(payload["status"], "completed");
                assert_eq!(payload["batch_id"], batch_id.as_str());
                job_hooks += 1;
            }
            "batch.completed" => batch_hooks.push(payload),
            other => panic!("unexpected event {other}"),
        }
    }
    let payload = &batch_hooks[0];
    assert_eq!(
        (payload["id"].as_str(), payload["status"].as_str()),
        (Some(batch_id.as_str()), Some("completed"))
    );
    assert_eq!(payload["counts"]["completed"], 3);
    let (status, batch) = get(&server, &format!("/v1/batches/{batch_id}"));
    assert_eq!((status, &batch["counts"]["completed"]), (200, &json!(3)));
    assert!(
        deliveries.recv_timeout(Duration::from_millis(500)).is_err(),
        "the batch webhook fires once"
    );
}

#[test]
fn kill_9_during_a_job_then_restart_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &["--model", "diagnostic:100"]);
    let slow = json!({"prompt": "x", "steps": 8, "width": 16, "height": 16, "frames": 1});
    let running = create(&server, &slow);
    let queued: Vec<String> = (0..3)
        .map(|i| create(&server, &json!({"prompt": format!("q{i}"), "steps": 1, "width": 16, "height": 16, "frames": 1})))
        .collect();
    wait_for(&server, &running, Duration::from_secs(10), |j| {
        j["step"].as_u64() >= Some(2)
    });
    server.kill9();

    let server = Server::start(&data, &["--model", "diagnostic:100"]);
    let job = wait_for(&server, &running, Duration::from_secs(20), ended);
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["attempts"], 2, "the interrupted attempt is recorded");
    for id in &queued {
        assert_eq!(
            wait_for(&server, id, Duration::from_secs(20), ended)["status"],
            "completed"
        );
    }
    let (_, _, mp4) = call(
        "GET",
        &format!("{}/v1/videos/{running}/content", server.url),
        None,
        &[],
    );
    assert_mp4(&mp4);

    // Past the retry limit the job fails with a reason instead.
    let mut server = server;
    let doomed = create(&server, &slow);
    wait_for(&server, &doomed, Duration::from_secs(10), |j| {
        j["step"].as_u64() >= Some(1)
    });
    server.kill9();
    let server = Server::start(&data, &["--model", "diagnostic:100", "--max-attempts", "1"]);
    let job = wait_for(&server, &doomed, Duration::from_secs(10), ended);
    assert_eq!(
        (job["status"].as_str(), job["error"]["code"].as_str()),
        (Some("failed"), Some("worker_lost"))
    );
    assert!(
        job["error"]["message"]
            .as_str()
            .expect("reason")
            .contains("retry limit 1"),
        "{job}"
    );
    let (_, list) = get(&server, "/v1/videos?limit=100");
    let submitted = 5;
    let all = list["data"].as_array().expect("list");
    let completed = all.iter().filter(|j| j["status"] == "completed").count();
    eprintln!(
        "kill -9: submitted {submitted}, completed {completed}, failed after retry limit 1, lost {}",
        submitted - all.len()
    );
    assert_eq!(all.len(), submitted, "nothing lost");
}

#[test]
fn sigterm_requeues_the_running_job_and_restart_finishes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &["--model", "diagnostic:100"]);
    // 100 steps of 100 ms: it cannot finish before the shutdown completes.
    let id = create(
        &server,
        &json!({"prompt": "x", "steps": 100, "width": 16, "height": 16, "frames": 1}),
    );
    wait_for(&server, &id, Duration::from_secs(10), |j| {
        j["step"].as_u64() >= Some(1)
    });
    let (tx, rx) = mpsc::channel();
    let base = server.url.clone();
    let stream_id = id.clone();
    let (open_tx, open_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let events = follow_events_from(&base, &stream_id, Some(open_tx));
        let _ = tx.send(events);
    });
    open_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("event stream open");
    let term = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "clean exit: {status}");
    let events = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the event stream ends at shutdown");
    assert!(
        events.iter().all(|(_, e)| e["status"] != "completed"),
        "{events:?}"
    );
    let restarted_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let server = Server::start(&data, &["--model", "diagnostic:0"]);
    let job = wait_for(&server, &id, Duration::from_secs(10), ended);
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_u64()),
        (Some("completed"), Some(1)),
        "re-queued at shutdown without counting an attempt: {job}"
    );
    assert!(
        job["started_at"].as_f64().expect("started") >= restarted_at - 0.01,
        "the completing attempt ran after the restart: {job}"
    );
}

#[test]
fn fifty_concurrent_creates_all_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("data"),
        &["--model", &tiny_model(), "--workers", "2"],
    );
    let url = format!("{}/v1/videos", server.url);
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = json!({"prompt": format!("clip {i}"), "width": 32, "height": 32, "frames": 1,
                                  "steps": 1, "guidance": 1.0, "priority": i % 3});
                let (status, _, job) = call("POST", &url, Some(&body.to_string()), &[]);
                assert_eq!(status, 202);
                json_of(&job)["id"].as_str().expect("id").to_string()
            })
        })
        .collect();
    let ids: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().expect("create"))
        .collect();
    let mut completed = 0;
    let mut added = Vec::new();
    for id in &ids {
        let job = wait_for(&server, id, Duration::from_secs(60), ended);
        assert_eq!(job["status"], "completed", "{job}");
        assert_eq!(job["attempts"], 1, "claimed by exactly one worker: {job}");
        completed += 1;
        let wall =
            job["completed_at"].as_f64().expect("t") - job["started_at"].as_f64().expect("t");
        added.push(wall - job["timings"]["generate"].as_f64().expect("generate"));
    }
    let (_, list) = get(&server, "/v1/videos?limit=100");
    let lost = ids.len() - list["data"].as_array().expect("list").len();
    added.sort_by(f64::total_cmp);
    eprintln!(
        "50 concurrent creates: submitted {}, completed {completed}, lost {lost}; worker overhead per job (start..end minus generate): median {:.1} ms",
        ids.len(),
        added[added.len() / 2] * 1e3
    );
    assert_eq!((completed, lost), (50, 0));
}

#[test]
fn added_latency_per_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &["--model", "diagnostic:0"]);
    let mut added = Vec::new();
    for i in 0..20 {
        let start = Instant::now();
        let id = create(
            &server,
            &json!({"prompt": format!("p{i}"), "steps": 1, "width": 16, "height": 16, "frames": 1}),
        );
        let events = follow_events(&server.url, &id);
        let wall = start.elapsed().as_secs_f64();
        let last = &events.last().expect("events").1;
        assert_eq!(last["status"], "completed");
        added.push(wall - last["timings"]["generate"].as_f64().expect("generate"));
    }
    added.sort_by(f64::total_cmp);
    eprintln!(
        "server added latency per job (create -> completed event, minus generation): median {:.1} ms, max {:.1} ms over {} jobs",
        added[added.len() / 2] * 1e3,
        added[added.len() - 1] * 1e3,
        added.len()
    );
}

#[test]
fn wan_generate_with_server_submits_and_downloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("data"),
        &["--model", &tiny_model(), "--api-key", "cli-key-1234"],
    );
    let out = dir.path().join("remote.mp4");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wan"))
            .args(["generate", "a small boat", "--server", &server.url])
            .args([
                "--width", "32", "--height", "32", "--frames", "5", "--steps", "2",
            ])
            .args(["--seed", "3", "--json", "-o"])
            .arg(&out)
            .args(extra)
            .env_remove("WAN_MODEL")
            .env_remove("WAN_API_KEY")
            .output()
            .expect("run wan generate")
    };
    let done = run(&["--api-key", "cli-key-1234"]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let summary = json_of(&done.stdout);
    assert_eq!(
        (summary["status"].as_str(), summary["seed"].as_u64()),
        (Some("completed"), Some(3))
    );
    assert_mp4(&std::fs::read(&out).expect("downloaded"));
    let refused = run(&[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn heartbeats_keep_a_job_longer_than_its_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("data"),
        &["--model", "diagnostic:100", "--lease-seconds", "0.3"],
    );
    // 12 steps of 100 ms: four times the lease.
    let id = create(
        &server,
        &json!({"prompt": "x", "steps": 12, "width": 16, "height": 16, "frames": 1}),
    );
    let job = wait_for(&server, &id, Duration::from_secs(10), ended);
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_u64()),
        (Some("completed"), Some(1)),
        "{job}"
    );
}

#[test]
fn higher_priority_runs_first_then_oldest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &["--model", "diagnostic:50"]);
    let job = |prompt: &str, steps: u32, priority: i32| json!({"prompt": prompt, "steps": steps, "width": 16, "height": 16, "frames": 1, "priority": priority});
    let blocker = create(&server, &job("blocker", 10, 0));
    let running = wait_for(&server, &blocker, Duration::from_secs(10), |j| {
        j["step"].as_u64() >= Some(1)
    });
    assert!(running["eta_seconds"].as_f64().is_some(), "{running}");
    let low = create(&server, &job("low", 1, -5));
    let old = create(&server, &job("old", 1, 5));
    let new = create(&server, &job("new", 1, 5));
    let started = |id: &str| {
        wait_for(&server, id, Duration::from_secs(10), ended)["started_at"]
            .as_f64()
            .expect("started")
    };
    let (old_t, new_t, low_t) = (started(&old), started(&new), started(&low));
    assert!(old_t < new_t && new_t < low_t, "{old_t} {new_t} {low_t}");
}
