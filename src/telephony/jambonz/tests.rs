//! jambonz decode and encode against the wire examples in `tests/fixtures/jambonz/` (from the
//! `listen` verb's documentation).

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/jambonz/", $name)).trim()
    };
}

fn provider(out_rate: Option<u32>, auth: Option<(&str, &str)>) -> Jambonz {
    Jambonz {
        settings: config::JambonzSettings {
            enabled: true,
            route: "/jambonz".into(),
            bidirectional_sample_rate: out_rate,
            ws_auth: auth.map(|(u, p)| (u.to_string(), crate::config::SensitiveString::new(p))),
            max_message_bytes: 64 * 1024,
            max_early_media_frames: 2,
        },
    }
}

struct Proto(Codec, Vec<WireFrame>);

impl Proto {
    fn new(out_rate: Option<u32>) -> Self {
        Proto(provider(out_rate, None).codec(), Vec::new())
    }

    fn drain(&mut self, first: Option<InboundEvent>) -> Vec<InboundEvent> {
        let mut evs: Vec<InboundEvent> = first.into_iter().collect();
        while let Some(ev) = self.0.decoder.take_pending() {
            evs.push(ev);
        }
        for ev in &evs {
            if let InboundEvent::Start(s) = ev {
                self.0.encoder.started(s);
            }
        }
        evs
    }

    fn text(&mut self, t: &str) -> Result<Vec<InboundEvent>, ProtocolError> {
        let first = self.0.decoder.decode_text(t, &mut self.1)?;
        Ok(self.drain(first))
    }

    fn binary(&mut self, b: &[u8]) -> Result<Vec<InboundEvent>, ProtocolError> {
        let first = self.0.decoder.decode_binary(b, &mut self.1)?;
        Ok(self.drain(first))
    }

    fn encode(&mut self, cmd: &OutboundCommand) -> Vec<WireFrame> {
        let mut out = Vec::new();
        self.0.encoder.encode(cmd, &mut out);
        out
    }
}

fn json(t: &str) -> serde_json::Value {
    serde_json::from_str(t).unwrap()
}

#[test]
fn metadata_starts_the_call_with_numbers_and_custom_parameters() {
    let mut p = Proto::new(None);
    let evs = p.text(fixture!("metadata.json")).unwrap();
    let [InboundEvent::Start(s)] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    assert_eq!(s.call_id, "5b2a1c6e-3f0d-4b8e-9a61-7c2d9e0f1a23");
    assert_eq!(s.stream_id, s.call_id);
    assert_eq!(s.caller.as_deref(), Some("+15083084809"));
    assert_eq!(s.called.as_deref(), Some("+15083728299"));
    assert_eq!(s.custom["tenant"], "abc");
    assert_eq!(s.custom["priority"], "2");
    assert_eq!((s.inbound_rate, s.outbound_rate), (8_000, 8_000));
}

#[test]
fn binary_audio_is_little_endian_l16_and_comes_after_metadata_in_order() {
    let mut p = Proto::new(None);
    // Audio that beats the metadata frame is kept (at most max_early_media_frames).
    assert!(p.binary(&[1, 0, 2, 0]).unwrap().is_empty());
    let evs = p.text(fixture!("metadata.json")).unwrap();
    assert!(matches!(evs[0], InboundEvent::Start(_)));
    assert_eq!(evs[1], InboundEvent::Audio(vec![1, 2]));
    let evs = p.binary(&[0xff, 0x7f, 0x00, 0x80]).unwrap();
    assert_eq!(evs, [InboundEvent::Audio(vec![i16::MAX, i16::MIN])]);
    assert!(matches!(
        p.binary(&[1, 2, 3]),
        Err(ProtocolError::Malformed(_))
    ));
    let mut p = Proto::new(None);
    p.binary(&[0, 0]).unwrap();
    p.binary(&[0, 0]).unwrap();
    assert!(matches!(p.binary(&[0, 0]), Err(ProtocolError::NoStart(2))));
}

#[test]
fn dtmf_and_marks_either_way_are_events() {
    let mut p = Proto::new(None);
    p.text(fixture!("metadata.json")).unwrap();
    assert_eq!(
        p.text(fixture!("dtmf.json")).unwrap(),
        [InboundEvent::Dtmf('2')]
    );
    for f in [fixture!("mark_playout.json"), fixture!("mark_cleared.json")] {
        assert_eq!(p.text(f).unwrap(), [InboundEvent::Mark("my-mark-1".into())]);
    }
    assert!(p.text(r#"{"type":"playDone"}"#).unwrap().is_empty());
    assert!(matches!(
        p.text(r#"{"event":"dtmf","dtmf":"22"}"#),
        Err(ProtocolError::Malformed(_))
    ));
    assert!(matches!(
        p.text("not json"),
        Err(ProtocolError::Malformed(_))
    ));
}

#[test]
fn metadata_the_bot_cannot_take_ends_the_call() {
    let meta = json(fixture!("metadata.json"));
    for (key, value) in [
        ("mixType", serde_json::json!("stereo")),
        ("sampleRate", serde_json::json!(44_100)),
        ("callSid", serde_json::json!("")),
    ] {
        let mut m = meta.clone();
        m[key] = value;
        let err = Proto::new(None).text(&m.to_string()).unwrap_err();
        assert!(
            matches!(
                err,
                ProtocolError::UnsupportedFormat(_) | ProtocolError::Malformed(_)
            ),
            "{key}: {err}"
        );
    }
    let mut m = meta.clone();
    m["sampleRate"] = serde_json::json!("16000");
    let evs = Proto::new(None).text(&m.to_string()).unwrap();
    assert!(matches!(&evs[0], InboundEvent::Start(s) if s.inbound_rate == 16_000));
    assert!(Proto::new(None).text("{}").is_err());
}

#[test]
fn audio_goes_back_binary_at_the_bidirectional_rate_with_marks_and_kill_audio() {
    let mut p = Proto::new(Some(16_000));
    assert!(p.encode(&OutboundCommand::Audio(vec![1; 320])).is_empty());
    let evs = p.text(fixture!("metadata.json")).unwrap();
    assert!(matches!(&evs[0], InboundEvent::Start(s) if s.outbound_rate == 16_000));
    let out = p.encode(&OutboundCommand::Audio(vec![0x0102, -1]));
    assert_eq!(out, [WireFrame::Binary(vec![2, 1, 0xff, 0xff])]);
    let text = |f: &[WireFrame]| match f {
        [WireFrame::Text(t)] => json(t),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        text(&p.encode(&OutboundCommand::Mark("my-mark-1".into()))),
        json(fixture!("outbound_mark.json"))
    );
    assert_eq!(
        text(&p.encode(&OutboundCommand::Clear)),
        json(fixture!("outbound_killaudio.json"))
    );
}

#[test]
fn ws_auth_is_basic_auth_on_the_upgrade() {
    use base64::Engine as _;
    let p = provider(None, Some(("user", "pass")));
    let mut h = HeaderMap::new();
    assert_eq!(
        p.authenticate(&h, "/jambonz").unwrap_err().status,
        axum::http::StatusCode::UNAUTHORIZED
    );
    let good = base64::engine::general_purpose::STANDARD.encode("user:pass");
    h.insert("authorization", format!("Basic {good}").parse().unwrap());
    assert!(p.authenticate(&h, "/jambonz").is_ok());
    assert!(provider(None, None)
        .authenticate(&HeaderMap::new(), "/")
        .is_ok());
    assert_eq!(p.subprotocols()[0], "audio.jambonz.org");
}
