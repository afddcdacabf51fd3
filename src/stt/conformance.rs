//! The conformance suite every STT backend runs: open, stream, finalize (twice, in order),
//! finalize with no audio, keep-alive, a failing utterance the session survives, cancel
//! mid-stream and close. A backend gets all of it with one line in [`tests`] below.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{SpeechToText, SttControl, SttEvent, SttInput, SttParams, SttStream};

/// How long any single step may take (a cold whisper decode included).
const STEP: Duration = Duration::from_secs(30);

/// What a backend brings to the suite.
pub struct Subject {
    /// The backend under test.
    pub backend: Arc<dyn SpeechToText>,
    /// A few seconds of speech at the backend's rate.
    pub speech: Vec<i16>,
    /// A word the transcript of `speech` must contain (lower case); `None`: any text.
    pub expect: Option<&'static str>,
    /// The same backend set up so that its second utterance fails (`None`: it has no way
    /// to fail on demand; that case is skipped).
    pub faulty: Option<Arc<dyn SpeechToText>>,
}

/// Session parameters for tests (the backends' own tests share these helpers).
pub(crate) fn params() -> SttParams {
    SttParams {
        call_id: "CAconformance".into(),
        language: None,
    }
}

async fn open(b: &Arc<dyn SpeechToText>, cancel: &CancellationToken) -> SttStream {
    tokio::time::timeout(STEP, b.open(params(), cancel.clone()))
        .await
        .expect("open in time")
        .expect("open")
}

/// The session's next event, in time (`None`: the session ended).
pub(crate) async fn next(s: &mut SttStream) -> Option<SttEvent> {
    tokio::time::timeout(STEP, s.events.recv())
        .await
        .expect("an event in time")
}

/// The next event that is not a partial or a speech start.
pub(crate) async fn next_final(s: &mut SttStream) -> SttEvent {
    loop {
        let ev = next(s).await.expect("session still open");
        if !matches!(ev, SttEvent::Partial(_) | SttEvent::SpeechStarted) {
            return ev;
        }
    }
}

/// Sends `pcm` in frames of `frame` samples, as a call delivers them.
pub(crate) async fn send_frames(s: &SttStream, pcm: &[i16], frame: usize) {
    for c in pcm.chunks(frame) {
        s.input.send(SttInput::Audio(c.to_vec())).await.unwrap();
    }
}

/// The backend an `[stt]` section written as TOML builds.
pub(crate) fn built(toml: &str) -> Arc<dyn SpeechToText> {
    super::build(&super::SttSettings::from_toml("stt", toml).expect("valid")).unwrap()
}

async fn say(s: &SttStream, pcm: &[i16]) {
    send_frames(s, pcm, 320).await;
    s.input
        .send(SttInput::Control(SttControl::Finalize))
        .await
        .unwrap();
}

async fn closes(s: &mut SttStream) -> bool {
    // Drain whatever was in flight; the channel must then close.
    tokio::time::timeout(STEP, async { while s.events.recv().await.is_some() {} })
        .await
        .is_ok()
}

/// Runs every case against `subject`.
pub async fn run(subject: Subject) {
    let b = &subject.backend;
    assert!(b.sample_rate() >= 8_000, "{}: sample rate", b.name());
    let cancel = CancellationToken::new();
    let mut s = open(b, &cancel).await;

    // Stream, finalize: the words come back, with the audio length.
    say(&s, &subject.speech).await;
    let SttEvent::Final(t) = next_final(&mut s).await else {
        panic!("{}: no final transcript", b.name())
    };
    let ms = subject.speech.len() as u64 * 1000 / u64::from(b.sample_rate());
    // A streaming backend counts from the speech it heard start, not from the first sample.
    assert!(
        t.audio_ms > 0 && t.audio_ms <= ms + 100,
        "{}: audio_ms {} of {ms}",
        b.name(),
        t.audio_ms
    );
    match subject.expect {
        Some(word) => assert!(
            t.text.to_lowercase().contains(word),
            "{}: {:?}",
            b.name(),
            t.text
        ),
        None => assert!(!t.text.is_empty(), "{}: empty transcript", b.name()),
    }

    // Keep-alive is accepted; finalize with no audio gives an empty final; order is kept.
    s.input
        .send(SttInput::Control(SttControl::KeepAlive))
        .await
        .unwrap();
    s.input
        .send(SttInput::Control(SttControl::Finalize))
        .await
        .unwrap();
    match next_final(&mut s).await {
        SttEvent::Final(t) => assert!(t.text.trim().is_empty(), "{}: {:?}", b.name(), t.text),
        other => panic!("{}: finalize without audio gave {other:?}", b.name()),
    }
    say(&s, &subject.speech).await;
    assert!(matches!(next_final(&mut s).await, SttEvent::Final(_)));

    // Close ends the session.
    s.input
        .send(SttInput::Control(SttControl::Close))
        .await
        .unwrap();
    assert!(
        closes(&mut s).await,
        "{}: close did not end the session",
        b.name()
    );

    // Cancel mid-stream ends the session, and the backend still serves a new one.
    let cancel2 = CancellationToken::new();
    let mut s2 = open(b, &cancel2).await;
    for chunk in subject.speech.chunks(320).take(10) {
        s2.input
            .send(SttInput::Audio(chunk.to_vec()))
            .await
            .unwrap();
    }
    cancel2.cancel();
    assert!(
        closes(&mut s2).await,
        "{}: cancel did not end the session",
        b.name()
    );
    let mut s3 = open(b, &CancellationToken::new()).await;
    say(&s3, &subject.speech).await;
    assert!(matches!(next_final(&mut s3).await, SttEvent::Final(_)));

    // A failing utterance is reported, and the session goes on.
    if let Some(faulty) = &subject.faulty {
        let mut f = open(faulty, &CancellationToken::new()).await;
        say(&f, &subject.speech).await;
        assert!(matches!(next_final(&mut f).await, SttEvent::Final(_)));
        say(&f, &subject.speech).await;
        assert!(
            matches!(next_final(&mut f).await, SttEvent::Error(_)),
            "second fails"
        );
        say(&f, &subject.speech).await;
        assert!(
            matches!(next_final(&mut f).await, SttEvent::Final(_)),
            "session survives"
        );
    }
    cancel.cancel();
}

/// Speech for the suite: flite's voice saying `text`, at `rate`.
pub async fn speech(text: &str, rate: u32) -> Vec<i16> {
    use crate::tts::TextToSpeech as _;
    let tts = crate::tts::flite::FliteTts::new("rms").expect("flite");
    let mut stream = tts
        .synthesize(
            &crate::tts::TtsRequest::text(text),
            CancellationToken::new(),
        )
        .await
        .expect("synthesis");
    let mut pcm = Vec::new();
    while let Some(chunk) = stream.recv().await {
        pcm.extend(chunk.expect("chunk"));
    }
    let mut r = crate::audio::resample::Resampler::new(tts.sample_rate(), rate).unwrap();
    let mut out = Vec::new();
    r.process(&pcm, &mut out);
    r.flush(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stt::SttSettings;

    fn built(toml: &str) -> Arc<dyn SpeechToText> {
        let s = SttSettings::from_toml("stt", toml).expect("valid");
        crate::stt::build(&s).unwrap()
    }

    // One line per backend.
    conformance_tests! {
        fake => Subject {
            backend: built("provider = \"fake\"\ntranscripts = [\"one\", \"two\"]\nlatency_ms = 5"),
            speech: speech("Hello there.", 16_000).await,
            expect: Some("one"),
            faulty: Some(built("provider = \"fake\"\nfail_every = 2\nlatency_ms = 5")),
        };
        fake_streaming => Subject {
            backend: built("provider = \"fake\"\nstreaming = true\nlatency_ms = 5"),
            speech: speech("Hello there.", 16_000).await,
            expect: Some("balance"),
            faulty: None,
        };
        whisper => Subject {
            backend: built(&format!(
                "provider = \"whisper\"\nmodel_path = \"{}/models/ggml-tiny.en.bin\"",
                env!("CARGO_MANIFEST_DIR")
            )),
            speech: speech("I would like to check my account balance.", 16_000).await,
            expect: Some("balance"),
            faulty: None,
        };
        #[cfg(feature = "sim")]
        deepgram => crate::stt::deepgram::tests::subject().await;
        #[cfg(feature = "sim")]
        openai => crate::stt::openai::tests::subject().await;
        #[cfg(feature = "sim")]
        assemblyai => crate::stt::assemblyai::tests::subject().await;
        #[cfg(feature = "sim")]
        vosk => crate::stt::vosk::tests::subject().await;
    }
}
