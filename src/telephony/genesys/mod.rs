//! Genesys Cloud AudioHook in its Audio Connector flavour (voice bots), route `/genesys`.
//! Genesys connects with `X-API-KEY` and, when the integration has a client secret, an
//! RFC 9421 signature (checked before the upgrade, see [`signature`]). Text frames are JSON
//! control messages with strict sequence numbers both ways, binary frames are audio: PCMU
//! 8 kHz, mono or stereo (customer on the left) as chosen in `opened` from the offer. `open` →
//! `opened` starts the call (customer numbers from `participant`, custom parameters from
//! `inputVariables`); `ping` → `pong`; `update` → `updated`; `close` → `closed` ends it;
//! `paused`, `resumed`, `discarded` and `error` are logged; `dtmf` is a key. voxhook sends
//! PCMU back in packets of `packet_ms` under Genesys's binary message rate limit, barge-in is
//! the `barge_in` event, and a mark is reached when Genesys reports `playback_completed` after
//! the audio before it. A bot hang-up sends `disconnect` (`completed`; `error` after a
//! protocol violation). A connection probe (the all-zero
//! conversation id Genesys uses when an integration is activated) is opened and closed
//! without a call.

pub mod config;
pub mod signature;
mod wire;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::control::CallControl;
use super::{
    CallStart, Codec, InboundEvent, LinkLimits, MediaDecoder, MediaEncoder, OutboundCommand,
    ProtocolError, Provider, Refusal, WireFrame,
};
use crate::audio::codec::Codec as G711;
use wire::{ClientMessage, DtmfParameters, Media, OpenParameters};

/// The conversation id of Genesys's connection probe.
pub const PROBE_CONVERSATION_ID: &str = "00000000-0000-0000-0000-000000000000";
/// Marks waiting for `playback_completed` (one per bot message; a call never has many).
const MARK_QUEUE_CAPACITY: usize = 64;

/// The Genesys provider: `/genesys` (configurable), API key and signature checked before the
/// upgrade, no call control outside the stream (the bot ends the session with `disconnect`).
pub struct Genesys {
    settings: config::GenesysSettings,
}

fn refuse(why: &str) -> Refusal {
    tracing::warn!(reason = why, "Genesys upgrade refused.");
    Refusal {
        status: StatusCode::UNAUTHORIZED,
        reason: "signature",
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Provider for Genesys {
    fn name(&self) -> &'static str {
        "genesys"
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

    fn authenticate(&self, headers: &HeaderMap, path_and_query: &str) -> Result<(), Refusal> {
        let s = &self.settings;
        let key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim();
        if key.is_empty() {
            return Err(refuse("no X-API-KEY header"));
        }
        if !crate::bot::constant_time_eq(key.as_bytes(), s.api_key.expose().as_bytes()) {
            return Err(refuse("wrong X-API-KEY"));
        }
        if let Some(org) = &s.organization_id {
            let got = headers
                .get("audiohook-organization-id")
                .and_then(|v| v.to_str().ok());
            if got.map(str::trim) != Some(org.as_str()) {
                return Err(refuse("other organization"));
            }
        }
        if !s.client_secret.0.is_empty() {
            let checked = signature::verify(
                headers,
                path_and_query,
                key,
                &s.client_secret.0,
                s.max_signature_age_secs,
                unix_now(),
            );
            if let Err(e) = checked {
                return Err(refuse(&e.to_string()));
            }
        }
        Ok(())
    }

    fn codec(&self) -> Codec {
        let shared = Arc::new(Shared::default());
        let (marks_tx, marks) = std_mpsc::sync_channel(MARK_QUEUE_CAPACITY);
        let s = &self.settings;
        Codec {
            decoder: Box::new(GenesysDecoder {
                shared: shared.clone(),
                organization_id: s.organization_id.clone(),
                session: None,
                last_seq: 0,
                stereo: false,
                early: Vec::new(),
                max_early: s.max_early_media_frames,
                marks,
                closed: false,
                left: Vec::new(),
                pending: VecDeque::new(),
            }),
            encoder: Box::new(GenesysEncoder {
                shared,
                session: None,
                seq: 0,
                marks: marks_tx,
                packet: Vec::with_capacity(s.packet_bytes),
                packet_bytes: s.packet_bytes,
                bucket: TokenBucket::new(s.max_messages_per_sec, s.max_message_burst),
                closed: false,
            }),
        }
    }

    fn control(&self) -> Option<Arc<dyn CallControl>> {
        None
    }
}

/// Sequence numbers both halves stamp on what they send (atomics, not a lock).
#[derive(Debug, Default)]
struct Shared {
    /// Genesys's last `seq` received (our `clientseq`).
    clientseq: AtomicU64,
    /// Our last `seq` sent (Genesys's `serverseq` may not exceed it).
    serverseq: AtomicU64,
}

/// The reader half: JSON control and binary audio in, protocol replies out (numbered by the
/// encoder when sent).
pub struct GenesysDecoder {
    shared: Arc<Shared>,
    organization_id: Option<String>,
    /// The session id, from `open`.
    session: Option<String>,
    last_seq: u64,
    /// Audio is stereo: the customer is every other byte.
    stereo: bool,
    early: Vec<Vec<u8>>,
    max_early: usize,
    /// Marks the encoder queued after audio, reached at the next `playback_completed`.
    marks: std_mpsc::Receiver<String>,
    /// `close` came, or the session is a connection probe: audio is not for a call.
    closed: bool,
    /// Reused for the customer's half of stereo frames.
    left: Vec<u8>,
    pending: VecDeque<InboundEvent>,
}

/// A reply without `seq` (the encoder adds it when it goes out).
fn reply(id: &str, kind: &str, clientseq: u64, parameters: Value) -> WireFrame {
    WireFrame::Text(
        json!({"version": "2", "id": id, "type": kind, "clientseq": clientseq,
            "parameters": parameters})
        .to_string(),
    )
}

fn number(uri: &str) -> Option<String> {
    let n = uri.trim();
    let n = n.strip_prefix("tel:").unwrap_or(n);
    (!n.is_empty()).then(|| n.to_string())
}

/// The offer voxhook takes: PCMU at 8 kHz, mono (the customer) before stereo.
fn choose_media(offer: &[Media]) -> Option<&Media> {
    let pcmu = |m: &&Media| m.kind == "audio" && m.format == "PCMU" && m.rate == 8_000;
    let customer_only = |m: &&Media| m.channels == ["external"];
    let stereo = |m: &&Media| m.channels.len() == 2 && m.channels[0] == "external";
    offer
        .iter()
        .filter(pcmu)
        .find(customer_only)
        .or_else(|| offer.iter().filter(pcmu).find(stereo))
}

impl GenesysDecoder {
    fn on_open(
        &mut self,
        id: &str,
        seq: u64,
        parameters: Value,
        replies: &mut Vec<WireFrame>,
    ) -> Result<(), ProtocolError> {
        let p: OpenParameters = serde_json::from_value(parameters)
            .map_err(|e| ProtocolError::Malformed(format!("open parameters: {e}")))?;
        if let Some(org) = &self.organization_id {
            if &p.organization_id != org {
                return Err(ProtocolError::Malformed(
                    "open from another organization".into(),
                ));
            }
        }
        let media = choose_media(&p.media).cloned().ok_or_else(|| {
            ProtocolError::UnsupportedFormat(format!(
                "offer {:?} (voxhook takes PCMU at 8000 Hz)",
                p.media.iter().map(|m| &m.format).collect::<Vec<_>>()
            ))
        })?;
        self.stereo = media.channels.len() == 2;
        self.session = Some(id.to_string());
        let opened = json!({"startPaused": false, "media": [media]});
        replies.push(reply(id, "opened", seq, opened));
        if p.conversation_id == PROBE_CONVERSATION_ID {
            tracing::info!("Genesys connection probe opened.");
            self.early.clear();
            self.closed = true;
            return Ok(());
        }
        let mut custom = super::custom_parameters(p.input_variables);
        if let Some(lang) = p.language {
            custom.entry("language".into()).or_insert(lang);
        }
        tracing::info!(stereo = self.stereo, "Genesys AudioHook session opened.");
        self.pending
            .push_back(InboundEvent::Start(Box::new(CallStart {
                call_id: p.conversation_id,
                stream_id: id.to_string(),
                caller: number(&p.participant.ani),
                called: number(&p.participant.dnis),
                custom,
                inbound_rate: 8_000,
                outbound_rate: 8_000,
            })));
        for frame in std::mem::take(&mut self.early) {
            let pcm = self.audio(&frame);
            self.pending.push_back(InboundEvent::Audio(pcm));
        }
        Ok(())
    }

    /// The customer's PCM in a binary frame.
    fn audio(&mut self, data: &[u8]) -> Vec<i16> {
        let mut pcm = Vec::with_capacity(data.len());
        if self.stereo {
            // Interleaved: customer (external) left, agent (internal) right.
            self.left.clear();
            self.left.extend(data.iter().step_by(2));
            G711::Mulaw.decode_into(&self.left, &mut pcm);
        } else {
            G711::Mulaw.decode_into(data, &mut pcm);
        }
        pcm
    }
}

impl MediaDecoder for GenesysDecoder {
    fn decode_text(
        &mut self,
        text: &str,
        replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        let msg: ClientMessage =
            serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        if msg.version != "2" {
            return Err(ProtocolError::Malformed(format!(
                "protocol version {}",
                msg.version
            )));
        }
        // Genesys numbers its messages 1, 2, …; a gap or repeat means a lost or replayed
        // message, which the reference servers end the session for.
        if msg.seq != self.last_seq + 1 {
            return Err(ProtocolError::Malformed(format!(
                "seq {} after {}",
                msg.seq, self.last_seq
            )));
        }
        self.last_seq = msg.seq;
        self.shared.clientseq.store(msg.seq, Ordering::Relaxed);
        let sent = self.shared.serverseq.load(Ordering::Relaxed);
        if msg.serverseq > sent {
            return Err(ProtocolError::Malformed(format!(
                "serverseq {} but only {sent} sent",
                msg.serverseq
            )));
        }
        let id = msg.id.as_ref();
        match &self.session {
            Some(s) if s != id => {
                return Err(ProtocolError::Malformed(
                    "message for another session".into(),
                ))
            }
            None if msg.kind != "open" => {
                return Err(ProtocolError::Malformed(format!(
                    "{} before open",
                    msg.kind
                )))
            }
            _ => {}
        }
        let seq = msg.seq;
        match msg.kind.as_ref() {
            "open" if self.session.is_none() => self.on_open(id, seq, msg.parameters, replies)?,
            "open" => return Err(ProtocolError::Malformed("second open".into())),
            "ping" => replies.push(reply(id, "pong", seq, json!({}))),
            "update" => {
                let lang = msg.parameters["language"].as_str().unwrap_or("");
                tracing::info!(language = lang, "Genesys session updated.");
                replies.push(reply(id, "updated", seq, json!({})));
            }
            "close" => {
                let reason = msg.parameters["reason"].as_str().unwrap_or("");
                tracing::info!(reason, "Genesys closed the session.");
                replies.push(reply(id, "closed", seq, json!({})));
                self.closed = true;
                self.pending.push_back(InboundEvent::Stop);
            }
            "dtmf" => {
                let p: DtmfParameters = serde_json::from_value(msg.parameters)
                    .map_err(|e| ProtocolError::Malformed(format!("dtmf: {e}")))?;
                self.pending
                    .push_back(InboundEvent::Dtmf(super::dtmf_key(&p.digit)?));
            }
            "playback_completed" => {
                // Everything sent so far has played: the marks queued after it are reached.
                while let Ok(name) = self.marks.try_recv() {
                    self.pending.push_back(InboundEvent::Mark(name));
                }
            }
            "playback_started" => tracing::debug!("Genesys playback started."),
            "paused" | "resumed" | "discarded" => {
                tracing::info!(event = %msg.kind, parameters = %msg.parameters, "Genesys stream state.");
            }
            "error" => {
                tracing::warn!(
                    code = msg.parameters["code"].as_u64().unwrap_or(0),
                    message = msg.parameters["message"].as_str().unwrap_or(""),
                    retry_after = msg.parameters["retryAfter"].as_str().unwrap_or(""),
                    "Genesys reported an error."
                );
            }
            _ => super::log_unknown_event("Genesys", text),
        }
        Ok(self.pending.pop_front())
    }

    fn decode_binary(
        &mut self,
        data: &[u8],
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        if self.closed {
            return Ok(None);
        }
        if self.session.is_none() {
            if self.early.len() >= self.max_early {
                return Err(ProtocolError::NoStart(self.max_early));
            }
            self.early.push(data.to_vec());
            return Ok(None);
        }
        if self.stereo && !data.len().is_multiple_of(2) {
            return Err(ProtocolError::Malformed(format!(
                "stereo PCMU frame of odd length {}",
                data.len()
            )));
        }
        Ok(Some(InboundEvent::Audio(self.audio(data))))
    }

    fn take_pending(&mut self) -> Option<InboundEvent> {
        self.pending.pop_front()
    }
}

/// Genesys's binary message rate limit: `rate` per second on average, bursts of `burst`.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.at = now;
    }

    /// A message may go now.
    fn ready(&mut self) -> bool {
        self.refill();
        self.tokens >= 1.0
    }

    /// A message went (a forced one may leave a debt the next ones wait out).
    fn spend(&mut self) {
        self.tokens -= 1.0;
    }
}

/// The writer half: PCMU packets under the rate limit, events, numbered replies.
pub struct GenesysEncoder {
    shared: Arc<Shared>,
    /// Session id, once started.
    session: Option<String>,
    /// Our last `seq`.
    seq: u64,
    marks: std_mpsc::SyncSender<String>,
    /// μ-law not sent yet.
    packet: Vec<u8>,
    packet_bytes: usize,
    bucket: TokenBucket,
    /// `closed` went out (Genesys ended the session): no `disconnect` after it.
    closed: bool,
}

impl GenesysEncoder {
    /// `msg` with the next `seq` (and the current `clientseq` when it has none).
    fn stamp(&mut self, mut msg: Value) -> WireFrame {
        self.seq += 1;
        self.shared.serverseq.store(self.seq, Ordering::Relaxed);
        msg["seq"] = json!(self.seq);
        if msg.get("clientseq").is_none() {
            msg["clientseq"] = json!(self.shared.clientseq.load(Ordering::Relaxed));
        }
        WireFrame::Text(msg.to_string())
    }

    fn message(&mut self, kind: &str, parameters: Value) -> Option<WireFrame> {
        let id = self.session.clone()?;
        Some(self.stamp(json!({"version": "2", "id": id, "type": kind, "parameters": parameters})))
    }

    /// Sends the packet held when the rate limit allows, or regardless when `force`d (audio
    /// before a mark must go out: nothing may follow it for a while).
    fn flush(&mut self, force: bool, out: &mut Vec<WireFrame>) {
        if self.packet.is_empty() || !(self.bucket.ready() || force) {
            return;
        }
        self.bucket.spend();
        let mut bytes = Vec::with_capacity(self.packet_bytes);
        std::mem::swap(&mut bytes, &mut self.packet);
        out.push(WireFrame::Binary(bytes));
    }
}

impl MediaEncoder for GenesysEncoder {
    fn started(&mut self, start: &CallStart) {
        self.session = Some(start.stream_id.clone());
    }

    fn encode(&mut self, cmd: &OutboundCommand, out: &mut Vec<WireFrame>) {
        if self.session.is_none() || self.closed {
            return;
        }
        match cmd {
            OutboundCommand::Audio(pcm) => {
                G711::Mulaw.encode_into(pcm, &mut self.packet);
                // A packet held back by the rate limit grows, never past Genesys's maximum.
                let full = self.packet.len() + pcm.len() > config::MAX_BINARY_MESSAGE_BYTES;
                if self.packet.len() >= self.packet_bytes {
                    self.flush(full, out);
                }
            }
            OutboundCommand::Mark(name) => {
                self.flush(true, out);
                if self.marks.try_send(name.clone()).is_err() {
                    tracing::warn!("Genesys mark queue full; mark dropped.");
                }
            }
            OutboundCommand::Clear => {
                self.packet.clear();
                out.extend(self.message(
                    "event",
                    json!({"entities": [{"type": "barge_in", "data": {}}]}),
                ));
            }
        }
    }

    fn reply(&mut self, frame: WireFrame, out: &mut Vec<WireFrame>) {
        let WireFrame::Text(text) = frame else {
            out.push(frame);
            return;
        };
        let Ok(msg) = serde_json::from_str::<Value>(&text) else {
            return;
        };
        if msg["type"] == "closed" {
            self.closed = true;
        }
        out.push(self.stamp(msg));
    }

    fn closing(&mut self, fault: bool, out: &mut Vec<WireFrame>) {
        if self.closed {
            return;
        }
        let params = if fault {
            // The reason stays general: what was wrong is in voxhook's log, not for the peer.
            json!({"reason": "error", "info": "protocol error", "outputVariables": {}})
        } else {
            self.flush(true, out);
            json!({"reason": "completed", "info": "", "outputVariables": {}})
        };
        out.extend(self.message("disconnect", params));
    }
}

#[cfg(test)]
mod tests;
