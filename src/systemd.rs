//! Running under systemd: readiness and stopping notifications (`Type=notify`), watchdog
//! pings while the daemon answers its own `/live`, and secrets passed as credentials
//! (`LoadCredential=`, read from `$CREDENTIALS_DIRECTORY`). Outside systemd (no
//! `NOTIFY_SOCKET`, no `WATCHDOG_USEC`) every notification is a no-op.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// How long one watchdog self-check may take, as a fraction of the watchdog interval.
const PROBE_FRACTION: u32 = 4;

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "systemd notification failed.");
    }
}

/// Tells systemd the daemon is ready: the listener is bound and the engines are loaded.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the daemon is stopping.
pub fn stopping(status: &str) {
    notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// Updates the status line `systemctl status` shows.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// When systemd runs a watchdog (`WatchdogSec=`), pings it at half the interval for as long
/// as the daemon answers `GET /live` on `addr` within a quarter of the interval, until
/// `stop`. A stalled runtime or a dead listener stops the pings and systemd restarts us.
pub fn spawn_watchdog(addr: SocketAddr, stop: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let probe_timeout = interval / PROBE_FRACTION;
    let url = format!("http://{}/live", loopback(addr));
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog on."
    );
    tokio::spawn(async move {
        let client = match reqwest::Client::builder().timeout(probe_timeout).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "Watchdog probe client failed; no pings.");
                return;
            }
        };
        let mut tick = tokio::time::interval(interval / 2);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match client.get(&url).send().await {
                // The send blocks while systemd's queue is full: keep it off the runtime.
                Ok(r) if r.status().is_success() => {
                    let _ = tokio::task::spawn_blocking(|| notify(&[NotifyState::Watchdog])).await;
                }
                Ok(r) => tracing::warn!(status = r.status().as_u16(), "Watchdog probe failed."),
                Err(e) => tracing::warn!(error = %e, "Watchdog probe failed."),
            }
        }
    });
}

/// The address to reach our own listener at (a wildcard bind is reached on loopback).
fn loopback(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

/// A credentials directory that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The directory or a file in it could not be read.
    #[error("credentials directory {path}: {source}")]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A credential name is not a configuration key like `bot.client_secret`.
    #[error("credential `{0}` is not a configuration key like bot.client_secret")]
    Name(String),
}

/// Reads systemd credentials as configuration values: the credential `bot.client_secret`
/// becomes `VOXHOOK__BOT__CLIENT_SECRET`, with one trailing newline removed. The values
/// are returned in the shape of environment variables, so they go through the same
/// validation as the environment; the caller decides precedence.
pub fn credentials(dir: &Path) -> Result<HashMap<String, String>, CredentialError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CredentialError::Read { path, source }
    };
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
        let entry = entry.map_err(read_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let valid = !name.is_empty()
            && name.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
        if !valid {
            return Err(CredentialError::Name(name));
        }
        let path = entry.path();
        let mut value = std::fs::read_to_string(&path).map_err(read_err(&path))?;
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        let key = format!("VOXHOOK__{}", name.to_ascii_uppercase().replace('.', "__"));
        out.insert(key, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_config_keys() {
        let dir = std::env::temp_dir().join(format!("voxhook-creds-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bot.client_secret"), "s3cret\n").unwrap();
        std::fs::write(dir.join("telephony.twilio.auth_token"), "0123").unwrap();
        let got = credentials(&dir).unwrap();
        assert_eq!(got["VOXHOOK__BOT__CLIENT_SECRET"], "s3cret");
        assert_eq!(got["VOXHOOK__TELEPHONY__TWILIO__AUTH_TOKEN"], "0123");
        std::fs::write(dir.join("Bad-Name"), "x").unwrap();
        assert!(matches!(credentials(&dir), Err(CredentialError::Name(n)) if n == "Bad-Name"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        let a: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(loopback(a).to_string(), "127.0.0.1:8080");
        let b: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        assert_eq!(loopback(b), b);
    }
}
