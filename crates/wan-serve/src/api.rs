//! The HTTP API: routes, validation, authentication and error bodies.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;
use tower_http::services::ServeFile;

use crate::ids;
use crate::job::{JobRecord, JobStatus, VideoRequest, WebhookEvent, unix_millis};
use crate::service::{Service, batch_json};
use crate::store::{Created, NewJob};

/// Every route as `(method, path)`, as listed in the OpenAPI document.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/videos"),
    ("get", "/v1/videos"),
    ("get", "/v1/videos/{id}"),
    ("delete", "/v1/videos/{id}"),
    ("get", "/v1/videos/{id}/content"),
    ("get", "/v1/videos/{id}/events"),
    ("post", "/v1/videos/{id}/cancel"),
    ("post", "/v1/batches"),
    ("get", "/v1/batches/{id}"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Longest accepted webhook URL.
const MAX_URL: usize = 2048;
/// Allowed priorities.
const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -100..=100;
/// Largest page of `GET /v1/videos`.
const MAX_PAGE: usize = 100;

/// An error answer: `{"error": {"code", "message", "field"}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    field: Option<String>,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            field: None,
            message: message.into(),
        }
    }

    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message: format!("{field}: {message}"),
            field: Some(field),
        }
    }

    fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} with id {id:?}"),
        )
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {e}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the server failed; see its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"code": self.code, "message": self.message, "field": self.field}});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

type ApiResult = Result<Response, ApiError>;

/// The router of every route, with authentication and the body limit.
pub(crate) fn router(service: Arc<Service>) -> Router {
    let body_limit = service.config.limits.max_body_bytes;
    let protected = Router::new()
        .route("/v1/videos", post(create_video).get(list_videos))
        .route("/v1/videos/{id}", get(get_video).delete(delete_video))
        .route("/v1/videos/{id}/content", get(video_content))
        .route("/v1/videos/{id}/events", get(video_events))
        .route("/v1/videos/{id}/cancel", post(cancel_video))
        .route("/v1/batches", post(create_batch))
        .route("/v1/batches/{id}", get(get_batch))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&service),
            require_key,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(service)
}

async fn require_key(State(service): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let keys = &service.config.api_keys;
    if keys.is_empty() {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    let ok = given.is_some_and(|given| {
        keys.iter().fold(false, |found, key| {
            let same = key.len() == given.len()
                && bool::from(subtle::ConstantTimeEq::ct_eq(
                    key.as_bytes(),
                    given.as_bytes(),
                ));
            found | same
        })
    });
    if ok {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: send Authorization: Bearer <key>",
        )
        .into_response()
    }
}

/// Parses a JSON body, naming the offending field on error.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], prefix: &str) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner().to_string();
        let path = e.path().to_string();
        let unknown = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| inner.strip_prefix(p))
            .and_then(|rest| rest.split('`').next());
        let field = match (unknown, path.as_str()) {
            (Some(name), ".") => name.to_string(),
            (None, ".") => "body".to_string(),
            (_, p) => p.to_string(),
        };
        let field = format!("{prefix}{field}");
        let field = field.trim_start_matches('.').to_string();
        let message = if e.inner().is_syntax() || e.inner().is_eof() {
            format!("the body is not valid JSON: {inner}")
        } else {
            inner
        };
        ApiError::invalid(field, message)
    })
}

fn body_bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "body_too_large",
                format!("the request body is larger than this server's limit of {limit} bytes"),
            )
        } else {
            ApiError::new(status, "invalid_request", rejection.body_text())
        }
    })
}

fn check_webhook_url(field: &str, url: &str) -> Result<(), ApiError> {
    if url.len() > MAX_URL {
        return Err(ApiError::invalid(
            field,
            format!("is longer than {MAX_URL} characters"),
        ));
    }
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|e| ApiError::invalid(field, format!("{url:?} is not a URL: {e}")))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(ApiError::invalid(
            field,
            format!("{url:?} is not allowed: use an absolute http:// or https:// URL"),
        ));
    }
    Ok(())
}

/// Validates one video request into a job to insert; errors name `prefix` + the field.
fn new_job(
    service: &Service,
    req: VideoRequest,
    prefix: &str,
    idempotency: Option<(String, String)>,
) -> Result<NewJob, ApiError> {
    let models = service.generator.models();
    let model = match &req.model {
        Some(m) => m.clone(),
        None => models.first().cloned().unwrap_or_default(),
    };
    let Some(defaults) = service.generator.defaults(&model) else {
        return Err(ApiError::invalid(
            format!("{prefix}model"),
            format!(
                "{model:?} is not served here: use one of {}",
                models.join(", ")
            ),
        ));
    };
    if let Some(task) = &req.task
        && task != "t2v"
    {
        return Err(ApiError::invalid(
            format!("{prefix}task"),
            format!("{task:?} is not supported: use t2v"),
        ));
    }
    let priority = req.priority.unwrap_or(0);
    if !PRIORITY_RANGE.contains(&priority) {
        return Err(ApiError::invalid(
            format!("{prefix}priority"),
            format!(
                "{priority} is not allowed: use {} to {}",
                PRIORITY_RANGE.start(),
                PRIORITY_RANGE.end()
            ),
        ));
    }
    if let Some(url) = &req.webhook {
        check_webhook_url(&format!("{prefix}webhook"), url)?;
    }
    let webhook_events = match &req.webhook_events {
        None => WebhookEvent::ALL.to_vec(),
        Some(_) if req.webhook.is_none() => {
            return Err(ApiError::invalid(
                format!("{prefix}webhook_events"),
                "needs a webhook URL",
            ));
        }
        Some(names) => names
            .iter()
            .map(|n| {
                WebhookEvent::parse(n).ok_or_else(|| {
                    ApiError::invalid(
                        format!("{prefix}webhook_events"),
                        format!("{n:?} is unknown: use started, progress or completed"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let resolved = req
        .generate_request()
        .validate(&defaults, u64::from(rand::random::<u32>()))
        .map_err(|e| {
            let limits = &service.config.limits;
            let server_max = match e.field {
                "width" | "height" => Some(limits.max_side),
                "frames" => Some(limits.max_frames),
                "steps" => Some(limits.max_steps),
                _ => None,
            };
            let message = match server_max {
                Some(max) => format!("{} (this server allows at most {max})", e.message),
                None => e.message,
            };
            ApiError::invalid(format!("{prefix}{}", e.field), message)
        })?;
    let limits = &service.config.limits;
    if resolved.frames > limits.max_frames {
        return Err(ApiError::invalid(
            format!("{prefix}frames"),
            format!(
                "{} is more than this server allows: use 4k+1 frames up to {}",
                resolved.frames, limits.max_frames
            ),
        ));
    }
    for (field, v) in [("width", resolved.width), ("height", resolved.height)] {
        if v > limits.max_side {
            return Err(ApiError::invalid(
                format!("{prefix}{field}"),
                format!(
                    "{v} is more than this server allows: use a multiple of 16 up to {}",
                    limits.max_side
                ),
            ));
        }
    }
    if resolved.steps > limits.max_steps {
        return Err(ApiError::invalid(
            format!("{prefix}steps"),
            format!(
                "{} is more than this server allows: use 1 to {}",
                resolved.steps, limits.max_steps
            ),
        ));
    }
    Ok(NewJob {
        id: ids::new_job_id(),
        model,
        priority,
        webhook: req.webhook.clone(),
        webhook_events,
        request: req,
        resolved,
        idempotency,
        created_at: unix_millis(),
    })
}

fn job_response(status: StatusCode, job: &JobRecord) -> Response {
    (status, axum::Json(job.to_json(unix_millis()))).into_response()
}

async fn create_video(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body_bytes(body, service.config.limits.max_body_bytes)?;
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "Idempotency-Key",
                        format!("use 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
                    )
                })?;
            let digest: String = Sha256::digest(&body)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            Some((key.to_string(), digest))
        }
    };
    let req: VideoRequest = parse_body(&body, "")?;
    let job = new_job(&service, req, "", idempotency)?;
    match service.store.create(job).map_err(ApiError::internal)? {
        Created::New(rec) => {
            service.metrics.job_created(1);
            service.notify_workers();
            Ok(job_response(StatusCode::ACCEPTED, &rec))
        }
        Created::Existing(rec) => {
            let mut resp = job_response(StatusCode::ACCEPTED, &rec);
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(resp)
        }
        Created::KeyConflict(id) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            format!("this Idempotency-Key was used for job {id} with a different body"),
        )),
    }
}

fn find_job(service: &Service, id: &str) -> Result<JobRecord, ApiError> {
    if !ids::is_job_id(id) {
        return Err(ApiError::not_found("video", id));
    }
    service
        .store
        .get(id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("video", id))
}

async fn get_video(State(service): State<Arc<Service>>, Path(id): Path<String>) -> ApiResult {
    Ok(job_response(StatusCode::OK, &find_job(&service, &id)?))
}

async fn list_videos(
    State(service): State<Arc<Service>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> ApiResult {
    let mut status = None;
    let mut limit = 20;
    let mut after = None;
    for (key, value) in &params {
        match key.as_str() {
            "status" => {
                status = Some(JobStatus::parse(value).ok_or_else(|| {
                    ApiError::invalid(
                        "status",
                        format!(
                            "{value:?} is unknown: use queued, in_progress, completed, failed or cancelled"
                        ),
                    )
                })?)
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid("limit", format!("{value:?}: use 1 to {MAX_PAGE}"))
                    })?
            }
            "after" => {
                if !ids::is_job_id(value) {
                    return Err(ApiError::invalid("after", format!("{value:?} is not a job id")));
                }
                after = Some(value.as_str());
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    "unknown query parameter: use status, limit or after",
                ));
            }
        }
    }
    let Some(mut jobs) = service
        .store
        .list(status, limit + 1, after)
        .map_err(ApiError::internal)?
    else {
        return Err(ApiError::invalid(
            "after",
            format!("no job with id {:?}", after.unwrap_or_default()),
        ));
    };
    let has_more = jobs.len() > limit;
    jobs.truncate(limit);
    let now = unix_millis();
    let data: Vec<Value> = jobs.iter().map(|j| j.to_json(now)).collect();
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "last_id": jobs.last().map(|j| j.id.clone()),
    }))
    .into_response())
}

async fn video_content(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
    req: Request,
) -> ApiResult {
    let job = find_job(&service, &id)?;
    let paths = service.output_paths(&job.id);
    let path = match params.get("variant").map(String::as_str) {
        None | Some("video") => paths.video,
        Some("thumbnail") => paths.thumbnail,
        Some(other) => {
            return Err(ApiError::invalid(
                "variant",
                format!("{other:?} is unknown: use video or thumbnail"),
            ));
        }
    };
    if let Some(other) = params.keys().find(|k| k.as_str() != "variant") {
        return Err(ApiError::invalid(
            other.as_str(),
            "unknown query parameter: use variant",
        ));
    }
    if job.status != JobStatus::Completed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!(
                "video {id} is {}; its content exists once completed",
                job.status.as_str()
            ),
        ));
    }
    if !path.is_file() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "content_missing",
            format!("the output of video {id} is no longer on disk"),
        ));
    }
    let resp = ServeFile::new(&path)
        .try_call(req)
        .await
        .map_err(ApiError::internal)?;
    Ok(resp.map(Body::new))
}

/// The SSE stream's state.
struct EventStream {
    service: Arc<Service>,
    id: String,
    rx: tokio::sync::broadcast::Receiver<crate::events::JobEvent>,
    first: Option<Value>,
    ended: bool,
}

fn status_event(data: &Value) -> Event {
    Event::default().event("status").data(data.to_string())
}

async fn next_event(mut st: EventStream) -> Option<(Result<Event, Infallible>, EventStream)> {
    if let Some(first) = st.first.take() {
        st.ended = first["status"]
            .as_str()
            .and_then(JobStatus::parse)
            .is_some_and(JobStatus::is_terminal)
            || st.service.shutting_down();
        return Some((Ok(status_event(&first)), st));
    }
    if st.ended {
        return None;
    }
    loop {
        match st.rx.recv().await {
            Ok(ev) if ev.job_id.is_empty() => return None,
            Ok(ev) if ev.job_id == st.id => {
                st.ended = ev.terminal;
                let event = Event::default().event(ev.kind).data(ev.data.to_string());
                return Some((Ok(event), st));
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                let job = st.service.store.get(&st.id).ok().flatten()?;
                st.ended = job.status.is_terminal();
                return Some((Ok(status_event(&job.to_json(unix_millis()))), st));
            }
            Err(RecvError::Closed) => return None,
        }
    }
}

async fn video_events(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let rx = service.hub.subscribe();
    let job = find_job(&service, &id)?;
    let state = EventStream {
        service: Arc::clone(&service),
        id: job.id.clone(),
        rx,
        first: Some(job.to_json(unix_millis())),
        ended: false,
    };
    Ok(Sse::new(stream::unfold(state, next_event)).keep_alive(KeepAlive::default()))
}

async fn cancel_video(State(service): State<Arc<Service>>, Path(id): Path<String>) -> ApiResult {
    let before = find_job(&service, &id)?;
    if matches!(before.status, JobStatus::Completed | JobStatus::Failed) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_ended",
            format!("video {id} already ended as {}", before.status.as_str()),
        ));
    }
    let job = service
        .store
        .cancel(&id, unix_millis(), &Service::end_webhook)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("video", &id))?;
    match job.status {
        JobStatus::InProgress => service.flag_cancel(&id),
        JobStatus::Cancelled if before.status != JobStatus::Cancelled => service.job_ended(&job),
        _ => {}
    }
    Ok(job_response(StatusCode::OK, &job))
}

async fn delete_video(State(service): State<Arc<Service>>, Path(id): Path<String>) -> ApiResult {
    find_job(&service, &id)?;
    match service.store.delete(&id).map_err(ApiError::internal)? {
        None => Err(ApiError::not_found("video", &id)),
        Some(Err(_running)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "in_progress",
            format!("video {id} is being generated: cancel it first"),
        )),
        Some(Ok(job)) => {
            let dir = service.job_dir(&job.id);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(ApiError::internal(format!(
                    "removing {}: {e}",
                    dir.display()
                )));
            }
            service.job_removed(&job);
            Ok(
                axum::Json(json!({"id": job.id, "object": "video", "deleted": true}))
                    .into_response(),
            )
        }
    }
}

/// The body of `POST /v1/batches`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    requests: Vec<Value>,
    #[serde(default)]
    webhook: Option<String>,
}

async fn create_batch(
    State(service): State<Arc<Service>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body_bytes(body, service.config.limits.max_body_bytes)?;
    let batch: BatchRequest = parse_body(&body, "")?;
    let max = service.config.limits.max_batch;
    if batch.requests.is_empty() || batch.requests.len() > max {
        return Err(ApiError::invalid(
            "requests",
            format!("has {} entries: use 1 to {max}", batch.requests.len()),
        ));
    }
    if let Some(url) = &batch.webhook {
        check_webhook_url("webhook", url)?;
    }
    let mut jobs = Vec::with_capacity(batch.requests.len());
    for (i, value) in batch.requests.iter().enumerate() {
        let prefix = format!("requests[{i}].");
        let text = value.to_string();
        let req: VideoRequest = parse_body(text.as_bytes(), &prefix)?;
        jobs.push(new_job(&service, req, &prefix, None)?);
    }
    let n = jobs.len() as u64;
    let rec = service
        .store
        .create_batch(
            &ids::new_batch_id(),
            batch.webhook.as_deref(),
            jobs,
            unix_millis(),
        )
        .map_err(ApiError::internal)?;
    service.metrics.job_created(n);
    service.notify_workers();
    Ok((StatusCode::ACCEPTED, axum::Json(batch_json(&rec))).into_response())
}

async fn get_batch(State(service): State<Arc<Service>>, Path(id): Path<String>) -> ApiResult {
    if !ids::is_batch_id(&id) {
        return Err(ApiError::not_found("batch", &id));
    }
    let batch = service
        .store
        .batch(&id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("batch", &id))?;
    Ok(axum::Json(batch_json(&batch)).into_response())
}

async fn healthz(State(service): State<Arc<Service>>) -> ApiResult {
    service.store.counts().map_err(ApiError::internal)?;
    Ok(axum::Json(json!({"status": "ok", "models": service.generator.models()})).into_response())
}

async fn metrics(State(service): State<Arc<Service>>) -> ApiResult {
    let counts = service.store.counts().map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        service.metrics.render(&counts),
    )
        .into_response())
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_lists_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        for (method, path) in ROUTES {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing from openapi.json"
            );
        }
        let listed: usize = doc["paths"]
            .as_object()
            .expect("paths")
            .values()
            .map(|ops| ops.as_object().map_or(0, |o| o.len()))
            .sum();
        assert_eq!(
            listed,
            ROUTES.len(),
            "openapi.json lists a route the server lacks"
        );
    }

    #[test]
    fn body_errors_name_the_field() {
        let err = parse_body::<VideoRequest>(br#"{"prompt": "x", "width": "big"}"#, "")
            .expect_err("bad type");
        assert_eq!(err.field.as_deref(), Some("width"));
        let err = parse_body::<VideoRequest>(br#"{"prompt": "x", "colour": 1}"#, "")
            .expect_err("unknown");
        assert_eq!(err.field.as_deref(), Some("colour"));
        let err = parse_body::<VideoRequest>(br#"{"width": 32}"#, "").expect_err("no prompt");
        assert_eq!(err.field.as_deref(), Some("prompt"));
        let err = parse_body::<VideoRequest>(b"{", "").expect_err("syntax");
        assert!(err.message.contains("not valid JSON"), "{}", err.message);
    }

    #[test]
    fn webhook_urls_must_be_absolute_http() {
        check_webhook_url("webhook", "http://127.0.0.1:9/hook").expect("http");
        check_webhook_url("webhook", "https://example.com/h").expect("https");
        for bad in ["file:///etc/passwd", "/relative", "ftp://x/y", "not a url"] {
            assert!(check_webhook_url("webhook", bad).is_err(), "{bad}");
        }
    }
}
