//! Kore.ai XO Webhook v2 JSON shapes (the only place that knows them).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A v2 request body.
#[derive(Debug, Serialize)]
pub struct Request<'a> {
    /// `{"new": true}` on `ON_CONNECT` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionFlag>,
    /// The message.
    pub message: Message<'a>,
    /// The end user.
    pub from: From<'a>,
    /// The bot.
    pub to: To<'a>,
    /// Call metadata, visible to the bot as `lastMessage.customData`.
    #[serde(rename = "customData")]
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
pub struct Message<'a> {
    /// `text` or `event`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Text, or `ON_CONNECT` / `SESSION_CLOSURE`.
    pub val: &'a str,
}

/// `from`.
#[derive(Debug, Serialize)]
pub struct From<'a> {
    /// Bot user id.
    pub id: &'a str,
}

/// `to`.
#[derive(Debug, Serialize)]
pub struct To<'a> {
    /// Bot id.
    pub id: &'a str,
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
