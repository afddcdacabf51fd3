//! voxhook puts a webhook chatbot on the phone: a telephony provider streams a call over a
//! WebSocket, voxhook recognises the caller's speech and digits, sends them to the bot's
//! webhook channel and speaks the replies back.
//!
//! Where to start (see ARCHITECTURE.md for the full map):
//!
//! | module | owns |
//! | --- | --- |
//! | [`app`] | wiring, startup, shutdown order |
//! | [`server`] | HTTP routes, admission, readiness |
//! | [`telephony`] | provider wire protocols → neutral events |
//! | [`call`] | one actor per call, turn-taking, barge-in, DTMF |
//! | [`audio`] | G.711, resampling, VAD, pacing, WAV |
//! | [`stt`] / [`tts`] | speech engines behind one trait each |
//! | [`bot`] | bot platform clients (Kore.ai XO Webhook v2) |
//! | [`config`] | typed, validated configuration |
//! | [`telemetry`] | Prometheus metrics, one function per event |
//! | [`systemd`] | readiness, watchdog and credentials under systemd |
//! | [`softphone`] | `voxhook call`, a command-line Twilio softphone |
//! | [`sim`] | a development bot and a simulated caller for demos and tests |

/// One `#[tokio::test]` per backend for a conformance suite's `run` (in scope where it is
/// used): `name => Subject { … };`, optionally under attributes (`#[cfg(feature = "sim")]`
/// for a backend tested against a simulator). Shared by `stt::conformance` and
/// `tts::conformance`.
#[cfg(test)]
macro_rules! conformance_tests {
    ($($(#[$meta:meta])* $name:ident => $subject:expr;)+) => {$(
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            run($subject).await;
        }
    )+};
}

pub mod app;
pub mod audio;
pub mod bot;
pub mod call;
pub mod component;
pub mod config;
pub mod server;
pub mod shutdown;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "sim")]
pub mod softphone;
pub mod stt;
pub mod systemd;
pub mod telemetry;
pub mod telephony;
pub mod tts;

/// The wire parsers that are private to their modules, for the fuzz targets in `fuzz/`.
/// Not an API: each is one call of the function the daemon runs.
#[doc(hidden)]
pub mod fuzzing {
    use crate::bot::kore::KoreClient;
    use crate::bot::{BotError, BotReply};

    /// A Kore webhook answer (sync reply, or acknowledgement when the client is in async
    /// mode) and the replies it becomes.
    pub fn kore_response(client: &KoreClient, body: &[u8]) -> Result<Vec<BotReply>, BotError> {
        client.decode_body(body).map(|r| client.replies(&r))
    }

    /// The conversation id in an inGenious `POST /conversations` answer.
    pub fn ingenious_created(body: &[u8]) -> Result<String, BotError> {
        crate::bot::ingenious::parse_created(body)
    }
}
