//! smart-turn as the end of a turn (issue 16), end to end: the real daemon with
//! `[audio.smart_turn] enabled = true`, a simulated Twilio caller, whisper for the speech.
//! The fixed hangover is set to 10 s, and so is the model's "incomplete" one, so only the
//! model's "complete" verdict can end the caller's turn soon after they stop.

use std::time::Duration;

use voxhook::sim::kore::KoreSim;

use crate::support::{
    call_and_hear_greeting, root, speech, validate, write_config, Daemon, BOT_ID, CLIENT_ID,
    SECRET, WAIT,
};

fn smart_turn_config(model: &str) -> String {
    let models = root().join("models");
    format!(
        "[call]\nno_input_timeout_ms = 0\nfiller_delay_ms = 0\n\
         [audio]\nend_of_utterance_ms = 10000\ndigits_end_of_utterance_ms = 10000\n\
         [audio.smart_turn]\nenabled = true\nincomplete_ms = 10000\nmodel_path = \"{}\"\nlibrary_path = \"{}\"\n",
        models.join(model).display(),
        models.join("libonnxruntime.so.1.32.0").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_sentence_ends_the_turn_long_before_the_fixed_hangover() {
    let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
    let d = Daemon::spawn(&bot, 0, &smart_turn_config("smart-turn-v3.2-cpu.onnx")).await;
    let user = "+15550016101";
    let caller = call_and_hear_greeting(&d.ws_url(), user).await;
    let turns = || {
        bot.received()
            .into_iter()
            .filter(|r| r.kind == "text" && r.user_id == user)
            .collect::<Vec<_>>()
    };
    caller
        .say(speech("I would like to check my account balance.").await)
        .await;
    caller.finish_speaking().await;
    let stopped = tokio::time::Instant::now();
    let end = stopped + WAIT;
    while turns().is_empty() {
        assert!(tokio::time::Instant::now() < end, "no turn");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The 10 s hangover did not end it: the model did (plus whisper's decode).
    let waited = stopped.elapsed();
    assert!(waited < Duration::from_secs(8), "the turn took {waited:?}");
    assert!(
        turns()[0].val.to_lowercase().contains("balance"),
        "{:?}",
        turns()[0].val
    );
    let m = d.metrics().await;
    assert!(
        m["voxhook_smart_turn_decisions_total{result=\"complete\"}"] >= 1.0,
        "{:?}",
        m.iter()
            .filter(|(k, _)| k.contains("smart_turn"))
            .collect::<Vec<_>>()
    );
    for result in ["busy", "failed"] {
        assert_eq!(
            m[&format!("voxhook_smart_turn_decisions_total{{result=\"{result}\"}}")],
            0.0
        );
    }
    assert!(m["voxhook_smart_turn_cpu_seconds_count"] >= 1.0);
    caller.hang_up().await;
}

#[tokio::test]
async fn validate_names_a_missing_model_and_a_pause_past_the_hangover() {
    let dir = std::env::temp_dir().join(format!("voxhook-it-{}", uuid::Uuid::new_v4()));
    let url = "http://127.0.0.1:9/chatbot/v2/webhook/st-x";
    let check = |extra: String| {
        let (config, creds) = write_config(&dir, url, 0, &extra);
        async move { validate(&config, &creds).await }
    };
    let missing = check(smart_turn_config("no-such-turn.onnx")).await;
    let late = check(
        smart_turn_config("smart-turn-v3.2-cpu.onnx")
            .replace(
                "end_of_utterance_ms = 10000\n",
                "end_of_utterance_ms = 200\n",
            )
            .replace(
                "digits_end_of_utterance_ms = 10000",
                "digits_end_of_utterance_ms = 2000",
            ),
    )
    .await;
    let ok = check(smart_turn_config("smart-turn-v3.2-cpu.onnx")).await;
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("audio.smart_turn.model_path: ") && stderr.contains("no-such-turn.onnx"),
        "{stderr}"
    );
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert!(!late.status.success(), "{stderr}");
    assert!(
        stderr.contains("audio.smart_turn.pause_ms") && stderr.contains("end_of_utterance_ms"),
        "{stderr}"
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
