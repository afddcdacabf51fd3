//! SignalWire (Compatibility API, cXML `<Connect><Stream>`): the Twilio Media Streams wire
//! (`connected`, `start`, `media`, `dtmf`, `mark`, `stop` in; `media`, `mark`, `clear` out),
//! decoded and encoded by the Twilio codec. What differs is configuration and three details:
//! the stream's codec may be `L16@16000h` or `L16@24000h` besides PCMU 8 kHz (named in
//! `start.mediaFormat`, the same both ways), the signature header is `X-SignalWire-Signature`
//! (signed with the Signing Key), and call control goes to the space's LaML REST API.

pub mod config;

use std::sync::Arc;

use axum::http::HeaderMap;

use super::control::CallControl;
use super::twilio::{self, signature, TwilioOptions};
use super::{Codec, LinkLimits, Provider, Refusal};

/// The upgrade header carrying the request signature.
pub const SIGNATURE_HEADER: &str = "x-signalwire-signature";
/// The Twilio-compatible alias SignalWire also sends on cXML requests.
pub const LEGACY_SIGNATURE_HEADER: &str = "x-twilio-signature";
/// Rates of the L16 codecs a `<Stream codec>` can ask for.
pub const L16_RATES: &[u32] = &[16_000, 24_000];

/// The SignalWire provider: `/signalwire` (configurable), the request signature checked when
/// configured, LaML REST hang-up and transfer when a project is configured.
pub struct SignalWire {
    settings: config::SignalWireSettings,
    public_url: Option<String>,
    control: Option<Arc<dyn CallControl>>,
}

impl Provider for SignalWire {
    fn name(&self) -> &'static str {
        "signalwire"
    }

    fn route(&self) -> &str {
        &self.settings.stream.route
    }

    fn limits(&self) -> LinkLimits {
        LinkLimits {
            max_message_bytes: self.settings.stream.max_message_bytes,
            max_early_events: self.settings.stream.max_early_media_frames,
        }
    }

    fn authenticate(&self, headers: &HeaderMap, path_and_query: &str) -> Result<(), Refusal> {
        let key = self.settings.stream.signature_token.as_ref();
        signature::check_upgrade(
            "signalwire",
            key.map(|k| k.expose()),
            self.public_url.as_deref(),
            &[SIGNATURE_HEADER, LEGACY_SIGNATURE_HEADER],
            headers,
            path_and_query,
        )
    }

    fn codec(&self) -> Codec {
        codec(&self.settings)
    }

    fn control(&self) -> Option<Arc<dyn CallControl>> {
        self.control.clone()
    }
}

/// A new connection's codec: Twilio's, taking SignalWire's L16 rates too.
pub fn codec(settings: &config::SignalWireSettings) -> Codec {
    twilio::codec(TwilioOptions {
        caller_parameter: settings.stream.caller_parameter.clone(),
        called_parameter: settings.stream.called_parameter.clone(),
        provider: "SignalWire",
        l16_rates: L16_RATES,
    })
}

#[cfg(test)]
mod tests;
