//! The call's turn-taking as pure logic: no I/O and no `.await`. It takes [`CallInput`]s and
//! returns [`CallAction`]s for the session actor to carry out; timers are deadlines the actor
//! sleeps until. Rules: one bot request in flight, turns sent in order; replies spoken in
//! order; speech or a key during playback interrupts it (barge-in); digits are collected until
//! the terminator, the maximum count or the inter-digit timeout.

use std::collections::{BTreeSet, VecDeque};

use tokio::time::Instant;

use crate::bot::{InputMode, TurnInput};
use crate::config::DtmfSettings;

/// Knobs of the turn logic.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// Caller speech or keys interrupt playback.
    pub barge_in: bool,
    /// Digit collection.
    pub dtmf: DtmfSettings,
    /// Spoken when the bot fails a turn.
    pub fallback_text: String,
}

/// Something that happened to the call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallInput {
    /// A bot message to speak.
    BotReply(String),
    /// The request in flight finished (`ok == false`: it failed; the fallback is spoken).
    BotDone {
        /// Whether the bot answered.
        ok: bool,
    },
    /// The caller started speaking (VAD).
    SpeechStarted,
    /// The caller has spoken long enough to interrupt.
    BargeIn,
    /// A recognised utterance.
    Utterance {
        /// Words.
        text: String,
        /// STT confidence.
        confidence: Option<f32>,
    },
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
    /// Synthesize and play this text as message `id`.
    Speak {
        /// Message id (marks and logs).
        id: u64,
        /// Text.
        text: String,
    },
    /// Drop queued audio and tell the provider to clear its buffer.
    StopPlayback,
}

/// Turn-taking state of one call.
#[derive(Debug)]
pub struct TurnState {
    cfg: TurnConfig,
    /// A bot request is in flight (starts true: the session is being opened).
    bot_busy: bool,
    pending: VecDeque<TurnInput>,
    /// Messages handed to playback and not yet played.
    playing: BTreeSet<u64>,
    next_id: u64,
    /// The caller interrupted the reply in flight: drop its remaining messages.
    reply_interrupted: bool,
    /// The current utterance began while the bot was talking and has not barged in.
    speech_over_playback: bool,
    digits: String,
    digit_deadline: Option<Instant>,
}

impl TurnState {
    /// State at call start, with the session opening in flight.
    pub fn new(cfg: TurnConfig) -> Self {
        Self {
            cfg,
            bot_busy: true,
            pending: VecDeque::new(),
            playing: BTreeSet::new(),
            next_id: 1,
            reply_interrupted: false,
            speech_over_playback: false,
            digits: String::new(),
            digit_deadline: None,
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

    /// The next time the actor must deliver [`CallInput::Tick`].
    pub fn next_deadline(&self) -> Option<Instant> {
        self.digit_deadline
    }

    /// Applies one input and returns the actions, in order.
    pub fn on(&mut self, input: CallInput, now: Instant) -> Vec<CallAction> {
        let mut out = Vec::new();
        match input {
            CallInput::BotReply(text) => {
                if !self.reply_interrupted {
                    self.speak(text, &mut out);
                }
            }
            CallInput::BotDone { ok } => {
                self.bot_busy = false;
                if !ok && !self.reply_interrupted {
                    let text = self.cfg.fallback_text.clone();
                    self.speak(text, &mut out);
                }
                self.send_next(&mut out);
            }
            CallInput::SpeechStarted => {
                self.speech_over_playback = self.is_playing();
            }
            CallInput::BargeIn => {
                if self.is_playing() && self.cfg.barge_in {
                    self.interrupt(&mut out);
                    self.speech_over_playback = false;
                }
            }
            CallInput::Utterance { text, confidence } => {
                let over_playback = std::mem::take(&mut self.speech_over_playback);
                if !text.trim().is_empty() && !over_playback {
                    self.enqueue(
                        TurnInput {
                            text,
                            mode: InputMode::Speech,
                            confidence,
                        },
                        &mut out,
                    );
                }
            }
            CallInput::Digit(d) => {
                if self.is_playing() && self.cfg.barge_in {
                    self.interrupt(&mut out);
                }
                if Some(d) == self.cfg.dtmf.terminator {
                    self.flush_digits(&mut out);
                } else {
                    self.digits.push(d);
                    if self.digits.len() >= self.cfg.dtmf.max_digits {
                        self.flush_digits(&mut out);
                    } else {
                        self.digit_deadline = Some(now + self.cfg.dtmf.inter_digit_timeout);
                    }
                }
            }
            CallInput::Tick => {
                if self.digit_deadline.is_some_and(|d| d <= now) {
                    self.flush_digits(&mut out);
                }
            }
            CallInput::Played(id) => {
                self.playing.remove(&id);
                if self.playing.is_empty() {
                    // The prompt ended while the caller was talking: what they say counts.
                    self.speech_over_playback = false;
                }
            }
        }
        out
    }

    fn speak(&mut self, text: String, out: &mut Vec<CallAction>) {
        let id = self.next_id;
        self.next_id += 1;
        self.playing.insert(id);
        out.push(CallAction::Speak { id, text });
    }

    fn interrupt(&mut self, out: &mut Vec<CallAction>) {
        // Marks of cleared messages may still arrive: they are not in `playing` any more,
        // so they do not count as played.
        self.playing.clear();
        self.reply_interrupted = self.bot_busy;
        out.push(CallAction::StopPlayback);
    }

    fn flush_digits(&mut self, out: &mut Vec<CallAction>) {
        self.digit_deadline = None;
        if !self.digits.is_empty() {
            let text = std::mem::take(&mut self.digits);
            self.enqueue(
                TurnInput {
                    text,
                    mode: InputMode::Dtmf,
                    confidence: None,
                },
                out,
            );
        }
    }

    fn enqueue(&mut self, turn: TurnInput, out: &mut Vec<CallAction>) {
        self.pending.push_back(turn);
        self.send_next(out);
    }

    fn send_next(&mut self, out: &mut Vec<CallAction>) {
        if self.bot_busy {
            return;
        }
        if let Some(turn) = self.pending.pop_front() {
            self.bot_busy = true;
            self.reply_interrupted = false;
            out.push(CallAction::SendTurn(turn));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn state(barge_in: bool) -> TurnState {
        TurnState::new(TurnConfig {
            barge_in,
            dtmf: DtmfSettings {
                terminator: Some('#'),
                inter_digit_timeout: Duration::from_secs(3),
                max_digits: 6,
            },
            fallback_text: "Sorry.".into(),
        })
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
        let a = s.on(CallInput::BotReply("Hello".into()), now);
        assert_eq!(
            a,
            vec![CallAction::Speak {
                id: 1,
                text: "Hello".into()
            }]
        );
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
        s.on(CallInput::BotReply("A long answer".into()), now);
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
        s.on(CallInput::BotReply("Please listen".into()), now);
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
        s.on(CallInput::BotReply("Checking".into()), now);
        s.on(CallInput::SpeechStarted, now);
        s.on(CallInput::BargeIn, now);
        assert!(s
            .on(CallInput::BotReply("Your balance is".into()), now)
            .is_empty());
        s.on(said("never mind"), now);
        assert_eq!(
            sent(&s.on(CallInput::BotDone { ok: true }, now)),
            ["never mind"]
        );
        let a = s.on(CallInput::BotReply("OK".into()), now);
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
        s.on(CallInput::BotReply("Menu".into()), now);
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
        assert_eq!(
            a,
            vec![CallAction::Speak {
                id: 1,
                text: "Sorry.".into()
            }]
        );
        assert_eq!(sent(&s.on(said("again"), now)), ["again"]);
    }

    #[test]
    fn empty_utterances_are_not_sent() {
        let now = Instant::now();
        let mut s = state(true);
        s.on(CallInput::BotDone { ok: true }, now);
        assert!(s.on(said("  "), now).is_empty());
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
                    0 if in_flight => CallInput::BotReply(format!("r{step}")),
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
