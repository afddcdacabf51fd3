//! A local fake of Telnyx's Call Control commands
//! (`POST /v2/calls/{call_control_id}/actions/{hangup|transfer}`), the test double for
//! `telephony::telnyx::rest`. It checks the Bearer API key, the JSON body and its fields as
//! Telnyx would, records every command and violation, answers `{"data":{"result":"ok"}}` or a
//! Telnyx error body (`{"errors":[{"code","title","detail"}]}`), remembers hung-up calls (a
//! later command on one gets 422 with code 90018, Telnyx's "call has already ended"), and can
//! be told to fail the next requests.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::kore::LocalServer;

/// Body fields each command accepts (the ones voxhook may send, and Telnyx's common ones).
const HANGUP_FIELDS: &[&str] = &["client_state", "command_id"];
const TRANSFER_FIELDS: &[&str] = &[
    "to",
    "from",
    "from_display_name",
    "timeout_secs",
    "client_state",
    "command_id",
    "target_leg_client_state",
];

/// One accepted command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The call's id from the path.
    pub call_control_id: String,
    /// `hangup` or `transfer`.
    pub action: String,
    /// The transfer destination.
    pub to: Option<String>,
}

#[derive(Default)]
struct Inner {
    commands: Vec<Command>,
    /// How many of `commands` `wait_for_command` has handed out.
    taken: usize,
    violations: Vec<String>,
    failures: VecDeque<u16>,
    ended: HashSet<String>,
    requests: usize,
}

struct Shared {
    api_key: String,
    inner: Mutex<Inner>,
    arrived: Notify,
}

/// A running fake on 127.0.0.1.
pub struct TelnyxApiSim {
    server: LocalServer,
    shared: Arc<Shared>,
}

// === impl TelnyxApiSim ===

impl TelnyxApiSim {
    /// Starts the fake for one API key on an ephemeral loopback port.
    pub async fn start(api_key: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            api_key: api_key.into(),
            inner: Mutex::default(),
            arrived: Notify::new(),
        });
        let app = Router::new()
            .route("/v2/calls/{call}/actions/{action}", post(command))
            .with_state(shared.clone());
        let server = LocalServer::start("127.0.0.1:0", app).await?;
        Ok(Self { server, shared })
    }

    /// The API base URL to configure (stands for `https://api.telnyx.com/v2`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v2", self.server.addr())
    }

    /// Every accepted command, in order.
    pub fn commands(&self) -> Vec<Command> {
        lock(&self.shared).commands.clone()
    }

    /// Protocol violations seen (bad key, unknown fields, missing `to`, …).
    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared).violations.clone()
    }

    /// How many requests arrived, failed ones included.
    pub fn request_count(&self) -> usize {
        lock(&self.shared).requests
    }

    /// Answers the next request with `status` and a Telnyx error body; one per request.
    pub fn fail_next(&self, status: u16) {
        lock(&self.shared).failures.push_back(status);
    }

    /// Marks `call_control_id` as ended (the caller hung up): commands get 422/90018.
    pub fn end_call(&self, call_control_id: &str) {
        lock(&self.shared).ended.insert(call_control_id.into());
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

/// Telnyx's error body for `status`.
fn telnyx_error(status: u16, code: &str, title: &str, detail: &str) -> Response {
    let body = json!({"errors": [{"code": code, "title": title, "detail": detail}]});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

/// Records `problem` as a violation and answers with Telnyx's error for `status`.
fn refuse(sh: &Shared, status: u16, code: &str, problem: String) -> Response {
    lock(sh).violations.push(problem.clone());
    telnyx_error(status, code, "Invalid request", &problem)
}

async fn command(
    State(sh): State<Arc<Shared>>,
    Path((call, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&sh).requests += 1;
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth.strip_prefix("Bearer ") != Some(sh.api_key.as_str()) {
        // Telnyx's 10009; the key is never echoed.
        lock(&sh)
            .violations
            .push("missing or wrong Bearer API key".into());
        return telnyx_error(
            401,
            "10009",
            "Authentication failed",
            "Could not understand the provided credentials.",
        );
    }
    let scripted = lock(&sh).failures.pop_front();
    if let Some(status) = scripted {
        return telnyx_error(
            status,
            &format!("{}", 90_000 + u32::from(status)),
            "Simulated failure",
            "",
        );
    }
    let fields = match action.as_str() {
        "hangup" => HANGUP_FIELDS,
        "transfer" => TRANSFER_FIELDS,
        other => return refuse(&sh, 404, "10005", format!("unknown action {other}")),
    };
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return refuse(
            &sh,
            415,
            "10015",
            format!("content type {content_type:?} is not JSON"),
        );
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&body) else {
        return refuse(&sh, 400, "10015", "body is not a JSON object".into());
    };
    let unknown: Vec<String> = obj
        .keys()
        .filter(|k| !fields.contains(&k.as_str()))
        .map(|k| format!("unknown {action} field {k}"))
        .collect();
    lock(&sh).violations.extend(unknown);
    let to = obj.get("to").and_then(Value::as_str).map(str::to_string);
    if action == "transfer" && to.as_deref().is_none_or(str::is_empty) {
        return refuse(&sh, 422, "10015", "transfer without `to`".into());
    }
    {
        let mut inner = lock(&sh);
        if inner.ended.contains(&call) {
            drop(inner);
            return telnyx_error(
                422,
                "90018",
                "Call has already ended",
                "This call is no longer active and can't receive commands.",
            );
        }
        if action == "hangup" {
            inner.ended.insert(call.clone());
        }
    }
    lock(&sh).commands.push(Command {
        call_control_id: call,
        action,
        to,
    });
    sh.arrived.notify_waiters();
    Json(json!({"data": {"result": "ok"}})).into_response()
}
