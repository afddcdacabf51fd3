//! A local ElevenLabs `stream-input` TTS WebSocket for tests, demos and load benchmarks,
//! speaking the documented protocol: `/v1/text-to-speech/{voice_id}/stream-input` with
//! `model_id` and `output_format` in the query, the key in the `xi-api-key` header or as
//! `xi_api_key` in the first message. The first message's `text` must be exactly one space.
//! Text is buffered and rendered (a tone, `ms_per_char` per character) once the buffer reaches
//! the first `chunk_length_schedule` threshold, on `flush`, or at the end (`{"text": ""}`);
//! audio goes out as base64 `{"audio": …, "isFinal": null, "normalizedAlignment": …}` in
//! chunks, then `{"isFinal": true}` and a 1000 close. A bad key or a malformed first message
//! gets `{"message", "error", "code"}` and a 1008 close; a socket idle for
//! `inactivity_timeout` (20 s) is closed with 1008 too.
//!
//! Faults on demand: latency before the first audio, a failure on text containing a marker,
//! a TCP drop after some audio chunks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::audio::codec::Codec;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct ElevenLabsSimOptions {
    /// The key clients must send.
    pub api_key: String,
    /// Wait before the first audio of each render (the vendor's time to first byte).
    pub latency: Duration,
    /// Audio per character of text.
    pub ms_per_char: u64,
    /// Audio per message.
    pub chunk_ms: u64,
    /// Text containing this gets an error message and a 1011 close.
    pub fail_on: Option<String>,
    /// Drop the TCP connection after this many audio messages (over the connection).
    pub drop_after_chunks: Option<usize>,
    /// A socket that receives nothing this long is closed with 1008.
    pub inactivity_timeout: Duration,
}

impl Default for ElevenLabsSimOptions {
    fn default() -> Self {
        Self {
            api_key: "xi-test-key".into(),
            latency: Duration::ZERO,
            ms_per_char: 50,
            chunk_ms: 100,
            fail_on: None,
            drop_after_chunks: None,
            inactivity_timeout: Duration::from_secs(20),
        }
    }
}

/// What one connection did, for assertions.
#[derive(Debug, Clone, Default)]
pub struct ElevenLabsConnection {
    /// The voice id in the path.
    pub voice_id: String,
    /// The handshake's query parameters.
    pub query: HashMap<String, String>,
    /// The `text` of every client message, in order.
    pub texts: Vec<String>,
}

#[derive(Default)]
struct Shared {
    connections: Vec<ElevenLabsConnection>,
}

/// A running fake.
pub struct ElevenLabsSim {
    fake: super::WsFake<Shared>,
}

use super::lock;

impl ElevenLabsSim {
    /// Starts on a loopback port.
    pub async fn start(options: ElevenLabsSimOptions) -> std::io::Result<Self> {
        let fake = super::WsFake::start(options, serve).await?;
        Ok(Self { fake })
    }

    /// `ws://127.0.0.1:port`, the `base_url` to configure.
    pub fn base_url(&self) -> String {
        self.fake.base_url()
    }

    /// Every accepted connection so far.
    pub fn connections(&self) -> Vec<ElevenLabsConnection> {
        self.fake.lock().connections.clone()
    }
}

/// `(mulaw, rate)` of an `output_format` the fake renders.
fn format(f: &str) -> Option<(bool, u32)> {
    let (kind, rate) = f.split_once('_')?;
    let rate: u32 = rate.parse().ok()?;
    match kind {
        "ulaw" if rate == 8_000 => Some((true, rate)),
        "pcm" if [8_000, 16_000, 22_050, 24_000, 44_100].contains(&rate) => Some((false, rate)),
        _ => None,
    }
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

// The handshake callback's error type is tungstenite's `ErrorResponse`, not ours to box.
#[allow(clippy::result_large_err)]
async fn serve(tcp: TcpStream, options: Arc<ElevenLabsSimOptions>, shared: Arc<Mutex<Shared>>) {
    let mut seen = None;
    let callback = |req: &Request, resp: Response| {
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = req
            .headers()
            .get("xi-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        seen = Some((req.uri().path().to_string(), query, key));
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let Some((path, query, header_key)) = seen else {
        return;
    };
    let voice_id = path
        .strip_prefix("/v1/text-to-speech/")
        .and_then(|p| p.strip_suffix("/stream-input"))
        .unwrap_or_default()
        .to_string();
    let index = {
        let mut s = lock(&shared);
        s.connections.push(ElevenLabsConnection {
            voice_id: voice_id.clone(),
            query: query.clone(),
            texts: Vec::new(),
        });
        s.connections.len() - 1
    };
    let Some((mulaw, rate)) = query.get("output_format").and_then(|f| format(f)) else {
        return fail(
            &mut ws,
            1008,
            "invalid_output_format",
            "Unsupported output_format.",
        )
        .await;
    };
    if voice_id.is_empty() || !query.contains_key("model_id") {
        return fail(
            &mut ws,
            1008,
            "invalid_request",
            "A voice id and model_id are required.",
        )
        .await;
    }
    let mut session = Session {
        options: &options,
        mulaw,
        rate,
        buffer: String::new(),
        threshold: None,
        sent_chunks: 0,
    };
    let mut first = true;
    loop {
        let msg = match tokio::time::timeout(options.inactivity_timeout, ws.next()).await {
            Err(_) => {
                return fail(
                    &mut ws,
                    1008,
                    "input_timeout_exceeded",
                    "No text received within the inactivity timeout.",
                )
                .await
            }
            Ok(Some(Ok(m))) => m,
            Ok(_) => return,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => return,
            _ => continue,
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            return fail(&mut ws, 1008, "invalid_message", "Messages must be JSON.").await;
        };
        let Some(t) = v.get("text").and_then(|t| t.as_str()) else {
            return fail(&mut ws, 1008, "invalid_message", "`text` is required.").await;
        };
        lock(&shared).connections[index].texts.push(t.to_string());
        if first {
            first = false;
            let key = v
                .get("xi_api_key")
                .and_then(|k| k.as_str())
                .map(str::to_string)
                .or(header_key.clone());
            if key.as_deref() != Some(options.api_key.as_str()) {
                return fail(&mut ws, 1008, "invalid_api_key", "Invalid API key.").await;
            }
            if t != " " {
                return fail(
                    &mut ws,
                    1008,
                    "invalid_request",
                    "The first message must have text of a single space.",
                )
                .await;
            }
            session.threshold = v
                .pointer("/generation_config/chunk_length_schedule/0")
                .and_then(|n| n.as_u64())
                .map(|n| n as usize);
            continue;
        }
        let end = t.is_empty();
        let flush = v.get("flush").and_then(|f| f.as_bool()) == Some(true);
        session.buffer.push_str(t);
        let due = session
            .threshold
            .is_some_and(|n| session.buffer.chars().count() >= n);
        if (flush || end || due) && !session.render(&mut ws).await {
            return;
        }
        if end {
            let _ = ws
                .send(Message::text(json!({"isFinal": true}).to_string()))
                .await;
            let _ = ws
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                })))
                .await;
            return;
        }
    }
}

struct Session<'a> {
    options: &'a ElevenLabsSimOptions,
    mulaw: bool,
    rate: u32,
    buffer: String,
    threshold: Option<usize>,
    sent_chunks: usize,
}

impl Session<'_> {
    /// Renders the buffered text as audio messages; `false`: the connection is over.
    async fn render(&mut self, ws: &mut Ws) -> bool {
        let buffered = std::mem::take(&mut self.buffer);
        let text = buffered.trim();
        if text.is_empty() {
            return true;
        }
        if self
            .options
            .fail_on
            .as_ref()
            .is_some_and(|m| text.contains(m.as_str()))
        {
            fail(ws, 1011, "internal_error", "Synthesis failed.").await;
            return false;
        }
        tokio::time::sleep(self.options.latency).await;
        let n = (text.chars().count() as u64 * self.options.ms_per_char * u64::from(self.rate)
            / 1000) as usize;
        let tone = super::openai::tone(n, self.rate);
        let per_chunk = (self.options.chunk_ms * u64::from(self.rate) / 1000) as usize;
        for samples in tone.chunks(per_chunk.max(1)) {
            if self
                .options
                .drop_after_chunks
                .is_some_and(|k| self.sent_chunks >= k)
            {
                // A TCP drop: no close frame.
                return false;
            }
            let mut bytes = Vec::with_capacity(samples.len() * 2);
            if self.mulaw {
                Codec::Mulaw.encode_into(samples, &mut bytes);
            } else {
                bytes.extend(samples.iter().flat_map(|x| x.to_le_bytes()));
            }
            let msg = json!({
                "audio": base64::engine::general_purpose::STANDARD.encode(&bytes),
                "isFinal": null,
                "normalizedAlignment": {"chars": [], "charStartTimesMs": [], "charsDurationsMs": []},
            });
            if ws.send(Message::text(msg.to_string())).await.is_err() {
                return false;
            }
            self.sent_chunks += 1;
        }
        true
    }
}

/// An error message, then a close with `code`.
async fn fail(ws: &mut Ws, code: u16, error: &str, message: &str) {
    let body = json!({"message": message, "error": error, "code": code});
    let _ = ws.send(Message::text(body.to_string())).await;
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: error.to_string().into(),
        })))
        .await;
}
