//! A generator that fails or panics fails the job with a reason; the worker keeps serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wan_pipeline::{ModelDefaults, Progress, ResolvedRequest};
use wan_serve::{
    BackgroundServer, GenerateError, GenerateReport, Generator, OutputPaths, ServerConfig,
};

/// Fails on prompt "fail", panics on prompt "panic", otherwise writes nothing and succeeds.
struct Flaky;

impl Generator for Flaky {
    fn models(&self) -> Vec<String> {
        vec!["flaky".into()]
    }

    fn defaults(&self, _model: &str) -> Option<ModelDefaults> {
        Some(ModelDefaults {
            width: 16,
            height: 16,
            frames: 1,
            steps: 1,
            guidance: 1.0,
            shift: 1.0,
            sampler: "euler".into(),
            fps: 8,
            negative_prompt: String::new(),
        })
    }

    fn generate(
        &self,
        _model: &str,
        request: &ResolvedRequest,
        _output: &OutputPaths,
        _progress: &mut dyn Progress,
    ) -> Result<GenerateReport, GenerateError> {
        match request.prompt.as_str() {
            "fail" => Err(GenerateError::Failed {
                code: "generation_failed",
                message: "out of memory".into(),
            }),
            "panic" => panic!("boom"),
            _ => Ok(GenerateReport::default()),
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
}

fn create(base: &str, prompt: &str) -> String {
    let mut resp = agent()
        .post(&format!("{base}/v1/videos"))
        .header("content-type", "application/json")
        .send(json!({ "prompt": prompt }).to_string())
        .expect("create");
    assert_eq!(resp.status().as_u16(), 202);
    let job: Value =
        serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("json");
    job["id"].as_str().expect("id").to_string()
}

fn wait_ended(base: &str, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let mut resp = agent()
            .get(&format!("{base}/v1/videos/{id}"))
            .call()
            .expect("get");
        let job: Value =
            serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("json");
        if matches!(
            job["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        ) {
            return job;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{job}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn failures_and_panics_fail_the_job_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        ..ServerConfig::default()
    };
    let server = BackgroundServer::start(config, Arc::new(Flaky)).expect("start");
    let base = format!("http://{}", server.addr());
    let failed = wait_ended(&base, &create(&base, "fail"));
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "generation_failed");
    assert_eq!(failed["error"]["message"], "out of memory");
    let panicked = wait_ended(&base, &create(&base, "panic"));
    assert_eq!(panicked["error"]["code"], "generation_panicked");
    assert!(
        panicked["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("boom")),
        "{panicked}"
    );
    let ok = wait_ended(&base, &create(&base, "fine"));
    assert_eq!(ok["status"], "completed", "the worker survived the panic");
    server.shutdown().expect("shutdown");
}
