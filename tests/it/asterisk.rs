//! Asterisk chan_websocket through the real daemon: a simulated Asterisk dialing voxhook
//! (subprotocol `media`, `MEDIA_START` in JSON or plain text, binary media in the channel
//! format, `DTMF_END`, `MARK_MEDIA`/`MEDIA_MARK_PROCESSED`, `FLUSH_MEDIA`, `MEDIA_XOFF`/
//! `MEDIA_XON` at its queue levels), Basic auth on the upgrade, and a bot hang-up that closes
//! the socket (which hangs the channel up).

use voxhook::config::{SensitiveString, Settings};
use voxhook::sim::caller::{CallerOptions, SimCaller, Wire};
use voxhook::telephony::asterisk::ControlFormat;

use crate::support::{
    ask_for_balance, assert_greeted, asterisk, barge_in, bot_says_goodbye_and_hangs_up,
    fake_engines, fake_tone_heard_and_speech_reaches_the_bot, keys_are_a_turn, Harness, WAIT,
};

fn enable(s: &mut Settings, control: ControlFormat) {
    let a = asterisk(s);
    a.enabled = true;
    a.control_format = control;
}

fn options(h: &Harness, from: &str, format: &str, control: ControlFormat) -> CallerOptions {
    CallerOptions::asterisk(&h.route_url("/asterisk"), from, "7000", format, control)
}

async fn greeted(caller: SimCaller) -> SimCaller {
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeting played to its mark");
    caller
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asterisk_call_talks_to_the_bot_end_to_end() {
    let h = Harness::start_with(|s| enable(s, ControlFormat::Json)).await;
    let user = "6001";
    let opts = options(&h, user, "ulaw", ControlFormat::Json);
    let caller = greeted(SimCaller::connect(opts).await.unwrap()).await;

    // The call id is the channel id; the numbers come from channel variables.
    assert_greeted(&h, &caller, user, "asterisk").await;
    ask_for_balance(&h, &caller).await;
    keys_are_a_turn(&h, &caller).await;

    // Barge-in sends FLUSH_MEDIA.
    barge_in(&h, &caller, 3).await;

    // The bot hangs up: voxhook closes the socket after the goodbye (Asterisk hangs up).
    bot_says_goodbye_and_hangs_up(&h, &caller).await;
    let log = caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("socket closed by voxhook");
    assert_eq!(log.close_frame.map(|f| f.0), Some(1000));
    assert_eq!((log.pauses, log.invalid_messages), (0, 0));
    h.assert_closed_once(user).await;

    // The caller hangs up: Asterisk closes the socket; one closure.
    let user = "6002";
    let caller = greeted(
        SimCaller::connect(options(&h, user, "ulaw", ControlFormat::Json))
            .await
            .unwrap(),
    )
    .await;
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// A channel format and control format with the fake engines: whole frames of the format,
/// marks acknowledged, caller audio heard. Plain text has no channel variables, so the user
/// is the call id.
async fn format_call(format: &str, control: ControlFormat, rate: u32) {
    let h = Harness::start_with(|s| {
        enable(s, control);
        fake_engines(s);
    })
    .await;
    let opts = options(&h, "6101", format, control);
    let user = match control {
        ControlFormat::Json => "6101".to_string(),
        ControlFormat::PlainText => opts.call_sid.clone(),
    };
    let caller = greeted(SimCaller::connect(opts).await.unwrap()).await;
    let log = caller.log();
    assert_eq!(log.heard_rate, rate);
    assert!(log.media_frames > 20, "{} frames", log.media_frames);
    assert_eq!(
        (log.odd_frames, log.invalid_messages),
        (0, 0),
        "{format} {control:?}"
    );
    fake_tone_heard_and_speech_reaches_the_bot(&h, &caller, &user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_slin16_in_plain_text() {
    format_call("slin16", ControlFormat::PlainText, 16_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_alaw_and_slin_in_json() {
    format_call("alaw", ControlFormat::Json, 8_000).await;
    format_call("slin", ControlFormat::Json, 8_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoff_stops_media_until_xon_and_nothing_is_lost() {
    let h = Harness::start_with(|s| {
        enable(s, ControlFormat::Json);
        fake_engines(s);
        // 400 ms of lead: the pacer runs 20 frames ahead, past the simulated XOFF level.
        s.audio.playback_lead = std::time::Duration::from_millis(400);
    })
    .await;
    let mut opts = options(&h, "6201", "ulaw", ControlFormat::Json);
    if let Wire::Asterisk { flow_levels, .. } = &mut opts.wire {
        *flow_levels = (10, 5);
    }
    let caller = greeted(SimCaller::connect(opts).await.unwrap()).await;
    let log = caller.log();
    // The greeting outlasts the lead, so voxhook had frames to send while paused.
    assert!(log.heard.len() >= 6_000, "{} samples", log.heard.len());
    assert!(log.pauses >= 1, "XOFF sent");
    assert_eq!(log.sent_while_paused, 0, "voxhook stopped on XOFF");
    // What was held went out on XON, whole and in order: the mark came after all of it.
    assert_eq!((log.odd_frames, log.invalid_messages), (0, 0));
    assert_eq!(log.heard.len(), log.media_frames * 160);
    assert_eq!(log.mark_offsets[0].1, log.heard.len());
    fake_tone_heard_and_speech_reaches_the_bot(&h, &caller, "6201").await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_the_subprotocol_on_the_upgrade() {
    let h = Harness::start_with(|s| {
        enable(s, ControlFormat::Json);
        fake_engines(s);
        asterisk(s).basic_auth = Some(("asterisk".into(), SensitiveString::new("ws-secret")));
    })
    .await;
    let with = |from: &str, auth: Option<(&str, &str)>| {
        let mut opts = options(&h, from, "ulaw", ControlFormat::Json);
        if let Wire::Asterisk { basic_auth, .. } = &mut opts.wire {
            *basic_auth = auth.map(|(u, p)| (u.to_string(), p.to_string()));
        }
        opts
    };
    for auth in [None, Some(("asterisk", "wrong"))] {
        let err = SimCaller::connect(with("6301", auth))
            .await
            .err()
            .expect("refused");
        assert!(err.contains("401"), "{auth:?}: {err}");
    }
    // The simulated Asterisk asks for subprotocol `media` and refuses an answer without it.
    let caller = greeted(
        SimCaller::connect(with("6302", Some(("asterisk", "ws-secret"))))
            .await
            .unwrap(),
    )
    .await;
    caller.hang_up().await;
    h.assert_closed_once("6302").await;
    h.finish().await;
}
