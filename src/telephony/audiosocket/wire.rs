//! AudioSocket's TLV framing: a 1-byte kind, a 2-byte big-endian payload length, the payload.
//! The kinds and the error codes are the protocol's; nothing here knows about calls.

use crate::telephony::ProtocolError;

/// Bytes before every payload: kind and length.
pub const HEADER_BYTES: usize = 3;
/// The largest payload the 16-bit length can announce.
pub const MAX_PAYLOAD_BYTES: usize = u16::MAX as usize;

/// `0x00`: hang up (either way; closing the socket is also enough).
pub const KIND_HANGUP: u8 = 0x00;
/// `0x01`: the connection's UUID, 16 bytes, Asterisk's first message.
pub const KIND_UUID: u8 = 0x01;
/// `0x03`: one DTMF digit as an ASCII byte (Asterisk 20.x and later).
pub const KIND_DTMF: u8 = 0x03;
/// `0x10`: signed linear 16-bit little-endian mono PCM at 8 kHz, either way.
pub const KIND_SLIN: u8 = 0x10;
/// `0xff`: an error on Asterisk's side; the payload is an optional error code.
pub const KIND_ERROR: u8 = 0xff;

/// Sample rates of the newer slin kinds `0x11`–`0x18` (Asterisk's current protocol page), in
/// kind order. voxhook takes 8 kHz only (what the `AudioSocket()` application sends).
pub const HIGHER_SLIN_RATES: [(u8, u32); 8] = [
    (0x11, 12_000),
    (0x12, 16_000),
    (0x13, 24_000),
    (0x14, 32_000),
    (0x15, 44_100),
    (0x16, 48_000),
    (0x17, 96_000),
    (0x18, 192_000),
];

/// One frame, borrowed from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The kind byte.
    pub kind: u8,
    /// The payload.
    pub payload: &'a [u8],
}

/// Splits the first whole frame off `buf`: the frame and the bytes it took, or `None` when
/// `buf` holds only part of one. A header announcing more than `max_payload` bytes is an
/// error at once, before its payload arrives.
pub fn next_frame(
    buf: &[u8],
    max_payload: usize,
) -> Result<Option<(Frame<'_>, usize)>, ProtocolError> {
    let &[kind, hi, lo, ..] = buf else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > max_payload {
        return Err(ProtocolError::TooLarge {
            size: len,
            limit: max_payload,
        });
    }
    let end = HEADER_BYTES + len;
    Ok(buf
        .get(HEADER_BYTES..end)
        .map(|payload| (Frame { kind, payload }, end)))
}

/// Appends a frame of `kind` around `payload` (at most [`MAX_PAYLOAD_BYTES`]; callers send
/// 20 ms frames) to `out`.
pub fn put_frame(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len().min(MAX_PAYLOAD_BYTES);
    out.reserve(HEADER_BYTES + len);
    out.push(kind);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&payload[..len]);
}

/// A whole slin audio frame of `pcm` (little-endian samples).
pub fn slin_frame(pcm: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + pcm.len() * 2);
    out.push(KIND_SLIN);
    out.extend_from_slice(&((pcm.len() * 2).min(MAX_PAYLOAD_BYTES) as u16).to_be_bytes());
    for s in pcm.iter().take(MAX_PAYLOAD_BYTES / 2) {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Decodes slin bytes into `out`; an odd byte count is malformed.
pub fn decode_slin(payload: &[u8], out: &mut Vec<i16>) -> Result<(), ProtocolError> {
    if !payload.len().is_multiple_of(2) {
        return Err(ProtocolError::Malformed(format!(
            "audio payload of {} bytes (not whole 16-bit samples)",
            payload.len()
        )));
    }
    out.extend(
        payload
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]])),
    );
    Ok(())
}

/// What Asterisk's bit-packed error code says (`0x01` hang-up of the calling party, `0x02`
/// frame forwarding error, `0x04` memory error); several bits may be set.
pub fn error_meaning(code: Option<u8>) -> &'static str {
    match code {
        None => "no code",
        Some(c) if c & 0x01 != 0 => "hangup of calling party",
        Some(c) if c & 0x02 != 0 => "frame forwarding error",
        Some(c) if c & 0x04 != 0 => "memory error",
        Some(_) => "application-specific",
    }
}
