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
use crate::config::{BotSettings, CallbackSettings, KoreApi, SensitiveString, WhisperSettings};
use crate::stt::whisper::WhisperStt;

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
    /// Bot platform, one of [`PLATFORM_CHOICES`].
    pub platform: String,
    /// Kore webhook API the development bot and the daemon speak.
    pub api: KoreApi,
    /// Replies as async callbacks to the daemon's callback route instead of in responses.
    pub async_mode: bool,
    /// Also print each message the caller heard, transcribed with whisper (so a fallback
    /// spoken by voxhook, which the bot never sees, shows).
    pub transcribe: bool,
    /// STT backend, one of [`STT_CHOICES`]; a cloud one runs against its local fake.
    pub stt: String,
    /// TTS backend, one of [`TTS_CHOICES`].
    pub tts: String,
}

/// The demo's bot platforms (each against its local simulator).
pub const PLATFORM_CHOICES: [&str; 2] = ["kore", "ingenious"];

/// The demo's STT backends.
pub const STT_CHOICES: [&str; 5] = ["whisper", "deepgram", "openai", "assemblyai", "vosk"];
/// The demo's TTS backends.
pub const TTS_CHOICES: [&str; 4] = ["flite", "openai", "deepgram", "elevenlabs"];

/// What the demo's caller says, for fakes that recognise nothing.
const DEMO_TRANSCRIPTS: [&str; 2] = [
    "I would like to check my account balance.",
    "No, that's all. Goodbye.",
];

/// Local fakes of the cloud backends the demo uses; they run until dropped.
type Fakes = Vec<Box<dyn std::any::Any + Send>>;

/// Points `settings` at the chosen backends, starting a local fake for each cloud one.
async fn speech_backends(
    opts: &DemoOptions,
    settings: &mut crate::config::Settings,
) -> Result<Fakes, DemoError> {
    let transcripts = DEMO_TRANSCRIPTS.map(String::from).to_vec();
    let mut fakes: Fakes = Vec::new();
    let stt = match opts.stt.as_str() {
        "deepgram" => {
            let sim = super::deepgram::DeepgramSim::start(super::deepgram::DeepgramSimOptions {
                transcripts,
                // Deepgram's typical streaming latency.
                latency: Duration::from_millis(150),
                ..Default::default()
            })
            .await
            .map_err(err)?;
            let section = super::backend_section("deepgram", "dg-test-key", &sim.base_url());
            fakes.push(Box::new(sim));
            Some(section)
        }
        "openai" => {
            let sim = super::openai::OpenAiSim::start(super::openai::OpenAiSimOptions {
                transcripts,
                // A hosted transcription round trip for a short utterance.
                latency: Duration::from_millis(400),
                ..Default::default()
            })
            .await
            .map_err(err)?;
            let section = super::backend_section("openai", "sk-test-key", &sim.base_url());
            fakes.push(Box::new(sim));
            Some(section)
        }
        "assemblyai" => {
            let sim =
                super::assemblyai::AssemblyAiSim::start(super::assemblyai::AssemblyAiSimOptions {
                    transcripts,
                    // AssemblyAI's typical streaming latency.
                    latency: Duration::from_millis(300),
                    ..Default::default()
                })
                .await
                .map_err(err)?;
            let section = super::backend_section("assemblyai", "aai-test-key", &sim.base_url());
            fakes.push(Box::new(sim));
            Some(section)
        }
        "vosk" => {
            let sim = super::vosk::VoskSim::start(super::vosk::VoskSimOptions {
                transcripts,
                // A self-hosted server on the same network: a few ms per reply.
                latency: Duration::from_millis(5),
                ..Default::default()
            })
            .await
            .map_err(err)?;
            let section = format!("provider = \"vosk\"\nbase_url = \"{}\"", sim.base_url());
            fakes.push(Box::new(sim));
            Some(section)
        }
        _ => None,
    };
    if let Some(toml) = stt {
        settings.stt =
            crate::stt::SttSettings::from_toml("stt", &toml).map_err(|e| err(format!("{e:?}")))?;
        println!("voxhook demo: STT {}, against its local fake", opts.stt);
    }
    let tts = match opts.tts.as_str() {
        "openai" => {
            let sim = super::openai::OpenAiSim::start(super::openai::OpenAiSimOptions {
                // A hosted speech request's first byte, then 100 ms of audio every 50 ms.
                latency: Duration::from_millis(300),
                chunk_interval: Duration::from_millis(50),
                ..Default::default()
            })
            .await
            .map_err(err)?;
            let section = super::backend_section("openai", "sk-test-key", &sim.base_url());
            fakes.push(Box::new(sim));
            Some(section)
        }
        "deepgram" => {
            let sim = super::deepgram::AuraSim::start(super::deepgram::AuraSimOptions {
                latency: Duration::from_millis(200),
                chunk_interval: Duration::from_millis(50),
                ..Default::default()
            })
            .await
            .map_err(err)?;
            let section = super::backend_section("deepgram", "dg-test-key", &sim.base_url());
            fakes.push(Box::new(sim));
            Some(section + "\nencoding = \"mulaw\"")
        }
        "elevenlabs" => {
            let sim =
                super::elevenlabs::ElevenLabsSim::start(super::elevenlabs::ElevenLabsSimOptions {
                    // Flash's typical time to first audio.
                    latency: Duration::from_millis(150),
                    ..Default::default()
                })
                .await
                .map_err(err)?;
            let section = super::backend_section("elevenlabs", "xi-test-key", &sim.base_url());
            fakes.push(Box::new(sim));
            Some(section)
        }
        _ => None,
    };
    if let Some(toml) = tts {
        settings.tts =
            crate::tts::TtsSettings::from_toml("tts", &toml).map_err(|e| err(format!("{e:?}")))?;
        println!(
            "voxhook demo: TTS {}, against its local fake (a tone per message)",
            opts.tts
        );
    }
    Ok(fakes)
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

/// The development bot the demo talks to.
enum DemoBot {
    Kore(KoreSim),
    Ingenious(super::ingenious::IngeniousSim),
}

/// Starts the chosen development bot and daemon settings pointing at it.
async fn start_bot(
    opts: &DemoOptions,
    callback_secret: &str,
) -> Result<(DemoBot, crate::config::Settings), DemoError> {
    let model = opts.model_path.display().to_string();
    if opts.platform == "ingenious" {
        let bot = super::ingenious::IngeniousSim::start("demo-access-token")
            .await
            .map_err(err)?;
        let mut settings = KoreSim::start("st-demo-bot", "cs-demo-app", "unused")
            .await
            .map_err(err)?
            .daemon_settings(&model);
        settings.bot = BotSettings::from_toml("bot", &bot.bot_section(callback_secret, ""))
            .map_err(|e| err(format!("{e:?}")))?;
        return Ok((DemoBot::Ingenious(bot), settings));
    }
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let bot = KoreSim::start("st-demo-bot", "cs-demo-app", &secret)
        .await
        .map_err(err)?;
    let mut settings = bot.daemon_settings(&model);
    if let BotSettings::Kore(k) = &mut settings.bot {
        if opts.api == KoreApi::V1 {
            k.api = KoreApi::V1;
            k.webhook_url = bot.v1_webhook_url();
            k.greeting_text = Some("hello".into());
        }
        if opts.async_mode {
            k.callback = Some(CallbackSettings {
                secret: SensitiveString::new(callback_secret),
                bearer_token: None,
            });
        }
    }
    Ok((DemoBot::Kore(bot), settings))
}

/// Runs the demo call and prints the conversation to stdout.
pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let first = load_caller_audio(&opts.first_wav)?;
    let last = load_caller_audio(&opts.last_wav)?;
    let callback_secret = uuid::Uuid::new_v4().simple().to_string();
    let (bot, mut settings) = start_bot(&opts, &callback_secret).await?;
    let _fakes = speech_backends(&opts, &mut settings).await?;
    let engines = Engines::load(&settings).map_err(err)?;
    let listener = TcpListener::bind(settings.server.listen)
        .await
        .map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    let about = match &bot {
        DemoBot::Kore(k) => {
            if opts.async_mode {
                k.set_async(
                    format!("http://{addr}/kore/callback/{callback_secret}"),
                    None,
                );
            }
            let webhook = match opts.api {
                KoreApi::V1 => k.v1_webhook_url(),
                KoreApi::V2 => k.webhook_url(),
            };
            let mode = if opts.async_mode { "async" } else { "sync" };
            format!("development bot ({mode}) at {webhook}")
        }
        DemoBot::Ingenious(i) => {
            i.set_target(
                format!("http://{addr}/ingenious/webhook/{callback_secret}"),
                None,
            );
            format!("inGenious development bot at {}", i.base_url())
        }
    };
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(app::serve(settings, engines, listener, stop.clone()));
    println!("voxhook demo: daemon on ws://{addr}/twilio, {about}");
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

    // The daemon closes the bot session (Kore v2; v1 and inGenious have no closure event);
    // wait for it before stopping.
    let closed = async {
        while let DemoBot::Kore(k) = &bot {
            if opts.api == KoreApi::V1 || k.count_event("+15550001111", "SESSION_CLOSURE") > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), closed).await;
    stop.cancel();
    let _ = daemon.await;

    println!("\nConversation (as the bot saw it):");
    let summary = match &bot {
        DemoBot::Kore(k) => {
            for (who, text) in k.conversation() {
                let label = if who == "caller" {
                    "voxhook heard"
                } else {
                    "bot said     "
                };
                println!("  {label}: {text}");
            }
            format!(
                "Session events: ON_CONNECT x{}, SESSION_CLOSURE x{}; protocol violations: {}",
                k.count_event("+15550001111", "ON_CONNECT"),
                k.count_event("+15550001111", "SESSION_CLOSURE"),
                k.violations().len()
            )
        }
        DemoBot::Ingenious(i) => ingenious_conversation(i),
    };
    let log = caller.log();
    if opts.transcribe {
        println!("\nWhat the caller heard (transcribed with whisper, message by message):");
        let stt = WhisperStt::load(&WhisperSettings {
            model_path: opts.model_path.display().to_string(),
            language: "en".into(),
            threads: 2,
            max_parallel_decodes: 1,
        })
        .map_err(err)?;
        let mut from = 0;
        for (mark, to) in &log.mark_offsets {
            let text = crate::softphone::transcribe(&stt, &log.heard[from..*to])
                .await
                .map_err(err)?;
            println!("  [{mark}] {}", text.trim());
            from = *to;
        }
    }
    println!("\n{summary}");
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

/// Prints the inGenious chat in order (user messages and bot messages) and sums it up.
fn ingenious_conversation(bot: &super::ingenious::IngeniousSim) -> String {
    for (who, text) in bot.conversation() {
        let label = match who.as_str() {
            "caller" => "voxhook heard",
            "postback" => "postback     ",
            _ => "bot said     ",
        };
        println!("  {label}: {text}");
    }
    let received = bot.received();
    format!(
        "Chats created: {}; bot messages acknowledged: {}; protocol violations: {}",
        received.iter().filter(|r| r.kind == "create").count(),
        received.iter().filter(|r| r.kind == "ack").count(),
        bot.violations().len()
    )
}
