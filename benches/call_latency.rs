//! End-to-end benchmark of the real `voxhook` binary with the embedded engines:
//! bridge latencies (end of caller speech → bot request; bot reply → first audio frame),
//! whisper's real-time factor per utterance, and resident memory per idle call.
//!
//! `cargo bench --bench call_latency` (options: `-- --calls N --idle N --threads N
//! --parallel N`, the last two for `[stt]`; no-input reprompts are off so idle calls stay
//! idle). `--stt deepgram|openai|assemblyai|vosk` (with `--eot backend`: the backend's own end
//! of turn) and `--tts openai|deepgram|elevenlabs` swap in a cloud backend
//! against its local fake, configured with the vendor's typical latency (`--vendor-ms N`). Figures are percentiles from one run; the daemon's own JSON log lines are the
//! measurement source.
//!
//! Profiling idle memory: `VOXHOOK_BENCH_WRAP="heaptrack -o /tmp/vx"` runs the daemon under a
//! profiler, and `VOXHOOK_BENCH_HOLD=SECS` keeps the idle calls up that long after measuring
//! (stop the daemon then, and the profile's "leaked" allocations are what the calls hold).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use voxhook::sim::caller::{caller_speech, CallerOptions, SimCaller};
use voxhook::sim::kore::KoreSim;

const UTTERANCES: &[&str] = &[
    "I would like to check my account balance.",
    "Can you tell me when my last payment arrived?",
    "Please send me a new debit card.",
];

struct Daemon {
    child: Child,
    port: u16,
    logs: Arc<Mutex<Vec<Value>>>,
}

impl Daemon {
    fn start(webhook_url: &str, stt: &str, tts: &str) -> Daemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let cfg = std::env::temp_dir().join(format!("voxhook-bench-{}.toml", std::process::id()));
        std::fs::write(
            &cfg,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nmax_concurrent_calls = 1000\n\
                 shutdown_grace_period_secs = 0\n\
                 [stt]\n{stt}\n[tts]\n{tts}\n\
                 [bot]\nplatform = \"kore_v2\"\nwebhook_url = \"{webhook_url}\"\n\
                 client_id = \"cs-bench\"\npoll_interval_ms = 100\n\
                 [call]\nno_input_timeout_ms = 0\n"
            ),
        )
        .expect("write config");
        // VOXHOOK_BENCH_WRAP runs the daemon under a profiler, e.g. "heaptrack -o /tmp/vx".
        let wrap = std::env::var("VOXHOOK_BENCH_WRAP").unwrap_or_default();
        let mut argv: Vec<String> = wrap.split_whitespace().map(String::from).collect();
        argv.push(env!("CARGO_BIN_EXE_voxhook").to_string());
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .args(["--log-format", "json", "run", "--config"])
            .arg(&cfg)
            .env("VOXHOOK__BOT__CLIENT_SECRET", "bench-secret")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start voxhook");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        Daemon { child, port, logs }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Every value of `field` in the first `upto` log events whose message is `message`.
    fn field(&self, upto: usize, message: &str, field: &str) -> Vec<f64> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .take(upto)
            .filter(|v| v["fields"]["message"] == message)
            .filter_map(|v| v["fields"][field].as_f64())
            .filter(|x| *x >= 0.0)
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentiles(name: &str, mut xs: Vec<f64>, unit: &str) {
    if xs.is_empty() {
        println!("{name:<44} no samples");
        return;
    }
    xs.sort_by(f64::total_cmp);
    let p = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<44} n={:<3} p50={:>8.2}{unit} p90={:>8.2}{unit} max={:>8.2}{unit}",
        xs.len(),
        p(0.5),
        p(0.9),
        xs[xs.len() - 1]
    );
}

fn arg_str(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// Cloud backends' local fakes; they run until dropped.
type Fakes = Vec<Box<dyn std::any::Any>>;

/// The `[stt]` and `[tts]` bodies for the chosen backends, starting their fakes.
async fn backends(threads: usize, parallel: usize, fakes: &mut Fakes) -> (String, String) {
    use voxhook::sim::{assemblyai, deepgram, elevenlabs, openai, vosk};
    let vendor = Duration::from_millis(arg("--vendor-ms", 150) as u64);
    let root = env!("CARGO_MANIFEST_DIR");
    let stt = match arg_str("--stt", "whisper").as_str() {
        "deepgram" => {
            let sim = deepgram::DeepgramSim::start(deepgram::DeepgramSimOptions {
                transcripts: UTTERANCES.iter().map(|u| u.to_string()).collect(),
                latency: vendor,
                ..Default::default()
            })
            .await
            .unwrap();
            let s = voxhook::sim::backend_section("deepgram", "dg-test-key", &sim.base_url());
            fakes.push(Box::new(sim));
            s
        }
        "openai" => {
            let sim = openai::OpenAiSim::start(openai::OpenAiSimOptions {
                transcripts: UTTERANCES.iter().map(|u| u.to_string()).collect(),
                latency: vendor,
                ..Default::default()
            })
            .await
            .unwrap();
            let s = voxhook::sim::backend_section("openai", "sk-test-key", &sim.base_url());
            fakes.push(Box::new(sim));
            s
        }
        // `--eot backend`: the backend's own end of turn instead of the VAD's.
        "assemblyai" => {
            let sim = assemblyai::AssemblyAiSim::start(assemblyai::AssemblyAiSimOptions {
                transcripts: UTTERANCES.iter().map(|u| u.to_string()).collect(),
                latency: vendor,
                ..Default::default()
            })
            .await
            .unwrap();
            let mut s =
                voxhook::sim::backend_section("assemblyai", "aai-test-key", &sim.base_url());
            if arg_str("--eot", "vad") == "backend" {
                s.push_str("\nend_of_turn = \"assemblyai\"");
            }
            fakes.push(Box::new(sim));
            s
        }
        "vosk" => {
            let sim = vosk::VoskSim::start(vosk::VoskSimOptions {
                transcripts: UTTERANCES.iter().map(|u| u.to_string()).collect(),
                // Vosk answers every 20 ms frame, one after the other: a server on the
                // same network, at most 10 ms a reply.
                latency: vendor.min(Duration::from_millis(10)),
                ..Default::default()
            })
            .await
            .unwrap();
            let mut s = format!("provider = \"vosk\"\nbase_url = \"{}\"", sim.base_url());
            if arg_str("--eot", "vad") == "backend" {
                s.push_str("\nmode = \"continuous\"\nend_of_turn = \"vosk\"");
            }
            fakes.push(Box::new(sim));
            s
        }
        _ => format!(
            "provider = \"whisper\"\nmodel_path = \"{root}/models/ggml-tiny.en.bin\"\n\
             threads = {threads}\nmax_parallel_decodes = {parallel}"
        ),
    };
    let tts = match arg_str("--tts", "flite").as_str() {
        "openai" => {
            let sim = openai::OpenAiSim::start(openai::OpenAiSimOptions {
                latency: vendor,
                ..Default::default()
            })
            .await
            .unwrap();
            let s = voxhook::sim::backend_section("openai", "sk-test-key", &sim.base_url());
            fakes.push(Box::new(sim));
            s
        }
        "deepgram" => {
            let sim = deepgram::AuraSim::start(deepgram::AuraSimOptions {
                latency: vendor,
                ..Default::default()
            })
            .await
            .unwrap();
            let s = voxhook::sim::backend_section("deepgram", "dg-test-key", &sim.base_url())
                + "\nencoding = \"mulaw\"";
            fakes.push(Box::new(sim));
            s
        }
        "elevenlabs" => {
            let sim = elevenlabs::ElevenLabsSim::start(elevenlabs::ElevenLabsSimOptions {
                latency: vendor,
                ..Default::default()
            })
            .await
            .unwrap();
            let s = voxhook::sim::backend_section("elevenlabs", "xi-test-key", &sim.base_url());
            fakes.push(Box::new(sim));
            s
        }
        _ => "provider = \"flite\"".to_string(),
    };
    (stt, tts)
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let n_calls = arg("--calls", 6);
    let n_idle = arg("--idle", 100);
    // The defaults of `[stt]`.
    let threads = arg("--threads", 2);
    let parallel = arg("--parallel", 1);
    let bot = KoreSim::start("st-bench", "cs-bench", "bench-secret")
        .await
        .unwrap();
    let mut fakes = Fakes::new();
    let (stt, tts) = backends(threads, parallel, &mut fakes).await;
    let daemon = Daemon::start(&bot.webhook_url(), &stt, &tts);
    let url = format!("ws://127.0.0.1:{}/twilio", daemon.port);
    let ready = format!("http://127.0.0.1:{}/ready", daemon.port);
    for _ in 0..300 {
        if reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut speech = HashMap::new();
    for u in UTTERANCES {
        speech.insert(*u, caller_speech(u).await.expect("flite"));
    }
    let limit = Duration::from_secs(60);
    let quiet = Duration::from_millis(800);

    // Latency: calls one after another, one utterance each, answered by the dev bot.
    for i in 0..n_calls {
        let from = format!("+1555010{i:04}");
        let caller = SimCaller::connect(CallerOptions::new(&url, &from, "+15550000000"))
            .await
            .unwrap();
        caller.wait_bot_quiet(quiet, limit).await.expect("greeting");
        caller
            .say(speech[UTTERANCES[i % UTTERANCES.len()]].clone())
            .await;
        caller.finish_speaking().await;
        caller.wait_bot_quiet(quiet, limit).await.expect("answer");
        caller.hang_up().await;
    }

    let latency_logs = daemon.logs.lock().unwrap().len();

    // Memory: idle calls (connected, greeting played, caller silent). A first batch warms the
    // allocator (synthesis buffers, thread arenas); the second batch is what is measured.
    let mut idle = Vec::new();
    let mut rss = Vec::new();
    for batch in 0..2 {
        for i in 0..n_idle {
            let from = format!("+1555{batch}20{i:04}");
            idle.push(
                SimCaller::connect(CallerOptions::new(&url, &from, "+15550000000"))
                    .await
                    .unwrap(),
            );
        }
        for c in &idle {
            c.wait_for(limit, |l| l.marks_played.len() == 1)
                .await
                .expect("idle call greeted");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        rss.push(daemon.rss_kib());
    }
    // VOXHOOK_BENCH_HOLD=SECS keeps the idle calls up that long after measuring, for a
    // profiler's snapshot of what they hold.
    if let Some(secs) = std::env::var("VOXHOOK_BENCH_HOLD")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        eprintln!("holding {n_idle} x 2 idle calls for {secs} s");
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    for c in &idle {
        c.hang_up().await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let closures = bot
        .received()
        .iter()
        .filter(|r| r.val == "SESSION_CLOSURE")
        .count();

    println!(
        "\nvoxhook call benchmark ({n_calls} sequential calls, {n_idle} idle calls, \
         stt.threads = {threads}, stt.max_parallel_decodes = {parallel}, stt {}, tts {})",
        arg_str("--stt", "whisper"),
        arg_str("--tts", "flite"),
    );
    percentiles(
        "end of speech -> bot request (ms)",
        daemon.field(
            latency_logs,
            "Turn sent to bot.",
            "end_of_speech_to_request_ms",
        ),
        "",
    );
    percentiles(
        "  of which bridge overhead, excl. STT (ms)",
        daemon.field(latency_logs, "Turn sent to bot.", "overhead_ms"),
        "",
    );
    percentiles(
        "bot reply -> first audio frame (ms)",
        daemon.field(latency_logs, "Bot audio started.", "reply_to_audio_ms"),
        "",
    );
    percentiles(
        "  of which TTS first chunk (ms)",
        daemon.field(latency_logs, "Bot audio started.", "tts_first_chunk_ms"),
        "",
    );
    percentiles(
        "  of which bridge overhead (ms)",
        daemon.field(latency_logs, "Bot audio started.", "overhead_ms"),
        "",
    );
    let audio = daemon.field(latency_logs, "Caller said.", "audio_ms");
    let decode = daemon.field(latency_logs, "Caller said.", "decode_ms");
    let rtf = audio.iter().zip(&decode).map(|(a, d)| d / a).collect();
    percentiles("whisper real-time factor per utterance", rtf, "");
    println!(
        "{:<44} {:.1} KiB ({} KiB with {n_idle} idle calls -> {} KiB with {})",
        "resident memory per idle call",
        rss[1].saturating_sub(rss[0]) as f64 / n_idle.max(1) as f64,
        rss[0],
        rss[1],
        2 * n_idle
    );
    println!(
        "{:<44} {closures} of {} sessions",
        "SESSION_CLOSURE received",
        n_calls + 2 * n_idle
    );
}
