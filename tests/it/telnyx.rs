//! Telnyx through the real daemon: a simulated Telnyx caller speaking Telnyx's wire (snake_case
//! frames, numbers in `start`, digits out of order, RTP payloads in the negotiated codec), the
//! streaming auth token on the upgrade, and Call Control hang-up against the local fake.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use voxhook::config::{SensitiveString, Settings};
use voxhook::sim::caller::{telnyx_dtmf, CallerOptions, SimCaller};
use voxhook::sim::kore::{Received, Reply};
use voxhook::sim::telnyx_api::TelnyxApiSim;
use voxhook::telephony::telnyx::config::TelnyxRestSettings;
use voxhook::telephony::telnyx::media::{Encoding, MediaCodec};

use crate::support::{
    ask_for_balance, assert_greeted, barge_in, fake_engines, rms, speech, telnyx, Harness, WAIT,
};

const PCMU: MediaCodec = MediaCodec {
    encoding: Encoding::Pcmu,
    rate: 8_000,
};

fn enable(s: &mut Settings, outbound: MediaCodec) {
    let t = telnyx(s);
    t.enabled = true;
    t.outbound = outbound;
}

async fn dial(h: &Harness, from: &str, inbound: MediaCodec, outbound: MediaCodec) -> SimCaller {
    let opts = CallerOptions::telnyx(
        &h.route_url("/telnyx"),
        from,
        "+15550009999",
        inbound,
        outbound,
    );
    let caller = SimCaller::connect(opts).await.unwrap();
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeting played to its mark");
    caller
}

fn is_text(v: &'static str) -> impl Fn(&Received) -> bool + Send + Sync {
    move |r: &Received| r.kind == "text" && r.val == v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telnyx_call_talks_to_the_bot_end_to_end() {
    let api = TelnyxApiSim::start("KEY-telnyx").await.unwrap();
    let base = api.base_url();
    let h = Harness::start_with(|s| {
        enable(s, PCMU);
        telnyx(s).rest = Some(TelnyxRestSettings {
            api_base_url: base,
            api_key: SensitiveString::new("KEY-telnyx"),
            timeout: Duration::from_secs(5),
        });
    })
    .await;
    let user = "+15550006001";
    let caller = dial(&h, user, PCMU, PCMU).await;

    // The caller's number comes from Telnyx's start, not from a custom parameter.
    assert_greeted(&h, &caller, user, "telnyx").await;

    // Speech reaches the bot as text.
    ask_for_balance(&h, &caller).await;

    // Digits arrive out of order, as Telnyx may send them; they are taken in press order.
    let sid = caller.options.stream_sid.clone();
    for (key, at) in [
        ('2', "2026-01-01T10:00:00.400Z"),
        ('1', "2026-01-01T10:00:00.200Z"),
        ('#', "2026-01-01T10:00:00.600Z"),
    ] {
        let m = telnyx_dtmf(&sid, "9", key, at);
        caller.send_raw(Message::Text(m.to_string().into())).await;
    }
    let turns = h.wait_received(2, |r| r.kind == "text").await;
    assert_eq!(turns[1].val, "12");
    assert_eq!(turns[1].custom_data["inputMode"], "dtmf");

    // Barge-in clears Telnyx's playback.
    barge_in(&h, &caller, 3).await;

    // The bot hangs up: Call Control hang-up for this call, after the goodbye played.
    let bye = json!({"text": "Goodbye!", "action": "hangup"});
    h.bot
        .push_override(is_text("8"), Reply::say(&[&bye.to_string()]));
    caller.press("8#").await;
    let cmd = api.wait_for_command(WAIT).await.expect("hang-up command");
    assert_eq!(cmd.call_control_id, caller.options.call_sid);
    assert_eq!(cmd.action, "hangup");
    caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("stream ends");
    h.assert_closed_once(user).await;
    assert_eq!(api.violations(), Vec::<String>::new());

    // The caller hangs up: Telnyx's stop ends the call, one closure.
    let user = "+15550006002";
    let caller = dial(&h, user, PCMU, PCMU).await;
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// Each non-default codec, both ways, with the fake engines: the greeting arrives as whole
/// 20 ms frames in the bidirectional codec, and caller audio in the inbound codec is heard.
async fn codec_call(inbound: MediaCodec, outbound: MediaCodec, user: &str) {
    let h = Harness::start_with(|s| {
        enable(s, outbound);
        fake_engines(s);
    })
    .await;
    let caller = dial(&h, user, inbound, outbound).await;
    let log = caller.log();
    assert_eq!(log.heard_rate, outbound.rate);
    assert!(log.media_frames > 20, "{log:?}");
    assert_eq!(
        (log.odd_frames, log.invalid_messages),
        (0, 0),
        "{:?}",
        outbound
    );
    assert!(rms(&log.heard) > 300.0, "the fake TTS tone was heard");
    caller.say(speech("Hello, can you hear me?").await).await;
    caller.finish_speaking().await;
    let got = h
        .wait_received(1, |r| r.kind == "text" && r.user_id == user)
        .await;
    assert_eq!(got[0].val, "I would like to check my account balance.");
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_pcma_both_ways() {
    let pcma = MediaCodec {
        encoding: Encoding::Pcma,
        rate: 8_000,
    };
    codec_call(pcma, pcma, "+15550006101").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_pcma_in_while_pcmu_was_asked_for() {
    let pcma = MediaCodec {
        encoding: Encoding::Pcma,
        rate: 8_000,
    };
    codec_call(pcma, PCMU, "+15550006102").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_opus_16k_both_ways() {
    let opus = MediaCodec {
        encoding: Encoding::Opus,
        rate: 16_000,
    };
    codec_call(opus, opus, "+15550006103").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_opus_8k_and_l16_16k() {
    let opus = MediaCodec {
        encoding: Encoding::Opus,
        rate: 8_000,
    };
    let l16 = MediaCodec {
        encoding: Encoding::L16,
        rate: 16_000,
    };
    codec_call(l16, opus, "+15550006104").await;
    codec_call(opus, l16, "+15550006105").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streaming_auth_token_is_checked_on_the_upgrade() {
    let h = Harness::start_with(|s| {
        enable(s, PCMU);
        fake_engines(s);
        telnyx(s).stream_auth_token = Some(SensitiveString::new("stream-token-1"));
    })
    .await;
    let url = h.route_url("/telnyx");
    for token in [None, Some("wrong-token")] {
        let mut opts = CallerOptions::telnyx(&url, "+15550006201", "+15550009999", PCMU, PCMU);
        if let voxhook::sim::caller::Wire::Telnyx { auth_token, .. } = &mut opts.wire {
            *auth_token = token.map(str::to_string);
        }
        let err = SimCaller::connect(opts).await.err().expect("refused");
        assert!(err.contains("403"), "{token:?}: {err}");
    }
    let mut opts = CallerOptions::telnyx(&url, "+15550006202", "+15550009999", PCMU, PCMU);
    if let voxhook::sim::caller::Wire::Telnyx { auth_token, .. } = &mut opts.wire {
        *auth_token = Some("stream-token-1".into());
    }
    let caller = SimCaller::connect(opts).await.unwrap();
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("accepted with the token");
    caller.hang_up().await;
    h.assert_closed_once("+15550006202").await;
    h.finish().await;
}
