//! Asterisk chan_websocket: control messages (JSON or plain text) and binary media.
#![no_main]

use voxhook_fuzz::TextFrames;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    voxhook_fuzz::ws(
        "asterisk",
        &["", "control_format = \"plain-text\""],
        data,
        TextFrames::Plain,
    );
});
