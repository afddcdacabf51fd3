//! jambonz `listen` verb streams (bidirectional streaming mode), route `/jambonz`. jambonz
//! connects with the subprotocol `audio.jambonz.org`; its first text frame carries the call's
//! webhook attributes (`callSid`, `from`, `to`, …), `sampleRate`, `mixType` and the verb's
//! `metadata` (the custom parameters); after it come binary frames of 16-bit little-endian
//! mono PCM at `sampleRate`. Keys arrive as `{"event":"dtmf","dtmf":"5"}` when the verb has
//! `passDtmf`. voxhook streams binary L16 back at `bidirectionalAudio.sampleRate`
//! (`bidirectional_sample_rate`, by default the inbound rate), sends `mark` and answers barge-in
//! with `killAudio`; jambonz returns each mark with `playout` or `cleared`. Audio before the
//! metadata frame is kept. jambonz has no call API voxhook uses: a bot hang-up closes the
//! socket, which ends the verb.

pub mod config;
mod wire;

use std::collections::VecDeque;
use std::sync::Arc;

use axum::http::HeaderMap;

use super::control::CallControl;
use super::plivo::media::{Encoding, StreamCodec};
use super::{
    CallStart, Codec, InboundEvent, LinkLimits, MediaDecoder, MediaEncoder, OutboundCommand,
    ProtocolError, Provider, Refusal, WireFrame,
};
use wire::{Incoming, Metadata, OutMark, Outgoing};

/// The subprotocol jambonz's docs require the server to accept (the SDK docs name the
/// drachtio one, which older feature servers send; both are accepted).
pub const SUBPROTOCOLS: [&str; 2] = ["audio.jambonz.org", "audio.drachtio.org"];

/// Little-endian L16 at `rate`.
fn l16(rate: u32) -> StreamCodec {
    StreamCodec {
        encoding: Encoding::L16 { big_endian: false },
        rate,
    }
}

/// The jambonz provider: `/jambonz` (configurable), Basic auth (`wsAuth`) checked when
/// configured, no call control.
pub struct Jambonz {
    settings: config::JambonzSettings,
}

impl Provider for Jambonz {
    fn name(&self) -> &'static str {
        "jambonz"
    }

    fn route(&self) -> &str {
        &self.settings.route
    }

    fn limits(&self) -> LinkLimits {
        LinkLimits {
            max_message_bytes: self.settings.max_message_bytes,
            max_early_events: self.settings.max_early_media_frames,
        }
    }

    fn authenticate(&self, headers: &HeaderMap, _path_and_query: &str) -> Result<(), Refusal> {
        match &self.settings.ws_auth {
            Some((user, password)) => super::check_basic_auth(headers, user, password, "jambonz"),
            None => Ok(()),
        }
    }

    fn codec(&self) -> Codec {
        Codec {
            decoder: Box::new(JambonzDecoder {
                rate: None,
                outbound_rate: self.settings.bidirectional_sample_rate,
                early: Vec::new(),
                max_early: self.settings.max_early_media_frames,
                pending: VecDeque::new(),
            }),
            encoder: Box::new(JambonzEncoder { rate: None }),
        }
    }

    fn control(&self) -> Option<Arc<dyn CallControl>> {
        None
    }

    fn subprotocols(&self) -> &'static [&'static str] {
        &SUBPROTOCOLS
    }
}

/// The reader half: metadata, then binary audio and JSON events.
pub struct JambonzDecoder {
    /// Inbound rate, once the metadata frame named it.
    rate: Option<u32>,
    /// Configured outbound rate (`None`: the inbound one).
    outbound_rate: Option<u32>,
    /// Audio frames that came before the metadata.
    early: Vec<Vec<u8>>,
    max_early: usize,
    pending: VecDeque<InboundEvent>,
}

impl JambonzDecoder {
    fn on_metadata(&mut self, text: &str) -> Result<(), ProtocolError> {
        let m: Metadata = serde_json::from_str(text)
            .map_err(|e| ProtocolError::Malformed(format!("metadata frame: {e}")))?;
        let rate = match &m.sample_rate {
            None => Some(8_000),
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
        }
        .filter(|r| config::RATES.contains(r))
        .ok_or_else(|| {
            ProtocolError::UnsupportedFormat(format!("sampleRate {:?}", m.sample_rate))
        })?;
        let mix = m.mix_type.as_deref().unwrap_or("mono");
        if mix != "mono" {
            // Stereo and mixed carry the other party too; the bot must hear only the caller.
            return Err(ProtocolError::UnsupportedFormat(format!(
                "mixType {mix} (voxhook takes mono)"
            )));
        }
        if m.call_sid.is_empty() {
            return Err(ProtocolError::Malformed("metadata without callSid".into()));
        }
        let custom = super::custom_parameters(m.metadata);
        let nonempty = |n: Option<String>| n.filter(|n| !n.is_empty());
        let outbound_rate = self.outbound_rate.unwrap_or(rate);
        tracing::info!(
            rate,
            outbound_rate,
            direction = m.direction.as_deref().unwrap_or(""),
            "jambonz listen stream started."
        );
        self.pending
            .push_back(InboundEvent::Start(Box::new(CallStart {
                stream_id: m.call_sid.clone(),
                call_id: m.call_sid,
                caller: nonempty(m.from),
                called: nonempty(m.to),
                custom,
                inbound_rate: rate,
                outbound_rate,
            })));
        for frame in std::mem::take(&mut self.early) {
            let mut pcm = Vec::with_capacity(frame.len() / 2);
            l16(rate).decode(&frame, &mut pcm)?;
            self.pending.push_back(InboundEvent::Audio(pcm));
        }
        self.rate = Some(rate);
        Ok(())
    }
}

impl MediaDecoder for JambonzDecoder {
    fn decode_text(
        &mut self,
        text: &str,
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        if self.rate.is_none() {
            self.on_metadata(text)?;
            return Ok(self.pending.pop_front());
        }
        let msg: Incoming =
            serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        match (msg.event.as_deref(), msg.kind.as_deref()) {
            (Some("dtmf"), _) => {
                let digit = msg.dtmf.unwrap_or_default();
                return Ok(Some(InboundEvent::Dtmf(super::dtmf_key(&digit)?)));
            }
            (_, Some("mark")) => {
                let data = msg
                    .data
                    .ok_or_else(|| ProtocolError::Malformed("mark without data".into()))?;
                // `cleared` marks count like Twilio's echoes on clear: the call knows what it
                // flushed, so either event just returns the mark.
                tracing::trace!(cleared = data.cleared(), "jambonz mark returned.");
                return Ok(Some(InboundEvent::Mark(data.name.into_owned())));
            }
            _ => super::log_unknown_event("jambonz", text),
        }
        Ok(None)
    }

    fn decode_binary(
        &mut self,
        data: &[u8],
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        let Some(rate) = self.rate else {
            if self.early.len() >= self.max_early {
                return Err(ProtocolError::NoStart(self.max_early));
            }
            self.early.push(data.to_vec());
            return Ok(None);
        };
        // The one allocation per frame: the PCM travels to the listener.
        let mut pcm = Vec::with_capacity(data.len() / 2);
        l16(rate).decode(data, &mut pcm)?;
        Ok(Some(InboundEvent::Audio(pcm)))
    }

    fn take_pending(&mut self) -> Option<InboundEvent> {
        self.pending.pop_front()
    }
}

/// The writer half: binary L16 frames, JSON commands.
pub struct JambonzEncoder {
    /// Outbound rate, once started.
    rate: Option<u32>,
}

impl MediaEncoder for JambonzEncoder {
    fn started(&mut self, start: &CallStart) {
        self.rate = Some(start.outbound_rate);
    }

    fn encode(&mut self, cmd: &OutboundCommand, out: &mut Vec<WireFrame>) {
        let Some(rate) = self.rate else {
            return;
        };
        let msg = match cmd {
            OutboundCommand::Audio(pcm) => {
                let mut bytes = Vec::with_capacity(pcm.len() * 2);
                l16(rate).encode(pcm, &mut bytes);
                out.push(WireFrame::Binary(bytes));
                return;
            }
            OutboundCommand::Mark(name) => Outgoing::Mark {
                data: OutMark { name },
            },
            OutboundCommand::Clear => Outgoing::KillAudio,
        };
        out.extend(serde_json::to_string(&msg).ok().map(WireFrame::Text));
    }
}

#[cfg(test)]
mod tests;
