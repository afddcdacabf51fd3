//! The daemon as an operator runs it (issue #4): the real binary under systemd's protocol,
//! drained by signals with live calls, and a call placed with the `voxhook call` softphone
//! that is then found in the metrics, the call record and the recording.

use std::time::Duration;

use tokio::time::Instant;
use voxhook::sim::caller::{CallerOptions, SimCaller};
use voxhook::sim::kore::KoreSim;

use voxhook::bot::kore::auth::Claims;

use crate::support::{
    parse_metrics, rms, wait_until, write_config, Daemon, BOT_ID, CLIENT_ID, SECRET, WAIT,
};

async fn call(d: &Daemon, from: &str) -> SimCaller {
    let caller = SimCaller::connect(CallerOptions::new(&d.ws_url(), from, "+15550009999"))
        .await
        .unwrap();
    if let Err(log) = caller.wait_for(WAIT, |l| l.marks_played.len() == 1).await {
        panic!(
            "{from}: greeting not played to its mark ({} frames, closed: {}); daemon log:\n{:#?}",
            log.media_frames,
            log.closed,
            d.log_lines_all()
        );
    }
    caller
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_three_live_calls_and_exits_zero() {
    let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
    let grace = Duration::from_secs(4);
    let mut d = Daemon::spawn(&bot, grace.as_secs(), "").await;
    let users = ["+15550004001", "+15550004002", "+15550004003"];
    let mut callers = Vec::new();
    for u in users {
        callers.push(call(&d, u).await);
    }
    let notes = d.wait_note("WATCHDOG=1").await;
    assert!(notes.iter().any(|n| n.contains("READY=1")), "{notes:?}");

    let t0 = Instant::now();
    d.signal("TERM");
    d.wait_note("STOPPING=1").await;
    // Draining: not ready, and new calls are refused before the upgrade.
    let ready = reqwest::get(d.http_url("/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.text().await.unwrap(), "draining\n");
    match tokio_tungstenite::connect_async(d.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("a new call during the drain was not refused: {other:?}"),
    }
    // Live calls go on: keys become a turn, and a caller may still hang up normally.
    callers[0].press("1234#").await;
    wait_until("the turn", || {
        bot.received()
            .iter()
            .any(|r| r.user_id == users[0] && r.val == "1234")
    })
    .await;
    callers[1].hang_up().await;
    wait_until("the hung-up call's closure", || {
        bot.count_event(users[1], "SESSION_CLOSURE") == 1
    })
    .await;
    let hangup_closed = t0.elapsed();
    assert!(hangup_closed < grace, "closed at {hangup_closed:?}");

    // After the grace period the other two are ended, each bot session closed once.
    let code = d.exit_code().await;
    let exited = t0.elapsed();
    assert_eq!(code, Some(0));
    assert!(exited >= grace, "exited after {exited:?}");
    for u in users {
        assert_eq!(bot.count_event(u, "SESSION_CLOSURE"), 1, "{u}");
        assert_eq!(bot.count_event(u, "ON_CONNECT"), 1, "{u}");
    }
    assert!(callers[0].log().closed && callers[2].log().closed);
    let mut reasons: Vec<String> = d
        .log_lines("Call ended.")
        .iter()
        .map(|l| l["fields"]["reason"].as_str().unwrap().to_string())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["caller.hangup", "daemon.shutdown", "daemon.shutdown"]
    );
    assert_eq!(bot.violations(), Vec::<String>::new());
    eprintln!(
        "drain timings: grace {grace:?}; hang-up closed after {hangup_closed:?}; exit 0 after {exited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_live_calls_at_once_and_still_closes_them() {
    let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
    let mut d = Daemon::spawn(&bot, 120, "").await;
    let user = "+15550004101";
    let caller = call(&d, user).await;
    let t0 = Instant::now();
    d.signal("TERM");
    d.wait_note("STOPPING=1").await;
    d.signal("INT");
    let code = d.exit_code().await;
    let exited = t0.elapsed();
    assert_eq!(code, Some(0));
    // Far sooner than the 120 s grace period, and the session was still closed.
    assert!(exited < Duration::from_secs(30), "exited after {exited:?}");
    assert_eq!(bot.count_event(user, "SESSION_CLOSURE"), 1);
    assert!(caller.log().closed);
    eprintln!("second signal: exit 0 after {exited:?} (grace 120 s)");
}

#[tokio::test]
async fn token_prints_the_jwt_voxhook_would_send_and_nothing_else() {
    let dir = std::env::temp_dir().join(format!("voxhook-it-{}", uuid::Uuid::new_v4()));
    let (config, creds) = write_config(&dir, "http://127.0.0.1:9/chatbot/v2/webhook/st-x", 0, "");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxhook"))
        .args(["token", "--user", "+15550004301", "--config"])
        .arg(&config)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .env_remove("VOXHOOK__BOT__CLIENT_SECRET")
        .output()
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_required_spec_claims(&["exp", "iat"]);
    let claims = jsonwebtoken::decode::<Claims>(
        stdout.trim(),
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &v,
    )
    .unwrap()
    .claims;
    assert_eq!(claims.app_id, CLIENT_ID);
    assert_eq!(claims.user_identity.as_deref(), Some("+15550004301"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(SECRET));
}

/// `(name, type)` of every metric in README's metrics table.
fn documented_metrics() -> Vec<(String, String)> {
    let readme = include_str!("../../README.md");
    let section = readme.split("### Metrics").nth(1).unwrap();
    section
        .lines()
        .take_while(|l| !l.starts_with("###"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix("`voxhook_")?.strip_suffix('`')?;
            Some((format!("voxhook_{name}"), cells.get(2)?.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_daemon_exposes_every_documented_series_at_zero() {
    let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
    let d = Daemon::spawn(&bot, 0, "").await;
    let text = reqwest::get(d.http_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    eprintln!("fresh /metrics:\n{text}");
    let documented = documented_metrics();
    assert!(documented.len() >= 15, "{documented:?}");
    for (name, kind) in &documented {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "no TYPE {kind} for {name}"
        );
        let sample = if kind == "histogram" {
            format!("{name}_count")
        } else {
            name.clone()
        };
        // Routing starts up (1); every other series at 0.
        let fresh = if name == "voxhook_routing_up" {
            " 1"
        } else {
            " 0"
        };
        assert!(
            text.lines()
                .any(|l| l.starts_with(&sample) && l.ends_with(fresh)),
            "no fresh sample of {name}"
        );
    }
    let samples = parse_metrics(&text);
    for key in [
        r#"voxhook_calls_refused_total{reason="draining"}"#,
        r#"voxhook_calls_refused_total{reason="capacity"}"#,
        r#"voxhook_calls_refused_total{reason="signature"}"#,
        r#"voxhook_bot_callbacks_total{result="routed"}"#,
        r#"voxhook_bot_callbacks_total{result="forwarded"}"#,
        r#"voxhook_calls_refused_total{reason="routing"}"#,
        r#"voxhook_bot_callbacks_total{result="unroutable"}"#,
        r#"voxhook_bot_callbacks_total{result="rejected"}"#,
        r#"voxhook_bot_callbacks_total{result="malformed"}"#,
        r#"voxhook_calls_ended_total{reason="caller.hangup"}"#,
        r#"voxhook_calls_ended_total{reason="provider.protocol_error"}"#,
        r#"voxhook_turns_total{mode="speech"}"#,
        r#"voxhook_turns_total{mode="dtmf"}"#,
        r#"voxhook_bot_requests_total{endpoint="webhook",code="200"}"#,
        r#"voxhook_bot_requests_total{endpoint="poll",code="timeout"}"#,
        "voxhook_calls_live",
    ] {
        assert_eq!(samples.get(key), Some(&0.0), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_softphone_call_shows_in_metrics_call_record_and_recording() {
    let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
    let extra = r#"
[call_records]
output = "{dir}/calls.jsonl"
transcripts = true
[recording]
enabled = true
directory = "{dir}/recordings"
"#;
    let mut d = Daemon::spawn(&bot, 0, extra).await;
    let user = "+15550004201";
    let bot_wav = d.dir.join("bot.wav");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxhook"))
        .arg("call")
        .arg(d.ws_url())
        .args([
            "say:I would like to check my account balance.",
            "keys:1234#",
            "say:No, that is all, goodbye.",
            "--from",
            user,
            "--model",
        ])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ggml-tiny.en.bin"))
        .arg("--out")
        .arg(&bot_wav)
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("voxhook call printed:\n{printed}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The softphone heard the bot and drove the whole conversation.
    let lower = printed.to_lowercase();
    for heard in [
        "welcome",
        "pin",
        "balance of your checking account",
        "goodbye",
    ] {
        assert!(lower.contains(heard), "softphone did not print {heard:?}");
    }
    let turns: Vec<_> = bot
        .received()
        .into_iter()
        .filter(|r| r.user_id == user && r.kind == "text")
        .collect();
    assert_eq!(turns.len(), 3, "{turns:?}");
    assert!(turns[0].val.to_lowercase().contains("balance"));
    assert_eq!(turns[1].val, "1234");
    assert!(hound::WavReader::open(&bot_wav).unwrap().duration() > 8000 * 5);

    // The call record: one line, matching the call.
    let records = d.dir.join("calls.jsonl");
    wait_until("the call record", || records.exists()).await;
    let line = std::fs::read_to_string(&records).unwrap();
    assert_eq!(line.lines().count(), 1, "{line}");
    eprintln!("call record: {line}");
    let rec: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let call_sid = printed
        .split("(call ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap();
    assert_eq!(rec["call_id"], call_sid);
    assert_eq!(rec["user_id"], user);
    assert_eq!(rec["caller"], user);
    assert_eq!(rec["called"], "+15550002222");
    assert_eq!(rec["provider"], "twilio");
    assert_eq!(rec["end_reason"], "caller.hangup");
    assert_eq!(rec["session_closure"], "ok");
    let inputs: Vec<_> = rec["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["input"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, ["open", "speech", "dtmf", "speech"]);
    assert_eq!(rec["turns"][2]["text"], "1234");
    assert!(rec["turns"][0]["bot_said"][0]
        .as_str()
        .unwrap()
        .contains("Welcome"));
    for t in [1, 3] {
        let turn = &rec["turns"][t];
        assert!(turn["stt_ms"].as_u64().unwrap() > 0, "{turn}");
        let e2e = turn["end_of_speech_to_first_audio_ms"].as_u64().unwrap();
        assert!(
            e2e >= turn["end_of_speech_to_request_ms"].as_u64().unwrap(),
            "{turn}"
        );
    }
    assert!(rec["started_at"].as_str().unwrap().ends_with('Z'));

    // The recording: caller left, bot right, both audible, as long as the call.
    let wav = rec["recording"].as_str().unwrap();
    wait_until("the recording", || {
        !d.log_lines("Recording saved.").is_empty()
    })
    .await;
    let mut reader = hound::WavReader::open(wav).unwrap();
    assert_eq!(reader.spec().channels, 2);
    assert_eq!(reader.spec().sample_rate, 8000);
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    assert!(rms(&left) > 100.0 && rms(&right) > 100.0);
    let seconds = left.len() as f64 / 8000.0;
    let duration = rec["duration_ms"].as_f64().unwrap() / 1000.0;
    assert!(
        (seconds - duration).abs() < 2.0,
        "{seconds} s of {duration} s"
    );

    // Metrics count exactly this one call.
    let text = reqwest::get(d.http_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let m = parse_metrics(&text);
    let get = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("{k} missing:\n{text}"))
    };
    assert_eq!(get("voxhook_calls_started_total"), 1.0);
    assert_eq!(get("voxhook_calls_live"), 0.0);
    assert_eq!(
        get(r#"voxhook_calls_ended_total{reason="caller.hangup"}"#),
        1.0
    );
    assert_eq!(get(r#"voxhook_turns_total{mode="speech"}"#), 2.0);
    assert_eq!(get(r#"voxhook_turns_total{mode="dtmf"}"#), 1.0);
    let posts = bot.received().iter().filter(|r| r.user_id == user).count();
    assert_eq!(
        get(r#"voxhook_bot_requests_total{endpoint="webhook",code="200"}"#),
        posts as f64
    );
    assert!(get(r#"voxhook_bot_requests_total{endpoint="poll",code="200"}"#) >= 1.0);
    assert_eq!(get("voxhook_stt_duration_seconds_count"), 2.0);
    assert_eq!(get("voxhook_response_latency_seconds_count"), 2.0);
    assert!(get("voxhook_bot_reply_duration_seconds_count") >= 4.0);
    assert!(get(r#"voxhook_tts_first_audio_seconds_count{backend="flite"}"#) >= 5.0);
    assert!(
        !text.contains(call_sid) && !text.contains(user),
        "no call labels"
    );
    assert!(text.contains("# HELP voxhook_response_latency_seconds"));
    d.signal("TERM");
    assert_eq!(d.exit_code().await, Some(0));
}
