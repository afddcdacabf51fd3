//! The legacy v1 webhook: `POST /chatbot/hooks/{bot}[/hookInstance/{inst}]` with
//! `message.text`, no events and no polling. Sync answers carry `text` (one string, or an array
//! for several messages); async mode acknowledges with an empty 200, as the v1 document says
//! ("the platform responds back with an empty message and a status code 200"), and POSTs each
//! message as `{"to", "from", "text"}`. Polled batches of a scripted reply are folded into the
//! one sync answer (sent once their `Inprogress` time has passed); end-of-task fields go only
//! in sync answers, since where v1 callbacks would carry them is not documented.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::callback::{self, Planned};
use super::{end_of_task_fields, error_response, Admitted, PollBatch, Received, Resolved, Shared};

/// Handles an admitted message request (see `super::message`).
pub(super) async fn message(req: Admitted) -> Response {
    let (sh, body, mut problems) = (req.sh, req.body, req.problems);
    let text = body["message"]["text"].as_str().unwrap_or("").to_string();
    if text.trim().is_empty() {
        problems.push("v1 message.text missing or blank".into());
    }
    for field in ["type", "val", "event"] {
        if !body["message"][field].is_null() {
            problems.push(format!("v1 has no message.{field}"));
        }
    }
    if !body["event"].is_null() {
        problems.push("v1 has no events".into());
    }
    let received = Received {
        kind: "text".into(),
        val: text,
        user_id: req.from_id,
        session_new: body["session"]["new"].as_bool().unwrap_or(false),
        custom_data: body["customData"].clone(),
        api: "v1",
        interactive_language: body["interactiveLanguage"].as_str().map(str::to_string),
        body: body.clone(),
    };
    let reply = match sh.accept(&received, problems) {
        Ok(r) => r,
        Err(refusal) => return *refusal,
    };
    let target = sh.lock().callback.clone();
    let (wait, out) = match reply.resolve() {
        (wait, Resolved::Error { code, retry_after }) => {
            tokio::time::sleep(wait).await;
            return error_response(code, retry_after);
        }
        (wait, Resolved::Broken(body)) => {
            tokio::time::sleep(wait).await;
            return super::broken(body);
        }
        (wait, Resolved::Messages(out)) => (wait, out),
    };
    let plan = plan_messages(&sh, &received.user_id, out.now, out.polled);
    match target {
        Some(target) => {
            callback::spawn(sh.clone(), target, wait, plan);
            super::async_ack(&sh, || StatusCode::OK.into_response())
        }
        None => {
            // No polling in v1: the whole reply comes in one answer, as late as its last part.
            let total = wait + plan.iter().map(|p| p.pause).sum::<Duration>();
            tokio::time::sleep(total).await;
            let texts: Vec<Value> = plan.into_iter().filter_map(|p| p.said).collect();
            texts.iter().for_each(|t| sh.record_bot(t));
            sync_body(texts, out.end_of_task.as_deref())
        }
    }
}

/// One `{"to", "from", "text"}` per message, polled batches after their `Inprogress` delay.
fn plan_messages(sh: &Shared, user: &str, now: Vec<Value>, polled: Vec<PollBatch>) -> Vec<Planned> {
    callback::schedule(now, polled)
        .into_iter()
        .map(|(pause, text)| Planned {
            pause,
            body: json!({"to": user, "from": sh.bot_id, "text": text}),
            said: Some(text),
        })
        .collect()
}

/// The sync answer: `text` is the one message, or an array of all of them.
fn sync_body(mut texts: Vec<Value>, end_of_task: Option<&str>) -> Response {
    let text = if texts.len() == 1 {
        texts.remove(0)
    } else {
        Value::Array(texts)
    };
    let mut body = serde_json::Map::new();
    body.insert("text".into(), text);
    if let Some(name) = end_of_task {
        body.extend(end_of_task_fields(name));
    }
    Json(Value::Object(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{post_signed, sim, v1_body, Receiver};
    use super::super::{PollBatch, Reply, WELCOME};
    use super::*;

    #[tokio::test]
    async fn sync_text_is_a_string_for_one_message_and_an_array_for_more() {
        let sim = sim().await;
        let url = sim.v1_webhook_url();
        let (s, body) = post_signed(&url, "u1", v1_body("u1", "hello", true)).await;
        assert_eq!(s, 200);
        assert_eq!(
            body["text"], WELCOME,
            "a new session's first text gets the greeting"
        );
        sim.push_override(
            |r: &Received| r.val == "two",
            Reply::Messages {
                now: vec!["a".into()],
                polled: vec![PollBatch {
                    in_progress: 1,
                    texts: vec!["b".into()],
                }],
            },
        );
        let instance = format!("{url}/hookInstance/inst-2");
        let (_, body) = post_signed(&instance, "u1", v1_body("u1", "two", false)).await;
        assert_eq!(body["text"], json!(["a", "b"]));
        assert!(body.get("endOfTask").is_none());
        let r = sim.received();
        assert_eq!(
            (r[0].kind.as_str(), r[0].api, r[0].session_new),
            ("text", "v1", true)
        );
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[tokio::test]
    async fn sync_end_of_task_and_rich_text() {
        let sim = sim().await;
        sim.push_override(
            |_: &Received| true,
            Reply::Data {
                now: vec![json!({"type": "template"})],
                end_of_task: Some("Bye".into()),
            },
        );
        let (_, body) = post_signed(&sim.v1_webhook_url(), "u1", v1_body("u1", "x", false)).await;
        assert_eq!(body["text"], json!({"type": "template"}));
        assert_eq!(
            (
                body["endOfTask"].as_bool(),
                body["completedTaskName"].as_str()
            ),
            (Some(true), Some("Bye"))
        );
    }

    #[tokio::test]
    async fn async_acks_and_posts_to_from_text() {
        let sim = sim().await;
        let mut cb = Receiver::start().await;
        sim.set_async(cb.url(), Some("tok".into()));
        sim.push_override(|_: &Received| true, Reply::say(&["one", "two"]));
        let (s, ack) = post_signed(&sim.v1_webhook_url(), "u1", v1_body("u1", "x", false)).await;
        assert_eq!((s, ack), (200, Value::Null), "an empty body, as documented");
        let got = cb.take(2).await;
        assert_eq!(
            got[0].1,
            json!({"to": "u1", "from": "st-bot", "text": "one"})
        );
        assert_eq!(
            got[1].1,
            json!({"to": "u1", "from": "st-bot", "text": "two"})
        );
        assert_eq!(got[0].0.as_deref(), Some("Bearer tok"));
    }

    #[tokio::test]
    async fn v2_fields_and_blank_text_are_violations() {
        let sim = sim().await;
        let url = sim.v1_webhook_url();
        let mut body = v1_body("u1", "x", false);
        body["message"]["type"] = json!("event");
        body["message"]["val"] = json!("ON_CONNECT");
        let (s, _) = post_signed(&url, "u1", body).await;
        assert_eq!(s, 400);
        let (s, _) = post_signed(&url, "u1", v1_body("u1", "  ", false)).await;
        assert_eq!(s, 400);
        let mut body = v1_body("u1", "x", false);
        body["to"]["id"] = json!("st-other");
        assert_eq!(post_signed(&url, "u1", body).await.0, 400);
        let v = sim.violations();
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(sim.received().is_empty());
    }
}
