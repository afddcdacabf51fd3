//! Bad input from the provider and a misbehaving bot: each ends or degrades only the call
//! concerned, the daemon keeps serving others, and every opened session is closed once.

use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;
use voxhook::sim::kore::{Received, Reply};

use crate::support::{transcribe, Harness, WAIT};

/// Sends `bad` on one call, then checks that call ended cleanly with the close `code` RFC 6455
/// gives the fault, and that another call works.
async fn provider_fault_ends_only_that_call(user: &str, bad: Message, code: u16) {
    let h = Harness::start().await;
    let other = h.call_and_hear_greeting("+15550007777").await;
    let caller = h.call_and_hear_greeting(user).await;
    caller.send_raw(bad).await;
    caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("voxhook closes the socket of the faulty stream");
    let frame = caller.log().close_frame;
    assert_eq!(frame.as_ref().map(|f| f.0), Some(code), "{frame:?}");
    assert!(frame.is_some_and(|f| !f.1.is_empty()), "a reason is given");
    h.assert_closed_once(user).await;

    // The other live call still works, and new calls are served.
    other.press("7#").await;
    h.wait_received(1, |r| r.kind == "text" && r.val == "7")
        .await;
    let fresh = h.call_and_hear_greeting("+15550008888").await;
    fresh.hang_up().await;
    other.hang_up().await;
    h.assert_closed_once("+15550007777").await;
    h.assert_closed_once("+15550008888").await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_ends_the_call_cleanly() {
    provider_fault_ends_only_that_call(
        "+15550001001",
        Message::Text("{\"event\": media".into()),
        1002,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frame_ends_the_call_cleanly() {
    provider_fault_ends_only_that_call(
        "+15550001002",
        Message::Binary(vec![0u8; 320].into()),
        1003,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_ends_the_call_cleanly() {
    let huge = format!(
        "{{\"event\":\"media\",\"media\":{{\"payload\":\"{}\"}}}}",
        "A".repeat(200_000)
    );
    provider_fault_ends_only_that_call("+15550001003", Message::Text(huge.into()), 1009).await;
}

fn is_text(v: &'static str) -> impl Fn(&Received) -> bool + Send + Sync {
    move |r| r.kind == "text" && r.val == v
}

/// Presses `key#` and waits for one more message to be played (the answer or the fallback).
async fn turn(h: &Harness, caller: &voxhook::sim::caller::SimCaller, key: &'static str) -> usize {
    let before = caller.log().marks_played.len();
    caller.press(&format!("{key}#")).await;
    h.wait_received(1, is_text(key)).await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() > before)
        .await
        .expect("something is spoken after the turn");
    h.bot
        .received()
        .iter()
        .filter(|r| r.kind == "text" && r.val == key)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_401_speaks_the_fallback_and_marks_the_daemon_unready() {
    let h = Harness::start().await;
    let caller = h.call_and_hear_greeting("+15550002001").await;
    h.bot.push_override(is_text("1"), Reply::status(401));
    assert_eq!(turn(&h, &caller, "1").await, 1);
    let ready = reqwest::get(h.http_url("/ready")).await.unwrap();
    assert_eq!(ready.status(), 503, "bot auth failing shows in /ready");
    // The call goes on; a successful request restores readiness.
    assert_eq!(turn(&h, &caller, "2").await, 1);
    assert_eq!(
        reqwest::get(h.http_url("/ready")).await.unwrap().status(),
        200
    );
    caller.hang_up().await;
    h.assert_closed_once("+15550002001").await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_429_is_retried_after_retry_after() {
    let h = Harness::start().await;
    let caller = h.call_and_hear_greeting("+15550002002").await;
    for _ in 0..2 {
        h.bot.push_override(
            is_text("3"),
            Reply::Status {
                code: 429,
                retry_after: Some(1),
            },
        );
    }
    let t0 = tokio::time::Instant::now();
    assert_eq!(
        turn(&h, &caller, "3").await,
        3,
        "two rate-limited attempts, then the answer"
    );
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "Retry-After honoured"
    );
    let heard = caller.log();
    caller.hang_up().await;
    h.assert_closed_once("+15550002002").await;
    // The wait passed the filler delay: filler played and was cut when the answer began.
    assert_eq!(heard.clears, 1);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_503_is_retried_because_the_bot_cannot_have_seen_the_turn() {
    let h = Harness::start().await;
    let caller = h.call_and_hear_greeting("+15550002005").await;
    h.bot.push_override(is_text("5"), Reply::status(503));
    assert_eq!(
        turn(&h, &caller, "5").await,
        2,
        "refused once, then answered"
    );
    let log = caller.log();
    let answer = transcribe(&log.heard[log.mark_offsets[0].1..]).await;
    assert!(
        answer.contains("balance"),
        "the real answer, not the fallback: {answer:?}"
    );
    caller.hang_up().await;
    h.assert_closed_once("+15550002005").await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_504_is_not_resent_and_the_fallback_is_spoken() {
    let h = Harness::start().await;
    let caller = h.call_and_hear_greeting("+15550002003").await;
    h.bot.push_override(is_text("4"), Reply::status(504));
    assert_eq!(
        turn(&h, &caller, "4").await,
        1,
        "a 504 turn may have been processed: never resent"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.bot.received().iter().filter(|r| r.val == "4").count(), 1);
    caller.hang_up().await;
    h.assert_closed_once("+15550002003").await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_closure_is_retried_when_the_bot_is_briefly_down() {
    let h = Harness::start().await;
    let caller = h.call_and_hear_greeting("+15550002004").await;
    h.bot.push_override(
        |r: &Received| r.val == "SESSION_CLOSURE",
        Reply::status(503),
    );
    caller.hang_up().await;
    // The first closure was refused with 503; the retry is the one that counts.
    h.wait_received(2, |r| r.val == "SESSION_CLOSURE").await;
    h.finish().await;
}
