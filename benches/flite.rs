//! Throughput and latency of the embedded flite TTS under concurrent calls: K "calls" each
//! speak N short sentences at once, one message after another, as the speaker task does.
//! Prints the sentences synthesized per second, the first-chunk latency (`synthesize`
//! called → first PCM chunk received) percentiles, and the most OS threads the process had
//! during the run (a synthesis that parks a blocking-pool thread shows up there).
//!
//! `cargo bench --bench flite` (options: `-- --sentences N --calls 1,8,32`).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use voxhook::tts::flite::FliteTts;
use voxhook::tts::TextToSpeech;

/// Short bot sentences, about one to three seconds of speech each.
const SENTENCES: &[&str] = &[
    "Sure, let me look up your account.",
    "Your balance is fifty four dollars.",
    "Is there anything else I can help with?",
    "Please enter your four digit PIN.",
    "Thank you for calling.",
    "Your card is on its way.",
    "One moment please.",
    "Your last payment arrived on Monday.",
];

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

/// One call: `n` messages of one sentence each; returns each message's first-chunk latency.
async fn call(tts: Arc<dyn TextToSpeech>, call_idx: usize, n: usize) -> Vec<Duration> {
    let mut firsts = Vec::with_capacity(n);
    for i in 0..n {
        let text = SENTENCES[(call_idx + i) % SENTENCES.len()];
        let asked = Instant::now();
        let mut rx = tts
            .synthesize(
                &voxhook::tts::TtsRequest::text(text),
                CancellationToken::new(),
            )
            .await
            .expect("synthesize");
        let first = rx.recv().await.expect("a chunk").expect("audio");
        firsts.push(asked.elapsed());
        assert!(!first.is_empty(), "no audio for {text:?}");
        while let Some(chunk) = rx.recv().await {
            chunk.expect("audio");
        }
    }
    firsts
}

/// This process's OS thread count (`/proc/self/status`).
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let n: usize = arg("--sentences")
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let ks: Vec<usize> = arg("--calls")
        .unwrap_or_else(|| "1,8,32".into())
        .split(',')
        .filter_map(|k| k.trim().parse().ok())
        .collect();
    let tts: Arc<dyn TextToSpeech> = Arc::new(FliteTts::new("slt").expect("flite"));
    // Warm-up: first-touch costs (lexicon pages, allocator arenas) stay out of the figures.
    call(tts.clone(), 0, SENTENCES.len()).await;

    println!("\nflite benchmark ({n} one-sentence messages per call, all calls at once)");
    println!(
        "{:>6} {:>10} {:>10} {:>14} {:>14} {:>14} {:>12}",
        "calls",
        "sentences",
        "wall (s)",
        "sentences/s",
        "p50 first ms",
        "p99 first ms",
        "peak threads"
    );
    for k in ks {
        let started = Instant::now();
        let sampling = CancellationToken::new();
        let sampler = tokio::spawn({
            let stop = sampling.clone();
            async move {
                let mut peak = threads();
                while !stop.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    peak = peak.max(threads());
                }
                peak
            }
        });
        let mut calls = JoinSet::new();
        for call_idx in 0..k {
            calls.spawn(call(tts.clone(), call_idx, n));
        }
        let mut firsts = Vec::with_capacity(k * n);
        while let Some(res) = calls.join_next().await {
            firsts.extend(res.expect("call task"));
        }
        let wall = started.elapsed();
        sampling.cancel();
        let peak_threads = sampler.await.expect("sampler");
        firsts.sort();
        let p = |q: f64| firsts[((firsts.len() - 1) as f64 * q).round() as usize];
        println!(
            "{k:>6} {:>10} {:>10.2} {:>14.1} {:>14.1} {:>14.1} {peak_threads:>12}",
            firsts.len(),
            wall.as_secs_f64(),
            firsts.len() as f64 / wall.as_secs_f64(),
            ms(p(0.5)),
            ms(p(0.99)),
        );
    }
}
