//! Retry policy for bot requests: what may be resent, and how long to wait. Pure, so the
//! rules in kore-webhook.md's error table are unit-tested without a server.

use std::time::Duration;

use rand::Rng;

/// The outcome of one HTTP attempt, reduced to what the policy needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// A response with this status.
    Status(u16),
    /// The connection could not be made: the request never left.
    ConnectFailed,
    /// The request was sent but no response arrived in time.
    TimedOut,
    /// Another transport error after the request may have been sent.
    Broken,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// Give up.
    Stop,
    /// Try again after a backoff.
    Retry,
}

/// Decides whether an attempt may be repeated. `idempotent` requests (session events) may be
/// resent whenever the failure is transient; a `text` turn only when the bot cannot have
/// seen it (429, 503, connection refused), so a caller's words are never processed twice.
pub fn classify(attempt: Attempt, idempotent: bool) -> RetryAction {
    match attempt {
        Attempt::Status(429 | 503) | Attempt::ConnectFailed => RetryAction::Retry,
        Attempt::Status(s) if s >= 500 && idempotent => RetryAction::Retry,
        Attempt::TimedOut | Attempt::Broken if idempotent => RetryAction::Retry,
        _ => RetryAction::Stop,
    }
}

/// The error a non-2xx status stands for (`detail`: the platform's own words, shortened).
/// 401 and 403 are both credential failures.
pub fn status_error(status: u16, detail: String) -> crate::bot::BotError {
    use crate::bot::BotError;
    match status {
        400 => BotError::Rejected(detail),
        401 | 403 => BotError::Unauthorized(detail),
        429 => BotError::RateLimited,
        504 => BotError::Timeout(format!("504 {detail}")),
        _ => BotError::Unavailable(format!("{status} {detail}")),
    }
}

/// The attempt and error of a request that got no response (`timeout`: the client's).
pub fn transport_failure(e: &reqwest::Error, timeout: Duration) -> (Attempt, crate::bot::BotError) {
    use crate::bot::BotError;
    if e.is_connect() {
        (
            Attempt::ConnectFailed,
            BotError::Unavailable(format!("connect: {e}")),
        )
    } else if e.is_timeout() {
        (
            Attempt::TimedOut,
            BotError::Timeout(format!("no response in {timeout:?}")),
        )
    } else {
        (Attempt::Broken, BotError::Unavailable(e.to_string()))
    }
}

/// Exponential backoff with full jitter: a random wait in `[0, min(cap, base·2^n)]`, or
/// exactly `retry_after` when the server asked for it.
pub fn backoff(n: u32, retry_after: Option<Duration>) -> Duration {
    const BASE: Duration = Duration::from_millis(200);
    const CAP: Duration = Duration::from_secs(5);
    retry_after.unwrap_or_else(|| {
        let ceiling = BASE.saturating_mul(1u32 << n.min(16)).min(CAP);
        ceiling.mul_f64(rand::rng().random_range(0.0..=1.0))
    })
}

/// Longest `Retry-After` honoured; a larger value is capped (the turn deadline applies anyway).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Parses `Retry-After` in its delta-seconds form (the form rate limiters use), capped.
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let secs = value?.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0)
        .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_turns_are_resent_only_when_unseen() {
        for (a, want) in [
            (Attempt::Status(429), RetryAction::Retry),
            (Attempt::Status(503), RetryAction::Retry),
            (Attempt::ConnectFailed, RetryAction::Retry),
            (Attempt::Status(504), RetryAction::Stop),
            (Attempt::Status(500), RetryAction::Stop),
            (Attempt::Status(400), RetryAction::Stop),
            (Attempt::Status(401), RetryAction::Stop),
            (Attempt::TimedOut, RetryAction::Stop),
        ] {
            assert_eq!(classify(a, false), want, "{a:?}");
        }
    }

    #[test]
    fn session_events_are_resent_on_any_transient_failure() {
        for a in [
            Attempt::Status(500),
            Attempt::Status(504),
            Attempt::TimedOut,
            Attempt::Broken,
        ] {
            assert_eq!(classify(a, true), RetryAction::Retry, "{a:?}");
        }
        assert_eq!(classify(Attempt::Status(401), true), RetryAction::Stop);
    }

    #[test]
    fn backoff_stays_within_bounds() {
        for n in 0..40 {
            for _ in 0..50 {
                let d = backoff(n, None);
                assert!(d <= Duration::from_secs(5));
                let d = backoff(n, Some(Duration::from_secs(2)));
                assert_eq!(d, Duration::from_secs(2));
            }
        }
        assert_eq!(parse_retry_after(Some(" 3 ")), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(None), None);
        assert_eq!(parse_retry_after(Some("1e30")), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after(Some("-1")), None);
        assert_eq!(parse_retry_after(Some("NaN")), None);
    }
}
