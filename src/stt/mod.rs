//! Speech-to-text: the [`SpeechToText`] trait (a streaming session per call), its events and
//! errors, and [`build`], which turns config into one shared backend at startup.
//! A backend is one file here plus one line in [`build`].

pub mod whisper;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::SttSettings;

/// Capacity of a session's input channel, in 16 ms audio chunks (~2 s). The listener waits
/// when it is full; the actor then drops (and counts) caller frames in front of the listener.
pub const STT_INPUT_CAPACITY: usize = 128;
/// Capacity of a session's event channel.
pub const STT_EVENT_CAPACITY: usize = 16;

/// Errors of the STT layer.
#[derive(Debug, thiserror::Error)]
pub enum SttError {
    /// The backend could not be initialised (bad model file, …).
    #[error("STT backend init failed: {0}")]
    Init(String),
    /// Decoding an utterance failed.
    #[error("STT decode failed: {0}")]
    Decode(String),
    /// The session's task is gone.
    #[error("STT session closed")]
    Closed,
}

/// Per-call session parameters.
#[derive(Debug, Clone)]
pub struct SttParams {
    /// For logs.
    pub call_id: String,
    /// Spoken language for this session; `None`: the backend's configured one.
    pub language: Option<String>,
}

/// Input to a session, in order.
#[derive(Debug)]
pub enum SttInput {
    /// Audio at [`SpeechToText::sample_rate`], mono.
    Audio(Vec<i16>),
    /// The utterance ended (VAD): produce its final transcript.
    Finalize,
}

/// A recognised utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The words.
    pub text: String,
    /// Mean token probability, 0..1, when the backend knows it.
    pub confidence: Option<f32>,
    /// Length of the audio recognised.
    pub audio_ms: u64,
    /// Time spent recognising it.
    pub decode_ms: u64,
    /// Time the utterance waited for a free decoder before recognition started (0 for a
    /// backend without a queue). Grows when callers speak faster than the pool decodes.
    pub queue_ms: u64,
}

/// Output of a session.
#[derive(Debug, Clone, PartialEq)]
pub enum SttEvent {
    /// A hypothesis that may still change (streaming backends).
    Partial(Transcript),
    /// The final text of one utterance; empty text means nothing intelligible was said.
    Final(Transcript),
    /// The backend failed on one utterance; the session goes on.
    Error(String),
}

/// One call's recognition stream.
pub struct SttStream {
    /// Audio and control in.
    pub input: mpsc::Sender<SttInput>,
    /// Events out.
    pub events: mpsc::Receiver<SttEvent>,
}

/// A speech-to-text backend shared by all calls.
#[async_trait]
pub trait SpeechToText: Send + Sync {
    /// Backend name for logs.
    fn name(&self) -> &'static str;
    /// The sample rate the session expects.
    fn sample_rate(&self) -> u32;
    /// Opens a session; it ends when `cancel` fires or `input` is dropped.
    async fn open(
        &self,
        params: SttParams,
        cancel: CancellationToken,
    ) -> Result<SttStream, SttError>;
}

/// Builds the configured backend (loads models; call once at startup).
pub fn build(settings: &SttSettings) -> Result<Arc<dyn SpeechToText>, SttError> {
    match settings {
        SttSettings::Whisper(w) => Ok(Arc::new(whisper::WhisperStt::load(w)?)),
    }
}
