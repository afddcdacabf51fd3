//! Genesys Audio Connector: JSON control messages (`open`, `ping`, `update`, `dtmf`, `close`, …) with strict sequence numbers, and binary PCMU.
#![no_main]

use voxhook_fuzz::TextFrames;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    voxhook_fuzz::ws("genesys", &[""], data, TextFrames::Json);
});
