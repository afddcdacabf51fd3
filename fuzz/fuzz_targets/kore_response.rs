//! Kore webhook answers (v2 and v1; sync replies and async acknowledgements) and the replies
//! they become (`speech::to_reply`, end-of-task handling).
#![no_main]

use std::sync::LazyLock;

use voxhook::bot::kore::KoreClient;

static CLIENTS: LazyLock<Vec<KoreClient>> = LazyLock::new(|| {
    voxhook_fuzz::KORE_SECTIONS
        .iter()
        .map(|s| voxhook_fuzz::kore_client(s))
        .collect()
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Every flavour reads the same body: they differ in what they accept.
    for client in CLIENTS.iter() {
        if let Ok(replies) = voxhook::fuzzing::kore_response(client, data) {
            voxhook_fuzz::check_replies(&replies);
        }
    }
});
