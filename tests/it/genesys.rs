//! Genesys Audio Connector through the real daemon: a simulated Genesys client (signed
//! upgrade, `open` with a stereo and a mono PCMU offer, strict sequence numbers both ways,
//! binary PCMU, `dtmf`, `playback_completed` when its buffer runs dry, `barge_in` flushing it,
//! `close`), a bot hang-up that ends the session with `disconnect`, and the upgrade's API key
//! and signature checks (good, bad, missing).

use std::sync::Arc;
use std::time::Duration;

use voxhook::config::SensitiveString;
use voxhook::sim::caller::{CallerOptions, SimCaller};
use voxhook::telephony::genesys::config::SensitiveBytes;

use crate::support::{
    assert_greeted, barge_in_when, bot_says_goodbye_and_hangs_up, fake_engines,
    fake_tone_heard_and_speech_reaches_the_bot, genesys, keys_are_a_turn, speech, Harness, WAIT,
};

const KEY: &str = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";
const SECRET: &[u8] = b"MySuperSecretKeyTellNo-1!2@3#4$5";

fn enable(s: &mut voxhook::config::Settings) {
    let g = genesys(s);
    g.enabled = true;
    g.api_key = SensitiveString::new(KEY);
    g.client_secret = Arc::new(SensitiveBytes(SECRET.to_vec()));
    g.organization_id = Some("d7934305-0972-4844-938e-9060eef73d05".into());
}

fn session(h: &Harness, from: &str, secret: Option<&[u8]>, stereo: bool) -> CallerOptions {
    CallerOptions::genesys(
        &h.route_url("/genesys"),
        from,
        "+13175550001",
        KEY,
        secret,
        stereo,
    )
}

/// Connects and waits until the greeting played out (Genesys reported its buffer empty).
async fn dial(opts: CallerOptions) -> SimCaller {
    let caller = SimCaller::connect(opts).await.unwrap();
    caller
        .wait_for(WAIT, |l| l.drains >= 1 && !l.heard.is_empty())
        .await
        .expect("greeting played out");
    caller
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genesys_session_talks_to_the_bot_end_to_end() {
    let h = Harness::start_with(enable).await;
    let user = "+13175550101";
    let caller = dial(session(&h, user, Some(SECRET), false)).await;
    assert_greeted(&h, &caller, user, "genesys").await;

    // Real speech in, the answer out, played to its end.
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

    // Barge-in: while the answer to the keys plays, the caller talks; voxhook sends barge_in.
    barge_in_when(&h, &caller, 3, |_| true).await;

    // The bot hangs up: the goodbye plays out, then voxhook sends disconnect and closes.
    let drains = caller.log().drains;
    bot_says_goodbye_and_hangs_up(&h, &caller).await;
    let log = caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("session ended by voxhook");
    assert!(log.drains > drains, "the goodbye played out before the end");
    assert_eq!(
        (log.invalid_messages, log.wrong_stream_sid, log.odd_frames),
        (0, 0, 0)
    );
    h.assert_closed_once(user).await;

    // Genesys ends the session: close → closed, one closure.
    let user = "+13175550102";
    let caller = dial(session(&h, user, Some(SECRET), false)).await;
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stereo_offer_streams_the_customer_channel() {
    let h = Harness::start_with(|s| {
        enable(s);
        fake_engines(s);
    })
    .await;
    let user = "+13175550111";
    let caller = dial(session(&h, user, Some(SECRET), true)).await;
    let log = caller.log();
    // Bot audio in 200 ms packets (5 a second, Genesys's limit), the last one shorter.
    assert!(log.media_frames >= 2, "{} packets", log.media_frames);
    assert!(
        log.heard.len() > (log.media_frames - 1) * 1_600
            && log.heard.len() <= log.media_frames * 1_600,
        "{} samples in {} packets",
        log.heard.len(),
        log.media_frames
    );
    assert_eq!((log.invalid_messages, log.odd_frames), (0, 0));
    fake_tone_heard_and_speech_reaches_the_bot(&h, &caller, user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_needs_the_api_key_and_a_good_signature() {
    let h = Harness::start_with(|s| {
        enable(s);
        fake_engines(s);
    })
    .await;
    let refused = |opts: CallerOptions, what: &'static str| async move {
        let err = SimCaller::connect(opts).await.err().expect(what);
        assert!(err.contains("401"), "{what}: {err}");
    };
    refused(
        session(&h, "+13175550121", None, false),
        "missing signature",
    )
    .await;
    refused(
        session(&h, "+13175550122", Some(b"wrong secret"), false),
        "bad signature",
    )
    .await;
    let mut wrong_key = session(&h, "+13175550123", Some(SECRET), false);
    if let voxhook::sim::caller::Wire::Genesys { api_key, .. } = &mut wrong_key.wire {
        *api_key = "another-key".into();
    }
    refused(wrong_key, "wrong API key").await;
    let mut other_org = session(&h, "+13175550124", Some(SECRET), false);
    if let voxhook::sim::caller::Wire::Genesys {
        organization_id, ..
    } = &mut other_org.wire
    {
        *organization_id = "00000000-1111-2222-3333-444444444444".into();
    }
    refused(other_org, "other organization").await;

    let user = "+13175550125";
    let caller = dial(session(&h, user, Some(SECRET), false)).await;
    caller.hang_up().await;
    h.assert_closed_once(user).await;

    // A message out of sequence (a replay of seq 1) ends only that call: disconnect, close
    // code 1002, its bot session closed once.
    let user = "+13175550126";
    let caller = dial(session(&h, user, Some(SECRET), false)).await;
    let replay = serde_json::json!({"version": "2", "id": caller.options.stream_sid, "type": "ping",
        "seq": 1, "serverseq": 0, "position": "PT1S", "parameters": {}});
    caller
        .send_raw(tokio_tungstenite::tungstenite::Message::Text(
            replay.to_string().into(),
        ))
        .await;
    let log = caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("closed by voxhook");
    assert_eq!(log.close_frame.map(|f| f.0), Some(1002));
    h.assert_closed_once(user).await;
    h.finish().await;
}
