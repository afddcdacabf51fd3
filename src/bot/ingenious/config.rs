//! inGenious AI's configuration: the raw `[bot]` section of `platform = "ingenious"`, its pure
//! validation into [`IngeniousSettings`] (every problem collected with its key), and how the
//! channel is built from it ([`BotBackend`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::bot::{template, BotBackend, BotChannel, BotError};
use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;

/// `[bot] platform = "ingenious"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngeniousConfig {
    /// The integration's base URL, e.g.
    /// `https://au.api.ingenious.ai/messaging/webhook/v1/{teamId}/{botId}`.
    #[serde(default)]
    pub base_url: String,
    /// The integration's access token, sent as `Authorization: Bearer …` on every request.
    #[serde(default)]
    pub access_token: SensitiveString,
    /// Secret path segment of the URL inGenious POSTs to (`/ingenious/webhook/{secret}`;
    /// at least 32 characters).
    #[serde(default)]
    pub callback_secret: SensitiveString,
    /// Bearer token the platform's requests must carry as well (optional).
    #[serde(default)]
    pub callback_token: SensitiveString,
    /// `displayName` of each new chat (template).
    #[serde(default = "default_display_name")]
    pub display_name: String,
    /// `description` of each new chat (template).
    #[serde(default = "default_description")]
    pub description: String,
    /// Extra `metadata` fields of each new chat (templates).
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    /// The postback that makes the bot greet: `restart` (the default entry point),
    /// `entry_point` or `passage` (both need `start_id`).
    #[serde(default = "default_start")]
    pub start: String,
    /// The entry point or passage id for `start = "entry_point"` / `"passage"`.
    #[serde(default)]
    pub start_id: String,
    /// When a bot message is acknowledged: `queued` (handed to playback) or `played`.
    #[serde(default = "default_ack")]
    pub ack: String,
    /// `ack = "played"`: what a message cut by barge-in gets: `success` (acknowledged, the
    /// bot goes on) or `none` (never acknowledged: the bot holds its next messages).
    #[serde(default = "default_interrupted_ack")]
    pub interrupted_ack: String,
    /// Put `inputMode` (and `sttConfidence`) in each user message's `metadata`.
    #[serde(default = "default_true")]
    pub input_metadata: bool,
    /// What a handover event does: `transfer` (to `handover_target`, or a hang-up when it is
    /// empty) or `stay` (say `handover_text`, keep the caller with the bot, hand back).
    #[serde(default = "default_handover")]
    pub handover: String,
    /// Where a handover sends the caller (a number or SIP URI); empty: hang up.
    #[serde(default)]
    pub handover_target: String,
    /// Said when the handover happens (may be empty).
    #[serde(default = "default_handover_text")]
    pub handover_text: String,
    /// Timeout of one HTTP request.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Attempts for one request when the failure is retryable (429, 503, refused).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Longest wait for a turn's first bot message, retries included.
    #[serde(default = "default_turn_deadline_secs")]
    pub turn_deadline_secs: u64,
    /// Spoken when the bot cannot answer a turn.
    #[serde(default = "default_fallback_text")]
    pub fallback_text: String,
    /// Template of the id the directory claims per call (logs; the chat is named by its
    /// conversation id).
    #[serde(default = "default_user_id_template")]
    pub user_id_template: String,
}

fn default_display_name() -> String {
    "Phone call from {caller}".into()
}
fn default_description() -> String {
    "voxhook phone call".into()
}
fn default_start() -> String {
    "restart".into()
}
fn default_ack() -> String {
    "queued".into()
}
fn default_interrupted_ack() -> String {
    "success".into()
}
const fn default_true() -> bool {
    true
}
fn default_handover() -> String {
    "transfer".into()
}
fn default_handover_text() -> String {
    "Please hold while I transfer you to an agent.".into()
}
const fn default_request_timeout_ms() -> u64 {
    15_000
}
const fn default_max_attempts() -> u32 {
    4
}
const fn default_turn_deadline_secs() -> u64 {
    20
}
fn default_fallback_text() -> String {
    "Sorry, I am having trouble answering right now. Please try again in a moment.".into()
}
fn default_user_id_template() -> String {
    "{caller}".into()
}

/// The postback that starts the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPostback {
    /// `{"restart": true}`: the default entry point's passage.
    Restart,
    /// `{"entryPoint": id}`.
    EntryPoint(String),
    /// `{"nextPassage": {"passageId": id, "inlineActions": []}}`.
    Passage(String),
}

/// When bot messages are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Once handed to playback: the bot sends its next message at once.
    Queued,
    /// Once played to the caller: the bot is paced to the caller.
    Played,
}

/// What a handover event does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoverPolicy {
    /// The call's transfer (`Some(target)`) or a hang-up (`None`), after `handover_text`.
    Transfer(Option<String>),
    /// Say `handover_text` and keep the caller with the bot (handback on the next turn).
    Stay,
}

/// Validated inGenious settings.
#[derive(Debug, Clone)]
pub struct IngeniousSettings {
    /// Base URL (no trailing slash).
    pub base_url: String,
    /// Bearer access token.
    pub access_token: SensitiveString,
    /// Callback path segment.
    pub callback_secret: SensitiveString,
    /// Bearer token the platform's requests must carry as well.
    pub callback_token: Option<SensitiveString>,
    /// `displayName` template.
    pub display_name: String,
    /// `description` template.
    pub description: String,
    /// `metadata` templates (sorted by name).
    pub metadata: Vec<(String, String)>,
    /// Start postback.
    pub start: StartPostback,
    /// Ack mode.
    pub ack: AckMode,
    /// `ack = "played"`: acknowledge messages cut by barge-in.
    pub ack_interrupted: bool,
    /// Input mode in message metadata.
    pub input_metadata: bool,
    /// Handover policy.
    pub handover: HandoverPolicy,
    /// Said at a handover.
    pub handover_text: Option<String>,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Attempts for retryable failures.
    pub max_attempts: u32,
    /// Turn deadline.
    pub turn_deadline: Duration,
    /// Fallback prompt.
    pub fallback_text: String,
    /// User id template.
    pub user_id_template: String,
}

impl Component for IngeniousSettings {
    type Raw = IngeniousConfig;

    fn validate(c: IngeniousConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        let base_url = c.base_url.trim().trim_end_matches('/').to_string();
        errs.check(
            (base_url.starts_with("http://") || base_url.starts_with("https://"))
                && base_url.len() > "https://".len(),
            &ctx.key("base_url"),
            "required: the integration's base URL, http(s)://…/messaging/webhook/v1/{teamId}/{botId}",
        );
        errs.check(
            !c.access_token.is_empty(),
            &ctx.key("access_token"),
            "required (set VOXHOOK__BOT__ACCESS_TOKEN)",
        );
        errs.check(
            c.callback_secret.expose().len() >= 32
                && c.callback_secret
                    .expose()
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'),
            &ctx.key("callback_secret"),
            "needs a random secret of at least 32 characters [A-Za-z0-9_-] \
             (e.g. `openssl rand -hex 24`)",
        );
        for (key, tpl) in [
            ("display_name", &c.display_name),
            ("description", &c.description),
            ("user_id_template", &c.user_id_template),
        ] {
            if let Err(e) = template::check(tpl) {
                errs.push(&ctx.key(key), e);
            }
        }
        let mut metadata: Vec<(String, String)> = c.metadata.into_iter().collect();
        metadata.sort();
        for (name, tpl) in &metadata {
            if let Err(e) = template::check(tpl) {
                errs.push(&ctx.key(&format!("metadata.{name}")), e);
            }
        }
        let id = c.start_id.trim().to_string();
        let start = match c.start.as_str() {
            "restart" => StartPostback::Restart,
            "entry_point" | "passage" => {
                errs.check(
                    !id.is_empty(),
                    &ctx.key("start_id"),
                    &format!("required for start = \"{}\"", c.start),
                );
                if c.start == "entry_point" {
                    StartPostback::EntryPoint(id)
                } else {
                    StartPostback::Passage(id)
                }
            }
            other => {
                errs.push(
                    &ctx.key("start"),
                    format!("`{other}` is not `restart`, `entry_point` or `passage`"),
                );
                StartPostback::Restart
            }
        };
        let ack = match c.ack.as_str() {
            "queued" => AckMode::Queued,
            "played" => AckMode::Played,
            other => {
                errs.push(
                    &ctx.key("ack"),
                    format!("`{other}` is not `queued` or `played`"),
                );
                AckMode::Queued
            }
        };
        let ack_interrupted = match c.interrupted_ack.as_str() {
            "success" => true,
            "none" => false,
            other => {
                errs.push(
                    &ctx.key("interrupted_ack"),
                    format!("`{other}` is not `success` or `none`"),
                );
                true
            }
        };
        let target = c.handover_target.trim().to_string();
        let handover = match c.handover.as_str() {
            "transfer" => HandoverPolicy::Transfer((!target.is_empty()).then_some(target)),
            "stay" => HandoverPolicy::Stay,
            other => {
                errs.push(
                    &ctx.key("handover"),
                    format!("`{other}` is not `transfer` or `stay`"),
                );
                HandoverPolicy::Stay
            }
        };
        errs.check(
            c.request_timeout_ms >= 100,
            &ctx.key("request_timeout_ms"),
            "must be at least 100",
        );
        errs.check(
            c.max_attempts >= 1,
            &ctx.key("max_attempts"),
            "must be at least 1",
        );
        errs.check(
            c.turn_deadline_secs >= 1,
            &ctx.key("turn_deadline_secs"),
            "must be at least 1",
        );
        errs.check(
            !c.fallback_text.trim().is_empty(),
            &ctx.key("fallback_text"),
            "must not be empty",
        );
        IngeniousSettings {
            base_url,
            access_token: c.access_token,
            callback_secret: c.callback_secret,
            callback_token: (!c.callback_token.is_empty()).then_some(c.callback_token),
            display_name: c.display_name,
            description: c.description,
            metadata,
            start,
            ack,
            ack_interrupted,
            input_metadata: c.input_metadata,
            handover,
            handover_text: (!c.handover_text.trim().is_empty()).then_some(c.handover_text),
            request_timeout: Duration::from_millis(c.request_timeout_ms),
            max_attempts: c.max_attempts,
            turn_deadline: Duration::from_secs(c.turn_deadline_secs),
            fallback_text: c.fallback_text,
            user_id_template: c.user_id_template,
        }
    }
}

impl BotBackend for IngeniousSettings {
    fn build(&self) -> Result<Arc<dyn BotChannel>, BotError> {
        Ok(Arc::new(super::IngeniousClient::new(self.clone())?))
    }
    fn fallback_text(&self) -> &str {
        &self.fallback_text
    }
    fn turn_deadline(&self) -> Duration {
        self.turn_deadline
    }
    fn closure_deadline(&self) -> Duration {
        // No closure request in this API: closing only stops acknowledging.
        Duration::ZERO
    }
    fn user_id_template(&self) -> &str {
        &self.user_id_template
    }
}

#[cfg(test)]
mod tests {
    use crate::bot::BotSettings;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_fill_every_key_but_the_credentials() {
        let toml = format!(
            "platform = \"ingenious\"\nbase_url = \"https://au.api.ingenious.ai/messaging/webhook/v1/t/b/\"\n\
             access_token = \"tok\"\ncallback_secret = \"{SECRET}\""
        );
        let BotSettings::Ingenious(s) = BotSettings::from_toml("bot", &toml).unwrap() else {
            panic!("not ingenious");
        };
        assert_eq!(
            s.base_url,
            "https://au.api.ingenious.ai/messaging/webhook/v1/t/b"
        );
        assert_eq!(s.start, super::StartPostback::Restart);
        assert_eq!(s.ack, super::AckMode::Queued);
        assert_eq!(s.handover, super::HandoverPolicy::Transfer(None));
        assert!(s.ack_interrupted && s.input_metadata);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let toml = "platform = \"ingenious\"\nbase_url = \"ftp://x\"\ncallback_secret = \"short\"\n\
                    start = \"passage\"\nack = \"never\"\ninterrupted_ack = \"maybe\"\n\
                    handover = \"ignore\"\ndisplay_name = \"{nope}\"\nmetadata = { tier = \"{param.\" }\n\
                    max_attempts = 0";
        let err = format!("{:?}", BotSettings::from_toml("bot", toml).unwrap_err());
        for key in [
            "bot.base_url",
            "bot.access_token",
            "bot.callback_secret",
            "bot.start_id",
            "bot.ack",
            "bot.interrupted_ack",
            "bot.handover",
            "bot.display_name",
            "bot.metadata.tier",
            "bot.max_attempts",
        ] {
            assert!(err.contains(key), "{key} missing from {err}");
        }
        assert!(BotSettings::from_toml("bot", "platform = \"ingenious\"\nsecret = 1").is_err());
    }
}
