//! Wiring: load the engines, bind, serve, and shut down in order (refuse new calls, let live
//! calls finish within the grace period, then end the rest through their normal path so each
//! bot session is closed).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bot::{self, BotChannel};
use crate::call::{CallDeps, Registry};
use crate::config::Settings;
use crate::server::{self, ServerState};
use crate::stt::{self, SpeechToText};
use crate::tts::{self, TextToSpeech};

/// Startup failures.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// STT could not load.
    #[error(transparent)]
    Stt(#[from] stt::SttError),
    /// TTS could not load.
    #[error(transparent)]
    Tts(#[from] tts::TtsError),
    /// The bot client could not be built.
    #[error(transparent)]
    Bot(#[from] bot::BotError),
    /// Socket trouble.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// The loaded engines and bot channel.
pub struct Engines {
    /// STT backend.
    pub stt: Arc<dyn SpeechToText>,
    /// TTS backend.
    pub tts: Arc<dyn TextToSpeech>,
    /// Bot channel.
    pub bot: Arc<dyn BotChannel>,
}

impl Engines {
    /// Loads everything the settings name (models are read here, once).
    pub fn load(settings: &Settings) -> Result<Self, AppError> {
        let t0 = tokio::time::Instant::now();
        let stt = stt::build(&settings.stt)?;
        let tts = tts::build(&settings.tts)?;
        let bot = bot::build(&settings.bot)?;
        tracing::info!(
            stt = stt.name(),
            tts = tts.name(),
            bot = bot.name(),
            load_ms = t0.elapsed().as_millis() as u64,
            "Engines loaded."
        );
        Ok(Self { stt, tts, bot })
    }
}

/// Serves on `listener` until `shutdown` fires, then drains. Returns once every call ended.
pub async fn serve(
    settings: Settings,
    engines: Engines,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let settings = Arc::new(settings);
    let calls_cancel = CancellationToken::new();
    let calls = TaskTracker::new();
    let deps = Arc::new(CallDeps {
        settings: settings.clone(),
        stt: engines.stt,
        tts: engines.tts,
        bot: engines.bot,
        registry: Arc::new(Registry::default()),
        calls_cancel: calls_cancel.clone(),
        calls: calls.clone(),
    });
    let state = Arc::new(ServerState {
        deps: deps.clone(),
        admission: Arc::new(Semaphore::new(settings.server.max_concurrent_calls)),
        draining: Default::default(),
    });
    let addr = listener.local_addr()?;
    tracing::info!(%addr, max_calls = settings.server.max_concurrent_calls, "Listening.");

    let http_stop = CancellationToken::new();
    let http = tokio::spawn({
        let stop = http_stop.clone();
        let router = server::router(state.clone());
        async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    });

    shutdown.cancelled().await;
    state.draining.store(true, Ordering::Relaxed);
    calls.close();
    let live = deps.registry.live_calls();
    tracing::info!(
        live_calls = live,
        grace_secs = settings.server.shutdown_grace_period.as_secs(),
        "Shutdown: refusing new calls, draining live ones."
    );
    if tokio::time::timeout(settings.server.shutdown_grace_period, calls.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            live_calls = deps.registry.live_calls(),
            "Grace period over: ending remaining calls."
        );
        calls_cancel.cancel();
        let hard = settings.bot.closure_deadline() + Duration::from_secs(3);
        if tokio::time::timeout(hard, calls.wait()).await.is_err() {
            tracing::error!("Calls did not finish in time; exiting anyway.");
        }
    }
    http_stop.cancel();
    let _ = http.await;
    tracing::info!("Stopped.");
    Ok(())
}
