//! Kore async callbacks (`callback::parse`: routing ids, v2 `data` and v1 `text` bodies) as
//! `BotChannel::parse_callback` hands them to the call directory.
#![no_main]

use std::sync::LazyLock;

use voxhook::bot::kore::KoreClient;
use voxhook::bot::BotChannel;

static CLIENTS: LazyLock<Vec<KoreClient>> = LazyLock::new(|| {
    voxhook_fuzz::KORE_SECTIONS[2..]
        .iter()
        .map(|s| voxhook_fuzz::kore_client(s))
        .collect()
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for client in CLIENTS.iter() {
        if let Ok(cb) = client.parse_callback(data) {
            // A callback is routed by its keys: one that names no call must be an error.
            assert!(!cb.keys.is_empty(), "callback without keys");
            assert!(cb
                .keys
                .iter()
                .all(|k| !k.trim().is_empty() && k != "st-bot"));
            voxhook_fuzz::check_replies(&cb.replies);
        }
    }
});
