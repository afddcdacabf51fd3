//! Plivo through the real daemon: a simulated Plivo caller speaking Plivo's Audio Streams wire
//! (no `connected`, numbers in `extra_headers`, `playAudio`/`checkpoint`/`clearAudio`, the call's
//! first checkpoint never acknowledged, no `stop`: the socket just closes), the shared stream
//! token on the upgrade, and REST hang-up against the local fake.

use std::time::Duration;

use voxhook::config::{SensitiveString, Settings};
use voxhook::sim::caller::{CallerOptions, SimCaller, Wire};
use voxhook::sim::plivo_api::PlivoApiSim;
use voxhook::telephony::plivo::config::PlivoRestSettings;
use voxhook::telephony::plivo::media::{Encoding, StreamCodec};

use crate::support::{
    ask_for_balance, assert_greeted, barge_in, bot_says_goodbye_and_hangs_up, fake_engines,
    fake_tone_heard_and_speech_reaches_the_bot, keys_are_a_turn, plivo, Harness, WAIT,
};

const AUTH_ID: &str = "MAXXXXXXXXXXXXXXXXXX";
const AUTH_TOKEN: &str = "plivo-auth-token-0123";

fn enable(s: &mut Settings, codec: StreamCodec) {
    let p = plivo(s);
    p.enabled = true;
    p.outbound = codec;
}

async fn dial(h: &Harness, from: &str, codec: StreamCodec) -> SimCaller {
    let opts = CallerOptions::plivo(&h.route_url("/plivo"), from, "15550009999", codec);
    let caller = SimCaller::connect(opts).await.unwrap();
    // Plivo drops the first checkpoint's acknowledgement; the greeting's still arrives.
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeting played to its checkpoint");
    caller
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plivo_call_talks_to_the_bot_end_to_end() {
    let api = PlivoApiSim::start(AUTH_ID, AUTH_TOKEN).await.unwrap();
    let base = api.base_url();
    let h = Harness::start_with(|s| {
        enable(s, StreamCodec::DEFAULT);
        plivo(s).rest = Some(PlivoRestSettings {
            api_base_url: base,
            auth_id: AUTH_ID.into(),
            auth_token: SensitiveString::new(AUTH_TOKEN),
            timeout: Duration::from_secs(5),
            transfer_url: None,
        });
    })
    .await;
    let user = "15550007001";
    let caller = dial(&h, user, StreamCodec::DEFAULT).await;

    // The caller's number comes from `extra_headers`.
    assert_greeted(&h, &caller, user, "plivo").await;

    // Speech reaches the bot as text.
    ask_for_balance(&h, &caller).await;

    // Keys.
    keys_are_a_turn(&h, &caller).await;

    // Barge-in sends clearAudio (answered by clearedAudio).
    barge_in(&h, &caller, 3).await;

    // The bot hangs up: REST DELETE of this call, after the goodbye played.
    bot_says_goodbye_and_hangs_up(&h, &caller).await;
    let cmd = api.wait_for_command(WAIT).await.expect("hang-up request");
    assert_eq!(cmd.call_uuid, caller.options.call_sid);
    assert_eq!(cmd.action, "hangup");
    caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("stream ends");
    h.assert_closed_once(user).await;
    assert_eq!(api.violations(), Vec::<String>::new());

    // The caller hangs up: Plivo only closes the socket; one closure.
    let user = "15550007002";
    let caller = dial(&h, user, StreamCodec::DEFAULT).await;
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// A codec both ways with the fake engines: the greeting arrives as whole 20 ms `playAudio`
/// frames declaring the stream's content type, and caller audio in it is heard.
async fn codec_call(codec: StreamCodec, user: &str) {
    let h = Harness::start_with(|s| {
        enable(s, codec);
        fake_engines(s);
    })
    .await;
    let caller = dial(&h, user, codec).await;
    let log = caller.log();
    assert_eq!(log.heard_rate, codec.rate);
    assert!(log.media_frames > 20, "{log:?}");
    assert_eq!(
        (log.odd_frames, log.invalid_messages, log.wrong_stream_sid),
        (0, 0, 0),
        "{codec:?}"
    );
    fake_tone_heard_and_speech_reaches_the_bot(&h, &caller, user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plivo_l16_8k_both_ways() {
    codec_call(StreamCodec::DEFAULT, "15550007101").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plivo_l16_16k_and_mulaw_both_ways() {
    let l16_16k = StreamCodec {
        encoding: Encoding::L16 { big_endian: false },
        rate: 16_000,
    };
    codec_call(l16_16k, "15550007102").await;
    let mulaw = StreamCodec {
        encoding: Encoding::Mulaw,
        rate: 8_000,
    };
    codec_call(mulaw, "15550007103").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_token_is_checked_on_the_upgrade() {
    let h = Harness::start_with(|s| {
        enable(s, StreamCodec::DEFAULT);
        fake_engines(s);
        plivo(s).stream_token = Some(SensitiveString::new("stream-token-1"));
    })
    .await;
    let url = h.route_url("/plivo");
    let with = |from: &str, token: Option<&str>| {
        let mut opts = CallerOptions::plivo(&url, from, "15550009999", StreamCodec::DEFAULT);
        if let Wire::Plivo { stream_token, .. } = &mut opts.wire {
            *stream_token = token.map(str::to_string);
        }
        opts
    };
    for token in [None, Some("wrong-token")] {
        let err = SimCaller::connect(with("15550007201", token))
            .await
            .err()
            .expect("refused");
        assert!(err.contains("403"), "{token:?}: {err}");
    }
    let caller = SimCaller::connect(with("15550007202", Some("stream-token-1")))
        .await
        .unwrap();
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("accepted with the token");
    caller.hang_up().await;
    h.assert_closed_once("15550007202").await;
    h.finish().await;
}
