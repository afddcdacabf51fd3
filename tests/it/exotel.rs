//! Exotel through the real daemon: a simulated Exotel Voicebot caller speaking Exotel's wire
//! (snake_case, string values, PCM16 little-endian, numbers in `start`), Basic auth on the
//! upgrade, and a bot hang-up that closes the stream (Exotel has no API for it).

use voxhook::config::SensitiveString;
use voxhook::sim::caller::{CallerOptions, SimCaller, Wire};

use crate::support::{
    ask_for_balance, assert_greeted, barge_in, bot_says_goodbye_and_hangs_up, exotel, fake_engines,
    fake_tone_heard_and_speech_reaches_the_bot, keys_are_a_turn, Harness, WAIT,
};

async fn dial(h: &Harness, from: &str, rate: u32) -> SimCaller {
    let opts = CallerOptions::exotel(&h.route_url("/exotel"), from, "+918012345678", rate);
    let caller = SimCaller::connect(opts).await.unwrap();
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeting played to its mark");
    caller
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exotel_call_talks_to_the_bot_end_to_end() {
    let h = Harness::start_with(|s| exotel(s).enabled = true).await;
    let user = "+919876500001";
    let caller = dial(&h, user, 8_000).await;
    assert_greeted(&h, &caller, user, "exotel").await;
    ask_for_balance(&h, &caller).await;

    keys_are_a_turn(&h, &caller).await;

    barge_in(&h, &caller, 3).await;

    // The bot hangs up: with no call API, voxhook closes the stream after the goodbye.
    bot_says_goodbye_and_hangs_up(&h, &caller).await;
    caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("stream closed by voxhook");
    h.assert_closed_once(user).await;

    // The caller hangs up: Exotel's stop ends the call, one closure.
    let user = "+919876500002";
    let caller = dial(&h, user, 8_000).await;
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exotel_16k_both_ways() {
    let h = Harness::start_with(|s| {
        exotel(s).enabled = true;
        fake_engines(s);
    })
    .await;
    let user = "+919876500101";
    let caller = dial(&h, user, 16_000).await;
    let log = caller.log();
    assert_eq!(log.heard_rate, 16_000);
    // 100 ms chunks (Exotel's minimum), only the one before the greeting's mark shorter.
    let chunk = 1_600;
    assert!(log.media_frames >= 5, "{} chunks", log.media_frames);
    assert!(
        log.heard.len() > (log.media_frames - 1) * chunk
            && log.heard.len() <= log.media_frames * chunk,
        "{} samples in {} chunks",
        log.heard.len(),
        log.media_frames
    );
    assert_eq!(
        (log.odd_frames, log.invalid_messages, log.wrong_stream_sid),
        (0, 0, 0)
    );
    fake_tone_heard_and_speech_reaches_the_bot(&h, &caller, user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_checked_on_the_upgrade() {
    let h = Harness::start_with(|s| {
        let e = exotel(s);
        e.enabled = true;
        e.basic_auth = Some(("KEY".into(), SensitiveString::new("TOKEN")));
        fake_engines(s);
    })
    .await;
    let url = h.route_url("/exotel");
    let with = |from: &str, auth: Option<(&str, &str)>| {
        let mut opts = CallerOptions::exotel(&url, from, "+918012345678", 8_000);
        if let Wire::Exotel { basic_auth, .. } = &mut opts.wire {
            *basic_auth = auth.map(|(u, p)| (u.to_string(), p.to_string()));
        }
        opts
    };
    for auth in [None, Some(("KEY", "WRONG"))] {
        let err = SimCaller::connect(with("+919876500201", auth))
            .await
            .err()
            .expect("refused");
        assert!(err.contains("401"), "{auth:?}: {err}");
    }
    let caller = SimCaller::connect(with("+919876500202", Some(("KEY", "TOKEN"))))
        .await
        .unwrap();
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("accepted with Basic auth");
    caller.hang_up().await;
    h.assert_closed_once("+919876500202").await;
    h.finish().await;
}
