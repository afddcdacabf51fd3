//! `SensitiveString`: a secret that never prints.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A secret value (client secret, private key, auth token). `Debug` and `Display` print
/// `**REDACTED**`, so a secret cannot leak through a log line, an error or a panic message.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SensitiveString(String);

impl SensitiveString {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used (signing, HMAC), never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret was configured.
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for SensitiveString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

impl fmt::Display for SensitiveString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

impl<'de> Deserialize<'de> for SensitiveString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_secret() {
        let s = SensitiveString::new("hunter2");
        assert_eq!(format!("{s}"), "**REDACTED**");
        assert_eq!(format!("{s:?}"), "**REDACTED**");
        assert_eq!(s.expose(), "hunter2");
    }
}
