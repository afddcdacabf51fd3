//! Asterisk AudioSocket through the real daemon: a simulated `AudioSocket()` application
//! connecting over raw TCP (the UUID first, slin 8 kHz both ways, `0x03` keys, no marks, no
//! clear, no playout buffer: only a phone-sized jitter buffer that overflows when voxhook
//! sends ahead), a bot hang-up that ends with a `0x00` frame, faults that end only their own
//! call, the UUID timeout, and admission and draining on the TCP listener.

use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;
use voxhook::config::Settings;
use voxhook::sim::caller::{CallerLog, CallerOptions, SimCaller};
use voxhook::sim::kore::Reply;
use voxhook::telephony::audiosocket::config::AudioSocketSettings;
use voxhook::telephony::ProviderSettings;

use crate::support::{
    assert_greeted, bot_says_goodbye_and_hangs_up, fake_engines,
    fake_tone_heard_and_speech_reaches_the_bot, keys_are_a_turn, speech, Harness, WAIT,
};

fn audiosocket(s: &mut Settings) -> &mut AudioSocketSettings {
    s.telephony
        .iter_mut()
        .find_map(|p| match p {
            ProviderSettings::AudioSocket(a) => Some(a),
            _ => None,
        })
        .expect("audiosocket is registered")
}

/// Turns the listener on at a free loopback port; returns its `host:port`.
fn enable(s: &mut Settings) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let a = audiosocket(s);
    a.enabled = true;
    a.listen = ([127, 0, 0, 1], port).into();
    a.listen.to_string()
}

/// Connects (the daemon binds its listener as it starts: retried briefly).
async fn connect(opts: CallerOptions) -> SimCaller {
    let mut tries = 0;
    loop {
        match SimCaller::connect(opts.clone()).await {
            Ok(c) => return c,
            Err(_) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Connects and waits until the greeting has played out (there are no marks: the line goes
/// quiet).
async fn dial(addr: &str) -> SimCaller {
    let caller = connect(CallerOptions::audiosocket(addr)).await;
    caller
        .wait_bot_quiet(Duration::from_millis(700), WAIT)
        .await
        .expect("greeting played out");
    caller
}

/// voxhook paced its audio: every frame whole, none beyond the jitter buffer, and everything
/// sent was heard.
fn assert_paced(log: &CallerLog) {
    assert_eq!(
        (log.odd_frames, log.overflow_frames, log.invalid_messages),
        (0, 0, 0)
    );
    assert_eq!(log.heard.len(), log.media_frames * 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audiosocket_call_talks_to_the_bot_end_to_end() {
    let mut addr = String::new();
    let h = Harness::start_with(|s| {
        addr = enable(s);
        // The speaker runs far ahead: voxhook holds it all and still paces the line.
        s.audio.playback_lead = Duration::from_millis(2_000);
    })
    .await;
    let caller = dial(&addr).await;
    // No numbers on this protocol: the call id (the UUID) is the bot user.
    let user = caller.options.call_sid.clone();
    assert_greeted(&h, &caller, &user, "audiosocket").await;
    assert_paced(&caller.log());

    // Real speech in, the answer out, played to its end at real time.
    caller
        .say(speech("I would like to check my account balance.").await)
        .await;
    let turns = h.wait_received(1, |r| r.kind == "text").await;
    assert!(
        turns[0].val.to_lowercase().contains("balance"),
        "{:?}",
        turns[0].val
    );
    caller
        .wait_bot_quiet(Duration::from_millis(800), WAIT)
        .await
        .expect("answer played");
    keys_are_a_turn(&h, &caller).await;
    caller
        .wait_bot_quiet(Duration::from_millis(800), WAIT)
        .await
        .expect("answer to the keys played");

    // Barge-in: a long answer starts; the caller talks over it. There is no clear to send:
    // voxhook drops the audio it holds (2 s of lead here), so the answer stops within the
    // barge-in threshold, not after what was queued.
    let long = "Here is everything about your account. ".repeat(12);
    h.bot.push_override(
        |r: &voxhook::sim::kore::Received| r.kind == "text" && r.val == "4",
        Reply::say(&[&long]),
    );
    h.bot.push_override(
        |r: &voxhook::sim::kore::Received| r.kind == "text" && r.val.contains("agent"),
        Reply::say(&["One moment."]),
    );
    let interruption = speech("Actually, I want to speak to an agent.").await;
    let heard_at_keys = caller.log().heard.len();
    caller.press("4#").await;
    h.wait_received(3, |r| r.kind == "text").await;
    caller
        .wait_for(WAIT, |l| l.heard.len() > heard_at_keys + 8_000)
        .await
        .expect("the long answer plays");
    let heard_before = caller.log().heard.len();
    // What plays while the caller talks is measured over the utterance's own length (real
    // time: the line is simulated at 20 ms a frame).
    let talk = Duration::from_secs_f64(interruption.len() as f64 / 8_000.0);
    caller.say(interruption).await;
    tokio::time::sleep(talk).await;
    let talked_over = (caller.log().heard.len() - heard_before) as f64 / 8_000.0;
    assert!(
        talked_over < 1.2,
        "{talked_over:.2} s of the answer heard while the caller talked"
    );
    let turns = h.wait_received(4, |r| r.kind == "text").await;
    assert!(
        turns[3].val.to_lowercase().contains("agent"),
        "{:?}",
        turns[3].val
    );
    let log = caller
        .wait_bot_quiet(Duration::from_millis(800), WAIT)
        .await
        .expect("the short answer played");
    assert_paced(&log);

    // The bot hangs up: the goodbye plays, then voxhook sends 0x00 and closes.
    bot_says_goodbye_and_hangs_up(&h, &caller).await;
    let log = caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("socket closed by voxhook");
    assert_eq!(log.hangups, 1);
    h.assert_closed_once(&user).await;

    // The caller hangs up: Asterisk closes the socket; one closure.
    let caller = dial(&addr).await;
    let user = caller.options.call_sid.clone();
    caller.hang_up().await;
    h.assert_closed_once(&user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_oversized_frames_end_only_their_own_call() {
    let mut addr = String::new();
    let h = Harness::start_with(|s| {
        addr = enable(s);
        fake_engines(s);
    })
    .await;
    let good = dial(&addr).await;
    for bad_frame in [
        // Audio of an odd byte count.
        vec![0x10, 0x00, 0x03, 1, 2, 3],
        // A header announcing 65535 bytes (over the 8 KiB limit), payload never sent.
        vec![0x10, 0xff, 0xff],
    ] {
        let bad = dial(&addr).await;
        bad.send_raw(Message::Binary(bad_frame.into())).await;
        let log = bad
            .wait_for(WAIT, |l| l.closed)
            .await
            .expect("the faulty call ends");
        assert_eq!(log.hangups, 1, "voxhook hangs the channel up");
        h.assert_closed_once(&bad.options.call_sid).await;
    }
    assert!(!good.log().closed);
    let user = good.options.call_sid.clone();
    fake_tone_heard_and_speech_reaches_the_bot(&h, &good, &user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_uuid_in_time_is_dropped_and_admission_applies_to_the_listener() {
    let mut addr = String::new();
    let h = Harness::start_with(|s| {
        addr = enable(s);
        audiosocket(s).uuid_timeout = Duration::from_millis(300);
        s.server.max_concurrent_calls = 1;
        fake_engines(s);
    })
    .await;

    // Connected, never identified: dropped after the timeout, with no bot session.
    let mut silent = CallerOptions::audiosocket(&addr);
    silent.send_start = false;
    let silent = connect(silent).await;
    let log = silent
        .wait_for(Duration::from_secs(5), |l| l.closed)
        .await
        .expect("dropped without a UUID");
    assert!(log.heard.is_empty());
    assert_eq!(h.bot.count_event(&silent.options.call_sid, "ON_CONNECT"), 0);

    // Its admission slot is freed (as its teardown ends, just after the socket closed): a call
    // gets the only one, and a second is refused.
    let mut tries = 0;
    let caller = loop {
        let c = connect(CallerOptions::audiosocket(&addr)).await;
        let log = c
            .wait_for(WAIT, |l| l.closed || !l.heard.is_empty())
            .await
            .expect("admitted or refused");
        if !log.heard.is_empty() {
            break c;
        }
        tries += 1;
        assert!(tries < 20, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    caller
        .wait_bot_quiet(Duration::from_millis(700), WAIT)
        .await
        .expect("greeting played out");
    let refused = connect(CallerOptions::audiosocket(&addr)).await;
    let log = refused
        .wait_for(Duration::from_secs(5), |l| l.closed)
        .await
        .expect("refused at capacity");
    assert!(log.heard.is_empty());
    assert_eq!(
        h.bot.count_event(&refused.options.call_sid, "ON_CONNECT"),
        0
    );
    let user = caller.options.call_sid.clone();
    fake_tone_heard_and_speech_reaches_the_bot(&h, &caller, &user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_refuses_new_connections_and_lets_the_live_call_finish() {
    let mut addr = String::new();
    let h = Harness::start_with(|s| {
        addr = enable(s);
        fake_engines(s);
        s.server.shutdown_grace_period = Duration::from_secs(30);
    })
    .await;
    let live = dial(&addr).await;
    h.begin_drain().await;
    let late = connect(CallerOptions::audiosocket(&addr)).await;
    let log = late
        .wait_for(Duration::from_secs(5), |l| l.closed)
        .await
        .expect("refused while draining");
    assert!(log.heard.is_empty());
    assert_eq!(h.bot.count_event(&late.options.call_sid, "ON_CONNECT"), 0);
    let user = live.options.call_sid.clone();
    fake_tone_heard_and_speech_reaches_the_bot(&h, &live, &user).await;
    h.finish().await;
}
