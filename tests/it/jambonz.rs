//! jambonz through the real daemon: a simulated `listen` verb (subprotocol
//! `audio.jambonz.org`, metadata text frame, binary L16 both ways, `passDtmf` events, marks
//! answered `playout`/`cleared`), `wsAuth` Basic auth on the upgrade, and a bot hang-up that
//! closes the socket (which ends the verb).

use voxhook::sim::caller::{CallerOptions, SimCaller, Wire};

use crate::support::{
    ask_for_balance, assert_greeted, barge_in, bot_says_goodbye_and_hangs_up, fake_engines,
    fake_tone_heard_and_speech_reaches_the_bot, jambonz, keys_are_a_turn, Harness, WAIT,
};

async fn dial(opts: CallerOptions) -> SimCaller {
    let caller = SimCaller::connect(opts).await.unwrap();
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeting played to its mark");
    caller
}

fn call(h: &Harness, from: &str, rate: u32, out_rate: u32) -> CallerOptions {
    let mut opts = CallerOptions::jambonz(
        &h.route_url("/jambonz"),
        from,
        "+15083728299",
        rate,
        out_rate,
    );
    opts.parameters.insert("tenant".into(), "abc".into());
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jambonz_call_talks_to_the_bot_end_to_end() {
    let h = Harness::start_with(|s| jambonz(s).enabled = true).await;
    let user = "+15083084801";
    let caller = dial(call(&h, user, 8_000, 8_000)).await;
    assert_greeted(&h, &caller, user, "jambonz").await;
    let opened = h.wait_received(1, |r| r.val == "ON_CONNECT").await;
    assert_eq!(opened[0].custom_data["customParameters"]["tenant"], "abc");
    ask_for_balance(&h, &caller).await;

    keys_are_a_turn(&h, &caller).await;

    // killAudio flushes jambonz's buffer (a mark already sent comes back `cleared`).
    barge_in(&h, &caller, 3).await;

    // The bot hangs up: voxhook closes the socket after the goodbye.
    bot_says_goodbye_and_hangs_up(&h, &caller).await;
    caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("socket closed by voxhook");
    h.assert_closed_once(user).await;

    // The caller hangs up: jambonz closes the socket, one closure.
    let user = "+15083084802";
    let caller = dial(call(&h, user, 8_000, 8_000)).await;
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jambonz_rates_in_and_out_follow_the_verb() {
    let h = Harness::start_with(|s| {
        let j = jambonz(s);
        j.enabled = true;
        j.bidirectional_sample_rate = Some(24_000);
        fake_engines(s);
    })
    .await;
    // Caller audio at 16 kHz, bot audio back at the configured 24 kHz, in 20 ms frames.
    let user = "+15083084811";
    let caller = dial(call(&h, user, 16_000, 24_000)).await;
    let log = caller.log();
    assert_eq!(log.heard_rate, 24_000);
    assert!(log.media_frames >= 5, "{} frames", log.media_frames);
    assert_eq!((log.odd_frames, log.invalid_messages), (0, 0));
    fake_tone_heard_and_speech_reaches_the_bot(&h, &caller, user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_auth_and_a_bad_metadata_frame_are_refused() {
    let h = Harness::start_with(|s| {
        let j = jambonz(s);
        j.enabled = true;
        j.ws_auth = Some((
            "jambonz".into(),
            voxhook::config::SensitiveString::new("pw"),
        ));
        fake_engines(s);
    })
    .await;
    let with = |from: &str, auth: Option<(&str, &str)>| {
        let mut opts = call(&h, from, 8_000, 8_000);
        if let Wire::Jambonz { ws_auth, .. } = &mut opts.wire {
            *ws_auth = auth.map(|(u, p)| (u.to_string(), p.to_string()));
        }
        opts
    };
    for auth in [None, Some(("jambonz", "WRONG"))] {
        let err = SimCaller::connect(with("+15083084821", auth))
            .await
            .err()
            .expect("refused");
        assert!(err.contains("401"), "{auth:?}: {err}");
    }
    let user = "+15083084822";
    let caller = dial(with(user, Some(("jambonz", "pw")))).await;
    caller.hang_up().await;
    h.assert_closed_once(user).await;

    // A stereo stream carries the other party too: refused, only that call ends.
    let mut opts = with("+15083084823", Some(("jambonz", "pw")));
    opts.send_start = false;
    let caller = SimCaller::connect(opts).await.unwrap();
    let meta = serde_json::json!({"callSid": caller.options.call_sid, "from": "+15083084823",
        "to": "+15083728299", "sampleRate": 8000, "mixType": "stereo"});
    caller
        .send_raw(tokio_tungstenite::tungstenite::Message::Text(
            meta.to_string().into(),
        ))
        .await;
    let log = caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("closed by voxhook");
    assert_eq!(log.close_frame.map(|f| f.0), Some(1003));
    h.finish().await;
}
