//! chan_websocket control messages (the only place that knows their shape), in both formats
//! Asterisk speaks: JSON objects (`{"event":…}` in, `{"command":…}` out; Asterisk 20.18,
//! 22.8, 23.2 and later, chosen with `f(json)` or `chan_websocket.conf`) and the legacy
//! single-line plain text (`MEDIA_START connection_id:… format:ulaw …` in, `MARK_MEDIA id`
//! out). Both read into the same [`Event`]. Audio is not here: it is binary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which control format a call uses (Asterisk's `control_message_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlFormat {
    /// JSON objects.
    Json,
    /// One line of text: the name, then parameters.
    PlainText,
}

/// `MEDIA_START`: the channel and its media.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MediaStart {
    /// The connection's UUID.
    #[serde(default)]
    pub connection_id: String,
    /// Channel name (`WebSocket/voxhook-00000001`).
    #[serde(default)]
    pub channel: String,
    /// The channel's unique id (`pbx1-1700000000.12`); absent from older plain-text releases.
    #[serde(default)]
    pub channel_id: Option<String>,
    /// Asterisk format name: `ulaw`, `alaw`, `slin`, `slin16`, ….
    pub format: String,
    /// Bytes in one frame of `ptime`.
    pub optimal_frame_size: usize,
    /// Packetization (ms).
    #[serde(default)]
    pub ptime: Option<u32>,
    /// The channel's variables (JSON format only).
    #[serde(default)]
    pub channel_variables: BTreeMap<String, serde_json::Value>,
}

/// Any control event, in either format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The media socket is up.
    MediaStart(Box<MediaStart>),
    /// A key was released.
    DtmfEnd(String),
    /// Asterisk's frame queue is at its high-water mark: stop sending media.
    MediaXoff,
    /// The queue is below its low-water mark again.
    MediaXon,
    /// Playback reached a `MARK_MEDIA`.
    MarkProcessed(Option<String>),
    /// Asterisk reports an error in a command of ours.
    Error(String),
    /// Another event (`STATUS`, `QUEUE_DRAINED`, …), by name.
    Other(String),
}

#[derive(Deserialize)]
struct JsonEvent {
    event: String,
    #[serde(default)]
    digit: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    error_text: Option<String>,
}

/// Reads one control message in `format`.
pub fn parse(format: ControlFormat, text: &str) -> Result<Event, String> {
    match format {
        ControlFormat::Json => parse_json(text),
        ControlFormat::PlainText => parse_plain(text),
    }
}

fn parse_json(text: &str) -> Result<Event, String> {
    let head: JsonEvent = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(match head.event.as_str() {
        "MEDIA_START" => Event::MediaStart(Box::new(
            serde_json::from_str(text).map_err(|e| e.to_string())?,
        )),
        "DTMF_END" => Event::DtmfEnd(head.digit.ok_or("DTMF_END without digit")?),
        "MEDIA_XOFF" => Event::MediaXoff,
        "MEDIA_XON" => Event::MediaXon,
        "MEDIA_MARK_PROCESSED" => {
            Event::MarkProcessed(head.correlation_id.filter(|c| !c.is_empty()))
        }
        "ERROR" => Event::Error(head.error_text.unwrap_or_default()),
        _ => Event::Other(head.event),
    })
}

fn parse_plain(text: &str) -> Result<Event, String> {
    let text = text.trim();
    let (name, rest) = text.split_once(' ').unwrap_or((text, ""));
    let rest = rest.trim();
    let param = |key: &str| {
        rest.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix(':'))
            .map(str::to_string)
    };
    Ok(match name {
        "MEDIA_START" => {
            let size = param("optimal_frame_size")
                .and_then(|v| v.parse().ok())
                .ok_or("MEDIA_START without a numeric optimal_frame_size")?;
            Event::MediaStart(Box::new(MediaStart {
                connection_id: param("connection_id").unwrap_or_default(),
                channel: param("channel").unwrap_or_default(),
                channel_id: param("channel_id"),
                format: param("format").ok_or("MEDIA_START without format")?,
                optimal_frame_size: size,
                ptime: param("ptime").and_then(|v| v.parse().ok()),
                channel_variables: BTreeMap::new(),
            }))
        }
        "DTMF_END" => Event::DtmfEnd(param("digit").ok_or("DTMF_END without digit")?),
        "MEDIA_XOFF" => Event::MediaXoff,
        "MEDIA_XON" => Event::MediaXon,
        // `MEDIA_MARK_PROCESSED <correlation_id>`.
        "MEDIA_MARK_PROCESSED" => Event::MarkProcessed((!rest.is_empty()).then(|| rest.into())),
        "ERROR" => Event::Error(param("error_text").unwrap_or_else(|| rest.into())),
        "" => return Err("empty control message".into()),
        other => Event::Other(other.into()),
    })
}

#[derive(Serialize)]
struct JsonCommand<'a> {
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
}

/// One command (`MARK_MEDIA`, `FLUSH_MEDIA`, …) in `format`, with its correlation id.
pub fn command(format: ControlFormat, name: &str, correlation_id: Option<&str>) -> String {
    match format {
        ControlFormat::Json => serde_json::to_string(&JsonCommand {
            command: name,
            correlation_id,
        })
        .unwrap_or_default(),
        ControlFormat::PlainText => match correlation_id {
            Some(id) => format!("{name} {id}"),
            None => name.to_string(),
        },
    }
}
