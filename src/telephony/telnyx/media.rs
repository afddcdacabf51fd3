//! Telnyx RTP payload codecs, both directions: G.711 μ-law (`PCMU`) and A-law (`PCMA`) at
//! 8 kHz, 16-bit linear `L16` in network byte order (big-endian, RFC 2586) and `OPUS` through
//! libopus, one 20 ms Opus frame per message. Inbound, the codec comes from the start
//! message's `media_format` (never assumed: Telnyx sends PCMA on EU/UK/IN numbers even when
//! PCMU was asked for); outbound, it is the configured bidirectional codec.

use audiopus::coder::{Decoder as OpusDecoder, Encoder as OpusEncoder};
use audiopus::{Application, Channels, SampleRate};

use crate::audio::codec::Codec as G711;
use crate::telephony::ProtocolError;

/// Milliseconds in one outbound Opus packet.
const OPUS_FRAME_MS: usize = 20;
/// The longest Opus packet libopus decodes (120 ms), in milliseconds.
const OPUS_MAX_DECODED_MS: usize = 120;
/// Room for one encoded Opus packet (libopus never writes more than 1275 bytes a frame).
const OPUS_MAX_PACKET: usize = 1500;

/// A payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// G.711 μ-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
    /// 16-bit linear PCM, big-endian.
    L16,
    /// Opus.
    Opus,
}

/// A payload format at a sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaCodec {
    /// Format.
    pub encoding: Encoding,
    /// Hz.
    pub rate: u32,
}

impl Encoding {
    /// Telnyx's name for it (`PCMU`, `PCMA`, `L16`, `OPUS`).
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Pcmu => "PCMU",
            Encoding::Pcma => "PCMA",
            Encoding::L16 => "L16",
            Encoding::Opus => "OPUS",
        }
    }

    /// From Telnyx's name (case-insensitive: `media_format` and the API differ in case).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PCMU" => Some(Encoding::Pcmu),
            "PCMA" => Some(Encoding::Pcma),
            "L16" => Some(Encoding::L16),
            "OPUS" => Some(Encoding::Opus),
            _ => None,
        }
    }

    /// The rates voxhook takes for it.
    pub fn rates(self) -> &'static [u32] {
        match self {
            Encoding::Pcmu | Encoding::Pcma => &[8_000],
            Encoding::L16 => &[8_000, 16_000],
            // Opus decodes to any of libopus's rates, whatever the sender encoded.
            Encoding::Opus => &[8_000, 12_000, 16_000, 24_000, 48_000],
        }
    }
}

impl MediaCodec {
    /// The inbound codec named by a start message's `media_format`.
    pub fn inbound(encoding: &str, rate: u32, channels: u32) -> Result<Self, ProtocolError> {
        let unsupported = || {
            ProtocolError::UnsupportedFormat(format!(
                "{encoding} {rate} Hz {channels} ch (voxhook takes mono PCMU/PCMA 8 kHz, \
                 L16 8/16 kHz, OPUS)"
            ))
        };
        let enc = Encoding::parse(encoding).ok_or_else(unsupported)?;
        if channels != 1 || !enc.rates().contains(&rate) {
            return Err(unsupported());
        }
        Ok(Self {
            encoding: enc,
            rate,
        })
    }

    /// Samples in 20 ms.
    pub fn frame_samples(self) -> usize {
        self.rate as usize * OPUS_FRAME_MS / 1000
    }
}

fn opus_rate(rate: u32) -> Result<SampleRate, String> {
    match rate {
        8_000 => Ok(SampleRate::Hz8000),
        12_000 => Ok(SampleRate::Hz12000),
        16_000 => Ok(SampleRate::Hz16000),
        24_000 => Ok(SampleRate::Hz24000),
        48_000 => Ok(SampleRate::Hz48000),
        other => Err(format!("Opus has no {other} Hz mode")),
    }
}

/// Decodes one direction's payloads to PCM (owned by the socket reader).
pub struct PayloadDecoder {
    codec: MediaCodec,
    state: DecoderState,
}

/// What decoding needs besides the codec: libopus's state for Opus.
enum DecoderState {
    G711(G711),
    L16,
    Opus(Box<OpusDecoder>),
}

impl PayloadDecoder {
    /// A decoder for `codec`.
    pub fn new(codec: MediaCodec) -> Result<Self, ProtocolError> {
        let state = match codec.encoding {
            Encoding::Pcmu => DecoderState::G711(G711::Mulaw),
            Encoding::Pcma => DecoderState::G711(G711::Alaw),
            Encoding::L16 => DecoderState::L16,
            Encoding::Opus => DecoderState::Opus(Box::new(
                opus_rate(codec.rate)
                    .and_then(|r| OpusDecoder::new(r, Channels::Mono).map_err(|e| e.to_string()))
                    .map_err(ProtocolError::UnsupportedFormat)?,
            )),
        };
        Ok(Self { codec, state })
    }

    /// The codec decoded.
    pub fn codec(&self) -> MediaCodec {
        self.codec
    }

    /// Appends the PCM of one payload to `out`.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), ProtocolError> {
        match &mut self.state {
            DecoderState::G711(law) => law.decode_into(payload, out),
            DecoderState::L16 => {
                if !payload.len().is_multiple_of(2) {
                    return Err(ProtocolError::Malformed(format!(
                        "L16 payload of {} bytes (odd)",
                        payload.len()
                    )));
                }
                out.extend(
                    payload
                        .chunks_exact(2)
                        .map(|b| i16::from_be_bytes([b[0], b[1]])),
                );
            }
            DecoderState::Opus(dec) => {
                let at = out.len();
                out.resize(
                    at + self.codec.rate as usize * OPUS_MAX_DECODED_MS / 1000,
                    0,
                );
                let res = dec.decode(Some(payload), &mut out[at..], false);
                match res {
                    Ok(n) => out.truncate(at + n),
                    Err(e) => {
                        out.truncate(at);
                        return Err(ProtocolError::Malformed(format!("Opus payload: {e}")));
                    }
                }
            }
        }
        Ok(())
    }
}

/// What encoding needs besides the codec: libopus's state for Opus.
enum EncoderState {
    G711(G711),
    L16,
    Opus(Box<OpusEncoder>),
}

/// Encodes PCM into payloads (owned by the socket writer).
pub struct PayloadEncoder {
    codec: MediaCodec,
    state: EncoderState,
    /// Reused for each payload.
    bytes: Vec<u8>,
    /// Reused for a padded Opus frame.
    frame: Vec<i16>,
}

impl PayloadEncoder {
    /// An encoder for `codec` (its rate must be one of the encoding's rates).
    pub fn new(codec: MediaCodec) -> Result<Self, String> {
        let state = match codec.encoding {
            Encoding::Pcmu => EncoderState::G711(G711::Mulaw),
            Encoding::Pcma => EncoderState::G711(G711::Alaw),
            Encoding::L16 => EncoderState::L16,
            Encoding::Opus => {
                let rate = opus_rate(codec.rate)?;
                EncoderState::Opus(Box::new(
                    OpusEncoder::new(rate, Channels::Mono, Application::Voip)
                        .map_err(|e| format!("Opus encoder: {e}"))?,
                ))
            }
        };
        Ok(Self {
            codec,
            state,
            bytes: Vec::with_capacity(OPUS_MAX_PACKET),
            frame: Vec::with_capacity(codec.frame_samples()),
        })
    }

    /// Encodes `pcm` (at the codec's rate) and hands each payload to `emit`: one for G.711 and
    /// L16; one per 20 ms for Opus (a short last frame is padded with silence).
    pub fn encode(&mut self, pcm: &[i16], mut emit: impl FnMut(&[u8])) {
        self.bytes.clear();
        match &self.state {
            EncoderState::G711(law) => law.encode_into(pcm, &mut self.bytes),
            EncoderState::L16 => self.bytes.extend(pcm.iter().flat_map(|s| s.to_be_bytes())),
            EncoderState::Opus(enc) => {
                let n = self.codec.frame_samples();
                for chunk in pcm.chunks(n) {
                    self.frame.clear();
                    self.frame.extend_from_slice(chunk);
                    self.frame.resize(n, 0);
                    self.bytes.resize(OPUS_MAX_PACKET, 0);
                    match enc.encode(&self.frame, &mut self.bytes) {
                        Ok(len) => emit(&self.bytes[..len]),
                        Err(e) => tracing::warn!(error = %e, "Opus frame not encoded; skipped."),
                    }
                }
                return;
            }
        }
        emit(&self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, ms: usize) -> Vec<i16> {
        (0..rate as usize * ms / 1000)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (8_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect()
    }

    fn round_trip(codec: MediaCodec, pcm: &[i16]) -> (Vec<usize>, Vec<i16>) {
        let mut enc = PayloadEncoder::new(codec).unwrap();
        let mut dec = PayloadDecoder::new(codec).unwrap();
        let mut sizes = Vec::new();
        let mut out = Vec::new();
        let mut payloads = Vec::new();
        enc.encode(pcm, |p| payloads.push(p.to_vec()));
        for p in payloads {
            sizes.push(p.len());
            dec.decode(&p, &mut out).unwrap();
        }
        (sizes, out)
    }

    #[test]
    fn l16_is_big_endian() {
        let codec = MediaCodec::inbound("L16", 16_000, 1).unwrap();
        let mut dec = PayloadDecoder::new(codec).unwrap();
        let mut out = Vec::new();
        dec.decode(&[0x01, 0x02, 0xff, 0xfe], &mut out).unwrap();
        assert_eq!(out, [0x0102, -2]);
        let mut enc = PayloadEncoder::new(codec).unwrap();
        let mut wire = Vec::new();
        enc.encode(&[0x0102, -2], |p| wire.extend_from_slice(p));
        assert_eq!(wire, [0x01, 0x02, 0xff, 0xfe]);
        assert!(dec.decode(&[1, 2, 3], &mut out).is_err(), "odd length");
    }

    #[test]
    fn pcma_is_not_decoded_as_pcmu() {
        // 0xD5 is A-law's smallest positive value; as μ-law it would be a loud sample.
        let mut out = Vec::new();
        let mut alaw = PayloadDecoder::new(MediaCodec::inbound("PCMA", 8_000, 1).unwrap()).unwrap();
        alaw.decode(&[0xd5], &mut out).unwrap();
        assert!(out[0].abs() < 16, "{out:?}");
        let (sizes, back) = round_trip(alaw.codec(), &tone(8_000, 20));
        assert_eq!(sizes, [160]);
        assert_eq!(back.len(), 160);
    }

    #[test]
    fn opus_sends_one_20ms_frame_per_payload_and_decodes_back() {
        for rate in [8_000, 16_000] {
            let codec = MediaCodec::inbound("OPUS", rate, 1).unwrap();
            let pcm = tone(rate, 100);
            let (sizes, back) = round_trip(codec, &pcm);
            assert_eq!(sizes.len(), 5, "five 20 ms packets at {rate} Hz");
            assert!(sizes.iter().all(|&s| s > 0 && s < 400), "{sizes:?}");
            assert_eq!(back.len(), pcm.len());
            // Lossy but the tone survives: compare energy after the codec's warm-up.
            let energy = |x: &[i16]| x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
            let tail = pcm.len() / 2;
            let ratio = energy(&back[tail..]) / energy(&pcm[tail..]);
            assert!(
                (0.5..2.0).contains(&ratio),
                "energy ratio {ratio} at {rate} Hz"
            );
        }
        // A short frame is padded to 20 ms, not dropped.
        let codec = MediaCodec::inbound("OPUS", 16_000, 1).unwrap();
        let (sizes, back) = round_trip(codec, &tone(16_000, 10));
        assert_eq!((sizes.len(), back.len()), (1, 320));
    }

    #[test]
    fn garbage_opus_is_an_error_not_a_panic() {
        let mut dec = PayloadDecoder::new(MediaCodec::inbound("OPUS", 16_000, 1).unwrap()).unwrap();
        let mut out = vec![7];
        // A code-3 packet header claiming 63 frames with no data behind it.
        assert!(dec.decode(&[0xff, 0xff], &mut out).is_err());
        assert_eq!(out, [7], "nothing appended on error");
    }

    #[test]
    fn unsupported_formats_are_named() {
        for (enc, rate, ch) in [
            ("G722", 8_000, 1),
            ("PCMU", 16_000, 1),
            ("L16", 44_100, 1),
            ("PCMU", 8_000, 2),
        ] {
            let e = MediaCodec::inbound(enc, rate, ch).unwrap_err();
            assert!(e.to_string().contains(enc), "{e}");
        }
        assert_eq!(
            MediaCodec::inbound("pcma", 8_000, 1).unwrap().encoding,
            Encoding::Pcma
        );
    }
}
