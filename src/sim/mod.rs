//! Simulators for trying and testing voxhook without a phone or a bot account: a local
//! Kore-compatible development bot ([`kore`]), a Twilio Media Streams caller ([`caller`]) and
//! the demo call that uses both ([`demo`]).

pub mod assemblyai;
pub mod audiosocket;
pub mod caller;
pub mod deepgram;
pub mod demo;
pub mod elevenlabs;
pub mod ingenious;
pub mod kore;
pub mod openai;
pub mod piper;
pub mod plivo_api;
pub mod redis_server;
pub mod speech_set;
pub mod telnyx_api;
pub mod twilio_api;
pub mod vonage_api;
pub mod vosk;

/// The next recorded item `next` hands out, waiting up to `timeout` for `arrived` to be
/// notified of a new one: the wait loop of the REST fakes' `wait_for_*`.
pub(crate) async fn wait_next<T>(
    arrived: &tokio::sync::Notify,
    timeout: std::time::Duration,
    mut next: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(item) = next() {
            return Some(item);
        }
        tokio::time::timeout_at(deadline, notified).await.ok()?;
    }
}
