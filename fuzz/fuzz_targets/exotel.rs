//! Exotel AgentStream text frames (PCM16 LE at the start's rate).
#![no_main]

use voxhook_fuzz::TextFrames;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    voxhook_fuzz::ws("exotel", &[""], data, TextFrames::Json);
});
