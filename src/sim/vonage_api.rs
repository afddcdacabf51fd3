//! A local fake of Vonage's Voice API call update (`PUT /v1/calls/{uuid}`), the test double
//! for `telephony::vonage::rest`. It checks the application JWT as Vonage would (RS256 only,
//! signed by the application's key, `application_id` of that application, `iat`/`exp` and a
//! `jti` never seen before), the JSON body (`hangup`, or `transfer` to an inline NCCO whose one
//! `connect` action has one `phone` or `sip` endpoint); records every command and violation;
//! answers 204, 404 (RFC 7807 body) once a call has ended, 401 to a bad token; and can be told
//! to fail the next requests.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::kore::LocalServer;
use crate::telephony::vonage::rest::AppClaims;

/// The application the fake serves (its key pair is `tests/fixtures/vonage/test_*_key.pem`).
pub const TEST_APPLICATION_ID: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const PUBLIC_KEY: &str = include_str!("../../tests/fixtures/vonage/test_public_key.pem");

/// One accepted command.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The call's UUID from the path.
    pub call_uuid: String,
    /// `hangup` or `transfer`.
    pub action: String,
    /// The transfer NCCO's endpoint.
    pub endpoint: Option<Value>,
}

#[derive(Default)]
struct Inner {
    commands: Vec<Command>,
    taken: usize,
    violations: Vec<String>,
    failures: VecDeque<u16>,
    ended: HashSet<String>,
    token_ids: HashSet<String>,
    requests: usize,
}

struct Shared {
    key: DecodingKey,
    inner: Mutex<Inner>,
    arrived: Notify,
}

/// A running fake on 127.0.0.1.
pub struct VonageApiSim {
    server: LocalServer,
    shared: Arc<Shared>,
}

// === impl VonageApiSim ===

impl VonageApiSim {
    /// Starts the fake for [`TEST_APPLICATION_ID`] on an ephemeral loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let key = DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let shared = Arc::new(Shared {
            key,
            inner: Mutex::default(),
            arrived: Notify::new(),
        });
        let app = Router::new()
            .route("/v1/calls/{call}", put(update))
            .with_state(shared.clone());
        let server = LocalServer::start("127.0.0.1:0", app).await?;
        Ok(Self { server, shared })
    }

    /// The API base URL to configure (stands for `https://api.nexmo.com`).
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

    /// Answers the next request with `status`; one per request.
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

fn problem(status: u16, title: &str, detail: &str) -> Response {
    let body = json!({"type": "https://developer.nexmo.com/api-errors#error", "title": title,
        "detail": detail, "instance": uuid::Uuid::new_v4().simple().to_string()});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

fn refuse(sh: &Shared, status: u16, detail: String) -> Response {
    lock(sh).violations.push(detail.clone());
    problem(status, "Bad Request", &detail)
}

/// The token's claims when it is one Vonage would take.
fn check_token(sh: &Shared, headers: &HeaderMap) -> Result<AppClaims, String> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("no Bearer token")?;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_required_spec_claims(&["exp", "iat"]);
    let claims = jsonwebtoken::decode::<AppClaims>(token, &sh.key, &v)
        .map_err(|e| format!("bad JWT: {e}"))?
        .claims;
    if claims.application_id != TEST_APPLICATION_ID {
        return Err(format!("unknown application {}", claims.application_id));
    }
    if !lock(sh).token_ids.insert(claims.jti.clone()) {
        return Err(format!("jti {} reused", claims.jti));
    }
    Ok(claims)
}

/// The `connect` endpoint of a transfer body, or what is wrong with it.
fn transfer_endpoint(body: &Value) -> Result<Value, String> {
    let dest = &body["destination"];
    if dest["type"] != "ncco" {
        return Err("destination.type must be ncco".into());
    }
    let [action] = dest["ncco"].as_array().map(Vec::as_slice).unwrap_or(&[]) else {
        return Err("destination.ncco must hold one action".into());
    };
    if action["action"] != "connect" {
        return Err("the NCCO action must be connect".into());
    }
    let [endpoint] = action["endpoint"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    else {
        return Err("connect must have one endpoint".into());
    };
    let ok = match endpoint["type"].as_str() {
        Some("phone") => endpoint["number"]
            .as_str()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        Some("sip") => endpoint["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("sip:") || u.starts_with("sips:")),
        _ => false,
    };
    if ok {
        Ok(endpoint.clone())
    } else {
        Err(format!("bad endpoint {endpoint}"))
    }
}

async fn update(
    State(sh): State<Arc<Shared>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&sh).requests += 1;
    if let Err(e) = check_token(&sh, &headers) {
        lock(&sh).violations.push(e);
        return problem(401, "Unauthorized", "Invalid Token");
    }
    let scripted = lock(&sh).failures.pop_front();
    if let Some(status) = scripted {
        return problem(status, "Simulated failure", "try again");
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return refuse(&sh, 415, format!("content type {ct:?} is not JSON"));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return refuse(&sh, 400, "body is not JSON".into());
    };
    let (action, endpoint) = match body["action"].as_str() {
        Some("hangup") => ("hangup", None),
        Some("transfer") => match transfer_endpoint(&body) {
            Ok(e) => ("transfer", Some(e)),
            Err(e) => return refuse(&sh, 400, e),
        },
        other => return refuse(&sh, 400, format!("unknown action {other:?}")),
    };
    {
        let mut inner = lock(&sh);
        if inner.ended.contains(&call) {
            drop(inner);
            return problem(
                404,
                "Not Found",
                &format!("Call {call} was not found or is no longer active"),
            );
        }
        if action == "hangup" {
            inner.ended.insert(call.clone());
        }
        inner.commands.push(Command {
            call_uuid: call,
            action: action.into(),
            endpoint,
        });
    }
    sh.arrived.notify_waiters();
    StatusCode::NO_CONTENT.into_response()
}
