//! A local OpenAI-compatible audio API for tests, demos and benchmarks:
//! `POST /v1/audio/transcriptions` (multipart, answered from a script) and
//! `POST /v1/audio/speech` (JSON, a tone as long as the text, streamed in chunks). It checks
//! requests as the real services do: the Bearer key (401 with OpenAI's error body), a `file`
//! part with a filename and a readable 16-bit WAV, a `model` field, `response_format`;
//! `model`/`voice`/`input` for speech. The `FasterWhisperServer` flavour has that server's
//! quirks (`model_name` field, only `json`/`verbose_json`). Faults on demand: latency before
//! the first byte, failing requests, a stream cut short.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::kore::LocalServer;

/// Which server the fake imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// api.openai.com: `model` is required; `json`, `text`, `verbose_json`, `srt`, `vtt`.
    OpenAi,
    /// faster-whisper-server 0.0.3: `model` ignored (`model_name` optional), only `json` and
    /// `verbose_json` (anything else: 400).
    FasterWhisperServer,
}

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct OpenAiSimOptions {
    /// The Bearer key clients must send (`None`: no auth, like a self-hosted server).
    pub api_key: Option<String>,
    /// Which server to imitate.
    pub flavor: Flavor,
    /// Transcripts of successive transcription requests, starting over after the last.
    pub transcripts: Vec<String>,
    /// Wait before the response starts (slow first byte).
    pub latency: Duration,
    /// Every n-th request (of each endpoint) fails with 500 (0: none).
    pub fail_every: u32,
    /// Rate of `pcm` speech (OpenAI: 24 kHz; local Piper wrappers: 22,050 Hz).
    pub speech_rate: u32,
    /// Put `rate=` in the `pcm` Content-Type (`audio/pcm;rate=24000;channels=1`), as some
    /// compatible servers do.
    pub rate_in_content_type: bool,
    /// Speech audio per character of input.
    pub ms_per_char: u64,
    /// Speech streams in chunks of this much audio, one per `chunk_interval`.
    pub chunk_ms: u64,
    /// Time between speech chunks.
    pub chunk_interval: Duration,
    /// Input containing this text fails with 500.
    pub fail_on: Option<String>,
    /// A speech stream is cut (connection dropped) after this many bytes.
    pub cut_after: Option<usize>,
}

impl Default for OpenAiSimOptions {
    fn default() -> Self {
        Self {
            api_key: Some("sk-test-key".into()),
            flavor: Flavor::OpenAi,
            transcripts: vec!["I would like to check my account balance.".into()],
            latency: Duration::ZERO,
            fail_every: 0,
            speech_rate: 24_000,
            rate_in_content_type: false,
            ms_per_char: 50,
            chunk_ms: 100,
            chunk_interval: Duration::from_millis(5),
            fail_on: None,
            cut_after: None,
        }
    }
}

/// One transcription request as received.
#[derive(Debug, Clone, Default)]
pub struct TranscriptionRequest {
    /// Text form fields.
    pub fields: HashMap<String, String>,
    /// The `file` part's filename and content type.
    pub file: Option<(String, String)>,
    /// The WAV's rate and length.
    pub wav: Option<(u32, u64)>,
}

#[derive(Default)]
struct Inner {
    transcriptions: Vec<TranscriptionRequest>,
    speeches: Vec<serde_json::Value>,
    refused: Vec<u16>,
}

struct Shared {
    options: OpenAiSimOptions,
    inner: Mutex<Inner>,
}

/// A running fake.
pub struct OpenAiSim {
    server: LocalServer,
    shared: Arc<Shared>,
}

impl OpenAiSim {
    /// Starts on a loopback port.
    pub async fn start(options: OpenAiSimOptions) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            options,
            inner: Mutex::default(),
        });
        let app = Router::new()
            .route("/v1/audio/transcriptions", post(transcriptions))
            .route("/v1/audio/speech", post(speech))
            .with_state(shared.clone());
        let server = LocalServer::start("127.0.0.1:0", app).await?;
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:port`, the `base_url` to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Transcription requests that passed authentication, in order.
    pub fn transcriptions(&self) -> Vec<TranscriptionRequest> {
        lock(&self.shared).transcriptions.clone()
    }

    /// Speech request bodies that passed authentication, in order.
    pub fn speeches(&self) -> Vec<serde_json::Value> {
        lock(&self.shared).speeches.clone()
    }

    /// Statuses of requests refused (401, 400, 500).
    pub fn refused(&self) -> Vec<u16> {
        lock(&self.shared).refused.clone()
    }
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    s.inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// OpenAI's error body.
fn error(s: &Shared, status: u16, kind: &str, message: &str) -> Response {
    lock(s).refused.push(status);
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

/// The refusal of a request without the right key (`None`: authorized).
fn refusal(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let key = s.options.api_key.as_ref()?;
    let sent = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match sent {
        Some(k) if k == key => None,
        Some(_) => Some(error(
            s,
            401,
            "invalid_request_error",
            "Incorrect API key provided.",
        )),
        None => Some(error(
            s,
            401,
            "invalid_request_error",
            "You didn't provide an API key.",
        )),
    }
}

/// One part of a `multipart/form-data` body.
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

/// Splits a multipart body (RFC 7578) into its parts.
fn parts(headers: &HeaderMap, body: &[u8]) -> Option<Vec<Part>> {
    let ct = headers.get("content-type")?.to_str().ok()?;
    let boundary = ct
        .strip_prefix("multipart/form-data")?
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delim = format!("--{boundary}");
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let at = find(rest, delim.as_bytes())?;
        rest = &rest[at + delim.len()..];
        if rest.starts_with(b"--") {
            return Some(out);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..head_end]).ok()?;
        rest = &rest[head_end + 4..];
        let next = find(rest, format!("\r\n{delim}").as_bytes())?;
        let data = rest[..next].to_vec();
        rest = &rest[next + 2..];
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data,
        };
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':')?;
            match k.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for p in v.split(';').map(str::trim) {
                        if let Some(n) = p.strip_prefix("name=") {
                            part.name = n.trim_matches('"').to_string();
                        } else if let Some(f) = p.strip_prefix("filename=") {
                            part.filename = Some(f.trim_matches('"').to_string());
                        }
                    }
                }
                "content-type" => part.content_type = Some(v.trim().to_string()),
                _ => {}
            }
        }
        out.push(part);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn transcriptions(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    tokio::time::sleep(s.options.latency).await;
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    let Some(parts) = parts(&headers, &body) else {
        return error(
            &s,
            400,
            "invalid_request_error",
            "Could not parse multipart form.",
        );
    };
    let mut req = TranscriptionRequest::default();
    let mut wav = None;
    for p in parts {
        if p.name == "file" {
            let (Some(f), Some(ct)) = (p.filename, p.content_type) else {
                return error(
                    &s,
                    400,
                    "invalid_request_error",
                    "The file part needs a filename and a content type.",
                );
            };
            req.file = Some((f, ct));
            wav = Some(p.data);
        } else {
            req.fields
                .insert(p.name, String::from_utf8_lossy(&p.data).into_owned());
        }
    }
    let Some(wav) = wav else {
        return error(&s, 400, "invalid_request_error", "Missing file.");
    };
    match crate::audio::wav::decode(&wav, "upload") {
        Ok(f) => req.wav = Some((f.sample_rate, f.duration_ms())),
        Err(_) => {
            return error(
                &s,
                400,
                "invalid_request_error",
                "Invalid file format. Supported formats: flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, wav, webm",
            )
        }
    }
    let format = req
        .fields
        .get("response_format")
        .cloned()
        .unwrap_or_else(|| "json".into());
    match s.options.flavor {
        Flavor::OpenAi => {
            if !req.fields.contains_key("model") {
                return error(
                    &s,
                    400,
                    "invalid_request_error",
                    "you must provide a model parameter",
                );
            }
            if !["json", "text", "verbose_json", "srt", "vtt"].contains(&format.as_str()) {
                return error(&s, 400, "invalid_request_error", "Invalid response_format.");
            }
        }
        Flavor::FasterWhisperServer => {
            if !["json", "verbose_json"].contains(&format.as_str()) {
                return error(
                    &s,
                    400,
                    "invalid_request_error",
                    "Unsupported response_format.",
                );
            }
        }
    }
    let n = {
        let mut g = lock(&s);
        g.transcriptions.push(req);
        g.transcriptions.len()
    };
    if s.options.fail_every > 0 && (n as u32).is_multiple_of(s.options.fail_every) {
        return error(
            &s,
            500,
            "server_error",
            "The server had an error while processing your request.",
        );
    }
    let t = &s.options.transcripts;
    let text = t.get((n - 1) % t.len().max(1)).cloned().unwrap_or_default();
    match format.as_str() {
        "text" => text.into_response(),
        "verbose_json" => Json(json!({"task": "transcribe", "language": "english",
            "duration": 1.0, "text": text, "segments": []}))
        .into_response(),
        _ => {
            Json(json!({"text": text, "usage": {"type": "duration", "seconds": 1}})).into_response()
        }
    }
}

async fn speech(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    tokio::time::sleep(s.options.latency).await;
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(
            &s,
            400,
            "invalid_request_error",
            "We could not parse the JSON body of your request.",
        );
    };
    let field = |k: &str| req.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let (Some(_model), Some(_voice), Some(input)) =
        (field("model"), field("voice"), field("input"))
    else {
        return error(
            &s,
            400,
            "invalid_request_error",
            "model, voice and input are required.",
        );
    };
    let format = field("response_format").unwrap_or_else(|| "mp3".into());
    if !["pcm", "wav"].contains(&format.as_str()) {
        return error(
            &s,
            400,
            "invalid_request_error",
            "The fake speaks only pcm and wav.",
        );
    }
    if input.is_empty() || input.chars().count() > 4096 {
        return error(
            &s,
            400,
            "invalid_request_error",
            "input must be 1 to 4096 characters.",
        );
    }
    let n = {
        let mut g = lock(&s);
        g.speeches.push(req.clone());
        g.speeches.len()
    };
    let failing = s
        .options
        .fail_on
        .as_ref()
        .is_some_and(|f| input.contains(f.as_str()));
    if failing || (s.options.fail_every > 0 && (n as u32).is_multiple_of(s.options.fail_every)) {
        return error(
            &s,
            500,
            "server_error",
            "The server had an error while processing your request.",
        );
    }
    let rate = s.options.speech_rate;
    let samples =
        (input.chars().count() as u64 * s.options.ms_per_char * u64::from(rate) / 1000) as usize;
    let mut bytes: Vec<u8> = Vec::with_capacity(samples * 2 + 44);
    if format == "wav" {
        bytes = crate::stt::openai::wav_bytes(&[], rate);
        // Streamed: the data length is not known up front.
        let unknown = u32::MAX.to_le_bytes();
        bytes[4..8].copy_from_slice(&unknown);
        bytes[40..44].copy_from_slice(&unknown);
    }
    bytes.extend(tone(samples, rate).iter().flat_map(|x| x.to_le_bytes()));
    let chunk = (s.options.chunk_ms * u64::from(rate) / 1000 * 2).max(2) as usize;
    let body = streamed(bytes, chunk, s.options.chunk_interval, s.options.cut_after);
    let content_type = match (format.as_str(), s.options.rate_in_content_type) {
        ("wav", _) => "audio/wav".to_string(),
        (_, true) => format!("audio/pcm;rate={rate};channels=1"),
        _ => "audio/pcm".to_string(),
    };
    ([("content-type", content_type)], body).into_response()
}

/// `n` samples of a 220 Hz tone at `rate`: the fakes' "speech".
pub(crate) fn tone(n: usize, rate: u32) -> Vec<i16> {
    let step = std::f64::consts::TAU * 220.0 / f64::from(rate);
    (0..n)
        .map(|i| ((i as f64 * step).sin() * 6_000.0) as i16)
        .collect()
}

/// `bytes` as a chunked body, `chunk` bytes every `interval`; with `cut_after`, the stream
/// breaks (the connection drops) after that many bytes.
pub(crate) fn streamed(
    mut bytes: Vec<u8>,
    chunk: usize,
    interval: Duration,
    cut_after: Option<usize>,
) -> Body {
    if let Some(cut) = cut_after {
        bytes.truncate(cut);
    }
    let cut = cut_after.is_some();
    let chunk = chunk.max(1);
    let stream = futures_util::stream::unfold((bytes, 0usize), move |(bytes, at)| async move {
        if at == usize::MAX {
            return None;
        }
        if at > 0 {
            tokio::time::sleep(interval).await;
        }
        if at >= bytes.len() {
            if cut {
                return Some((
                    Err(std::io::Error::other("cut short (fault)")),
                    (bytes, usize::MAX),
                ));
            }
            return None;
        }
        let end = (at + chunk).min(bytes.len());
        let piece = Bytes::copy_from_slice(&bytes[at..end]);
        Some((Ok::<_, std::io::Error>(piece), (bytes, end)))
    });
    Body::from_stream(stream)
}
