//! Vonage's configuration: the raw `[telephony.vonage]` section, its pure validation into
//! [`VonageSettings`], and how the provider is built from it (the private key is parsed
//! then, so a bad key fails at startup).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;
use crate::telephony::control::{CallControl, ControlError};
use crate::telephony::ProviderBackend;

/// `[telephony.vonage]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VonageConfig {
    /// Serve the media route.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// Shared secret (empty: off); when set, the NCCO endpoint `uri` must carry
    /// `?token=<secret>` (Vonage does not sign WebSocket upgrades).
    pub stream_token: SensitiveString,
    /// NCCO endpoint `headers` key that carries the call's UUID (needed for call control).
    pub call_id_header: String,
    /// Headers key of the caller's number.
    pub caller_header: String,
    /// Headers key of the called number.
    pub called_header: String,
    /// A frame larger than this ends the call as a protocol error.
    pub max_message_bytes: usize,
    /// Audio frames buffered while waiting for `websocket:connected`.
    pub max_early_media_frames: usize,
    /// Vonage application id (JWT `application_id`); empty: no call control (a bot hang-up
    /// closes the socket, which ends the `connect` leg).
    pub application_id: String,
    /// The application's private key, PEM (secret).
    pub private_key: SensitiveString,
    /// Voice API base URL (tests point it at a local fake).
    pub api_base_url: String,
    /// Timeout of one API request.
    pub api_timeout_ms: u64,
    /// Caller id for transfers to a number (`from` of the NCCO `connect`); empty: Vonage's
    /// default (the transfer fails on accounts that require one).
    pub transfer_from: String,
}

impl Default for VonageConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            route: "/vonage".into(),
            stream_token: SensitiveString::default(),
            call_id_header: "uuid".into(),
            caller_header: "from".into(),
            called_header: "to".into(),
            max_message_bytes: 16 * 1024,
            max_early_media_frames: 50,
            application_id: String::new(),
            private_key: SensitiveString::default(),
            api_base_url: "https://api.nexmo.com".into(),
            api_timeout_ms: 5_000,
            transfer_from: String::new(),
        }
    }
}

/// Validated `[telephony.vonage]`.
#[derive(Debug, Clone)]
pub struct VonageSettings {
    /// Route served.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// Token every upgrade must carry, when set.
    pub stream_token: Option<SensitiveString>,
    /// Header of the call UUID.
    pub call_id_header: String,
    /// Header of the caller's number.
    pub caller_header: String,
    /// Header of the called number.
    pub called_header: String,
    /// Frame size limit.
    pub max_message_bytes: usize,
    /// Early media buffer bound.
    pub max_early_media_frames: usize,
    /// Voice API access, when configured.
    pub rest: Option<VonageRestSettings>,
}

/// Vonage Voice API access.
#[derive(Debug, Clone)]
pub struct VonageRestSettings {
    /// Base URL (`https://api.nexmo.com`).
    pub api_base_url: String,
    /// Application id.
    pub application_id: String,
    /// Private key PEM.
    pub private_key: SensitiveString,
    /// Request timeout.
    pub timeout: Duration,
    /// `from` of a transfer to a number.
    pub transfer_from: Option<String>,
}

impl Component for VonageSettings {
    type Raw = VonageConfig;

    fn validate(c: VonageConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            c.route.starts_with('/') && c.route.len() > 1,
            &ctx.key("route"),
            "must be a path like /vonage",
        );
        errs.check(
            c.max_message_bytes >= 1024,
            &ctx.key("max_message_bytes"),
            "must be at least 1024",
        );
        let stream_token = crate::telephony::stream_token_setting(c.stream_token, ctx, errs);
        for (key, v) in [
            ("call_id_header", &c.call_id_header),
            ("caller_header", &c.caller_header),
            ("called_header", &c.called_header),
        ] {
            errs.check(!v.trim().is_empty(), &ctx.key(key), "must not be empty");
        }
        let rest = (!c.application_id.is_empty()).then(|| {
            errs.check(
                uuid::Uuid::parse_str(&c.application_id).is_ok(),
                &ctx.key("application_id"),
                "must be the application's UUID",
            );
            errs.check(
                c.private_key.expose().contains("PRIVATE KEY-----"),
                &ctx.key("private_key"),
                &format!(
                    "is required with application_id: the PEM private key (set {})",
                    ctx.env_var("private_key")
                ),
            );
            errs.check(
                c.api_base_url.starts_with("http://") || c.api_base_url.starts_with("https://"),
                &ctx.key("api_base_url"),
                "must be an http(s) URL",
            );
            errs.check(
                c.transfer_from.is_empty()
                    || c.transfer_from.bytes().all(|b| b.is_ascii_digit())
                        && (8..=15).contains(&c.transfer_from.len()),
                &ctx.key("transfer_from"),
                "must be an E.164 number without + (8 to 15 digits)",
            );
            VonageRestSettings {
                api_base_url: c.api_base_url.trim_end_matches('/').to_string(),
                application_id: c.application_id.clone(),
                private_key: c.private_key.clone(),
                timeout: Duration::from_millis(c.api_timeout_ms.max(100)),
                transfer_from: (!c.transfer_from.is_empty()).then(|| c.transfer_from.clone()),
            }
        });
        VonageSettings {
            enabled: c.enabled,
            route: c.route,
            stream_token,
            call_id_header: c.call_id_header,
            caller_header: c.caller_header,
            called_header: c.called_header,
            max_message_bytes: c.max_message_bytes,
            max_early_media_frames: c.max_early_media_frames,
            rest,
        }
    }
}

impl ProviderBackend for VonageSettings {
    fn enabled(&self) -> bool {
        self.enabled
    }

    fn build(
        &self,
        _public_url: Option<&str>,
    ) -> Result<Arc<dyn crate::telephony::Provider>, ControlError> {
        let control = match &self.rest {
            Some(r) => Some(Arc::new(super::rest::VonageRest::new(r)?) as Arc<dyn CallControl>),
            None => None,
        };
        Ok(Arc::new(super::Vonage {
            settings: self.clone(),
            control,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::ProviderSettings;

    fn parse(toml: &str) -> Result<VonageSettings, Vec<String>> {
        crate::telephony::parse_section("vonage", toml).map(|s| match s {
            ProviderSettings::Vonage(p) => p,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn defaults_are_off_without_control_and_problems_carry_their_keys() {
        let s = parse("").unwrap();
        assert!(!s.enabled && s.rest.is_none() && s.stream_token.is_none());
        assert_eq!(
            (s.route.as_str(), s.call_id_header.as_str()),
            ("/vonage", "uuid")
        );
        let pem = include_str!("../../../tests/fixtures/vonage/test_private_key.pem");
        let s = parse(&format!(
            "application_id = \"aaaaaaaa-bbbb-cccc-dddd-0123456789ab\"\nprivate_key = '''{pem}'''"
        ))
        .unwrap();
        assert!(!format!("{s:?}").contains("PRIVATE KEY"));
        let errs = parse(
            "route = \"x\"\nstream_token = \"a b\"\ncaller_header = \" \"\n\
             application_id = \"app\"\napi_base_url = \"ftp://x\"\ntransfer_from = \"+1\"",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "telephony.vonage.route",
                "telephony.vonage.stream_token",
                "telephony.vonage.caller_header",
                "telephony.vonage.application_id",
                "telephony.vonage.private_key",
                "telephony.vonage.api_base_url",
                "telephony.vonage.transfer_from",
            ]
        );
    }
}
