//! Twilio Media Streams: `connected`/`start`/`media`/`mark`/`dtmf`/`stop` text frames.
#![no_main]

use voxhook_fuzz::TextFrames;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    voxhook_fuzz::ws("twilio", &[""], data, TextFrames::Json);
});
