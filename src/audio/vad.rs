//! Voice activity detection (earshot, 16 kHz, 16 ms frames) and endpointing: turns a stream of
//! 16 kHz samples into utterances with speech start, optional barge-in signal and end.
//! Pure and synchronous; the caller feeds it and acts on the returned events.

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

    /// The silence that ends the current utterance.
    fn hangover_ms(&self) -> u64 {
        let d = if self.expect_digits || self.digits_heard {
            self.cfg.digits_end_of_utterance
        } else {
            self.cfg.end_of_utterance
        };
        d.as_millis() as u64
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
                events.push(VadEvent::Started(self.history.drain(..).collect()));
                self.check_barge_in(events);
            }
            return;
        }
        self.utterance_ms += VAD_FRAME_MS;
        if speech {
            self.utterance_speech_ms += VAD_FRAME_MS;
            self.silence_run_ms = 0;
        } else {
            self.silence_run_ms += VAD_FRAME_MS;
        }
        let frame = std::mem::replace(&mut self.frame, Vec::with_capacity(VAD_FRAME));
        events.push(VadEvent::Audio(frame));
        self.check_barge_in(events);
        let cut = self.utterance_ms >= self.cfg.max_utterance.as_millis() as u64;
        if cut || self.silence_run_ms >= self.hangover_ms() {
            self.in_utterance = false;
            self.speech_run_ms = 0;
            self.digits_heard = false;
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
