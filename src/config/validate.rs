//! Pure validation: [`RawConfig`] → [`Settings`], collecting every error before failing.
//! No network and no filesystem access here; files named in the config are opened by the
//! backends when the daemon starts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::{
    AudioConfig, BotConfig, DtmfConfig, KoreConfig, RawConfig, SensitiveString, ServerConfig,
    SttConfig, TtsConfig, TwilioConfig,
};

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
    /// Kore.ai XO Webhook v2.
    KoreV2(KoreSettings),
}

impl BotSettings {
    /// Spoken when the bot cannot answer a turn.
    pub fn fallback_text(&self) -> &str {
        match self {
            BotSettings::KoreV2(k) => &k.fallback_text,
        }
    }

    /// Longest time closing one session may take, retries included.
    pub fn closure_deadline(&self) -> Duration {
        match self {
            BotSettings::KoreV2(k) => k.closure_deadline,
        }
    }
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

/// Validated Kore v2 settings.
#[derive(Debug, Clone)]
pub struct KoreSettings {
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
    /// Extra `customData` fields.
    pub custom_data: HashMap<String, String>,
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
    let bot = match raw.bot {
        Some(BotConfig::KoreV2(k)) => Some(BotSettings::KoreV2(kore(k, &mut errs))),
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
    TwilioSettings {
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
            errs.check(
                crate::tts::flite::VOICES.contains(&f.voice.as_str()),
                "tts.voice",
                &format!(
                    "unknown flite voice; built in: {:?}",
                    crate::tts::flite::VOICES
                ),
            );
            TtsSettings::Flite { voice: f.voice }
        }
    }
}

fn kore(c: KoreConfig, errs: &mut Errors) -> KoreSettings {
    let webhook_url = c.webhook_url.trim_end_matches('/').to_string();
    let (bot_id, poll_base_url) = match parse_kore_url(&webhook_url) {
        Some(parts) => parts,
        None => {
            errs.push(
                "bot.webhook_url",
                "expected http(s)://host/chatbot/v2/webhook/{botId}[/hookInstance/{id}]",
            );
            (String::new(), String::new())
        }
    };
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
        custom_data: c.custom_data,
    }
}

/// Splits a v2 webhook URL into the bot id and the poll URL prefix.
fn parse_kore_url(url: &str) -> Option<(String, String)> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    const MARK: &str = "/chatbot/v2/webhook/";
    let at = url.find(MARK)?;
    let rest = &url[at + MARK.len()..];
    let bot_id = rest.split('/').next().filter(|s| !s.is_empty())?;
    let tail = &rest[bot_id.len()..];
    if !(tail.is_empty() || tail.starts_with("/hookInstance/")) {
        return None;
    }
    Some((
        bot_id.to_string(),
        format!("{}{MARK}{bot_id}/poll", &url[..at]),
    ))
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
        let BotSettings::KoreV2(k) = &s.bot;
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
        let BotSettings::KoreV2(k) = &s.bot;
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
        let BotSettings::KoreV2(k) = &s.bot;
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
