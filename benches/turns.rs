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
//!   speech start → barge-in delay of the rest.
//!
//! `cargo bench --bench turns`. One run; the audio is fixed, so the figures repeat exactly.

use std::time::Duration;

use voxhook::audio::vad::{Endpointer, EndpointerConfig, VadEvent};
use voxhook::sim::speech_set::{self, Utterance};

const RATE: usize = 16_000;
/// 20 ms frames, as the listener pushes them.
const FRAME: usize = 320;

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
    }
}

/// What the endpointer reported, in ms from the start of `pcm`.
#[derive(Default, Debug)]
struct Seen {
    starts: Vec<u64>,
    ends: Vec<u64>,
    barge_ins: Vec<u64>,
}

fn run(pcm: &[i16], expect_digits: bool) -> Seen {
    let mut e = Endpointer::new(config());
    e.expect_digits(expect_digits);
    let mut seen = Seen::default();
    let mut events = Vec::new();
    for (i, frame) in pcm.chunks(FRAME).enumerate() {
        events.clear();
        e.push(frame, &mut events);
        let at = ((i + 1) * FRAME * 1000 / RATE) as u64;
        for ev in &events {
            match ev {
                VadEvent::Started(_) => seen.starts.push(at),
                VadEvent::Ended { .. } => seen.ends.push(at),
                VadEvent::BargeIn => seen.barge_ins.push(at),
                VadEvent::Audio(_) => {}
            }
        }
    }
    seen
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

    // 1. End of speech → end of turn, and cut-offs on a mid-sentence pause.
    let mut lag = Vec::new();
    let mut split = [0usize; 3];
    let pauses = [400usize, 600, 900];
    for u in &english {
        let pcm: Vec<i16> = [u.pcm_16k.clone(), silence(2_000)].concat();
        let s = run(&pcm, false);
        if let Some(&end) = s.ends.last() {
            lag.push(end as f64 - speech_end_ms(&u.pcm_16k) as f64);
        }
        // A pause in the middle of the sentence (at half its length).
        let mid = (u.pcm_16k.len() / 2 / FRAME) * FRAME;
        for (k, &p) in pauses.iter().enumerate() {
            let paused: Vec<i16> = [
                u.pcm_16k[..mid].to_vec(),
                silence(p),
                u.pcm_16k[mid..].to_vec(),
                silence(2_000),
            ]
            .concat();
            split[k] += usize::from(run(&paused, false).ends.len() > 1);
        }
    }
    println!(
        "\nend of speech -> end of turn, real speech: n={} p50={:.0} ms p90={:.0} ms",
        lag.len(),
        pct(&mut lag.clone(), 0.5),
        pct(&mut lag, 0.9)
    );
    for (k, p) in pauses.iter().enumerate() {
        println!(
            "turns cut in two by a {p} ms mid-sentence pause: {}/{}",
            split[k],
            english.len()
        );
    }

    // 2. Digit strings read with pauses.
    let groups = [
        ("four five", "six seven"),
        ("one two three", "four five six"),
        ("nine eight", "seven six"),
        ("zero one", "two three"),
    ];
    println!("\ndigit strings read in two groups (flite): turns split in two");
    println!(
        "{:>8} {:>16} {:>22}",
        "pause", "fixed hangover", "digit-aware (prompt)"
    );
    let mut spoken_groups = Vec::new();
    for (a, b) in groups {
        spoken_groups.push((spoken(a).await, spoken(b).await));
    }
    for pause in [600usize, 900, 1_200, 1_500] {
        let (mut fixed, mut aware) = (0, 0);
        for (a, b) in &spoken_groups {
            let pcm: Vec<i16> = [a.clone(), silence(pause), b.clone(), silence(3_000)].concat();
            fixed += usize::from(run(&pcm, false).ends.len() > 1);
            aware += usize::from(run(&pcm, true).ends.len() > 1);
        }
        println!(
            "{:>6} ms {:>13}/{} {:>19}/{}",
            pause,
            fixed,
            groups.len(),
            aware,
            groups.len()
        );
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
    println!("\nfalse barge-ins (the VAD alone), per minute of audio");
    for (name, pcm) in [
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
    ] {
        let s = run(&pcm, false);
        let minutes = pcm.len() as f64 / RATE as f64 / 60.0;
        println!("  {name:<28} {:>5.1}", s.barge_ins.len() as f64 / minutes);
    }

    // 4. Missed barge-ins on real speech, and how long they take.
    let mut delay = Vec::new();
    let mut missed = 0;
    for u in &english {
        let s = run(&u.pcm_16k, false);
        match (s.starts.first(), s.barge_ins.first()) {
            (Some(&st), Some(&b)) => delay.push((b - st) as f64 + 160.0),
            _ => missed += 1,
        }
    }
    println!(
        "\nmissed barge-ins on real speech: {missed}/{}; speech start -> barge-in p50={:.0} ms p90={:.0} ms",
        english.len(),
        pct(&mut delay.clone(), 0.5),
        pct(&mut delay, 0.9)
    );
}
