//! The v2 webhook: `POST …/v2/webhook/{bot}[/hookInstance/{inst}]` and the `GET …/poll/{id}`
//! chain in sync mode; in async mode an immediate `{"status": "ok"}` and one callback per
//! message, end-of-task in a callback of its own.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::callback::{self, Planned};
use super::{
    data_item, end_of_task_fields, error_response, errors, refuse_bad_token, Admitted, Outcome,
    PollBatch, PollState, Received, Reply, Resolved, Shared,
};

/// Handles an admitted message request (see `super::message`).
pub(super) async fn message(req: Admitted) -> Response {
    let (sh, body, mut problems) = (req.sh, req.body, req.problems);
    let kind = body["message"]["type"].as_str().unwrap_or("").to_string();
    let val = body["message"]["val"].as_str().unwrap_or("").to_string();
    let session_new = body["session"]["new"].as_bool().unwrap_or(false);
    match kind.as_str() {
        "text" if val.trim().is_empty() => problems.push("blank text".into()),
        "text" => {}
        "event" if val == "ON_CONNECT" || val == "SESSION_CLOSURE" => {}
        _ => problems.push(format!("bad message {kind}/{val}")),
    }
    if session_new != (val == "ON_CONNECT" && kind == "event") {
        problems.push(format!("session.new={session_new} on {kind}/{val}"));
    }
    let received = Received {
        kind,
        val,
        user_id: req.from_id,
        session_new,
        custom_data: body["customData"].clone(),
        api: "v2",
        interactive_language: body["interactiveLanguage"].as_str().map(str::to_string),
        body: body.clone(),
    };
    let reply = match sh.accept(&received, problems) {
        Ok(r) => r,
        Err(refusal) => return *refusal,
    };
    let closing = received.kind == "event" && received.val == "SESSION_CLOSURE";
    let succeeds = matches!(reply, Reply::Messages { .. } | Reply::Data { .. });
    let target = sh.lock().callback.clone();
    match target {
        Some(_) if closing && succeeds => ack(),
        None if closing && succeeds => {
            let data = json!([{"type": "event", "val": "SESSION_CLOSURE",
                "eventType": "SESSION_CLOSURE_SUCCESS", "description": "Session closed"}]);
            Json(json!({"data": data, "_v": "v2"})).into_response()
        }
        Some(target) => match reply.resolve() {
            (wait, Resolved::Error { code, retry_after }) => {
                tokio::time::sleep(wait).await;
                error_response(code, retry_after)
            }
            (wait, Resolved::Broken(body)) => {
                tokio::time::sleep(wait).await;
                super::broken(body)
            }
            (wait, Resolved::Messages(out)) => {
                let plan = plan_callbacks(&sh, &received.user_id, out);
                callback::spawn(sh.clone(), target, wait, plan);
                super::async_ack(&sh, ack)
            }
        },
        None => respond(&sh, &received.user_id, reply).await,
    }
}

fn ack() -> Response {
    let trace = format!("{}", uuid::Uuid::new_v4().simple());
    Json(json!({"status": "ok", "_v": "v2", "traceId": trace})).into_response()
}

/// One callback per message (polled batches after the immediate ones), then end-of-task.
fn plan_callbacks(sh: &Shared, user: &str, out: Outcome) -> Vec<Planned> {
    let envelope = |mut body: serde_json::Map<String, Value>| {
        body.insert("_v".into(), "v2".into());
        body.insert("to".into(), user.into());
        body.insert("from".into(), sh.bot_id.as_str().into());
        Value::Object(body)
    };
    let message = |pause: Duration, val: Value| {
        let mut body = serde_json::Map::new();
        body.insert("data".into(), json!([data_item(&val)]));
        Planned {
            pause,
            body: envelope(body),
            said: Some(val),
        }
    };
    let mut plan: Vec<Planned> = callback::schedule(out.now, out.polled)
        .into_iter()
        .map(|(pause, val)| message(pause, val))
        .collect();
    if let Some(name) = out.end_of_task {
        plan.push(Planned {
            pause: Duration::ZERO,
            body: envelope(end_of_task_fields(&name)),
            said: None,
        });
    }
    plan
}

/// The synchronous answer.
async fn respond(sh: &Arc<Shared>, user: &str, reply: Reply) -> Response {
    let (wait, resolved) = reply.resolve();
    tokio::time::sleep(wait).await;
    let out = match resolved {
        Resolved::Error { code, retry_after } => return error_response(code, retry_after),
        Resolved::Broken(body) => return super::broken(body),
        Resolved::Messages(out) => out,
    };
    let mut body = json!({"to": user, "from": sh.bot_id, "_v": "v2", "data": items(sh, &out.now)});
    if let Some(id) = register_polls(sh, out.polled) {
        body["pollId"] = id.into();
    }
    if let (Some(name), Some(obj)) = (&out.end_of_task, body.as_object_mut()) {
        obj.extend(end_of_task_fields(name));
    }
    Json(body).into_response()
}

/// `data` items for messages delivered now, recorded in the conversation.
fn items(sh: &Shared, vals: &[Value]) -> Vec<Value> {
    vals.iter()
        .map(|v| {
            sh.record_bot(v);
            data_item(v)
        })
        .collect()
}

fn register_polls(sh: &Arc<Shared>, mut batches: Vec<PollBatch>) -> Option<String> {
    if batches.is_empty() {
        return None;
    }
    let first = batches.remove(0);
    let mut inner = sh.lock();
    inner.next_poll += 1;
    let id = format!("poll{:08x}", inner.next_poll);
    inner.polls.insert(
        id.clone(),
        PollState {
            remaining_in_progress: first.in_progress,
            texts: first.texts,
            rest: batches,
        },
    );
    Some(id)
}

pub(super) async fn poll(
    State(sh): State<Arc<Shared>>,
    Path((bot, poll_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refuse_bad_token(&sh, &headers, None) {
        return refusal;
    }
    if bot != sh.bot_id {
        return (StatusCode::NOT_FOUND, Json(errors(404, "unknown bot"))).into_response();
    }
    let (texts, rest) = {
        let mut inner = sh.lock();
        if inner.delivered_polls.contains(&poll_id) {
            return (StatusCode::BAD_REQUEST, Json(errors(400, "No data found"))).into_response();
        }
        let Some(st) = inner.polls.get_mut(&poll_id) else {
            return (StatusCode::BAD_REQUEST, Json(errors(400, "No data found"))).into_response();
        };
        if st.remaining_in_progress > 0 {
            st.remaining_in_progress -= 1;
            return Json(json!({"status": "Inprogress", "pollId": poll_id, "_v": "v2"}))
                .into_response();
        }
        let Some(st) = inner.polls.remove(&poll_id) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        inner.delivered_polls.insert(poll_id);
        (st.texts, st.rest)
    };
    let vals: Vec<Value> = texts.into_iter().map(Value::from).collect();
    let mut body = json!({"_v": "v2", "data": items(&sh, &vals)});
    if let Some(id) = register_polls(&sh, rest) {
        body["pollId"] = id.into();
    }
    Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{post_signed, sim, v2_body, Receiver};
    use super::*;

    #[tokio::test]
    async fn async_mode_acks_then_posts_each_message_in_order() {
        let sim = sim().await;
        let mut cb = Receiver::start().await;
        sim.set_async(cb.url(), None);
        sim.push_override(
            |r: &Received| r.val == "go",
            Reply::Messages {
                now: vec!["one".into(), "two".into()],
                polled: vec![PollBatch {
                    in_progress: 1,
                    texts: vec!["three".into()],
                }],
            },
        );
        let (status, ack) =
            post_signed(&sim.webhook_url(), "u1", v2_body("u1", "text", "go")).await;
        assert_eq!(status, 200);
        assert_eq!(
            (ack["status"].as_str(), ack["_v"].as_str()),
            (Some("ok"), Some("v2"))
        );
        assert!(
            ack["traceId"].is_string() && ack.get("data").is_none(),
            "{ack}"
        );
        let got = cb.take(3).await;
        let vals: Vec<_> = got
            .iter()
            .map(|(_, b)| b["data"][0]["val"].clone())
            .collect();
        assert_eq!(vals, [json!("one"), json!("two"), json!("three")]);
        for (auth, body) in &got {
            assert_eq!(auth, &None);
            assert_eq!(body["to"], "u1");
            assert_eq!(body["from"], "st-bot");
            assert_eq!(body["_v"], "v2");
            assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
            assert_eq!(body["data"][0]["type"], "text");
            assert!(body["data"][0]["messageId"].is_string());
        }
        assert!(sim.wait_for_callbacks(3, Duration::from_secs(2)).await);
        assert_eq!(sim.callback_results(), vec![("u1".to_string(), 200); 3]);
        let bot: Vec<_> = sim
            .conversation()
            .into_iter()
            .filter(|(w, _)| w == "bot")
            .collect();
        assert_eq!(bot.len(), 3);
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[tokio::test]
    async fn delay_reorders_callbacks_of_two_users_but_not_the_ack() {
        let sim = sim().await;
        let mut cb = Receiver::start().await;
        sim.set_async(cb.url(), None);
        sim.push_override(
            |r: &Received| r.user_id == "slow",
            Reply::Delay(Duration::from_millis(300), Box::new(Reply::say(&["late"]))),
        );
        sim.push_override(|r: &Received| r.user_id == "fast", Reply::say(&["early"]));
        let started = tokio::time::Instant::now();
        let (s, _) = post_signed(&sim.webhook_url(), "slow", v2_body("slow", "text", "a")).await;
        assert_eq!(s, 200);
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "the ack does not wait"
        );
        post_signed(&sim.webhook_url(), "fast", v2_body("fast", "text", "b")).await;
        let to: Vec<_> = cb
            .take(2)
            .await
            .into_iter()
            .map(|(_, b)| b["to"].clone())
            .collect();
        assert_eq!(to, [json!("fast"), json!("slow")]);
    }

    #[tokio::test]
    async fn end_of_task_is_a_callback_of_its_own_and_the_bearer_is_sent() {
        let sim = sim().await;
        let mut cb = Receiver::start().await;
        sim.set_async(cb.url(), Some("cb-token".into()));
        sim.push_override(
            |r: &Received| r.val == "done",
            Reply::Data {
                now: vec![json!({"type": "template", "payload": {"text": "Pick"}})],
                end_of_task: Some("Show Balance".into()),
            },
        );
        post_signed(&sim.webhook_url(), "u1", v2_body("u1", "text", "done")).await;
        let got = cb.take(2).await;
        assert!(got
            .iter()
            .all(|(a, _)| a.as_deref() == Some("Bearer cb-token")));
        assert_eq!(got[0].1["data"][0]["type"], "template");
        let end = &got[1].1;
        assert_eq!(end["endOfTask"], true);
        assert_eq!(end["endReason"], "Fulfilled");
        assert_eq!(end["completedTaskName"], "Show Balance");
        assert_eq!(
            (end["to"].as_str(), end["_v"].as_str()),
            (Some("u1"), Some("v2"))
        );
        assert!(end.get("data").is_none(), "{end}");
    }

    #[tokio::test]
    async fn async_errors_closure_and_unreachable_callbacks() {
        let sim = sim().await;
        // A port nothing listens on.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/cb", free.local_addr().unwrap());
        drop(free);
        sim.set_async(url, None);
        sim.push_override(|r: &Received| r.val == "x", Reply::status(503));
        let (s, _) = post_signed(&sim.webhook_url(), "u1", v2_body("u1", "text", "x")).await;
        assert_eq!(s, 503, "an error status still answers the request");
        let (s, ack) = post_signed(
            &sim.webhook_url(),
            "u1",
            v2_body("u1", "event", "SESSION_CLOSURE"),
        )
        .await;
        assert_eq!((s, ack["status"].as_str()), (200, Some("ok")));
        post_signed(&sim.webhook_url(), "u1", v2_body("u1", "text", "hi there")).await;
        assert!(sim.wait_for_callbacks(1, Duration::from_secs(5)).await);
        assert_eq!(sim.callback_results(), [("u1".to_string(), 0)]);

        sim.set_sync();
        let (s, body) = post_signed(&sim.webhook_url(), "u1", v2_body("u1", "text", "hi")).await;
        assert_eq!(s, 200);
        assert_eq!(body["data"][0]["type"], "text");
    }

    #[tokio::test]
    async fn sync_rich_messages_and_end_of_task() {
        let sim = sim().await;
        let card = json!({"type": "template", "payload": {"template_type": "button"}});
        sim.push_override(
            |r: &Received| r.val == "menu",
            Reply::Data {
                now: vec![json!("Here:"), card.clone()],
                end_of_task: Some("Menu".into()),
            },
        );
        let instance = format!("{}/hookInstance/inst-2", sim.webhook_url());
        let (_, body) = post_signed(&instance, "u1", v2_body("u1", "text", "menu")).await;
        assert_eq!(body["data"][0]["type"], "text");
        assert_eq!(body["data"][1]["type"], "template");
        assert_eq!(body["data"][1]["val"], card);
        assert_eq!(body["endOfTask"], true);
        assert_eq!(body["completedTaskName"], "Menu");
        assert!(body["completedTaskId"]
            .as_str()
            .is_some_and(|s| s.starts_with("dg-")));
        let last = sim.conversation().pop().unwrap();
        assert_eq!(last, ("bot".to_string(), card.to_string()));
        assert_eq!(sim.received()[0].api, "v2");
    }
}
