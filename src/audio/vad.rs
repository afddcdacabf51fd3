//! Voice activity detection (earshot, 16 kHz, 16 ms frames) and endpointing: turns a stream of
//! 16 kHz samples into utterances with speech start, optional barge-in signal and end.
//! Pure and synchronous; the caller feeds it and acts on the returned events. With a
//! semantic end-of-turn model ([`TurnTiming`]), a short pause asks the caller for the
//! model's verdict ([`VadEvent::Paused`]) and the verdict picks the pause's hangover.

use std::collections::VecDeque;
use std::time::Duration;

/// earshot's fixed frame: 256 samples = 16 ms at 16 kHz.
const VAD_FRAME: usize = 256;
const VAD_FRAME_MS: u64 = 16;
/// A frame whose peak stays at or below this (≈ −60 dBFS) is silence without asking earshot:
/// most of a call is the caller listening, and a muted or VAD-suppressed line is digital
/// silence, so this gate saves the detector's work on most frames.
const SILENCE_PEAK: u16 = 32;

/// Endpointing parameters.
#[derive(Debug, Clone)]
pub struct EndpointerConfig {
    /// earshot score above which a frame is speech.
    pub threshold: f32,
    /// Continuous speech before an utterance starts.
    pub min_speech: Duration,
    /// Speech within an utterance before it may interrupt playback.
    pub barge_in_min_speech: Duration,
    /// With a streaming STT's partials: words before playback may be interrupted (0: the
    /// VAD decides). Read by the listener; the endpointer itself counts no words.
    pub barge_in_min_words: usize,
    /// Silence that ends an utterance.
    pub end_of_utterance: Duration,
    /// Silence that ends an utterance while digits are expected or heard.
    pub digits_end_of_utterance: Duration,
    /// Audio kept from before the start.
    pub pre_roll: Duration,
    /// Longest utterance.
    pub max_utterance: Duration,
    /// With a semantic end-of-turn model (`[audio.smart_turn]`): when to ask it and the
    /// hangovers its verdicts pick. `None`: the fixed hangover alone.
    pub smart_turn: Option<TurnTiming>,
}

/// When the endpointer asks an end-of-turn model, and what its answer does. Each is silence
/// since the end of speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnTiming {
    /// The pause after which the model is asked ([`VadEvent::Paused`]).
    pub pause: Duration,
    /// The hangover when the model says the turn is complete.
    pub complete: Duration,
    /// The hangover when it says incomplete, and while its answer is pending.
    pub incomplete: Duration,
}

/// Where the current pause stands with the end-of-turn model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pause {
    /// Speech, or a pause not yet long enough to ask: the fixed hangover.
    None,
    /// The model was asked (this pause's number); the longest hangover until it answers.
    Asked(u32),
    /// It answered: this hangover (ms).
    Decided(u64),
}

/// What the endpointer saw in the samples just pushed.
#[derive(Debug, Clone, PartialEq)]
pub enum VadEvent {
    /// An utterance started; carries the pre-roll and the speech so far.
    Started(Vec<i16>),
    /// More audio of the current utterance (speech and hangover silence).
    Audio(Vec<i16>),
    /// The utterance has had enough speech to count as an interruption.
    BargeIn,
    /// A pause of [`TurnTiming::pause`] within the utterance: ask the end-of-turn model about
    /// the utterance so far and report its verdict with [`Endpointer::turn_decided`] and
    /// this number.
    Paused(u32),
    /// The utterance ended; `cut` when it hit the maximum length.
    Ended {
        /// True when cut at `max_utterance` rather than ended by silence.
        cut: bool,
    },
}

/// Share (0..1) of the 16 ms frames of `samples` (16 kHz) that a fresh detector scores as
/// speech at `threshold`; digital silence counts as not speech without asking it.
pub fn speech_share(samples: &[i16], threshold: f32) -> f32 {
    let mut detector = earshot::Detector::default_boxed();
    let (mut speech, mut frames) = (0u32, 0u32);
    for frame in samples.chunks_exact(VAD_FRAME) {
        frames += 1;
        let peak = frame.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        if peak > SILENCE_PEAK && detector.predict_i16(frame) >= threshold {
            speech += 1;
        }
    }
    if frames == 0 {
        0.0
    } else {
        speech as f32 / frames as f32
    }
}

/// Streaming VAD with hangover-based endpointing.
pub struct Endpointer {
    /// Dropped while the line is gated silent (a reset detector is a fresh one), so an idle
    /// call does not keep its ~9 KiB of state.
    detector: Option<Box<earshot::Detector>>,
    cfg: EndpointerConfig,
    frame: Vec<i16>,
    /// Recent audio before an utterance: pre-roll plus the speech that has not yet reached
    /// `min_speech`.
    history: VecDeque<i16>,
    history_cap: usize,
    /// The history was freed after a whole history's worth of gated silence; it stands for
    /// `history_cap` samples of digital silence until sound returns.
    history_freed: bool,
    /// Gated samples in a row (outside an utterance).
    gated_run: usize,
    /// The detector was dropped when silence began and is skipped until sound returns.
    gated: bool,
    speech_run_ms: u64,
    in_utterance: bool,
    utterance_ms: u64,
    utterance_speech_ms: u64,
    silence_run_ms: u64,
    barge_in_sent: bool,
    /// The bot asked for digits: every utterance gets the digits hangover.
    expect_digits: bool,
    /// This utterance's words so far end in a digit (a streaming STT's partial).
    digits_heard: bool,
    pause: Pause,
    /// Pauses asked about so far (numbers them, so a late verdict is told from a current one).
    pauses: u32,
}

impl Endpointer {
    /// A fresh endpointer.
    pub fn new(cfg: EndpointerConfig) -> Self {
        let history_cap = ((cfg.pre_roll + cfg.min_speech).as_millis() as usize + 32) * 16;
        Self {
            detector: Some(earshot::Detector::default_boxed()),
            cfg,
            frame: Vec::with_capacity(VAD_FRAME),
            // Sized once: growing by doubling would leave most of a second buffer idle.
            history: VecDeque::with_capacity(history_cap),
            history_cap,
            history_freed: false,
            gated_run: 0,
            gated: false,
            speech_run_ms: 0,
            in_utterance: false,
            utterance_ms: 0,
            utterance_speech_ms: 0,
            silence_run_ms: 0,
            barge_in_sent: false,
            expect_digits: false,
            digits_heard: false,
            pause: Pause::None,
            pauses: 0,
        }
    }

    /// The end-of-turn model's verdict on pause number `pause`: `Some(true)` complete,
    /// `Some(false)` incomplete, `None` no answer (busy or failed: the fixed hangover). A
    /// verdict on an earlier pause (the caller spoke again since) is ignored. Takes effect
    /// at the next frame.
    pub fn turn_decided(&mut self, pause: u32, complete: Option<bool>) {
        let Some(t) = self.cfg.smart_turn else { return };
        if self.in_utterance && self.pause == Pause::Asked(pause) {
            let d = match complete {
                Some(true) => t.complete,
                Some(false) => t.incomplete,
                None => self.cfg.end_of_utterance,
            };
            self.pause = Pause::Decided(d.as_millis() as u64);
        }
    }

    /// The caller is (`true`) or is no longer expected to read out digits.
    pub fn expect_digits(&mut self, on: bool) {
        self.expect_digits = on;
    }

    /// The current utterance's words end in a digit (so far): a pause may be between two
    /// groups of a number, not the end of the turn.
    pub fn heard_digits(&mut self, on: bool) {
        self.digits_heard = on && self.in_utterance;
    }

    /// Digits are expected or heard: the digits hangover applies, and the end-of-turn model
    /// is not asked (a pause between two groups of a number is no end of a sentence).
    fn reading_digits(&self) -> bool {
        self.expect_digits || self.digits_heard
    }

    /// The silence that ends the current utterance.
    fn hangover_ms(&self) -> u64 {
        if self.reading_digits() {
            return self.cfg.digits_end_of_utterance.as_millis() as u64;
        }
        match (self.pause, self.cfg.smart_turn) {
            (Pause::Asked(_), Some(t)) => t.incomplete.as_millis() as u64,
            (Pause::Decided(ms), _) => ms,
            _ => self.cfg.end_of_utterance.as_millis() as u64,
        }
    }

    /// True while an utterance is open.
    pub fn in_utterance(&self) -> bool {
        self.in_utterance
    }

    /// Feeds 16 kHz mono samples; returns what happened, in order.
    pub fn push(&mut self, samples: &[i16], events: &mut Vec<VadEvent>) {
        for &s in samples {
            self.frame.push(s);
            if self.frame.len() == VAD_FRAME {
                let speech = self.is_speech();
                self.on_frame(speech, events);
            }
        }
    }

    /// earshot's verdict on the full frame in `self.frame`, behind the silence gate.
    fn is_speech(&mut self) -> bool {
        let peak = self
            .frame
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0);
        if peak <= SILENCE_PEAK {
            // Sound after the gate starts from a fresh detector, not from stale context.
            self.detector = None;
            self.gated = true;
            return false;
        }
        self.gated = false;
        self.detector
            .get_or_insert_with(earshot::Detector::default_boxed)
            .predict_i16(&self.frame)
            >= self.cfg.threshold
    }

    /// Consumes the full frame in `self.frame` with a known speech decision (used by `push`
    /// and by tests). Outside an utterance the frame buffer is reused; inside, it becomes the
    /// event's audio.
    fn on_frame(&mut self, speech: bool, events: &mut Vec<VadEvent>) {
        if !self.in_utterance {
            self.gated_run = if self.gated {
                self.gated_run + self.frame.len()
            } else {
                0
            };
            if self.gated_run >= self.history_cap {
                // Only gated silence is left in the history: free it; the pre-roll of the
                // next utterance is digital silence (≤ −60 dBFS either way).
                if !self.history_freed {
                    self.history = VecDeque::new();
                    self.history_freed = true;
                }
                self.frame.clear();
                self.speech_run_ms = 0;
                return;
            }
            if self.history_freed {
                self.history_freed = false;
                self.history = VecDeque::with_capacity(self.history_cap);
                let silent = self.history_cap.saturating_sub(self.frame.len());
                self.history.resize(silent / VAD_FRAME * VAD_FRAME, 0);
            }
            let excess = (self.history.len() + self.frame.len()).saturating_sub(self.history_cap);
            self.history.drain(..excess.min(self.history.len()));
            self.history.extend(self.frame.drain(..));
            self.speech_run_ms = if speech {
                self.speech_run_ms + VAD_FRAME_MS
            } else {
                0
            };
            if self.speech_run_ms >= self.cfg.min_speech.as_millis() as u64 {
                self.in_utterance = true;
                self.utterance_ms = self.history.len() as u64 / 16;
                self.utterance_speech_ms = self.speech_run_ms;
                self.silence_run_ms = 0;
                self.barge_in_sent = false;
                self.pause = Pause::None;
                events.push(VadEvent::Started(self.history.drain(..).collect()));
                self.check_barge_in(events);
            }
            return;
        }
        self.utterance_ms += VAD_FRAME_MS;
        if speech {
            self.utterance_speech_ms += VAD_FRAME_MS;
            self.silence_run_ms = 0;
            self.pause = Pause::None;
        } else {
            self.silence_run_ms += VAD_FRAME_MS;
        }
        let frame = std::mem::replace(&mut self.frame, Vec::with_capacity(VAD_FRAME));
        events.push(VadEvent::Audio(frame));
        self.check_barge_in(events);
        if let Some(t) = self.cfg.smart_turn {
            if self.pause == Pause::None
                && !self.reading_digits()
                && self.silence_run_ms >= t.pause.as_millis() as u64
            {
                self.pauses = self.pauses.wrapping_add(1);
                self.pause = Pause::Asked(self.pauses);
                events.push(VadEvent::Paused(self.pauses));
            }
        }
        let cut = self.utterance_ms >= self.cfg.max_utterance.as_millis() as u64;
        if cut || self.silence_run_ms >= self.hangover_ms() {
            self.in_utterance = false;
            self.speech_run_ms = 0;
            self.digits_heard = false;
            self.pause = Pause::None;
            events.push(VadEvent::Ended { cut });
        }
    }

    fn check_barge_in(&mut self, events: &mut Vec<VadEvent>) {
        if !self.barge_in_sent
            && self.utterance_speech_ms >= self.cfg.barge_in_min_speech.as_millis() as u64
        {
            self.barge_in_sent = true;
            events.push(VadEvent::BargeIn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EndpointerConfig {
        EndpointerConfig {
            threshold: 0.5,
            min_speech: Duration::from_millis(48),
            barge_in_min_speech: Duration::from_millis(96),
            barge_in_min_words: 0,
            end_of_utterance: Duration::from_millis(160),
            digits_end_of_utterance: Duration::from_millis(480),
            pre_roll: Duration::from_millis(64),
            max_utterance: Duration::from_millis(1_600),
            smart_turn: None,
        }
    }

    /// Asks after 3 silent frames; complete ends at 4, incomplete at 20 (fixed: 10).
    fn smart() -> EndpointerConfig {
        EndpointerConfig {
            smart_turn: Some(TurnTiming {
                pause: Duration::from_millis(48),
                complete: Duration::from_millis(64),
                incomplete: Duration::from_millis(320),
            }),
            ..cfg()
        }
    }

    fn run(e: &mut Endpointer, pattern: &str) -> Vec<VadEvent> {
        let mut ev = Vec::new();
        for c in pattern.chars() {
            e.frame = vec![0; VAD_FRAME];
            e.on_frame(c == 'S', &mut ev);
        }
        ev
    }

    fn kinds(ev: &[VadEvent]) -> String {
        ev.iter()
            .map(|e| match e {
                VadEvent::Started(_) => 'B',
                VadEvent::Audio(_) => '.',
                VadEvent::BargeIn => '!',
                VadEvent::Paused(_) => 'P',
                VadEvent::Ended { cut: false } => 'E',
                VadEvent::Ended { cut: true } => 'C',
            })
            .collect()
    }

    #[test]
    fn short_blips_do_not_start_an_utterance() {
        let mut e = Endpointer::new(cfg());
        assert_eq!(kinds(&run(&mut e, "SS_SS_S__")), "");
    }

    #[test]
    fn utterance_starts_after_min_speech_and_ends_after_hangover() {
        let mut e = Endpointer::new(cfg());
        let ev = run(&mut e, "____SSSSSS__________");
        // starts at the 3rd speech frame, barge-in at 6 speech frames, ends after 10 silent ones.
        assert_eq!(kinds(&ev), "B...!..........E");
        let VadEvent::Started(audio) = &ev[0] else {
            panic!()
        };
        // All 7 frames so far fit in the history (pre-roll + min speech + margin).
        assert_eq!(audio.len(), 7 * VAD_FRAME);
    }

    /// A pause that would end a turn does not while digits are expected (the bot asked for
    /// a number) or were just heard; the longer hangover still ends it.
    #[test]
    fn a_pause_between_digit_groups_does_not_end_the_turn() {
        let pause = format!("SSSSSS{}SSSS{}", "_".repeat(15), "_".repeat(30));
        let mut e = Endpointer::new(cfg());
        assert_eq!(kinds(&run(&mut e, &pause)).matches('E').count(), 2);
        e.expect_digits(true);
        assert_eq!(kinds(&run(&mut e, &pause)).matches('E').count(), 1);
        e.expect_digits(false);
        let mut ev = run(&mut e, "SSSSSS");
        e.heard_digits(true);
        ev.extend(run(&mut e, &pause[6..]));
        assert_eq!(kinds(&ev).matches('E').count(), 1);
        // Heard digits last one utterance only.
        assert_eq!(kinds(&run(&mut e, &pause)).matches('E').count(), 2);
    }

    /// The model is asked once per pause; "complete" ends the turn at the short hangover,
    /// "incomplete" holds it to the long one (past the fixed hangover), no answer falls back
    /// to the fixed hangover.
    #[test]
    fn a_pause_asks_the_model_and_its_verdict_picks_the_hangover() {
        let mut e = Endpointer::new(smart());
        let ev = run(&mut e, "SSSSSS___");
        assert_eq!(kinds(&ev), "B...!...P");
        let Some(&VadEvent::Paused(n)) = ev.last() else {
            panic!()
        };
        e.turn_decided(n, Some(true));
        assert_eq!(kinds(&run(&mut e, "_")), ".E");

        let mut e = Endpointer::new(smart());
        run(&mut e, "SSSSSS___");
        e.turn_decided(1, Some(false));
        // Still open after the fixed hangover (10 frames); ends at 20.
        assert_eq!(kinds(&run(&mut e, &"_".repeat(16))), ".".repeat(16));
        assert_eq!(kinds(&run(&mut e, "_")), ".E");

        let mut e = Endpointer::new(smart());
        run(&mut e, "SSSSSS___");
        e.turn_decided(1, None);
        assert_eq!(kinds(&run(&mut e, &"_".repeat(7))), ".......E");

        // Pending: the long hangover is the limit, so a lost answer never holds a turn open.
        let mut e = Endpointer::new(smart());
        run(&mut e, "SSSSSS___");
        assert_eq!(
            kinds(&run(&mut e, &"_".repeat(17))),
            format!("{}E", ".".repeat(17))
        );
    }

    #[test]
    fn a_verdict_on_a_pause_the_caller_spoke_through_is_ignored() {
        let mut e = Endpointer::new(smart());
        run(&mut e, "SSSSSS___");
        // The caller goes on before the answer; it comes late and says complete.
        let ev = run(&mut e, "SS___");
        e.turn_decided(1, Some(true));
        assert_eq!(kinds(&ev), ".....P");
        assert!(matches!(ev.last(), Some(VadEvent::Paused(2))));
        assert_eq!(kinds(&run(&mut e, "__")), "..");
        e.turn_decided(2, Some(true));
        assert_eq!(kinds(&run(&mut e, "_")), ".E");
        // Outside an utterance a verdict changes nothing.
        e.turn_decided(2, Some(true));
        assert_eq!(kinds(&run(&mut e, "SSSSSS")), "B...!");
    }

    #[test]
    fn digits_are_not_put_to_the_model() {
        let mut e = Endpointer::new(smart());
        e.expect_digits(true);
        let ev = run(&mut e, &format!("SSSSSS{}", "_".repeat(30)));
        assert_eq!(kinds(&ev).matches('P').count(), 0);
        assert_eq!(kinds(&ev).matches('E').count(), 1);
    }

    #[test]
    fn long_monologue_is_cut() {
        let mut e = Endpointer::new(cfg());
        let ev = run(&mut e, &"S".repeat(150));
        assert!(kinds(&ev).contains('C'));
        assert!(e.in_utterance(), "speech continues into a new utterance");
    }

    fn tone(amplitude: f32, offset: usize) -> Vec<i16> {
        (0..VAD_FRAME)
            .map(|i| {
                let t = (i + offset) as f32 / 16_000.0;
                (amplitude * (2.0 * std::f32::consts::PI * 220.0 * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn digital_silence_skips_the_detector_and_sound_after_it_starts_clean() {
        let mut gated = Endpointer::new(cfg());
        let mut ev = Vec::new();
        // Sound, then a second of silence at the line's noise floor.
        gated.push(&tone(8_000.0, 0), &mut ev);
        let quiet: Vec<i16> = (0..16_000).map(|i| [0, 7, -12, 32][i % 4]).collect();
        gated.push(&quiet, &mut ev);
        assert!(gated.gated, "frames at or below the floor are gated");
        assert!(
            gated.detector.is_none(),
            "no detector state held in silence"
        );
        assert!(ev.is_empty());

        // The detector restarted at the gate, so it scores new sound like a fresh one.
        let mut fresh = earshot::Detector::default_boxed();
        for k in 0..5 {
            let frame = tone(6_000.0, k * VAD_FRAME);
            gated.frame.clear();
            gated.frame.extend_from_slice(&frame);
            assert_eq!(gated.is_speech(), fresh.predict_i16(&frame) >= 0.5);
        }
    }

    /// A silent line holds no history; speech after it starts with the full pre-roll, as
    /// digital silence, exactly as long as after a line that was never gated.
    #[test]
    fn a_silent_line_frees_its_history_and_the_pre_roll_comes_back_as_silence() {
        let quiet: Vec<i16> = (0..16_000).map(|i| [0, 7, -12, 32][i % 4]).collect();
        let speech: Vec<i16> = (0..12).flat_map(|k| tone(8_000.0, k * VAD_FRAME)).collect();
        let mut started = Vec::new();
        for gate in [true, false] {
            let mut e = Endpointer::new(cfg());
            let mut ev = Vec::new();
            if gate {
                e.push(&quiet, &mut ev);
                assert_eq!(e.history.capacity(), 0, "history freed on a silent line");
            } else {
                // The same length of quiet that is just above the gate.
                let hum: Vec<i16> = quiet.iter().map(|s| s.signum() * 40).collect();
                e.push(&hum, &mut ev);
                assert!(e.history.capacity() > 0);
            }
            e.push(&speech, &mut ev);
            let audio = ev.iter().find_map(|v| match v {
                VadEvent::Started(a) => Some(a.clone()),
                _ => None,
            });
            started.push(audio.expect("speech starts an utterance"));
        }
        assert_eq!(started[0].len(), started[1].len());
        assert!(
            started[0][..VAD_FRAME].iter().all(|s| *s == 0),
            "pre-roll is silence"
        );
        assert!(started[1][..VAD_FRAME].iter().any(|s| *s != 0));
    }

    #[test]
    fn history_never_outgrows_its_first_allocation() {
        let mut e = Endpointer::new(cfg());
        let cap = e.history.capacity();
        run(&mut e, &"_".repeat(200));
        assert_eq!(e.history.len(), e.history_cap / VAD_FRAME * VAD_FRAME);
        assert_eq!(e.history.capacity(), cap);
    }
}
