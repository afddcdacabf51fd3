//! Turns a Kore message `val` into text a caller can hear: plain strings stripped of Kore
//! markdown and SSML tags, templates reduced to their speech hint or text plus numbered option
//! titles. Anything else is unspeakable and returns `None` (never read out as JSON).

use serde_json::Value;

/// Speakable text for one message value.
pub fn to_speech(val: &Value) -> Option<String> {
    let text = match val {
        Value::String(s) => {
            let t = s.trim();
            if t.starts_with('{') {
                // A template sent as a JSON string.
                match serde_json::from_str::<Value>(t) {
                    Ok(v @ Value::Object(_)) => return to_speech(&v),
                    _ => strip_markup(t),
                }
            } else {
                strip_markup(t)
            }
        }
        Value::Object(o) => {
            let payload = o.get("payload").and_then(Value::as_object).unwrap_or(o);
            let lead = ["speech_hint", "text", "title"]
                .iter()
                .find_map(|k| payload.get(*k).and_then(Value::as_str))
                .map(strip_markup)
                .unwrap_or_default();
            let options: Vec<String> = ["buttons", "quick_replies", "elements"]
                .iter()
                .filter_map(|k| payload.get(*k).and_then(Value::as_array))
                .flatten()
                .filter_map(|b| b.get("title").and_then(Value::as_str))
                .map(strip_markup)
                .filter(|t| !t.is_empty())
                .collect();
            let mut out = lead;
            for (i, title) in options.iter().enumerate() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(&format!("Press {} or say {}.", i + 1, title));
            }
            out
        }
        _ => String::new(),
    };
    let text = text.trim().to_string();
    text.chars().any(char::is_alphanumeric).then_some(text)
}

/// Removes SSML/HTML tags and Kore markdown (`*bold*`, `~italic~`, `_italic_`,
/// `[text](url)`, headings, list marks).
pub fn strip_markup(s: &str) -> String {
    let mut no_tags = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                no_tags.push(' ');
            }
            _ if !in_tag => no_tags.push(c),
            _ => {}
        }
    }
    let mut out = String::with_capacity(no_tags.len());
    for line in no_tags.lines() {
        let line = line.trim_start();
        let line = line.trim_start_matches('#').trim_start();
        let line = line
            .strip_prefix("- ")
            .or_else(|| line.strip_prefix("* "))
            .unwrap_or(line);
        out.push_str(&strip_links(line).replace(['*', '~', '`'], ""));
        out.push('\n');
    }
    // `_` marks emphasis only at word edges; keep snake_case words intact.
    let chars: Vec<char> = out.chars().collect();
    let kept: String = chars
        .iter()
        .enumerate()
        .filter(|&(i, &c)| {
            c != '_'
                || (i > 0
                    && chars[i - 1].is_alphanumeric()
                    && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric()))
        })
        .map(|(_, &c)| c)
        .collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn strip_links(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](") else {
            break;
        };
        let Some(end) = rest[open + close..].find(')') else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..open + close]);
        rest = &rest[open + close + end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_text_is_stripped_of_markup() {
        assert_eq!(
            to_speech(&json!(
                "*Hello* ~there~, see [our site](https://x.y) for _more_."
            ))
            .unwrap(),
            "Hello there, see our site for more."
        );
        assert_eq!(
            to_speech(&json!(
                "<speak>Your balance is <break time=\"1s\"/>$54.</speak>"
            ))
            .unwrap(),
            "Your balance is $54."
        );
        assert_eq!(
            to_speech(&json!("# Menu\n- one\n- two")).unwrap(),
            "Menu one two"
        );
    }

    #[test]
    fn templates_speak_hint_or_text_then_numbered_options() {
        let t = json!({"type": "template", "payload": {"template_type": "button",
            "text": "What next?", "buttons": [{"title": "Balance", "payload": "bal"},
            {"title": "Transfer", "payload": "xfer"}]}});
        assert_eq!(
            to_speech(&t).unwrap(),
            "What next? Press 1 or say Balance. Press 2 or say Transfer."
        );
        let hinted = json!({"payload": {"speech_hint": "Say yes or no.", "text": "Yes/No?",
            "quick_replies": []}});
        assert_eq!(to_speech(&hinted).unwrap(), "Say yes or no.");
        let as_string = json!(t.to_string());
        assert!(to_speech(&as_string).unwrap().starts_with("What next?"));
    }

    #[test]
    fn unspeakable_values_are_none() {
        assert_eq!(to_speech(&json!({"foo": 1})), None);
        assert_eq!(to_speech(&json!(42)), None);
        assert_eq!(to_speech(&json!("  ")), None);
    }
}
