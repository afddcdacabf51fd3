//! A local fake of Plivo's call REST API (`DELETE` and `POST` on
//! `/v1/Account/{auth_id}/Call/{call_uuid}/`), the test double for `telephony::plivo::rest`.
//! It checks HTTP Basic auth (Auth ID and Auth Token), the account in the path, the trailing
//! slash, the transfer's JSON body and fields as Plivo would; records every command and
//! violation; answers 204 to a hang-up and 202 `{"message":"call transferred","api_id":…}` to a
//! transfer, 404 `{"api_id","error":"call not found"}` once a call has ended; and can be told
//! to fail the next requests.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::kore::LocalServer;

/// Fields the transfer call accepts.
const TRANSFER_FIELDS: &[&str] = &["legs", "aleg_url", "aleg_method", "bleg_url", "bleg_method"];

/// One accepted command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The call's UUID from the path.
    pub call_uuid: String,
    /// `hangup` (DELETE) or `transfer` (POST).
    pub action: String,
    /// The transfer's `aleg_url`.
    pub aleg_url: Option<String>,
}

#[derive(Default)]
struct Inner {
    commands: Vec<Command>,
    taken: usize,
    violations: Vec<String>,
    failures: VecDeque<u16>,
    ended: HashSet<String>,
    requests: usize,
}

struct Shared {
    auth_id: String,
    auth_token: String,
    inner: Mutex<Inner>,
    arrived: Notify,
}

/// A running fake on 127.0.0.1.
pub struct PlivoApiSim {
    server: LocalServer,
    shared: Arc<Shared>,
}

// === impl PlivoApiSim ===

impl PlivoApiSim {
    /// Starts the fake for one account on an ephemeral loopback port.
    pub async fn start(auth_id: &str, auth_token: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            auth_id: auth_id.into(),
            auth_token: auth_token.into(),
            inner: Mutex::default(),
            arrived: Notify::new(),
        });
        let app = Router::new()
            .route("/v1/Account/{account}/Call/{call}/", any(call))
            .route("/v1/Account/{account}/Call/{call}", any(no_slash))
            .with_state(shared.clone());
        let server = LocalServer::start("127.0.0.1:0", app).await?;
        Ok(Self { server, shared })
    }

    /// The API base URL to configure (stands for `https://api.plivo.com`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Every accepted command, in order.
    pub fn commands(&self) -> Vec<Command> {
        lock(&self.shared).commands.clone()
    }

    /// Protocol violations seen.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared).violations.clone()
    }

    /// How many requests arrived, failed ones included.
    pub fn request_count(&self) -> usize {
        lock(&self.shared).requests
    }

    /// Answers the next request with `status` and a Plivo error body; one per request.
    pub fn fail_next(&self, status: u16) {
        lock(&self.shared).failures.push_back(status);
    }

    /// The next accepted command not handed out by an earlier call, waiting up to `timeout`.
    pub async fn wait_for_command(&self, timeout: Duration) -> Option<Command> {
        super::wait_next(&self.shared.arrived, timeout, || {
            let mut inner = lock(&self.shared);
            let item = inner.commands.get(inner.taken).cloned()?;
            inner.taken += 1;
            Some(item)
        })
        .await
    }
}

fn lock(sh: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    sh.inner.lock().unwrap_or_else(|p| p.into_inner())
}

fn plivo_error(status: u16, error: &str) -> Response {
    let body = json!({"api_id": uuid::Uuid::new_v4().to_string(), "error": error});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

fn refuse(sh: &Shared, status: u16, problem: String) -> Response {
    lock(sh).violations.push(problem.clone());
    plivo_error(status, &problem)
}

async fn no_slash(State(sh): State<Arc<Shared>>) -> Response {
    lock(&sh).requests += 1;
    // Plivo redirects; a client that follows would lose the method, so call it a violation.
    refuse(&sh, 301, "call URL without the trailing slash".into())
}

fn basic_ok(sh: &Shared, headers: &HeaderMap) -> bool {
    let want = B64.encode(format!("{}:{}", sh.auth_id, sh.auth_token));
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        == Some(want.as_str())
}

async fn call(
    State(sh): State<Arc<Shared>>,
    Path((account, call)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&sh).requests += 1;
    if !basic_ok(&sh, &headers) {
        lock(&sh)
            .violations
            .push("missing or wrong Basic auth".into());
        return plivo_error(401, "authentication failed");
    }
    if account != sh.auth_id {
        return refuse(&sh, 404, format!("unknown account {account}"));
    }
    let scripted = lock(&sh).failures.pop_front();
    if let Some(status) = scripted {
        return plivo_error(status, "simulated failure");
    }
    let (action, aleg_url) = match method {
        Method::DELETE => ("hangup", None),
        Method::POST => {
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !ct.starts_with("application/json") {
                return refuse(&sh, 400, format!("content type {ct:?} is not JSON"));
            }
            let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&body) else {
                return refuse(&sh, 400, "body is not a JSON object".into());
            };
            let unknown: Vec<String> = obj
                .keys()
                .filter(|k| !TRANSFER_FIELDS.contains(&k.as_str()))
                .map(|k| format!("unknown transfer field {k}"))
                .collect();
            lock(&sh).violations.extend(unknown);
            if obj.get("legs").and_then(Value::as_str) != Some("aleg") {
                return refuse(&sh, 400, "legs must be aleg".into());
            }
            let url = obj.get("aleg_url").and_then(Value::as_str).unwrap_or("");
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return refuse(&sh, 400, format!("aleg_url {url:?} is not a URL"));
            }
            if !matches!(
                obj.get("aleg_method").and_then(Value::as_str),
                None | Some("GET" | "POST")
            ) {
                return refuse(&sh, 400, "aleg_method must be GET or POST".into());
            }
            ("transfer", Some(url.to_string()))
        }
        other => return refuse(&sh, 405, format!("method {other} on a call")),
    };
    {
        let mut inner = lock(&sh);
        if inner.ended.contains(&call) {
            return plivo_error(404, "call not found");
        }
        if action == "hangup" {
            inner.ended.insert(call.clone());
        }
        inner.commands.push(Command {
            call_uuid: call,
            action: action.into(),
            aleg_url,
        });
    }
    sh.arrived.notify_waiters();
    if action == "hangup" {
        StatusCode::NO_CONTENT.into_response()
    } else {
        let body =
            json!({"message": "call transferred", "api_id": uuid::Uuid::new_v4().to_string()});
        (StatusCode::ACCEPTED, Json(body)).into_response()
    }
}
