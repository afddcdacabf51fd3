//! SignalWire through the real daemon: a simulated SignalWire caller speaking the
//! Twilio-compatible cXML stream wire (UUID ids, numbers in `customParameters`, PCMU or
//! little-endian L16 at 16 kHz), the request signature on the upgrade, and LaML REST hang-up
//! against the local fake.

use std::time::Duration;

use serde_json::json;
use voxhook::config::{SensitiveString, Settings};
use voxhook::sim::caller::{CallerOptions, SimCaller};
use voxhook::sim::kore::{Received, Reply};
use voxhook::sim::twilio_api::TwilioApiSim;
use voxhook::telephony::twilio::config::TwilioRestSettings;
use voxhook::telephony::twilio::signature;

use crate::support::{
    ask_for_balance, assert_greeted, barge_in, fake_engines, rms, signalwire, speech, Harness, WAIT,
};

const PROJECT: &str = "b5f3a0c4-8a62-4b7e-9f1d-2c3e4d5f6a7b";
const TOKEN: &str = "PT-api-token-0123";

fn enable(s: &mut Settings) {
    signalwire(s).stream.enabled = true;
}

async fn dial(h: &Harness, from: &str, rate: u32) -> SimCaller {
    let opts = CallerOptions::signalwire(&h.route_url("/signalwire"), from, "+15550009999", rate);
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
async fn a_signalwire_call_talks_to_the_bot_end_to_end() {
    let api = TwilioApiSim::start_signalwire(PROJECT, TOKEN)
        .await
        .unwrap();
    let base = api.base_url();
    let h = Harness::start_with(|s| {
        enable(s);
        signalwire(s).stream.rest = Some(TwilioRestSettings {
            api_base_url: base,
            account_sid: PROJECT.into(),
            auth_token: SensitiveString::new(TOKEN),
            timeout: Duration::from_secs(5),
        });
    })
    .await;
    let user = "+15550007001";
    let caller = dial(&h, user, 8_000).await;

    // The caller's number comes from `customParameters`.
    assert_greeted(&h, &caller, user, "signalwire").await;

    // Speech reaches the bot as text.
    ask_for_balance(&h, &caller).await;

    // Digits.
    caller.press("12#").await;
    let turns = h.wait_received(2, |r| r.kind == "text").await;
    assert_eq!(turns[1].val, "12");
    assert_eq!(turns[1].custom_data["inputMode"], "dtmf");

    // Barge-in clears SignalWire's playback.
    barge_in(&h, &caller, 3).await;

    // The bot hangs up: a LaML REST update of this call, after the goodbye played.
    let bye = json!({"text": "Goodbye!", "action": "hangup"});
    h.bot
        .push_override(is_text("8"), Reply::say(&[&bye.to_string()]));
    caller.press("8#").await;
    let update = api.wait_for_update(WAIT).await.expect("hang-up update");
    assert_eq!(update.call_sid, caller.options.call_sid);
    assert_eq!(update.status.as_deref(), Some("completed"));
    caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("stream ends");
    h.assert_closed_once(user).await;
    assert_eq!(api.violations(), Vec::<String>::new());

    // The caller hangs up: the stop ends the call, one closure.
    let user = "+15550007002";
    let caller = dial(&h, user, 8_000).await;
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// `<Stream codec="L16@16000h">`, with the fake engines: the greeting arrives as whole 20 ms
/// L16 frames at 16 kHz, and caller audio at 16 kHz is heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalwire_l16_16k_both_ways() {
    let h = Harness::start_with(|s| {
        enable(s);
        fake_engines(s);
    })
    .await;
    let user = "+15550007101";
    let caller = dial(&h, user, 16_000).await;
    let log = caller.log();
    assert_eq!(log.heard_rate, 16_000);
    assert!(log.media_frames > 20, "{log:?}");
    assert_eq!((log.odd_frames, log.invalid_messages), (0, 0));
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
async fn the_signalwire_signature_is_checked_on_the_upgrade() {
    let h = Harness::start_with(|s| {
        s.server.public_url = Some("https://voice.example.com".into());
        enable(s);
        signalwire(s).stream.signature_token = Some(SensitiveString::new("PSK-signing-key"));
        fake_engines(s);
    })
    .await;
    let url = h.route_url("/signalwire");
    let signed = "wss://voice.example.com/signalwire";
    for sig in [
        None,
        Some(signature::sign("wrong-key", signed)),
        Some(signature::sign(
            "PSK-signing-key",
            "https://voice.example.com/signalwire",
        )),
    ] {
        let mut opts = CallerOptions::signalwire(&url, "+15550007201", "+15550009999", 8_000);
        opts.signature = sig.clone();
        let err = SimCaller::connect(opts).await.err().expect("refused");
        assert!(err.contains("403"), "{sig:?}: {err}");
    }
    let mut opts = CallerOptions::signalwire(&url, "+15550007202", "+15550009999", 8_000);
    opts.signature = Some(signature::sign("PSK-signing-key", signed));
    let caller = SimCaller::connect(opts).await.unwrap();
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("accepted with the signature");
    caller.hang_up().await;
    h.assert_closed_once("+15550007202").await;
    h.finish().await;
}
