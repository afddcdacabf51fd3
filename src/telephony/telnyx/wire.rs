//! Telnyx media-streaming JSON messages (the only place that knows their shape): snake_case
//! envelopes with `stream_id` at the top level and the call's ids inside `start`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Any message Telnyx sends, tagged by `event`. Media, mark and DTMF bodies borrow from the
/// frame (no copy of the payload unless it has JSON escapes).
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Incoming<'a> {
    /// First message on the socket (carries the streaming auth token when one is set).
    Connected {},
    /// Stream metadata.
    Start {
        /// Stream id.
        stream_id: Option<String>,
        /// Body.
        start: StartBody,
    },
    /// Caller audio.
    Media {
        /// Body.
        #[serde(borrow)]
        media: MediaBody<'a>,
    },
    /// Keypad digit; Telnyx may deliver these out of order.
    Dtmf {
        /// When the key was pressed (RFC 3339).
        #[serde(default, borrow)]
        occurred_at: Option<Cow<'a, str>>,
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
    /// A streaming error (malformed frame, invalid media, rate limit, …).
    Error {
        /// Body.
        #[serde(default)]
        payload: ErrorBody,
    },
    /// Stream ended.
    Stop {},
    /// Anything else (logged and ignored).
    #[serde(other)]
    Unknown,
}

/// `start` body.
#[derive(Debug, Deserialize)]
pub struct StartBody {
    /// The id Call Control commands take.
    pub call_control_id: String,
    /// Caller's number.
    #[serde(default)]
    pub from: Option<String>,
    /// Called number.
    #[serde(default)]
    pub to: Option<String>,
    /// Opaque state from the command that started the stream (base64).
    #[serde(default)]
    pub client_state: Option<String>,
    /// `custom_parameters` of the command or `<Parameter>`s of TeXML (values as given: strings,
    /// though numbers and booleans are taken too).
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, serde_json::Value>,
    /// The inbound codec, as negotiated on the call.
    pub media_format: MediaFormat,
}

/// `start.media_format`.
#[derive(Debug, Deserialize)]
pub struct MediaFormat {
    /// `PCMU`, `PCMA`, `L16`, `OPUS`, `G722`, `AMR-WB`.
    pub encoding: String,
    /// Hz.
    pub sample_rate: u32,
    /// 1.
    #[serde(default = "mono")]
    pub channels: u32,
}

fn mono() -> u32 {
    1
}

/// `media` body.
#[derive(Debug, Deserialize)]
pub struct MediaBody<'a> {
    /// `inbound` or `outbound` (with `both_tracks`).
    #[serde(default, borrow)]
    pub track: Option<Cow<'a, str>>,
    /// Base64 RTP payload without the RTP header.
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

/// `error.payload`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    /// Numeric code (100002 unknown_error, 100003 malformed_frame, 100004 invalid_media,
    /// 100005 rate_limit_reached).
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    /// Short name.
    #[serde(default)]
    pub title: Option<String>,
    /// Explanation.
    #[serde(default)]
    pub detail: Option<String>,
}

/// Outbound `mark` body.
#[derive(Debug, Serialize)]
pub struct MarkBody<'a> {
    /// Our label.
    pub name: &'a str,
}

/// Messages voxhook sends besides media (no `stream_id`: one stream per socket).
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Outgoing<'a> {
    /// Playback marker.
    Mark {
        /// Body.
        mark: MarkBody<'a>,
    },
    /// Flush playback (Telnyx returns the queued marks).
    Clear,
}

/// Writes an outbound `media` message without intermediate allocations:
/// `{"event":"media","media":{"payload":…}}`.
pub fn write_media(out: &mut String, payload_b64: impl FnOnce(&mut String)) {
    out.push_str(r#"{"event":"media","media":{"payload":""#);
    payload_b64(out);
    out.push_str(r#""}}"#);
}

/// A Call Control error body: `{"errors":[{"code":"90018","title":"…","detail":"…"}]}`.
#[derive(Debug, Deserialize)]
pub struct ApiErrors {
    /// The errors.
    #[serde(default)]
    pub errors: Vec<ApiError>,
}

/// One Call Control error.
#[derive(Debug, Deserialize)]
pub struct ApiError {
    /// Telnyx error code (a string in the API; numbers are taken too).
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    /// Short description.
    #[serde(default)]
    pub title: Option<String>,
    /// Explanation.
    #[serde(default)]
    pub detail: Option<String>,
}

/// A JSON code (string or number) as text.
pub fn code_text(code: &serde_json::Value) -> String {
    match code {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The Call Control transfer body.
#[derive(Debug, Serialize)]
pub struct TransferBody<'a> {
    /// E.164 number or SIP URI to dial.
    pub to: &'a str,
}
