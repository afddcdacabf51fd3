//! What the HTTP speech backends (`openai`, `deepgram`) share: one request per sentence on a
//! task that ends at the first failure, and the deadlines on a streamed response.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{split_sentences, TtsError, TtsRequest, TtsStream, TTS_CHUNK_CAPACITY};
use crate::stt::openai::{refused, transport};
use crate::telemetry::metrics;

/// A failure's kind (a `voxhook_tts_errors_total` label) and message.
pub(crate) type Failure = (&'static str, String);

/// Where a sentence's audio goes.
pub(crate) type ChunkTx = mpsc::Sender<Result<Vec<i16>, TtsError>>;

/// Speaks `text` sentence by sentence with `speak` (`Ok(false)`: the listener dropped the
/// stream), on a task that stops at cancellation and ends the stream with an error at the
/// first failure.
pub(crate) fn per_sentence<S, F>(
    backend: &'static str,
    text: &str,
    cancel: CancellationToken,
    speak: S,
) -> TtsStream
where
    S: Fn(String, ChunkTx) -> F + Send + 'static,
    F: Future<Output = Result<bool, Failure>> + Send,
{
    let (tx, rx) = mpsc::channel(TTS_CHUNK_CAPACITY);
    let sentences = split_sentences(text);
    let task = async move {
        for sentence in sentences {
            let spoken = tokio::select! {
                _ = cancel.cancelled() => return,
                res = speak(sentence, tx.clone()) => res,
            };
            match spoken {
                Ok(true) => {}
                Ok(false) => return,
                Err((kind, msg)) => {
                    metrics::tts_error(backend, kind);
                    tracing::warn!(error = %msg, kind, backend, "Speech request failed.");
                    let msg = format!("{backend}: {msg}");
                    let _ = tx.send(Err(TtsError::Synthesis(msg))).await;
                    return;
                }
            }
        }
    };
    tokio::spawn(tracing::Instrument::in_current_span(task));
    rx
}

/// A backend's `synthesize`: `req.voice` or `default_voice`, then [`per_sentence`] with
/// `speak(client, sentence, voice, tx)` for each sentence.
pub(crate) fn speak_request<C, F>(
    backend: &'static str,
    req: &TtsRequest,
    default_voice: &str,
    cancel: CancellationToken,
    client: Arc<C>,
    speak: fn(Arc<C>, String, String, ChunkTx) -> F,
) -> TtsStream
where
    C: Send + Sync + 'static,
    F: Future<Output = Result<bool, Failure>> + Send + 'static,
{
    // Plain text: neither HTTP API takes SSML.
    let voice = req
        .voice
        .clone()
        .unwrap_or_else(|| default_voice.to_string());
    per_sentence(backend, &req.text, cancel, move |sentence, tx| {
        speak(client.clone(), sentence, voice.clone(), tx)
    })
}

/// A backend's HTTP client, with its connection deadline.
pub(crate) fn client(
    backend: &str,
    connect_timeout: Duration,
) -> Result<reqwest::Client, TtsError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|e| TtsError::Init(format!("{backend}: HTTP client: {e}")))
}

/// Sends `req`, allowing `first_byte` for the response to start; a non-2xx status is a
/// failure carrying the body's message.
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    first_byte: Duration,
) -> Result<reqwest::Response, Failure> {
    let resp = tokio::time::timeout(first_byte, req.send())
        .await
        .map_err(|_| ("timeout", "no response in time".to_string()))?
        .map_err(|e| transport(&e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    Err(refused(status, &bytes))
}

/// The next piece of a streamed body (`None`: it ended), allowing `idle` between pieces.
pub(crate) async fn next_piece(
    resp: &mut reqwest::Response,
    idle: Duration,
) -> Result<Option<bytes::Bytes>, Failure> {
    tokio::time::timeout(idle, resp.chunk())
        .await
        .map_err(|_| ("timeout", "the audio stream stalled".to_string()))?
        .map_err(|e| ("disconnect", format!("audio stream broke: {e}")))
}
