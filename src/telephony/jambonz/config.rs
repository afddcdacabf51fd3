//! jambonz's configuration: the raw `[telephony.jambonz]` section, its pure validation into
//! [`JambonzSettings`], and how the provider is built from it.

use std::sync::Arc;

use serde::Deserialize;

use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;
use crate::telephony::control::ControlError;
use crate::telephony::ProviderBackend;

/// Rates the `listen` verb streams at (`sampleRate`, `bidirectionalAudio.sampleRate`).
pub const RATES: [u32; 5] = [8_000, 16_000, 24_000, 48_000, 64_000];

/// `[telephony.jambonz]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JambonzConfig {
    /// Serve the media route.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// The `listen` verb's `bidirectionalAudio.sampleRate`: the rate of the audio voxhook
    /// streams back; 0 = the inbound `sampleRate` of each call's metadata.
    pub bidirectional_sample_rate: u32,
    /// `wsAuth.username` of the `listen` verb; empty: no Basic auth required.
    pub ws_auth_username: String,
    /// `wsAuth.password` (secret).
    pub ws_auth_password: SensitiveString,
    /// A frame larger than this ends the call as a protocol error.
    pub max_message_bytes: usize,
    /// Audio frames buffered while waiting for the metadata frame; beyond this the call ends.
    pub max_early_media_frames: usize,
}

impl Default for JambonzConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            route: "/jambonz".into(),
            bidirectional_sample_rate: 0,
            ws_auth_username: String::new(),
            ws_auth_password: SensitiveString::default(),
            max_message_bytes: 64 * 1024,
            max_early_media_frames: 50,
        }
    }
}

/// Validated `[telephony.jambonz]`.
#[derive(Debug, Clone)]
pub struct JambonzSettings {
    /// Route served.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// Outbound rate, when fixed (`None`: the call's inbound rate).
    pub bidirectional_sample_rate: Option<u32>,
    /// Basic auth every upgrade must carry (user, password), when set.
    pub ws_auth: Option<(String, SensitiveString)>,
    /// Frame size limit.
    pub max_message_bytes: usize,
    /// Early media buffer bound.
    pub max_early_media_frames: usize,
}

impl Component for JambonzSettings {
    type Raw = JambonzConfig;

    fn validate(c: JambonzConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            c.route.starts_with('/') && c.route.len() > 1,
            &ctx.key("route"),
            "must be a path like /jambonz",
        );
        errs.check(
            c.bidirectional_sample_rate == 0 || RATES.contains(&c.bidirectional_sample_rate),
            &ctx.key("bidirectional_sample_rate"),
            "must be 0 (the inbound rate), 8000, 16000, 24000, 48000 or 64000",
        );
        errs.check(
            c.max_message_bytes >= 1024,
            &ctx.key("max_message_bytes"),
            "must be at least 1024",
        );
        errs.check(
            !c.ws_auth_username.contains(':'),
            &ctx.key("ws_auth_username"),
            "must not contain `:`",
        );
        let on = !c.ws_auth_username.is_empty();
        errs.check(
            on != c.ws_auth_password.is_empty(),
            &ctx.key("ws_auth_password"),
            &format!(
                "ws_auth_username and ws_auth_password go together (set {})",
                ctx.env_var("ws_auth_password")
            ),
        );
        JambonzSettings {
            enabled: c.enabled,
            route: c.route,
            bidirectional_sample_rate: (c.bidirectional_sample_rate != 0)
                .then_some(c.bidirectional_sample_rate),
            ws_auth: on.then_some((c.ws_auth_username, c.ws_auth_password)),
            max_message_bytes: c.max_message_bytes,
            max_early_media_frames: c.max_early_media_frames,
        }
    }
}

impl ProviderBackend for JambonzSettings {
    fn enabled(&self) -> bool {
        self.enabled
    }

    fn build(
        &self,
        _public_url: Option<&str>,
    ) -> Result<Arc<dyn crate::telephony::Provider>, ControlError> {
        Ok(Arc::new(super::Jambonz {
            settings: self.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::ProviderSettings;

    fn parse(toml: &str) -> Result<JambonzSettings, Vec<String>> {
        crate::telephony::parse_section("jambonz", toml).map(|s| match s {
            ProviderSettings::Jambonz(p) => p,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn defaults_follow_the_inbound_rate_and_problems_carry_their_keys() {
        let s = parse("").unwrap();
        assert!(!s.enabled && s.ws_auth.is_none());
        assert_eq!(
            (s.route.as_str(), s.bidirectional_sample_rate),
            ("/jambonz", None)
        );
        let s = parse("bidirectional_sample_rate = 16000\nws_auth_username = \"u\"\nws_auth_password = \"pw-secret\"")
            .unwrap();
        assert_eq!(s.bidirectional_sample_rate, Some(16_000));
        assert!(!format!("{s:?}").contains("pw-secret"));
        let errs = parse(
            "route = \"x\"\nbidirectional_sample_rate = 44100\nmax_message_bytes = 1\nws_auth_username = \"a:b\"",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "telephony.jambonz.route",
                "telephony.jambonz.bidirectional_sample_rate",
                "telephony.jambonz.max_message_bytes",
                "telephony.jambonz.ws_auth_username",
                "telephony.jambonz.ws_auth_password",
            ]
        );
    }
}
