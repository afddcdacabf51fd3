//! Vonage through the real daemon: a simulated Vonage caller speaking the Voice API
//! WebSocket wire (`websocket:connected` with the NCCO headers, binary L16 both ways,
//! `websocket:dtmf`, `notify`/`websocket:notify`, `clear`/`websocket:cleared`, no stop
//! message), the stream token on the upgrade, and Voice API hang-up (application JWT) against
//! the local fake.

use std::time::Duration;

use voxhook::config::{SensitiveString, Settings};
use voxhook::sim::caller::{CallerOptions, SimCaller, Wire};
use voxhook::sim::vonage_api::{VonageApiSim, TEST_APPLICATION_ID};
use voxhook::telephony::vonage::config::VonageRestSettings;

use crate::support::{
    ask_for_balance, assert_greeted, barge_in, bot_says_goodbye_and_hangs_up, fake_engines,
    fake_tone_heard_and_speech_reaches_the_bot, keys_are_a_turn, vonage, Harness, WAIT,
};

const PRIVATE_KEY: &str = include_str!("../fixtures/vonage/test_private_key.pem");

fn enable(s: &mut Settings, api_base_url: Option<String>) {
    let v = vonage(s);
    v.enabled = true;
    v.rest = api_base_url.map(|api_base_url| VonageRestSettings {
        api_base_url,
        application_id: TEST_APPLICATION_ID.into(),
        private_key: SensitiveString::new(PRIVATE_KEY),
        timeout: Duration::from_secs(5),
        transfer_from: None,
    });
}

async fn dial(h: &Harness, from: &str, rate: u32) -> SimCaller {
    let opts = CallerOptions::vonage(&h.route_url("/vonage"), from, "447700900000", rate);
    let caller = SimCaller::connect(opts).await.unwrap();
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeting played to its notify");
    caller
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vonage_call_talks_to_the_bot_end_to_end() {
    let api = VonageApiSim::start().await.unwrap();
    let base = api.base_url();
    let h = Harness::start_with(|s| enable(s, Some(base))).await;
    let user = "447700900101";
    let caller = dial(&h, user, 8_000).await;

    // The call uuid and the caller's number come from the NCCO endpoint headers.
    assert_greeted(&h, &caller, user, "vonage").await;
    ask_for_balance(&h, &caller).await;
    keys_are_a_turn(&h, &caller).await;

    // Barge-in sends {"action":"clear"} (answered by websocket:cleared).
    barge_in(&h, &caller, 3).await;

    // The bot hangs up: a Voice API PUT of this call, after the goodbye played.
    bot_says_goodbye_and_hangs_up(&h, &caller).await;
    let cmd = api.wait_for_command(WAIT).await.expect("hang-up request");
    assert_eq!(
        (cmd.call_uuid.as_str(), cmd.action.as_str()),
        (caller.options.call_sid.as_str(), "hangup")
    );
    caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("stream ends");
    h.assert_closed_once(user).await;
    assert_eq!(api.violations(), Vec::<String>::new());

    // The caller hangs up: Vonage only closes the socket; one closure.
    let user = "447700900102";
    let caller = dial(&h, user, 8_000).await;
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// A rate both ways with the fake engines: the greeting arrives as whole 20 ms binary frames at
/// the `content-type` rate, and caller audio at it is heard.
async fn rate_call(rate: u32, user: &str) {
    let h = Harness::start_with(|s| {
        enable(s, None);
        fake_engines(s);
    })
    .await;
    let caller = dial(&h, user, rate).await;
    let log = caller.log();
    assert_eq!(log.heard_rate, rate);
    assert!(log.media_frames > 20, "{log:?}");
    assert_eq!(log.heard.len(), log.media_frames * rate as usize / 50);
    assert_eq!((log.odd_frames, log.invalid_messages), (0, 0), "{rate}");
    fake_tone_heard_and_speech_reaches_the_bot(&h, &caller, user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_16k_and_24k_both_ways() {
    rate_call(16_000, "447700900201").await;
    rate_call(24_000, "447700900202").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_token_is_checked_and_bad_input_ends_only_that_call() {
    let h = Harness::start_with(|s| {
        enable(s, None);
        fake_engines(s);
        vonage(s).stream_token = Some(SensitiveString::new("stream-token-1"));
    })
    .await;
    let url = h.route_url("/vonage");
    let with = |from: &str, token: Option<&str>| {
        let mut opts = CallerOptions::vonage(&url, from, "447700900000", 8_000);
        if let Wire::Vonage { stream_token, .. } = &mut opts.wire {
            *stream_token = token.map(str::to_string);
        }
        opts
    };
    for token in [None, Some("wrong-token")] {
        let err = SimCaller::connect(with("447700900301", token))
            .await
            .err()
            .expect("refused");
        assert!(err.contains("403"), "{token:?}: {err}");
    }
    let good = SimCaller::connect(with("447700900302", Some("stream-token-1")))
        .await
        .unwrap();
    good.wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("accepted with the token");
    // A second call sends a frame of odd length: it alone ends, with a close frame.
    let bad = SimCaller::connect(with("447700900303", Some("stream-token-1")))
        .await
        .unwrap();
    bad.wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeted");
    bad.send_raw(tokio_tungstenite::tungstenite::Message::Binary(
        vec![1, 2, 3].into(),
    ))
    .await;
    let log = bad.wait_for(WAIT, |l| l.closed).await.expect("closed");
    assert_eq!(log.close_frame.map(|f| f.0), Some(1002));
    h.assert_closed_once("447700900303").await;
    assert!(!good.log().closed, "the other call goes on");
    good.hang_up().await;
    h.assert_closed_once("447700900302").await;
    h.finish().await;
}
