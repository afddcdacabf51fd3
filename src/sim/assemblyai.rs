//! A local AssemblyAI Universal-Streaming v3 (`/v3/ws`) for tests, demos and load benchmarks.
//! It speaks the documented protocol: the handshake takes `Authorization: <key>` (or a
//! `token` it was given) and needs `speech_model`; a refused session gets an `Error` message
//! and a close frame with the same code (1008 unauthorized, 3006 invalid message, 3007 input
//! duration violation); it sends `Begin`, then for each utterance `SpeechStarted`, partial
//! `Turn`s (`end_of_turn: false`, final words in `transcript`, all words in `words` with
//! `word_is_final`), and an end of turn (`end_of_turn: true`, then a formatted copy when
//! `format_turns=true`). `ForceEndpoint` ends the turn in progress; `Terminate` ends it, sends
//! `Termination` and closes with 1000; `KeepAlive` and `UpdateConfiguration` are taken.
//! `GET /v3/token?expires_in_seconds=…` on the same port mints one-time tokens (the key in
//! `Authorization`; `expires_in_seconds` 1..=600, `max_session_duration_seconds`
//! 60..=10800, else 400).
//!
//! It recognises nothing: energy marks speech, and each utterance gets the next scripted
//! transcript. Its end of turn comes after `min_end_of_turn_silence_when_confident` ms of
//! silence (400 when not given). It does not enforce AssemblyAI's real-time rate (tests send
//! audio faster than real time). Faults on demand: a slow handshake, latency on every
//! message, a dropped TCP connection at the n-th `ForceEndpoint`, an error close after some
//! audio.

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
use tokio_tungstenite::tungstenite::Message;

use crate::audio::codec::Codec;

/// RMS of a 10 ms block above which the fake hears speech.
const LOUD_RMS: f64 = 400.0;
/// Speech between two partial turns.
const PARTIAL_EVERY_MS: u64 = 300;
/// End-of-turn silence when the client sets none.
const DEFAULT_EOT_SILENCE_MS: u64 = 400;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct AssemblyAiSimOptions {
    /// The key clients must send (`Authorization: <key>`).
    pub api_key: String,
    /// Temporary tokens also accepted as `?token=`.
    pub tokens: Vec<String>,
    /// Transcripts of the utterances, in order, starting over after the last.
    pub transcripts: Vec<String>,
    /// Every message is sent this long after the audio or request that caused it.
    pub latency: Duration,
    /// Time before the handshake is answered (slow first byte).
    pub handshake_delay: Duration,
    /// The n-th `ForceEndpoint` (counted over all connections) drops the TCP connection
    /// without a close frame.
    pub drop_on_force_endpoint: Option<u32>,
    /// After this much audio on the first connection, send an `Error` and close with this
    /// code and message (e.g. `3005 Session Cancelled: An error occurred`).
    pub close_after_audio: Option<(Duration, u16, String)>,
    /// Send `SpeechStarted` at the start of each utterance.
    pub speech_started: bool,
}

impl Default for AssemblyAiSimOptions {
    fn default() -> Self {
        Self {
            api_key: "aai-test-key".into(),
            tokens: Vec::new(),
            transcripts: vec!["I would like to check my account balance.".into()],
            latency: Duration::ZERO,
            handshake_delay: Duration::ZERO,
            drop_on_force_endpoint: None,
            close_after_audio: None,
            speech_started: true,
        }
    }
}

/// What one connection did, for assertions.
#[derive(Debug, Clone, Default)]
pub struct AssemblyAiConnection {
    /// The handshake's query parameters.
    pub query: HashMap<String, String>,
    /// Audio bytes received.
    pub audio_bytes: usize,
    /// Duration (ms) of each binary message, in order.
    pub chunk_ms: Vec<u64>,
    /// `ForceEndpoint` messages.
    pub force_endpoints: usize,
    /// `KeepAlive` messages.
    pub keepalives: usize,
    /// `Terminate` messages.
    pub terminates: usize,
    /// `UpdateConfiguration` messages, as received.
    pub updates: Vec<String>,
    /// Every message sent, as JSON text, in order.
    pub sent: Vec<String>,
    /// The handshake carried an `Authorization` header.
    pub authorization_header: bool,
    /// How the connection ended (`None`: still open).
    pub ended: Option<String>,
}

#[derive(Default)]
struct Shared {
    connections: Vec<AssemblyAiConnection>,
    force_endpoints: u32,
    /// Minted tokens not yet used (each serves one session).
    minted: Vec<String>,
    /// Query parameters of each `GET /v3/token`, with the status answered.
    token_requests: Vec<(HashMap<String, String>, u16)>,
}

/// A running fake.
pub struct AssemblyAiSim {
    fake: super::WsFake<Shared>,
}

impl AssemblyAiSim {
    /// Starts on a loopback port.
    pub async fn start(options: AssemblyAiSimOptions) -> std::io::Result<Self> {
        let fake = super::WsFake::start(options, serve).await?;
        Ok(Self { fake })
    }

    /// `ws://127.0.0.1:port`, the `base_url` to configure.
    pub fn base_url(&self) -> String {
        self.fake.base_url()
    }

    /// Every upgraded connection so far (refused ones included, with `ended` saying why).
    pub fn connections(&self) -> Vec<AssemblyAiConnection> {
        self.fake.lock().connections.clone()
    }

    /// Each `GET /v3/token`: its query parameters and the HTTP status answered.
    pub fn token_requests(&self) -> Vec<(HashMap<String, String>, u16)> {
        self.fake.lock().token_requests.clone()
    }
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Answers `GET /v3/token` (plain HTTP/1.1 on the WebSocket's port, as AssemblyAI serves both
/// on one host).
async fn mint(mut tcp: TcpStream, options: &AssemblyAiSimOptions, shared: &Mutex<Shared>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let query = parse_query(target.split_once('?').map_or("", |(_, q)| q));
    let auth = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_string())
    });
    let in_range = |k: &str, lo: u64, hi: u64, required: bool| match query.get(k) {
        None => !required,
        Some(v) => v.parse::<u64>().is_ok_and(|n| (lo..=hi).contains(&n)),
    };
    let (status, body) = if auth.as_deref() != Some(options.api_key.as_str()) {
        (401, json!({"error": "Invalid API key"}))
    } else if !in_range("expires_in_seconds", 1, 600, true)
        || !in_range("max_session_duration_seconds", 60, 10_800, false)
    {
        (
            400,
            json!({"error": "expires_in_seconds must be 1..600; max_session_duration_seconds 60..10800"}),
        )
    } else {
        let token = uuid::Uuid::new_v4().simple().to_string();
        lock(shared).minted.push(token.clone());
        let secs: u64 = query["expires_in_seconds"].parse().unwrap_or(60);
        (200, json!({"token": token, "expires_in_seconds": secs}))
    };
    lock(shared).token_requests.push((query, status));
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Bad Request",
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(resp.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

use super::lock;

/// What the handshake agreed.
#[derive(Debug, Clone)]
struct Params {
    codec: Option<Codec>,
    rate: u32,
    format_turns: bool,
    eot_silence_ms: u64,
}

/// Checks the session as AssemblyAI would; `Err((code, message))` refuses it after the
/// upgrade.
fn check(
    path: &str,
    auth: Option<&str>,
    query: &HashMap<String, String>,
    options: &AssemblyAiSimOptions,
    shared: &Mutex<Shared>,
) -> Result<Params, (u16, String)> {
    // A minted token serves one session.
    let minted = query.get("token").is_some_and(|t| {
        let mut g = lock(shared);
        let at = g.minted.iter().position(|m| m == t);
        at.map(|i| g.minted.remove(i)).is_some()
    });
    let token_ok = minted
        || query
            .get("token")
            .is_some_and(|t| options.tokens.contains(t));
    if !token_ok && auth != Some(options.api_key.as_str()) {
        let why = if auth.is_none() {
            "Unauthorized Connection: Missing Authorization header"
        } else {
            "Unauthorized Connection: Invalid API key"
        };
        return Err((1008, why.into()));
    }
    if path != "/v3/ws" {
        return Err((3006, format!("Invalid Message: unknown path {path}")));
    }
    if query.get("speech_model").is_none_or(|m| m.is_empty()) {
        return Err((3006, "Invalid Message: speech_model is required".into()));
    }
    let codec = match query.get("encoding").map(String::as_str) {
        None | Some("pcm_s16le") => None,
        Some("pcm_mulaw") => Some(Codec::Mulaw),
        Some(other) => return Err((3006, format!("Invalid Message: encoding {other}"))),
    };
    let rate = match query.get("sample_rate").map(|r| r.parse::<u32>()) {
        None => 16_000,
        Some(Ok(r)) if r > 0 => r,
        Some(_) => return Err((3006, "Invalid Message: sample_rate".into())),
    };
    let eot_silence_ms = match query.get("min_end_of_turn_silence_when_confident") {
        None => DEFAULT_EOT_SILENCE_MS,
        Some(v) => v.parse().map_err(|_| {
            (
                3006,
                "Invalid Message: min_end_of_turn_silence_when_confident".to_string(),
            )
        })?,
    };
    Ok(Params {
        codec,
        rate,
        format_turns: query.get("format_turns").is_some_and(|v| v == "true"),
        eot_silence_ms,
    })
}

// The handshake callback's error type is tungstenite's `ErrorResponse`, not ours to box.
#[allow(clippy::result_large_err)]
async fn serve(tcp: TcpStream, options: Arc<AssemblyAiSimOptions>, shared: Arc<Mutex<Shared>>) {
    tokio::time::sleep(options.handshake_delay).await;
    // The token endpoint shares the port: tell a plain GET from a WebSocket upgrade.
    let mut first = [0u8; 16];
    for _ in 0..100 {
        match tcp.peek(&mut first).await {
            Ok(n) if n >= 14 || n == 0 => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(_) => return,
        }
    }
    if first.starts_with(b"GET /v3/token") {
        return mint(tcp, &options, &shared).await;
    }
    let mut seen = None;
    let callback = |req: &Request, resp: Response| {
        let query = parse_query(req.uri().query().unwrap_or(""));
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        seen = Some((req.uri().path().to_string(), auth, query));
        Ok::<Response, ErrorResponse>(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let Some((path, auth, query)) = seen else {
        return;
    };
    let checked = check(&path, auth.as_deref(), &query, &options, &shared);
    let idx = {
        let mut g = lock(&shared);
        g.connections.push(AssemblyAiConnection {
            query,
            authorization_header: auth.is_some(),
            ..AssemblyAiConnection::default()
        });
        g.connections.len() - 1
    };
    let (mut sink, mut stream) = ws.split();
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
    let started = Instant::now();
    let mut conn = Conn {
        params: Params {
            codec: None,
            rate: 16_000,
            format_turns: false,
            eot_silence_ms: DEFAULT_EOT_SILENCE_MS,
        },
        options: options.clone(),
        out: out_tx,
        shared: shared.clone(),
        idx,
        samples: 0,
        carry: Vec::new(),
        speech: None,
        turn_order: 0,
        utterance: 0,
        pcm: Vec::new(),
    };
    let ended = match checked {
        Err((code, why)) => {
            conn.fail(code, &why).await;
            format!("refused with {code}")
        }
        Ok(params) => {
            conn.params = params;
            let id = uuid::Uuid::new_v4().to_string();
            let expires = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() + 3 * 3600);
            conn.send(json!({"type": "Begin", "id": id, "expires_at": expires}))
                .await;
            conn.run(&mut stream, &writer, started).await
        }
    };
    conn.record(|c| c.ended = Some(ended));
    drop(conn);
    let _ = tokio::time::timeout(options.latency + Duration::from_secs(2), writer).await;
}

/// Speech heard in the turn in progress.
#[derive(Debug, Clone, Copy)]
struct Speech {
    start_ms: u64,
    last_loud_ms: u64,
    next_partial_ms: u64,
    partials: usize,
}

struct Conn {
    params: Params,
    options: Arc<AssemblyAiSimOptions>,
    out: mpsc::Sender<(Instant, Message)>,
    shared: Arc<Mutex<Shared>>,
    idx: usize,
    samples: u64,
    carry: Vec<i16>,
    speech: Option<Speech>,
    turn_order: u64,
    utterance: usize,
    pcm: Vec<i16>,
}

impl Conn {
    async fn run(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<
            tokio_tungstenite::WebSocketStream<TcpStream>,
        >,
        writer: &tokio::task::JoinHandle<()>,
        started: Instant,
    ) -> String {
        loop {
            match stream.next().await {
                Some(Ok(Message::Binary(b))) => {
                    if let Some(why) = self.on_audio(&b).await {
                        return why;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let t = t.as_str().to_string();
                    let kind = serde_json::from_str::<serde_json::Value>(&t)
                        .ok()
                        .map(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string));
                    match kind {
                        None => {
                            self.fail(3006, &format!("Invalid JSON: {t}")).await;
                            return "invalid JSON (3006)".into();
                        }
                        Some(Some(k)) if k == "ForceEndpoint" => {
                            self.record(|c| c.force_endpoints += 1);
                            let n = {
                                let mut g = lock(&self.shared);
                                g.force_endpoints += 1;
                                g.force_endpoints
                            };
                            if self.options.drop_on_force_endpoint == Some(n) {
                                writer.abort();
                                return "dropped at ForceEndpoint (fault)".into();
                            }
                            self.end_turn().await;
                        }
                        Some(Some(k)) if k == "KeepAlive" => self.record(|c| c.keepalives += 1),
                        Some(Some(k)) if k == "UpdateConfiguration" => {
                            self.record(|c| c.updates.push(t.clone()));
                        }
                        Some(Some(k)) if k == "Terminate" => {
                            self.record(|c| c.terminates += 1);
                            self.end_turn().await;
                            let secs = self.now_ms() as f64 / 1000.0;
                            self.send(json!({"type": "Termination",
                                "audio_duration_seconds": secs.round() as u64,
                                "session_duration_seconds": started.elapsed().as_secs()}))
                                .await;
                            self.close(1000, "").await;
                            return "Terminate".into();
                        }
                        Some(other) => {
                            let name = other.unwrap_or_default();
                            self.fail(3006, &format!("Invalid Message Type: {name}"))
                                .await;
                            return "invalid message type (3006)".into();
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None => return "client closed".into(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return format!("error: {e}"),
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.samples * 1000 / u64::from(self.params.rate)
    }

    fn record(&self, f: impl FnOnce(&mut AssemblyAiConnection)) {
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

    /// An `Error` message, then a close with the same code (the close reason is limited to
    /// 123 bytes; AssemblyAI then points to the message).
    async fn fail(&self, code: u16, error: &str) {
        self.send(json!({"type": "Error", "error_code": code, "error": error}))
            .await;
        let reason = if error.len() > 123 {
            "See Error message for details"
        } else {
            error
        };
        self.close(code, reason).await;
    }

    fn script(&self) -> &str {
        let t = &self.options.transcripts;
        t.get(self.utterance % t.len().max(1))
            .map_or("", String::as_str)
    }

    /// Words of the script as AssemblyAI's unformatted text: lower case, no punctuation.
    fn raw_words(&self) -> Vec<String> {
        self.script()
            .split_whitespace()
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric() || *c == '\'')
                    .collect::<String>()
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect()
    }

    fn words(&self, sp: &Speech, texts: &[String], n_final: usize) -> Vec<serde_json::Value> {
        let n = texts.len().max(1) as u64;
        let step = (sp.last_loud_ms.saturating_sub(sp.start_ms)) / n;
        texts
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let i = i as u64;
                json!({"start": sp.start_ms + step * i, "end": sp.start_ms + step * (i + 1),
                    "text": w, "confidence": 0.95, "word_is_final": (i as usize) < n_final})
            })
            .collect()
    }

    async fn turn(
        &self,
        sp: &Speech,
        texts: &[String],
        n_final: usize,
        end: bool,
        formatted: bool,
    ) {
        let transcript = if formatted {
            self.script().to_string()
        } else {
            texts[..n_final].join(" ")
        };
        self.send(json!({
            "type": "Turn", "turn_order": self.turn_order, "turn_is_formatted": formatted,
            "end_of_turn": end, "transcript": transcript,
            "end_of_turn_confidence": if end { 0.9 } else { 0.01 },
            "words": self.words(sp, texts, n_final), "utterance": "",
        }))
        .await;
    }

    /// Ends the turn in progress (if any) with its end-of-turn message(s).
    async fn end_turn(&mut self) {
        let Some(sp) = self.speech.take() else {
            return;
        };
        let texts = self.raw_words();
        self.turn(&sp, &texts, texts.len(), true, false).await;
        if self.params.format_turns {
            let texts: Vec<String> = self
                .script()
                .split_whitespace()
                .map(str::to_string)
                .collect();
            self.turn(&sp, &texts, texts.len(), true, true).await;
        }
        self.turn_order += 1;
        self.utterance += 1;
    }

    /// Takes one binary message; `Some(why)`: the connection ended.
    async fn on_audio(&mut self, bytes: &[u8]) -> Option<String> {
        self.pcm.clear();
        match self.params.codec {
            Some(codec) => codec.decode_into(bytes, &mut self.pcm),
            None => self.pcm.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            ),
        }
        let ms = self.pcm.len() as u64 * 1000 / u64::from(self.params.rate);
        self.record(|c| {
            c.audio_bytes += bytes.len();
            c.chunk_ms.push(ms);
        });
        if !(50..=1000).contains(&ms) {
            self.fail(
                3007,
                &format!("Input duration violation: {ms} ms. Expected between 50 and 1000 ms"),
            )
            .await;
            return Some(format!("input duration violation {ms} ms (3007)"));
        }
        let block = (self.params.rate / 100) as usize;
        let mut pcm = std::mem::take(&mut self.carry);
        pcm.extend_from_slice(&self.pcm);
        let mut blocks = pcm.chunks_exact(block);
        for b in blocks.by_ref() {
            self.on_block(b).await;
        }
        self.carry = blocks.remainder().to_vec();
        if let Some((after, code, error)) = &self.options.close_after_audio {
            if self.idx == 0 && self.now_ms() >= after.as_millis() as u64 {
                self.fail(*code, error).await;
                return Some(format!("closed with {code} after audio (fault)"));
            }
        }
        None
    }

    async fn on_block(&mut self, b: &[i16]) {
        let t = self.now_ms();
        self.samples += b.len() as u64;
        let end = self.now_ms();
        let rms = (b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / b.len() as f64).sqrt();
        if rms > LOUD_RMS {
            match &mut self.speech {
                Some(sp) => sp.last_loud_ms = end,
                None => {
                    self.speech = Some(Speech {
                        start_ms: t,
                        last_loud_ms: end,
                        next_partial_ms: t + PARTIAL_EVERY_MS,
                        partials: 0,
                    });
                    if self.options.speech_started {
                        self.send(json!({"type": "SpeechStarted", "timestamp": t}))
                            .await;
                    }
                }
            }
            if let Some(sp) = self.speech {
                if end >= sp.next_partial_ms {
                    // Words appear one partial at a time; all but the newest are final.
                    let texts = self.raw_words();
                    let shown = (sp.partials + 1).min(texts.len().saturating_sub(1)).max(1);
                    let shown = shown.min(texts.len());
                    self.turn(&sp, &texts[..shown], shown.saturating_sub(1), false, false)
                        .await;
                    if let Some(sp) = &mut self.speech {
                        sp.partials += 1;
                        sp.next_partial_ms = end + PARTIAL_EVERY_MS;
                    }
                }
            }
            return;
        }
        if let Some(sp) = self.speech {
            if end.saturating_sub(sp.last_loud_ms) >= self.params.eot_silence_ms {
                self.end_turn().await;
            }
        }
    }
}
