//! Telnyx call control over the Call Control API: [`TelnyxRest`] posts
//! `{base}/calls/{call_control_id}/actions/hangup` and `…/actions/transfer` (`{"to": …}`) with
//! the API key as a Bearer token. A 422 whose errors carry code 90018 means the call has
//! already ended, which is what a hang-up wanted.

use std::time::Duration;

use async_trait::async_trait;

use super::wire::{code_text, ApiErrors, TransferBody};
use crate::config::SensitiveString;
use crate::telephony::control::{
    body_excerpt, send_with_one_retry, CallControl, ControlError, RestAnswer, TransferTarget,
};

/// Telnyx's code for a command sent to a call that has already ended.
pub const CALL_ALREADY_ENDED: &str = "90018";
/// The longest call control id taken (they are about 60 characters).
const MAX_CALL_ID: usize = 256;

/// Telnyx's Call Control client for hang-up and transfer.
pub struct TelnyxRest {
    http: reqwest::Client,
    calls_url: String,
    api_key: SensitiveString,
}

// === impl TelnyxRest ===

impl TelnyxRest {
    /// A client for `api_base_url` (`https://api.telnyx.com/v2` in production); `timeout`
    /// bounds each request.
    pub fn new(
        api_base_url: &str,
        api_key: SensitiveString,
        timeout: Duration,
    ) -> Result<Self, ControlError> {
        let base = reqwest::Url::parse(api_base_url)
            .map_err(|e| ControlError::Config(format!("api_base_url {api_base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ControlError::Config(format!(
                "api_base_url {api_base_url:?} is not http(s)"
            )));
        }
        if api_key.is_empty() {
            return Err(ControlError::Config("API key is empty".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .user_agent(concat!("voxhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ControlError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            calls_url: format!("{}/calls", api_base_url.trim_end_matches('/')),
            api_key,
        })
    }

    /// Posts the JSON `body` to the call's `action`.
    async fn command(
        &self,
        call_id: &str,
        action: &str,
        body: &serde_json::Value,
        ended_is_done: bool,
    ) -> Result<(), ControlError> {
        CallControl::check_call_id(self, call_id)?;
        let url = format!("{}/{call_id}/actions/{action}", self.calls_url);
        let request = || {
            self.http
                .post(&url)
                .bearer_auth(self.api_key.expose())
                .json(body)
        };
        send_with_one_retry("telnyx", call_id, request, |status, body| {
            let (codes, detail) = error_detail(body);
            if ended_is_done && status == 422 && codes.iter().any(|c| c == CALL_ALREADY_ENDED) {
                tracing::info!(call_id, "Telnyx call had already ended.");
                RestAnswer::Done
            } else {
                RestAnswer::Rejected(detail)
            }
        })
        .await
    }
}

#[async_trait]
impl CallControl for TelnyxRest {
    fn name(&self) -> &'static str {
        "telnyx"
    }

    async fn hang_up(&self, call_id: &str) -> Result<(), ControlError> {
        self.command(call_id, "hangup", &serde_json::json!({}), true)
            .await?;
        tracing::info!(call_id, "Telnyx call hung up.");
        Ok(())
    }

    async fn transfer(&self, call_id: &str, target: &str) -> Result<(), ControlError> {
        let target = TransferTarget::parse(target)?;
        let to = match &target {
            TransferTarget::Number(n) => n,
            TransferTarget::Sip(uri) => uri,
        };
        let body = serde_json::to_value(TransferBody { to })
            .map_err(|e| ControlError::Config(e.to_string()))?;
        self.command(call_id, "transfer", &body, false).await?;
        tracing::info!(call_id, target = ?target, "Telnyx call transferred.");
        Ok(())
    }

    /// Call control ids look like `v3:2EC-70CTEjl…_-PfH`: letters, digits, `:`, `-`, `_`.
    fn check_call_id(&self, call_id: &str) -> Result<(), ControlError> {
        let ok = !call_id.is_empty()
            && call_id.len() <= MAX_CALL_ID
            && call_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_'));
        if ok {
            Ok(())
        } else {
            Err(ControlError::InvalidCallId(call_id.to_string()))
        }
    }
}

/// The error codes and a readable `title (code …): detail` from a Call Control error body,
/// or a short excerpt of a body that is not one.
fn error_detail(body: &[u8]) -> (Vec<String>, String) {
    match serde_json::from_slice::<ApiErrors>(body) {
        Ok(ApiErrors { errors }) if !errors.is_empty() => {
            let codes: Vec<String> = errors
                .iter()
                .map(|e| e.code.as_ref().map(code_text).unwrap_or_default())
                .collect();
            let text = errors
                .iter()
                .zip(&codes)
                .map(|(e, code)| {
                    let title = e.title.as_deref().unwrap_or("error");
                    match &e.detail {
                        Some(d) => format!("{title} (code {code}): {d}"),
                        None => format!("{title} (code {code})"),
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
            (codes, text)
        }
        _ => (Vec::new(), body_excerpt(body)),
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::sim::telnyx_api::TelnyxApiSim;

    const KEY: &str = "KEY0123-secret";
    const CALL: &str = "v3:2EC-70CTEjlUq3tDM0CxKXIt5-5N4iP4wo7_-PfH-qub97Sk4EqO5w";

    fn client(sim: &TelnyxApiSim, key: &str) -> TelnyxRest {
        TelnyxRest::new(
            &sim.base_url(),
            SensitiveString::new(key),
            Duration::from_secs(2),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn hang_up_posts_the_hangup_action() {
        let sim = TelnyxApiSim::start(KEY).await.unwrap();
        client(&sim, KEY).hang_up(CALL).await.unwrap();
        let c = sim.wait_for_command(Duration::from_secs(2)).await.unwrap();
        assert_eq!(
            (c.call_control_id.as_str(), c.action.as_str()),
            (CALL, "hangup")
        );
        assert_eq!(c.to, None);
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[tokio::test]
    async fn transfer_posts_to() {
        let sim = TelnyxApiSim::start(KEY).await.unwrap();
        let c = client(&sim, KEY);
        c.transfer(CALL, "+15550002222").await.unwrap();
        c.transfer(CALL, "sip:desk@pbx.example.com").await.unwrap();
        let to: Vec<_> = sim
            .commands()
            .into_iter()
            .map(|c| (c.action, c.to))
            .collect();
        assert_eq!(
            to,
            [
                ("transfer".to_string(), Some("+15550002222".to_string())),
                (
                    "transfer".to_string(),
                    Some("sip:desk@pbx.example.com".to_string())
                ),
            ]
        );
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[tokio::test]
    async fn an_ended_call_is_hung_up_already_but_not_transferred() {
        let sim = TelnyxApiSim::start(KEY).await.unwrap();
        sim.end_call(CALL);
        client(&sim, KEY).hang_up(CALL).await.unwrap();
        let e = client(&sim, KEY)
            .transfer(CALL, "+15550002222")
            .await
            .unwrap_err();
        let ControlError::Rejected { status, detail } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(*status, 422);
        assert!(detail.contains("90018"), "{detail}");
        assert_eq!(sim.request_count(), 2, "a 422 is not retried");
        assert!(sim.commands().is_empty());
    }

    #[tokio::test]
    async fn transient_failures_are_retried_once_and_bad_keys_are_not() {
        let sim = TelnyxApiSim::start(KEY).await.unwrap();
        sim.fail_next(503);
        client(&sim, KEY).hang_up(CALL).await.unwrap();
        assert_eq!((sim.request_count(), sim.commands().len()), (2, 1));

        let e = client(&sim, "wrong-key").hang_up(CALL).await.unwrap_err();
        assert!(
            matches!(e, ControlError::Rejected { status: 401, .. }),
            "{e}"
        );
        assert!(!e.to_string().contains("wrong-key"));
        assert_eq!(sim.request_count(), 3);
    }

    #[tokio::test]
    async fn bad_ids_and_targets_send_nothing() {
        let sim = TelnyxApiSim::start(KEY).await.unwrap();
        let c = client(&sim, KEY);
        for bad in ["", "v3:abc/../x", "v3:a b", "v3:a?x=1"] {
            assert_eq!(
                c.hang_up(bad).await.unwrap_err().code(),
                "control.invalid_call_id"
            );
        }
        let e = c.transfer(CALL, "5550002222").await.unwrap_err();
        assert_eq!(e.code(), "control.invalid_target");
        assert_eq!(sim.request_count(), 0);
    }

    #[test]
    fn error_bodies_are_read_from_the_documented_fixture() {
        let body = include_bytes!("../../../tests/fixtures/telnyx/hangup_already_ended.json");
        let (codes, detail) = error_detail(body);
        assert_eq!(codes, [CALL_ALREADY_ENDED]);
        assert!(
            detail.starts_with("Call has already ended (code 90018)"),
            "{detail}"
        );
        assert_eq!(error_detail(b"<html>").1, "<html>");
    }

    #[test]
    fn bad_settings_fail_at_construction() {
        let k = || SensitiveString::new(KEY);
        let d = Duration::from_secs(1);
        assert!(TelnyxRest::new("not a url", k(), d).is_err());
        assert!(TelnyxRest::new("ftp://x", k(), d).is_err());
        let e = TelnyxRest::new("https://api.telnyx.com/v2", SensitiveString::new(" "), d)
            .err()
            .unwrap();
        assert_eq!(e.code(), "control.config");
    }
}
