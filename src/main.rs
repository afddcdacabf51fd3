//! The `voxhook` binary: a thin CLI over the library (`run`, `validate`, `demo`), logging
//! setup and exit codes (64 for usage or configuration errors, 1 for startup failures).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use voxhook::shutdown::{self, Shutdown};
use voxhook::{app, config, sim, systemd};

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
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config } => match load(&config) {
            Ok(_) => {
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
            runtime().block_on(run(settings))
        }
        Command::Demo {
            model,
            first_wav,
            last_wav,
            keys,
            out,
        } => {
            init_logging(cli.log_format, "warn");
            let opts = sim::demo::DemoOptions {
                model_path: model,
                first_wav,
                last_wav,
                keys,
                out_wav: out,
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
