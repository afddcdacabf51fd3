//! AudioSocket's configuration: the raw `[telephony.audiosocket]` section, its pure
//! validation into [`AudioSocketSettings`], and how the provider is built from it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::wire::MAX_PAYLOAD_BYTES;
use crate::component::{Component, Ctx, Errors};
use crate::telephony::control::ControlError;
use crate::telephony::ProviderBackend;

/// `[telephony.audiosocket]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioSocketConfig {
    /// Listen for AudioSocket connections.
    pub enabled: bool,
    /// TCP address to listen on (the `host:port` of the dialplan's `AudioSocket(uuid,host:port)`).
    /// AudioSocket has no authentication and no TLS: keep it on loopback or a private network.
    pub listen: String,
    /// A frame whose payload is larger than this ends the call as a protocol error.
    pub max_message_bytes: usize,
    /// Audio frames buffered while waiting for the UUID.
    pub max_early_media_frames: usize,
    /// A connection that sends no UUID within this long is dropped.
    pub uuid_timeout_ms: u64,
    /// Outbound 20 ms frames voxhook holds while it paces them out (the speaker sends up to
    /// `audio.playback_lead_ms` ahead); beyond this the oldest are dropped (logged).
    pub max_held_frames: usize,
}

impl Default for AudioSocketConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:9092".into(),
            max_message_bytes: 8 * 1024,
            max_early_media_frames: 50,
            uuid_timeout_ms: 5_000,
            max_held_frames: 500,
        }
    }
}

/// Validated `[telephony.audiosocket]`.
#[derive(Debug, Clone)]
pub struct AudioSocketSettings {
    /// Listener on.
    pub enabled: bool,
    /// Address listened on.
    pub listen: SocketAddr,
    /// Payload size limit.
    pub max_message_bytes: usize,
    /// Early media buffer bound.
    pub max_early_media_frames: usize,
    /// How long a connection may go without its UUID.
    pub uuid_timeout: Duration,
    /// Frames held for pacing, at most.
    pub max_held_frames: usize,
}

impl Component for AudioSocketSettings {
    type Raw = AudioSocketConfig;

    fn validate(c: AudioSocketConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        let listen = c.listen.parse().unwrap_or_else(|_| {
            errs.push(
                &ctx.key("listen"),
                format!("`{}` is not an address like 127.0.0.1:9092", c.listen),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        });
        errs.check(
            (320..=MAX_PAYLOAD_BYTES).contains(&c.max_message_bytes),
            &ctx.key("max_message_bytes"),
            "must be from 320 (one 20 ms frame) to 65535",
        );
        errs.check(
            (100..=60_000).contains(&c.uuid_timeout_ms),
            &ctx.key("uuid_timeout_ms"),
            "must be from 100 to 60000",
        );
        errs.check(
            c.max_held_frames >= 10,
            &ctx.key("max_held_frames"),
            "must be at least 10",
        );
        AudioSocketSettings {
            enabled: c.enabled,
            listen,
            max_message_bytes: c.max_message_bytes,
            max_early_media_frames: c.max_early_media_frames,
            uuid_timeout: Duration::from_millis(c.uuid_timeout_ms),
            max_held_frames: c.max_held_frames,
        }
    }
}

impl ProviderBackend for AudioSocketSettings {
    fn enabled(&self) -> bool {
        self.enabled
    }

    fn build(
        &self,
        _public_url: Option<&str>,
    ) -> Result<Arc<dyn crate::telephony::Provider>, ControlError> {
        Ok(Arc::new(super::AudioSocket {
            settings: self.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::ProviderSettings;

    fn parse(toml: &str) -> Result<AudioSocketSettings, Vec<String>> {
        crate::telephony::parse_section("audiosocket", toml).map(|s| match s {
            ProviderSettings::AudioSocket(p) => p,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn defaults_are_off_on_loopback_and_problems_carry_their_keys() {
        let s = parse("").unwrap();
        assert!(!s.enabled);
        assert_eq!(s.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(s.uuid_timeout, Duration::from_secs(5));
        let s = parse("enabled = true\nlisten = \"0.0.0.0:9019\"").unwrap();
        assert!(s.enabled && s.listen.port() == 9019);
        let errs = parse(
            "listen = \"voxhook:9092\"\nmax_message_bytes = 100000\n\
             uuid_timeout_ms = 5\nmax_held_frames = 1",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "telephony.audiosocket.listen",
                "telephony.audiosocket.max_message_bytes",
                "telephony.audiosocket.uuid_timeout_ms",
                "telephony.audiosocket.max_held_frames",
            ]
        );
    }
}
