//! Twilio call control over the REST API: [`TwilioRest`] updates a live call with
//! `POST {base}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` (HTTP Basic auth,
//! form-encoded), `Status=completed` to hang up and `Twiml=<Response><Dial>…` to transfer.
//! SignalWire's LaML REST API is the same resource under `/api/laml` with UUID ids
//! ([`RestDialect::SIGNALWIRE`]).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::config::SensitiveString;
use crate::telephony::control::{
    body_excerpt, send_with_one_retry, CallControl, ControlError, RestAnswer, TransferTarget,
};

/// Where a Twilio-compatible API differs from Twilio's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestDialect {
    /// Provider name for logs.
    pub name: &'static str,
    /// Path before `/2010-04-01/Accounts/…` on the base URL.
    pub path_prefix: &'static str,
    /// Account and call ids are UUIDs (dashes allowed), not alphanumeric SIDs.
    pub uuid_ids: bool,
}

impl RestDialect {
    /// Twilio: `https://api.twilio.com/2010-04-01/…`, `AC…`/`CA…` SIDs.
    pub const TWILIO: RestDialect = RestDialect {
        name: "twilio",
        path_prefix: "",
        uuid_ids: false,
    };
    /// SignalWire: `https://<space>.signalwire.com/api/laml/2010-04-01/…`, UUID project and
    /// call ids.
    pub const SIGNALWIRE: RestDialect = RestDialect {
        name: "signalwire",
        path_prefix: "/api/laml",
        uuid_ids: true,
    };

    /// Whether `id` is safe in this API's URL paths.
    fn id_ok(self, id: &str) -> bool {
        !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || (self.uuid_ids && b == b'-'))
    }
}

/// Twilio's REST client for call updates.
pub struct TwilioRest {
    dialect: RestDialect,
    http: reqwest::Client,
    calls_url: String,
    account_sid: String,
    auth_token: SensitiveString,
}

/// Twilio's error body: `{"code": 20404, "message": "…", "more_info": "…", "status": 404}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

// === impl TwilioRest ===

impl TwilioRest {
    /// A client for account `account_sid` at `api_base_url` (`https://api.twilio.com` in
    /// production); `timeout` bounds each request.
    pub fn new(
        api_base_url: &str,
        account_sid: &str,
        auth_token: SensitiveString,
        timeout: Duration,
    ) -> Result<Self, ControlError> {
        Self::with_dialect(
            RestDialect::TWILIO,
            api_base_url,
            account_sid,
            auth_token,
            timeout,
        )
    }

    /// A client for a Twilio-compatible API speaking `dialect`.
    pub fn with_dialect(
        dialect: RestDialect,
        api_base_url: &str,
        account_sid: &str,
        auth_token: SensitiveString,
        timeout: Duration,
    ) -> Result<Self, ControlError> {
        let base = reqwest::Url::parse(api_base_url)
            .map_err(|e| ControlError::Config(format!("api_base_url {api_base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ControlError::Config(format!(
                "api_base_url {api_base_url:?} is not http(s)"
            )));
        }
        if !dialect.id_ok(account_sid) {
            return Err(ControlError::Config(format!(
                "account id {account_sid:?} is not a {} account id",
                dialect.name
            )));
        }
        if auth_token.is_empty() {
            return Err(ControlError::Config("auth token is empty".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .user_agent(concat!("voxhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ControlError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            dialect,
            http,
            calls_url: format!(
                "{}{}/2010-04-01/Accounts/{account_sid}/Calls",
                api_base_url.trim_end_matches('/'),
                dialect.path_prefix
            ),
            account_sid: account_sid.to_string(),
            auth_token,
        })
    }

    /// Posts `form` to the call's resource, retrying once on a connect failure, 429 or 5xx.
    async fn update(&self, call_id: &str, form: &[(&str, &str)]) -> Result<(), ControlError> {
        CallControl::check_call_id(self, call_id)?;
        let url = format!("{}/{call_id}.json", self.calls_url);
        let request = || {
            self.http
                .post(&url)
                .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
                .form(form)
        };
        send_with_one_retry(self.dialect.name, call_id, request, |_, body| {
            RestAnswer::Rejected(error_detail(body))
        })
        .await
    }
}

#[async_trait]
impl CallControl for TwilioRest {
    fn name(&self) -> &'static str {
        self.dialect.name
    }

    fn check_call_id(&self, call_id: &str) -> Result<(), ControlError> {
        if self.dialect.id_ok(call_id) {
            Ok(())
        } else {
            Err(ControlError::InvalidCallId(call_id.to_string()))
        }
    }

    async fn hang_up(&self, call_id: &str) -> Result<(), ControlError> {
        self.update(call_id, &[("Status", "completed")]).await?;
        tracing::info!(provider = self.dialect.name, call_id, "Call hung up.");
        Ok(())
    }

    async fn transfer(&self, call_id: &str, target: &str) -> Result<(), ControlError> {
        let target = TransferTarget::parse(target)?;
        self.update(call_id, &[("Twiml", &transfer_twiml(&target))])
            .await?;
        tracing::info!(provider = self.dialect.name, call_id, target = ?target, "Call transferred.");
        Ok(())
    }
}

/// The TwiML that dials `target`, replacing the call's current document (and its stream).
pub fn transfer_twiml(target: &TransferTarget) -> String {
    match target {
        TransferTarget::Number(n) => format!("<Response><Dial>{}</Dial></Response>", xml_escape(n)),
        TransferTarget::Sip(uri) => format!(
            "<Response><Dial><Sip>{}</Sip></Dial></Response>",
            xml_escape(uri)
        ),
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Twilio's code and message from an error body, or a short excerpt of a body that is not one.
fn error_detail(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            code,
            message: Some(m),
        }) => match code {
            Some(c) => format!("{m} (code {c})"),
            None => m,
        },
        _ => body_excerpt(body),
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::sim::twilio_api::TwilioApiSim;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "tok-secret-0123";
    const CALL: &str = "CA0123456789abcdef0123456789abcdef";

    fn client(sim: &TwilioApiSim, token: &str) -> TwilioRest {
        TwilioRest::new(
            &sim.base_url(),
            SID,
            SensitiveString::new(token),
            Duration::from_secs(2),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn hang_up_posts_status_completed() {
        let sim = TwilioApiSim::start(SID, TOKEN).await.unwrap();
        client(&sim, TOKEN).hang_up(CALL).await.unwrap();
        let u = sim.wait_for_update(Duration::from_secs(2)).await.unwrap();
        assert_eq!(u.call_sid, CALL);
        assert_eq!(u.status.as_deref(), Some("completed"));
        assert_eq!(u.twiml, None);
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[tokio::test]
    async fn transfer_posts_escaped_dial_twiml() {
        let sim = TwilioApiSim::start(SID, TOKEN).await.unwrap();
        let c = client(&sim, TOKEN);
        c.transfer(CALL, "+15550002222").await.unwrap();
        c.transfer(CALL, "sip:desk@pbx.example.com;x='1'")
            .await
            .unwrap();
        let twiml: Vec<_> = sim.updates().into_iter().map(|u| u.twiml).collect();
        assert_eq!(
            twiml,
            [
                Some("<Response><Dial>+15550002222</Dial></Response>".to_string()),
                Some(
                    "<Response><Dial><Sip>sip:desk@pbx.example.com;x=&apos;1&apos;</Sip>\
                     </Dial></Response>"
                        .to_string()
                ),
            ]
        );
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[tokio::test]
    async fn invalid_targets_and_call_ids_send_nothing() {
        let sim = TwilioApiSim::start(SID, TOKEN).await.unwrap();
        let c = client(&sim, TOKEN);
        let e = c.transfer(CALL, "5550002222").await.unwrap_err();
        assert_eq!(e.code(), "control.invalid_target");
        let e = c.hang_up("CA1/../../x").await.unwrap_err();
        assert_eq!(e.code(), "control.invalid_call_id");
        assert_eq!(sim.request_count(), 0);
    }

    #[tokio::test]
    async fn a_5xx_is_retried_once() {
        let sim = TwilioApiSim::start(SID, TOKEN).await.unwrap();
        sim.fail_next(503);
        client(&sim, TOKEN).hang_up(CALL).await.unwrap();
        assert_eq!(sim.request_count(), 2);
        assert_eq!(sim.updates().len(), 1);

        sim.fail_next(500);
        sim.fail_next(429);
        let e = client(&sim, TOKEN).hang_up(CALL).await.unwrap_err();
        assert_eq!(e.code(), "control.rejected");
        assert!(
            matches!(e, ControlError::Rejected { status: 429, .. }),
            "{e}"
        );
        assert_eq!(sim.request_count(), 4);
    }

    #[tokio::test]
    async fn a_4xx_is_not_retried_and_carries_twilios_detail_not_the_token() {
        let sim = TwilioApiSim::start(SID, TOKEN).await.unwrap();
        let e = client(&sim, "wrong-token").hang_up(CALL).await.unwrap_err();
        let ControlError::Rejected { status, detail } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(*status, 401);
        assert!(detail.contains("20003"), "{detail}");
        assert!(!e.to_string().contains("wrong-token"));
        assert_eq!(sim.request_count(), 1);
        assert_eq!(sim.violations().len(), 1);

        sim.fail_next(404);
        let e = client(&sim, TOKEN).hang_up(CALL).await.unwrap_err();
        assert!(e.to_string().contains("20404"), "{e}");
        assert_eq!(sim.request_count(), 2);
    }

    #[tokio::test]
    async fn connect_failures_are_retried_then_unavailable() {
        // A port that was just free: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let c = TwilioRest::new(
            &base,
            SID,
            SensitiveString::new(TOKEN),
            Duration::from_secs(2),
        )
        .unwrap();
        let e = c.hang_up(CALL).await.unwrap_err();
        assert_eq!(e.code(), "control.unavailable", "{e}");
    }

    const PROJECT: &str = "b5f3a0c4-8a62-4b7e-9f1d-2c3e4d5f6a7b";
    const SW_CALL: &str = "3e1d2c4b-5a6f-4e7d-8c9b-0a1b2c3d4e5f";

    fn signalwire(sim: &TwilioApiSim, token: &str) -> TwilioRest {
        TwilioRest::with_dialect(
            RestDialect::SIGNALWIRE,
            &sim.base_url(),
            PROJECT,
            SensitiveString::new(token),
            Duration::from_secs(2),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn signalwire_laml_hang_up_and_transfer_use_uuid_ids_under_api_laml() {
        let sim = TwilioApiSim::start_signalwire(PROJECT, TOKEN)
            .await
            .unwrap();
        let c = signalwire(&sim, TOKEN);
        assert_eq!(c.name(), "signalwire");
        c.hang_up(SW_CALL).await.unwrap();
        c.transfer(SW_CALL, "+15550002222").await.unwrap();
        let u = sim.updates();
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].call_sid, SW_CALL);
        assert_eq!(u[0].status.as_deref(), Some("completed"));
        assert_eq!(
            u[1].twiml.as_deref(),
            Some("<Response><Dial>+15550002222</Dial></Response>")
        );
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());

        let e = c.hang_up("3e1d/../x").await.unwrap_err();
        assert_eq!(e.code(), "control.invalid_call_id");
        let e = signalwire(&sim, "wrong")
            .hang_up(SW_CALL)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ControlError::Rejected { status: 401, .. }),
            "{e}"
        );
        assert!(!e.to_string().contains("bad-sw-token-9"));

        // Twilio's own API is not under /api/laml: a Twilio client gets a 404 from this fake.
        let twilio = TwilioRest::new(
            &sim.base_url(),
            "ACb5f3",
            SensitiveString::new(TOKEN),
            Duration::from_secs(2),
        )
        .unwrap();
        let e = twilio.hang_up("CA1").await.unwrap_err();
        assert!(
            matches!(e, ControlError::Rejected { status: 404, .. }),
            "{e}"
        );
        // Nor does Twilio take UUID call ids.
        let e = client(&sim, TOKEN).hang_up(SW_CALL).await.unwrap_err();
        assert_eq!(e.code(), "control.invalid_call_id");
    }

    #[test]
    fn bad_settings_fail_at_construction() {
        let t = || SensitiveString::new(TOKEN);
        let d = Duration::from_secs(1);
        assert!(TwilioRest::new("not a url", SID, t(), d).is_err());
        assert!(TwilioRest::new("ftp://x", SID, t(), d).is_err());
        assert!(TwilioRest::new("https://api.twilio.com", "AC/1", t(), d).is_err());
        let e = TwilioRest::new("https://api.twilio.com", SID, SensitiveString::new(" "), d)
            .err()
            .unwrap();
        assert_eq!(e.code(), "control.config");
        assert!(TwilioRest::new("https://api.twilio.com/", SID, t(), d).is_ok());
    }
}
