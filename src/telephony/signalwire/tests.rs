//! SignalWire decode and encode against the wire examples in `tests/fixtures/signalwire/`
//! (PCMU 8 kHz and L16 16/24 kHz), and the signature check both ways.

use std::sync::Arc;

use axum::http::HeaderMap;

use super::config::SignalWireSettings;
use super::*;
use crate::component::{toml_value, Errors};
use crate::telephony::{InboundEvent, OutboundCommand, ProtocolError, ProviderSettings, WireFrame};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/signalwire/", $name)).trim()
    };
}

const STREAM: &str = "f0e1d2c3-b4a5-4968-8776-a5b4c3d2e1f0";

fn settings(toml_src: &str, public_url: Option<&str>) -> Result<SignalWireSettings, String> {
    let path = "telephony.signalwire";
    let mut errs = Errors::default();
    let parsed = toml_value(toml_src, path, &mut errs)
        .and_then(|v| ProviderSettings::named("signalwire", v, path, public_url, &mut errs));
    match parsed {
        Some(ProviderSettings::SignalWire(s)) if errs.0.is_empty() => Ok(s),
        _ => Err(errs.0.iter().map(|e| format!("{e}\n")).collect()),
    }
}

/// Both halves, wired as `telephony::ws` wires them.
struct Proto(Codec, Vec<WireFrame>);

impl Proto {
    fn new() -> Self {
        Proto(codec(&settings("", None).unwrap()), Vec::new())
    }

    fn decode(&mut self, t: &str) -> Result<Option<InboundEvent>, ProtocolError> {
        let ev = self.0.decoder.decode_text(t, &mut self.1)?;
        if let Some(InboundEvent::Start(s)) = &ev {
            self.0.encoder.started(s);
        }
        Ok(ev)
    }

    fn encode(&mut self, cmd: &OutboundCommand) -> String {
        let mut out = Vec::new();
        self.0.encoder.encode(cmd, &mut out);
        match out.as_slice() {
            [WireFrame::Text(t)] => t.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn start(&mut self, text: &str) -> Box<crate::telephony::CallStart> {
        match self.decode(text).unwrap() {
            Some(InboundEvent::Start(s)) => s,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn pcmu_stream_start_media_dtmf_mark_stop() {
    let mut p = Proto::new();
    assert_eq!(p.decode(fixture!("connected.json")).unwrap(), None);
    let s = p.start(fixture!("start.json"));
    assert_eq!(s.call_id, "3e1d2c4b-5a6f-4e7d-8c9b-0a1b2c3d4e5f");
    assert_eq!(s.stream_id, STREAM);
    assert_eq!(s.caller.as_deref(), Some("+15550001111"));
    assert_eq!(s.called.as_deref(), Some("+15550002222"));
    assert_eq!(s.custom["tenant"], "abc");
    assert_eq!((s.inbound_rate, s.outbound_rate), (8_000, 8_000));
    assert_eq!(
        p.decode(fixture!("media.json")).unwrap(),
        Some(InboundEvent::Audio(vec![0, -32_124, 32_124]))
    );
    assert_eq!(
        p.decode(fixture!("dtmf.json")).unwrap(),
        Some(InboundEvent::Dtmf('7'))
    );
    assert_eq!(
        p.decode(fixture!("mark.json")).unwrap(),
        Some(InboundEvent::Mark("vx-1".into()))
    );
    assert_eq!(
        p.decode(fixture!("stop.json")).unwrap(),
        Some(InboundEvent::Stop)
    );
    assert_eq!(
        p.encode(&OutboundCommand::Audio(vec![0, 0, -32_124])),
        fixture!("outbound_media_pcmu.json")
    );
    assert_eq!(
        p.encode(&OutboundCommand::Mark("vx-2".into())),
        fixture!("outbound_mark.json")
    );
    assert_eq!(
        p.encode(&OutboundCommand::Clear),
        fixture!("outbound_clear.json")
    );
}

#[test]
fn l16_streams_are_little_endian_both_ways_at_their_rate() {
    for rate in [16_000u32, 24_000] {
        let mut p = Proto::new();
        let start = fixture!("start_l16_16k.json")
            .replace("\"sampleRate\":16000", &format!("\"sampleRate\":{rate}"));
        let s = p.start(&start);
        assert_eq!((s.inbound_rate, s.outbound_rate), (rate, rate));
        assert_eq!(
            p.decode(fixture!("media_l16.json")).unwrap(),
            Some(InboundEvent::Audio(vec![0, 1000, -1000, 32_767]))
        );
        assert_eq!(
            p.encode(&OutboundCommand::Audio(vec![0, 1000, -1000, 32_767])),
            fixture!("outbound_media_l16.json")
        );
    }
}

#[test]
fn unsupported_formats_and_broken_l16_are_errors() {
    let l16 = fixture!("start_l16_16k.json");
    for bad in [
        l16.replace("\"sampleRate\":16000", "\"sampleRate\":8000"),
        l16.replace("\"sampleRate\":16000", "\"sampleRate\":44100"),
        l16.replace("\"channels\":1", "\"channels\":2"),
        fixture!("start.json").replace("audio/x-mulaw", "audio/x-alaw"),
        fixture!("start.json").replace("\"sampleRate\":8000", "\"sampleRate\":16000"),
    ] {
        let e = Proto::new().decode(&bad).unwrap_err();
        assert!(
            matches!(e, ProtocolError::UnsupportedFormat(_)),
            "{bad}: {e}"
        );
    }
    let mut p = Proto::new();
    p.start(l16);
    let odd = fixture!("media_l16.json").replace("AADoAxj8/38=", "AADo");
    assert!(matches!(
        p.decode(&odd).unwrap_err(),
        ProtocolError::Malformed(_)
    ));
    // Twilio itself still takes μ-law only.
    let mut twilio = crate::telephony::twilio::codec(TwilioOptions {
        caller_parameter: "from".into(),
        called_parameter: "to".into(),
        provider: "Twilio",
        l16_rates: &[],
    });
    assert!(twilio.decoder.decode_text(l16, &mut Vec::new()).is_err());
}

fn provider(toml_src: &str, public_url: Option<&str>) -> Arc<dyn Provider> {
    settings(toml_src, public_url)
        .unwrap()
        .build(public_url)
        .unwrap()
}

use crate::telephony::ProviderBackend as _;

#[test]
fn the_signature_is_checked_only_when_configured() {
    let public = Some("https://voice.example.com");
    let url = "wss://voice.example.com/signalwire";
    let signed = |header: &str, key: &str| {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
            signature::sign(key, url).parse().unwrap(),
        );
        h
    };
    let off = provider("", public);
    assert!(off.authenticate(&HeaderMap::new(), "/signalwire").is_ok());

    let on = provider(
        "validate_signature = true\nsigning_key = \"PSK_secret\"",
        public,
    );
    assert_eq!(on.name(), "signalwire");
    assert_eq!(on.route(), "/signalwire");
    assert!(on
        .authenticate(&signed(SIGNATURE_HEADER, "PSK_secret"), "/signalwire")
        .is_ok());
    assert!(on
        .authenticate(
            &signed(LEGACY_SIGNATURE_HEADER, "PSK_secret"),
            "/signalwire"
        )
        .is_ok());
    for (headers, path) in [
        (HeaderMap::new(), "/signalwire"),
        (signed(SIGNATURE_HEADER, "other"), "/signalwire"),
        (signed(SIGNATURE_HEADER, "PSK_secret"), "/signalwire?x=1"),
    ] {
        let r = on.authenticate(&headers, path).unwrap_err();
        assert_eq!(r.status, axum::http::StatusCode::FORBIDDEN);
    }
}

#[test]
fn validation_collects_every_error_with_its_path_and_keeps_secrets_out() {
    let errs = settings(
        "route = \"signalwire\"\nvalidate_signature = true\nproject_id = \"p\"\n\
         space_url = \"example.signalwire.com\"\nmax_message_bytes = 10",
        None,
    )
    .unwrap_err();
    for key in [
        "telephony.signalwire.route",
        "telephony.signalwire.signing_key",
        "server.public_url",
        "telephony.signalwire.api_token",
        "telephony.signalwire.space_url",
        "telephony.signalwire.max_message_bytes",
    ] {
        assert!(errs.contains(key), "{key} missing in {errs}");
    }
    let s = settings(
        "enabled = true\nproject_id = \"p-1\"\napi_token = \"PT_secret\"\n\
         space_url = \"https://example.signalwire.com/\"",
        None,
    )
    .unwrap();
    assert!(s.enabled());
    let rest = s.stream.rest.as_ref().unwrap();
    assert_eq!(rest.api_base_url, "https://example.signalwire.com");
    assert!(!format!("{s:?}").contains("PT_secret"));
    let d = settings("", None).unwrap();
    assert!(!d.enabled(), "off by default");
    assert!(d.stream.rest.is_none() && d.stream.signature_token.is_none());
}
