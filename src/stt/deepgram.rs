//! Deepgram streaming STT (Nova, WebSocket `/v1/listen`): one socket per call, fed the call's
//! audio continuously at the telephony rate (μ-law or linear16, no resampling when the call's
//! rate is the configured one). `Results` become partials and finals, `SpeechStarted` drives
//! barge-in, and either voxhook's VAD (`Finalize`) or Deepgram's own endpointing
//! (`speech_final` / `UtteranceEnd`) ends the caller's turn, as configured. Silence is
//! covered by `KeepAlive` (Deepgram closes a socket that hears nothing for 10 s), `Close`
//! sends `CloseStream`, and a dropped socket is reconnected a few times before the session
//! gives up.
//!
//! Wire details: README "Deepgram STT" (what was checked against Deepgram's documentation and
//! what only against the local fake, `sim::deepgram`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::{
    join, sleep_until_opt, SpeechToText, SttBackend, SttControl, SttError, SttEvent, SttInput,
    SttParams, SttStream, Transcript, STT_EVENT_CAPACITY, STT_INPUT_CAPACITY,
};
use crate::audio::codec::Codec;
use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;
use crate::telemetry::metrics;

/// Name in config, logs and the metrics' `backend` label.
const NAME: &str = "deepgram";
/// After an endpoint (`speech_final`) with nothing heard since, a `Finalize` has little to
/// flush and Deepgram may not answer it: wait only this long.
const SETTLED_GRACE: Duration = Duration::from_millis(300);
/// How long `CloseStream` may take to flush before the session stops waiting.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Inputs kept while a socket is replaced (~30 s of 20 ms frames); the oldest audio is
/// dropped first.
const RECONNECT_BACKLOG: usize = 1_500;
/// First reconnect delay; doubled for each further attempt.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `[stt] provider = "deepgram"` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeepgramSttConfig {
    /// API key (`Authorization: Token …`); best from the environment
    /// (`VOXHOOK__STT__API_KEY`) or a systemd credential.
    pub api_key: SensitiveString,
    /// `wss://api.deepgram.com`, or a self-hosted / test endpoint (`ws://127.0.0.1:…`).
    pub base_url: String,
    /// `model` query parameter.
    pub model: String,
    /// `language` query parameter (a session's language overrides it).
    pub language: String,
    /// `mulaw` (telephony's own encoding, half the bytes) or `linear16`.
    pub encoding: String,
    /// Rate the audio is sent at; the listener resamples only when the call's rate differs.
    pub sample_rate: u32,
    /// `interim_results`: partial hypotheses while the caller speaks.
    pub interim_results: bool,
    /// `endpointing`: ms of silence before Deepgram marks `speech_final` (0: `false`).
    pub endpointing_ms: u32,
    /// `utterance_end_ms`: word gap before an `UtteranceEnd` (0: not requested; needs
    /// `interim_results`).
    pub utterance_end_ms: u32,
    /// `vad_events`: `SpeechStarted` messages, used for barge-in.
    pub vad_events: bool,
    /// `smart_format` (numbers, punctuation).
    pub smart_format: bool,
    /// Who ends the caller's turn: `vad` (voxhook's VAD, then `Finalize`) or `deepgram`
    /// (`speech_final` / `UtteranceEnd`).
    pub end_of_turn: String,
    /// Time allowed for the WebSocket handshake.
    pub connect_timeout_ms: u64,
    /// Time allowed for the answer to a `Finalize` before the turn ends with what arrived.
    pub finalize_timeout_ms: u64,
    /// Reconnects per call after the socket drops (0: none).
    pub max_reconnects: u32,
    /// A `KeepAlive` goes out after this long without sending anything (Deepgram asks for
    /// one every 3–5 s and closes with `NET-0001` after 10 s of nothing).
    pub keepalive_ms: u64,
}

impl Default for DeepgramSttConfig {
    fn default() -> Self {
        Self {
            api_key: SensitiveString::default(),
            base_url: "wss://api.deepgram.com".into(),
            model: "nova-3".into(),
            language: "en".into(),
            encoding: "mulaw".into(),
            sample_rate: 8_000,
            interim_results: true,
            endpointing_ms: 300,
            utterance_end_ms: 1_000,
            vad_events: true,
            smart_format: true,
            end_of_turn: "vad".into(),
            connect_timeout_ms: 5_000,
            finalize_timeout_ms: 1_500,
            max_reconnects: 2,
            keepalive_ms: 4_000,
        }
    }
}

/// How audio goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// G.711 μ-law bytes.
    Mulaw,
    /// 16-bit little-endian PCM.
    Linear16,
}

impl Encoding {
    fn as_str(self) -> &'static str {
        match self {
            Self::Mulaw => "mulaw",
            Self::Linear16 => "linear16",
        }
    }
}

/// Validated Deepgram settings.
#[derive(Debug, Clone)]
pub struct DeepgramSttSettings {
    /// The key (never printed).
    pub api_key: SensitiveString,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// Model.
    pub model: String,
    /// Default language.
    pub language: String,
    /// Wire encoding.
    pub encoding: Encoding,
    /// Wire rate.
    pub sample_rate: u32,
    /// Partials.
    pub interim_results: bool,
    /// `endpointing` in ms (`None`: `false`).
    pub endpointing_ms: Option<u32>,
    /// `utterance_end_ms` (`None`: not requested).
    pub utterance_end_ms: Option<u32>,
    /// `SpeechStarted` events.
    pub vad_events: bool,
    /// Smart formatting.
    pub smart_format: bool,
    /// Deepgram's endpointing ends the turn (`false`: the VAD does).
    pub deepgram_ends_turns: bool,
    /// Handshake deadline.
    pub connect_timeout: Duration,
    /// `Finalize` answer deadline.
    pub finalize_timeout: Duration,
    /// Reconnects per call.
    pub max_reconnects: u32,
    /// Idle time before a `KeepAlive`.
    pub keepalive: Duration,
}

/// A model or language name goes into the query unescaped, so it is kept to URL-safe
/// characters.
fn query_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Component for DeepgramSttSettings {
    type Raw = DeepgramSttConfig;

    fn validate(raw: DeepgramSttConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        let env = format!(
            "VOXHOOK__{}__API_KEY",
            ctx.path.replace('.', "__").to_uppercase()
        );
        errs.check(
            !raw.api_key.is_empty(),
            &ctx.key("api_key"),
            &format!("missing: the Deepgram API key (set it here or in {env})"),
        );
        let base_url = raw.base_url.trim_end_matches('/').to_string();
        errs.check(
            base_url.starts_with("wss://") || base_url.starts_with("ws://"),
            &ctx.key("base_url"),
            "must start with wss:// (or ws:// for a local endpoint)",
        );
        errs.check(
            query_safe(&raw.model),
            &ctx.key("model"),
            "must be a model name (letters, digits, - _ .)",
        );
        errs.check(
            query_safe(&raw.language),
            &ctx.key("language"),
            "must be a language code such as en, en-US or multi",
        );
        let encoding = match raw.encoding.as_str() {
            "mulaw" => Encoding::Mulaw,
            "linear16" => Encoding::Linear16,
            _ => {
                errs.push(&ctx.key("encoding"), "must be \"mulaw\" or \"linear16\"");
                Encoding::Linear16
            }
        };
        errs.check(
            (8_000..=48_000).contains(&raw.sample_rate),
            &ctx.key("sample_rate"),
            "must be 8000..=48000",
        );
        errs.check(
            raw.utterance_end_ms == 0 || raw.interim_results,
            &ctx.key("utterance_end_ms"),
            "needs interim_results = true (Deepgram rejects it otherwise)",
        );
        errs.check(
            raw.utterance_end_ms == 0 || raw.utterance_end_ms >= 1_000,
            &ctx.key("utterance_end_ms"),
            "must be 0 (off) or at least 1000 (Deepgram's minimum)",
        );
        let deepgram_ends_turns = match raw.end_of_turn.as_str() {
            "vad" => false,
            "deepgram" => true,
            _ => {
                errs.push(&ctx.key("end_of_turn"), "must be \"vad\" or \"deepgram\"");
                false
            }
        };
        errs.check(
            !deepgram_ends_turns || raw.endpointing_ms > 0 || raw.utterance_end_ms > 0,
            &ctx.key("end_of_turn"),
            "\"deepgram\" needs endpointing_ms or utterance_end_ms above 0",
        );
        errs.check(
            (100..=60_000).contains(&raw.connect_timeout_ms),
            &ctx.key("connect_timeout_ms"),
            "must be 100..=60000",
        );
        errs.check(
            (100..=30_000).contains(&raw.finalize_timeout_ms),
            &ctx.key("finalize_timeout_ms"),
            "must be 100..=30000",
        );
        errs.check(
            (100..=9_000).contains(&raw.keepalive_ms),
            &ctx.key("keepalive_ms"),
            "must be 100..=9000 (Deepgram closes after 10 s without data)",
        );
        Self {
            api_key: raw.api_key,
            base_url,
            model: raw.model,
            language: raw.language,
            encoding,
            sample_rate: raw.sample_rate,
            interim_results: raw.interim_results,
            endpointing_ms: (raw.endpointing_ms > 0).then_some(raw.endpointing_ms),
            utterance_end_ms: (raw.utterance_end_ms > 0).then_some(raw.utterance_end_ms),
            vad_events: raw.vad_events,
            smart_format: raw.smart_format,
            deepgram_ends_turns,
            connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
            finalize_timeout: Duration::from_millis(raw.finalize_timeout_ms),
            max_reconnects: raw.max_reconnects,
            keepalive: Duration::from_millis(raw.keepalive_ms),
        }
    }
}

impl SttBackend for DeepgramSttSettings {
    fn build(&self) -> Result<Arc<dyn SpeechToText>, SttError> {
        Ok(Arc::new(DeepgramStt(Arc::new(self.clone()))))
    }
}

impl DeepgramSttSettings {
    /// The `/v1/listen` URL for one session in `language`.
    pub fn listen_url(&self, language: &str) -> String {
        let endpointing = match self.endpointing_ms {
            Some(ms) => ms.to_string(),
            None => "false".into(),
        };
        let mut url = format!(
            "{}/v1/listen?model={}&language={language}&encoding={}&sample_rate={}&channels=1\
             &interim_results={}&endpointing={endpointing}&vad_events={}&smart_format={}",
            self.base_url,
            self.model,
            self.encoding.as_str(),
            self.sample_rate,
            self.interim_results,
            self.vad_events,
            self.smart_format,
        );
        if let Some(ms) = self.utterance_end_ms {
            url.push_str(&format!("&utterance_end_ms={ms}"));
        }
        url
    }

    /// Opens one socket, within the connect timeout.
    async fn connect(&self, language: &str) -> Result<Ws, SttError> {
        let url = self.listen_url(language);
        let unavailable = |kind: &'static str, msg: String| {
            metrics::stt_error(NAME, kind);
            SttError::Unavailable(msg)
        };
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| unavailable("connect", format!("deepgram: bad URL: {e}")))?;
        let auth = format!("Token {}", self.api_key.expose())
            .parse()
            .map_err(|_| unavailable("auth", "deepgram: API key is not a valid header".into()))?;
        req.headers_mut().insert("authorization", auth);
        // No Nagle: a `Finalize` right after the last audio must not wait for an ACK.
        let connecting = tokio_tungstenite::connect_async_with_config(req, None, true);
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Err(_) => Err(unavailable(
                "timeout",
                format!(
                    "deepgram: no handshake within {} ms",
                    self.connect_timeout.as_millis()
                ),
            )),
            Ok(Err(tungstenite::Error::Http(resp))) => {
                let status = resp.status();
                let why = resp
                    .headers()
                    .get("dg-error")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .or_else(|| {
                        let body = resp.body().as_deref().unwrap_or_default();
                        Some(String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
                    })
                    .unwrap_or_default();
                let kind = if matches!(status.as_u16(), 401 | 403) {
                    "auth"
                } else {
                    "http"
                };
                Err(unavailable(
                    kind,
                    format!("deepgram: handshake refused with HTTP {status}: {why}"),
                ))
            }
            Ok(Err(e)) => Err(unavailable("connect", format!("deepgram: connect: {e}"))),
            Ok(Ok((ws, _))) => Ok(ws),
        }
    }
}

/// The Deepgram backend.
#[derive(Debug, Clone)]
pub struct DeepgramStt(pub Arc<DeepgramSttSettings>);

#[async_trait]
impl SpeechToText for DeepgramStt {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sample_rate(&self) -> u32 {
        self.0.sample_rate
    }

    fn streaming(&self) -> bool {
        true
    }

    fn endpointing(&self) -> bool {
        self.0.deepgram_ends_turns
    }

    fn partials(&self) -> bool {
        self.0.interim_results
    }

    async fn open(
        &self,
        params: SttParams,
        cancel: CancellationToken,
    ) -> Result<SttStream, SttError> {
        // A session's language goes into the query too: only a URL-safe code is used.
        let language = match params.language {
            Some(l) if query_safe(&l) => l,
            Some(l) => {
                tracing::warn!(language = %l, "Language code unusable in a Deepgram query; the configured one is used.");
                self.0.language.clone()
            }
            None => self.0.language.clone(),
        };
        let ws = tokio::select! {
            _ = cancel.cancelled() => return Err(SttError::Closed),
            ws = self.0.connect(&language) => ws,
        };
        let ws = match ws {
            Ok(ws) => ws,
            Err(e) => {
                metrics::stt_session(NAME, "failed");
                return Err(e);
            }
        };
        metrics::stt_session(NAME, "opened");
        let (input, input_rx) = mpsc::channel(STT_INPUT_CAPACITY);
        let (events_tx, events) = mpsc::channel(STT_EVENT_CAPACITY);
        let session = Session {
            cfg: self.0.clone(),
            language,
            input: input_rx,
            events: events_tx,
            cancel,
            turn: Turn::default(),
            finalize: None,
            sent_secs: 0.0,
            audio_since_result: false,
            last_sent: Instant::now(),
            closing: None,
            wire: Vec::new(),
            backlog: VecDeque::new(),
        };
        tokio::spawn(tracing::Instrument::in_current_span(session.run(ws)));
        Ok(SttStream { input, events })
    }
}

// === wire ===

/// The messages Deepgram sends (`type` tag); the others are ignored.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum ServerMessage {
    Results(ResultsMessage),
    SpeechStarted {},
    UtteranceEnd {},
    Metadata {},
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct ResultsMessage {
    #[serde(default)]
    is_final: bool,
    #[serde(default)]
    speech_final: bool,
    #[serde(default)]
    from_finalize: bool,
    #[serde(default)]
    start: f64,
    #[serde(default)]
    duration: f64,
    channel: ResultsChannel,
}

#[derive(Debug, Deserialize)]
struct ResultsChannel {
    #[serde(default)]
    alternatives: Vec<Alternative>,
}

#[derive(Debug, Deserialize)]
struct Alternative {
    #[serde(default)]
    transcript: String,
    #[serde(default)]
    confidence: f32,
}

const KEEPALIVE: &str = r#"{"type":"KeepAlive"}"#;
const FINALIZE: &str = r#"{"type":"Finalize"}"#;
const CLOSE_STREAM: &str = r#"{"type":"CloseStream"}"#;

// === session ===

/// The caller's turn so far: the text of the final segments, with their span.
#[derive(Debug, Default)]
struct Turn {
    text: String,
    /// Stream time (s) of the first and the end of the last segment with words.
    span: Option<(f64, f64)>,
    confidence_sum: f32,
    segments: u32,
    /// An endpoint was seen and nothing was heard since.
    settled: bool,
}

/// An unanswered `Finalize`.
#[derive(Debug, Clone, Copy)]
struct Pending {
    asked: Instant,
    deadline: Instant,
}

/// How one socket's life ended.
enum End {
    /// Closed, cancelled or the listener went away: the session is over.
    Done,
    /// The socket failed or the server closed it: reconnect if allowed.
    Lost(String),
}

struct Session {
    cfg: Arc<DeepgramSttSettings>,
    language: String,
    input: mpsc::Receiver<SttInput>,
    events: mpsc::Sender<SttEvent>,
    cancel: CancellationToken,
    turn: Turn,
    finalize: Option<Pending>,
    /// Seconds of audio sent on this socket (Deepgram's stream clock).
    sent_secs: f64,
    /// Audio went out after the last `Results`: a `Finalize` has something to flush.
    audio_since_result: bool,
    last_sent: Instant,
    /// `CloseStream` sent: stop waiting at this instant.
    closing: Option<Instant>,
    /// Reused wire buffer.
    wire: Vec<u8>,
    /// Inputs that arrived while the socket was being replaced.
    backlog: VecDeque<SttInput>,
}

impl Session {
    async fn run(mut self, ws: Ws) {
        let mut ws = Some(ws);
        let mut reconnects = 0;
        while let Some(socket) = ws.take() {
            let reason = match self.pump(socket).await {
                End::Done => return,
                End::Lost(reason) => reason,
            };
            metrics::stt_error(NAME, "disconnect");
            tracing::warn!(error = %reason, "Deepgram stream lost.");
            // The utterance the listener waits for is lost; the next one gets a new socket.
            if self.finalize.take().is_some()
                && !self
                    .emit(SttEvent::Error(format!("deepgram: {reason}")))
                    .await
            {
                return;
            }
            self.turn = Turn::default();
            self.sent_secs = 0.0;
            self.audio_since_result = false;
            if self.closing.is_some() {
                return;
            }
            while ws.is_none() && reconnects < self.cfg.max_reconnects {
                let backoff = RECONNECT_BACKOFF * 2u32.pow(reconnects);
                reconnects += 1;
                let (cfg, language) = (self.cfg.clone(), self.language.clone());
                let attempt = async move {
                    tokio::time::sleep(backoff).await;
                    cfg.connect(&language).await
                };
                tokio::pin!(attempt);
                // The listener is never held up by a reconnect: what it sends meanwhile waits
                // in a bounded backlog (oldest audio dropped first) for the new socket.
                let res = loop {
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        res = &mut attempt => break res,
                        it = self.input.recv() => match it {
                            Some(SttInput::Control(SttControl::Close)) | None => return,
                            Some(input) => self.keep(input),
                        },
                    }
                };
                match res {
                    Ok(s) => {
                        metrics::stt_session(NAME, "reconnected");
                        tracing::info!(attempt = reconnects, "Deepgram stream reconnected.");
                        ws = Some(s);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, attempt = reconnects, "Deepgram reconnect failed.")
                    }
                }
            }
        }
        tracing::error!("Deepgram stream gone and reconnects used up; speech input ends.");
    }

    /// Keeps `input` for the next socket; past [`RECONNECT_BACKLOG`], the oldest audio goes.
    fn keep(&mut self, input: SttInput) {
        self.backlog.push_back(input);
        if self.backlog.len() > RECONNECT_BACKLOG {
            let oldest_audio = self
                .backlog
                .iter()
                .position(|i| matches!(i, SttInput::Audio(_)));
            if let Some(at) = oldest_audio {
                self.backlog.remove(at);
            }
        }
    }

    /// Runs one socket until it ends.
    async fn pump(&mut self, ws: Ws) -> End {
        let (mut sink, mut stream) = ws.split();
        loop {
            let keepalive_at = self.last_sent + self.cfg.keepalive;
            let finalize_at = self.finalize.map(|p| p.deadline);
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    // Deepgram bills the stream until it closes: say so, briefly.
                    let bye = sink.send(Message::text(CLOSE_STREAM));
                    let _ = tokio::time::timeout(Duration::from_millis(200), bye).await;
                    return End::Done;
                }
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        if !self.on_message(&t).await {
                            return End::Done;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        if self.closing.is_some() {
                            return End::Done;
                        }
                        let why = frame.map_or_else(
                            || "closed without a reason".to_string(),
                            |f| format!("closed with {} {}", u16::from(f.code), f.reason),
                        );
                        return End::Lost(why);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        if self.closing.is_some() {
                            return End::Done;
                        }
                        return End::Lost(e.to_string());
                    }
                    None => {
                        if self.closing.is_some() {
                            return End::Done;
                        }
                        return End::Lost("connection ended".into());
                    }
                },
                input = next_input(&mut self.backlog, &mut self.input), if self.closing.is_none() => {
                    let sent = match input {
                        Some(SttInput::Audio(pcm)) => self.send_audio(&mut sink, &pcm).await,
                        Some(SttInput::Control(SttControl::KeepAlive)) => {
                            sink.send(Message::text(KEEPALIVE)).await
                        }
                        Some(SttInput::Control(SttControl::Finalize)) => {
                            match self.on_finalize(&mut sink).await {
                                Ok(true) => Ok(()),
                                Ok(false) => return End::Done,
                                Err(e) => Err(e),
                            }
                        }
                        // The listener asked to close, or went away: flush and close.
                        Some(SttInput::Control(SttControl::Close)) | None => {
                            self.closing = Some(Instant::now() + CLOSE_GRACE);
                            sink.send(Message::text(CLOSE_STREAM)).await
                        }
                    };
                    if let Err(e) = sent {
                        return End::Lost(e.to_string());
                    }
                    self.last_sent = Instant::now();
                }
                _ = tokio::time::sleep_until(keepalive_at), if self.closing.is_none() => {
                    if let Err(e) = sink.send(Message::text(KEEPALIVE)).await {
                        return End::Lost(e.to_string());
                    }
                    self.last_sent = Instant::now();
                }
                _ = sleep_until_opt(finalize_at) => {
                    tracing::debug!("Deepgram did not answer Finalize in time; the turn ends with what arrived.");
                    if !self.emit_final().await {
                        return End::Done;
                    }
                }
                _ = sleep_until_opt(self.closing) => return End::Done,
            }
        }
    }

    async fn send_audio<S>(&mut self, sink: &mut S, pcm: &[i16]) -> Result<(), tungstenite::Error>
    where
        S: futures_util::Sink<Message, Error = tungstenite::Error> + Unpin,
    {
        // An empty binary frame is Deepgram's legacy close request: never send one.
        if pcm.is_empty() {
            return Ok(());
        }
        self.wire.clear();
        match self.cfg.encoding {
            Encoding::Mulaw => Codec::Mulaw.encode_into(pcm, &mut self.wire),
            Encoding::Linear16 => self.wire.extend(pcm.iter().flat_map(|s| s.to_le_bytes())),
        }
        self.sent_secs += pcm.len() as f64 / f64::from(self.cfg.sample_rate);
        self.audio_since_result = true;
        sink.send(Message::binary(self.wire.clone())).await
    }

    /// Ends the turn now if nothing is left to flush, else asks Deepgram to flush it.
    /// `Ok(false)`: the listener went away.
    async fn on_finalize<S>(&mut self, sink: &mut S) -> Result<bool, tungstenite::Error>
    where
        S: futures_util::Sink<Message, Error = tungstenite::Error> + Unpin,
    {
        // A second Finalize before the first was answered: answer the first with what came.
        if self.finalize.is_some() && !self.emit_final().await {
            return Ok(false);
        }
        if !self.audio_since_result {
            return Ok(self.emit_final().await);
        }
        sink.send(Message::text(FINALIZE)).await?;
        let wait = if self.turn.settled {
            SETTLED_GRACE.min(self.cfg.finalize_timeout)
        } else {
            self.cfg.finalize_timeout
        };
        let asked = Instant::now();
        self.finalize = Some(Pending {
            asked,
            deadline: asked + wait,
        });
        Ok(true)
    }

    /// Handles one text message; `false`: the listener went away.
    async fn on_message(&mut self, text: &str) -> bool {
        let msg = match serde_json::from_str::<ServerMessage>(text) {
            Ok(m) => m,
            Err(e) => {
                metrics::stt_error(NAME, "protocol");
                tracing::warn!(error = %e, "Unreadable Deepgram message ignored.");
                return true;
            }
        };
        match msg {
            ServerMessage::Results(r) => self.on_results(r).await,
            ServerMessage::SpeechStarted {} => self.emit(SttEvent::SpeechStarted).await,
            ServerMessage::UtteranceEnd {} => {
                self.turn.settled = true;
                if self.cfg.deepgram_ends_turns && !self.turn.text.is_empty() {
                    return self.emit_final().await;
                }
                true
            }
            ServerMessage::Metadata {} | ServerMessage::Other => true,
        }
    }

    async fn on_results(&mut self, r: ResultsMessage) -> bool {
        self.audio_since_result = false;
        let (text, confidence) = r
            .channel
            .alternatives
            .first()
            .map(|a| (a.transcript.trim(), a.confidence))
            .unwrap_or_default();
        if !r.is_final {
            if text.is_empty() {
                return true;
            }
            self.turn.settled = false;
            let so_far = join(&self.turn.text, text);
            let partial = self.transcript(self.turn.span, so_far, confidence);
            return self.emit(SttEvent::Partial(partial)).await;
        }
        if !text.is_empty() {
            self.turn.text = join(&self.turn.text, text);
            let end = r.start + r.duration;
            self.turn.span = Some(match self.turn.span {
                Some((start, _)) => (start, end),
                None => (r.start, end),
            });
            self.turn.confidence_sum += confidence;
            self.turn.segments += 1;
            self.turn.settled = r.speech_final;
        } else if r.speech_final {
            self.turn.settled = true;
        }
        let answers_finalize = r.from_finalize && self.finalize.is_some();
        let endpoint = self.cfg.deepgram_ends_turns && r.speech_final && !self.turn.text.is_empty();
        if answers_finalize || endpoint {
            return self.emit_final().await;
        }
        true
    }

    fn transcript(&self, span: Option<(f64, f64)>, text: String, confidence: f32) -> Transcript {
        let (audio_ms, decode_ms) = match span {
            // On a real-time stream, the audio sent after the turn's last word is how long
            // the final took to come back (Deepgram's endpointing; a Finalize's answer is
            // timed from the request instead).
            Some((start, end)) => (
                ((end - start).max(0.0) * 1000.0) as u64,
                ((self.sent_secs - end).max(0.0) * 1000.0) as u64,
            ),
            None => (0, 0),
        };
        Transcript {
            text,
            confidence: Some(confidence.clamp(0.0, 1.0)),
            audio_ms,
            decode_ms,
            queue_ms: 0,
        }
    }

    /// Emits the turn so far as a final (possibly empty) and starts a new one.
    async fn emit_final(&mut self) -> bool {
        let pending = self.finalize.take();
        let turn = std::mem::take(&mut self.turn);
        let confidence = turn.confidence_sum / turn.segments.max(1) as f32;
        let mut t = self.transcript(turn.span, turn.text, confidence);
        // Ended by the VAD: the final's latency is the Finalize round trip.
        if let Some(p) = pending {
            t.decode_ms = p.asked.elapsed().as_millis() as u64;
        }
        if t.audio_ms > 0 {
            metrics::stt_final_latency(NAME, Duration::from_millis(t.decode_ms));
        }
        self.emit(SttEvent::Final(t)).await
    }

    async fn emit(&self, ev: SttEvent) -> bool {
        self.events.send(ev).await.is_ok()
    }
}

/// What the listener sent while the socket was being replaced, then what it sends now.
async fn next_input(
    backlog: &mut VecDeque<SttInput>,
    input: &mut mpsc::Receiver<SttInput>,
) -> Option<SttInput> {
    match backlog.pop_front() {
        Some(it) => Some(it),
        None => input.recv().await,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stt::SttSettings;

    /// The conformance subject: the backend against the local fake, and against one that
    /// drops the connection at the second `Finalize` (the session reports that utterance as
    /// failed, reconnects, and goes on).
    #[cfg(feature = "sim")]
    pub(crate) async fn subject() -> crate::stt::conformance::Subject {
        use crate::sim::deepgram::{DeepgramSim, DeepgramSimOptions};
        let start = |drop_on_finalize| async move {
            let sim = DeepgramSim::start(DeepgramSimOptions {
                drop_on_finalize,
                ..DeepgramSimOptions::default()
            })
            .await
            .unwrap();
            let toml = format!(
                "provider = \"deepgram\"\napi_key = \"dg-test-key\"\nbase_url = \"{}\"",
                sim.base_url()
            );
            let backend = crate::stt::build(&SttSettings::from_toml("stt", &toml).unwrap());
            // The fake serves the whole test process.
            Box::leak(Box::new(sim));
            backend.unwrap()
        };
        crate::stt::conformance::Subject {
            backend: start(None).await,
            speech: crate::stt::conformance::speech("Hello there.", 8_000).await,
            expect: Some("balance"),
            faulty: Some(start(Some(2)).await),
        }
    }

    fn settings(extra: &str) -> Result<DeepgramSttSettings, Vec<crate::component::ConfigError>> {
        let toml = format!("provider = \"deepgram\"\napi_key = \"k\"\n{extra}");
        match SttSettings::from_toml("stt", &toml)? {
            SttSettings::Deepgram(d) => Ok(d),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_ask_for_telephony_audio_and_turn_events() {
        let s = settings("").unwrap();
        assert_eq!(
            s.listen_url("en"),
            "wss://api.deepgram.com/v1/listen?model=nova-3&language=en&encoding=mulaw\
             &sample_rate=8000&channels=1&interim_results=true&endpointing=300\
             &vad_events=true&smart_format=true&utterance_end_ms=1000"
        );
        let s = settings("endpointing_ms = 0\nutterance_end_ms = 0\nencoding = \"linear16\"\nsample_rate = 16000\nbase_url = \"ws://127.0.0.1:9/\"").unwrap();
        let url = s.listen_url("es");
        assert!(url.starts_with("ws://127.0.0.1:9/v1/listen?"), "{url}");
        assert!(url.contains("&endpointing=false&"), "{url}");
        assert!(url.contains("encoding=linear16&sample_rate=16000"), "{url}");
        assert!(!url.contains("utterance_end_ms"), "{url}");
        assert!(url.contains("language=es"), "{url}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key_and_the_key_never_prints() {
        let errs = SttSettings::from_toml(
            "stt",
            "provider = \"deepgram\"\nbase_url = \"https://x\"\nencoding = \"opus\"\n\
             interim_results = false\nend_of_turn = \"model\"\nlanguage = \"en&x=1\"",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "stt.api_key",
                "stt.base_url",
                "stt.language",
                "stt.encoding",
                "stt.utterance_end_ms",
                "stt.end_of_turn"
            ],
            "{errs:?}"
        );
        assert!(
            errs[0].message.contains("VOXHOOK__STT__API_KEY"),
            "{errs:?}"
        );
        let errs = settings("end_of_turn = \"deepgram\"\nendpointing_ms = 0\nutterance_end_ms = 0")
            .unwrap_err();
        assert_eq!(errs[0].key, "stt.end_of_turn", "{errs:?}");
        let s = SttSettings::from_toml("stt", "provider = \"deepgram\"\napi_key = \"dg-secret\"");
        assert!(!format!("{:?}", s.unwrap()).contains("dg-secret"));
    }

    /// `[languages.es.stt]` lays its keys over a Deepgram `[stt]`, the key comes from the
    /// environment, and a missing key names the variable to set.
    #[test]
    fn a_language_overlay_and_the_key_from_the_environment() {
        use std::collections::HashMap;
        let toml = r#"
            [stt]
            provider = "deepgram"
            model = "nova-2-phonecall"
            [languages.es.stt]
            language = "es"
            model = "nova-2"
            [bot]
            webhook_url = "https://bots.kore.ai/chatbot/v2/webhook/st-1"
            client_id = "cs"
            client_secret = "s"
        "#;
        let env = HashMap::from([("VOXHOOK__STT__API_KEY".to_string(), "dg-env".to_string())]);
        let s = crate::config::validate(crate::config::load_str(toml, env).unwrap()).unwrap();
        let SttSettings::Deepgram(base) = &s.stt else {
            panic!("{:?}", s.stt)
        };
        assert_eq!(
            (base.api_key.expose(), base.language.as_str()),
            ("dg-env", "en")
        );
        let Some(SttSettings::Deepgram(es)) = &s.languages[0].stt else {
            panic!("{:?}", s.languages)
        };
        assert_eq!((es.language.as_str(), es.model.as_str()), ("es", "nova-2"));
        assert_eq!(es.api_key.expose(), "dg-env");
        let errs = crate::config::validate(crate::config::load_str(toml, HashMap::new()).unwrap())
            .unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.key == "stt.api_key" && e.message.contains("VOXHOOK__STT__API_KEY")),
            "{errs:?}"
        );
    }

    #[test]
    fn results_messages_parse_as_documented() {
        let r: ServerMessage = serde_json::from_str(
            r#"{"type":"Results","channel_index":[0,1],"duration":1.98,"start":0.0,"is_final":true,
            "speech_final":true,"from_finalize":false,"channel":{"alternatives":[{"transcript":"another big",
            "confidence":0.98,"words":[{"word":"another","start":0.1,"end":0.5,"confidence":0.99,
            "punctuated_word":"Another"}]}]},"metadata":{"request_id":"x","model_info":{"name":"n",
            "version":"v","arch":"a"},"model_uuid":"u"}}"#,
        )
        .unwrap();
        let ServerMessage::Results(r) = r else {
            panic!("{r:?}")
        };
        assert!(r.is_final && r.speech_final && !r.from_finalize);
        assert_eq!(r.channel.alternatives[0].transcript, "another big");
        let parse = |json: &str| serde_json::from_str::<ServerMessage>(json).unwrap();
        assert!(matches!(
            parse(r#"{"type":"SpeechStarted","channel":[0,1],"timestamp":0.0}"#),
            ServerMessage::SpeechStarted {}
        ));
        assert!(matches!(
            parse(r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":2.395}"#),
            ServerMessage::UtteranceEnd {}
        ));
        assert!(matches!(
            parse(r#"{"type":"Warning","description":"x"}"#),
            ServerMessage::Other
        ));
    }

    #[cfg(feature = "sim")]
    mod against_the_fake {
        use super::*;
        use crate::sim::deepgram::{DeepgramSim, DeepgramSimOptions};
        use crate::stt::conformance::{next, next_final as outcome, params, send_frames};

        async fn backend(sim: &DeepgramSim, extra: &str) -> Arc<dyn SpeechToText> {
            let toml = format!(
                "provider = \"deepgram\"\napi_key = \"dg-test-key\"\nbase_url = \"{}\"\n{extra}",
                sim.base_url()
            );
            crate::stt::conformance::built(&toml)
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_wrong_key_is_refused_at_the_handshake_without_printing_the_key() {
            let sim = DeepgramSim::start(DeepgramSimOptions::default())
                .await
                .unwrap();
            let toml = format!(
                "provider = \"deepgram\"\napi_key = \"not-the-key\"\nbase_url = \"{}\"",
                sim.base_url()
            );
            let b = crate::stt::conformance::built(&toml);
            let Err(e) = b.open(params(), CancellationToken::new()).await else {
                panic!("opened with a wrong key")
            };
            let msg = e.to_string();
            assert!(
                msg.contains("401") && msg.contains("Invalid credentials"),
                "{msg}"
            );
            assert!(!msg.contains("not-the-key"), "{msg}");
            assert_eq!(sim.refused(), [401]);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_slow_handshake_times_out() {
            let sim = DeepgramSim::start(DeepgramSimOptions {
                handshake_delay: Duration::from_secs(3),
                ..DeepgramSimOptions::default()
            })
            .await
            .unwrap();
            let b = backend(&sim, "connect_timeout_ms = 300").await;
            let t0 = Instant::now();
            let Err(e) = b.open(params(), CancellationToken::new()).await else {
                panic!("opened")
            };
            assert!(e.to_string().contains("no handshake within 300 ms"), "{e}");
            assert!(t0.elapsed() < Duration::from_secs(2));
        }

        /// Telephony audio goes out as μ-law at 8 kHz, one byte a sample, never as an empty
        /// frame; silence is covered by KeepAlive, so the fake's 10 s idle close (here 1 s)
        /// never fires; Close sends CloseStream and the session ends after Metadata.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn audio_is_mulaw_at_the_call_rate_and_silence_is_kept_alive() {
            let sim = DeepgramSim::start(DeepgramSimOptions {
                idle_timeout: Duration::from_secs(1),
                ..DeepgramSimOptions::default()
            })
            .await
            .unwrap();
            let b = backend(&sim, "keepalive_ms = 300").await;
            let mut s = b.open(params(), CancellationToken::new()).await.unwrap();
            send_frames(&s, &[0i16; 8_000], 160).await;
            s.input.send(SttInput::Audio(Vec::new())).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2_000)).await;
            s.input
                .send(SttInput::Control(SttControl::Close))
                .await
                .unwrap();
            while next(&mut s).await.is_some() {}
            let c = &sim.connections()[..];
            assert_eq!(c.len(), 1, "{c:?}");
            assert_eq!(c[0].query["encoding"], "mulaw");
            assert_eq!(c[0].query["sample_rate"], "8000");
            assert_eq!(c[0].audio_bytes, 8_000);
            assert_eq!(c[0].empty_frames, 0);
            assert!(c[0].keepalives >= 3, "{c:?}");
            assert_eq!(c[0].close_streams, 1);
            assert_eq!(c[0].ended.as_deref(), Some("CloseStream"));
            assert!(c[0].sent.last().unwrap().contains("\"Metadata\""), "{c:?}");
        }

        /// With `end_of_turn = "deepgram"`, `speech_final` ends the turn without a Finalize,
        /// and `SpeechStarted` comes first (barge-in).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn deepgram_endpointing_ends_the_turn_by_itself() {
            let sim = DeepgramSim::start(DeepgramSimOptions::default())
                .await
                .unwrap();
            let b = backend(&sim, "end_of_turn = \"deepgram\"").await;
            assert!(b.streaming() && b.endpointing());
            let mut s = b.open(params(), CancellationToken::new()).await.unwrap();
            let speech = crate::stt::conformance::speech("Hello, I need some help.", 8_000).await;
            send_frames(&s, &speech, 160).await;
            send_frames(&s, &[0i16; 8_000], 160).await;
            assert_eq!(next(&mut s).await, Some(SttEvent::SpeechStarted));
            let SttEvent::Final(t) = outcome(&mut s).await else {
                panic!("no final")
            };
            assert_eq!(t.text, "I would like to check my account balance.");
            assert!(t.audio_ms > 500, "{t:?}");
            assert_eq!(sim.connections()[0].finalizes, 0);
        }

        /// While the session reconnects (slow handshake), what the listener sends is taken
        /// into a backlog rather than filling the input channel, and reaches the new socket:
        /// a Finalize sent meanwhile is answered from it.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_reconnect_never_holds_up_the_listener() {
            let sim = DeepgramSim::start(DeepgramSimOptions {
                handshake_delay: Duration::from_millis(800),
                close_after_audio: Some((Duration::from_millis(500), 1011, "NET-0000".into())),
                ..DeepgramSimOptions::default()
            })
            .await
            .unwrap();
            let b = backend(&sim, "").await;
            let mut s = b.open(params(), CancellationToken::new()).await.unwrap();
            send_frames(&s, &[0i16; 8_000], 160).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            // Well past the input channel's capacity, during the reconnect.
            let t0 = Instant::now();
            send_frames(&s, &[0i16; 160 * 400], 160).await;
            assert!(
                t0.elapsed() < Duration::from_millis(500),
                "{:?}",
                t0.elapsed()
            );
            s.input
                .send(SttInput::Control(SttControl::Finalize))
                .await
                .unwrap();
            let SttEvent::Final(t) = outcome(&mut s).await else {
                panic!("the Finalize was not answered")
            };
            assert_eq!(t.text, "", "only silence was sent");
            assert!(
                sim.connections()[1].audio_bytes >= 160 * 400,
                "the backlog was sent"
            );
            let end = Instant::now() + Duration::from_secs(5);
            while sim.connections().len() < 2 {
                assert!(Instant::now() < end, "no reconnect");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let speech = crate::stt::conformance::speech("Hello there.", 8_000).await;
            send_frames(&s, &speech, 160).await;
            s.input
                .send(SttInput::Control(SttControl::Finalize))
                .await
                .unwrap();
            assert!(
                matches!(outcome(&mut s).await, SttEvent::Final(t) if t.text.contains("balance"))
            );
        }

        /// An error close frame mid-stream (1011 NET-0000): the session reconnects and the
        /// next utterance is recognised on the new socket.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_error_close_frame_is_survived_by_reconnecting() {
            let sim = DeepgramSim::start(DeepgramSimOptions {
                close_after_audio: Some((Duration::from_secs(1), 1011, "NET-0000".into())),
                ..DeepgramSimOptions::default()
            })
            .await
            .unwrap();
            let b = backend(&sim, "").await;
            let mut s = b.open(params(), CancellationToken::new()).await.unwrap();
            send_frames(&s, &[0i16; 12_000], 160).await;
            let speech = crate::stt::conformance::speech("Hello there.", 8_000).await;
            // Wait for the reconnect, then speak on the new socket.
            let end = Instant::now() + Duration::from_secs(5);
            while sim.connections().len() < 2 {
                assert!(Instant::now() < end, "no reconnect");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            send_frames(&s, &speech, 160).await;
            s.input
                .send(SttInput::Control(SttControl::Finalize))
                .await
                .unwrap();
            let SttEvent::Final(t) = outcome(&mut s).await else {
                panic!("no final")
            };
            assert!(t.text.contains("balance"), "{t:?}");
            let c = sim.connections();
            assert_eq!(
                c[0].ended.as_deref(),
                Some("closed with 1011 after audio (fault)")
            );
        }
    }
}
