//! Bot channels: the [`BotChannel`] trait (open a session, send turns, close it), the
//! protocol-neutral session, turn and reply types, and [`build`]. Kore.ai XO Webhook v2 is
//! the first implementation (`kore/`), the inGenious AI webhook API the second
//! (`ingenious/`); a platform is one module plus one line in [`BotSettings`].

pub mod ingenious;
pub mod kore;
pub mod retry;
pub mod template;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::HeaderMap;
use tokio::sync::mpsc;

crate::registry! {
    /// Validated `[bot]`: the platform named by `platform` (default `kore_v2`).
    pub enum BotSettings: dyn BotBackend, tag "platform", default "kore_v2" {
        /// Kore.ai XO Webhook channel, API v2 (events, polling, async callbacks) or the
        /// legacy v1 (no events, no polling).
        Kore(kore::config::KoreSettings) = "kore_v2" | "kore_v1",
        /// inGenious AI webhook API (push-only, acknowledged deliveries, handover).
        Ingenious(ingenious::config::IngeniousSettings) = "ingenious",
    }
}

/// What the call core needs of a bot platform's settings, and how its channel is built.
pub trait BotBackend: Debug + Send + Sync {
    /// Builds the channel shared by all calls (HTTP client, token minter).
    fn build(&self) -> Result<Arc<dyn BotChannel>, BotError>;
    /// Spoken when the bot cannot answer a turn.
    fn fallback_text(&self) -> &str;
    /// Longest time one turn may take, retries and polls included.
    fn turn_deadline(&self) -> Duration;
    /// Longest time closing one session may take, retries included.
    fn closure_deadline(&self) -> Duration;
    /// Template of the bot user id (see [`template`]).
    fn user_id_template(&self) -> &str;
}

impl BotBackend for kore::config::KoreSettings {
    fn build(&self) -> Result<Arc<dyn BotChannel>, BotError> {
        Ok(Arc::new(kore::KoreClient::new(self.clone())?))
    }
    fn fallback_text(&self) -> &str {
        &self.fallback_text
    }
    fn turn_deadline(&self) -> Duration {
        self.turn_deadline
    }
    fn closure_deadline(&self) -> Duration {
        self.closure_deadline
    }
    fn user_id_template(&self) -> &str {
        &self.user_id_template
    }
}

/// Capacity of the reply channel from a bot request to the call, in messages.
pub const BOT_REPLY_CAPACITY: usize = 16;

/// Errors of the bot layer, classified by what the call should do about them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BotError {
    /// 400: the bot refused the payload (a bug or config problem).
    #[error("bot rejected the request (400): {0}")]
    Rejected(String),
    /// 401: bad credentials or identity.
    #[error("bot authentication failed (401): {0}")]
    Unauthorized(String),
    /// 429 (after the retries the budget allowed).
    #[error("bot rate-limited the request (429)")]
    RateLimited,
    /// 504 or our own timeout: the message may have been processed, never resent.
    #[error("bot timed out: {0}")]
    Timeout(String),
    /// 5xx or connection failure after all retries.
    #[error("bot unavailable: {0}")]
    Unavailable(String),
    /// A response that does not follow the protocol.
    #[error("bot returned an invalid response: {0}")]
    InvalidResponse(String),
    /// The token could not be minted (bad key).
    #[error("cannot sign bot token: {0}")]
    Signing(String),
}

impl BotError {
    /// Stable code for logs and call records.
    pub fn code(&self) -> &'static str {
        match self {
            BotError::Rejected(_) => "bot.rejected",
            BotError::Unauthorized(_) => "bot.unauthorized",
            BotError::RateLimited => "bot.rate_limited",
            BotError::Timeout(_) => "bot.timeout",
            BotError::Unavailable(_) => "bot.unavailable",
            BotError::InvalidResponse(_) => "bot.invalid_response",
            BotError::Signing(_) => "bot.signing",
        }
    }
}

/// How the caller gave a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    /// Spoken, recognised by STT.
    Speech,
    /// Keypad digits.
    Dtmf,
    /// Nothing was heard for the no-input timeout; the text is the configured reprompt turn.
    NoInput,
    /// The configured greeting turn that opens a v1 conversation.
    Greeting,
}

impl InputMode {
    /// Every mode (metrics expose each from startup).
    pub const ALL: [InputMode; 4] = [
        InputMode::Speech,
        InputMode::Dtmf,
        InputMode::NoInput,
        InputMode::Greeting,
    ];

    /// Name sent to the bot.
    pub fn as_str(self) -> &'static str {
        match self {
            InputMode::Speech => "speech",
            InputMode::Dtmf => "dtmf",
            InputMode::NoInput => "no_input",
            InputMode::Greeting => "greeting",
        }
    }
}

/// One caller turn.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnInput {
    /// The text sent to the bot.
    pub text: String,
    /// Speech or digits.
    pub mode: InputMode,
    /// STT confidence, when known.
    pub confidence: Option<f32>,
    /// The call's language (a key of `[languages]`), sent as `interactiveLanguage`.
    pub language: Option<String>,
    /// The bot message this turn cut off (barge-in), as text, when there was one.
    pub interrupted: Option<String>,
}

/// Who the call is, for the bot.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BotSession {
    /// The provider's call id.
    pub call_id: String,
    /// The bot's user id for this call (`from.id`).
    pub user_id: String,
    /// Caller's number.
    pub caller: Option<String>,
    /// Called number.
    pub called: Option<String>,
    /// Provider name.
    pub provider: std::borrow::Cow<'static, str>,
    /// Provider custom parameters.
    pub custom: BTreeMap<String, String>,
    /// The call's language at start (sent with the session-opening request).
    pub language: Option<String>,
}

impl BotSession {
    /// Template variables of this call (see [`template`]).
    pub fn vars<'a>(&'a self, turn: Option<&'a TurnInput>) -> template::CallVars<'a> {
        template::CallVars {
            call_id: &self.call_id,
            caller: self.caller.as_deref(),
            called: self.called.as_deref(),
            provider: &self.provider,
            params: &self.custom,
            language: turn
                .and_then(|t| t.language.as_deref())
                .or(self.language.as_deref()),
            input_mode: turn.map(|t| t.mode.as_str()),
            confidence: turn.and_then(|t| t.confidence),
        }
    }
}

/// One message from the bot, reduced to what a voice call can use.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct BotReply {
    /// Plain text to speak (templates flattened, markup stripped); `None`: nothing to say.
    pub text: Option<String>,
    /// The message as SSML, when the bot sent `<speak>…</speak>` (for SSML-capable TTS).
    pub ssml: Option<String>,
    /// Options offered by a template, in spoken order (option 1 first).
    pub options: Vec<MenuOption>,
    /// Call control the bot asked for, carried out after the preceding audio has played.
    pub action: Option<BotAction>,
    /// The bot task that completed with this message, when the platform says so.
    pub task: Option<String>,
    /// The platform's id of this message, for [`Conversation::played`] (platforms that
    /// acknowledge deliveries).
    pub delivery: Option<String>,
}

/// One choice of a spoken menu.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MenuOption {
    /// What the caller hears and may say.
    pub title: String,
    /// What is sent back as the next turn when chosen.
    pub payload: String,
}

/// Call control requested by the bot (voxhook's convention, see kore-webhook.md).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum BotAction {
    /// End the call.
    Hangup,
    /// Send the caller to `target` (a number or SIP URI).
    Transfer {
        /// Where to.
        target: String,
    },
}

/// A callback from the platform (async mode), parsed: where it goes and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    /// Ids that may name the call, most specific first (bot user id, then others).
    pub keys: Vec<String>,
    /// The messages, in order (may be empty: an end-of-task notice without text).
    pub replies: Vec<BotReply>,
}

/// Sends each reply to the call as soon as it arrives (sync body, then each poll). Boxed:
/// a channel holds its first 32 slots from creation, and replies are rare and large.
pub type ReplySink = mpsc::Sender<Box<BotReply>>;

/// A chatbot platform's webhook channel, shared by all calls (HTTP client, credentials).
#[async_trait]
pub trait BotChannel: Send + Sync {
    /// Platform name for logs.
    fn name(&self) -> &'static str;
    /// A new call's conversation with the platform; nothing is sent until `open`. `routes`
    /// takes route keys the conversation learns once open (a push-only platform's
    /// conversation id); they route callbacks to this call until it ends.
    fn conversation(
        self: Arc<Self>,
        session: BotSession,
        routes: Arc<dyn RouteKeys>,
    ) -> Arc<dyn Conversation>;
    /// False once the platform rejected our credentials (feeds `/ready`).
    fn auth_ok(&self) -> bool;
    /// The bot speaks first when the session opens (so the call waits for a greeting).
    fn greets(&self) -> bool {
        true
    }
    /// Replies arrive as callbacks ([`BotChannel::parse_callback`]), not in responses.
    fn is_async(&self) -> bool {
        false
    }
    /// The route (axum path with one `{secret}` segment) the platform POSTs callbacks to;
    /// `None`: no callbacks.
    fn callback_route(&self) -> Option<&'static str> {
        None
    }
    /// Whether a callback request is the platform's: its `{secret}` path segment and its
    /// headers. Compare secrets with [`constant_time_eq`].
    fn authorize_callback(&self, secret: &str, headers: &HeaderMap) -> bool {
        let _ = (secret, headers);
        false
    }
    /// Parses a callback body POSTed by the platform.
    fn parse_callback(&self, body: &[u8]) -> Result<Callback, BotError> {
        let _ = body;
        Err(BotError::InvalidResponse(
            "this channel does not take callbacks".into(),
        ))
    }
    /// What another instance needs to close this call's session should this one die first
    /// (kept in the shared call directory); `None`: the platform has no session to close.
    fn orphan_record(&self, session: &BotSession) -> Option<String> {
        let _ = session;
        None
    }
    /// Closes the session of an [`orphan_record`](BotChannel::orphan_record) whose
    /// instance died.
    async fn close_orphan(&self, record: &str) -> Result<(), BotError> {
        let _ = record;
        Err(BotError::InvalidResponse(
            "this channel keeps no sessions to close".into(),
        ))
    }
}

/// One call's conversation: owns the per-call state (Kore: the bot user id; a push-only
/// platform: its conversation id), sends turns one at a time, hears when a message was
/// played, and is closed exactly once by the call (after its tasks stopped).
#[async_trait]
pub trait Conversation: Send + Sync {
    /// Who the call is.
    fn session(&self) -> &BotSession;
    /// Starts the conversation (Kore: `ON_CONNECT`); the greeting goes to `replies`.
    async fn open(&self, replies: &ReplySink) -> Result<(), BotError>;
    /// Sends one caller turn; returns when every reply of the turn was delivered.
    async fn send_turn(&self, turn: &TurnInput, replies: &ReplySink) -> Result<(), BotError>;
    /// What became of the message with this [`BotReply::delivery`] id. Platforms that pace
    /// delivery acknowledge it here, at the stage their configuration names.
    async fn playback(&self, delivery: &str, stage: Playback) -> Result<(), BotError> {
        let _ = (delivery, stage);
        Ok(())
    }
    /// The platform's id of this conversation once open, for the call record (`None`: the
    /// bot user id names it).
    fn conversation_id(&self) -> Option<String> {
        None
    }
    /// Ends the conversation (Kore: `SESSION_CLOSURE`), retrying until its deadline.
    async fn close(&self) -> Result<(), BotError>;
}

/// Where a bot message carrying a delivery id got to (see [`Conversation::playback`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playback {
    /// Handed to the speaker (queued for playback).
    Queued,
    /// Played to the end (its mark came back).
    Played,
    /// Cleared by a barge-in (or the time limit) before it finished.
    Interrupted,
    /// Never spoken: nothing speakable, or the call was ending or interrupted.
    Skipped,
}

/// Route keys a conversation adds once it knows them (see [`BotChannel::conversation`]).
#[async_trait]
pub trait RouteKeys: Send + Sync {
    /// Routes callbacks carrying `key` to this call until it ends.
    async fn add(&self, key: String);
}

/// Compares secrets without leaking their length of common prefix through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
