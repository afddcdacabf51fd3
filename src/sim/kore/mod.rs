//! A local Kore.ai XO Webhook v2 simulator: a development bot for trying voxhook without an
//! account (it is not a Kore replacement), and the test double the suite runs against. It
//! checks every request as Kore would (JWT signature, `appId`, short `exp`, unique `jti`,
//! `userIdentity` = `from.id`, payload fields), records what it received, answers with a
//! scripted banking conversation, and can be told to fail, stall, rate-limit or poll.

mod serve;

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
    /// An HTTP error.
    Status {
        /// Status code.
        code: u16,
        /// `Retry-After` seconds.
        retry_after: Option<u64>,
    },
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
}

/// Messages delivered by one poll id.
#[derive(Debug, Clone)]
pub struct PollBatch {
    /// How many polls answer `Inprogress` first.
    pub in_progress: usize,
    /// Texts.
    pub texts: Vec<String>,
}

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
}

/// A running simulator on 127.0.0.1.
pub struct KoreSim {
    server: LocalServer,
    shared: Arc<Shared>,
}

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
        });
        let app = Router::new()
            .route("/chatbot/v2/webhook/{bot}", post(message))
            .route(
                "/chatbot/v2/webhook/{bot}/hookInstance/{inst}",
                post(message_instance),
            )
            .route("/chatbot/v2/webhook/{bot}/poll/{poll}", get(poll))
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

    /// The webhook URL to configure in voxhook.
    pub fn webhook_url(&self) -> String {
        format!(
            "http://{}/chatbot/v2/webhook/{}",
            self.server.addr(),
            self.shared.bot_id
        )
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Protocol violations seen (bad tokens, missing fields, reused `jti`, …).
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// The conversation as the bot saw it: `("caller", text)` for each turn received and
    /// `("bot", text)` for each message delivered (in the response or a poll).
    pub fn conversation(&self) -> Vec<(String, String)> {
        self.lock().conversation.clone()
    }

    /// How many requests carried event `name` for `user_id`.
    pub fn count_event(&self, user_id: &str, name: &str) -> usize {
        self.lock()
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
        self.lock().overrides.push_back((Box::new(matches), reply));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The development bot's conversation: a small banking assistant.
pub fn dev_bot_script(r: &Received) -> Reply {
    let text = r.val.to_lowercase();
    match (r.kind.as_str(), r.val.as_str()) {
        ("event", "ON_CONNECT") => {
            Reply::say(&["Welcome to Voxhook Bank. How can I help you today?"])
        }
        ("event", _) => Reply::say(&[]),
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

fn text_items(sh: &Shared, texts: &[String]) -> Vec<Value> {
    let mut inner = sh.inner.lock().unwrap_or_else(|p| p.into_inner());
    inner
        .conversation
        .extend(texts.iter().map(|t| ("bot".to_string(), t.clone())));
    texts
        .iter()
        .map(|t| {
            json!({"type": "text", "val": t, "createdOn": "2026-01-01T00:00:00.000Z",
                   "messageId": format!("ms-{}", uuid::Uuid::new_v4())})
        })
        .collect()
}

fn errors(code: u16, msg: &str) -> Value {
    json!({"errors": [{"msg": msg, "code": code}], "_v": "v2"})
}

async fn message_instance(
    state: State<Arc<Shared>>,
    Path((bot, _inst)): Path<(String, String)>,
    headers: HeaderMap,
    body: Json<Value>,
) -> Response {
    message(state, Path(bot), headers, body).await
}

async fn message(
    State(sh): State<Arc<Shared>>,
    Path(bot): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let from_id = body["from"]["id"].as_str().unwrap_or("").to_string();
    if let Some(refusal) = refuse_bad_token(&sh, &headers, Some(&from_id)) {
        return refusal;
    }
    let mut problems = Vec::new();
    if bot != sh.bot_id {
        problems.push(format!("unknown bot {bot}"));
    }
    let kind = body["message"]["type"].as_str().unwrap_or("").to_string();
    let val = body["message"]["val"].as_str().unwrap_or("").to_string();
    let session_new = body["session"]["new"].as_bool().unwrap_or(false);
    match kind.as_str() {
        "text" if val.trim().is_empty() => problems.push("blank text".into()),
        "text" => {}
        "event" if val == "ON_CONNECT" || val == "SESSION_CLOSURE" => {}
        _ => problems.push(format!("bad message {kind}/{val}")),
    }
    if session_new != (val == "ON_CONNECT" && kind == "event") {
        problems.push(format!("session.new={session_new} on {kind}/{val}"));
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
    let received = Received {
        kind,
        val,
        user_id: from_id,
        session_new,
        custom_data: body["customData"].clone(),
    };
    let reply = {
        let mut inner = sh.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !problems.is_empty() {
            inner.violations.extend(problems.iter().cloned());
            return (
                StatusCode::BAD_REQUEST,
                Json(errors(400, &problems.join("; "))),
            )
                .into_response();
        }
        inner.received.push(received.clone());
        if received.kind == "text" {
            inner
                .conversation
                .push(("caller".into(), received.val.clone()));
        }
        let pos = inner.overrides.iter().position(|(m, _)| m(&received));
        match pos.and_then(|i| inner.overrides.remove(i)) {
            Some((_, r)) => r,
            None => dev_bot_script(&received),
        }
    };
    if received.kind == "event" && received.val == "SESSION_CLOSURE" {
        if let Reply::Messages { .. } = reply {
            let data = json!([{"type": "event", "val": "SESSION_CLOSURE",
                "eventType": "SESSION_CLOSURE_SUCCESS", "description": "Session closed"}]);
            return Json(json!({"data": data, "_v": "v2"})).into_response();
        }
    }
    respond(&sh, &received.user_id, reply).await
}

async fn respond(sh: &Arc<Shared>, user: &str, mut reply: Reply) -> Response {
    while let Reply::Delay(d, next) = reply {
        tokio::time::sleep(d).await;
        reply = *next;
    }
    match reply {
        Reply::Status { code, retry_after } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = (status, Json(errors(code, "simulated failure"))).into_response();
            if let Some(s) = retry_after {
                if let Ok(v) = s.to_string().parse() {
                    resp.headers_mut().insert("retry-after", v);
                }
            }
            resp
        }
        Reply::Messages { now, polled } => {
            let mut body =
                json!({"to": user, "from": sh.bot_id, "_v": "v2", "data": text_items(sh, &now)});
            if let Some(id) = register_polls(sh, polled) {
                body["pollId"] = id.into();
            }
            Json(body).into_response()
        }
        Reply::Delay(..) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn register_polls(sh: &Arc<Shared>, mut batches: Vec<PollBatch>) -> Option<String> {
    if batches.is_empty() {
        return None;
    }
    let first = batches.remove(0);
    let mut inner = sh.inner.lock().unwrap_or_else(|p| p.into_inner());
    inner.next_poll += 1;
    let id = format!("poll{:08x}", inner.next_poll);
    inner.polls.insert(
        id.clone(),
        PollState {
            remaining_in_progress: first.in_progress,
            texts: first.texts,
            rest: batches,
        },
    );
    Some(id)
}

async fn poll(
    State(sh): State<Arc<Shared>>,
    Path((bot, poll_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refuse_bad_token(&sh, &headers, None) {
        return refusal;
    }
    if bot != sh.bot_id {
        return (StatusCode::NOT_FOUND, Json(errors(404, "unknown bot"))).into_response();
    }
    let (texts, rest) = {
        let mut inner = sh.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.delivered_polls.contains(&poll_id) {
            return (StatusCode::BAD_REQUEST, Json(errors(400, "No data found"))).into_response();
        }
        let Some(st) = inner.polls.get_mut(&poll_id) else {
            return (StatusCode::BAD_REQUEST, Json(errors(400, "No data found"))).into_response();
        };
        if st.remaining_in_progress > 0 {
            st.remaining_in_progress -= 1;
            return Json(json!({"status": "Inprogress", "pollId": poll_id, "_v": "v2"}))
                .into_response();
        }
        let Some(st) = inner.polls.remove(&poll_id) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        inner.delivered_polls.insert(poll_id);
        (st.texts, st.rest)
    };
    let mut body = json!({"_v": "v2", "data": text_items(&sh, &texts)});
    if let Some(id) = register_polls(&sh, rest) {
        body["pollId"] = id.into();
    }
    Json(body).into_response()
}

/// Checks the token; a bad one is recorded as a violation and gets the 401 refusal Kore sends.
fn refuse_bad_token(sh: &Shared, headers: &HeaderMap, from_id: Option<&str>) -> Option<Response> {
    check_token(sh, headers, from_id).err().map(|v| {
        sh.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .violations
            .push(v.clone());
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
    let mut inner = sh.inner.lock().unwrap_or_else(|p| p.into_inner());
    if !inner.jtis.insert(claims.jti) {
        return Err("jti reused".into());
    }
    Ok(())
}
