//! SignalWire's configuration: the raw `[telephony.signalwire]` section, its pure validation
//! into [`SignalWireSettings`] (the stream part is Twilio's validated settings, since the
//! wire is Twilio's), and how the provider is built from it.

use std::sync::Arc;

use serde::Deserialize;

use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;
use crate::telephony::control::{CallControl, ControlError};
use crate::telephony::twilio::config::{check_signing, rest_settings, RestKeys, TwilioSettings};
use crate::telephony::twilio::rest::{RestDialect, TwilioRest};
use crate::telephony::ProviderBackend;

/// `[telephony.signalwire]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalWireConfig {
    /// Serve the media route.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// Check `X-SignalWire-Signature` on the upgrade (needs `signing_key` and
    /// `server.public_url`).
    pub validate_signature: bool,
    /// The space's Signing Key (secret), which signs SignalWire's requests.
    pub signing_key: SensitiveString,
    /// A text frame larger than this ends the call as a protocol error.
    pub max_message_bytes: usize,
    /// Media frames buffered while waiting for `start`; beyond this the call is refused.
    pub max_early_media_frames: usize,
    /// `<Parameter>` names that carry the caller's and the called number.
    pub caller_parameter: String,
    /// See `caller_parameter`.
    pub called_parameter: String,
    /// Project ID for the LaML REST API (hang-up and transfer); empty: close the stream.
    pub project_id: String,
    /// API token (secret) of the project.
    pub api_token: SensitiveString,
    /// The space URL, `https://<space>.signalwire.com` (tests point it at a local fake).
    pub space_url: String,
    /// Timeout of one REST request.
    pub api_timeout_ms: u64,
}

impl Default for SignalWireConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            route: "/signalwire".into(),
            validate_signature: false,
            signing_key: SensitiveString::default(),
            max_message_bytes: 64 * 1024,
            max_early_media_frames: 250,
            caller_parameter: "from".into(),
            called_parameter: "to".into(),
            project_id: String::new(),
            api_token: SensitiveString::default(),
            space_url: String::new(),
            api_timeout_ms: 5_000,
        }
    }
}

/// Validated `[telephony.signalwire]`.
#[derive(Debug, Clone)]
pub struct SignalWireSettings {
    /// The stream's settings, in Twilio's shape (`signature_token` is the Signing Key; `rest`
    /// is the LaML REST access: space URL, project ID, API token).
    pub stream: TwilioSettings,
}

impl Component for SignalWireSettings {
    type Raw = SignalWireConfig;

    fn validate(c: SignalWireConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            c.route.starts_with('/') && c.route.len() > 1,
            &ctx.key("route"),
            "must be a path like /signalwire",
        );
        errs.check(
            c.max_message_bytes >= 1024,
            &ctx.key("max_message_bytes"),
            "must be at least 1024",
        );
        check_signing(
            c.validate_signature,
            &c.signing_key,
            "signing_key",
            ctx,
            errs,
        );
        let rest = rest_settings(
            RestKeys {
                account: ("project_id", &c.project_id),
                token: ("api_token", &c.api_token),
                base_url: ("space_url", &c.space_url),
                timeout_ms: c.api_timeout_ms,
            },
            ctx,
            errs,
        );
        SignalWireSettings {
            stream: TwilioSettings {
                enabled: c.enabled,
                route: c.route,
                signature_token: c.validate_signature.then_some(c.signing_key),
                max_message_bytes: c.max_message_bytes,
                max_early_media_frames: c.max_early_media_frames,
                caller_parameter: c.caller_parameter,
                called_parameter: c.called_parameter,
                rest,
            },
        }
    }
}

impl ProviderBackend for SignalWireSettings {
    fn enabled(&self) -> bool {
        self.stream.enabled
    }

    fn build(
        &self,
        public_url: Option<&str>,
    ) -> Result<Arc<dyn crate::telephony::Provider>, ControlError> {
        let control: Option<Arc<dyn CallControl>> = match &self.stream.rest {
            Some(r) => Some(Arc::new(TwilioRest::with_dialect(
                RestDialect::SIGNALWIRE,
                &r.api_base_url,
                &r.account_sid,
                r.auth_token.clone(),
                r.timeout,
            )?)),
            None => None,
        };
        Ok(Arc::new(super::SignalWire {
            settings: self.clone(),
            public_url: public_url.map(str::to_string),
            control,
        }))
    }
}
