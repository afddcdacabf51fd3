//! Text-to-speech: the [`TextToSpeech`] trait (text in, a cancellable stream of PCM chunks
//! out), sentence splitting so the first audio leaves before the whole reply is synthesized,
//! and [`build`], which turns config into one shared backend. A backend is one file here (its
//! config, validation, build and code) plus one line in [`TtsSettings`].

pub mod chain;
#[cfg(test)]
mod conformance;
pub mod deepgram;
pub mod elevenlabs;
pub mod fake;
pub mod flite;
mod http;
pub mod openai;
pub mod piper;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

crate::registry! {
    /// Validated `[tts]`: the backend named by `provider` (default `flite`).
    pub enum TtsSettings: dyn TtsBackend, tag "provider", default "flite" {
        /// Embedded flite (offline).
        Flite(flite::FliteSettings) = "flite",
        /// A tone (or silence) as long as the text, after a set latency (tests, benchmarks).
        Fake(fake::FakeTtsSettings) = "fake",
        /// OpenAI-compatible `POST /v1/audio/speech`, streamed per sentence.
        OpenAi(openai::OpenAiTtsSettings) = "openai",
        /// Deepgram Aura `POST /v1/speak`, streamed per sentence at the telephone's rate.
        Deepgram(deepgram::AuraSettings) = "deepgram",
        /// Piper's HTTP server (`POST /synthesize`, WAV), a local neural voice.
        Piper(piper::PiperSettings) = "piper",
        /// ElevenLabs WebSocket `stream-input`, μ-law 8 kHz by default, one socket per message.
        ElevenLabs(elevenlabs::ElevenLabsSettings) = "elevenlabs",
    }
}

/// A configured TTS backend: how it is built at startup.
pub trait TtsBackend: Debug + Send + Sync {
    /// Builds the backend; called once at startup, per language override.
    fn build(&self) -> Result<Arc<dyn TextToSpeech>, TtsError>;
}

/// Capacity of a synthesis stream, in chunks (a chunk is at most one sentence; a streaming
/// backend sends a sentence in several).
pub const TTS_CHUNK_CAPACITY: usize = 4;

/// Errors of the TTS layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TtsError {
    /// The backend could not be initialised.
    #[error("TTS backend init failed: {0}")]
    Init(String),
    /// Synthesis failed.
    #[error("TTS synthesis failed: {0}")]
    Synthesis(String),
}

/// What to say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TtsRequest {
    /// Plain text (markup already stripped).
    pub text: String,
    /// The same message as SSML (`<speak>…</speak>`), when the bot sent it; backends that
    /// take SSML use it instead of `text`.
    pub ssml: Option<String>,
    /// A voice other than the backend's configured one (`None`: the backend's).
    pub voice: Option<String>,
    /// The call's language code (a `[languages]` key), when one was chosen.
    pub language: Option<String>,
}

impl TtsRequest {
    /// A request for plain `text` in the backend's voice.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }
}

/// PCM chunks at [`TextToSpeech::sample_rate`]; the stream ends when the channel closes.
pub type TtsStream = mpsc::Receiver<Result<Vec<i16>, TtsError>>;

/// A text-to-speech backend shared by all calls.
#[async_trait]
pub trait TextToSpeech: Send + Sync {
    /// Backend name for logs.
    fn name(&self) -> &'static str;
    /// Rate of the PCM it produces.
    fn sample_rate(&self) -> u32;
    /// Starts synthesizing `req`; dropping the stream or cancelling stops the work.
    async fn synthesize(
        &self,
        req: &TtsRequest,
        cancel: CancellationToken,
    ) -> Result<TtsStream, TtsError>;
}

/// Builds the configured backend (call once at startup).
pub fn build(settings: &TtsSettings) -> Result<Arc<dyn TextToSpeech>, TtsError> {
    settings.get().build()
}

/// Splits text into sentences (at `.`, `!`, `?`, `;` or a newline followed by a space), so
/// synthesis can start speaking before the whole reply is done. Very long sentences are split
/// again at commas.
pub fn split_sentences(text: &str) -> Vec<String> {
    const LONG: usize = 160;
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        cur.push(c);
        let at_break = matches!(c, '.' | '!' | '?' | ';' | '\n')
            && chars.peek().is_none_or(|n| n.is_whitespace());
        let long_comma = c == ',' && cur.len() > LONG;
        if at_break || long_comma {
            push_trimmed(&mut out, &mut cur);
        }
    }
    push_trimmed(&mut out, &mut cur);
    out
}

fn push_trimmed(out: &mut Vec<String>, cur: &mut String) {
    let t = cur.trim();
    if t.chars().any(char::is_alphanumeric) {
        out.push(t.to_string());
    }
    cur.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_sentence_ends_only() {
        assert_eq!(
            split_sentences("Your balance is $54.88. Anything else?  Bye!"),
            vec!["Your balance is $54.88.", "Anything else?", "Bye!"]
        );
        assert_eq!(split_sentences("  ...  "), Vec::<String>::new());
        assert_eq!(
            split_sentences("No stop at the end"),
            vec!["No stop at the end"]
        );
    }
}
