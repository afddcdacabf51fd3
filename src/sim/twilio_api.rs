//! A local fake of Twilio's call-update REST endpoint
//! (`POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`), the test double for
//! `telephony::twilio::rest`. It checks HTTP Basic auth, the account, the content type and the
//! form fields as Twilio would, records every update and violation, answers with a Twilio-like
//! call resource or error body, and can be told to fail the next requests. The same fake
//! serves SignalWire's LaML REST API (`/api/laml/2010-04-01/…`, project ID and API token),
//! which is the same resource: [`TwilioApiSim::start_signalwire`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::json;
use tokio::sync::Notify;

use super::kore::LocalServer;

/// Form fields Twilio's call update accepts.
const KNOWN_FIELDS: &[&str] = &[
    "Status",
    "Twiml",
    "Url",
    "Method",
    "FallbackUrl",
    "FallbackMethod",
    "StatusCallback",
    "StatusCallbackMethod",
    "TimeLimit",
];

/// One accepted call update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallUpdate {
    /// The call's SID from the path.
    pub call_sid: String,
    /// `Status` (`completed` or `canceled`).
    pub status: Option<String>,
    /// `Twiml`, the document that replaces the call's current one.
    pub twiml: Option<String>,
}

#[derive(Default)]
struct Inner {
    updates: Vec<CallUpdate>,
    /// How many of `updates` `wait_for_update` has handed out.
    taken: usize,
    violations: Vec<String>,
    failures: VecDeque<u16>,
    requests: usize,
}

struct Shared {
    account_sid: String,
    auth_token: String,
    inner: Mutex<Inner>,
    updated: Notify,
}

/// A running fake on 127.0.0.1.
pub struct TwilioApiSim {
    server: LocalServer,
    shared: Arc<Shared>,
}

// === impl TwilioApiSim ===

impl TwilioApiSim {
    /// Starts the fake for one account on an ephemeral loopback port.
    pub async fn start(account_sid: &str, auth_token: &str) -> std::io::Result<Self> {
        Self::start_at("", account_sid, auth_token).await
    }

    /// Starts a fake of a SignalWire space's LaML REST API for one project (base URL stands
    /// for `https://<space>.signalwire.com`).
    pub async fn start_signalwire(project_id: &str, api_token: &str) -> std::io::Result<Self> {
        Self::start_at("/api/laml", project_id, api_token).await
    }

    async fn start_at(prefix: &str, account_sid: &str, auth_token: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            inner: Mutex::default(),
            updated: Notify::new(),
        });
        let app = Router::new()
            .route(
                &format!("{prefix}/2010-04-01/Accounts/{{account}}/Calls/{{call}}"),
                post(update),
            )
            .with_state(shared.clone());
        let server = LocalServer::start("127.0.0.1:0", app).await?;
        Ok(Self { server, shared })
    }

    /// The API base URL to configure (stands for `https://api.twilio.com`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Every accepted update, in order.
    pub fn updates(&self) -> Vec<CallUpdate> {
        lock(&self.shared).updates.clone()
    }

    /// Protocol violations seen (bad auth, wrong account, unknown fields, …).
    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared).violations.clone()
    }

    /// How many requests arrived, failed ones included.
    pub fn request_count(&self) -> usize {
        lock(&self.shared).requests
    }

    /// Answers the next request with `status` and a Twilio error body instead of applying
    /// it; calls queue up, one failure per request.
    pub fn fail_next(&self, status: u16) {
        lock(&self.shared).failures.push_back(status);
    }

    /// The next accepted update not handed out by an earlier call, waiting up to `timeout`.
    pub async fn wait_for_update(&self, timeout: Duration) -> Option<CallUpdate> {
        super::wait_next(&self.shared.updated, timeout, || {
            let mut inner = lock(&self.shared);
            let item = inner.updates.get(inner.taken).cloned()?;
            inner.taken += 1;
            Some(item)
        })
        .await
    }
}

fn lock(sh: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    sh.inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// Twilio's error body; `code` follows Twilio's 20xxx scheme for HTTP-level errors.
fn twilio_error(status: u16, message: &str) -> Response {
    let code = match status {
        401 => 20003,
        other => 20000 + u32::from(other),
    };
    let body = json!({"code": code, "message": message, "status": status,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}")});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

/// Records `problem` as a violation and answers with Twilio's error for `status`.
fn refuse(sh: &Shared, status: u16, problem: String) -> Response {
    let message = problem.clone();
    lock(sh).violations.push(problem);
    twilio_error(status, &message)
}

async fn update(
    State(sh): State<Arc<Shared>>,
    Path((account, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&sh).requests += 1;
    if let Err(problem) = check_auth(&sh, &headers) {
        return refuse(&sh, 401, format!("Authenticate: {problem}"));
    }
    if account != sh.account_sid {
        return refuse(&sh, 404, format!("unknown account {account}"));
    }
    let Some(call_sid) = call.strip_suffix(".json").map(str::to_string) else {
        return refuse(&sh, 404, format!("call path {call} lacks .json"));
    };
    let scripted = lock(&sh).failures.pop_front();
    if let Some(status) = scripted {
        return twilio_error(status, "Simulated failure");
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return refuse(
            &sh,
            400,
            format!("content type {content_type:?} is not a form"),
        );
    }
    let form = parse_form(&body);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let unknown: Vec<String> = form
        .iter()
        .filter(|(k, _)| !KNOWN_FIELDS.contains(&k.as_str()))
        .map(|(k, _)| format!("unknown form field {k}"))
        .collect();
    let status = field("Status");
    let twiml = field("Twiml");
    let problem = match (&status, &twiml) {
        (None, None) if field("Url").is_none() => Some("no Status, Twiml or Url".to_string()),
        (Some(s), _) if s != "completed" && s != "canceled" => Some(format!("bad Status {s}")),
        (_, Some(t)) if !(t.starts_with("<Response>") && t.ends_with("</Response>")) => {
            Some(format!("Twiml is not a <Response> document: {t}"))
        }
        _ => None,
    };
    lock(&sh).violations.extend(unknown);
    if let Some(p) = problem {
        return refuse(&sh, 400, p);
    }
    let resource = json!({
        "sid": call_sid,
        "account_sid": sh.account_sid,
        "status": status.clone().unwrap_or_else(|| "in-progress".into()),
        "api_version": "2010-04-01",
        "date_updated": "Thu, 01 Jan 2026 00:00:00 +0000",
        "uri": format!("/2010-04-01/Accounts/{}/Calls/{call_sid}.json", sh.account_sid),
    });
    lock(&sh).updates.push(CallUpdate {
        call_sid,
        status,
        twiml,
    });
    sh.updated.notify_waiters();
    Json(resource).into_response()
}

/// Checks `Authorization: Basic base64(AccountSid:AuthToken)`; the error never holds the token.
fn check_auth(sh: &Shared, headers: &HeaderMap) -> Result<(), &'static str> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("missing Authorization")?;
    let encoded = auth
        .strip_prefix("Basic ")
        .ok_or("Authorization is not Basic")?;
    let decoded = B64
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or("Basic credentials are not base64 UTF-8")?;
    match decoded.split_once(':') {
        Some((user, pass)) if user == sh.account_sid && pass == sh.auth_token => Ok(()),
        Some((user, _)) if user == sh.account_sid => Err("wrong auth token"),
        _ => Err("wrong account SID"),
    }
}

/// Decodes an `application/x-www-form-urlencoded` body into ordered pairs.
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let query = String::from_utf8_lossy(body);
    reqwest::Url::parse(&format!("http://form.invalid/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const SID: &str = "ACtest";
    const CALL_URL: &str = "/2010-04-01/Accounts/ACtest/Calls/CA1.json";

    async fn post_form(
        sim: &TwilioApiSim,
        path: &str,
        user: &str,
        pass: &str,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", sim.base_url()))
            .basic_auth(user, Some(pass))
            .form(form)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    #[tokio::test]
    async fn accepts_an_update_and_answers_a_call_resource() {
        let sim = TwilioApiSim::start(SID, "tok").await.unwrap();
        let (status, body) =
            post_form(&sim, CALL_URL, SID, "tok", &[("Status", "completed")]).await;
        assert_eq!(status, 200);
        assert_eq!(body["sid"], "CA1");
        assert_eq!(body["status"], "completed");
        let u = sim.wait_for_update(Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            u,
            CallUpdate {
                call_sid: "CA1".into(),
                status: Some("completed".into()),
                twiml: None
            }
        );
        assert_eq!(sim.wait_for_update(Duration::from_millis(20)).await, None);
        assert!(sim.violations().is_empty());
    }

    #[tokio::test]
    async fn refuses_bad_auth_wrong_accounts_and_bad_forms() {
        let sim = TwilioApiSim::start(SID, "tok").await.unwrap();
        let (s, body) = post_form(&sim, CALL_URL, SID, "nope", &[("Status", "completed")]).await;
        assert_eq!((s, body["code"].as_u64()), (401, Some(20003)));
        let other = "/2010-04-01/Accounts/ACother/Calls/CA1.json";
        let (s, _) = post_form(&sim, other, SID, "tok", &[("Status", "completed")]).await;
        assert_eq!(s, 404);
        let (s, _) = post_form(&sim, CALL_URL, SID, "tok", &[("Status", "ringing")]).await;
        assert_eq!(s, 400);
        let (s, _) = post_form(&sim, CALL_URL, SID, "tok", &[("Twiml", "<Dial/>")]).await;
        assert_eq!(s, 400);
        let form = [("Status", "completed"), ("Colour", "blue")];
        let (s, _) = post_form(&sim, CALL_URL, SID, "tok", &form).await;
        assert_eq!(s, 200);
        let v = sim.violations();
        assert_eq!(v.len(), 5, "{v:?}");
        assert!(v[4].contains("Colour"));
        assert!(
            !v.iter().any(|p| p.contains("nope")),
            "the token is never echoed"
        );
        assert_eq!(sim.updates().len(), 1);
        assert_eq!(sim.request_count(), 5);
    }

    #[tokio::test]
    async fn scripted_failures_are_answered_in_order() {
        let sim = TwilioApiSim::start(SID, "tok").await.unwrap();
        sim.fail_next(503);
        sim.fail_next(429);
        let form = [("Status", "completed")];
        let (s, body) = post_form(&sim, CALL_URL, SID, "tok", &form).await;
        assert_eq!((s, body["code"].as_u64()), (503, Some(20503)));
        assert_eq!(post_form(&sim, CALL_URL, SID, "tok", &form).await.0, 429);
        assert_eq!(post_form(&sim, CALL_URL, SID, "tok", &form).await.0, 200);
        assert_eq!(sim.updates().len(), 1);
    }
}
