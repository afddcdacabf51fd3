//! Exotel's configuration: the raw `[telephony.exotel]` section, its pure validation into
//! [`ExotelSettings`], and how the provider is built from it.

use std::sync::Arc;

use serde::Deserialize;

use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;
use crate::telephony::control::ControlError;
use crate::telephony::ProviderBackend;

/// `[telephony.exotel]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExotelConfig {
    /// Serve the media route.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// User of the Basic auth in the applet URL (`wss://user:password@host/exotel`); empty: off.
    pub basic_auth_user: String,
    /// Password of that Basic auth (secret).
    pub basic_auth_password: SensitiveString,
    /// A text frame larger than this ends the call as a protocol error.
    pub max_message_bytes: usize,
    /// Media frames buffered while waiting for `start`; beyond this the call is refused.
    pub max_early_media_frames: usize,
}

impl Default for ExotelConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            route: "/exotel".into(),
            basic_auth_user: String::new(),
            basic_auth_password: SensitiveString::default(),
            max_message_bytes: 256 * 1024,
            max_early_media_frames: 50,
        }
    }
}

/// Validated `[telephony.exotel]`.
#[derive(Debug, Clone)]
pub struct ExotelSettings {
    /// Route served.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// Basic auth every upgrade must carry (user, password), when set.
    pub basic_auth: Option<(String, SensitiveString)>,
    /// Frame size limit.
    pub max_message_bytes: usize,
    /// Early media buffer bound.
    pub max_early_media_frames: usize,
}

impl Component for ExotelSettings {
    type Raw = ExotelConfig;

    fn validate(c: ExotelConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            c.route.starts_with('/') && c.route.len() > 1,
            &ctx.key("route"),
            "must be a path like /exotel",
        );
        errs.check(
            c.max_message_bytes >= 1024,
            &ctx.key("max_message_bytes"),
            "must be at least 1024",
        );
        let basic_auth = crate::telephony::basic_auth_setting(
            c.basic_auth_user,
            c.basic_auth_password,
            ctx,
            errs,
        );
        ExotelSettings {
            enabled: c.enabled,
            route: c.route,
            basic_auth,
            max_message_bytes: c.max_message_bytes,
            max_early_media_frames: c.max_early_media_frames,
        }
    }
}

impl ProviderBackend for ExotelSettings {
    fn enabled(&self) -> bool {
        self.enabled
    }

    fn build(
        &self,
        _public_url: Option<&str>,
    ) -> Result<Arc<dyn crate::telephony::Provider>, ControlError> {
        Ok(Arc::new(super::Exotel {
            settings: self.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::ProviderSettings;

    fn parse(toml: &str) -> Result<ExotelSettings, Vec<String>> {
        crate::telephony::parse_section("exotel", toml).map(|s| match s {
            ProviderSettings::Exotel(p) => p,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn defaults_are_off_without_auth_and_problems_carry_their_keys() {
        let s = parse("").unwrap();
        assert!(!s.enabled && s.basic_auth.is_none());
        assert_eq!(s.route, "/exotel");
        let s = parse("basic_auth_user = \"KEY\"\nbasic_auth_password = \"pw-secret\"").unwrap();
        assert!(!format!("{s:?}").contains("pw-secret"));
        let errs =
            parse("route = \"x\"\nmax_message_bytes = 1\nbasic_auth_user = \"a:b\"").unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "telephony.exotel.route",
                "telephony.exotel.max_message_bytes",
                "telephony.exotel.basic_auth_user",
                "telephony.exotel.basic_auth_password",
            ]
        );
    }
}
