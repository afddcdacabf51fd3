//! Telnyx media streaming (Call Control `streaming_start` or TeXML `<Stream>` with
//! `stream_bidirectional_mode: "rtp"`): `connected`, `start`, `media`, `dtmf`, `mark`, `error`,
//! `stop` in; `media`, `mark`, `clear` out. The inbound codec (PCMU, PCMA, L16 big-endian or
//! OPUS) comes from the start message; the outbound one is the configured bidirectional codec.
//! Media before `start` is kept and decoded once `start` names the codec, and digits are
//! released in the order they were pressed (`occurred_at`), since Telnyx may deliver them out
//! of order.

pub mod config;
pub mod media;
pub mod rest;
mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tokio::time::Instant;

use super::control::CallControl;
use super::{
    CallStart, Codec, InboundEvent, LinkLimits, MediaDecoder, MediaEncoder, OutboundCommand,
    ProtocolError, Provider, Refusal, WireFrame,
};
use media::{MediaCodec, PayloadDecoder, PayloadEncoder};
use wire::{Incoming, MarkBody, Outgoing};

/// The upgrade header (and `connected` field) carrying the stream's `stream_auth_token`.
pub const AUTH_TOKEN_HEADER: &str = "x-telnyx-streaming-auth-token";
/// How long a digit is held for an earlier-pressed one that may still arrive. Keys are
/// pressed at least ~100 ms apart, and digit collection waits seconds, so this costs nothing.
pub const DTMF_REORDER_WINDOW: Duration = Duration::from_millis(200);

/// The Telnyx provider: `/telnyx` (configurable), `stream_auth_token` checked when
/// configured, Call Control hang-up and transfer when an API key is configured.
pub struct Telnyx {
    settings: config::TelnyxSettings,
    control: Option<Arc<dyn CallControl>>,
}

impl Provider for Telnyx {
    fn name(&self) -> &'static str {
        "telnyx"
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
        let Some(token) = &self.settings.stream_auth_token else {
            return Ok(());
        };
        let got = headers
            .get(AUTH_TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if crate::bot::constant_time_eq(got, token.expose().as_bytes()) {
            Ok(())
        } else {
            tracing::warn!(
                header_present = !got.is_empty(),
                "Telnyx streaming auth token missing or wrong; connection refused."
            );
            Err(Refusal {
                status: StatusCode::FORBIDDEN,
                reason: "signature",
            })
        }
    }

    fn codec(&self) -> Codec {
        codec(self.settings.outbound, self.settings.max_early_media_frames)
    }

    fn control(&self) -> Option<Arc<dyn CallControl>> {
        self.control.clone()
    }
}

/// A new connection's codec halves: `outbound` is the bidirectional codec voxhook sends, and
/// at most `max_early` media frames are kept before `start`.
pub fn codec(outbound: MediaCodec, max_early: usize) -> Codec {
    Codec {
        decoder: Box::new(TelnyxDecoder::new(outbound.rate, max_early)),
        encoder: Box::new(TelnyxEncoder {
            started: false,
            media: PayloadEncoder::new(outbound),
        }),
    }
}

/// A digit waiting for earlier-pressed ones.
struct HeldDigit {
    key: char,
    /// `occurred_at` in nanoseconds since the epoch, when given and readable.
    pressed: Option<i128>,
    arrived: Instant,
}

/// The reader half: JSON in, events out.
pub struct TelnyxDecoder {
    /// The inbound codec, once `start` named it.
    media: Option<PayloadDecoder>,
    outbound_rate: u32,
    /// Reused for each media payload's decoded bytes.
    bytes: Vec<u8>,
    /// Payloads that came before `start`.
    early: Vec<Vec<u8>>,
    max_early: usize,
    /// Digits in press order, not yet released.
    held: Vec<HeldDigit>,
    /// Events released, in order, for `take_pending`.
    pending: VecDeque<InboundEvent>,
}

impl TelnyxDecoder {
    fn new(outbound_rate: u32, max_early: usize) -> Self {
        Self {
            media: None,
            outbound_rate,
            bytes: Vec::with_capacity(640),
            early: Vec::new(),
            max_early,
            held: Vec::new(),
            pending: VecDeque::new(),
        }
    }

    fn on_start(
        &mut self,
        stream_id: Option<String>,
        start: wire::StartBody,
    ) -> Result<(), ProtocolError> {
        let f = &start.media_format;
        let inbound = MediaCodec::inbound(&f.encoding, f.sample_rate, f.channels)?;
        let stream_id =
            stream_id.ok_or_else(|| ProtocolError::Malformed("start without stream_id".into()))?;
        let mut custom: BTreeMap<String, String> = start
            .custom_parameters
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();
        if let Some(state) = start.client_state {
            custom.entry("client_state".into()).or_insert(state);
        }
        let nonempty = |n: Option<String>| n.filter(|n| !n.is_empty());
        tracing::info!(
            inbound_codec = inbound.encoding.name(),
            inbound_rate = inbound.rate,
            "Telnyx stream started."
        );
        let mut decoder = PayloadDecoder::new(inbound)?;
        self.pending
            .push_back(InboundEvent::Start(Box::new(CallStart {
                call_id: start.call_control_id,
                stream_id,
                caller: nonempty(start.from),
                called: nonempty(start.to),
                custom,
                inbound_rate: inbound.rate,
                outbound_rate: self.outbound_rate,
            })));
        for payload in std::mem::take(&mut self.early) {
            let mut pcm = Vec::new();
            decoder.decode(&payload, &mut pcm)?;
            self.pending.push_back(InboundEvent::Audio(pcm));
        }
        self.media = Some(decoder);
        Ok(())
    }

    fn on_media(&mut self, payload: &str) -> Result<(), ProtocolError> {
        self.bytes.clear();
        B64.decode_vec(payload.as_bytes(), &mut self.bytes)
            .map_err(|e| ProtocolError::Malformed(format!("media payload: {e}")))?;
        let Some(decoder) = &mut self.media else {
            if self.early.len() >= self.max_early {
                return Err(ProtocolError::NoStart(self.max_early));
            }
            self.early.push(self.bytes.clone());
            return Ok(());
        };
        // The one allocation per frame: the PCM travels to the listener.
        let mut pcm = Vec::with_capacity(self.bytes.len() * 2);
        decoder.decode(&self.bytes, &mut pcm)?;
        self.pending.push_back(InboundEvent::Audio(pcm));
        Ok(())
    }

    /// Holds `key` in press order.
    fn on_dtmf(
        &mut self,
        digit: &str,
        occurred_at: Option<&str>,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        let key = super::dtmf_key(digit)?;
        let pressed = occurred_at.and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| t.unix_timestamp_nanos())
        });
        // After every held digit pressed no later than this one (untimed digits keep arrival order).
        let at = match pressed {
            Some(p) => self
                .held
                .iter()
                .position(|h| h.pressed.is_some_and(|q| q > p))
                .unwrap_or(self.held.len()),
            None => self.held.len(),
        };
        self.held.insert(
            at,
            HeldDigit {
                key,
                pressed,
                arrived: now,
            },
        );
        Ok(())
    }

    /// Releases held digits that have waited the reorder window (all of them when `all`).
    fn release_digits(&mut self, now: Instant, all: bool) {
        let due = self
            .held
            .iter()
            .take_while(|h| all || now.duration_since(h.arrived) >= DTMF_REORDER_WINDOW)
            .count();
        self.pending
            .extend(self.held.drain(..due).map(|h| InboundEvent::Dtmf(h.key)));
    }

    fn decode_at(
        &mut self,
        text: &str,
        now: Instant,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        let msg: Incoming =
            serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        let stop = matches!(msg, Incoming::Stop {});
        self.release_digits(now, stop);
        match msg {
            Incoming::Connected {} => {}
            Incoming::Start { stream_id, start } => self.on_start(stream_id, start)?,
            Incoming::Media { media } => {
                if media.track.as_deref().is_none_or(|t| t == "inbound") {
                    self.on_media(&media.payload)?;
                }
            }
            Incoming::Dtmf { occurred_at, dtmf } => {
                self.on_dtmf(&dtmf.digit, occurred_at.as_deref(), now)?
            }
            Incoming::Mark { mark } => self
                .pending
                .push_back(InboundEvent::Mark(mark.name.into_owned())),
            Incoming::Error { payload } => {
                let code = payload
                    .code
                    .as_ref()
                    .map(wire::code_text)
                    .unwrap_or_default();
                tracing::warn!(
                    code = %code,
                    title = payload.title.as_deref().unwrap_or(""),
                    detail = payload.detail.as_deref().unwrap_or(""),
                    "Telnyx reported a media streaming error."
                );
            }
            Incoming::Stop {} => self.pending.push_back(InboundEvent::Stop),
            Incoming::Unknown => {
                super::log_unknown_event("Telnyx", text);
            }
        }
        Ok(self.pending.pop_front())
    }
}

impl MediaDecoder for TelnyxDecoder {
    fn decode_text(
        &mut self,
        text: &str,
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        self.decode_at(text, Instant::now())
    }

    fn take_pending(&mut self) -> Option<InboundEvent> {
        self.pending.pop_front()
    }
}

/// The writer half: commands in, JSON out.
pub struct TelnyxEncoder {
    started: bool,
    /// The bidirectional codec's encoder (checked at startup, so an error here is a bug
    /// reported once per call rather than a panic).
    media: Result<PayloadEncoder, String>,
}

impl MediaEncoder for TelnyxEncoder {
    fn started(&mut self, _start: &CallStart) {
        self.started = true;
        if let Err(e) = &self.media {
            tracing::error!(error = %e, "Telnyx outbound codec unavailable; the caller hears nothing.");
        }
    }

    fn encode(&mut self, cmd: &OutboundCommand, out: &mut Vec<WireFrame>) {
        if !self.started {
            return;
        }
        match cmd {
            OutboundCommand::Audio(pcm) => {
                let Ok(enc) = &mut self.media else { return };
                enc.encode(pcm, |payload| {
                    let mut text = String::with_capacity(48 + payload.len() * 4 / 3);
                    wire::write_media(&mut text, |t| B64.encode_string(payload, t));
                    out.push(WireFrame::Text(text));
                });
            }
            OutboundCommand::Mark(name) => out.extend(
                serde_json::to_string(&Outgoing::Mark {
                    mark: MarkBody { name },
                })
                .ok()
                .map(WireFrame::Text),
            ),
            OutboundCommand::Clear => out.extend(
                serde_json::to_string(&Outgoing::Clear)
                    .ok()
                    .map(WireFrame::Text),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
