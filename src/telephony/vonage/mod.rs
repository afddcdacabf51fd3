//! Vonage Voice API WebSocket (the NCCO `connect` action with a `websocket` endpoint):
//! `websocket:connected` (the `content-type` and every NCCO endpoint header flattened in),
//! binary audio, `websocket:dtmf`, `websocket:cleared`, `websocket:notify` in; binary audio,
//! `{"action":"notify"}` and `{"action":"clear"}` out. Audio is 16-bit little-endian PCM at
//! the `content-type` rate (8000, 16000 or 24000), the same both ways, in 20 ms frames:
//! the encoder only sends whole frames and pads the last one before a mark with silence.
//!
//! Vonage sends no call identity of its own on the socket: the call UUID and numbers come
//! from the endpoint `headers` the answer webhook put in the NCCO (keys configurable).
//! A `notify` is a mark: Vonage echoes its payload once the audio queued before it has
//! played. Vonage buffers at most 1024 messages (the old guide; 3072 in the current
//! tutorial); voxhook's pacer keeps at most `audio.playback_lead_ms` (≤ 5 s = 250 frames)
//! queued, well under it. Call control is the Voice API (`rest.rs`).

pub mod config;
pub mod rest;
mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use axum::http::HeaderMap;

use super::control::CallControl;
use super::plivo::media::{Encoding, Inbound, StreamCodec};
use super::{
    CallStart, Codec, InboundEvent, LinkLimits, MediaDecoder, MediaEncoder, OutboundCommand,
    ProtocolError, Provider, Refusal, WireFrame,
};
use wire::{Incoming, MarkPayload, Outgoing};

/// The query parameter of the endpoint `uri` that carries `stream_token`.
pub const TOKEN_PARAMETER: &str = "token";
/// Messages Vonage buffers for playback (its older guide; the current tutorial says 3072).
pub const PLAYBACK_BUFFER_MESSAGES: usize = 1024;
/// The rates Vonage streams (`audio/l16;rate=…`).
pub const RATES: [u32; 3] = [8_000, 16_000, 24_000];

/// PCM16 little-endian at `rate`.
fn l16(rate: u32) -> StreamCodec {
    StreamCodec {
        encoding: Encoding::L16 { big_endian: false },
        rate,
    }
}

/// The rate of a `content-type` Vonage streams: `audio/l16;rate=16000`.
pub fn content_type_rate(value: &str) -> Option<u32> {
    let mut parts = value.split(';');
    if !parts.next()?.trim().eq_ignore_ascii_case("audio/l16") {
        return None;
    }
    let rate = parts
        .find_map(|p| p.trim().strip_prefix("rate="))?
        .trim()
        .parse()
        .ok()?;
    RATES.contains(&rate).then_some(rate)
}

/// The Vonage provider: `/vonage` (configurable), the shared stream token checked when
/// configured, Voice API hang-up and transfer when an application is configured.
pub struct Vonage {
    settings: config::VonageSettings,
    control: Option<Arc<dyn CallControl>>,
}

impl Provider for Vonage {
    fn name(&self) -> &'static str {
        "vonage"
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

    fn authenticate(&self, _headers: &HeaderMap, path_and_query: &str) -> Result<(), Refusal> {
        match &self.settings.stream_token {
            Some(token) => {
                super::check_query_token(path_and_query, TOKEN_PARAMETER, token, "vonage")
            }
            None => Ok(()),
        }
    }

    fn codec(&self) -> Codec {
        let s = &self.settings;
        Codec {
            decoder: Box::new(VonageDecoder {
                media: Inbound::new(s.max_early_media_frames),
                call_id_header: s.call_id_header.clone(),
                caller_header: s.caller_header.clone(),
                called_header: s.called_header.clone(),
                started: false,
                pending: VecDeque::new(),
            }),
            encoder: Box::new(VonageEncoder {
                frame_bytes: None,
                bytes: Vec::with_capacity(960),
            }),
        }
    }

    fn control(&self) -> Option<Arc<dyn CallControl>> {
        self.control.clone()
    }
}

/// The reader half: JSON events and binary audio in, events out.
pub struct VonageDecoder {
    /// Inbound audio (held until `websocket:connected` names its rate).
    media: Inbound,
    call_id_header: String,
    caller_header: String,
    called_header: String,
    started: bool,
    pending: VecDeque<InboundEvent>,
}

impl VonageDecoder {
    fn on_connected(
        &mut self,
        content_type: &str,
        headers: BTreeMap<String, serde_json::Value>,
    ) -> Result<(), ProtocolError> {
        if self.started {
            return Err(ProtocolError::Malformed(
                "a second websocket:connected".into(),
            ));
        }
        let rate = content_type_rate(content_type).ok_or_else(|| {
            ProtocolError::UnsupportedFormat(format!(
                "{content_type} (voxhook takes audio/l16 at 8000, 16000 or 24000 Hz)"
            ))
        })?;
        let custom: BTreeMap<String, String> = headers
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect();
        let header = |key: &str| custom.get(key).filter(|v| !v.is_empty()).cloned();
        let call_id = header(&self.call_id_header).ok_or_else(|| {
            ProtocolError::Malformed(format!(
                "websocket:connected without the `{}` header (put the call uuid in the NCCO \
                 endpoint headers)",
                self.call_id_header
            ))
        })?;
        tracing::info!(rate, "Vonage WebSocket connected.");
        self.started = true;
        self.pending
            .push_back(InboundEvent::Start(Box::new(CallStart {
                stream_id: call_id.clone(),
                call_id,
                caller: header(&self.caller_header),
                called: header(&self.called_header),
                custom,
                inbound_rate: rate,
                outbound_rate: rate,
            })));
        self.media.start(l16(rate), &mut self.pending)
    }
}

impl MediaDecoder for VonageDecoder {
    fn decode_text(
        &mut self,
        text: &str,
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        let msg: Incoming =
            serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        match msg {
            Incoming::Connected {
                content_type,
                headers,
            } => self.on_connected(&content_type, headers)?,
            Incoming::Dtmf { digit, dtmf } => {
                let digit = digit.or(dtmf.map(|d| d.digit)).ok_or_else(|| {
                    ProtocolError::Malformed("websocket:dtmf without digit".into())
                })?;
                self.pending
                    .push_back(InboundEvent::Dtmf(super::dtmf_key(&digit)?));
            }
            // The actor dropped its queued marks when it sent the clear.
            Incoming::Cleared {} => tracing::debug!("Vonage cleared its playback buffer."),
            Incoming::Notify { payload } => match payload.and_then(|p| p.mark) {
                Some(mark) => self.pending.push_back(InboundEvent::Mark(mark)),
                None => super::log_unknown_event("Vonage", text),
            },
            Incoming::Unknown => super::log_unknown_event("Vonage", text),
        }
        Ok(self.pending.pop_front())
    }

    fn decode_binary(
        &mut self,
        data: &[u8],
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        self.media.raw(data, &mut self.pending)?;
        Ok(self.pending.pop_front())
    }

    fn take_pending(&mut self) -> Option<InboundEvent> {
        self.pending.pop_front()
    }
}

/// The writer half: commands in, binary 20 ms frames and JSON actions out.
pub struct VonageEncoder {
    /// Bytes in one 20 ms frame (`None` before `websocket:connected`).
    frame_bytes: Option<usize>,
    /// Audio not sent yet (less than one frame).
    bytes: Vec<u8>,
}

impl VonageEncoder {
    /// Sends every whole frame held.
    fn send_frames(&mut self, frame: usize, out: &mut Vec<WireFrame>) {
        let whole = self.bytes.len() / frame * frame;
        out.extend(
            self.bytes[..whole]
                .chunks_exact(frame)
                .map(|f| WireFrame::Binary(f.to_vec())),
        );
        self.bytes.drain(..whole);
    }

    fn action(out: &mut Vec<WireFrame>, action: &Outgoing<'_>) {
        out.extend(serde_json::to_string(action).ok().map(WireFrame::Text));
    }
}

impl MediaEncoder for VonageEncoder {
    fn started(&mut self, start: &CallStart) {
        self.frame_bytes = Some(l16(start.outbound_rate).frame_bytes());
    }

    fn encode(&mut self, cmd: &OutboundCommand, out: &mut Vec<WireFrame>) {
        let Some(frame) = self.frame_bytes else {
            return;
        };
        match cmd {
            OutboundCommand::Audio(pcm) => {
                self.bytes.extend(pcm.iter().flat_map(|s| s.to_le_bytes()));
                self.send_frames(frame, out);
            }
            OutboundCommand::Mark(name) => {
                // Vonage takes whole 20 ms frames only: the tail is padded with silence so
                // the mark follows all of the audio before it.
                if !self.bytes.is_empty() {
                    self.bytes.resize(frame, 0);
                    self.send_frames(frame, out);
                }
                Self::action(
                    out,
                    &Outgoing::Notify {
                        payload: MarkPayload { mark: name },
                    },
                );
            }
            OutboundCommand::Clear => {
                self.bytes.clear();
                Self::action(out, &Outgoing::Clear);
            }
        }
    }
}

#[cfg(test)]
mod tests;
