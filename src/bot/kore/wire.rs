//! Kore.ai XO Webhook v2 JSON shapes (the only place that knows them).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A request body (v2, or v1 when `message` is [`Message::V1`]).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    /// `{"new": true}` on the session-opening request only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionFlag>,
    /// The message.
    pub message: Message<'a>,
    /// The end user.
    pub from: From<'a>,
    /// The bot.
    pub to: To<'a>,
    /// Switches the bot's language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interactive_language: Option<&'a str>,
    /// Analytics tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta_tags: Option<MetaTags>,
    /// Merge this identity with others Kore knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge_identity: Option<bool>,
    /// Channel Kore should answer on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_channel_for_response: Option<&'a str>,
    /// Call metadata, visible to the bot as `lastMessage.customData`.
    pub custom_data: Map<String, Value>,
}

/// `session`.
#[derive(Debug, Serialize)]
pub struct SessionFlag {
    /// Start a new conversation.
    pub new: bool,
}

/// `message`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Message<'a> {
    /// v2: `{"type", "val"}`.
    V2 {
        /// `text` or `event`.
        #[serde(rename = "type")]
        kind: &'static str,
        /// Text, or `ON_CONNECT` / `SESSION_CLOSURE`.
        val: &'a str,
    },
    /// v1: `{"text", "attachments"}`.
    V1 {
        /// Text.
        text: &'a str,
        /// Always empty.
        attachments: [(); 0],
    },
}

/// `from`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct From<'a> {
    /// Bot user id.
    pub id: &'a str,
    /// Profile fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_info: Option<Map<String, Value>>,
}

/// `to`.
#[derive(Debug, Serialize)]
pub struct To<'a> {
    /// Bot id.
    pub id: &'a str,
}

/// `metaTags`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaTags {
    /// User level.
    pub user_level_tags: Vec<Tag>,
    /// Session level.
    pub session_level_tags: Vec<Tag>,
    /// Message level.
    pub message_level_tags: Vec<Tag>,
}

/// One tag.
#[derive(Debug, Serialize)]
pub struct Tag {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// A v2 response (sync reply, poll result or error).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// Messages.
    #[serde(default)]
    pub data: Vec<DataItem>,
    /// More messages will follow via polling.
    pub poll_id: Option<String>,
    /// `Inprogress` while a poll is not ready.
    pub status: Option<String>,
    /// Error list.
    #[serde(default)]
    pub errors: Vec<ErrorItem>,
    /// The dialog task ended.
    pub end_of_task: Option<bool>,
    /// Name of the completed task.
    pub completed_task_name: Option<String>,
    /// v1: the reply (a string, an object or an array of either).
    pub text: Option<Value>,
}

/// One message in `data`.
#[derive(Debug, Deserialize)]
pub struct DataItem {
    /// `text`, `template`, `event`, …
    #[serde(rename = "type", default)]
    pub kind: String,
    /// A string or an object (template).
    #[serde(default)]
    pub val: Value,
}

/// One entry of `errors`.
#[derive(Debug, Deserialize)]
pub struct ErrorItem {
    /// Message.
    #[serde(default)]
    pub msg: String,
    /// Code (sometimes a string).
    #[serde(default)]
    pub code: Value,
}

impl Response {
    /// The errors joined for a log line.
    pub fn error_text(&self) -> String {
        self.errors
            .iter()
            .map(|e| format!("{} ({})", e.msg, e.code))
            .collect::<Vec<_>>()
            .join("; ")
    }
}
