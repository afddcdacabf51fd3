//! Exotel decode and encode against the wire examples in `tests/fixtures/exotel/` (shapes
//! from Exotel's AgentStream WebSocket protocol page and AsyncAPI description).

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/exotel/", $name)).trim()
    };
}

fn provider(basic: Option<(&str, &str)>) -> Exotel {
    Exotel {
        settings: config::ExotelSettings {
            enabled: true,
            route: "/exotel".into(),
            basic_auth: basic.map(|(u, p)| (u.to_string(), crate::config::SensitiveString::new(p))),
            max_message_bytes: 64 * 1024,
            max_early_media_frames: 1,
        },
    }
}

struct Proto(Codec, Vec<WireFrame>);

impl Proto {
    fn new() -> Self {
        Proto(provider(None).codec(), Vec::new())
    }

    fn decode(&mut self, t: &str) -> Result<Vec<InboundEvent>, ProtocolError> {
        let first = self.0.decoder.decode_text(t, &mut self.1)?;
        let mut evs: Vec<InboundEvent> = first.into_iter().collect();
        while let Some(ev) = self.0.decoder.take_pending() {
            evs.push(ev);
        }
        for ev in &evs {
            if let InboundEvent::Start(s) = ev {
                self.0.encoder.started(s);
            }
        }
        Ok(evs)
    }

    fn encode(&mut self, cmd: &OutboundCommand) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        self.0.encoder.encode(cmd, &mut out);
        out.into_iter()
            .map(|f| match f {
                WireFrame::Text(t) => serde_json::from_str(&t).unwrap(),
                WireFrame::Binary(_) => panic!("binary frame"),
            })
            .collect()
    }
}

fn json(t: &str) -> serde_json::Value {
    serde_json::from_str(t).unwrap()
}

#[test]
fn the_documented_messages_decode() {
    let mut p = Proto::new();
    assert!(p.decode(fixture!("connected.json")).unwrap().is_empty());
    let evs = p.decode(fixture!("start.json")).unwrap();
    let [InboundEvent::Start(s)] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(s.call_id, "CA0d2a3bf6b1a0e1a4f6bd28ae8b3f4d99");
    assert_eq!(s.stream_id, "MZ18ad3ab5a668481ce02b83e7395059f0");
    assert_eq!(s.caller.as_deref(), Some("+919876543210"));
    assert_eq!(s.called.as_deref(), Some("+918012345678"));
    assert_eq!(s.custom["lang"], "en");
    assert_eq!((s.inbound_rate, s.outbound_rate), (8_000, 8_000));
    // PCM16 little-endian: 01 00 ff ff.
    assert_eq!(
        p.decode(fixture!("media.json")).unwrap(),
        [InboundEvent::Audio(vec![1, -1])]
    );
    assert_eq!(
        p.decode(fixture!("dtmf.json")).unwrap(),
        [InboundEvent::Dtmf('5')]
    );
    assert_eq!(
        p.decode(fixture!("mark.json")).unwrap(),
        [InboundEvent::Mark("vx-1".into())]
    );
    assert_eq!(
        p.decode(fixture!("stop.json")).unwrap(),
        [InboundEvent::Stop]
    );
    assert!(p.decode(r#"{"event":"somethingNew"}"#).unwrap().is_empty());
}

#[test]
fn media_before_start_is_kept_and_bad_input_is_an_error() {
    let mut p = Proto::new();
    assert!(p.decode(fixture!("media.json")).unwrap().is_empty());
    let evs = p.decode(fixture!("start.json")).unwrap();
    assert!(matches!(&evs[..], [InboundEvent::Start(_), InboundEvent::Audio(a)] if a == &[1, -1]));
    let mut p = Proto::new();
    p.decode(fixture!("media.json")).unwrap();
    assert!(matches!(
        p.decode(fixture!("media.json")),
        Err(ProtocolError::NoStart(1))
    ));
    for (from, to) in [
        (r#""sample_rate":"8000""#, r#""sample_rate":"11025""#),
        (r#""audio/x-raw""#, r#""audio/x-mulaw""#),
    ] {
        let bad = fixture!("start.json").replace(from, to);
        assert!(matches!(
            Proto::new().decode(&bad),
            Err(ProtocolError::UnsupportedFormat(_))
        ));
    }
    let wide = fixture!("start.json").replace(r#""sample_rate":"8000""#, r#""sample_rate":16000"#);
    let evs = Proto::new().decode(&wide).unwrap();
    assert!(matches!(&evs[..], [InboundEvent::Start(s)] if s.outbound_rate == 16_000));
    let mut p = Proto::new();
    p.decode(fixture!("start.json")).unwrap();
    let odd = fixture!("media.json").replace("AQD//w==", "AQD/");
    assert!(p.decode(&odd).is_err());
    let bad = fixture!("dtmf.json").replace(r#""5""#, r#""55""#);
    assert!(p.decode(&bad).is_err());
    assert!(p.decode("{").is_err());
}

#[test]
fn outbound_messages_match_the_documented_shapes() {
    let mut p = Proto::new();
    assert!(
        p.encode(&OutboundCommand::Clear).is_empty(),
        "nothing before start"
    );
    p.decode(fixture!("start.json")).unwrap();
    // Audio is held until a mark (or a full chunk): the mark follows the audio before it.
    assert!(p.encode(&OutboundCommand::Audio(vec![1, -1])).is_empty());
    assert_eq!(
        p.encode(&OutboundCommand::Mark("vx-1".into())),
        [
            json(fixture!("outbound_media.json")),
            json(fixture!("outbound_mark.json"))
        ]
    );
    // A clear drops what is held.
    assert!(p.encode(&OutboundCommand::Audio(vec![0; 160])).is_empty());
    assert_eq!(
        p.encode(&OutboundCommand::Clear),
        [json(fixture!("outbound_clear.json"))]
    );
    assert_eq!(p.encode(&OutboundCommand::Mark("vx-2".into())).len(), 1);
    // Ten 20 ms frames at 8 kHz make one chunk: 3200 bytes, Exotel's minimum.
    assert_eq!(
        (chunk_bytes(8_000), chunk_bytes(16_000), chunk_bytes(24_000)),
        (3_200, 3_200, 4_800)
    );
    let mut sent = Vec::new();
    for _ in 0..10 {
        sent.extend(p.encode(&OutboundCommand::Audio(vec![0; 160])));
    }
    assert_eq!(sent.len(), 1);
    let bytes = B64
        .decode(sent[0]["media"]["payload"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes.len(), 3_200);
}

#[test]
fn basic_auth_is_checked_when_configured() {
    let mut h = HeaderMap::new();
    assert!(provider(None).authenticate(&h, "/exotel").is_ok());
    let on = provider(Some(("KEY", "TOKEN")));
    assert_eq!(
        on.authenticate(&h, "/exotel").unwrap_err().status,
        axum::http::StatusCode::UNAUTHORIZED
    );
    h.insert(
        "authorization",
        format!("Basic {}", B64.encode("KEY:WRONG"))
            .parse()
            .unwrap(),
    );
    assert!(on.authenticate(&h, "/exotel").is_err());
    h.insert(
        "authorization",
        format!("Basic {}", B64.encode("KEY:TOKEN"))
            .parse()
            .unwrap(),
    );
    assert!(on.authenticate(&h, "/exotel").is_ok());
}
