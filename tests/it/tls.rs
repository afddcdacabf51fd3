//! Native TLS on the listener (issue 13): the real daemon with `[server.tls]` serves `wss://`
//! calls and HTTPS; SIGHUP swaps in a renewed certificate for new connections while a live
//! call keeps its session; a broken file on reload keeps the certificate in use.

use std::sync::Arc;
use std::time::Duration;

use voxhook::sim::caller::{CallerOptions, SimCaller};
use voxhook::sim::kore::KoreSim;

use crate::support::{validate, Daemon, BOT_ID, CLIENT_ID, SECRET, WAIT};

/// A self-signed certificate for `localhost`: (certificate PEM, key PEM, certificate DER).
fn self_signed() -> (String, String, Vec<u8>) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    (
        c.cert.pem(),
        c.key_pair.serialize_pem(),
        c.cert.der().to_vec(),
    )
}

/// A rustls client that trusts exactly `ders`.
fn client_config(ders: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for d in ders {
        roots
            .add(rustls::pki_types::CertificateDer::from(d.to_vec()))
            .unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// The certificate the daemon serves to a new HTTPS connection (DER), checking `/live`.
async fn served_certificate(port: u16, trusted: &[&str]) -> Vec<u8> {
    let mut b = reqwest::Client::builder().use_rustls_tls().tls_info(true);
    for pem in trusted {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    let r = b
        .build()
        .unwrap()
        .get(format!("https://localhost:{port}/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("a peer certificate")
        .to_vec()
}

async fn wait_log(d: &Daemon, message: &str, n: usize) {
    let end = tokio::time::Instant::now() + WAIT;
    while d.log_lines(message).len() < n {
        assert!(tokio::time::Instant::now() < end, "no {message:?} log line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_calls_and_a_certificate_renewed_on_sighup_without_dropping_a_call() {
    let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
    let dir = std::env::temp_dir().join(format!("voxhook-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (a_pem, a_key, a_der) = self_signed();
    std::fs::write(&cert, &a_pem).unwrap();
    std::fs::write(&key, &a_key).unwrap();
    let extra = format!(
        "[server.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
        cert.display(),
        key.display()
    );
    // `[server.tls]` after `[server]`'s keys: TOML allows the sub-table anywhere.
    let d = Daemon::spawn(&bot, 0, &extra).await;
    let port = d.addr.port();
    assert_eq!(served_certificate(port, &[&a_pem]).await, a_der);

    // A call over wss:// with certificate A.
    let user = "+15550013301";
    let mut opts = CallerOptions::new(
        &format!("wss://localhost:{port}/twilio"),
        user,
        "+15550000000",
    );
    opts.tls = Some(client_config(&[&a_der]));
    let caller = SimCaller::connect(opts).await.expect("a wss call");
    caller
        .wait_bot_quiet(Duration::from_millis(300), WAIT)
        .await
        .expect("the greeting over TLS");

    // Renewed: B is served to new connections after SIGHUP.
    let (b_pem, b_key, b_der) = self_signed();
    std::fs::write(&cert, &b_pem).unwrap();
    std::fs::write(&key, &b_key).unwrap();
    d.signal("HUP");
    wait_log(&d, "TLS certificate reloaded.", 1).await;
    assert_eq!(served_certificate(port, &[&a_pem, &b_pem]).await, b_der);

    // A broken renewal is refused and B stays.
    std::fs::write(&key, "not a key").unwrap();
    d.signal("HUP");
    wait_log(
        &d,
        "TLS reload failed; the previous certificate stays in use.",
        1,
    )
    .await;
    assert_eq!(served_certificate(port, &[&a_pem, &b_pem]).await, b_der);
    // `voxhook validate` names the broken file.
    let out = validate(&d.dir.join("voxhook.toml"), &d.dir.join("credentials")).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("server.tls: ") && stderr.contains("key.pem: holds no PEM private key"),
        "{stderr}"
    );

    // The call from before the renewal talks on, on its session with A.
    let before = caller.log().media_frames;
    caller.press("1234#").await;
    caller
        .wait_for(WAIT, |l| l.media_frames > before)
        .await
        .expect("the bot answers the call that started under A");
    caller.hang_up().await;
    let end = tokio::time::Instant::now() + WAIT;
    while bot.count_event(user, "SESSION_CLOSURE") == 0 {
        assert!(tokio::time::Instant::now() < end, "no SESSION_CLOSURE");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(bot.count_event(user, "SESSION_CLOSURE"), 1);
    drop(d);
    std::fs::remove_dir_all(&dir).unwrap();
}
