//! Genesys AudioHook's configuration: the raw `[telephony.genesys]` section, its pure
//! validation into [`GenesysSettings`], and how the provider is built from it.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;

use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;
use crate::telephony::control::ControlError;
use crate::telephony::ProviderBackend;

/// Genesys's largest binary message (its reference server chunks audio at this size).
pub const MAX_BINARY_MESSAGE_BYTES: usize = 64_000;

/// `[telephony.genesys]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenesysConfig {
    /// Serve the media route.
    pub enabled: bool,
    /// Path of the media route (the Audio Connector integration's base URI path).
    pub route: String,
    /// The integration's API key, sent as `X-API-KEY` on every upgrade (secret; required).
    pub api_key: SensitiveString,
    /// The integration's client secret (base64, as Genesys shows it): the upgrade's HTTP
    /// message signature is verified with it; empty: unsigned upgrades are accepted.
    pub client_secret: SensitiveString,
    /// Only this Genesys organization may connect (its id, checked in the
    /// `Audiohook-Organization-Id` header and the `open` message); empty: any.
    pub organization_id: String,
    /// Oldest signature accepted (`created`), in seconds.
    pub max_signature_age_secs: u32,
    /// Bot audio per binary message, in ms (Genesys rate-limits binary messages).
    pub packet_ms: u32,
    /// Binary messages voxhook sends per second, on average (Genesys: 5).
    pub max_messages_per_sec: u32,
    /// Binary messages voxhook may send in a burst (Genesys: 25).
    pub max_message_burst: u32,
    /// A frame larger than this ends the call as a protocol error.
    pub max_message_bytes: usize,
    /// Audio frames buffered while waiting for `open`; beyond this the call ends.
    pub max_early_media_frames: usize,
}

impl Default for GenesysConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            route: "/genesys".into(),
            api_key: SensitiveString::default(),
            client_secret: SensitiveString::default(),
            organization_id: String::new(),
            max_signature_age_secs: 10,
            packet_ms: 200,
            max_messages_per_sec: 5,
            max_message_burst: 25,
            max_message_bytes: MAX_BINARY_MESSAGE_BYTES,
            max_early_media_frames: 50,
        }
    }
}

/// Validated `[telephony.genesys]`.
#[derive(Debug, Clone)]
pub struct GenesysSettings {
    /// Route served.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// Expected `X-API-KEY`.
    pub api_key: SensitiveString,
    /// Decoded client secret (empty: signatures not required).
    pub client_secret: Arc<SensitiveBytes>,
    /// The one organization allowed, if set.
    pub organization_id: Option<String>,
    /// Signature age limit, seconds.
    pub max_signature_age_secs: i64,
    /// Bot audio bytes (μ-law, 8 kHz) per binary message.
    pub packet_bytes: usize,
    /// Average binary messages per second.
    pub max_messages_per_sec: u32,
    /// Burst of binary messages.
    pub max_message_burst: u32,
    /// Frame size limit.
    pub max_message_bytes: usize,
    /// Early media buffer bound.
    pub max_early_media_frames: usize,
}

/// Secret bytes whose `Debug` never shows them.
#[derive(Clone, Default)]
pub struct SensitiveBytes(pub Vec<u8>);

impl std::fmt::Debug for SensitiveBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("**REDACTED**")
    }
}

impl Component for GenesysSettings {
    type Raw = GenesysConfig;

    fn validate(c: GenesysConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            c.route.starts_with('/') && c.route.len() > 1,
            &ctx.key("route"),
            "must be a path like /genesys",
        );
        errs.check(
            !c.enabled || !c.api_key.is_empty(),
            &ctx.key("api_key"),
            &format!(
                "is required when Genesys is enabled (set {})",
                ctx.env_var("api_key")
            ),
        );
        let secret = B64.decode(c.client_secret.expose().trim());
        errs.check(
            secret.is_ok(),
            &ctx.key("client_secret"),
            "must be the base64 client secret Genesys shows",
        );
        errs.check(
            (1..=60).contains(&c.max_signature_age_secs),
            &ctx.key("max_signature_age_secs"),
            "must be 1 to 60",
        );
        // 20 ms steps, and one message never over Genesys's 64000 bytes (8 bytes per ms).
        errs.check(
            c.packet_ms >= 20
                && c.packet_ms.is_multiple_of(20)
                && c.packet_ms as usize * 8 <= MAX_BINARY_MESSAGE_BYTES,
            &ctx.key("packet_ms"),
            "must be a multiple of 20 from 20 to 8000",
        );
        errs.check(
            c.max_messages_per_sec >= 1,
            &ctx.key("max_messages_per_sec"),
            "must be at least 1",
        );
        errs.check(
            c.max_message_burst >= 1,
            &ctx.key("max_message_burst"),
            "must be at least 1",
        );
        errs.check(
            c.max_message_bytes >= 1024,
            &ctx.key("max_message_bytes"),
            "must be at least 1024",
        );
        GenesysSettings {
            enabled: c.enabled,
            route: c.route,
            api_key: c.api_key,
            client_secret: Arc::new(SensitiveBytes(secret.unwrap_or_default())),
            organization_id: (!c.organization_id.trim().is_empty())
                .then(|| c.organization_id.trim().to_string()),
            max_signature_age_secs: i64::from(c.max_signature_age_secs),
            packet_bytes: c.packet_ms as usize * 8,
            max_messages_per_sec: c.max_messages_per_sec,
            max_message_burst: c.max_message_burst,
            max_message_bytes: c.max_message_bytes,
            max_early_media_frames: c.max_early_media_frames,
        }
    }
}

impl ProviderBackend for GenesysSettings {
    fn enabled(&self) -> bool {
        self.enabled
    }

    fn build(
        &self,
        _public_url: Option<&str>,
    ) -> Result<Arc<dyn crate::telephony::Provider>, ControlError> {
        Ok(Arc::new(super::Genesys {
            settings: self.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::ProviderSettings;

    fn parse(toml: &str) -> Result<GenesysSettings, Vec<String>> {
        crate::telephony::parse_section("genesys", toml).map(|s| match s {
            ProviderSettings::Genesys(p) => p,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn defaults_follow_genesys_limits_and_problems_carry_their_keys() {
        let s = parse("").unwrap();
        assert!(!s.enabled && s.client_secret.0.is_empty() && s.organization_id.is_none());
        assert_eq!(
            (s.packet_bytes, s.max_messages_per_sec, s.max_message_burst),
            (1_600, 5, 25)
        );
        let s = parse("enabled = true\napi_key = \"key-secret\"\nclient_secret = \"c2VjcmV0\"")
            .unwrap();
        assert_eq!(s.client_secret.0, b"secret");
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("key-secret") && !dbg.contains("c2VjcmV0"),
            "{dbg}"
        );
        let errs = parse(
            "enabled = true\nroute = \"x\"\nclient_secret = \"%%%\"\nmax_signature_age_secs = 0\npacket_ms = 30\nmax_messages_per_sec = 0\nmax_message_burst = 0\nmax_message_bytes = 1",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "telephony.genesys.route",
                "telephony.genesys.api_key",
                "telephony.genesys.client_secret",
                "telephony.genesys.max_signature_age_secs",
                "telephony.genesys.packet_ms",
                "telephony.genesys.max_messages_per_sec",
                "telephony.genesys.max_message_burst",
                "telephony.genesys.max_message_bytes",
            ]
        );
    }
}
