//! Genesys decode and encode against the wire examples in `tests/fixtures/genesys/`: one
//! session's messages in order, sequence numbers checked both ways.

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/genesys/", $name)).trim()
    };
}

fn settings() -> config::GenesysSettings {
    crate::telephony::parse_section("genesys", "enabled = true\napi_key = \"KEY\"")
        .map(|s| match s {
            crate::telephony::ProviderSettings::Genesys(g) => g,
            other => panic!("{other:?}"),
        })
        .unwrap()
}

struct Proto(Codec);

impl Proto {
    fn new() -> Self {
        Proto(
            Genesys {
                settings: settings(),
            }
            .codec(),
        )
    }

    /// Decodes `t`; returns the events and the replies as the writer sends them.
    fn text(&mut self, t: &str) -> Result<(Vec<InboundEvent>, Vec<Value>), ProtocolError> {
        let mut replies = Vec::new();
        let first = self.0.decoder.decode_text(t, &mut replies)?;
        let mut out = Vec::new();
        for r in replies {
            self.0.encoder.reply(r, &mut out);
        }
        let mut evs: Vec<InboundEvent> = first.into_iter().collect();
        while let Some(ev) = self.0.decoder.take_pending() {
            evs.push(ev);
        }
        for ev in &evs {
            if let InboundEvent::Start(s) = ev {
                self.0.encoder.started(s);
            }
        }
        Ok((evs, out.into_iter().map(as_json).collect()))
    }

    fn encode(&mut self, cmd: &OutboundCommand) -> Vec<WireFrame> {
        let mut out = Vec::new();
        self.0.encoder.encode(cmd, &mut out);
        out
    }
}

fn as_json(f: WireFrame) -> Value {
    match f {
        WireFrame::Text(t) => serde_json::from_str(&t).unwrap(),
        WireFrame::Binary(b) => panic!("binary frame of {}", b.len()),
    }
}

fn json(t: &str) -> Value {
    serde_json::from_str(t).unwrap()
}

#[test]
fn a_session_runs_open_to_closed_with_strict_sequence_numbers() {
    let mut p = Proto::new();
    let (evs, out) = p.text(fixture!("open.json")).unwrap();
    assert_eq!(
        out,
        [json(fixture!("opened.json"))],
        "mono chosen over stereo"
    );
    let [InboundEvent::Start(s)] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    assert_eq!(s.call_id, "090eaa2f-72fa-480a-83e0-8667ff89c0ec");
    assert_eq!(s.stream_id, "e160e428-53e2-487c-977d-96989bf5c99d");
    assert_eq!(s.caller.as_deref(), Some("+13175550000"));
    assert_eq!(s.called.as_deref(), Some("+13175550001"));
    assert_eq!(s.custom["intent"], "billing");
    assert_eq!(s.custom["language"], "en-US");

    let (evs, out) = p.text(fixture!("ping.json")).unwrap();
    assert!(evs.is_empty());
    assert_eq!(out, [json(fixture!("pong.json"))]);

    let (evs, _) = p.text(fixture!("dtmf.json")).unwrap();
    assert_eq!(evs, [InboundEvent::Dtmf('5')]);

    // Audio, then a mark: the held packet goes out first; the mark is reached when Genesys
    // reports the playback completed.
    assert!(p.encode(&OutboundCommand::Audio(vec![0; 160])).is_empty());
    let out = p.encode(&OutboundCommand::Mark("vx-1".into()));
    assert!(matches!(out.as_slice(), [WireFrame::Binary(b)] if b.len() == 160));
    let (evs, _) = p.text(fixture!("playback_completed.json")).unwrap();
    assert_eq!(evs, [InboundEvent::Mark("vx-1".into())]);

    let out = p.encode(&OutboundCommand::Clear);
    assert_eq!(
        out.into_iter().map(as_json).collect::<Vec<_>>(),
        [json(fixture!("event_barge_in.json"))]
    );

    let (evs, out) = p.text(fixture!("close.json")).unwrap();
    assert_eq!(evs, [InboundEvent::Stop]);
    assert_eq!(out, [json(fixture!("closed.json"))]);
    // Genesys ended the session: no disconnect after closed.
    let mut last = Vec::new();
    p.0.encoder.closing(false, &mut last);
    assert!(last.is_empty());
}

#[test]
fn a_bot_hang_up_sends_disconnect() {
    let mut p = Proto::new();
    p.text(fixture!("open.json")).unwrap();
    p.text(fixture!("ping.json")).unwrap();
    p.text(fixture!("dtmf.json")).unwrap();
    p.text(fixture!("playback_completed.json")).unwrap();
    p.encode(&OutboundCommand::Clear);
    let mut last = Vec::new();
    p.0.encoder.closing(false, &mut last);
    let mut want = json(fixture!("disconnect.json"));
    want["seq"] = json!(4);
    assert_eq!(last.into_iter().map(as_json).collect::<Vec<_>>(), [want]);
}

#[test]
fn a_protocol_fault_disconnects_with_error() {
    let mut p = Proto::new();
    p.text(fixture!("open.json")).unwrap();
    let mut last = Vec::new();
    p.0.encoder.closing(true, &mut last);
    let msg = as_json(last.remove(0));
    assert_eq!(
        (msg["type"].as_str(), msg["parameters"]["reason"].as_str()),
        (Some("disconnect"), Some("error"))
    );
    assert_eq!(msg["seq"], 2);
}

#[test]
fn sequence_and_session_violations_end_the_call() {
    let open = json(fixture!("open.json"));
    let ping = json(fixture!("ping.json"));
    let cases = [
        ("gap", {
            let mut m = ping.clone();
            m["seq"] = json!(3);
            m
        }),
        ("repeat", {
            let mut m = ping.clone();
            m["seq"] = json!(1);
            m
        }),
        ("serverseq ahead", {
            let mut m = ping.clone();
            m["serverseq"] = json!(9);
            m
        }),
        ("other session", {
            let mut m = ping.clone();
            m["id"] = json!("another");
            m
        }),
        ("second open", {
            let mut m = open.clone();
            m["seq"] = json!(2);
            m["serverseq"] = json!(1);
            m
        }),
        ("version", {
            let mut m = ping.clone();
            m["version"] = json!("1");
            m
        }),
    ];
    for (what, msg) in cases {
        let mut p = Proto::new();
        p.text(&open.to_string()).unwrap();
        assert!(
            matches!(p.text(&msg.to_string()), Err(ProtocolError::Malformed(_))),
            "{what}"
        );
    }
    // Nothing but open may come first.
    assert!(Proto::new().text(&ping.to_string()).is_err());
    assert!(Proto::new().text("[]").is_err());
}

#[test]
fn media_is_pcmu_mono_or_the_customer_side_of_stereo() {
    let mut open = json(fixture!("open.json"));
    open["parameters"]["media"] =
        json!([{"type":"audio","format":"PCMU","channels":["external","internal"],"rate":8000}]);
    let mut p = Proto::new();
    let (_, out) = p.text(&open.to_string()).unwrap();
    assert_eq!(
        out[0]["parameters"]["media"][0]["channels"],
        json!(["external", "internal"])
    );
    // μ-law 0xff is 0; 0x80 is the loudest positive sample: only the left (customer) counts.
    let ev =
        p.0.decoder
            .decode_binary(&[0x80, 0xff, 0x80, 0xff], &mut Vec::new())
            .unwrap();
    let Some(InboundEvent::Audio(pcm)) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(pcm.len(), 2);
    assert!(pcm.iter().all(|s| *s > 30_000));
    assert!(p
        .0
        .decoder
        .decode_binary(&[0x80; 3], &mut Vec::new())
        .is_err());

    open["parameters"]["media"] =
        json!([{"type":"audio","format":"L16","channels":["external"],"rate":8000}]);
    assert!(matches!(
        Proto::new().text(&open.to_string()),
        Err(ProtocolError::UnsupportedFormat(_))
    ));
}

#[test]
fn a_connection_probe_is_opened_without_a_call() {
    let mut open = json(fixture!("open.json"));
    open["parameters"]["conversationId"] = json!(PROBE_CONVERSATION_ID);
    let mut p = Proto::new();
    let (evs, out) = p.text(&open.to_string()).unwrap();
    assert!(evs.is_empty());
    assert_eq!(out[0]["type"], "opened");
    // Audio on a probe is for no call.
    assert_eq!(
        p.0.decoder
            .decode_binary(&[0xff; 160], &mut Vec::new())
            .unwrap(),
        None
    );
    let mut close = json(fixture!("close.json"));
    close["seq"] = json!(2);
    close["serverseq"] = json!(1);
    let (evs, out) = p.text(&close.to_string()).unwrap();
    assert_eq!(evs, [InboundEvent::Stop]);
    assert_eq!(
        (out[0]["type"].as_str(), out[0]["seq"].as_u64()),
        (Some("closed"), Some(2))
    );
}

#[test]
fn bot_audio_goes_in_rate_limited_packets() {
    let mut p = Proto::new();
    p.text(fixture!("open.json")).unwrap();
    let mut packets = Vec::new();
    // 10 s of audio sent at once: the first 25 (the burst) go out as 200 ms packets, the rest
    // is held (growing) until tokens return, never past 64000 bytes a message.
    for _ in 0..500 {
        packets.extend(p.encode(&OutboundCommand::Audio(vec![0; 160])));
    }
    assert_eq!(packets.len(), 25);
    assert!(packets
        .iter()
        .all(|f| matches!(f, WireFrame::Binary(b) if b.len() == 1_600)));
    let out = p.encode(&OutboundCommand::Mark("vx-2".into()));
    assert!(matches!(out.as_slice(), [WireFrame::Binary(b)] if b.len() == 500 * 160 - 25 * 1_600));
}

#[test]
fn api_key_and_signature_are_checked_before_the_upgrade() {
    use base64::Engine as _;
    let mut s = settings();
    s.client_secret = Arc::new(config::SensitiveBytes(b"secret".to_vec()));
    let g = Genesys { settings: s };
    let mut h = HeaderMap::new();
    assert!(g.authenticate(&h, "/genesys").is_err(), "no key");
    h.insert("x-api-key", "WRONG".parse().unwrap());
    assert!(g.authenticate(&h, "/genesys").is_err(), "wrong key");
    h.insert("x-api-key", "KEY".parse().unwrap());
    assert!(g.authenticate(&h, "/genesys").is_err(), "unsigned");
    for (k, v) in [
        ("host", "voxhook.example.com"),
        ("audiohook-organization-id", "org"),
        ("audiohook-session-id", "sess"),
        ("audiohook-correlation-id", "corr"),
    ] {
        h.insert(k, v.parse().unwrap());
    }
    let values = [
        "/genesys",
        "voxhook.example.com",
        "org",
        "sess",
        "corr",
        "KEY",
    ];
    let nonce = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
    let (input, sig) = signature::sign(b"secret", values, "KEY", &nonce, unix_now());
    h.insert("signature-input", input.parse().unwrap());
    h.insert("signature", sig.parse().unwrap());
    assert_eq!(g.authenticate(&h, "/genesys"), Ok(()));
    assert!(
        g.authenticate(&h, "/genesys/other").is_err(),
        "other target"
    );
}
