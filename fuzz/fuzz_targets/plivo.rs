//! Plivo Audio Streams text frames (L16 little- and big-endian, μ-law).
#![no_main]

use voxhook_fuzz::TextFrames;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    voxhook_fuzz::ws(
        "plivo",
        &[
            "",
            "l16_byte_order = \"big\"",
            "content_type = \"audio/x-mulaw;rate=8000\"",
            "content_type = \"audio/x-l16;rate=16000\"",
        ],
        data,
        TextFrames::Json,
    );
});
