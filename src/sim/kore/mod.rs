//! A local Kore.ai XO Webhook simulator: a development bot for trying voxhook without an
//! account (it is not a Kore replacement), and the test double the suite runs against. It
//! speaks API v2 (`v2.rs`: sync with `pollId` polling, or async) and legacy v1 (`v1.rs`), checks
//! every request as Kore would (JWT signature, `appId`, short `exp`, unique `jti`,
//! `userIdentity` = `from.id`, payload fields), records what it received, answers with a
//! scripted banking conversation, and can be told to fail, stall, rate-limit, poll, send rich
//! messages or deliver replies asynchronously to a callback URL (`callback.rs`).

mod callback;
mod serve;
#[cfg(test)]
pub(crate) mod test_support;
mod v1;
mod v2;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::bot::kore::auth::Claims;
use crate::config::{self, Settings};
pub use serve::LocalServer;

/// One request as the simulator understood it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// `text` or `event`.
    pub kind: String,
    /// The text or event name.
    pub val: String,
    /// `from.id`.
    pub user_id: String,
    /// `session.new`.
    pub session_new: bool,
    /// `customData`.
    pub custom_data: Value,
    /// The webhook API the request came in on: `v1` or `v2`.
    pub api: &'static str,
    /// `interactiveLanguage`.
    pub interactive_language: Option<String>,
    /// The whole request body (extras such as `metaTags` and `from.userInfo`).
    pub body: Value,
}

/// How the simulator answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with these messages, then a chain of polled batches.
    Messages {
        /// Texts sent in the response itself.
        now: Vec<String>,
        /// Batches delivered through `pollId`s, each after `Inprogress` answers.
        polled: Vec<PollBatch>,
    },
    /// 200 with rich messages: a string value is a `text` message, anything else a
    /// `template`; optionally the dialog task ends.
    Data {
        /// Message values, in order.
        now: Vec<Value>,
        /// `Some(task name)`: the reply ends that task (`endOfTask`, `completedTaskName`).
        end_of_task: Option<String>,
    },
    /// An HTTP error.
    Status {
        /// Status code.
        code: u16,
        /// `Retry-After` seconds.
        retry_after: Option<u64>,
    },
    /// Wait, then answer. In async mode the acknowledgement is immediate and the callbacks
    /// wait; an error status waits in the response itself.
    Delay(Duration, Box<Reply>),
    /// 200 with this body as it is (not JSON, or not the contract's): a bot returning garbage.
    Garbage(String),
    /// 200 and the start of a body, then the connection is dropped: a reset as the client
    /// sees it.
    Abort,
}

/// Messages delivered by one poll id.
#[derive(Debug, Clone)]
pub struct PollBatch {
    /// How many polls answer `Inprogress` first (in async mode: 200 ms of delay each).
    pub in_progress: usize,
    /// Texts.
    pub texts: Vec<String>,
}

// === impl Reply ===

impl Reply {
    /// A plain reply.
    pub fn say(texts: &[&str]) -> Self {
        Reply::Messages {
            now: texts.iter().map(|s| s.to_string()).collect(),
            polled: Vec::new(),
        }
    }

    /// An error status.
    pub fn status(code: u16) -> Self {
        Reply::Status {
            code,
            retry_after: None,
        }
    }

    /// Takes the delays out: the total wait and what remains.
    fn resolve(mut self) -> (Duration, Resolved) {
        let mut wait = Duration::ZERO;
        loop {
            return match self {
                Reply::Delay(d, next) => {
                    wait += d;
                    self = *next;
                    continue;
                }
                Reply::Status { code, retry_after } => {
                    (wait, Resolved::Error { code, retry_after })
                }
                Reply::Garbage(body) => (wait, Resolved::Broken(Some(body))),
                Reply::Abort => (wait, Resolved::Broken(None)),
                Reply::Messages { now, polled } => (
                    wait,
                    Resolved::Messages(Outcome {
                        now: now.into_iter().map(Value::from).collect(),
                        polled,
                        end_of_task: None,
                    }),
                ),
                Reply::Data { now, end_of_task } => (
                    wait,
                    Resolved::Messages(Outcome {
                        now,
                        polled: Vec::new(),
                        end_of_task,
                    }),
                ),
            };
        }
    }
}

/// A reply without its delays.
enum Resolved {
    Error {
        code: u16,
        retry_after: Option<u64>,
    },
    Messages(Outcome),
    /// A garbage body (`Some`), or a response cut off mid-body (`None`).
    Broken(Option<String>),
}

/// The response of [`Resolved::Broken`].
fn broken(body: Option<String>) -> Response {
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    match body {
        Some(b) => (StatusCode::OK, json, b).into_response(),
        None => {
            // hyper sends the head and the first chunk, then drops the connection at the
            // stream's error.
            let parts: [Result<axum::body::Bytes, std::io::Error>; 2] = [
                Ok(axum::body::Bytes::from_static(b"{\"data\": [")),
                Err(std::io::Error::other("connection reset by the simulator")),
            ];
            let body = axum::body::Body::from_stream(futures_util::stream::iter(parts));
            (StatusCode::OK, json, body).into_response()
        }
    }
}

/// The messages of a successful reply.
struct Outcome {
    now: Vec<Value>,
    polled: Vec<PollBatch>,
    end_of_task: Option<String>,
}

type Matcher = Box<dyn Fn(&Received) -> bool + Send + Sync>;

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    violations: Vec<String>,
    jtis: HashSet<String>,
    overrides: VecDeque<(Matcher, Reply)>,
    polls: HashMap<String, PollState>,
    delivered_polls: HashSet<String>,
    next_poll: u64,
    conversation: Vec<(String, String)>,
    /// `Some`: async mode, replies go to this callback.
    callback: Option<callback::Target>,
    /// `(to, HTTP status or 0 when unreachable)` for each callback POST.
    callback_results: Vec<(String, u16)>,
    /// `Some`: the body of every async acknowledgement instead of the documented one.
    async_ack: Option<String>,
}

struct PollState {
    remaining_in_progress: usize,
    texts: Vec<String>,
    rest: Vec<PollBatch>,
}

struct Shared {
    bot_id: String,
    client_id: String,
    secret: String,
    inner: Mutex<Inner>,
    http: reqwest::Client,
    /// Woken after each callback POST.
    delivered: Notify,
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `val` as said by the bot.
    fn record_bot(&self, val: &Value) {
        self.lock().conversation.push(("bot".into(), spoken(val)));
    }

    /// Records a checked request and picks its reply; problems become violations and a 400.
    fn accept(&self, received: &Received, problems: Vec<String>) -> Result<Reply, Box<Response>> {
        let mut inner = self.lock();
        if !problems.is_empty() {
            inner.violations.extend(problems.iter().cloned());
            let body = Json(errors(400, &problems.join("; ")));
            return Err(Box::new((StatusCode::BAD_REQUEST, body).into_response()));
        }
        inner.received.push(received.clone());
        if received.kind == "text" {
            inner
                .conversation
                .push(("caller".into(), received.val.clone()));
        }
        let pos = inner.overrides.iter().position(|(m, _)| m(received));
        Ok(match pos.and_then(|i| inner.overrides.remove(i)) {
            Some((_, r)) => r,
            None => dev_bot_script(received),
        })
    }
}

/// A running simulator on 127.0.0.1.
pub struct KoreSim {
    server: LocalServer,
    shared: Arc<Shared>,
}

// === impl KoreSim ===

impl KoreSim {
    /// Starts the simulator on an ephemeral loopback port.
    pub async fn start(bot_id: &str, client_id: &str, secret: &str) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", bot_id, client_id, secret).await
    }

    /// Starts the simulator on `addr`.
    pub async fn start_on(
        addr: &str,
        bot_id: &str,
        client_id: &str,
        secret: &str,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            bot_id: bot_id.into(),
            client_id: client_id.into(),
            secret: secret.into(),
            inner: Mutex::default(),
            http: callback::client(),
            delivered: Notify::new(),
        });
        let app = Router::new()
            .route("/chatbot/v2/webhook/{bot}", post(message::<true>))
            .route(
                "/chatbot/v2/webhook/{bot}/hookInstance/{inst}",
                post(message::<true>),
            )
            .route("/chatbot/v2/webhook/{bot}/poll/{poll}", get(v2::poll))
            .route("/chatbot/hooks/{bot}", post(message::<false>))
            .route(
                "/chatbot/hooks/{bot}/hookInstance/{inst}",
                post(message::<false>),
            )
            .with_state(shared.clone());
        let server = LocalServer::start(addr, app).await?;
        Ok(Self { server, shared })
    }

    /// Daemon settings for a local run against this simulator: loopback port 0, no drain
    /// grace, the embedded engines with the model at `model_path`.
    pub fn daemon_settings(&self, model_path: &str) -> Settings {
        let toml = format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            shutdown_grace_period_secs = 0
            [stt]
            provider = "whisper"
            model_path = "{model_path}"
            [bot]
            platform = "kore_v2"
            webhook_url = "{}"
            client_id = "{}"
            jwt_user_identity = true
            "#,
            self.webhook_url(),
            self.shared.client_id,
        );
        let env = HashMap::from([(
            "VOXHOOK__BOT__CLIENT_SECRET".to_string(),
            self.shared.secret.clone(),
        )]);
        // Built from a fixed template: failing here is a bug in this function.
        config::validate(config::load_str(&toml, env).expect("simulator config parses"))
            .expect("simulator config is valid")
    }

    /// The v2 webhook URL to configure in voxhook.
    pub fn webhook_url(&self) -> String {
        format!(
            "http://{}/chatbot/v2/webhook/{}",
            self.server.addr(),
            self.shared.bot_id
        )
    }

    /// The v1 (legacy) webhook URL.
    pub fn v1_webhook_url(&self) -> String {
        format!(
            "http://{}/chatbot/hooks/{}",
            self.server.addr(),
            self.shared.bot_id
        )
    }

    /// Switches to async mode: requests are acknowledged at once and each bot message is
    /// POSTed to `callback_url`, with `Authorization: Bearer <bearer>` when given.
    pub fn set_async(&self, callback_url: String, bearer: Option<String>) {
        self.set_async_spread(vec![callback_url], bearer);
    }

    /// Async mode with callbacks POSTed to each of `callback_urls` in turn, as a load
    /// balancer in front of several instances would spread them.
    pub fn set_async_spread(&self, callback_urls: Vec<String>, bearer: Option<String>) {
        self.shared.lock().callback = Some(callback::Target::new(callback_urls, bearer, false));
    }

    /// Async mode with the token sent as the bare `Authorization` value (no `Bearer `).
    pub fn set_async_bare_token(&self, callback_url: String, token: String) {
        self.shared.lock().callback =
            Some(callback::Target::new(vec![callback_url], Some(token), true));
    }

    /// Overrides the body of async acknowledgements (200, `text/plain` unless it parses as
    /// JSON); `None` restores the documented ones: empty for v1, `{"status":"ok",…}` for v2.
    pub fn set_async_ack(&self, body: Option<&str>) {
        self.shared.lock().async_ack = body.map(str::to_string);
    }

    /// Switches back to synchronous replies (the default).
    pub fn set_sync(&self) {
        self.shared.lock().callback = None;
    }

    /// `(to, HTTP status)` for each async callback POST made so far, in order; status 0 means
    /// the callback URL could not be reached.
    pub fn callback_results(&self) -> Vec<(String, u16)> {
        self.shared.lock().callback_results.clone()
    }

    /// Waits up to `timeout` until at least `n` callback POSTs have been made; true if so.
    pub async fn wait_for_callbacks(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.delivered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.lock().callback_results.len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// Protocol violations seen (bad tokens, missing fields, reused `jti`, …).
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// The conversation as the bot saw it: `("caller", text)` for each turn received and
    /// `("bot", text)` for each message delivered (in a response, a poll or a callback; a
    /// rich message as compact JSON).
    pub fn conversation(&self) -> Vec<(String, String)> {
        self.shared.lock().conversation.clone()
    }

    /// How many requests carried event `name` for `user_id`.
    pub fn count_event(&self, user_id: &str, name: &str) -> usize {
        self.shared
            .lock()
            .received
            .iter()
            .filter(|r| r.kind == "event" && r.val == name && r.user_id == user_id)
            .count()
    }

    /// Answers the next request that `matches` with `reply` instead of the script.
    pub fn push_override(
        &self,
        matches: impl Fn(&Received) -> bool + Send + Sync + 'static,
        reply: Reply,
    ) {
        self.shared
            .lock()
            .overrides
            .push_back((Box::new(matches), reply));
    }
}

const WELCOME: &str = "Welcome to Voxhook Bank. How can I help you today?";

/// The development bot's conversation: a small banking assistant. It greets on `ON_CONNECT`
/// and, since v1 has no events, on a text that opens a new session.
pub fn dev_bot_script(r: &Received) -> Reply {
    let text = r.val.to_lowercase();
    match (r.kind.as_str(), r.val.as_str()) {
        ("event", "ON_CONNECT") => Reply::say(&[WELCOME]),
        ("event", _) => Reply::say(&[]),
        _ if r.session_new => Reply::say(&[WELCOME]),
        _ if text.contains("balance") => Reply::Messages {
            now: vec!["Sure, let me look up your account.".into()],
            polled: vec![PollBatch {
                in_progress: 1,
                texts: vec!["To confirm it is you, please enter your four digit PIN, \
                             followed by the hash key."
                    .into()],
            }],
        },
        _ if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) => Reply::say(&[
            "Thank you. The balance of your checking account is two thousand one hundred \
             and fifty dollars. Is there anything else?",
        ]),
        _ if ["bye", "no", "nothing"].iter().any(|w| text.contains(w)) => {
            Reply::say(&["Thank you for calling Voxhook Bank. Goodbye!"])
        }
        _ => Reply::Messages {
            now: vec![format!(
                "Sorry, I heard: {}. You can ask me for your account balance.",
                r.val
            )],
            polled: Vec::new(),
        },
    }
}

/// How a message is written in the conversation: the text, or a rich message as compact JSON.
fn spoken(val: &Value) -> String {
    match val {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A v2 `data` item for a message value.
fn data_item(val: &Value) -> Value {
    let kind = if val.is_string() { "text" } else { "template" };
    json!({"type": kind, "val": val, "createdOn": "2026-01-01T00:00:00.000Z",
           "messageId": format!("ms-{}", uuid::Uuid::new_v4())})
}

/// The end-of-task fields for a reply that completes task `name`.
fn end_of_task_fields(name: &str) -> serde_json::Map<String, Value> {
    let fields = json!({"endOfTask": true, "endReason": "Fulfilled", "completedTaskName": name,
                        "completedTaskId": format!("dg-{}", uuid::Uuid::new_v4())});
    match fields {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// An async acknowledgement: the override when set, else `documented`.
fn async_ack(sh: &Shared, documented: impl FnOnce() -> Response) -> Response {
    let Some(body) = sh.lock().async_ack.clone() else {
        return documented();
    };
    let kind = if serde_json::from_str::<Value>(&body).is_ok() {
        "application/json"
    } else {
        "text/plain"
    };
    ([(axum::http::header::CONTENT_TYPE, kind)], body).into_response()
}

fn errors(code: u16, msg: &str) -> Value {
    json!({"errors": [{"msg": msg, "code": code}], "_v": "v2"})
}

/// The HTTP error response for a scripted failure.
fn error_response(code: u16, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, Json(errors(code, "simulated failure"))).into_response();
    if let Some(s) = retry_after {
        if let Ok(v) = s.to_string().parse() {
            resp.headers_mut().insert("retry-after", v);
        }
    }
    resp
}

/// Checks the token; a bad one is recorded as a violation and gets the 401 refusal Kore sends.
fn refuse_bad_token(sh: &Shared, headers: &HeaderMap, from_id: Option<&str>) -> Option<Response> {
    check_token(sh, headers, from_id).err().map(|v| {
        sh.lock().violations.push(v.clone());
        (StatusCode::UNAUTHORIZED, Json(errors(401, &v))).into_response()
    })
}

/// Verifies the bearer JWT as Kore does; the error names the problem, never the token.
fn check_token(sh: &Shared, headers: &HeaderMap, from_id: Option<&str>) -> Result<(), String> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("missing Authorization")?;
    let token = auth
        .strip_prefix("bearer ")
        .or_else(|| auth.strip_prefix("Bearer "))
        .ok_or("Authorization is not a bearer token")?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("bad JWT header: {e}"))?;
    if !matches!(header.alg, Algorithm::HS256 | Algorithm::HS512) {
        return Err(format!("unexpected algorithm {:?}", header.alg));
    }
    let mut v = Validation::new(header.alg);
    v.set_required_spec_claims(&["exp", "iat"]);
    v.validate_aud = false;
    let claims =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(sh.secret.as_bytes()), &v)
            .map_err(|e| format!("invalid JWT: {e}"))?
            .claims;
    if claims.app_id != sh.client_id {
        return Err("appId does not match the client id".into());
    }
    if claims.exp.saturating_sub(claims.iat) > 3600 {
        return Err("exp more than an hour after iat".into());
    }
    if let (Some(identity), Some(from)) = (&claims.user_identity, from_id) {
        if identity != from {
            return Err("userIdentity does not match from.id".into());
        }
    }
    if !sh.lock().jtis.insert(claims.jti) {
        return Err("jti reused".into());
    }
    Ok(())
}

/// A request whose token was accepted, for the API's handler to check further and answer.
struct Admitted {
    sh: Arc<Shared>,
    /// `from.id`.
    from_id: String,
    /// Problems found so far; any makes the request a 400.
    problems: Vec<String>,
    body: Value,
}

/// A message request on v2 (`V2`) or v1: admitted here, then handled by the API's module.
async fn message<const V2: bool>(
    State(sh): State<Arc<Shared>>,
    Path(path): Path<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (from_id, problems) = match admit(&sh, &path, &headers, &body) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    let req = Admitted {
        sh,
        from_id,
        problems,
        body,
    };
    if V2 {
        v2::message(req).await
    } else {
        v1::message(req).await
    }
}

/// What every message handler does first: checks the token (a bad one is refused with 401)
/// and the parties (`from.id`, `to.id`, `customData.callId`, the bot in the path, whose
/// problems are returned for the handler to add to). Gives `from.id` and the problems.
fn admit(
    sh: &Shared,
    path: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Value,
) -> Result<(String, Vec<String>), Box<Response>> {
    let from_id = body["from"]["id"].as_str().unwrap_or("").to_string();
    if let Some(refusal) = refuse_bad_token(sh, headers, Some(&from_id)) {
        return Err(Box::new(refusal));
    }
    let mut problems = Vec::new();
    let bot = path.get("bot").map_or("", String::as_str);
    if bot != sh.bot_id {
        problems.push(format!("unknown bot {bot}"));
    }
    if from_id.is_empty() {
        problems.push("missing from.id".into());
    }
    if body["to"]["id"].as_str() != Some(sh.bot_id.as_str()) {
        problems.push("to.id is not the bot id".into());
    }
    if body["customData"]["callId"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        problems.push("customData.callId missing".into());
    }
    Ok((from_id, problems))
}
