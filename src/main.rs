//! The `voxhook` binary: a thin CLI over the library (`run`, `validate`, `demo`, `call`,
//! `token`), logging setup and exit codes (64 for usage or configuration errors, 1 for
//! startup failures).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use voxhook::bot::kore::auth::TokenMinter;
use voxhook::shutdown::{self, Shutdown};
use voxhook::{app, config, systemd};
#[cfg(feature = "sim")]
use voxhook::{sim, softphone};

const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "voxhook",
    version,
    about = "Puts a webhook chatbot on the phone."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// TOML configuration file.
        #[arg(long, default_value = "/etc/voxhook/voxhook.toml")]
        config: PathBuf,
    },
    /// Check a configuration file (no network access) and report every problem.
    Validate {
        /// TOML configuration file.
        #[arg(long, default_value = "/etc/voxhook/voxhook.toml")]
        config: PathBuf,
    },
    /// Place one demo call through the daemon with the embedded engines and a local bot.
    #[cfg(feature = "sim")]
    Demo {
        /// whisper.cpp model file.
        #[arg(long, default_value = "models/ggml-tiny.en.bin")]
        model: PathBuf,
        /// What the caller says first.
        #[arg(long, default_value = "assets/demo/caller-1-balance.wav")]
        first_wav: PathBuf,
        /// What the caller says last.
        #[arg(long, default_value = "assets/demo/caller-2-goodbye.wav")]
        last_wav: PathBuf,
        /// Keys pressed when asked for the PIN.
        #[arg(long, default_value = "1234#")]
        keys: String,
        /// Where to save what the caller heard.
        #[arg(long, default_value = "demo-call.wav")]
        out: PathBuf,
        /// Bot platform of the development bot: Kore.ai XO (`kore`) or inGenious AI.
        #[arg(long, default_value = "kore", value_parser = voxhook::sim::demo::PLATFORM_CHOICES)]
        platform: String,
        /// Kore webhook API of the development bot: v2, or the legacy v1.
        #[arg(long, default_value = "v2", value_parser = ["v1", "v2"])]
        api: String,
        /// sync (replies in the response, v2 with polling) or async (replies POSTed to
        /// voxhook's callback route).
        #[arg(long, default_value = "sync", value_parser = ["sync", "async"])]
        mode: String,
        /// Also print each message the caller heard, transcribed with whisper.
        #[arg(long)]
        transcribe: bool,
        /// STT backend: the embedded whisper, or a cloud backend against its local fake.
        #[arg(long, default_value = "whisper", value_parser = voxhook::sim::demo::STT_CHOICES)]
        stt: String,
        /// TTS backend: the embedded flite, or a cloud backend against its local fake.
        #[arg(long, default_value = "flite", value_parser = voxhook::sim::demo::TTS_CHOICES)]
        tts: String,
    },
    /// A softphone: call a running voxhook over Twilio's Media Streams protocol, speak
    /// WAV files or typed lines, press keys, and print what the bot said.
    #[cfg(feature = "sim")]
    Call {
        /// The daemon's media route, e.g. ws://127.0.0.1:8080/twilio or wss://host/twilio.
        url: String,
        /// Steps, in order: say:TEXT, play:FILE.wav, keys:DIGITS, wait:SECONDS, hangup.
        /// Without steps, lines are read from stdin (`/keys 1#`, `/play f.wav`,
        /// `/wait 2`, `/hangup`, or words to say).
        steps: Vec<softphone::Step>,
        /// Caller's number (the `from` parameter).
        #[arg(long, default_value = "+15550001111")]
        from: String,
        /// Called number (the `to` parameter).
        #[arg(long, default_value = "+15550002222")]
        to: String,
        /// Extra custom parameter NAME=VALUE (repeatable).
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// whisper.cpp model used to transcribe what the bot said.
        #[arg(long, default_value = "models/ggml-tiny.en.bin")]
        model: PathBuf,
        /// Save the bot's audio here (8 kHz mono WAV).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Silence (ms) after which the bot's turn counts as over.
        #[arg(long, default_value_t = 1500)]
        quiet_ms: u64,
        /// Longest wait (s) for the bot to speak after each step.
        #[arg(long, default_value_t = 30)]
        answer_timeout_secs: u64,
    },
    /// Print a fresh Kore JWT made from the configuration (for trying the webhook with curl).
    /// The token goes to stdout only.
    Token {
        /// TOML configuration file.
        #[arg(long, default_value = "/etc/voxhook/voxhook.toml")]
        config: PathBuf,
        /// Bot user id for `userIdentity` (when bot.jwt_user_identity = true).
        #[arg(long, default_value = "voxhook-token")]
        user: String,
    },
}

#[cfg(feature = "sim")]
fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

fn load(path: &Path) -> Result<config::Settings, ExitCode> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    // systemd credentials (LoadCredential=) count as environment variables and win over them.
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        match systemd::credentials(Path::new(&dir)) {
            Ok(creds) => env.extend(creds),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(ExitCode::from(EX_USAGE));
            }
        }
    }
    let raw = config::load(Some(path), env).map_err(|e| {
        eprintln!("error: {}: {e}", path.display());
        ExitCode::from(EX_USAGE)
    })?;
    config::validate(raw).map_err(|errs| {
        eprintln!("error: {} has {} problem(s):", path.display(), errs.len());
        for e in errs {
            eprintln!("  - {e}");
        }
        ExitCode::from(EX_USAGE)
    })
}

/// Cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config } => match load(&config) {
            Ok(settings) => {
                // Files the engines would open at startup: named by their key here, so
                // `ExecStartPre=voxhook validate` stops a broken install before it starts.
                let a = &settings.audio;
                let tls = settings.server.tls.as_ref().and_then(|t| {
                    let e = voxhook::server::tls::Tls::load(t).err()?;
                    Some(config::ConfigError {
                        key: "server.tls".into(),
                        message: e.to_string(),
                    })
                });
                let missing: Vec<_> = (a.silero.iter().flat_map(|s| s.missing_files()))
                    .chain(a.smart_turn.iter().flat_map(|t| t.missing_files()))
                    .chain(tls)
                    .collect();
                if !missing.is_empty() {
                    eprintln!(
                        "error: {} has {} problem(s):",
                        config.display(),
                        missing.len()
                    );
                    for e in missing {
                        eprintln!("  - {e}");
                    }
                    return ExitCode::from(EX_USAGE);
                }
                let exposed = config::world_readable_secrets(&config);
                for w in settings.warnings(cores()).into_iter().chain(exposed) {
                    println!("warning: {w}");
                }
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { config } => {
            init_logging(cli.log_format, "info,whisper_rs=warn");
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let exposed = config::world_readable_secrets(&config);
            for w in settings.warnings(cores()).into_iter().chain(exposed) {
                tracing::warn!("{w}");
            }
            runtime().block_on(run(settings))
        }
        Command::Token { config, user } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let config::BotSettings::Kore(kore) = &settings.bot else {
                eprintln!("error: `token` mints Kore JWTs; this [bot] platform uses none");
                return ExitCode::from(EX_USAGE);
            };
            let minted = TokenMinter::from_settings(kore).and_then(|m| m.mint(&user));
            match minted {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "sim")]
        Command::Call {
            url,
            steps,
            from,
            to,
            params,
            model,
            out,
            quiet_ms,
            answer_timeout_secs,
        } => {
            init_logging(cli.log_format, "warn");
            let opts = softphone::CallOptions {
                url,
                from,
                to,
                parameters: params,
                steps,
                model_path: model,
                out_wav: out,
                quiet: std::time::Duration::from_millis(quiet_ms),
                answer_timeout: std::time::Duration::from_secs(answer_timeout_secs),
                auth_token: std::env::var("TWILIO_AUTH_TOKEN")
                    .ok()
                    .map(config::SensitiveString::new),
            };
            let mut stdout = std::io::stdout();
            match runtime().block_on(softphone::run(opts, &mut stdout)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "sim")]
        Command::Demo {
            model,
            first_wav,
            last_wav,
            keys,
            out,
            platform,
            api,
            mode,
            transcribe,
            stt,
            tts,
        } => {
            init_logging(cli.log_format, "warn");
            let opts = sim::demo::DemoOptions {
                model_path: model,
                first_wav,
                last_wav,
                keys,
                out_wav: out,
                platform,
                api: if api == "v1" {
                    voxhook::config::KoreApi::V1
                } else {
                    voxhook::config::KoreApi::V2
                },
                async_mode: mode == "async",
                transcribe,
                stt,
                tts,
            };
            match runtime().block_on(sim::demo::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

async fn run(settings: config::Settings) -> ExitCode {
    let engines = match app::Engines::load(&settings) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "Startup failed.");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(settings.server.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, addr = %settings.server.listen, "Cannot listen.");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = Shutdown::new();
    tokio::spawn(shutdown::on_signals(shutdown.clone()));
    match app::serve(settings, engines, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Daemon failed.");
            ExitCode::FAILURE
        }
    }
}
