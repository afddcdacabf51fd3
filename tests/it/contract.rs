//! The rest of the Kore webhook contract end to end: async mode (callbacks routed to the
//! right call in arrival order, end-of-task hang-up, late and forged callbacks), the legacy
//! v1 API in sync and async mode, and the request extras filled from config templates.
//! Every case checks one SESSION_CLOSURE per ON_CONNECT (and none of either on v1).

use std::time::Duration;

use serde_json::json;
use voxhook::config::{
    BotSettings, CallbackSettings, KoreApi, KoreSettings, MetaTags, SensitiveString,
};
use voxhook::sim::caller::{CallerOptions, SimCaller};
use voxhook::sim::kore::{KoreSim, Received, Reply};

use crate::support::{transcribe, Harness, WAIT};

const CALLBACK_SECRET: &str = "0123456789abcdef0123456789abcdef-cb";
const CALLBACK_TOKEN: &str = "kore-callback-token";

/// A daemon in async mode, the simulator POSTing to its callback route.
async fn async_harness(tweak: impl FnOnce(&mut KoreSettings, &KoreSim)) -> Harness {
    let h = Harness::start_for_bot(|s, sim| {
        let BotSettings::Kore(k) = &mut s.bot else {
            panic!("a Kore [bot]");
        };
        k.callback = Some(CallbackSettings {
            secret: SensitiveString::new(CALLBACK_SECRET),
            bearer_token: Some(SensitiveString::new(CALLBACK_TOKEN)),
        });
        tweak(k, sim);
    })
    .await;
    h.bot.set_async(
        h.http_url(&format!("/kore/callback/{CALLBACK_SECRET}")),
        Some(CALLBACK_TOKEN.into()),
    );
    h
}

fn greeting_for(user: &'static str) -> impl Fn(&Received) -> bool + Send + Sync {
    move |r: &Received| r.val == "ON_CONNECT" && r.user_id == user
}

async fn dial(h: &Harness, from: &str) -> SimCaller {
    SimCaller::connect(CallerOptions::new(&h.ws_url(), from, "+15550009999"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_callbacks_reach_their_call_in_arrival_order() {
    let h = async_harness(|k, _| {
        k.hangup_tasks = vec!["Say Goodbye".into()];
        k.user_info = vec![("firstName".into(), "{param.first_name}".into())];
        k.meta_tags = MetaTags {
            session: vec![("line".into(), "{called}".into())],
            ..MetaTags::default()
        };
        k.merge_identity = true;
    })
    .await;
    let (a, b) = ("+15550005001", "+15550005002");
    // A's greeting is held back so that B's callbacks arrive first.
    h.bot.push_override(
        greeting_for(a),
        Reply::Delay(
            Duration::from_millis(1_500),
            Box::new(Reply::say(&["Welcome to the apple line."])),
        ),
    );
    h.bot.push_override(
        greeting_for(b),
        Reply::say(&["Welcome to the banana line."]),
    );
    let mut opts = CallerOptions::new(&h.ws_url(), a, "+15550009999");
    opts.parameters.insert("first_name".into(), "Ada".into());
    let call_a = SimCaller::connect(opts).await.unwrap();
    let call_b = dial(&h, b).await;
    for c in [&call_a, &call_b] {
        c.wait_for(WAIT, |l| l.marks_played.len() == 1)
            .await
            .expect("greeting");
    }
    let heard_a = transcribe(&call_a.log().heard).await;
    let heard_b = transcribe(&call_b.log().heard).await;
    assert!(
        heard_a.contains("apple") && !heard_a.contains("banana"),
        "{heard_a:?}"
    );
    assert!(
        heard_b.contains("banana") && !heard_b.contains("apple"),
        "{heard_b:?}"
    );

    // Request extras from the config templates.
    let opened = h.wait_received(1, greeting_for(a)).await;
    assert_eq!(opened[0].body["from"]["userInfo"]["firstName"], "Ada");
    assert_eq!(
        opened[0].body["metaTags"]["sessionLevelTags"],
        json!([{"name": "line", "value": "+15550009999"}])
    );
    assert_eq!(opened[0].body["mergeIdentity"], true);

    // Several messages for one turn are spoken in the order they arrived.
    h.bot.push_override(
        |r: &Received| r.val == "1",
        Reply::say(&[
            "First, the red one.",
            "Second, the green one.",
            "Third, the blue one.",
        ]),
    );
    call_a.press("1#").await;
    call_a
        .wait_for(WAIT, |l| l.marks_played.len() == 4)
        .await
        .expect("three messages");
    let log = call_a.log();
    let said = transcribe(&log.heard[log.mark_offsets[0].1..]).await;
    let pos = |w: &str| said.find(w).unwrap_or_else(|| panic!("{w} in {said:?}"));
    assert!(
        pos("red") < pos("green") && pos("green") < pos("blue"),
        "{said:?}"
    );

    // An end-of-task message of its own (no text) for a configured task hangs up.
    h.bot.push_override(
        |r: &Received| r.val == "2",
        Reply::Data {
            now: vec![json!("Goodbye from the banana line.")],
            end_of_task: Some("Say Goodbye".into()),
        },
    );
    call_b.press("2#").await;
    call_b
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("the task's end hangs up");
    let log = call_b.log();
    assert_eq!(
        log.marks_played.len(),
        2,
        "goodbye played first: {:?}",
        transcribe(&log.heard).await
    );
    h.assert_closed_once(b).await;

    // A callback for the ended call is answered and dropped; a forged one is refused.
    let http = reqwest::Client::new();
    let late = json!({"to": b, "from": "st-test-bot", "_v": "v2",
        "data": [{"type": "text", "val": "Are you still there?"}]});
    let res = http
        .post(h.http_url(&format!("/kore/callback/{CALLBACK_SECRET}")))
        .bearer_auth(CALLBACK_TOKEN)
        .json(&late)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let forged = http
        .post(h.http_url("/kore/callback/not-the-secret"))
        .bearer_auth(CALLBACK_TOKEN)
        .json(&late)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 404);
    let no_token = http
        .post(h.http_url(&format!("/kore/callback/{CALLBACK_SECRET}")))
        .json(&late)
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 404);
    let garbage = http
        .post(h.http_url(&format!("/kore/callback/{CALLBACK_SECRET}")))
        .bearer_auth(CALLBACK_TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    // Counted (this test is the only one in the binary sending such callbacks).
    let metrics = reqwest::get(h.http_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |result: &str| -> f64 {
        let key = format!("voxhook_bot_callbacks_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(count("unroutable") >= 1.0, "{metrics}");
    assert!(count("rejected") >= 2.0, "{metrics}");
    assert!(count("malformed") >= 1.0, "{metrics}");
    assert!(count("routed") >= 4.0, "{metrics}");

    call_a.hang_up().await;
    h.assert_closed_once(a).await;
    assert!(
        h.bot
            .callback_results()
            .iter()
            .all(|(_, status)| *status == 200),
        "{:?}",
        h.bot.callback_results()
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_turn_without_callbacks_gets_the_fallback() {
    let h = async_harness(|k, _| k.turn_deadline = Duration::from_secs(2)).await;
    let user = "+15550005003";
    let caller = h.call_and_hear_greeting(user).await;
    // Acknowledged, but the callback never comes within the turn deadline.
    h.bot.push_override(
        |r: &Received| r.val == "3",
        Reply::Delay(
            Duration::from_secs(30),
            Box::new(Reply::say(&["Too late."])),
        ),
    );
    caller.press("3#").await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 2)
        .await
        .expect("fallback");
    let log = caller.log();
    let said = transcribe(&log.heard[log.mark_offsets[0].1..]).await;
    assert!(said.contains("sorry"), "{said:?}");
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// Switches the daemon to the legacy v1 API with a greeting turn.
fn use_v1(k: &mut KoreSettings, sim: &KoreSim) {
    k.api = KoreApi::V1;
    k.webhook_url = sim.v1_webhook_url();
    k.greeting_text = Some("hello".into());
}

async fn v1_conversation(h: &Harness, user: &str) {
    let caller = h.call_and_hear_greeting(user).await;
    let greeting = transcribe(&caller.log().heard).await;
    assert!(greeting.contains("welcome"), "{greeting:?}");
    caller.press("1234#").await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 2)
        .await
        .expect("answer");
    let got = h.wait_received(2, |r: &Received| r.user_id == user).await;
    assert!(got.iter().all(|r| r.api == "v1" && r.kind == "text"));
    assert_eq!(got[0].val, "hello");
    assert!(got[0].session_new, "the greeting turn opens the session");
    assert_eq!(got[1].val, "1234");
    assert!(!got[1].session_new);
    // Exactly the greeting and the answer: no fallback before either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = caller.log();
    assert_eq!(log.marks_played.len(), 2, "{:?}", log.marks_played);
    let heard = transcribe(&log.heard).await;
    assert!(
        !heard.contains("sorry"),
        "the fallback was spoken: {heard:?}"
    );
    caller.hang_up().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.bot.count_event(user, "ON_CONNECT"), 0, "v1 has no events");
    assert_eq!(h.bot.count_event(user, "SESSION_CLOSURE"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_sync_speaks_the_text_reply() {
    let h = Harness::start_for_bot(|s, sim| {
        let BotSettings::Kore(k) = &mut s.bot else {
            panic!("a Kore [bot]");
        };
        use_v1(k, sim);
    })
    .await;
    v1_conversation(&h, "+15550005004").await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_async_speaks_the_callbacks() {
    let h = async_harness(use_v1).await;
    // As documented, the simulator acknowledges v1 async requests with an empty 200; this
    // run also sends the access token as a bare `Authorization` value.
    h.bot.set_async_bare_token(
        h.http_url(&format!("/kore/callback/{CALLBACK_SECRET}")),
        CALLBACK_TOKEN.into(),
    );
    v1_conversation(&h, "+15550005005").await;
    assert!(
        h.bot.callback_results().len() >= 2,
        "greeting and answer came as callbacks"
    );
    h.finish().await;
}
