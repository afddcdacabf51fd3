//! ElevenLabs streaming speech (WebSocket `stream-input`): one socket per message,
//! `wss://…/v1/text-to-speech/{voice_id}/stream-input?model_id=…&output_format=…`, the key in
//! the `xi-api-key` header. The first message must have `text` of exactly one space (it
//! carries the voice settings and the chunk schedule); then each sentence goes as a text
//! chunk ending in a space with `flush: true`, so each sentence is rendered as soon as it
//! arrives (the first audio never waits for the rest of the message), then the
//! end-of-stream `{"text": ""}`. Audio comes back as base64 in `{"audio": …}` messages;
//! `{"isFinal": true}` ends it. Errors are `{"message", "error", "code"}` messages and a close
//! frame (1008 for a bad key or no quota).
//!
//! Confirmed in public clients and ElevenLabs' API reference: the URL and its
//! `model_id`/`output_format` query, the single-space first message with `voice_settings`
//! and `generation_config.chunk_length_schedule`, `flush`, the empty-text end, base64
//! `audio`, `isFinal`. Unverified (no account here): the exact error-message fields and close
//! codes beyond 1008, and whether `isFinal` always comes before the close.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use super::http::{ChunkTx, Failure};
use super::{split_sentences, TextToSpeech, TtsBackend, TtsError, TtsRequest, TtsStream};
use crate::audio::codec::Codec;
use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;
use crate::telemetry::metrics;

/// Name in config, logs and the metrics' `backend` label.
const NAME: &str = "elevenlabs";
/// Output formats that are raw telephone-usable PCM (no MP3 decoding in voxhook).
const FORMATS: &[&str] = &[
    "ulaw_8000",
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_44100",
];

/// `[tts] provider = "elevenlabs"` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElevenLabsConfig {
    /// API key (`xi-api-key`); from the environment: `VOXHOOK__TTS__API_KEY`.
    pub api_key: SensitiveString,
    /// `wss://api.elevenlabs.io` or a test endpoint (`ws://…`).
    pub base_url: String,
    /// Voice id; a request's voice overrides it.
    pub voice_id: String,
    /// `model_id` (`eleven_flash_v2_5` is the low-latency one).
    pub model_id: String,
    /// One of [`FORMATS`]; `ulaw_8000` is the telephone's own format (nothing resampled).
    pub output_format: String,
    /// `voice_settings.stability`, 0..=1.
    pub stability: f32,
    /// `voice_settings.similarity_boost`, 0..=1.
    pub similarity_boost: f32,
    /// `voice_settings.speed`, 0.7..=1.2.
    pub speed: f32,
    /// `language_code` (ISO 639-1) for multilingual models; empty: the model's choice.
    pub language_code: String,
    /// Connection (handshake) deadline.
    pub connect_timeout_ms: u64,
    /// Time allowed from the text sent to the first audio.
    pub first_audio_timeout_ms: u64,
    /// Time allowed between two audio messages.
    pub read_timeout_ms: u64,
}

impl Default for ElevenLabsConfig {
    fn default() -> Self {
        Self {
            api_key: SensitiveString::default(),
            base_url: "wss://api.elevenlabs.io".into(),
            // "Rachel", a premade voice every account has.
            voice_id: "21m00Tcm4TlvDq8ikWAM".into(),
            model_id: "eleven_flash_v2_5".into(),
            output_format: "ulaw_8000".into(),
            stability: 0.5,
            similarity_boost: 0.8,
            speed: 1.0,
            language_code: String::new(),
            connect_timeout_ms: 3_000,
            first_audio_timeout_ms: 5_000,
            read_timeout_ms: 5_000,
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct ElevenLabsSettings {
    /// The key (never printed).
    pub api_key: SensitiveString,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// Default voice.
    pub voice_id: String,
    /// Model.
    pub model_id: String,
    /// `output_format` as sent.
    pub output_format: String,
    /// μ-law (`true`) or s16le PCM.
    pub mulaw: bool,
    /// Rate of the audio.
    pub sample_rate: u32,
    /// Voice settings.
    pub stability: f32,
    /// Voice settings.
    pub similarity_boost: f32,
    /// Voice settings.
    pub speed: f32,
    /// `language_code`, when set.
    pub language_code: Option<String>,
    /// Handshake deadline.
    pub connect_timeout: Duration,
    /// First-audio deadline.
    pub first_audio_timeout: Duration,
    /// Between-messages deadline.
    pub read_timeout: Duration,
}

fn id_like(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Component for ElevenLabsSettings {
    type Raw = ElevenLabsConfig;

    fn validate(raw: ElevenLabsConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            !raw.api_key.is_empty(),
            &ctx.key("api_key"),
            &format!(
                "missing: the ElevenLabs API key (set it here or in {})",
                ctx.env_var("api_key")
            ),
        );
        let base = raw.base_url.trim_end_matches('/').to_string();
        errs.check(
            base.starts_with("wss://") || base.starts_with("ws://"),
            &ctx.key("base_url"),
            "must start with wss:// (or ws:// for a local endpoint)",
        );
        errs.check(
            id_like(&raw.voice_id),
            &ctx.key("voice_id"),
            "must be a voice id (letters, digits, _ or -)",
        );
        errs.check(
            id_like(&raw.model_id),
            &ctx.key("model_id"),
            "must be a model id such as eleven_flash_v2_5",
        );
        errs.check(
            FORMATS.contains(&raw.output_format.as_str()),
            &ctx.key("output_format"),
            &format!("must be one of {FORMATS:?} (raw audio; MP3 is not decoded)"),
        );
        let (mulaw, sample_rate) = match raw.output_format.split_once('_') {
            Some((kind, rate)) => (kind == "ulaw", rate.parse().unwrap_or(8_000)),
            None => (false, 8_000),
        };
        for (key, v, range) in [
            ("stability", raw.stability, 0.0..=1.0),
            ("similarity_boost", raw.similarity_boost, 0.0..=1.0),
            ("speed", raw.speed, 0.7..=1.2),
        ] {
            errs.check(
                range.contains(&v),
                &ctx.key(key),
                &format!("must be {}..={}", range.start(), range.end()),
            );
        }
        errs.check(
            raw.language_code.is_empty()
                || (raw.language_code.len() == 2
                    && raw.language_code.chars().all(|c| c.is_ascii_lowercase())),
            &ctx.key("language_code"),
            "must be an ISO 639-1 code such as en or es",
        );
        for (key, ms) in [
            ("connect_timeout_ms", raw.connect_timeout_ms),
            ("first_audio_timeout_ms", raw.first_audio_timeout_ms),
            ("read_timeout_ms", raw.read_timeout_ms),
        ] {
            errs.check(
                (100..=60_000).contains(&ms),
                &ctx.key(key),
                "must be 100..=60000",
            );
        }
        Self {
            api_key: raw.api_key,
            base_url: base,
            voice_id: raw.voice_id,
            model_id: raw.model_id,
            output_format: raw.output_format,
            mulaw,
            sample_rate,
            stability: raw.stability,
            similarity_boost: raw.similarity_boost,
            speed: raw.speed,
            language_code: (!raw.language_code.is_empty()).then_some(raw.language_code),
            connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
            first_audio_timeout: Duration::from_millis(raw.first_audio_timeout_ms),
            read_timeout: Duration::from_millis(raw.read_timeout_ms),
        }
    }
}

impl TtsBackend for ElevenLabsSettings {
    fn build(&self) -> Result<Arc<dyn TextToSpeech>, TtsError> {
        Ok(Arc::new(ElevenLabsTts(Arc::new(self.clone()))))
    }
}

impl ElevenLabsSettings {
    /// The `stream-input` URL for `voice` (a call's language, when the model takes one).
    pub fn stream_url(&self, voice: &str, language: Option<&str>) -> String {
        let mut url = format!(
            "{}/v1/text-to-speech/{voice}/stream-input?model_id={}&output_format={}",
            self.base_url, self.model_id, self.output_format
        );
        if let Some(l) = language.or(self.language_code.as_deref()) {
            url.push_str("&language_code=");
            url.push_str(l);
        }
        url
    }

    /// The first message: one space, the voice settings, the chunk schedule.
    fn first_message(&self) -> String {
        serde_json::json!({
            "text": " ",
            "voice_settings": {
                "stability": self.stability,
                "similarity_boost": self.similarity_boost,
                "speed": self.speed,
            },
            // The smallest first threshold ElevenLabs allows starts audio soonest.
            "generation_config": { "chunk_length_schedule": [50, 120, 160, 250] },
        })
        .to_string()
    }
}

/// The ElevenLabs backend.
#[derive(Clone)]
pub struct ElevenLabsTts(Arc<ElevenLabsSettings>);

#[async_trait]
impl TextToSpeech for ElevenLabsTts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sample_rate(&self) -> u32 {
        self.0.sample_rate
    }

    async fn synthesize(
        &self,
        req: &TtsRequest,
        cancel: CancellationToken,
    ) -> Result<TtsStream, TtsError> {
        let (tx, rx) = mpsc::channel(super::TTS_CHUNK_CAPACITY);
        let cfg = self.0.clone();
        let voice = req.voice.clone().unwrap_or_else(|| cfg.voice_id.clone());
        // A multilingual model is told the call's language (a `[languages]` code's prefix).
        let language = req
            .language
            .as_deref()
            .and_then(|l| l.get(..2))
            .filter(|_| cfg.language_code.is_some())
            .map(str::to_string);
        let sentences = split_sentences(&req.text);
        let task = async move {
            let spoken = tokio::select! {
                _ = cancel.cancelled() => return,
                r = speak(&cfg, &voice, language.as_deref(), &sentences, &tx) => r,
            };
            if let Err((kind, msg)) = spoken {
                metrics::tts_error(NAME, kind);
                tracing::warn!(error = %msg, kind, backend = NAME, "Speech request failed.");
                let _ = tx
                    .send(Err(TtsError::Synthesis(format!("{NAME}: {msg}"))))
                    .await;
            }
        };
        tokio::spawn(tracing::Instrument::in_current_span(task));
        Ok(rx)
    }
}

/// A server message (audio, the final marker, or an error).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerMessage {
    audio: Option<String>,
    is_final: Option<bool>,
    message: Option<String>,
    error: Option<String>,
    code: Option<serde_json::Value>,
}

/// Speaks `sentences` on one socket into `tx`. `Ok` also when the listener went away.
async fn speak(
    cfg: &ElevenLabsSettings,
    voice: &str,
    language: Option<&str>,
    sentences: &[String],
    tx: &ChunkTx,
) -> Result<(), Failure> {
    if sentences.is_empty() {
        return Ok(());
    }
    let mut req = cfg
        .stream_url(voice, language)
        .as_str()
        .into_client_request()
        .map_err(|e| ("connect", format!("bad URL: {e}")))?;
    let key = cfg
        .api_key
        .expose()
        .parse()
        .map_err(|_| ("auth", "the API key is not a valid header".to_string()))?;
    req.headers_mut().insert("xi-api-key", key);
    let (ws, _) = match tokio::time::timeout(
        cfg.connect_timeout,
        // No Nagle: the first message, the text and the end go out as small writes in a
        // row, and waiting for each ACK cost 40 ms before the first audio (measured).
        tokio_tungstenite::connect_async_with_config(req, None, true),
    )
    .await
    {
        Err(_) => return Err(("timeout", "no handshake in time".into())),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let status = resp.status();
            let kind = if matches!(status.as_u16(), 401 | 403) {
                "auth"
            } else {
                "http"
            };
            return Err((kind, format!("handshake refused with HTTP {status}")));
        }
        Ok(Err(e)) => return Err(("connect", format!("connect: {e}"))),
        Ok(Ok(ws)) => ws,
    };
    let (mut sink, mut stream) = ws.split();
    let broke = |e: tungstenite::Error| ("disconnect", format!("socket broke: {e}"));
    sink.send(Message::text(cfg.first_message()))
        .await
        .map_err(broke)?;
    for s in sentences {
        // Each chunk ends with a space, so words never run together across chunks.
        let chunk = serde_json::json!({ "text": format!("{s} "), "flush": true }).to_string();
        sink.send(Message::text(chunk)).await.map_err(broke)?;
    }
    sink.send(Message::text(r#"{"text":""}"#))
        .await
        .map_err(broke)?;

    let mut first = true;
    let mut pcm = Vec::new();
    let mut odd: Option<u8> = None;
    loop {
        let wait = if first {
            cfg.first_audio_timeout
        } else {
            cfg.read_timeout
        };
        let msg = match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => return Err(("timeout", "the audio stream stalled".into())),
            Ok(None) => return Err(("disconnect", "closed before the final message".into())),
            Ok(Some(Err(e))) => return Err(broke(e)),
            Ok(Some(Ok(m))) => m,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                let kind = if code == 1008 { "auth" } else { "disconnect" };
                return Err((
                    kind,
                    format!("closed with {code} before the final message: {reason}"),
                ));
            }
            _ => continue,
        };
        let m: ServerMessage = serde_json::from_str(&text)
            .map_err(|e| ("protocol", format!("unreadable message: {e}")))?;
        if m.error.is_some() || m.message.is_some() && m.audio.is_none() {
            let code = m.code.map(|c| c.to_string()).unwrap_or_default();
            let what = m.message.or(m.error).unwrap_or_default();
            let what: String = what.chars().take(200).collect();
            return Err(("http", format!("error {code}: {what}")));
        }
        if let Some(b64) = m.audio.filter(|a| !a.is_empty()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| ("protocol", format!("audio is not base64: {e}")))?;
            pcm.clear();
            if cfg.mulaw {
                Codec::Mulaw.decode_into(&bytes, &mut pcm);
            } else {
                let mut it = odd.take().into_iter().chain(bytes.iter().copied());
                while let Some(lo) = it.next() {
                    match it.next() {
                        Some(hi) => pcm.push(i16::from_le_bytes([lo, hi])),
                        None => odd = Some(lo),
                    }
                }
            }
            first = false;
            if !pcm.is_empty() && tx.send(Ok(pcm.clone())).await.is_err() {
                return Ok(());
            }
        }
        if m.is_final == Some(true) {
            let _ = sink.close().await;
            return Ok(());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tts::TtsSettings;

    #[test]
    fn defaults_ask_for_telephone_audio_and_every_problem_has_its_key() {
        let s =
            TtsSettings::from_toml("tts", "provider = \"elevenlabs\"\napi_key = \"k\"").unwrap();
        let TtsSettings::ElevenLabs(s) = s else {
            panic!("{s:?}")
        };
        assert!(s.mulaw);
        assert_eq!(s.sample_rate, 8_000);
        assert_eq!(
            s.stream_url("v1", None),
            "wss://api.elevenlabs.io/v1/text-to-speech/v1/stream-input?model_id=eleven_flash_v2_5&output_format=ulaw_8000"
        );
        let first: serde_json::Value = serde_json::from_str(&s.first_message()).unwrap();
        assert_eq!(first["text"], " ", "the first message's text is one space");
        let errs = TtsSettings::from_toml(
            "tts",
            "provider = \"elevenlabs\"\noutput_format = \"mp3_44100_128\"\nspeed = 2.0\n\
             base_url = \"https://x\"\nvoice_id = \"a b\"",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "tts.api_key",
                "tts.base_url",
                "tts.voice_id",
                "tts.output_format",
                "tts.speed"
            ],
            "{errs:?}"
        );
    }

    #[cfg(feature = "sim")]
    pub(crate) async fn against(
        options: crate::sim::elevenlabs::ElevenLabsSimOptions,
        extra: &str,
    ) -> (Arc<dyn TextToSpeech>, crate::sim::elevenlabs::ElevenLabsSim) {
        let sim = crate::sim::elevenlabs::ElevenLabsSim::start(options)
            .await
            .unwrap();
        let toml = format!(
            "provider = \"elevenlabs\"\napi_key = \"xi-test-key\"\nbase_url = \"{}\"\n{extra}",
            sim.base_url()
        );
        let b = crate::tts::build(&TtsSettings::from_toml("tts", &toml).unwrap()).unwrap();
        (b, sim)
    }

    /// The conformance subject: against the local fake, and one failing on "FAIL".
    #[cfg(feature = "sim")]
    pub(crate) async fn subject() -> crate::tts::conformance::Subject {
        use crate::sim::elevenlabs::ElevenLabsSimOptions;
        let (backend, sim) = against(ElevenLabsSimOptions::default(), "").await;
        let faulty = ElevenLabsSimOptions {
            fail_on: Some("FAIL".into()),
            ..ElevenLabsSimOptions::default()
        };
        let (faulty, faulty_sim) = against(faulty, "output_format = \"pcm_16000\"").await;
        // The fakes serve the whole test process.
        Box::leak(Box::new((sim, faulty_sim)));
        crate::tts::conformance::Subject {
            backend,
            faulty: Some(faulty),
        }
    }

    #[cfg(feature = "sim")]
    mod against_the_fake {
        use super::*;
        use crate::sim::elevenlabs::ElevenLabsSimOptions;

        use crate::tts::conformance::all;

        /// μ-law at 8 kHz and PCM at 16 kHz, the message sequence as documented (one space
        /// first, flushed chunks ending in a space, empty end), audio for every character.
        #[tokio::test]
        async fn speech_streams_in_the_telephone_format_after_the_documented_sequence() {
            for (format, rate) in [("ulaw_8000", 8_000), ("pcm_16000", 16_000)] {
                let (b, sim) = against(
                    ElevenLabsSimOptions::default(),
                    &format!("output_format = \"{format}\""),
                )
                .await;
                let text = "Your balance is ten dollars. Anything else?";
                let chunks = all(&b, text).await;
                assert!(chunks.len() > 3, "{format}: {} chunks", chunks.len());
                let n: usize = chunks.iter().map(|c| c.as_ref().unwrap().len()).sum();
                // The fake renders each flushed sentence, 50 ms per character.
                let chars = "Your balance is ten dollars.".len() + "Anything else?".len();
                assert_eq!(n, chars * 50 * rate / 1000, "{format}");
                let c = &sim.connections()[0];
                assert_eq!(c.query["output_format"], format);
                assert_eq!(c.query["model_id"], "eleven_flash_v2_5");
                assert_eq!(
                    c.texts,
                    [" ", "Your balance is ten dollars. ", "Anything else? ", ""]
                );
            }
        }

        /// A wrong key gets the error message and a 1008 close; the key is never printed.
        #[tokio::test]
        async fn a_wrong_key_is_refused_without_printing_it() {
            let (_, sim) = against(ElevenLabsSimOptions::default(), "").await;
            let toml = format!(
                "provider = \"elevenlabs\"\napi_key = \"xi-wrong\"\nbase_url = \"{}\"",
                sim.base_url()
            );
            let b = crate::tts::build(&TtsSettings::from_toml("tts", &toml).unwrap()).unwrap();
            let err = all(&b, "Hello.").await[0].as_ref().unwrap_err().to_string();
            assert!(
                err.contains("invalid_api_key") || err.contains("1008"),
                "{err}"
            );
            assert!(!err.contains("xi-wrong"), "{err}");
        }

        /// A server that stalls before its first audio, or drops the socket mid-message,
        /// ends the stream with an error in bounded time.
        #[tokio::test]
        async fn a_stall_or_a_drop_mid_message_is_an_error_in_time() {
            let slow = ElevenLabsSimOptions {
                latency: Duration::from_secs(3),
                ..ElevenLabsSimOptions::default()
            };
            let (b, _sim) = against(slow, "first_audio_timeout_ms = 300").await;
            let t0 = tokio::time::Instant::now();
            let out = all(&b, "Hello there.").await;
            assert!(out.last().unwrap().is_err());
            assert!(t0.elapsed() < Duration::from_secs(2));
            let dropping = ElevenLabsSimOptions {
                drop_after_chunks: Some(2),
                ..ElevenLabsSimOptions::default()
            };
            let (b, _sim) = against(dropping, "").await;
            let out = all(&b, "A sentence long enough for several chunks of audio.").await;
            assert!(out.iter().filter(|c| c.is_ok()).count() >= 1);
            assert!(out.last().unwrap().is_err(), "the drop is reported");
        }
    }
}
