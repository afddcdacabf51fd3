//! Turn-taking as callers feel it, measured on the endpointer voxhook runs on every call
//! (earshot VAD + hangover, `audio::vad::Endpointer`, default `[audio]` settings), fed
//! audio through the telephone path (8 kHz μ-law, back to 16 kHz):
//!
//! - **end of speech → end of turn** on real human speech (Debian `pocketsphinx-testdata`,
//!   10 utterances), complete as recorded and with a mid-sentence pause inserted (how often
//!   a caller who pauses is cut off);
//! - **digit strings read with pauses** ("four five … six seven", flite voice, pauses
//!   0.6–1.5 s): how often the turn splits in two, with and without digit-aware endpointing
//!   (the bot's prompt asked for a number);
//! - **false barge-ins**: the bot's own voice fed back at −20 dB (echo), babble (three
//!   talkers at −20 dB), clicks and line noise, each 20 s, per minute of audio;
//! - **missed barge-ins**: real utterances that never reach `barge_in_min_speech_ms`, and the
//!   speech start → barge-in delay of the rest;
//! - **smart-turn v3.2 as the end of a turn** (`[audio.smart_turn]`,
//!   `models/smart-turn-v3.2-cpu.onnx`): end of speech → end of turn and cut-offs on a
//!   mid-sentence pause, fixed hangover against the model asked at each 200 ms pause (its
//!   verdict taking effect after the CPU time it took, as on an idle core), and its CPU per
//!   decision;
//! - **Silero VAD as a second opinion** (`[audio.silero]`, `models/silero_vad.onnx` from
//!   `scripts/install-onnx.sh`): the same false and missed barge-ins when Silero must
//!   confirm each one (its last 320 ms scored ≥ 0.5, as the listener asks), two more sets
//!   (a steady dial-tone-like hum, in-band keypad tones), the utterances earshot opens on
//!   each set and how many of them Silero's trim drops, and Silero's CPU per 32 ms window,
//!   alone and batched over 8 and 32 calls.
//!
//! `cargo bench --bench turns`. One run; the audio is fixed, so the figures repeat exactly.

use std::time::Duration;

use voxhook::audio::silero::{self, SileroModel, SileroState};
use voxhook::audio::smart_turn::SmartTurnModel;
use voxhook::audio::vad::{Endpointer, EndpointerConfig, TurnTiming, VadEvent};
use voxhook::sim::speech_set::{self, Utterance};

const RATE: usize = 16_000;
/// 20 ms frames, as the listener pushes them.
const FRAME: usize = 320;
/// The listener's barge-in candidate for Silero: the utterance's last 320 ms.
const CONFIRM: usize = 10 * silero::WINDOW;
/// `[audio.silero]` defaults.
const SILERO_THRESHOLD: f32 = 0.5;
const TRIM_MARGIN: usize = 100 * 16;

fn config() -> EndpointerConfig {
    // The `[audio]` defaults.
    EndpointerConfig {
        threshold: 0.5,
        min_speech: Duration::from_millis(160),
        barge_in_min_speech: Duration::from_millis(240),
        barge_in_min_words: 0,
        end_of_utterance: Duration::from_millis(700),
        digits_end_of_utterance: Duration::from_millis(2_000),
        pre_roll: Duration::from_millis(300),
        max_utterance: Duration::from_secs(30),
        smart_turn: None,
    }
}

/// The end-of-turn model and the probability from which it calls a turn complete.
struct Turn<'a> {
    model: &'a mut SmartTurnModel,
    threshold: f32,
}

/// The `[audio.smart_turn]` defaults.
const TURN_TIMING: TurnTiming = TurnTiming {
    pause: Duration::from_millis(200),
    complete: Duration::from_millis(200),
    incomplete: Duration::from_millis(1_500),
};

/// What the endpointer reported, in ms from the start of `pcm`.
#[derive(Default, Debug)]
struct Seen {
    starts: Vec<u64>,
    ends: Vec<u64>,
    barge_ins: Vec<u64>,
    /// Each utterance's audio, as the listener would hand it to an utterance STT.
    utterances: Vec<Vec<i16>>,
    /// The end-of-turn model's decisions: probability and CPU seconds.
    decisions: Vec<(f32, f64)>,
}

fn run(pcm: &[i16], expect_digits: bool) -> Seen {
    run_with(pcm, expect_digits, None)
}

/// As the listener runs it, with the end-of-turn model when `turn` is given: asked at each
/// pause on the utterance so far, its verdict reaching the endpointer as many frames later
/// as its CPU time covers (the delay on an idle core).
fn run_with(pcm: &[i16], expect_digits: bool, mut turn: Option<Turn>) -> Seen {
    let mut cfg = config();
    if turn.is_some() {
        cfg.smart_turn = Some(TURN_TIMING);
    }
    let mut e = Endpointer::new(cfg);
    e.expect_digits(expect_digits);
    // (frame index at which it lands, pause, complete)
    let mut verdict: Option<(usize, u32, bool)> = None;
    let mut seen = Seen::default();
    let mut events = Vec::new();
    for (i, frame) in pcm.chunks(FRAME).enumerate() {
        if let Some((due, pause, complete)) = verdict {
            if i >= due {
                e.turn_decided(pause, Some(complete));
                verdict = None;
            }
        }
        events.clear();
        e.push(frame, &mut events);
        let at = ((i + 1) * FRAME * 1000 / RATE) as u64;
        for ev in &events {
            match ev {
                VadEvent::Started(a) => {
                    seen.starts.push(at);
                    seen.utterances.push(a.clone());
                }
                VadEvent::Ended { .. } => seen.ends.push(at),
                VadEvent::BargeIn => seen.barge_ins.push(at),
                &VadEvent::Paused(pause) => {
                    if let (Some(t), Some(u)) = (turn.as_mut(), seen.utterances.last()) {
                        let v = t.model.predict(u).expect("smart-turn run");
                        let cpu = v.cpu.as_secs_f64();
                        seen.decisions.push((v.probability, cpu));
                        let frames = (cpu * RATE as f64 / FRAME as f64).ceil() as usize;
                        verdict = Some((i + 1 + frames, pause, v.probability >= t.threshold));
                    }
                }
                VadEvent::Audio(a) => {
                    if let Some(u) = seen.utterances.last_mut() {
                        u.extend_from_slice(a);
                    }
                }
            }
        }
    }
    seen
}

/// Where to insert a pause between two words near the middle of `pcm`: the start of its
/// quietest 20 ms frame between 35 % and 65 % of its length.
fn word_gap(pcm: &[i16]) -> usize {
    let frames = pcm.len() / FRAME;
    let energy = |k: usize| -> f64 {
        pcm[k * FRAME..(k + 1) * FRAME]
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum()
    };
    let quietest = (frames * 35 / 100..frames * 65 / 100)
        .min_by(|&a, &b| energy(a).total_cmp(&energy(b)))
        .unwrap_or(frames / 2);
    quietest * FRAME
}

fn silence(ms: usize) -> Vec<i16> {
    vec![0; RATE * ms / 1000]
}

/// The last sample louder than the line's noise floor, in ms (the speech's true end).
fn speech_end_ms(pcm: &[i16]) -> u64 {
    let last = pcm
        .chunks(FRAME)
        .rposition(|f| {
            let e: f64 = f.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>();
            (e / f.len() as f64).sqrt() > 300.0
        })
        .unwrap_or(0);
    ((last + 1) * FRAME * 1000 / RATE) as u64
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Speech by flite through the telephone path, at 16 kHz.
async fn spoken(text: &str) -> Vec<i16> {
    let pcm_8k = voxhook::sim::caller::caller_speech(text)
        .await
        .expect("flite");
    speech_set::from_line(&pcm_8k)
}

/// `pcm` scaled by `db` (negative: quieter).
fn scaled(pcm: &[i16], db: f64) -> Vec<i16> {
    let g = 10f64.powf(db / 20.0);
    pcm.iter().map(|&s| (f64::from(s) * g) as i16).collect()
}

fn looped(pcm: &[i16], ms: usize) -> Vec<i16> {
    pcm.iter().copied().cycle().take(RATE * ms / 1000).collect()
}

fn mix(parts: &[Vec<i16>]) -> Vec<i16> {
    let n = parts.iter().map(Vec::len).max().unwrap_or(0);
    (0..n)
        .map(|i| {
            let s: i32 = parts
                .iter()
                .map(|p| i32::from(p.get(i).copied().unwrap_or(0)))
                .sum();
            s.clamp(i16::MIN.into(), i16::MAX.into()) as i16
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let english: Vec<Utterance> =
        speech_set::pocketsphinx_english(std::path::Path::new(speech_set::POCKETSPHINX_DATA))
            .expect("pocketsphinx-testdata (./scripts/setup.sh installs it)");
    println!("voxhook turn-taking (earshot VAD, [audio] defaults: hangover 700 ms, digits 2000 ms, barge-in 240 ms)");

    // 1. End of speech → end of turn, and cut-offs on a mid-sentence pause, with the fixed
    // hangover and with smart-turn deciding each pause.
    let mut turn_model = SmartTurnModel::load(
        std::path::Path::new("models/smart-turn-v3.2-cpu.onnx"),
        std::path::Path::new("models/libonnxruntime.so.1.32.0"),
    )
    .expect("smart-turn (./scripts/install-onnx.sh installs it)");
    let pauses = [400usize, 600, 900];
    println!("\nend of speech -> end of turn on real speech, and turns cut in two by a pause of 400 / 600 / 900 ms");
    println!("between two words in their middle: 5 LibriVox sentences, 5 spoken card lists (\"ten | of clubs\")");
    println!(
        "  {:<26} {:>8} {:>8} {:>16} {:>16}",
        "", "p50", "p90", "sentences cut", "card lists cut"
    );
    let mut decisions = Vec::new();
    let mut end_verdicts = (0usize, 0usize);
    // The default threshold, then higher ones: fewer mid-sentence cut-offs, more waits.
    for smart in [None, Some(0.5f32), Some(0.7), Some(0.9)] {
        let mut lag = Vec::new();
        // [sentences, card lists][pause]
        let mut split = [[0usize; 3]; 2];
        for u in &english {
            let pcm: Vec<i16> = [u.pcm_16k.clone(), silence(2_000)].concat();
            let turn = smart.map(|threshold| Turn {
                model: &mut turn_model,
                threshold,
            });
            let s = run_with(&pcm, false, turn);
            if let Some(&end) = s.ends.last() {
                lag.push(end as f64 - speech_end_ms(&u.pcm_16k) as f64);
            }
            if smart == Some(0.5) {
                if let Some(&(p, _)) = s.decisions.last() {
                    end_verdicts.0 += usize::from(p >= 0.5);
                    end_verdicts.1 += 1;
                }
            }
            decisions.extend(s.decisions);
            let mid = word_gap(&u.pcm_16k);
            for (k, &p) in pauses.iter().enumerate() {
                let paused: Vec<i16> = [
                    u.pcm_16k[..mid].to_vec(),
                    silence(p),
                    u.pcm_16k[mid..].to_vec(),
                    silence(2_000),
                ]
                .concat();
                let turn = smart.map(|threshold| Turn {
                    model: &mut turn_model,
                    threshold,
                });
                let s = run_with(&paused, false, turn);
                let set = usize::from(!u.id.starts_with("sense_and_sensibility"));
                split[set][k] += usize::from(s.ends.len() > 1);
                decisions.extend(s.decisions);
            }
        }
        let cuts = |k: usize| format!("{} / {} / {}", split[k][0], split[k][1], split[k][2]);
        println!(
            "  {:<26} {:>5.0} ms {:>5.0} ms {:>16} {:>16}",
            match smart {
                None => "fixed hangover (700 ms)".to_string(),
                Some(t) => format!("smart-turn, threshold {t}"),
            },
            pct(&mut lag.clone(), 0.5),
            pct(&mut lag, 0.9),
            cuts(0),
            cuts(1),
        );
    }
    let mut cpu: Vec<f64> = decisions.iter().map(|&(_, c)| c * 1e3).collect();
    println!(
        "  smart-turn (asked at a 200 ms pause): {} decisions; at the end of a sentence {}/{} said complete (threshold 0.5); CPU per decision p50={:.0} ms p90={:.0} ms (one thread)",
        cpu.len(),
        end_verdicts.0,
        end_verdicts.1,
        pct(&mut cpu.clone(), 0.5),
        pct(&mut cpu, 0.9)
    );

    // 2. Digit strings read with pauses.
    let groups = [
        ("four five", "six seven"),
        ("one two three", "four five six"),
        ("nine eight", "seven six"),
        ("zero one", "two three"),
    ];
    println!("\ndigit strings read in two groups (flite): turns split in two");
    println!(
        "{:>8} {:>16} {:>22} {:>22}",
        "pause", "fixed hangover", "digit-aware (prompt)", "smart-turn, no prompt"
    );
    let mut spoken_groups = Vec::new();
    for (a, b) in groups {
        spoken_groups.push((spoken(a).await, spoken(b).await));
    }
    for pause in [600usize, 900, 1_200, 1_500] {
        let (mut fixed, mut aware, mut smart) = (0, 0, 0);
        for (a, b) in &spoken_groups {
            let pcm: Vec<i16> = [a.clone(), silence(pause), b.clone(), silence(3_000)].concat();
            fixed += usize::from(run(&pcm, false).ends.len() > 1);
            aware += usize::from(run(&pcm, true).ends.len() > 1);
            let turn = Turn {
                model: &mut turn_model,
                threshold: 0.5,
            };
            smart += usize::from(run_with(&pcm, false, Some(turn)).ends.len() > 1);
        }
        let n = groups.len();
        println!("{pause:>6} ms {fixed:>13}/{n} {aware:>19}/{n} {smart:>19}/{n}");
    }

    // 3. False barge-ins on what is not the caller speaking.
    let bot = spoken(
        "Welcome to the bank. Your balance is two thousand dollars. Your next statement is due \
         at the end of the month. Is there anything else I can help you with today?",
    )
    .await;
    let babble = mix(&[
        scaled(&looped(&english[0].pcm_16k, 20_000), -20.0),
        scaled(&looped(&english[3].pcm_16k, 20_000), -20.0),
        scaled(&looped(&english[6].pcm_16k, 20_000), -20.0),
    ]);
    let clicks: Vec<i16> = (0..RATE * 20)
        .map(|i| if i % 4_000 < 16 { 12_000 } else { 0 })
        .collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let noise = speech_set::white_noise(RATE * 20, 600.0, &mut seed);
    // Abrupt at both ends, as a tone keyed on and off (`speech_set::hum` with no fade).
    let hum = speech_set::hum(20_000, 16_000, 1_500.0, 0);
    // Keys pressed while the bot talks, heard in-band: 150 ms tone pairs, 4 per second.
    let pairs = [
        (697.0, 1209.0),
        (770.0, 1336.0),
        (852.0, 1477.0),
        (941.0, 1336.0),
    ];
    let keypad: Vec<i16> = (0..RATE * 20)
        .map(|i| {
            let (k, within) = (i / 4_000, i % 4_000);
            if within >= 2_400 {
                return 0;
            }
            let (lo, hi) = pairs[k % pairs.len()];
            let t = i as f64 / RATE as f64;
            let x = (2.0 * std::f64::consts::PI * lo * t).sin()
                + (2.0 * std::f64::consts::PI * hi * t).sin();
            (x * 4_000.0) as i16
        })
        .collect();
    let sets = [
        (
            "bot echo at -20 dB",
            speech_set::from_line(&speech_set::to_line(
                &scaled(&looped(&bot, 20_000), -20.0),
                16_000,
            )),
        ),
        ("babble, 3 talkers at -20 dB", babble),
        ("clicks (4 per second)", clicks),
        ("line noise (-35 dBFS)", noise),
        (
            "hum 350+440 Hz (-27 dBFS)",
            speech_set::from_line(&speech_set::to_line(&hum, 16_000)),
        ),
        (
            "keypad tones in-band",
            speech_set::from_line(&speech_set::to_line(&keypad, 16_000)),
        ),
    ];
    let mut model = SileroModel::load(
        std::path::Path::new("models/silero_vad.onnx"),
        std::path::Path::new("models/libonnxruntime.so.1.32.0"),
    )
    .expect("Silero VAD (./scripts/install-onnx.sh installs it)");
    println!(
        "\nfalse barge-ins per minute of audio; utterances the VAD opened, and how many Silero's trim drops"
    );
    println!(
        "  {:<28} {:>8} {:>15} {:>11} {:>14}",
        "set", "earshot", "+ Silero conf.", "utterances", "Silero drops"
    );
    for (name, pcm) in &sets {
        let s = run(pcm, false);
        let minutes = pcm.len() as f64 / RATE as f64 / 60.0;
        let confirmed = s
            .barge_ins
            .iter()
            .filter(|&&at| confirms(&mut model, pcm, at))
            .count();
        let dropped = s
            .utterances
            .iter()
            .filter(|u| trim(&mut model, u).is_none())
            .count();
        println!(
            "  {name:<28} {:>8.1} {:>15.1} {:>11} {:>14}",
            s.barge_ins.len() as f64 / minutes,
            confirmed as f64 / minutes,
            s.utterances.len(),
            dropped
        );
    }

    // The same sets cut into separate 2 s clips (faded in and out over 50 ms, a second of
    // silence either side), each a fresh call: a rate over many candidates, not over the one
    // long utterance a continuous set makes.
    println!("\nbarge-ins raised on 12 clips of 2 s per set: earshot alone / confirmed by Silero");
    for (name, pcm) in &sets {
        let (mut raised, mut confirmed) = (0, 0);
        for k in 0..12 {
            let at = k * RATE * 3 / 2;
            let clip = faded(&pcm[at..at + 2 * RATE], 50 * 16);
            let padded: Vec<i16> = [silence(1_000), clip, silence(1_000)].concat();
            let s = run(&padded, false);
            if let Some(&b) = s.barge_ins.first() {
                raised += 1;
                confirmed += usize::from(confirms(&mut model, &padded, b));
            }
        }
        println!("  {name:<28} {raised:>2} / {confirmed:>2}");
    }

    // 4. Missed barge-ins on real speech, and how long they take.
    let mut delay = Vec::new();
    let mut missed = 0;
    let mut missed_confirmed = 0;
    let mut dropped = 0;
    let (mut kept_ms, mut total_ms) = (0usize, 0usize);
    for u in &english {
        let s = run(&u.pcm_16k, false);
        match (s.starts.first(), s.barge_ins.first()) {
            (Some(&st), Some(&b)) => delay.push((b - st) as f64 + 160.0),
            _ => missed += 1,
        }
        if !s
            .barge_ins
            .first()
            .is_some_and(|&at| confirms(&mut model, &u.pcm_16k, at))
        {
            missed_confirmed += 1;
        }
        for utt in &s.utterances {
            total_ms += utt.len() / 16;
            match trim(&mut model, utt) {
                Some(kept) => kept_ms += kept / 16,
                None => dropped += 1,
            }
        }
    }
    println!(
        "\nmissed barge-ins on real speech: {missed}/{}; speech start -> barge-in p50={:.0} ms p90={:.0} ms",
        english.len(),
        pct(&mut delay.clone(), 0.5),
        pct(&mut delay, 0.9)
    );
    println!(
        "missed barge-ins on real speech with Silero confirmation: {missed_confirmed}/{}",
        english.len()
    );
    println!(
        "Silero trim on real speech: {dropped} utterance(s) dropped; {kept_ms} of {total_ms} ms kept"
    );

    // 5. Silero's CPU per window, alone and batched.
    let windows: Vec<&[i16]> = english
        .iter()
        .flat_map(|u| u.pcm_16k.chunks_exact(silero::WINDOW))
        .collect();
    println!("\nSilero CPU per 32 ms window (one thread)");
    for batch in [1usize, 8, 32] {
        let mut states = vec![SileroState::default(); batch];
        // Warm up, then time 2,000 windows' worth of runs.
        let runs = 2_000 / batch;
        let (mut t0, mut c0) = (tokio::time::Instant::now(), thread_cpu());
        for r in 0..runs + 20 {
            if r == 20 {
                (t0, c0) = (tokio::time::Instant::now(), thread_cpu());
            }
            let w: Vec<&[i16]> = (0..batch)
                .map(|b| windows[(r * batch + b) % windows.len()])
                .collect();
            let mut refs: Vec<&mut SileroState> = states.iter_mut().collect();
            model.run_batch(&mut refs, &w).expect("Silero run");
        }
        let n = (runs * batch) as f64;
        let wall = t0.elapsed().as_secs_f64() * 1e6 / n;
        let cpu = (thread_cpu() - c0) * 1e6 / n;
        // A call fills a window every 32 ms: 31.25 windows per second.
        let calls = 1e6 / (cpu * 31.25);
        println!(
            "  batch {batch:>2}: {cpu:>6.0} µs CPU ({wall:.0} µs wall) per window; one core scores every window of {calls:.0} calls"
        );
    }
}

/// CPU time of this thread, in seconds (ONNX Runtime runs on it: one intra-op thread).
fn thread_cpu() -> f64 {
    voxhook::audio::onnx::thread_cpu().as_secs_f64()
}

/// `pcm` with `n` samples of raised-cosine fade at each end.
fn faded(pcm: &[i16], n: usize) -> Vec<i16> {
    let len = pcm.len();
    pcm.iter()
        .enumerate()
        .map(|(i, &x)| {
            let edge = i.min(len - 1 - i);
            if edge >= n {
                return x;
            }
            let g = 0.5 - 0.5 * (std::f64::consts::PI * edge as f64 / n as f64).cos();
            (f64::from(x) * g) as i16
        })
        .collect()
}

/// Silero's verdict on the barge-in the VAD raised at `at_ms` in `pcm`: the last 320 ms, as
/// the listener sends it.
fn confirms(model: &mut SileroModel, pcm: &[i16], at_ms: u64) -> bool {
    let end = (at_ms as usize * 16).min(pcm.len());
    let probs = model
        .score(&pcm[end.saturating_sub(CONFIRM)..end])
        .expect("Silero run");
    silero::confirms(&probs, SILERO_THRESHOLD)
}

/// Samples of `utterance` Silero's trim keeps (`None`: dropped as no speech).
fn trim(model: &mut SileroModel, utterance: &[i16]) -> Option<usize> {
    let probs = model.score(utterance).expect("Silero run");
    silero::speech_span(&probs, SILERO_THRESHOLD, TRIM_MARGIN, utterance.len()).map(|r| r.len())
}
