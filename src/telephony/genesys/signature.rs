//! The HTTP message signature (RFC 9421) Genesys Cloud puts on the AudioHook upgrade:
//! `Signature-Input: sig1=("@request-target" "@authority" "audiohook-organization-id"
//! "audiohook-session-id" "audiohook-correlation-id" "x-api-key");keyid="<api key>";
//! nonce="…";alg="hmac-sha256";created=…;expires=…` and `Signature: sig1=:<base64>:`, an
//! HMAC-SHA256 keyed with the integration's client secret (base64-decoded) over the signature
//! base. Verification follows Genesys's reference server: every component above covered, a
//! nonce, `keyid` equal to `X-API-KEY`, `created` no older than the configured age (clock
//! skew of 3 s allowed), `expires` not passed, the signature base rebuilt from the parsed
//! input (never the raw header), compared in constant time.

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Components every AudioHook signature must cover.
pub const REQUIRED_COMPONENTS: [&str; 6] = [
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
];

/// Clock skew tolerated between Genesys and voxhook, in seconds (the reference server's).
const MAX_CLOCK_SKEW_SECS: i64 = 3;
/// Shortest nonce accepted (the reference server's rule: 128 bits, base64).
const MIN_NONCE_LEN: usize = 22;

/// Why a signature was refused (logged; never sent to the client).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Signature-Input`/`Signature` header at all.
    #[error("no Signature and Signature-Input headers")]
    Unsigned,
    /// A header that does not parse as RFC 9421 says it must.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A required component is not covered, or a covered one is missing from the request.
    #[error("component {0} not covered or absent")]
    Component(String),
    /// A signature parameter rule failed (nonce, keyid, alg).
    #[error("signature parameter {0}")]
    Parameter(&'static str),
    /// `created` too old or in the future, or `expires` passed.
    #[error("signature expired or not yet valid")]
    Expired,
    /// The HMAC does not match.
    #[error("signature does not match")]
    Mismatch,
}

/// A signature parameter value: an sf-string or an sf-integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// `"…"`.
    Str(String),
    /// `123`.
    Int(i64),
}

/// One parsed `Signature-Input` member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInput {
    /// The member key (`sig1`).
    pub label: String,
    /// Covered component names, in order.
    pub components: Vec<String>,
    /// Parameters, in order.
    pub params: Vec<(String, Param)>,
}

impl SignatureInput {
    fn param(&self, key: &str) -> Option<&Param> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn str_param(&self, key: &str) -> Option<&str> {
        match self.param(key) {
            Some(Param::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn int_param(&self, key: &str) -> Option<i64> {
        match self.param(key) {
            Some(Param::Int(n)) => Some(*n),
            _ => None,
        }
    }

    /// The `@signature-params` value: the inner list and parameters, canonically encoded.
    pub fn encode_params(&self) -> String {
        let mut out = String::from("(");
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            push_sf_string(&mut out, c);
        }
        out.push(')');
        for (k, v) in &self.params {
            out.push(';');
            out.push_str(k);
            out.push('=');
            match v {
                Param::Str(s) => push_sf_string(&mut out, s),
                Param::Int(n) => out.push_str(&n.to_string()),
            }
        }
        out
    }

    /// The signature base over `value_of(component)` (RFC 9421 §2.5).
    pub fn base(
        &self,
        value_of: impl Fn(&str) -> Option<String>,
    ) -> Result<String, SignatureError> {
        let mut base = String::new();
        for c in &self.components {
            let value = value_of(c).ok_or_else(|| SignatureError::Component(c.clone()))?;
            push_sf_string(&mut base, c);
            base.push_str(": ");
            base.push_str(&value);
            base.push('\n');
        }
        base.push_str("\"@signature-params\": ");
        base.push_str(&self.encode_params());
        Ok(base)
    }
}

fn push_sf_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
}

/// A small strict reader of the structured-field subset the two headers use.
struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            s: s.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_sp(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// An sf-key: lowercase alpha or `*` first, then lcalpha, digits, `_-.*`.
    fn key(&mut self) -> Option<String> {
        let start = self.i;
        match self.peek() {
            Some(b'a'..=b'z' | b'*') => self.i += 1,
            _ => return None,
        }
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
        ) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .map(str::to_string)
    }

    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = String::new();
        loop {
            match self.peek()? {
                b'\\' => {
                    self.i += 1;
                    match self.peek()? {
                        c @ (b'"' | b'\\') => out.push(c as char),
                        _ => return None,
                    }
                }
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                c @ 0x20..=0x7e => out.push(c as char),
                _ => return None,
            }
            self.i += 1;
        }
    }

    fn integer(&mut self) -> Option<i64> {
        let start = self.i;
        self.eat(b'-');
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let digits = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        (digits.len() <= 16).then(|| digits.parse().ok()).flatten()
    }

    fn params(&mut self) -> Option<Vec<(String, Param)>> {
        let mut params = Vec::new();
        while self.eat(b';') {
            self.skip_sp();
            let key = self.key()?;
            if !self.eat(b'=') {
                return None;
            }
            let value = match self.peek()? {
                b'"' => Param::Str(self.string()?),
                _ => Param::Int(self.integer()?),
            };
            params.push((key, value));
        }
        Some(params)
    }

    fn at_member_end(&mut self) -> bool {
        self.skip_sp();
        self.peek().is_none() || self.eat(b',')
    }
}

/// Parses the first member of `Signature-Input`.
pub fn parse_signature_input(value: &str) -> Option<SignatureInput> {
    let mut r = Reader::new(value.trim());
    let label = r.key()?;
    if !r.eat(b'=') || !r.eat(b'(') {
        return None;
    }
    let mut components = Vec::new();
    loop {
        r.skip_sp();
        if r.eat(b')') {
            break;
        }
        components.push(r.string()?);
    }
    let params = r.params()?;
    r.at_member_end().then_some(SignatureInput {
        label,
        components,
        params,
    })
}

/// The byte sequence of member `label` in `Signature` (`sig1=:…:`).
pub fn parse_signature(value: &str, label: &str) -> Option<Vec<u8>> {
    let mut r = Reader::new(value.trim());
    loop {
        r.skip_sp();
        let key = r.key()?;
        if !r.eat(b'=') || !r.eat(b':') {
            return None;
        }
        let start = r.i;
        while r.peek().is_some_and(|b| b != b':') {
            r.i += 1;
        }
        let b64 = std::str::from_utf8(&r.s[start..r.i]).ok()?;
        if !r.eat(b':') {
            return None;
        }
        r.params()?;
        if key == label {
            return B64.decode(b64).ok();
        }
        if !r.at_member_end() || r.peek().is_none() {
            return None;
        }
    }
}

fn mac(secret: &[u8], base: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(base.as_bytes());
    mac
}

/// A header's canonical value (trimmed; repeated fields joined with `, `).
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// Verifies the upgrade's signature: `path_and_query` is `@request-target`, `Host` the
/// `@authority`; `now` is Unix seconds.
pub fn verify(
    headers: &HeaderMap,
    path_and_query: &str,
    api_key: &str,
    secret: &[u8],
    max_age_secs: i64,
    now: i64,
) -> Result<(), SignatureError> {
    let input = header(headers, "signature-input");
    let signature = header(headers, "signature");
    let (input, signature) = match (input, signature) {
        (None, None) => return Err(SignatureError::Unsigned),
        (Some(i), Some(s)) => (i, s),
        _ => {
            return Err(SignatureError::Malformed(
                "signature headers (one without the other)",
            ))
        }
    };
    let input =
        parse_signature_input(&input).ok_or(SignatureError::Malformed("Signature-Input"))?;
    let signature =
        parse_signature(&signature, &input.label).ok_or(SignatureError::Malformed("Signature"))?;
    for required in REQUIRED_COMPONENTS {
        if !input.components.iter().any(|c| c == required) {
            return Err(SignatureError::Component(required.into()));
        }
    }
    if input
        .str_param("nonce")
        .is_none_or(|n| n.len() < MIN_NONCE_LEN)
    {
        return Err(SignatureError::Parameter("nonce"));
    }
    if !crate::bot::constant_time_eq(
        input.str_param("keyid").unwrap_or("").as_bytes(),
        api_key.as_bytes(),
    ) {
        return Err(SignatureError::Parameter("keyid"));
    }
    if input.str_param("alg").is_some_and(|a| a != "hmac-sha256") {
        return Err(SignatureError::Parameter("alg"));
    }
    let created = input
        .int_param("created")
        .ok_or(SignatureError::Parameter("created"))?;
    if created > now + MAX_CLOCK_SKEW_SECS || created + max_age_secs + MAX_CLOCK_SKEW_SECS < now {
        return Err(SignatureError::Expired);
    }
    if input.int_param("expires").is_some_and(|e| e < now) {
        return Err(SignatureError::Expired);
    }
    let base = input.base(|c| match c {
        "@request-target" => Some(path_and_query.to_string()),
        "@authority" => header(headers, "host").map(|h| h.to_ascii_lowercase()),
        name if name.starts_with('@') => None,
        name => header(headers, name),
    })?;
    mac(secret, &base)
        .verify_slice(&signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// Signs a request the way Genesys does (for the simulated client and tests): the
/// `(Signature-Input, Signature)` header values over `values` of
/// [`REQUIRED_COMPONENTS`], in that order.
pub fn sign(
    secret: &[u8],
    values: [&str; 6],
    api_key: &str,
    nonce: &str,
    created: i64,
) -> (String, String) {
    let input = SignatureInput {
        label: "sig1".into(),
        components: REQUIRED_COMPONENTS.iter().map(|c| c.to_string()).collect(),
        params: vec![
            ("keyid".into(), Param::Str(api_key.into())),
            ("nonce".into(), Param::Str(nonce.into())),
            ("alg".into(), Param::Str("hmac-sha256".into())),
            ("created".into(), Param::Int(created)),
            ("expires".into(), Param::Int(created + 300)),
        ],
    };
    let base = input
        .base(|c| {
            REQUIRED_COMPONENTS
                .iter()
                .position(|r| *r == c)
                .map(|i| values[i].to_string())
        })
        .unwrap_or_default();
    let sig = B64.encode(mac(secret, &base).finalize().into_bytes());
    (
        format!("sig1={}", input.encode_params()),
        format!("sig1=:{sig}:"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Example 1 of Genesys's AudioHook documentation, as the reference server's verifier
    /// tests carry it (`tests/fixtures/genesys/signature_example.json`).
    fn example() -> (HeaderMap, &'static str, &'static str, Vec<u8>, i64) {
        let f: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/genesys/signature_example.json"
        ))
        .unwrap();
        let mut h = HeaderMap::new();
        for (k, v) in f["headers"].as_object().unwrap() {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.as_str().unwrap().parse().unwrap(),
            );
        }
        let secret = B64.decode(f["client_secret"].as_str().unwrap()).unwrap();
        (
            h,
            "/api/v1/voicebiometrics/ws",
            "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh",
            secret,
            1_641_013_200,
        )
    }

    #[test]
    fn the_documented_example_verifies_and_any_change_breaks_it() {
        let (h, target, key, secret, created) = example();
        assert_eq!(verify(&h, target, key, &secret, 10, created + 5), Ok(()));
        // Too old, from the future, another path, another secret, another key.
        assert_eq!(
            verify(&h, target, key, &secret, 10, created + 60),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            verify(&h, target, key, &secret, 10, created - 60),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            verify(&h, "/other", key, &secret, 10, created),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&h, target, key, b"wrong", 10, created),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&h, target, "other-key", &secret, 10, created),
            Err(SignatureError::Parameter("keyid"))
        );
        let mut tampered = h.clone();
        tampered.insert(
            "audiohook-session-id",
            "00000000-0000-0000-0000-000000000000".parse().unwrap(),
        );
        assert_eq!(
            verify(&tampered, target, key, &secret, 10, created),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_partial_and_malformed_signatures_are_refused() {
        let (h, target, key, secret, created) = example();
        let mut none = h.clone();
        none.remove("signature");
        none.remove("signature-input");
        assert_eq!(
            verify(&none, target, key, &secret, 10, created),
            Err(SignatureError::Unsigned)
        );
        let mut half = h.clone();
        half.remove("signature");
        assert!(matches!(
            verify(&half, target, key, &secret, 10, created),
            Err(SignatureError::Malformed(_))
        ));
        for bad in [
            "sig1=(\"@authority\"",
            "sig1=(@authority)",
            "SIG=(\"a\")",
            "sig1=(\"a\");created=x",
        ] {
            let mut m = h.clone();
            m.insert("signature-input", bad.parse().unwrap());
            assert!(
                verify(&m, target, key, &secret, 10, created).is_err(),
                "{bad}"
            );
        }
        // A signature that leaves out a required component is refused even if it matches.
        let mut partial = h.clone();
        partial.insert(
            "signature-input",
            "sig1=(\"@authority\");keyid=\"SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh\";nonce=\"VGhpc0lzQVVuaXF1ZU5vbmNl\";created=1641013200"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            verify(&partial, target, key, &secret, 10, created),
            Err(SignatureError::Component("@request-target".into()))
        );
    }

    #[test]
    fn what_sign_makes_verifies() {
        let values = [
            "/genesys?x=1",
            "voxhook.example.com",
            "org",
            "sess",
            "corr",
            "KEY",
        ];
        let (input, sig) = sign(
            b"secret",
            values,
            "KEY",
            "bm9uY2Vub25jZW5vbmNlbm9uY2U",
            1_000,
        );
        let mut h = HeaderMap::new();
        for (name, v) in REQUIRED_COMPONENTS[1..].iter().zip(&values[1..]) {
            let name = if *name == "@authority" { "host" } else { name };
            h.insert(
                axum::http::HeaderName::from_static(name),
                v.parse().unwrap(),
            );
        }
        h.insert("signature-input", input.parse().unwrap());
        h.insert("signature", sig.parse().unwrap());
        assert_eq!(
            verify(&h, "/genesys?x=1", "KEY", b"secret", 10, 1_002),
            Ok(())
        );
    }
}
