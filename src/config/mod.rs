//! Configuration: the raw TOML/env shape (this file), its validation into typed
//! [`Settings`] (`validate.rs`) and redacted secrets (`secret.rs`).
//!
//! Sources, later wins: built-in defaults, the TOML file, `VOXHOOK__SECTION__KEY` environment
//! variables. Loading and validation touch no network; every problem is reported at once.

mod ops;
mod secret;
mod validate;

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

pub use ops::{
    CallRecordSettings, CallRecordsConfig, MetricsConfig, MetricsSettings, RecordOutput,
    RecordingConfig, RecordingSettings,
};
pub use secret::SensitiveString;
pub use validate::{
    validate, AudioSettings, BotSettings, CallSettings, CallbackSettings, ConfigError,
    DtmfSettings, FillerSettings, JwtAlgorithm, KoreApi, KoreSettings, LanguageSettings, MetaTags,
    NoInputSettings, Reprompt, ServerSettings, Settings, SttSettings, TtsSettings,
    TwilioRestSettings, TwilioSettings, WhisperSettings,
};

/// The whole configuration file as written by the operator.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// HTTP/WebSocket listener and admission.
    #[serde(default)]
    pub server: ServerConfig,
    /// Prometheus metrics.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// One JSON record per finished call.
    #[serde(default)]
    pub call_records: CallRecordsConfig,
    /// Per-call WAV recordings.
    #[serde(default)]
    pub recording: RecordingConfig,
    /// Telephony provider adapters.
    #[serde(default)]
    pub telephony: TelephonyConfig,
    /// VAD, endpointing, barge-in and playback.
    #[serde(default)]
    pub audio: AudioConfig,
    /// Keypad digit collection.
    #[serde(default)]
    pub dtmf: DtmfConfig,
    /// Speech-to-text backend.
    #[serde(default)]
    pub stt: SttConfig,
    /// Text-to-speech backend.
    #[serde(default)]
    pub tts: TtsConfig,
    /// The chatbot's webhook channel.
    pub bot: Option<BotConfig>,
    /// Voice behaviours the webhook channel leaves to us: fallback, no-input, filler, limits.
    #[serde(default)]
    pub call: CallConfig,
    /// Per-language STT/TTS choices, keyed by the language code sent to the bot.
    #[serde(default)]
    pub languages: std::collections::BTreeMap<String, LanguageConfig>,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_concurrent_calls: 100,
            public_url: None,
            shutdown_grace_period_secs: 30,
        }
    }
}

/// `[telephony]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TelephonyConfig {
    /// `[telephony.twilio]`
    #[serde(default)]
    pub twilio: TwilioConfig,
}

/// `[telephony.twilio]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioConfig {
    /// Serve the `/twilio` route.
    pub enabled: bool,
    /// Check `X-Twilio-Signature` on the upgrade (needs `auth_token` and `server.public_url`).
    pub validate_signature: bool,
    /// Twilio account auth token (secret).
    pub auth_token: SensitiveString,
    /// A text frame larger than this ends the call as a protocol error.
    pub max_message_bytes: usize,
    /// Media frames buffered while waiting for `start`; beyond this the call is refused.
    pub max_early_media_frames: usize,
    /// Custom parameter names that carry the caller's and the called number.
    pub caller_parameter: String,
    /// See `caller_parameter`.
    pub called_parameter: String,
    /// Account SID for the REST API (hang-up and transfer); empty: close the stream instead.
    pub account_sid: String,
    /// REST API base URL (tests point it at a local fake).
    pub api_base_url: String,
    /// Timeout of one REST request.
    pub api_timeout_ms: u64,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            validate_signature: false,
            auth_token: SensitiveString::default(),
            max_message_bytes: 64 * 1024,
            max_early_media_frames: 250,
            caller_parameter: "from".into(),
            called_parameter: "to".into(),
            account_sid: String::new(),
            api_base_url: "https://api.twilio.com".into(),
            api_timeout_ms: 5_000,
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
    /// Audio kept from before speech was detected, so first syllables are not clipped.
    pub pre_roll_ms: u64,
    /// Longest utterance; a monologue is cut and sent at this length.
    pub max_utterance_ms: u64,
    /// Let the caller interrupt the bot by speaking or pressing a key.
    pub barge_in: bool,
    /// Speech during playback must last this long to interrupt.
    pub barge_in_min_speech_ms: u64,
    /// How far ahead of real time outbound audio may be sent to the provider.
    pub playback_lead_ms: u64,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            vad_threshold: 0.5,
            min_speech_ms: 160,
            end_of_utterance_ms: 700,
            pre_roll_ms: 300,
            max_utterance_ms: 30_000,
            barge_in: true,
            barge_in_min_speech_ms: 240,
            playback_lead_ms: 200,
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

/// `[stt]`, tagged by `provider`.
#[derive(Debug, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum SttConfig {
    /// Embedded whisper.cpp (offline).
    Whisper(WhisperConfig),
}

impl Default for SttConfig {
    fn default() -> Self {
        Self::Whisper(WhisperConfig::default())
    }
}

/// `[stt] provider = "whisper"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhisperConfig {
    /// ggml model file (made by `scripts/install-model.py`).
    pub model_path: String,
    /// Spoken language code.
    pub language: String,
    /// Threads per decode.
    pub threads: usize,
    /// Decodes running at once across all calls; more wait their turn.
    pub max_parallel_decodes: usize,
}

impl Default for WhisperConfig {
    fn default() -> Self {
        Self {
            model_path: "models/ggml-tiny.en.bin".into(),
            language: "en".into(),
            threads: 2,
            max_parallel_decodes: 1,
        }
    }
}

/// `[tts]`, tagged by `provider`.
#[derive(Debug, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum TtsConfig {
    /// Embedded flite (offline).
    Flite(FliteConfig),
}

impl Default for TtsConfig {
    fn default() -> Self {
        Self::Flite(FliteConfig::default())
    }
}

/// `[tts] provider = "flite"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FliteConfig {
    /// Voice: `slt` (female), `rms` or `awb` (male); all 16 kHz. flite synthesizes one
    /// sentence at a time process-wide (it is not thread-safe).
    pub voice: String,
}

impl Default for FliteConfig {
    fn default() -> Self {
        Self {
            voice: "slt".into(),
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
    /// Another whisper model for this language (default: `[stt] model_path`).
    pub stt_model_path: String,
    /// TTS voice (default: `[tts] voice`).
    pub tts_voice: String,
    /// Saying one of these words switches the call to this language.
    pub keywords: Vec<String>,
    /// Entering these keys (e.g. `*2`, then the terminator) switches to this language.
    pub dtmf: String,
}

/// `[bot]`, tagged by `platform`.
#[derive(Debug, Deserialize)]
#[serde(tag = "platform", rename_all = "snake_case", deny_unknown_fields)]
pub enum BotConfig {
    /// Kore.ai XO Webhook channel, API v2 (events, polling, async callbacks).
    KoreV2(KoreConfig),
    /// Kore.ai XO Webhook channel, legacy API v1 (no events, no polling).
    KoreV1(KoreConfig),
}

/// `[bot.meta_tags]`: Kore `metaTags` by level, name → template.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetaTagsConfig {
    /// `userLevelTags`.
    pub user: HashMap<String, String>,
    /// `sessionLevelTags`.
    pub session: HashMap<String, String>,
    /// `messageLevelTags`.
    pub message: HashMap<String, String>,
}

/// `[bot] platform = "kore_v2"` or `"kore_v1"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KoreConfig {
    /// The channel's full webhook URL, e.g. `https://bots.kore.ai/chatbot/v2/webhook/st-…`
    /// (with `/hookInstance/{id}` for a further instance).
    pub webhook_url: String,
    /// The app's client id (`appId` claim).
    pub client_id: String,
    /// The app's client secret (HS256/HS512).
    #[serde(default)]
    pub client_secret: SensitiveString,
    /// PEM private key (RS256/RS512).
    #[serde(default)]
    pub private_key: SensitiveString,
    /// `HS256`, `HS512`, `RS256` or `RS512`.
    #[serde(default = "default_jwt_algorithm")]
    pub jwt_algorithm: String,
    /// Token lifetime.
    #[serde(default = "default_jwt_ttl_secs")]
    pub jwt_ttl_secs: u64,
    /// Put `userIdentity` (= `from.id`) in the token.
    #[serde(default)]
    pub jwt_user_identity: bool,
    /// Timeout of one HTTP request.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Pause between polls of a `pollId`.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Longest wait for a turn's polled messages.
    #[serde(default = "default_poll_max_wait_secs")]
    pub poll_max_wait_secs: u64,
    /// Attempts for one request when the failure is retryable (429, 503, refused).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Deadline of one turn's request including retries.
    #[serde(default = "default_turn_deadline_secs")]
    pub turn_deadline_secs: u64,
    /// Deadline for delivering `SESSION_CLOSURE`, retries included.
    #[serde(default = "default_closure_deadline_secs")]
    pub closure_deadline_secs: u64,
    /// Spoken when the bot cannot answer a turn.
    #[serde(default = "default_fallback_text")]
    pub fallback_text: String,
    /// Extra `customData` fields (templates, see README) added to every request.
    #[serde(default)]
    pub custom_data: HashMap<String, String>,
    /// `sync` (replies in the response, `pollId` followed) or `async` (replies POSTed to
    /// `/kore/callback/{callback_secret}`).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Secret path segment of the callback URL (async; at least 32 characters).
    #[serde(default)]
    pub callback_secret: SensitiveString,
    /// Bearer token callbacks must carry as well (optional).
    #[serde(default)]
    pub callback_token: SensitiveString,
    /// v1 only: a text turn sent when the call starts, so the bot greets (v1 has no events).
    #[serde(default)]
    pub greeting_text: String,
    /// Bot user id (`from.id`) template; empty result falls back to the call id.
    #[serde(default = "default_user_id_template")]
    pub user_id_template: String,
    /// `from.userInfo` fields (templates).
    #[serde(default)]
    pub user_info: HashMap<String, String>,
    /// `metaTags` (templates).
    #[serde(default)]
    pub meta_tags: MetaTagsConfig,
    /// Sends `mergeIdentity: true`.
    #[serde(default)]
    pub merge_identity: bool,
    /// Sends `preferredChannelForResponse` (empty: not sent).
    #[serde(default)]
    pub preferred_channel_for_response: String,
    /// Hang up when a task with one of these names completes (`endOfTask`).
    #[serde(default)]
    pub hangup_tasks: Vec<String>,
}

fn default_mode() -> String {
    "sync".into()
}
fn default_user_id_template() -> String {
    "{caller}".into()
}
fn default_jwt_algorithm() -> String {
    "HS256".into()
}
const fn default_jwt_ttl_secs() -> u64 {
    60
}
const fn default_request_timeout_ms() -> u64 {
    15_000
}
const fn default_poll_interval_ms() -> u64 {
    500
}
const fn default_poll_max_wait_secs() -> u64 {
    60
}
const fn default_max_attempts() -> u32 {
    4
}
const fn default_turn_deadline_secs() -> u64 {
    20
}
const fn default_closure_deadline_secs() -> u64 {
    10
}
fn default_fallback_text() -> String {
    "Sorry, I am having trouble answering right now. Please try again in a moment.".into()
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
    Ok(builder.add_source(env).build()?.try_deserialize()?)
}
