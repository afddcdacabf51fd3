//! Pure validation: [`RawConfig`] → [`Settings`], collecting every error before failing.
//! No network and no filesystem access here; files named in the config are opened by the
//! backends when the daemon starts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::{
    AudioConfig, BotConfig, CallConfig, DtmfConfig, KoreConfig, LanguageConfig, RawConfig,
    SensitiveString, ServerConfig, SttConfig, TtsConfig, TwilioConfig,
};
use crate::bot::template;

/// One problem in the configuration, named by its key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// Dotted key, e.g. `bot.webhook_url`.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// The validated, typed configuration the daemon runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listener and admission.
    pub server: ServerSettings,
    /// Prometheus metrics.
    pub metrics: super::MetricsSettings,
    /// Call records.
    pub call_records: super::CallRecordSettings,
    /// Call recordings.
    pub recording: super::RecordingSettings,
    /// Twilio Media Streams adapter.
    pub twilio: TwilioSettings,
    /// VAD, endpointing, barge-in, playback.
    pub audio: AudioSettings,
    /// Digit collection.
    pub dtmf: DtmfSettings,
    /// Speech-to-text backend.
    pub stt: SttSettings,
    /// Text-to-speech backend.
    pub tts: TtsSettings,
    /// Bot channel.
    pub bot: BotSettings,
    /// Voice behaviours around the bot's turns.
    pub call: CallSettings,
    /// Languages a call can switch to, by code (sorted).
    pub languages: Vec<LanguageSettings>,
}

/// Validated `[call]`.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// WAV spoken instead of the fallback text.
    pub fallback_audio: Option<String>,
    /// Consecutive failed turns that end the call (0: never).
    pub max_bot_failures: u32,
    /// Said before that hang-up.
    pub bot_failure_text: String,
    /// No-input handling, when on.
    pub no_input: Option<NoInputSettings>,
    /// Filler while the bot is slow, when on.
    pub filler: Option<FillerSettings>,
    /// Longest call.
    pub max_duration: Option<Duration>,
    /// Said at the limit.
    pub max_duration_text: String,
    /// Custom parameter naming the language.
    pub language_parameter: String,
}

/// Validated no-input settings.
#[derive(Debug, Clone)]
pub struct NoInputSettings {
    /// Silence that counts.
    pub timeout: Duration,
    /// Reprompts before the goodbye.
    pub max_reprompts: u32,
    /// What a reprompt is.
    pub reprompt: Reprompt,
    /// Said before hanging up.
    pub goodbye_text: String,
}

/// How the caller is reprompted.
#[derive(Debug, Clone, PartialEq)]
pub enum Reprompt {
    /// Speak this text ourselves.
    Local(String),
    /// Send this text to the bot as a `no_input` turn, so it decides.
    Bot(String),
}

/// Validated filler settings.
#[derive(Debug, Clone)]
pub struct FillerSettings {
    /// Wait before the filler starts.
    pub delay: Duration,
    /// WAV path; `None`: the built-in asset.
    pub audio: Option<String>,
}

/// One language a call can use.
#[derive(Debug, Clone)]
pub struct LanguageSettings {
    /// Code sent as `interactiveLanguage` (the table key).
    pub code: String,
    /// STT language.
    pub stt_language: String,
    /// Another STT model, if any.
    pub stt_model_path: Option<String>,
    /// Another TTS voice, if any.
    pub tts_voice: Option<String>,
    /// Spoken words that choose it (lower case).
    pub keywords: Vec<String>,
    /// Keys that choose it.
    pub dtmf: Option<String>,
}

/// Validated `[server]`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Bind address.
    pub listen: SocketAddr,
    /// Admission limit.
    pub max_concurrent_calls: usize,
    /// Public base URL (`wss://host`, no trailing slash).
    pub public_url: Option<String>,
    /// Drain grace period.
    pub shutdown_grace_period: Duration,
}

/// Validated `[telephony.twilio]`.
#[derive(Debug, Clone)]
pub struct TwilioSettings {
    /// Route served.
    pub enabled: bool,
    /// Auth token when signatures are checked.
    pub signature_token: Option<SensitiveString>,
    /// Frame size limit.
    pub max_message_bytes: usize,
    /// Early media buffer bound.
    pub max_early_media_frames: usize,
    /// Custom parameter carrying the caller's number.
    pub caller_parameter: String,
    /// Custom parameter carrying the called number.
    pub called_parameter: String,
    /// REST API access for hang-up and transfer, when configured.
    pub rest: Option<TwilioRestSettings>,
}

/// Twilio REST API access.
#[derive(Debug, Clone)]
pub struct TwilioRestSettings {
    /// Base URL.
    pub api_base_url: String,
    /// Account SID.
    pub account_sid: String,
    /// Auth token.
    pub auth_token: SensitiveString,
    /// Request timeout.
    pub timeout: Duration,
}

/// Validated `[audio]`.
#[derive(Debug, Clone)]
pub struct AudioSettings {
    /// VAD speech threshold.
    pub vad_threshold: f32,
    /// Minimum speech to start an utterance.
    pub min_speech: Duration,
    /// Hangover that ends an utterance.
    pub end_of_utterance: Duration,
    /// Pre-roll kept before detected speech.
    pub pre_roll: Duration,
    /// Longest utterance.
    pub max_utterance: Duration,
    /// Barge-in enabled.
    pub barge_in: bool,
    /// Minimum speech to interrupt playback.
    pub barge_in_min_speech: Duration,
    /// Outbound lead over real time.
    pub playback_lead: Duration,
}

/// Validated `[dtmf]`.
#[derive(Debug, Clone)]
pub struct DtmfSettings {
    /// Terminator key.
    pub terminator: Option<char>,
    /// Inter-digit timeout.
    pub inter_digit_timeout: Duration,
    /// Max digits.
    pub max_digits: usize,
}

/// Validated `[stt]`.
#[derive(Debug, Clone)]
pub enum SttSettings {
    /// whisper.cpp.
    Whisper(WhisperSettings),
}

/// Validated whisper settings.
#[derive(Debug, Clone)]
pub struct WhisperSettings {
    /// Model path.
    pub model_path: String,
    /// Language code.
    pub language: String,
    /// Threads per decode.
    pub threads: usize,
    /// Parallel decodes.
    pub max_parallel_decodes: usize,
}

/// Validated `[tts]`.
#[derive(Debug, Clone)]
pub enum TtsSettings {
    /// flite with a built-in voice.
    Flite {
        /// Voice name.
        voice: String,
    },
}

/// Validated `[bot]`.
#[derive(Debug, Clone)]
pub enum BotSettings {
    /// Kore.ai XO Webhook (v1 or v2).
    Kore(KoreSettings),
}

impl BotSettings {
    /// Spoken when the bot cannot answer a turn.
    pub fn fallback_text(&self) -> &str {
        match self {
            BotSettings::Kore(k) => &k.fallback_text,
        }
    }

    /// Longest time closing one session may take, retries included.
    pub fn closure_deadline(&self) -> Duration {
        match self {
            BotSettings::Kore(k) => k.closure_deadline,
        }
    }

    /// Longest time one turn may take, retries and polls included.
    pub fn turn_deadline(&self) -> Duration {
        match self {
            BotSettings::Kore(k) => k.turn_deadline,
        }
    }

    /// How async callbacks are accepted; `None` in sync mode.
    pub fn callback(&self) -> Option<&CallbackSettings> {
        match self {
            BotSettings::Kore(k) => k.callback.as_ref(),
        }
    }

    /// Template of the bot user id.
    pub fn user_id_template(&self) -> &str {
        match self {
            BotSettings::Kore(k) => &k.user_id_template,
        }
    }
}

/// Which Kore webhook API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KoreApi {
    /// Legacy `/chatbot/hooks/{botId}`.
    V1,
    /// `/chatbot/v2/webhook/{botId}`.
    V2,
}

/// How callbacks are authenticated (async mode).
#[derive(Debug, Clone)]
pub struct CallbackSettings {
    /// Path segment after `/kore/callback/`.
    pub secret: SensitiveString,
    /// Bearer token required as well.
    pub bearer_token: Option<SensitiveString>,
}

/// `metaTags` templates by level (name, template).
#[derive(Debug, Clone, Default)]
pub struct MetaTags {
    /// `userLevelTags`.
    pub user: Vec<(String, String)>,
    /// `sessionLevelTags`.
    pub session: Vec<(String, String)>,
    /// `messageLevelTags`.
    pub message: Vec<(String, String)>,
}

/// JWT signing algorithms Kore accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with the client secret.
    Hs256,
    /// HMAC-SHA512 with the client secret.
    Hs512,
    /// RSA-SHA256 with the operator's private key.
    Rs256,
    /// RSA-SHA512 with the operator's private key.
    Rs512,
}

/// Validated Kore settings.
#[derive(Debug, Clone)]
pub struct KoreSettings {
    /// v1 or v2.
    pub api: KoreApi,
    /// Async callbacks (None: sync).
    pub callback: Option<CallbackSettings>,
    /// v1 greeting turn.
    pub greeting_text: Option<String>,
    /// Bot user id template.
    pub user_id_template: String,
    /// `from.userInfo` templates (sorted by name).
    pub user_info: Vec<(String, String)>,
    /// `metaTags` templates.
    pub meta_tags: MetaTags,
    /// `mergeIdentity: true`.
    pub merge_identity: bool,
    /// `preferredChannelForResponse`.
    pub preferred_channel: Option<String>,
    /// Task names whose completion hangs up.
    pub hangup_tasks: Vec<String>,
    /// Full webhook URL (no trailing slash).
    pub webhook_url: String,
    /// Bot id parsed from the URL (`to.id`).
    pub bot_id: String,
    /// Poll URL prefix: `{host}/chatbot/v2/webhook/{botId}/poll`.
    pub poll_base_url: String,
    /// `appId` claim.
    pub client_id: String,
    /// Secret or PEM key, per `jwt_algorithm`.
    pub signing_key: SensitiveString,
    /// Algorithm.
    pub jwt_algorithm: JwtAlgorithm,
    /// Token lifetime.
    pub jwt_ttl: Duration,
    /// Put `userIdentity` in tokens.
    pub jwt_user_identity: bool,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Poll pause.
    pub poll_interval: Duration,
    /// Longest poll wait per turn.
    pub poll_max_wait: Duration,
    /// Attempts for retryable failures.
    pub max_attempts: u32,
    /// Turn deadline.
    pub turn_deadline: Duration,
    /// Closure deadline.
    pub closure_deadline: Duration,
    /// Fallback prompt.
    pub fallback_text: String,
    /// Extra `customData` templates (sorted by name).
    pub custom_data: Vec<(String, String)>,
}

#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    fn check(&mut self, ok: bool, key: &str, message: &str) {
        if !ok {
            self.push(key, message);
        }
    }
}

/// Validates the whole configuration, returning every error found.
pub fn validate(raw: RawConfig) -> Result<Settings, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let server = server(raw.server, &mut errs);
    let metrics = super::ops::metrics(raw.metrics, &server, &mut errs.0);
    let call_records = super::ops::call_records(raw.call_records);
    let recording = super::ops::recording(raw.recording, &mut errs.0);
    let twilio = twilio(raw.telephony.twilio, server.public_url.is_some(), &mut errs);
    let audio = audio(raw.audio, &mut errs);
    let dtmf = dtmf(raw.dtmf, &mut errs);
    let stt = stt(raw.stt, &mut errs);
    let tts = tts(raw.tts, &mut errs);
    let call = call(raw.call, &mut errs);
    let languages = languages(raw.languages, &mut errs);
    let bot = match raw.bot {
        Some(BotConfig::KoreV2(k)) => Some(BotSettings::Kore(kore(k, KoreApi::V2, &mut errs))),
        Some(BotConfig::KoreV1(k)) => Some(BotSettings::Kore(kore(k, KoreApi::V1, &mut errs))),
        None => {
            errs.push("bot", "missing: configure the bot's webhook channel");
            None
        }
    };
    match bot {
        Some(bot) if errs.0.is_empty() => Ok(Settings {
            server,
            metrics,
            call_records,
            recording,
            twilio,
            audio,
            dtmf,
            stt,
            tts,
            bot,
            call,
            languages,
        }),
        _ => Err(errs.0),
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn server(c: ServerConfig, errs: &mut Errors) -> ServerSettings {
    let listen = c.listen.parse().unwrap_or_else(|_| {
        errs.push(
            "server.listen",
            format!("`{}` is not an address like 0.0.0.0:8080", c.listen),
        );
        SocketAddr::from(([127, 0, 0, 1], 0))
    });
    errs.check(
        c.max_concurrent_calls > 0,
        "server.max_concurrent_calls",
        "must be at least 1",
    );
    let public_url = c.public_url.map(|u| u.trim_end_matches('/').to_string());
    if let Some(u) = &public_url {
        errs.check(
            u.starts_with("wss://") || u.starts_with("ws://"),
            "server.public_url",
            "must start with wss:// (the URL the provider dials)",
        );
    }
    ServerSettings {
        listen,
        max_concurrent_calls: c.max_concurrent_calls,
        public_url,
        shutdown_grace_period: Duration::from_secs(c.shutdown_grace_period_secs),
    }
}

fn twilio(c: TwilioConfig, has_public_url: bool, errs: &mut Errors) -> TwilioSettings {
    if c.validate_signature {
        errs.check(
            !c.auth_token.is_empty(),
            "telephony.twilio.auth_token",
            "required when validate_signature = true",
        );
        errs.check(
            has_public_url,
            "server.public_url",
            "required when telephony.twilio.validate_signature = true",
        );
    }
    errs.check(
        c.max_message_bytes >= 1024,
        "telephony.twilio.max_message_bytes",
        "must be at least 1024",
    );
    let rest = (!c.account_sid.is_empty()).then(|| {
        errs.check(
            !c.auth_token.is_empty(),
            "telephony.twilio.auth_token",
            "required when account_sid is set (REST hang-up and transfer)",
        );
        errs.check(
            c.api_base_url.starts_with("http://") || c.api_base_url.starts_with("https://"),
            "telephony.twilio.api_base_url",
            "must be an http(s) URL",
        );
        TwilioRestSettings {
            api_base_url: c.api_base_url.trim_end_matches('/').to_string(),
            account_sid: c.account_sid.clone(),
            auth_token: c.auth_token.clone(),
            timeout: ms(c.api_timeout_ms.max(100)),
        }
    });
    TwilioSettings {
        rest,
        enabled: c.enabled,
        signature_token: c.validate_signature.then_some(c.auth_token),
        max_message_bytes: c.max_message_bytes,
        max_early_media_frames: c.max_early_media_frames,
        caller_parameter: c.caller_parameter,
        called_parameter: c.called_parameter,
    }
}

fn audio(c: AudioConfig, errs: &mut Errors) -> AudioSettings {
    errs.check(
        (0.0..=1.0).contains(&c.vad_threshold),
        "audio.vad_threshold",
        "must be between 0 and 1",
    );
    errs.check(
        c.end_of_utterance_ms >= 100,
        "audio.end_of_utterance_ms",
        "must be at least 100",
    );
    errs.check(
        c.max_utterance_ms >= 1_000,
        "audio.max_utterance_ms",
        "must be at least 1000",
    );
    errs.check(
        (20..=5_000).contains(&c.playback_lead_ms),
        "audio.playback_lead_ms",
        "must be between 20 and 5000",
    );
    AudioSettings {
        vad_threshold: c.vad_threshold,
        min_speech: ms(c.min_speech_ms),
        end_of_utterance: ms(c.end_of_utterance_ms),
        pre_roll: ms(c.pre_roll_ms),
        max_utterance: ms(c.max_utterance_ms),
        barge_in: c.barge_in,
        barge_in_min_speech: ms(c.barge_in_min_speech_ms),
        playback_lead: ms(c.playback_lead_ms),
    }
}

fn dtmf(c: DtmfConfig, errs: &mut Errors) -> DtmfSettings {
    let mut chars = c.terminator.chars();
    let terminator = chars.next();
    let valid_key = |k: char| k.is_ascii_digit() || matches!(k, '*' | '#' | 'A'..='D');
    errs.check(
        chars.next().is_none() && terminator.is_none_or(valid_key),
        "dtmf.terminator",
        "must be one key (0-9, *, #, A-D) or empty",
    );
    errs.check(c.max_digits > 0, "dtmf.max_digits", "must be at least 1");
    DtmfSettings {
        terminator,
        inter_digit_timeout: ms(c.inter_digit_timeout_ms),
        max_digits: c.max_digits,
    }
}

fn stt(c: SttConfig, errs: &mut Errors) -> SttSettings {
    match c {
        SttConfig::Whisper(w) => {
            errs.check(
                !w.model_path.is_empty(),
                "stt.model_path",
                "must name the ggml model file",
            );
            errs.check(w.threads > 0, "stt.threads", "must be at least 1");
            errs.check(
                w.max_parallel_decodes > 0,
                "stt.max_parallel_decodes",
                "must be at least 1",
            );
            SttSettings::Whisper(WhisperSettings {
                model_path: w.model_path,
                language: w.language,
                threads: w.threads,
                max_parallel_decodes: w.max_parallel_decodes,
            })
        }
    }
}

fn tts(c: TtsConfig, errs: &mut Errors) -> TtsSettings {
    match c {
        TtsConfig::Flite(f) => {
            check_voice(&f.voice, "tts.voice", errs);
            TtsSettings::Flite { voice: f.voice }
        }
    }
}

/// A flite voice must be one of those compiled in.
fn check_voice(voice: &str, key: &str, errs: &mut Errors) {
    errs.check(
        crate::tts::flite::VOICES.contains(&voice),
        key,
        &format!(
            "unknown flite voice; built in: {:?}",
            crate::tts::flite::VOICES
        ),
    );
}

fn kore(c: KoreConfig, api: KoreApi, errs: &mut Errors) -> KoreSettings {
    let webhook_url = c.webhook_url.trim_end_matches('/').to_string();
    let (bot_id, poll_base_url) = match parse_kore_url(&webhook_url, api) {
        Some(parts) => parts,
        None => {
            let shape = match api {
                KoreApi::V2 => "/chatbot/v2/webhook/{botId}",
                KoreApi::V1 => "/chatbot/hooks/{botId}",
            };
            errs.push(
                "bot.webhook_url",
                format!("expected http(s)://host{shape}[/hookInstance/{{id}}]"),
            );
            (String::new(), String::new())
        }
    };
    let callback = match c.mode.as_str() {
        "sync" => None,
        "async" => {
            errs.check(
                c.callback_secret.expose().len() >= 32
                    && c.callback_secret
                        .expose()
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'),
                "bot.callback_secret",
                "async mode needs a random secret of at least 32 characters [A-Za-z0-9_-] \
                 (e.g. `openssl rand -hex 24`)",
            );
            Some(CallbackSettings {
                secret: c.callback_secret,
                bearer_token: (!c.callback_token.is_empty()).then_some(c.callback_token),
            })
        }
        other => {
            errs.push("bot.mode", format!("`{other}` is not `sync` or `async`"));
            None
        }
    };
    let mut templates = |key: &str, map: HashMap<String, String>| {
        let mut v: Vec<(String, String)> = map.into_iter().collect();
        v.sort();
        for (name, tpl) in &v {
            if let Err(e) = template::check(tpl) {
                errs.push(&format!("bot.{key}.{name}"), e);
            }
        }
        v
    };
    let custom_data = templates("custom_data", c.custom_data);
    let user_info = templates("user_info", c.user_info);
    let meta_tags = MetaTags {
        user: templates("meta_tags.user", c.meta_tags.user),
        session: templates("meta_tags.session", c.meta_tags.session),
        message: templates("meta_tags.message", c.meta_tags.message),
    };
    if let Err(e) = template::check(&c.user_id_template) {
        errs.push("bot.user_id_template", e);
    }
    if api == KoreApi::V2 && !c.greeting_text.is_empty() {
        errs.push(
            "bot.greeting_text",
            "v1 only: on v2 the bot greets on ON_CONNECT",
        );
    }
    errs.check(!c.client_id.is_empty(), "bot.client_id", "required");
    let jwt_algorithm = match c.jwt_algorithm.to_ascii_uppercase().as_str() {
        "HS256" => JwtAlgorithm::Hs256,
        "HS512" => JwtAlgorithm::Hs512,
        "RS256" => JwtAlgorithm::Rs256,
        "RS512" => JwtAlgorithm::Rs512,
        other => {
            errs.push(
                "bot.jwt_algorithm",
                format!("`{other}` is not one of HS256, HS512, RS256, RS512"),
            );
            JwtAlgorithm::Hs256
        }
    };
    let signing_key = match jwt_algorithm {
        JwtAlgorithm::Hs256 | JwtAlgorithm::Hs512 => {
            errs.check(
                !c.client_secret.is_empty(),
                "bot.client_secret",
                "required for HS256/HS512 (set VOXHOOK__BOT__CLIENT_SECRET)",
            );
            c.client_secret
        }
        JwtAlgorithm::Rs256 | JwtAlgorithm::Rs512 => {
            errs.check(
                c.private_key.expose().contains("PRIVATE KEY"),
                "bot.private_key",
                "required for RS256/RS512: a PEM private key",
            );
            c.private_key
        }
    };
    errs.check(
        (1..=3600).contains(&c.jwt_ttl_secs),
        "bot.jwt_ttl_secs",
        "must be between 1 and 3600 (Kore rejects tokens valid longer than an hour)",
    );
    errs.check(
        c.request_timeout_ms >= 100,
        "bot.request_timeout_ms",
        "must be at least 100",
    );
    errs.check(
        c.poll_interval_ms >= 10,
        "bot.poll_interval_ms",
        "must be at least 10",
    );
    errs.check(
        c.max_attempts >= 1,
        "bot.max_attempts",
        "must be at least 1",
    );
    errs.check(
        !c.fallback_text.trim().is_empty(),
        "bot.fallback_text",
        "must not be empty",
    );
    KoreSettings {
        api,
        callback,
        greeting_text: (!c.greeting_text.trim().is_empty()).then_some(c.greeting_text),
        user_id_template: c.user_id_template,
        user_info,
        meta_tags,
        merge_identity: c.merge_identity,
        preferred_channel: (!c.preferred_channel_for_response.is_empty())
            .then_some(c.preferred_channel_for_response),
        hangup_tasks: c.hangup_tasks,
        webhook_url,
        bot_id,
        poll_base_url,
        client_id: c.client_id,
        signing_key,
        jwt_algorithm,
        jwt_ttl: Duration::from_secs(c.jwt_ttl_secs),
        jwt_user_identity: c.jwt_user_identity,
        request_timeout: ms(c.request_timeout_ms),
        poll_interval: ms(c.poll_interval_ms),
        poll_max_wait: Duration::from_secs(c.poll_max_wait_secs),
        max_attempts: c.max_attempts,
        turn_deadline: Duration::from_secs(c.turn_deadline_secs),
        closure_deadline: Duration::from_secs(c.closure_deadline_secs),
        fallback_text: c.fallback_text,
        custom_data,
    }
}

fn call(c: CallConfig, errs: &mut Errors) -> CallSettings {
    let no_input = (c.no_input_timeout_ms > 0).then(|| {
        errs.check(
            c.no_input_timeout_ms >= 1_000,
            "call.no_input_timeout_ms",
            "must be 0 (off) or at least 1000",
        );
        errs.check(
            !c.no_input_text.trim().is_empty(),
            "call.no_input_text",
            "must not be empty",
        );
        let reprompt = match c.no_input_reprompt.as_str() {
            "local" => Reprompt::Local(c.no_input_text.clone()),
            "bot" => Reprompt::Bot(c.no_input_text.clone()),
            other => {
                errs.push(
                    "call.no_input_reprompt",
                    format!("`{other}` is not `local` or `bot`"),
                );
                Reprompt::Local(c.no_input_text.clone())
            }
        };
        NoInputSettings {
            timeout: ms(c.no_input_timeout_ms),
            max_reprompts: c.no_input_max_reprompts,
            reprompt,
            goodbye_text: c.no_input_goodbye_text.clone(),
        }
    });
    let filler = (c.filler_delay_ms > 0).then(|| FillerSettings {
        delay: ms(c.filler_delay_ms),
        audio: (!c.filler_audio.is_empty()).then(|| c.filler_audio.clone()),
    });
    errs.check(
        !c.bot_failure_text.trim().is_empty(),
        "call.bot_failure_text",
        "must not be empty",
    );
    errs.check(
        c.max_duration_secs == 0 || c.max_duration_secs >= 10,
        "call.max_duration_secs",
        "must be 0 (unlimited) or at least 10",
    );
    CallSettings {
        fallback_audio: (!c.fallback_audio.is_empty()).then_some(c.fallback_audio),
        max_bot_failures: c.max_bot_failures,
        bot_failure_text: c.bot_failure_text,
        no_input,
        filler,
        max_duration: (c.max_duration_secs > 0).then(|| Duration::from_secs(c.max_duration_secs)),
        max_duration_text: c.max_duration_text,
        language_parameter: c.language_parameter,
    }
}

fn languages(
    table: std::collections::BTreeMap<String, LanguageConfig>,
    errs: &mut Errors,
) -> Vec<LanguageSettings> {
    let mut out: Vec<LanguageSettings> = Vec::new();
    for (code, l) in table {
        let key = format!("languages.{code}");
        errs.check(
            !code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            &key,
            "a language code like `en` or `es-MX`",
        );
        if !l.tts_voice.is_empty() {
            check_voice(&l.tts_voice, &format!("{key}.tts_voice"), errs);
        }
        let dtmf = (!l.dtmf.is_empty()).then_some(l.dtmf);
        if let Some(d) = &dtmf {
            errs.check(
                d.chars()
                    .all(|k| k.is_ascii_digit() || matches!(k, '*' | 'A'..='D')),
                &format!("{key}.dtmf"),
                "keys 0-9, *, A-D (the terminator ends the entry)",
            );
            if let Some(other) = out.iter().find(|o| o.dtmf.as_ref() == Some(d)) {
                errs.push(
                    &format!("{key}.dtmf"),
                    format!("`{d}` already chooses `{}`", other.code),
                );
            }
        }
        out.push(LanguageSettings {
            stt_language: if l.stt_language.is_empty() {
                code.split('-').next().unwrap_or(&code).to_string()
            } else {
                l.stt_language
            },
            code,
            stt_model_path: (!l.stt_model_path.is_empty()).then_some(l.stt_model_path),
            tts_voice: (!l.tts_voice.is_empty()).then_some(l.tts_voice),
            keywords: l
                .keywords
                .iter()
                .map(|k| k.trim().to_lowercase())
                .filter(|k| !k.is_empty())
                .collect(),
            dtmf,
        });
    }
    out
}

/// Splits a webhook URL into the bot id and the poll URL prefix (v2 only; empty for v1).
fn parse_kore_url(url: &str, api: KoreApi) -> Option<(String, String)> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    let mark = match api {
        KoreApi::V2 => "/chatbot/v2/webhook/",
        KoreApi::V1 => "/chatbot/hooks/",
    };
    let at = url.find(mark)?;
    let rest = &url[at + mark.len()..];
    let bot_id = rest.split('/').next().filter(|s| !s.is_empty())?;
    let tail = &rest[bot_id.len()..];
    if !(tail.is_empty() || tail.starts_with("/hookInstance/")) {
        return None;
    }
    let poll = match api {
        KoreApi::V2 => format!("{}{mark}{bot_id}/poll", &url[..at]),
        KoreApi::V1 => String::new(),
    };
    Some((bot_id.to_string(), poll))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const MINIMAL: &str = r#"
        [bot]
        platform = "kore_v2"
        webhook_url = "https://bots.kore.ai/chatbot/v2/webhook/st-123/hookInstance/ivr-9"
        client_id = "cs-abc"
        client_secret = "s3cret-value"
    "#;

    #[test]
    fn minimal_config_is_valid_and_derives_poll_url() {
        let s = validate(load_str(MINIMAL, HashMap::new()).unwrap()).unwrap();
        let BotSettings::Kore(k) = &s.bot;
        assert_eq!(k.bot_id, "st-123");
        assert_eq!(
            k.poll_base_url,
            "https://bots.kore.ai/chatbot/v2/webhook/st-123/poll"
        );
        assert_eq!(s.dtmf.terminator, Some('#'));
        assert!(!format!("{s:?}").contains("s3cret-value"));
    }

    #[test]
    fn env_overrides_the_file() {
        let env = HashMap::from([
            (
                "VOXHOOK__BOT__CLIENT_SECRET".to_string(),
                "from-env".to_string(),
            ),
            (
                "VOXHOOK__SERVER__MAX_CONCURRENT_CALLS".to_string(),
                "7".to_string(),
            ),
            ("VOXHOOK__AUDIO__BARGE_IN".to_string(), "false".to_string()),
            (
                "VOXHOOK__AUDIO__VAD_THRESHOLD".to_string(),
                "0.3".to_string(),
            ),
        ]);
        let s = validate(load_str(MINIMAL, env).unwrap()).unwrap();
        let BotSettings::Kore(k) = &s.bot;
        assert_eq!(k.signing_key.expose(), "from-env");
        assert_eq!(s.server.max_concurrent_calls, 7);
        assert!(!s.audio.barge_in);
        assert_eq!(s.audio.vad_threshold, 0.3);
    }

    #[test]
    fn a_numeric_secret_from_the_environment_stays_a_string() {
        let env = HashMap::from([(
            "VOXHOOK__BOT__CLIENT_SECRET".to_string(),
            "12345".to_string(),
        )]);
        let s = validate(load_str(MINIMAL, env).unwrap()).unwrap();
        let BotSettings::Kore(k) = &s.bot;
        assert_eq!(k.signing_key.expose(), "12345");
    }

    #[test]
    fn reports_every_error_at_once() {
        let toml = r###"
            [server]
            listen = "nowhere"
            max_concurrent_calls = 0
            [audio]
            vad_threshold = 3.0
            [dtmf]
            terminator = "##"
            [bot]
            platform = "kore_v2"
            webhook_url = "ftp://x"
            client_id = ""
            jwt_algorithm = "none"
        "###;
        let errs = validate(load_str(toml, HashMap::new()).unwrap()).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "server.listen",
            "server.max_concurrent_calls",
            "audio.vad_threshold",
            "dtmf.terminator",
            "bot.webhook_url",
            "bot.client_id",
            "bot.jwt_algorithm",
        ] {
            assert!(keys.contains(&k), "missing {k} in {keys:?}");
        }
    }

    #[test]
    fn v1_async_languages_and_templates_validate() {
        let toml = r#"
            [bot]
            platform = "kore_v1"
            webhook_url = "https://bots.kore.ai/chatbot/hooks/st-9/hookInstance/x"
            client_id = "cs-abc"
            client_secret = "s"
            mode = "async"
            callback_secret = "0123456789abcdef0123456789abcdef"
            greeting_text = "hi"
            user_id_template = "{param.account}"
            custom_data = { line = "{called}" }
            [languages.es]
            tts_voice = "rms"
            keywords = ["Español"]
            dtmf = "*2"
        "#;
        let s = validate(load_str(toml, HashMap::new()).unwrap()).unwrap();
        let BotSettings::Kore(k) = &s.bot;
        assert_eq!((k.api, k.bot_id.as_str()), (KoreApi::V1, "st-9"));
        assert!(k.callback.is_some());
        assert_eq!(s.languages[0].stt_language, "es");
        assert_eq!(s.languages[0].keywords, ["español"]);
        assert!(
            !format!("{s:?}").contains("0123456789abcdef"),
            "callback secret redacted"
        );
    }

    #[test]
    fn bad_async_templates_and_languages_are_reported() {
        let toml = r##"
            [bot]
            platform = "kore_v2"
            webhook_url = "https://bots.kore.ai/chatbot/v2/webhook/st-1"
            client_id = "cs"
            client_secret = "s"
            mode = "async"
            callback_secret = "short"
            user_id_template = "{phone}"
            greeting_text = "hi"
            [call]
            no_input_reprompt = "shout"
            [languages.es]
            tts_voice = "nobody"
            dtmf = "#"
        "##;
        let errs = validate(load_str(toml, HashMap::new()).unwrap()).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "bot.callback_secret",
            "bot.user_id_template",
            "bot.greeting_text",
            "call.no_input_reprompt",
            "languages.es.tts_voice",
            "languages.es.dtmf",
        ] {
            assert!(keys.contains(&k), "missing {k} in {keys:?}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let toml = format!("{MINIMAL}\n[audio]\nvad_treshold = 0.4\n");
        assert!(load_str(&toml, HashMap::new()).is_err());
    }

    #[test]
    fn missing_bot_is_an_error() {
        let errs = validate(load_str("", HashMap::new()).unwrap()).unwrap_err();
        assert_eq!(errs[0].key, "bot");
    }
}
