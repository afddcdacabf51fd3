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

/// Reads until the server closes `s` (or `within` passes); true when it closed.
async fn closed_within(s: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

/// Slowloris: a client that never finishes its request head (or sends nothing at all) is
/// dropped after `header_timeout_ms`, and while it hangs on it holds no admission permit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_dropped_and_holds_no_permit() {
    use tokio::io::AsyncWriteExt as _;
    let h = Harness::start_with(|s| {
        s.server.max_concurrent_calls = 1;
        s.server.conn_limits.header_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    let mut partial = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    partial
        .write_all(b"GET /twilio HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    // The one admission permit is still free for a real call.
    let call = h.call_and_hear_greeting("+15550013001").await;
    call.hang_up().await;
    h.assert_closed_once("+15550013001").await;
    let limit = std::time::Duration::from_secs(10);
    assert!(
        closed_within(&mut partial, limit).await,
        "half a head kept the connection"
    );
    assert!(
        closed_within(&mut silent, limit).await,
        "silence kept the connection"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_is_refused_with_431() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let h = Harness::start_with(|s| s.server.conn_limits.max_header_bytes = 4_096).await;
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "GET /live HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(8_000)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_end(&mut reply),
    )
    .await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    // A head within the limit is served.
    assert_eq!(
        reqwest::get(h.http_url("/live")).await.unwrap().status(),
        200
    );
    h.finish().await;
}

/// One address may hold `max_pending_per_ip` connections that are not calls; more are
/// closed at once. A call frees its slot when it upgrades, so a carrier's many calls from
/// one address are never limited by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_than_its_pending_connections() {
    let h = Harness::start_with(|s| s.server.conn_limits.max_pending_per_ip = 2).await;
    let calls = [
        h.call_and_hear_greeting("+15550013101").await,
        h.call_and_hear_greeting("+15550013102").await,
        h.call_and_hear_greeting("+15550013103").await,
    ];
    let idle = [
        tokio::net::TcpStream::connect(h.addr).await.unwrap(),
        tokio::net::TcpStream::connect(h.addr).await.unwrap(),
    ];
    let mut third = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    assert!(
        closed_within(&mut third, std::time::Duration::from_secs(5)).await,
        "a third pending connection was kept"
    );
    drop(idle);
    // The slots are free again once the idle connections are gone.
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while reqwest::get(h.http_url("/live")).await.is_err() {
        assert!(
            tokio::time::Instant::now() < end,
            "the slots never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for (c, user) in calls
        .into_iter()
        .zip(["+15550013101", "+15550013102", "+15550013103"])
    {
        c.hang_up().await;
        h.assert_closed_once(user).await;
    }
    h.finish().await;
}

#[tokio::test]
async fn validate_warns_of_open_media_routes_and_world_readable_secrets() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("voxhook-it-{}", uuid::Uuid::new_v4()));
    let (config, creds) =
        crate::support::write_config(&dir, "http://127.0.0.1:9/chatbot/v2/webhook/st-x", 0, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let exposed = text
        .replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"")
        .replace(
            "poll_interval_ms = 100",
            "poll_interval_ms = 100\nclient_secret = \"in-the-file-123\"",
        );
    std::fs::write(&config, &exposed).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = crate::support::validate(&config, &creds).await;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&config, exposed.replace("0.0.0.0:0", "127.0.0.1:0")).unwrap();
    let closed = crate::support::validate(&config, &creds).await;
    std::fs::remove_dir_all(&dir).unwrap();

    let out = String::from_utf8_lossy(&open.stdout);
    assert!(open.status.success(), "{out}");
    assert!(
        out.contains("warning: telephony.twilio: the media route /twilio on 0.0.0.0:0 takes calls from anyone"),
        "{out}"
    );
    assert!(
        out.contains("(mode 644) and holds bot.client_secret"),
        "{out}"
    );
    assert!(!out.contains("in-the-file-123"), "{out}");
    let out = String::from_utf8_lossy(&closed.stdout);
    assert!(closed.status.success(), "{out}");
    assert!(!out.contains("warning"), "{out}");
}
