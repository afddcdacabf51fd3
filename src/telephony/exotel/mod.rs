//! Exotel Voicebot applet streams (bidirectional): `connected`, `start`, `media`, `dtmf`,
//! `mark`, `stop` in; `media`, `mark`, `clear` out. Audio is raw PCM16 little-endian mono
//! (`audio/x-raw`) at the rate of `start.media_format.sample_rate` (8000 by default; 16000 or
//! 24000 with the applet URL's `?sample-rate=`), the same both ways. Exotel wants outbound
//! payloads of at least 3.2 KB ("100 ms"), at most 100 KB, in multiples of 320 bytes: the
//! encoder sends chunks of whole 20 ms frames of at least 3.2 KB and 100 ms (200 ms at 8 kHz),
//! and what is left before a mark. The caller's and called number
//! come from `start.from`/`start.to`. Media before `start` is kept. Exotel's API cannot end
//! or redirect a Voicebot leg mid-stream, so a bot hang-up closes the stream.

pub mod config;
mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::control::CallControl;
use super::plivo::media::{Encoding, Inbound, StreamCodec};
use super::{
    CallStart, Codec, InboundEvent, LinkLimits, MediaDecoder, MediaEncoder, OutboundCommand,
    ProtocolError, Provider, Refusal, WireFrame,
};
use wire::{Incoming, MarkBody, Outgoing};

/// Exotel's smallest outbound chunk in bytes ("3.2 KB (100ms of data)": 100 ms at 16 kHz,
/// 200 ms at 8 kHz).
pub const MIN_CHUNK_BYTES: usize = 3_200;

/// Bytes in one outbound `media` message at `rate`: whole 20 ms frames, at least 100 ms and
/// at least [`MIN_CHUNK_BYTES`].
pub fn chunk_bytes(rate: u32) -> usize {
    let frame = pcm16(rate).frame_bytes().max(1);
    (frame * 5).max(MIN_CHUNK_BYTES.div_ceil(frame) * frame)
}

/// PCM16 little-endian at `rate`.
fn pcm16(rate: u32) -> StreamCodec {
    StreamCodec {
        encoding: Encoding::L16 { big_endian: false },
        rate,
    }
}

/// The Exotel provider: `/exotel` (configurable), Basic auth checked when configured, no
/// call control.
pub struct Exotel {
    settings: config::ExotelSettings,
}

impl Provider for Exotel {
    fn name(&self) -> &'static str {
        "exotel"
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
        let Some((user, password)) = &self.settings.basic_auth else {
            return Ok(());
        };
        super::check_basic_auth(headers, user, password, "exotel")
    }

    fn codec(&self) -> Codec {
        Codec {
            decoder: Box::new(ExotelDecoder {
                media: Inbound::new(self.settings.max_early_media_frames),
                pending: VecDeque::new(),
            }),
            encoder: Box::new(ExotelEncoder {
                stream_sid_json: None,
                codec: pcm16(8_000),
                bytes: Vec::with_capacity(chunk_bytes(24_000)),
            }),
        }
    }

    fn control(&self) -> Option<Arc<dyn CallControl>> {
        None
    }
}

/// The reader half: JSON in, events out.
pub struct ExotelDecoder {
    /// Inbound audio (held until `start` names its rate).
    media: Inbound,
    pending: VecDeque<InboundEvent>,
}

impl ExotelDecoder {
    fn on_start(
        &mut self,
        stream_sid: Option<String>,
        start: wire::StartBody,
    ) -> Result<(), ProtocolError> {
        let f = &start.media_format;
        let rate = match &f.sample_rate {
            serde_json::Value::String(s) => s.trim().parse().ok(),
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            _ => None,
        };
        let raw = f.encoding.eq_ignore_ascii_case("audio/x-raw");
        let rate = rate
            .filter(|r| raw && [8_000, 16_000, 24_000].contains(r))
            .ok_or_else(|| {
                ProtocolError::UnsupportedFormat(format!(
                    "{} {} (voxhook takes audio/x-raw at 8000, 16000 or 24000 Hz)",
                    f.encoding, f.sample_rate
                ))
            })?;
        let stream_id = stream_sid
            .or(start.stream_sid)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ProtocolError::Malformed("start without stream_sid".into()))?;
        let custom: BTreeMap<String, String> = start
            .custom_parameters
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect();
        let nonempty = |n: Option<String>| n.filter(|n| !n.is_empty());
        tracing::info!(rate, "Exotel stream started.");
        self.pending
            .push_back(InboundEvent::Start(Box::new(CallStart {
                call_id: start.call_sid,
                stream_id,
                caller: nonempty(start.from),
                called: nonempty(start.to),
                custom,
                inbound_rate: rate,
                outbound_rate: rate,
            })));
        self.media.start(pcm16(rate), &mut self.pending)
    }
}

impl MediaDecoder for ExotelDecoder {
    fn decode_text(
        &mut self,
        text: &str,
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        let msg: Incoming =
            serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        match msg {
            Incoming::Connected {} => {}
            Incoming::Start { stream_sid, start } => self.on_start(stream_sid, start)?,
            Incoming::Media { media } => self.media.payload(&media.payload, &mut self.pending)?,
            Incoming::Dtmf { dtmf } => self
                .pending
                .push_back(InboundEvent::Dtmf(super::dtmf_key(&dtmf.digit)?)),
            Incoming::Mark { mark } => self
                .pending
                .push_back(InboundEvent::Mark(mark.name.into_owned())),
            Incoming::Stop { stop } => {
                let reason = stop.and_then(|s| s.reason).unwrap_or_default();
                tracing::info!(reason = %reason, "Exotel stream stopped.");
                self.pending.push_back(InboundEvent::Stop);
            }
            Incoming::Unknown => {
                super::log_unknown_event("Exotel", text);
            }
        }
        Ok(self.pending.pop_front())
    }

    fn take_pending(&mut self) -> Option<InboundEvent> {
        self.pending.pop_front()
    }
}

/// The writer half: commands in, JSON out.
pub struct ExotelEncoder {
    stream_sid_json: Option<(String, String)>,
    codec: StreamCodec,
    /// Audio not sent yet (less than one chunk).
    bytes: Vec<u8>,
}

impl ExotelEncoder {
    /// Sends the audio held, if any.
    fn flush(&mut self, out: &mut Vec<WireFrame>) {
        let Some((_, sid_json)) = &self.stream_sid_json else {
            return;
        };
        if self.bytes.is_empty() {
            return;
        }
        let mut text = String::with_capacity(64 + sid_json.len() + self.bytes.len() * 4 / 3);
        wire::write_media(&mut text, sid_json, |t| B64.encode_string(&self.bytes, t));
        self.bytes.clear();
        out.push(WireFrame::Text(text));
    }
}

impl MediaEncoder for ExotelEncoder {
    fn started(&mut self, start: &CallStart) {
        self.stream_sid_json = serde_json::to_string(&start.stream_id)
            .ok()
            .map(|json| (start.stream_id.clone(), json));
        self.codec = pcm16(start.outbound_rate);
    }

    fn encode(&mut self, cmd: &OutboundCommand, out: &mut Vec<WireFrame>) {
        if self.stream_sid_json.is_none() {
            return;
        }
        match cmd {
            OutboundCommand::Audio(pcm) => {
                self.codec.encode(pcm, &mut self.bytes);
                if self.bytes.len() >= chunk_bytes(self.codec.rate) {
                    self.flush(out);
                }
            }
            OutboundCommand::Mark(name) => {
                // The mark follows the audio before it, so that audio goes first.
                self.flush(out);
                let Some((stream_sid, _)) = &self.stream_sid_json else {
                    return;
                };
                out.extend(
                    serde_json::to_string(&Outgoing::Mark {
                        stream_sid,
                        mark: MarkBody { name },
                    })
                    .ok()
                    .map(WireFrame::Text),
                );
            }
            OutboundCommand::Clear => {
                self.bytes.clear();
                let Some((stream_sid, _)) = &self.stream_sid_json else {
                    return;
                };
                out.extend(
                    serde_json::to_string(&Outgoing::Clear { stream_sid })
                        .ok()
                        .map(WireFrame::Text),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
