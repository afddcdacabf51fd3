//! A fake STT backend: each finalized utterance gets the next of a scripted list of
//! transcripts after a set latency, whatever was said. For tests, demos and load benchmarks
//! where recognition quality is not the point; it costs no CPU per frame (audio is only
//! counted), so a benchmark measures the bridge, not a model.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    SpeechToText, SttBackend, SttControl, SttError, SttEvent, SttInput, SttParams, SttStream,
    Transcript, STT_EVENT_CAPACITY, STT_INPUT_CAPACITY,
};
use crate::component::{Component, Ctx, Errors};

/// The rate sessions take (the listener's internal rate).
const RATE: u32 = 16_000;
/// A sample above this counts as speech for the streaming mode's `SpeechStarted`.
const LOUD: u16 = 1_000;

/// `[stt] provider = "fake"` as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FakeSttConfig {
    /// Transcripts of a call's utterances in order, starting over after the last.
    pub transcripts: Vec<String>,
    /// Time from the end of an utterance to its transcript.
    pub latency_ms: u64,
    /// Every n-th utterance of a call fails (0: none), to exercise error handling.
    pub fail_every: u32,
    /// Time a session takes to open (a cloud backend's connect and handshake).
    pub open_latency_ms: u64,
    /// Behave like a streaming backend: take the call's audio continuously and report
    /// `SpeechStarted` at the first loud frame of each utterance.
    pub streaming: bool,
    /// With `streaming`: end the caller's turn itself (the backend's endpointing) after this
    /// much audio with no loud sample since the utterance's last one; 0: the VAD ends turns.
    /// A stand-in for a cloud backend's endpointing, and how the load benchmark takes the
    /// VAD off the turn (`benches/load.rs --vad off`).
    pub endpointing_ms: u64,
    /// Accepted for symmetry with real backends (a language override may set it).
    pub language: String,
}

impl Default for FakeSttConfig {
    fn default() -> Self {
        Self {
            transcripts: vec!["I would like to check my balance.".into()],
            latency_ms: 50,
            fail_every: 0,
            open_latency_ms: 0,
            streaming: false,
            endpointing_ms: 0,
            language: "en".into(),
        }
    }
}

/// Validated fake STT settings.
#[derive(Debug, Clone)]
pub struct FakeSttSettings {
    /// Scripted transcripts (at least one).
    pub transcripts: Arc<[String]>,
    /// Latency per utterance.
    pub latency: Duration,
    /// Every n-th utterance fails (0: none).
    pub fail_every: u32,
    /// Streaming behaviour (see [`FakeSttConfig::streaming`]).
    pub streaming: bool,
    /// Time to open a session.
    pub open_latency: Duration,
    /// The backend's own end of turn (see [`FakeSttConfig::endpointing_ms`]); 0: none.
    pub endpointing_samples: usize,
}

impl Component for FakeSttSettings {
    type Raw = FakeSttConfig;

    fn validate(raw: FakeSttConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            !raw.transcripts.is_empty(),
            &ctx.key("transcripts"),
            "must list at least one transcript",
        );
        errs.check(
            raw.latency_ms <= 60_000,
            &ctx.key("latency_ms"),
            "must be at most 60000",
        );
        errs.check(
            raw.endpointing_ms == 0 || (raw.streaming && raw.endpointing_ms <= 60_000),
            &ctx.key("endpointing_ms"),
            "needs streaming = true and must be at most 60000",
        );
        Self {
            endpointing_samples: (raw.endpointing_ms * u64::from(RATE) / 1000) as usize,
            transcripts: raw.transcripts.into(),
            latency: Duration::from_millis(raw.latency_ms),
            fail_every: raw.fail_every,
            streaming: raw.streaming,
            open_latency: Duration::from_millis(raw.open_latency_ms),
        }
    }
}

impl SttBackend for FakeSttSettings {
    fn build(&self) -> Result<Arc<dyn SpeechToText>, SttError> {
        Ok(Arc::new(FakeStt(self.clone())))
    }
}

/// The fake backend.
#[derive(Debug, Clone)]
pub struct FakeStt(pub FakeSttSettings);

#[async_trait]
impl SpeechToText for FakeStt {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn sample_rate(&self) -> u32 {
        RATE
    }

    fn streaming(&self) -> bool {
        self.0.streaming
    }

    fn endpointing(&self) -> bool {
        self.0.streaming && self.0.endpointing_samples > 0
    }

    async fn open(
        &self,
        _params: SttParams,
        cancel: CancellationToken,
    ) -> Result<SttStream, SttError> {
        tokio::select! {
            _ = cancel.cancelled() => return Err(SttError::Closed),
            _ = tokio::time::sleep(self.0.open_latency) => {}
        }
        let (input, mut input_rx) = mpsc::channel(STT_INPUT_CAPACITY);
        let (event_tx, events) = mpsc::channel(STT_EVENT_CAPACITY);
        let s = self.0.clone();
        let task = async move {
            let (mut samples, mut utterances, mut speaking) = (0usize, 0u32, false);
            // Samples since the utterance's last loud one (endpointing only).
            let mut quiet = 0usize;
            loop {
                let input = tokio::select! {
                    _ = cancel.cancelled() => return,
                    it = input_rx.recv() => match it { Some(it) => it, None => return },
                };
                let finalize = match input {
                    SttInput::Audio(pcm) => {
                        let loud = pcm.iter().any(|&x| x.unsigned_abs() > LOUD);
                        if s.streaming && loud && !speaking {
                            speaking = true;
                            if event_tx.send(SttEvent::SpeechStarted).await.is_err() {
                                return;
                            }
                        }
                        if !s.streaming || speaking {
                            samples += pcm.len();
                        }
                        quiet = if loud { 0 } else { quiet + pcm.len() };
                        speaking && s.endpointing_samples > 0 && quiet >= s.endpointing_samples
                    }
                    SttInput::Control(SttControl::KeepAlive) => false,
                    SttInput::Control(SttControl::Close) => return,
                    SttInput::Control(SttControl::Finalize) => true,
                };
                if !finalize {
                    continue;
                }
                speaking = false;
                let audio_ms = (samples as u64 * 1000) / u64::from(RATE);
                samples = 0;
                utterances += 1;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(s.latency) => {}
                }
                let ev = if s.fail_every > 0 && utterances % s.fail_every == 0 {
                    SttEvent::Error(format!("scripted failure of utterance {utterances}"))
                } else {
                    let i = (utterances as usize - 1) % s.transcripts.len();
                    SttEvent::Final(Transcript {
                        text: if audio_ms == 0 {
                            String::new()
                        } else {
                            s.transcripts[i].clone()
                        },
                        confidence: Some(1.0),
                        audio_ms,
                        decode_ms: s.latency.as_millis() as u64,
                        queue_ms: 0,
                    })
                };
                if event_tx.send(ev).await.is_err() {
                    return;
                }
            }
        };
        tokio::spawn(tracing::Instrument::in_current_span(task));
        Ok(SttStream { input, events })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stt::conformance::built;

    /// `endpointing_ms`: the turn ends after that much quiet following speech, without a
    /// `Finalize` (what the load benchmark's `--vad off` relies on).
    #[tokio::test]
    async fn endpointing_ends_the_turn_after_quiet() {
        let stt =
            built("provider = \"fake\"\nstreaming = true\nendpointing_ms = 100\nlatency_ms = 5");
        assert!(stt.streaming() && stt.endpointing());
        let params = SttParams {
            call_id: "t".into(),
            language: None,
        };
        let mut s = stt.open(params, CancellationToken::new()).await.unwrap();
        let (loud, quiet) = (vec![4_000_i16; 320], vec![0_i16; 320]);
        for _ in 0..4 {
            s.input.send(SttInput::Audio(loud.clone())).await.unwrap();
        }
        // 80 ms of quiet: not yet.
        for _ in 0..4 {
            s.input.send(SttInput::Audio(quiet.clone())).await.unwrap();
        }
        assert!(matches!(
            s.events.recv().await,
            Some(SttEvent::SpeechStarted)
        ));
        let early = tokio::time::timeout(Duration::from_millis(50), s.events.recv()).await;
        assert!(early.is_err(), "no final before endpointing_ms of quiet");
        s.input.send(SttInput::Audio(quiet.clone())).await.unwrap();
        match s.events.recv().await {
            Some(SttEvent::Final(t)) => assert_eq!(t.text, "I would like to check my balance."),
            other => panic!("expected a final, got {other:?}"),
        }
    }

    #[test]
    fn endpointing_needs_streaming() {
        let r =
            crate::stt::SttSettings::from_toml("stt", "provider = \"fake\"\nendpointing_ms = 100");
        assert!(r.is_err());
    }
}
