//! Plivo's stream audio, both directions: `audio/x-mulaw` at 8000 Hz and `audio/x-l16` at
//! 8000 or 16000 Hz. Plivo's docs do not name the L16 byte order; peers read it as
//! little-endian, which is the default here, and `l16_byte_order = "big"` turns it around.
//! Exotel's and Vonage's PCM16 little-endian streams use the same codec.

use std::collections::VecDeque;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::audio::codec::Codec as G711;
use crate::telephony::{InboundEvent, ProtocolError};

/// A sample format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// G.711 μ-law.
    Mulaw,
    /// 16-bit linear PCM.
    L16 {
        /// Network byte order instead of little-endian.
        big_endian: bool,
    },
}

/// A sample format at a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCodec {
    /// Format.
    pub encoding: Encoding,
    /// Hz.
    pub rate: u32,
}

impl StreamCodec {
    /// Plivo's default content type, `audio/x-l16;rate=8000`.
    pub const DEFAULT: StreamCodec = StreamCodec {
        encoding: Encoding::L16 { big_endian: false },
        rate: 8_000,
    };

    /// From an encoding name (`audio/x-mulaw`, `audio/x-l16`) and rate, when Plivo offers it.
    pub fn new(encoding: &str, rate: u32, big_endian: bool) -> Option<Self> {
        let encoding = match encoding.trim().to_ascii_lowercase().as_str() {
            "audio/x-mulaw" | "audio/mulaw" | "audio/pcmu" => Encoding::Mulaw,
            "audio/x-l16" | "audio/l16" => Encoding::L16 { big_endian },
            _ => return None,
        };
        let ok = match encoding {
            Encoding::Mulaw => rate == 8_000,
            Encoding::L16 { .. } => rate == 8_000 || rate == 16_000,
        };
        ok.then_some(Self { encoding, rate })
    }

    /// From a `<Stream contentType>` value: `audio/x-l16;rate=16000`.
    pub fn parse_content_type(value: &str, big_endian: bool) -> Option<Self> {
        let (encoding, params) = value.split_once(';').unwrap_or((value, ""));
        let rate = params
            .split(';')
            .find_map(|p| p.trim().strip_prefix("rate="))
            .map_or(Some(8_000), |r| r.trim().parse().ok())?;
        Self::new(encoding, rate, big_endian)
    }

    /// The `contentType` of `playAudio` (`audio/x-l16`, `audio/x-mulaw`).
    pub fn content_type(self) -> &'static str {
        match self.encoding {
            Encoding::Mulaw => "audio/x-mulaw",
            Encoding::L16 { .. } => "audio/x-l16",
        }
    }

    /// Bytes in one 20 ms frame.
    pub fn frame_bytes(self) -> usize {
        let samples = self.rate as usize / 50;
        match self.encoding {
            Encoding::Mulaw => samples,
            Encoding::L16 { .. } => samples * 2,
        }
    }

    /// Decodes `bytes`, appending PCM to `out`.
    pub fn decode(self, bytes: &[u8], out: &mut Vec<i16>) -> Result<(), ProtocolError> {
        match self.encoding {
            Encoding::Mulaw => G711::Mulaw.decode_into(bytes, out),
            Encoding::L16 { big_endian } => {
                if !bytes.len().is_multiple_of(2) {
                    return Err(ProtocolError::Malformed(format!(
                        "L16 payload of odd length {}",
                        bytes.len()
                    )));
                }
                let sample = if big_endian {
                    i16::from_be_bytes
                } else {
                    i16::from_le_bytes
                };
                out.extend(bytes.chunks_exact(2).map(|b| sample([b[0], b[1]])));
            }
        }
        Ok(())
    }

    /// Encodes `pcm`, appending bytes to `out`.
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        match self.encoding {
            Encoding::Mulaw => G711::Mulaw.encode_into(pcm, out),
            Encoding::L16 { big_endian: true } => {
                out.extend(pcm.iter().flat_map(|s| s.to_be_bytes()))
            }
            Encoding::L16 { big_endian: false } => {
                out.extend(pcm.iter().flat_map(|s| s.to_le_bytes()))
            }
        }
    }
}

/// The inbound side of a stream whose codec `start` names (Plivo, Exotel, Vonage): payloads
/// decoded into PCM events, and payloads that come before `start` kept (at most `max_early`)
/// and decoded once it has.
pub struct Inbound {
    codec: Option<StreamCodec>,
    /// Reused for each payload's decoded bytes.
    bytes: Vec<u8>,
    early: Vec<Vec<u8>>,
    max_early: usize,
}

impl Inbound {
    /// Nothing started yet; `max_early` payloads may wait for `start`.
    pub fn new(max_early: usize) -> Self {
        Self {
            codec: None,
            bytes: Vec::with_capacity(640),
            early: Vec::new(),
            max_early,
        }
    }

    /// `start` named `codec`: the payloads held are decoded into `pending`.
    pub fn start(
        &mut self,
        codec: StreamCodec,
        pending: &mut VecDeque<InboundEvent>,
    ) -> Result<(), ProtocolError> {
        for payload in std::mem::take(&mut self.early) {
            let mut pcm = Vec::new();
            codec.decode(&payload, &mut pcm)?;
            pending.push_back(InboundEvent::Audio(pcm));
        }
        self.codec = Some(codec);
        Ok(())
    }

    /// One base64 payload: decoded into `pending`, or held until `start`.
    pub fn payload(
        &mut self,
        b64: &str,
        pending: &mut VecDeque<InboundEvent>,
    ) -> Result<(), ProtocolError> {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.clear();
        let res = B64
            .decode_vec(b64.as_bytes(), &mut bytes)
            .map_err(|e| ProtocolError::Malformed(format!("media payload: {e}")))
            .and_then(|()| self.raw(&bytes, pending));
        self.bytes = bytes;
        res
    }

    /// One payload of raw codec bytes (binary protocols: Vonage): decoded into `pending`, or
    /// held until `start`.
    pub fn raw(
        &mut self,
        bytes: &[u8],
        pending: &mut VecDeque<InboundEvent>,
    ) -> Result<(), ProtocolError> {
        let Some(codec) = self.codec else {
            if self.early.len() >= self.max_early {
                return Err(ProtocolError::NoStart(self.max_early));
            }
            self.early.push(bytes.to_vec());
            return Ok(());
        };
        // The one allocation per frame: the PCM travels to the listener.
        let mut pcm = Vec::with_capacity(bytes.len());
        codec.decode(bytes, &mut pcm)?;
        pending.push_back(InboundEvent::Audio(pcm));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_parse_as_plivo_documents_them() {
        let le = |rate| StreamCodec {
            encoding: Encoding::L16 { big_endian: false },
            rate,
        };
        assert_eq!(
            StreamCodec::parse_content_type("audio/x-l16;rate=8000", false),
            Some(le(8_000))
        );
        assert_eq!(
            StreamCodec::parse_content_type("audio/x-l16; rate=16000", false),
            Some(le(16_000))
        );
        assert_eq!(
            StreamCodec::parse_content_type("audio/x-mulaw;rate=8000", true),
            Some(StreamCodec {
                encoding: Encoding::Mulaw,
                rate: 8_000
            })
        );
        for bad in [
            "audio/x-mulaw;rate=16000",
            "audio/x-l16;rate=24000",
            "audio/wav",
            "audio/x-l16;rate=x",
        ] {
            assert_eq!(StreamCodec::parse_content_type(bad, false), None, "{bad}");
        }
    }

    #[test]
    fn l16_round_trips_in_either_byte_order() {
        let pcm = [0x0102_i16, -2, i16::MAX, i16::MIN];
        for big_endian in [false, true] {
            let c = StreamCodec {
                encoding: Encoding::L16 { big_endian },
                rate: 16_000,
            };
            let mut bytes = Vec::new();
            c.encode(&pcm, &mut bytes);
            assert_eq!(bytes[..2], if big_endian { [1, 2] } else { [2, 1] });
            let mut back = Vec::new();
            c.decode(&bytes, &mut back).unwrap();
            assert_eq!(back, pcm);
            assert!(c.decode(&bytes[..3], &mut back).is_err());
        }
        assert_eq!(StreamCodec::DEFAULT.frame_bytes(), 320);
    }
}
