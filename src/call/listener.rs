//! The call's ear: caller PCM (straight from the socket reader) → the recording tap →
//! band-limited resampling to the STT rate → VAD endpointing → the STT session. Runs as its
//! own task, which also opens the STT session, so neither per-frame DSP nor a slow session
//! open (a cloud STT reconnecting on a language switch) ever delays the actor. Reports
//! speech start, barge-in and final transcripts.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::audio::resample::Resampler;
use crate::audio::vad::{Endpointer, EndpointerConfig, VadEvent};
use crate::audio::INTERNAL_RATE;
use crate::stt::{SpeechToText, SttControl, SttEvent, SttInput, SttParams, SttStream, Transcript};

use super::record::CallTrace;

/// Socket reader → listener: caller audio frames (~2.5 s of 20 ms frames). The reader uses
/// `try_send`: when the listener falls behind, the newest frames are dropped and counted
/// rather than delaying the socket.
pub const LISTENER_AUDIO_CAPACITY: usize = 128;
/// Listener → actor events.
pub const LISTENER_EVENT_CAPACITY: usize = 16;
/// A streaming STT session that got no audio for this long is sent a `KeepAlive` (cloud
/// backends close idle streams after about ten seconds).
const KEEPALIVE_AFTER: std::time::Duration = std::time::Duration::from_secs(4);

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
    /// The STT session could not open or ended: speech input is off for this listener
    /// (the recording still gets the audio).
    SttUnavailable(String),
}

/// What the listener needs to open its STT session.
pub struct SttSource {
    /// The backend.
    pub stt: Arc<dyn SpeechToText>,
    /// Session parameters.
    pub params: SttParams,
}

/// Runs until cancelled or the audio channel closes.
pub async fn run(
    mut audio: mpsc::Receiver<Vec<i16>>,
    inbound_rate: u32,
    vad: EndpointerConfig,
    source: SttSource,
    trace: CallTrace,
    events: mpsc::Sender<ListenerEvent>,
    cancel: CancellationToken,
) {
    // Opened here, not in the actor: frames meanwhile wait in the audio queue.
    let stt = tokio::select! {
        _ = cancel.cancelled() => return,
        opened = source.stt.open(source.params, cancel.clone()) => opened,
    };
    let stt = match stt {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "STT session failed to open; speech input disabled.");
            let _ = events
                .send(ListenerEvent::SttUnavailable(e.to_string()))
                .await;
            return record_only(audio, &trace, &cancel).await;
        }
    };
    // The VAD runs at the internal rate; the STT session takes the same audio.
    let mut resampler = match Resampler::new(inbound_rate, INTERNAL_RATE) {
        Ok(r) => r,
        Err(e) => {
            let _ = events
                .send(ListenerEvent::SttUnavailable(e.to_string()))
                .await;
            return record_only(audio, &trace, &cancel).await;
        }
    };
    let SttStream {
        input: stt_in,
        events: mut stt_events,
    } = stt;
    // A streaming session hears everything; an utterance session only what the VAD keeps.
    let streaming = source.stt.streaming();
    let mut endpointer = Endpointer::new(vad);
    let mut pcm16k = Vec::with_capacity(640);
    let mut vad_events = Vec::new();
    let mut keepalive = tokio::time::interval(KEEPALIVE_AFTER);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard_since_tick = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                // Let a cloud session flush and close cleanly (best effort, never waits).
                let _ = stt_in.try_send(SttInput::Control(SttControl::Close));
                return;
            }
            _ = keepalive.tick(), if streaming => {
                if !std::mem::take(&mut heard_since_tick)
                    && stt_in.send(SttInput::Control(SttControl::KeepAlive)).await.is_err()
                {
                    let _ = events.send(ListenerEvent::SttUnavailable("STT session ended".into())).await;
                    return record_only(audio, &trace, &cancel).await;
                }
            }
            frame = audio.recv() => {
                let Some(frame) = frame else { return };
                trace.caller_audio(&frame);
                heard_since_tick = true;
                pcm16k.clear();
                resampler.process(&frame, &mut pcm16k);
                vad_events.clear();
                endpointer.push(&pcm16k, &mut vad_events);
                if streaming
                    && !pcm16k.is_empty()
                    && stt_in.send(SttInput::Audio(pcm16k.clone())).await.is_err()
                {
                    let _ = events.send(ListenerEvent::SttUnavailable("STT session ended".into())).await;
                    return record_only(audio, &trace, &cancel).await;
                }
                for ev in vad_events.drain(..) {
                    let (to_stt, to_actor) = match ev {
                        VadEvent::Started(_) if streaming => (None, Some(ListenerEvent::SpeechStarted)),
                        VadEvent::Audio(_) if streaming => (None, None),
                        VadEvent::Started(a) => (Some(SttInput::Audio(a)), Some(ListenerEvent::SpeechStarted)),
                        VadEvent::Audio(a) => (Some(SttInput::Audio(a)), None),
                        VadEvent::BargeIn => (None, Some(ListenerEvent::BargeIn)),
                        VadEvent::Ended { cut } => {
                            if cut {
                                tracing::info!("Utterance cut at the maximum length.");
                            }
                            (Some(SttInput::Control(SttControl::Finalize)), Some(ListenerEvent::SpeechEnded(Instant::now())))
                        }
                    };
                    if let Some(i) = to_stt {
                        if stt_in.send(i).await.is_err() {
                            let _ = events.send(ListenerEvent::SttUnavailable("STT session ended".into())).await;
                            return record_only(audio, &trace, &cancel).await;
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
                    // The backend's own voice activity: a barge-in while the bot speaks.
                    Some(SttEvent::SpeechStarted) => ListenerEvent::BargeIn,
                    Some(SttEvent::Error(e)) => ListenerEvent::SttFailed(e),
                    None => {
                        let _ = events.send(ListenerEvent::SttUnavailable("STT session ended".into())).await;
                        return record_only(audio, &trace, &cancel).await;
                    }
                };
                if events.send(out).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Without speech input the caller's audio still reaches the recording.
async fn record_only(
    mut audio: mpsc::Receiver<Vec<i16>>,
    trace: &CallTrace,
    cancel: &CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            frame = audio.recv() => match frame {
                Some(f) => trace.caller_audio(&f),
                None => return,
            },
        }
    }
}
