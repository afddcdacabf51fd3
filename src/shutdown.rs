//! Shutdown requests. The first SIGTERM/SIGINT starts the drain (refuse new calls, let live
//! ones finish within the grace period); the second ends the live calls at once, still
//! closing each bot session; a third exits immediately.

use tokio_util::sync::CancellationToken;

/// The two stages of a shutdown request, as tokens the daemon waits on.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    force: CancellationToken,
}

impl Shutdown {
    /// No shutdown requested yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the drain.
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Skips what is left of the grace period (implies the drain).
    pub fn force(&self) {
        self.drain.cancel();
        self.force.cancel();
    }

    /// Resolves when the drain starts.
    pub async fn draining(&self) {
        self.drain.cancelled().await;
    }

    /// Resolves when the grace period is cut short.
    pub async fn forced(&self) {
        self.force.cancelled().await;
    }
}

/// A bare token drains when cancelled (tests and the demo stop the daemon this way).
impl From<CancellationToken> for Shutdown {
    fn from(drain: CancellationToken) -> Self {
        Self {
            drain,
            force: CancellationToken::new(),
        }
    }
}

/// Turns SIGTERM/SIGINT into `shutdown` stages: drain, force, then `exit(1)`.
pub async fn on_signals(shutdown: Shutdown) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot install signal handlers.");
        return;
    };
    for stage in 0.. {
        let name = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
        match stage {
            0 => {
                tracing::info!(signal = name, "Shutdown requested: draining.");
                shutdown.drain();
            }
            1 => {
                tracing::warn!(signal = name, "Second signal: ending live calls now.");
                shutdown.force();
            }
            _ => {
                tracing::warn!(signal = name, "Third signal: exiting without waiting.");
                std::process::exit(1);
            }
        }
    }
}
