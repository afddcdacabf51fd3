//! One full call through the daemon, step by step, as issue #2 describes it.

use std::time::Duration;

use voxhook::stt::SttSettings;
use voxhook::tts::TtsSettings;

use crate::support::{rms, speech, transcribe, Harness, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_call_talks_to_the_bot_end_to_end() {
    let h = Harness::start().await;
    let caller = h.call_and_hear_greeting("+15550001111").await;
    let user = "+15550001111";

    // Greeting: ON_CONNECT with session.new and call metadata, answered with valid μ-law
    // 20 ms frames on our streamSid.
    let opened = h.wait_received(1, |r| r.val == "ON_CONNECT").await;
    assert!(opened[0].session_new);
    assert_eq!(opened[0].user_id, user);
    assert_eq!(
        opened[0].custom_data["callId"],
        caller.options.call_sid.as_str()
    );
    assert_eq!(opened[0].custom_data["caller"], user);
    assert_eq!(opened[0].custom_data["provider"], "twilio");
    let log = caller.log();
    assert!(log.media_frames > 50, "{log:?}");
    assert_eq!(
        (log.odd_frames, log.wrong_stream_sid, log.invalid_messages),
        (0, 0, 0)
    );
    assert!(rms(&log.heard) > 300.0, "greeting is not silence");
    // Paced: never more than the 200 ms lead (plus the frame in flight) queued at Twilio.
    assert!(
        log.max_queued_samples <= 8 * 240,
        "{} samples queued",
        log.max_queued_samples
    );
    assert!(
        log.max_queued_samples >= 8 * 100,
        "a lead is kept to absorb jitter"
    );
    let greeting = transcribe(&log.heard).await;
    assert!(greeting.contains("welcome"), "heard {greeting:?}");

    // The caller asks; the bot gets a text turn with the words, in speech mode.
    caller
        .say(speech("I would like to check my account balance.").await)
        .await;
    let turns = h.wait_received(1, |r| r.kind == "text").await;
    assert!(
        turns[0].val.to_lowercase().contains("balance"),
        "{:?}",
        turns[0].val
    );
    assert_eq!(turns[0].custom_data["inputMode"], "speech");
    assert!(turns[0].custom_data["sttConfidence"].as_f64().unwrap() > 0.3);

    // Its answer comes in two parts: one in the response, one through pollId polling.
    let log = caller
        .wait_for(WAIT, |l| l.marks_played.len() == 3)
        .await
        .expect("both parts of the answer played");
    let offset = |name: &str| log.mark_offsets.iter().find(|(n, _)| n == name).unwrap().1;
    let polled = transcribe(&log.heard[offset("vx-2")..offset("vx-3")]).await;
    assert!(
        polled.contains("pin") || polled.contains("hash"),
        "polled reply heard as {polled:?}"
    );

    // Keys: 1234# arrives as "1234" in DTMF mode.
    caller.press("1234#").await;
    let turns = h.wait_received(2, |r| r.kind == "text").await;
    assert_eq!(turns[1].val, "1234");
    assert_eq!(turns[1].custom_data["inputMode"], "dtmf");

    // Barge-in: talking over the (long) balance answer clears playback.
    caller
        .wait_for(WAIT, |l| l.queued_samples > 0 && l.marks_played.len() == 3)
        .await
        .expect("the answer starts playing");
    caller
        .say(speech("Actually, I want to speak to an agent.").await)
        .await;
    let log = caller
        .wait_for(WAIT, |l| l.clears >= 1)
        .await
        .expect("barge-in sends clear");
    assert!(
        !log.marks_played.contains(&"vx-4".to_string()),
        "the interrupted answer was not played out"
    );
    let turns = h.wait_received(3, |r| r.kind == "text").await;
    assert!(
        turns[2].val.to_lowercase().contains("agent"),
        "{:?}",
        turns[2].val
    );
    // The bot learns which of its messages the caller cut off.
    assert_eq!(turns[2].custom_data["bargeIn"], true);
    let cut = turns[2].custom_data["interruptedText"]
        .as_str()
        .unwrap_or_default();
    assert!(cut.contains("balance"), "{cut:?}");
    assert!(
        turns[1].custom_data.get("bargeIn").is_none(),
        "keys cut nothing"
    );

    // Hang-up: exactly one SESSION_CLOSURE.
    caller
        .wait_bot_quiet(Duration::from_millis(500), WAIT)
        .await
        .ok();
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digits_sent_before_start_are_kept() {
    use tokio_tungstenite::tungstenite::Message;
    use voxhook::sim::caller::{CallerOptions, SimCaller};

    let h = Harness::start().await;
    let mut opts = CallerOptions::new(&h.ws_url(), "+15550003333", "+15550009999");
    opts.send_start = false;
    let caller = SimCaller::connect(opts.clone()).await.unwrap();
    for d in ["4", "2", "#"] {
        let m = serde_json::json!({"event": "dtmf", "streamSid": opts.stream_sid,
            "dtmf": {"track": "inbound_track", "digit": d}});
        caller.send_raw(Message::Text(m.to_string().into())).await;
    }
    let start = serde_json::json!({"event": "start", "streamSid": opts.stream_sid,
        "start": {"streamSid": opts.stream_sid, "callSid": opts.call_sid, "tracks": ["inbound"],
            "customParameters": opts.parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}});
    caller
        .send_raw(Message::Text(start.to_string().into()))
        .await;
    let turns = h.wait_received(1, |r| r.kind == "text").await;
    assert_eq!(turns[0].val, "42");
    caller.hang_up().await;
    h.assert_closed_once("+15550003333").await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_calls_from_one_number_get_distinct_bot_users() {
    let h = Harness::start().await;
    let a = h.call_and_hear_greeting("+15550004444").await;
    let b = h.call_and_hear_greeting("+15550004444").await;
    let opens = h.wait_received(2, |r| r.val == "ON_CONNECT").await;
    assert_ne!(opens[0].user_id, opens[1].user_id);
    let second = format!("+15550004444-{}", b.options.call_sid);
    a.hang_up().await;
    b.hang_up().await;
    h.assert_closed_once("+15550004444").await;
    h.assert_closed_once(&second).await;
    h.finish().await;
}

/// The fake engines, chosen in config like any backend, carry a whole call: the VAD hears
/// the caller, the fake STT answers with its script, the fake TTS speaks each reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_engines_carry_a_call_selected_in_config() {
    let h = Harness::start_with(|s| {
        s.stt = SttSettings::from_toml(
            "stt",
            "provider = \"fake\"\ntranscripts = [\"I would like to check my account balance.\"]\nlatency_ms = 20",
        )
        .unwrap();
        s.tts = TtsSettings::from_toml("tts", "provider = \"fake\"\nms_per_char = 20").unwrap();
    })
    .await;
    let user = "+15550001212";
    let caller = h.call_and_hear_greeting(user).await;
    caller.say(speech("Hello, can you hear me?").await).await;
    caller.finish_speaking().await;
    let got = h
        .wait_received(1, |r| r.kind == "text" && r.user_id == user)
        .await;
    assert_eq!(got[0].val, "I would like to check my account balance.");
    caller
        .wait_for(WAIT, |l| l.marks_played.len() >= 2)
        .await
        .expect("the answer, as a tone");
    assert!(
        rms(&caller.log().heard) > 300.0,
        "the fake TTS tone was heard"
    );
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}
