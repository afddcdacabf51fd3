//! inGenious AI webhook DTOs: the bodies we send (initiate a chat, a user message or
//! postback, a delivery acknowledgement, a handback) and the requests the platform POSTs to
//! us (`{"app", "webhook", "events": [...]}`). Inbound shapes are parsed tolerantly: only the
//! documented fields are typed, the rest stays `Value`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `author` of a request.
#[derive(Debug, Serialize)]
pub struct Author {
    /// `user` (messages) or `agent` (handback).
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// `POST {base}/conversations`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateConversation<'a> {
    /// Shown in the platform for the chat.
    pub display_name: &'a str,
    /// Chat description.
    pub description: &'a str,
    /// Call metadata.
    pub metadata: Map<String, Value>,
}

/// The 201 answer to [`CreateConversation`].
#[derive(Debug, Deserialize)]
pub struct Created {
    /// `{"id": …}`.
    pub conversation: IdOnly,
}

/// An object with an `id`.
#[derive(Debug, Deserialize)]
pub struct IdOnly {
    /// The id (a string; a number is accepted and printed).
    pub id: Value,
}

/// `POST {base}/conversations/{id}/messages`.
#[derive(Debug, Serialize)]
pub struct UserMessage<'a> {
    /// `{"type": "user"}`.
    pub author: Author,
    /// Text or postback.
    pub content: Content<'a>,
    /// Input mode (not documented for this endpoint; `input_metadata = false` drops it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// A user message's content.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Content<'a> {
    /// `{"type": "text", "text": …}`.
    Text {
        /// What the caller said or keyed.
        text: &'a str,
    },
    /// `{"type": "postback", "payload": {…}}`.
    Postback {
        /// `{"restart": true}`, `{"entryPoint": id}`, `{"nextPassage": {…}}` or a quick
        /// reply's own payload.
        payload: Value,
    },
}

/// `POST {base}/conversations/{id}/delivery`.
#[derive(Debug, Serialize)]
pub struct DeliveryAck<'a> {
    /// `{"state": "success", "message": <the message as received>}`.
    pub delivery: DeliveryState<'a>,
}

/// The acknowledgement itself.
#[derive(Debug, Serialize)]
pub struct DeliveryState<'a> {
    /// `success`.
    pub state: &'static str,
    /// The bot message (id, author, content) as it was received.
    pub message: &'a Value,
}

/// `POST {base}/conversations/{id}/handback`.
#[derive(Debug, Serialize)]
pub struct Handback {
    /// `{"type": "agent"}`.
    pub author: Author,
    /// `{"metadata": {…}}`.
    pub handback: HandbackBody,
}

/// Handback metadata.
#[derive(Debug, Serialize)]
pub struct HandbackBody {
    /// Why the caller came back.
    pub metadata: Map<String, Value>,
}

/// A request the platform POSTs to our webhook route.
#[derive(Debug, Deserialize)]
pub struct Inbound {
    /// The events, in order.
    pub events: Vec<Event>,
}

/// One event of an [`Inbound`] request.
#[derive(Debug, Deserialize)]
pub struct Event {
    /// `conversation:message`, `conversation:typing`, `conversation:handover`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `{"conversation": {"id"}, …event-specific}`.
    #[serde(default)]
    pub payload: Map<String, Value>,
}
