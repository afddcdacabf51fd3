//! Telnyx media streaming text frames, with each bidirectional codec (PCMU, PCMA, L16, Opus).
#![no_main]

use voxhook_fuzz::TextFrames;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    voxhook_fuzz::ws(
        "telnyx",
        &[
            "",
            "bidirectional_codec = \"PCMA\"",
            "bidirectional_codec = \"L16\"\nbidirectional_sampling_rate = 16000",
            "bidirectional_codec = \"OPUS\"\nbidirectional_sampling_rate = 16000",
        ],
        data,
        TextFrames::Json,
    );
});
