//! Config templates filled with call metadata: `{caller}`, `{called}`, `{call_id}`,
//! `{provider}`, `{language}`, `{input_mode}`, `{confidence}` and `{param.NAME}` (a provider
//! custom parameter). Used for the bot user id and the request extras (`customData`,
//! `from.userInfo`, `metaTags`). Unknown names are rejected when the config is validated.

use std::collections::BTreeMap;

/// What a template can refer to.
#[derive(Debug, Clone, Copy)]
pub struct CallVars<'a> {
    /// Provider call id.
    pub call_id: &'a str,
    /// Caller's number.
    pub caller: Option<&'a str>,
    /// Called number.
    pub called: Option<&'a str>,
    /// Provider name.
    pub provider: &'a str,
    /// Provider custom parameters.
    pub params: &'a BTreeMap<String, String>,
    /// The call's language.
    pub language: Option<&'a str>,
    /// `speech`, `dtmf` or `no_input` for a turn.
    pub input_mode: Option<&'a str>,
    /// STT confidence of a spoken turn.
    pub confidence: Option<f32>,
}

const NAMES: &[&str] = &[
    "caller",
    "called",
    "call_id",
    "provider",
    "language",
    "input_mode",
    "confidence",
];

/// Checks that every `{name}` in `tpl` is known and braces are balanced.
pub fn check(tpl: &str) -> Result<(), String> {
    let mut rest = tpl;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            return Err(format!("unclosed `{{` in `{tpl}`"));
        };
        let name = &rest[open + 1..open + len];
        let known = NAMES.contains(&name)
            || name
                .strip_prefix("param.")
                .is_some_and(|p| !p.is_empty() && !p.contains(['{', ' ']));
        if !known {
            return Err(format!(
                "unknown placeholder `{{{name}}}`; use one of {NAMES:?} or {{param.NAME}}"
            ));
        }
        rest = &rest[open + len + 1..];
    }
    Ok(())
}

/// Fills `tpl`; a value that is not known for this call renders empty.
pub fn render(tpl: &str, v: &CallVars<'_>) -> String {
    let mut out = String::with_capacity(tpl.len());
    let mut rest = tpl;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + len];
        let confidence;
        let value = match name {
            "caller" => v.caller,
            "called" => v.called,
            "call_id" => Some(v.call_id),
            "provider" => Some(v.provider),
            "language" => v.language,
            "input_mode" => v.input_mode,
            "confidence" => {
                confidence = v.confidence.map(|c| format!("{c:.2}"));
                confidence.as_deref()
            }
            _ => name
                .strip_prefix("param.")
                .and_then(|p| v.params.get(p))
                .map(String::as_str),
        };
        out.push_str(value.unwrap_or(""));
        rest = &rest[open + len + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_known_names_and_parameters() {
        let params = BTreeMap::from([("tier".to_string(), "gold".to_string())]);
        let v = CallVars {
            call_id: "CA1",
            caller: Some("+1555"),
            called: None,
            provider: "twilio",
            params: &params,
            language: Some("es"),
            input_mode: Some("dtmf"),
            confidence: Some(0.876),
        };
        assert_eq!(
            render("{caller}/{called}/{call_id}/{param.tier}/{param.x}", &v),
            "+1555//CA1/gold/"
        );
        assert_eq!(
            render("{language} {input_mode} {confidence}", &v),
            "es dtmf 0.88"
        );
        assert_eq!(render("plain", &v), "plain");
    }

    #[test]
    fn check_rejects_unknown_names_and_open_braces() {
        assert!(check("{caller}-{param.a}").is_ok());
        assert!(check("{nope}").unwrap_err().contains("unknown placeholder"));
        assert!(check("{caller").unwrap_err().contains("unclosed"));
        assert!(check("{param.}").is_err());
    }
}
