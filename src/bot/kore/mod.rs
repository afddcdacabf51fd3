//! Kore.ai XO Webhook channel. v2: `ON_CONNECT` opens the session, each caller turn is a
//! `text` message, `SESSION_CLOSURE` ends it; replies come in the response (sync, with
//! `pollId` polling) or as callbacks (async, see [`callback`]). v1 (legacy): text only, no
//! events, an optional greeting turn. Errors follow kore-webhook.md's table (see
//! `bot::retry` for what is resent).

pub mod auth;
pub mod callback;
pub mod config;
pub mod speech;
mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::retry::{self, Attempt, RetryAction};
use super::template::{self, CallVars};
use super::{
    BotAction, BotChannel, BotError, BotReply, BotSession, Conversation, ReplySink, TurnInput,
};
use auth::TokenMinter;
use config::{KoreApi, KoreSettings};

/// What a request carries.
enum Payload<'a> {
    Event(&'static str),
    Text(&'a TurnInput),
}

/// The Kore v2 client shared by all calls.
pub struct KoreClient {
    s: KoreSettings,
    http: reqwest::Client,
    tokens: TokenMinter,
    /// Unix ms of the last 401/403 not followed by a success (0: none).
    auth_failed_at: AtomicU64,
}

/// How long a 401/403 keeps `/ready` failing without a later success. Calls still arrive
/// meanwhile only if the load balancer ignores readiness; the window lets the instance
/// recover by itself once credentials are fixed and new calls try again.
const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(30);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl KoreClient {
    /// Builds the client; fails on a bad signing key.
    pub fn new(s: KoreSettings) -> Result<Self, BotError> {
        let tokens = TokenMinter::new(
            s.jwt_algorithm,
            &s.signing_key,
            &s.client_id,
            s.jwt_ttl,
            s.jwt_user_identity,
        )?;
        let http = reqwest::Client::builder()
            .timeout(s.request_timeout)
            .connect_timeout(Duration::from_secs(5).min(s.request_timeout))
            .user_agent(concat!("voxhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BotError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(Self {
            s,
            http,
            tokens,
            auth_failed_at: AtomicU64::new(0),
        })
    }

    fn body(&self, session: &BotSession, payload: &Payload<'_>) -> Value {
        let turn = match payload {
            Payload::Text(t) => Some(*t),
            Payload::Event(_) => None,
        };
        let vars = session.vars(turn);
        let fill = |pairs: &[(String, String)]| -> Map<String, Value> {
            pairs
                .iter()
                .map(|(k, t)| (k.clone(), Value::from(template::render(t, &vars))))
                .collect()
        };
        let mut custom = fill(&self.s.custom_data);
        custom.insert("callId".into(), session.call_id.as_str().into());
        custom.insert("provider".into(), session.provider.as_ref().into());
        if let Some(c) = &session.caller {
            custom.insert("caller".into(), c.as_str().into());
        }
        if let Some(c) = &session.called {
            custom.insert("called".into(), c.as_str().into());
        }
        if !session.custom.is_empty() {
            custom.insert(
                "customParameters".into(),
                serde_json::to_value(&session.custom).unwrap_or_default(),
            );
        }
        let (kind, val) = match payload {
            Payload::Event(e) => ("event", *e),
            Payload::Text(t) => {
                custom.insert("inputMode".into(), t.mode.as_str().into());
                if let Some(c) = t.confidence {
                    custom.insert("sttConfidence".into(), Value::from(f64::from(c)));
                }
                if let Some(cut) = &t.interrupted {
                    custom.insert("bargeIn".into(), Value::Bool(true));
                    custom.insert("interruptedText".into(), cut.as_str().into());
                }
                ("text", t.text.as_str())
            }
        };
        let opening = match self.s.api {
            KoreApi::V2 => matches!(payload, Payload::Event("ON_CONNECT")),
            KoreApi::V1 => turn.is_some_and(|t| t.mode == super::InputMode::Greeting),
        };
        let tags = |pairs: &[(String, String)], vars: &CallVars<'_>| -> Vec<wire::Tag> {
            pairs
                .iter()
                .map(|(name, t)| wire::Tag {
                    name: name.clone(),
                    value: template::render(t, vars),
                })
                .collect()
        };
        let m = &self.s.meta_tags;
        let has_tags = !(m.user.is_empty() && m.session.is_empty() && m.message.is_empty());
        let req = wire::Request {
            session: opening.then_some(wire::SessionFlag { new: true }),
            message: match self.s.api {
                KoreApi::V2 => wire::Message::V2 { kind, val },
                KoreApi::V1 => wire::Message::V1 {
                    text: val,
                    attachments: [],
                },
            },
            from: wire::From {
                id: &session.user_id,
                user_info: (!self.s.user_info.is_empty()).then(|| fill(&self.s.user_info)),
            },
            to: wire::To { id: &self.s.bot_id },
            interactive_language: vars.language,
            meta_tags: has_tags.then(|| wire::MetaTags {
                user_level_tags: tags(&m.user, &vars),
                session_level_tags: tags(&m.session, &vars),
                message_level_tags: tags(&m.message, &vars),
            }),
            merge_identity: self.s.merge_identity.then_some(true),
            preferred_channel_for_response: self.s.preferred_channel.as_deref(),
            custom_data: custom,
        };
        serde_json::to_value(&req).unwrap_or_default()
    }

    /// What a response or callback says, as replies in order (end-of-task included).
    pub(crate) fn replies(&self, resp: &wire::Response) -> Vec<BotReply> {
        let mut out = Vec::new();
        let items: Vec<&Value> = match &resp.text {
            // v1: one string or object, or an array of them.
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v) => vec![v],
            None => resp
                .data
                .iter()
                .filter(|d| d.kind != "event")
                .map(|d| &d.val)
                .collect(),
        };
        for val in items {
            match speech::to_reply(val) {
                Some(r) => out.push(r),
                None => tracing::warn!("Unspeakable bot message skipped."),
            }
        }
        let task = resp
            .completed_task_name
            .clone()
            .filter(|_| resp.end_of_task == Some(true));
        if let Some(task) = task {
            tracing::debug!(task = %task, "Bot task completed.");
            let hangup = self.s.hangup_tasks.contains(&task);
            // The task name rides on the last message (call records); an end-of-task
            // notice without text becomes a message of its own.
            if hangup || out.is_empty() {
                out.push(BotReply {
                    action: hangup.then_some(BotAction::Hangup),
                    ..BotReply::default()
                });
            }
            if let Some(last) = out.last_mut() {
                last.task = Some(task);
            }
        }
        out
    }

    /// Sends one request with retries until `deadline`; returns the 2xx body.
    async fn request(
        &self,
        user_id: &str,
        url: &str,
        body: Option<&Value>,
        idempotent: bool,
        deadline: Instant,
    ) -> Result<bytes::Bytes, BotError> {
        let mut n = 0;
        loop {
            n += 1;
            let token = self.tokens.mint(user_id)?;
            let req = match body {
                Some(b) => self.http.post(url).json(b),
                None => self.http.get(url),
            };
            let res = req
                .header("Authorization", format!("bearer {token}"))
                .send()
                .await;
            let endpoint = if body.is_some() { "webhook" } else { "poll" };
            crate::telemetry::metrics::bot_request(endpoint, &res);
            let (attempt, retry_after, err) = match res {
                Ok(resp) if resp.status().is_success() => {
                    let bytes = resp
                        .bytes()
                        .await
                        .map_err(|e| BotError::InvalidResponse(format!("reading body: {e}")))?;
                    self.auth_failed_at.store(0, Ordering::Relaxed);
                    return Ok(bytes);
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = retry::parse_retry_after(
                        resp.headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()),
                    );
                    let text = resp.text().await.unwrap_or_default();
                    let detail = serde_json::from_str::<wire::Response>(&text)
                        .map(|r| r.error_text())
                        .unwrap_or_else(|_| text.chars().take(200).collect());
                    if matches!(status, 401 | 403) {
                        self.auth_failed_at.store(unix_ms(), Ordering::Relaxed);
                    }
                    let err = retry::status_error(status, detail);
                    (Attempt::Status(status), retry_after, err)
                }
                Err(e) => {
                    let (attempt, err) = retry::transport_failure(&e, self.s.request_timeout);
                    (attempt, None, err)
                }
            };
            let wait = retry::backoff(n - 1, retry_after);
            let max = self.s.max_attempts;
            let retryable = retry::classify(attempt, idempotent) == RetryAction::Retry;
            if !retryable {
                tracing::warn!(attempt = n, error = %err, "Bot request failed; not retried.");
                return Err(err);
            }
            if n >= max || Instant::now() + wait >= deadline {
                tracing::warn!(attempt = n, max_attempts = max, error = %err,
                    "Bot request failed beyond the retry budget.");
                return Err(err);
            }
            let retry_in_ms = wait.as_millis() as u64;
            tracing::warn!(attempt = n, max_attempts = max, retry_in_ms, error = %err,
                "Bot request failed; retrying in {retry_in_ms} ms, attempt {} of {max}.", n + 1);
            tokio::time::sleep(wait).await;
        }
    }

    /// Delivers a response's messages and follows its `pollId`s until the turn is complete.
    async fn deliver_and_poll(
        &self,
        session: &BotSession,
        mut resp: wire::Response,
        replies: &ReplySink,
    ) -> Result<(), BotError> {
        let poll_deadline = Instant::now() + self.s.poll_max_wait;
        loop {
            if !resp.errors.is_empty() {
                // Polling an id again after delivery answers "No data found": the turn is done.
                tracing::debug!(errors = %resp.error_text(), "Bot answered with errors.");
                return Ok(());
            }
            for reply in self.replies(&resp) {
                if replies.send(Box::new(reply)).await.is_err() {
                    return Ok(()); // the call is gone
                }
            }
            let Some(poll_id) = resp.poll_id.take() else {
                return Ok(());
            };
            let next = Instant::now() + self.s.poll_interval;
            if next > poll_deadline {
                return Err(BotError::Timeout(format!(
                    "polled messages not ready within {:?}",
                    self.s.poll_max_wait
                )));
            }
            tokio::time::sleep_until(next).await;
            let url = format!("{}/{}", self.s.poll_base_url, poll_id);
            resp = match self
                .request(&session.user_id, &url, None, true, poll_deadline)
                .await
            {
                // An id whose messages were already delivered: nothing more for this turn.
                Err(BotError::Rejected(msg)) if msg.contains("No data found") => return Ok(()),
                other => parse_reply(&other?)?,
            };
            if resp.status.as_deref() == Some("Inprogress") && resp.data.is_empty() {
                resp.poll_id = resp.poll_id.or(Some(poll_id));
            }
        }
    }

    async fn send(
        &self,
        session: &BotSession,
        payload: Payload<'_>,
        deadline: Duration,
    ) -> Result<wire::Response, BotError> {
        let body = self.body(session, &payload);
        let idempotent = matches!(payload, Payload::Event(_));
        let bytes = self
            .request(
                &session.user_id,
                &self.s.webhook_url,
                Some(&body),
                idempotent,
                Instant::now() + deadline,
            )
            .await?;
        self.decode_body(&bytes)
    }

    /// A 2xx body of the webhook as its response: an acknowledgement in async mode, the
    /// documented JSON otherwise; errors in it reject the request. Its own function so the
    /// fuzz targets run exactly this (`crate::fuzzing`).
    pub(crate) fn decode_body(&self, bytes: &[u8]) -> Result<wire::Response, BotError> {
        let resp = if self.s.callback.is_some() {
            parse_ack(bytes)
        } else {
            parse_reply(bytes)?
        };
        if resp.errors.is_empty() {
            Ok(resp)
        } else {
            Err(BotError::Rejected(resp.error_text()))
        }
    }
}

/// A sync answer or poll result: it must be the documented JSON.
fn parse_reply(bytes: &[u8]) -> Result<wire::Response, BotError> {
    serde_json::from_slice(bytes).map_err(|e| BotError::InvalidResponse(format!("{e}")))
}

/// How much of an unexpected acknowledgement body a log line shows.
const ACK_EXCERPT_CHARS: usize = 80;

/// An async-mode acknowledgement. The replies come as callbacks, so any 2xx acknowledges:
/// v1's documented empty body, whitespace, `{}`, v2's `{"status":"ok",…}`. Errors in a JSON
/// object still count as errors. Anything else is logged (an excerpt of the bot's own body;
/// it holds none of our secrets) and taken as an acknowledgement too.
fn parse_ack(bytes: &[u8]) -> wire::Response {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return wire::Response::default();
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(obj)) => serde_json::from_value(Value::Object(obj)).unwrap_or_else(|e| {
            tracing::debug!(error = %e, "Bot acknowledgement has unexpected fields; ignored.");
            wire::Response::default()
        }),
        _ => {
            let text = String::from_utf8_lossy(bytes);
            let excerpt: String = text.chars().take(ACK_EXCERPT_CHARS).collect();
            tracing::warn!(bytes = bytes.len(), excerpt = ?excerpt,
                "Bot acknowledged an async request with a body that is not a JSON object; \
                 taken as an acknowledgement.");
            wire::Response::default()
        }
    }
}

/// One call's Kore conversation: its bot user id is in the session.
struct KoreConversation {
    client: Arc<KoreClient>,
    session: BotSession,
}

#[async_trait]
impl Conversation for KoreConversation {
    fn session(&self) -> &BotSession {
        &self.session
    }

    async fn open(&self, replies: &ReplySink) -> Result<(), BotError> {
        self.client.open(&self.session, replies).await
    }

    async fn send_turn(&self, turn: &TurnInput, replies: &ReplySink) -> Result<(), BotError> {
        self.client.send_turn(&self.session, turn, replies).await
    }

    async fn close(&self) -> Result<(), BotError> {
        self.client.close(&self.session).await
    }
}

// The protocol, per call; `KoreConversation` calls these.
impl KoreClient {
    async fn open(&self, session: &BotSession, replies: &ReplySink) -> Result<(), BotError> {
        let resp = match (self.s.api, &self.s.greeting_text) {
            (KoreApi::V2, _) => {
                self.send(session, Payload::Event("ON_CONNECT"), self.s.turn_deadline)
                    .await?
            }
            // v1 has no events: a configured greeting turn starts the conversation instead.
            (KoreApi::V1, Some(text)) => {
                let turn = TurnInput {
                    text: text.clone(),
                    mode: super::InputMode::Greeting,
                    confidence: None,
                    language: session.language.clone(),
                    interrupted: None,
                };
                self.send(session, Payload::Text(&turn), self.s.turn_deadline)
                    .await?
            }
            (KoreApi::V1, None) => return Ok(()),
        };
        self.deliver_and_poll(session, resp, replies).await
    }

    async fn send_turn(
        &self,
        session: &BotSession,
        turn: &TurnInput,
        replies: &ReplySink,
    ) -> Result<(), BotError> {
        let resp = self
            .send(session, Payload::Text(turn), self.s.turn_deadline)
            .await?;
        self.deliver_and_poll(session, resp, replies).await
    }

    async fn close(&self, session: &BotSession) -> Result<(), BotError> {
        if self.s.api == KoreApi::V1 {
            return Ok(()); // no SESSION_CLOSURE in v1: the session times out on Kore's side
        }
        self.send(
            session,
            Payload::Event("SESSION_CLOSURE"),
            self.s.closure_deadline,
        )
        .await
        .map(drop)
    }
}

#[async_trait]
impl BotChannel for KoreClient {
    fn name(&self) -> &'static str {
        match self.s.api {
            KoreApi::V1 => "kore_v1",
            KoreApi::V2 => "kore_v2",
        }
    }

    fn conversation(
        self: Arc<Self>,
        session: BotSession,
        _routes: Arc<dyn super::RouteKeys>,
    ) -> Arc<dyn Conversation> {
        // Callbacks name the call by its bot user id or call id, registered by the call.
        Arc::new(KoreConversation {
            client: self,
            session,
        })
    }

    fn auth_ok(&self) -> bool {
        let failed = self.auth_failed_at.load(Ordering::Relaxed);
        failed == 0 || unix_ms().saturating_sub(failed) > AUTH_FAILURE_WINDOW.as_millis() as u64
    }

    fn greets(&self) -> bool {
        self.s.api == KoreApi::V2 || self.s.greeting_text.is_some()
    }

    fn is_async(&self) -> bool {
        self.s.callback.is_some()
    }

    fn callback_route(&self) -> Option<&'static str> {
        self.s.callback.as_ref().map(|_| "/kore/callback/{secret}")
    }

    fn authorize_callback(&self, secret: &str, headers: &axum::http::HeaderMap) -> bool {
        let Some(cb) = &self.s.callback else {
            return false;
        };
        let token_ok = cb.bearer_token.as_ref().is_none_or(|t| {
            let header = headers.get("authorization").and_then(|v| v.to_str().ok());
            let (form, got) = callback::token(header);
            // Which form the platform uses is not documented (Kore v1 "uses the access token
            // for delivering"): log the form, never the value.
            tracing::debug!(form, "Bot callback authorization.");
            got.is_some_and(|got| super::constant_time_eq(got.as_bytes(), t.expose().as_bytes()))
        });
        let secret_ok = super::constant_time_eq(secret.as_bytes(), cb.secret.expose().as_bytes());
        if !(secret_ok && token_ok) {
            tracing::warn!(token_ok, "Bot callback refused: wrong secret or token.");
        }
        secret_ok && token_ok
    }

    fn parse_callback(&self, body: &[u8]) -> Result<super::Callback, BotError> {
        let (keys, resp) = callback::parse(body, &self.s.bot_id)?;
        Ok(super::Callback {
            keys,
            replies: self.replies(&resp),
        })
    }

    /// The session itself: `SESSION_CLOSURE` carries the same ids and `customData` as the
    /// live call would have sent. v1 has no closure, so nothing to keep.
    fn orphan_record(&self, session: &BotSession) -> Option<String> {
        (self.s.api == KoreApi::V2)
            .then(|| serde_json::to_string(session).ok())
            .flatten()
    }

    async fn close_orphan(&self, record: &str) -> Result<(), BotError> {
        let session: BotSession = serde_json::from_str(record)
            .map_err(|e| BotError::InvalidResponse(format!("orphaned session record: {e}")))?;
        self.close(&session).await
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use std::collections::BTreeMap;

    use tokio::sync::mpsc;

    use super::config::CallbackSettings;
    use super::*;
    use crate::config::{JwtAlgorithm, SensitiveString};
    use crate::sim::kore::{KoreSim, PollBatch, Received, Reply};

    async fn client(sim: &KoreSim, poll_max_wait: Duration) -> KoreClient {
        let url = sim.webhook_url();
        let poll_base_url = format!("{url}/poll");
        KoreClient::new(KoreSettings {
            api: KoreApi::V2,
            callback: None,
            greeting_text: None,
            user_id_template: "{caller}".into(),
            user_info: vec![("firstName".into(), "{param.first}".into())],
            meta_tags: super::config::MetaTags {
                session: vec![("tier".into(), "{param.tier}".into())],
                ..Default::default()
            },
            merge_identity: true,
            preferred_channel: None,
            hangup_tasks: vec!["Goodbye".into()],
            webhook_url: url,
            bot_id: "st-b".into(),
            poll_base_url,
            client_id: "cs-a".into(),
            signing_key: SensitiveString::new("sec"),
            jwt_algorithm: JwtAlgorithm::Hs256,
            jwt_ttl: Duration::from_secs(60),
            jwt_user_identity: true,
            request_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(20),
            poll_max_wait,
            max_attempts: 3,
            turn_deadline: Duration::from_secs(10),
            closure_deadline: Duration::from_secs(5),
            fallback_text: "sorry".into(),
            custom_data: vec![("tenant".into(), "acme-{provider}".into())],
        })
        .unwrap()
    }

    fn session() -> BotSession {
        BotSession {
            call_id: "CA1".into(),
            user_id: "+1555".into(),
            caller: Some("+1555".into()),
            called: None,
            provider: "twilio".into(),
            custom: BTreeMap::from([("tier".into(), "gold".into())]),
            language: None,
        }
    }

    fn turn(text: &str) -> TurnInput {
        TurnInput {
            text: text.into(),
            mode: crate::bot::InputMode::Speech,
            confidence: Some(0.8),
            language: Some("es".into()),
            interrupted: None,
        }
    }

    async fn collect(mut rx: mpsc::Receiver<Box<BotReply>>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(r) = rx.recv().await {
            out.extend(r.text);
        }
        out
    }

    #[tokio::test]
    async fn follows_poll_ids_until_every_batch_is_delivered() {
        let sim = KoreSim::start("st-b", "cs-a", "sec").await.unwrap();
        sim.push_override(
            |r: &Received| r.val == "go",
            Reply::Messages {
                now: vec!["one".into()],
                polled: vec![
                    PollBatch {
                        in_progress: 2,
                        texts: vec!["two".into()],
                    },
                    PollBatch {
                        in_progress: 0,
                        texts: vec!["three".into(), "four".into()],
                    },
                ],
            },
        );
        let c = client(&sim, Duration::from_secs(5)).await;
        let (tx, rx) = mpsc::channel(16);
        c.send_turn(&session(), &turn("go"), &tx).await.unwrap();
        drop(tx);
        assert_eq!(collect(rx).await, ["one", "two", "three", "four"]);
        let got = sim.received();
        assert_eq!(got[0].custom_data["tenant"], "acme-twilio");
        assert_eq!(
            got[0].custom_data["sttConfidence"]
                .as_f64()
                .map(|c| (c * 10.0).round()),
            Some(8.0)
        );
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[tokio::test]
    async fn polling_is_bounded_by_the_poll_deadline() {
        let sim = KoreSim::start("st-b", "cs-a", "sec").await.unwrap();
        sim.push_override(
            |r: &Received| r.val == "slow",
            Reply::Messages {
                now: vec!["working on it".into()],
                polled: vec![PollBatch {
                    in_progress: usize::MAX,
                    texts: vec![],
                }],
            },
        );
        let c = client(&sim, Duration::from_millis(300)).await;
        let (tx, rx) = mpsc::channel(16);
        let err = c
            .send_turn(&session(), &turn("slow"), &tx)
            .await
            .unwrap_err();
        assert!(matches!(err, BotError::Timeout(_)), "{err}");
        drop(tx);
        assert_eq!(collect(rx).await, ["working on it"]);
    }

    #[tokio::test]
    async fn errors_map_to_the_contract() {
        let sim = KoreSim::start("st-b", "cs-a", "sec").await.unwrap();
        let c = client(&sim, Duration::from_secs(5)).await;
        let (tx, _rx) = mpsc::channel(16);
        for (code, check) in [
            (
                400u16,
                (|e: &BotError| matches!(e, BotError::Rejected(_))) as fn(&BotError) -> bool,
            ),
            (500, |e| matches!(e, BotError::Unavailable(_))),
            (504, |e| matches!(e, BotError::Timeout(_))),
        ] {
            let text = format!("t{code}");
            let t = text.clone();
            sim.push_override(move |r: &Received| r.val == t, Reply::status(code));
            let err = c
                .send_turn(&session(), &turn(&text), &tx)
                .await
                .unwrap_err();
            assert!(check(&err), "{code}: {err}");
            assert_eq!(
                sim.received().iter().filter(|r| r.val == text).count(),
                1,
                "{code} not resent"
            );
        }
        sim.push_override(|r: &Received| r.val == "t401", Reply::status(401));
        assert!(c.auth_ok());
        let err = c
            .send_turn(&session(), &turn("t401"), &tx)
            .await
            .unwrap_err();
        assert!(matches!(err, BotError::Unauthorized(_)));
        assert!(!c.auth_ok());
    }

    /// Every acknowledgement form of async mode is a success with nothing to speak: the
    /// replies come as callbacks, so no fallback may follow any of them.
    #[tokio::test]
    async fn every_async_acknowledgement_form_is_a_success() {
        let sim = KoreSim::start("st-b", "cs-a", "sec").await.unwrap();
        let receiver = crate::sim::kore::test_support::Receiver::start().await;
        sim.set_async(receiver.url(), None);
        for api in [KoreApi::V1, KoreApi::V2] {
            let mut c = client(&sim, Duration::from_secs(5)).await;
            c.s.api = api;
            if api == KoreApi::V1 {
                c.s.webhook_url = sim.v1_webhook_url();
            }
            c.s.callback = Some(CallbackSettings {
                secret: SensitiveString::new("s"),
                bearer_token: None,
            });
            // `None`: the documented form (v1 an empty body, v2 `{"status":"ok",…}`).
            for ack in [
                None,
                Some(""),
                Some(" \r\n"),
                Some("{}"),
                Some("{\"status\":\"ok\",\"x\":[1]}"),
                Some("OK"),
            ] {
                sim.set_async_ack(ack);
                let (tx, rx) = mpsc::channel(16);
                let res = c.send_turn(&session(), &turn("ack"), &tx).await;
                assert!(res.is_ok(), "{api:?} {ack:?}: {res:?}");
                drop(tx);
                assert!(collect(rx).await.is_empty(), "{api:?} {ack:?}");
            }
        }
        // An acknowledgement that carries errors is still an error.
        sim.set_async_ack(Some(r#"{"errors":[{"msg":"bad","code":400}]}"#));
        let mut c = client(&sim, Duration::from_secs(5)).await;
        c.s.callback = Some(CallbackSettings {
            secret: SensitiveString::new("s"),
            bearer_token: None,
        });
        let (tx, _rx) = mpsc::channel(16);
        let err = c
            .send_turn(&session(), &turn("ack"), &tx)
            .await
            .unwrap_err();
        assert!(matches!(err, BotError::Rejected(_)), "{err}");
    }

    #[tokio::test]
    async fn a_sync_reply_must_be_json() {
        let sim = KoreSim::start("st-b", "cs-a", "sec").await.unwrap();
        // The override applies to async acknowledgements only; force one via a sync client
        // pointed at an async simulator.
        let receiver = crate::sim::kore::test_support::Receiver::start().await;
        sim.set_async(receiver.url(), None);
        sim.set_async_ack(Some(""));
        let c = client(&sim, Duration::from_secs(5)).await;
        let (tx, _rx) = mpsc::channel(16);
        let err = c.send_turn(&session(), &turn("x"), &tx).await.unwrap_err();
        assert!(matches!(err, BotError::InvalidResponse(_)), "{err}");
    }

    #[tokio::test]
    async fn session_events_are_retried_through_transient_failures() {
        let sim = KoreSim::start("st-b", "cs-a", "sec").await.unwrap();
        let c = client(&sim, Duration::from_secs(5)).await;
        sim.push_override(
            |r: &Received| r.val == "SESSION_CLOSURE",
            Reply::status(500),
        );
        c.close(&session()).await.unwrap();
        assert_eq!(sim.count_event("+1555", "SESSION_CLOSURE"), 2);
    }
}
