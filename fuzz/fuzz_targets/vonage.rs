//! Vonage Voice API WebSocket: `websocket:connected`, JSON events and binary L16.
#![no_main]

use voxhook_fuzz::TextFrames;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    voxhook_fuzz::ws("vonage", &[""], data, TextFrames::Json);
});
