//! Load benchmark: N concurrent real-time Twilio media streams against the release binary.
//!
//! ```text
//! cargo bench --bench load -- --calls 100,500,1000,2000 [--duration-secs 30] [--engines fake|real]
//!     [--ramp-per-sec 200] [--pause-secs 3] [--gen-threads 2] [--shards 8] [--silent]
//!     [--whisper-threads N] [--vad on|off] [--external CMD --label NAME]
//! ```
//!
//! - `--calls`: the N of each run, one daemon per N (at most 5,000).
//! - `--duration-secs`: the hold, after the ramp and 3 s of settling (at most 600).
//! - `--engines`: `fake` (the daemon's fake STT/TTS backends) or `real` (whisper tiny.en
//!   and flite; whisper needs `models/ggml-tiny.en.bin`).
//! - `--ramp-per-sec`: new calls per second; `--pause-secs`: the mean pause (±50 %) between
//!   the end of the bot's reply and the caller's next utterance.
//! - `--gen-threads`, `--shards`: the generator's tokio workers and sending tasks.
//! - `--silent`: callers never speak and the bot does not greet, so only the caller-audio
//!   path (socket, decode, resampling, VAD) is loaded.
//! - `--whisper-threads`: `[stt] threads` with `--engines real`.
//! - `--vad on|off` (side-by-side mode, `scripts/versus.sh`): `on` is the default VAD;
//!   `off` takes the VAD off the turn: the fake STT ends it itself (`streaming = true`,
//!   `endpointing_ms = 700`) and `[audio] vad_threshold = 1` keeps earshot from ever firing
//!   (it still scores non-silent frames: the listener always runs it). Both set
//!   `digits_end_of_utterance_ms = 0`, so every turn has the same 700 ms hangover (the bot's
//!   PIN prompt would stretch voxhook's to 2 s, and the other system has no such rule).
//! - `--external CMD`: drive another system instead of the daemon: `sh -c "exec CMD"` is
//!   started once per N with `VERSUS_PORT`, `VERSUS_KORE_URL`, `VERSUS_CLIENT_ID`,
//!   `VERSUS_CLIENT_SECRET`, `VERSUS_BOT_ID` and `VERSUS_VAD` in its environment; it must
//!   serve Twilio Media Streams on `ws://127.0.0.1:$VERSUS_PORT/twilio` and answer
//!   `GET /ready` (`benches/versus/bot.py`, the pipecat bot). Only what the callers see and
//!   `/proc` are measured then (no `/metrics`, no daemon log). `--label`: its name in the
//!   side-by-side table.
//!
//! For each N it starts the daemon (`CARGO_BIN_EXE_voxhook`, the release build under
//! `cargo bench`) with a generated config, ramps up N calls, holds them for the duration,
//! hangs them all up and prints one Markdown row: calls held, daemon CPU and RSS per call,
//! inbound frames dropped, outbound frames late, per-frame handling time, the bridge
//! latencies (end of speech → bot request, bot reply → first audio) and the generator's own
//! CPU. The table is also written to `target/load-report.md`. With `--vad` or `--external`,
//! a side-by-side table (server process tree CPU and RSS per call, caller-side latencies and
//! late frames, the largest N that held) is printed too and written to
//! `target/versus/<label>-vad-<on|off>.md`.
//!
//! The generator is lean on purpose: a hand-rolled WebSocket client (handshake, then frames
//! written with a zero masking key, so a frame is plain bytes the daemon still unmasks),
//! a few shard tasks each driving many sockets from one shared 20 ms tick with non-blocking
//! writes, and one small reader task per call that models Twilio's playback buffer from
//! arrival times alone (no audio is decoded): a bot frame that arrives after the buffer ran
//! dry inside a message is late, and a mark is echoed when playback reaches it. Every call
//! speaks the same pre-encoded utterance (flite's `rms` voice, ~2 s) after the bot has
//! finished talking and a jittered pause; it never barges in.
//!
//! The Kore simulator runs in a child process (this binary with `--kore-sim-child`), so its
//! CPU is neither the daemon's nor the generator's; it is reported in the notes.
//!
//! Everything runs on 127.0.0.1; the run is bounded in calls, time and connections and stops
//! by itself.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use voxhook::audio::codec::Codec;
use voxhook::sim::caller::caller_speech;
use voxhook::sim::kore::{KoreSim, Reply};

/// One media frame: 20 ms of 8 kHz μ-law.
const FRAME: Duration = Duration::from_millis(20);
const FRAME_SAMPLES: usize = 160;
/// What every caller says (and what the fake recogniser answers).
const UTTERANCE: &str = "I would like to check my balance.";
const BOT_ID: &str = "st-load";
const CLIENT_ID: &str = "cs-load";
const CLIENT_SECRET: &str = "load-bench-secret";

/// Hard bounds: the bench never opens more calls or runs longer than this.
const MAX_CALLS: usize = 5_000;
const MAX_DURATION_SECS: u64 = 600;
/// Handshakes in flight at once during the ramp.
const CONNECT_CONCURRENCY: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After the ramp, before the hold starts: the last calls' greetings play.
const SETTLE: Duration = Duration::from_secs(3);
/// Playback must have been idle this long before a caller speaks again.
const IDLE_BEFORE_SPEAKING: Duration = Duration::from_millis(500);
/// A turn whose reply has not started after this counts as unanswered.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);
/// A call whose unsent bytes exceed this has stalled (the daemon stopped reading).
const MAX_BACKLOG: usize = 256 * 1024;
/// A call counts as held only if its unsent bytes stay under this (~0.5 s of media).
const HELD_BACKLOG: usize = 8 * 1024;

// ---------------------------------------------------------------------------------------
// Options

#[derive(Clone, Copy, PartialEq, Debug)]
enum Engines {
    Fake,
    Real,
}

impl Engines {
    fn name(self) -> &'static str {
        match self {
            Engines::Fake => "fake",
            Engines::Real => "real (whisper tiny.en + flite)",
        }
    }
}

#[derive(Clone, Debug)]
struct Opts {
    calls: Vec<usize>,
    duration: Duration,
    engines: Engines,
    ramp_per_sec: f64,
    pause: Duration,
    gen_threads: usize,
    shards: usize,
    /// Callers never speak and the bot does not greet: only the caller-audio path is loaded.
    silent: bool,
    /// `[stt] threads` for whisper (`--engines real`); `None`: the daemon's default.
    whisper_threads: Option<usize>,
    /// `--vad on|off`: side-by-side mode, with (`true`) or without the VAD.
    vad: Option<bool>,
    /// `--external CMD`: the system under test instead of the daemon.
    external: Option<String>,
    /// The system's name in the side-by-side table.
    label: String,
}

impl Opts {
    /// `cargo bench` appends `--bench`; unknown arguments are ignored.
    fn parse(args: &[String]) -> Result<Opts, String> {
        let get = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .map(String::as_str)
        };
        let num = |name: &str, default: f64| -> Result<f64, String> {
            get(name).map_or(Ok(default), |v| {
                v.parse::<f64>()
                    .map_err(|e| format!("{name} {v}: {e}"))
                    .and_then(|x| {
                        (x.is_finite() && x > 0.0)
                            .then_some(x)
                            .ok_or(format!("{name} must be > 0"))
                    })
            })
        };
        let calls = get("--calls")
            .unwrap_or("100,500,1000,2000")
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<usize>()
                    .map_err(|e| format!("--calls {c}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if calls.iter().any(|&n| n == 0 || n > MAX_CALLS) {
            return Err(format!("--calls: each N must be 1..={MAX_CALLS}"));
        }
        let duration = num("--duration-secs", 30.0)?;
        if duration > MAX_DURATION_SECS as f64 {
            return Err(format!("--duration-secs: at most {MAX_DURATION_SECS}"));
        }
        let engines = match get("--engines").unwrap_or("fake") {
            "fake" => Engines::Fake,
            "real" => Engines::Real,
            other => return Err(format!("--engines {other}: fake or real")),
        };
        Ok(Opts {
            calls,
            duration: Duration::from_secs_f64(duration),
            engines,
            ramp_per_sec: num("--ramp-per-sec", 200.0)?,
            pause: Duration::from_secs_f64(num("--pause-secs", 3.0)?),
            gen_threads: num("--gen-threads", 2.0)? as usize,
            shards: (num("--shards", 8.0)? as usize).max(1),
            silent: args.iter().any(|a| a == "--silent"),
            whisper_threads: match get("--whisper-threads") {
                Some(_) => Some(num("--whisper-threads", 2.0)? as usize),
                None => None,
            },
            vad: match get("--vad") {
                None => None,
                Some("on") => Some(true),
                Some("off") => Some(false),
                Some(other) => return Err(format!("--vad {other}: on or off")),
            },
            external: get("--external").map(str::to_string),
            label: get("--label")
                .map(str::to_string)
                .unwrap_or_else(|| match get("--external") {
                    Some(_) => "external".into(),
                    None => "voxhook".into(),
                }),
        })
    }

    /// Side-by-side mode: the versus table, the same hangover for every turn.
    fn versus(&self) -> bool {
        self.vad.is_some() || self.external.is_some()
    }

    fn vad_tag(&self) -> &'static str {
        if self.vad == Some(false) {
            "off"
        } else {
            "on"
        }
    }

    /// Upper bound of the whole run, for the watchdog.
    fn budget(&self) -> Duration {
        let per_n = |n: usize| {
            Duration::from_secs_f64(2.0 * n as f64 / self.ramp_per_sec)
                + self.duration
                + SETTLE
                + Duration::from_secs(120)
        };
        self.calls.iter().map(|&n| per_n(n)).sum::<Duration>() + Duration::from_secs(60)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--kore-sim-child") {
        let silent_calls = args
            .iter()
            .position(|a| a == "--no-greeting")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(0);
        kore_sim_child(silent_calls);
        return;
    }
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load bench: {e}");
            std::process::exit(64);
        }
    };
    let nofile = raise_nofile_limit();
    let budget = opts.budget();
    // The watchdog: whatever happens, the bench ends (children die with it, see
    // `die_with_parent`).
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        eprintln!("load bench: time budget of {budget:?} exceeded, exiting");
        std::process::exit(3);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.gen_threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Children are spawned from this (the main) thread, which lives as long as the process:
    // PR_SET_PDEATHSIG fires when the spawning thread exits.
    rt.block_on(run(opts, nofile));
}

// ---------------------------------------------------------------------------------------
// The run

async fn run(opts: Opts, nofile: u64) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = root.join("target").join("load");
    std::fs::create_dir_all(&out_dir).expect("create target/load");
    if opts.engines == Engines::Real && !root.join("models/ggml-tiny.en.bin").exists() {
        eprintln!("load bench: --engines real needs models/ggml-tiny.en.bin");
        std::process::exit(1);
    }
    let payloads = Arc::new(Payloads::build().await);
    let silent_calls = if opts.silent {
        opts.calls.iter().sum()
    } else {
        0
    };
    let mut kore = KoreChild::start(silent_calls);
    eprintln!(
        "load bench: engines {}, utterance {:.2} s (last loud frame ends at {:.2} s), hold {:?}, \
         bot simulator pid {} at {}, fd limit {nofile}",
        opts.engines.name(),
        payloads.speech.len() as f64 * 0.02,
        (payloads.last_loud + 1) as f64 * 0.02,
        opts.duration,
        kore.child.id(),
        kore.url
    );
    let mut rows = Vec::new();
    for &n in &opts.calls {
        eprintln!("load bench: {n} calls ...");
        let row = run_one(n, &opts, &kore, &payloads, &out_dir).await;
        eprintln!("{}", row.line());
        rows.push(row);
    }
    kore.stop();
    let mut report = report(&opts, &rows);
    if opts.versus() {
        let versus = versus_report(&opts, &rows);
        let dir = root.join("target").join("versus");
        let path = dir.join(format!("{}-vad-{}.md", opts.label, opts.vad_tag()));
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &versus))
        {
            eprintln!("load bench: cannot write {}: {e}", path.display());
        }
        report = format!("{versus}\n{report}");
    }
    println!("\n{report}");
    let path = root.join("target").join("load-report.md");
    match std::fs::write(&path, &report) {
        Ok(()) => eprintln!("load bench: report written to {}", path.display()),
        Err(e) => eprintln!("load bench: cannot write {}: {e}", path.display()),
    }
}

/// One table row and its notes.
#[derive(Default)]
struct Row {
    calls: usize,
    error: Option<String>,
    connected: usize,
    connect_failed: usize,
    held: usize,
    calls_live: f64,
    daemon_cpu_pct: f64,
    daemon_rss_idle_kib: u64,
    daemon_idle_cpu_pct: f64,
    daemon_rss_hold_kib: u64,
    daemon_threads: u64,
    gen_cpu_pct: f64,
    kore_cpu_pct: f64,
    other_cpu_pct: f64,
    dropped: f64,
    dropped_total: f64,
    late_daemon: f64,
    late_daemon_total: f64,
    late_caller: u64,
    late_caller_frame: u64,
    late_caller_total: u64,
    max_gap_ms: f64,
    frame_in: Quantiles,
    frame_out: Quantiles,
    eos_to_request: Quantiles,
    reply_to_audio: Quantiles,
    caller_eos_to_audio: Quantiles,
    response_latency: Quantiles,
    turns: u64,
    answered: u64,
    unanswered: u64,
    barge_ins: f64,
    tick_lag: Quantiles,
    tick_work: Quantiles,
    gen_user_pct: f64,
    not_held: String,
    stalled: usize,
    warnings: Vec<(String, usize)>,
    log_path: String,
}

#[derive(Default, Clone, Copy)]
struct Quantiles {
    n: usize,
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
}

impl Quantiles {
    fn of(mut xs: Vec<f64>) -> Quantiles {
        if xs.is_empty() {
            return Quantiles::default();
        }
        xs.sort_by(f64::total_cmp);
        let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
        Quantiles {
            n: xs.len(),
            p50: Some(at(0.5)),
            p99: Some(at(0.99)),
            max: xs.last().copied(),
        }
    }

    /// `p50 / p99` with `unit` (values already in that unit).
    fn pair(&self, digits: usize, unit: &str) -> String {
        match (self.p50, self.p99) {
            (Some(a), Some(b)) => format!("{a:.digits$} / {b:.digits$} {unit}"),
            _ => "–".into(),
        }
    }
}

impl Row {
    fn per_call(&self, x: f64) -> f64 {
        x / self.held.max(1) as f64
    }

    fn rss_per_call(&self) -> f64 {
        self.daemon_rss_hold_kib
            .saturating_sub(self.daemon_rss_idle_kib) as f64
            / self.calls.max(1) as f64
    }

    fn line(&self) -> String {
        if let Some(e) = &self.error {
            return format!("| {} | failed: {e} | | | | | | | | |", self.calls);
        }
        format!(
            "| {} | {} | {:.3} | {:.1} | {} | {} / {} ({}) | {} | {} | {} | {:.0} |",
            self.calls,
            self.held,
            self.per_call(self.daemon_cpu_pct),
            self.rss_per_call(),
            self.dropped,
            self.late_daemon,
            self.late_caller,
            self.late_caller_frame,
            self.frame_in.pair(1, "µs"),
            self.eos_to_request.pair(1, "ms"),
            self.reply_to_audio.pair(1, "ms"),
            self.gen_cpu_pct,
        )
    }
}

async fn run_one(
    n: usize,
    opts: &Opts,
    kore: &KoreChild,
    payloads: &Arc<Payloads>,
    out_dir: &Path,
) -> Row {
    let mode = if opts.silent { "-silent" } else { "" };
    let log_path = if opts.versus() {
        out_dir.join(format!("{}-vad-{}-{n}.log", opts.label, opts.vad_tag()))
    } else {
        out_dir.join(format!("daemon-{}{mode}-{n}.log", opts.engines_tag()))
    };
    let mut row = Row {
        calls: n,
        log_path: log_path.display().to_string(),
        ..Row::default()
    };
    let mut daemon = match Daemon::start(n, opts, &kore.url, &log_path) {
        Ok(d) => d,
        Err(e) => {
            row.error = Some(e);
            return row;
        }
    };
    if let Err(e) = daemon.wait_ready().await {
        row.error = Some(e);
        return row;
    }
    let idle_from = (Instant::now(), tree_cpu_secs(daemon.pid()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    row.daemon_rss_idle_kib = tree_rss_kib(daemon.pid());
    row.daemon_idle_cpu_pct = 100.0 * (tree_cpu_secs(daemon.pid()) - idle_from.1)
        / (Instant::now() - idle_from.0).as_secs_f64();

    // Ramp.
    let ctl = Arc::new(Control::default());
    let (shard_txs, shard_tasks): (Vec<_>, Vec<_>) = (0..opts.shards)
        .map(|i| {
            let (tx, rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(shard(
                i,
                opts.shards,
                rx,
                ctl.clone(),
                payloads.clone(),
                opts.pause,
            ));
            (tx, task)
        })
        .unzip();
    let ramp = ramp(n, daemon.port, opts, shard_txs, ctl.clone()).await;
    let external = opts.external.is_some();
    row.connected = ramp.connected;
    row.connect_failed = ramp.failed;
    if let Some(e) = ramp.first_error {
        eprintln!("load bench: {} connects failed, first: {e}", ramp.failed);
    }
    tokio::time::sleep(SETTLE).await;

    // Hold.
    let pid = daemon.pid();
    let before = Sample::take(pid, kore.child.id());
    // An external system has no `/metrics`: only the callers and `/proc` measure it.
    let m0 = if external {
        None
    } else {
        scrape(daemon.port).await.ok()
    };
    let late_sum = |calls: &[Arc<Mutex<Observed>>]| {
        calls.iter().fold((0, 0), |(a, b), c| {
            let c = c.lock().unwrap();
            (a + c.late, b + c.late_frame)
        })
    };
    let late0 = late_sum(&ctl.calls.lock().unwrap());
    let window_start = utc_second();
    ctl.holding.store(true, Ordering::Relaxed);
    let hold_end = Instant::now() + opts.duration;
    let mut rss_hold = 0;
    while Instant::now() < hold_end {
        tokio::time::sleep(Duration::from_secs(1).min(hold_end - Instant::now())).await;
        let r = tree_rss_kib(pid);
        if r > 0 {
            rss_hold = r;
        }
        if let Ok(Some(status)) = daemon.child.try_wait() {
            row.error = Some(format!("daemon exited during the hold: {status}"));
            break;
        }
    }
    ctl.holding.store(false, Ordering::Relaxed);
    let after = Sample::take(pid, kore.child.id());
    let window_end = utc_second();
    row.daemon_rss_hold_kib = rss_hold;
    row.daemon_threads = tree_pids(pid)
        .iter()
        .filter_map(|&p| proc_status_field(p, "Threads:"))
        .sum();
    let wall = (after.at - before.at).as_secs_f64();
    let pct = |a: f64, b: f64| 100.0 * (b - a) / wall;
    row.daemon_cpu_pct = pct(before.daemon_cpu, after.daemon_cpu);
    row.gen_cpu_pct = pct(before.gen_cpu, after.gen_cpu);
    row.gen_user_pct = pct(before.gen_user, after.gen_user);
    row.kore_cpu_pct = pct(before.kore_cpu, after.kore_cpu);
    row.other_cpu_pct = pct(before.machine_busy, after.machine_busy)
        - row.daemon_cpu_pct
        - row.gen_cpu_pct
        - row.kore_cpu_pct;
    let calls = ctl.calls.lock().unwrap().clone();
    let late_hold = late_sum(&calls);
    row.held = calls.iter().filter(|c| c.lock().unwrap().held()).count();
    row.not_held = not_held(&calls);
    match (scrape(daemon.port).await, m0) {
        _ if external => {}
        (Ok(total), Some(m0)) => {
            let dropped = "voxhook_inbound_frames_dropped_total";
            let late = "voxhook_outbound_frames_late_total";
            row.calls_live = total.value("voxhook_calls_live").unwrap_or(f64::NAN);
            row.dropped_total = total.value(dropped).unwrap_or(f64::NAN);
            row.late_daemon_total = total.value(late).unwrap_or(f64::NAN);
            // The hold window only: counters and histogram buckets since the first scrape.
            let m = total.minus(&m0);
            row.dropped = m.value(dropped).unwrap_or(f64::NAN);
            row.late_daemon = m.value(late).unwrap_or(f64::NAN);
            row.barge_ins = m.value("voxhook_barge_ins_total").unwrap_or(f64::NAN);
            let us = |q: Option<f64>| q.map(|s| s * 1e6);
            let frame = |dir: &str| {
                let labels = format!("direction=\"{dir}\"");
                let name = "voxhook_frame_handling_seconds";
                Quantiles {
                    n: m.histogram_count(name, &labels) as usize,
                    p50: us(m.quantile(name, &labels, 0.5)),
                    p99: us(m.quantile(name, &labels, 0.99)),
                    max: None,
                }
            };
            row.frame_in = frame("inbound");
            row.frame_out = frame("outbound");
            let name = "voxhook_response_latency_seconds";
            let ms = |q: Option<f64>| q.map(|s| s * 1e3);
            row.response_latency = Quantiles {
                n: m.histogram_count(name, "") as usize,
                p50: ms(m.quantile(name, "", 0.5)),
                p99: ms(m.quantile(name, "", 0.99)),
                max: None,
            };
        }
        (Err(e), _) => row.error = row.error.take().or(Some(format!("scrape /metrics: {e}"))),
        (_, None) => {
            row.error = row
                .error
                .take()
                .or(Some("scrape /metrics at the hold start failed".into()))
        }
    }

    // Hang up, collect.
    ctl.hangup.store(true, Ordering::Relaxed);
    let (mut lags, mut work) = (Vec::new(), Vec::new());
    for t in shard_tasks {
        if let Ok((l, w)) = t.await {
            lags.extend(l);
            work.extend(w);
        }
    }
    row.tick_lag = Quantiles::of(lags);
    row.tick_work = Quantiles::of(work);
    let drain_end = Instant::now() + Duration::from_secs(if external { 0 } else { 20 });
    while Instant::now() < drain_end {
        match scrape(daemon.port).await {
            Ok(m) if m.value("voxhook_calls_live") == Some(0.0) => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(_) => break,
        }
    }
    let readers_end = Instant::now() + Duration::from_secs(if external { 10 } else { 5 });
    while ctl.readers.load(Ordering::Relaxed) > 0 && Instant::now() < readers_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.stop();

    let mut caller_eos = Vec::new();
    row.late_caller = late_hold.0.saturating_sub(late0.0);
    row.late_caller_frame = late_hold.1.saturating_sub(late0.1);
    for c in &calls {
        let c = c.lock().unwrap();
        row.late_caller_total += c.late;
        row.max_gap_ms = row.max_gap_ms.max(c.max_gap.as_secs_f64() * 1e3);
        row.turns += c.turns;
        row.answered += c.answered;
        row.unanswered += c.unanswered;
        row.stalled += usize::from(c.stalled);
        caller_eos.extend(c.eos_to_audio_ms.iter().copied());
    }
    row.caller_eos_to_audio = Quantiles::of(caller_eos);
    let logs = DaemonLog::read(&log_path, &window_start, &window_end);
    row.eos_to_request = Quantiles::of(logs.eos_to_request);
    row.reply_to_audio = Quantiles::of(logs.reply_to_audio);
    row.warnings = logs.warnings;
    row
}

impl Opts {
    fn engines_tag(&self) -> &'static str {
        match self.engines {
            Engines::Fake => "fake",
            Engines::Real => "real",
        }
    }
}

fn report(opts: &Opts, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Load benchmark: {} engines{}, {:?} hold, {} cores\n",
        opts.engines.name(),
        if opts.silent {
            ", silent callers and no greeting"
        } else {
            ""
        },
        opts.duration,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        s,
        "| calls | held | daemon CPU %/call | daemon RSS KiB/call | inbound dropped | \
         outbound late: daemon / caller (by > 20 ms) | frame handling p50 / p99 | \
         end of speech → bot request p50 / p99 | bot reply → first audio p50 / p99 | \
         generator CPU % |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(s, "{}", r.line());
    }
    let _ = writeln!(
        s,
        "\nEverything is over the hold only (after the ramp and {} s of settling): CPU % is of \
         one core; RSS per call is (RSS at the end of the hold − RSS before the first call) / N; \
         dropped and late frames and the frame handling time (`voxhook_frame_handling_seconds`, \
         the socket loop's decode of one inbound WebSocket message) are `/metrics` differences \
         between the start and the end of the hold; the latencies are the daemon's log fields \
         `end_of_speech_to_request_ms` and `reply_to_audio_ms`. Caller-side late frames are bot \
         frames that reached the simulated caller after its playback buffer had run dry inside \
         a message (in brackets: by more than one frame; smaller gaps include this generator's \
         own scheduling jitter).\n",
        SETTLE.as_secs()
    );
    for r in rows {
        if r.error.is_some() && r.connected == 0 {
            continue;
        }
        let _ = writeln!(
            s,
            "- **{} calls**: connected {} ({} failed), held {} (not held: {}), \
             `voxhook_calls_live` {}. Daemon {:.1} % CPU (idle before the ramp: {:.1} %), \
             {} threads, RSS {} → {} KiB. \
             Generator {:.1} % ({:.1} % user; {:.4} %/call), shard tick lag p50 / p99 {} \
             (max {:.1} ms), shard tick work p50 / p99 {} (max {:.1} ms). \
             Bot simulator {:.1} %; rest of the machine {:.1} %.",
            r.calls,
            r.connected,
            r.connect_failed,
            r.held,
            r.not_held,
            r.calls_live,
            r.daemon_cpu_pct,
            r.daemon_idle_cpu_pct,
            r.daemon_threads,
            r.daemon_rss_idle_kib,
            r.daemon_rss_hold_kib,
            r.gen_cpu_pct,
            r.gen_user_pct,
            r.gen_cpu_pct / r.held.max(1) as f64,
            r.tick_lag.pair(2, "ms"),
            r.tick_lag.max.unwrap_or(0.0),
            r.tick_work.pair(2, "ms"),
            r.tick_work.max.unwrap_or(0.0),
            r.kore_cpu_pct,
            r.other_cpu_pct,
        );
        let _ = writeln!(
            s,
            "  Hold: {} frames decoded, outbound encode p50 / p99 {}, {} turns logged, {} bot \
             messages started, barge-ins {}, `voxhook_response_latency_seconds` p50 / p99 {}. \
             Caller side, whole run: {} turns ({} answered, {} unanswered), end of speech → \
             first reply audio (with the VAD hangover) {}, worst gap inside a message {:.1} ms, \
             {} sockets stalled. \
             Since the daemon started: {} inbound dropped, {} outbound late (caller: {}). \
             Log: `{}`.",
            r.frame_in.n,
            r.frame_out.pair(1, "µs"),
            r.eos_to_request.n,
            r.reply_to_audio.n,
            r.barge_ins,
            r.response_latency.pair(0, "ms"),
            r.turns,
            r.answered,
            r.unanswered,
            r.caller_eos_to_audio.pair(0, "ms"),
            r.max_gap_ms,
            r.stalled,
            r.dropped_total,
            r.late_daemon_total,
            r.late_caller_total,
            r.log_path,
        );
        if !r.warnings.is_empty() {
            let w: Vec<String> = r
                .warnings
                .iter()
                .map(|(m, c)| format!("{c}× \"{m}\""))
                .collect();
            let _ = writeln!(s, "  Daemon warnings/errors: {}.", w.join(", "));
        }
        if let Some(e) = &r.error {
            let _ = writeln!(s, "  Error: {e}.");
        }
    }
    s
}

/// The silence that ends a turn in side-by-side mode (voxhook's `end_of_utterance_ms`, the
/// pipecat bot's Silero `stop_secs` and both VAD-less endpointers).
const END_OF_TURN_MS: f64 = 700.0;
/// The fakes' own latencies: STT 50 ms after the end of the turn, TTS first chunk 30 ms.
const FAKES_MS: f64 = 80.0;
/// A step held only if the callers' p99 reply latency (after the end-of-turn silence) is
/// under this.
const MAX_REPLY_P99_MS: f64 = 1000.0;

impl Row {
    /// The caller-side end of speech → first reply audio, less the end-of-turn silence.
    fn reply_p99_ms(&self) -> Option<f64> {
        self.caller_eos_to_audio.p99.map(|x| x - END_OF_TURN_MS)
    }

    /// Held in the side-by-side sense: every call up, no frame late by more than a frame at
    /// the caller, every turn answered, p99 reply latency under a second.
    fn versus_held(&self) -> bool {
        self.error.is_none()
            && self.held == self.calls
            && self.late_caller_frame == 0
            && self.unanswered == 0
            && self.answered > 0
            && self.reply_p99_ms().is_some_and(|x| x < MAX_REPLY_P99_MS)
    }
}

fn versus_report(opts: &Opts, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Side by side: {}, VAD {}, {:?} hold, {} cores\n",
        opts.label,
        opts.vad_tag(),
        opts.duration,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        s,
        "| system | VAD | calls | held | late at the caller (by > 20 ms) | server CPU % | \
         CPU %/call | RSS KiB/call | turns answered / unanswered | end of speech → first \
         reply audio p50 / p99 | less {END_OF_TURN_MS:.0} ms end of turn and {FAKES_MS:.0} ms \
         fakes p50 / p99 | generator CPU % | held |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in rows {
        let less = |q: Option<f64>| q.map(|x| x - END_OF_TURN_MS - FAKES_MS);
        let overhead = Quantiles {
            p50: less(r.caller_eos_to_audio.p50),
            p99: less(r.caller_eos_to_audio.p99),
            ..r.caller_eos_to_audio
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} ({}) | {:.0} | {:.3} | {:.1} | {} / {} | {} | {} | {:.0} | {} |",
            opts.label,
            opts.vad_tag(),
            r.calls,
            r.held,
            r.late_caller,
            r.late_caller_frame,
            r.daemon_cpu_pct,
            r.per_call(r.daemon_cpu_pct),
            r.rss_per_call(),
            r.answered,
            r.unanswered,
            r.caller_eos_to_audio.pair(0, "ms"),
            overhead.pair(0, "ms"),
            r.gen_cpu_pct,
            match (&r.error, r.versus_held()) {
                (Some(e), _) => format!("no: {e}"),
                (None, true) => "yes".into(),
                (None, false) => "no".into(),
            },
        );
    }
    let best = rows
        .iter()
        .filter(|r| r.versus_held())
        .max_by_key(|r| r.calls);
    let _ = writeln!(
        s,
        "\n{}: largest N held {}. End of speech: when the caller sent the utterance's last \
         frame with a sample above 1000 (the quieter tail after it counts as end-of-turn \
         silence). Held: all N calls up, no bot frame late at the caller by more \
         than 20 ms, every turn answered, p99 of end of speech → first reply audio less the \
         {END_OF_TURN_MS:.0} ms end-of-turn silence under {MAX_REPLY_P99_MS:.0} ms. CPU and RSS \
         are the server's process tree over the hold (RSS: end of the hold less before the \
         first call, per call); latencies and turns are the callers' whole run.",
        opts.label,
        match best {
            Some(r) => format!(
                "**{}** ({:.3} % of a core per call there: {:.0} calls per core)",
                r.calls,
                r.per_call(r.daemon_cpu_pct),
                100.0 / r.per_call(r.daemon_cpu_pct).max(1e-9)
            ),
            None => "none of the steps".into(),
        },
    );
    s
}

// ---------------------------------------------------------------------------------------
// The daemon

struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Daemon {
    fn start(n: usize, opts: &Opts, webhook_url: &str, log: &Path) -> Result<Daemon, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("free port: {e}"))?;
        let root = env!("CARGO_MANIFEST_DIR");
        if let Some(cmd) = &opts.external {
            return Daemon::start_external(cmd, port, opts, webhook_url, log);
        }
        // --vad off: the fake STT ends turns itself and earshot never fires (see the header).
        let (stt_turns, audio) = match opts.vad {
            None => ("", ""),
            Some(true) => ("", "[audio]\ndigits_end_of_utterance_ms = 0\n"),
            Some(false) => (
                "streaming = true\nendpointing_ms = 700\n",
                "[audio]\ndigits_end_of_utterance_ms = 0\nvad_threshold = 1.0\n",
            ),
        };
        let engines = match opts.engines {
            Engines::Fake => format!(
                "[stt]\nprovider = \"fake\"\n\
                 transcripts = [\"I would like to check my balance.\"]\nlatency_ms = 50\n\
                 {stt_turns}\
                 [tts]\nprovider = \"fake\"\nms_per_char = 60\nfirst_chunk_latency_ms = 30\n\
                 {audio}"
            ),
            Engines::Real => format!(
                "[stt]\nprovider = \"whisper\"\nmodel_path = \"{root}/models/ggml-tiny.en.bin\"\n\
                 {}[tts]\nprovider = \"flite\"\n",
                opts.whisper_threads
                    .map_or(String::new(), |t| format!("threads = {t}\n"))
            ),
        };
        let cfg = log.with_extension("toml");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nmax_concurrent_calls = {}\n\
             shutdown_grace_period_secs = 0\n\
             [metrics]\nenabled = true\n\
             {engines}\
             [bot]\nplatform = \"kore_v2\"\nwebhook_url = \"{webhook_url}\"\n\
             client_id = \"{CLIENT_ID}\"\npoll_interval_ms = 100\n\
             [call]\nno_input_timeout_ms = 0\n{}",
            n + 16,
            // Silent: no filler either when the (empty) greeting is slow under load.
            if opts.silent {
                "filler_delay_ms = 0\n"
            } else {
                ""
            }
        );
        std::fs::write(&cfg, text).map_err(|e| format!("write {}: {e}", cfg.display()))?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_voxhook"));
        cmd.args(["--log-format", "json", "run", "--config"])
            .arg(&cfg)
            .env("VOXHOOK__BOT__CLIENT_SECRET", CLIENT_SECRET)
            .env("RUST_LOG", "info");
        Daemon::spawn(cmd, "voxhook", port, log)
    }

    /// Starts `cmd` with its stderr in `log`, killed when the bench dies.
    fn spawn(mut cmd: Command, what: &str, port: u16, log: &Path) -> Result<Daemon, String> {
        let stderr = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| format!("start {what}: {e}"))?;
        Ok(Daemon {
            child,
            port,
            log: log.to_path_buf(),
        })
    }

    /// `--external`: `sh -c "exec CMD"` with the run's parameters in its environment.
    fn start_external(
        cmd: &str,
        port: u16,
        opts: &Opts,
        webhook_url: &str,
        log: &Path,
    ) -> Result<Daemon, String> {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("exec {cmd}"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("VERSUS_PORT", port.to_string())
            .env("VERSUS_KORE_URL", webhook_url)
            .env("VERSUS_CLIENT_ID", CLIENT_ID)
            .env("VERSUS_CLIENT_SECRET", CLIENT_SECRET)
            .env("VERSUS_BOT_ID", BOT_ID)
            .env("VERSUS_VAD", opts.vad_tag());
        Daemon::spawn(c, cmd, port, log)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{}/ready", self.port);
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let first = log.lines().next().unwrap_or("").chars().take(300);
                return Err(format!(
                    "daemon exited before ready ({status}): {} (with --engines fake, a build \
                     without provider = \"fake\" fails here: try --engines real)",
                    first.collect::<String>()
                ));
            }
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("daemon not ready after 60 s".into())
    }

    /// SIGTERM (no grace period is configured), then SIGKILL after 15 s.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..300 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the daemon's JSON log says about the run.
struct DaemonLog {
    eos_to_request: Vec<f64>,
    reply_to_audio: Vec<f64>,
    /// WARN and ERROR messages with their counts, most frequent first.
    warnings: Vec<(String, usize)>,
}

impl DaemonLog {
    /// Latencies logged within `[from, to]` (UTC, `YYYY-MM-DDTHH:MM:SS`); warnings from the
    /// whole run.
    fn read(path: &Path, from: &str, to: &str) -> DaemonLog {
        let mut log = DaemonLog {
            eos_to_request: Vec::new(),
            reply_to_audio: Vec::new(),
            warnings: Vec::new(),
        };
        let Ok(file) = std::fs::File::open(path) else {
            return log;
        };
        let mut warnings: BTreeMap<String, usize> = BTreeMap::new();
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            let interesting = line.contains("Turn sent to bot.")
                || line.contains("Bot audio started.")
                || line.contains("\"WARN\"")
                || line.contains("\"ERROR\"");
            if !interesting {
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let f = &v["fields"];
            let second = v["timestamp"].as_str().and_then(|t| t.get(..19));
            let in_window = second.is_some_and(|t| (from..=to).contains(&t));
            let field = |name: &str| f[name].as_f64().filter(|x| *x >= 0.0 && in_window);
            match f["message"].as_str() {
                Some("Turn sent to bot.") => {
                    log.eos_to_request
                        .extend(field("end_of_speech_to_request_ms"));
                }
                Some("Bot audio started.") => log.reply_to_audio.extend(field("reply_to_audio_ms")),
                _ => {}
            }
            if matches!(v["level"].as_str(), Some("WARN" | "ERROR")) {
                let m = f["message"].as_str().unwrap_or("?").to_string();
                *warnings.entry(m).or_default() += 1;
            }
        }
        log.warnings = warnings.into_iter().collect();
        log.warnings.sort_by_key(|w| std::cmp::Reverse(w.1));
        log.warnings.truncate(5);
        log
    }
}

// ---------------------------------------------------------------------------------------
// The bot simulator, in a child process

struct KoreChild {
    child: Child,
    url: String,
}

impl KoreChild {
    /// `silent_calls`: how many `ON_CONNECT`s to answer without a greeting.
    fn start(silent_calls: usize) -> KoreChild {
        let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
        cmd.arg("--kore-sim-child")
            .args(["--no-greeting", &silent_calls.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("start the bot simulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("bot simulator URL");
        KoreChild {
            child,
            url: line.trim().to_string(),
        }
    }

    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// `--kore-sim-child`: serve the simulator until stdin closes; the first `silent_calls`
/// `ON_CONNECT`s get no greeting.
fn kore_sim_child(silent_calls: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = KoreSim::start(BOT_ID, CLIENT_ID, CLIENT_SECRET)
            .await
            .expect("start KoreSim");
        for _ in 0..silent_calls {
            sim.push_override(
                |r| r.kind == "event" && r.val == "ON_CONNECT",
                Reply::say(&[]),
            );
        }
        println!("{}", sim.webhook_url());
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await;
        let violations = sim.violations();
        if !violations.is_empty() {
            eprintln!(
                "load bench: bot simulator saw {} protocol violations, first: {}",
                violations.len(),
                violations[0]
            );
        }
    });
}

fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn raise_nofile_limit() -> u64 {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            eprintln!("load bench: cannot raise the fd limit");
        }
        lim.rlim_cur
    }
}

// ---------------------------------------------------------------------------------------
// Measurements: /proc, getrusage, /metrics

struct Sample {
    at: Instant,
    daemon_cpu: f64,
    gen_cpu: f64,
    gen_user: f64,
    kore_cpu: f64,
    machine_busy: f64,
}

impl Sample {
    fn take(daemon: u32, kore: u32) -> Sample {
        Sample {
            at: Instant::now(),
            daemon_cpu: tree_cpu_secs(daemon),
            gen_cpu: self_cpu_secs().0,
            gen_user: self_cpu_secs().1,
            kore_cpu: proc_cpu_secs(kore).unwrap_or(f64::NAN),
            machine_busy: machine_busy_secs().unwrap_or(f64::NAN),
        }
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process, in seconds (`/proc/<pid>/stat` fields 14 and 15).
fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn proc_status_field(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn proc_rss_kib(pid: u32) -> Option<u64> {
    proc_status_field(pid, "VmRSS:")
}

/// `root` and its descendants (a server that forks workers, a shell that execs; the
/// daemon is one process).
fn tree_pids(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 2..].split_whitespace().nth(1)?.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// CPU seconds of the process tree (NaN when the root is gone).
fn tree_cpu_secs(root: u32) -> f64 {
    let pids = tree_pids(root);
    match proc_cpu_secs(root) {
        None => f64::NAN,
        Some(own) => {
            own + pids[1..]
                .iter()
                .filter_map(|&p| proc_cpu_secs(p))
                .sum::<f64>()
        }
    }
}

/// Resident KiB of the process tree (0 when the root is gone).
fn tree_rss_kib(root: u32) -> u64 {
    tree_pids(root)
        .iter()
        .filter_map(|&p| proc_rss_kib(p))
        .sum()
}

/// This process's CPU time (all threads) and its user part, in seconds.
fn self_cpu_secs() -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime) + tv(ru.ru_stime), tv(ru.ru_utime))
}

/// CPU seconds the whole machine has been busy (all cores, `/proc/stat`).
fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<f64> = cpu
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is
    // already counted in user.
    let busy = v.iter().take(8).sum::<f64>() - v.get(3)? - v.get(4)?;
    Some(busy / clock_ticks())
}

/// The current UTC second as the daemon's log timestamps start: `YYYY-MM-DDTHH:MM:SS`.
fn utc_second() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// One `/metrics` scrape: `series → value`, the series as rendered (`name{labels}`).
struct Metrics(Vec<(String, f64)>);

async fn scrape(port: u16) -> Result<Metrics, String> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    Ok(Metrics(series))
}

impl Metrics {
    /// Counters and histogram buckets since `earlier` (gauges are meaningless here).
    fn minus(&self, earlier: &Metrics) -> Metrics {
        Metrics(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - earlier.value(k).unwrap_or(0.0)))
                .collect(),
        )
    }

    fn value(&self, series: &str) -> Option<f64> {
        self.0.iter().find(|(k, _)| k == series).map(|(_, v)| *v)
    }

    /// `(le, cumulative count)` of a histogram's buckets, ascending.
    fn buckets(&self, name: &str, labels: &str) -> Vec<(f64, f64)> {
        let prefix = if labels.is_empty() {
            format!("{name}_bucket{{le=\"")
        } else {
            format!("{name}_bucket{{{labels},le=\"")
        };
        let mut b: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, *v))
            })
            .collect();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        b
    }

    fn histogram_count(&self, name: &str, labels: &str) -> f64 {
        self.buckets(name, labels).last().map_or(0.0, |b| b.1)
    }

    /// Like Prometheus' `histogram_quantile`: linear within the bucket that holds the rank;
    /// a rank in the +Inf bucket gives the largest finite bound.
    fn quantile(&self, name: &str, labels: &str, q: f64) -> Option<f64> {
        let b = self.buckets(name, labels);
        let total = b.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lo, mut below) = (0.0, 0.0);
        for &(le, cum) in &b {
            if cum >= rank {
                if le.is_infinite() {
                    return Some(lo);
                }
                let frac = if cum > below {
                    (rank - below) / (cum - below)
                } else {
                    1.0
                };
                return Some(lo + (le - lo) * frac);
            }
            (lo, below) = (le, cum);
        }
        None
    }
}

// ---------------------------------------------------------------------------------------
// The generator

/// Pre-encoded media payloads (base64 μ-law), built once.
struct Payloads {
    speech: Vec<Box<str>>,
    /// The utterance's last frame with a sample above 1000 (the fakes' `LOUD`): the
    /// callers' end of speech. The utterance's trailing quiet after it is the endpointers'
    /// (not the bridges') time.
    last_loud: usize,
    silence: Box<str>,
}

impl Payloads {
    async fn build() -> Payloads {
        let mut pcm = caller_speech(UTTERANCE).await.expect("flite caller speech");
        pcm.resize(pcm.len().div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES, 0);
        let encode = |samples: &[i16]| {
            let mut bytes = Vec::with_capacity(FRAME_SAMPLES);
            Codec::Mulaw.encode_into(samples, &mut bytes);
            B64.encode(bytes).into_boxed_str()
        };
        let last_loud = pcm
            .chunks(FRAME_SAMPLES)
            .rposition(|f| f.iter().any(|x| x.unsigned_abs() > 1_000))
            .unwrap_or(0);
        Payloads {
            last_loud,
            speech: pcm.chunks(FRAME_SAMPLES).map(encode).collect(),
            // Digital μ-law silence.
            silence: B64.encode([0xFF_u8; FRAME_SAMPLES]).into_boxed_str(),
        }
    }
}

/// Shared between the ramp, the shards and the run.
#[derive(Default)]
struct Control {
    /// The hold is on (the shards record their tick timing).
    holding: AtomicBool,
    hangup: AtomicBool,
    readers: AtomicUsize,
    calls: Mutex<Vec<Arc<Mutex<Observed>>>>,
}

/// One call as the caller sees it: the playback model (updated by the reader, read by the
/// shard) and the counters.
#[derive(Default)]
struct Observed {
    /// When the buffered bot audio runs out.
    play_end: Option<Instant>,
    /// Media arrived since the last mark or clear: a message is playing.
    in_message: bool,
    /// Marks queued behind buffered audio, with when playback reaches them.
    marks: VecDeque<(Instant, String)>,
    /// Marks flushed by a clear, echoed at once.
    flushed: Vec<String>,
    /// Waiting for the bot's next message since this instant (greeting: not a turn).
    awaiting: Option<(Instant, bool)>,
    /// The awaited reply has started.
    reply_started: bool,

    media_rx: u64,
    late: u64,
    /// Late by more than a frame (an underrun no jitter in this generator explains).
    late_frame: u64,
    max_gap: Duration,
    eos_to_audio_ms: Vec<f64>,
    closed: bool,
    bad_messages: u64,
    turns: u64,
    answered: u64,
    unanswered: u64,
    write_error: bool,
    stalled: bool,
    backlog: usize,
    /// `--silent`: no greeting is expected.
    silent: bool,
}

impl Observed {
    fn held(&self) -> bool {
        !self.closed
            && !self.write_error
            && !self.stalled
            && (self.media_rx > 0 || self.silent)
            && self.backlog < HELD_BACKLOG
    }

    fn idle_since(&self, now: Instant, at_least: Duration) -> bool {
        !self.in_message
            && self.marks.is_empty()
            && self.play_end.is_none_or(|end| end + at_least <= now)
    }

    /// `play`: the audio the message holds (20 ms from voxhook, 40 ms from pipecat).
    fn on_media(&mut self, now: Instant, play: Duration) {
        self.media_rx += 1;
        match self.play_end {
            Some(end) if self.in_message && now > end => {
                self.late += 1;
                self.late_frame += u64::from(now - end > FRAME);
                self.max_gap = self.max_gap.max(now - end);
            }
            _ => {}
        }
        if !self.in_message {
            if let Some((since, greeting)) = self.awaiting.take() {
                if !greeting {
                    self.eos_to_audio_ms.push((now - since).as_secs_f64() * 1e3);
                }
                self.reply_started = true;
            }
        }
        self.in_message = true;
        let start = self.play_end.filter(|end| *end > now).unwrap_or(now);
        self.play_end = Some(start + play);
    }

    fn on_mark(&mut self, now: Instant, name: String) {
        let at = self.play_end.filter(|end| *end > now).unwrap_or(now);
        self.marks.push_back((at, name));
        self.in_message = false;
    }

    fn on_clear(&mut self) {
        self.flushed.extend(self.marks.drain(..).map(|(_, m)| m));
        self.play_end = None;
        self.in_message = false;
    }
}

/// Why calls were not held, e.g. "3 closed, 12 backlog".
fn not_held(calls: &[Arc<Mutex<Observed>>]) -> String {
    let mut why: BTreeMap<&str, usize> = BTreeMap::new();
    for c in calls {
        let c = c.lock().unwrap();
        let reason = if c.held() {
            continue;
        } else if c.closed {
            "closed by the daemon"
        } else if c.write_error {
            "write error"
        } else if c.stalled {
            "stalled"
        } else if c.media_rx == 0 {
            "no bot audio yet"
        } else {
            "send backlog over 8 KiB"
        };
        *why.entry(reason).or_default() += 1;
    }
    let parts: Vec<String> = why.iter().map(|(k, v)| format!("{v} {k}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

struct RampResult {
    connected: usize,
    failed: usize,
    first_error: Option<String>,
}

/// Connects `n` calls at `rate` per second and hands each to a shard (round robin).
async fn ramp(
    n: usize,
    port: u16,
    opts: &Opts,
    shards: Vec<mpsc::UnboundedSender<Call>>,
    ctl: Arc<Control>,
) -> RampResult {
    let sem = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / opts.ramp_per_sec)).await;
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let shard = shards[i % shards.len()].clone();
        let ctl = ctl.clone();
        let silent = opts.silent;
        tasks.spawn(async move {
            let r = tokio::time::timeout(CONNECT_TIMEOUT, connect(port, i, silent)).await;
            drop(permit);
            let (call, rd, leftover) = match r {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("connect timed out".to_string()),
            };
            ctl.calls.lock().unwrap().push(call.seen.clone());
            ctl.readers.fetch_add(1, Ordering::Relaxed);
            let seen = call.seen.clone();
            let reader_ctl = ctl.clone();
            tokio::spawn(async move {
                read_loop(rd, leftover, seen).await;
                reader_ctl.readers.fetch_sub(1, Ordering::Relaxed);
            });
            shard.send(call).map_err(|_| "shard gone".to_string())
        });
    }
    let mut res = RampResult {
        connected: 0,
        failed: 0,
        first_error: None,
    };
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => res.connected += 1,
            Ok(Err(e)) => {
                res.failed += 1;
                res.first_error.get_or_insert(e);
            }
            Err(e) => {
                res.failed += 1;
                res.first_error.get_or_insert(e.to_string());
            }
        }
    }
    res
}

/// A call's sending side, owned by its shard.
struct Call {
    stream_sid: Box<str>,
    call_sid: Box<str>,
    wr: OwnedWriteHalf,
    /// Bytes not yet accepted by the socket.
    out: Vec<u8>,
    scratch: Vec<u8>,
    seq: u64,
    chunk: u64,
    phase: Phase,
    rng: u64,
    seen: Arc<Mutex<Observed>>,
    hung_up_at: Option<Instant>,
    /// When this utterance's last loud frame was sent.
    speech_end: Option<Instant>,
    done: bool,
}

enum Phase {
    /// Waiting for the bot's reply (or greeting) to start and finish playing.
    AwaitReply {
        since: Instant,
        greeting: bool,
    },
    Pause {
        until: Instant,
    },
    Speaking {
        frame: usize,
    },
    /// `--silent`: never speaks.
    Silent,
}

/// The upgrade request, the `connected` and `start` messages; returns the call, the read
/// half and any bytes read past the HTTP response.
async fn connect(
    port: u16,
    i: usize,
    silent: bool,
) -> Result<(Call, OwnedReadHalf, Vec<u8>), String> {
    let err = |e: std::io::Error| e.to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.map_err(err)?;
    s.set_nodelay(true).map_err(err)?;
    let req = format!(
        "GET /twilio HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.map_err(err)?;
    let mut acc = Vec::new();
    let mut buf = [0u8; 2048];
    let leftover = loop {
        let n = s.read(&mut buf).await.map_err(err)?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        acc.extend_from_slice(&buf[..n]);
        if let Some(end) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
            if !acc.starts_with(b"HTTP/1.1 101") {
                let status = String::from_utf8_lossy(&acc[..acc.len().min(40)]).into_owned();
                return Err(format!(
                    "upgrade refused: {}",
                    status.lines().next().unwrap_or("")
                ));
            }
            break acc.split_off(end + 4);
        }
        if acc.len() > 8192 {
            return Err("oversized upgrade response".into());
        }
    };
    let id = format!("{i:06}{:026x}", rand::random::<u128>() >> 24);
    let stream_sid: Box<str> = format!("MZ{id}").into();
    let call_sid: Box<str> = format!("CA{id}").into();
    let mut out = Vec::with_capacity(1024);
    push_text(
        &mut out,
        br#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
    );
    let start = format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{stream_sid}","start":{{"accountSid":"ACload","streamSid":"{stream_sid}","callSid":"{call_sid}","tracks":["inbound"],"customParameters":{{"from":"+1555{i:07}","to":"+15550000000"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    );
    push_text(&mut out, start.as_bytes());
    s.write_all(&out).await.map_err(err)?;
    out.clear();
    let (rd, wr) = s.into_split();
    let now = Instant::now();
    let seen = Arc::new(Mutex::new(Observed {
        awaiting: (!silent).then_some((now, true)),
        silent,
        ..Observed::default()
    }));
    let call = Call {
        stream_sid,
        call_sid,
        wr,
        out,
        scratch: Vec::with_capacity(512),
        seq: 1,
        chunk: 0,
        phase: if silent {
            Phase::Silent
        } else {
            Phase::AwaitReply {
                since: now,
                greeting: true,
            }
        },
        rng: 0x9E37_79B9_7F4A_7C15 ^ (i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9),
        seen,
        hung_up_at: None,
        speech_end: None,
        done: false,
    };
    Ok((call, rd, leftover))
}

/// One client text frame: FIN, opcode 1, masked with the all-zero key (masking is then the
/// identity, and the server's unmasking work is the same as for any key).
fn push_text(out: &mut Vec<u8>, payload: &[u8]) {
    out.push(0x81);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
}

/// Close frame, code 1000, zero mask.
const CLOSE_FRAME: [u8; 8] = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8];

impl Call {
    /// Uniform in `[lo, hi)` (splitmix64).
    fn jitter(&mut self, lo: Duration, hi: Duration) -> Duration {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi.saturating_sub(lo)).mul_f64(u)
    }

    fn push_media(&mut self, payload: &str) {
        self.seq += 1;
        self.chunk += 1;
        let s = &mut self.scratch;
        s.clear();
        s.extend_from_slice(br#"{"event":"media","sequenceNumber":""#);
        push_u64(s, self.seq);
        s.extend_from_slice(br#"","streamSid":""#);
        s.extend_from_slice(self.stream_sid.as_bytes());
        s.extend_from_slice(br#"","media":{"track":"inbound","chunk":""#);
        push_u64(s, self.chunk);
        s.extend_from_slice(br#"","timestamp":""#);
        push_u64(s, self.chunk * 20);
        s.extend_from_slice(br#"","payload":""#);
        s.extend_from_slice(payload.as_bytes());
        s.extend_from_slice(br#""}}"#);
        push_text(&mut self.out, &self.scratch);
    }

    fn push_mark(&mut self, name: &str) {
        self.seq += 1;
        let m = format!(
            r#"{{"event":"mark","sequenceNumber":"{}","streamSid":"{}","mark":{{"name":"{name}"}}}}"#,
            self.seq, self.stream_sid
        );
        push_text(&mut self.out, m.as_bytes());
    }

    fn push_stop(&mut self) {
        self.seq += 1;
        let m = format!(
            r#"{{"event":"stop","sequenceNumber":"{}","streamSid":"{}","stop":{{"accountSid":"ACload","callSid":"{}"}}}}"#,
            self.seq, self.stream_sid, self.call_sid
        );
        push_text(&mut self.out, m.as_bytes());
        self.out.extend_from_slice(&CLOSE_FRAME);
    }

    /// One 20 ms step: echo due marks, send one media frame, advance the talk schedule,
    /// write what the socket takes.
    fn tick(&mut self, now: Instant, payloads: &Payloads, hangup: bool, pause: Duration) {
        let seen = self.seen.clone();
        let mut s = seen.lock().unwrap();
        if s.closed || s.write_error || s.stalled {
            self.done = true;
            return;
        }
        if let Some(at) = self.hung_up_at {
            // Only flushing the stop message now.
            if self.out.is_empty() || now - at > Duration::from_secs(1) {
                self.done = true;
                return;
            }
        } else if hangup {
            self.push_stop();
            self.hung_up_at = Some(now);
        } else {
            while s.marks.front().is_some_and(|(at, _)| *at <= now) {
                let (_, name) = s.marks.pop_front().expect("front");
                self.push_mark(&name);
            }
            for name in std::mem::take(&mut s.flushed) {
                self.push_mark(&name);
            }
            let payload: &str = match self.phase {
                Phase::Speaking { frame } => {
                    if frame == payloads.last_loud {
                        self.speech_end = Some(now);
                    }
                    if frame + 1 >= payloads.speech.len() {
                        s.turns += 1;
                        s.awaiting = Some((self.speech_end.take().unwrap_or(now), false));
                        s.reply_started = false;
                        self.phase = Phase::AwaitReply {
                            since: now,
                            greeting: false,
                        };
                    } else {
                        self.phase = Phase::Speaking { frame: frame + 1 };
                    }
                    &payloads.speech[frame]
                }
                Phase::AwaitReply { since, greeting } => {
                    let next = if s.reply_started && s.idle_since(now, IDLE_BEFORE_SPEAKING) {
                        s.answered += u64::from(!greeting);
                        s.reply_started = false;
                        true
                    } else if now - since > REPLY_TIMEOUT {
                        s.unanswered += u64::from(!greeting);
                        s.awaiting = None;
                        true
                    } else {
                        false
                    };
                    if next {
                        // The first pause spreads the calls over a whole cycle.
                        let (lo, hi) = if greeting {
                            (Duration::ZERO, pause * 2)
                        } else {
                            (pause / 2, pause * 3 / 2)
                        };
                        let wait = self.jitter(lo, hi);
                        self.phase = Phase::Pause { until: now + wait };
                    }
                    &payloads.silence
                }
                Phase::Pause { until } => {
                    if now >= until {
                        self.phase = Phase::Speaking { frame: 0 };
                    }
                    &payloads.silence
                }
                Phase::Silent => &payloads.silence,
            };
            self.push_media(payload);
        }
        if !self.out.is_empty() {
            match self.wr.try_write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => s.write_error = true,
            }
        }
        s.backlog = self.out.len();
        if s.backlog > MAX_BACKLOG {
            s.stalled = true;
        }
    }
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Drives many calls from one 20 ms tick. `Burst`: a late tick is caught up at once, so each
/// call still sends 50 frames a second on average, as a jittery network delivers them
/// (`Skip` would silently send fewer frames than real time). Returns, for the ticks of the
/// hold, how late each fired and how long its work took, in ms.
async fn shard(
    index: usize,
    shards: usize,
    mut new_calls: mpsc::UnboundedReceiver<Call>,
    ctl: Arc<Control>,
    payloads: Arc<Payloads>,
    pause: Duration,
) -> (Vec<f64>, Vec<f64>) {
    // Shards tick at evenly spread offsets, so the sends are spread over the 20 ms.
    let start = Instant::now() + FRAME.mul_f64(index as f64 / shards as f64);
    let mut tick = tokio::time::interval_at(start, FRAME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut calls: Vec<Call> = Vec::new();
    let (mut lags, mut work) = (Vec::new(), Vec::new());
    let mut ramping = true;
    loop {
        tokio::select! {
            biased;
            c = new_calls.recv(), if ramping => match c {
                Some(c) => calls.push(c),
                None => ramping = false,
            },
            due = tick.tick() => {
                let now = Instant::now();
                let hangup = ctl.hangup.load(Ordering::Relaxed);
                for c in &mut calls {
                    c.tick(now, &payloads, hangup, pause);
                }
                calls.retain(|c| !c.done);
                if ctl.holding.load(Ordering::Relaxed) {
                    lags.push((now - due).as_secs_f64() * 1e3);
                    work.push((Instant::now() - now).as_secs_f64() * 1e3);
                }
                if hangup && calls.is_empty() && !ramping {
                    return (lags, work);
                }
            }
        }
    }
}

/// Reads the daemon's messages: server frames are unmasked; only the message kind (and a
/// mark's name) is looked at.
async fn read_loop(mut rd: OwnedReadHalf, mut acc: Vec<u8>, seen: Arc<Mutex<Observed>>) {
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        let mut pos = 0;
        let mut closed = false;
        {
            let mut s = seen.lock().unwrap();
            while let Some((opcode, start, end)) = parse_frame(&acc[pos..]) {
                let payload = &acc[pos + start..pos + end];
                match opcode {
                    1 => on_text(&mut s, now, payload),
                    8 => closed = true,
                    9 | 10 => {}
                    _ => s.bad_messages += 1,
                }
                pos += end;
                if closed {
                    break;
                }
            }
            if closed {
                s.closed = true;
            }
        }
        if closed {
            return;
        }
        acc.drain(..pos);
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => {
                seen.lock().unwrap().closed = true;
                return;
            }
            Ok(n) => acc.extend_from_slice(&buf[..n]),
        }
    }
}

/// `(opcode, payload start, payload end)` of the first complete frame in `b`.
fn parse_frame(b: &[u8]) -> Option<(u8, usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0F;
    let masked = b[1] & 0x80 != 0;
    let (len, mut at): (usize, usize) = match b[1] & 0x7F {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    if masked {
        at += 4;
    }
    let end = at.checked_add(len)?;
    (b.len() >= end).then_some((opcode, at, end))
}

fn on_text(s: &mut Observed, now: Instant, msg: &[u8]) {
    // serde writes the tag first: {"event":"media",… / {"event":"mark",… / {"event":"clear",…
    // Python's json.dumps (pipecat) puts a space after the colon: {"event": "media", …
    let event = |name: &[u8]| {
        let rest = msg
            .strip_prefix(br#"{"event":"#)
            .map(|r| r.strip_prefix(b" ").unwrap_or(r));
        rest.is_some_and(|r| r.len() > name.len() + 1 && r[0] == b'"' && r[1..].starts_with(name))
            && rest.is_some_and(|r| r[1 + name.len()] == b'"')
    };
    if event(b"media") {
        s.on_media(now, media_duration(msg));
    } else if event(b"mark") {
        let name = find_after(msg, br#""name":"#)
            .map(|r| r.strip_prefix(b" ").unwrap_or(r))
            .and_then(|r| r.strip_prefix(b"\""))
            .and_then(|rest| rest.split(|&c| c == b'"').next())
            .map(|n| String::from_utf8_lossy(n).into_owned());
        match name {
            Some(n) => s.on_mark(now, n),
            None => s.bad_messages += 1,
        }
    } else if event(b"clear") {
        s.on_clear();
    } else {
        s.bad_messages += 1;
    }
}

/// The audio in a media message: its base64 μ-law payload at 8 kHz (one frame if unreadable).
fn media_duration(msg: &[u8]) -> Duration {
    let payload = find_after(msg, br#""payload":"#)
        .map(|r| r.strip_prefix(b" ").unwrap_or(r))
        .and_then(|r| r.strip_prefix(b"\""))
        .and_then(|r| r.split(|&c| c == b'"').next());
    match payload {
        Some(p) if p.len() >= 4 => {
            let pad = p.iter().rev().take_while(|&&c| c == b'=').count();
            let bytes = p.len() / 4 * 3 - pad;
            Duration::from_micros(bytes as u64 * 125)
        }
        _ => FRAME,
    }
}

fn find_after<'a>(hay: &'a [u8], needle: &[u8]) -> Option<&'a [u8]> {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .map(|i| &hay[i + needle.len()..])
}
