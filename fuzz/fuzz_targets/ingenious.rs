//! inGenious webhook requests (`parse_callback`: events, messages, quick replies, handover)
//! and the answer to `POST /conversations`.
#![no_main]

use std::sync::LazyLock;

use voxhook::bot::ingenious::IngeniousClient;
use voxhook::bot::{BotChannel, BotSettings};

static CLIENT: LazyLock<IngeniousClient> = LazyLock::new(|| {
    let section = concat!(
        "platform = \"ingenious\"\nbase_url = \"http://127.0.0.1:9/v1/t/b\"\n",
        "access_token = \"tok\"\ncallback_secret = \"0123456789abcdef0123456789abcdef\"\n"
    );
    match BotSettings::from_toml("bot", section) {
        Ok(BotSettings::Ingenious(s)) => IngeniousClient::new(s).expect("fuzz inGenious client"),
        other => panic!("fuzz inGenious settings: {other:?}"),
    }
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(cb) = CLIENT.parse_callback(data) {
        // Exactly one conversation routes a request (later ones are ignored).
        assert_eq!(cb.keys.len(), 1, "{:?}", cb.keys);
        assert!(!cb.keys[0].is_empty());
        voxhook_fuzz::check_replies(&cb.replies);
        for r in &cb.replies {
            assert!(
                r.delivery.is_some(),
                "inGenious reply without delivery: {r:?}"
            );
        }
    }
    if let Ok(id) = voxhook::fuzzing::ingenious_created(data) {
        assert!(!id.trim().is_empty());
    }
});
