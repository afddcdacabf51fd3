//! A simulated Asterisk `AudioSocket()` application for the caller engine ([`super::caller`]):
//! it connects over plain TCP, sends the UUID first (`01 00 10` + 16 bytes), then caller
//! audio as `0x10` slin 8 kHz frames every 20 ms and keys as `0x03` DTMF; it reads voxhook's
//! `0x10` audio and `0x00` hang-up. Like Asterisk it has no playout buffer of its own: each
//! frame goes to the line at once, so only the phone's small jitter buffer
//! ([`JITTER_BUFFER_FRAMES`]) smooths arrival; audio that arrives faster overflows it and is
//! counted, never played. There are no marks and no clear. On a caller hang-up Asterisk sends
//! nothing and closes the socket.

use futures_util::{Sink, Stream};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::caller::{CallerOptions, CallerWire, Heard};
use crate::telephony::audiosocket::wire;

/// 20 ms frames a phone's jitter buffer holds before it drops what arrives (what voxhook
/// sends ahead of real time overflows it). Generous (320 ms), so a test machine's scheduling
/// stalls do not count as voxhook's bursts.
pub const JITTER_BUFFER_FRAMES: usize = 16;
/// One 20 ms frame at 8 kHz, in samples.
const FRAME: usize = 160;

/// The AudioSocket side of a simulated call.
pub struct AudioSocketWire {
    opts: CallerOptions,
}

impl AudioSocketWire {
    /// For a call whose UUID is `opts.call_sid`.
    pub fn new(opts: &CallerOptions) -> Result<Self, String> {
        uuid::Uuid::parse_str(&opts.call_sid)
            .map_err(|e| format!("AudioSocket needs a UUID call id: {e}"))?;
        Ok(Self { opts: opts.clone() })
    }

    /// A control frame described as `{"kind": u8, "payload": [bytes]}` (what `opening`,
    /// `dtmf` and friends hand the engine).
    fn tlv(kind: u8, payload: &[u8]) -> Value {
        json!({"kind": kind, "payload": payload})
    }
}

impl CallerWire for AudioSocketWire {
    fn inbound_rate(&self) -> u32 {
        8_000
    }

    fn outbound_rate(&self) -> u32 {
        8_000
    }

    fn opening(&mut self) -> Vec<Value> {
        if !self.opts.send_start {
            return Vec::new();
        }
        let Ok(id) = uuid::Uuid::parse_str(&self.opts.call_sid) else {
            return Vec::new();
        };
        vec![Self::tlv(wire::KIND_UUID, id.as_bytes())]
    }

    fn media_message(&mut self, pcm: &[i16], _elapsed_ms: u128) -> Message {
        Message::Binary(wire::slin_frame(pcm).into())
    }

    fn dtmf(&mut self, key: char) -> Value {
        Self::tlv(wire::KIND_DTMF, &[key as u8])
    }

    fn mark(&mut self, _name: &str) -> Option<Value> {
        None
    }

    fn stop(&mut self) -> Option<Value> {
        None
    }

    fn wrong_stream(&self, _v: &Value) -> bool {
        false
    }

    fn payload(&mut self, _b64: &str) -> Option<(Vec<i16>, bool)> {
        None
    }

    fn read(&mut self, _v: &Value) -> Heard {
        Heard::Invalid
    }

    fn text_message(&self, v: Value) -> Message {
        let kind = v["kind"].as_u64().unwrap_or(0) as u8;
        let payload: Vec<u8> = v["payload"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|b| b.as_u64())
                    .map(|b| b as u8)
                    .collect()
            })
            .unwrap_or_default();
        let mut frame = Vec::new();
        wire::put_frame(kind, &payload, &mut frame);
        Message::Binary(frame.into())
    }

    fn parse_text(&self, _text: &str) -> Option<Value> {
        None
    }

    /// One whole frame from voxhook: Asterisk takes only non-empty slin audio and hang-up;
    /// anything else would end its call (counted as invalid).
    fn read_binary(&mut self, data: &[u8]) -> Heard {
        let Ok(Some((frame, used))) = wire::next_frame(data, wire::MAX_PAYLOAD_BYTES) else {
            return Heard::Invalid;
        };
        if used != data.len() {
            return Heard::Invalid;
        }
        match frame.kind {
            wire::KIND_HANGUP => Heard::Hangup,
            wire::KIND_SLIN if !frame.payload.is_empty() => {
                let mut pcm = Vec::with_capacity(frame.payload.len() / 2);
                if wire::decode_slin(frame.payload, &mut pcm).is_err() {
                    return Heard::Invalid;
                }
                let odd = pcm.len() != FRAME;
                Heard::Audio { pcm, odd }
            }
            _ => Heard::Invalid,
        }
    }

    fn playback_cap(&self) -> Option<usize> {
        Some(JITTER_BUFFER_FRAMES * FRAME)
    }
}

/// The TCP connection as the engine's frame sink and stream: frames out written as they are,
/// frames in cut from the byte stream at their headers (one message per TLV frame).
pub async fn connect(
    addr: &str,
) -> Result<
    (
        impl Sink<Message, Error = std::io::Error> + Unpin,
        impl Stream<Item = Result<Message, WsError>> + Unpin,
    ),
    String,
> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let sink = Box::pin(futures_util::sink::unfold(
        write,
        |mut w, msg: Message| async move {
            match msg {
                Message::Binary(b) => w.write_all(&b).await?,
                Message::Close(_) => w.shutdown().await?,
                _ => {}
            }
            Ok::<_, std::io::Error>(w)
        },
    ));
    let frames = Box::pin(futures_util::stream::unfold(read, |mut r| async move {
        let mut frame = vec![0u8; wire::HEADER_BYTES];
        match r.read_exact(&mut frame).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) => return Some((Err(WsError::Io(e)), r)),
        }
        let len = usize::from(u16::from_be_bytes([frame[1], frame[2]]));
        frame.resize(wire::HEADER_BYTES + len, 0);
        match r.read_exact(&mut frame[wire::HEADER_BYTES..]).await {
            Ok(_) => Some((Ok(Message::Binary(frame.into())), r)),
            Err(e) => Some((Err(WsError::Io(e)), r)),
        }
    }));
    Ok((sink, frames))
}
