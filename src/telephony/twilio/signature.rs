//! `X-Twilio-Signature` on the WebSocket upgrade: base64(HMAC-SHA1(auth token, URL)), where
//! the URL is the `wss://` form Twilio dialed, rebuilt from the configured public URL (never
//! from Host headers, which proxies rewrite). The upgrade is a GET, so no body parameters.

use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Computes the signature Twilio sends for `url`.
pub fn sign(auth_token: &str, url: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// Checks a received signature in constant time.
pub fn verify(auth_token: &str, url: &str, signature: &str) -> bool {
    let Ok(sig) = B64.decode(signature.trim()) else {
        return false;
    };
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

/// The URL Twilio signed: the public base URL in `wss://` form plus the request path.
pub fn signed_url(public_url: &str, path_and_query: &str) -> String {
    let base = public_url
        .strip_prefix("https://")
        .or_else(|| public_url.strip_prefix("wss://"))
        .map(|rest| format!("wss://{rest}"))
        .unwrap_or_else(|| public_url.to_string());
    format!("{}{}", base.trim_end_matches('/'), path_and_query)
}

/// The upgrade check of a Twilio-style signed stream: the first of `headers_checked` present
/// must hold the signature of the public URL plus `path_and_query` under `key`. Nothing is
/// checked without a key (signatures off) or a public URL (validation requires one).
pub fn check_upgrade(
    provider: &str,
    key: Option<&str>,
    public_url: Option<&str>,
    headers_checked: &[&str],
    headers: &HeaderMap,
    path_and_query: &str,
) -> Result<(), crate::telephony::Refusal> {
    let (Some(key), Some(public)) = (key, public_url) else {
        return Ok(());
    };
    let url = signed_url(public, path_and_query);
    let sig = headers_checked
        .iter()
        .find_map(|h| headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if verify(key, &url, sig) {
        Ok(())
    } else {
        tracing::warn!(provider, url = %url, "Request signature invalid; connection refused.");
        Err(crate::telephony::Refusal {
            status: StatusCode::FORBIDDEN,
            reason: "signature",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_twilio_reference_vector() {
        // Twilio's documented example: token 12345, URL + sorted params concatenated.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2\
                   CallSidCA1234567890ABCDECaller+14158675310Digits1234\
                   From+14158675310To+18005551212";
        assert_eq!(sign("12345", url), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
    }

    #[test]
    fn verify_accepts_only_the_right_signature() {
        let url = signed_url("https://voice.example.com/", "/twilio");
        assert_eq!(url, "wss://voice.example.com/twilio");
        let sig = sign("token", &url);
        assert!(verify("token", &url, &sig));
        assert!(!verify("other", &url, &sig));
        assert!(!verify("token", "https://voice.example.com/twilio", &sig));
        assert!(!verify("token", &url, "not base64!"));
    }
}
