//! Exotel Voicebot applet stream JSON messages (the only place that knows their shape):
//! snake_case, every value a string (sequence numbers and rates included), `stream_sid` on
//! every message both ways.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Any message Exotel sends, tagged by `event`.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Incoming<'a> {
    /// First message on the socket.
    Connected {},
    /// Stream metadata.
    Start {
        /// Stream id.
        #[serde(default)]
        stream_sid: Option<String>,
        /// Body.
        start: StartBody,
    },
    /// Caller audio.
    Media {
        /// Body.
        #[serde(borrow)]
        media: MediaBody<'a>,
    },
    /// Keypad digit.
    Dtmf {
        /// Body.
        #[serde(borrow)]
        dtmf: DtmfBody<'a>,
    },
    /// Mark reached (or flushed by a clear).
    Mark {
        /// Body.
        #[serde(borrow)]
        mark: InMark<'a>,
    },
    /// Stream ended (`stop.reason`: `stopped` or `callended`).
    Stop {
        /// Body.
        #[serde(default)]
        stop: Option<StopBody>,
    },
    /// Anything else (logged and ignored).
    #[serde(other)]
    Unknown,
}

/// `start` body.
#[derive(Debug, Deserialize)]
pub struct StartBody {
    /// Stream id.
    #[serde(default)]
    pub stream_sid: Option<String>,
    /// Call id.
    pub call_sid: String,
    /// Caller's number.
    #[serde(default)]
    pub from: Option<String>,
    /// Called number (the ExoPhone).
    #[serde(default)]
    pub to: Option<String>,
    /// Up to three query parameters of the applet URL.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, serde_json::Value>,
    /// The stream's audio.
    pub media_format: MediaFormat,
}

/// `start.media_format`.
#[derive(Debug, Deserialize)]
pub struct MediaFormat {
    /// `audio/x-raw` (PCM16 little-endian).
    pub encoding: String,
    /// Hz, as a string (a number is taken too).
    pub sample_rate: serde_json::Value,
}

/// `media` body.
#[derive(Debug, Deserialize)]
pub struct MediaBody<'a> {
    /// Base64 PCM16 LE.
    #[serde(borrow)]
    pub payload: Cow<'a, str>,
}

/// `dtmf` body.
#[derive(Debug, Deserialize)]
pub struct DtmfBody<'a> {
    /// One key.
    #[serde(borrow)]
    pub digit: Cow<'a, str>,
}

/// Inbound `mark` body.
#[derive(Debug, Deserialize)]
pub struct InMark<'a> {
    /// Our label.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

/// `stop` body.
#[derive(Debug, Deserialize)]
pub struct StopBody {
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Outbound `mark` body.
#[derive(Debug, Serialize)]
pub struct MarkBody<'a> {
    /// Our label.
    pub name: &'a str,
}

/// Messages voxhook sends besides media.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Outgoing<'a> {
    /// Playback marker.
    Mark {
        /// Stream id.
        stream_sid: &'a str,
        /// Body.
        mark: MarkBody<'a>,
    },
    /// Flush playback.
    Clear {
        /// Stream id.
        stream_sid: &'a str,
    },
}

/// Writes an outbound `media` message without intermediate allocations:
/// `{"event":"media","stream_sid":…,"media":{"payload":…}}`.
pub fn write_media(out: &mut String, stream_sid_json: &str, payload_b64: impl FnOnce(&mut String)) {
    out.push_str(r#"{"event":"media","stream_sid":"#);
    out.push_str(stream_sid_json);
    out.push_str(r#","media":{"payload":""#);
    payload_b64(out);
    out.push_str(r#""}}"#);
}
