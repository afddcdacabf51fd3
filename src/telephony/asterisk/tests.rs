//! chan_websocket decode and encode against the wire examples in `tests/fixtures/asterisk/`
//! (shapes from Asterisk's "WebSocket" channel driver page and `chan_websocket.c`), in both
//! control formats.

use super::*;
use crate::telephony::testing::Proto;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/asterisk/", $name)).trim()
    };
}

fn provider(format: ControlFormat, max_held_frames: usize) -> Asterisk {
    let toml = format!(
        "enabled = true\nmax_early_media_frames = 2\nmax_held_frames = {max_held_frames}\n\
         control_format = \"{}\"",
        match format {
            ControlFormat::Json => "json",
            ControlFormat::PlainText => "plain-text",
        }
    );
    match crate::telephony::parse_section("asterisk", &toml).unwrap() {
        crate::telephony::ProviderSettings::Asterisk(settings) => Asterisk { settings },
        other => panic!("{other:?}"),
    }
}

fn proto(format: ControlFormat) -> Proto {
    Proto::new(provider(format, 1_000).codec())
}

fn json(t: &str) -> serde_json::Value {
    serde_json::from_str(t).unwrap()
}

#[test]
fn the_documented_json_messages_decode() {
    let mut p = proto(ControlFormat::Json);
    // μ-law before MEDIA_START is kept until the format is known.
    assert!(p.binary(&[0xff, 0x00]).unwrap().is_empty());
    let evs = p.text(fixture!("media_start.json")).unwrap();
    let [InboundEvent::Start(s), InboundEvent::Audio(early)] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(early, &[0, -32_124]);
    assert_eq!(s.call_id, "pbx1-123456789.999");
    assert_eq!(s.stream_id, "e226e283-c90a-4ea9-9e37-389000b9ef47");
    // Inherited (`__`) variables lose their underscores.
    assert_eq!(s.caller.as_deref(), Some("6001"));
    assert_eq!(s.called.as_deref(), Some("7000"));
    assert_eq!(s.custom["SOME_CHANNEL_VARIABLE"], "some value");
    assert_eq!((s.inbound_rate, s.outbound_rate), (8_000, 8_000));
    assert_eq!(
        p.text(fixture!("dtmf_end.json")).unwrap(),
        [InboundEvent::Dtmf('5')]
    );
    assert_eq!(
        p.text(fixture!("mark_processed.json")).unwrap(),
        [InboundEvent::Mark("vx-3".into())]
    );
    assert!(p.text(fixture!("xoff.json")).unwrap().is_empty());
    assert_eq!(p.0.decoder.take_flow(), Some(Flow::Pause));
    assert!(p.text(fixture!("xon.json")).unwrap().is_empty());
    assert_eq!(p.0.decoder.take_flow(), Some(Flow::Resume));
    assert_eq!(p.0.decoder.take_flow(), None);
    // Other events and Asterisk's errors are logged, never fatal.
    assert!(p
        .text(r#"{"event":"QUEUE_DRAINED","channel_id":"x"}"#)
        .unwrap()
        .is_empty());
    assert!(p
        .text(r#"{"event":"ERROR","channel_id":"x","error_text":"Unable to parse JSON command"}"#)
        .unwrap()
        .is_empty());
    assert!(p.1.is_empty(), "no protocol replies");
}

#[test]
fn the_documented_plain_text_messages_decode() {
    let mut p = proto(ControlFormat::PlainText);
    let evs = p.text(fixture!("media_start.txt")).unwrap();
    let [InboundEvent::Start(s)] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(s.call_id, "pbx1-123456789.999");
    assert_eq!((s.caller.as_deref(), s.custom.len()), (None, 0));
    assert_eq!((s.inbound_rate, s.outbound_rate), (16_000, 16_000));
    // slin16: 16-bit little-endian.
    assert_eq!(
        p.binary(&[1, 0, 0xff, 0xff]).unwrap(),
        [InboundEvent::Audio(vec![1, -1])]
    );
    assert_eq!(
        p.text(fixture!("dtmf_end.txt")).unwrap(),
        [InboundEvent::Dtmf('#')]
    );
    assert_eq!(
        p.text(fixture!("mark_processed.txt")).unwrap(),
        [InboundEvent::Mark("vx-3".into())]
    );
    assert!(p.text("MEDIA_XOFF").unwrap().is_empty());
    assert_eq!(p.0.decoder.take_flow(), Some(Flow::Pause));
    assert!(p.text(fixture!("status.txt")).unwrap().is_empty());
    // An older release without channel_id: the connection id names the call.
    let mut p = proto(ControlFormat::PlainText);
    let evs = p
        .text("MEDIA_START connection_id:c0ffee channel:WebSocket/c0ffee format:alaw optimal_frame_size:160")
        .unwrap();
    let [InboundEvent::Start(s)] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(s.call_id, "c0ffee");
    assert_eq!(p.binary(&[0xd5]).unwrap(), [InboundEvent::Audio(vec![8])]);
}

#[test]
fn bad_input_is_refused_clearly() {
    // The other control format than configured names the key to change.
    let e = proto(ControlFormat::Json)
        .text(fixture!("media_start.txt"))
        .unwrap_err();
    assert!(e.to_string().contains("control_format"), "{e}");
    let e = proto(ControlFormat::PlainText)
        .text(fixture!("media_start.json"))
        .unwrap_err();
    assert!(matches!(e, ProtocolError::UnsupportedFormat(_)), "{e}");
    for bad in [
        r#"{"event":"MEDIA_START","format":"opus","optimal_frame_size":80,"connection_id":"c"}"#,
        r#"{"event":"MEDIA_START","format":"slin16","optimal_frame_size":641,"connection_id":"c"}"#,
        r#"{"event":"MEDIA_START","format":"ulaw","optimal_frame_size":0,"connection_id":"c"}"#,
    ] {
        let e = proto(ControlFormat::Json).text(bad).unwrap_err();
        assert!(
            matches!(e, ProtocolError::UnsupportedFormat(_)),
            "{bad}: {e}"
        );
    }
    let mut p = proto(ControlFormat::Json);
    assert!(p
        .text(r#"{"event":"MEDIA_START","format":"ulaw"}"#)
        .is_err());
    assert!(p.text("{not json").is_err());
    assert!(p.text(r#"{"event":"DTMF_END","digit":"55"}"#).is_err());
    let mut p = proto(ControlFormat::PlainText);
    p.text(fixture!("media_start.txt")).unwrap();
    assert!(matches!(
        p.binary(&[1, 2, 3]),
        Err(ProtocolError::Malformed(_))
    ));
    assert!(
        p.text(fixture!("media_start.txt")).is_err(),
        "a second start"
    );
    let mut p = proto(ControlFormat::PlainText);
    p.binary(&[0; 160]).unwrap();
    p.binary(&[0; 160]).unwrap();
    assert!(matches!(
        p.binary(&[0; 160]),
        Err(ProtocolError::NoStart(2))
    ));
}

#[test]
fn media_goes_out_in_optimal_frames_and_marks_follow_it() {
    let mut p = proto(ControlFormat::Json);
    assert!(
        p.encode(&OutboundCommand::Audio(vec![0; 160])).is_empty(),
        "before start"
    );
    p.text(fixture!("media_start.json")).unwrap();
    // μ-law, 160 bytes a frame: 200 samples make one frame and keep 40.
    let out = p.encode(&OutboundCommand::Audio(vec![0; 200]));
    let [WireFrame::Binary(f)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!((f.len(), f[0]), (160, 0xff), "μ-law silence");
    let out = p.encode(&OutboundCommand::Mark("vx-3".into()));
    let [WireFrame::Binary(f), WireFrame::Text(t)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(f.len(), 160, "padded with silence");
    assert_eq!(json(t), json(fixture!("mark_media.json")));
    let out = p.encode(&OutboundCommand::Clear);
    assert_eq!(out, [WireFrame::Text(fixture!("flush_media.json").into())]);
    // Plain text: `MARK_MEDIA <id>`, `FLUSH_MEDIA`; slin16 frames of 640 bytes.
    let mut p = proto(ControlFormat::PlainText);
    p.text(fixture!("media_start.txt")).unwrap();
    let out = p.encode(&OutboundCommand::Audio(vec![0x0102; 320]));
    let [WireFrame::Binary(f)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!((f.len(), f[0], f[1]), (640, 2, 1));
    assert_eq!(
        p.encode(&OutboundCommand::Mark("vx-4".into())),
        [WireFrame::Text("MARK_MEDIA vx-4".into())]
    );
    assert_eq!(
        p.encode(&OutboundCommand::Clear),
        [WireFrame::Text("FLUSH_MEDIA".into())]
    );
}

#[test]
fn xoff_holds_media_and_marks_in_order_until_xon() {
    let mut p = Proto::new(provider(ControlFormat::Json, 3).codec());
    p.text(fixture!("media_start.json")).unwrap();
    p.text(fixture!("xoff.json")).unwrap();
    assert!(p.flow().is_empty());
    for n in 0..4 {
        assert!(
            p.encode(&OutboundCommand::Audio(vec![n; 160])).is_empty(),
            "held"
        );
    }
    assert!(p.encode(&OutboundCommand::Mark("vx-1".into())).is_empty());
    p.text(fixture!("xon.json")).unwrap();
    let out = p.flow();
    // At most three frames are held: the oldest went; the mark comes after the audio.
    let firsts: Vec<_> = out
        .iter()
        .map(|f| match f {
            WireFrame::Binary(b) => format!("audio {}", b[0]),
            WireFrame::Text(t) => t.clone(),
        })
        .collect();
    let ulaw = |n: i16| {
        let mut b = Vec::new();
        G711::Mulaw.encode_into(&[n], &mut b);
        format!("audio {}", b[0])
    };
    assert_eq!(
        firsts,
        [
            ulaw(1),
            ulaw(2),
            ulaw(3),
            r#"{"command":"MARK_MEDIA","correlation_id":"vx-1"}"#.into()
        ]
    );
    // Flowing again: straight out.
    assert_eq!(p.encode(&OutboundCommand::Audio(vec![0; 160])).len(), 1);
    // A clear while paused drops what is held and is sent at once.
    p.text(fixture!("xoff.json")).unwrap();
    p.flow();
    p.encode(&OutboundCommand::Audio(vec![0; 160]));
    assert_eq!(p.encode(&OutboundCommand::Clear).len(), 1);
    p.text(fixture!("xon.json")).unwrap();
    assert!(p.flow().is_empty());
}

#[test]
fn basic_auth_and_the_media_subprotocol() {
    let mut a = provider(ControlFormat::Json, 10);
    assert_eq!(a.subprotocols(), ["media"]);
    assert!(a.authenticate(&HeaderMap::new(), "/asterisk").is_ok());
    a.settings.basic_auth = Some(("ast".into(), crate::config::SensitiveString::new("pw")));
    let mut h = HeaderMap::new();
    assert_eq!(
        a.authenticate(&h, "/asterisk").unwrap_err().status,
        axum::http::StatusCode::UNAUTHORIZED
    );
    h.insert("authorization", "Basic YXN0OnB3".parse().unwrap());
    assert!(a.authenticate(&h, "/asterisk").is_ok());
}
