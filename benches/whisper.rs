//! whisper.cpp speed as the daemon uses it: caller speech through the telephony path (flite
//! at 8 kHz, μ-law, resampled to 16 kHz), decoded by `WhisperStt` for each combination of
//! `threads` and `max_parallel_decodes`, with that many callers decoding at once.
//!
//! Per combination it prints the real-time factor of each utterance (decode time / audio
//! time; under contention when decodes run in parallel), the throughput in seconds of audio
//! decoded per second of wall time (how many callers speaking without pause the machine keeps
//! up with), that throughput per core in use, and the process CPU time spent per second of
//! audio (ggml's worker threads spin at their barriers, so this rises when they fight for
//! cores). The machine should be otherwise idle: the load average is printed with each row.
//!
//! `cargo bench --bench whisper` (options: `-- --threads 1,2 --parallel 1,2 --rounds N
//! --busy N`). `--busy N` runs N background threads that each compute 5 ms out of every
//! 10 ms, standing in for the rest of the daemon (flite, other calls' audio) and for other
//! processes, so a contended machine can be measured on purpose.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use voxhook::config::WhisperSettings;
use voxhook::sim::caller::caller_speech;
use voxhook::sim::speech_set::from_line;
use voxhook::stt::whisper::WhisperStt;

/// What callers say: 2.3 to 5.1 s each (flite's rms voice).
const UTTERANCES: &[&str] = &[
    "I would like to check my account balance.",
    "Can you tell me when my last payment arrived?",
    "Please send me a new debit card.",
    "I lost my card yesterday and I think someone used it at a gas station.",
];

fn arg_list(name: &str, default: &str) -> Vec<usize> {
    let args: Vec<String> = std::env::args().collect();
    let v = args
        .iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.into());
    v.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

/// 8 kHz caller speech as the listener hands it to whisper: μ-law round trip, then 16 kHz.
async fn telephony_16k(text: &str) -> Vec<i16> {
    from_line(&caller_speech(text).await.expect("flite"))
}

/// User + system CPU time of this process, in seconds (`/proc/self/stat`, 100 ticks/s).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// The 1-minute load average, to tell a quiet run from a contended one.
fn load_1m() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap_or_default()
}

/// Starts `n` threads that each keep a core half busy until `stop` is set.
fn busy_threads(n: usize, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let until = Instant::now() + Duration::from_millis(5);
                    while Instant::now() < until {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect()
}

fn words(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect::<String>()
        .to_lowercase()
}

#[tokio::main]
async fn main() {
    let threads = arg_list("--threads", "1,2");
    let parallel = arg_list("--parallel", "1,2");
    let rounds = arg_list("--rounds", "3").first().copied().unwrap_or(3);
    let busy = arg_list("--busy", "0").first().copied().unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut speech = Vec::new();
    for u in UTTERANCES {
        speech.push((*u, telephony_16k(u).await));
    }
    let speech = Arc::new(speech);
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/ggml-tiny.en.bin");

    println!(
        "\nwhisper tiny.en benchmark ({} utterances x {rounds} rounds per caller, {cores} cores)",
        UTTERANCES.len()
    );
    println!("background: {busy} thread(s) half busy");
    println!(
        "whisper.cpp build: {}",
        whisper_rs::print_system_info().trim()
    );
    println!(
        "{:>7} {:>8} {:>4} {:>9} {:>9} {:>9} {:>14} {:>14} {:>12} {:>8} {:>6}",
        "threads",
        "parallel",
        "n",
        "RTF p50",
        "RTF p90",
        "RTF max",
        "audio s/wall s",
        "per core used",
        "CPU s/audio s",
        "correct",
        "load"
    );
    for &t in &threads {
        for &p in &parallel {
            let stt = Arc::new(
                WhisperStt::load(&WhisperSettings {
                    model_path: model.into(),
                    language: "en".into(),
                    threads: t,
                    max_parallel_decodes: p,
                })
                .expect("whisper model (run scripts/install-model.py)"),
            );
            // stt.threads as configured, and as used when lowered to fit the cores.
            let used = stt.threads_per_decode();
            let t_shown = if used == t {
                t.to_string()
            } else {
                format!("{t}->{used}")
            };
            // Warm-up: the first decode allocates the state's buffers.
            stt.transcribe(speech[0].1.clone()).await.expect("decode");

            let stop = Arc::new(AtomicBool::new(false));
            let background = busy_threads(busy, &stop);
            let (started, cpu0) = (Instant::now(), cpu_s());
            let mut callers = JoinSet::new();
            for caller in 0..p {
                let (stt, speech) = (stt.clone(), speech.clone());
                callers.spawn(async move {
                    let mut out = Vec::new();
                    for i in 0..rounds * speech.len() {
                        let (text, pcm) = &speech[(caller + i) % speech.len()];
                        let tr = stt.transcribe(pcm.clone()).await.expect("decode");
                        out.push((*text, tr));
                    }
                    out
                });
            }
            let mut results = Vec::new();
            while let Some(res) = callers.join_next().await {
                results.extend(res.expect("caller task"));
            }
            let wall = started.elapsed().as_secs_f64();
            let cpu = cpu_s() - cpu0;
            stop.store(true, Ordering::Relaxed);
            for b in background {
                let _ = b.join();
            }

            let audio_s: f64 = results
                .iter()
                .map(|(_, t)| t.audio_ms as f64 / 1000.0)
                .sum();
            let correct = results
                .iter()
                .filter(|(want, t)| words(want) == words(&t.text))
                .count();
            let mut rtf: Vec<f64> = results
                .iter()
                .map(|(_, t)| t.decode_ms as f64 / t.audio_ms as f64)
                .collect();
            rtf.sort_by(f64::total_cmp);
            let q = |x: f64| rtf[((rtf.len() - 1) as f64 * x).round() as usize];
            let throughput = audio_s / wall;
            println!(
                "{t_shown:>7} {p:>8} {:>4} {:>9.3} {:>9.3} {:>9.3} {:>14.2} {:>14.2} {:>12} {:>5}/{:<2} {:>6}",
                rtf.len(),
                q(0.5),
                q(0.9),
                rtf[rtf.len() - 1],
                throughput,
                throughput / (used * p).min(cores) as f64,
                // The background threads' CPU time would count too.
                if busy == 0 {
                    format!("{:.3}", cpu / audio_s)
                } else {
                    "n/a".into()
                },
                correct,
                results.len(),
                load_1m()
            );
        }
    }
}
