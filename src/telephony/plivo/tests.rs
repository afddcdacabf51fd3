//! Plivo decode and encode against the wire examples in `tests/fixtures/plivo/`.

use super::config::PlivoSettings;
use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/plivo/", $name)).trim()
    };
}

const STREAM: &str = "20170ada-f610-433b-8758-c02a2aab3662";

fn settings(toml: &str) -> PlivoSettings {
    let toml = format!("provider = \"plivo\"\n{toml}");
    match crate::telephony::ProviderSettings::from_toml("telephony.plivo", &toml).unwrap() {
        crate::telephony::ProviderSettings::Plivo(p) => p,
        other => panic!("{other:?}"),
    }
}

/// Both halves, wired as `telephony::ws` wires them (pending events drained after each frame).
struct Proto(Codec, Vec<WireFrame>);

impl Proto {
    fn new(toml: &str) -> Self {
        Proto(codec(&settings(toml)), Vec::new())
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

    fn encode(&mut self, cmd: &OutboundCommand) -> Vec<String> {
        let mut out = Vec::new();
        self.0.encoder.encode(cmd, &mut out);
        out.into_iter()
            .map(|f| match f {
                WireFrame::Text(t) => t,
                WireFrame::Binary(_) => panic!("binary frame"),
            })
            .collect()
    }
}

fn json(t: &str) -> serde_json::Value {
    serde_json::from_str(t).unwrap()
}

#[test]
fn the_start_carries_numbers_and_extra_headers() {
    let mut p = Proto::new("");
    let evs = p.decode(fixture!("start.json")).unwrap();
    let [InboundEvent::Start(s)] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(s.call_id, "1ed7fd89-df77-4ebf-8196-d5cf7222c918");
    assert_eq!(s.stream_id, STREAM);
    assert_eq!(s.caller.as_deref(), Some("15550001111"));
    assert_eq!(s.called.as_deref(), Some("15550009999"));
    assert_eq!(s.custom["userId"], "12345");
    assert_eq!((s.inbound_rate, s.outbound_rate), (8_000, 8_000));
    assert_eq!(
        parse_extra_headers("a=1,b=2;c = 3,=x,junk"),
        BTreeMap::from([
            ("a".into(), "1".into()),
            ("b".into(), "2".into()),
            ("c".into(), "3".into())
        ])
    );
}

#[test]
fn l16_media_decodes_little_endian_by_default_and_big_when_configured() {
    let mut p = Proto::new("");
    p.decode(fixture!("start.json")).unwrap();
    // Payload bytes 01 00 ff ff.
    assert_eq!(
        p.decode(fixture!("media.json")).unwrap(),
        [InboundEvent::Audio(vec![1, -1])]
    );
    let mut p = Proto::new("l16_byte_order = \"big\"");
    p.decode(fixture!("start.json")).unwrap();
    assert_eq!(
        p.decode(fixture!("media.json")).unwrap(),
        [InboundEvent::Audio(vec![256, -1])]
    );
}

#[test]
fn media_before_start_is_kept_and_bounded() {
    let mut p = Proto::new("max_early_media_frames = 2");
    assert!(p.decode(fixture!("media.json")).unwrap().is_empty());
    let evs = p.decode(fixture!("start.json")).unwrap();
    assert!(matches!(&evs[..], [InboundEvent::Start(_), InboundEvent::Audio(a)] if a == &[1, -1]));

    let mut p = Proto::new("max_early_media_frames = 1");
    p.decode(fixture!("media.json")).unwrap();
    assert!(matches!(
        p.decode(fixture!("media.json")),
        Err(ProtocolError::NoStart(1))
    ));
}

#[test]
fn mulaw_and_16k_starts_and_unsupported_formats() {
    let mut p = Proto::new("");
    let start = fixture!("start.json").replace(
        r#""encoding":"audio/x-l16","sampleRate":8000"#,
        r#""encoding":"audio/x-mulaw","sampleRate":8000"#,
    );
    p.decode(&start).unwrap();
    let mut mulaw = Vec::new();
    crate::audio::codec::Codec::Mulaw.decode_into(&[1, 0, 255, 255], &mut mulaw);
    assert_eq!(
        p.decode(fixture!("media.json")).unwrap(),
        [InboundEvent::Audio(mulaw)]
    );
    let mut p = Proto::new("content_type = \"audio/x-l16;rate=16000\"");
    let start = fixture!("start.json").replace("\"sampleRate\":8000", "\"sampleRate\":16000");
    let evs = p.decode(&start).unwrap();
    let [InboundEvent::Start(s)] = &evs[..] else {
        panic!()
    };
    assert_eq!((s.inbound_rate, s.outbound_rate), (16_000, 16_000));
    let bad = fixture!("start.json").replace("\"sampleRate\":8000", "\"sampleRate\":24000");
    assert!(matches!(
        Proto::new("").decode(&bad),
        Err(ProtocolError::UnsupportedFormat(_))
    ));
}

#[test]
fn digits_checkpoints_and_clears() {
    let mut p = Proto::new("");
    p.decode(fixture!("start.json")).unwrap();
    assert_eq!(
        p.decode(fixture!("dtmf.json")).unwrap(),
        [InboundEvent::Dtmf('5')]
    );
    assert_eq!(
        p.decode(fixture!("played_stream.json")).unwrap(),
        [InboundEvent::Mark("vx-1".into())]
    );
    let played = fixture!("played_stream.json").replace("playedStream", "played");
    assert_eq!(
        p.decode(&played).unwrap(),
        [InboundEvent::Mark("vx-1".into())]
    );
    let primer = fixture!("played_stream.json").replace("vx-1", PRIMER_CHECKPOINT);
    assert!(p.decode(&primer).unwrap().is_empty());
    assert!(p.decode(fixture!("cleared_audio.json")).unwrap().is_empty());
    assert_eq!(
        p.decode(r#"{"event":"stop"}"#).unwrap(),
        [InboundEvent::Stop]
    );
    assert!(p.decode(r#"{"event":"somethingNew"}"#).unwrap().is_empty());
    let bad = fixture!("dtmf.json").replace("\"5\"", "\"55\"");
    assert!(matches!(p.decode(&bad), Err(ProtocolError::Malformed(_))));
    assert!(p.decode("{not json").is_err());
}

#[test]
fn outbound_messages_match_the_documented_shapes() {
    let mut p = Proto::new("");
    assert!(
        p.encode(&OutboundCommand::Audio(vec![1, -1])).is_empty(),
        "nothing before start"
    );
    p.decode(fixture!("start.json")).unwrap();
    let audio = p.encode(&OutboundCommand::Audio(vec![1, -1]));
    assert_eq!(json(&audio[0]), json(fixture!("outbound_play_audio.json")));
    // The first mark is preceded by the primer; later ones are not.
    let marks = p.encode(&OutboundCommand::Mark("vx-1".into()));
    assert_eq!(marks.len(), 2);
    assert_eq!(json(&marks[0])["name"], PRIMER_CHECKPOINT);
    assert_eq!(json(&marks[1]), json(fixture!("outbound_checkpoint.json")));
    assert_eq!(p.encode(&OutboundCommand::Mark("vx-2".into())).len(), 1);
    let clear = p.encode(&OutboundCommand::Clear);
    assert_eq!(json(&clear[0]), json(fixture!("outbound_clear_audio.json")));

    let mut p = Proto::new("content_type = \"audio/x-mulaw;rate=8000\"");
    p.decode(fixture!("start.json")).unwrap();
    let v = json(&p.encode(&OutboundCommand::Audio(vec![0; 160]))[0]);
    assert_eq!(v["media"]["contentType"], "audio/x-mulaw");
    assert_eq!(
        B64.decode(v["media"]["payload"].as_str().unwrap())
            .unwrap()
            .len(),
        160
    );
}

#[test]
fn the_stream_token_is_checked_in_the_query() {
    let off = Plivo {
        settings: settings(""),
        control: None,
    };
    let h = HeaderMap::new();
    assert!(off.authenticate(&h, "/plivo").is_ok());
    let on = Plivo {
        settings: settings("stream_token = \"s3cret\""),
        control: None,
    };
    assert!(on.authenticate(&h, "/plivo?a=1&token=s3cret").is_ok());
    for bad in [
        "/plivo",
        "/plivo?token=",
        "/plivo?token=s3cre",
        "/plivo?xtoken=s3cret",
    ] {
        assert_eq!(
            on.authenticate(&h, bad).unwrap_err().status,
            axum::http::StatusCode::FORBIDDEN,
            "{bad}"
        );
    }
}
