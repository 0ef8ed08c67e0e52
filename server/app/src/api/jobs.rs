//! `/jobs`: submit, list, status, cancel, and the HTTP sources and sinks of running jobs.

use super::body;
use super::error::{ApiError, ErrorBody};
use super::guard::{media, require_content_type};
use super::{AppState, Tenant};
use crate::jobs::{JobSummary, JobView, SavepointView, UpgradeRequest};
use crate::store::{StartFrom, UpgradeRecord};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use eddy_engine::io::{EventFormat, IngestError, ValueSink};
use futures::Stream;
use serde::Deserialize;
use std::convert::Infallible;

/// Where a submitted job starts.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SubmitQuery {
    /// A savepoint of this tenant to start from (its state, timers and input positions).
    savepoint: Option<String>,
    /// With `savepoint`: start even if it holds state of operators the job does not have (that state is dropped).
    #[serde(default)]
    allow_non_restored_state: bool,
}

/// Submits a job: the body is its spec in YAML or JSON. Every problem of the spec is reported at once.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    params(SubmitQuery),
    request_body(content(
        (String = "application/yaml"),
        (String = "application/x-yaml"),
        (String = "text/yaml"),
        (String = "application/json"),
    )),
    responses(
        (status = 415, description = "The body's `Content-Type` is not one this route takes", body = ErrorBody),
        (status = 201, description = "Running", body = JobView),
        (status = 400, description = "The spec has problems; `details` lists each with operator and field", body = ErrorBody),
        (status = 403, description = "Over one of the tenant's quotas (`jobs`, `parallelism`, `storage_mb`), or a Kafka broker or name it may not use; `details` names it", body = ErrorBody),
        (status = 404, description = "No such savepoint", body = ErrorBody),
        (status = 422, description = "The job could not start (for example a function's init failed, or the savepoint does not fit it)", body = ErrorBody),
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(query): Query<SubmitQuery>,
    headers: HeaderMap,
    body: String,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    require_content_type(&headers, media::SPEC)?;
    let jobs = state.jobs.clone();
    let from = query.savepoint.map(|savepoint| StartFrom {
        savepoint,
        allow_non_restored_state: query.allow_non_restored_state,
        checkpoint: None,
    });
    let view = state.tenant_slots.run(&tenant.clone(), move || jobs.submit(&tenant, &body, from)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// What to do with a savepoint's job.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct SavepointRequest {
    /// Cancel the job once the savepoint is complete.
    #[serde(default)]
    stop: bool,
    /// With `stop`: first advance the watermark to the end of time, so that every event-time window and timer
    /// fires (for a job that stops for good).
    #[serde(default)]
    drain: bool,
}

/// Takes a savepoint of a running job (its spec must have `checkpoints`), optionally stopping it then.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/savepoints",
    params(("id" = String, Path)),
    request_body(content = SavepointRequest, content_type = "application/json"),
    responses(
        (status = 415, description = "The body's `Content-Type` is not one this route takes", body = ErrorBody),
        (status = 201, description = "Complete", body = SavepointView),
        (status = 403, description = "Over the tenant's `storage_mb` quota", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The job is not running or takes no checkpoints", body = ErrorBody),
        (status = 503, description = "The savepoint failed (storage, or the job stopped)", body = ErrorBody),
    )
)]
pub async fn trigger_savepoint(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<JobPath>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<SavepointView>), ApiError> {
    let jobs = state.jobs.clone();
    // The body is optional: no body means the job keeps running.
    let request: SavepointRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SavepointRequest::default()
    } else {
        require_content_type(&headers, media::JSON)?;
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_request", format!("not a savepoint request: {e}")))?
    };
    let (stop, drain) = (request.stop, request.drain);
    let view = state.tenant_slots.run(&tenant.clone(), move || jobs.savepoint(&tenant, &path.id, stop, drain)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Lists the tenant's savepoints, newest first.
#[utoipa::path(get, path = "/v1/savepoints", responses((status = 200, body = Vec<SavepointView>)))]
pub async fn list_savepoints(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<Vec<SavepointView>>, ApiError> {
    let jobs = state.jobs.clone();
    state.tenant_slots.run(&tenant.clone(), move || jobs.savepoints(&tenant)).await.map(Json)
}

/// Names a savepoint.
#[derive(Debug, Deserialize)]
pub struct SavepointPath {
    savepoint: String,
}

/// One savepoint.
#[utoipa::path(
    get,
    path = "/v1/savepoints/{savepoint}",
    params(("savepoint" = String, Path)),
    responses((status = 200, body = SavepointView), (status = 404, body = ErrorBody))
)]
pub async fn get_savepoint(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<SavepointPath>,
) -> Result<Json<SavepointView>, ApiError> {
    let jobs = state.jobs.clone();
    state.tenant_slots.run(&tenant.clone(), move || jobs.savepoint_info(&tenant, &path.savepoint)).await.map(Json)
}

/// Which key's state to read.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct KeyQuery {
    /// The key as text (what `key_by` made of the record: a JSON string's text, other JSON values' compact text).
    key: Option<String>,
    /// The key's bytes in hex, for keys that are not text.
    key_hex: Option<String>,
}

/// Names an operator of a savepoint.
#[derive(Debug, Deserialize)]
pub struct SavepointOperatorPath {
    savepoint: String,
    operator: String,
}

/// What a savepoint holds for one key of one operator: every state entry (value, list, map state, window
/// contents) and timer of the key.
#[utoipa::path(
    get,
    path = "/v1/savepoints/{savepoint}/state/{operator}",
    params(("savepoint" = String, Path), ("operator" = String, Path), KeyQuery),
    responses(
        (status = 200, description = "The key's state (empty lists when the key has none)", body = serde_json::Value),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn savepoint_state(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<SavepointOperatorPath>,
    Query(query): Query<KeyQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = match (query.key, query.key_hex) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(hex)) => {
            hex::decode(&hex).map_err(|e| ApiError::bad_request("invalid_key", format!("key_hex: {e}")))?
        }
        _ => return Err(ApiError::bad_request("invalid_key", "give the key as `key` or as `key_hex`")),
    };
    let jobs = state.jobs.clone();
    let view = state
        .tenant_slots
        .run(&tenant.clone(), move || jobs.savepoint_state(&tenant, &path.savepoint, &path.operator, &key))
        .await?;
    serde_json::to_value(view).map(Json).map_err(|e| ApiError::internal(e.to_string()))
}

/// Upgrades a running job's modules. Before anything stops, each new version is checked against the running
/// job: it must export what its operators call, and a process function's declared states must fit the old
/// module's. Then the job stops with a savepoint and starts from it with the new modules; if the new run fails
/// before its first checkpoint completes, the old modules start again from the same savepoint. The answer comes
/// once the checks pass; the outcome shows in the job's `upgrades`.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/upgrade",
    params(("id" = String, Path)),
    request_body(content = UpgradeRequest, content_type = "application/json"),
    responses(
        (status = 415, description = "The body's `Content-Type` is not one this route takes", body = ErrorBody),
        (status = 202, description = "Checked and started", body = UpgradeRecord),
        (status = 400, description = "Unknown module versions, or modules the job does not use", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Refused (`incompatible_upgrade`: `details` gives each reason), or the job is not running, takes no checkpoints or is being upgraded", body = ErrorBody),
    )
)]
pub async fn upgrade(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<JobPath>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<UpgradeRecord>), ApiError> {
    require_content_type(&headers, media::JSON)?;
    let request: UpgradeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_request", format!("not an upgrade request: {e}")))?;
    let jobs = state.jobs.clone();
    let upgrade = state.tenant_slots.run(&tenant.clone(), move || jobs.upgrade(&tenant, &path.id, &request)).await?;
    Ok((StatusCode::ACCEPTED, Json(upgrade)))
}

/// Downloads a savepoint: every file of it in a tar archive (its `_metadata`, one snapshot file per task and
/// `savepoint.json`), in the formats `docs/state-format.md` describes.
#[utoipa::path(
    get,
    path = "/v1/savepoints/{savepoint}/archive",
    params(("savepoint" = String, Path)),
    responses(
        (status = 200, description = "A tar archive", content_type = "application/x-tar", body = Vec<u8>),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn download_savepoint(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<SavepointPath>,
) -> Result<axum::response::Response, ApiError> {
    let jobs = state.jobs.clone();
    let savepoint = path.savepoint.clone();
    let owner = tenant.clone();
    let objects = state.tenant_slots.run(&tenant.clone(), move || jobs.savepoint_objects(&owner, &savepoint)).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(8);
    let jobs = state.jobs.clone();
    let folder = path.savepoint.clone();
    // Objects are read and archived one at a time while the answer streams (each a task's snapshot or a chunk of
    // at most a few MiB), charged to the tenant's memory while held, so a large savepoint is never held whole.
    tokio::task::spawn_blocking(move || {
        let errors = tx.clone();
        let mut archive = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 16, ChannelWriter(tx)));
        let written = objects.into_iter().try_for_each(|(name, object)| {
            let (bytes, _held) = jobs.read_object(&tenant, &object).map_err(|e| std::io::Error::other(e.message))?;
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            archive.append_data(&mut header, format!("{folder}/{name}"), bytes.as_slice())
        });
        if let Err(e) = written.and_then(|()| archive.into_inner()?.into_inner().map(drop).map_err(|e| e.into_error()))
        {
            let _ = errors.blocking_send(Err(e));
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut response = axum::response::Response::new(axum::body::Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/x-tar"));
    if let Ok(value) = format!("attachment; filename=\"savepoint-{}.tar\"", path.savepoint).parse() {
        headers.insert(axum::http::header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Sends what is written to it down a channel, for a streamed answer.
struct ChannelWriter(tokio::sync::mpsc::Sender<std::io::Result<axum::body::Bytes>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(axum::body::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Deletes a savepoint.
#[utoipa::path(
    delete,
    path = "/v1/savepoints/{savepoint}",
    params(("savepoint" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody))
)]
pub async fn delete_savepoint(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<SavepointPath>,
) -> Result<StatusCode, ApiError> {
    let jobs = state.jobs.clone();
    state.tenant_slots.run(&tenant.clone(), move || jobs.delete_savepoint(&tenant, &path.savepoint)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists the tenant's jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", responses((status = 200, body = Vec<JobSummary>)))]
pub async fn list(State(state): State<AppState>, Tenant(tenant): Tenant) -> Json<Vec<JobSummary>> {
    Json(state.jobs.list(&tenant))
}

/// Names a job.
#[derive(Debug, Deserialize)]
pub struct JobPath {
    id: String,
}

/// A job's state, graph and per-operator counters.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody))
)]
pub async fn status(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<JobPath>,
) -> Result<Json<JobView>, ApiError> {
    state.jobs.status(&tenant, &path.id).map(Json)
}

/// Cancels a job.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody))
)]
pub async fn cancel(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<JobPath>,
) -> Result<Json<JobView>, ApiError> {
    let jobs = state.jobs.clone();
    state.tenant_slots.run(&tenant.clone(), move || jobs.cancel(&tenant, &path.id)).await.map(Json)
}

/// Deletes a job: cancels it if it runs, then forgets its definition and status.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody))
)]
pub async fn delete(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<JobPath>,
) -> Result<StatusCode, ApiError> {
    let jobs = state.jobs.clone();
    state.tenant_slots.run(&tenant.clone(), move || jobs.delete(&tenant, &path.id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Names an HTTP source or sink of a job.
#[derive(Debug, Deserialize)]
pub struct EndpointPath {
    id: String,
    uid: String,
}

/// Hands each record of a request body to `sink` as it reads it: JSON lines, or one JSON array whose elements
/// become records. Nothing is collected, so a body of many small records costs no more than the body.
fn each_record(body: &str, sink: &mut ValueSink<'_>) -> Result<(), IngestError> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('[') {
        return each_element(trimmed, sink);
    }
    for line in body.lines() {
        let line = line.trim();
        if !line.is_empty() {
            sink(line.as_bytes())?;
        }
    }
    Ok(())
}

/// Hands each element of a JSON array to `sink`, as the array is parsed.
fn each_element(text: &str, sink: &mut ValueSink<'_>) -> Result<(), IngestError> {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    struct Elements<'s, 'a> {
        sink: &'s mut ValueSink<'a>,
        failed: Option<IngestError>,
    }
    impl<'de> Visitor<'de> for &mut Elements<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(element) = seq.next_element::<&serde_json::value::RawValue>()? {
                if let Err(e) = (self.sink)(element.get().as_bytes()) {
                    self.failed = Some(e);
                    return Err(serde::de::Error::custom("stopped"));
                }
            }
            Ok(())
        }
    }
    let mut elements = Elements { sink, failed: None };
    let mut parser = serde_json::Deserializer::from_str(text);
    let parsed = parser.deserialize_seq(&mut elements).and_then(|()| parser.end());
    match (elements.failed, parsed) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(IngestError::Invalid(format!("the body is not a JSON array: {e}"))),
        (None, Ok(())) => Ok(()),
    }
}

/// Sends records into a running job's HTTP source: one record per line (or per element of a JSON array).
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/inputs/{uid}",
    params(("id" = String, Path), ("uid" = String, Path, description = "The HTTP source's uid")),
    request_body(content(
        (String = "application/x-ndjson"),
        (String = "application/jsonl"),
        (String = "application/json"),
    )),
    responses(
        (status = 415, description = "The body's `Content-Type` is not one this route takes", body = ErrorBody),
        (status = 202, description = "Accepted: `{\"accepted\": n}`"),
        (status = 404, body = ErrorBody),
        (status = 403, description = "Over the tenant's `storage_mb` quota", body = ErrorBody),
        (status = 409, description = "The job is not running, stops with a savepoint, or the input was closed", body = ErrorBody),
        (status = 503, description = "The job is backpressured (`busy`), or the tenant's memory cannot hold the body (`memory_budget`); retry", body = ErrorBody),
        (status = 413, description = "The body is larger than the server takes", body = ErrorBody),
    )
)]
pub async fn ingest(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<EndpointPath>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    require_content_type(&headers, media::JSON_LINES)?;
    state.jobs.storage().check(&tenant)?;
    let handle = state.jobs.input(&tenant, &path.id, &path.uid)?;
    let max = state.config.max_request_bytes();
    let too_large =
        || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("a POST holds at most {max} bytes"));
    let announced = body::announced_length(&headers);
    if announced.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    // The body is charged to the tenant's memory before it is read (what it announces, or the most a POST may
    // be), so that many large POSTs at once are refused (503 memory_budget) instead of held.
    let mut held = match state.jobs.hold_memory(&tenant, announced.unwrap_or(max)) {
        Ok(held) => held,
        Err(refused) => {
            // Read and drop the body so the client, still sending it, gets the answer rather than a reset.
            body::discard(body, max).await;
            return Err(refused);
        }
    };
    let bytes = body::read(body, announced, max, "the records", too_large).await?;
    // Shrinking a reservation cannot fail.
    let _ = held.resize(bytes.len());
    let body = String::from_utf8(bytes)
        .map_err(|e| ApiError::bad_request("invalid_records", format!("the records are not UTF-8: {e}")))?;
    let push = move || {
        let _held = held;
        handle.push_values(|sink| each_record(&body, sink)).map_err(ingest_error)
    };
    let accepted = state.tenant_slots.run(&tenant, push).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "accepted": accepted }))))
}

fn ingest_error(e: IngestError) -> ApiError {
    match e {
        IngestError::Closed | IngestError::Sealed => ApiError::conflict(e.to_string()),
        IngestError::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()),
        IngestError::Storage(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", e.to_string()),
        IngestError::Invalid(_) => ApiError::bad_request("invalid_records", e.to_string()),
    }
}

/// Ends a job's HTTP source: once its records are processed, event time reaches its end and windows fire.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/inputs/{uid}/close",
    params(("id" = String, Path), ("uid" = String, Path)),
    responses((status = 200, description = "Closed"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn close_input(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<EndpointPath>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let handle = state.jobs.input(&tenant, &path.id, &path.uid)?;
    state.tenant_slots.run(&tenant, move || handle.close().map_err(ingest_error)).await?;
    Ok(Json(serde_json::json!({ "closed": true })))
}

/// How to show output records.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct OutputQuery {
    /// `json` (default): each event's data is `{"ts":..,"key":..,"value":..}`; `raw`: the value as text.
    format: Option<String>,
}

/// Follows an HTTP sink as server-sent events: the records it kept, then new ones, then an `end` event when the
/// job ends.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/outputs/{uid}",
    params(("id" = String, Path), ("uid" = String, Path, description = "The HTTP sink's uid"), OutputQuery),
    responses(
        (status = 200, description = "text/event-stream"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The job has not run since the server started", body = ErrorBody),
    )
)]
pub async fn output(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<EndpointPath>,
    Query(query): Query<OutputQuery>,
) -> Result<axum::response::Response, ApiError> {
    let stream = state.jobs.output(&tenant, &path.id, &path.uid)?;
    let format = if query.format.as_deref() == Some("raw") { EventFormat::Raw } else { EventFormat::Json };
    let body = axum::body::Body::from_stream(events(stream.subscribe(), format, true));
    use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
    let headers = [(CONTENT_TYPE, "text/event-stream"), (CACHE_CONTROL, "no-cache")];
    Ok((headers, body).into_response())
}

/// How to follow a job's journal.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LogsQuery {
    /// `true`: the kept lines, then new ones as they come (the stream stays open); otherwise the kept lines, then
    /// an `end` event.
    follow: Option<bool>,
}

/// A job's journal as server-sent events, each event's data one JSON line: its functions' log lines
/// (`{"ts":..,"udf":..,"level":..,"text":..}`) and what happened to the job (`{"ts":..,"event":..,"text":..}`),
/// the newest 2,000 kept while the job is on this server.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/logs",
    params(("id" = String, Path), LogsQuery),
    responses((status = 200, description = "text/event-stream"), (status = 404, body = ErrorBody))
)]
pub async fn logs(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<JobPath>,
    Query(query): Query<LogsQuery>,
) -> Result<axum::response::Response, ApiError> {
    let subscription = state.jobs.logs(&tenant, &path.id)?;
    let body = axum::body::Body::from_stream(events(subscription, EventFormat::Raw, query.follow.unwrap_or(false)));
    use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
    let headers = [(CONTENT_TYPE, "text/event-stream"), (CACHE_CONTROL, "no-cache")];
    Ok((headers, body).into_response())
}

/// Records a client is sent per read of the stream: what one connection holds at most beyond its cursor (shared
/// records, not copies).
const RECORDS_PER_READ: usize = 64;

/// How long a connection waits without a record before it sends a comment, so that proxies keep it open.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// The retained records, then live ones until the stream closes (ending with an `end` event; without `follow`,
/// the retained records only), one event at a time: the connection takes the next only once it has sent the last,
/// so a client that does not read holds its position and at most one record's event, which every client reading
/// that record at the same time shares.
fn events(
    subscription: eddy_engine::io::Subscription,
    format: EventFormat,
    follow: bool,
) -> impl Stream<Item = Result<bytes::Bytes, Infallible>> {
    use eddy_engine::io::Chunk;
    struct Reader {
        subscription: eddy_engine::io::Subscription,
        waiting: std::collections::VecDeque<std::sync::Arc<eddy_engine::io::OutputRecord>>,
        ended: bool,
    }
    let reader = Reader { subscription, waiting: Default::default(), ended: false };
    futures::stream::unfold(reader, move |mut reader| async move {
        loop {
            if let Some(record) = reader.waiting.pop_front() {
                let event = bytes::Bytes::from_owner(record.sse_event(format));
                return Some((Ok(event), reader));
            }
            if reader.ended {
                return None;
            }
            match reader.subscription.read(RECORDS_PER_READ) {
                Chunk::Records { skipped, records } => {
                    reader.waiting.extend(records);
                    if skipped > 0 {
                        let lagged = format!("event: lagged\ndata: {skipped} records were skipped\n\n");
                        return Some((Ok(lagged.into()), reader));
                    }
                }
                Chunk::Pending if !follow => {
                    reader.ended = true;
                    return Some((
                        Ok(bytes::Bytes::from_static(b"event: end\ndata: no more lines for now\n\n")),
                        reader,
                    ));
                }
                Chunk::Pending => {
                    if tokio::time::timeout(KEEP_ALIVE, reader.subscription.changed()).await.is_err() {
                        return Some((Ok(bytes::Bytes::from_static(b":\n\n")), reader));
                    }
                }
                Chunk::Ended => {
                    reader.ended = true;
                    return Some((Ok(bytes::Bytes::from_static(b"event: end\ndata: the job ended\n\n")), reader));
                }
            }
        }
    })
}
