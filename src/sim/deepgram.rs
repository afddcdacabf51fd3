//! A local Deepgram streaming STT (`/v1/listen`) for tests, demos and load benchmarks. It
//! speaks the documented protocol: the handshake checks `Authorization: Token <key>` and the
//! query (401 / 400 with a `dg-error` header and a JSON body), binary frames are audio in the
//! requested encoding, text frames are `KeepAlive` / `Finalize` / `CloseStream`, and it
//! answers with `SpeechStarted`, interim and final `Results` (`is_final`, `speech_final`,
//! `from_finalize`), `UtteranceEnd` and `Metadata`, then a 1000 close. A socket that gets
//! nothing for 10 s is closed with 1011 `NET-0001`, and a `Finalize` with no audio since
//! the last result gets no answer (both as Deepgram documents them).
//!
//! It recognises nothing: energy marks speech, and each utterance gets the next scripted
//! transcript. Faults on demand: a slow handshake, latency on every message, a dropped TCP
//! connection at the n-th `Finalize`, an error close frame after some audio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{http, Message};

use crate::audio::codec::Codec;

/// RMS of a 20 ms block above which the fake hears speech.
const LOUD_RMS: f64 = 400.0;
/// Audio between two interim results while speech goes on.
const INTERIM_EVERY_SECS: f64 = 1.0;
/// With `endpointing=false`, a segment is finalized after this much silence.
const SEGMENT_GAP_SECS: f64 = 1.0;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct DeepgramSimOptions {
    /// The key clients must send (`Authorization: Token <key>`).
    pub api_key: String,
    /// Transcripts of the utterances, in order, starting over after the last.
    pub transcripts: Vec<String>,
    /// Every message is sent this long after the audio or request that caused it (a
    /// vendor's typical processing latency).
    pub latency: Duration,
    /// Time before the handshake is answered (slow first byte).
    pub handshake_delay: Duration,
    /// A socket that receives nothing (no audio, no text) this long is closed with 1011.
    pub idle_timeout: Duration,
    /// The n-th `Finalize` (counted over all connections) drops the TCP connection without
    /// a close frame.
    pub drop_on_finalize: Option<u32>,
    /// After this much audio on the first connection, close it with this code and reason
    /// (an error frame such as `1011 NET-0000`); later connections are spared.
    pub close_after_audio: Option<(Duration, u16, String)>,
}

impl Default for DeepgramSimOptions {
    fn default() -> Self {
        Self {
            api_key: "dg-test-key".into(),
            transcripts: vec!["I would like to check my account balance.".into()],
            latency: Duration::ZERO,
            handshake_delay: Duration::ZERO,
            idle_timeout: Duration::from_secs(10),
            drop_on_finalize: None,
            close_after_audio: None,
        }
    }
}

/// What one connection did, for assertions.
#[derive(Debug, Clone, Default)]
pub struct DeepgramConnection {
    /// The handshake's query parameters.
    pub query: HashMap<String, String>,
    /// Audio bytes received.
    pub audio_bytes: usize,
    /// Binary frames received.
    pub audio_frames: usize,
    /// Empty binary frames (Deepgram's legacy close; a client should never send one).
    pub empty_frames: usize,
    /// `KeepAlive` messages.
    pub keepalives: usize,
    /// `Finalize` messages.
    pub finalizes: usize,
    /// `CloseStream` messages.
    pub close_streams: usize,
    /// Every message sent, as JSON text, in order.
    pub sent: Vec<String>,
    /// How the connection ended (`None`: still open).
    pub ended: Option<String>,
}

#[derive(Default)]
struct Shared {
    connections: Vec<DeepgramConnection>,
    refused: Vec<u16>,
    finalizes: u32,
}

/// A running fake.
pub struct DeepgramSim {
    fake: super::WsFake<Shared>,
}

impl DeepgramSim {
    /// Starts on a loopback port.
    pub async fn start(options: DeepgramSimOptions) -> std::io::Result<Self> {
        let fake = super::WsFake::start(options, serve).await?;
        Ok(Self { fake })
    }

    /// `ws://127.0.0.1:port`, the `base_url` to configure.
    pub fn base_url(&self) -> String {
        self.fake.base_url()
    }

    /// Every accepted connection so far.
    pub fn connections(&self) -> Vec<DeepgramConnection> {
        self.fake.lock().connections.clone()
    }

    /// HTTP statuses of refused handshakes.
    pub fn refused(&self) -> Vec<u16> {
        self.fake.lock().refused.clone()
    }
}

use super::lock;

/// What the handshake agreed.
#[derive(Debug, Clone)]
struct Listen {
    codec: Option<Codec>,
    rate: u32,
    interim: bool,
    endpointing: Option<f64>,
    utterance_end: Option<f64>,
    vad_events: bool,
}

fn refuse(status: u16, message: &str) -> ErrorResponse {
    let body = json!({
        "err_code": if status == 401 { "INVALID_AUTH" } else { "Bad Request" },
        "err_msg": message,
        "request_id": uuid::Uuid::new_v4().to_string(),
    });
    let mut resp = http::Response::new(Some(body.to_string()));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    if let Ok(v) = message.parse() {
        resp.headers_mut().insert("dg-error", v);
    }
    resp
}

/// Checks the handshake as Deepgram would.
fn check(req: &Request, key: &str) -> Result<(HashMap<String, String>, Listen), (u16, String)> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Token {key}")) {
        return Err((401, "Invalid credentials.".into()));
    }
    if req.uri().path() != "/v1/listen" {
        return Err((404, "Not found.".into()));
    }
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let flag = |k: &str| query.get(k).is_some_and(|v| v == "true");
    let ms = |k: &str| -> Result<Option<f64>, (u16, String)> {
        match query.get(k).map(String::as_str) {
            None | Some("false") => Ok(None),
            Some(v) => v
                .parse::<u32>()
                .map(|n| Some(f64::from(n) / 1000.0))
                .map_err(|_| (400, format!("Invalid {k}."))),
        }
    };
    let codec = match query.get("encoding").map(String::as_str) {
        Some("mulaw") => Some(Codec::Mulaw),
        Some("linear16") => None,
        Some(other) => return Err((400, format!("The fake does not decode encoding {other}."))),
        None => return Err((400, "The fake needs raw audio: set encoding.".into())),
    };
    let rate = query
        .get("sample_rate")
        .and_then(|r| r.parse::<u32>().ok())
        .ok_or((400, "sample_rate is required for raw audio.".to_string()))?;
    if query.get("channels").is_some_and(|c| c != "1") {
        return Err((400, "The fake takes one channel.".into()));
    }
    let utterance_end = ms("utterance_end_ms")?;
    if utterance_end.is_some() && !flag("interim_results") {
        return Err((
            400,
            "utterance_end_ms requires interim_results=true.".into(),
        ));
    }
    let listen = Listen {
        codec,
        rate,
        interim: flag("interim_results"),
        endpointing: ms("endpointing")?,
        utterance_end,
        vad_events: flag("vad_events"),
    };
    Ok((query, listen))
}

// The handshake callback's error type is tungstenite's `ErrorResponse`, not ours to box.
#[allow(clippy::result_large_err)]
async fn serve(tcp: TcpStream, options: Arc<DeepgramSimOptions>, shared: Arc<Mutex<Shared>>) {
    tokio::time::sleep(options.handshake_delay).await;
    let mut agreed = None;
    let key = options.api_key.clone();
    let s = shared.clone();
    let callback = |req: &Request, resp: Response| match check(req, &key) {
        Ok(ok) => {
            agreed = Some(ok);
            Ok(resp)
        }
        Err((status, message)) => {
            lock(&s).refused.push(status);
            Err(refuse(status, &message))
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let Some((query, listen)) = agreed else {
        return;
    };
    let idx = {
        let mut g = lock(&shared);
        g.connections.push(DeepgramConnection {
            query,
            ..DeepgramConnection::default()
        });
        g.connections.len() - 1
    };
    let (mut sink, mut stream) = ws.split();
    // Messages leave in order, each `latency` after its cause.
    let (out_tx, mut out_rx) = mpsc::channel::<(Instant, Message)>(256);
    let writer = tokio::spawn(async move {
        while let Some((due, msg)) = out_rx.recv().await {
            tokio::time::sleep_until(due).await;
            let close = matches!(msg, Message::Close(_));
            if sink.send(msg).await.is_err() || close {
                break;
            }
        }
    });
    let mut conn = Conn {
        listen,
        options: options.clone(),
        out: out_tx,
        shared: shared.clone(),
        idx,
        samples: 0,
        carry: Vec::new(),
        speech: None,
        utterance_end_due: None,
        since_result: 0,
        last_result_end: 0.0,
        utterance: 0,
        pcm: Vec::new(),
    };
    let ended = loop {
        let frame = tokio::select! {
            f = stream.next() => f,
            _ = tokio::time::sleep(options.idle_timeout) => {
                conn.close(1011, "NET-0001: Deepgram did not receive audio data or a text message within the timeout window.").await;
                break "idle timeout (1011 NET-0001)".to_string();
            }
        };
        match frame {
            Some(Ok(Message::Binary(b))) => {
                if b.is_empty() {
                    conn.record(|c| c.empty_frames += 1);
                    conn.flush_and_close().await;
                    break "empty binary frame (legacy close)".into();
                }
                if let Some(why) = conn.on_audio(&b).await {
                    break why;
                }
            }
            Some(Ok(Message::Text(t))) => {
                let kind = serde_json::from_str::<serde_json::Value>(&t)
                    .ok()
                    .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string));
                match kind.as_deref() {
                    Some("KeepAlive") => conn.record(|c| c.keepalives += 1),
                    Some("Finalize") => {
                        conn.record(|c| c.finalizes += 1);
                        let n = {
                            let mut g = lock(&shared);
                            g.finalizes += 1;
                            g.finalizes
                        };
                        if options.drop_on_finalize == Some(n) {
                            writer.abort();
                            break "dropped at Finalize (fault)".into();
                        }
                        conn.on_finalize().await;
                    }
                    Some("CloseStream") => {
                        conn.record(|c| c.close_streams += 1);
                        conn.flush_and_close().await;
                        break "CloseStream".into();
                    }
                    _ => {
                        conn.close(1008, "DATA-0001: unknown text message.").await;
                        break "unknown text message".into();
                    }
                }
            }
            Some(Ok(Message::Close(_))) | None => break "client closed".into(),
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("error: {e}"),
        }
    };
    conn.record(|c| c.ended = Some(ended));
    drop(conn);
    // Let queued messages (and the close) go out, then drop the socket.
    let _ = tokio::time::timeout(options.latency + Duration::from_secs(2), writer).await;
}

/// Speech heard and not yet finalized.
#[derive(Debug, Clone, Copy)]
struct Speech {
    start: f64,
    last_loud: f64,
    next_interim: f64,
}

struct Conn {
    listen: Listen,
    options: Arc<DeepgramSimOptions>,
    out: mpsc::Sender<(Instant, Message)>,
    shared: Arc<Mutex<Shared>>,
    idx: usize,
    /// Samples received (the stream clock).
    samples: u64,
    /// Samples short of a whole 20 ms block.
    carry: Vec<i16>,
    speech: Option<Speech>,
    utterance_end_due: Option<(f64, f64)>,
    /// Samples since the last result.
    since_result: u64,
    last_result_end: f64,
    utterance: usize,
    pcm: Vec<i16>,
}

impl Conn {
    fn now(&self) -> f64 {
        self.samples as f64 / f64::from(self.listen.rate)
    }

    fn record(&self, f: impl FnOnce(&mut DeepgramConnection)) {
        if let Some(c) = lock(&self.shared).connections.get_mut(self.idx) {
            f(c);
        }
    }

    async fn send(&self, msg: serde_json::Value) {
        let text = msg.to_string();
        self.record(|c| c.sent.push(text.clone()));
        let _ = self
            .out
            .send((Instant::now() + self.options.latency, Message::text(text)))
            .await;
    }

    async fn close(&self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_string().into(),
        };
        let _ = self
            .out
            .send((
                Instant::now() + self.options.latency,
                Message::Close(Some(frame)),
            ))
            .await;
    }

    fn script(&self) -> &str {
        let t = &self.options.transcripts;
        t.get(self.utterance % t.len().max(1))
            .map_or("", String::as_str)
    }

    async fn results(&mut self, start: f64, end: f64, text: &str, flags: (bool, bool, bool)) {
        let (is_final, speech_final, from_finalize) = flags;
        let words: Vec<_> = text
            .split_whitespace()
            .enumerate()
            .map(|(i, w)| {
                let n = text.split_whitespace().count().max(1) as f64;
                let step = (end - start) / n;
                json!({"word": w.to_lowercase(), "start": start + step * i as f64,
                    "end": start + step * (i as f64 + 1.0), "confidence": 0.99, "punctuated_word": w})
            })
            .collect();
        self.send(json!({
            "type": "Results", "channel_index": [0, 1], "duration": end - start, "start": start,
            "is_final": is_final, "speech_final": speech_final, "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.99, "words": words}]},
            "metadata": {"request_id": "fake", "model_info": {"name": "fake", "version": "0", "arch": "fake"},
                "model_uuid": "00000000-0000-0000-0000-000000000000"}
        }))
        .await;
        self.since_result = 0;
        self.last_result_end = end;
    }

    /// Ends the utterance in progress with its final result.
    async fn finish_utterance(&mut self, speech_final: bool, from_finalize: bool) {
        let Some(sp) = self.speech.take() else {
            return;
        };
        let text = self.script().to_string();
        self.utterance += 1;
        self.results(
            sp.start,
            sp.last_loud,
            &text,
            (true, speech_final, from_finalize),
        )
        .await;
        self.utterance_end_due = self
            .listen
            .utterance_end
            .map(|gap| (sp.last_loud + gap, sp.last_loud));
    }

    /// Takes audio; `Some(why)`: the connection ended.
    async fn on_audio(&mut self, bytes: &[u8]) -> Option<String> {
        self.record(|c| {
            c.audio_bytes += bytes.len();
            c.audio_frames += 1;
        });
        self.pcm.clear();
        match self.listen.codec {
            Some(codec) => codec.decode_into(bytes, &mut self.pcm),
            None => {
                if !bytes.len().is_multiple_of(2) {
                    self.close(1002, "DATA-0000: The payload cannot be decoded as audio.")
                        .await;
                    return Some("undecodable audio (1002 DATA-0000)".into());
                }
                self.pcm.extend(
                    bytes
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]])),
                );
            }
        }
        let block = (self.listen.rate / 50) as usize;
        let mut pcm = std::mem::take(&mut self.carry);
        pcm.extend_from_slice(&self.pcm);
        let mut blocks = pcm.chunks_exact(block);
        for b in blocks.by_ref() {
            self.on_block(b).await;
        }
        self.carry = blocks.remainder().to_vec();
        if let Some((after, code, reason)) = &self.options.close_after_audio {
            if self.idx == 0 && self.now() >= after.as_secs_f64() {
                self.close(*code, reason).await;
                return Some(format!("closed with {code} after audio (fault)"));
            }
        }
        None
    }

    async fn on_block(&mut self, b: &[i16]) {
        let t = self.now();
        self.samples += b.len() as u64;
        self.since_result += b.len() as u64;
        let end = self.now();
        let rms = (b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / b.len() as f64).sqrt();
        if rms > LOUD_RMS {
            self.utterance_end_due = None;
            match &mut self.speech {
                Some(sp) => sp.last_loud = end,
                None => {
                    self.speech = Some(Speech {
                        start: t,
                        last_loud: end,
                        next_interim: t + INTERIM_EVERY_SECS,
                    });
                    if self.listen.vad_events {
                        self.send(
                            json!({"type": "SpeechStarted", "channel": [0, 1], "timestamp": t}),
                        )
                        .await;
                    }
                }
            }
            if let Some(sp) = self.speech {
                if self.listen.interim && end >= sp.next_interim {
                    let words: Vec<&str> = self.script().split_whitespace().collect();
                    let partial = words[..words.len().div_ceil(2)].join(" ");
                    self.results(sp.start, end, &partial, (false, false, false))
                        .await;
                    if let Some(sp) = &mut self.speech {
                        sp.next_interim = end + INTERIM_EVERY_SECS;
                    }
                }
            }
            return;
        }
        if let Some(sp) = self.speech {
            match self.listen.endpointing {
                Some(gap) if end - sp.last_loud >= gap => self.finish_utterance(true, false).await,
                None if end - sp.last_loud >= SEGMENT_GAP_SECS => {
                    self.finish_utterance(false, false).await
                }
                _ => {}
            }
        }
        if let Some((due, last_word_end)) = self.utterance_end_due {
            if end >= due {
                self.utterance_end_due = None;
                self.send(json!({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": last_word_end}))
                    .await;
            }
        }
    }

    async fn on_finalize(&mut self) {
        if self.speech.is_some() {
            self.finish_utterance(false, true).await;
        } else if self.since_result > 0 {
            // Only silence buffered: an empty final, marked as the flush's answer.
            let (start, end) = (self.last_result_end, self.now());
            self.results(start, end, "", (true, false, true)).await;
        }
        // Nothing buffered: Deepgram may not answer at all, and neither does the fake.
    }

    async fn flush_and_close(&mut self) {
        self.finish_utterance(false, false).await;
        self.send(json!({
            "type": "Metadata", "transaction_key": "deprecated",
            "request_id": uuid::Uuid::new_v4().to_string(), "sha256": "fake",
            "created": "2026-01-01T00:00:00.000Z", "duration": self.now(), "channels": 1
        }))
        .await;
        self.close(1000, "").await;
    }
}

// === Aura (text to speech, REST) ===

/// How the Aura fake behaves.
#[derive(Debug, Clone)]
pub struct AuraSimOptions {
    /// The key clients must send (`Authorization: Token <key>`).
    pub api_key: String,
    /// Wait before the response starts (slow first byte).
    pub latency: Duration,
    /// Audio per character of text (a tone).
    pub ms_per_char: u64,
    /// Audio streams in chunks of this much, one per `chunk_interval`.
    pub chunk_ms: u64,
    /// Time between chunks.
    pub chunk_interval: Duration,
    /// Text containing this fails with a 500.
    pub fail_on: Option<String>,
}

impl Default for AuraSimOptions {
    fn default() -> Self {
        Self {
            api_key: "dg-test-key".into(),
            latency: Duration::ZERO,
            ms_per_char: 50,
            chunk_ms: 100,
            chunk_interval: Duration::from_millis(5),
            fail_on: None,
        }
    }
}

/// One accepted `/v1/speak` request.
#[derive(Debug, Clone)]
pub struct SpeakRequest {
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// The `text` of the JSON body.
    pub text: String,
}

struct AuraShared {
    options: AuraSimOptions,
    requests: Mutex<Vec<SpeakRequest>>,
}

/// A running Aura fake: `POST /v1/speak`, as Deepgram documents it (auth, query, JSON body,
/// `container=none` raw audio or a WAV header otherwise, chunked).
pub struct AuraSim {
    server: super::kore::LocalServer,
    shared: Arc<AuraShared>,
}

impl AuraSim {
    /// Starts on a loopback port.
    pub async fn start(options: AuraSimOptions) -> std::io::Result<Self> {
        let shared = Arc::new(AuraShared {
            options,
            requests: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/v1/speak", axum::routing::post(speak))
            .with_state(shared.clone());
        let server = super::kore::LocalServer::start("127.0.0.1:0", app).await?;
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:port`, the `base_url` to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Accepted requests, in order.
    pub fn requests(&self) -> Vec<SpeakRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

async fn speak(
    axum::extract::State(s): axum::extract::State<Arc<AuraShared>>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    tokio::time::sleep(s.options.latency).await;
    let fail = |status: u16, code: &str, msg: &str| {
        let body = json!({"err_code": code, "err_msg": msg,
            "request_id": uuid::Uuid::new_v4().to_string()});
        let status =
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_REQUEST);
        (status, axum::Json(body)).into_response()
    };
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Token {}", s.options.api_key)) {
        return fail(401, "INVALID_AUTH", "Invalid credentials.");
    }
    let json_body = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let text = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_string));
    let Some(text) = text.filter(|t| json_body && !t.trim().is_empty()) else {
        return fail(
            400,
            "Bad Request",
            "A JSON body with non-empty text is required.",
        );
    };
    if text.chars().count() > 2_000 {
        return fail(
            413,
            "Payload Too Large",
            "Text is longer than 2000 characters.",
        );
    }
    let mulaw = match query.get("encoding").map(String::as_str) {
        None | Some("linear16") => false,
        Some("mulaw") => true,
        Some(_) => return fail(400, "UNSUPPORTED_ENCODING", "Unsupported encoding."),
    };
    let rate: u32 = match query.get("sample_rate").map(|r| r.parse()) {
        None => 24_000,
        Some(Ok(r)) => r,
        Some(Err(_)) => return fail(400, "Bad Request", "Invalid sample_rate."),
    };
    let rates: &[u32] = if mulaw {
        &[8_000, 16_000]
    } else {
        &[8_000, 16_000, 24_000, 32_000, 48_000]
    };
    if !rates.contains(&rate) || query.get("model").is_none_or(|m| !m.starts_with("aura")) {
        return fail(
            400,
            "Bad Request",
            "Unsupported model or sample_rate for the encoding.",
        );
    }
    if s.options
        .fail_on
        .as_ref()
        .is_some_and(|f| text.contains(f.as_str()))
    {
        return fail(500, "INTERNAL_SERVER_ERROR", "Synthesis failed.");
    }
    s.requests
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(SpeakRequest {
            query: query.clone(),
            text: text.clone(),
        });
    let n = (text.chars().count() as u64 * s.options.ms_per_char * u64::from(rate) / 1000) as usize;
    let tone = super::openai::tone(n, rate);
    let raw = query.get("container").is_some_and(|c| c == "none");
    let (bytes, per_sample) = if mulaw {
        let mut b = Vec::with_capacity(n);
        Codec::Mulaw.encode_into(&tone, &mut b);
        (b, 1)
    } else {
        let mut b = if raw {
            Vec::new()
        } else {
            crate::stt::openai::wav_bytes(&[], rate)
        };
        b.extend(tone.iter().flat_map(|x| x.to_le_bytes()));
        (b, 2)
    };
    // An odd chunk length for linear16, so clients must carry a byte across chunks.
    let chunk = (s.options.chunk_ms * u64::from(rate) / 1000) as usize * per_sample + 1;
    let body = super::openai::streamed(bytes, chunk, s.options.chunk_interval, None);
    let content_type = if mulaw {
        "audio/basic"
    } else if raw {
        "audio/l16"
    } else {
        "audio/wav"
    };
    ([("content-type", content_type)], body).into_response()
}
