//! Plivo's configuration: the raw `[telephony.plivo]` section, its pure validation into
//! [`PlivoSettings`], and how the provider is built from it.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::media::StreamCodec;
use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;
use crate::telephony::control::{CallControl, ControlError};
use crate::telephony::ProviderBackend;

/// `[telephony.plivo]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlivoConfig {
    /// Serve the media route.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// The `<Stream contentType>` asked for: what voxhook sends back
    /// (`audio/x-l16;rate=8000`, `audio/x-l16;rate=16000`, `audio/x-mulaw;rate=8000`).
    pub content_type: String,
    /// L16 byte order, `little` or `big` (Plivo's docs do not say; peers use little).
    pub l16_byte_order: String,
    /// Shared secret (empty: off); when set, the stream URL must carry `?token=<secret>`.
    pub stream_token: SensitiveString,
    /// `extraHeaders` keys that carry the caller's and the called number.
    pub caller_header: String,
    /// See `caller_header`.
    pub called_header: String,
    /// A text frame larger than this ends the call as a protocol error.
    pub max_message_bytes: usize,
    /// Media frames buffered while waiting for `start`; beyond this the call is refused.
    pub max_early_media_frames: usize,
    /// Plivo Auth ID for the REST API (hang-up, transfer); empty: close the stream.
    pub auth_id: String,
    /// Plivo Auth Token (secret).
    pub auth_token: SensitiveString,
    /// REST API base URL (tests point it at a local fake).
    pub api_base_url: String,
    /// Timeout of one API request.
    pub api_timeout_ms: u64,
    /// Where Plivo fetches the XML of a transfer (`{target}` is replaced by the URL-encoded
    /// number or SIP URI); empty: transfers fail.
    pub transfer_url: String,
}

impl Default for PlivoConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            route: "/plivo".into(),
            content_type: "audio/x-l16;rate=8000".into(),
            l16_byte_order: "little".into(),
            stream_token: SensitiveString::default(),
            caller_header: "from".into(),
            called_header: "to".into(),
            max_message_bytes: 64 * 1024,
            max_early_media_frames: 250,
            auth_id: String::new(),
            auth_token: SensitiveString::default(),
            api_base_url: "https://api.plivo.com".into(),
            api_timeout_ms: 5_000,
            transfer_url: String::new(),
        }
    }
}

/// Validated `[telephony.plivo]`.
#[derive(Debug, Clone)]
pub struct PlivoSettings {
    /// Route served.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// What voxhook sends.
    pub outbound: StreamCodec,
    /// Inbound L16 is big-endian.
    pub l16_big_endian: bool,
    /// Token every upgrade must carry, when set.
    pub stream_token: Option<SensitiveString>,
    /// `extraHeaders` key of the caller's number.
    pub caller_header: String,
    /// `extraHeaders` key of the called number.
    pub called_header: String,
    /// Frame size limit.
    pub max_message_bytes: usize,
    /// Early media buffer bound.
    pub max_early_media_frames: usize,
    /// REST access, when configured.
    pub rest: Option<PlivoRestSettings>,
}

/// Plivo REST API access.
#[derive(Debug, Clone)]
pub struct PlivoRestSettings {
    /// Base URL (`https://api.plivo.com`).
    pub api_base_url: String,
    /// Auth ID (Basic user, and the account in the path).
    pub auth_id: String,
    /// Auth Token (Basic password).
    pub auth_token: SensitiveString,
    /// Request timeout.
    pub timeout: Duration,
    /// Transfer XML URL template (`{target}`), if any.
    pub transfer_url: Option<String>,
}

impl Component for PlivoSettings {
    type Raw = PlivoConfig;

    fn validate(c: PlivoConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            c.route.starts_with('/') && c.route.len() > 1,
            &ctx.key("route"),
            "must be a path like /plivo",
        );
        errs.check(
            c.max_message_bytes >= 1024,
            &ctx.key("max_message_bytes"),
            "must be at least 1024",
        );
        let big = match c.l16_byte_order.as_str() {
            "little" => false,
            "big" => true,
            other => {
                errs.push(
                    &ctx.key("l16_byte_order"),
                    format!("`{other}` is not `little` or `big`"),
                );
                false
            }
        };
        let outbound = StreamCodec::parse_content_type(&c.content_type, big).unwrap_or_else(|| {
            errs.push(
                &ctx.key("content_type"),
                format!(
                    "`{}` is not one of audio/x-l16;rate=8000, audio/x-l16;rate=16000, \
                     audio/x-mulaw;rate=8000",
                    c.content_type
                ),
            );
            StreamCodec::DEFAULT
        });
        let stream_token = crate::telephony::stream_token_setting(c.stream_token, ctx, errs);
        let rest = (!c.auth_id.is_empty()).then(|| {
            errs.check(
                c.api_base_url.starts_with("http://") || c.api_base_url.starts_with("https://"),
                &ctx.key("api_base_url"),
                "must be an http(s) URL",
            );
            errs.check(
                !c.auth_token.is_empty(),
                &ctx.key("auth_token"),
                &format!(
                    "is required with auth_id (set {})",
                    ctx.env_var("auth_token")
                ),
            );
            errs.check(
                c.transfer_url.is_empty()
                    || (c.transfer_url.starts_with("https://")
                        || c.transfer_url.starts_with("http://"))
                        && c.transfer_url.contains("{target}"),
                &ctx.key("transfer_url"),
                "must be an http(s) URL containing {target}",
            );
            PlivoRestSettings {
                api_base_url: c.api_base_url.trim_end_matches('/').to_string(),
                auth_id: c.auth_id.clone(),
                auth_token: c.auth_token.clone(),
                timeout: Duration::from_millis(c.api_timeout_ms.max(100)),
                transfer_url: (!c.transfer_url.is_empty()).then(|| c.transfer_url.clone()),
            }
        });
        PlivoSettings {
            enabled: c.enabled,
            route: c.route,
            outbound,
            l16_big_endian: big,
            stream_token,
            caller_header: c.caller_header,
            called_header: c.called_header,
            max_message_bytes: c.max_message_bytes,
            max_early_media_frames: c.max_early_media_frames,
            rest,
        }
    }
}

impl ProviderBackend for PlivoSettings {
    fn enabled(&self) -> bool {
        self.enabled
    }

    fn build(
        &self,
        _public_url: Option<&str>,
    ) -> Result<Arc<dyn crate::telephony::Provider>, ControlError> {
        let control: Option<Arc<dyn CallControl>> = match &self.rest {
            Some(r) => Some(Arc::new(super::rest::PlivoRest::new(r)?)),
            None => None,
        };
        Ok(Arc::new(super::Plivo {
            settings: self.clone(),
            control,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::plivo::media::Encoding;
    use crate::telephony::ProviderSettings;

    fn parse(toml: &str) -> Result<PlivoSettings, Vec<String>> {
        crate::telephony::parse_section("plivo", toml).map(|s| match s {
            ProviderSettings::Plivo(p) => p,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn defaults_are_off_l16_8k_little_endian_and_no_api() {
        let s = parse("").unwrap();
        assert!(!s.enabled);
        assert_eq!(s.route, "/plivo");
        assert_eq!(s.outbound, StreamCodec::DEFAULT);
        assert!(s.stream_token.is_none() && s.rest.is_none());
        assert_eq!(
            (s.caller_header.as_str(), s.called_header.as_str()),
            ("from", "to")
        );
    }

    #[test]
    fn rest_and_tokens_are_read_and_secrets_stay_hidden() {
        let s = parse(
            "enabled = true\ncontent_type = \"audio/x-l16;rate=16000\"\nl16_byte_order = \"big\"\n\
             stream_token = \"tok-1\"\nauth_id = \"MAXXXX\"\nauth_token = \"AUTH-secret\"\n\
             api_base_url = \"http://127.0.0.1:9/\"\ntransfer_url = \"https://x.example/t?to={target}\"",
        )
        .unwrap();
        assert_eq!(
            s.outbound,
            StreamCodec {
                encoding: Encoding::L16 { big_endian: true },
                rate: 16_000
            }
        );
        let rest = s.rest.clone().unwrap();
        assert_eq!(rest.api_base_url, "http://127.0.0.1:9");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("tok-1") && !shown.contains("AUTH-secret"),
            "{shown}"
        );
        assert!(s.build(None).is_ok());
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let errs = parse(
            "route = \"plivo\"\nmax_message_bytes = 10\nl16_byte_order = \"middle\"\n\
             content_type = \"audio/x-mulaw;rate=16000\"\nstream_token = \"a b\"\n\
             auth_id = \"MA\"\napi_base_url = \"ftp://x\"\ntransfer_url = \"https://x\"",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "telephony.plivo.route",
                "telephony.plivo.max_message_bytes",
                "telephony.plivo.l16_byte_order",
                "telephony.plivo.content_type",
                "telephony.plivo.stream_token",
                "telephony.plivo.api_base_url",
                "telephony.plivo.auth_token",
                "telephony.plivo.transfer_url",
            ],
            "{errs:?}"
        );
    }
}
