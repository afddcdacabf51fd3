//! Async-mode delivery: POSTs a reply's callbacks to the configured URL one at a time, in
//! order, after the reply's delay, and records each result. A callback URL that cannot be
//! reached is recorded (status 0) and logged, never a panic.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{PollBatch, Shared};

/// The delay one `Inprogress` poll stands for in async mode.
const POLL_STEP: Duration = Duration::from_millis(200);

/// Where async replies go.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The channel's POST_URL; with several (instances behind a balancer), each POST goes
    /// to the next in turn.
    pub urls: Arc<[String]>,
    /// Callbacks POSTed so far (picks the next URL).
    pub sent: Arc<std::sync::atomic::AtomicUsize>,
    /// Sent as `Authorization: Bearer …` when set.
    pub bearer: Option<String>,
    /// Send the token as the bare `Authorization` value instead of `Bearer <token>` (how
    /// Kore v1 sends its access token is not documented; voxhook accepts both).
    pub bare: bool,
}

/// One callback of a reply.
pub(super) struct Planned {
    /// Wait before this POST.
    pub pause: Duration,
    /// The JSON body.
    pub body: Value,
    /// The message it delivers, recorded in the conversation when sent.
    pub said: Option<Value>,
}

/// The messages of a reply in delivery order, each with the pause before it: the immediate
/// ones, then each polled batch after [`POLL_STEP`] per `Inprogress` it would have answered.
pub(super) fn schedule(now: Vec<Value>, polled: Vec<PollBatch>) -> Vec<(Duration, Value)> {
    let mut out: Vec<(Duration, Value)> = now.into_iter().map(|v| (Duration::ZERO, v)).collect();
    for batch in polled {
        let mut pause = POLL_STEP * batch.in_progress as u32;
        for text in batch.texts {
            out.push((std::mem::take(&mut pause), text.into()));
        }
    }
    out
}

impl Target {
    /// Callbacks to `urls` in turn, with the token as `Bearer` or, when `bare`, as is.
    pub fn new(urls: Vec<String>, bearer: Option<String>, bare: bool) -> Self {
        Self {
            urls: urls.into(),
            sent: Default::default(),
            bearer,
            bare,
        }
    }
}

/// The HTTP client callbacks are sent with.
pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

/// Delivers `plan` in the background after `wait`.
pub(super) fn spawn(sh: Arc<Shared>, target: Target, wait: Duration, plan: Vec<Planned>) {
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        for step in plan {
            tokio::time::sleep(step.pause).await;
            if let Some(val) = &step.said {
                sh.record_bot(val);
            }
            let to = step.body["to"].as_str().unwrap_or("").to_string();
            let n = target
                .sent
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let url = &target.urls[n % target.urls.len().max(1)];
            let mut req = sh.http.post(url).json(&step.body);
            if let Some(b) = &target.bearer {
                req = if target.bare {
                    req.header("authorization", b)
                } else {
                    req.bearer_auth(b)
                };
            }
            let status = match req.send().await {
                Ok(resp) => resp.status().as_u16(),
                Err(e) => {
                    tracing::warn!(to = %to, error = %e, "Simulated Kore callback failed.");
                    0
                }
            };
            sh.lock().callback_results.push((to, status));
            sh.delivered.notify_waiters();
        }
    });
}
