//! Genesys AudioHook (Audio Connector) JSON text messages, the only place that knows their
//! shape: every message has `version` "2", the session `id`, `type`, `seq` and `parameters`;
//! Genesys's add `serverseq` and `position`, voxhook's add `clientseq`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Any message Genesys sends; `parameters` is read per type.
#[derive(Debug, Deserialize)]
pub struct ClientMessage<'a> {
    /// Protocol version ("2").
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    /// The session id (`Audiohook-Session-Id`).
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// Message type.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// Genesys's sequence number (1, 2, … without gaps).
    pub seq: u64,
    /// The last voxhook `seq` Genesys had seen.
    #[serde(default)]
    pub serverseq: u64,
    /// Type-specific body.
    #[serde(default)]
    pub parameters: serde_json::Value,
}

/// `open` parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenParameters {
    /// Genesys organization.
    #[serde(default)]
    pub organization_id: String,
    /// The conversation (call) id; all zeros on a connection probe.
    pub conversation_id: String,
    /// The customer.
    #[serde(default)]
    pub participant: Participant,
    /// Media offered, in Genesys's order of preference.
    #[serde(default)]
    pub media: Vec<Media>,
    /// Conversation language (`en-US`).
    #[serde(default)]
    pub language: Option<String>,
    /// Audio Connector input variables from the Architect flow.
    #[serde(default)]
    pub input_variables: BTreeMap<String, serde_json::Value>,
}

/// The customer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// Calling number (`tel:+1…`).
    #[serde(default)]
    pub ani: String,
    /// Called number.
    #[serde(default)]
    pub dnis: String,
}

/// One media format, offered by Genesys or chosen by voxhook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Media {
    /// `audio`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `PCMU` or `L16`.
    pub format: String,
    /// `["external"]` (customer) or `["external","internal"]` (stereo, customer left).
    pub channels: Vec<String>,
    /// 8000.
    pub rate: u32,
}

/// `dtmf` parameters (Audio Connector).
#[derive(Debug, Deserialize)]
pub struct DtmfParameters {
    /// The key.
    pub digit: String,
}
