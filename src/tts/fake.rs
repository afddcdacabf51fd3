//! A fake TTS backend: each sentence becomes a tone (or silence) whose length is proportional
//! to its text, the first after a set latency. For tests and load benchmarks where voice
//! quality is not the point; the samples of one sentence are computed without a model.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    split_sentences, TextToSpeech, TtsBackend, TtsError, TtsRequest, TtsStream, TTS_CHUNK_CAPACITY,
};
use crate::component::{Component, Ctx, Errors};

/// `[tts] provider = "fake"` as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FakeTtsConfig {
    /// Audio per character of text.
    pub ms_per_char: u64,
    /// Wait before the first chunk of a message.
    pub first_chunk_latency_ms: u64,
    /// Tone frequency; 0 for silence.
    pub tone_hz: u32,
    /// Output rate.
    pub sample_rate: u32,
    /// A sentence containing this text fails (empty: none), to exercise error handling.
    pub fail_on: String,
    /// Accepted for symmetry with real backends (a language override may set it).
    pub voice: String,
}

impl Default for FakeTtsConfig {
    fn default() -> Self {
        Self {
            ms_per_char: 60,
            first_chunk_latency_ms: 30,
            tone_hz: 440,
            sample_rate: 16_000,
            fail_on: String::new(),
            voice: String::new(),
        }
    }
}

/// Validated fake TTS settings.
#[derive(Debug, Clone)]
pub struct FakeTtsSettings {
    /// Audio per character.
    pub per_char: Duration,
    /// First-chunk latency.
    pub first_chunk_latency: Duration,
    /// Tone frequency (0: silence).
    pub tone_hz: u32,
    /// Output rate.
    pub sample_rate: u32,
    /// Failing marker (`None`: never fails).
    pub fail_on: Option<String>,
}

impl Component for FakeTtsSettings {
    type Raw = FakeTtsConfig;

    fn validate(raw: FakeTtsConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            (1..=1_000).contains(&raw.ms_per_char),
            &ctx.key("ms_per_char"),
            "must be between 1 and 1000",
        );
        errs.check(
            matches!(raw.sample_rate, 8_000 | 16_000 | 24_000 | 48_000),
            &ctx.key("sample_rate"),
            "must be 8000, 16000, 24000 or 48000",
        );
        errs.check(
            raw.tone_hz < raw.sample_rate / 2,
            &ctx.key("tone_hz"),
            "must be below half the sample rate",
        );
        Self {
            per_char: Duration::from_millis(raw.ms_per_char),
            first_chunk_latency: Duration::from_millis(raw.first_chunk_latency_ms),
            tone_hz: raw.tone_hz,
            sample_rate: raw.sample_rate,
            fail_on: (!raw.fail_on.is_empty()).then_some(raw.fail_on),
        }
    }
}

impl TtsBackend for FakeTtsSettings {
    fn build(&self) -> Result<Arc<dyn TextToSpeech>, TtsError> {
        Ok(Arc::new(FakeTts(self.clone())))
    }
}

/// The fake backend.
#[derive(Debug, Clone)]
pub struct FakeTts(pub FakeTtsSettings);

impl FakeTts {
    /// The audio of one sentence.
    fn render(&self, sentence: &str) -> Vec<i16> {
        let s = &self.0;
        let chars = sentence.chars().count() as u32;
        let n = (u64::from(s.sample_rate) * s.per_char.as_millis() as u64 * u64::from(chars) / 1000)
            as usize;
        if s.tone_hz == 0 {
            return vec![0; n];
        }
        let step = std::f32::consts::TAU * s.tone_hz as f32 / s.sample_rate as f32;
        (0..n)
            .map(|i| ((i as f32 * step).sin() * 8_000.0) as i16)
            .collect()
    }
}

#[async_trait]
impl TextToSpeech for FakeTts {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn sample_rate(&self) -> u32 {
        self.0.sample_rate
    }

    async fn synthesize(
        &self,
        req: &TtsRequest,
        cancel: CancellationToken,
    ) -> Result<TtsStream, TtsError> {
        let (tx, rx) = mpsc::channel(TTS_CHUNK_CAPACITY);
        // Plain text only (flite and the fake take no SSML); the voice is the configured one.
        let sentences = split_sentences(&req.text);
        let me = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(me.0.first_chunk_latency) => {}
            }
            for sentence in sentences {
                if cancel.is_cancelled() {
                    return;
                }
                let failing = me.0.fail_on.as_ref().is_some_and(|f| sentence.contains(f));
                let chunk = if failing {
                    Err(TtsError::Synthesis(format!(
                        "scripted failure on {} characters",
                        sentence.len()
                    )))
                } else {
                    Ok(me.render(&sentence))
                };
                if tx.send(chunk).await.is_err() || failing {
                    return;
                }
            }
        });
        Ok(rx)
    }
}
