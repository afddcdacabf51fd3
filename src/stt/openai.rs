//! OpenAI-compatible transcription: each utterance the VAD found is sent as one
//! `POST {base_url}/v1/audio/transcriptions` (multipart: a 16-bit WAV `file`, `model`,
//! `language`, `response_format=json`, optional `prompt`), with a Bearer key when one is
//! configured. Serves OpenAI, Groq and self-hosted servers that speak this API
//! (faster-whisper-server names its model field `model_name`: `model_field`).
//!
//! Requests of one call run while the next utterance is being heard; their transcripts come
//! out in utterance order. A failed request (timeout, connection, 4xx/5xx) is that
//! utterance's `Error`; the session goes on.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{FuturesOrdered, StreamExt as _};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    SpeechToText, SttBackend, SttControl, SttError, SttEvent, SttInput, SttParams, SttStream,
    Transcript, STT_EVENT_CAPACITY, STT_INPUT_CAPACITY,
};
use crate::audio::INTERNAL_RATE;
use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;
use crate::telemetry::metrics;

/// Name in config, logs and the metrics' `backend` label.
const NAME: &str = "openai";
/// Longest utterance sent (OpenAI takes files up to 25 MB; 16 kHz s16 is 32 kB/s).
const MAX_SECONDS: usize = 300;

/// `[stt] provider = "openai"` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiSttConfig {
    /// Bearer key; required for api.openai.com, optional for a self-hosted server. Best from
    /// the environment (`VOXHOOK__STT__API_KEY`).
    pub api_key: SensitiveString,
    /// `https://api.openai.com`, `https://api.groq.com/openai`, `http://127.0.0.1:8000`, …
    /// (`/v1/audio/transcriptions` is appended).
    pub base_url: String,
    /// `model` form field (`whisper-1`, `gpt-4o-mini-transcribe`, …).
    pub model: String,
    /// Name of the model form field: `model`, or `model_name` (faster-whisper-server).
    pub model_field: String,
    /// `language` form field (ISO-639-1); a session's language overrides it; `""`: omitted.
    pub language: String,
    /// `prompt` form field (biasing text); `""`: omitted.
    pub prompt: String,
    /// Whole-request deadline.
    pub timeout_ms: u64,
    /// Connection deadline.
    pub connect_timeout_ms: u64,
}

impl Default for OpenAiSttConfig {
    fn default() -> Self {
        Self {
            api_key: SensitiveString::default(),
            base_url: "https://api.openai.com".into(),
            model: "whisper-1".into(),
            model_field: "model".into(),
            language: "en".into(),
            prompt: String::new(),
            timeout_ms: 15_000,
            connect_timeout_ms: 3_000,
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct OpenAiSttSettings {
    /// Bearer key (`None`: no `Authorization` header).
    pub api_key: Option<SensitiveString>,
    /// The transcription endpoint.
    pub url: String,
    /// Model.
    pub model: String,
    /// Model field name.
    pub model_field: &'static str,
    /// Default language (`None`: the server detects it).
    pub language: Option<String>,
    /// Prompt.
    pub prompt: Option<String>,
    /// Request deadline.
    pub timeout: Duration,
    /// Connect deadline.
    pub connect_timeout: Duration,
}

impl Component for OpenAiSttSettings {
    type Raw = OpenAiSttConfig;

    fn validate(raw: OpenAiSttConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        let base = endpoint(&raw.base_url, &raw.api_key, ctx, errs);
        errs.check(
            !raw.model.trim().is_empty(),
            &ctx.key("model"),
            "must not be empty",
        );
        let model_field = match raw.model_field.as_str() {
            "model" => "model",
            "model_name" => "model_name",
            _ => {
                errs.push(
                    &ctx.key("model_field"),
                    "must be \"model\" or \"model_name\"",
                );
                "model"
            }
        };
        errs.check(
            (100..=120_000).contains(&raw.timeout_ms),
            &ctx.key("timeout_ms"),
            "must be 100..=120000",
        );
        errs.check(
            (100..=60_000).contains(&raw.connect_timeout_ms),
            &ctx.key("connect_timeout_ms"),
            "must be 100..=60000",
        );
        let some = |s: String| (!s.trim().is_empty()).then_some(s);
        Self {
            api_key: (!raw.api_key.is_empty()).then_some(raw.api_key),
            url: format!("{base}/v1/audio/transcriptions"),
            model: raw.model,
            model_field,
            language: some(raw.language),
            prompt: some(raw.prompt),
            timeout: Duration::from_millis(raw.timeout_ms),
            connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
        }
    }
}

/// Checks `base_url` (and that the hosted services get a key); the URL without a trailing
/// slash. Shared with `tts::openai`, the same API family.
pub(crate) fn endpoint(
    base_url: &str,
    api_key: &SensitiveString,
    ctx: &Ctx<'_>,
    errs: &mut Errors,
) -> String {
    let base = base_url.trim_end_matches('/');
    errs.check(
        base.starts_with("https://") || base.starts_with("http://"),
        &ctx.key("base_url"),
        "must start with https:// (or http:// for a local server)",
    );
    errs.check(
        !(base.contains("api.openai.com") || base.contains("api.groq.com")) || !api_key.is_empty(),
        &ctx.key("api_key"),
        &format!(
            "missing: {base} needs an API key (set it here or in {})",
            ctx.env_var("api_key")
        ),
    );
    base.to_string()
}

impl SttBackend for OpenAiSttSettings {
    fn build(&self) -> Result<Arc<dyn SpeechToText>, SttError> {
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout.min(self.timeout))
            .build()
            .map_err(|e| SttError::Init(format!("openai: HTTP client: {e}")))?;
        Ok(Arc::new(OpenAiStt(Arc::new(Client {
            cfg: self.clone(),
            http,
        }))))
    }
}

struct Client {
    cfg: OpenAiSttSettings,
    http: reqwest::Client,
}

/// The OpenAI-compatible backend.
#[derive(Clone)]
pub struct OpenAiStt(Arc<Client>);

#[async_trait]
impl SpeechToText for OpenAiStt {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sample_rate(&self) -> u32 {
        INTERNAL_RATE
    }

    async fn open(
        &self,
        params: SttParams,
        cancel: CancellationToken,
    ) -> Result<SttStream, SttError> {
        let (input, input_rx) = mpsc::channel(STT_INPUT_CAPACITY);
        let (events_tx, events) = mpsc::channel(STT_EVENT_CAPACITY);
        let language = params.language.or_else(|| self.0.cfg.language.clone());
        let task = session(self.0.clone(), language, input_rx, events_tx, cancel);
        tokio::spawn(tracing::Instrument::in_current_span(task));
        Ok(SttStream { input, events })
    }
}

async fn session(
    client: Arc<Client>,
    language: Option<String>,
    mut input: mpsc::Receiver<SttInput>,
    events: mpsc::Sender<SttEvent>,
    cancel: CancellationToken,
) {
    let mut pcm: Vec<i16> = Vec::new();
    let mut in_flight = FuturesOrdered::new();
    let mut closing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            done = in_flight.next(), if !in_flight.is_empty() => {
                let Some(ev) = done else { continue };
                if events.send(ev).await.is_err() {
                    return;
                }
            }
            it = input.recv(), if !closing => match it {
                Some(SttInput::Audio(a)) => {
                    if pcm.len() < MAX_SECONDS * INTERNAL_RATE as usize {
                        pcm.extend_from_slice(&a);
                    }
                }
                Some(SttInput::Control(SttControl::Finalize)) => {
                    let utterance = std::mem::take(&mut pcm);
                    let (client, language) = (client.clone(), language.clone());
                    in_flight.push_back(async move {
                        client.transcribe(utterance, language.as_deref()).await
                    });
                }
                Some(SttInput::Control(SttControl::KeepAlive)) => {}
                Some(SttInput::Control(SttControl::Close)) | None => closing = true,
            },
        }
        if closing && in_flight.is_empty() {
            return;
        }
    }
}

/// `{"text": …}` (`json` and `verbose_json` alike; other keys ignored).
#[derive(Deserialize)]
struct TranscriptionResponse {
    text: String,
}

/// `{"error": {"message": …}}` (OpenAI) or `{"err_msg": …}` (Deepgram).
#[derive(Deserialize)]
struct ErrorResponse {
    error: Option<ErrorBody>,
    err_msg: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

impl Client {
    /// One utterance's outcome, as the event to emit.
    async fn transcribe(&self, pcm: Vec<i16>, language: Option<&str>) -> SttEvent {
        let audio_ms = pcm.len() as u64 * 1000 / u64::from(INTERNAL_RATE);
        if pcm.is_empty() {
            return SttEvent::Final(Transcript {
                text: String::new(),
                confidence: None,
                audio_ms: 0,
                decode_ms: 0,
                queue_ms: 0,
            });
        }
        let t0 = Instant::now();
        match self.request(&pcm, language).await {
            Ok(text) => {
                let took = t0.elapsed();
                metrics::stt_final_latency(NAME, took);
                SttEvent::Final(Transcript {
                    text: text.trim().to_string(),
                    confidence: None,
                    audio_ms,
                    decode_ms: took.as_millis() as u64,
                    queue_ms: 0,
                })
            }
            Err((kind, msg)) => {
                metrics::stt_error(NAME, kind);
                tracing::warn!(error = %msg, kind, "Transcription request failed.");
                SttEvent::Error(format!("openai: {msg}"))
            }
        }
    }

    async fn request(
        &self,
        pcm: &[i16],
        language: Option<&str>,
    ) -> Result<String, (&'static str, String)> {
        let mut form = Multipart::new();
        form.file(
            "file",
            "utterance.wav",
            "audio/wav",
            &wav_bytes(pcm, INTERNAL_RATE),
        );
        form.field(self.cfg.model_field, &self.cfg.model);
        if let Some(l) = language {
            form.field("language", l);
        }
        if let Some(p) = &self.cfg.prompt {
            form.field("prompt", p);
        }
        form.field("response_format", "json");
        let (content_type, body) = form.finish();
        let mut req = self
            .http
            .post(&self.cfg.url)
            .header("content-type", content_type)
            .body(body);
        if let Some(key) = &self.cfg.api_key {
            req = req.bearer_auth(key.expose());
        }
        let resp = req.send().await.map_err(|e| transport(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| transport(&e))?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        serde_json::from_slice::<TranscriptionResponse>(&bytes)
            .map(|r| r.text)
            .map_err(|e| ("protocol", format!("unexpected response: {e}")))
    }
}

/// A non-2xx answer as a failure kind and message (the body's `error.message`, OpenAI's, or
/// `err_msg`, Deepgram's, when it has one). Shared with the other HTTP speech backends.
pub(crate) fn refused(status: reqwest::StatusCode, body: &[u8]) -> (&'static str, String) {
    let why = serde_json::from_slice::<ErrorResponse>(body)
        .ok()
        .and_then(|e| e.error.map(|e| e.message).or(e.err_msg))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into());
    let kind = if matches!(status.as_u16(), 401 | 403) {
        "auth"
    } else {
        "http"
    };
    (kind, format!("HTTP {status}: {why}"))
}

/// A transport error as a failure kind and message. Shared with `tts::openai`.
pub(crate) fn transport(e: &reqwest::Error) -> (&'static str, String) {
    // reqwest's Display names the URL, never headers: the key stays out.
    if e.is_timeout() {
        ("timeout", format!("timed out: {e}"))
    } else if e.is_connect() {
        ("connect", format!("connect: {e}"))
    } else {
        ("http", e.to_string())
    }
}

/// Mono 16-bit PCM as a WAV file.
pub(crate) fn wav_bytes(pcm: &[i16], rate: u32) -> Vec<u8> {
    let data_len = (pcm.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + pcm.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend(pcm.iter().flat_map(|s| s.to_le_bytes()));
    out
}

/// A `multipart/form-data` body (RFC 7578), built in memory.
struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    fn new() -> Self {
        Self {
            boundary: format!("voxhook-{}", uuid::Uuid::new_v4().simple()),
            body: Vec::new(),
        }
    }

    fn head(&mut self, disposition: &str, content_type: Option<&str>) {
        self.body
            .extend_from_slice(format!("--{}\r\n", self.boundary).as_bytes());
        self.body.extend_from_slice(
            format!("Content-Disposition: form-data; {disposition}\r\n").as_bytes(),
        );
        if let Some(ct) = content_type {
            self.body
                .extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        self.body.extend_from_slice(b"\r\n");
    }

    fn field(&mut self, name: &str, value: &str) {
        self.head(&format!("name=\"{name}\""), None);
        self.body.extend_from_slice(value.as_bytes());
        self.body.extend_from_slice(b"\r\n");
    }

    fn file(&mut self, name: &str, filename: &str, content_type: &str, bytes: &[u8]) {
        self.head(
            &format!("name=\"{name}\"; filename=\"{filename}\""),
            Some(content_type),
        );
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
    }

    fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stt::SttSettings;

    #[test]
    fn a_cloud_url_needs_a_key_and_a_local_server_does_not() {
        let errs = SttSettings::from_toml("stt", "provider = \"openai\"").unwrap_err();
        assert_eq!(errs[0].key, "stt.api_key", "{errs:?}");
        assert!(
            errs[0].message.contains("VOXHOOK__STT__API_KEY"),
            "{errs:?}"
        );
        let ok = SttSettings::from_toml(
            "stt",
            "provider = \"openai\"\nbase_url = \"http://127.0.0.1:8000/\"\nmodel_field = \"model_name\"",
        )
        .unwrap();
        let SttSettings::OpenAi(s) = ok else {
            panic!("{ok:?}")
        };
        assert_eq!(s.url, "http://127.0.0.1:8000/v1/audio/transcriptions");
        assert!(s.api_key.is_none());
        let errs = SttSettings::from_toml(
            "stt",
            "provider = \"openai\"\nbase_url = \"ftp://x\"\nmodel_field = \"name\"\ntimeout_ms = 10",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["stt.base_url", "stt.model_field", "stt.timeout_ms"],
            "{errs:?}"
        );
    }

    #[test]
    fn the_wav_is_one_the_project_reads_back() {
        let pcm: Vec<i16> = (0..1600).map(|i| (i * 7 % 3000) as i16).collect();
        let f = crate::audio::wav::decode(&wav_bytes(&pcm, 16_000), "x").unwrap();
        assert_eq!((f.sample_rate, f.samples), (16_000, pcm));
    }

    #[cfg(feature = "sim")]
    async fn against(
        options: crate::sim::openai::OpenAiSimOptions,
        extra: &str,
    ) -> (crate::sim::openai::OpenAiSim, Arc<dyn SpeechToText>) {
        let sim = crate::sim::openai::OpenAiSim::start(options).await.unwrap();
        let toml = format!(
            "provider = \"openai\"\napi_key = \"sk-test-key\"\nbase_url = \"{}\"\n{extra}",
            sim.base_url()
        );
        let backend = crate::stt::build(&SttSettings::from_toml("stt", &toml).unwrap());
        (sim, backend.unwrap())
    }

    /// The conformance subject: the backend against the local fake, and against one whose
    /// every second request fails with a 500.
    #[cfg(feature = "sim")]
    pub(crate) async fn subject() -> crate::stt::conformance::Subject {
        use crate::sim::openai::OpenAiSimOptions;
        let (sim, backend) = against(OpenAiSimOptions::default(), "").await;
        let faulty = OpenAiSimOptions {
            fail_every: 2,
            ..OpenAiSimOptions::default()
        };
        let (faulty_sim, faulty) = against(faulty, "").await;
        // The fakes serve the whole test process.
        Box::leak(Box::new((sim, faulty_sim)));
        crate::stt::conformance::Subject {
            backend,
            speech: crate::stt::conformance::speech("Hello there.", INTERNAL_RATE).await,
            expect: Some("balance"),
            faulty: Some(faulty),
        }
    }

    #[cfg(feature = "sim")]
    mod against_the_fake {
        use super::*;
        use crate::sim::openai::{Flavor, OpenAiSimOptions};

        async fn one(b: &Arc<dyn SpeechToText>, pcm: &[i16]) -> SttEvent {
            let params = SttParams {
                call_id: "CAoa".into(),
                language: None,
            };
            let mut s = b.open(params, CancellationToken::new()).await.unwrap();
            s.input.send(SttInput::Audio(pcm.to_vec())).await.unwrap();
            s.input
                .send(SttInput::Control(SttControl::Finalize))
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(10), s.events.recv())
                .await
                .unwrap()
                .unwrap()
        }

        #[tokio::test]
        async fn the_request_is_a_wav_with_the_documented_fields() {
            let (sim, b) = against(OpenAiSimOptions::default(), "prompt = \"banking\"").await;
            let SttEvent::Final(t) = one(&b, &[1000i16; 16_000]).await else {
                panic!()
            };
            assert_eq!(t.text, "I would like to check my account balance.");
            assert_eq!(t.audio_ms, 1000);
            let r = &sim.transcriptions()[0];
            assert_eq!(
                r.file,
                Some(("utterance.wav".to_string(), "audio/wav".to_string()))
            );
            assert_eq!(r.wav, Some((16_000, 1000)));
            for (k, v) in [
                ("model", "whisper-1"),
                ("language", "en"),
                ("response_format", "json"),
                ("prompt", "banking"),
            ] {
                assert_eq!(r.fields.get(k).map(String::as_str), Some(v), "{k}");
            }
        }

        #[tokio::test]
        async fn a_wrong_key_is_an_error_naming_the_status_not_the_key() {
            let (sim, _) = against(OpenAiSimOptions::default(), "").await;
            let toml = format!(
                "provider = \"openai\"\napi_key = \"sk-wrong\"\nbase_url = \"{}\"",
                sim.base_url()
            );
            let b = crate::stt::conformance::built(&toml);
            let SttEvent::Error(e) = one(&b, &[1000i16; 1600]).await else {
                panic!()
            };
            assert!(e.contains("401") && e.contains("Incorrect API key"), "{e}");
            assert!(!e.contains("sk-wrong"), "{e}");
            assert_eq!(sim.refused(), [401]);
        }

        #[tokio::test]
        async fn a_slow_server_times_out_as_an_error() {
            let slow = OpenAiSimOptions {
                latency: Duration::from_secs(5),
                ..OpenAiSimOptions::default()
            };
            let (_sim, b) = against(slow, "timeout_ms = 300").await;
            let SttEvent::Error(e) = one(&b, &[1000i16; 1600]).await else {
                panic!()
            };
            assert!(e.contains("timed out"), "{e}");
        }

        /// faster-whisper-server: the model goes in `model_name`, and only `json` works.
        #[tokio::test]
        async fn faster_whisper_server_takes_model_name_without_a_key() {
            let fws = OpenAiSimOptions {
                api_key: None,
                flavor: Flavor::FasterWhisperServer,
                ..OpenAiSimOptions::default()
            };
            let sim = crate::sim::openai::OpenAiSim::start(fws).await.unwrap();
            let toml = format!(
                "provider = \"openai\"\nbase_url = \"{}\"\nmodel = \"tiny.en\"\nmodel_field = \"model_name\"",
                sim.base_url()
            );
            let b = crate::stt::conformance::built(&toml);
            assert!(matches!(
                one(&b, &[1000i16; 1600]).await,
                SttEvent::Final(_)
            ));
            let r = &sim.transcriptions()[0];
            assert_eq!(r.fields["model_name"], "tiny.en");
            assert!(!r.fields.contains_key("model"));
        }
    }
}
