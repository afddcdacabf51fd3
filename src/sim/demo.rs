//! `voxhook demo`: one complete call on this machine with the embedded engines. It starts the
//! development bot and the daemon on loopback, places a simulated Twilio call that speaks WAV
//! files and presses keys, prints the conversation and saves what the caller heard.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::caller::{CallerOptions, SimCaller};
use super::kore::KoreSim;
use crate::app::{self, Engines};
use crate::audio::resample::Resampler;
use crate::audio::{wav, AudioFrame, TELEPHONY_RATE};

/// Demo inputs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// whisper model.
    pub model_path: PathBuf,
    /// First caller utterance (asks for the balance).
    pub first_wav: PathBuf,
    /// Last caller utterance (says goodbye).
    pub last_wav: PathBuf,
    /// Keys pressed when the bot asks for the PIN.
    pub keys: String,
    /// Where to write what the caller heard.
    pub out_wav: PathBuf,
}

/// Demo failures (reported by `main`).
#[derive(Debug, thiserror::Error)]
#[error("demo: {0}")]
pub struct DemoError(String);

fn err(e: impl std::fmt::Display) -> DemoError {
    DemoError(e.to_string())
}

/// Loads a WAV and converts it to 8 kHz telephony PCM.
pub fn load_caller_audio(path: &Path) -> Result<Vec<i16>, DemoError> {
    let f = wav::read(path).map_err(err)?;
    let mut r = Resampler::new(f.sample_rate, TELEPHONY_RATE).map_err(err)?;
    let mut out = Vec::new();
    r.process(&f.samples, &mut out);
    r.flush(&mut out);
    Ok(out)
}

/// Runs the demo call and prints the conversation to stdout.
pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let first = load_caller_audio(&opts.first_wav)?;
    let last = load_caller_audio(&opts.last_wav)?;
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let bot = KoreSim::start("st-demo-bot", "cs-demo-app", &secret)
        .await
        .map_err(err)?;
    let settings = bot.daemon_settings(&opts.model_path.display().to_string());
    let engines = Engines::load(&settings).map_err(err)?;
    let listener = TcpListener::bind(settings.server.listen)
        .await
        .map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(app::serve(settings, engines, listener, stop.clone()));

    println!(
        "voxhook demo: daemon on ws://{addr}/twilio, development bot at {}",
        bot.webhook_url()
    );
    let caller = SimCaller::connect(CallerOptions::new(
        &format!("ws://{addr}/twilio"),
        "+15550001111",
        "+15550002222",
    ))
    .await
    .map_err(err)?;
    let quiet = Duration::from_millis(1_500);
    let limit = Duration::from_secs(60);
    let step = |what: &str| println!("  [caller] {what}");

    step("waits for the greeting");
    caller
        .wait_bot_quiet(quiet, limit)
        .await
        .map_err(|_| err("no greeting heard"))?;
    step(&format!("says {}", opts.first_wav.display()));
    caller.say(first).await;
    caller.finish_speaking().await;
    caller
        .wait_bot_quiet(quiet, limit)
        .await
        .map_err(|_| err("no answer heard"))?;
    step(&format!("presses {}", opts.keys));
    caller.press(&opts.keys).await;
    caller
        .wait_bot_quiet(quiet, limit)
        .await
        .map_err(|_| err("no answer to the PIN"))?;
    step(&format!("says {}", opts.last_wav.display()));
    caller.say(last).await;
    caller.finish_speaking().await;
    caller
        .wait_bot_quiet(quiet, limit)
        .await
        .map_err(|_| err("no goodbye heard"))?;
    step("hangs up");
    caller.hang_up().await;

    // The daemon closes the bot session; wait for it before stopping.
    let closed = async {
        while bot.count_event("+15550001111", "SESSION_CLOSURE") == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), closed).await;
    stop.cancel();
    let _ = daemon.await;

    println!("\nConversation (as the bot saw it):");
    for (who, text) in bot.conversation() {
        let label = if who == "caller" {
            "voxhook heard"
        } else {
            "bot said     "
        };
        println!("  {label}: {text}");
    }
    let log = caller.log();
    println!(
        "\nSession events: ON_CONNECT x{}, SESSION_CLOSURE x{}; protocol violations: {}",
        bot.count_event("+15550001111", "ON_CONNECT"),
        bot.count_event("+15550001111", "SESSION_CLOSURE"),
        bot.violations().len()
    );
    wav::write(
        &opts.out_wav,
        &AudioFrame {
            samples: log.heard.clone(),
            sample_rate: TELEPHONY_RATE,
        },
    )
    .map_err(err)?;
    println!(
        "The caller heard {:.1} s of bot audio in {} frames ({} marks played): {}",
        log.heard.len() as f64 / f64::from(TELEPHONY_RATE),
        log.media_frames,
        log.marks_played.len(),
        opts.out_wav.display()
    );
    Ok(())
}
