//! Vonage Voice API WebSocket text messages (the only place that knows their shape): events
//! named `websocket:*` with the NCCO endpoint `headers` flattened into the first one, and
//! the `action` commands voxhook sends. Audio never passes through here: it is binary.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Any text message Vonage sends, tagged by `event`.
#[derive(Debug, Deserialize)]
#[serde(tag = "event")]
pub enum Incoming<'a> {
    /// The first message: the audio format and every NCCO endpoint header at top level.
    #[serde(rename = "websocket:connected")]
    Connected {
        /// `audio/l16;rate=16000`.
        #[serde(rename = "content-type")]
        content_type: String,
        /// The endpoint `headers` (values may be any JSON).
        #[serde(flatten)]
        headers: BTreeMap<String, serde_json::Value>,
    },
    /// A keypad digit (`digit` at top level; nested under `dtmf` in some releases).
    #[serde(rename = "websocket:dtmf")]
    Dtmf {
        /// One key.
        #[serde(default, borrow)]
        digit: Option<Cow<'a, str>>,
        /// The nested form.
        #[serde(default, borrow)]
        dtmf: Option<NestedDtmf<'a>>,
    },
    /// The playback buffer was emptied by our `clear`.
    #[serde(rename = "websocket:cleared")]
    Cleared {},
    /// Playback reached a `notify` we sent; `payload` is ours, echoed.
    #[serde(rename = "websocket:notify")]
    Notify {
        /// Our payload.
        #[serde(default)]
        payload: Option<NotifyPayload>,
    },
    /// Anything else (logged and ignored).
    #[serde(other)]
    Unknown,
}

/// `dtmf` in the nested form.
#[derive(Debug, Deserialize)]
pub struct NestedDtmf<'a> {
    /// One key.
    #[serde(borrow)]
    pub digit: Cow<'a, str>,
}

/// The payload voxhook puts in a `notify` (and reads back from `websocket:notify`).
#[derive(Debug, Deserialize, Serialize)]
pub struct NotifyPayload {
    /// Our mark's name.
    #[serde(default)]
    pub mark: Option<String>,
}

/// Commands voxhook sends, tagged by `action`.
#[derive(Debug, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Outgoing<'a> {
    /// Tell me when the audio queued so far has played.
    Notify {
        /// Echoed in `websocket:notify`.
        payload: MarkPayload<'a>,
    },
    /// Drop the queued audio.
    Clear,
}

/// The `notify` payload voxhook writes.
#[derive(Debug, Serialize)]
pub struct MarkPayload<'a> {
    /// Our mark's name.
    pub mark: &'a str,
}

/// `PUT /v1/calls/{uuid}` bodies.
#[derive(Debug, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum CallUpdate<'a> {
    /// End the call.
    Hangup,
    /// Run a new NCCO on the call.
    Transfer {
        /// Where the new NCCO is.
        destination: TransferDestination<'a>,
    },
}

/// A transfer's destination: an inline NCCO.
#[derive(Debug, Serialize)]
pub struct TransferDestination<'a> {
    /// Always `ncco`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The NCCO: one `connect` action.
    pub ncco: [ConnectAction<'a>; 1],
}

/// NCCO `connect` to one endpoint.
#[derive(Debug, Serialize)]
pub struct ConnectAction<'a> {
    /// Always `connect`.
    pub action: &'static str,
    /// The caller id shown to the target, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<&'a str>,
    /// The one endpoint.
    pub endpoint: [Endpoint<'a>; 1],
}

/// An NCCO endpoint: a phone number or a SIP URI.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Endpoint<'a> {
    /// PSTN, E.164 without the `+`.
    Phone {
        /// Digits.
        number: &'a str,
    },
    /// SIP.
    Sip {
        /// `sip:` URI.
        uri: &'a str,
    },
}

/// Vonage's error body (RFC 7807 style).
#[derive(Debug, Deserialize)]
pub struct ApiError {
    /// Short title.
    #[serde(default)]
    pub title: Option<String>,
    /// Details.
    #[serde(default)]
    pub detail: Option<String>,
}
