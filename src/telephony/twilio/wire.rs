//! Twilio Media Streams JSON messages (the only place that knows their shape).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Any message Twilio sends, tagged by `event`.
/// Media, mark and DTMF bodies borrow from the frame (no copy of the payload unless it
/// has JSON escapes).
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Incoming<'a> {
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
        #[serde(borrow)]
        media: MediaBody<'a>,
    },
    /// Keypad digit.
    Dtmf {
        /// Body.
        #[serde(borrow)]
        dtmf: DtmfBody<'a>,
    },
    /// Mark reached or flushed.
    Mark {
        /// Body.
        #[serde(borrow)]
        mark: InMark<'a>,
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
pub struct MediaBody<'a> {
    /// `inbound` (bidirectional streams carry only the inbound track).
    #[serde(default, borrow)]
    pub track: Option<Cow<'a, str>>,
    /// Base64 μ-law.
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

/// Outbound `mark` body.
#[derive(Debug, Serialize)]
pub struct MarkBody<'a> {
    /// Our label.
    pub name: &'a str,
}

/// Messages voxhook sends.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Outgoing<'a> {
    /// Playback marker.
    Mark {
        /// Stream id.
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
        /// Body.
        mark: MarkBody<'a>,
    },
    /// Flush playback.
    Clear {
        /// Stream id.
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
    },
}

/// Writes an outbound `media` message, the same JSON `Outgoing` would give, without
/// intermediate allocations: `{"event":"media","streamSid":…,"media":{"payload":…}}`.
pub fn write_media(out: &mut String, stream_sid_json: &str, payload_b64: impl FnOnce(&mut String)) {
    out.push_str(r#"{"event":"media","streamSid":"#);
    out.push_str(stream_sid_json);
    out.push_str(r#","media":{"payload":""#);
    payload_b64(out);
    out.push_str(r#""}}"#);
}
