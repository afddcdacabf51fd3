//! Twilio Media Streams (bidirectional `<Connect><Stream>`): `connected`, `start`, `media`,
//! `dtmf`, `mark`, `stop` in; `media`, `mark`, `clear` out. Audio is μ-law 8 kHz base64.
//! The codec also serves Twilio-compatible streams that may negotiate little-endian L16
//! (SignalWire: [`TwilioOptions::l16_rates`]).

pub mod config;
pub mod rest;
pub mod signature;
mod wire;

use std::sync::Arc;

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::control::CallControl;
use super::{
    CallStart, Codec, InboundEvent, LinkLimits, MediaDecoder, MediaEncoder, OutboundCommand,
    ProtocolError, Provider, Refusal, WireFrame,
};
use crate::audio::codec::Codec as G711;
use wire::{Incoming, MarkBody, Outgoing};

/// The Twilio provider: `/twilio` (configurable), `X-Twilio-Signature` checked when
/// configured, REST call control when an account is configured.
pub struct Twilio {
    settings: config::TwilioSettings,
    public_url: Option<String>,
    control: Option<Arc<dyn CallControl>>,
}

impl Provider for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn route(&self) -> &str {
        &self.settings.route
    }

    fn limits(&self) -> LinkLimits {
        LinkLimits {
            max_message_bytes: self.settings.max_message_bytes,
            max_early_events: self.settings.max_early_media_frames,
        }
    }

    fn authenticate(&self, headers: &HeaderMap, path_and_query: &str) -> Result<(), Refusal> {
        signature::check_upgrade(
            "twilio",
            self.settings.signature_token.as_ref().map(|t| t.expose()),
            self.public_url.as_deref(),
            &["x-twilio-signature"],
            headers,
            path_and_query,
        )
    }

    fn codec(&self) -> Codec {
        codec(TwilioOptions {
            caller_parameter: self.settings.caller_parameter.clone(),
            called_parameter: self.settings.called_parameter.clone(),
            provider: "Twilio",
            l16_rates: &[],
        })
    }

    fn control(&self) -> Option<Arc<dyn CallControl>> {
        self.control.clone()
    }
}

/// Which custom parameters carry the numbers, and which codecs besides μ-law 8 kHz the
/// stream may negotiate (Twilio: none; SignalWire: L16 at 16 and 24 kHz).
#[derive(Debug, Clone)]
pub struct TwilioOptions {
    /// Parameter with the caller's number.
    pub caller_parameter: String,
    /// Parameter with the called number.
    pub called_parameter: String,
    /// Provider name in logs.
    pub provider: &'static str,
    /// Rates at which a little-endian L16 `mediaFormat` is accepted (empty: μ-law only).
    pub l16_rates: &'static [u32],
}

/// The stream's audio codec, the same both ways (a Twilio-compatible stream has one codec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamAudio {
    /// G.711 μ-law, 8 kHz.
    Mulaw,
    /// 16-bit linear PCM, little-endian.
    L16,
}

impl StreamAudio {
    /// The codec for a stream at `rate`: μ-law at 8 kHz, L16 above.
    fn for_rate(rate: u32) -> Self {
        if rate == 8_000 {
            StreamAudio::Mulaw
        } else {
            StreamAudio::L16
        }
    }

    fn decode(self, bytes: &[u8]) -> Result<Vec<i16>, ProtocolError> {
        match self {
            StreamAudio::Mulaw => {
                let mut pcm = Vec::with_capacity(bytes.len());
                G711::Mulaw.decode_into(bytes, &mut pcm);
                Ok(pcm)
            }
            StreamAudio::L16 => {
                if !bytes.len().is_multiple_of(2) {
                    return Err(ProtocolError::Malformed(format!(
                        "L16 payload of odd length {}",
                        bytes.len()
                    )));
                }
                Ok(bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect())
            }
        }
    }

    fn encode_into(self, pcm: &[i16], out: &mut Vec<u8>) {
        match self {
            StreamAudio::Mulaw => G711::Mulaw.encode_into(pcm, out),
            StreamAudio::L16 => out.extend(pcm.iter().flat_map(|s| s.to_le_bytes())),
        }
    }
}

/// Whether `encoding` names linear 16-bit PCM (`audio/x-l16`, `audio/l16`, `L16`, any case).
fn is_l16(encoding: &str) -> bool {
    let e = encoding.to_ascii_lowercase();
    matches!(e.as_str(), "audio/x-l16" | "audio/l16" | "l16")
}

/// A new connection's codec halves.
pub fn codec(opts: TwilioOptions) -> Codec {
    Codec {
        decoder: Box::new(TwilioDecoder {
            opts,
            audio: StreamAudio::Mulaw,
            bytes: Vec::with_capacity(FRAME_BYTES),
        }),
        encoder: Box::new(TwilioEncoder {
            stream_sid_json: None,
            audio: StreamAudio::Mulaw,
            bytes: Vec::with_capacity(FRAME_BYTES),
        }),
    }
}

/// μ-law bytes in a 20 ms frame.
const FRAME_BYTES: usize = 160;

/// The reader half: JSON in, events out.
pub struct TwilioDecoder {
    opts: TwilioOptions,
    /// The codec `start` named.
    audio: StreamAudio,
    /// Reused for each media payload's decoded bytes.
    bytes: Vec<u8>,
}

impl TwilioDecoder {
    fn on_start(
        &mut self,
        stream_sid: Option<String>,
        start: wire::StartBody,
    ) -> Result<InboundEvent, ProtocolError> {
        let f = &start.media_format;
        let mulaw = f.encoding.eq_ignore_ascii_case("audio/x-mulaw") && f.sample_rate == 8_000;
        let l16 = is_l16(&f.encoding) && self.opts.l16_rates.contains(&f.sample_rate);
        if !(mulaw || l16) || f.channels != 1 {
            return Err(ProtocolError::UnsupportedFormat(format!(
                "{} {} Hz {} ch (expected mono audio/x-mulaw 8000 Hz{})",
                f.encoding,
                f.sample_rate,
                f.channels,
                if self.opts.l16_rates.is_empty() {
                    String::new()
                } else {
                    format!(" or audio/x-l16 at {:?} Hz", self.opts.l16_rates)
                }
            )));
        }
        self.audio = StreamAudio::for_rate(f.sample_rate);
        let stream_id = stream_sid
            .or(start.stream_sid)
            .ok_or_else(|| ProtocolError::Malformed("start without streamSid".into()))?;
        let param = |name: &str| {
            start
                .custom_parameters
                .get(name)
                .filter(|v| !v.is_empty())
                .cloned()
        };
        Ok(InboundEvent::Start(Box::new(CallStart {
            call_id: start.call_sid.clone(),
            stream_id,
            caller: param(&self.opts.caller_parameter),
            called: param(&self.opts.called_parameter),
            custom: start.custom_parameters,
            inbound_rate: f.sample_rate,
            outbound_rate: f.sample_rate,
        })))
    }
}

impl MediaDecoder for TwilioDecoder {
    fn decode_text(
        &mut self,
        text: &str,
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        let msg: Incoming =
            serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        Ok(match msg {
            Incoming::Connected {} => None,
            Incoming::Start { stream_sid, start } => Some(self.on_start(stream_sid, start)?),
            Incoming::Media { media } => {
                if media.track.as_deref().is_some_and(|t| t != "inbound") {
                    return Ok(None);
                }
                self.bytes.clear();
                B64.decode_vec(media.payload.as_bytes(), &mut self.bytes)
                    .map_err(|e| ProtocolError::Malformed(format!("media payload: {e}")))?;
                // The one allocation per frame: the PCM travels to the listener.
                Some(InboundEvent::Audio(self.audio.decode(&self.bytes)?))
            }
            Incoming::Dtmf { dtmf } => Some(InboundEvent::Dtmf(super::dtmf_key(&dtmf.digit)?)),
            Incoming::Mark { mark } => Some(InboundEvent::Mark(mark.name.into_owned())),
            Incoming::Stop {} => Some(InboundEvent::Stop),
            Incoming::Unknown => {
                super::log_unknown_event(self.opts.provider, text);
                None
            }
        })
    }
}

/// The writer half: commands in, JSON out.
pub struct TwilioEncoder {
    /// The stream id, and the same as a JSON string (quoted, escaped), once started.
    stream_sid_json: Option<(String, String)>,
    /// The stream's codec (set at start).
    audio: StreamAudio,
    /// Reused for each frame's encoded bytes.
    bytes: Vec<u8>,
}

impl MediaEncoder for TwilioEncoder {
    fn started(&mut self, start: &CallStart) {
        self.stream_sid_json = serde_json::to_string(&start.stream_id)
            .ok()
            .map(|json| (start.stream_id.clone(), json));
        self.audio = StreamAudio::for_rate(start.outbound_rate);
    }

    fn encode(&mut self, cmd: &OutboundCommand, out: &mut Vec<WireFrame>) {
        let Some((stream_sid, sid_json)) = &self.stream_sid_json else {
            return;
        };
        let text = match cmd {
            OutboundCommand::Audio(pcm) => {
                self.bytes.clear();
                self.audio.encode_into(pcm, &mut self.bytes);
                let mut text =
                    String::with_capacity(64 + sid_json.len() + self.bytes.len() * 4 / 3 + 4);
                wire::write_media(&mut text, sid_json, |t| B64.encode_string(&self.bytes, t));
                Some(text)
            }
            OutboundCommand::Mark(name) => serde_json::to_string(&Outgoing::Mark {
                stream_sid,
                mark: MarkBody { name },
            })
            .ok(),
            OutboundCommand::Clear => serde_json::to_string(&Outgoing::Clear { stream_sid }).ok(),
        };
        out.extend(text.map(WireFrame::Text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both halves, wired as `telephony::ws` wires them.
    struct Proto(Codec, Vec<WireFrame>);

    impl Proto {
        fn decode_text(&mut self, t: &str) -> Result<Option<InboundEvent>, ProtocolError> {
            let ev = self.0.decoder.decode_text(t, &mut self.1)?;
            if let Some(InboundEvent::Start(s)) = &ev {
                self.0.encoder.started(s);
            }
            Ok(ev)
        }

        fn decode_binary(&mut self, d: &[u8]) -> Result<Option<InboundEvent>, ProtocolError> {
            self.0.decoder.decode_binary(d, &mut self.1)
        }

        fn encode(&mut self, cmd: &OutboundCommand) -> Option<String> {
            let mut out = Vec::new();
            self.0.encoder.encode(cmd, &mut out);
            assert!(out.len() <= 1);
            out.pop().map(|f| match f {
                WireFrame::Text(t) => t,
                WireFrame::Binary(_) => panic!("binary frame"),
            })
        }
    }

    fn proto() -> Proto {
        Proto(
            codec(TwilioOptions {
                caller_parameter: "from".into(),
                called_parameter: "to".into(),
                provider: "Twilio",
                l16_rates: &[],
            }),
            Vec::new(),
        )
    }

    const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1",
        "start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],
        "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},
        "customParameters":{"from":"+15550001111","to":"+15550002222","tenant":"abc"}}}"#;

    #[test]
    fn start_becomes_call_start() {
        let mut p = proto();
        assert_eq!(
            p.decode_text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#)
                .unwrap(),
            None
        );
        let Some(InboundEvent::Start(s)) = p.decode_text(START).unwrap() else {
            panic!("no start")
        };
        assert_eq!(s.call_id, "CA1");
        assert_eq!(s.stream_id, "MZ1");
        assert_eq!(s.caller.as_deref(), Some("+15550001111"));
        assert_eq!(s.called.as_deref(), Some("+15550002222"));
        assert_eq!(s.custom["tenant"], "abc");
    }

    #[test]
    fn media_dtmf_mark_stop() {
        let mut p = proto();
        p.decode_text(START).unwrap();
        let media = r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1",
            "media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"/wCA"}}"#;
        assert_eq!(
            p.decode_text(media).unwrap(),
            Some(InboundEvent::Audio(vec![0, -32_124, 32_124]))
        );
        let dtmf =
            r##"{"event":"dtmf","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"#"}}"##;
        assert_eq!(p.decode_text(dtmf).unwrap(), Some(InboundEvent::Dtmf('#')));
        let mark = r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"vx-1"}}"#;
        assert_eq!(
            p.decode_text(mark).unwrap(),
            Some(InboundEvent::Mark("vx-1".into()))
        );
        let stop =
            r#"{"event":"stop","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#;
        assert_eq!(p.decode_text(stop).unwrap(), Some(InboundEvent::Stop));
        assert_eq!(p.decode_text(r#"{"event":"future"}"#).unwrap(), None);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut p = proto();
        for bad in [
            "{not json",
            r#"{"event":"media","media":{"payload":"***"}}"#,
            r#"{"event":"dtmf","dtmf":{"digit":"12"}}"#,
            r#"{"event":"start","start":{"callSid":"CA","mediaFormat":{"encoding":"audio/x-l16","sampleRate":16000,"channels":1}}}"#,
            r#"[]"#,
        ] {
            assert!(p.decode_text(bad).is_err(), "{bad}");
        }
        assert!(p.decode_binary(&[1, 2, 3]).is_err());
    }

    #[test]
    fn encodes_outbound_messages() {
        let mut p = proto();
        assert_eq!(p.encode(&OutboundCommand::Clear), None, "no stream yet");
        p.decode_text(START).unwrap();
        assert_eq!(
            p.encode(&OutboundCommand::Audio(vec![0, 0, 0])).unwrap(),
            r#"{"event":"media","streamSid":"MZ1","media":{"payload":"////"}}"#
        );
        assert_eq!(
            p.encode(&OutboundCommand::Mark("vx-2".into())).unwrap(),
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"vx-2"}}"#
        );
        assert_eq!(
            p.encode(&OutboundCommand::Clear).unwrap(),
            r#"{"event":"clear","streamSid":"MZ1"}"#
        );
    }

    /// Mutated and truncated versions of every valid message decode to a value or an error,
    /// never a panic (a cheap stand-in for fuzzing until a nightly toolchain is available).
    #[test]
    fn mutated_messages_never_panic() {
        use rand::{Rng, SeedableRng};
        let valid = [
            START,
            r#"{"event":"media","streamSid":"MZ1","media":{"track":"inbound","payload":"/wCA"}}"#,
            r#"{"event":"dtmf","streamSid":"MZ1","dtmf":{"digit":"5"}}"#,
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"vx-1"}}"#,
            r#"{"event":"stop","streamSid":"MZ1"}"#,
        ];
        const PUNCT: &[u8] = b"{}[]\":,0";
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut p = proto();
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
            let _ = p.decode_text(&text);
            let _ = p.encode(&OutboundCommand::Mark(text.to_string()));
        }
    }
}
