//! A local vosk-server (`websocket/asr_server.py`) for tests, demos and load benchmarks. It
//! behaves as that script does: a text message containing `config` sets `sample_rate`,
//! `words`, `phrase_list` and `max_alternatives` (no reply); every other message gets
//! exactly one reply: binary s16le PCM is answered with `{"partial" : …}` or, at an endpoint
//! (half a second of silence after speech, like Kaldi's default rule), with
//! `{"result" : [words], "text" : …}`; the text `{"eof" : 1}` — compared literally, spaces
//! included — gets the final result, after which the server closes with 1000. Any other text
//! goes to the recogniser as audio, which fails the handler: the socket closes with 1011
//! (what the real server's `websockets` library does on an exception).
//!
//! It recognises nothing: energy marks speech, and each utterance gets the next scripted
//! transcript. Faults on demand: a slow handshake, latency on every reply, a dropped TCP
//! connection at the n-th eof.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// RMS of a 10 ms block above which the fake hears speech.
const LOUD_RMS: f64 = 400.0;
/// Silence after speech that makes an endpoint.
const ENDPOINT_SILENCE_MS: u64 = 500;
/// vosk-server's end message, byte for byte.
const EOF: &str = r#"{"eof" : 1}"#;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct VoskSimOptions {
    /// Transcripts of the utterances, in order, starting over after the last (over all
    /// connections: a client opens one per utterance).
    pub transcripts: Vec<String>,
    /// Every reply is sent this long after the message it answers.
    pub latency: Duration,
    /// Time before the handshake is answered (slow first byte).
    pub handshake_delay: Duration,
    /// The n-th eof (over all connections) drops the TCP connection without an answer.
    pub drop_on_eof: Option<u32>,
    /// The server's `VOSK_SAMPLE_RATE` (used when no config sets one).
    pub default_sample_rate: u32,
}

impl Default for VoskSimOptions {
    fn default() -> Self {
        Self {
            transcripts: vec!["I would like to check my account balance.".into()],
            latency: Duration::ZERO,
            handshake_delay: Duration::ZERO,
            drop_on_eof: None,
            default_sample_rate: 8_000,
        }
    }
}

/// What one connection did, for assertions.
#[derive(Debug, Clone, Default)]
pub struct VoskConnection {
    /// The config message's `config` object, if one came.
    pub config: Option<serde_json::Value>,
    /// Audio bytes received.
    pub audio_bytes: usize,
    /// Binary frames received.
    pub audio_frames: usize,
    /// Replies sent (one per audio frame, plus the eof's).
    pub replies: Vec<String>,
    /// `{"eof" : 1}` messages received.
    pub eofs: usize,
    /// How the connection ended (`None`: still open).
    pub ended: Option<String>,
}

#[derive(Default)]
struct Shared {
    connections: Vec<VoskConnection>,
    eofs: u32,
    utterances: usize,
}

/// A running fake.
pub struct VoskSim {
    fake: super::WsFake<Shared>,
}

impl VoskSim {
    /// Starts on a loopback port.
    pub async fn start(options: VoskSimOptions) -> std::io::Result<Self> {
        let fake = super::WsFake::start(options, serve).await?;
        Ok(Self { fake })
    }

    /// `ws://127.0.0.1:port`, the `base_url` to configure.
    pub fn base_url(&self) -> String {
        self.fake.base_url()
    }

    /// Every accepted connection so far.
    pub fn connections(&self) -> Vec<VoskConnection> {
        self.fake.lock().connections.clone()
    }
}

use super::lock;

/// The recogniser of one connection.
struct Rec {
    rate: u32,
    words: bool,
    samples: u64,
    carry: Vec<i16>,
    /// Speech since the last result: (start, last loud), in ms.
    speech: Option<(u64, u64)>,
}

async fn serve(tcp: TcpStream, options: Arc<VoskSimOptions>, shared: Arc<Mutex<Shared>>) {
    tokio::time::sleep(options.handshake_delay).await;
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let idx = {
        let mut g = lock(&shared);
        g.connections.push(VoskConnection::default());
        g.connections.len() - 1
    };
    let record = |f: &dyn Fn(&mut VoskConnection)| {
        if let Some(c) = lock(&shared).connections.get_mut(idx) {
            f(c);
        }
    };
    let mut rec = Rec {
        rate: options.default_sample_rate,
        words: true,
        samples: 0,
        carry: Vec::new(),
        speech: None,
    };
    let ended = loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => break format!("error: {e}"),
            None => break "client closed".into(),
        };
        let reply = match msg {
            Message::Text(t) if t.as_str() == EOF => {
                record(&|c| c.eofs += 1);
                let n = {
                    let mut g = lock(&shared);
                    g.eofs += 1;
                    g.eofs
                };
                if options.drop_on_eof == Some(n) {
                    break "dropped at eof (fault)".into();
                }
                let final_result = rec.result(&shared, &options);
                send(&mut ws, &options, &final_result).await;
                record(&|c| c.replies.push(final_result.clone()));
                // The handler returns: websockets closes normally.
                let _ = ws.close(None).await;
                break "eof".into();
            }
            Message::Text(t) if t.contains("config") => {
                match serde_json::from_str::<serde_json::Value>(&t)
                    .ok()
                    .and_then(|v| v.get("config").cloned())
                {
                    Some(config) => {
                        if let Some(r) = config.get("sample_rate").and_then(|r| r.as_f64()) {
                            rec.rate = r as u32;
                        }
                        if let Some(w) = config.get("words").and_then(|w| w.as_bool()) {
                            rec.words = w;
                        }
                        record(&|c| c.config = Some(config.clone()));
                        continue;
                    }
                    None => {
                        close(&mut ws, 1011, "").await;
                        break "unreadable config (1011)".into();
                    }
                }
            }
            Message::Text(t) => {
                // asr_server.py hands any other text to AcceptWaveform, which raises.
                close(&mut ws, 1011, "").await;
                break format!("text that is not the eof (1011): {}", t.as_str());
            }
            Message::Binary(b) => {
                record(&|c| {
                    c.audio_bytes += b.len();
                    c.audio_frames += 1;
                });
                rec.accept(&b, &shared, &options)
            }
            Message::Close(_) => break "client closed".into(),
            _ => continue,
        };
        send(&mut ws, &options, &reply).await;
        record(&|c| c.replies.push(reply.clone()));
    };
    record(&|c| c.ended = Some(ended.clone()));
}

async fn send(
    ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
    options: &VoskSimOptions,
    text: &str,
) {
    tokio::time::sleep(options.latency).await;
    let _ = ws.send(Message::text(text)).await;
}

async fn close(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    };
    let _ = ws.close(Some(frame)).await;
}

impl Rec {
    fn now_ms(&self) -> u64 {
        self.samples * 1000 / u64::from(self.rate.max(1))
    }

    /// `AcceptWaveform` then `Result` or `PartialResult`.
    fn accept(&mut self, bytes: &[u8], shared: &Mutex<Shared>, options: &VoskSimOptions) -> String {
        let mut pcm = std::mem::take(&mut self.carry);
        pcm.extend(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
        let block = (self.rate / 100).max(1) as usize;
        let mut endpoint = false;
        let mut blocks = pcm.chunks_exact(block);
        for b in blocks.by_ref() {
            let t = self.now_ms();
            self.samples += b.len() as u64;
            let rms =
                (b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / b.len() as f64).sqrt();
            let now = self.now_ms();
            match self.speech {
                Some((start, _)) if rms > LOUD_RMS => self.speech = Some((start, now)),
                None if rms > LOUD_RMS => self.speech = Some((t, now)),
                Some((_, last)) if now.saturating_sub(last) >= ENDPOINT_SILENCE_MS => {
                    endpoint = true;
                }
                _ => {}
            }
        }
        self.carry = blocks.remainder().to_vec();
        if endpoint {
            return self.result(shared, options);
        }
        let partial = match self.speech {
            Some(_) => {
                let text = script(shared, options);
                let words: Vec<&str> = text.split_whitespace().collect();
                words[..words.len().div_ceil(2)].join(" ")
            }
            None => String::new(),
        };
        format!(
            "{{\n  \"partial\" : {}\n}}",
            serde_json::Value::from(partial)
        )
    }

    /// `Result` (at an endpoint) or `FinalResult` (at eof): the utterance's words.
    fn result(&mut self, shared: &Mutex<Shared>, options: &VoskSimOptions) -> String {
        let Some((start, end)) = self.speech.take() else {
            return "{\n  \"text\" : \"\"\n}".into();
        };
        let text = script(shared, options);
        lock(shared).utterances += 1;
        let text = raw(&text);
        let words: Vec<&str> = text.split_whitespace().collect();
        let n = words.len().max(1) as f64;
        let (s, e) = (start as f64 / 1000.0, end as f64 / 1000.0);
        let step = (e - s) / n;
        let result: Vec<serde_json::Value> = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                serde_json::json!({"conf": 1.0, "end": s + step * (i as f64 + 1.0),
                    "start": s + step * i as f64, "word": w})
            })
            .collect();
        let text = serde_json::Value::from(text.clone());
        if self.words {
            format!(
                "{{\n  \"result\" : {},\n  \"text\" : {text}\n}}",
                serde_json::Value::from(result)
            )
        } else {
            format!("{{\n  \"text\" : {text}\n}}")
        }
    }
}

/// The transcript of the utterance in progress.
fn script(shared: &Mutex<Shared>, options: &VoskSimOptions) -> String {
    let n = lock(shared).utterances;
    let t = &options.transcripts;
    t.get(n % t.len().max(1)).cloned().unwrap_or_default()
}

/// Vosk's text: lower case words, no punctuation.
fn raw(text: &str) -> String {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
