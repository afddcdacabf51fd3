//! Telnyx's configuration: the raw `[telephony.telnyx]` section, its pure validation into
//! [`TelnyxSettings`], and how the provider is built from it.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::media::{Encoding, MediaCodec};
use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;
use crate::telephony::control::{CallControl, ControlError};
use crate::telephony::ProviderBackend;

/// The longest `stream_auth_token` Telnyx accepts.
const MAX_STREAM_AUTH_TOKEN: usize = 4_000;

/// `[telephony.telnyx]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelnyxConfig {
    /// Serve the media route.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// The `stream_auth_token` given to `streaming_start` (secret); when set, an upgrade
    /// without it in `x-telnyx-streaming-auth-token` is refused.
    pub stream_auth_token: SensitiveString,
    /// The `stream_bidirectional_codec` asked for: `PCMU`, `PCMA`, `L16` or `OPUS`.
    pub bidirectional_codec: String,
    /// The `stream_bidirectional_sampling_rate` asked for (8000, or 16000 for L16 and OPUS).
    pub bidirectional_sampling_rate: u32,
    /// A text frame larger than this ends the call as a protocol error.
    pub max_message_bytes: usize,
    /// Media frames buffered while waiting for `start`; beyond this the call is refused.
    pub max_early_media_frames: usize,
    /// Telnyx API key (secret) for Call Control hang-up and transfer; empty: close the stream.
    pub api_key: SensitiveString,
    /// Call Control API base URL (tests point it at a local fake).
    pub api_base_url: String,
    /// Timeout of one API request.
    pub api_timeout_ms: u64,
}

impl Default for TelnyxConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            route: "/telnyx".into(),
            stream_auth_token: SensitiveString::default(),
            bidirectional_codec: "PCMU".into(),
            bidirectional_sampling_rate: 8_000,
            max_message_bytes: 64 * 1024,
            max_early_media_frames: 250,
            api_key: SensitiveString::default(),
            api_base_url: "https://api.telnyx.com/v2".into(),
            api_timeout_ms: 5_000,
        }
    }
}

/// Validated `[telephony.telnyx]`.
#[derive(Debug, Clone)]
pub struct TelnyxSettings {
    /// Route served.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// Token every upgrade must carry, when set.
    pub stream_auth_token: Option<SensitiveString>,
    /// Codec and rate voxhook sends (what `streaming_start` asked for).
    pub outbound: MediaCodec,
    /// Frame size limit.
    pub max_message_bytes: usize,
    /// Early media buffer bound.
    pub max_early_media_frames: usize,
    /// Call Control access for hang-up and transfer, when configured.
    pub rest: Option<TelnyxRestSettings>,
}

/// Telnyx Call Control API access.
#[derive(Debug, Clone)]
pub struct TelnyxRestSettings {
    /// Base URL, up to and including `/v2`.
    pub api_base_url: String,
    /// API key (Bearer).
    pub api_key: SensitiveString,
    /// Request timeout.
    pub timeout: Duration,
}

impl Component for TelnyxSettings {
    type Raw = TelnyxConfig;

    fn validate(c: TelnyxConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            c.route.starts_with('/') && c.route.len() > 1,
            &ctx.key("route"),
            "must be a path like /telnyx",
        );
        errs.check(
            c.max_message_bytes >= 1024,
            &ctx.key("max_message_bytes"),
            "must be at least 1024",
        );
        errs.check(
            c.stream_auth_token.expose().len() <= MAX_STREAM_AUTH_TOKEN,
            &ctx.key("stream_auth_token"),
            "must be at most 4000 characters (Telnyx's limit)",
        );
        let outbound = outbound_codec(&c, ctx, errs);
        let rest = (!c.api_key.is_empty()).then(|| {
            errs.check(
                c.api_base_url.starts_with("http://") || c.api_base_url.starts_with("https://"),
                &ctx.key("api_base_url"),
                "must be an http(s) URL",
            );
            TelnyxRestSettings {
                api_base_url: c.api_base_url.trim_end_matches('/').to_string(),
                api_key: c.api_key.clone(),
                timeout: Duration::from_millis(c.api_timeout_ms.max(100)),
            }
        });
        TelnyxSettings {
            enabled: c.enabled,
            route: c.route,
            stream_auth_token: (!c.stream_auth_token.is_empty()).then_some(c.stream_auth_token),
            outbound,
            max_message_bytes: c.max_message_bytes,
            max_early_media_frames: c.max_early_media_frames,
            rest,
        }
    }
}

/// The bidirectional codec and rate, checked against what Telnyx offers and voxhook encodes.
fn outbound_codec(c: &TelnyxConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> MediaCodec {
    let rate = c.bidirectional_sampling_rate;
    let Some(encoding) = Encoding::parse(&c.bidirectional_codec) else {
        errs.push(
            &ctx.key("bidirectional_codec"),
            format!(
                "`{}` is not one of PCMU, PCMA, L16, OPUS",
                c.bidirectional_codec
            ),
        );
        return MediaCodec {
            encoding: Encoding::Pcmu,
            rate: 8_000,
        };
    };
    let rates: &[u32] = match encoding {
        Encoding::Pcmu | Encoding::Pcma => &[8_000],
        Encoding::L16 | Encoding::Opus => &[8_000, 16_000],
    };
    errs.check(
        rates.contains(&rate),
        &ctx.key("bidirectional_sampling_rate"),
        &format!("{} takes {rates:?}, not {rate}", encoding.name()),
    );
    MediaCodec { encoding, rate }
}

impl ProviderBackend for TelnyxSettings {
    fn enabled(&self) -> bool {
        self.enabled
    }

    fn build(
        &self,
        _public_url: Option<&str>,
    ) -> Result<Arc<dyn crate::telephony::Provider>, ControlError> {
        let control: Option<Arc<dyn CallControl>> = match &self.rest {
            Some(r) => Some(Arc::new(super::rest::TelnyxRest::new(
                &r.api_base_url,
                r.api_key.clone(),
                r.timeout,
            )?)),
            None => None,
        };
        // Fail at startup, not per call, if libopus cannot make the configured encoder.
        super::media::PayloadEncoder::new(self.outbound).map_err(ControlError::Config)?;
        Ok(Arc::new(super::Telnyx {
            settings: self.clone(),
            control,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::ProviderSettings;

    fn parse(toml: &str) -> Result<TelnyxSettings, Vec<String>> {
        crate::telephony::parse_section("telnyx", toml).map(|s| match s {
            ProviderSettings::Telnyx(p) => p,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn defaults_are_off_pcmu_and_no_api() {
        let s = parse("").unwrap();
        assert!(!s.enabled);
        assert_eq!(s.route, "/telnyx");
        assert_eq!(
            s.outbound,
            MediaCodec {
                encoding: Encoding::Pcmu,
                rate: 8_000
            }
        );
        assert!(s.stream_auth_token.is_none());
        assert!(s.rest.is_none());
    }

    #[test]
    fn opus_and_l16_take_16k_and_secrets_stay_hidden() {
        let s = parse(
            "enabled = true\nbidirectional_codec = \"OPUS\"\nbidirectional_sampling_rate = 16000\n\
             stream_auth_token = \"tok-1\"\napi_key = \"KEY-secret\"\napi_base_url = \"http://127.0.0.1:9/v2/\"",
        )
        .unwrap();
        assert_eq!(
            s.outbound,
            MediaCodec {
                encoding: Encoding::Opus,
                rate: 16_000
            }
        );
        let rest = s.rest.clone().unwrap();
        assert_eq!(rest.api_base_url, "http://127.0.0.1:9/v2");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("tok-1") && !shown.contains("KEY-secret"),
            "{shown}"
        );
        assert!(s.build(None).is_ok());
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let errs = parse(
            "route = \"telnyx\"\nbidirectional_codec = \"PCMA\"\nbidirectional_sampling_rate = 16000\n\
             api_key = \"k\"\napi_base_url = \"ftp://x\"\nmax_message_bytes = 10",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "telephony.telnyx.route",
                "telephony.telnyx.max_message_bytes",
                "telephony.telnyx.bidirectional_sampling_rate",
                "telephony.telnyx.api_base_url",
            ],
            "{errs:?}"
        );
        let errs = parse("bidirectional_codec = \"G722\"").unwrap_err();
        assert!(errs[0].contains("G722"), "{errs:?}");
    }
}
