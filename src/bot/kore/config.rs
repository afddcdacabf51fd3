//! Kore's configuration: the raw `[bot]` section of `platform = "kore_v2"` or `"kore_v1"`,
//! its pure validation into [`KoreSettings`] (every problem collected with its key), and
//! the settings the client runs on.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use crate::bot::template;
use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;

/// `[bot.meta_tags]`: Kore `metaTags` by level, name → template.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetaTagsConfig {
    /// `userLevelTags`.
    pub user: HashMap<String, String>,
    /// `sessionLevelTags`.
    pub session: HashMap<String, String>,
    /// `messageLevelTags`.
    pub message: HashMap<String, String>,
}

/// `[bot] platform = "kore_v2"` or `"kore_v1"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KoreConfig {
    /// The channel's full webhook URL, e.g. `https://bots.kore.ai/chatbot/v2/webhook/st-…`
    /// (with `/hookInstance/{id}` for a further instance).
    #[serde(default)]
    pub webhook_url: String,
    /// The app's client id (`appId` claim).
    #[serde(default)]
    pub client_id: String,
    /// The app's client secret (HS256/HS512).
    #[serde(default)]
    pub client_secret: SensitiveString,
    /// PEM private key (RS256/RS512).
    #[serde(default)]
    pub private_key: SensitiveString,
    /// `HS256`, `HS512`, `RS256` or `RS512`.
    #[serde(default = "default_jwt_algorithm")]
    pub jwt_algorithm: String,
    /// Token lifetime.
    #[serde(default = "default_jwt_ttl_secs")]
    pub jwt_ttl_secs: u64,
    /// Put `userIdentity` (= `from.id`) in the token.
    #[serde(default)]
    pub jwt_user_identity: bool,
    /// Timeout of one HTTP request.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Pause between polls of a `pollId`.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Longest wait for a turn's polled messages.
    #[serde(default = "default_poll_max_wait_secs")]
    pub poll_max_wait_secs: u64,
    /// Attempts for one request when the failure is retryable (429, 503, refused).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Deadline of one turn's request including retries.
    #[serde(default = "default_turn_deadline_secs")]
    pub turn_deadline_secs: u64,
    /// Deadline for delivering `SESSION_CLOSURE`, retries included.
    #[serde(default = "default_closure_deadline_secs")]
    pub closure_deadline_secs: u64,
    /// Spoken when the bot cannot answer a turn.
    #[serde(default = "default_fallback_text")]
    pub fallback_text: String,
    /// Extra `customData` fields (templates, see README) added to every request.
    #[serde(default)]
    pub custom_data: HashMap<String, String>,
    /// `sync` (replies in the response, `pollId` followed) or `async` (replies POSTed to
    /// `/kore/callback/{callback_secret}`).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Secret path segment of the callback URL (async; at least 32 characters).
    #[serde(default)]
    pub callback_secret: SensitiveString,
    /// Bearer token callbacks must carry as well (optional).
    #[serde(default)]
    pub callback_token: SensitiveString,
    /// v1 only: a text turn sent when the call starts, so the bot greets (v1 has no events).
    #[serde(default)]
    pub greeting_text: String,
    /// Bot user id (`from.id`) template; empty result falls back to the call id.
    #[serde(default = "default_user_id_template")]
    pub user_id_template: String,
    /// `from.userInfo` fields (templates).
    #[serde(default)]
    pub user_info: HashMap<String, String>,
    /// `metaTags` (templates).
    #[serde(default)]
    pub meta_tags: MetaTagsConfig,
    /// Sends `mergeIdentity: true`.
    #[serde(default)]
    pub merge_identity: bool,
    /// Sends `preferredChannelForResponse` (empty: not sent).
    #[serde(default)]
    pub preferred_channel_for_response: String,
    /// Hang up when a task with one of these names completes (`endOfTask`).
    #[serde(default)]
    pub hangup_tasks: Vec<String>,
}

fn default_mode() -> String {
    "sync".into()
}
fn default_user_id_template() -> String {
    "{caller}".into()
}
fn default_jwt_algorithm() -> String {
    "HS256".into()
}
const fn default_jwt_ttl_secs() -> u64 {
    60
}
const fn default_request_timeout_ms() -> u64 {
    15_000
}
const fn default_poll_interval_ms() -> u64 {
    500
}
const fn default_poll_max_wait_secs() -> u64 {
    60
}
const fn default_max_attempts() -> u32 {
    4
}
const fn default_turn_deadline_secs() -> u64 {
    20
}
const fn default_closure_deadline_secs() -> u64 {
    10
}
fn default_fallback_text() -> String {
    "Sorry, I am having trouble answering right now. Please try again in a moment.".into()
}

/// Which Kore webhook API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KoreApi {
    /// Legacy `/chatbot/hooks/{botId}`.
    V1,
    /// `/chatbot/v2/webhook/{botId}`.
    V2,
}

/// How callbacks are authenticated (async mode).
#[derive(Debug, Clone)]
pub struct CallbackSettings {
    /// Path segment after `/kore/callback/`.
    pub secret: SensitiveString,
    /// Bearer token required as well.
    pub bearer_token: Option<SensitiveString>,
}

/// `metaTags` templates by level (name, template).
#[derive(Debug, Clone, Default)]
pub struct MetaTags {
    /// `userLevelTags`.
    pub user: Vec<(String, String)>,
    /// `sessionLevelTags`.
    pub session: Vec<(String, String)>,
    /// `messageLevelTags`.
    pub message: Vec<(String, String)>,
}

/// JWT signing algorithms Kore accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with the client secret.
    Hs256,
    /// HMAC-SHA512 with the client secret.
    Hs512,
    /// RSA-SHA256 with the operator's private key.
    Rs256,
    /// RSA-SHA512 with the operator's private key.
    Rs512,
}

/// Validated Kore settings.
#[derive(Debug, Clone)]
pub struct KoreSettings {
    /// v1 or v2.
    pub api: KoreApi,
    /// Async callbacks (None: sync).
    pub callback: Option<CallbackSettings>,
    /// v1 greeting turn.
    pub greeting_text: Option<String>,
    /// Bot user id template.
    pub user_id_template: String,
    /// `from.userInfo` templates (sorted by name).
    pub user_info: Vec<(String, String)>,
    /// `metaTags` templates.
    pub meta_tags: MetaTags,
    /// `mergeIdentity: true`.
    pub merge_identity: bool,
    /// `preferredChannelForResponse`.
    pub preferred_channel: Option<String>,
    /// Task names whose completion hangs up.
    pub hangup_tasks: Vec<String>,
    /// Full webhook URL (no trailing slash).
    pub webhook_url: String,
    /// Bot id parsed from the URL (`to.id`).
    pub bot_id: String,
    /// Poll URL prefix: `{host}/chatbot/v2/webhook/{botId}/poll`.
    pub poll_base_url: String,
    /// `appId` claim.
    pub client_id: String,
    /// Secret or PEM key, per `jwt_algorithm`.
    pub signing_key: SensitiveString,
    /// Algorithm.
    pub jwt_algorithm: JwtAlgorithm,
    /// Token lifetime.
    pub jwt_ttl: Duration,
    /// Put `userIdentity` in tokens.
    pub jwt_user_identity: bool,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Poll pause.
    pub poll_interval: Duration,
    /// Longest poll wait per turn.
    pub poll_max_wait: Duration,
    /// Attempts for retryable failures.
    pub max_attempts: u32,
    /// Turn deadline.
    pub turn_deadline: Duration,
    /// Closure deadline.
    pub closure_deadline: Duration,
    /// Fallback prompt.
    pub fallback_text: String,
    /// Extra `customData` templates (sorted by name).
    pub custom_data: Vec<(String, String)>,
}

impl Component for KoreSettings {
    type Raw = KoreConfig;

    fn validate(raw: KoreConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        let api = if ctx.name == "kore_v1" {
            KoreApi::V1
        } else {
            KoreApi::V2
        };
        validate_kore(raw, api, ctx, errs)
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn validate_kore(c: KoreConfig, api: KoreApi, ctx: &Ctx<'_>, errs: &mut Errors) -> KoreSettings {
    let webhook_url = c.webhook_url.trim_end_matches('/').to_string();
    let (bot_id, poll_base_url) = match parse_kore_url(&webhook_url, api) {
        Some(parts) => parts,
        None => {
            let shape = match api {
                KoreApi::V2 => "/chatbot/v2/webhook/{botId}",
                KoreApi::V1 => "/chatbot/hooks/{botId}",
            };
            errs.push(
                &ctx.key("webhook_url"),
                format!("expected http(s)://host{shape}[/hookInstance/{{id}}]"),
            );
            (String::new(), String::new())
        }
    };
    let callback = match c.mode.as_str() {
        "sync" => None,
        "async" => {
            errs.check(
                c.callback_secret.expose().len() >= 32
                    && c.callback_secret
                        .expose()
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'),
                &ctx.key("callback_secret"),
                "async mode needs a random secret of at least 32 characters [A-Za-z0-9_-] \
                 (e.g. `openssl rand -hex 24`)",
            );
            Some(CallbackSettings {
                secret: c.callback_secret,
                bearer_token: (!c.callback_token.is_empty()).then_some(c.callback_token),
            })
        }
        other => {
            errs.push(
                &ctx.key("mode"),
                format!("`{other}` is not `sync` or `async`"),
            );
            None
        }
    };
    let mut templates = |key: &str, map: HashMap<String, String>| {
        let mut v: Vec<(String, String)> = map.into_iter().collect();
        v.sort();
        for (name, tpl) in &v {
            if let Err(e) = template::check(tpl) {
                errs.push(&ctx.key(&format!("{key}.{name}")), e);
            }
        }
        v
    };
    let custom_data = templates("custom_data", c.custom_data);
    let user_info = templates("user_info", c.user_info);
    let meta_tags = MetaTags {
        user: templates("meta_tags.user", c.meta_tags.user),
        session: templates("meta_tags.session", c.meta_tags.session),
        message: templates("meta_tags.message", c.meta_tags.message),
    };
    if let Err(e) = template::check(&c.user_id_template) {
        errs.push(&ctx.key("user_id_template"), e);
    }
    if api == KoreApi::V2 && !c.greeting_text.is_empty() {
        errs.push(
            &ctx.key("greeting_text"),
            "v1 only: on v2 the bot greets on ON_CONNECT",
        );
    }
    errs.check(!c.client_id.is_empty(), &ctx.key("client_id"), "required");
    let jwt_algorithm = match c.jwt_algorithm.to_ascii_uppercase().as_str() {
        "HS256" => JwtAlgorithm::Hs256,
        "HS512" => JwtAlgorithm::Hs512,
        "RS256" => JwtAlgorithm::Rs256,
        "RS512" => JwtAlgorithm::Rs512,
        other => {
            errs.push(
                &ctx.key("jwt_algorithm"),
                format!("`{other}` is not one of HS256, HS512, RS256, RS512"),
            );
            JwtAlgorithm::Hs256
        }
    };
    let signing_key = match jwt_algorithm {
        JwtAlgorithm::Hs256 | JwtAlgorithm::Hs512 => {
            errs.check(
                !c.client_secret.is_empty(),
                &ctx.key("client_secret"),
                "required for HS256/HS512 (set VOXHOOK__BOT__CLIENT_SECRET)",
            );
            c.client_secret
        }
        JwtAlgorithm::Rs256 | JwtAlgorithm::Rs512 => {
            errs.check(
                c.private_key.expose().contains("PRIVATE KEY"),
                &ctx.key("private_key"),
                "required for RS256/RS512: a PEM private key",
            );
            c.private_key
        }
    };
    errs.check(
        (1..=3600).contains(&c.jwt_ttl_secs),
        &ctx.key("jwt_ttl_secs"),
        "must be between 1 and 3600 (Kore rejects tokens valid longer than an hour)",
    );
    errs.check(
        c.request_timeout_ms >= 100,
        &ctx.key("request_timeout_ms"),
        "must be at least 100",
    );
    errs.check(
        c.poll_interval_ms >= 10,
        &ctx.key("poll_interval_ms"),
        "must be at least 10",
    );
    errs.check(
        c.max_attempts >= 1,
        &ctx.key("max_attempts"),
        "must be at least 1",
    );
    errs.check(
        !c.fallback_text.trim().is_empty(),
        &ctx.key("fallback_text"),
        "must not be empty",
    );
    KoreSettings {
        api,
        callback,
        greeting_text: (!c.greeting_text.trim().is_empty()).then_some(c.greeting_text),
        user_id_template: c.user_id_template,
        user_info,
        meta_tags,
        merge_identity: c.merge_identity,
        preferred_channel: (!c.preferred_channel_for_response.is_empty())
            .then_some(c.preferred_channel_for_response),
        hangup_tasks: c.hangup_tasks,
        webhook_url,
        bot_id,
        poll_base_url,
        client_id: c.client_id,
        signing_key,
        jwt_algorithm,
        jwt_ttl: Duration::from_secs(c.jwt_ttl_secs),
        jwt_user_identity: c.jwt_user_identity,
        request_timeout: ms(c.request_timeout_ms),
        poll_interval: ms(c.poll_interval_ms),
        poll_max_wait: Duration::from_secs(c.poll_max_wait_secs),
        max_attempts: c.max_attempts,
        turn_deadline: Duration::from_secs(c.turn_deadline_secs),
        closure_deadline: Duration::from_secs(c.closure_deadline_secs),
        fallback_text: c.fallback_text,
        custom_data,
    }
}

/// Splits a webhook URL into the bot id and the poll URL prefix (v2 only; empty for v1).
fn parse_kore_url(url: &str, api: KoreApi) -> Option<(String, String)> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    let mark = match api {
        KoreApi::V2 => "/chatbot/v2/webhook/",
        KoreApi::V1 => "/chatbot/hooks/",
    };
    let at = url.find(mark)?;
    let rest = &url[at + mark.len()..];
    let bot_id = rest.split('/').next().filter(|s| !s.is_empty())?;
    let tail = &rest[bot_id.len()..];
    if !(tail.is_empty() || tail.starts_with("/hookInstance/")) {
        return None;
    }
    let poll = match api {
        KoreApi::V2 => format!("{}{mark}{bot_id}/poll", &url[..at]),
        KoreApi::V1 => String::new(),
    };
    Some((bot_id.to_string(), poll))
}
