//! Webhooks are retried with backoff under the same message id, and a webhook that never
//! answers does not affect the job.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wan_serve::{BackgroundServer, DiagnosticGenerator, ServerConfig, WebhookSigner};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One received webhook: lower-cased headers and the body.
type Delivery = (Vec<(String, String)>, Vec<u8>);

/// Answers 500 to the first POST and 204 to the others.
fn flaky_listener() -> (String, mpsc::Receiver<Delivery>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
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
            let answer: &[u8] = if n == 0 {
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
            };
            let _ = stream.write_all(answer);
            let _ = tx.send((headers, body));
        }
    });
    (url, rx)
}

fn header(d: &Delivery, name: &str) -> String {
    d.0.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {name} header"))
}

fn request(method: &str, url: &str, body: Option<Value>) -> Value {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut resp = match body {
        Some(b) => agent
            .post(url)
            .header("content-type", "application/json")
            .send(b.to_string()),
        None if method == "GET" => agent.get(url).call(),
        None => panic!("unsupported"),
    }
    .expect("request");
    let text = resp.body_mut().read_to_string().expect("body");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

#[test]
fn failed_deliveries_are_retried_and_never_fail_the_job() {
    let (hook, deliveries) = flaky_listener();
    let dead = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}/gone", dead.local_addr().expect("addr"));
    drop(dead);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        webhook_secret: Some(SECRET.into()),
        webhook_attempts: 3,
        webhook_backoff_ms: 50,
        ..ServerConfig::default()
    };
    let server =
        BackgroundServer::start(config, Arc::new(DiagnosticGenerator::new(Duration::ZERO)))
            .expect("start");
    let base = format!("http://{}", server.addr());
    let body = |url: &str| {
        json!({"prompt": "x", "steps": 1, "width": 16, "height": 16, "frames": 1,
               "webhook": url, "webhook_events": ["completed"]})
    };
    let job = request("POST", &format!("{base}/v1/videos"), Some(body(&hook)));
    let id = job["id"].as_str().expect("id").to_string();
    let doomed = request("POST", &format!("{base}/v1/videos"), Some(body(&dead_url)));

    let first = deliveries
        .recv_timeout(Duration::from_secs(10))
        .expect("first try");
    let second = deliveries
        .recv_timeout(Duration::from_secs(10))
        .expect("retry");
    assert_eq!(header(&first, "webhook-id"), header(&second, "webhook-id"));
    let signer = WebhookSigner::from_secret(SECRET).expect("secret");
    for d in [&first, &second] {
        let ts: i64 = header(d, "webhook-timestamp").parse().expect("timestamp");
        assert!(signer.verify(
            &header(d, "webhook-id"),
            ts,
            &d.1,
            &header(d, "webhook-signature")
        ));
        let payload: Value = serde_json::from_slice(&d.1).expect("json");
        assert_eq!(
            (payload["id"].as_str(), payload["status"].as_str()),
            (Some(id.as_str()), Some("completed"))
        );
    }
    assert!(
        deliveries.recv_timeout(Duration::from_millis(300)).is_err(),
        "delivered once it succeeded"
    );

    let start = Instant::now();
    loop {
        let metrics = match request("GET", &format!("{base}/metrics"), None) {
            Value::String(text) => text,
            other => panic!("metrics not text: {other}"),
        };
        if metrics.contains("wan_webhooks_total{result=\"failed\"} 1") {
            assert!(
                metrics.contains("wan_webhooks_total{result=\"delivered\"} 1"),
                "{metrics}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{metrics}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let doomed = request(
        "GET",
        &format!("{base}/v1/videos/{}", doomed["id"].as_str().expect("id")),
        None,
    );
    assert_eq!(
        doomed["status"], "completed",
        "an unreachable webhook does not fail the job"
    );
    server.shutdown().expect("shutdown");
}
