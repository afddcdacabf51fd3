//! Plivo Audio Streams JSON messages (the only place that knows their shape): camelCase,
//! `sequenceNumber` as a number, no `connected`, the call's ids inside `start`, the
//! `extraHeaders` of the `<Stream>` element as one `extra_headers` string beside it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Any message Plivo sends, tagged by `event`. Media, checkpoint and DTMF bodies borrow
/// from the frame.
#[derive(Debug, Deserialize)]
#[serde(tag = "event")]
pub enum Incoming<'a> {
    /// First message: stream metadata.
    #[serde(rename = "start")]
    Start {
        /// Body.
        start: StartBody,
        /// `extraHeaders` of the `<Stream>` element, `k=v` pairs (`,` or `;` separated).
        #[serde(default)]
        extra_headers: Option<String>,
        /// The stream id, when Plivo repeats it at the top level.
        #[serde(default, rename = "streamId")]
        stream_id: Option<String>,
    },
    /// Caller audio.
    #[serde(rename = "media")]
    Media {
        /// Body.
        #[serde(borrow)]
        media: MediaBody<'a>,
    },
    /// Keypad digit.
    #[serde(rename = "dtmf")]
    Dtmf {
        /// Body.
        #[serde(borrow)]
        dtmf: DtmfBody<'a>,
    },
    /// Playback reached a `checkpoint` (`played` in Plivo's support article).
    #[serde(rename = "playedStream", alias = "played")]
    PlayedStream {
        /// The checkpoint's name.
        #[serde(borrow)]
        name: Cow<'a, str>,
    },
    /// A `clearAudio` emptied the playback queue.
    #[serde(rename = "clearedAudio")]
    ClearedAudio {},
    /// Not documented by Plivo (the socket close ends the stream), but taken if it comes.
    #[serde(rename = "stop")]
    Stop {},
    /// Anything else (logged and ignored).
    #[serde(other)]
    Unknown,
}

/// `start` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartBody {
    /// Call UUID (what the REST API takes).
    pub call_id: String,
    /// Stream UUID.
    #[serde(default)]
    pub stream_id: Option<String>,
    /// The stream's audio; absent: Plivo's default, `audio/x-l16` at 8000 Hz.
    #[serde(default)]
    pub media_format: Option<MediaFormat>,
}

/// `start.mediaFormat`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    /// `audio/x-l16` or `audio/x-mulaw`.
    pub encoding: String,
    /// Hz (a number; a string is taken too).
    #[serde(deserialize_with = "number_or_string")]
    pub sample_rate: u32,
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u32),
        Text(String),
    }
    match N::deserialize(d)? {
        N::Num(n) => Ok(n),
        N::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// `media` body.
#[derive(Debug, Deserialize)]
pub struct MediaBody<'a> {
    /// `inbound`.
    #[serde(default, borrow)]
    pub track: Option<Cow<'a, str>>,
    /// Base64 audio in the stream's content type.
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

/// Messages voxhook sends besides audio.
#[derive(Debug, Serialize)]
#[serde(tag = "event")]
pub enum Outgoing<'a> {
    /// Ask for a `playedStream` once what was sent before has played.
    #[serde(rename = "checkpoint")]
    Checkpoint {
        /// Stream id.
        #[serde(rename = "streamId")]
        stream_id: &'a str,
        /// Our label.
        name: &'a str,
    },
    /// Empty the playback queue (answered by `clearedAudio`).
    #[serde(rename = "clearAudio")]
    ClearAudio {
        /// Stream id.
        #[serde(rename = "streamId")]
        stream_id: &'a str,
    },
}

/// Writes a `playAudio` message without intermediate allocations:
/// `{"event":"playAudio","streamId":…,"media":{"contentType":…,"sampleRate":…,"payload":…}}`.
pub fn write_play_audio(
    out: &mut String,
    stream_id_json: &str,
    content_type: &str,
    rate: u32,
    payload_b64: impl FnOnce(&mut String),
) {
    use std::fmt::Write as _;
    out.push_str(r#"{"event":"playAudio","streamId":"#);
    out.push_str(stream_id_json);
    let _ = write!(
        out,
        r#","media":{{"contentType":"{content_type}","sampleRate":{rate},"payload":""#
    );
    payload_b64(out);
    out.push_str(r#""}}"#);
}

/// The transfer request body: fetch new XML for the A leg (the caller).
#[derive(Debug, Serialize)]
pub struct TransferBody<'a> {
    /// `aleg`.
    pub legs: &'a str,
    /// The URL Plivo fetches the XML from.
    pub aleg_url: &'a str,
    /// `GET` or `POST`.
    pub aleg_method: &'a str,
}

/// A REST error body: `{"api_id": …, "error": …}` (`error` is a string or an object).
#[derive(Debug, Deserialize)]
pub struct ApiError {
    /// Plivo's description.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
    /// Request id.
    #[serde(default)]
    pub api_id: Option<String>,
}
