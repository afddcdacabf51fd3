//! AudioSocket, Asterisk's raw TCP protocol: TLV frames cut from byte chunks as TCP
//! delivers them. Checks that the events do not depend on where TCP cut the stream (the
//! whole stream at once and the same bytes in chunks give the same events, or both an
//! error), and that each whole frame re-encodes to its own bytes.
#![no_main]

use voxhook::telephony::audiosocket::wire;
use voxhook::telephony::{InboundEvent, MediaDecoder};

/// `[telephony.audiosocket] max_message_bytes`'s default: the payload limit.
const MAX_PAYLOAD: usize = 8 * 1024;

/// The events of `chunks` fed one after another, and whether the stream ended in an error.
fn events<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<InboundEvent>, bool) {
    let mut decoder = voxhook::telephony::audiosocket::AudioSocketDecoder::new(MAX_PAYLOAD);
    let mut replies = Vec::new();
    let mut evs = Vec::new();
    for chunk in chunks {
        match decoder.decode_binary(chunk, &mut replies) {
            Ok(first) => evs.extend(first),
            Err(_) => return (evs, true),
        }
        while let Some(ev) = decoder.take_pending() {
            evs.push(ev);
        }
    }
    (evs, false)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first byte is the chunk size TCP delivers the rest in (0: one byte at a time).
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let whole = events(std::iter::once(stream));
    let chunked = events(stream.chunks(usize::from(size).max(1)));
    // An error ends the connection whatever the chunking; the events of the chunk it ended
    // in are then dropped with it, so only error-free streams must agree event for event.
    assert_eq!(whole.1, chunked.1, "error depends on chunk size {size}");
    if !whole.1 {
        assert_eq!(whole.0, chunked.0, "events depend on chunk size {size}");
    }

    let mut at = 0;
    while let Ok(Some((frame, used))) = wire::next_frame(&stream[at..], MAX_PAYLOAD) {
        let mut again = Vec::new();
        wire::put_frame(frame.kind, frame.payload, &mut again);
        assert_eq!(
            again,
            stream[at..at + used],
            "frame does not re-encode to its bytes"
        );
        at += used;
    }
});
