//! The per-call actor. It alone owns the call's state; it `select!`s over provider events,
//! listener events, bot events, speaker events, the turn logic's next deadline and the call's
//! cancellation, feeds them to [`TurnState`] and carries out the resulting actions. Opening
//! and closing the bot session around it is `call::run_call`'s job.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::digits;
use super::end_reason::CallEndReason;
use super::listener::{self, ListenerEvent, LISTENER_AUDIO_CAPACITY, LISTENER_EVENT_CAPACITY};
use super::record::CallTrace;
use super::speaker::{
    self, SpeakerCommand, SpeakerConfig, SpeakerEvent, SPEAKER_COMMAND_CAPACITY,
    SPEAKER_EVENT_CAPACITY,
};
use super::state::{CallAction, CallInput, LanguageChoice, Prompt, TurnConfig, TurnState};
use super::{CallDeps, LanguageEngines};
use crate::audio::vad::EndpointerConfig;
use crate::bot::{BotError, BotReply, Conversation, Playback, TurnInput, BOT_REPLY_CAPACITY};
use crate::stt::SttParams;
use crate::telephony::control::CallControl;
use crate::telephony::ws::{AudioRoute, LinkEvent, MediaLink};
use crate::telephony::{CallStart, InboundEvent};

/// Actor → bot worker requests (one in flight; the turn logic never queues more than one).
const BOT_REQUEST_CAPACITY: usize = 4;
/// Bot worker → actor events.
const BOT_EVENT_CAPACITY: usize = 16;

/// Everything the actor starts with.
pub struct SessionInit {
    /// The provider's start message.
    pub start: CallStart,
    /// Which provider (its name).
    pub provider: &'static str,
    /// The provider's call control, where configured.
    pub control: Option<Arc<dyn CallControl>>,
    /// Media and digits received before start.
    pub early: Vec<InboundEvent>,
    /// The socket.
    pub link: MediaLink,
    /// The call's task tracker.
    pub tracker: TaskTracker,
    /// The call's token.
    pub cancel: CancellationToken,
    /// Bot messages delivered by async callbacks.
    pub callbacks: mpsc::Receiver<Box<BotReply>>,
    /// Metrics, the call record and the recording.
    pub trace: CallTrace,
}

/// Boxed turn: 16 B slots instead of 88 (see `BotEvent`).
enum BotRequest {
    Open,
    Turn(Box<TurnInput>),
}

/// Boxed reply: each channel holds its first 32 slots from creation, and an unboxed
/// `BotReply` (144 B) would cost every idle call 4.6 KiB here.
enum BotEvent {
    Reply(Box<BotReply>),
    Done(Result<(), BotError>),
}

/// Timing of the turn in flight, for the latency log line.
struct TurnTiming {
    speech_ended: Option<Instant>,
    decode_ms: Option<u64>,
}

/// What the actor reports when the call ends.
#[derive(Debug, Clone, Copy)]
pub struct CallSummary {
    /// Why it ended.
    pub reason: CallEndReason,
    /// Turns sent to the bot.
    pub turns: u64,
    /// Caller frames dropped because recognition was behind.
    pub dropped_frames: u64,
}

impl CallSummary {
    /// The summary of a call whose actor died.
    pub fn internal() -> Self {
        Self {
            reason: CallEndReason::Internal,
            turns: 0,
            dropped_frames: 0,
        }
    }
}

/// Runs the call until it ends. The caller owns the bot session and closes it afterwards.
pub async fn run(
    init: SessionInit,
    conversation: Arc<dyn Conversation>,
    deps: &CallDeps,
) -> CallSummary {
    let session = conversation.session();
    let SessionInit {
        start,
        provider,
        control,
        early,
        mut link,
        tracker,
        cancel,
        mut callbacks,
        trace,
    } = init;
    let s = &deps.settings;
    let engines = deps.engines_for(session.language.as_deref());

    let (bot_tx, mut bot_events) = spawn_bot_worker(deps, conversation.clone(), &tracker, &cancel);
    let listener_cancel = cancel.child_token();
    let (expect_digits, _) = watch::channel(false);
    let (audio_tx, mut listener_events) = spawn_listener(
        &start.call_id,
        start.inbound_rate,
        deps,
        engines,
        expect_digits.subscribe(),
        &trace,
        &tracker,
        &listener_cancel,
    );
    link.audio.attach(Some(audio_tx.clone())).await;
    let out = trace.tap_outbound(link.commands.clone(), &tracker, &cancel);
    let (spk_tx, mut speaker_events) = spawn_speaker(
        &start,
        deps,
        engines,
        &session.language,
        out,
        &tracker,
        &cancel,
    );

    let fallback = match &deps.fallback_clip {
        Some(clip) => Prompt::Clip(clip.clone()),
        None => Prompt::text(s.bot.get().fallback_text()),
    };
    let turns = TurnState::new(
        TurnConfig {
            barge_in: s.audio.barge_in,
            dtmf: s.dtmf.clone(),
            fallback,
            async_replies: deps.bot.is_async(),
            turn_deadline: s.bot.get().turn_deadline(),
            filler_delay: s.call.filler.as_ref().map(|f| f.delay),
            no_input: s.call.no_input.clone(),
            max_bot_failures: s.call.max_bot_failures,
            bot_failure_text: s.call.bot_failure_text.clone(),
            max_duration: s.call.max_duration,
            max_duration_text: s.call.max_duration_text.clone(),
            stt_outage_text: s.call.stt_outage_text.clone(),
            languages: s
                .languages
                .iter()
                .map(|l| LanguageChoice {
                    code: l.code.clone(),
                    dtmf: l.dtmf.clone(),
                    keywords: l.keywords.clone(),
                })
                .collect(),
            language: session.language.clone(),
            expect_greeting: deps.bot.greets(),
        },
        Instant::now(),
    );
    // From here on the session counts as opened: SESSION_CLOSURE is owed even if the call
    // ends before ON_CONNECT is answered.
    let _ = bot_tx.send(BotRequest::Open).await;
    trace.opened();

    let mut ctx = Actor {
        turns,
        bot_tx,
        spk_tx,
        audio_tx,
        audio_route: link.audio.clone(),
        call_id: start.call_id.clone(),
        provider,
        control,
        inbound_rate: start.inbound_rate,
        tracker: tracker.clone(),
        cancel: cancel.clone(),
        listener_cancel,
        new_listener: None,
        ended: None,
        deliveries: Vec::new(),
        conversation: conversation.clone(),
        timing: TurnTiming {
            speech_ended: None,
            decode_ms: None,
        },
        n_turns: 0,
        reply_received: None,
        trace: trace.clone(),
        expect_digits,
        digit_prompt_words: s.audio.digit_prompt_words.clone(),
    };
    for ev in early {
        ctx.on_inbound(ev);
    }

    let mut listening = true;
    // One timer for the actor, moved only when the turn logic's next deadline changes.
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    let reason = loop {
        let deadline = ctx.turns.next_deadline();
        if deadline != armed {
            if let Some(d) = deadline {
                timer.as_mut().reset(d);
            }
            armed = deadline;
        }
        let input = tokio::select! {
            // Cancellation first: when it fires, helpers closing their channels is expected.
            biased;
            _ = cancel.cancelled() => break CallEndReason::Shutdown,
            ev = link.events.recv() => match ev.unwrap_or(LinkEvent::Closed) {
                LinkEvent::Event(InboundEvent::Stop) => {
                    tracing::info!("Caller hung up.");
                    break CallEndReason::CallerHangup;
                }
                LinkEvent::Event(ev) => { ctx.on_inbound_input(ev) }
                LinkEvent::Closed => {
                    tracing::info!("Media socket closed.");
                    break CallEndReason::SocketClosed;
                }
                LinkEvent::Error(e) => {
                    tracing::error!(error = %e, "Provider protocol error; ending the call.");
                    break CallEndReason::ProtocolError;
                }
            },
            ev = listener_events.recv(), if listening => match ev {
                Some(ev) => ctx.on_listener(ev),
                None => {
                    tracing::error!("Speech input stopped unexpectedly; digits still work.");
                    listening = false;
                    None
                }
            },
            Some(r) = callbacks.recv() => ctx.on_bot(BotEvent::Reply(r)),
            ev = bot_events.recv() => match ev {
                Some(ev) => ctx.on_bot(ev),
                None => {
                    tracing::error!("Bot worker stopped unexpectedly.");
                    break CallEndReason::Internal;
                }
            },
            ev = speaker_events.recv() => match ev {
                Some(ev) => ctx.on_speaker(*ev),
                None => {
                    tracing::error!("Speaker stopped unexpectedly.");
                    break CallEndReason::Internal;
                }
            },
            _ = &mut timer, if armed.is_some() => {
                armed = None;
                Some(CallInput::Tick)
            }
        };
        if let Some(input) = input {
            let offered = match &input {
                CallInput::BotReply(r) => r.delivery.clone(),
                _ => None,
            };
            let actions = ctx.turns.on(input, Instant::now());
            if let Some(d) = offered {
                ctx.skipped_unless_spoken(d, &actions);
            }
            if ctx.act(actions, deps).await.is_err() {
                break CallEndReason::Internal;
            }
        }
        if let Some((tx, rx)) = ctx.new_listener.take() {
            listening = true;
            link.audio.attach(Some(tx.clone())).await;
            ctx.audio_tx = tx;
            listener_events = rx;
        }
        if let Some(reason) = ctx.ended {
            break reason;
        }
    };

    CallSummary {
        reason,
        turns: ctx.n_turns,
        dropped_frames: link.audio.dropped(),
    }
}

/// Bot worker: one request at a time, replies forwarded as they arrive.
fn spawn_bot_worker(
    deps: &CallDeps,
    conversation: Arc<dyn Conversation>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> (mpsc::Sender<BotRequest>, mpsc::Receiver<BotEvent>) {
    let (bot_tx, bot_rx) = mpsc::channel(BOT_REQUEST_CAPACITY);
    let (ev_tx, events) = mpsc::channel(BOT_EVENT_CAPACITY);
    let worker = bot_worker(
        conversation,
        deps.settings.bot.get().turn_deadline(),
        bot_rx,
        ev_tx,
        cancel.child_token(),
    );
    tracker.spawn(worker.in_current_span());
    (bot_tx, events)
}

/// Listener: caller audio → recording → VAD → STT, in `engines`' language. The listener
/// opens its STT session itself, so this returns at once; a session that fails to open is
/// reported as `SttUnavailable` (digits still work).
#[allow(clippy::too_many_arguments)]
fn spawn_listener(
    call_id: &str,
    inbound_rate: u32,
    deps: &CallDeps,
    engines: &LanguageEngines,
    expect_digits: watch::Receiver<bool>,
    trace: &CallTrace,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> ListenerEnds {
    let (ev_tx, events) = mpsc::channel(LISTENER_EVENT_CAPACITY);
    let source = listener::SttSource {
        stt: engines.stt.clone(),
        fallback: deps.stt_fallback.clone(),
        params: SttParams {
            call_id: call_id.to_string(),
            language: engines.stt_language.clone(),
        },
    };
    let a = &deps.settings.audio;
    let vad = EndpointerConfig {
        threshold: a.vad_threshold,
        min_speech: a.min_speech,
        barge_in_min_speech: a.barge_in_min_speech,
        barge_in_min_words: a.barge_in_min_words,
        end_of_utterance: a.end_of_utterance,
        digits_end_of_utterance: a.digits_end_of_utterance,
        pre_roll: a.pre_roll,
        max_utterance: a.max_utterance,
        smart_turn: deps.smart_turn.as_ref().map(|p| p.settings().timing()),
    };
    let (audio_tx, audio_rx) = mpsc::channel(LISTENER_AUDIO_CAPACITY);
    let task = listener::run(
        audio_rx,
        inbound_rate,
        vad,
        expect_digits,
        listener::Models {
            silero: deps.silero.clone(),
            smart_turn: deps.smart_turn.clone(),
        },
        source,
        trace.clone(),
        ev_tx,
        cancel.child_token(),
    );
    tracker.spawn(task.in_current_span());
    (audio_tx, events)
}

/// Speaker: TTS → paced frames → provider.
fn spawn_speaker(
    start: &CallStart,
    deps: &CallDeps,
    engines: &LanguageEngines,
    language: &Option<String>,
    out: mpsc::Sender<crate::telephony::OutboundCommand>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> (
    mpsc::Sender<Box<SpeakerCommand>>,
    mpsc::Receiver<Box<SpeakerEvent>>,
) {
    let (cmd_tx, cmd_rx) = mpsc::channel(SPEAKER_COMMAND_CAPACITY);
    let (ev_tx, events) = mpsc::channel(SPEAKER_EVENT_CAPACITY);
    let cfg = SpeakerConfig {
        tts: engines.tts.clone(),
        out_rate: start.outbound_rate,
        lead: deps.settings.audio.playback_lead,
        filler: deps.filler.clone(),
        fallback: deps.fallback_clip.clone(),
        language: language.clone(),
    };
    let task = speaker::run(cfg, cmd_rx, out, ev_tx, cancel.child_token());
    tracker.spawn(task.in_current_span());
    (cmd_tx, events)
}

/// The actor's ends of a listener: audio in, events out.
type ListenerEnds = (mpsc::Sender<Vec<i16>>, mpsc::Receiver<ListenerEvent>);

struct Actor {
    turns: TurnState,
    bot_tx: mpsc::Sender<BotRequest>,
    spk_tx: mpsc::Sender<Box<SpeakerCommand>>,
    /// The current listener's audio input, for frames that reached the actor as events
    /// (before the reader had the listener attached).
    audio_tx: mpsc::Sender<Vec<i16>>,
    /// The socket reader's audio path (its drop counter).
    audio_route: AudioRoute,
    timing: TurnTiming,
    n_turns: u64,
    reply_received: Option<Instant>,
    call_id: String,
    provider: &'static str,
    control: Option<Arc<dyn CallControl>>,
    inbound_rate: u32,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// Token of the current listener (replaced on a language switch).
    listener_cancel: CancellationToken,
    /// A listener opened by a language switch, for the loop to install.
    new_listener: Option<ListenerEnds>,
    /// Set when the call must end now.
    ended: Option<CallEndReason>,
    /// Messages queued or playing whose platform tracks delivery: (message id, delivery id).
    deliveries: Vec<(u64, String)>,
    /// The call's bot conversation (told when such messages have played).
    conversation: Arc<dyn Conversation>,
    trace: CallTrace,
    /// The bot's last message asked for a number: the listener waits longer in pauses.
    expect_digits: watch::Sender<bool>,
    /// `[audio] digit_prompt_words`.
    digit_prompt_words: Vec<String>,
}

impl Actor {
    /// Early events replayed after start.
    fn on_inbound(&mut self, ev: InboundEvent) {
        if let Some(input) = self.on_inbound_input(ev) {
            // Early digits: no actions can be pending yet except collection.
            let _ = self.turns.on(input, Instant::now());
        }
    }

    fn on_inbound_input(&mut self, ev: InboundEvent) -> Option<CallInput> {
        match ev {
            InboundEvent::Audio(pcm) => {
                self.audio_route.forward(&self.audio_tx, pcm);
                None
            }
            InboundEvent::Dtmf(d) => {
                let key = d.to_string();
                tracing::info!(digit = self.trace.shown(&key), "Key pressed.");
                Some(CallInput::Digit(d))
            }
            InboundEvent::Mark(name) => {
                let id = speaker::parse_mark(&name)?;
                self.acknowledge(id);
                Some(CallInput::Played(id))
            }
            InboundEvent::Start(_) => {
                tracing::warn!("Second start message ignored.");
                None
            }
            InboundEvent::Stop => None,
        }
    }

    /// Tells the conversation, off the actor, that message `id` was heard (if it asked).
    fn acknowledge(&mut self, id: u64) {
        let Some(at) = self.deliveries.iter().position(|(m, _)| *m == id) else {
            return;
        };
        let (_, delivery) = self.deliveries.swap_remove(at);
        self.notify(delivery, Playback::Played);
    }

    /// A bot message with a delivery id that the turn logic did not speak (nothing
    /// speakable, or the call was ending or interrupted) is reported as skipped.
    fn skipped_unless_spoken(&mut self, delivery: String, actions: &[CallAction]) {
        let spoken = actions
            .iter()
            .any(|a| matches!(a, CallAction::Speak { delivery: Some(d), .. } if *d == delivery));
        if !spoken {
            self.notify(delivery, Playback::Skipped);
        }
    }

    /// Tells the conversation, off the actor, where a delivery-tracked message got to.
    fn notify(&self, delivery: String, stage: Playback) {
        let conversation = self.conversation.clone();
        self.tracker.spawn(
            async move {
                if let Err(e) = conversation.playback(&delivery, stage).await {
                    tracing::warn!(error = %e, code = e.code(), stage = ?stage,
                        "Delivery acknowledgement failed.");
                }
            }
            .in_current_span(),
        );
    }

    fn on_listener(&mut self, ev: ListenerEvent) -> Option<CallInput> {
        match ev {
            ListenerEvent::SpeechStarted => Some(CallInput::SpeechStarted),
            ListenerEvent::BargeIn => Some(CallInput::BargeIn),
            ListenerEvent::SpeechEnded(at) => {
                self.timing.speech_ended = Some(at);
                Some(CallInput::SpeechEnded)
            }
            ListenerEvent::Transcript(t) => {
                self.trace.transcript(&t);
                tracing::info!(
                    text = self.trace.shown(&t.text),
                    confidence = t.confidence.unwrap_or(0.0),
                    audio_ms = t.audio_ms,
                    decode_ms = t.decode_ms,
                    "Caller said."
                );
                self.timing.decode_ms = Some(t.decode_ms);
                Some(CallInput::Utterance {
                    text: t.text,
                    confidence: t.confidence,
                })
            }
            ListenerEvent::SttFailed(e) => {
                tracing::warn!(error = %e, "Speech recognition failed for one utterance.");
                Some(CallInput::UtteranceLost)
            }
            ListenerEvent::SttUnavailable(e) => {
                tracing::error!(error = %e, "Speech input off for this call; digits still work.");
                Some(CallInput::SpeechInputLost)
            }
        }
    }

    fn on_bot(&mut self, ev: BotEvent) -> Option<CallInput> {
        match ev {
            BotEvent::Reply(r) => {
                self.trace.bot_reply(&r);
                tracing::info!(text = self.trace.shown(r.text.as_deref().unwrap_or("")),
                    options = r.options.len(), action = ?r.action, "Bot said.");
                self.reply_received = Some(Instant::now());
                if let Some(text) = r.text.as_deref() {
                    let digits = digits::asks_for_digits(text, &self.digit_prompt_words);
                    if self.expect_digits.send_replace(digits) != digits {
                        tracing::info!(expect_digits = digits, "Endpointing for digits changed.");
                    }
                }
                Some(CallInput::BotReply(*r))
            }
            BotEvent::Done(Ok(())) => {
                self.trace.bot_done(None);
                Some(CallInput::BotDone { ok: true })
            }
            BotEvent::Done(Err(e)) => {
                self.trace.bot_done(Some(e.code()));
                tracing::error!(error = %e, code = e.code(), "Bot request failed; speaking the fallback.");
                Some(CallInput::BotDone { ok: false })
            }
        }
    }

    fn on_speaker(&mut self, ev: SpeakerEvent) -> Option<CallInput> {
        match ev {
            SpeakerEvent::FirstAudio {
                id,
                latency,
                tts,
                backend,
            } => {
                self.trace.first_audio(id, tts, backend);
                tracing::info!(
                    msg_id = id,
                    tts = backend,
                    reply_to_audio_ms = latency.as_secs_f64() * 1e3,
                    tts_first_chunk_ms = tts.as_secs_f64() * 1e3,
                    overhead_ms = (latency.saturating_sub(tts)).as_secs_f64() * 1e3,
                    "Bot audio started."
                );
                None
            }
            SpeakerEvent::Failed { id, error } => {
                tracing::error!(msg_id = id, error = %error, "Could not speak a bot message.");
                Some(CallInput::Played(id))
            }
        }
    }

    async fn act(&mut self, actions: Vec<CallAction>, deps: &CallDeps) -> Result<(), ()> {
        let result = self.act_all(actions, deps).await;
        // A reply's arrival time belongs to the messages it produced, not to prompts the
        // call says later by itself (reprompts, goodbyes).
        self.reply_received = None;
        result
    }

    async fn act_all(&mut self, actions: Vec<CallAction>, deps: &CallDeps) -> Result<(), ()> {
        for a in actions {
            match a {
                CallAction::SendTurn(turn) => {
                    self.n_turns += 1;
                    let now = Instant::now();
                    let since_speech = self
                        .timing
                        .speech_ended
                        .take()
                        .filter(|_| turn.mode == crate::bot::InputMode::Speech);
                    let decode_ms = self.timing.decode_ms.take().unwrap_or(0);
                    let eos_ms = since_speech.map(|t| (now - t).as_secs_f64() * 1e3);
                    self.trace.turn_sent(&turn, since_speech);
                    tracing::info!(
                        text = self.trace.shown(&turn.text),
                        mode = turn.mode.as_str(),
                        end_of_speech_to_request_ms = eos_ms.unwrap_or(-1.0),
                        overhead_ms = eos_ms.map(|m| m - decode_ms as f64).unwrap_or(-1.0),
                        "Turn sent to bot."
                    );
                    self.bot_tx
                        .send(BotRequest::Turn(Box::new(turn)))
                        .await
                        .map_err(drop)?;
                }
                CallAction::Speak {
                    id,
                    prompt,
                    delivery,
                } => {
                    self.trace.speak(id);
                    if let Some(d) = delivery {
                        self.notify(d.clone(), Playback::Queued);
                        self.deliveries.push((id, d));
                    }
                    let received = self.reply_received.unwrap_or_else(Instant::now);
                    self.spk_tx
                        .send(Box::new(SpeakerCommand::Say {
                            id,
                            prompt,
                            received,
                        }))
                        .await
                        .map_err(drop)?;
                }
                CallAction::StartFiller | CallAction::StopFiller => {
                    let on = matches!(a, CallAction::StartFiller);
                    tracing::debug!(on, "Filler.");
                    self.spk_tx
                        .send(Box::new(SpeakerCommand::Filler(on)))
                        .await
                        .map_err(drop)?;
                }
                CallAction::SwitchLanguage(code) => self.switch_language(&code, deps).await?,
                CallAction::End { reason, transfer } => {
                    self.ended = Some(self.end(reason, transfer).await);
                    return Ok(());
                }
                CallAction::StopPlayback => {
                    self.trace.barge_in();
                    tracing::info!("Barge-in: playback cleared.");
                    for (_, d) in std::mem::take(&mut self.deliveries) {
                        self.notify(d, Playback::Interrupted);
                    }
                    self.spk_tx
                        .send(Box::new(SpeakerCommand::Clear))
                        .await
                        .map_err(drop)?;
                }
            }
        }
        Ok(())
    }

    /// Restarts recognition with the language's STT and switches the speaker's voice.
    async fn switch_language(&mut self, code: &str, deps: &CallDeps) -> Result<(), ()> {
        let engines = deps.engines_for(Some(code));
        tracing::info!(
            language = code,
            tts = engines.tts.name(),
            "Language switched."
        );
        self.listener_cancel.cancel();
        self.listener_cancel = self.cancel.child_token();
        let ends = spawn_listener(
            &self.call_id,
            self.inbound_rate,
            deps,
            engines,
            self.expect_digits.subscribe(),
            &self.trace,
            &self.tracker,
            &self.listener_cancel,
        );
        self.new_listener = Some(ends);
        self.spk_tx
            .send(Box::new(SpeakerCommand::UseTts(
                engines.tts.clone(),
                Some(code.to_string()),
            )))
            .await
            .map_err(drop)
    }

    /// Carries out the end the turn logic decided on: through the provider's API when one
    /// is configured, otherwise by closing the stream. Returns the reason recorded.
    async fn end(&self, reason: CallEndReason, transfer: Option<String>) -> CallEndReason {
        let control = self.control.as_ref();
        match (transfer, control) {
            (Some(target), Some(c)) => match c.transfer(&self.call_id, &target).await {
                Ok(()) => {
                    tracing::info!(target = %target, "Call transferred.");
                    reason
                }
                Err(e) => {
                    tracing::error!(error = %e, code = e.code(), "Transfer failed; closing the stream.");
                    CallEndReason::TransferFailed
                }
            },
            (Some(_), None) => {
                tracing::error!(
                    provider = self.provider,
                    "Transfer requested but no provider API credentials are configured; closing the stream."
                );
                CallEndReason::TransferFailed
            }
            (None, Some(c)) => {
                match c.hang_up(&self.call_id).await {
                    Ok(()) => tracing::info!(reason = reason.code(), "Call hung up."),
                    Err(e) => tracing::error!(error = %e, code = e.code(),
                        "Hang-up through the provider API failed; closing the stream."),
                }
                reason
            }
            (None, None) => {
                tracing::info!(reason = reason.code(), "Hanging up by closing the stream.");
                reason
            }
        }
    }
}

async fn bot_worker(
    conversation: Arc<dyn Conversation>,
    turn_deadline: std::time::Duration,
    mut requests: mpsc::Receiver<BotRequest>,
    events: mpsc::Sender<BotEvent>,
    cancel: CancellationToken,
) {
    loop {
        let req = tokio::select! {
            _ = cancel.cancelled() => return,
            r = requests.recv() => match r { Some(r) => r, None => return },
        };
        let (reply_tx, mut reply_rx) = mpsc::channel(BOT_REPLY_CAPACITY);
        let call = async {
            match &req {
                BotRequest::Open => conversation.open(&reply_tx).await,
                BotRequest::Turn(t) => conversation.send_turn(t, &reply_tx).await,
            }
        };
        tokio::pin!(call);
        // The turn deadline bounds the wait for the first reply; once the bot has spoken,
        // the rest of the turn (polls) is bounded by the client's poll limit.
        let first_reply_by = Instant::now() + turn_deadline;
        let mut replied = false;
        let res = loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                res = &mut call => break res,
                Some(r) = reply_rx.recv() => {
                    replied = true;
                    if events.send(BotEvent::Reply(r)).await.is_err() { return; }
                }
                _ = tokio::time::sleep_until(first_reply_by), if !replied => {
                    break Err(BotError::Timeout(format!(
                        "no reply within the turn deadline of {turn_deadline:?}"
                    )));
                }
            }
        };
        while let Ok(r) = reply_rx.try_recv() {
            if events.send(BotEvent::Reply(r)).await.is_err() {
                return;
            }
        }
        if events.send(BotEvent::Done(res)).await.is_err() {
            return;
        }
    }
}
