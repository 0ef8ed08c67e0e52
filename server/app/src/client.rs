//! A client of the HTTP API, used by the CLI, the demo and the tests.

use futures::StreamExt;
use serde_json::Value;
use std::fmt;

/// An error answer from the server, or a failure to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientError {
    /// HTTP status, if the server answered.
    pub status: Option<u16>,
    /// The error code (`invalid_spec`, `not_found`, ...).
    pub code: String,
    /// The message.
    pub message: String,
    /// Details, such as every problem of a spec.
    pub details: Vec<Value>,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "{status} {}: {}", self.code, self.message)?,
            None => write!(f, "{}", self.message)?,
        }
        for detail in &self.details {
            if let (Some(field), Some(message)) = (detail.get("field"), detail.get("message")) {
                let operator = detail.get("operator").and_then(Value::as_str).unwrap_or("-");
                write!(
                    f,
                    "\n  {operator} {}: {}",
                    field.as_str().unwrap_or_default(),
                    message.as_str().unwrap_or_default()
                )?;
            } else if let Some(logs) = detail.get("logs").and_then(Value::as_array) {
                for line in logs {
                    write!(f, "\n  | {}", line.as_str().unwrap_or_default())?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for ClientError {}

/// One server-sent event from an output stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `record`, `lagged` or `end`.
    pub event: String,
    /// The data.
    pub data: String,
}

/// A connection to an Eddy server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    tenant: Option<String>,
    http: reqwest::Client,
}

type Result<T> = std::result::Result<T, ClientError>;

/// The error an answer with a failing status carries (`{"error": {"code", "message", "details"}}`).
fn refusal(status: u16, body: &Value) -> ClientError {
    let error = &body["error"];
    ClientError {
        status: Some(status),
        code: error["code"].as_str().unwrap_or("error").to_string(),
        message: error["message"].as_str().map(str::to_string).unwrap_or_else(|| body.to_string()),
        details: error["details"].as_array().cloned().unwrap_or_default(),
    }
}

/// [`refusal`] of an answer whose body is not read yet (streamed answers).
async fn refused(response: reqwest::Response) -> ClientError {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    refusal(status, &body)
}

fn unreachable_server(e: reqwest::Error) -> ClientError {
    ClientError {
        status: None,
        code: "unreachable".into(),
        message: format!("cannot reach the server: {e}"),
        details: Vec::new(),
    }
}

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`), acting with `token` for `tenant` (the
    /// token's own tenant when none).
    pub fn new(base: &str, token: Option<String>, tenant: Option<String>) -> Client {
        Client { base: base.trim_end_matches('/').to_string(), token, tenant, http: reqwest::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        match &self.tenant {
            Some(t) => format!("{}/v1/tenants/{t}{path}", self.base),
            None => format!("{}/v1{path}", self.base),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<Value> {
        let response = builder.send().await.map_err(unreachable_server)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable_server)?;
        let body: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if status.is_success() {
            return Ok(body);
        }
        Err(refusal(status.as_u16(), &body))
    }

    /// Checks that the server answers.
    pub async fn health(&self) -> Result<Value> {
        self.send(self.http.get(format!("{}/health", self.base))).await
    }

    /// Uploads a module.
    pub async fn push_module(&self, name: &str, version: Option<&str>, bytes: Vec<u8>) -> Result<Value> {
        let mut query = vec![("name", name.to_string())];
        if let Some(v) = version {
            query.push(("version", v.to_string()));
        }
        let builder = self
            .request(reqwest::Method::POST, "/modules")
            .query(&query)
            .header("content-type", "application/wasm")
            .body(bytes);
        self.send(builder).await
    }

    /// Lists modules.
    pub async fn modules(&self) -> Result<Value> {
        self.send(self.request(reqwest::Method::GET, "/modules")).await
    }

    /// Deletes a module version.
    pub async fn delete_module(&self, name: &str, version: &str) -> Result<Value> {
        self.send(self.request(reqwest::Method::DELETE, &format!("/modules/{name}/{version}"))).await
    }

    /// Submits a job spec (YAML or JSON).
    pub async fn submit(&self, spec: &str) -> Result<Value> {
        self.send(
            self.request(reqwest::Method::POST, "/jobs")
                .header("content-type", "application/yaml")
                .body(spec.to_string()),
        )
        .await
    }

    /// Submits a job spec that starts from savepoint `savepoint`.
    pub async fn submit_from(&self, spec: &str, savepoint: &str, allow_non_restored_state: bool) -> Result<Value> {
        let query =
            [("savepoint", savepoint.to_string()), ("allow_non_restored_state", allow_non_restored_state.to_string())];
        self.send(
            self.request(reqwest::Method::POST, "/jobs")
                .query(&query)
                .header("content-type", "application/yaml")
                .body(spec.to_string()),
        )
        .await
    }

    /// Takes a savepoint of a running job; with `stop`, cancels the job once it is complete.
    pub async fn savepoint(&self, id: &str, stop: bool) -> Result<Value> {
        self.savepoint_with(id, stop, false).await
    }

    /// Takes a savepoint; with `stop` the job stops after it, and with `drain` too its watermark first advances
    /// to the end (every event-time window and timer fires).
    pub async fn savepoint_with(&self, id: &str, stop: bool, drain: bool) -> Result<Value> {
        let body = serde_json::json!({ "stop": stop, "drain": drain });
        self.send(self.request(reqwest::Method::POST, &format!("/jobs/{id}/savepoints")).json(&body)).await
    }

    /// Starts an upgrade of a running job's modules (`name@version` each); its outcome shows in the job's
    /// `upgrades`.
    pub async fn upgrade(&self, id: &str, modules: &[String], allow_non_restored_state: bool) -> Result<Value> {
        let body = serde_json::json!({ "modules": modules, "allow_non_restored_state": allow_non_restored_state });
        self.send(self.request(reqwest::Method::POST, &format!("/jobs/{id}/upgrade")).json(&body)).await
    }

    /// A savepoint's files as a tar archive.
    pub async fn download_savepoint(&self, savepoint: &str) -> Result<Vec<u8>> {
        let builder = self.request(reqwest::Method::GET, &format!("/savepoints/{savepoint}/archive"));
        let response = builder.send().await.map_err(unreachable_server)?;
        if !response.status().is_success() {
            return Err(refused(response).await);
        }
        response.bytes().await.map(|b| b.to_vec()).map_err(unreachable_server)
    }

    /// Lists savepoints.
    pub async fn savepoints(&self) -> Result<Value> {
        self.send(self.request(reqwest::Method::GET, "/savepoints")).await
    }

    /// What a savepoint holds for `key` of operator `operator`.
    pub async fn savepoint_state(&self, savepoint: &str, operator: &str, key: &str) -> Result<Value> {
        let path = format!("/savepoints/{savepoint}/state/{operator}");
        self.send(self.request(reqwest::Method::GET, &path).query(&[("key", key)])).await
    }

    /// Deletes a savepoint.
    pub async fn delete_savepoint(&self, savepoint: &str) -> Result<Value> {
        self.send(self.request(reqwest::Method::DELETE, &format!("/savepoints/{savepoint}"))).await
    }

    /// The tenant's quotas and its use of them.
    pub async fn usage(&self) -> Result<Value> {
        self.send(self.request(reqwest::Method::GET, "/usage")).await
    }

    /// The servers of the cluster.
    pub async fn cluster(&self) -> Result<Value> {
        let builder = self.http.get(format!("{}/v1/cluster", self.base));
        self.send(match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        })
        .await
    }

    /// Moves a node's jobs to the other nodes of the cluster.
    pub async fn drain_node(&self, node: &str) -> Result<Value> {
        let builder = self.http.post(format!("{}/v1/cluster/nodes/{node}/drain", self.base));
        self.send(match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        })
        .await
    }

    /// Lists jobs.
    pub async fn jobs(&self) -> Result<Value> {
        self.send(self.request(reqwest::Method::GET, "/jobs")).await
    }

    /// A job's status.
    pub async fn job(&self, id: &str) -> Result<Value> {
        self.send(self.request(reqwest::Method::GET, &format!("/jobs/{id}"))).await
    }

    /// Cancels a job.
    pub async fn cancel(&self, id: &str) -> Result<Value> {
        self.send(self.request(reqwest::Method::POST, &format!("/jobs/{id}/cancel"))).await
    }

    /// Sends records (JSON lines) to a job's HTTP source.
    pub async fn ingest(&self, id: &str, source: &str, lines: String) -> Result<Value> {
        let builder = self
            .request(reqwest::Method::POST, &format!("/jobs/{id}/inputs/{source}"))
            .header("content-type", "application/x-ndjson")
            .body(lines);
        self.send(builder).await
    }

    /// Ends a job's HTTP source.
    pub async fn close_input(&self, id: &str, source: &str) -> Result<Value> {
        self.send(self.request(reqwest::Method::POST, &format!("/jobs/{id}/inputs/{source}/close"))).await
    }

    /// Follows a job's HTTP sink; `on_event` returns false to stop reading.
    pub async fn follow_output(
        &self,
        id: &str,
        sink: &str,
        raw: bool,
        on_event: impl FnMut(SseEvent) -> bool,
    ) -> Result<()> {
        let mut builder = self.request(reqwest::Method::GET, &format!("/jobs/{id}/outputs/{sink}"));
        if raw {
            builder = builder.query(&[("format", "raw")]);
        }
        self.follow(builder, on_event).await
    }

    /// Reads a job's journal (its functions' log lines and its lifecycle, one JSON line per event's data): what is
    /// kept, then, with `follow`, new lines as they come; `on_event` returns false to stop reading.
    pub async fn follow_logs(&self, id: &str, follow: bool, on_event: impl FnMut(SseEvent) -> bool) -> Result<()> {
        let builder = self.request(reqwest::Method::GET, &format!("/jobs/{id}/logs")).query(&[("follow", follow)]);
        self.follow(builder, on_event).await
    }

    /// Reads server-sent events until the stream ends or `on_event` returns false.
    async fn follow(&self, builder: reqwest::RequestBuilder, mut on_event: impl FnMut(SseEvent) -> bool) -> Result<()> {
        let response = builder.send().await.map_err(unreachable_server)?;
        if !response.status().is_success() {
            return Err(refused(response).await);
        }
        let mut bytes = response.bytes_stream();
        let mut buffer = String::new();
        let (mut event, mut data) = (String::new(), Vec::<String>::new());
        while let Some(chunk) = bytes.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk.map_err(unreachable_server)?));
            while let Some(end) = buffer.find('\n') {
                let line: String = buffer.drain(..=end).collect();
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if !data.is_empty() || !event.is_empty() {
                        let done = !on_event(SseEvent { event: std::mem::take(&mut event), data: data.join("\n") });
                        data.clear();
                        if done {
                            return Ok(());
                        }
                    }
                } else if let Some(value) = line.strip_prefix("event:") {
                    event = value.trim().to_string();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push(value.strip_prefix(' ').unwrap_or(value).to_string());
                }
            }
        }
        Ok(())
    }
}
