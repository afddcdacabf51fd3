//! inGenious AI webhook API: a push-only platform. Call start creates a chat
//! (`POST {base}/conversations`, whose conversation id becomes the call's route key) and
//! sends the configured start postback; each caller turn is a user message; the bot's
//! messages arrive as requests to our webhook route ([`BotChannel::parse_callback`]) and each
//! is acknowledged (`POST …/delivery`) once queued or once played, as configured, because the
//! platform sends the next one only then. Typing events are ignored; a handover follows the
//! configured policy and a later turn hands the chat back first. There is no closure event:
//! at call end the conversation stops acknowledging.

pub mod config;
mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::kore::speech;
use super::retry::{self, Attempt, RetryAction};
use super::template;
use super::{
    BotAction, BotChannel, BotError, BotReply, BotSession, Callback, Conversation, Playback,
    ReplySink, RouteKeys, TurnInput,
};
use config::{AckMode, HandoverPolicy, IngeniousSettings, StartPostback};

/// Starts a menu option payload that is a quick reply's postback object (JSON after it). A
/// control character: no transcript or key press can produce it.
const POSTBACK_MARK: &str = "\u{1}postback:";

/// The delivery token of a handover (message tokens are JSON objects): when the call has
/// taken it, a `stay` policy marks the chat as handed over.
const HANDOVER_TOKEN: &str = "handover";

/// How long a 401/403 keeps `/ready` failing without a later success.
const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(30);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The inGenious client shared by all calls.
pub struct IngeniousClient {
    s: IngeniousSettings,
    http: reqwest::Client,
    /// Unix ms of the last 401/403 not followed by a success (0: none).
    auth_failed_at: AtomicU64,
}

/// The endpoints we call, for metrics and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Conversations,
    Messages,
    Delivery,
    Handback,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Conversations => "conversations",
            Endpoint::Messages => "messages",
            Endpoint::Delivery => "delivery",
            Endpoint::Handback => "handback",
        }
    }

    /// Whether a request the platform may have processed can be resent. A new chat, a
    /// message and an acknowledgement would be doubled; a handback is a state change.
    fn idempotent(self) -> bool {
        self == Endpoint::Handback
    }
}

impl IngeniousClient {
    /// Builds the client.
    pub fn new(s: IngeniousSettings) -> Result<Self, BotError> {
        let http = reqwest::Client::builder()
            .timeout(s.request_timeout)
            .connect_timeout(Duration::from_secs(5).min(s.request_timeout))
            .user_agent(concat!("voxhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BotError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(Self {
            s,
            http,
            auth_failed_at: AtomicU64::new(0),
        })
    }

    fn url(&self, conversation: Option<&str>, endpoint: Endpoint) -> String {
        match conversation {
            None => format!("{}/conversations", self.s.base_url),
            Some(id) => format!("{}/conversations/{id}/{}", self.s.base_url, endpoint.name()),
        }
    }

    /// POSTs `body` with retries where safe until `deadline`; returns the 2xx body.
    async fn post(
        &self,
        url: &str,
        endpoint: Endpoint,
        body: &Value,
        deadline: Instant,
    ) -> Result<bytes::Bytes, BotError> {
        let mut n = 0;
        loop {
            n += 1;
            let res = self
                .http
                .post(url)
                .bearer_auth(self.s.access_token.expose())
                .json(body)
                .send()
                .await;
            crate::telemetry::metrics::bot_request(endpoint.name(), &res);
            let (attempt, retry_after, err) = match res {
                Ok(resp) if resp.status().is_success() => {
                    self.auth_failed_at.store(0, Ordering::Relaxed);
                    return resp
                        .bytes()
                        .await
                        .map_err(|e| BotError::InvalidResponse(format!("reading body: {e}")));
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = retry::parse_retry_after(
                        resp.headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()),
                    );
                    let text: String = resp.text().await.unwrap_or_default();
                    let detail: String = text.chars().take(200).collect();
                    if matches!(status, 401 | 403) {
                        self.auth_failed_at.store(unix_ms(), Ordering::Relaxed);
                    }
                    let err = retry::status_error(status, format!("{status} {detail}"));
                    (Attempt::Status(status), retry_after, err)
                }
                Err(e) => {
                    let (attempt, err) = retry::transport_failure(&e, self.s.request_timeout);
                    (attempt, None, err)
                }
            };
            let wait = retry::backoff(n - 1, retry_after);
            let max = self.s.max_attempts;
            if retry::classify(attempt, endpoint.idempotent()) != RetryAction::Retry {
                tracing::warn!(endpoint = endpoint.name(), attempt = n, error = %err,
                    "inGenious request failed; not retried.");
                return Err(err);
            }
            if n >= max || Instant::now() + wait >= deadline {
                tracing::warn!(endpoint = endpoint.name(), attempt = n, max_attempts = max,
                    error = %err, "inGenious request failed beyond the retry budget.");
                return Err(err);
            }
            tracing::warn!(endpoint = endpoint.name(), attempt = n, max_attempts = max,
                retry_in_ms = wait.as_millis() as u64, error = %err,
                "inGenious request failed; retrying.");
            tokio::time::sleep(wait).await;
        }
    }

    /// The chat's `metadata`: the call's identity, then the configured templates.
    fn chat_metadata(&self, session: &BotSession) -> Map<String, Value> {
        let vars = session.vars(None);
        let mut m = Map::new();
        m.insert("callId".into(), session.call_id.as_str().into());
        m.insert("provider".into(), session.provider.as_ref().into());
        if let Some(c) = &session.caller {
            m.insert("caller".into(), c.as_str().into());
        }
        if let Some(c) = &session.called {
            m.insert("called".into(), c.as_str().into());
        }
        if let Some(l) = &session.language {
            m.insert("language".into(), l.as_str().into());
        }
        if !session.custom.is_empty() {
            let params: Map<String, Value> = session
                .custom
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            m.insert("customParameters".into(), Value::Object(params));
        }
        for (k, t) in &self.s.metadata {
            m.insert(k.clone(), template::render(t, &vars).into());
        }
        m
    }

    fn start_payload(&self) -> Value {
        match &self.s.start {
            StartPostback::Restart => json!({"restart": true}),
            StartPostback::EntryPoint(id) => json!({"entryPoint": id}),
            StartPostback::Passage(id) => {
                json!({"nextPassage": {"passageId": id, "inlineActions": []}})
            }
        }
    }

    /// What a handover event means for the call.
    fn handover_reply(&self) -> BotReply {
        let (text, action) = match &self.s.handover {
            HandoverPolicy::Transfer(Some(target)) => (
                self.s.handover_text.clone(),
                Some(BotAction::Transfer {
                    target: target.clone(),
                }),
            ),
            HandoverPolicy::Transfer(None) => {
                (self.s.handover_text.clone(), Some(BotAction::Hangup))
            }
            HandoverPolicy::Stay => (self.s.handover_text.clone(), None),
        };
        BotReply {
            text,
            action,
            delivery: Some(HANDOVER_TOKEN.into()),
            ..BotReply::default()
        }
    }
}

/// A bot message's speech: its text (markup stripped) and quick replies as a numbered menu,
/// the way Kore templates are spoken (`kore::speech`). The delivery id is the message itself,
/// echoed in the acknowledgement. Unknown content types are logged and not spoken, but still
/// carry their delivery so they are acknowledged.
fn message_reply(message: &Value) -> BotReply {
    let content = message.get("content").cloned().unwrap_or(Value::Null);
    let kind = content.get("type").and_then(Value::as_str).unwrap_or("");
    let text = content.get("text").and_then(Value::as_str).unwrap_or("");
    let options: Vec<Value> = content
        .get("quickReplies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(quick_reply)
        .collect();
    let mut reply = if kind != "text" && text.is_empty() {
        tracing::info!(content_type = kind, "Bot message without text; not spoken.");
        BotReply::default()
    } else if options.is_empty() {
        speech::to_reply(&Value::from(text)).unwrap_or_default()
    } else {
        speech::to_reply(&json!({"text": text, "quick_replies": options})).unwrap_or_default()
    };
    if kind != "text" && !kind.is_empty() {
        tracing::debug!(content_type = kind, "Bot message of a non-text type.");
    }
    reply.delivery = Some(message.to_string());
    reply
}

/// A quick reply as a Kore-style option: its title, and as payload the postback object
/// (marked) or a string payload; without one, the title is sent back as text.
fn quick_reply(q: &Value) -> Option<Value> {
    let title = ["title", "text", "label"]
        .iter()
        .find_map(|k| q.get(*k).and_then(Value::as_str))?;
    let payload = match q.get("payload").or_else(|| q.get("postback")) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(v @ Value::Object(_)) => format!("{POSTBACK_MARK}{v}"),
        _ => title.to_string(),
    };
    Some(json!({"title": title, "payload": payload}))
}

#[async_trait]
impl BotChannel for IngeniousClient {
    fn name(&self) -> &'static str {
        "ingenious"
    }

    fn conversation(
        self: Arc<Self>,
        session: BotSession,
        routes: Arc<dyn RouteKeys>,
    ) -> Arc<dyn Conversation> {
        Arc::new(IngeniousConversation {
            client: self,
            session,
            routes,
            state: Mutex::new(ChatState::default()),
        })
    }

    fn auth_ok(&self) -> bool {
        let failed = self.auth_failed_at.load(Ordering::Relaxed);
        failed == 0 || unix_ms().saturating_sub(failed) > AUTH_FAILURE_WINDOW.as_millis() as u64
    }

    fn is_async(&self) -> bool {
        true
    }

    fn callback_route(&self) -> Option<&'static str> {
        Some("/ingenious/webhook/{secret}")
    }

    fn authorize_callback(&self, secret: &str, headers: &axum::http::HeaderMap) -> bool {
        let token_ok = self.s.callback_token.as_ref().is_none_or(|t| {
            let header = headers.get("authorization").and_then(|v| v.to_str().ok());
            let (_, got) = super::kore::callback::token(header);
            got.is_some_and(|got| super::constant_time_eq(got.as_bytes(), t.expose().as_bytes()))
        });
        let secret_ok = super::constant_time_eq(
            secret.as_bytes(),
            self.s.callback_secret.expose().as_bytes(),
        );
        if !(secret_ok && token_ok) {
            tracing::warn!(
                token_ok,
                "inGenious request refused: wrong secret or token."
            );
        }
        secret_ok && token_ok
    }

    fn parse_callback(&self, body: &[u8]) -> Result<Callback, BotError> {
        let inbound: wire::Inbound = serde_json::from_slice(body)
            .map_err(|e| BotError::InvalidResponse(format!("webhook request: {e}")))?;
        let mut conversation: Option<String> = None;
        let mut replies = Vec::new();
        for ev in inbound.events {
            let Some(id) = ev
                .payload
                .get("conversation")
                .and_then(|c| c.get("id"))
                .and_then(id_text)
            else {
                tracing::warn!(event = %ev.kind, "inGenious event names no conversation; ignored.");
                continue;
            };
            match &conversation {
                None => conversation = Some(id.clone()),
                Some(c) if *c != id => {
                    tracing::warn!(event = %ev.kind,
                        "inGenious request mixes conversations; later ones ignored.");
                    continue;
                }
                Some(_) => {}
            }
            match ev.kind.as_str() {
                "conversation:message" => match ev.payload.get("message") {
                    Some(m) if m.get("id").is_some() => replies.push(message_reply(m)),
                    _ => tracing::warn!("inGenious message event without a message id; ignored."),
                },
                "conversation:typing" => tracing::debug!("inGenious typing event ignored."),
                "conversation:handover" => {
                    tracing::info!("inGenious handover requested.");
                    replies.push(self.handover_reply());
                }
                other => tracing::info!(event = other, "Unknown inGenious event ignored."),
            }
        }
        let keys = conversation
            .map(|c| vec![c])
            .ok_or_else(|| BotError::InvalidResponse("no event names a conversation".into()))?;
        Ok(Callback { keys, replies })
    }
}

/// The conversation id in the answer to `POST /conversations`.
pub(crate) fn parse_created(bytes: &[u8]) -> Result<String, BotError> {
    let created: wire::Created = serde_json::from_slice(bytes)
        .map_err(|e| BotError::InvalidResponse(format!("new chat: {e}")))?;
    id_text(&created.conversation.id)
        .ok_or_else(|| BotError::InvalidResponse("new chat without an id".into()))
}

/// An id as text (the docs show strings; a number is accepted).
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Per-call chat state.
#[derive(Debug, Default)]
struct ChatState {
    /// The conversation id, once created.
    id: Option<String>,
    /// A handover happened and the caller stayed: hand back before the next turn.
    handed_over: bool,
    /// The call ended: acknowledge nothing more.
    ended: bool,
    /// Messages acknowledged (their delivery tokens), so none is acknowledged twice.
    acked: Vec<String>,
}

/// One call's chat.
struct IngeniousConversation {
    client: Arc<IngeniousClient>,
    session: BotSession,
    routes: Arc<dyn RouteKeys>,
    state: Mutex<ChatState>,
}

impl IngeniousConversation {
    fn lock(&self) -> std::sync::MutexGuard<'_, ChatState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn id(&self) -> Result<String, BotError> {
        self.lock()
            .id
            .clone()
            .ok_or_else(|| BotError::InvalidResponse("the chat was never created".into()))
    }

    async fn send_message(&self, id: &str, body: &Value) -> Result<(), BotError> {
        let c = &self.client;
        let deadline = Instant::now() + c.s.turn_deadline;
        c.post(
            &c.url(Some(id), Endpoint::Messages),
            Endpoint::Messages,
            body,
            deadline,
        )
        .await
        .map(drop)
    }

    async fn acknowledge(&self, delivery: &str) -> Result<(), BotError> {
        let id = {
            let mut st = self.lock();
            if st.ended || st.acked.iter().any(|d| d == delivery) {
                return Ok(());
            }
            st.acked.push(delivery.to_string());
            st.id.clone()
        };
        let Some(id) = id else { return Ok(()) };
        let message: Value = serde_json::from_str(delivery)
            .map_err(|e| BotError::InvalidResponse(format!("delivery token: {e}")))?;
        let body = serde_json::to_value(wire::DeliveryAck {
            delivery: wire::DeliveryState {
                state: "success",
                message: &message,
            },
        })
        .unwrap_or_default();
        let c = &self.client;
        let deadline = Instant::now() + c.s.request_timeout;
        let message_id = message.get("id").cloned().unwrap_or_default();
        tracing::debug!(message_id = %message_id, "Acknowledging bot message.");
        c.post(
            &c.url(Some(&id), Endpoint::Delivery),
            Endpoint::Delivery,
            &body,
            deadline,
        )
        .await
        .map(drop)
    }
}

#[async_trait]
impl Conversation for IngeniousConversation {
    fn session(&self) -> &BotSession {
        &self.session
    }

    async fn open(&self, _replies: &ReplySink) -> Result<(), BotError> {
        let c = &self.client;
        let vars = self.session.vars(None);
        let body = serde_json::to_value(wire::CreateConversation {
            display_name: &template::render(&c.s.display_name, &vars),
            description: &template::render(&c.s.description, &vars),
            metadata: c.chat_metadata(&self.session),
        })
        .unwrap_or_default();
        let deadline = Instant::now() + c.s.turn_deadline;
        let bytes = c
            .post(
                &c.url(None, Endpoint::Conversations),
                Endpoint::Conversations,
                &body,
                deadline,
            )
            .await?;
        let id = parse_created(&bytes)?;
        tracing::info!(conversation = %id, "inGenious chat created.");
        // Routed before the bot can speak: its greeting follows the postback.
        self.routes.add(id.clone()).await;
        self.lock().id = Some(id.clone());
        let start = serde_json::to_value(wire::UserMessage {
            author: wire::Author { kind: "user" },
            content: wire::Content::Postback {
                payload: c.start_payload(),
            },
            metadata: None,
        })
        .unwrap_or_default();
        self.send_message(&id, &start).await
    }

    async fn send_turn(&self, turn: &TurnInput, _replies: &ReplySink) -> Result<(), BotError> {
        let id = self.id()?;
        let c = &self.client;
        if std::mem::take(&mut self.lock().handed_over) {
            let body = serde_json::to_value(wire::Handback {
                author: wire::Author { kind: "agent" },
                handback: wire::HandbackBody {
                    metadata: Map::from_iter([("reason".into(), "caller_returned".into())]),
                },
            })
            .unwrap_or_default();
            let deadline = Instant::now() + c.s.request_timeout;
            c.post(
                &c.url(Some(&id), Endpoint::Handback),
                Endpoint::Handback,
                &body,
                deadline,
            )
            .await?;
            tracing::info!("inGenious chat handed back to the bot.");
        }
        let content = match turn.text.strip_prefix(POSTBACK_MARK) {
            Some(json) => wire::Content::Postback {
                payload: serde_json::from_str(json).unwrap_or_else(|_| Value::from(json)),
            },
            None => wire::Content::Text { text: &turn.text },
        };
        let metadata = c.s.input_metadata.then(|| {
            let mut m = Map::new();
            m.insert("inputMode".into(), turn.mode.as_str().into());
            if let Some(conf) = turn.confidence {
                m.insert("sttConfidence".into(), Value::from(f64::from(conf)));
            }
            if let Some(cut) = &turn.interrupted {
                m.insert("bargeIn".into(), Value::Bool(true));
                m.insert("interruptedText".into(), cut.as_str().into());
            }
            m
        });
        let body = serde_json::to_value(wire::UserMessage {
            author: wire::Author { kind: "user" },
            content,
            metadata,
        })
        .unwrap_or_default();
        self.send_message(&id, &body).await
    }

    async fn playback(&self, delivery: &str, stage: Playback) -> Result<(), BotError> {
        let s = &self.client.s;
        if delivery == HANDOVER_TOKEN {
            // Not acknowledged (the API says so); with `stay` the next turn hands back.
            if matches!(stage, Playback::Queued | Playback::Skipped)
                && s.handover == HandoverPolicy::Stay
            {
                self.lock().handed_over = true;
            }
            return Ok(());
        }
        let now = match stage {
            Playback::Queued => s.ack == AckMode::Queued,
            Playback::Played => s.ack == AckMode::Played,
            Playback::Interrupted => s.ack == AckMode::Played && s.ack_interrupted,
            Playback::Skipped => true,
        };
        if now {
            self.acknowledge(delivery).await
        } else {
            Ok(())
        }
    }

    fn conversation_id(&self) -> Option<String> {
        self.lock().id.clone()
    }

    async fn close(&self) -> Result<(), BotError> {
        // No closure event in this API: stop acknowledging; the chat times out on its side.
        self.lock().ended = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::{BotSettings, MenuOption};

    fn client(extra: &str) -> IngeniousClient {
        let toml = format!(
            "platform = \"ingenious\"\nbase_url = \"http://127.0.0.1:9/v1/t/b\"\n\
             access_token = \"tok\"\ncallback_secret = \"0123456789abcdef0123456789abcdef\"\n{extra}"
        );
        let BotSettings::Ingenious(s) = BotSettings::from_toml("bot", &toml).unwrap() else {
            panic!("not ingenious");
        };
        IngeniousClient::new(s).unwrap()
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/ingenious/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    #[test]
    fn quick_replies_become_a_numbered_menu_and_typing_is_ignored() {
        let cb = client("")
            .parse_callback(&fixture("message_quick_replies.json"))
            .unwrap();
        assert_eq!(cb.keys, ["conv-1"]);
        assert_eq!(cb.replies.len(), 1, "typing yields nothing");
        let r = &cb.replies[0];
        assert_eq!(
            r.text.as_deref(),
            Some(
                "What would you like to do? Press 1 or say Account balance. \
                 Press 2 or say Opening hours. Press 3 or say Agent."
            )
        );
        assert_eq!(
            r.options[0],
            MenuOption {
                title: "Account balance".into(),
                payload: format!("{POSTBACK_MARK}{{\"nextPassage\":{{\"passageId\":\"p-bal\"}}}}"),
            }
        );
        assert_eq!(r.options[1].payload, "hours");
        assert_eq!(r.options[2].payload, "Agent");
        let echoed: Value = serde_json::from_str(r.delivery.as_deref().unwrap()).unwrap();
        assert_eq!(echoed["id"], "msg-1");
        assert_eq!(echoed["content"]["quickReplies"][1]["payload"], "hours");
    }

    #[test]
    fn a_handover_follows_the_policy() {
        let body = fixture("handover.json");
        let r = &client("").parse_callback(&body).unwrap().replies[0];
        assert_eq!(r.action, Some(BotAction::Hangup));
        let r = &client("handover_target = \"+1555\"")
            .parse_callback(&body)
            .unwrap()
            .replies[0];
        assert_eq!(
            r.action,
            Some(BotAction::Transfer {
                target: "+1555".into()
            })
        );
        let r = &client("handover = \"stay\"\nhandover_text = \"\"")
            .parse_callback(&body)
            .unwrap()
            .replies[0];
        assert_eq!((r.action.clone(), r.text.clone()), (None, None));
        assert_eq!(r.delivery.as_deref(), Some(HANDOVER_TOKEN));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let c = client("");
        for body in [
            &b"nope"[..],
            b"{}",
            br#"{"events": []}"#,
            br#"{"events": [{"type": "conversation:message", "payload": {}}]}"#,
            br#"{"events": "x"}"#,
        ] {
            assert!(
                c.parse_callback(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
