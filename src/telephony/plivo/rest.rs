//! Plivo call control over the REST API, HTTP Basic auth with the Auth ID and Auth Token:
//! hang-up is `DELETE {base}/v1/Account/{auth_id}/Call/{call_uuid}/` (204; a 404 means the call
//! has already ended, which is what a hang-up wanted), transfer is `POST` to the same URL with
//! `legs=aleg` and an `aleg_url` Plivo fetches the new XML from (202).

use std::time::Duration;

use async_trait::async_trait;

use super::config::PlivoRestSettings;
use super::wire::{ApiError, TransferBody};
use crate::config::SensitiveString;
use crate::telephony::control::{
    body_excerpt, send_with_one_retry, CallControl, ControlError, RestAnswer, TransferTarget,
};

/// The longest call UUID taken (they are 36 characters).
const MAX_CALL_ID: usize = 64;

/// Plivo's REST client for hang-up and transfer.
pub struct PlivoRest {
    http: reqwest::Client,
    calls_url: String,
    auth_id: String,
    auth_token: SensitiveString,
    transfer_url: Option<String>,
}

// === impl PlivoRest ===

impl PlivoRest {
    /// A client for the validated settings.
    pub fn new(s: &PlivoRestSettings) -> Result<Self, ControlError> {
        let base = reqwest::Url::parse(&s.api_base_url)
            .map_err(|e| ControlError::Config(format!("api_base_url {:?}: {e}", s.api_base_url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ControlError::Config(format!(
                "api_base_url {:?} is not http(s)",
                s.api_base_url
            )));
        }
        let id_ok = !s.auth_id.is_empty() && s.auth_id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !id_ok || s.auth_token.is_empty() {
            return Err(ControlError::Config(
                "auth_id must be alphanumeric and auth_token set".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(s.timeout)
            .connect_timeout(Duration::from_secs(5).min(s.timeout))
            .user_agent(concat!("voxhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ControlError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            calls_url: format!(
                "{}/v1/Account/{}/Call",
                s.api_base_url.trim_end_matches('/'),
                s.auth_id
            ),
            auth_id: s.auth_id.clone(),
            auth_token: s.auth_token.clone(),
            transfer_url: s.transfer_url.clone(),
        })
    }

    fn call_url(&self, call_id: &str) -> Result<String, ControlError> {
        CallControl::check_call_id(self, call_id)?;
        Ok(format!("{}/{call_id}/", self.calls_url))
    }

    fn authed(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        r.basic_auth(&self.auth_id, Some(self.auth_token.expose()))
    }
}

#[async_trait]
impl CallControl for PlivoRest {
    fn name(&self) -> &'static str {
        "plivo"
    }

    async fn hang_up(&self, call_id: &str) -> Result<(), ControlError> {
        let url = self.call_url(call_id)?;
        send_with_one_retry(
            "plivo",
            call_id,
            || self.authed(self.http.delete(&url)),
            |status, body| {
                if status == 404 {
                    tracing::info!(call_id, "Plivo call had already ended.");
                    RestAnswer::Done
                } else {
                    RestAnswer::Rejected(error_detail(body))
                }
            },
        )
        .await?;
        tracing::info!(call_id, "Plivo call hung up.");
        Ok(())
    }

    async fn transfer(&self, call_id: &str, target: &str) -> Result<(), ControlError> {
        let target = TransferTarget::parse(target)?;
        let Some(template) = &self.transfer_url else {
            return Err(ControlError::Config(
                "telephony.plivo.transfer_url is not set".into(),
            ));
        };
        let raw = match &target {
            TransferTarget::Number(n) => n,
            TransferTarget::Sip(uri) => uri,
        };
        let aleg_url = template.replace("{target}", &percent_encode(raw));
        let url = self.call_url(call_id)?;
        let body = TransferBody {
            legs: "aleg",
            aleg_url: &aleg_url,
            aleg_method: "GET",
        };
        send_with_one_retry(
            "plivo",
            call_id,
            || self.authed(self.http.post(&url)).json(&body),
            |_, body| RestAnswer::Rejected(error_detail(body)),
        )
        .await?;
        tracing::info!(call_id, target = ?target, "Plivo call transferred.");
        Ok(())
    }

    /// Call UUIDs: hex digits and dashes.
    fn check_call_id(&self, call_id: &str) -> Result<(), ControlError> {
        let ok = !call_id.is_empty()
            && call_id.len() <= MAX_CALL_ID
            && call_id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if ok {
            Ok(())
        } else {
            Err(ControlError::InvalidCallId(call_id.to_string()))
        }
    }
}

/// `s` with every byte but RFC 3986's unreserved ones percent-encoded.
fn percent_encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Plivo's `error` text (with the `api_id`), or a short excerpt of a body that is not JSON.
fn error_detail(body: &[u8]) -> String {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(ApiError {
            error: Some(e),
            api_id,
        }) => {
            let text = match e {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            match api_id {
                Some(id) => format!("{text} (api_id {id})"),
                None => text,
            }
        }
        _ => body_excerpt(body),
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::sim::plivo_api::PlivoApiSim;

    const ID: &str = "MAXXXXXXXXXXXXXXXXXX";
    const TOKEN: &str = "AUTH-secret-token";
    const CALL: &str = "1ed7fd89-df77-4ebf-8196-d5cf7222c918";

    fn client(sim: &PlivoApiSim, token: &str) -> PlivoRest {
        PlivoRest::new(&PlivoRestSettings {
            api_base_url: sim.base_url(),
            auth_id: ID.into(),
            auth_token: SensitiveString::new(token),
            timeout: Duration::from_secs(2),
            transfer_url: Some("https://xml.example.com/transfer?to={target}".into()),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn hang_up_deletes_the_call_and_an_ended_call_is_done() {
        let sim = PlivoApiSim::start(ID, TOKEN).await.unwrap();
        client(&sim, TOKEN).hang_up(CALL).await.unwrap();
        let c = sim.wait_for_command(Duration::from_secs(2)).await.unwrap();
        assert_eq!((c.call_uuid.as_str(), c.action.as_str()), (CALL, "hangup"));
        // Hung up already: Plivo answers 404, which is what a hang-up wanted.
        client(&sim, TOKEN).hang_up(CALL).await.unwrap();
        assert_eq!(sim.request_count(), 2);
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[tokio::test]
    async fn transfer_points_the_a_leg_at_the_transfer_xml() {
        let sim = PlivoApiSim::start(ID, TOKEN).await.unwrap();
        client(&sim, TOKEN)
            .transfer(CALL, "+15550002222")
            .await
            .unwrap();
        client(&sim, TOKEN)
            .transfer(CALL, "sip:desk@pbx.example.com")
            .await
            .unwrap();
        let urls: Vec<_> = sim.commands().into_iter().map(|c| c.aleg_url).collect();
        assert_eq!(
            urls,
            [
                Some("https://xml.example.com/transfer?to=%2B15550002222".to_string()),
                Some("https://xml.example.com/transfer?to=sip%3Adesk%40pbx.example.com".into()),
            ]
        );
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[tokio::test]
    async fn transient_failures_are_retried_once_and_bad_tokens_are_not() {
        let sim = PlivoApiSim::start(ID, TOKEN).await.unwrap();
        sim.fail_next(503);
        client(&sim, TOKEN).hang_up(CALL).await.unwrap();
        assert_eq!((sim.request_count(), sim.commands().len()), (2, 1));
        let e = client(&sim, "wrong").hang_up(CALL).await.unwrap_err();
        assert!(
            matches!(e, ControlError::Rejected { status: 401, .. }),
            "{e}"
        );
        assert!(!e.to_string().contains("wrong"));
    }

    #[tokio::test]
    async fn bad_ids_and_targets_send_nothing() {
        let sim = PlivoApiSim::start(ID, TOKEN).await.unwrap();
        let c = client(&sim, TOKEN);
        for bad in ["", "1ed7/../x", "1ed7 fd89", "1ed7?x=1"] {
            assert_eq!(
                c.hang_up(bad).await.unwrap_err().code(),
                "control.invalid_call_id"
            );
        }
        assert_eq!(
            c.transfer(CALL, "5550002222").await.unwrap_err().code(),
            "control.invalid_target"
        );
        assert_eq!(sim.request_count(), 0);
    }

    #[test]
    fn error_bodies_are_read() {
        let body = include_bytes!("../../../tests/fixtures/plivo/api_error.json");
        assert_eq!(
            error_detail(body),
            "call not found (api_id 08c94608-58bd-11e1-86da-adf28403fe48)"
        );
        assert_eq!(error_detail(b"<html>"), "<html>");
    }
}
