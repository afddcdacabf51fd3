//! jambonz `listen` JSON text frames (the only place that knows their shape): the metadata
//! frame that opens the socket (the call's webhook attributes plus `sampleRate`, `mixType`
//! and the verb's `metadata`), `dtmf` events (`passDtmf`), `mark` events in; `mark` and
//! `killAudio` commands out.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The first text frame: call attributes (camelCase, as on jambonz webhooks) and the stream's
/// format. Unknown attributes are ignored: jambonz adds them between releases.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// The call's id.
    pub call_sid: String,
    /// Calling party.
    #[serde(default)]
    pub from: Option<String>,
    /// Called party.
    #[serde(default)]
    pub to: Option<String>,
    /// `inbound` or `outbound`.
    #[serde(default)]
    pub direction: Option<String>,
    /// Rate of the binary frames jambonz sends (a number; tolerated as a string).
    #[serde(default)]
    pub sample_rate: Option<serde_json::Value>,
    /// `mono`, `stereo` or `mixed`.
    #[serde(default)]
    pub mix_type: Option<String>,
    /// The verb's `metadata` object.
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// Any later text frame jambonz sends: a `dtmf` event (`{"event":"dtmf",…}`) or a typed
/// message (`{"type":"mark","data":{…}}`).
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    /// `dtmf` for a keypad event.
    #[serde(default, borrow)]
    pub event: Option<Cow<'a, str>>,
    /// The key of a `dtmf` event.
    #[serde(default, borrow)]
    pub dtmf: Option<Cow<'a, str>>,
    /// `mark` (or `playDone` in non-streaming mode).
    #[serde(default, rename = "type", borrow)]
    pub kind: Option<Cow<'a, str>>,
    /// A mark's body.
    #[serde(default, borrow)]
    pub data: Option<MarkData<'a>>,
}

/// A mark event's body.
#[derive(Debug, Deserialize)]
pub struct MarkData<'a> {
    /// The name voxhook gave the mark.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// `playout` (reached) or `cleared` (flushed by `killAudio`).
    #[serde(default, borrow)]
    pub event: Option<Cow<'a, str>>,
}

impl MarkData<'_> {
    /// Flushed by `killAudio` rather than played.
    pub fn cleared(&self) -> bool {
        self.event.as_deref() == Some("cleared")
    }
}

/// Commands voxhook sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Outgoing<'a> {
    /// Tell me when playout reaches this point.
    Mark {
        /// Body.
        data: OutMark<'a>,
    },
    /// Flush what is playing and buffered (marks come back `cleared`).
    KillAudio,
}

/// An outgoing mark's body.
#[derive(Debug, Serialize)]
pub struct OutMark<'a> {
    /// Mark name.
    pub name: &'a str,
}
