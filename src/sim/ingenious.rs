//! A local inGenious AI webhook API: the development bot for `voxhook demo --platform
//! ingenious` and the test double of `bot::ingenious`. It serves the documented endpoints
//! under `/messaging/webhook/v1/{teamId}/{botId}` (`conversations`, `…/messages`,
//! `…/delivery`, `…/activity`, `…/handback`), checks the bearer token and each body, and sends
//! the bot's messages as requests to voxhook's webhook route, one at a time, waiting for each
//! acknowledgement before the next (typing and handover events need none). Replies come from a
//! small banking script or from overrides; faults (401, 429 with `Retry-After`, any status) are
//! injected per endpoint. Its oracle records protocol violations: a turn sent while a bot
//! message has long been unacknowledged, a missing (timed-out) or duplicate acknowledgement,
//! an acknowledgement of a message never sent, a request for an unknown conversation, a bad
//! token or body.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::kore::LocalServer;

/// Team id in the simulator's base URL.
pub const TEAM_ID: &str = "team-sim";
/// Bot id in the simulator's base URL.
pub const BOT_ID: &str = "bot-sim";
/// A turn sent this long after a bot message that is still unacknowledged is a violation.
const ACK_GRACE: Duration = Duration::from_secs(3);
/// Bot messages waiting to be sent, per chat.
const OUTGOING_CAPACITY: usize = 64;

/// One request as the simulator understood it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// `conversations`, `messages`, `delivery`, `activity` or `handback`.
    pub endpoint: &'static str,
    /// The conversation id (`None` for `conversations`).
    pub conversation: Option<String>,
    /// `text`, `postback`, `ack`, `handback`, `activity` or `create`.
    pub kind: &'static str,
    /// The text, the postback payload or the acknowledged message id.
    pub val: String,
    /// The whole body.
    pub body: Value,
}

/// One bot message the script sends.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMessage {
    /// `content.text`.
    pub text: String,
    /// `content.quickReplies` (`{"title", "payload"}` objects).
    pub quick_replies: Vec<Value>,
}

/// How the simulator answers a user message.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200, then these messages (each after the previous one's acknowledgement).
    Say(Vec<SimMessage>),
    /// 200, these messages, then a handover event.
    Handover(Vec<SimMessage>),
}

impl Reply {
    /// Plain text messages.
    pub fn say(texts: &[&str]) -> Self {
        Reply::Say(texts.iter().map(|t| SimMessage::text(t)).collect())
    }
}

impl SimMessage {
    /// A text message.
    pub fn text(t: &str) -> Self {
        Self {
            text: t.into(),
            quick_replies: Vec::new(),
        }
    }
}

/// What went out to voxhook.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Conversation.
    pub conversation: String,
    /// Message id (event id for typing/handover).
    pub id: String,
    /// `conversation:message`, `conversation:typing` or `conversation:handover`.
    pub kind: &'static str,
    /// The message text.
    pub text: String,
    /// When it was sent.
    pub at: Instant,
    /// When it was acknowledged.
    pub acked_at: Option<Instant>,
    /// voxhook's HTTP status (0: unreachable).
    pub status: u16,
}

type Matcher = Box<dyn Fn(&Received) -> bool + Send + Sync>;

#[derive(Default)]
struct Chat {
    outgoing: Option<mpsc::Sender<Outgoing>>,
    /// Message sent and not yet acknowledged, and when.
    outstanding: Option<(String, Value, Instant)>,
    sent: HashSet<String>,
    acked: HashSet<String>,
    handed_over: bool,
}

#[derive(Default)]
struct Inner {
    target: Option<(String, Option<String>)>,
    chats: HashMap<String, Chat>,
    next_id: u64,
    received: Vec<Received>,
    violations: Vec<String>,
    faults: VecDeque<(&'static str, u16, Option<u64>)>,
    overrides: VecDeque<(Matcher, Reply)>,
    pushed: Vec<Pushed>,
    conversation: Vec<(String, String)>,
    ack_timeout: Option<Duration>,
}

struct Shared {
    token: String,
    inner: Mutex<Inner>,
    changed: Notify,
    http: reqwest::Client,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

enum Outgoing {
    Message(SimMessage),
    Typing,
    Handover,
}

/// The running simulator (stops when dropped).
pub struct IngeniousSim {
    server: LocalServer,
    shared: Arc<Shared>,
}

impl IngeniousSim {
    /// Starts on an ephemeral loopback port; requests must carry `Bearer {token}`.
    pub async fn start(token: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            token: token.into(),
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        });
        let base = format!("/messaging/webhook/v1/{TEAM_ID}/{BOT_ID}/conversations");
        let app = Router::new()
            .route(&base, post(create))
            .route(&format!("{base}/{{id}}/{{endpoint}}"), post(on_chat))
            .with_state(shared.clone());
        let server = LocalServer::start("127.0.0.1:0", app).await?;
        Ok(Self { server, shared })
    }

    /// The integration's base URL to configure in voxhook.
    pub fn base_url(&self) -> String {
        format!(
            "http://{}/messaging/webhook/v1/{TEAM_ID}/{BOT_ID}",
            self.server.addr()
        )
    }

    /// The `[bot]` section for a daemon talking to this simulator.
    pub fn bot_section(&self, callback_secret: &str, extra: &str) -> String {
        format!(
            "platform = \"ingenious\"\nbase_url = \"{}\"\naccess_token = \"{}\"\n\
             callback_secret = \"{callback_secret}\"\n{extra}",
            self.base_url(),
            self.shared.token
        )
    }

    /// Where bot messages go (voxhook's webhook URL), with `Authorization: Bearer` if given.
    pub fn set_target(&self, url: String, bearer: Option<String>) {
        self.shared.lock().target = Some((url, bearer));
    }

    /// How long the bot waits for an acknowledgement before it records a missing one and
    /// stops talking in that chat (default 30 s).
    pub fn set_ack_timeout(&self, d: Duration) {
        self.shared.lock().ack_timeout = Some(d);
    }

    /// Answers the next request to `endpoint` (`conversations`, `messages`, …) with `status`
    /// (and `Retry-After`).
    pub fn fail_next(&self, endpoint: &'static str, status: u16, retry_after: Option<u64>) {
        self.shared
            .lock()
            .faults
            .push_back((endpoint, status, retry_after));
    }

    /// Answers the next user message that `matches` with `reply` instead of the script.
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

    /// Everything received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// Everything sent to voxhook, in order.
    pub fn pushed(&self) -> Vec<Pushed> {
        self.shared.lock().pushed.clone()
    }

    /// The chat as the bot saw it: `("caller", text)`, `("postback", payload)` for each user
    /// message and `("bot", text)` for each message sent, in order.
    pub fn conversation(&self) -> Vec<(String, String)> {
        self.shared.lock().conversation.clone()
    }

    /// Protocol violations seen.
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// Waits up to `timeout` until `pred` holds over what was received; returns it then.
    pub async fn wait_received(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Option<Vec<Received>> {
        self.wait(timeout, |i| pred(&i.received).then(|| i.received.clone()))
            .await
    }

    /// Waits up to `timeout` until `pred` holds over what was pushed; returns it then.
    pub async fn wait_pushed(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Pushed]) -> bool,
    ) -> Option<Vec<Pushed>> {
        self.wait(timeout, |i| pred(&i.pushed).then(|| i.pushed.clone()))
            .await
    }

    async fn wait<T>(&self, timeout: Duration, f: impl Fn(&Inner) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = f(&self.shared.lock()) {
                return Some(v);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({"error": msg}))).into_response()
}

/// Checks the token and takes an injected fault; `Some(response)` ends the request.
fn gate(sh: &Shared, endpoint: &'static str, headers: &HeaderMap) -> Option<Response> {
    let mut i = sh.lock();
    if let Some(at) = i.faults.iter().position(|f| f.0 == endpoint) {
        let (_, status, retry_after) = i.faults.remove(at).unwrap_or(("", 500, None));
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = error(status, "injected fault");
        if let Some(s) = retry_after.and_then(|s| s.to_string().parse().ok()) {
            resp.headers_mut().insert("retry-after", s);
        }
        return Some(resp);
    }
    let want = format!("Bearer {}", sh.token);
    let got = headers.get("authorization").and_then(|v| v.to_str().ok());
    if got != Some(want.as_str()) {
        i.violations
            .push(format!("{endpoint}: missing or wrong bearer token"));
        return Some(error(StatusCode::UNAUTHORIZED, "unauthorized"));
    }
    None
}

fn record(sh: &Shared, r: Received) {
    sh.lock().received.push(r);
    sh.changed.notify_waiters();
}

async fn create(State(sh): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    if let Some(r) = gate(&sh, "conversations", &headers) {
        return r;
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let shape_ok = v.is_object()
        && v.get("displayName").is_none_or(Value::is_string)
        && v.get("metadata").is_none_or(Value::is_object);
    if !shape_ok {
        sh.lock()
            .violations
            .push(format!("conversations: bad body {body}"));
        return error(StatusCode::BAD_REQUEST, "malformed body");
    }
    let id = {
        let mut i = sh.lock();
        i.next_id += 1;
        let id = format!("conv-{}-{}", i.next_id, uuid::Uuid::new_v4().simple());
        i.chats.insert(id.clone(), Chat::default());
        id
    };
    record(
        &sh,
        Received {
            endpoint: "conversations",
            conversation: None,
            kind: "create",
            val: id.clone(),
            body: v,
        },
    );
    (
        StatusCode::CREATED,
        Json(json!({"conversation": {"id": id}})),
    )
        .into_response()
}

async fn on_chat(
    State(sh): State<Arc<Shared>>,
    Path((id, endpoint)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let endpoint: &'static str = match endpoint.as_str() {
        "messages" => "messages",
        "delivery" => "delivery",
        "activity" => "activity",
        "handback" => "handback",
        _ => return error(StatusCode::NOT_FOUND, "no such endpoint"),
    };
    if let Some(r) = gate(&sh, endpoint, &headers) {
        return r;
    }
    if !sh.lock().chats.contains_key(&id) {
        sh.lock()
            .violations
            .push(format!("{endpoint}: unknown conversation {id}"));
        return error(StatusCode::BAD_REQUEST, "unknown conversation");
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let parsed = match endpoint {
        "messages" => user_message(&v),
        "delivery" => delivery(&v),
        "handback" => (v.pointer("/author/type") == Some(&json!("agent"))
            && v.pointer("/handback").is_some_and(Value::is_object))
        .then(|| ("handback", String::new())),
        _ => v
            .get("type")
            .and_then(Value::as_str)
            .map(|t| ("activity", t.to_string())),
    };
    let Some((kind, val)) = parsed else {
        sh.lock()
            .violations
            .push(format!("{endpoint}: bad body {body}"));
        return error(StatusCode::BAD_REQUEST, "malformed body");
    };
    let r = Received {
        endpoint,
        conversation: Some(id.clone()),
        kind,
        val,
        body: v,
    };
    match kind {
        "ack" => on_ack(&sh, &id, &r),
        "handback" => {
            if let Some(c) = sh.lock().chats.get_mut(&id) {
                c.handed_over = false;
            }
        }
        "text" | "postback" => on_user(&sh, &id, &r),
        _ => {}
    }
    record(&sh, r);
    if matches!(endpoint, "delivery" | "handback") {
        Json(json!({})).into_response()
    } else {
        StatusCode::OK.into_response()
    }
}

/// `(kind, value)` of a user message body, or `None` when malformed.
fn user_message(v: &Value) -> Option<(&'static str, String)> {
    if v.pointer("/author/type")? != "user" {
        return None;
    }
    match v.pointer("/content/type")?.as_str()? {
        "text" => {
            let t = v.pointer("/content/text")?.as_str()?;
            (!t.trim().is_empty()).then(|| ("text", t.to_string()))
        }
        "postback" => {
            let p = v.pointer("/content/payload")?;
            p.is_object().then(|| ("postback", p.to_string()))
        }
        _ => None,
    }
}

/// `("ack", message id)` of a delivery body, or `None` when malformed.
fn delivery(v: &Value) -> Option<(&'static str, String)> {
    let d = v.get("delivery")?;
    let ok = d.get("state")? == "success" && d.pointer("/message/author/type")? == "chatbot";
    let id = d.pointer("/message/id")?.as_str()?;
    ok.then(|| ("ack", id.to_string()))
}

fn on_ack(sh: &Shared, chat: &str, r: &Received) {
    let now = Instant::now();
    let mut i = sh.lock();
    let Inner {
        chats,
        violations,
        pushed,
        ..
    } = &mut *i;
    let Some(c) = chats.get_mut(chat) else { return };
    let id = &r.val;
    if c.acked.contains(id) {
        violations.push(format!("duplicate ack of {id}"));
        return;
    }
    if !c.sent.contains(id) {
        violations.push(format!("ack of a message never sent: {id}"));
        return;
    }
    if let Some((_, content, _)) = c.outstanding.as_ref().filter(|o| o.0 == *id) {
        if r.body.pointer("/delivery/message/content") != Some(content) {
            violations.push(format!("ack of {id} does not echo its content"));
        }
        c.outstanding = None;
    }
    c.acked.insert(id.clone());
    if let Some(p) = pushed.iter_mut().rev().find(|p| p.id == *id) {
        p.acked_at = Some(now);
    }
    drop(i);
    sh.changed.notify_waiters();
}

fn on_user(sh: &Arc<Shared>, chat: &str, r: &Received) {
    let reply = {
        let mut i = sh.lock();
        let who = if r.kind == "text" {
            "caller"
        } else {
            "postback"
        };
        i.conversation.push((who.into(), r.val.clone()));
        let Inner {
            chats,
            violations,
            overrides,
            ..
        } = &mut *i;
        let Some(c) = chats.get_mut(chat) else { return };
        if let Some((mid, _, at)) = &c.outstanding {
            if at.elapsed() > ACK_GRACE && r.kind == "text" {
                violations.push(format!("turn sent while message {mid} is unacknowledged"));
            }
        }
        if c.handed_over {
            return; // a livechat agent has the chat: the bot ignores messages
        }
        match overrides.iter().position(|(m, _)| m(r)) {
            Some(at) => overrides.remove(at).map(|o| o.1),
            None => Some(dev_bot_script(r)),
        }
    };
    let Some(reply) = reply else { return };
    let (messages, handover) = match reply {
        Reply::Say(m) => (m, false),
        Reply::Handover(m) => (m, true),
    };
    let tx = outgoing(sh, chat);
    let mut items = vec![Outgoing::Typing];
    items.extend(messages.into_iter().map(Outgoing::Message));
    if handover {
        items.push(Outgoing::Handover);
    }
    for it in items {
        if tx.try_send(it).is_err() {
            sh.lock()
                .violations
                .push(format!("simulator queue full for {chat}"));
        }
    }
}

/// The chat's sender task: one message at a time, each after the last one's ack.
fn outgoing(sh: &Arc<Shared>, chat: &str) -> mpsc::Sender<Outgoing> {
    let mut i = sh.lock();
    let c = i.chats.entry(chat.to_string()).or_default();
    if let Some(tx) = &c.outgoing {
        return tx.clone();
    }
    let (tx, mut rx) = mpsc::channel(OUTGOING_CAPACITY);
    c.outgoing = Some(tx.clone());
    let (sh, chat) = (sh.clone(), chat.to_string());
    tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            if !send_one(&sh, &chat, item).await {
                break; // the bot waits forever for a missing ack: nothing more in this chat
            }
        }
    });
    tx
}

/// Sends one event; for a message, waits for its acknowledgement. False: it never came.
async fn send_one(sh: &Arc<Shared>, chat: &str, item: Outgoing) -> bool {
    let Some((url, bearer)) = sh.lock().target.clone() else {
        sh.lock().violations.push("no webhook target set".into());
        return false;
    };
    let n = {
        let mut i = sh.lock();
        i.next_id += 1;
        i.next_id
    };
    let (kind, id, text, extra) = match &item {
        Outgoing::Message(m) => {
            let mut content = json!({"type": "text", "text": m.text});
            if !m.quick_replies.is_empty() {
                content["quickReplies"] = Value::from(m.quick_replies.clone());
            }
            let id = format!("msg-{n}");
            let message = json!({"id": id, "author": {"type": "chatbot"}, "content": content});
            (
                "conversation:message",
                id,
                m.text.clone(),
                json!({"message": message}),
            )
        }
        Outgoing::Typing => (
            "conversation:typing",
            format!("ev-{n}"),
            String::new(),
            json!({"typing": {"state": "on"}}),
        ),
        Outgoing::Handover => (
            "conversation:handover",
            format!("ev-{n}"),
            String::new(),
            json!({"handover": {"metadata": {}}}),
        ),
    };
    let mut payload = json!({"conversation": {"id": chat}});
    if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    let body = json!({
        "app": {"teamId": TEAM_ID, "botId": BOT_ID},
        "webhook": {"id": "wh-sim", "version": "v1"},
        "events": [{"id": format!("ev-{n}"), "timestamp": unix_ms(), "type": kind,
                    "payload": payload}],
    });
    if let Outgoing::Message(_) = &item {
        let content = body.pointer("/events/0/payload/message/content").cloned();
        let mut i = sh.lock();
        i.conversation.push(("bot".into(), text.clone()));
        if let Some(c) = i.chats.get_mut(chat) {
            c.sent.insert(id.clone());
            c.outstanding = Some((id.clone(), content.unwrap_or_default(), Instant::now()));
        }
    }
    if let Outgoing::Handover = item {
        if let Some(c) = sh.lock().chats.get_mut(chat) {
            c.handed_over = true;
        }
    }
    // Recorded before sending: in queued mode the ack may come before our POST returns.
    sh.lock().pushed.push(Pushed {
        conversation: chat.to_string(),
        id: id.clone(),
        kind,
        text,
        at: Instant::now(),
        acked_at: None,
        status: 0,
    });
    let mut req = sh.http.post(&url).json(&body);
    if let Some(b) = &bearer {
        req = req.bearer_auth(b);
    }
    let status = req.send().await.map_or(0, |r| r.status().as_u16());
    {
        let mut i = sh.lock();
        if let Some(p) = i.pushed.iter_mut().rev().find(|p| p.id == id) {
            p.status = status;
        }
        if status != 200 {
            i.violations
                .push(format!("webhook answered {status} to {kind} {id}"));
        }
    }
    sh.changed.notify_waiters();
    if kind != "conversation:message" {
        return true;
    }
    let timeout = sh.lock().ack_timeout.unwrap_or(Duration::from_secs(30));
    let deadline = Instant::now() + timeout;
    loop {
        let notified = sh.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let acked = sh
            .lock()
            .chats
            .get(chat)
            .is_some_and(|c| c.acked.contains(&id));
        if acked {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            sh.lock()
                .violations
                .push(format!("missing ack of {id} after {timeout:?}"));
            return false;
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

const WELCOME: &str = "Welcome to Voxhook Bank. How can I help you today?";

/// The development bot: the banking conversation of the Kore simulator, with a quick-reply
/// menu (`help`) and a handover (`agent`).
pub fn dev_bot_script(r: &Received) -> Reply {
    let text = r.val.to_lowercase();
    let passage = serde_json::from_str::<Value>(&r.val)
        .ok()
        .and_then(|p| p.pointer("/nextPassage/passageId").cloned());
    let balance = || {
        Reply::say(&[
            "Sure, let me look up your account.",
            "To confirm it is you, please enter your four digit PIN, followed by the hash key.",
        ])
    };
    let agent = || Reply::Handover(vec![SimMessage::text("Let me connect you with an agent.")]);
    match r.kind {
        "postback" => match passage.as_ref().and_then(Value::as_str) {
            Some("balance") => balance(),
            Some("agent") => agent(),
            _ => Reply::say(&[WELCOME]),
        },
        _ if text.contains("balance") => balance(),
        _ if text.contains("agent") => agent(),
        _ if ["help", "menu", "options"].iter().any(|w| text.contains(w)) => {
            Reply::Say(vec![SimMessage {
                text: "What would you like to do?".into(),
                quick_replies: vec![
                    json!({"title": "Account balance", "payload": {"nextPassage": {"passageId": "balance"}}}),
                    json!({"title": "Speak to an agent", "payload": {"nextPassage": {"passageId": "agent"}}}),
                ],
            }])
        }
        _ if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) => Reply::say(&[
            "Thank you. The balance of your checking account is two thousand one hundred \
             and fifty dollars. Is there anything else?",
        ]),
        _ if ["bye", "no", "nothing"].iter().any(|w| text.contains(w)) => {
            Reply::say(&["Thank you for calling Voxhook Bank. Goodbye!"])
        }
        _ => Reply::Say(vec![SimMessage::text(&format!(
            "Sorry, I heard: {}. You can ask me for your account balance.",
            r.val
        ))]),
    }
}
