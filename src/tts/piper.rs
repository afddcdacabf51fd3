//! Piper (the self-hosted neural TTS, `python -m piper.http_server`): one
//! `POST {base_url}/synthesize` per sentence with `{"text", "voice"?, "speaker_id"?,
//! "length_scale"?}`, answered with the whole WAV at the voice's own rate (22,050 Hz for
//! "medium" voices). The server labels the WAV `text/html` (Flask's default for bytes), so
//! the body is recognised by its RIFF header, never by its Content-Type. Empty text makes
//! the server fail (500), so a sentence without words is never sent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::http::{send, speak_request, ChunkTx, Failure};
use super::{TextToSpeech, TtsBackend, TtsError, TtsRequest, TtsStream};
use crate::component::{Component, Ctx, Errors};

/// Name in config, logs and the metrics' `backend` label.
const NAME: &str = "piper";
/// Audio handed to the speaker per chunk (100 ms at 22,050 Hz), so playback starts while the
/// rest of a long sentence is still being copied.
const CHUNK_SAMPLES: usize = 2_205;
/// Largest WAV accepted for one sentence (about 3 minutes at 22,050 Hz).
const MAX_WAV_BYTES: usize = 8 << 20;

/// `[tts] provider = "piper"` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PiperConfig {
    /// Where `piper.http_server` listens.
    pub base_url: String,
    /// A voice the server has in its data directory (`voice`); empty: the one it was
    /// started with (`-m`). A request's voice overrides it.
    pub voice: String,
    /// Speaker of a multi-speaker voice (`speaker_id`); negative: the voice's default.
    pub speaker_id: i64,
    /// Speaking pace (`length_scale`; above 1 is slower); 0: the voice's default.
    pub length_scale: f64,
    /// The voice's rate (its `.onnx.json` `audio.sample_rate`); a WAV at another rate is
    /// refused with the rate to set.
    pub sample_rate: u32,
    /// Time allowed for one sentence's whole WAV (Piper answers when it has synthesized it).
    pub request_timeout_ms: u64,
    /// Connection deadline.
    pub connect_timeout_ms: u64,
}

impl Default for PiperConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:5000".into(),
            voice: String::new(),
            speaker_id: -1,
            length_scale: 0.0,
            sample_rate: 22_050,
            request_timeout_ms: 10_000,
            connect_timeout_ms: 2_000,
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct PiperSettings {
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// Voice name, when one is chosen.
    pub voice: Option<String>,
    /// Speaker id, when one is chosen.
    pub speaker_id: Option<u32>,
    /// Pace, when set.
    pub length_scale: Option<f64>,
    /// Expected WAV rate.
    pub sample_rate: u32,
    /// Per-sentence deadline.
    pub request_timeout: Duration,
    /// Connect deadline.
    pub connect_timeout: Duration,
}

impl Component for PiperSettings {
    type Raw = PiperConfig;

    fn validate(raw: PiperConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        let base = raw.base_url.trim_end_matches('/').to_string();
        errs.check(
            base.starts_with("http://") || base.starts_with("https://"),
            &ctx.key("base_url"),
            "must start with http:// or https://",
        );
        errs.check(
            raw.speaker_id < i64::from(u32::MAX),
            &ctx.key("speaker_id"),
            "is too large",
        );
        errs.check(
            raw.length_scale == 0.0 || (0.25..=4.0).contains(&raw.length_scale),
            &ctx.key("length_scale"),
            "must be 0 (the voice's default) or 0.25..=4.0",
        );
        errs.check(
            (8_000..=48_000).contains(&raw.sample_rate),
            &ctx.key("sample_rate"),
            "must be 8000..=48000 (the voice's audio.sample_rate)",
        );
        for (key, ms) in [
            ("request_timeout_ms", raw.request_timeout_ms),
            ("connect_timeout_ms", raw.connect_timeout_ms),
        ] {
            errs.check(
                (100..=120_000).contains(&ms),
                &ctx.key(key),
                "must be 100..=120000",
            );
        }
        Self {
            base_url: base,
            voice: (!raw.voice.is_empty()).then_some(raw.voice),
            speaker_id: u32::try_from(raw.speaker_id).ok(),
            length_scale: (raw.length_scale > 0.0).then_some(raw.length_scale),
            sample_rate: raw.sample_rate,
            request_timeout: Duration::from_millis(raw.request_timeout_ms),
            connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
        }
    }
}

impl TtsBackend for PiperSettings {
    fn build(&self) -> Result<Arc<dyn TextToSpeech>, TtsError> {
        let http = super::http::client(NAME, self.connect_timeout)?;
        Ok(Arc::new(PiperTts(Arc::new(Client {
            cfg: self.clone(),
            http,
        }))))
    }
}

struct Client {
    cfg: PiperSettings,
    http: reqwest::Client,
}

/// The Piper backend.
#[derive(Clone)]
pub struct PiperTts(Arc<Client>);

#[async_trait]
impl TextToSpeech for PiperTts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sample_rate(&self) -> u32 {
        self.0.cfg.sample_rate
    }

    async fn synthesize(
        &self,
        req: &TtsRequest,
        cancel: CancellationToken,
    ) -> Result<TtsStream, TtsError> {
        let voice = self.0.cfg.voice.clone().unwrap_or_default();
        Ok(speak_request(
            NAME,
            req,
            &voice,
            cancel,
            self.0.clone(),
            |client, sentence, voice, tx| async move { client.speak(&sentence, &voice, &tx).await },
        ))
    }
}

/// The `/synthesize` body.
#[derive(serde::Serialize)]
struct Synthesize<'a> {
    text: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    voice: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    speaker_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length_scale: Option<f64>,
}

impl Client {
    /// Speaks one sentence into `tx`; `Ok(false)`: the receiver is gone.
    async fn speak(&self, sentence: &str, voice: &str, tx: &ChunkTx) -> Result<bool, Failure> {
        let body = Synthesize {
            text: sentence,
            voice,
            speaker_id: self.cfg.speaker_id,
            length_scale: self.cfg.length_scale,
        };
        let req = self
            .http
            .post(format!("{}/synthesize", self.cfg.base_url))
            .json(&body);
        let deadline = self.cfg.request_timeout;
        let wav = tokio::time::timeout(deadline, async {
            let resp = send(req, deadline).await?;
            resp.bytes()
                .await
                .map_err(|e| ("disconnect", format!("WAV body broke: {e}")))
        })
        .await
        .map_err(|_| ("timeout", "no whole WAV in time".to_string()))??;
        let pcm = self.pcm(&wav)?;
        for chunk in pcm.chunks(CHUNK_SAMPLES) {
            if tx.send(Ok(chunk.to_vec())).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The samples of a RIFF/WAVE body at the configured rate (Content-Type is ignored:
    /// the server says `text/html`).
    fn pcm(&self, wav: &[u8]) -> Result<Vec<i16>, Failure> {
        if wav.len() > MAX_WAV_BYTES {
            return Err(("protocol", format!("WAV of {} bytes refused", wav.len())));
        }
        if wav.len() < 12 || &wav[..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
            let head = String::from_utf8_lossy(&wav[..wav.len().min(60)]).into_owned();
            return Err(("protocol", format!("the answer is not a WAV: {head:?}")));
        }
        let frame = crate::audio::wav::decode(wav, "piper answer")
            .map_err(|e| ("protocol", e.to_string()))?;
        if frame.sample_rate != self.cfg.sample_rate {
            return Err((
                "protocol",
                format!(
                    "the voice speaks at {} Hz; set tts.sample_rate = {}",
                    frame.sample_rate, frame.sample_rate
                ),
            ));
        }
        Ok(frame.samples)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tts::TtsSettings;

    #[test]
    fn defaults_and_problems_with_their_keys() {
        let TtsSettings::Piper(s) = TtsSettings::from_toml("tts", "provider = \"piper\"").unwrap()
        else {
            panic!("piper")
        };
        assert_eq!(s.base_url, "http://127.0.0.1:5000");
        assert_eq!(
            (s.voice.as_deref(), s.speaker_id, s.sample_rate),
            (None, None, 22_050)
        );
        let errs = TtsSettings::from_toml(
            "tts",
            "provider = \"piper\"\nbase_url = \"piper:5000\"\nlength_scale = 9.0\nsample_rate = 4000",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["tts.base_url", "tts.length_scale", "tts.sample_rate"]
        );
    }

    #[cfg(feature = "sim")]
    pub(crate) async fn against(
        extra: &str,
    ) -> (Arc<dyn TextToSpeech>, crate::sim::piper::PiperSim) {
        let sim = crate::sim::piper::PiperSim::start().await.unwrap();
        let toml = format!(
            "provider = \"piper\"\nbase_url = \"{}\"\n{extra}",
            sim.base_url()
        );
        let b = crate::tts::build(&TtsSettings::from_toml("tts", &toml).unwrap()).unwrap();
        (b, sim)
    }

    /// The conformance subject: the local fake fails sentences containing "FAIL".
    #[cfg(feature = "sim")]
    pub(crate) async fn subject() -> crate::tts::conformance::Subject {
        let (backend, sim) = against("").await;
        Box::leak(Box::new(sim)); // serves the whole test process
        crate::tts::conformance::Subject {
            faulty: Some(backend.clone()),
            backend,
        }
    }

    #[cfg(feature = "sim")]
    #[tokio::test]
    async fn the_wav_is_read_whatever_its_content_type_and_a_wrong_rate_is_named() {
        let (b, sim) =
            against("voice = \"en_US-joe-medium\"\nspeaker_id = 0\nlength_scale = 1.2").await;
        let mut s = b
            .synthesize(&TtsRequest::text("Hello there."), CancellationToken::new())
            .await
            .unwrap();
        let mut n = 0;
        while let Some(c) = s.recv().await {
            n += c.unwrap().len();
        }
        assert!(n > 22_050 / 5, "{n} samples");
        let r = &sim.requests()[0];
        assert_eq!(r["text"], "Hello there.");
        assert_eq!(r["voice"], "en_US-joe-medium");
        assert_eq!(r["speaker_id"], 0);
        assert_eq!(r["length_scale"], 1.2);
        // A 16 kHz ("low") voice configured as 22,050 Hz: the error says what to set.
        let (b, _sim) = against("voice = \"rate-16000\"").await;
        let mut s = b
            .synthesize(&TtsRequest::text("Hello."), CancellationToken::new())
            .await
            .unwrap();
        let err = s.recv().await.unwrap().unwrap_err().to_string();
        assert!(err.contains("set tts.sample_rate = 16000"), "{err}");
    }
}
