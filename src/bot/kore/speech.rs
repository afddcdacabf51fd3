//! Turns a Kore message `val` into what a caller can hear: plain strings stripped of Kore
//! markdown (SSML kept aside for SSML-capable TTS), templates reduced to their speech hint or
//! text plus numbered option titles (the options are returned so a digit or a spoken title
//! can choose one), and voxhook's call-control convention (`"action": "hangup"` /
//! `"transfer"`). Anything else is unspeakable and yields `None`, never raw JSON read aloud.

use serde_json::{Map, Value};

use crate::bot::{BotAction, BotReply, MenuOption};

/// What one message value means for the call; `None` when there is nothing to use.
pub fn to_reply(val: &Value) -> Option<BotReply> {
    let reply = match val {
        Value::String(s) => {
            let t = s.trim();
            match t.starts_with('{').then(|| serde_json::from_str::<Value>(t)) {
                // A template sent as a JSON string.
                Some(Ok(v @ Value::Object(_))) => return to_reply(&v),
                _ => text_reply(t),
            }
        }
        Value::Object(o) => object_reply(o),
        _ => BotReply::default(),
    };
    (reply.text.is_some() || reply.action.is_some()).then_some(reply)
}

fn text_reply(t: &str) -> BotReply {
    let text = strip_markup(t);
    BotReply {
        ssml: t.contains("<speak").then(|| t.to_string()),
        text: speakable(text),
        ..BotReply::default()
    }
}

fn object_reply(o: &Map<String, Value>) -> BotReply {
    let payload = o.get("payload").and_then(Value::as_object).unwrap_or(o);
    let lead = ["speech_hint", "text", "title"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str))
        .map(str::trim)
        .unwrap_or_default();
    let mut reply = text_reply(lead);
    reply.action = action(payload).or_else(|| action(o));
    reply.options = ["buttons", "quick_replies", "elements"]
        .iter()
        .filter_map(|k| payload.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(option)
        .collect();
    if !reply.options.is_empty() {
        let mut out = reply.text.unwrap_or_default();
        for (i, o) in reply.options.iter().enumerate() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("Press {} or say {}.", i + 1, o.title));
        }
        // The numbered list is ours: SSML from the lead would drop it.
        reply.ssml = None;
        reply.text = speakable(out);
    }
    reply
}

/// A button, quick reply or list/carousel element the caller can choose by voice.
fn option(item: &Value) -> Option<MenuOption> {
    let title = strip_markup(item.get("title").and_then(Value::as_str)?);
    if title.is_empty() || item.get("type").and_then(Value::as_str) == Some("web_url") {
        return None; // a link cannot be followed on the phone
    }
    let postback = |v: &Value| {
        v.get("payload")
            .or_else(|| v.get("value"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
    };
    // List and carousel elements carry their choice in their first postback button.
    let payload = postback(item).or_else(|| {
        item.get("buttons")?
            .as_array()?
            .iter()
            .find(|b| b.get("type").and_then(Value::as_str) != Some("web_url"))
            .and_then(postback)
    });
    Some(MenuOption {
        payload: payload.unwrap_or_else(|| title.clone()),
        title,
    })
}

fn action(o: &Map<String, Value>) -> Option<BotAction> {
    match o.get("action")?.as_str()?.to_ascii_lowercase().as_str() {
        "hangup" | "hang_up" | "end" => Some(BotAction::Hangup),
        "transfer" => {
            let target = o.get("target")?.as_str()?.trim();
            (!target.is_empty()).then(|| BotAction::Transfer {
                target: target.to_string(),
            })
        }
        _ => None,
    }
}

fn speakable(text: String) -> Option<String> {
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

    fn speech(v: Value) -> Option<String> {
        to_reply(&v).and_then(|r| r.text)
    }

    #[test]
    fn plain_text_is_stripped_of_markup() {
        assert_eq!(
            speech(json!(
                "*Hello* ~there~, see [our site](https://x.y) for _more_."
            ))
            .unwrap(),
            "Hello there, see our site for more."
        );
        let r = to_reply(&json!(
            "<speak>Your balance is <break time=\"1s\"/>$54.</speak>"
        ))
        .unwrap();
        assert_eq!(r.text.unwrap(), "Your balance is $54.");
        assert!(r.ssml.unwrap().starts_with("<speak>"));
        assert_eq!(
            speech(json!("# Menu\n- one\n- two")).unwrap(),
            "Menu one two"
        );
    }

    #[test]
    fn templates_speak_hint_or_text_then_numbered_options() {
        let t = json!({"type": "template", "payload": {"template_type": "button",
            "text": "What next?", "buttons": [{"type": "postback", "title": "Balance", "payload": "bal"},
            {"type": "web_url", "title": "Website", "url": "https://x"},
            {"type": "postback", "title": "Transfer", "payload": "xfer"}]}});
        let r = to_reply(&t).unwrap();
        assert_eq!(
            r.text.as_deref().unwrap(),
            "What next? Press 1 or say Balance. Press 2 or say Transfer."
        );
        assert_eq!(r.options[1].payload, "xfer");
        let hinted = json!({"payload": {"speech_hint": "Say yes or no.", "text": "Yes/No?",
            "quick_replies": []}});
        assert_eq!(speech(hinted).unwrap(), "Say yes or no.");
        let as_string = json!(t.to_string());
        assert!(speech(as_string).unwrap().starts_with("What next?"));
    }

    #[test]
    fn list_and_carousel_elements_are_options_with_their_postback() {
        let t = json!({"type": "template", "payload": {"template_type": "carousel",
            "elements": [
              {"title": "Gold card", "subtitle": "x", "buttons": [{"type": "web_url", "title": "More", "url": "u"},
                                                                 {"type": "postback", "title": "Pick", "payload": "gold"}]},
              {"title": "Silver card"}]}});
        let r = to_reply(&t).unwrap();
        assert_eq!(
            r.text.unwrap(),
            "Press 1 or say Gold card. Press 2 or say Silver card."
        );
        assert_eq!(r.options[0].payload, "gold");
        assert_eq!(r.options[1].payload, "Silver card");
    }

    #[test]
    fn call_control_actions_with_or_without_text() {
        let r = to_reply(&json!({"text": "Goodbye!", "action": "hangup"})).unwrap();
        assert_eq!(r.text.as_deref(), Some("Goodbye!"));
        assert_eq!(r.action, Some(BotAction::Hangup));
        let r = to_reply(&json!(
            json!({"action": "transfer", "target": "+15550002222"}).to_string()
        ))
        .unwrap();
        assert_eq!(r.text, None);
        assert_eq!(
            r.action,
            Some(BotAction::Transfer {
                target: "+15550002222".into()
            })
        );
        assert_eq!(to_reply(&json!({"action": "transfer"})), None, "no target");
    }

    #[test]
    fn unspeakable_values_are_none() {
        assert_eq!(to_reply(&json!({"foo": 1})), None);
        assert_eq!(to_reply(&json!(42)), None);
        assert_eq!(to_reply(&json!("  ")), None);
        assert_eq!(
            to_reply(
                &json!({"type": "template", "payload": {"template_type": "image",
            "url": "https://x/y.png"}})
            ),
            None
        );
    }
}
