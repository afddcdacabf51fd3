//! Secrets stay secret (issue 13): the real daemon, given a client secret (a systemd
//! credential), a media stream token and call records with transcripts, is driven through a
//! call, refused and accepted upgrades and a forged callback path; then everything it
//! emitted (log lines, `/metrics`, the call records) is searched for each secret. Every
//! other test that runs the real daemon makes the same search when its daemon is dropped
//! (`Daemon::leaked_secrets`), so a full test run covers every path the suite takes.

use tokio_tungstenite::tungstenite::Error as WsError;
use voxhook::sim::kore::KoreSim;

use crate::support::{Daemon, BOT_ID, CLIENT_ID, SECRET};

const STREAM_TOKEN: &str = "plivo-stream-token-4471";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_metrics_and_call_records() {
    let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
    let extra = format!(
        "[call_records]\noutput = \"{{dir}}/calls.jsonl\"\ntranscripts = true\n\
         [telephony.plivo]\nenabled = true\nstream_token = \"{STREAM_TOKEN}\"\n"
    );
    let d = Daemon::spawn(&bot, 0, &extra).await;

    // A call: the bot session is opened with a JWT signed by the client secret.
    let user = "+15550013201";
    let caller = crate::support::call_and_hear_greeting(&d.ws_url(), user).await;
    caller.hang_up().await;
    crate::support::wait_until("the call record", || d.dir.join("calls.jsonl").exists()).await;

    // Upgrades refused for a missing and a wrong token, and one accepted with the right one.
    let plivo = |q: &str| format!("ws://{}/plivo{q}", d.addr);
    for q in ["", "?token=not-the-token"] {
        match tokio_tungstenite::connect_async(plivo(q)).await {
            Err(WsError::Http(r)) => assert_eq!(r.status(), 403),
            other => panic!("{q}: {other:?}"),
        }
    }
    let (ws, _) = tokio_tungstenite::connect_async(plivo(&format!("?token={STREAM_TOKEN}")))
        .await
        .expect("the right token is let in");
    drop(ws);
    // A callback path guessed at (sync mode has no callback route at all).
    let forged = reqwest::Client::new()
        .post(d.http_url(&format!("/kore/callback/{SECRET}")))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 404);

    let metrics = d.metrics_text().await;
    for secret in [SECRET, STREAM_TOKEN] {
        assert!(!metrics.contains(secret), "/metrics holds a secret");
    }
    assert_eq!(d.leaked_secrets(), Vec::<(String, String)>::new());

    // The search finds a secret where there is one: a file the daemon's directory holds.
    let planted = d.dir.join("planted.jsonl");
    std::fs::write(&planted, format!("{{\"token\":\"{STREAM_TOKEN}\"}}\n")).unwrap();
    assert_eq!(
        d.leaked_secrets(),
        [(
            "planted.jsonl".to_string(),
            "telephony.plivo.stream_token".to_string()
        )]
    );
    std::fs::remove_file(&planted).unwrap();
}
