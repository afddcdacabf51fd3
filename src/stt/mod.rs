//! Speech-to-text: the [`SpeechToText`] trait (a streaming session per call), its events and
//! errors, and [`build`], which turns config into one shared backend at startup.
//! A backend is one file here (its config, validation, build and code) plus one line in
//! [`SttSettings`].

pub mod assemblyai;
#[cfg(test)]
pub(crate) mod conformance;
pub mod deepgram;
pub mod fake;
pub mod guard;
pub mod openai;
pub mod vosk;
pub mod whisper;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

crate::registry! {
    /// Validated `[stt]`: the backend named by `provider` (default `whisper`).
    pub enum SttSettings: dyn SttBackend, tag "provider", default "whisper" {
        /// Embedded whisper.cpp (offline).
        Whisper(whisper::WhisperSettings) = "whisper",
        /// Scripted transcripts with a set latency (tests, load benchmarks, demos).
        Fake(fake::FakeSttSettings) = "fake",
        /// Deepgram streaming (WebSocket `/v1/listen`).
        Deepgram(deepgram::DeepgramSttSettings) = "deepgram",
        /// OpenAI-compatible `POST /v1/audio/transcriptions`, one request per utterance.
        OpenAi(openai::OpenAiSttSettings) = "openai",
        /// AssemblyAI Universal-Streaming v3 (WebSocket `/v3/ws`).
        AssemblyAi(assemblyai::AssemblyAiSttSettings) = "assemblyai",
        /// A self-hosted vosk-server (WebSocket, `{"eof" : 1}`).
        Vosk(vosk::VoskSttSettings) = "vosk",
    }
}

/// A configured STT backend: how it is built at startup.
pub trait SttBackend: Debug + Send + Sync {
    /// Loads the backend (models, clients); called once at startup, per language override.
    fn build(&self) -> Result<Arc<dyn SpeechToText>, SttError>;
    /// Calls this machine can recognise at once without callers waiting for a decoder, on
    /// `cores` cores (`None`: not bounded here, e.g. a cloud service). A planning figure
    /// from measurements (README "Performance"), checked by `voxhook validate`.
    fn capacity(&self, cores: usize) -> Option<usize> {
        let _ = cores;
        None
    }
}

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
    /// A remote backend could not be reached or refused the session (network, timeout,
    /// authentication, HTTP status).
    #[error("STT service unavailable: {0}")]
    Unavailable(String),
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

/// Input to a session, in order (one channel, so a control never overtakes the audio it
/// refers to).
#[derive(Debug)]
pub enum SttInput {
    /// Audio at [`SpeechToText::sample_rate`], mono.
    Audio(Vec<i16>),
    /// A control message.
    Control(SttControl),
}

/// Controls of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SttControl {
    /// The utterance ended (VAD): produce its final transcript now.
    Finalize,
    /// No audio is flowing for a while; keep the session open (cloud backends close idle
    /// streams).
    KeepAlive,
    /// End the session gracefully (flush, then close); the session task then ends.
    Close,
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
    /// The backend heard speech start (streaming backends with voice activity events);
    /// may interrupt playback.
    SpeechStarted,
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
    /// `true`: the session takes the call's audio continuously (a cloud stream with its own
    /// endpointing); `false`: only each utterance the VAD found, then `Finalize`.
    fn streaming(&self) -> bool {
        false
    }
    /// `true` (streaming backends only): the backend's own endpointing ends the caller's turn
    /// (it emits `Final` by itself); the listener then sends no `Finalize` at the VAD's end
    /// of speech, only when the backend stays silent long after it.
    fn endpointing(&self) -> bool {
        false
    }
    /// `true` (streaming backends only): the session sends `Partial`s while the caller
    /// speaks, so barge-in can wait for real words (`[audio] barge_in_min_words`).
    fn partials(&self) -> bool {
        false
    }
    /// Opens a session; it ends when `cancel` fires, `input` is dropped or after `Close`.
    /// Called by the call's listener task, never by the actor, so it may take a round trip.
    async fn open(
        &self,
        params: SttParams,
        cancel: CancellationToken,
    ) -> Result<SttStream, SttError>;
}

/// Builds the configured backend (loads models; call once at startup).
pub fn build(settings: &SttSettings) -> Result<Arc<dyn SpeechToText>, SttError> {
    settings.get().build()
}

/// Words `b` after words `a` (either may be empty): one transcript from a backend's pieces.
pub(crate) fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a} {b}")
    }
}

/// Sleeps until `at`; never, without one (a `select!` branch for an optional deadline).
pub(crate) async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
