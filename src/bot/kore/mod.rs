//! Kore.ai XO Webhook channel, API v2, synchronous mode with `pollId` polling: `ON_CONNECT`
//! opens the session, each caller turn is a `text` message, `SESSION_CLOSURE` ends it.
//! Errors follow kore-webhook.md's table (see `bot::retry` for what is resent).

pub mod auth;
pub mod speech;
mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::retry::{self, Attempt, RetryAction};
use super::{BotChannel, BotError, BotReply, BotSession, ReplySink, TurnInput};
use crate::config::KoreSettings;
use auth::TokenMinter;

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
    auth_ok: AtomicBool,
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
            auth_ok: AtomicBool::new(true),
        })
    }

    fn body(&self, session: &BotSession, payload: &Payload<'_>) -> Value {
        let mut custom: Map<String, Value> = self
            .s
            .custom_data
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        custom.insert("callId".into(), session.call_id.as_str().into());
        custom.insert("provider".into(), session.provider.into());
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
                ("text", t.text.as_str())
            }
        };
        let req = wire::Request {
            session: matches!(payload, Payload::Event("ON_CONNECT"))
                .then_some(wire::SessionFlag { new: true }),
            message: wire::Message { kind, val },
            from: wire::From {
                id: &session.user_id,
            },
            to: wire::To { id: &self.s.bot_id },
            custom_data: custom,
        };
        serde_json::to_value(&req).unwrap_or_default()
    }

    /// Sends one request with retries until `deadline`; returns the parsed 2xx body.
    async fn request(
        &self,
        user_id: &str,
        url: &str,
        body: Option<&Value>,
        idempotent: bool,
        deadline: Instant,
    ) -> Result<wire::Response, BotError> {
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
            let (attempt, retry_after, err) = match res {
                Ok(resp) if resp.status().is_success() => {
                    let bytes = resp
                        .bytes()
                        .await
                        .map_err(|e| BotError::InvalidResponse(format!("reading body: {e}")))?;
                    let parsed: wire::Response = serde_json::from_slice(&bytes)
                        .map_err(|e| BotError::InvalidResponse(format!("{e}")))?;
                    self.auth_ok.store(true, Ordering::Relaxed);
                    return Ok(parsed);
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
                    let err = match status {
                        400 => BotError::Rejected(detail),
                        401 | 403 => {
                            self.auth_ok.store(false, Ordering::Relaxed);
                            BotError::Unauthorized(detail)
                        }
                        429 => BotError::RateLimited,
                        504 => BotError::Timeout(format!("504 {detail}")),
                        _ => BotError::Unavailable(format!("{status} {detail}")),
                    };
                    (Attempt::Status(status), retry_after, err)
                }
                Err(e) if e.is_connect() => (
                    Attempt::ConnectFailed,
                    None,
                    BotError::Unavailable(format!("connect: {e}")),
                ),
                Err(e) if e.is_timeout() => (
                    Attempt::TimedOut,
                    None,
                    BotError::Timeout(format!("no response in {:?}", self.s.request_timeout)),
                ),
                Err(e) => (Attempt::Broken, None, BotError::Unavailable(e.to_string())),
            };
            let wait = retry::backoff(n - 1, retry_after);
            let retry = retry::classify(attempt, idempotent) == RetryAction::Retry
                && n < self.s.max_attempts
                && Instant::now() + wait < deadline;
            tracing::warn!(attempt = n, error = %err, retry, "Bot request failed.");
            if !retry {
                return Err(err);
            }
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
            for item in &resp.data {
                if item.kind == "event" {
                    continue;
                }
                match speech::to_speech(&item.val) {
                    Some(text) => {
                        if replies.send(BotReply { text }).await.is_err() {
                            return Ok(()); // the call is gone
                        }
                    }
                    None => tracing::warn!(kind = %item.kind, "Unspeakable bot message skipped."),
                }
            }
            if resp.end_of_task == Some(true) {
                tracing::debug!(task = resp.completed_task_name.as_deref().unwrap_or("-"), "Bot task completed.");
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
                other => other?,
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
        let resp = self
            .request(
                &session.user_id,
                &self.s.webhook_url,
                Some(&body),
                idempotent,
                Instant::now() + deadline,
            )
            .await?;
        if resp.errors.is_empty() {
            Ok(resp)
        } else {
            Err(BotError::Rejected(resp.error_text()))
        }
    }
}

#[async_trait]
impl BotChannel for KoreClient {
    fn name(&self) -> &'static str {
        "kore_v2"
    }

    async fn open(&self, session: &BotSession, replies: &ReplySink) -> Result<(), BotError> {
        let resp = self
            .send(session, Payload::Event("ON_CONNECT"), self.s.turn_deadline)
            .await?;
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
        self.send(session, Payload::Event("SESSION_CLOSURE"), self.s.closure_deadline)
            .await
            .map(drop)
    }

    fn auth_ok(&self) -> bool {
        self.auth_ok.load(Ordering::Relaxed)
    }
}
