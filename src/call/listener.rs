//! The call's ear: caller PCM → band-limited resampling to the STT rate → VAD endpointing →
//! the STT session. Runs as its own task so per-frame DSP never delays the actor; reports
//! speech start, barge-in and final transcripts.

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::audio::resample::Resampler;
use crate::audio::vad::{Endpointer, EndpointerConfig, VadEvent};
use crate::audio::INTERNAL_RATE;
use crate::stt::{SttEvent, SttInput, SttStream, Transcript};

/// Actor → listener: caller audio frames (~2.5 s of 20 ms frames). The actor uses
/// `try_send`: when the listener falls behind, the newest frames are dropped and counted
/// rather than delaying the call.
pub const LISTENER_AUDIO_CAPACITY: usize = 128;
/// Listener → actor events.
pub const LISTENER_EVENT_CAPACITY: usize = 16;

/// What the listener tells the actor.
#[derive(Debug)]
pub enum ListenerEvent {
    /// The caller started speaking.
    SpeechStarted,
    /// Enough speech to interrupt playback.
    BargeIn,
    /// The utterance ended (VAD) at this instant.
    SpeechEnded(Instant),
    /// The utterance's text.
    Transcript(Transcript),
    /// Recognition of one utterance failed.
    SttFailed(String),
}

/// Runs until cancelled or the audio channel closes.
pub async fn run(
    mut audio: mpsc::Receiver<Vec<i16>>,
    inbound_rate: u32,
    vad: EndpointerConfig,
    stt: SttStream,
    events: mpsc::Sender<ListenerEvent>,
    cancel: CancellationToken,
) {
    // The VAD runs at the internal rate; the STT session takes the same audio.
    let mut resampler = match Resampler::new(inbound_rate, INTERNAL_RATE) {
        Ok(r) => r,
        Err(e) => {
            let _ = events.send(ListenerEvent::SttFailed(e.to_string())).await;
            return;
        }
    };
    let SttStream {
        input: stt_in,
        events: mut stt_events,
    } = stt;
    let mut endpointer = Endpointer::new(vad);
    let mut pcm16k = Vec::with_capacity(640);
    let mut vad_events = Vec::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            frame = audio.recv() => {
                let Some(frame) = frame else { return };
                pcm16k.clear();
                resampler.process(&frame, &mut pcm16k);
                vad_events.clear();
                endpointer.push(&pcm16k, &mut vad_events);
                for ev in vad_events.drain(..) {
                    let (to_stt, to_actor) = match ev {
                        VadEvent::Started(a) => (Some(SttInput::Audio(a)), Some(ListenerEvent::SpeechStarted)),
                        VadEvent::Audio(a) => (Some(SttInput::Audio(a)), None),
                        VadEvent::BargeIn => (None, Some(ListenerEvent::BargeIn)),
                        VadEvent::Ended { cut } => {
                            if cut {
                                tracing::info!("Utterance cut at the maximum length.");
                            }
                            (Some(SttInput::Finalize), Some(ListenerEvent::SpeechEnded(Instant::now())))
                        }
                    };
                    if let Some(i) = to_stt {
                        if stt_in.send(i).await.is_err() {
                            return;
                        }
                    }
                    if let Some(e) = to_actor {
                        if events.send(e).await.is_err() {
                            return;
                        }
                    }
                }
            }
            ev = stt_events.recv() => {
                let out = match ev {
                    Some(SttEvent::Final(t)) => ListenerEvent::Transcript(t),
                    Some(SttEvent::Partial(_)) => continue,
                    Some(SttEvent::Error(e)) => ListenerEvent::SttFailed(e),
                    None => {
                        let _ = events.send(ListenerEvent::SttFailed("STT session ended".into())).await;
                        return;
                    }
                };
                if events.send(out).await.is_err() {
                    return;
                }
            }
        }
    }
}
