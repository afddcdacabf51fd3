//! Configuration: loading TOML and environment into a [`RawConfig`] (this file), the raw
//! shape of the sections that belong to no backend, their validation into typed
//! [`Settings`] (`validate.rs`, which hands each backend section to the implementation it
//! names through that capability's registry) and redacted secrets (`secret.rs`).
//!
//! Sources, later wins: built-in defaults, the TOML file, `VOXHOOK__SECTION__KEY` environment
//! variables. Loading and validation touch no network; every problem is reported at once.

mod exposure;
mod ops;
mod secret;
mod validate;

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

pub use crate::bot::kore::config::{
    CallbackSettings, JwtAlgorithm, KoreApi, KoreSettings, MetaTags,
};
pub use crate::bot::BotSettings;
pub use crate::call::directory::RoutingSettings;
pub use crate::component::ConfigError;
pub use crate::stt::whisper::WhisperSettings;
pub use crate::stt::SttSettings;
pub use crate::telephony::twilio::config::{TwilioRestSettings, TwilioSettings};
pub use crate::telephony::ProviderSettings;
pub use crate::tts::TtsSettings;
pub use exposure::{secrets, world_readable_secrets};
pub use ops::{
    CallRecordSettings, CallRecordsConfig, MetricsConfig, MetricsSettings, RecordOutput,
    RecordingConfig, RecordingSettings,
};
pub use secret::SensitiveString;
pub use validate::{
    validate, AudioSettings, CallSettings, DtmfSettings, FillerSettings, LanguageSettings,
    NoInputSettings, Reprompt, ServerSettings, Settings,
};

/// The whole configuration as written by the operator (file and environment merged), still
/// untyped: [`validate`] reads each section on its own, so a type error in one section does
/// not hide the problems of the others, and backend sections go to the implementation their
/// `provider`/`platform`/`backend` key names.
#[derive(Debug, Default)]
pub struct RawConfig {
    /// Top-level sections by name.
    pub sections: std::collections::BTreeMap<String, config::Value>,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `0.0.0.0:8080`.
    pub listen: String,
    /// Calls beyond this are refused with 503 before the WebSocket upgrade.
    pub max_concurrent_calls: usize,
    /// Public base URL the provider dials (`wss://host`); used to check request signatures.
    pub public_url: Option<String>,
    /// How long live calls may continue after SIGTERM before they are ended.
    pub shutdown_grace_period_secs: u64,
    /// Time a client has to send its whole HTTP request head (slowloris).
    pub header_timeout_ms: u64,
    /// Largest HTTP request head (start line and headers); 431 beyond.
    pub max_header_bytes: usize,
    /// Connections one source address may hold before they become calls (0: no limit).
    pub max_pending_per_ip: usize,
    /// `[server.tls]`: native TLS (off when neither path is set).
    pub tls: crate::server::tls::TlsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_concurrent_calls: 100,
            public_url: None,
            shutdown_grace_period_secs: 30,
            header_timeout_ms: 10_000,
            max_header_bytes: 16 * 1024,
            max_pending_per_ip: 64,
            tls: Default::default(),
        }
    }
}

/// `[audio]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// earshot score (0..1) above which a 16 ms frame counts as speech.
    pub vad_threshold: f32,
    /// Speech must last this long before it counts as the caller talking.
    pub min_speech_ms: u64,
    /// Silence that ends an utterance (VAD hangover).
    pub end_of_utterance_ms: u64,
    /// Silence that ends an utterance while the caller reads digits (the bot's last prompt
    /// asked for a number, or a streaming STT's partial ends in one); 0: no difference.
    pub digits_end_of_utterance_ms: u64,
    /// Words in a bot prompt that mean the caller will read out digits (lower case).
    pub digit_prompt_words: Vec<String>,
    /// Audio kept from before speech was detected, so first syllables are not clipped.
    pub pre_roll_ms: u64,
    /// Longest utterance; a monologue is cut and sent at this length.
    pub max_utterance_ms: u64,
    /// Let the caller interrupt the bot by speaking or pressing a key.
    pub barge_in: bool,
    /// Speech during playback must last this long to interrupt.
    pub barge_in_min_speech_ms: u64,
    /// With a streaming STT that sends partials: words the caller must have said before
    /// playback is interrupted (0: the VAD or the backend's speech start is enough).
    pub barge_in_min_words: usize,
    /// How far ahead of real time outbound audio may be sent to the provider.
    pub playback_lead_ms: u64,
    /// `[audio.silero]`: Silero VAD as a second opinion (off by default).
    pub silero: crate::audio::silero::SileroConfig,
    /// `[audio.smart_turn]`: the semantic end-of-turn model (off by default).
    pub smart_turn: crate::audio::smart_turn::SmartTurnConfig,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            vad_threshold: 0.5,
            min_speech_ms: 160,
            end_of_utterance_ms: 700,
            digits_end_of_utterance_ms: 2_000,
            digit_prompt_words: [
                "number",
                "digits",
                "digit",
                "pin",
                "code",
                "zip",
                "postcode",
                "extension",
                "date of birth",
            ]
            .map(String::from)
            .to_vec(),
            pre_roll_ms: 300,
            max_utterance_ms: 30_000,
            barge_in: true,
            barge_in_min_speech_ms: 240,
            barge_in_min_words: 0,
            playback_lead_ms: 200,
            silero: Default::default(),
            smart_turn: Default::default(),
        }
    }
}

/// `[dtmf]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DtmfConfig {
    /// Key that ends digit entry (not sent to the bot); empty for none.
    pub terminator: String,
    /// Digit entry ends after this long without a key.
    pub inter_digit_timeout_ms: u64,
    /// Digit entry ends at this many digits.
    pub max_digits: usize,
}

impl Default for DtmfConfig {
    fn default() -> Self {
        Self {
            terminator: "#".into(),
            inter_digit_timeout_ms: 3_000,
            max_digits: 20,
        }
    }
}

/// `[call]`: what voxhook does on its own around the bot's turns.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallConfig {
    /// WAV played instead of `bot.fallback_text` when a turn fails (e.g. `assets/fallback.wav`).
    pub fallback_audio: String,
    /// Consecutive failed turns after which the call ends politely (0: never).
    pub max_bot_failures: u32,
    /// Spoken before hanging up after `max_bot_failures`.
    pub bot_failure_text: String,
    /// Silence after the bot finished speaking that counts as no input (0: off).
    pub no_input_timeout_ms: u64,
    /// Reprompts before giving up.
    pub no_input_max_reprompts: u32,
    /// `local`: speak `no_input_text`; `bot`: send `no_input_text` to the bot as a turn.
    pub no_input_reprompt: String,
    /// The reprompt (spoken, or sent to the bot).
    pub no_input_text: String,
    /// Spoken before hanging up when the caller stays silent.
    pub no_input_goodbye_text: String,
    /// Play filler audio after this long without a bot reply (0: off).
    pub filler_delay_ms: u64,
    /// Filler WAV, looped; empty: the built-in `assets/filler.wav`.
    pub filler_audio: String,
    /// Longest call (0: unlimited).
    pub max_duration_secs: u64,
    /// Spoken before hanging up at the limit.
    pub max_duration_text: String,
    /// Provider custom parameter that names the call's language (a key of `[languages]`).
    pub language_parameter: String,
    /// Spoken once when speech recognition stops working mid-call and no `stt.fallback`
    /// can take over (empty: say nothing); keys still work.
    pub stt_outage_text: String,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            fallback_audio: String::new(),
            max_bot_failures: 3,
            bot_failure_text: "Sorry, we are having technical difficulties. Please call again \
                               later. Goodbye."
                .into(),
            no_input_timeout_ms: 8_000,
            no_input_max_reprompts: 2,
            no_input_reprompt: "local".into(),
            no_input_text: "Are you still there?".into(),
            no_input_goodbye_text: "I did not hear anything. Goodbye.".into(),
            filler_delay_ms: 1_500,
            filler_audio: String::new(),
            max_duration_secs: 3_600,
            max_duration_text: "We have reached the time limit for this call. Goodbye.".into(),
            stt_outage_text: "Sorry, I can't hear you right now. You can still use your keypad."
                .into(),
            language_parameter: "language".into(),
        }
    }
}

/// `[languages.<code>]`: the code is what the bot receives as `interactiveLanguage`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LanguageConfig {
    /// STT language code (default: the table key).
    pub stt_language: String,
    /// Shorthand for `stt.model_path` (another whisper model for this language).
    pub stt_model_path: String,
    /// Shorthand for `tts.voice`.
    pub tts_voice: String,
    /// Keys laid over `[stt]` for this language (any key of its backend, or another
    /// `provider` with its own keys).
    pub stt: Option<config::Value>,
    /// Keys laid over `[tts]` for this language.
    pub tts: Option<config::Value>,
    /// Saying one of these words switches the call to this language.
    pub keywords: Vec<String>,
    /// Entering these keys (e.g. `*2`, then the terminator) switches to this language.
    pub dtmf: String,
}

/// Errors that stop the configuration from loading at all (before validation).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read or parsed, or a value has the wrong type.
    #[error("cannot load configuration: {0}")]
    Parse(#[from] config::ConfigError),
}

/// Reads the TOML file (if given) and `VOXHOOK__…` variables from `env` into a [`RawConfig`].
/// `env` is injected so tests never mutate the process environment.
pub fn load(file: Option<&Path>, env: HashMap<String, String>) -> Result<RawConfig, LoadError> {
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    finish(builder, env)
}

/// Loads from a TOML string (tests and the demo).
pub fn load_str(toml: &str, env: HashMap<String, String>) -> Result<RawConfig, LoadError> {
    let builder = config::Config::builder()
        .add_source(config::File::from_str(toml, config::FileFormat::Toml));
    finish(builder, env)
}

fn finish(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    env: HashMap<String, String>,
) -> Result<RawConfig, LoadError> {
    let env = config::Environment::with_prefix("VOXHOOK")
        .prefix_separator("__")
        .separator("__")
        // Values stay strings here (a numeric secret must not become a number); serde parses
        // numbers and booleans from them where a field wants one.
        .try_parsing(false)
        .source(Some(env.into_iter().collect()));
    let root = builder.add_source(env).build()?.cache;
    Ok(RawConfig {
        sections: root.into_table()?.into_iter().collect(),
    })
}
