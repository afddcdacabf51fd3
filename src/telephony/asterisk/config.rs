//! Asterisk chan_websocket's configuration: the raw `[telephony.asterisk]` section, its pure
//! validation into [`AsteriskSettings`], and how the provider is built from it.

use std::sync::Arc;

use serde::Deserialize;

use super::wire::ControlFormat;
use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;
use crate::telephony::control::ControlError;
use crate::telephony::ProviderBackend;

/// `[telephony.asterisk]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsteriskConfig {
    /// Serve the media route.
    pub enabled: bool,
    /// Path of the media route (the `uri` of the `websocket_client.conf` connection).
    pub route: String,
    /// The control message format Asterisk uses for these calls, `json` (`f(json)`, Asterisk
    /// 20.18/22.8/23.2+) or `plain-text` (the legacy default).
    pub control_format: String,
    /// `username` of the `websocket_client.conf` connection (HTTP Basic); empty: off.
    pub basic_auth_user: String,
    /// Its `password` (secret).
    pub basic_auth_password: SensitiveString,
    /// Channel variable holding the caller's number (set with `__` in the dialplan so the
    /// WebSocket channel inherits it; JSON format only).
    pub caller_variable: String,
    /// Channel variable holding the called number.
    pub called_variable: String,
    /// A frame larger than this ends the call as a protocol error.
    pub max_message_bytes: usize,
    /// Audio frames buffered while waiting for `MEDIA_START`.
    pub max_early_media_frames: usize,
    /// Outbound frames voxhook holds while Asterisk has said `MEDIA_XOFF`; beyond this the
    /// oldest are dropped (counted in the log).
    pub max_held_frames: usize,
}

impl Default for AsteriskConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            route: "/asterisk".into(),
            control_format: "json".into(),
            basic_auth_user: String::new(),
            basic_auth_password: SensitiveString::default(),
            caller_variable: "VOXHOOK_CALLER".into(),
            called_variable: "VOXHOOK_CALLED".into(),
            max_message_bytes: 64 * 1024,
            max_early_media_frames: 50,
            max_held_frames: 1_000,
        }
    }
}

/// Validated `[telephony.asterisk]`.
#[derive(Debug, Clone)]
pub struct AsteriskSettings {
    /// Route served.
    pub enabled: bool,
    /// Path of the media route.
    pub route: String,
    /// Control message format.
    pub control_format: ControlFormat,
    /// Basic auth every upgrade must carry (user, password), when set.
    pub basic_auth: Option<(String, SensitiveString)>,
    /// Channel variable of the caller's number.
    pub caller_variable: String,
    /// Channel variable of the called number.
    pub called_variable: String,
    /// Frame size limit.
    pub max_message_bytes: usize,
    /// Early media buffer bound.
    pub max_early_media_frames: usize,
    /// Frames held while paused, at most.
    pub max_held_frames: usize,
}

impl Component for AsteriskSettings {
    type Raw = AsteriskConfig;

    fn validate(c: AsteriskConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            c.route.starts_with('/') && c.route.len() > 1,
            &ctx.key("route"),
            "must be a path like /asterisk",
        );
        let control_format = match c.control_format.as_str() {
            "json" => ControlFormat::Json,
            "plain-text" => ControlFormat::PlainText,
            other => {
                errs.push(
                    &ctx.key("control_format"),
                    format!("`{other}` is not `json` or `plain-text`"),
                );
                ControlFormat::Json
            }
        };
        errs.check(
            c.max_message_bytes >= 1024,
            &ctx.key("max_message_bytes"),
            "must be at least 1024",
        );
        errs.check(
            c.max_held_frames >= 1,
            &ctx.key("max_held_frames"),
            "must be at least 1",
        );
        let basic_auth = crate::telephony::basic_auth_setting(
            c.basic_auth_user,
            c.basic_auth_password,
            ctx,
            errs,
        );
        AsteriskSettings {
            enabled: c.enabled,
            route: c.route,
            control_format,
            basic_auth,
            caller_variable: c.caller_variable,
            called_variable: c.called_variable,
            max_message_bytes: c.max_message_bytes,
            max_early_media_frames: c.max_early_media_frames,
            max_held_frames: c.max_held_frames,
        }
    }
}

impl ProviderBackend for AsteriskSettings {
    fn enabled(&self) -> bool {
        self.enabled
    }

    fn build(
        &self,
        _public_url: Option<&str>,
    ) -> Result<Arc<dyn crate::telephony::Provider>, ControlError> {
        Ok(Arc::new(super::Asterisk {
            settings: self.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::ProviderSettings;

    fn parse(toml: &str) -> Result<AsteriskSettings, Vec<String>> {
        crate::telephony::parse_section("asterisk", toml).map(|s| match s {
            ProviderSettings::Asterisk(p) => p,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn defaults_are_off_json_without_auth_and_problems_carry_their_keys() {
        let s = parse("").unwrap();
        assert!(!s.enabled && s.basic_auth.is_none());
        assert_eq!(
            (s.route.as_str(), s.control_format),
            ("/asterisk", ControlFormat::Json)
        );
        let s = parse("control_format = \"plain-text\"\nbasic_auth_user = \"ast\"\nbasic_auth_password = \"pw-secret\"").unwrap();
        assert_eq!(s.control_format, ControlFormat::PlainText);
        assert!(!format!("{s:?}").contains("pw-secret"));
        let errs = parse(
            "route = \"x\"\ncontrol_format = \"xml\"\nmax_held_frames = 0\nbasic_auth_user = \"a\"",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "telephony.asterisk.route",
                "telephony.asterisk.control_format",
                "telephony.asterisk.max_held_frames",
                "telephony.asterisk.basic_auth_password",
            ]
        );
    }
}
