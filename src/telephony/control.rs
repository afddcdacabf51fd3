//! Call control outside the media stream: the provider-neutral [`CallControl`] trait (hang up,
//! transfer), its [`ControlError`] with stable codes, transfer-target validation and the
//! one-retry REST request policy shared by every provider. Providers implement it in their own
//! module (Twilio: `twilio::rest`, Telnyx: `telnyx::rest`).

use std::time::Duration;

use async_trait::async_trait;

/// Ends or redirects a live call through the provider's API.
#[async_trait]
pub trait CallControl: Send + Sync {
    /// Provider name for logs.
    fn name(&self) -> &'static str;
    /// Ends the call (the provider hangs up the caller).
    async fn hang_up(&self, call_id: &str) -> Result<(), ControlError>;
    /// Sends the caller to `target` (E.164 number or `sip:` URI), leaving this stream.
    async fn transfer(&self, call_id: &str, target: &str) -> Result<(), ControlError>;
    /// Whether `call_id` is an id of this provider, safe to put in its API's URLs. The
    /// default takes plain alphanumeric ids; providers with other id shapes (UUIDs with
    /// dashes, `v3:` prefixes) say so here.
    fn check_call_id(&self, call_id: &str) -> Result<(), ControlError> {
        check_call_id(call_id)
    }
}

/// Why a call-control request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The transfer target is neither an E.164 number nor a plain `sip:`/`sips:` URI.
    #[error("invalid transfer target: {0}")]
    InvalidTarget(String),
    /// The call id cannot be a provider call id (empty or not alphanumeric).
    #[error("invalid call id: {0:?}")]
    InvalidCallId(String),
    /// The provider answered with an error status (after any retry).
    #[error("provider rejected the request ({status}): {detail}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The provider's error code and message.
        detail: String,
    },
    /// The provider could not be reached or did not answer in time.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The client cannot be built from its settings (base URL, account id, credentials).
    #[error("invalid call-control settings: {0}")]
    Config(String),
}

impl ControlError {
    /// Stable code for logs and call records.
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::InvalidTarget(_) => "control.invalid_target",
            ControlError::InvalidCallId(_) => "control.invalid_call_id",
            ControlError::Rejected { .. } => "control.rejected",
            ControlError::Unavailable(_) => "control.unavailable",
            ControlError::Config(_) => "control.config",
        }
    }
}

/// A validated transfer destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// An E.164 number: `+` and 8 to 15 digits.
    Number(String),
    /// A `sip:` or `sips:` URI.
    Sip(String),
}

impl TransferTarget {
    /// Parses `target` (surrounding whitespace ignored); anything else is
    /// [`ControlError::InvalidTarget`].
    pub fn parse(target: &str) -> Result<Self, ControlError> {
        let t = target.trim();
        let invalid = || ControlError::InvalidTarget(t.to_string());
        if let Some(digits) = t.strip_prefix('+') {
            let ok = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
            return if ok {
                Ok(TransferTarget::Number(t.to_string()))
            } else {
                Err(invalid())
            };
        }
        let lower = t.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("sip:")
            .or_else(|| lower.strip_prefix("sips:"))
            .ok_or_else(invalid)?;
        let clean = !rest.is_empty()
            && !rest
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '&'));
        if clean {
            Ok(TransferTarget::Sip(t.to_string()))
        } else {
            Err(invalid())
        }
    }
}

/// Checks that `call_id` can be put in a provider URL path as is.
pub fn check_call_id(call_id: &str) -> Result<(), ControlError> {
    if !call_id.is_empty() && call_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(ControlError::InvalidCallId(call_id.to_string()))
    }
}

/// The longest `Retry-After` the single retry waits for; a longer one fails at once.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);
/// The pause before the retry when the provider names none.
const DEFAULT_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// How a provider reads a non-2xx answer to a call-control request.
pub enum RestAnswer {
    /// The request's goal holds anyway (Telnyx 422/90018: the call has already ended).
    Done,
    /// A refusal, with the provider's code and message for [`ControlError::Rejected`].
    Rejected(String),
}

/// Sends a call-control request built by `request` (called again for the retry), retrying once
/// on a connect failure, 429 or 5xx (after `Retry-After` when it is at most 2 s). A timeout is
/// not retried: the provider may have acted on it, and a second request could act twice.
/// `read_error` turns a non-2xx status and body into a [`RestAnswer`].
pub async fn send_with_one_retry(
    provider: &'static str,
    call_id: &str,
    request: impl Fn() -> reqwest::RequestBuilder,
    read_error: impl Fn(u16, &[u8]) -> RestAnswer,
) -> Result<(), ControlError> {
    match attempt(request(), &read_error).await {
        Attempt::Done => Ok(()),
        Attempt::Fail(e) => Err(e),
        Attempt::Retry { error, pause } => {
            let pause = pause.unwrap_or(DEFAULT_RETRY_PAUSE);
            tracing::warn!(
                provider, call_id, error = %error, pause_ms = pause.as_millis() as u64,
                "Call-control request failed; retrying once."
            );
            tokio::time::sleep(pause).await;
            match attempt(request(), &read_error).await {
                Attempt::Done => Ok(()),
                Attempt::Fail(e) | Attempt::Retry { error: e, .. } => Err(e),
            }
        }
    }
}

/// One attempt's outcome.
enum Attempt {
    Done,
    Retry {
        error: ControlError,
        pause: Option<Duration>,
    },
    Fail(ControlError),
}

async fn attempt(
    request: reqwest::RequestBuilder,
    read_error: &impl Fn(u16, &[u8]) -> RestAnswer,
) -> Attempt {
    let resp = match request.send().await {
        Ok(r) => r,
        // Nothing reached the provider: safe to send again.
        Err(e) if e.is_connect() => {
            return Attempt::Retry {
                error: ControlError::Unavailable(e.to_string()),
                pause: None,
            }
        }
        Err(e) => return Attempt::Fail(ControlError::Unavailable(e.to_string())),
    };
    let status = resp.status();
    if status.is_success() {
        return Attempt::Done;
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp.bytes().await.unwrap_or_default();
    let error = match read_error(status.as_u16(), &body) {
        RestAnswer::Done => return Attempt::Done,
        RestAnswer::Rejected(detail) => ControlError::Rejected {
            status: status.as_u16(),
            detail,
        },
    };
    let transient = status.is_server_error() || status.as_u16() == 429;
    match retry_after {
        Some(p) if p > MAX_RETRY_AFTER => Attempt::Fail(error),
        pause if transient => Attempt::Retry { error, pause },
        _ => Attempt::Fail(error),
    }
}

/// A short excerpt of an error body that is not the provider's JSON.
pub fn body_excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_need_plus_and_8_to_15_digits() {
        assert_eq!(
            TransferTarget::parse(" +15550001111 "),
            Ok(TransferTarget::Number("+15550001111".into()))
        );
        assert!(TransferTarget::parse("+12345678").is_ok());
        assert!(TransferTarget::parse("+123456789012345").is_ok());
        for bad in [
            "15550001111",
            "+1234567",
            "+1234567890123456",
            "+1555 000 1111",
            "+1555-0001",
            "",
        ] {
            let err = TransferTarget::parse(bad).unwrap_err();
            assert_eq!(err.code(), "control.invalid_target", "{bad}");
        }
    }

    #[test]
    fn sip_uris_must_be_plain() {
        assert_eq!(
            TransferTarget::parse("sip:agent@pbx.example.com;transport=tls"),
            Ok(TransferTarget::Sip(
                "sip:agent@pbx.example.com;transport=tls".into()
            ))
        );
        assert!(TransferTarget::parse("SIPS:desk@example.com").is_ok());
        for bad in [
            "sip:",
            "sip:a b@example.com",
            "sip:a@example.com<x>",
            "sip:a&b@example.com",
            "sip:a@exa\tmple.com",
            "tel:+15550001111",
            "http://example.com",
        ] {
            assert!(TransferTarget::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn call_ids_are_alphanumeric() {
        assert!(check_call_id("CA0123456789abcdef0123456789abcdef").is_ok());
        for bad in ["", "CA1/../x", "CA 1", "CA1?x=1"] {
            assert_eq!(
                check_call_id(bad).unwrap_err().code(),
                "control.invalid_call_id"
            );
        }
    }
}
