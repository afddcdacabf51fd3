//! Async-mode callbacks: the bodies Kore POSTs to our callback URL. v2 sends
//! `{"data": [...], "_v": "v2", …}` (end-of-task fields in a message of their own); v1 sends
//! `{"to", "from", "text"}`. Whether v2 callbacks carry `to`/`from` is not documented, so every
//! id a body carries is offered for routing, the bot user id (`to`) first.

use serde_json::Value;

use super::wire;
use crate::bot::BotError;

/// Parses a callback into the ids that may name the call and the response-shaped content.
pub fn parse(body: &[u8], bot_id: &str) -> Result<(Vec<String>, wire::Response), BotError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| BotError::InvalidResponse(format!("callback is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(BotError::InvalidResponse(
            "callback is not a JSON object".into(),
        ));
    }
    let mut keys: Vec<String> = Vec::new();
    let mut add = |k: Option<&Value>| {
        let id = match k {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(Value::Object(o)) => o.get("id").and_then(Value::as_str),
            _ => None,
        };
        if let Some(id) = id.map(str::trim).filter(|s| !s.is_empty() && *s != bot_id) {
            if !keys.iter().any(|k| k == id) {
                keys.push(id.to_string());
            }
        }
    };
    add(v.get("to"));
    add(v.get("userId"));
    add(v.pointer("/customData/callId"));
    add(v.get("callId"));
    // `from` is the bot on Kore's callbacks, but some gateways swap them: a non-bot id counts.
    add(v.get("from"));
    let resp: wire::Response = serde_json::from_value(v)
        .map_err(|e| BotError::InvalidResponse(format!("callback shape: {e}")))?;
    if keys.is_empty() {
        return Err(BotError::InvalidResponse(
            "callback names no user (`to`)".into(),
        ));
    }
    Ok((keys, resp))
}

/// The token of an `Authorization` header sent as `Bearer <token>` (any case) or as the bare
/// token, with the form's name for the log.
pub fn token(header: Option<&str>) -> (&'static str, Option<&str>) {
    let Some(v) = header.map(str::trim) else {
        return ("absent", None);
    };
    match v.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            ("bearer", Some(token.trim()))
        }
        Some(_) => ("other_scheme", None),
        None if v.is_empty() => ("empty", None),
        None => ("bare", Some(v)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn callback_tokens_are_read_bearer_or_bare() {
        assert_eq!(token(Some("Bearer abc")), ("bearer", Some("abc")));
        assert_eq!(token(Some("bearer abc")), ("bearer", Some("abc")));
        assert_eq!(token(Some("BEARER  abc ")), ("bearer", Some("abc")));
        assert_eq!(token(Some("abc")), ("bare", Some("abc")));
        assert_eq!(token(Some("Basic abc")), ("other_scheme", None));
        assert_eq!(token(Some("  ")), ("empty", None));
        assert_eq!(token(None), ("absent", None));
    }

    use super::*;

    #[test]
    fn collects_ids_to_first_and_skips_the_bot() {
        let body = br#"{"to": "+1555", "from": "st-b", "customData": {"callId": "CA1"},
            "data": [{"type": "text", "val": "Hi"}], "_v": "v2"}"#;
        let (keys, resp) = parse(body, "st-b").unwrap();
        assert_eq!(keys, ["+1555", "CA1"]);
        assert_eq!(resp.data.len(), 1);
        let (keys, resp) = parse(br#"{"to": {"id": "u1"}, "text": ["a", "b"]}"#, "st-b").unwrap();
        assert_eq!(keys, ["u1"]);
        assert!(resp.text.is_some());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for body in [
            &b"nope"[..],
            b"[]",
            b"{}",
            br#"{"to": 5}"#,
            br#"{"to":"x","data":"y"}"#,
        ] {
            assert!(
                parse(body, "st-b").is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
