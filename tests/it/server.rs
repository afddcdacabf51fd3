//! The listener: health routes, admission before the upgrade, Twilio signatures.

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;
use voxhook::config::SensitiveString;
use voxhook::telephony::twilio::signature;

use crate::support::Harness;

fn refused_status(e: WsError) -> u16 {
    match e {
        WsError::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_routes_answer() {
    let h = Harness::start().await;
    assert_eq!(
        reqwest::get(h.http_url("/live")).await.unwrap().status(),
        200
    );
    assert_eq!(
        reqwest::get(h.http_url("/ready")).await.unwrap().status(),
        200
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_limit_are_refused_before_the_upgrade() {
    let h = Harness::start_with(|s| s.server.max_concurrent_calls = 1).await;
    let first = h.call_and_hear_greeting("+15550005555").await;
    let err = tokio_tungstenite::connect_async(h.ws_url())
        .await
        .unwrap_err();
    assert_eq!(refused_status(err), 503);
    first.hang_up().await;
    h.assert_closed_once("+15550005555").await;
    // The slot is free again.
    let again = h.call_and_hear_greeting("+15550005556").await;
    again.hang_up().await;
    h.assert_closed_once("+15550005556").await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_signature_is_checked_on_the_wss_url() {
    let h = Harness::start_with(|s| {
        s.server.public_url = Some("wss://voice.example.com".into());
        crate::support::twilio(s).signature_token = Some(SensitiveString::new("auth-token-123"));
    })
    .await;
    let err = tokio_tungstenite::connect_async(h.ws_url())
        .await
        .unwrap_err();
    assert_eq!(refused_status(err), 403, "no signature");

    let mut req = h.ws_url().into_client_request().unwrap();
    let bad = signature::sign("auth-token-123", "https://voice.example.com/twilio");
    req.headers_mut()
        .insert("x-twilio-signature", bad.parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert_eq!(refused_status(err), 403, "signed over the https:// form");

    let mut req = h.ws_url().into_client_request().unwrap();
    let good = signature::sign("auth-token-123", "wss://voice.example.com/twilio");
    req.headers_mut()
        .insert("x-twilio-signature", good.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    drop(ws);
    h.finish().await;
}
