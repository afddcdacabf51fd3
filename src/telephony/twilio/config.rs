//! Twilio's configuration: the raw `[telephony.twilio]` section, its pure validation into
//! [`TwilioSettings`], and how the provider is built from it.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;
use crate::telephony::control::{CallControl, ControlError};
use crate::telephony::ProviderBackend;

/// `[telephony.twilio]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioConfig {
    /// Serve the media route.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// Check `X-Twilio-Signature` on the upgrade (needs `auth_token` and `server.public_url`).
    pub validate_signature: bool,
    /// Twilio account auth token (secret).
    pub auth_token: SensitiveString,
    /// A text frame larger than this ends the call as a protocol error.
    pub max_message_bytes: usize,
    /// Media frames buffered while waiting for `start`; beyond this the call is refused.
    pub max_early_media_frames: usize,
    /// Custom parameter names that carry the caller's and the called number.
    pub caller_parameter: String,
    /// See `caller_parameter`.
    pub called_parameter: String,
    /// Account SID for the REST API (hang-up and transfer); empty: close the stream instead.
    pub account_sid: String,
    /// REST API base URL (tests point it at a local fake).
    pub api_base_url: String,
    /// Timeout of one REST request.
    pub api_timeout_ms: u64,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            route: "/twilio".into(),
            validate_signature: false,
            auth_token: SensitiveString::default(),
            max_message_bytes: 64 * 1024,
            max_early_media_frames: 250,
            caller_parameter: "from".into(),
            called_parameter: "to".into(),
            account_sid: String::new(),
            api_base_url: "https://api.twilio.com".into(),
            api_timeout_ms: 5_000,
        }
    }
}

/// Validated `[telephony.twilio]`.
#[derive(Debug, Clone)]
pub struct TwilioSettings {
    /// Route served.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// Auth token when signatures are checked.
    pub signature_token: Option<SensitiveString>,
    /// Frame size limit.
    pub max_message_bytes: usize,
    /// Early media buffer bound.
    pub max_early_media_frames: usize,
    /// Custom parameter carrying the caller's number.
    pub caller_parameter: String,
    /// Custom parameter carrying the called number.
    pub called_parameter: String,
    /// REST API access for hang-up and transfer, when configured.
    pub rest: Option<TwilioRestSettings>,
}

/// Twilio REST API access.
#[derive(Debug, Clone)]
pub struct TwilioRestSettings {
    /// Base URL.
    pub api_base_url: String,
    /// Account SID.
    pub account_sid: String,
    /// Auth token.
    pub auth_token: SensitiveString,
    /// Request timeout.
    pub timeout: Duration,
}

impl Component for TwilioSettings {
    type Raw = TwilioConfig;

    fn validate(c: TwilioConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        check_signing(c.validate_signature, &c.auth_token, "auth_token", ctx, errs);
        errs.check(
            c.max_message_bytes >= 1024,
            &ctx.key("max_message_bytes"),
            "must be at least 1024",
        );
        let rest = rest_settings(
            RestKeys {
                account: ("account_sid", &c.account_sid),
                token: ("auth_token", &c.auth_token),
                base_url: ("api_base_url", &c.api_base_url),
                timeout_ms: c.api_timeout_ms,
            },
            ctx,
            errs,
        );
        errs.check(
            c.route.starts_with('/') && c.route.len() > 1,
            &ctx.key("route"),
            "must be a path like /twilio",
        );
        TwilioSettings {
            rest,
            enabled: c.enabled,
            route: c.route,
            signature_token: c.validate_signature.then_some(c.auth_token),
            max_message_bytes: c.max_message_bytes,
            max_early_media_frames: c.max_early_media_frames,
            caller_parameter: c.caller_parameter,
            called_parameter: c.called_parameter,
        }
    }
}

/// The configured REST access of a Twilio-compatible API: each entry is its key name and value.
pub struct RestKeys<'a> {
    /// Account (Twilio account SID, SignalWire project ID); empty: no REST access.
    pub account: (&'a str, &'a str),
    /// Credential paired with the account.
    pub token: (&'a str, &'a SensitiveString),
    /// API base URL.
    pub base_url: (&'a str, &'a str),
    /// Request timeout in milliseconds (at least 100 is used).
    pub timeout_ms: u64,
}

/// Validates REST access: none without an account; with one, the token and an http(s) URL.
pub fn rest_settings(
    k: RestKeys<'_>,
    ctx: &Ctx<'_>,
    errs: &mut Errors,
) -> Option<TwilioRestSettings> {
    let ((account_key, account), (token_key, token), (url_key, url)) =
        (k.account, k.token, k.base_url);
    if account.is_empty() {
        return None;
    }
    errs.check(
        !token.is_empty(),
        &ctx.key(token_key),
        &format!("required when {account_key} is set (REST hang-up and transfer)"),
    );
    errs.check(
        url.starts_with("http://") || url.starts_with("https://"),
        &ctx.key(url_key),
        "must be an http(s) URL",
    );
    Some(TwilioRestSettings {
        api_base_url: url.trim_end_matches('/').to_string(),
        account_sid: account.to_string(),
        auth_token: token.clone(),
        timeout: Duration::from_millis(k.timeout_ms.max(100)),
    })
}

/// Validates signature checking: it needs the signing secret (at `key_name`) and
/// `server.public_url`.
pub fn check_signing(
    enabled: bool,
    key: &SensitiveString,
    key_name: &str,
    ctx: &Ctx<'_>,
    errs: &mut Errors,
) {
    if !enabled {
        return;
    }
    errs.check(
        !key.is_empty(),
        &ctx.key(key_name),
        "required when validate_signature = true",
    );
    errs.check(
        ctx.public_url.is_some(),
        "server.public_url",
        &format!("required when {} = true", ctx.key("validate_signature")),
    );
}

impl ProviderBackend for TwilioSettings {
    fn enabled(&self) -> bool {
        self.enabled
    }

    fn build(
        &self,
        public_url: Option<&str>,
    ) -> Result<Arc<dyn crate::telephony::Provider>, ControlError> {
        let control: Option<Arc<dyn CallControl>> = match &self.rest {
            Some(r) => Some(Arc::new(super::rest::TwilioRest::new(
                &r.api_base_url,
                &r.account_sid,
                r.auth_token.clone(),
                r.timeout,
            )?)),
            None => None,
        };
        Ok(Arc::new(super::Twilio {
            settings: self.clone(),
            public_url: public_url.map(str::to_string),
            control,
        }))
    }
}
