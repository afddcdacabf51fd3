//! Vonage decode and encode against the wire examples in `tests/fixtures/vonage/` (shapes
//! from Vonage's "WebSockets" guide and the NCCO reference), and the Voice API client against
//! the local fake.

use super::*;
use crate::telephony::testing::Proto;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/vonage/", $name)).trim()
    };
}

fn settings() -> config::VonageSettings {
    crate::telephony::parse_section("vonage", "enabled = true\nmax_early_media_frames = 2")
        .map(|s| match s {
            crate::telephony::ProviderSettings::Vonage(v) => v,
            other => panic!("{other:?}"),
        })
        .unwrap()
}

fn provider(token: Option<&str>) -> Vonage {
    let mut settings = settings();
    settings.stream_token = token.map(crate::config::SensitiveString::new);
    Vonage {
        settings,
        control: None,
    }
}

fn proto() -> Proto {
    Proto::new(provider(None).codec())
}

fn json(t: &str) -> serde_json::Value {
    serde_json::from_str(t).unwrap()
}

#[test]
fn the_documented_messages_decode() {
    let mut p = proto();
    // Audio may come before the first text message; it is kept until the rate is known.
    assert!(p.binary(&[1, 0, 0xff, 0xff]).unwrap().is_empty());
    let evs = p.text(fixture!("connected.json")).unwrap();
    let [InboundEvent::Start(s), InboundEvent::Audio(early)] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(early, &[1, -1]);
    assert_eq!(s.call_id, "aaaaaaaa-bbbb-cccc-dddd-0123456789ab");
    assert_eq!(s.caller.as_deref(), Some("447700900001"));
    assert_eq!(s.called.as_deref(), Some("447700900000"));
    // Every header is a custom parameter; JSON values keep their JSON text.
    assert_eq!(s.custom["language"], "en-GB");
    assert_eq!(s.custom["account"], r#"{"tier":"gold"}"#);
    assert!(!s.custom.contains_key("content-type") && !s.custom.contains_key("event"));
    assert_eq!((s.inbound_rate, s.outbound_rate), (16_000, 16_000));
    assert_eq!(
        p.binary(&[2, 0, 0, 0x80]).unwrap(),
        [InboundEvent::Audio(vec![2, i16::MIN])]
    );
    assert_eq!(
        p.text(fixture!("dtmf.json")).unwrap(),
        [InboundEvent::Dtmf('5')]
    );
    assert_eq!(
        p.text(r##"{"event":"websocket:dtmf","dtmf":{"digit":"#","duration":100}}"##)
            .unwrap(),
        [InboundEvent::Dtmf('#')]
    );
    assert_eq!(
        p.text(fixture!("notify.json")).unwrap(),
        [InboundEvent::Mark("vx-3".into())]
    );
    assert!(p.text(fixture!("cleared.json")).unwrap().is_empty());
    // Unknown events and other notify payloads are ignored, not fatal.
    assert!(p
        .text(r#"{"event":"websocket:media:update"}"#)
        .unwrap()
        .is_empty());
    assert!(p
        .text(r#"{"event":"websocket:notify","payload":{"other":1}}"#)
        .unwrap()
        .is_empty());
    assert!(p.1.is_empty(), "no protocol replies");
}

#[test]
fn rates_and_bad_input_are_refused_clearly() {
    for (ct, rate) in [
        ("audio/l16;rate=8000", Some(8_000)),
        ("audio/L16; rate=24000", Some(24_000)),
        ("audio/l16;rate=44100", None),
        ("audio/pcmu;rate=8000", None),
        ("audio/l16", None),
    ] {
        assert_eq!(content_type_rate(ct), rate, "{ct}");
    }
    let mut p = proto();
    let e = p
        .text(
            r#"{"event":"websocket:connected","content-type":"audio/l16;rate=44100","uuid":"ab"}"#,
        )
        .unwrap_err();
    assert!(matches!(e, ProtocolError::UnsupportedFormat(_)), "{e}");
    let e = proto()
        .text(r#"{"event":"websocket:connected","content-type":"audio/l16;rate=8000"}"#)
        .unwrap_err();
    assert!(e.to_string().contains("`uuid` header"), "{e}");
    let mut p = proto();
    p.text(fixture!("connected.json")).unwrap();
    assert!(matches!(
        p.binary(&[1, 2, 3]),
        Err(ProtocolError::Malformed(_))
    ));
    assert!(
        p.text(fixture!("connected.json")).is_err(),
        "a second connected"
    );
    assert!(p.text("not json").is_err());
    assert!(p
        .text(r#"{"event":"websocket:dtmf","digit":"55"}"#)
        .is_err());
    // Too much audio before connected.
    let mut p = proto();
    p.binary(&[0; 640]).unwrap();
    p.binary(&[0; 640]).unwrap();
    assert!(matches!(
        p.binary(&[0; 640]),
        Err(ProtocolError::NoStart(2))
    ));
}

#[test]
fn audio_goes_out_in_whole_20ms_frames_and_marks_as_notify() {
    let mut p = proto();
    assert!(
        p.encode(&OutboundCommand::Audio(vec![1; 320])).is_empty(),
        "before start"
    );
    p.text(fixture!("connected.json")).unwrap();
    // 16 kHz: 320 samples = one 640-byte frame.
    let out = p.encode(&OutboundCommand::Audio(vec![0x0102; 320]));
    let [WireFrame::Binary(f)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!((f.len(), f[0], f[1]), (640, 2, 1), "little-endian");
    // A short piece waits for the rest of its frame, and a mark pads it with silence.
    assert!(p.encode(&OutboundCommand::Audio(vec![7; 100])).is_empty());
    let out = p.encode(&OutboundCommand::Mark("vx-3".into()));
    let [WireFrame::Binary(f), WireFrame::Text(t)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(f.len(), 640);
    assert_eq!((f[0], f[198], f[199], f[200]), (7, 7, 0, 0));
    assert_eq!(json(t), json(fixture!("out_notify.json")));
    // Clear drops what is held and tells Vonage to flush.
    assert!(p.encode(&OutboundCommand::Audio(vec![7; 100])).is_empty());
    let out = p.encode(&OutboundCommand::Clear);
    assert_eq!(out, [WireFrame::Text(fixture!("out_clear.json").into())]);
    assert!(p.encode(&OutboundCommand::Mark("m".into()))[..1]
        .iter()
        .all(|f| matches!(f, WireFrame::Text(_))));
}

#[test]
fn the_readme_ncco_matches_what_the_decoder_reads() {
    let ncco = json(fixture!("ncco.json"));
    let endpoint = &ncco[0]["endpoint"][0];
    assert_eq!(endpoint["type"], "websocket");
    let ct = endpoint["content-type"].as_str().unwrap();
    assert_eq!(content_type_rate(ct), Some(16_000));
    let s = settings();
    for key in [&s.call_id_header, &s.caller_header, &s.called_header] {
        assert!(endpoint["headers"][key.as_str()].is_string(), "{key}");
    }
    let uri = endpoint["uri"].as_str().unwrap();
    let path = uri.trim_start_matches("wss://voxhook.example.com");
    assert!(provider(Some("STREAM_TOKEN"))
        .authenticate(&HeaderMap::new(), path)
        .is_ok());
}

#[test]
fn the_pacer_never_fills_vonages_buffer() {
    // `audio.playback_lead_ms` is at most 5000: that many 20 ms frames stay queued at most.
    const { assert!(5_000 / 20 < PLAYBACK_BUFFER_MESSAGES) };
}

#[test]
fn the_stream_token_rides_in_the_uri() {
    let p = provider(Some("s3cret"));
    let h = HeaderMap::new();
    assert!(p.authenticate(&h, "/vonage?token=s3cret").is_ok());
    for bad in ["/vonage", "/vonage?token=nope", "/vonage?tokens3cret"] {
        let r = p.authenticate(&h, bad).unwrap_err();
        assert_eq!(r.status, axum::http::StatusCode::FORBIDDEN, "{bad}");
    }
    assert!(provider(None).authenticate(&h, "/vonage").is_ok());
}

#[cfg(feature = "sim")]
mod rest {
    use std::time::Duration;

    use crate::config::SensitiveString;
    use crate::sim::vonage_api::{VonageApiSim, TEST_APPLICATION_ID};
    use crate::telephony::control::{CallControl, ControlError};
    use crate::telephony::vonage::config::VonageRestSettings;
    use crate::telephony::vonage::rest::VonageRest;

    const CALL: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";

    fn client(sim: &VonageApiSim, app: &str) -> VonageRest {
        VonageRest::new(&VonageRestSettings {
            api_base_url: sim.base_url(),
            application_id: app.into(),
            private_key: SensitiveString::new(include_str!(
                "../../../tests/fixtures/vonage/test_private_key.pem"
            )),
            timeout: Duration::from_secs(2),
            transfer_from: Some("447700900000".into()),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn hang_up_and_transfer_put_the_call_with_a_signed_token() {
        let sim = VonageApiSim::start().await.unwrap();
        let c = client(&sim, TEST_APPLICATION_ID);
        c.transfer(CALL, "+447700900123").await.unwrap();
        c.transfer(CALL, "sip:desk@pbx.example.com").await.unwrap();
        c.hang_up(CALL).await.unwrap();
        let got: Vec<_> = sim
            .commands()
            .into_iter()
            .map(|c| (c.call_uuid, c.action, c.endpoint))
            .collect();
        assert_eq!(
            got,
            [
                (
                    CALL.into(),
                    "transfer".into(),
                    Some(serde_json::json!({"type": "phone", "number": "447700900123"}))
                ),
                (
                    CALL.into(),
                    "transfer".into(),
                    Some(serde_json::json!({"type": "sip", "uri": "sip:desk@pbx.example.com"}))
                ),
                (CALL.into(), "hangup".into(), None),
            ]
        );
        // Ended: Vonage answers 404, which is what a hang-up wanted (a transfer fails).
        c.hang_up(CALL).await.unwrap();
        let e = c.transfer(CALL, "+447700900123").await.unwrap_err();
        assert!(
            matches!(e, ControlError::Rejected { status: 404, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("Not Found"), "{e}");
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[tokio::test]
    async fn a_token_for_another_application_is_refused_and_not_retried() {
        let sim = VonageApiSim::start().await.unwrap();
        let e = client(&sim, "00000000-0000-0000-0000-000000000000")
            .hang_up(CALL)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ControlError::Rejected { status: 401, .. }),
            "{e}"
        );
        assert_eq!(sim.request_count(), 1);
        sim.fail_next(503);
        client(&sim, TEST_APPLICATION_ID)
            .hang_up(CALL)
            .await
            .unwrap();
        assert_eq!(sim.request_count(), 3);
    }

    #[tokio::test]
    async fn bad_ids_targets_and_keys_send_nothing() {
        let sim = VonageApiSim::start().await.unwrap();
        let c = client(&sim, TEST_APPLICATION_ID);
        for bad in ["", "aaaa/../x", "aaaa bbbb", "aaaa?x=1"] {
            assert_eq!(
                c.hang_up(bad).await.unwrap_err().code(),
                "control.invalid_call_id"
            );
        }
        assert_eq!(
            c.transfer(CALL, "447700900123").await.unwrap_err().code(),
            "control.invalid_target"
        );
        assert_eq!(sim.request_count(), 0);
        let e = VonageRest::new(&VonageRestSettings {
            api_base_url: sim.base_url(),
            application_id: TEST_APPLICATION_ID.into(),
            private_key: SensitiveString::new(
                "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----",
            ),
            timeout: Duration::from_secs(2),
            transfer_from: None,
        })
        .err()
        .expect("bad key");
        assert_eq!(e.code(), "control.config");
        assert!(!e.to_string().contains("not a key"));
    }
}
