//! Operator sections of the configuration: `[metrics]`, `[call_records]` and `[recording]`,
//! raw and validated, kept apart from the call-handling sections they do not affect.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::component::Errors;

/// `[metrics]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics on `/metrics`.
    pub enabled: bool,
    /// A separate admin listener for `/metrics`, `/live` and `/ready`; unset: the main one.
    pub listen: Option<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
        }
    }
}

/// `[call_records]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CallRecordsConfig {
    /// Where to append one JSON line per finished call: a file path, `"stdout"`, or empty
    /// for no records.
    pub output: String,
    /// Put what the caller and the bot said in records and log lines (personal data).
    pub transcripts: bool,
}

/// `[recording]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Write a two-channel WAV per call (caller left, bot right).
    pub enabled: bool,
    /// Directory of the WAV files.
    pub directory: String,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            directory: "recordings".into(),
        }
    }
}

/// Validated `[metrics]`.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    /// `/metrics` is served.
    pub enabled: bool,
    /// Separate admin listener, if any.
    pub listen: Option<SocketAddr>,
}

/// Where call records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutput {
    /// Standard output.
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

/// Validated `[call_records]`.
#[derive(Debug, Clone)]
pub struct CallRecordSettings {
    /// Destination; `None` writes no records.
    pub output: Option<RecordOutput>,
    /// Transcripts in records and logs.
    pub transcripts: bool,
}

/// Validated `[recording]`.
#[derive(Debug, Clone)]
pub struct RecordingSettings {
    /// Directory of per-call WAVs; `None` when recording is off.
    pub directory: Option<PathBuf>,
}

/// Validates `[metrics]` (its listener must not be the main one).
pub(super) fn metrics(
    c: MetricsConfig,
    server_listen: SocketAddr,
    errs: &mut Errors,
) -> MetricsSettings {
    let listen = c.listen.and_then(|l| match l.parse::<SocketAddr>() {
        Ok(a) if a == server_listen && a.port() != 0 => {
            errs.push("metrics.listen", "must differ from server.listen");
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(
                "metrics.listen",
                format!("`{l}` is not an address like 127.0.0.1:9090"),
            );
            None
        }
    });
    MetricsSettings {
        enabled: c.enabled,
        listen,
    }
}

/// Validates `[call_records]`.
pub(super) fn call_records(c: CallRecordsConfig) -> CallRecordSettings {
    let output = match c.output.trim() {
        "" => None,
        "stdout" | "-" => Some(RecordOutput::Stdout),
        path => Some(RecordOutput::File(PathBuf::from(path))),
    };
    CallRecordSettings {
        output,
        transcripts: c.transcripts,
    }
}

/// Validates `[recording]`.
pub(super) fn recording(c: RecordingConfig, errs: &mut Errors) -> RecordingSettings {
    if c.enabled && c.directory.trim().is_empty() {
        errs.push("recording.directory", "required when recording is enabled");
    }
    RecordingSettings {
        directory: c.enabled.then(|| PathBuf::from(c.directory)),
    }
}
