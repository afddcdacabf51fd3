//! Wiring: load the engines, bind, serve, and shut down in order (refuse new calls, let live
//! calls finish within the grace period, then end the rest through their normal path so each
//! bot session is closed).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audio::silero::{SileroError, SileroPool};
use crate::audio::smart_turn::{SmartTurnError, SmartTurnPool};
use crate::audio::{wav, AudioFrame};
use crate::bot::{self, BotChannel};
use crate::call::directory::CallDirectory;
use crate::call::record::RecordSink;
use crate::call::{CallDeps, LanguageEngines};
use crate::config::Settings;
use crate::server::{self, ServerState};
use crate::shutdown::Shutdown;
use crate::stt::{self, SpeechToText};
use crate::systemd;
use crate::telephony::control::ControlError;
use crate::telephony::Provider;
use crate::tts::{self, TextToSpeech};

/// The default filler: a soft chime the project generates (`scripts/make-assets.sh`).
const BUILTIN_FILLER: &[u8] = include_bytes!("../assets/filler.wav");

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
    /// A configured audio asset could not be read.
    #[error("audio asset: {0}")]
    Asset(#[from] wav::WavError),
    /// A provider (its API client) could not be built.
    #[error("provider API: {0}")]
    Control(#[from] ControlError),
    /// The call directory could not be built.
    #[error(transparent)]
    Directory(#[from] crate::call::directory::DirectoryError),
    /// The call-record output could not be opened.
    #[error("call records: {0}")]
    Records(std::io::Error),
    /// Silero VAD (`[audio.silero]`) could not load.
    #[error(transparent)]
    Silero(#[from] SileroError),
    /// smart-turn (`[audio.smart_turn]`) could not load.
    #[error(transparent)]
    SmartTurn(#[from] SmartTurnError),
    /// The listener's certificate or key (`[server.tls]`) could not be used.
    #[error("server.tls: {0}")]
    Tls(#[from] crate::server::tls::TlsError),
}

/// The loaded engines, bot channel, audio assets and provider APIs.
pub struct Engines {
    /// STT backend of the default language.
    pub stt: Arc<dyn SpeechToText>,
    /// STT that takes over from any language's backend when it fails (`[stt] fallback`).
    pub stt_fallback: Option<Arc<dyn SpeechToText>>,
    /// TTS backend of the default language.
    pub tts: Arc<dyn TextToSpeech>,
    /// Bot channel.
    pub bot: Arc<dyn BotChannel>,
    /// Engines per `[languages]` code.
    pub languages: HashMap<String, LanguageEngines>,
    /// Filler clip (when filler is on).
    pub filler: Option<Arc<AudioFrame>>,
    /// Recorded fallback prompt.
    pub fallback_clip: Option<Arc<AudioFrame>>,
    /// The enabled telephony providers, each serving its route.
    pub providers: Vec<Arc<dyn Provider>>,
    /// Where calls claim user ids and callbacks find their call.
    pub directory: Arc<dyn CallDirectory>,
    /// Silero VAD's thread, shared by every call (`[audio.silero]` enabled).
    pub silero: Option<Arc<SileroPool>>,
    /// smart-turn's worker threads, shared by every call (`[audio.smart_turn]` enabled).
    pub smart_turn: Option<Arc<SmartTurnPool>>,
    /// The listener's certificate (`[server.tls]`), reloaded on SIGHUP.
    pub tls: Option<Arc<crate::server::tls::Tls>>,
}

impl Engines {
    /// Loads everything the settings name (models and assets are read here, once).
    pub fn load(settings: &Settings) -> Result<Self, AppError> {
        let t0 = tokio::time::Instant::now();
        let stt = stt::build(&settings.stt)?;
        let tts = tts::build(&settings.tts)?;
        let engines = Self::around(settings, stt, tts)?;
        let providers: Vec<&str> = engines.providers.iter().map(|p| p.name()).collect();
        tracing::info!(
            stt = engines.stt.name(),
            tts = engines.tts.name(),
            bot = engines.bot.name(),
            providers = ?providers,
            routing = engines.directory.name(),
            languages = engines.languages.len(),
            load_ms = t0.elapsed().as_millis() as u64,
            "Engines loaded."
        );
        Ok(engines)
    }

    /// Builds the rest around already-loaded default STT and TTS (tests share one model).
    pub fn around(
        settings: &Settings,
        stt: Arc<dyn SpeechToText>,
        tts: Arc<dyn TextToSpeech>,
    ) -> Result<Self, AppError> {
        let stt_fallback = settings.stt_fallback.as_ref().map(stt::build).transpose()?;
        let tts_fallbacks = settings
            .tts_fallback
            .iter()
            .map(tts::build)
            .collect::<Result<Vec<_>, _>>()?;
        let tts = tts::chain::with_fallbacks(tts, &tts_fallbacks);
        let mut languages = HashMap::new();
        for l in &settings.languages {
            let l_stt = match &l.stt {
                Some(own) => stt::build(own)?,
                None => stt.clone(),
            };
            let l_tts = match &l.tts {
                Some(own) => tts::chain::with_fallbacks(tts::build(own)?, &tts_fallbacks),
                None => tts.clone(),
            };
            languages.insert(
                l.code.clone(),
                LanguageEngines {
                    stt: l_stt,
                    stt_language: Some(l.stt_language.clone()),
                    tts: l_tts,
                },
            );
        }
        let filler = match settings.call.filler.as_ref() {
            None => None,
            Some(f) => Some(Arc::new(match &f.audio {
                Some(path) => wav::read(Path::new(path))?,
                None => wav::decode(BUILTIN_FILLER, "built-in filler")?,
            })),
        };
        let fallback_clip = match &settings.call.fallback_audio {
            Some(path) => Some(Arc::new(wav::read(Path::new(path))?)),
            None => None,
        };
        let silero = settings
            .audio
            .silero
            .as_ref()
            .map(SileroPool::load)
            .transpose()?;
        let smart_turn = settings
            .audio
            .smart_turn
            .as_ref()
            .map(SmartTurnPool::load)
            .transpose()?;
        let tls = settings
            .server
            .tls
            .as_ref()
            .map(crate::server::tls::Tls::load)
            .transpose()?;
        let bot = settings.bot.get().build()?;
        let public_url = settings.server.public_url.as_deref();
        let providers = settings
            .telephony
            .iter()
            .filter(|p| p.get().enabled())
            .map(|p| p.get().build(public_url))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            stt,
            stt_fallback,
            tts,
            bot: bot.clone(),
            languages,
            filler,
            fallback_clip,
            providers,
            directory: settings.routing.get().build(bot.clone())?,
            silero,
            smart_turn,
            tls,
        })
    }
}

/// Serves on `listener` until `shutdown` asks for a drain, then drains (see [`Shutdown`]).
/// Returns once every call ended. Readiness goes to systemd once serving starts.
pub async fn serve(
    settings: Settings,
    engines: Engines,
    listener: TcpListener,
    shutdown: impl Into<Shutdown>,
) -> Result<(), AppError> {
    let shutdown = shutdown.into();
    let settings = Arc::new(settings);
    let metrics = settings
        .metrics
        .enabled
        .then(crate::telemetry::metrics::install);
    let records = match &settings.call_records.output {
        Some(out) => Some(Arc::new(
            RecordSink::open(out).await.map_err(AppError::Records)?,
        )),
        None => None,
    };
    let admin = match settings.metrics.listen {
        Some(addr) => Some(TcpListener::bind(addr).await?),
        None => None,
    };
    // Providers that are raw TCP listeners bind now, so a taken port fails
    // startup like the HTTP listener does.
    let mut tcp_listeners = Vec::new();
    for (i, p) in engines.providers.iter().enumerate() {
        if let Some(addr) = p.tcp_listen() {
            tcp_listeners.push((i, p.name(), TcpListener::bind(addr).await?));
        }
    }
    let calls_cancel = CancellationToken::new();
    let calls = TaskTracker::new();
    let deps = Arc::new(CallDeps {
        settings: settings.clone(),
        engines: LanguageEngines {
            stt: engines.stt,
            stt_language: None,
            tts: engines.tts,
        },
        stt_fallback: engines.stt_fallback,
        languages: engines.languages,
        filler: engines.filler,
        fallback_clip: engines.fallback_clip,
        bot: engines.bot,
        directory: engines.directory,
        silero: engines.silero,
        smart_turn: engines.smart_turn,
        calls_cancel: calls_cancel.clone(),
        calls: calls.clone(),
        records,
    });
    let state = Arc::new(ServerState {
        deps: deps.clone(),
        providers: engines.providers,
        admission: Arc::new(Semaphore::new(settings.server.max_concurrent_calls)),
        draining: Default::default(),
        metrics,
    });
    deps.directory.start().await;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, max_calls = settings.server.max_concurrent_calls, "Listening.");

    let http_stop = CancellationToken::new();
    let with_metrics = admin.is_none();
    let limits = settings.server.conn_limits;
    let tls = engines.tls.clone();
    reload_on_sighup(tls.clone(), &http_stop);
    let http = spawn_http(
        listener,
        server::router(state.clone(), with_metrics),
        (limits, tls),
        &http_stop,
    );
    let admin_http = admin.map(|l| {
        if let Ok(a) = l.local_addr() {
            tracing::info!(addr = %a, "Admin listener (/metrics, /live, /ready).");
        }
        spawn_http(
            l,
            server::admin_router(state.clone()),
            (limits, None),
            &http_stop,
        )
    });
    let tcp_servers: Vec<_> = tcp_listeners
        .into_iter()
        .map(|(i, name, l)| {
            if let Ok(a) = l.local_addr() {
                tracing::info!(provider = name, addr = %a, "Listening for media connections.");
            }
            tokio::spawn(server::serve_tcp(state.clone(), i, l, http_stop.clone()))
        })
        .collect();
    systemd::ready(&format!("Serving on {addr}."));
    systemd::spawn_watchdog(addr, http_stop.clone());

    shutdown.draining().await;
    state.draining.store(true, Ordering::Relaxed);
    calls.close();
    let live = deps.directory.live_calls();
    let grace = settings.server.shutdown_grace_period;
    systemd::stopping(&format!("Draining {live} live call(s)."));
    tracing::info!(
        live_calls = live,
        grace_secs = grace.as_secs(),
        "Shutdown: refusing new calls, draining live ones."
    );
    let drained = tokio::select! {
        res = tokio::time::timeout(grace, calls.wait()) => res.is_ok(),
        _ = shutdown.forced() => false,
    };
    if !drained {
        let live = deps.directory.live_calls();
        tracing::warn!(live_calls = live, "Ending remaining calls.");
        systemd::status(&format!("Ending {live} live call(s)."));
        calls_cancel.cancel();
        let hard = settings.bot.get().closure_deadline() + Duration::from_secs(3);
        if tokio::time::timeout(hard, calls.wait()).await.is_err() {
            tracing::error!("Calls did not finish in time; exiting anyway.");
        }
    }
    // Callbacks keep reaching the calls above until they end; then the routes go.
    deps.directory.shutdown().await;
    http_stop.cancel();
    let _ = http.await;
    if let Some(admin) = admin_http {
        let _ = admin.await;
    }
    for t in tcp_servers {
        let _ = t.await;
    }
    tracing::info!("Stopped.");
    Ok(())
}

fn spawn_http(
    listener: TcpListener,
    router: axum::Router,
    (limits, tls): (server::accept::ConnLimits, Option<Arc<server::tls::Tls>>),
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(server::accept::serve(
        listener,
        router,
        (limits, tls),
        stop.clone(),
    ))
}

/// SIGHUP reloads the listener's certificate and key (`[server.tls]`); without TLS it is
/// logged and ignored (rather than ending the daemon, its default), so `systemctl reload`
/// is always safe.
fn reload_on_sighup(tls: Option<Arc<server::tls::Tls>>, stop: &CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("Cannot listen for SIGHUP; certificate reloads need a restart.");
        return;
    };
    let stop = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            match &tls {
                None => tracing::info!("SIGHUP: no TLS certificate to reload."),
                Some(t) => match t.reload() {
                    Ok(()) => tracing::info!("TLS certificate reloaded."),
                    Err(e) => tracing::error!(error = %e,
                        "TLS reload failed; the previous certificate stays in use."),
                },
            }
        }
    });
}
