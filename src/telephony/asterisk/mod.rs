//! Asterisk chan_websocket (`Dial(WebSocket/<connection>/c(<codec>)f(json))`, or ARI external
//! media with `transport=websocket`), voxhook being the WebSocket server Asterisk dials with
//! subprotocol `media`. Text frames carry control (`MEDIA_START`, `DTMF_END`, `MEDIA_XOFF`,
//! `MEDIA_XON`, `MEDIA_MARK_PROCESSED` in; `MARK_MEDIA`, `FLUSH_MEDIA` out) in the configured
//! format (`wire.rs`); binary frames carry raw media in the channel's format both ways
//! (`ulaw`, `alaw`, `slin` and `slin12`…`slin48`, 16-bit little-endian), no headers.
//!
//! Asterisk re-frames what it gets into `optimal_frame_size` pieces and drops a remainder, so
//! the encoder only sends whole frames and pads the last one before a mark with silence. Its
//! frame queue holds about 1000 frames: at 900 it says `MEDIA_XOFF` and drops what comes
//! after, so the encoder then holds audio and marks (in order, at most `max_held_frames`) and
//! sends them on `MEDIA_XON`; `FLUSH_MEDIA` goes out at once. Closing the socket hangs the
//! channel up (Asterisk treats the close as `HANGUP`). The call id is the channel's unique id
//! (the connection id on releases whose plain text lacks it); numbers come from channel
//! variables, which only the JSON format carries.

pub mod config;
mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};

use axum::http::HeaderMap;

use super::control::CallControl;
use super::{
    CallStart, Codec, Flow, InboundEvent, LinkLimits, MediaDecoder, MediaEncoder, OutboundCommand,
    ProtocolError, Provider, Refusal, WireFrame,
};
use crate::audio::codec::Codec as G711;
pub use wire::ControlFormat;
use wire::{Event, MediaStart};

/// The WebSocket subprotocol chan_websocket asks for.
pub const SUBPROTOCOL: &str = "media";
/// Asterisk's largest WebSocket message (bigger ones hang the call up).
pub const MAX_ASTERISK_MESSAGE: usize = 65_500;

/// A channel media format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFormat {
    /// G.711 μ-law or A-law at 8 kHz.
    G711(G711),
    /// Signed linear 16-bit little-endian at a rate.
    Slin(u32),
}

impl MediaFormat {
    /// From an Asterisk format name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "ulaw" => MediaFormat::G711(G711::Mulaw),
            "alaw" => MediaFormat::G711(G711::Alaw),
            "slin" => MediaFormat::Slin(8_000),
            "slin12" => MediaFormat::Slin(12_000),
            "slin16" => MediaFormat::Slin(16_000),
            "slin24" => MediaFormat::Slin(24_000),
            "slin32" => MediaFormat::Slin(32_000),
            "slin44" => MediaFormat::Slin(44_100),
            "slin48" => MediaFormat::Slin(48_000),
            _ => return None,
        })
    }

    /// Hz.
    pub fn rate(self) -> u32 {
        match self {
            MediaFormat::G711(_) => 8_000,
            MediaFormat::Slin(r) => r,
        }
    }

    /// Bytes per sample.
    pub fn sample_bytes(self) -> usize {
        match self {
            MediaFormat::G711(_) => 1,
            MediaFormat::Slin(_) => 2,
        }
    }

    /// Decodes `bytes`, appending PCM to `out`.
    pub fn decode(self, bytes: &[u8], out: &mut Vec<i16>) -> Result<(), ProtocolError> {
        match self {
            MediaFormat::G711(c) => c.decode_into(bytes, out),
            MediaFormat::Slin(_) => {
                if !bytes.len().is_multiple_of(2) {
                    return Err(ProtocolError::Malformed(format!(
                        "slin frame of odd length {}",
                        bytes.len()
                    )));
                }
                out.extend(
                    bytes
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]])),
                );
            }
        }
        Ok(())
    }

    /// Encodes `pcm`, appending bytes to `out`.
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        match self {
            MediaFormat::G711(c) => c.encode_into(pcm, out),
            MediaFormat::Slin(_) => out.extend(pcm.iter().flat_map(|s| s.to_le_bytes())),
        }
    }
}

/// The Asterisk provider: `/asterisk` (configurable), Basic auth checked when configured, no
/// call control beyond closing the socket.
pub struct Asterisk {
    settings: config::AsteriskSettings,
}

impl Provider for Asterisk {
    fn name(&self) -> &'static str {
        "asterisk"
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
        match &self.settings.basic_auth {
            Some((user, password)) => super::check_basic_auth(headers, user, password, "asterisk"),
            None => Ok(()),
        }
    }

    fn codec(&self) -> Codec {
        let s = &self.settings;
        let media = Arc::new(OnceLock::new());
        Codec {
            decoder: Box::new(AsteriskDecoder {
                control: s.control_format,
                caller_variable: s.caller_variable.clone(),
                called_variable: s.called_variable.clone(),
                format: None,
                media: media.clone(),
                early: Vec::new(),
                max_early: s.max_early_media_frames,
                flow: None,
                pending: VecDeque::new(),
            }),
            encoder: Box::new(AsteriskEncoder {
                control: s.control_format,
                started: media,
                media: None,
                pcm: Vec::with_capacity(960),
                paused: false,
                held: VecDeque::new(),
                held_frames: 0,
                max_held_frames: s.max_held_frames,
                dropped: 0,
            }),
        }
    }

    fn control(&self) -> Option<Arc<dyn CallControl>> {
        None
    }

    fn subprotocols(&self) -> &'static [&'static str] {
        &[SUBPROTOCOL]
    }
}

/// The reader half: control text and binary media in, events out.
pub struct AsteriskDecoder {
    control: ControlFormat,
    caller_variable: String,
    called_variable: String,
    /// The channel's format, once `MEDIA_START` named it.
    format: Option<MediaFormat>,
    /// The format and samples per frame, for the encoder (set once, before the start event
    /// that makes the writer read it; `CallStart` has no place for them).
    media: Arc<OnceLock<(MediaFormat, usize)>>,
    /// Media that came before `MEDIA_START` (Asterisk under load, asterisk#1712).
    early: Vec<Vec<u8>>,
    max_early: usize,
    flow: Option<Flow>,
    pending: VecDeque<InboundEvent>,
}

impl AsteriskDecoder {
    fn on_media_start(&mut self, m: MediaStart) -> Result<(), ProtocolError> {
        if self.format.is_some() {
            return Err(ProtocolError::Malformed("a second MEDIA_START".into()));
        }
        let format = MediaFormat::from_name(&m.format).ok_or_else(|| {
            ProtocolError::UnsupportedFormat(format!(
                "{} (voxhook takes ulaw, alaw and slin; dial with c(ulaw) or c(slin16))",
                m.format
            ))
        })?;
        let frame = m.optimal_frame_size;
        if frame == 0
            || frame > MAX_ASTERISK_MESSAGE
            || !frame.is_multiple_of(format.sample_bytes())
        {
            return Err(ProtocolError::UnsupportedFormat(format!(
                "optimal_frame_size {frame} for {}",
                m.format
            )));
        }
        // Inherited variables (`__NAME`) may keep their underscores.
        let custom: BTreeMap<String, String> = m
            .channel_variables
            .into_iter()
            .map(|(k, v)| {
                let k = k.trim_start_matches('_').to_string();
                match v {
                    serde_json::Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                }
            })
            .collect();
        let var = |name: &str| custom.get(name).filter(|v| !v.is_empty()).cloned();
        let call_id = m
            .channel_id
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| m.connection_id.clone());
        if call_id.is_empty() {
            return Err(ProtocolError::Malformed(
                "MEDIA_START without channel_id or connection_id".into(),
            ));
        }
        tracing::info!(
            format = %m.format, optimal_frame_size = frame, channel = %m.channel,
            "Asterisk media started."
        );
        let rate = format.rate();
        let _ = self.media.set((format, frame / format.sample_bytes()));
        self.pending
            .push_back(InboundEvent::Start(Box::new(CallStart {
                call_id,
                stream_id: m.connection_id.clone(),
                caller: var(&self.caller_variable),
                called: var(&self.called_variable),
                custom,
                inbound_rate: rate,
                outbound_rate: rate,
            })));
        for bytes in std::mem::take(&mut self.early) {
            let mut pcm = Vec::with_capacity(bytes.len());
            format.decode(&bytes, &mut pcm)?;
            self.pending.push_back(InboundEvent::Audio(pcm));
        }
        self.format = Some(format);
        Ok(())
    }
}

impl MediaDecoder for AsteriskDecoder {
    fn decode_text(
        &mut self,
        text: &str,
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        let looks_json = text.trim_start().starts_with('{');
        if looks_json != (self.control == ControlFormat::Json) {
            return Err(ProtocolError::UnsupportedFormat(format!(
                "Asterisk sent {} control messages; set telephony.asterisk.control_format to \
                 match the dial string's f(…) or chan_websocket.conf",
                if looks_json { "JSON" } else { "plain-text" }
            )));
        }
        match wire::parse(self.control, text).map_err(ProtocolError::Malformed)? {
            Event::MediaStart(m) => self.on_media_start(*m)?,
            Event::DtmfEnd(digit) => self
                .pending
                .push_back(InboundEvent::Dtmf(super::dtmf_key(&digit)?)),
            Event::MediaXoff => {
                tracing::debug!("Asterisk queue full (MEDIA_XOFF): holding media.");
                self.flow = Some(Flow::Pause);
            }
            Event::MediaXon => {
                tracing::debug!("Asterisk queue has room (MEDIA_XON): sending media.");
                self.flow = Some(Flow::Resume);
            }
            Event::MarkProcessed(Some(mark)) => self.pending.push_back(InboundEvent::Mark(mark)),
            Event::MarkProcessed(None) => super::log_unknown_event("Asterisk", text),
            Event::Error(e) => tracing::warn!(error = %e, "Asterisk refused a command."),
            Event::Other(_) => super::log_unknown_event("Asterisk", text),
        }
        Ok(self.pending.pop_front())
    }

    fn decode_binary(
        &mut self,
        data: &[u8],
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        let Some(format) = self.format else {
            if self.early.len() >= self.max_early {
                return Err(ProtocolError::NoStart(self.max_early));
            }
            self.early.push(data.to_vec());
            return Ok(None);
        };
        // The one allocation per frame: the PCM travels to the listener.
        let mut pcm = Vec::with_capacity(data.len());
        format.decode(data, &mut pcm)?;
        Ok(Some(InboundEvent::Audio(pcm)))
    }

    fn take_pending(&mut self) -> Option<InboundEvent> {
        self.pending.pop_front()
    }

    fn take_flow(&mut self) -> Option<Flow> {
        self.flow.take()
    }
}

/// The writer half: commands in, binary frames and control text out.
pub struct AsteriskEncoder {
    control: ControlFormat,
    /// Where the decoder leaves the channel's format.
    started: Arc<OnceLock<(MediaFormat, usize)>>,
    /// The channel's format and samples per frame, once started.
    media: Option<(MediaFormat, usize)>,
    /// Audio not sent yet (less than one frame).
    pcm: Vec<i16>,
    /// Asterisk said `MEDIA_XOFF`.
    paused: bool,
    /// What waits for `MEDIA_XON`: frames and marks, in order.
    held: VecDeque<WireFrame>,
    held_frames: usize,
    max_held_frames: usize,
    dropped: u64,
}

impl AsteriskEncoder {
    /// Sends (or holds) `frame`.
    fn send(&mut self, frame: WireFrame, out: &mut Vec<WireFrame>) {
        if !self.paused {
            out.push(frame);
            return;
        }
        if matches!(frame, WireFrame::Binary(_)) {
            if self.held_frames >= self.max_held_frames {
                // The oldest audio goes; marks stay so playback acknowledgements still come.
                if let Some(i) = self
                    .held
                    .iter()
                    .position(|f| matches!(f, WireFrame::Binary(_)))
                {
                    self.held.remove(i);
                    self.held_frames -= 1;
                    self.dropped += 1;
                    if self.dropped.is_power_of_two() {
                        tracing::warn!(
                            dropped = self.dropped,
                            "Asterisk paused media too long; oldest held audio dropped."
                        );
                    }
                }
            }
            self.held_frames += 1;
        }
        self.held.push_back(frame);
    }

    /// Sends every whole frame of the audio held.
    fn send_frames(&mut self, format: MediaFormat, samples: usize, out: &mut Vec<WireFrame>) {
        let whole = self.pcm.len() / samples * samples;
        let mut start = 0;
        while start < whole {
            let mut bytes = Vec::with_capacity(samples * format.sample_bytes());
            format.encode(&self.pcm[start..start + samples], &mut bytes);
            self.send(WireFrame::Binary(bytes), out);
            start += samples;
        }
        self.pcm.drain(..whole);
    }
}

impl MediaEncoder for AsteriskEncoder {
    fn started(&mut self, _start: &CallStart) {
        self.media = self.started.get().copied();
    }

    fn encode(&mut self, cmd: &OutboundCommand, out: &mut Vec<WireFrame>) {
        let Some((format, samples)) = self.media else {
            return;
        };
        match cmd {
            OutboundCommand::Audio(pcm) => {
                self.pcm.extend_from_slice(pcm);
                self.send_frames(format, samples, out);
            }
            OutboundCommand::Mark(name) => {
                // Asterisk drops a partial frame: pad it with silence so the mark follows
                // all of the audio before it.
                if !self.pcm.is_empty() {
                    self.pcm.resize(samples, 0);
                    self.send_frames(format, samples, out);
                }
                let text = wire::command(self.control, "MARK_MEDIA", Some(name));
                self.send(WireFrame::Text(text), out);
            }
            OutboundCommand::Clear => {
                self.pcm.clear();
                self.held.clear();
                self.held_frames = 0;
                out.push(WireFrame::Text(wire::command(
                    self.control,
                    "FLUSH_MEDIA",
                    None,
                )));
            }
        }
    }

    fn flow(&mut self, flow: Flow, out: &mut Vec<WireFrame>) {
        match flow {
            Flow::Pause => self.paused = true,
            Flow::Resume => {
                self.paused = false;
                self.held_frames = 0;
                out.extend(self.held.drain(..));
            }
        }
    }
}

#[cfg(test)]
mod tests;
