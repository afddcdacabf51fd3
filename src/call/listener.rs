//! The call's ear: caller PCM (straight from the socket reader) → the recording tap →
//! band-limited resampling to the STT rate → VAD endpointing → the STT session. Runs as its
//! own task, which also opens the STT session, so neither per-frame DSP nor a slow session
//! open (a cloud STT reconnecting on a language switch) ever delays the actor. Reports
//! speech start, barge-in and final transcripts. With `[audio.silero]`, Silero VAD (on its
//! own thread) confirms a VAD barge-in and trims an utterance before an utterance STT; with
//! `[audio.smart_turn]`, the end-of-turn model (on its own threads) is asked at each pause
//! whether the caller finished. The listener awaits their answers in its loop, never on the
//! per-frame path.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::audio::resample::Resampler;
use crate::audio::silero::{self, Busy, Pending, SileroError, SileroPool};
use crate::audio::smart_turn::{self, SmartTurnError, SmartTurnPool, Verdict};
use crate::audio::vad::{Endpointer, EndpointerConfig, VadEvent};
use crate::audio::INTERNAL_RATE;
use crate::stt::{
    guard, sleep_until_opt, SpeechToText, SttControl, SttEvent, SttInput, SttParams, SttStream,
    Transcript,
};
use crate::telemetry::metrics;

use super::digits;
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
/// When the backend ends turns itself: a `Finalize` goes out this long after the VAD's end of
/// speech if the backend has not ended the turn by then (noise the backend heard no words
/// in), so the actor is never left waiting for a turn that will not come.
const BACKEND_TURN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// A barge-in candidate as Silero hears it: the utterance's last 320 ms (10 windows).
const CONFIRM_SAMPLES: usize = 10 * silero::WINDOW;
/// STT inputs kept while the session opens (~30 s of 20 ms frames: one longest utterance);
/// older ones are dropped first.
const BACKLOG_INPUTS: usize = 1_500;

/// What the listener tells the actor.
#[derive(Debug)]
pub enum ListenerEvent {
    /// The caller started speaking.
    SpeechStarted,
    /// Enough speech to interrupt playback.
    BargeIn,
    /// The utterance ended (VAD) at this instant.
    SpeechEnded(Instant),
    /// The utterance's text (boxed: the event channel's 32 slots are 32 B, not 56).
    Transcript(Box<Transcript>),
    /// Recognition of one utterance failed.
    SttFailed(String),
    /// The STT session could not open or ended: speech input is off for this listener
    /// (the recording still gets the audio).
    SttUnavailable(String),
}

/// The neural models a listener may ask, each shared by every call and absent when off.
#[derive(Clone, Default)]
pub struct Models {
    /// Silero VAD's second opinion on barge-ins and utterances (`[audio.silero]`).
    pub silero: Option<Arc<SileroPool>>,
    /// The end-of-turn model, asked at each pause (`[audio.smart_turn]`).
    pub smart_turn: Option<Arc<SmartTurnPool>>,
}

/// What the listener needs to open its STT session.
pub struct SttSource {
    /// The backend.
    pub stt: Arc<dyn SpeechToText>,
    /// Takes over when `stt` cannot open a session or loses it (`[stt] fallback`).
    pub fallback: Option<Arc<dyn SpeechToText>>,
    /// Session parameters.
    pub params: SttParams,
}

/// An ended utterance on its way to an utterance STT while Silero trims it; kept in order,
/// so a later utterance never reaches the session before an earlier one.
enum Trim {
    /// Silero is scoring its windows.
    Scoring(Pending, Vec<i16>),
    /// The pool was busy: sent as the VAD cut it.
    Untrimmed(Vec<i16>),
}

/// Why [`listen`] returned.
enum Ended {
    /// Cancelled, or the audio or event channel closed: the listener is done.
    Done,
    /// The session could not open or ended, and a fallback may take over.
    Lost(String),
}

/// Runs until cancelled or the audio channel closes. `expect_digits` says when the bot has
/// asked for a number (the endpointer then waits longer in pauses).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut audio: mpsc::Receiver<Vec<i16>>,
    inbound_rate: u32,
    vad: EndpointerConfig,
    mut expect_digits: watch::Receiver<bool>,
    models: Models,
    source: SttSource,
    trace: CallTrace,
    events: mpsc::Sender<ListenerEvent>,
    cancel: CancellationToken,
) {
    let mut backend = source.stt;
    let mut fallback = source.fallback;
    loop {
        let ended = listen(
            &mut audio,
            inbound_rate,
            (vad.clone(), &mut expect_digits, &models),
            (backend.clone(), fallback.is_some()),
            source.params.clone(),
            &trace,
            &events,
            &cancel,
        )
        .await;
        let Ended::Lost(error) = ended else { return };
        let Some(next) = fallback.take() else { return };
        // The utterance in progress, if any, is lost with the session; the next starts
        // afresh on the fallback.
        tracing::warn!(from = backend.name(), to = next.name(), error = %error,
            "STT lost; the fallback backend takes over.");
        metrics::stt_fallback(backend.name());
        backend = next;
    }
}

/// Listens with one backend; `can_fall_back`: a lost session returns [`Ended::Lost`]
/// instead of turning speech input off.
#[allow(clippy::too_many_arguments)]
async fn listen(
    audio: &mut mpsc::Receiver<Vec<i16>>,
    inbound_rate: u32,
    (vad, expect_digits, models): (EndpointerConfig, &mut watch::Receiver<bool>, &Models),
    (backend, can_fall_back): (Arc<dyn SpeechToText>, bool),
    params: SttParams,
    trace: &CallTrace,
    events: &mpsc::Sender<ListenerEvent>,
    cancel: &CancellationToken,
) -> Ended {
    // The VAD runs at the internal rate; the STT session takes the same audio.
    let mut resampler = match Resampler::new(inbound_rate, INTERNAL_RATE) {
        Ok(r) => r,
        Err(e) => {
            let _ = events
                .send(ListenerEvent::SttUnavailable(e.to_string()))
                .await;
            record_only(audio, trace, cancel).await;
            return Ended::Done;
        }
    };
    // Opened here, not in the actor, and alongside the VAD: while a session opens (a cloud
    // STT reconnecting on a language switch), speech starts and barge-ins still reach the
    // actor, and what the session must hear waits in a bounded backlog.
    let opening = backend.open(params, cancel.clone());
    tokio::pin!(opening);
    let mut session: Option<SttStream> = None;
    let mut stt_off = false;
    let mut backlog: VecDeque<SttInput> = VecDeque::new();
    // A streaming session hears everything; an utterance session only what the VAD keeps.
    let streaming = backend.streaming();
    // A streaming session takes the call's audio at its own rate: the carrier's frames as
    // they are when the rates match (no resampling), else resampled once.
    let stt_rate = backend.sample_rate();
    let mut stt_resampler = match (streaming, stt_rate) {
        (true, r) if r != inbound_rate && r != INTERNAL_RATE => {
            match Resampler::new(inbound_rate, r) {
                Ok(r) => Some(r),
                Err(e) => {
                    let _ = events
                        .send(ListenerEvent::SttUnavailable(e.to_string()))
                        .await;
                    record_only(audio, trace, cancel).await;
                    return Ended::Done;
                }
            }
        }
        _ => None,
    };
    // The backend ends turns (its endpointing): the VAD's end of speech is only noted, and
    // reported with the backend's final.
    let backend_turns = streaming && backend.endpointing();
    // Barge-in waits for the caller's words (not a cough, an "uh-huh" or the bot's own echo)
    // when the backend sends partials and a minimum is set.
    let min_words = if streaming && backend.partials() {
        vad.barge_in_min_words
    } else {
        0
    };
    // Silero confirms the VAD's barge-ins (the STT's own signals are the STT's word) and trims
    // what an utterance STT gets (a streaming one hears everything anyway).
    let silero = models.silero.as_ref();
    let confirm = silero.filter(|p| p.settings().confirm_barge_in && min_words == 0);
    let trim = silero.filter(|p| p.settings().trim_utterances && !streaming);
    // The model decides where the VAD ends turns (not where the backend does).
    let turn_model = models.smart_turn.as_ref().filter(|_| !backend_turns);
    let mut vad = vad;
    if turn_model.is_none() {
        vad.smart_turn = None;
    }
    // The utterance's latest audio: what Silero confirms a barge-in on, and what the
    // end-of-turn model hears.
    let recent_cap = match (turn_model, confirm) {
        (Some(_), _) => smart_turn::features::SAMPLES,
        (None, Some(_)) => CONFIRM_SAMPLES,
        (None, None) => 0,
    };
    let mut recent: VecDeque<i16> = VecDeque::new();
    let mut deciding: Option<(u32, smart_turn::Pending)> = None;
    let mut utterance: Vec<i16> = Vec::new();
    let mut confirming: Option<Pending> = None;
    let mut trims: VecDeque<Trim> = VecDeque::new();
    let mut speech_ended: Option<Instant> = None;
    let mut finalize_due: Option<Instant> = None;
    // The backend already ended a turn within the VAD's current utterance.
    let mut backend_final = false;
    // A partial with words arrived since the last final (its barge-in was sent).
    let mut heard_words = false;
    let mut endpointer = Endpointer::new(vad);
    endpointer.expect_digits(*expect_digits.borrow_and_update());
    // The actor may be gone before the listener; then the flag stays as it is.
    let mut digits_open = true;
    let mut pcm16k = Vec::with_capacity(640);
    let mut vad_events = Vec::new();
    let mut to_stt: Vec<SttInput> = Vec::new();
    let mut keepalive = tokio::time::interval(KEEPALIVE_AFTER);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard_since_tick = false;
    loop {
        to_stt.clear();
        tokio::select! {
            _ = cancel.cancelled() => {
                // Let a cloud session flush and close cleanly (best effort, never waits).
                if let Some(s) = &session {
                    let _ = s.input.try_send(SttInput::Control(SttControl::Close));
                }
                return Ended::Done;
            }
            opened = &mut opening, if session.is_none() && !stt_off => match opened {
                Ok(s) => {
                    for input in backlog.drain(..) {
                        if s.input.send(input).await.is_err() {
                            break;
                        }
                    }
                    session = Some(s);
                }
                Err(e) if can_fall_back => return Ended::Lost(e.to_string()),
                Err(e) => {
                    tracing::error!(error = %e, "STT session failed to open; speech input disabled.");
                    stt_off = true;
                    backlog.clear();
                    if events.send(ListenerEvent::SttUnavailable(e.to_string())).await.is_err() {
                        return Ended::Done;
                    }
                }
            },
            changed = expect_digits.changed(), if digits_open => match changed {
                Ok(()) => endpointer.expect_digits(*expect_digits.borrow_and_update()),
                Err(_) => digits_open = false,
            },
            _ = sleep_until_opt(finalize_due) => {
                finalize_due = None;
                to_stt.push(SttInput::Control(SttControl::Finalize));
            }
            _ = keepalive.tick(), if streaming && session.is_some() => {
                if !std::mem::take(&mut heard_since_tick) {
                    to_stt.push(SttInput::Control(SttControl::KeepAlive));
                }
            }
            frame = audio.recv() => {
                let Some(frame) = frame else { return Ended::Done };
                trace.caller_audio(&frame);
                heard_since_tick = true;
                pcm16k.clear();
                resampler.process(&frame, &mut pcm16k);
                vad_events.clear();
                endpointer.push(&pcm16k, &mut vad_events);
                if streaming {
                    let pcm = if stt_rate == inbound_rate {
                        frame
                    } else if let Some(r) = &mut stt_resampler {
                        let mut out = Vec::with_capacity(frame.len() * 2);
                        r.process(&frame, &mut out);
                        out
                    } else {
                        pcm16k.clone()
                    };
                    if !pcm.is_empty() {
                        to_stt.push(SttInput::Audio(pcm));
                    }
                }
                for ev in vad_events.drain(..) {
                    if recent_cap > 0 {
                        keep_recent(&mut recent, &ev, recent_cap);
                    }
                    if matches!(ev, VadEvent::Ended { .. }) {
                        // Too late to interrupt with this utterance, or to decide its end.
                        confirming = None;
                        deciding = None;
                        if recent_cap > CONFIRM_SAMPLES {
                            // Up to 8 s (256 KiB) for the model: not kept while the caller
                            // listens.
                            recent = VecDeque::new();
                        }
                    }
                    let to_actor = match ev {
                        VadEvent::Started(_) if streaming => {
                            speech_ended = None;
                            finalize_due = None;
                            backend_final = false;
                            Some(ListenerEvent::SpeechStarted)
                        }
                        VadEvent::Audio(_) if streaming => None,
                        VadEvent::Started(a) if trim.is_some() => {
                            utterance = a;
                            Some(ListenerEvent::SpeechStarted)
                        }
                        VadEvent::Started(a) => {
                            to_stt.push(SttInput::Audio(a));
                            Some(ListenerEvent::SpeechStarted)
                        }
                        VadEvent::Audio(a) if trim.is_some() => {
                            utterance.extend_from_slice(&a);
                            None
                        }
                        VadEvent::Audio(a) => {
                            to_stt.push(SttInput::Audio(a));
                            None
                        }
                        VadEvent::Paused(pause) => {
                            if let Some(pool) = turn_model {
                                match pool.ask(recent.make_contiguous()) {
                                    // A newer pause replaces (withdraws) an older question.
                                    Ok(p) => deciding = Some((pause, p)),
                                    Err(Busy) => {
                                        metrics::smart_turn_decision("busy");
                                        endpointer.turn_decided(pause, None);
                                    }
                                }
                            }
                            None
                        }
                        VadEvent::BargeIn if min_words > 0 => None,
                        VadEvent::BargeIn => match confirm {
                            Some(pool) => {
                                let r = recent.make_contiguous();
                                match pool.score(&r[r.len().saturating_sub(CONFIRM_SAMPLES)..]) {
                                    Ok(p) => {
                                        confirming = Some(p);
                                        None
                                    }
                                    Err(Busy) => {
                                        metrics::silero_barge_in("busy");
                                        Some(ListenerEvent::BargeIn)
                                    }
                                }
                            }
                            None => Some(ListenerEvent::BargeIn),
                        },
                        VadEvent::Ended { cut: false } if backend_turns => {
                            if !backend_final {
                                let now = Instant::now();
                                speech_ended = Some(now);
                                finalize_due = Some(now + BACKEND_TURN_GRACE);
                            }
                            None
                        }
                        VadEvent::Ended { cut } => {
                            if cut {
                                tracing::info!("Utterance cut at the maximum length.");
                            }
                            match trim {
                                Some(pool) => {
                                    let audio = std::mem::take(&mut utterance);
                                    match pool.score(&audio) {
                                        Ok(p) => trims.push_back(Trim::Scoring(p, audio)),
                                        Err(Busy) => {
                                            metrics::silero_utterance("busy");
                                            trims.push_back(Trim::Untrimmed(audio));
                                        }
                                    }
                                }
                                None => to_stt.push(SttInput::Control(SttControl::Finalize)),
                            }
                            Some(ListenerEvent::SpeechEnded(Instant::now()))
                        }
                    };
                    if let Some(e) = to_actor {
                        if events.send(e).await.is_err() {
                            return Ended::Done;
                        }
                    }
                }
            }
            (pause, res) = verdict(&mut deciding) => {
                deciding = None;
                let threshold = turn_model.map_or(0.5, |p| p.settings().threshold);
                endpointer.turn_decided(pause, decided(res, threshold));
            }
            res = answer(&mut confirming) => {
                confirming = None;
                if confirmed(res, confirm) && events.send(ListenerEvent::BargeIn).await.is_err() {
                    return Ended::Done;
                }
            }
            done = next_trim(&mut trims) => {
                trims.pop_front();
                let (threshold, margin) = trim.map_or((0.0, 0), |p| {
                    let s = p.settings();
                    (s.threshold, s.trim_margin.as_millis() as usize * 16)
                });
                match trimmed(done, threshold, margin) {
                    Ok(audio) => {
                        to_stt.push(SttInput::Audio(audio));
                        to_stt.push(SttInput::Control(SttControl::Finalize));
                    }
                    Err(audio_ms) => {
                        // Nothing said: no decode, and the actor's turn ends empty.
                        let nothing = Transcript {
                            text: String::new(),
                            confidence: None,
                            audio_ms,
                            decode_ms: 0,
                            queue_ms: 0,
                        };
                        if events.send(ListenerEvent::Transcript(Box::new(nothing))).await.is_err() {
                            return Ended::Done;
                        }
                    }
                }
            }
            ev = next_event(&mut session) => {
                let out = match ev {
                    Some(SttEvent::Final(t)) if backend_turns => {
                        heard_words = false;
                        // The turn's end is the VAD's, when it saw one first.
                        finalize_due = None;
                        backend_final = true;
                        let at = speech_ended.take().unwrap_or_else(Instant::now);
                        if events.send(ListenerEvent::SpeechEnded(at)).await.is_err() {
                            return Ended::Done;
                        }
                        ListenerEvent::Transcript(Box::new(guarded(t)))
                    }
                    Some(SttEvent::Final(t)) => {
                        heard_words = false;
                        ListenerEvent::Transcript(Box::new(guarded(t)))
                    }
                    // The first words of a turn are the surest sign the caller talks (not
                    // noise, not the bot's echo): a barge-in while the bot speaks.
                    Some(SttEvent::Partial(t)) => {
                        endpointer.heard_digits(digits::ends_in_digit(&t.text));
                        if heard_words || t.text.split_whitespace().count() < min_words.max(1) {
                            continue;
                        }
                        heard_words = true;
                        ListenerEvent::BargeIn
                    }
                    // The backend's own voice activity: a barge-in while the bot speaks.
                    Some(SttEvent::SpeechStarted) if min_words > 0 => continue,
                    Some(SttEvent::SpeechStarted) => ListenerEvent::BargeIn,
                    Some(SttEvent::Error(e)) => ListenerEvent::SttFailed(e),
                    None if can_fall_back => return Ended::Lost("STT session ended".into()),
                    None => {
                        // Speech input is off from here; the VAD still drives barge-in.
                        session = None;
                        stt_off = true;
                        ListenerEvent::SttUnavailable("STT session ended".into())
                    }
                };
                if events.send(out).await.is_err() {
                    return Ended::Done;
                }
            }
        }
        match &session {
            Some(s) => {
                for input in to_stt.drain(..) {
                    if s.input.send(input).await.is_err() {
                        break; // the session's end arrives as its events closing
                    }
                }
            }
            None if !stt_off => {
                backlog.extend(to_stt.drain(..));
                while backlog.len() > BACKLOG_INPUTS {
                    backlog.pop_front();
                }
            }
            None => {}
        }
    }
}

/// The transcript as the bot may see it: repeat loops trimmed, invented text emptied.
fn guarded(mut t: Transcript) -> Transcript {
    let words = t.text.split_whitespace().count();
    match guard::check(&t.text, t.audio_ms) {
        guard::Verdict::Keep => {}
        guard::Verdict::Trimmed(text) => {
            tracing::info!(
                words,
                kept = text.split_whitespace().count(),
                "Recognised text had a repeat loop; trimmed it."
            );
            metrics::stt_guarded("repeat");
            t.text = text;
        }
        guard::Verdict::Dropped => {
            tracing::info!(
                words,
                audio_ms = t.audio_ms,
                "Recognised text is longer than its audio could hold; dropped it."
            );
            metrics::stt_guarded("rate");
            t.text.clear();
        }
    }
    t
}

/// Keeps the utterance's last [`CONFIRM_SAMPLES`] for a barge-in candidate.
fn keep_recent(recent: &mut VecDeque<i16>, ev: &VadEvent, cap: usize) {
    let audio = match ev {
        VadEvent::Started(a) => {
            recent.clear();
            a
        }
        VadEvent::Audio(a) => a,
        _ => return,
    };
    recent.extend(audio.iter().copied());
    let excess = recent.len().saturating_sub(cap);
    recent.drain(..excess);
}

/// The end-of-turn model's answer on a pause, once it comes, with the pause's number.
async fn verdict(
    d: &mut Option<(u32, smart_turn::Pending)>,
) -> (u32, Result<Verdict, SmartTurnError>) {
    match d {
        Some((pause, p)) => (*pause, p.await),
        None => std::future::pending().await,
    }
}

/// The verdict as the endpointer takes it: complete, incomplete, or none (the fixed
/// hangover) when the model failed.
fn decided(res: Result<Verdict, SmartTurnError>, threshold: f32) -> Option<bool> {
    match res {
        Ok(v) => {
            let complete = v.probability >= threshold;
            tracing::debug!(
                probability = v.probability,
                cpu_ms = v.cpu.as_millis() as u64,
                complete,
                "smart-turn decided the pause."
            );
            metrics::smart_turn_decision(if complete { "complete" } else { "incomplete" });
            metrics::smart_turn_cpu(v.cpu);
            Some(complete)
        }
        Err(e) => {
            tracing::warn!(error = %e, "smart-turn failed on a pause; the fixed hangover applies.");
            metrics::smart_turn_decision("failed");
            None
        }
    }
}

/// Silero's answer on a barge-in candidate, once it comes.
async fn answer(p: &mut Option<Pending>) -> Result<Vec<f32>, SileroError> {
    match p {
        Some(p) => p.await,
        None => std::future::pending().await,
    }
}

/// Whether the candidate Silero scored interrupts the bot; a failed run keeps earshot's
/// decision (it does).
fn confirmed(res: Result<Vec<f32>, SileroError>, pool: Option<&Arc<SileroPool>>) -> bool {
    let threshold = pool.map_or(0.0, |p| p.settings().threshold);
    match res {
        Ok(probs) if silero::confirms(&probs, threshold) => {
            metrics::silero_barge_in("confirmed");
            true
        }
        Ok(probs) => {
            let max = probs.iter().copied().fold(0.0f32, f32::max);
            tracing::info!(
                max,
                "Silero heard no speech in the barge-in; playback goes on."
            );
            metrics::silero_barge_in("rejected");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "Silero failed on a barge-in; the VAD's decision stands.");
            metrics::silero_barge_in("busy");
            true
        }
    }
}

/// What became of the oldest utterance waiting for its trim.
enum TrimDone {
    /// Silero's window probabilities (or its failure) and the utterance.
    Scored(Result<Vec<f32>, SileroError>, Vec<i16>),
    /// Not scored (the pool was busy).
    Untrimmed(Vec<i16>),
}

/// The oldest utterance waiting for its trim, once it is ready; never, without one.
async fn next_trim(q: &mut VecDeque<Trim>) -> TrimDone {
    match q.front_mut() {
        None => std::future::pending().await,
        Some(Trim::Untrimmed(a)) => TrimDone::Untrimmed(std::mem::take(a)),
        Some(Trim::Scoring(p, a)) => {
            let res = p.await;
            TrimDone::Scored(res, std::mem::take(a))
        }
    }
}

/// The audio an utterance STT should decode: the speech Silero found plus `margin` samples
/// each side, all of it when Silero could not say; `Err(audio_ms)` when it heard no speech
/// at all.
fn trimmed(done: TrimDone, threshold: f32, margin: usize) -> Result<Vec<i16>, u64> {
    let (probs, audio) = match done {
        TrimDone::Untrimmed(a) => return Ok(a),
        TrimDone::Scored(Err(e), a) => {
            tracing::warn!(error = %e, "Silero failed on an utterance; sent as the VAD cut it.");
            metrics::silero_utterance("busy");
            return Ok(a);
        }
        TrimDone::Scored(Ok(p), a) => (p, a),
    };
    let audio_ms = audio.len() as u64 / 16;
    let Some(span) = silero::speech_span(&probs, threshold, margin, audio.len()) else {
        tracing::info!(
            audio_ms,
            "Silero heard no speech in the utterance; dropped it."
        );
        metrics::silero_utterance("dropped");
        metrics::stt_guarded("silero");
        return Err(audio_ms);
    };
    if span.len() == audio.len() {
        metrics::silero_utterance("kept");
        return Ok(audio);
    }
    tracing::debug!(
        audio_ms,
        kept_ms = span.len() as u64 / 16,
        "Silero trimmed the utterance."
    );
    metrics::silero_utterance("trimmed");
    Ok(audio[span].to_vec())
}

/// The next event of the session; never, without one.
async fn next_event(session: &mut Option<SttStream>) -> Option<SttEvent> {
    match session {
        Some(s) => s.events.recv().await,
        None => std::future::pending().await,
    }
}

/// Without speech input the caller's audio still reaches the recording.
async fn record_only(
    audio: &mut mpsc::Receiver<Vec<i16>>,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stt::SttSettings;

    fn vad() -> EndpointerConfig {
        EndpointerConfig {
            threshold: 0.5,
            min_speech: Duration::from_millis(160),
            barge_in_min_speech: Duration::from_millis(240),
            barge_in_min_words: 0,
            end_of_utterance: Duration::from_millis(500),
            digits_end_of_utterance: Duration::from_millis(500),
            pre_roll: Duration::from_millis(300),
            max_utterance: Duration::from_secs(30),
            smart_turn: None,
        }
    }

    fn fake_stt(toml: &str) -> SttSource {
        let stt = SttSettings::from_toml("stt", toml).unwrap();
        SttSource {
            stt: crate::stt::build(&stt).unwrap(),
            fallback: None,
            params: SttParams {
                call_id: "CA1".into(),
                language: None,
            },
        }
    }

    /// Feeds `pcm` (8 kHz) in real time, 20 ms frames, then holds the sender open.
    fn feed(pcm: Vec<i16>, audio_tx: mpsc::Sender<Vec<i16>>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            for frame in pcm.chunks(160) {
                audio_tx.send(frame.to_vec()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            std::future::pending::<()>().await;
        })
    }

    /// With Silero on, a hum is refused as a barge-in and dropped as an utterance before the
    /// STT hears it (the utterance STT's one scripted transcript goes to the speech after
    /// it), and the speech after it interrupts.
    #[cfg(feature = "sim")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silero_refuses_a_hums_barge_in_and_keeps_it_from_the_stt() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
        let raw = crate::audio::silero::SileroConfig {
            enabled: true,
            model_path: root.join("silero_vad.onnx").display().to_string(),
            library_path: root.join("libonnxruntime.so.1.32.0").display().to_string(),
            ..Default::default()
        };
        let settings = raw
            .validate("audio.silero", &mut Default::default())
            .unwrap();
        let pool = SileroPool::load(&settings).expect("scripts/install-onnx.sh");
        let hum = crate::sim::speech_set::hum(1_500, 8_000, 3_000.0, 100);
        let speech = crate::stt::conformance::speech("Hello, can you hear me?", 8_000).await;
        let pcm = [hum, vec![0; 8_000], speech, vec![0; 8_000]].concat();
        let (audio_tx, audio_rx) = mpsc::channel(LISTENER_AUDIO_CAPACITY);
        let (ev_tx, mut events) = mpsc::channel(LISTENER_EVENT_CAPACITY);
        let cancel = CancellationToken::new();
        tokio::spawn(run(
            audio_rx,
            8_000,
            vad(),
            watch::channel(false).1,
            Models {
                silero: Some(pool),
                smart_turn: None,
            },
            fake_stt("provider = \"fake\"\ntranscripts = [\"the speech\"]\nlatency_ms = 5"),
            CallTrace::new(false, None),
            ev_tx,
            cancel.clone(),
        ));
        let feeder = feed(pcm, audio_tx);
        let mut seen: Vec<String> = Vec::new();
        while seen.iter().filter(|e| e.starts_with("Transcript")).count() < 2 {
            let ev = tokio::time::timeout(Duration::from_secs(20), events.recv())
                .await
                .expect("an event in time")
                .expect("listener running");
            seen.push(match ev {
                ListenerEvent::Transcript(t) => format!("Transcript({})", t.text),
                other => format!("{other:?}")
                    .split('(')
                    .next()
                    .unwrap_or("")
                    .to_string(),
            });
        }
        assert_eq!(
            seen,
            [
                "SpeechStarted",
                "SpeechEnded",
                "Transcript()",
                "SpeechStarted",
                "BargeIn",
                "SpeechEnded",
                "Transcript(the speech)",
            ]
        );
        cancel.cancel();
        feeder.abort();
    }

    /// A session that takes seconds to open (a cloud STT reconnecting on a language switch)
    /// does not hold up speech starts and barge-ins, and still gets the utterance after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_session_open_holds_up_neither_barge_in_nor_the_utterance() {
        let source = fake_stt(
            "provider = \"fake\"\nopen_latency_ms = 3000\ntranscripts = [\"later\"]\nlatency_ms = 5",
        );
        let (audio_tx, audio_rx) = mpsc::channel(LISTENER_AUDIO_CAPACITY);
        let (ev_tx, mut events) = mpsc::channel(LISTENER_EVENT_CAPACITY);
        let cancel = CancellationToken::new();
        let t0 = Instant::now();
        tokio::spawn(run(
            audio_rx,
            8_000,
            vad(),
            watch::channel(false).1,
            Models::default(),
            source,
            CallTrace::new(false, None),
            ev_tx,
            cancel.clone(),
        ));
        let speech = crate::stt::conformance::speech("Hello, can you hear me?", 8_000).await;
        let feeder = tokio::spawn(async move {
            for frame in speech
                .chunks(160)
                .chain(std::iter::repeat_n(&[0i16; 160][..], 60))
            {
                audio_tx.send(frame.to_vec()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            audio_tx
        });
        let mut seen = Vec::new();
        let transcript = loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("an event in time")
                .expect("listener running");
            match ev {
                ListenerEvent::Transcript(t) => break t,
                other => seen.push((format!("{other:?}"), t0.elapsed())),
            }
        };
        let at = |name: &str| {
            seen.iter()
                .find(|(e, _)| e.starts_with(name))
                .map(|(_, t)| *t)
        };
        let barge = at("BargeIn").expect("a barge-in");
        assert!(at("SpeechStarted").is_some(), "{seen:?}");
        assert!(
            barge < Duration::from_secs(2),
            "barge-in waited for the open: {seen:?}"
        );
        assert_eq!(transcript.text, "later", "the backlog reached the session");
        assert!(t0.elapsed() >= Duration::from_secs(3));
        cancel.cancel();
        drop(feeder);
    }
}
