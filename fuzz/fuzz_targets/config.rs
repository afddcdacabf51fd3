//! Configuration loading: a TOML file (`config::load_str`, `VOXHOOK__` variables merged)
//! validated into `Settings` (`config::validate`), pure and without files or network.
#![no_main]

use std::collections::HashMap;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The text after the first NUL, if any, is `KEY=value` lines, as the environment.
    let text = String::from_utf8_lossy(data);
    let (toml, env) = text.split_once('\0').unwrap_or((&text, ""));
    let env: HashMap<String, String> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("VOXHOOK__{k}"), v.to_string()))
        .collect();
    let Ok(raw) = voxhook::config::load_str(toml, env) else {
        return;
    };
    if let Ok(settings) = voxhook::config::validate(raw) {
        let _ = settings.warnings(2);
    }
});
