//! jambonz `listen`: the metadata text frame, JSON events and binary L16.
#![no_main]

use voxhook_fuzz::TextFrames;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    voxhook_fuzz::ws(
        "jambonz",
        &["", "bidirectional_sample_rate = 16000"],
        data,
        TextFrames::Json,
    );
});
