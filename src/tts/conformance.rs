//! The conformance suite every TTS backend runs: synthesize, sentence by sentence; nothing to
//! say; cancel mid-stream; drop the stream early; a failing sentence. A backend gets all of
//! it with one line in [`tests`] below.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{TextToSpeech, TtsError, TtsRequest, TtsStream};

/// How long a whole synthesis may take.
const STEP: Duration = Duration::from_secs(30);

/// What a backend brings to the suite.
pub struct Subject {
    /// The backend under test.
    pub backend: Arc<dyn TextToSpeech>,
    /// The same backend set up to fail on sentences containing "FAIL" (`None`: it has no way
    /// to fail on demand; that case is skipped).
    pub faulty: Option<Arc<dyn TextToSpeech>>,
}

async fn drain(mut s: TtsStream) -> Vec<Result<Vec<i16>, TtsError>> {
    tokio::time::timeout(STEP, async {
        let mut out = Vec::new();
        while let Some(c) = s.recv().await {
            out.push(c);
        }
        out
    })
    .await
    .expect("the stream ends in time")
}

async fn collect(s: TtsStream) -> Vec<Result<Vec<i16>, String>> {
    let chunks = drain(s).await;
    chunks
        .into_iter()
        .map(|c| c.map_err(|e| e.to_string()))
        .collect()
}

/// Every chunk of `text` from `b`, errors included (the backends' own tests share it).
pub(crate) async fn all(b: &Arc<dyn TextToSpeech>, text: &str) -> Vec<Result<Vec<i16>, TtsError>> {
    drain(synth(b, text, CancellationToken::new()).await).await
}

async fn synth(b: &Arc<dyn TextToSpeech>, text: &str, cancel: CancellationToken) -> TtsStream {
    b.synthesize(&TtsRequest::text(text), cancel)
        .await
        .expect("synthesis starts")
}

/// Runs every case against `subject`.
pub async fn run(subject: Subject) {
    let b = &subject.backend;
    let rate = b.sample_rate();
    assert!(
        (8_000..=48_000).contains(&rate),
        "{}: rate {rate}",
        b.name()
    );

    // Two sentences: audio for each, at least 0.2 s, then the stream ends.
    let chunks =
        collect(synth(b, "Hello there. How can I help?", CancellationToken::new()).await).await;
    let audio: Vec<i16> = chunks.into_iter().flat_map(|c| c.expect("chunk")).collect();
    assert!(
        audio.len() as u32 > rate / 5,
        "{}: {} samples",
        b.name(),
        audio.len()
    );
    assert!(
        audio.iter().any(|&s| s != 0) || b.name() == "fake",
        "{}: silence",
        b.name()
    );

    // Nothing speakable: no audio, no error.
    let chunks = collect(synth(b, " ... ", CancellationToken::new()).await).await;
    assert!(chunks.is_empty(), "{}: {chunks:?}", b.name());

    // Cancel mid-stream: the stream ends early.
    let cancel = CancellationToken::new();
    let long = "One. Two. Three. Four. Five. Six. Seven. Eight. Nine. Ten.";
    let mut s = synth(b, long, cancel.clone()).await;
    let first = tokio::time::timeout(STEP, s.recv())
        .await
        .expect("first chunk in time");
    assert!(first.is_some_and(|c| c.is_ok()));
    cancel.cancel();
    let rest = collect(s).await;
    assert!(
        rest.len() < 9,
        "{}: {} chunks after cancel",
        b.name(),
        rest.len()
    );

    // Dropping a stream early is fine, and the backend serves the next request.
    drop(synth(b, long, CancellationToken::new()).await);
    let chunks = collect(synth(b, "Still here.", CancellationToken::new()).await).await;
    assert!(!chunks.is_empty() && chunks.iter().all(Result::is_ok));

    // A failing sentence is an error chunk that ends the stream; the next request works.
    if let Some(faulty) = &subject.faulty {
        let chunks = collect(
            synth(
                faulty,
                "Fine. FAIL here. Never said.",
                CancellationToken::new(),
            )
            .await,
        )
        .await;
        // The first sentence's audio (one chunk, or several from a streaming backend), then
        // one error, then nothing.
        let (last, audio) = chunks.split_last().expect("chunks");
        assert!(last.is_err(), "{chunks:?}");
        assert!(
            !audio.is_empty() && audio.iter().all(Result::is_ok),
            "{chunks:?}"
        );
        let chunks = collect(synth(faulty, "Fine again.", CancellationToken::new()).await).await;
        assert!(!chunks.is_empty() && chunks.iter().all(Result::is_ok));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tts::TtsSettings;

    fn built(toml: &str) -> Arc<dyn TextToSpeech> {
        let s = TtsSettings::from_toml("tts", toml).expect("valid");
        crate::tts::build(&s).unwrap()
    }

    // One line per backend.
    conformance_tests! {
        fake => Subject {
            backend: built("provider = \"fake\"\nms_per_char = 10\nfirst_chunk_latency_ms = 5"),
            faulty: Some(built("provider = \"fake\"\nms_per_char = 5\nfail_on = \"FAIL\"")),
        };
        fake_silent => Subject {
            backend: built("provider = \"fake\"\ntone_hz = 0\nsample_rate = 8000"),
            faulty: None,
        };
        flite => Subject {
            backend: built("provider = \"flite\"\nvoice = \"slt\""),
            faulty: None,
        };
        #[cfg(feature = "sim")]
        openai => crate::tts::openai::tests::subject().await;
        #[cfg(feature = "sim")]
        deepgram => crate::tts::deepgram::tests::subject().await;
        #[cfg(feature = "sim")]
        piper => crate::tts::piper::tests::subject().await;
        #[cfg(feature = "sim")]
        elevenlabs => crate::tts::elevenlabs::tests::subject().await;
    }
}
