//! ITU-T G.711 μ-law and A-law, table-driven: 256-entry decode tables and 64 Ki-entry encode
//! tables built at compile time from the reference algorithm (Sun/CCITT `g711.c`), so a sample
//! costs one lookup each way and never depends on platform libraries.

/// The wire encodings voxhook speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// G.711 μ-law, 8 kHz.
    Mulaw,
    /// G.711 A-law, 8 kHz.
    Alaw,
}

impl Codec {
    /// Decodes wire bytes to linear PCM, appending to `out`.
    pub fn decode_into(self, bytes: &[u8], out: &mut Vec<i16>) {
        let table = match self {
            Codec::Mulaw => &ULAW_DECODE,
            Codec::Alaw => &ALAW_DECODE,
        };
        out.extend(bytes.iter().map(|&b| table[b as usize]));
    }

    /// Encodes linear PCM to wire bytes, appending to `out`.
    pub fn encode_into(self, samples: &[i16], out: &mut Vec<u8>) {
        let table = match self {
            Codec::Mulaw => &ULAW_ENCODE,
            Codec::Alaw => &ALAW_ENCODE,
        };
        out.extend(samples.iter().map(|&s| table[s as u16 as usize]));
    }
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32_635;

const fn ulaw_encode(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s < 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s;
    }
    if s > ULAW_CLIP {
        s = ULAW_CLIP;
    }
    s += ULAW_BIAS;
    // Exponent = position of the highest set bit above bit 7.
    let mut exponent = 7;
    while exponent > 0 && (s & (0x4000 >> (7 - exponent))) == 0 {
        exponent -= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

const fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const ALAW_SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

const fn alaw_encode(sample: i16) -> u8 {
    let mut v = (sample as i32) >> 3;
    let mask: i32 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let mut seg = 0;
    while seg < 8 && v > ALAW_SEG_END[seg] {
        seg += 1;
    }
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let shift = if seg < 2 { 1 } else { seg as i32 };
    let aval = ((seg as i32) << 4) | ((v >> shift) & 0x0F);
    (aval ^ mask) as u8
}

const fn alaw_decode(byte: u8) -> i16 {
    let a = (byte ^ 0x55) as i32;
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

/// Builds a lookup table at compile time (const fns cannot call function pointers). The
/// index is cast with `as`, which keeps the bit pattern: index 0xFFFF is sample -1.
macro_rules! table {
    ($ty:ty, $len:expr, $f:ident, $arg:ty) => {{
        let mut t = [0 as $ty; $len];
        let mut i = 0;
        while i < $len {
            t[i] = $f(i as $arg);
            i += 1;
        }
        t
    }};
}

static ULAW_DECODE: [i16; 256] = table!(i16, 256, ulaw_decode, u8);
static ALAW_DECODE: [i16; 256] = table!(i16, 256, alaw_decode, u8);
static ULAW_ENCODE: [u8; 65_536] = table!(u8, 65_536, ulaw_encode, i16);
static ALAW_ENCODE: [u8; 65_536] = table!(u8, 65_536, alaw_encode, i16);

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(c: Codec, s: i16) -> u8 {
        let mut out = Vec::new();
        c.encode_into(&[s], &mut out);
        out[0]
    }

    fn dec(c: Codec, b: u8) -> i16 {
        let mut out = Vec::new();
        c.decode_into(&[b], &mut out);
        out[0]
    }

    /// Known vectors from ITU-T G.711 / the reference g711.c.
    #[test]
    fn mulaw_known_vectors() {
        for (pcm, byte) in [
            (0, 0xFF),
            (-1, 0x7F),
            (8, 0xFE),
            (-8, 0x7E),
            (32_767, 0x80),
            (-32_768, 0x00),
            (1_000, 0xCE),
            (-1_000, 0x4E),
            (8_159, 0x9F),
            (-8_159, 0x1F),
        ] {
            assert_eq!(enc(Codec::Mulaw, pcm), byte, "encode {pcm}");
        }
        for (byte, pcm) in [
            (0xFF, 0),
            (0x7F, 0),
            (0x80, 32_124),
            (0x00, -32_124),
            (0xCE, 988),
            (0x9F, 8_316),
            (0x1F, -8_316),
        ] {
            assert_eq!(dec(Codec::Mulaw, byte), pcm, "decode {byte:#x}");
        }
    }

    #[test]
    fn alaw_known_vectors() {
        for (pcm, byte) in [
            (0, 0xD5),
            (-1, 0x55),
            (8, 0xD5),
            (16, 0xD4),
            (-24, 0x54),
            (32_767, 0xAA),
            (-32_768, 0x2A),
            (1_000, 0xFA),
            (-1_000, 0x7A),
        ] {
            assert_eq!(enc(Codec::Alaw, pcm), byte, "encode {pcm}");
        }
        for (byte, pcm) in [
            (0xD5, 8),
            (0x55, -8),
            (0xAA, 32_256),
            (0x2A, -32_256),
            (0xFA, 1_008),
        ] {
            assert_eq!(dec(Codec::Alaw, byte), pcm, "decode {byte:#x}");
        }
    }

    /// Every code word survives decode → encode unchanged (except μ-law's negative zero).
    #[test]
    fn every_code_word_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(enc(Codec::Alaw, dec(Codec::Alaw, b)), b);
            if b != 0x7F {
                assert_eq!(enc(Codec::Mulaw, dec(Codec::Mulaw, b)), b);
            }
        }
    }

    /// Quantisation error stays within the segment's step for every 16-bit sample.
    #[test]
    fn error_is_bounded_for_all_samples() {
        for s in i16::MIN..=i16::MAX {
            for c in [Codec::Mulaw, Codec::Alaw] {
                let back = dec(c, enc(c, s)) as i32;
                let err = (back - s as i32).abs();
                let bound = (s as i32).abs() / 16 + 140;
                assert!(err <= bound, "{c:?} {s} -> {back}");
            }
        }
    }
}
