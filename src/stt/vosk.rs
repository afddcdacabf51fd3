//! Vosk server (alphacep/vosk-server `websocket/asr_server.py`), the self-hosted streaming
//! recogniser operators run on their own machines. A socket carries one utterance or, in
//! `continuous` mode, the call's audio up to the end of a turn: first the text message
//! `{"config": {"sample_rate": …, "words": …}}`, then binary s16le mono PCM, each frame
//! answered by exactly one JSON message (`{"partial": …}` or, at Vosk's own endpoint,
//! `{"text": …, "result": [words]}`), and at the end of the utterance the text
//! `{"eof" : 1}`, answered with the final result, after which the server closes. The next
//! socket is opened right away, so the next utterance does not wait for a handshake.
//!
//! Modes: `utterance` (default; only what voxhook's VAD found is sent, so an idle call costs
//! the server nothing, and the VAD ends turns and drives barge-in) and `continuous` (the
//! call's audio at the telephony rate; Vosk's partials drive barge-in, and with
//! `end_of_turn = "vosk"` its endpoint ends the turn). Vosk has no key, no keep-alive and no
//! idle close; a language is a server (its model), so `[languages.<code>.stt]` sets another
//! `base_url`.
//!
//! Wire, as confirmed in vosk-server's `websocket/asr_server.py` (commit 0548fc38) and its
//! README: the config message (detected as a text message containing `config`, no reply),
//! `sample_rate` (server default 8000), `words`, `phrase_list`, `max_alternatives`, one reply
//! per audio frame, `PartialResult`/`Result`/`FinalResult` shapes, and that the end message
//! is compared literally with `{"eof" : 1}` — spaces included; anything else goes to the
//! recogniser as audio (a text frame there fails the handler, and the socket closes with
//! 1011). Unverified against a real server here (no English Vosk model ships in a registry):
//! everything end to end, which the local fake (`sim::vosk`) covers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::{
    join, sleep_until_opt, SpeechToText, SttBackend, SttControl, SttError, SttEvent, SttInput,
    SttParams, SttStream, Transcript, STT_EVENT_CAPACITY, STT_INPUT_CAPACITY,
};
use crate::audio::resample::Resampler;
use crate::audio::INTERNAL_RATE;
use crate::component::{Component, Ctx, Errors};
use crate::telemetry::metrics;

/// Name in config, logs and the metrics' `backend` label.
const NAME: &str = "vosk";
/// The end-of-stream message, byte for byte: vosk-server compares it literally.
pub const EOF: &str = r#"{"eof" : 1}"#;
/// Audio held while an eof is answered (the server reads nothing after it), in seconds; the
/// oldest goes first.
const HELD_SECS: usize = 30;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `[stt] provider = "vosk"` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoskSttConfig {
    /// The server's WebSocket URL (`ws://host:2700`; `wss://` behind a TLS proxy).
    pub base_url: String,
    /// `utterance` (each VAD utterance on its own socket) or `continuous` (the call's audio).
    pub mode: String,
    /// Who ends the caller's turn in `continuous` mode: `vad` or `vosk` (its endpoint).
    pub end_of_turn: String,
    /// Rate the audio is sent at (`config.sample_rate`); Vosk's telephone models are 8 kHz.
    pub sample_rate: u32,
    /// `config.words`: word times in results (gives the utterance length).
    pub words: bool,
    /// `config.phrase_list`: restrict recognition to these phrases (`[]`: not sent; not
    /// every model supports it).
    pub phrase_list: Vec<String>,
    /// Time allowed for the WebSocket handshake.
    pub connect_timeout_ms: u64,
    /// Time allowed for the answer to `{"eof" : 1}`.
    pub finalize_timeout_ms: u64,
}

impl Default for VoskSttConfig {
    fn default() -> Self {
        Self {
            base_url: "ws://127.0.0.1:2700".into(),
            mode: "utterance".into(),
            end_of_turn: "vad".into(),
            sample_rate: 8_000,
            words: true,
            phrase_list: Vec::new(),
            connect_timeout_ms: 3_000,
            finalize_timeout_ms: 3_000,
        }
    }
}

/// Validated Vosk settings.
#[derive(Debug, Clone)]
pub struct VoskSttSettings {
    /// Server URL.
    pub base_url: String,
    /// `true`: continuous mode.
    pub continuous: bool,
    /// Vosk's endpoint ends the turn (continuous mode only).
    pub vosk_ends_turns: bool,
    /// Wire rate.
    pub sample_rate: u32,
    /// Word times.
    pub words: bool,
    /// Phrase list.
    pub phrase_list: Vec<String>,
    /// Handshake deadline.
    pub connect_timeout: Duration,
    /// `eof` answer deadline.
    pub finalize_timeout: Duration,
}

impl Component for VoskSttSettings {
    type Raw = VoskSttConfig;

    fn validate(raw: VoskSttConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            raw.base_url.starts_with("ws://") || raw.base_url.starts_with("wss://"),
            &ctx.key("base_url"),
            "must start with ws:// or wss:// (the vosk-server WebSocket, e.g. ws://127.0.0.1:2700)",
        );
        let continuous = match raw.mode.as_str() {
            "utterance" => false,
            "continuous" => true,
            _ => {
                errs.push(&ctx.key("mode"), "must be \"utterance\" or \"continuous\"");
                false
            }
        };
        let vosk_ends_turns = match raw.end_of_turn.as_str() {
            "vad" => false,
            "vosk" => true,
            _ => {
                errs.push(&ctx.key("end_of_turn"), "must be \"vad\" or \"vosk\"");
                false
            }
        };
        errs.check(
            !vosk_ends_turns || continuous,
            &ctx.key("end_of_turn"),
            "\"vosk\" needs mode = \"continuous\" (in utterance mode the VAD ends turns)",
        );
        errs.check(
            (8_000..=48_000).contains(&raw.sample_rate),
            &ctx.key("sample_rate"),
            "must be 8000..=48000",
        );
        errs.check(
            (100..=60_000).contains(&raw.connect_timeout_ms),
            &ctx.key("connect_timeout_ms"),
            "must be 100..=60000",
        );
        errs.check(
            (100..=60_000).contains(&raw.finalize_timeout_ms),
            &ctx.key("finalize_timeout_ms"),
            "must be 100..=60000",
        );
        Self {
            base_url: raw.base_url,
            continuous,
            vosk_ends_turns,
            sample_rate: raw.sample_rate,
            words: raw.words,
            phrase_list: raw.phrase_list,
            connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
            finalize_timeout: Duration::from_millis(raw.finalize_timeout_ms),
        }
    }
}

impl SttBackend for VoskSttSettings {
    fn build(&self) -> Result<Arc<dyn SpeechToText>, SttError> {
        Ok(Arc::new(VoskStt(Arc::new(self.clone()))))
    }
}

impl VoskSttSettings {
    /// The first message of every socket.
    pub fn config_message(&self) -> String {
        let mut config = serde_json::json!({
            "sample_rate": self.sample_rate,
            "words": self.words,
            "max_alternatives": 0,
        });
        if !self.phrase_list.is_empty() {
            config["phrase_list"] = serde_json::json!(self.phrase_list);
        }
        serde_json::json!({ "config": config }).to_string()
    }

    /// Opens one socket and sends the config, within the connect timeout.
    async fn connect(&self) -> Result<Ws, SttError> {
        match tokio::time::timeout(self.connect_timeout, self.open_socket()).await {
            Ok(res) => res,
            Err(_) => Err(unavailable(
                "timeout",
                format!(
                    "vosk: no connection within {} ms",
                    self.connect_timeout.as_millis()
                ),
            )),
        }
    }

    async fn open_socket(&self) -> Result<Ws, SttError> {
        // No Nagle: the `{"eof" : 1}` after the last audio must not wait for an ACK.
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(self.base_url.as_str(), None, true)
                .await
                .map_err(|e| match e {
                    tungstenite::Error::Http(resp) => unavailable(
                        "http",
                        format!("vosk: handshake refused with HTTP {}", resp.status()),
                    ),
                    e => unavailable("connect", format!("vosk: connect: {e}")),
                })?;
        ws.send(Message::text(self.config_message()))
            .await
            .map_err(|e| unavailable("connect", format!("vosk: config: {e}")))?;
        Ok(ws)
    }
}

/// Counts a failure of `kind` and makes it the session's error.
fn unavailable(kind: &'static str, msg: String) -> SttError {
    metrics::stt_error(NAME, kind);
    SttError::Unavailable(msg)
}

/// The Vosk backend.
#[derive(Debug, Clone)]
pub struct VoskStt(pub Arc<VoskSttSettings>);

#[async_trait]
impl SpeechToText for VoskStt {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sample_rate(&self) -> u32 {
        // Utterances come from the VAD at the internal rate and are resampled here once.
        if self.0.continuous {
            self.0.sample_rate
        } else {
            INTERNAL_RATE
        }
    }

    fn streaming(&self) -> bool {
        self.0.continuous
    }

    fn endpointing(&self) -> bool {
        self.0.vosk_ends_turns
    }

    fn partials(&self) -> bool {
        self.0.continuous
    }

    async fn open(
        &self,
        params: SttParams,
        cancel: CancellationToken,
    ) -> Result<SttStream, SttError> {
        if let Some(l) = &params.language {
            tracing::debug!(language = %l, "Vosk's language is its server's model.");
        }
        let ws = tokio::select! {
            _ = cancel.cancelled() => return Err(SttError::Closed),
            ws = self.0.connect() => ws,
        };
        let ws = match ws {
            Ok(ws) => ws,
            Err(e) => {
                metrics::stt_session(NAME, "failed");
                return Err(e);
            }
        };
        metrics::stt_session(NAME, "opened");
        let resampler = if self.0.continuous || self.0.sample_rate == INTERNAL_RATE {
            None
        } else {
            Some(
                Resampler::new(INTERNAL_RATE, self.0.sample_rate)
                    .map_err(|e| SttError::Init(format!("vosk: {e}")))?,
            )
        };
        let (input, input_rx) = mpsc::channel(STT_INPUT_CAPACITY);
        let (events_tx, events) = mpsc::channel(STT_EVENT_CAPACITY);
        let session = Session {
            cfg: self.0.clone(),
            input: input_rx,
            events: events_tx,
            cancel,
            resampler,
            socket: Some(Socket::new(ws)),
            turn: Turn::default(),
            eof: None,
            pcm: Vec::new(),
            wire: Vec::new(),
            held: Vec::new(),
        };
        tokio::spawn(tracing::Instrument::in_current_span(session.run()));
        Ok(SttStream { input, events })
    }
}

// === wire ===

/// A reply: `{"partial": …}` or a result (`{"text": …, "result": […]}`).
#[derive(Debug, Deserialize)]
struct Reply {
    partial: Option<String>,
    text: Option<String>,
    #[serde(default)]
    result: Vec<Word>,
}

#[derive(Debug, Deserialize)]
struct Word {
    /// Seconds from the socket's first sample.
    #[serde(default)]
    start: f64,
    #[serde(default)]
    end: f64,
    #[serde(default)]
    conf: f32,
}

// === session ===

/// One socket and what is owed on it.
struct Socket {
    ws: Ws,
    /// Audio frames not yet answered (each gets exactly one reply).
    unanswered: u64,
    /// Samples sent on it.
    samples: u64,
    /// Audio went out since the last result.
    since_result: bool,
}

impl Socket {
    fn new(ws: Ws) -> Self {
        Self {
            ws,
            unanswered: 0,
            samples: 0,
            since_result: false,
        }
    }
}

/// The caller's turn so far: the text of Vosk's results within it.
#[derive(Debug, Default)]
struct Turn {
    text: String,
    /// Length of the speech recognised (word spans, else audio sent), in ms.
    audio_ms: u64,
    confidence_sum: f32,
    words: u32,
    /// A partial was reported (barge-in goes out once per turn).
    started: bool,
    /// Audio of this turn went out on a socket that was lost.
    lost: Option<String>,
}

/// An `{"eof" : 1}` sent and not yet answered.
#[derive(Debug, Clone, Copy)]
struct Pending {
    asked: Instant,
    deadline: Instant,
}

struct Session {
    cfg: Arc<VoskSttSettings>,
    input: mpsc::Receiver<SttInput>,
    events: mpsc::Sender<SttEvent>,
    cancel: CancellationToken,
    /// Internal rate → wire rate (utterance mode, when they differ).
    resampler: Option<Resampler>,
    socket: Option<Socket>,
    turn: Turn,
    eof: Option<Pending>,
    pcm: Vec<i16>,
    wire: Vec<u8>,
    /// Audio (wire rate) that came while an eof was being answered: it goes to the next
    /// socket.
    held: Vec<i16>,
}

/// What one step of the loop decided.
enum Step {
    Go,
    Stop,
}

impl Session {
    async fn run(mut self) {
        loop {
            let deadline = self.eof.map(|p| p.deadline);
            let step = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => Step::Stop,
                msg = next_message(&mut self.socket) => self.on_socket(msg).await,
                input = self.input.recv() => match input {
                    Some(SttInput::Audio(pcm)) => self.on_audio(pcm).await,
                    // Vosk closes no idle socket; the server's pings are answered while the
                    // socket is read.
                    Some(SttInput::Control(SttControl::KeepAlive)) => Step::Go,
                    Some(SttInput::Control(SttControl::Finalize)) => self.on_finalize().await,
                    Some(SttInput::Control(SttControl::Close)) | None => Step::Stop,
                },
                _ = sleep_until_opt(deadline) => {
                    tracing::debug!("Vosk did not answer eof in time; the turn ends with what arrived.");
                    self.socket = None;
                    self.end_turn().await
                }
            };
            if matches!(step, Step::Stop) {
                break;
            }
        }
        if let Some(mut s) = self.socket.take() {
            // A clean end: the server answers eof and closes its side.
            let bye = async {
                let _ = s.ws.send(Message::text(EOF)).await;
                let _ = s.ws.close(None).await;
            };
            let _ = tokio::time::timeout(Duration::from_millis(200), bye).await;
        }
    }

    /// A socket for the next audio: the one open, or a new one.
    async fn ensure_socket(&mut self) -> bool {
        if self.socket.is_some() {
            return true;
        }
        match self.cfg.connect().await {
            Ok(ws) => {
                self.socket = Some(Socket::new(ws));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "Vosk connect failed; this utterance is lost.");
                self.turn.lost.get_or_insert(e.to_string());
                false
            }
        }
    }

    async fn on_audio(&mut self, pcm: Vec<i16>) -> Step {
        if pcm.is_empty() || self.turn.lost.is_some() {
            return Step::Go;
        }
        self.pcm.clear();
        match &mut self.resampler {
            Some(r) => r.process(&pcm, &mut self.pcm),
            None => self.pcm.extend_from_slice(&pcm),
        }
        // The socket that got the eof reads nothing more: this audio is the next socket's.
        if self.eof.is_some() {
            self.held.extend_from_slice(&self.pcm);
            let max = HELD_SECS * self.cfg.sample_rate as usize;
            if self.held.len() > max {
                self.held.drain(..self.held.len() - max);
            }
            return Step::Go;
        }
        if !self.ensure_socket().await {
            return Step::Go;
        }
        if !self.held.is_empty() {
            // What was held goes first, then this frame.
            self.held.extend_from_slice(&self.pcm);
            return self.send_held().await;
        }
        self.send_pcm().await
    }

    /// Sends the held audio to the open socket, in 100 ms frames.
    async fn send_held(&mut self) -> Step {
        if self.held.is_empty() || self.socket.is_none() {
            return Step::Go;
        }
        let held = std::mem::take(&mut self.held);
        let frame = (self.cfg.sample_rate / 10) as usize;
        for chunk in held.chunks(frame) {
            self.pcm.clear();
            self.pcm.extend_from_slice(chunk);
            if matches!(self.send_pcm().await, Step::Stop) {
                return Step::Stop;
            }
        }
        self.pcm.clear();
        Step::Go
    }

    async fn send_pcm(&mut self) -> Step {
        if self.pcm.is_empty() {
            return Step::Go;
        }
        let Some(s) = &mut self.socket else {
            return Step::Go;
        };
        self.wire.clear();
        self.wire
            .extend(self.pcm.iter().flat_map(|x| x.to_le_bytes()));
        s.samples += self.pcm.len() as u64;
        s.unanswered += 1;
        s.since_result = true;
        if let Err(e) = s.ws.send(Message::binary(self.wire.clone())).await {
            return self.lost(format!("send: {e}")).await;
        }
        Step::Go
    }

    /// The VAD ended the utterance: `{"eof" : 1}` flushes it (the answer ends the turn).
    async fn on_finalize(&mut self) -> Step {
        if self.eof.is_some() {
            // A second Finalize before the first was answered: answer the first now.
            self.socket = None;
            if matches!(self.end_turn().await, Step::Stop) {
                return Step::Stop;
            }
        }
        if !self.held.is_empty()
            && self.ensure_socket().await
            && matches!(self.send_held().await, Step::Stop)
        {
            return Step::Stop;
        }
        if let Some(r) = &mut self.resampler {
            self.pcm.clear();
            r.flush(&mut self.pcm);
            r.reset();
            if matches!(self.send_pcm().await, Step::Stop) {
                return Step::Stop;
            }
        }
        let pending = self.socket.as_ref().is_some_and(|s| s.since_result);
        if !pending {
            return self.end_turn().await;
        }
        let Some(s) = &mut self.socket else {
            return self.end_turn().await;
        };
        if let Err(e) = s.ws.send(Message::text(EOF)).await {
            return self.lost(format!("send: {e}")).await;
        }
        let asked = Instant::now();
        self.eof = Some(Pending {
            asked,
            deadline: asked + self.cfg.finalize_timeout,
        });
        Step::Go
    }

    async fn on_socket(&mut self, msg: Option<Result<Message, tungstenite::Error>>) -> Step {
        match msg {
            Some(Ok(Message::Text(t))) => self.on_reply(&t).await,
            Some(Ok(Message::Close(frame))) => {
                let why = frame.map_or_else(
                    || "closed without a reason".to_string(),
                    |f| format!("closed with {} {}", u16::from(f.code), f.reason),
                );
                self.closed(why).await
            }
            Some(Ok(_)) => Step::Go,
            Some(Err(e)) => self.closed(e.to_string()).await,
            None => self.closed("connection ended".into()).await,
        }
    }

    /// The server closed the socket: after an answered eof that is the protocol; otherwise
    /// the utterance on it is lost.
    async fn closed(&mut self, why: String) -> Step {
        let owed = self
            .socket
            .as_ref()
            .is_some_and(|s| s.since_result || s.unanswered > 0);
        if owed || self.eof.is_some() {
            return self.lost(why).await;
        }
        self.socket = None;
        self.reconnect_soon().await
    }

    /// The socket failed with audio of this turn on it.
    async fn lost(&mut self, why: String) -> Step {
        metrics::stt_error(NAME, "disconnect");
        tracing::warn!(error = %why, "Vosk connection lost.");
        self.socket = None;
        self.turn.lost.get_or_insert(why);
        if self.eof.is_some() {
            return self.end_turn().await;
        }
        Step::Go
    }

    async fn on_reply(&mut self, text: &str) -> Step {
        let reply = match serde_json::from_str::<Reply>(text) {
            Ok(r) => r,
            Err(e) => {
                metrics::stt_error(NAME, "protocol");
                tracing::warn!(error = %e, "Unreadable Vosk reply ignored.");
                return Step::Go;
            }
        };
        let Some(s) = &mut self.socket else {
            return Step::Go;
        };
        // Replies to audio come first; the one after them all answers the eof.
        let answers_eof = s.unanswered == 0 && self.eof.is_some();
        s.unanswered = s.unanswered.saturating_sub(1);
        let rate = u64::from(self.cfg.sample_rate);
        let sent_ms = s.samples * 1000 / rate;
        if let Some(partial) = reply.partial {
            let partial = partial.trim();
            if partial.is_empty() {
                return Step::Go;
            }
            // In utterance mode the VAD already drives barge-in.
            if self.cfg.continuous
                && !std::mem::replace(&mut self.turn.started, true)
                && !self.emit(SttEvent::SpeechStarted).await
            {
                return Step::Stop;
            }
            let t = Transcript {
                text: join(&self.turn.text, partial),
                confidence: None,
                audio_ms: self.turn.audio_ms,
                decode_ms: 0,
                queue_ms: 0,
            };
            return self.step(self.emit(SttEvent::Partial(t)).await);
        }
        if let Some(text) = reply.text {
            s.since_result = false;
            let text = text.trim();
            if !text.is_empty() {
                self.turn.text = join(&self.turn.text, text);
                self.turn.audio_ms += match (reply.result.first(), reply.result.last()) {
                    (Some(a), Some(b)) => ((b.end - a.start).max(0.0) * 1000.0) as u64,
                    _ => sent_ms,
                };
                self.turn.confidence_sum += reply.result.iter().map(|w| w.conf).sum::<f32>();
                self.turn.words += reply.result.len() as u32;
            }
            if answers_eof {
                // The server closes this socket; the next utterance gets a fresh one now.
                self.socket = None;
                if matches!(self.end_turn().await, Step::Stop) {
                    return Step::Stop;
                }
                return self.reconnect_soon().await;
            }
            if self.cfg.vosk_ends_turns && !self.turn.text.is_empty() {
                return self.end_turn().await;
            }
        }
        Step::Go
    }

    /// Opens the next socket ahead of the next utterance (best effort: a failure is tried
    /// again at the next audio).
    async fn reconnect_soon(&mut self) -> Step {
        if self.socket.is_none() {
            if let Ok(ws) = self.cfg.connect().await {
                self.socket = Some(Socket::new(ws));
            }
        }
        self.send_held().await
    }

    /// Emits the turn so far (a final, possibly empty, or the error that lost it).
    async fn end_turn(&mut self) -> Step {
        let pending = self.eof.take();
        let turn = std::mem::take(&mut self.turn);
        if let Some(why) = turn.lost {
            return self.step(self.emit(SttEvent::Error(format!("vosk: {why}"))).await);
        }
        let decode_ms = pending.map_or(0, |p| p.asked.elapsed().as_millis() as u64);
        if turn.audio_ms > 0 {
            metrics::stt_final_latency(NAME, Duration::from_millis(decode_ms));
        }
        let t = Transcript {
            text: turn.text,
            confidence: (turn.words > 0)
                .then(|| (turn.confidence_sum / turn.words as f32).clamp(0.0, 1.0)),
            audio_ms: turn.audio_ms,
            decode_ms,
            queue_ms: 0,
        };
        self.step(self.emit(SttEvent::Final(t)).await)
    }

    fn step(&self, sent: bool) -> Step {
        if sent {
            Step::Go
        } else {
            Step::Stop
        }
    }

    async fn emit(&self, ev: SttEvent) -> bool {
        self.events.send(ev).await.is_ok()
    }
}

async fn next_message(socket: &mut Option<Socket>) -> Option<Result<Message, tungstenite::Error>> {
    match socket {
        Some(s) => s.ws.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stt::SttSettings;

    /// The conformance subject: utterance mode against the local fake, and against one that
    /// drops the connection at the second eof (that utterance fails; the next one gets a new
    /// socket).
    #[cfg(feature = "sim")]
    pub(crate) async fn subject() -> crate::stt::conformance::Subject {
        use crate::sim::vosk::{VoskSim, VoskSimOptions};
        let start = |drop_on_eof| async move {
            let sim = VoskSim::start(VoskSimOptions {
                drop_on_eof,
                ..VoskSimOptions::default()
            })
            .await
            .unwrap();
            let toml = format!("provider = \"vosk\"\nbase_url = \"{}\"", sim.base_url());
            let backend = crate::stt::build(&SttSettings::from_toml("stt", &toml).unwrap());
            // The fake serves the whole test process.
            Box::leak(Box::new(sim));
            backend.unwrap()
        };
        crate::stt::conformance::Subject {
            backend: start(None).await,
            speech: crate::stt::conformance::speech("Hello there.", INTERNAL_RATE).await,
            expect: Some("balance"),
            faulty: Some(start(Some(2)).await),
        }
    }

    fn settings(extra: &str) -> Result<VoskSttSettings, Vec<crate::component::ConfigError>> {
        let toml = format!("provider = \"vosk\"\n{extra}");
        match SttSettings::from_toml("stt", &toml)? {
            SttSettings::Vosk(v) => Ok(v),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_end_message_is_byte_for_byte_what_vosk_server_compares_with() {
        assert_eq!(EOF.as_bytes(), b"{\"eof\" : 1}");
    }

    #[test]
    fn defaults_are_an_utterance_session_at_8_khz() {
        let s = settings("").unwrap();
        assert!(!s.continuous && !s.vosk_ends_turns);
        assert_eq!(
            s.config_message(),
            r#"{"config":{"max_alternatives":0,"sample_rate":8000,"words":true}}"#
        );
        let b = VoskStt(Arc::new(s));
        assert_eq!(
            (b.sample_rate(), b.streaming(), b.endpointing()),
            (INTERNAL_RATE, false, false)
        );
        let s = settings(
            "mode = \"continuous\"\nend_of_turn = \"vosk\"\nphrase_list = [\"yes\", \"no\"]",
        )
        .unwrap();
        assert!(s.config_message().contains(r#""phrase_list":["yes","no"]"#));
        let b = VoskStt(Arc::new(s));
        assert_eq!(
            (b.sample_rate(), b.streaming(), b.endpointing()),
            (8_000, true, true)
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let errs = settings(
            "base_url = \"http://x\"\nmode = \"batch\"\nend_of_turn = \"vosk\"\nsample_rate = 100",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "stt.base_url",
                "stt.mode",
                "stt.end_of_turn",
                "stt.sample_rate"
            ],
            "{errs:?}"
        );
    }

    /// `[languages.es.stt]` points at another server (Vosk's language is its model).
    #[test]
    fn a_language_overlay_points_at_another_server() {
        let toml = r#"
            [stt]
            provider = "vosk"
            base_url = "ws://vosk-en:2700"
            [languages.es.stt]
            base_url = "ws://vosk-es:2700"
            [bot]
            webhook_url = "https://bots.kore.ai/chatbot/v2/webhook/st-1"
            client_id = "cs"
            client_secret = "s"
        "#;
        let s = crate::config::validate(crate::config::load_str(toml, Default::default()).unwrap())
            .unwrap();
        let Some(SttSettings::Vosk(es)) = &s.languages[0].stt else {
            panic!("{:?}", s.languages)
        };
        assert_eq!(es.base_url, "ws://vosk-es:2700");
    }

    #[test]
    fn replies_parse_as_vosk_server_sends_them() {
        let r: Reply = serde_json::from_str("{\n  \"partial\" : \"what is my\"\n}").unwrap();
        assert_eq!(r.partial.as_deref(), Some("what is my"));
        let r: Reply = serde_json::from_str(
            r#"{"result" : [ {"word": "balance", "start" : 1.2, "end" : 1.6, "conf" : 1} ], "text" : "balance" }"#,
        )
        .unwrap();
        assert_eq!((r.text.as_deref(), r.result.len()), (Some("balance"), 1));
        assert!((r.result[0].end - 1.6).abs() < 1e-9);
        let r: Reply = serde_json::from_str(r#"{"text" : ""}"#).unwrap();
        assert!(r.partial.is_none() && r.result.is_empty());
    }

    #[cfg(feature = "sim")]
    mod against_the_fake {
        use super::*;
        use crate::sim::vosk::{VoskSim, VoskSimOptions};
        use crate::stt::conformance::{next, next_final as outcome, params, send_frames};

        async fn backend(sim: &VoskSim, extra: &str) -> Arc<dyn SpeechToText> {
            let toml = format!(
                "provider = \"vosk\"\nbase_url = \"{}\"\n{extra}",
                sim.base_url()
            );
            crate::stt::conformance::built(&toml)
        }

        /// Utterance mode: the config comes first (8 kHz), the VAD's 16 kHz utterance goes out
        /// resampled to 8 kHz, every frame is answered once, and the eof's answer ends the
        /// turn; the server's close is the protocol, and the next socket is already open.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_utterance_goes_out_at_8_khz_and_ends_with_the_literal_eof() {
            let sim = VoskSim::start(VoskSimOptions::default()).await.unwrap();
            let b = backend(&sim, "").await;
            let mut s = b.open(params(), CancellationToken::new()).await.unwrap();
            let speech = crate::stt::conformance::speech("Hello there.", INTERNAL_RATE).await;
            send_frames(&s, &speech, 320).await;
            s.input
                .send(SttInput::Control(SttControl::Finalize))
                .await
                .unwrap();
            let SttEvent::Final(t) = outcome(&mut s).await else {
                panic!("no final")
            };
            assert_eq!(t.text, "i would like to check my account balance");
            assert!(t.audio_ms > 300, "{t:?}");
            let end = Instant::now() + Duration::from_secs(5);
            while sim.connections().len() < 2 {
                assert!(Instant::now() < end, "no next socket");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let c = &sim.connections()[0];
            assert_eq!(c.config.as_ref().unwrap()["sample_rate"], 8000);
            let expected = speech.len(); // 16 kHz samples → 8 kHz, 2 bytes each
            assert!(
                c.audio_bytes.abs_diff(expected) < 400,
                "{} of {expected}",
                c.audio_bytes
            );
            assert_eq!(
                c.replies.len(),
                c.audio_frames + 1,
                "one reply per frame, then the eof's"
            );
            assert_eq!((c.eofs, c.ended.as_deref()), (1, Some("eof")));
            s.input
                .send(SttInput::Control(SttControl::Close))
                .await
                .unwrap();
            while next(&mut s).await.is_some() {}
        }

        /// Continuous mode with Vosk's endpoint ending the turn: 8 kHz audio as it comes,
        /// the first partial stands for the caller's speech start (barge-in), and the result
        /// at Vosk's endpoint is the turn; no eof is needed.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn continuous_mode_ends_turns_at_vosks_endpoint() {
            let sim = VoskSim::start(VoskSimOptions::default()).await.unwrap();
            let b = backend(&sim, "mode = \"continuous\"\nend_of_turn = \"vosk\"").await;
            let mut s = b.open(params(), CancellationToken::new()).await.unwrap();
            let speech = crate::stt::conformance::speech("Hello there.", 8_000).await;
            send_frames(&s, &speech, 160).await;
            send_frames(&s, &[0i16; 8_000], 160).await;
            assert_eq!(next(&mut s).await, Some(SttEvent::SpeechStarted));
            let SttEvent::Final(t) = outcome(&mut s).await else {
                panic!("no final")
            };
            assert_eq!(t.text, "i would like to check my account balance");
            let c = &sim.connections()[0];
            assert_eq!(c.eofs, 0);
            assert!(c.replies.iter().any(|r| r.contains("\"result\"")));
        }

        /// Continuous mode ended by the VAD: audio keeps coming while the eof is answered;
        /// it is held for the next socket (the old one reads nothing after its eof), so the
        /// next turn is recognised too and nothing is reported lost.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn audio_during_an_eof_goes_to_the_next_socket() {
            let sim = VoskSim::start(VoskSimOptions {
                latency: Duration::from_millis(5),
                ..VoskSimOptions::default()
            })
            .await
            .unwrap();
            let b = backend(&sim, "mode = \"continuous\"").await;
            let mut s = b.open(params(), CancellationToken::new()).await.unwrap();
            let speech = crate::stt::conformance::speech("Hello there.", 8_000).await;
            send_frames(&s, &speech, 160).await;
            s.input
                .send(SttInput::Control(SttControl::Finalize))
                .await
                .unwrap();
            // At once, the next turn (while the eof is being answered).
            send_frames(&s, &speech, 160).await;
            let SttEvent::Final(t) = outcome(&mut s).await else {
                panic!("the first turn was lost")
            };
            assert!(t.text.contains("balance"), "{t:?}");
            s.input
                .send(SttInput::Control(SttControl::Finalize))
                .await
                .unwrap();
            let SttEvent::Final(t) = outcome(&mut s).await else {
                panic!("the second turn was lost")
            };
            assert!(t.text.contains("balance"), "{t:?}");
            let c = sim.connections();
            assert!(c.len() >= 2, "{c:?}");
            for c in &c[..2] {
                assert_eq!(c.replies.len(), c.audio_frames + 1, "{c:?}");
                assert_eq!(c.ended.as_deref(), Some("eof"));
            }
            assert_eq!(c[0].audio_bytes + c[1].audio_bytes, speech.len() * 4);
        }

        /// What the session guards against: vosk-server takes only the exact eof; the
        /// compact `{"eof":1}` is handed to the recogniser and the socket fails with 1011.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_fake_refuses_an_eof_without_the_spaces() {
            let sim = VoskSim::start(VoskSimOptions::default()).await.unwrap();
            let (mut ws, _) = tokio_tungstenite::connect_async(sim.base_url())
                .await
                .unwrap();
            ws.send(Message::text(r#"{"eof":1}"#)).await.unwrap();
            let frame = loop {
                match ws.next().await {
                    Some(Ok(Message::Close(f))) => break f,
                    Some(Ok(_)) => {}
                    other => panic!("{other:?}"),
                }
            };
            assert_eq!(frame.map(|f| u16::from(f.code)), Some(1011));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_slow_handshake_times_out() {
            let sim = VoskSim::start(VoskSimOptions {
                handshake_delay: Duration::from_secs(3),
                ..VoskSimOptions::default()
            })
            .await
            .unwrap();
            let b = backend(&sim, "connect_timeout_ms = 300").await;
            let Err(e) = b.open(params(), CancellationToken::new()).await else {
                panic!("opened")
            };
            assert!(e.to_string().contains("no connection within 300 ms"), "{e}");
        }
    }
}
