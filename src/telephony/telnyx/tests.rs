//! Telnyx decode and encode against the documented wire examples in `tests/fixtures/telnyx/`.

use super::media::Encoding;
use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/telnyx/", $name)).trim()
    };
}

/// Both halves, wired as `telephony::ws` wires them (pending events drained after each frame).
struct Proto(Codec, Vec<WireFrame>);

impl Proto {
    fn new(encoding: Encoding, rate: u32) -> Self {
        Proto(codec(MediaCodec { encoding, rate }, 3), Vec::new())
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

fn start_with(encoding: &str, rate: u32) -> String {
    fixture!("start.json").replace(
        r#""encoding":"PCMU","sample_rate":8000"#,
        &format!(r#""encoding":"{encoding}","sample_rate":{rate}"#),
    )
}

fn dtmf(digit: &str, at: &str) -> String {
    fixture!("dtmf.json")
        .replace(r#""digit":"1""#, &format!(r#""digit":"{digit}""#))
        .replace("2025-06-05T08:54:19.698408Z", at)
}

#[test]
fn the_documented_start_becomes_call_start() {
    let mut p = Proto::new(Encoding::Pcmu, 8_000);
    assert!(p.decode(fixture!("connected.json")).unwrap().is_empty());
    let evs = p.decode(fixture!("start.json")).unwrap();
    let [InboundEvent::Start(s)] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    assert_eq!(
        s.call_id,
        "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"
    );
    assert_eq!(s.stream_id, "32DE0DEA-53CB-4B21-89A4-9E1819C043BC");
    assert_eq!(s.caller.as_deref(), Some("+13122010094"));
    assert_eq!(s.called.as_deref(), Some("+13122123456"));
    assert_eq!(s.custom["customer_id"], "customer_123");
    assert_eq!(s.custom["client_state"], "aGF2ZSBhIG5pY2UgZGF5ID1d");
    assert_eq!((s.inbound_rate, s.outbound_rate), (8_000, 8_000));
}

#[test]
fn media_mark_error_and_stop_from_the_docs() {
    let mut p = Proto::new(Encoding::Pcmu, 8_000);
    p.decode(fixture!("start.json")).unwrap();
    assert_eq!(
        p.decode(fixture!("media.json")).unwrap(),
        [InboundEvent::Audio(vec![0, -32_124, 32_124])]
    );
    let outbound_track =
        fixture!("media.json").replace(r#""track":"inbound""#, r#""track":"outbound""#);
    assert!(
        p.decode(&outbound_track).unwrap().is_empty(),
        "our own audio echoed back is ignored"
    );
    assert_eq!(
        p.decode(fixture!("mark.json")).unwrap(),
        [InboundEvent::Mark("some_mark_name".into())]
    );
    assert!(
        p.decode(fixture!("error.json")).unwrap().is_empty(),
        "logged, not fatal"
    );
    assert_eq!(
        p.decode(fixture!("stop.json")).unwrap(),
        [InboundEvent::Stop]
    );
    assert!(p.decode(r#"{"event":"future"}"#).unwrap().is_empty());
}

#[test]
fn the_inbound_codec_comes_from_start_not_from_config() {
    // Asked for PCMU both ways, but an EU number streams PCMA: A-law silence stays silent.
    let mut p = Proto::new(Encoding::Pcmu, 8_000);
    p.decode(&start_with("PCMA", 8_000)).unwrap();
    let silence = B64.encode([0xd5u8; 160]);
    let media = fixture!("media.json").replace("/wCA", &silence);
    let evs = p.decode(&media).unwrap();
    let [InboundEvent::Audio(pcm)] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    assert_eq!(pcm.len(), 160);
    assert!(pcm.iter().all(|s| s.abs() < 16), "decoded as A-law");

    // L16 16 kHz is big-endian.
    let mut p = Proto::new(Encoding::L16, 16_000);
    let evs = p.decode(&start_with("L16", 16_000)).unwrap();
    let [InboundEvent::Start(s)] = evs.as_slice() else {
        panic!()
    };
    assert_eq!((s.inbound_rate, s.outbound_rate), (16_000, 16_000));
    let media = fixture!("media.json").replace("/wCA", &B64.encode([0x01, 0x02, 0x80, 0x00]));
    assert_eq!(
        p.decode(&media).unwrap(),
        [InboundEvent::Audio(vec![0x0102, i16::MIN])]
    );

    let err = Proto::new(Encoding::Pcmu, 8_000)
        .decode(&start_with("G722", 8_000))
        .unwrap_err();
    assert!(matches!(err, ProtocolError::UnsupportedFormat(_)), "{err}");
}

#[test]
fn media_before_start_is_decoded_once_start_names_the_codec() {
    let mut p = Proto::new(Encoding::Pcmu, 8_000);
    let early = fixture!("media.json").replace("/wCA", &B64.encode([0xd5u8, 0x55]));
    assert!(p.decode(&early).unwrap().is_empty());
    assert!(p.decode(&early).unwrap().is_empty());
    let evs = p.decode(&start_with("PCMA", 8_000)).unwrap();
    assert!(matches!(evs[0], InboundEvent::Start(_)), "{evs:?}");
    assert_eq!(evs.len(), 3, "start, then both early frames: {evs:?}");
    let InboundEvent::Audio(pcm) = &evs[1] else {
        panic!()
    };
    assert_eq!(pcm, &[8, -8], "as A-law");

    // Beyond the bound (3 here) the call is refused.
    let mut p = Proto::new(Encoding::Pcmu, 8_000);
    for _ in 0..3 {
        p.decode(&early).unwrap();
    }
    assert!(matches!(p.decode(&early), Err(ProtocolError::NoStart(3))));
}

#[test]
fn digits_are_released_in_the_order_they_were_pressed() {
    let mut d = TelnyxDecoder::new(8_000, 3);
    let t0 = Instant::now();
    let mut decode = |text: &str, now: Instant| {
        let mut evs: Vec<InboundEvent> = d.decode_at(text, now).unwrap().into_iter().collect();
        evs.extend(std::iter::from_fn(|| d.take_pending()));
        evs.retain(|e| !matches!(e, InboundEvent::Audio(_) | InboundEvent::Start(_)));
        evs
    };
    decode(fixture!("start.json"), t0);
    let media = fixture!("media.json");
    // "2" was pressed after "1" but arrives first.
    assert!(decode(&dtmf("2", "2025-06-05T08:54:20.1Z"), t0).is_empty());
    assert!(decode(&dtmf("1", "2025-06-05T08:54:19.698408Z"), t0).is_empty());
    assert!(
        decode(media, t0 + DTMF_REORDER_WINDOW / 2).is_empty(),
        "digits wait"
    );
    assert_eq!(
        decode(media, t0 + DTMF_REORDER_WINDOW),
        [InboundEvent::Dtmf('1'), InboundEvent::Dtmf('2')]
    );
    // "#" has no readable time: it keeps its arrival place. A stop flushes what is held,
    // before the stop.
    decode(&dtmf("#", "soon"), t0);
    decode(&dtmf("4", "2025-06-05T08:54:21Z"), t0);
    assert_eq!(
        decode(fixture!("stop.json"), t0),
        [
            InboundEvent::Dtmf('#'),
            InboundEvent::Dtmf('4'),
            InboundEvent::Stop
        ]
    );
}

#[test]
fn outbound_messages_match_the_docs() {
    let mut p = Proto::new(Encoding::Pcmu, 8_000);
    assert!(
        p.encode(&OutboundCommand::Clear).is_empty(),
        "nothing before start"
    );
    p.decode(fixture!("start.json")).unwrap();
    assert_eq!(
        p.encode(&OutboundCommand::Audio(vec![0, 0, 0])),
        [fixture!("outbound_media.json")]
    );
    assert_eq!(
        p.encode(&OutboundCommand::Mark("vx-2".into())),
        [fixture!("outbound_mark.json")]
    );
    assert_eq!(
        p.encode(&OutboundCommand::Clear),
        [fixture!("outbound_clear.json")]
    );
}

#[test]
fn opus_goes_out_one_20ms_frame_per_message() {
    let mut p = Proto::new(Encoding::Opus, 16_000);
    p.decode(&start_with("OPUS", 16_000)).unwrap();
    let out = p.encode(&OutboundCommand::Audio(vec![1_000; 320]));
    assert_eq!(out.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&out[0]).unwrap();
    let packet = B64.decode(v["media"]["payload"].as_str().unwrap()).unwrap();
    // Inbound, the same packet decodes to 20 ms at 16 kHz.
    let media = fixture!("media.json").replace("/wCA", &B64.encode(&packet));
    let evs = p.decode(&media).unwrap();
    let [InboundEvent::Audio(pcm)] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    assert_eq!(pcm.len(), 320);
    assert_eq!(
        p.encode(&OutboundCommand::Audio(vec![0; 640])).len(),
        2,
        "40 ms → two messages"
    );
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut p = Proto::new(Encoding::Pcmu, 8_000);
    for bad in [
        "{not json",
        r#"{"event":"media","media":{"payload":"***"}}"#,
        r#"{"event":"dtmf","dtmf":{"digit":"12"}}"#,
        r#"{"event":"start","start":{"call_control_id":"v3:x","media_format":{"encoding":"PCMU","sample_rate":8000}}}"#,
        r#"[]"#,
    ] {
        assert!(p.decode(bad).is_err(), "{bad}");
    }
    assert!(p.0.decoder.decode_binary(&[1, 2], &mut p.1).is_err());
}

/// Mutated and truncated versions of every documented message decode to a value or an error,
/// never a panic.
#[test]
fn mutated_messages_never_panic() {
    use rand::{Rng, SeedableRng};
    let start_opus = start_with("OPUS", 16_000);
    let valid = [
        fixture!("start.json"),
        start_opus.as_str(),
        fixture!("media.json"),
        fixture!("dtmf.json"),
        fixture!("mark.json"),
        fixture!("error.json"),
        fixture!("stop.json"),
    ];
    const PUNCT: &[u8] = b"{}[]\":,0";
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut p = Proto::new(Encoding::Opus, 8_000);
    for _ in 0..20_000 {
        let mut bytes = valid[rng.random_range(0..valid.len())].as_bytes().to_vec();
        for _ in 0..rng.random_range(1..6) {
            let at = rng.random_range(0..bytes.len());
            match rng.random_range(0..3) {
                0 => bytes[at] = rng.random(),
                1 => bytes.truncate(at),
                _ => bytes.insert(at, PUNCT[rng.random_range(0..PUNCT.len())]),
            }
            if bytes.is_empty() {
                break;
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        let _ = p.decode(&text);
        let _ = p.encode(&OutboundCommand::Mark(text.to_string()));
    }
}
