//! Twilio Media Streams JSON messages (the only place that knows their shape).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Any message Twilio sends, tagged by `event`.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Incoming {
    /// First message on the socket.
    Connected {},
    /// Stream metadata.
    Start {
        /// Stream id.
        #[serde(rename = "streamSid")]
        stream_sid: Option<String>,
        /// Body.
        start: StartBody,
    },
    /// Caller audio.
    Media {
        /// Body.
        media: MediaBody,
    },
    /// Keypad digit.
    Dtmf {
        /// Body.
        dtmf: DtmfBody,
    },
    /// Mark reached or flushed.
    Mark {
        /// Body.
        mark: MarkBody,
    },
    /// Stream ended.
    Stop {},
    /// Anything else (logged and ignored).
    #[serde(other)]
    Unknown,
}

/// `start` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartBody {
    /// Stream id.
    pub stream_sid: Option<String>,
    /// Call id.
    pub call_sid: String,
    /// Codec description.
    pub media_format: MediaFormat,
    /// `<Parameter>` values.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
}

/// `start.mediaFormat`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    /// `audio/x-mulaw`.
    pub encoding: String,
    /// 8000.
    pub sample_rate: u32,
    /// 1.
    pub channels: u32,
}

/// `media` body.
#[derive(Debug, Deserialize)]
pub struct MediaBody {
    /// `inbound` (bidirectional streams carry only the inbound track).
    #[serde(default)]
    pub track: Option<String>,
    /// Base64 μ-law.
    pub payload: String,
}

/// `dtmf` body.
#[derive(Debug, Deserialize)]
pub struct DtmfBody {
    /// One key.
    pub digit: String,
}

/// `mark` body.
#[derive(Debug, Deserialize, Serialize)]
pub struct MarkBody {
    /// Our label.
    pub name: String,
}

/// Messages voxhook sends.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Outgoing<'a> {
    /// Audio to play.
    Media {
        /// Stream id.
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
        /// Body.
        media: OutMedia,
    },
    /// Playback marker.
    Mark {
        /// Stream id.
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
        /// Body.
        mark: MarkBody,
    },
    /// Flush playback.
    Clear {
        /// Stream id.
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
    },
}

/// Outbound media body.
#[derive(Debug, Serialize)]
pub struct OutMedia {
    /// Base64 μ-law, 8 kHz, no header.
    pub payload: String,
}
