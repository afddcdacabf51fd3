//! Vonage call control over the Voice API: `PUT {base}/v1/calls/{uuid}` with
//! `{"action":"hangup"}`, or `{"action":"transfer"}` to an inline NCCO that `connect`s the
//! caller to the target (204 either way). Each request carries a fresh application JWT
//! (RS256, signed with the application's private key: `application_id`, `iat`, `exp`, `jti`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::config::VonageRestSettings;
use super::wire::{ApiError, CallUpdate, ConnectAction, Endpoint, TransferDestination};
use crate::telephony::control::{
    body_excerpt, send_with_one_retry, CallControl, ControlError, RestAnswer, TransferTarget,
};

/// The longest call UUID taken (they are 36 characters).
const MAX_CALL_ID: usize = 64;
/// How long a minted token is valid: one request and its retry.
const TOKEN_TTL: Duration = Duration::from_secs(300);

/// The claims of a Vonage application JWT.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppClaims {
    /// The application the key belongs to.
    pub application_id: String,
    /// Issued at (s).
    pub iat: u64,
    /// Expiry (s).
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
}

/// Vonage's Voice API client for hang-up and transfer.
pub struct VonageRest {
    http: reqwest::Client,
    calls_url: String,
    application_id: String,
    key: EncodingKey,
    transfer_from: Option<String>,
}

// === impl VonageRest ===

impl VonageRest {
    /// A client for the validated settings; the private key is parsed here.
    pub fn new(s: &VonageRestSettings) -> Result<Self, ControlError> {
        let base = reqwest::Url::parse(&s.api_base_url)
            .map_err(|e| ControlError::Config(format!("api_base_url {:?}: {e}", s.api_base_url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ControlError::Config(format!(
                "api_base_url {:?} is not http(s)",
                s.api_base_url
            )));
        }
        // The parse error names the problem, never key material.
        let key = EncodingKey::from_rsa_pem(s.private_key.expose().as_bytes())
            .map_err(|e| ControlError::Config(format!("private_key is not an RSA PEM key: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(s.timeout)
            .connect_timeout(Duration::from_secs(5).min(s.timeout))
            .user_agent(concat!("voxhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ControlError::Config(format!("HTTP client: {e}")))?;
        let client = Self {
            http,
            calls_url: format!("{}/v1/calls", s.api_base_url.trim_end_matches('/')),
            application_id: s.application_id.clone(),
            key,
            transfer_from: s.transfer_from.clone(),
        };
        // Sign once now: a key that parses but cannot sign fails at startup, not mid-call.
        client.token()?;
        Ok(client)
    }

    /// A fresh application JWT.
    fn token(&self) -> Result<String, ControlError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = AppClaims {
            application_id: self.application_id.clone(),
            iat: now,
            exp: now + TOKEN_TTL.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| ControlError::Config(format!("signing the application JWT: {e}")))
    }

    /// Sends `body`; `gone_is_done`: a 404 (the call has ended already) is what it wanted.
    async fn update(
        &self,
        call_id: &str,
        body: &CallUpdate<'_>,
        gone_is_done: bool,
    ) -> Result<(), ControlError> {
        CallControl::check_call_id(self, call_id)?;
        let url = format!("{}/{call_id}", self.calls_url);
        // A fresh token (and `jti`) per attempt, the retry's too.
        let first = self.token()?;
        send_with_one_retry(
            "vonage",
            call_id,
            || {
                let token = self.token().unwrap_or_else(|_| first.clone());
                self.http.put(&url).bearer_auth(token).json(body)
            },
            |status, body| {
                if status == 404 && gone_is_done {
                    RestAnswer::Done
                } else {
                    RestAnswer::Rejected(error_detail(body))
                }
            },
        )
        .await
    }
}

#[async_trait]
impl CallControl for VonageRest {
    fn name(&self) -> &'static str {
        "vonage"
    }

    async fn hang_up(&self, call_id: &str) -> Result<(), ControlError> {
        self.update(call_id, &CallUpdate::Hangup, true).await?;
        tracing::info!(call_id, "Vonage call hung up.");
        Ok(())
    }

    async fn transfer(&self, call_id: &str, target: &str) -> Result<(), ControlError> {
        let target = TransferTarget::parse(target)?;
        let endpoint = match &target {
            TransferTarget::Number(n) => Endpoint::Phone {
                number: n.trim_start_matches('+'),
            },
            TransferTarget::Sip(uri) => Endpoint::Sip { uri },
        };
        let body = CallUpdate::Transfer {
            destination: TransferDestination {
                kind: "ncco",
                ncco: [ConnectAction {
                    action: "connect",
                    from: self.transfer_from.as_deref(),
                    endpoint: [endpoint],
                }],
            },
        };
        self.update(call_id, &body, false).await?;
        tracing::info!(call_id, target = ?target, "Vonage call transferred.");
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

/// Vonage's `title: detail`, or a short excerpt of a body that is not its JSON.
fn error_detail(body: &[u8]) -> String {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(ApiError {
            title: Some(t),
            detail,
        }) => match detail {
            Some(d) => format!("{t}: {d}"),
            None => t,
        },
        _ => body_excerpt(body),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_bodies_are_read() {
        let body = include_bytes!("../../../tests/fixtures/vonage/api_error.json");
        assert_eq!(
            super::error_detail(body),
            "Not Found: Call aaaaaaaa-bbbb-cccc-dddd-0123456789ab was not found or is no longer \
             active"
        );
        assert_eq!(super::error_detail(b"<html>"), "<html>");
    }
}
