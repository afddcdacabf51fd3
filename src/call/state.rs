//! The call's turn-taking as pure logic: no I/O and no `.await`. It takes [`CallInput`]s and
//! returns [`CallAction`]s for the session actor to carry out; timers are deadlines the actor
//! sleeps until. Rules: one bot request in flight, turns sent in order; replies spoken in
//! order; speech or a key during playback interrupts it (barge-in); digits are collected until
//! the terminator, the maximum count or the inter-digit timeout; a spoken menu is answered by
//! a digit or a title; silence after the bot spoke reprompts, then hangs up; filler plays
//! while a reply is late; repeated bot failures, the call time limit and the bot's own
//! hang-up or transfer end the call once the audio before them has played.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::end_reason::CallEndReason;
use crate::audio::AudioFrame;
use crate::bot::{BotAction, BotReply, InputMode, MenuOption, TurnInput};
use crate::config::{DtmfSettings, NoInputSettings, Reprompt};

/// How long an ending call may keep playing its last words before it ends regardless.
const ENDING_GRACE: Duration = Duration::from_secs(30);

/// Knobs of the turn logic.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// Caller speech or keys interrupt playback.
    pub barge_in: bool,
    /// Digit collection.
    pub dtmf: DtmfSettings,
    /// Spoken when the bot fails a turn.
    pub fallback: Prompt,
    /// Replies come as callbacks: a turn is answered when they arrive, not when the request
    /// returns, and `turn_deadline` is enforced here.
    pub async_replies: bool,
    /// Longest wait for an async turn's first reply.
    pub turn_deadline: Duration,
    /// Filler starts after this long without a reply.
    pub filler_delay: Option<Duration>,
    /// No-input handling.
    pub no_input: Option<NoInputSettings>,
    /// Consecutive failed turns that end the call (0: never).
    pub max_bot_failures: u32,
    /// Said before that hang-up.
    pub bot_failure_text: String,
    /// Call time limit.
    pub max_duration: Option<Duration>,
    /// Said at the limit.
    pub max_duration_text: String,
    /// Said once when speech input is lost for the rest of the call (`None`: nothing).
    pub stt_outage_text: Option<String>,
    /// Languages the caller can choose during the call.
    pub languages: Vec<LanguageChoice>,
    /// The call's language at start.
    pub language: Option<String>,
    /// The bot speaks first (the session opening is answered with a greeting).
    pub expect_greeting: bool,
}

/// How the caller picks a language mid-call.
#[derive(Debug, Clone)]
pub struct LanguageChoice {
    /// Language code.
    pub code: String,
    /// Keys that choose it.
    pub dtmf: Option<String>,
    /// Words that choose it (lower case).
    pub keywords: Vec<String>,
}

/// Something to play.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Synthesized speech.
    Text {
        /// Plain text.
        text: String,
        /// SSML form, for SSML-capable TTS.
        ssml: Option<String>,
    },
    /// Recorded audio.
    Clip(Arc<AudioFrame>),
}

impl Prompt {
    /// Plain text, no SSML.
    pub fn text(text: impl Into<String>) -> Self {
        Prompt::Text {
            text: text.into(),
            ssml: None,
        }
    }
}

impl PartialEq for Prompt {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Prompt::Text { text: a, ssml: x }, Prompt::Text { text: b, ssml: y }) => {
                a == b && x == y
            }
            (Prompt::Clip(a), Prompt::Clip(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Something that happened to the call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallInput {
    /// A bot message.
    BotReply(BotReply),
    /// The request in flight finished (`ok == false`: it failed; the fallback is spoken).
    BotDone {
        /// Whether the bot answered.
        ok: bool,
    },
    /// The caller started speaking (VAD).
    SpeechStarted,
    /// The caller has spoken long enough to interrupt.
    BargeIn,
    /// The utterance ended (VAD); its transcript is on the way (it may wait for a decoder).
    SpeechEnded,
    /// A recognised utterance.
    Utterance {
        /// Words.
        text: String,
        /// STT confidence.
        confidence: Option<f32>,
    },
    /// An utterance could not be recognised.
    UtteranceLost,
    /// Speech recognition is gone for the rest of the call (keys still work).
    SpeechInputLost,
    /// A keypad digit.
    Digit(char),
    /// The deadline returned by [`TurnState::next_deadline`] passed.
    Tick,
    /// The provider played message `id` to the end.
    Played(u64),
}

/// What the actor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum CallAction {
    /// Send this turn to the bot (nothing else is in flight).
    SendTurn(TurnInput),
    /// Play this prompt as message `id` (it stops filler when its audio starts).
    Speak {
        /// Message id (marks and logs).
        id: u64,
        /// What to play.
        prompt: Prompt,
        /// The platform's id of the bot message, acknowledged once it has played.
        delivery: Option<String>,
    },
    /// Drop queued audio and tell the provider to clear its buffer.
    StopPlayback,
    /// Loop filler audio while nothing else plays.
    StartFiller,
    /// Stop the filler.
    StopFiller,
    /// Use this language's STT and TTS from now on.
    SwitchLanguage(String),
    /// End the call: everything before it has played.
    End {
        /// Why.
        reason: CallEndReason,
        /// Transfer the caller here instead of hanging up.
        transfer: Option<String>,
    },
}

/// Turn-taking state of one call.
#[derive(Debug)]
pub struct TurnState {
    cfg: TurnConfig,
    started: Instant,
    /// Time of the input being handled.
    now: Instant,
    /// A bot request is in flight (starts true: the session is being opened).
    bot_busy: bool,
    pending: VecDeque<TurnInput>,
    /// Messages handed to playback and not yet played.
    playing: BTreeSet<u64>,
    /// The text of each spoken message in `playing` (for the bot, when one is cut off).
    texts: BTreeMap<u64, String>,
    /// The message the caller's last barge-in cut off, for their next turn.
    interrupted: Option<String>,
    next_id: u64,
    /// The caller interrupted the reply in flight: drop its remaining messages.
    reply_interrupted: bool,
    /// The current utterance began while the bot was talking and has not barged in.
    speech_over_playback: bool,
    digits: String,
    digit_deadline: Option<Instant>,
    /// When the turn waiting for its first reply was sent.
    awaiting: Option<Instant>,
    /// When the utterance waiting for its transcript ended (STT may be queued).
    recognizing: Option<Instant>,
    filler_on: bool,
    caller_speaking: bool,
    no_input_deadline: Option<Instant>,
    no_input_count: u32,
    failures: u32,
    /// Options of the last spoken menu.
    menu: Vec<MenuOption>,
    language: Option<String>,
    /// The call is ending this way once playback is done (or the grace runs out).
    ending: Option<(CallEndReason, Option<String>, Instant)>,
    ended: bool,
}

impl TurnState {
    /// State at call start, with the session opening in flight.
    pub fn new(cfg: TurnConfig, now: Instant) -> Self {
        Self {
            language: cfg.language.clone(),
            awaiting: cfg.expect_greeting.then_some(now),
            cfg,
            started: now,
            now,
            bot_busy: true,
            pending: VecDeque::new(),
            playing: BTreeSet::new(),
            texts: BTreeMap::new(),
            interrupted: None,
            next_id: 1,
            reply_interrupted: false,
            speech_over_playback: false,
            digits: String::new(),
            digit_deadline: None,
            recognizing: None,
            filler_on: false,
            caller_speaking: false,
            no_input_deadline: None,
            no_input_count: 0,
            failures: 0,
            menu: Vec::new(),
            ending: None,
            ended: false,
        }
    }

    /// True while bot audio is queued or playing.
    pub fn is_playing(&self) -> bool {
        !self.playing.is_empty()
    }

    /// True while a bot request is in flight.
    pub fn bot_busy(&self) -> bool {
        self.bot_busy
    }

    /// The call's language now.
    pub fn language(&self) -> Option<&str> {
        self.language.as_deref()
    }

    /// The next time the actor must deliver [`CallInput::Tick`].
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        let awaiting = self.awaiting.filter(|_| self.ending.is_none());
        // Filler covers a wait for the bot and a wait for a decoder alike.
        let waiting = awaiting.or(self.recognizing.filter(|_| self.ending.is_none()));
        let filler = self
            .cfg
            .filler_delay
            .filter(|_| !self.filler_on && !self.is_playing())
            .and_then(|d| Some(waiting? + d));
        let async_deadline = awaiting
            .filter(|_| self.cfg.async_replies && !self.bot_busy)
            .map(|t| t + self.cfg.turn_deadline);
        let call_limit = self
            .cfg
            .max_duration
            .filter(|_| self.ending.is_none())
            .map(|d| self.started + d);
        [
            self.digit_deadline,
            filler,
            async_deadline,
            self.no_input_deadline,
            call_limit,
            self.ending.as_ref().map(|e| e.2),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Applies one input and returns the actions, in order.
    pub fn on(&mut self, input: CallInput, now: Instant) -> Vec<CallAction> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.now = now;
        match input {
            CallInput::BotReply(r) => self.on_reply(r, now, &mut out),
            CallInput::BotDone { ok } => {
                self.bot_busy = false;
                if ok {
                    self.failures = 0;
                    // Sync: the request returning is the answer, with or without messages.
                    if !self.cfg.async_replies && self.awaiting.take().is_some() {
                        self.stop_filler(&mut out);
                    }
                } else {
                    self.awaiting = None;
                    self.fail(now, &mut out);
                }
                self.send_next(&mut out);
            }
            CallInput::SpeechStarted => {
                self.caller_speaking = true;
                self.speech_over_playback = self.is_playing();
            }
            CallInput::BargeIn => {
                if self.is_playing() && self.cfg.barge_in && self.ending.is_none() {
                    self.interrupt(&mut out);
                    self.speech_over_playback = false;
                }
            }
            CallInput::SpeechEnded => {
                // Speech over playback that did not interrupt is ignored: nothing to cover.
                if !self.speech_over_playback && self.ending.is_none() {
                    self.recognizing = Some(now);
                }
            }
            CallInput::Utterance { text, confidence } => {
                self.caller_speaking = false;
                let was_recognizing = self.recognizing.take().is_some();
                let over_playback = std::mem::take(&mut self.speech_over_playback);
                if !text.trim().is_empty() && !over_playback && self.ending.is_none() {
                    self.no_input_count = 0;
                    self.caller_turn(
                        TurnInput {
                            text,
                            mode: InputMode::Speech,
                            confidence,
                            language: None,
                            interrupted: None,
                        },
                        &mut out,
                    );
                } else if was_recognizing && self.awaiting.is_none() {
                    self.stop_filler(&mut out);
                }
            }
            CallInput::UtteranceLost => {
                self.caller_speaking = false;
                self.speech_over_playback = false;
                if self.recognizing.take().is_some() && self.awaiting.is_none() {
                    self.stop_filler(&mut out);
                }
            }
            CallInput::SpeechInputLost => {
                self.caller_speaking = false;
                self.speech_over_playback = false;
                if self.recognizing.take().is_some() && self.awaiting.is_none() {
                    self.stop_filler(&mut out);
                }
                // Never a silent call: the caller learns why nobody answers their words.
                if let Some(text) = self
                    .cfg
                    .stt_outage_text
                    .take()
                    .filter(|_| self.ending.is_none())
                {
                    self.speak(Prompt::text(text), &mut out);
                }
            }
            CallInput::Digit(d) => self.on_digit(d, now, &mut out),
            CallInput::Tick => self.on_tick(now, &mut out),
            CallInput::Played(id) => {
                self.playing.remove(&id);
                self.texts.remove(&id);
                if self.playing.is_empty() {
                    // The prompt ended while the caller was talking: what they say counts.
                    self.speech_over_playback = false;
                }
            }
        }
        self.settle(now, &mut out);
        out
    }

    fn on_reply(&mut self, r: BotReply, now: Instant, out: &mut Vec<CallAction>) {
        if self.ending.is_some() || self.reply_interrupted {
            return;
        }
        self.awaiting = None;
        self.failures = 0;
        match r.text {
            Some(text) => {
                // The speaker stops the filler when this message's audio starts.
                self.filler_on = false;
                self.speak_delivery(Prompt::Text { text, ssml: r.ssml }, r.delivery, out);
            }
            None => self.stop_filler(out),
        }
        if !r.options.is_empty() {
            self.menu = r.options;
        }
        match r.action {
            Some(BotAction::Hangup) => self.begin_end(CallEndReason::BotHangup, None, now),
            Some(BotAction::Transfer { target }) => {
                self.begin_end(CallEndReason::BotTransfer, Some(target), now)
            }
            None => {}
        }
    }

    fn on_digit(&mut self, d: char, now: Instant, out: &mut Vec<CallAction>) {
        if self.ending.is_some() {
            return;
        }
        self.no_input_count = 0;
        if self.is_playing() && self.cfg.barge_in {
            self.interrupt(out);
        }
        if Some(d) == self.cfg.dtmf.terminator {
            self.flush_digits(out);
            return;
        }
        self.digits.push(d);
        // A menu of up to nine options is answered by one key, without waiting.
        let menu_pick = self.digits.len() == 1
            && d.to_digit(10)
                .is_some_and(|n| n >= 1 && (n as usize) <= self.menu.len() && self.menu.len() <= 9);
        if menu_pick || self.digits.len() >= self.cfg.dtmf.max_digits {
            self.flush_digits(out);
        } else {
            self.digit_deadline = Some(now + self.cfg.dtmf.inter_digit_timeout);
        }
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<CallAction>) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.digit_deadline) {
            self.flush_digits(out);
        }
        if let Some((reason, transfer, grace)) = self.ending.clone() {
            if grace <= now {
                self.finish(reason, transfer, out);
            }
            return;
        }
        if self
            .cfg
            .max_duration
            .is_some_and(|d| self.started + d <= now)
        {
            if self.is_playing() {
                self.playing.clear();
                out.push(CallAction::StopPlayback);
            }
            let text = self.cfg.max_duration_text.clone();
            self.speak(Prompt::text(text), out);
            self.begin_end(CallEndReason::MaxDuration, None, now);
            return;
        }
        if let Some(since) = self.awaiting {
            if self.cfg.async_replies && !self.bot_busy && since + self.cfg.turn_deadline <= now {
                self.awaiting = None;
                self.fail(now, out);
                self.send_next(out);
            } else {
                self.filler_after(since, now, out);
            }
        } else if let Some(since) = self.recognizing {
            self.filler_after(since, now, out);
        }
        if due(self.no_input_deadline) {
            self.no_input_deadline = None;
            self.on_no_input(now, out);
        }
    }

    fn on_no_input(&mut self, now: Instant, out: &mut Vec<CallAction>) {
        let Some(cfg) = self.cfg.no_input.clone() else {
            return;
        };
        self.no_input_count += 1;
        if self.no_input_count > cfg.max_reprompts {
            self.speak(Prompt::text(cfg.goodbye_text), out);
            self.begin_end(CallEndReason::NoInput, None, now);
            return;
        }
        match cfg.reprompt {
            Reprompt::Local(text) => self.speak(Prompt::text(text), out),
            Reprompt::Bot(text) => self.enqueue(
                TurnInput {
                    text,
                    mode: InputMode::NoInput,
                    confidence: None,
                    language: None,
                    interrupted: None,
                },
                out,
            ),
        }
    }

    /// A failed turn: the fallback, or after too many in a row a goodbye and hang-up.
    fn fail(&mut self, now: Instant, out: &mut Vec<CallAction>) {
        self.failures += 1;
        self.filler_on = false;
        if self.cfg.max_bot_failures > 0 && self.failures >= self.cfg.max_bot_failures {
            let text = self.cfg.bot_failure_text.clone();
            self.speak(Prompt::text(text), out);
            self.begin_end(CallEndReason::BotFailure, None, now);
        } else if !self.reply_interrupted {
            let fallback = self.cfg.fallback.clone();
            self.speak(fallback, out);
        } else {
            out.push(CallAction::StopFiller);
        }
    }

    fn begin_end(&mut self, reason: CallEndReason, transfer: Option<String>, now: Instant) {
        if self.ending.is_none() {
            self.ending = Some((reason, transfer, now + ENDING_GRACE));
            self.pending.clear();
            self.digits.clear();
            self.digit_deadline = None;
            self.no_input_deadline = None;
        }
    }

    fn finish(
        &mut self,
        reason: CallEndReason,
        transfer: Option<String>,
        out: &mut Vec<CallAction>,
    ) {
        self.ended = true;
        out.push(CallAction::End { reason, transfer });
    }

    /// Bookkeeping after every input: end once the last words played; arm no-input when the
    /// call has gone quiet with nothing pending on either side.
    fn settle(&mut self, now: Instant, out: &mut Vec<CallAction>) {
        if let Some((reason, transfer, _)) = self.ending.clone() {
            if !self.is_playing() && !self.ended {
                self.finish(reason, transfer, out);
            }
            return;
        }
        let idle = self.cfg.no_input.is_some()
            && !self.is_playing()
            && !self.bot_busy
            && self.pending.is_empty()
            && self.awaiting.is_none()
            && !self.caller_speaking
            && self.digits.is_empty();
        if !idle {
            self.no_input_deadline = None;
        } else if self.no_input_deadline.is_none() {
            let timeout = self
                .cfg
                .no_input
                .as_ref()
                .map_or(ENDING_GRACE, |n| n.timeout);
            self.no_input_deadline = Some(now + timeout);
        }
    }

    fn speak(&mut self, prompt: Prompt, out: &mut Vec<CallAction>) {
        self.speak_delivery(prompt, None, out);
    }

    fn speak_delivery(
        &mut self,
        prompt: Prompt,
        delivery: Option<String>,
        out: &mut Vec<CallAction>,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        self.playing.insert(id);
        if let Prompt::Text { text, .. } = &prompt {
            self.texts.insert(id, text.clone());
        }
        out.push(CallAction::Speak {
            id,
            prompt,
            delivery,
        });
    }

    /// Starts the filler once `filler_delay` has passed since `since`, when nothing plays.
    fn filler_after(&mut self, since: Instant, now: Instant, out: &mut Vec<CallAction>) {
        if !self.filler_on
            && !self.is_playing()
            && self.cfg.filler_delay.is_some_and(|d| since + d <= now)
        {
            self.filler_on = true;
            out.push(CallAction::StartFiller);
        }
    }

    fn stop_filler(&mut self, out: &mut Vec<CallAction>) {
        if std::mem::take(&mut self.filler_on) {
            out.push(CallAction::StopFiller);
        }
    }

    fn interrupt(&mut self, out: &mut Vec<CallAction>) {
        // The first message still playing is the one being heard when the caller cut in.
        self.interrupted = self
            .playing
            .first()
            .and_then(|id| self.texts.get(id).cloned());
        self.texts.clear();
        // Marks of cleared messages may still arrive: they are not in `playing` any more,
        // so they do not count as played. The clear stops filler too.
        self.playing.clear();
        self.filler_on = false;
        self.reply_interrupted = self.bot_busy;
        out.push(CallAction::StopPlayback);
    }

    fn flush_digits(&mut self, out: &mut Vec<CallAction>) {
        self.digit_deadline = None;
        if !self.digits.is_empty() {
            let text = std::mem::take(&mut self.digits);
            self.caller_turn(
                TurnInput {
                    text,
                    mode: InputMode::Dtmf,
                    confidence: None,
                    language: None,
                    interrupted: None,
                },
                out,
            );
        }
    }

    /// A turn from the caller: a language choice switches first; a menu answer becomes the
    /// option's payload.
    fn caller_turn(&mut self, mut turn: TurnInput, out: &mut Vec<CallAction>) {
        turn.interrupted = self.interrupted.take();
        if let Some(code) = self.language_choice(&turn) {
            if self.language.as_deref() != Some(code.as_str()) {
                self.language = Some(code.clone());
                out.push(CallAction::SwitchLanguage(code));
            }
        }
        let menu = std::mem::take(&mut self.menu);
        if let Some(option) = pick(&menu, &turn) {
            turn.text = option.payload.clone();
        }
        self.enqueue(turn, out);
    }

    fn language_choice(&self, turn: &TurnInput) -> Option<String> {
        let words = words(&turn.text);
        self.cfg
            .languages
            .iter()
            .find(|l| match turn.mode {
                InputMode::Dtmf => l.dtmf.as_deref() == Some(turn.text.as_str()),
                _ => l.keywords.iter().any(|k| contains(&words, &self::words(k))),
            })
            .map(|l| l.code.clone())
    }

    fn enqueue(&mut self, turn: TurnInput, out: &mut Vec<CallAction>) {
        self.pending.push_back(turn);
        self.send_next(out);
    }

    fn send_next(&mut self, out: &mut Vec<CallAction>) {
        if self.bot_busy || self.ending.is_some() {
            return;
        }
        if let Some(mut turn) = self.pending.pop_front() {
            self.bot_busy = true;
            self.reply_interrupted = false;
            self.awaiting = Some(self.awaiting.unwrap_or(self.now));
            turn.language = self.language.clone();
            out.push(CallAction::SendTurn(turn));
        }
    }
}

/// The menu option a turn chooses: its number keyed in, or its title (or number) spoken.
fn pick<'a>(menu: &'a [MenuOption], turn: &TurnInput) -> Option<&'a MenuOption> {
    if menu.is_empty() {
        return None;
    }
    let by_number = |n: usize| n.checked_sub(1).and_then(|i| menu.get(i));
    match turn.mode {
        InputMode::Dtmf => turn.text.parse().ok().and_then(by_number),
        InputMode::Speech => {
            let said = words(&turn.text);
            // Every word of the title said, in any order ("I lost my card" → "Lost card");
            // the most specific title wins.
            let by_title = menu
                .iter()
                .map(|o| (o, words(&o.title)))
                .filter(|(_, title)| !title.is_empty() && title.iter().all(|w| said.contains(w)))
                .max_by_key(|(_, title)| title.len())
                .map(|(o, _)| o);
            by_title.or_else(|| {
                // "two", "option two", "number 2": short answers only, not "two thousand".
                const NUMBERS: [&str; 9] = [
                    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                ];
                if said.len() > 3 {
                    return None;
                }
                said.iter().find_map(|w| {
                    NUMBERS
                        .iter()
                        .position(|n| n == w)
                        .map(|i| i + 1)
                        .or_else(|| w.parse().ok())
                        .and_then(by_number)
                })
            })
        }
        InputMode::NoInput | InputMode::Greeting => None,
    }
}

/// Lower-case alphanumeric words.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// `needle` appears in `hay` as consecutive words.
fn contains(hay: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(barge_in: bool) -> TurnConfig {
        TurnConfig {
            barge_in,
            dtmf: DtmfSettings {
                terminator: Some('#'),
                inter_digit_timeout: Duration::from_secs(3),
                max_digits: 6,
            },
            fallback: Prompt::text("Sorry."),
            async_replies: false,
            turn_deadline: Duration::from_secs(10),
            filler_delay: None,
            no_input: None,
            max_bot_failures: 0,
            bot_failure_text: "Goodbye for now.".into(),
            max_duration: None,
            max_duration_text: "Time is up.".into(),
            stt_outage_text: Some("I can't hear you.".into()),
            languages: Vec::new(),
            language: None,
            expect_greeting: true,
        }
    }

    fn state(barge_in: bool) -> TurnState {
        TurnState::new(config(barge_in), Instant::now())
    }

    fn reply(text: &str) -> CallInput {
        CallInput::BotReply(BotReply {
            text: Some(text.into()),
            ..BotReply::default()
        })
    }

    fn speak(id: u64, text: &str) -> CallAction {
        CallAction::Speak {
            id,
            prompt: Prompt::text(text),
            delivery: None,
        }
    }

    fn said(text: &str) -> CallInput {
        CallInput::Utterance {
            text: text.into(),
            confidence: Some(0.9),
        }
    }

    fn sent(actions: &[CallAction]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                CallAction::SendTurn(t) => Some(t.text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn greeting_then_turns_one_at_a_time_in_order() {
        let now = Instant::now();
        let mut s = state(true);
        let a = s.on(reply("Hello"), now);
        assert_eq!(a, vec![speak(1, "Hello")]);
        assert!(s.on(CallInput::BotDone { ok: true }, now).is_empty());
        s.on(CallInput::Played(1), now);
        assert_eq!(sent(&s.on(said("first"), now)), ["first"]);
        assert!(sent(&s.on(said("second"), now)).is_empty(), "one in flight");
        assert_eq!(
            sent(&s.on(CallInput::BotDone { ok: true }, now)),
            ["second"]
        );
    }

    #[test]
    fn speech_during_playback_barges_in_and_marks_of_cleared_audio_do_not_count() {
        let now = Instant::now();
        let mut s = state(true);
        s.on(reply("A long answer"), now);
        s.on(CallInput::BotDone { ok: true }, now);
        s.on(CallInput::SpeechStarted, now);
        assert_eq!(
            s.on(CallInput::BargeIn, now),
            vec![CallAction::StopPlayback]
        );
        assert!(!s.is_playing());
        s.on(CallInput::Played(1), now); // flushed mark echoed by the provider
        assert_eq!(
            sent(&s.on(said("stop, I want sales"), now)),
            ["stop, I want sales"]
        );
    }

    #[test]
    fn without_barge_in_speech_over_playback_is_ignored() {
        let now = Instant::now();
        let mut s = state(false);
        s.on(reply("Please listen"), now);
        s.on(CallInput::BotDone { ok: true }, now);
        s.on(CallInput::SpeechStarted, now);
        assert!(s.on(CallInput::BargeIn, now).is_empty());
        assert!(s.on(said("hello?"), now).is_empty());
        assert!(s.is_playing());
    }

    #[test]
    fn remaining_replies_of_an_interrupted_answer_are_dropped() {
        let now = Instant::now();
        let mut s = state(true);
        s.on(CallInput::BotDone { ok: true }, now);
        s.on(said("balance"), now);
        s.on(reply("Checking"), now);
        s.on(CallInput::SpeechStarted, now);
        s.on(CallInput::BargeIn, now);
        assert!(s.on(reply("Your balance is"), now).is_empty());
        s.on(said("never mind"), now);
        assert_eq!(
            sent(&s.on(CallInput::BotDone { ok: true }, now)),
            ["never mind"]
        );
        let a = s.on(reply("OK"), now);
        assert!(matches!(a[0], CallAction::Speak { .. }));
    }

    #[test]
    fn digits_end_at_terminator_max_or_timeout() {
        let now = Instant::now();
        let mut s = state(true);
        s.on(CallInput::BotDone { ok: true }, now);
        for d in "1234".chars() {
            assert!(s.on(CallInput::Digit(d), now).is_empty());
        }
        assert_eq!(sent(&s.on(CallInput::Digit('#'), now)), ["1234"]);
        s.on(CallInput::BotDone { ok: true }, now);

        for d in "123456".chars() {
            s.on(CallInput::Digit(d), now);
        }
        s.on(CallInput::BotDone { ok: true }, now);

        s.on(CallInput::Digit('9'), now);
        let deadline = s.next_deadline().unwrap();
        assert!(s.on(CallInput::Tick, now).is_empty(), "not yet");
        assert_eq!(sent(&s.on(CallInput::Tick, deadline)), ["9"]);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_key_during_playback_interrupts() {
        let now = Instant::now();
        let mut s = state(true);
        s.on(reply("Menu"), now);
        assert_eq!(
            s.on(CallInput::Digit('1'), now),
            vec![CallAction::StopPlayback]
        );
    }

    #[test]
    fn a_failed_turn_speaks_the_fallback_and_the_call_goes_on() {
        let now = Instant::now();
        let mut s = state(true);
        s.on(CallInput::BotDone { ok: true }, now);
        s.on(said("hello"), now);
        let a = s.on(CallInput::BotDone { ok: false }, now);
        assert_eq!(a, vec![speak(1, "Sorry.")]);
        assert_eq!(sent(&s.on(said("again"), now)), ["again"]);
    }

    #[test]
    fn losing_speech_input_is_said_once_and_keys_still_reach_the_bot() {
        let now = Instant::now();
        let mut s = state(true);
        s.on(CallInput::BotDone { ok: true }, now);
        let a = s.on(CallInput::SpeechInputLost, now);
        assert_eq!(a, vec![speak(1, "I can't hear you.")]);
        s.on(CallInput::Played(1), now);
        assert!(s.on(CallInput::SpeechInputLost, now).is_empty());
    }

    #[test]
    fn empty_utterances_are_not_sent() {
        let now = Instant::now();
        let mut s = state(true);
        s.on(CallInput::BotDone { ok: true }, now);
        assert!(s.on(said("  "), now).is_empty());
    }

    fn menu_reply() -> CallInput {
        CallInput::BotReply(BotReply {
            text: Some("Press 1 or say Balance. Press 2 or say Lost card.".into()),
            options: vec![
                MenuOption {
                    title: "Balance".into(),
                    payload: "BAL".into(),
                },
                MenuOption {
                    title: "Lost card".into(),
                    payload: "LOST".into(),
                },
            ],
            ..BotReply::default()
        })
    }

    #[test]
    fn a_menu_is_answered_by_title_number_word_or_key_and_forgotten_after() {
        let now = Instant::now();
        for (answer, want) in [
            (said("I think I lost my card"), "LOST"),
            (said("balance please"), "BAL"),
            (said("option two"), "LOST"),
            (CallInput::Digit('2'), "LOST"),
        ] {
            let mut s = state(true);
            s.on(menu_reply(), now);
            s.on(CallInput::BotDone { ok: true }, now);
            s.on(CallInput::Played(1), now);
            assert_eq!(sent(&s.on(answer, now)), [want]);
            s.on(CallInput::BotDone { ok: true }, now);
            assert_eq!(
                sent(&s.on(said("balance"), now)),
                ["balance"],
                "menu used once"
            );
        }
        // Outside the menu's range, digits are just digits.
        let mut s = state(true);
        s.on(menu_reply(), now);
        s.on(CallInput::BotDone { ok: true }, now);
        s.on(CallInput::Digit('7'), now);
        assert_eq!(sent(&s.on(CallInput::Digit('#'), now)), ["7"]);
    }

    fn no_input(reprompt: Reprompt) -> TurnState {
        let mut cfg = config(true);
        cfg.no_input = Some(NoInputSettings {
            timeout: Duration::from_secs(5),
            max_reprompts: 2,
            reprompt,
            goodbye_text: "Bye.".into(),
        });
        TurnState::new(cfg, Instant::now())
    }

    #[test]
    fn silence_after_the_bot_spoke_reprompts_then_hangs_up() {
        let mut s = no_input(Reprompt::Local("Still there?".into()));
        let t0 = Instant::now();
        s.on(reply("Hello"), t0);
        s.on(CallInput::BotDone { ok: true }, t0);
        assert_eq!(s.next_deadline(), None, "not while the greeting plays");
        s.on(CallInput::Played(1), t0);
        let mut now = s.next_deadline().unwrap();
        assert_eq!(now, t0 + Duration::from_secs(5));
        assert_eq!(s.on(CallInput::Tick, now), vec![speak(2, "Still there?")]);
        s.on(CallInput::Played(2), now);
        now = s.next_deadline().unwrap();
        assert_eq!(s.on(CallInput::Tick, now), vec![speak(3, "Still there?")]);
        s.on(CallInput::Played(3), now);
        now = s.next_deadline().unwrap();
        assert_eq!(s.on(CallInput::Tick, now), vec![speak(4, "Bye.")]);
        assert_eq!(
            s.on(CallInput::Played(4), now),
            vec![CallAction::End {
                reason: CallEndReason::NoInput,
                transfer: None
            }]
        );
        assert!(
            s.on(said("hello?"), now).is_empty(),
            "nothing after the end"
        );
    }

    #[test]
    fn speaking_resets_the_no_input_count_and_a_bot_reprompt_is_a_turn() {
        let mut s = no_input(Reprompt::Bot("NO_INPUT".into()));
        let t0 = Instant::now();
        s.on(CallInput::BotDone { ok: true }, t0);
        let now = s.next_deadline().unwrap();
        let a = s.on(CallInput::Tick, now);
        assert!(matches!(&a[..], [CallAction::SendTurn(t)] if t.mode == InputMode::NoInput));
        s.on(CallInput::BotDone { ok: true }, now);
        s.on(CallInput::SpeechStarted, now);
        assert_eq!(s.next_deadline(), None, "the caller is talking");
        s.on(said("yes"), now);
        s.on(CallInput::BotDone { ok: true }, now);
        assert_eq!(s.no_input_count, 0);
    }

    #[test]
    fn filler_starts_after_its_delay_and_the_async_deadline_speaks_the_fallback() {
        let mut cfg = config(true);
        cfg.filler_delay = Some(Duration::from_millis(800));
        cfg.async_replies = true;
        cfg.turn_deadline = Duration::from_secs(4);
        let t0 = Instant::now();
        let mut s = TurnState::new(cfg, t0);
        s.on(CallInput::BotDone { ok: true }, t0); // the ack of ON_CONNECT
        let at = s.next_deadline().unwrap();
        assert_eq!(at, t0 + Duration::from_millis(800));
        assert_eq!(s.on(CallInput::Tick, at), vec![CallAction::StartFiller]);
        let at = s.next_deadline().unwrap();
        assert_eq!(at, t0 + Duration::from_secs(4));
        assert_eq!(s.on(CallInput::Tick, at), vec![speak(1, "Sorry.")]);
        // A callback arriving after that is still spoken (async replies are not a turn's).
        s.on(CallInput::Played(1), at);
        assert_eq!(s.on(reply("Hi!"), at), vec![speak(2, "Hi!")]);
    }

    /// A transcript that waits for a busy decoder is covered by the filler, which stops if
    /// the utterance turns out to be empty (or carries on into the bot's wait).
    #[test]
    fn filler_covers_a_wait_for_the_decoder() {
        let mut cfg = config(true);
        cfg.filler_delay = Some(Duration::from_millis(800));
        let t0 = Instant::now();
        let mut s = TurnState::new(cfg, t0);
        s.on(reply("Hi"), t0);
        s.on(CallInput::BotDone { ok: true }, t0);
        s.on(CallInput::Played(1), t0);
        s.on(CallInput::SpeechStarted, t0);
        s.on(CallInput::SpeechEnded, t0);
        let at = s.next_deadline().unwrap();
        assert_eq!(at, t0 + Duration::from_millis(800));
        assert_eq!(s.on(CallInput::Tick, at), vec![CallAction::StartFiller]);
        assert_eq!(s.on(said(""), at), vec![CallAction::StopFiller], "noise");
        // A real utterance keeps the filler going while the bot answers.
        s.on(CallInput::SpeechStarted, at);
        s.on(CallInput::SpeechEnded, at);
        let at2 = at + Duration::from_millis(900);
        assert_eq!(s.on(CallInput::Tick, at2), vec![CallAction::StartFiller]);
        let a = s.on(said("balance"), at2);
        assert_eq!(sent(&a), ["balance"]);
        assert!(!a.contains(&CallAction::StopFiller), "{a:?}");
    }

    #[test]
    fn repeated_bot_failures_end_the_call_after_the_goodbye() {
        let mut cfg = config(true);
        cfg.max_bot_failures = 2;
        let now = Instant::now();
        let mut s = TurnState::new(cfg, now);
        s.on(CallInput::BotDone { ok: false }, now);
        s.on(CallInput::Played(1), now);
        s.on(said("hello"), now);
        let a = s.on(CallInput::BotDone { ok: false }, now);
        assert_eq!(a, vec![speak(2, "Goodbye for now.")]);
        assert!(
            sent(&s.on(said("wait"), now)).is_empty(),
            "no turns while ending"
        );
        assert_eq!(
            s.on(CallInput::Played(2), now),
            vec![CallAction::End {
                reason: CallEndReason::BotFailure,
                transfer: None
            }]
        );
    }

    #[test]
    fn the_time_limit_interrupts_says_goodbye_and_ends() {
        let mut cfg = config(true);
        cfg.max_duration = Some(Duration::from_secs(60));
        let t0 = Instant::now();
        let mut s = TurnState::new(cfg, t0);
        s.on(reply("A very long story"), t0);
        let at = s.next_deadline().unwrap();
        assert_eq!(at, t0 + Duration::from_secs(60));
        assert_eq!(
            s.on(CallInput::Tick, at),
            vec![CallAction::StopPlayback, speak(2, "Time is up.")]
        );
        // If the goodbye's mark never comes, the grace period ends the call anyway.
        let grace = s.next_deadline().unwrap();
        assert!(matches!(
            &s.on(CallInput::Tick, grace)[..],
            [CallAction::End {
                reason: CallEndReason::MaxDuration,
                ..
            }]
        ));
    }

    #[test]
    fn a_transfer_waits_for_the_words_before_it() {
        let now = Instant::now();
        let mut s = state(true);
        s.on(reply("Transferring you."), now);
        let a = s.on(
            CallInput::BotReply(BotReply {
                action: Some(BotAction::Transfer {
                    target: "+15550001111".into(),
                }),
                ..BotReply::default()
            }),
            now,
        );
        assert!(a.is_empty(), "still playing: {a:?}");
        assert_eq!(
            s.on(CallInput::Played(1), now),
            vec![CallAction::End {
                reason: CallEndReason::BotTransfer,
                transfer: Some("+15550001111".into())
            }]
        );
    }

    #[test]
    fn a_language_keyword_or_key_switches_before_the_turn_is_sent() {
        let mut cfg = config(true);
        cfg.languages = vec![LanguageChoice {
            code: "es".into(),
            dtmf: Some("*2".into()),
            keywords: vec!["español".into(), "spanish".into()],
        }];
        let now = Instant::now();
        let mut s = TurnState::new(cfg, now);
        s.on(CallInput::BotDone { ok: true }, now);
        let a = s.on(said("Spanish, please"), now);
        assert_eq!(a[0], CallAction::SwitchLanguage("es".into()));
        assert!(matches!(&a[1], CallAction::SendTurn(t) if t.language.as_deref() == Some("es")));
        s.on(CallInput::BotDone { ok: true }, now);
        s.on(CallInput::Digit('*'), now);
        s.on(CallInput::Digit('2'), now);
        let a = s.on(CallInput::Digit('#'), now);
        assert!(
            matches!(&a[..], [CallAction::SendTurn(_)]),
            "already Spanish: {a:?}"
        );
    }

    /// Model test over random event sequences: at most one bot request in flight, turns
    /// leave in the order they were completed, message ids strictly increase, nothing is
    /// cleared when barge-in is off.
    #[test]
    fn random_sequences_keep_the_invariants() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..300 {
            let barge_in = round % 2 == 0;
            let mut s = state(barge_in);
            let mut now = Instant::now();
            let mut in_flight = true; // ON_CONNECT
            let mut last_id = 0;
            let mut sent_turns: Vec<String> = Vec::new();
            for step in 0..200 {
                now += Duration::from_millis(rng.random_range(0..800));
                let input = match rng.random_range(0..8) {
                    0 if in_flight => reply(&format!("r{step}")),
                    1 if in_flight => CallInput::BotDone {
                        ok: rng.random_bool(0.8),
                    },
                    2 => CallInput::SpeechStarted,
                    3 => CallInput::BargeIn,
                    4 => CallInput::Utterance {
                        text: format!("u{step}"),
                        confidence: None,
                    },
                    5 => CallInput::Digit(['1', '2', '#'][rng.random_range(0..3)]),
                    6 => CallInput::Played(rng.random_range(0..=last_id.max(1))),
                    _ => CallInput::Tick,
                };
                if let CallInput::BotDone { .. } = input {
                    in_flight = false;
                }
                for a in s.on(input, now) {
                    match a {
                        CallAction::SendTurn(t) => {
                            assert!(!in_flight, "two requests in flight");
                            in_flight = true;
                            sent_turns.push(t.text);
                        }
                        CallAction::Speak { id, .. } => {
                            assert!(id > last_id);
                            last_id = id;
                        }
                        CallAction::StopPlayback => assert!(barge_in),
                        _ => {}
                    }
                }
            }
            let spoken: Vec<u32> = sent_turns
                .iter()
                .filter_map(|t| t.strip_prefix('u')?.parse().ok())
                .collect();
            assert!(
                spoken.windows(2).all(|w| w[0] < w[1]),
                "in order, once: {spoken:?}"
            );
        }
    }
}
