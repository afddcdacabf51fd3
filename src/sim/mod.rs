//! Simulators for trying and testing voxhook without a phone or a bot account: a local
//! Kore-compatible development bot ([`kore`]), a Twilio Media Streams caller ([`caller`]) and
//! the demo call that uses both ([`demo`]).

pub mod caller;
pub mod deepgram;
pub mod demo;
pub mod ingenious;
pub mod kore;
pub mod openai;
pub mod telnyx_api;
pub mod twilio_api;
