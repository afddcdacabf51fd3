//! SignalWire (Twilio's wire with L16 at 16/24 kHz) text frames.
#![no_main]

use voxhook_fuzz::TextFrames;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    voxhook_fuzz::ws("signalwire", &[""], data, TextFrames::Json);
});
