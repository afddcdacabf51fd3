//! The call's mouth: prompts (bot messages through TTS, or recorded clips) → resampling to the
//! provider's rate → fixed 20 ms frames paced a bounded distance ahead of playback → a mark
//! after each message. Filler audio loops while nothing else is queued and is cut (with a
//! provider clear) the moment a real message's first frame is ready. It owns everything
//! queued for output, so a clear drops it all in one place and in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::state::Prompt;
use crate::audio::pacer::Pacer;
use crate::audio::resample::Resampler;
use crate::audio::{AudioFrame, FRAME_MS};
use crate::telephony::OutboundCommand;
use crate::tts::{TextToSpeech, TtsError, TtsRequest, TtsStream};

/// Actor → speaker commands. Both speaker channels carry boxed messages: a tokio channel
/// holds 32 slots from its creation, and these are rare, so an idle call keeps 8 B a slot.
pub const SPEAKER_COMMAND_CAPACITY: usize = 16;
/// Speaker → actor events.
pub const SPEAKER_EVENT_CAPACITY: usize = 16;
/// Frames held ready per message before synthesis is paused (~2 s).
const MAX_READY_FRAMES: usize = 100;

/// What the speaker is asked to do.
pub enum SpeakerCommand {
    /// Play `prompt` as message `id`; `received` is when the bot's reply reached the call.
    Say {
        /// Message id.
        id: u64,
        /// What to play.
        prompt: Prompt,
        /// For latency.
        received: Instant,
    },
    /// Drop everything queued and clear the provider's buffer.
    Clear,
    /// Loop the filler while idle (`true`) or stop it (`false`).
    Filler(bool),
    /// Synthesize later messages with this TTS (a language switch).
    UseTts(Arc<dyn TextToSpeech>, Option<String>),
}

/// What the speaker reports.
#[derive(Debug)]
pub enum SpeakerEvent {
    /// The first frame of message `id` went out `latency` after the reply arrived.
    FirstAudio {
        /// Message id.
        id: u64,
        /// Reply received → first frame sent.
        latency: Duration,
        /// Of which: synthesis start → first TTS chunk.
        tts: Duration,
        /// The TTS backend that spoke it (`clip`: recorded audio).
        backend: &'static str,
    },
    /// Message `id` could not be spoken.
    Failed {
        /// Message id.
        id: u64,
        /// Why.
        error: String,
    },
}

/// The mark name for message `id`.
pub fn mark_name(id: u64) -> String {
    format!("vx-{id}")
}

/// Parses a mark name made by [`mark_name`].
pub fn parse_mark(name: &str) -> Option<u64> {
    name.strip_prefix("vx-")?.parse().ok()
}

/// The `backend` of recorded audio in [`SpeakerEvent::FirstAudio`].
pub const CLIP: &str = "clip";

/// Samples per chunk read from a clip (100 ms at 16 kHz).
const CLIP_CHUNK: usize = 1_600;

enum Source {
    Tts(TtsStream),
    Clip { clip: Arc<AudioFrame>, pos: usize },
}

struct Current {
    id: u64,
    /// Filler: no mark, no events, cut when a message is ready.
    filler: bool,
    received: Instant,
    started: Instant,
    first_chunk: Option<Instant>,
    /// TTS backend name, or `clip`.
    backend: &'static str,
    source: Source,
    cancel: CancellationToken,
    /// Rate of the source (the call's resampler is rebuilt only when it changes).
    rate: u32,
    carry: Vec<i16>,
    ready: VecDeque<Vec<i16>>,
    tts_done: bool,
    first_sent: bool,
    /// The call's resampler has been set up for this source.
    prepared: bool,
}

impl Drop for Current {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Speaker configuration.
pub struct SpeakerConfig {
    /// Shared TTS backend.
    pub tts: Arc<dyn TextToSpeech>,
    /// Provider's outbound sample rate.
    pub out_rate: u32,
    /// How far ahead of playback to send.
    pub lead: Duration,
    /// Filler clip, if filler is configured.
    pub filler: Option<Arc<AudioFrame>>,
    /// Played instead of a message no TTS backend could start (`[call] fallback_audio`).
    pub fallback: Option<Arc<AudioFrame>>,
    /// The call's language at start (passed on to the TTS).
    pub language: Option<String>,
}

/// Runs until cancelled or the command channel closes.
pub async fn run(
    cfg: SpeakerConfig,
    mut commands: mpsc::Receiver<Box<SpeakerCommand>>,
    out: mpsc::Sender<OutboundCommand>,
    events: mpsc::Sender<Box<SpeakerEvent>>,
    cancel: CancellationToken,
) {
    let frame_len = (cfg.out_rate as u64 * FRAME_MS / 1000) as usize;
    let mut tts = cfg.tts.clone();
    let mut language = cfg.language.clone();
    // Messages waiting behind another carry no arrival time: their latency counts from when
    // their synthesis starts, not from when the reply arrived.
    let mut queue: VecDeque<(u64, Prompt, Option<Instant>)> = VecDeque::new();
    let mut current: Option<Current> = None;
    let mut pacer = Pacer::new(cfg.lead);
    let mut filler_on = false;
    let mut resampler: Option<(u32, Resampler)> = None;
    // Reused within a message; freed when the speaker goes idle (idle calls stay small).
    let mut resampled = Vec::new();
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    // Filler frames may be buffered at the provider: a clear cuts them before a message.
    let mut filler_sent = false;
    loop {
        if current.is_none() {
            if let Some((id, prompt, received)) = queue.pop_front() {
                let received = received.unwrap_or_else(Instant::now);
                let started = match start(&*tts, language.as_deref(), id, prompt, received, &cancel)
                    .await
                {
                    Err(error) => match cfg.fallback.clone() {
                        Some(clip) => {
                            tracing::warn!(msg_id = id, error = %error, "TTS failed; playing the fallback audio.");
                            start(&*tts, None, id, Prompt::Clip(clip), received, &cancel).await
                        }
                        None => Err(error),
                    },
                    ok => ok,
                };
                match started {
                    Ok(c) => current = Some(c),
                    Err(error) => {
                        let _ = events
                            .send(Box::new(SpeakerEvent::Failed { id, error }))
                            .await;
                        continue;
                    }
                }
            } else if let Some(clip) = cfg.filler.as_ref().filter(|_| filler_on) {
                let prompt = Prompt::Clip(clip.clone());
                if let Ok(mut c) = start(
                    &*tts,
                    language.as_deref(),
                    0,
                    prompt,
                    Instant::now(),
                    &cancel,
                )
                .await
                {
                    c.filler = true;
                    current = Some(c);
                }
            }
        }
        if let Some(c) = current.as_ref().filter(|c| !c.prepared) {
            // One resampler per call, reset between messages and rebuilt only when the
            // source rate changes (a language switch, a clip at another rate).
            if resampler.as_ref().is_some_and(|(rate, _)| *rate == c.rate) {
                if let Some((_, r)) = resampler.as_mut() {
                    r.reset();
                }
            } else {
                match Resampler::new(c.rate, cfg.out_rate) {
                    Ok(r) => resampler = Some((c.rate, r)),
                    Err(e) => {
                        let id = c.id;
                        current = None;
                        let _ = events
                            .send(Box::new(SpeakerEvent::Failed {
                                id,
                                error: e.to_string(),
                            }))
                            .await;
                        continue;
                    }
                }
            }
            if let Some(c) = current.as_mut() {
                c.prepared = true;
            }
        }
        let now = Instant::now();
        let due = current
            .as_ref()
            .filter(|c| !c.ready.is_empty())
            .map(|_| pacer.next_due(now));
        // One timer for the task, moved only when the next frame's time changes.
        if due != armed {
            if let Some(d) = due {
                timer.as_mut().reset(d);
            }
            armed = due;
        }
        let want_chunk = current
            .as_ref()
            .is_some_and(|c| !c.tts_done && c.ready.len() < MAX_READY_FRAMES);
        tokio::select! {
            _ = cancel.cancelled() => return,
            cmd = commands.recv() => match cmd.map(|c| *c) {
                None => return,
                Some(SpeakerCommand::Say { id, prompt, received }) => {
                    filler_on = false;
                    if current.as_ref().is_some_and(|c| c.filler) {
                        current = None;
                    }
                    let idle = current.is_none() && queue.is_empty();
                    queue.push_back((id, prompt, idle.then_some(received)));
                }
                Some(SpeakerCommand::Clear) => {
                    current = None;
                    queue.clear();
                    filler_on = false;
                    filler_sent = false;
                    if !clear_provider(&out, &mut pacer).await {
                        return;
                    }
                }
                Some(SpeakerCommand::Filler(on)) => {
                    filler_on = on && cfg.filler.is_some();
                    if !on && current.as_ref().is_some_and(|c| c.filler) {
                        current = None;
                        if std::mem::take(&mut filler_sent) && !clear_provider(&out, &mut pacer).await {
                            return;
                        }
                    }
                }
                Some(SpeakerCommand::UseTts(t, l)) => (tts, language) = (t, l),
            },
            chunk = next_chunk(&mut current), if want_chunk => {
                let Some(c) = current.as_mut() else { continue };
                match chunk {
                    Some(Ok(pcm)) => {
                        c.first_chunk.get_or_insert_with(Instant::now);
                        resampled.clear();
                        if let Some((_, r)) = resampler.as_mut() {
                            r.process(&pcm, &mut resampled);
                        }
                        push_frames(c, &resampled, frame_len, false);
                    }
                    Some(Err(e)) if c.first_chunk.is_none() && !c.filler && cfg.fallback.is_some() => {
                        // Nothing of the message was heard: the recorded fallback says it.
                        tracing::warn!(msg_id = c.id, error = %e, "TTS failed; playing the fallback audio.");
                        if let Some(clip) = cfg.fallback.clone() {
                            c.rate = clip.sample_rate;
                            c.backend = CLIP;
                            c.source = Source::Clip { clip, pos: 0 };
                            c.prepared = false;
                        }
                    }
                    Some(Err(e)) => {
                        let id = c.id;
                        current = None;
                        let _ = events.send(Box::new(SpeakerEvent::Failed { id, error: e.to_string() })).await;
                        continue;
                    }
                    None => {
                        resampled.clear();
                        if let Some((_, r)) = resampler.as_mut() {
                            r.flush(&mut resampled);
                        }
                        push_frames(c, &resampled, frame_len, true);
                        c.tts_done = true;
                    }
                }
            }
            _ = &mut timer, if armed.is_some() => {
                armed = None;
                let Some(c) = current.as_mut() else { continue };
                let Some(frame) = c.ready.pop_front() else { continue };
                let cut_filler = !c.filler && !c.first_sent && std::mem::take(&mut filler_sent);
                if cut_filler && !clear_provider(&out, &mut pacer).await {
                    return;
                }
                if out.send(OutboundCommand::Audio(frame)).await.is_err() {
                    return;
                }
                let sent_at = Instant::now();
                if c.first_sent && pacer.playout_end().is_some_and(|end| end < sent_at) {
                    crate::telemetry::metrics::outbound_frame_late();
                }
                pacer.on_sent(sent_at);
                filler_sent |= c.filler;
                if !c.first_sent && !c.filler {
                    let tts = c.first_chunk.unwrap_or(sent_at) - c.started;
                    let ev = SpeakerEvent::FirstAudio { id: c.id, latency: sent_at - c.received, tts, backend: c.backend };
                    let _ = events.send(Box::new(ev)).await;
                }
                c.first_sent = true;
            }
        }
        if current
            .as_ref()
            .is_some_and(|c| c.tts_done && c.ready.is_empty())
        {
            if let Some(c) = current.take().filter(|c| !c.filler) {
                if out
                    .send(OutboundCommand::Mark(mark_name(c.id)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if queue.is_empty() {
                resampled = Vec::new();
            }
        }
    }
}

/// Tells the provider to drop its buffered audio; pacing restarts from an empty buffer.
/// False when the provider link is gone.
async fn clear_provider(out: &mpsc::Sender<OutboundCommand>, pacer: &mut Pacer) -> bool {
    pacer.reset();
    out.send(OutboundCommand::Clear).await.is_ok()
}

async fn start(
    tts: &dyn TextToSpeech,
    language: Option<&str>,
    id: u64,
    prompt: Prompt,
    received: Instant,
    cancel: &CancellationToken,
) -> Result<Current, String> {
    let child = cancel.child_token();
    let started = Instant::now();
    let (source, rate, backend) = match prompt {
        Prompt::Text { text, ssml } => {
            let req = TtsRequest {
                text,
                ssml,
                voice: None,
                language: language.map(str::to_string),
            };
            let stream = tts
                .synthesize(&req, child.clone())
                .await
                .map_err(|e| e.to_string())?;
            (Source::Tts(stream), tts.sample_rate(), tts.name())
        }
        Prompt::Clip(clip) => {
            let rate = clip.sample_rate;
            (Source::Clip { clip, pos: 0 }, rate, CLIP)
        }
    };
    Ok(Current {
        id,
        filler: false,
        received,
        started,
        first_chunk: None,
        backend,
        source,
        cancel: child,
        rate,
        carry: Vec::new(),
        ready: VecDeque::new(),
        tts_done: false,
        first_sent: false,
        prepared: false,
    })
}

async fn next_chunk(current: &mut Option<Current>) -> Option<Result<Vec<i16>, TtsError>> {
    match current.as_mut().map(|c| &mut c.source) {
        Some(Source::Tts(stream)) => stream.recv().await,
        Some(Source::Clip { clip, pos }) => {
            let end = (*pos + CLIP_CHUNK).min(clip.samples.len());
            let chunk = clip.samples[*pos..end].to_vec();
            *pos = end;
            (!chunk.is_empty()).then_some(Ok(chunk))
        }
        None => std::future::pending().await,
    }
}

/// Cuts audio into whole frames; at the end the last partial frame is padded with silence.
fn push_frames(c: &mut Current, pcm: &[i16], frame_len: usize, last: bool) {
    c.carry.extend_from_slice(pcm);
    let whole = c.carry.len() / frame_len * frame_len;
    for f in c.carry[..whole].chunks(frame_len) {
        c.ready.push_back(f.to_vec());
    }
    c.carry.drain(..whole);
    if last && !c.carry.is_empty() {
        let mut f = std::mem::take(&mut c.carry);
        f.resize(frame_len, 0);
        c.ready.push_back(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_names_round_trip() {
        assert_eq!(parse_mark(&mark_name(42)), Some(42));
        assert_eq!(parse_mark("other"), None);
    }
}
