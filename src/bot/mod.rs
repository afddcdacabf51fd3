//! Bot channels: the [`BotChannel`] trait (open a session, send turns, close it), the
//! protocol-neutral session, turn and reply types, and [`build`]. Kore.ai XO Webhook v2 is
//! the first implementation (`kore/`); a platform is one module plus one line in [`build`].

pub mod kore;
pub mod retry;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::config::BotSettings;

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
    /// 429 after all retries.
    #[error("bot rate-limited the request (429) beyond the retry budget")]
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
}

impl InputMode {
    /// Name sent to the bot.
    pub fn as_str(self) -> &'static str {
        match self {
            InputMode::Speech => "speech",
            InputMode::Dtmf => "dtmf",
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
}

/// Who the call is, for the bot.
#[derive(Debug, Clone)]
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
    pub provider: &'static str,
    /// Provider custom parameters.
    pub custom: BTreeMap<String, String>,
}

/// One message from the bot, reduced to what a voice call can use.
#[derive(Debug, Clone, PartialEq)]
pub struct BotReply {
    /// Text to speak (already flattened from templates and stripped of markup).
    pub text: String,
    /// The bot task that completed with this message, when the platform says so.
    pub task: Option<String>,
}

/// Sends each reply to the call as soon as it arrives (sync body, then each poll).
pub type ReplySink = mpsc::Sender<BotReply>;

/// A chatbot platform's webhook channel.
#[async_trait]
pub trait BotChannel: Send + Sync {
    /// Platform name for logs.
    fn name(&self) -> &'static str;
    /// Starts the conversation (Kore: `ON_CONNECT`); the greeting goes to `replies`.
    async fn open(&self, session: &BotSession, replies: &ReplySink) -> Result<(), BotError>;
    /// Sends one caller turn; returns when every reply of the turn was delivered.
    async fn send_turn(
        &self,
        session: &BotSession,
        turn: &TurnInput,
        replies: &ReplySink,
    ) -> Result<(), BotError>;
    /// Ends the conversation (Kore: `SESSION_CLOSURE`), retrying until its deadline.
    async fn close(&self, session: &BotSession) -> Result<(), BotError>;
    /// False once the platform rejected our credentials (feeds `/ready`).
    fn auth_ok(&self) -> bool;
}

/// Builds the configured channel.
pub fn build(settings: &BotSettings) -> Result<Arc<dyn BotChannel>, BotError> {
    match settings {
        BotSettings::KoreV2(k) => Ok(Arc::new(kore::KoreClient::new(k.clone())?)),
    }
}
