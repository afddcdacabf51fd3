//! Asterisk AudioSocket: a raw TCP listener (not a WebSocket) that Asterisk's
//! `AudioSocket(uuid,host:port)` application and its channel driver
//! (`Dial(AudioSocket/host:port/uuid/c(slin))`) connect to (ARI external media with
//! `encapsulation=audiosocket` should too; not tried). Frames are TLV (`wire.rs`). In:
//! the UUID (→ call id, the start of the call), slin 8 kHz audio, DTMF digits, hang-up, error.
//! Out: slin 8 kHz audio and, when the call ends, hang-up.
//!
//! Asterisk writes what it receives to the channel at once: it has no playout buffer, no
//! marks and no clear. So the encoder paces playback itself, one 20 ms frame every 20 ms on a
//! drift-free clock ([`MediaEncoder::next_due`]), holding what the speaker sends ahead; a
//! clear (barge-in) drops what it holds, which is all that was not yet played; and a mark
//! comes back as an event once the audio before it has played out (its last frame's 20 ms
//! are over), which is what marks mean to the call.
//!
//! The protocol carries nothing but the UUID: no caller number, no custom parameters. The
//! call id (and, with the default `{caller}` template, the bot user id) is the UUID in its
//! string form, so the dialplan can pass `${UUID}` or an id of its own.
//!
//! Confirmed in Asterisk's sources (`include/asterisk/res_audiosocket.h`,
//! `res/res_audiosocket.c`, `apps/app_audiosocket.c`, `channels/chan_audiosocket.c`) and its
//! protocol page (docs.asterisk.org, Channel-Drivers/AudioSocket): the 3-byte header with a
//! big-endian length; kinds `0x00` hang-up, `0x01` UUID (16 raw bytes, sent first, header
//! `01 00 10`), `0x03` DTMF (one ASCII byte), `0x10` slin 8 kHz little-endian, `0xff` error
//! with Asterisk's bit-packed codes (`0x01` hang-up of the calling party, `0x02` frame forwarding, `0x04`
//! memory); the application sets the channel to slin both ways and sends voice frames as
//! they come (20 ms = 320 bytes on a typical channel); what it receives it writes to the
//! channel at once; from the server it takes only hang-up and audio, treats any other kind or
//! an empty audio payload as an error that ends the call, and on a channel hang-up just closes
//! the socket (it sends no hang-up frame). So voxhook sends only non-empty `0x10` and `0x00`.
//!
//! Also confirmed: the channel driver's dial string `host:port/uuid/c(codec)`; it sends its
//! channel's format under the same `0x10` kind (the first offered format unless `c(codec)`),
//! which voxhook cannot tell from slin, so the dial string must say `c(slin)`.
//!
//! Unverified: the newer slin kinds `0x11`–`0x18` (12 to 192 kHz) appear on the current
//! protocol page, while one `res_audiosocket.h` revision names `0x11` slin16 instead; voxhook
//! refuses them (the call ends as an unsupported format) rather than guess. Whether Asterisk
//! ever sends `0xff` is not visible in the application (it closes the socket on errors);
//! voxhook ends the call on one, logging the code. ARI external media over AudioSocket is not
//! tried.

pub mod config;
pub mod wire;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use tokio::time::Instant;

use super::control::CallControl;
use super::{
    CallStart, Codec, InboundEvent, LinkLimits, MediaDecoder, MediaEncoder, OutboundCommand,
    ProtocolError, Provider, Refusal, WireFrame,
};
use crate::audio::FRAME_MS;

/// The only rate AudioSocket's `0x10` audio has, both ways.
pub const RATE: u32 = 8_000;
/// One 20 ms frame of slin at 8 kHz.
const FRAME: Duration = Duration::from_millis(FRAME_MS);

/// The AudioSocket provider: a TCP listener, no authentication (the protocol has none), no
/// call control (hang-up is a frame on the connection).
pub struct AudioSocket {
    settings: config::AudioSocketSettings,
}

impl Provider for AudioSocket {
    fn name(&self) -> &'static str {
        "audiosocket"
    }

    /// No WebSocket route; shown in logs.
    fn route(&self) -> &str {
        "tcp"
    }

    fn limits(&self) -> LinkLimits {
        LinkLimits {
            max_message_bytes: self.settings.max_message_bytes,
            max_early_events: self.settings.max_early_media_frames,
        }
    }

    fn authenticate(&self, _headers: &HeaderMap, _path_and_query: &str) -> Result<(), Refusal> {
        Ok(())
    }

    fn codec(&self) -> Codec {
        Codec {
            decoder: Box::new(AudioSocketDecoder::new(self.settings.max_message_bytes)),
            encoder: Box::new(AudioSocketEncoder::new(self.settings.max_held_frames)),
        }
    }

    fn control(&self) -> Option<Arc<dyn CallControl>> {
        None
    }

    fn tcp_listen(&self) -> Option<SocketAddr> {
        Some(self.settings.listen)
    }

    fn start_timeout(&self) -> Duration {
        self.settings.uuid_timeout
    }
}

/// The reader half: byte chunks in (as TCP delivers them), whole frames cut out, events out.
pub struct AudioSocketDecoder {
    /// Bytes of a frame not yet complete (at most one header and payload).
    buf: Vec<u8>,
    max_payload: usize,
    /// Events of the last chunk after its first, released through `take_pending`.
    pending: VecDeque<InboundEvent>,
    started: bool,
    /// An unknown kind was logged (once per connection: the peer may send it every frame).
    unknown_logged: bool,
}

impl AudioSocketDecoder {
    /// A decoder refusing payloads over `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_payload,
            pending: VecDeque::new(),
            started: false,
            unknown_logged: false,
        }
    }

    fn on_frame(&mut self, frame: wire::Frame<'_>) -> Result<Option<InboundEvent>, ProtocolError> {
        let payload = frame.payload;
        match frame.kind {
            wire::KIND_HANGUP => Ok(Some(InboundEvent::Stop)),
            wire::KIND_UUID => {
                let id = uuid::Uuid::from_slice(payload).map_err(|_| {
                    ProtocolError::Malformed(format!("UUID of {} bytes", payload.len()))
                })?;
                if self.started {
                    return Err(ProtocolError::Malformed("a second UUID".into()));
                }
                self.started = true;
                let id = id.hyphenated().to_string();
                Ok(Some(InboundEvent::Start(Box::new(CallStart {
                    call_id: id.clone(),
                    stream_id: id,
                    caller: None,
                    called: None,
                    custom: Default::default(),
                    inbound_rate: RATE,
                    outbound_rate: RATE,
                }))))
            }
            wire::KIND_DTMF => match payload {
                [b] => Ok(Some(InboundEvent::Dtmf(super::dtmf_key(
                    &char::from(*b).to_string(),
                )?))),
                _ => Err(ProtocolError::Malformed(format!(
                    "DTMF payload of {} bytes",
                    payload.len()
                ))),
            },
            wire::KIND_SLIN => {
                if payload.is_empty() {
                    return Ok(None);
                }
                let mut pcm = Vec::with_capacity(payload.len() / 2);
                wire::decode_slin(payload, &mut pcm)?;
                Ok(Some(InboundEvent::Audio(pcm)))
            }
            wire::KIND_ERROR => {
                let code = payload.first().copied();
                tracing::warn!(
                    code = ?code,
                    meaning = wire::error_meaning(code),
                    "AudioSocket error from Asterisk; ending the call."
                );
                Ok(Some(InboundEvent::Stop))
            }
            kind => {
                if let Some((_, rate)) = wire::HIGHER_SLIN_RATES.iter().find(|(k, _)| *k == kind) {
                    return Err(ProtocolError::UnsupportedFormat(format!(
                        "slin at {rate} Hz (kind {kind:#04x}); voxhook takes 8 kHz (0x10)"
                    )));
                }
                if !self.unknown_logged {
                    self.unknown_logged = true;
                    tracing::warn!(
                        kind = %format_args!("{kind:#04x}"),
                        bytes = payload.len(),
                        "Unknown AudioSocket message kind ignored."
                    );
                }
                Ok(None)
            }
        }
    }
}

impl MediaDecoder for AudioSocketDecoder {
    /// AudioSocket is binary only.
    fn decode_text(
        &mut self,
        text: &str,
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        Err(ProtocolError::Malformed(format!(
            "text on a binary protocol ({} bytes)",
            text.len()
        )))
    }

    /// A chunk of the byte stream: every whole frame in it (with what an earlier chunk left)
    /// is decoded; the first event is returned, the rest wait in `take_pending`.
    fn decode_binary(
        &mut self,
        data: &[u8],
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(data);
        let mut at = 0;
        let mut first = None;
        let res = loop {
            match wire::next_frame(&buf[at..], self.max_payload) {
                Ok(None) => break Ok(()),
                Ok(Some((frame, used))) => {
                    at += used;
                    match self.on_frame(frame) {
                        Ok(Some(ev)) if first.is_none() => first = Some(ev),
                        Ok(Some(ev)) => self.pending.push_back(ev),
                        Ok(None) => {}
                        Err(e) => break Err(e),
                    }
                }
                Err(e) => break Err(e),
            }
        };
        res?;
        buf.drain(..at);
        self.buf = buf;
        Ok(first)
    }

    fn take_pending(&mut self) -> Option<InboundEvent> {
        self.pending.pop_front()
    }
}

/// What the encoder holds in playback order.
enum Held {
    /// One whole `0x10` frame.
    Audio(Vec<u8>),
    /// A mark, reported once the audio before it has played.
    Mark(String),
}

/// The writer half: paces slin frames out at real time, emulates marks, drops what it holds
/// on a clear, and hangs up when the call ends.
pub struct AudioSocketEncoder {
    started: bool,
    held: VecDeque<Held>,
    held_audio: usize,
    max_held: usize,
    dropped: u64,
    /// When the next frame may go (= when the last one sent has played out); `None` before
    /// the first.
    next_at: Option<Instant>,
    events: VecDeque<InboundEvent>,
}

impl AudioSocketEncoder {
    /// An encoder holding at most `max_held` frames of audio.
    pub fn new(max_held: usize) -> Self {
        Self {
            started: false,
            held: VecDeque::new(),
            held_audio: 0,
            max_held,
            dropped: 0,
            next_at: None,
            events: VecDeque::new(),
        }
    }

    /// When the audio sent so far has played out (`now` if it has).
    fn played_out(&self, now: Instant) -> Instant {
        self.next_at.map_or(now, |t| t.max(now))
    }

    /// When something held is due, seen at `now`: both the next frame and a mark wait for
    /// the line to play out what it has.
    fn due(&self, now: Instant) -> Option<Instant> {
        self.held.front()?;
        Some(self.played_out(now))
    }

    fn hold_audio(&mut self, frame: Vec<u8>) {
        if self.held_audio >= self.max_held {
            if let Some(at) = self.held.iter().position(|h| matches!(h, Held::Audio(_))) {
                self.held.remove(at);
                self.held_audio -= 1;
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.dropped,
                        "Outbound audio dropped: more held than max_held_frames."
                    );
                }
            }
        }
        self.held.push_back(Held::Audio(frame));
        self.held_audio += 1;
    }
}

impl MediaEncoder for AudioSocketEncoder {
    fn started(&mut self, _start: &CallStart) {
        self.started = true;
    }

    fn encode(&mut self, cmd: &OutboundCommand, _out: &mut Vec<WireFrame>) {
        if !self.started {
            return;
        }
        match cmd {
            // Asterisk refuses an empty audio payload (and ends the call).
            OutboundCommand::Audio(pcm) if pcm.is_empty() => {}
            OutboundCommand::Audio(pcm) => self.hold_audio(wire::slin_frame(pcm)),
            OutboundCommand::Mark(name) => self.held.push_back(Held::Mark(name.clone())),
            // No clear on the wire: what is held was never sent, so dropping it is the clear
            // (its marks go with it, like a provider's flush). The frame on the line plays out.
            OutboundCommand::Clear => {
                self.held.clear();
                self.held_audio = 0;
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.due(Instant::now())
    }

    fn release(&mut self, now: Instant, out: &mut Vec<WireFrame>) {
        while let Some(head) = self.held.front() {
            match head {
                Held::Mark(_) => {
                    if self.played_out(now) > now {
                        break;
                    }
                    if let Some(Held::Mark(name)) = self.held.pop_front() {
                        self.events.push_back(InboundEvent::Mark(name));
                    }
                }
                Held::Audio(_) => {
                    // Drift-free: the next slot follows the last one, unless the line went
                    // quiet for longer than a frame (then a new run starts now).
                    let base = match self.next_at {
                        Some(t) if t > now => break,
                        Some(t) if now < t + FRAME => t,
                        _ => now,
                    };
                    if let Some(Held::Audio(frame)) = self.held.pop_front() {
                        self.held_audio -= 1;
                        out.push(WireFrame::Binary(frame));
                        self.next_at = Some(base + FRAME);
                    }
                }
            }
        }
    }

    fn take_event(&mut self) -> Option<InboundEvent> {
        self.events.pop_front()
    }

    /// Hang-up: Asterisk hangs the channel up (closing the socket would too; the frame says
    /// it was meant). Harmless when Asterisk already closed.
    fn closing(&mut self, _fault: bool, out: &mut Vec<WireFrame>) {
        let mut frame = Vec::with_capacity(wire::HEADER_BYTES);
        wire::put_frame(wire::KIND_HANGUP, &[], &mut frame);
        out.push(WireFrame::Binary(frame));
    }
}

#[cfg(test)]
mod tests;
