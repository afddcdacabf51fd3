//! Plivo Audio Streams (`<Stream bidirectional="true">`): `start`, `media`, `dtmf`,
//! `playedStream`, `clearedAudio` in; `playAudio`, `checkpoint`, `clearAudio` out. There is no
//! `connected` and no reliable `stop`: the socket close ends the stream. The caller's and the
//! called number come from the `<Stream extraHeaders>` string in `start`; the inbound codec
//! from `start.mediaFormat`, the outbound one is the configured `contentType`. Media before
//! `start` is kept and decoded once `start` names the codec.
//!
//! Plivo is known to drop the `playedStream` of a call's very first checkpoint (bolna PR
//! #736). So the first checkpoint voxhook sends is a primer of its own, right before the
//! first real one: the dropped acknowledgement is the primer's, and the greeting's arrives.

pub mod config;
pub mod media;
pub mod rest;
mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::control::CallControl;
use super::{
    CallStart, Codec, InboundEvent, LinkLimits, MediaDecoder, MediaEncoder, OutboundCommand,
    ProtocolError, Provider, Refusal, WireFrame,
};
use media::StreamCodec;
use wire::{Incoming, Outgoing};

/// The query parameter of the stream URL that carries `stream_token`.
pub const TOKEN_PARAMETER: &str = "token";
/// The name of the checkpoint sent before the first real one, whose acknowledgement Plivo
/// may drop.
pub const PRIMER_CHECKPOINT: &str = "voxhook-primer";

/// The Plivo provider: `/plivo` (configurable), the shared stream token checked when
/// configured, REST hang-up and transfer when an Auth ID is configured.
pub struct Plivo {
    settings: config::PlivoSettings,
    control: Option<Arc<dyn CallControl>>,
}

impl Provider for Plivo {
    fn name(&self) -> &'static str {
        "plivo"
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
                super::check_query_token(path_and_query, TOKEN_PARAMETER, token, "plivo")
            }
            None => Ok(()),
        }
    }

    fn codec(&self) -> Codec {
        codec(&self.settings)
    }

    fn control(&self) -> Option<Arc<dyn CallControl>> {
        self.control.clone()
    }
}

/// A new connection's codec halves.
pub fn codec(s: &config::PlivoSettings) -> Codec {
    Codec {
        decoder: Box::new(PlivoDecoder {
            media: media::Inbound::new(s.max_early_media_frames),
            big_endian: s.l16_big_endian,
            outbound_rate: s.outbound.rate,
            caller_header: s.caller_header.clone(),
            called_header: s.called_header.clone(),
            pending: VecDeque::new(),
        }),
        encoder: Box::new(PlivoEncoder {
            stream_id_json: None,
            outbound: s.outbound,
            primed: false,
            bytes: Vec::with_capacity(640),
        }),
    }
}

/// `extraHeaders` as Plivo delivers them: `k=v` pairs separated by `,` or `;`.
pub fn parse_extra_headers(s: &str) -> BTreeMap<String, String> {
    s.split([',', ';'])
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The reader half: JSON in, events out.
pub struct PlivoDecoder {
    /// Inbound audio (held until `start` names its codec).
    media: media::Inbound,
    big_endian: bool,
    outbound_rate: u32,
    caller_header: String,
    called_header: String,
    /// Events released, in order, for `take_pending`.
    pending: VecDeque<InboundEvent>,
}

impl PlivoDecoder {
    fn on_start(
        &mut self,
        start: wire::StartBody,
        extra_headers: Option<String>,
        top_stream_id: Option<String>,
    ) -> Result<(), ProtocolError> {
        let inbound = match &start.media_format {
            None => StreamCodec {
                rate: 8_000,
                encoding: media::Encoding::L16 {
                    big_endian: self.big_endian,
                },
            },
            Some(f) => {
                StreamCodec::new(&f.encoding, f.sample_rate, self.big_endian).ok_or_else(|| {
                    ProtocolError::UnsupportedFormat(format!(
                        "{} {} Hz (voxhook takes audio/x-l16 8/16 kHz, audio/x-mulaw 8 kHz)",
                        f.encoding, f.sample_rate
                    ))
                })?
            }
        };
        let stream_id = start
            .stream_id
            .or(top_stream_id)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ProtocolError::Malformed("start without streamId".into()))?;
        let custom = extra_headers
            .as_deref()
            .map(parse_extra_headers)
            .unwrap_or_default();
        let header = |k: &str| custom.get(k).filter(|v| !v.is_empty()).cloned();
        tracing::info!(
            inbound_codec = inbound.content_type(),
            inbound_rate = inbound.rate,
            "Plivo stream started."
        );
        self.pending
            .push_back(InboundEvent::Start(Box::new(CallStart {
                call_id: start.call_id,
                stream_id,
                caller: header(&self.caller_header),
                called: header(&self.called_header),
                custom,
                inbound_rate: inbound.rate,
                outbound_rate: self.outbound_rate,
            })));
        self.media.start(inbound, &mut self.pending)
    }
}

impl MediaDecoder for PlivoDecoder {
    fn decode_text(
        &mut self,
        text: &str,
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        let msg: Incoming =
            serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        match msg {
            Incoming::Start {
                start,
                extra_headers,
                stream_id,
            } => self.on_start(start, extra_headers, stream_id)?,
            Incoming::Media { media } => {
                if media.track.as_deref().is_none_or(|t| t == "inbound") {
                    self.media.payload(&media.payload, &mut self.pending)?;
                }
            }
            Incoming::Dtmf { dtmf } => self
                .pending
                .push_back(InboundEvent::Dtmf(super::dtmf_key(&dtmf.digit)?)),
            Incoming::PlayedStream { name } if name == PRIMER_CHECKPOINT => {
                tracing::debug!("Plivo acknowledged the primer checkpoint.");
            }
            Incoming::PlayedStream { name } => self
                .pending
                .push_back(InboundEvent::Mark(name.into_owned())),
            // The actor dropped its queued marks when it sent the clear.
            Incoming::ClearedAudio {} => tracing::debug!("Plivo cleared its playback queue."),
            Incoming::Stop {} => self.pending.push_back(InboundEvent::Stop),
            Incoming::Unknown => {
                super::log_unknown_event("Plivo", text);
            }
        }
        Ok(self.pending.pop_front())
    }

    fn take_pending(&mut self) -> Option<InboundEvent> {
        self.pending.pop_front()
    }
}

/// The writer half: commands in, JSON out.
pub struct PlivoEncoder {
    /// The stream id and the same as a JSON string, once started.
    stream_id_json: Option<(String, String)>,
    outbound: StreamCodec,
    /// The primer checkpoint has been sent.
    primed: bool,
    /// Reused for each frame's encoded bytes.
    bytes: Vec<u8>,
}

impl PlivoEncoder {
    fn checkpoint(stream_id: &str, name: &str) -> Option<WireFrame> {
        serde_json::to_string(&Outgoing::Checkpoint { stream_id, name })
            .ok()
            .map(WireFrame::Text)
    }
}

impl MediaEncoder for PlivoEncoder {
    fn started(&mut self, start: &CallStart) {
        self.stream_id_json = serde_json::to_string(&start.stream_id)
            .ok()
            .map(|json| (start.stream_id.clone(), json));
    }

    fn encode(&mut self, cmd: &OutboundCommand, out: &mut Vec<WireFrame>) {
        let Some((stream_id, sid_json)) = &self.stream_id_json else {
            return;
        };
        match cmd {
            OutboundCommand::Audio(pcm) => {
                self.bytes.clear();
                self.outbound.encode(pcm, &mut self.bytes);
                let mut text =
                    String::with_capacity(120 + sid_json.len() + self.bytes.len() * 4 / 3);
                wire::write_play_audio(
                    &mut text,
                    sid_json,
                    self.outbound.content_type(),
                    self.outbound.rate,
                    |t| B64.encode_string(&self.bytes, t),
                );
                out.push(WireFrame::Text(text));
            }
            OutboundCommand::Mark(name) => {
                if !std::mem::replace(&mut self.primed, true) {
                    out.extend(Self::checkpoint(stream_id, PRIMER_CHECKPOINT));
                }
                out.extend(Self::checkpoint(stream_id, name));
            }
            OutboundCommand::Clear => out.extend(
                serde_json::to_string(&Outgoing::ClearAudio { stream_id })
                    .ok()
                    .map(WireFrame::Text),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
