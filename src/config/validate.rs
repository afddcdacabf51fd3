//! Pure validation: [`RawConfig`] → [`Settings`], collecting every error before failing.
//! Each section is read on its own (a type error in one never hides another's problems);
//! backend sections go to the implementation their tag names through the capability's
//! registry. No network and no filesystem access here; files named in the config are opened
//! by the backends when the daemon starts.

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{AudioConfig, CallConfig, DtmfConfig, LanguageConfig, RawConfig, ServerConfig};
use crate::bot::BotSettings;
use crate::call::directory::RoutingSettings;
use crate::component::{self, ConfigError, Errors, Value};
use crate::stt::SttSettings;
use crate::telephony::ProviderSettings;
use crate::tts::TtsSettings;

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
    /// Every registered telephony provider (served when enabled), in registration order.
    pub telephony: Vec<ProviderSettings>,
    /// VAD, endpointing, barge-in, playback.
    pub audio: AudioSettings,
    /// Digit collection.
    pub dtmf: DtmfSettings,
    /// Speech-to-text backend.
    pub stt: SttSettings,
    /// Takes over when `stt` cannot open a session or loses it mid-call (`[stt] fallback`).
    pub stt_fallback: Option<SttSettings>,
    /// Text-to-speech backend.
    pub tts: TtsSettings,
    /// Tried in order when `tts` fails a message before its first audio (`[tts] fallback`).
    pub tts_fallback: Vec<TtsSettings>,
    /// Bot channel.
    pub bot: BotSettings,
    /// Call directory (bot user ids, callback routes).
    pub routing: RoutingSettings,
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
    /// Said once when speech input is lost with no fallback (`None`: nothing).
    pub stt_outage_text: Option<String>,
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
    /// This language's own STT backend (its `stt` keys over `[stt]`), if any.
    pub stt: Option<SttSettings>,
    /// This language's own TTS backend, if any.
    pub tts: Option<TtsSettings>,
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
    /// What the listener refuses before a request reaches a route.
    pub conn_limits: crate::server::accept::ConnLimits,
    /// Native TLS (`None`: plain HTTP).
    pub tls: Option<crate::server::tls::TlsSettings>,
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
    /// Hangover while the caller reads digits (never shorter than `end_of_utterance`).
    pub digits_end_of_utterance: Duration,
    /// Prompt words that announce digits (lower case).
    pub digit_prompt_words: Vec<String>,
    /// Pre-roll kept before detected speech.
    pub pre_roll: Duration,
    /// Longest utterance.
    pub max_utterance: Duration,
    /// Barge-in enabled.
    pub barge_in: bool,
    /// Minimum speech to interrupt playback.
    pub barge_in_min_speech: Duration,
    /// Words a partial must hold to interrupt playback (0: any speech).
    pub barge_in_min_words: usize,
    /// Outbound lead over real time.
    pub playback_lead: Duration,
    /// Silero VAD's second opinion (`None`: off).
    pub silero: Option<crate::audio::silero::SileroSettings>,
    /// The semantic end-of-turn model (`None`: off).
    pub smart_turn: Option<crate::audio::smart_turn::SmartTurnSettings>,
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

impl Settings {
    /// Problems that do not stop the daemon but an operator should see: admitting far more
    /// calls than the embedded speech engines can serve on `cores` cores, and media routes
    /// that take calls from anyone on a non-loopback address.
    pub fn warnings(&self, cores: usize) -> Vec<String> {
        let limit = self.server.max_concurrent_calls;
        let engines =
            std::iter::once(&self.stt).chain(self.languages.iter().filter_map(|l| l.stt.as_ref()));
        let mut out: Vec<String> = engines
            .filter_map(|stt| Some((stt.get().capacity(cores)?, stt)))
            .filter(|(capacity, _)| limit > capacity.saturating_mul(2))
            .map(|(capacity, stt)| {
                format!(
                    "server.max_concurrent_calls = {limit} is far above what {stt:?} serves on \
                     {cores} core(s) (about {capacity} calls); callers would wait for a decoder. \
                     Lower the limit or use a faster STT backend."
                )
            })
            .collect();
        out.extend(self.open_routes());
        out
    }

    /// Media routes reachable beyond this host that accept a request with no credentials at
    /// all: each provider is asked to authenticate an empty upgrade request, so whatever
    /// scheme it uses (signature, token, basic auth) is covered. Raw TCP listeners have no
    /// authentication in their protocol; theirs is a warning when not on loopback.
    fn open_routes(&self) -> Vec<String> {
        let public = self.server.public_url.as_deref();
        self.telephony
            .iter()
            .filter(|p| p.get().enabled())
            .filter_map(|p| p.get().build(public).ok())
            .filter_map(|p| match p.tcp_listen() {
                Some(addr) if !addr.ip().is_loopback() => Some(format!(
                    "telephony.{}: its TCP listener {addr} takes connections from anyone (the \
                     protocol has no authentication); listen on loopback or a private network",
                    p.name()
                )),
                Some(_) => None,
                None if self.server.listen.ip().is_loopback() => None,
                None => p
                    .authenticate(&axum::http::HeaderMap::new(), p.route())
                    .is_ok()
                    .then(|| {
                        format!(
                            "telephony.{}: the media route {} on {} takes calls from anyone: set \
                             its request authentication (signature or token, see its README \
                             section) or listen on loopback behind a proxy that checks it",
                            p.name(),
                            p.route(),
                            self.server.listen
                        )
                    }),
            })
            .collect()
    }
}

/// Top-level sections; anything else is a misspelling.
const SECTIONS: &[&str] = &[
    "server",
    "metrics",
    "call_records",
    "recording",
    "telephony",
    "audio",
    "dtmf",
    "stt",
    "tts",
    "bot",
    "routing",
    "call",
    "languages",
];

/// Reads one common section (its defaults when absent); `None` after a type error.
fn section<T: DeserializeOwned + Default>(
    raw: &mut RawConfig,
    name: &str,
    errs: &mut Errors,
) -> Option<T> {
    match raw.sections.remove(name) {
        None => Some(T::default()),
        Some(v) => match v.try_deserialize::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                component::push_load_error(errs, name, e);
                None
            }
        },
    }
}

/// Validates the whole configuration, returning every error found.
pub fn validate(mut raw: RawConfig) -> Result<Settings, Vec<ConfigError>> {
    let mut errs = Errors::default();
    for name in raw.sections.keys() {
        if !SECTIONS.contains(&name.as_str()) {
            errs.push(
                name,
                format!("unknown section; expected one of {SECTIONS:?}"),
            );
        }
    }
    let server = section(&mut raw, "server", &mut errs).map(|c| server(c, &mut errs));
    let public_url = server.as_ref().and_then(|s| s.public_url.clone());
    let metrics = section(&mut raw, "metrics", &mut errs)
        .zip(server.as_ref())
        .map(|(c, server)| super::ops::metrics(c, server.listen, &mut errs));
    let call_records = section(&mut raw, "call_records", &mut errs).map(super::ops::call_records);
    let recording =
        section(&mut raw, "recording", &mut errs).map(|c| super::ops::recording(c, &mut errs));
    let telephony = telephony(
        raw.sections.remove("telephony"),
        public_url.as_deref(),
        &mut errs,
    );
    let audio = section(&mut raw, "audio", &mut errs).map(|c| audio(c, &mut errs));
    let dtmf = section(&mut raw, "dtmf", &mut errs).map(|c| dtmf(c, &mut errs));
    let mut stt_raw = raw.sections.remove("stt");
    let mut tts_raw = raw.sections.remove("tts");
    let stt_fallback = take_fallback(&mut stt_raw)
        .and_then(|v| fallback_section(v, SttSettings::TAG, "stt.fallback", &mut errs))
        .map(|v| SttSettings::from_section(Some(v), "stt.fallback", None, &mut errs));
    let tts_fallback = tts_fallbacks(take_fallback(&mut tts_raw), &mut errs);
    let stt = SttSettings::from_section(stt_raw.clone(), "stt", None, &mut errs);
    let tts = TtsSettings::from_section(tts_raw.clone(), "tts", None, &mut errs);
    let call = section(&mut raw, "call", &mut errs).map(|c| call(c, &mut errs));
    let languages = section(&mut raw, "languages", &mut errs)
        .map(|table| languages(table, stt_raw.as_ref(), tts_raw.as_ref(), &mut errs));
    let bot = match raw.sections.remove("bot") {
        Some(v) => BotSettings::from_section(Some(v), "bot", None, &mut errs),
        None => {
            errs.push("bot", "missing: configure the bot's webhook channel");
            None
        }
    };
    let routing =
        RoutingSettings::from_section(raw.sections.remove("routing"), "routing", None, &mut errs);
    let all = (
        server,
        metrics,
        call_records,
        recording,
        telephony,
        audio,
        dtmf,
    );
    let rest = (stt, tts, bot, routing, call, languages);
    match (all, rest) {
        (
            (
                Some(server),
                Some(metrics),
                Some(call_records),
                Some(recording),
                Some(telephony),
                Some(audio),
                Some(dtmf),
            ),
            (Some(stt), Some(tts), Some(bot), Some(routing), Some(call), Some(languages)),
        ) if errs.0.is_empty() => Ok(Settings {
            server,
            metrics,
            call_records,
            recording,
            telephony,
            audio,
            dtmf,
            stt,
            stt_fallback: stt_fallback.flatten(),
            tts,
            tts_fallback: tts_fallback.into_iter().flatten().collect(),
            bot,
            routing,
            call,
            languages,
        }),
        _ => Err(errs.0),
    }
}

/// Every registered provider, from its `[telephony.<name>]` table or its defaults.
fn telephony(
    value: Option<Value>,
    public_url: Option<&str>,
    errs: &mut Errors,
) -> Option<Vec<ProviderSettings>> {
    let mut tables = match value.map(Value::into_table).transpose() {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => {
            component::push_load_error(errs, "telephony", e);
            return None;
        }
    };
    let mut out = Vec::new();
    let mut ok = true;
    for &name in ProviderSettings::NAMES {
        let path = format!("telephony.{name}");
        let value = tables.remove(name).unwrap_or_else(component::empty_table);
        match ProviderSettings::named(name, value, &path, public_url, errs) {
            Some(p) => out.push(p),
            None => ok = false,
        }
    }
    for name in tables.keys() {
        errs.push(
            &format!("telephony.{name}"),
            format!(
                "unknown provider; expected one of {:?}",
                ProviderSettings::NAMES
            ),
        );
    }
    ok.then_some(out)
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
    errs.check(
        (100..=120_000).contains(&c.header_timeout_ms),
        "server.header_timeout_ms",
        "must be between 100 and 120000",
    );
    errs.check(
        (1_024..=1_048_576).contains(&c.max_header_bytes),
        "server.max_header_bytes",
        "must be between 1024 and 1048576",
    );
    ServerSettings {
        listen,
        max_concurrent_calls: c.max_concurrent_calls,
        public_url,
        shutdown_grace_period: Duration::from_secs(c.shutdown_grace_period_secs),
        conn_limits: crate::server::accept::ConnLimits {
            header_timeout: Duration::from_millis(c.header_timeout_ms),
            max_header_bytes: c.max_header_bytes,
            max_pending_per_ip: c.max_pending_per_ip,
        },
        tls: c.tls.validate(errs),
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
        c.digits_end_of_utterance_ms == 0
            || (c.end_of_utterance_ms..=10_000).contains(&c.digits_end_of_utterance_ms),
        "audio.digits_end_of_utterance_ms",
        "must be 0 (off) or between end_of_utterance_ms and 10000",
    );
    errs.check(
        c.barge_in_min_words <= 10,
        "audio.barge_in_min_words",
        "must be 0 (any speech) to 10",
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
    let smart_turn = c.smart_turn.validate("audio.smart_turn", errs);
    // The model is asked before the fixed hangover would end the turn, or never.
    errs.check(
        smart_turn
            .as_ref()
            .is_none_or(|t| t.pause < ms(c.end_of_utterance_ms)),
        "audio.smart_turn.pause_ms",
        "must be below audio.end_of_utterance_ms",
    );
    AudioSettings {
        vad_threshold: c.vad_threshold,
        min_speech: ms(c.min_speech_ms),
        end_of_utterance: ms(c.end_of_utterance_ms),
        digits_end_of_utterance: ms(c.digits_end_of_utterance_ms.max(c.end_of_utterance_ms)),
        digit_prompt_words: c
            .digit_prompt_words
            .iter()
            .map(|w| w.trim().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect(),
        pre_roll: ms(c.pre_roll_ms),
        max_utterance: ms(c.max_utterance_ms),
        barge_in: c.barge_in,
        barge_in_min_speech: ms(c.barge_in_min_speech_ms),
        barge_in_min_words: c.barge_in_min_words,
        playback_lead: ms(c.playback_lead_ms),
        silero: c.silero.validate("audio.silero", errs),
        smart_turn,
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
        stt_outage_text: (!c.stt_outage_text.trim().is_empty()).then_some(c.stt_outage_text),
    }
}

fn languages(
    table: std::collections::BTreeMap<String, LanguageConfig>,
    stt_base: Option<&Value>,
    tts_base: Option<&Value>,
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
        let stt = backend_override(
            stt_base,
            l.stt,
            ("model_path", &l.stt_model_path),
            (SttSettings::TAG, SttSettings::DEFAULT),
            &format!("{key}.stt"),
            errs,
        )
        .and_then(|(v, path)| SttSettings::from_section(Some(v), &path, None, errs));
        let tts = backend_override(
            tts_base,
            l.tts,
            ("voice", &l.tts_voice),
            (TtsSettings::TAG, TtsSettings::DEFAULT),
            &format!("{key}.tts"),
            errs,
        )
        .and_then(|(v, path)| TtsSettings::from_section(Some(v), &path, None, errs));
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
            stt,
            tts,
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

/// A language's backend section: its own keys (and a shorthand key) laid over the base
/// section, or its own section alone when it names another backend. `None`: no override.
/// Takes `fallback` out of a backend section (`[stt]`, `[tts]`): it names other backends,
/// so it is none of the primary's keys (nor of a `[languages]` override built on it).
fn take_fallback(section: &mut Option<Value>) -> Option<Value> {
    let mut table = match section.clone().map(Value::into_table).transpose() {
        Ok(t) => t?,
        Err(_) => return None, // the backend's own parse reports the type error
    };
    let fallback = table.remove("fallback");
    if fallback.is_some() {
        *section = Some(Value::new(None, config::ValueKind::Table(table)));
    }
    fallback
}

/// A fallback written as a backend name (`fallback = "whisper"`: its defaults) or as a table
/// with the tag and the backend's keys (`[stt.fallback]`).
fn fallback_section(value: Value, tag: &str, path: &str, errs: &mut Errors) -> Option<Value> {
    match value.kind {
        config::ValueKind::String(name) => {
            let mut t = config::Map::new();
            t.insert(tag.to_string(), Value::from(name));
            Some(Value::new(None, config::ValueKind::Table(t)))
        }
        config::ValueKind::Table(_) => Some(value),
        _ => {
            errs.push(
                path,
                format!("a backend name, or a table with `{tag}` and its keys"),
            );
            None
        }
    }
}

/// `[tts] fallback`: one backend or a list of them, tried in order.
fn tts_fallbacks(value: Option<Value>, errs: &mut Errors) -> Vec<Option<TtsSettings>> {
    let items = match value {
        None => return Vec::new(),
        Some(v) => match v.kind {
            config::ValueKind::Array(items) => items,
            _ => vec![v],
        },
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let path = format!("tts.fallback[{i}]");
            fallback_section(v, TtsSettings::TAG, &path, errs)
                .and_then(|v| TtsSettings::from_section(Some(v), &path, None, errs))
        })
        .collect()
}

fn backend_override(
    base: Option<&Value>,
    own: Option<Value>,
    (short_key, short): (&str, &str),
    (tag, default): (&str, &str),
    path: &str,
    errs: &mut Errors,
) -> Option<(Value, String)> {
    if own.is_none() && short.is_empty() {
        return None;
    }
    let mut own = match own.map(Value::into_table).transpose() {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => {
            component::push_load_error(errs, path, e);
            return None;
        }
    };
    if !short.is_empty() {
        own.insert(short_key.to_string(), Value::from(short));
    }
    let tag_of = |t: Option<&Value>| -> String {
        t.and_then(|v| v.clone().into_table().ok())
            .and_then(|t| t.get(tag).and_then(|v| v.clone().into_string().ok()))
            .unwrap_or_else(|| default.to_string())
    };
    let own_tag = own.get(tag).and_then(|v| v.clone().into_string().ok());
    let own = Value::new(None, config::ValueKind::Table(own));
    let same_backend = own_tag.is_none_or(|t| t == tag_of(base));
    let merged = if same_backend {
        component::overlay(base, own, path, errs)?
    } else {
        own
    };
    Some((merged, path.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{load_str, KoreApi};

    const MINIMAL: &str = r#"
        [bot]
        platform = "kore_v2"
        webhook_url = "https://bots.kore.ai/chatbot/v2/webhook/st-123/hookInstance/ivr-9"
        client_id = "cs-abc"
        client_secret = "s3cret-value"
    "#;

    /// `fallback` names a backend (its defaults) or holds a table, a list for TTS; it is not
    /// one of the primary's keys, nor of a `[languages]` override built on `[stt]`.
    #[test]
    fn fallbacks_are_backends_of_their_own() {
        let toml = format!(
            "{MINIMAL}\n[stt]\nprovider = \"fake\"\nfallback = \"whisper\"\n\
             [tts]\nprovider = \"fake\"\nfallback = [\"flite\", {{ provider = \"fake\", sample_rate = 8000 }}]\n\
             [languages.es]\nstt_language = \"es\"\nstt = {{ transcripts = [\"hola\"] }}"
        );
        let s = validate(load_str(&toml, HashMap::new()).unwrap()).unwrap();
        assert!(matches!(s.stt, SttSettings::Fake(_)));
        assert!(matches!(s.stt_fallback, Some(SttSettings::Whisper(_))));
        assert!(matches!(
            s.tts_fallback.as_slice(),
            [TtsSettings::Flite(_), TtsSettings::Fake(f)] if f.sample_rate == 8_000
        ));
        assert!(matches!(s.languages[0].stt, Some(SttSettings::Fake(_))));
        let bad = format!(
            "{MINIMAL}\n[stt]\nfallback = 3\n[tts]\nfallback = [\"nope\"]\n[call]\nstt_outage_text = \"\""
        );
        let errs = validate(load_str(&bad, HashMap::new()).unwrap()).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["stt.fallback", "tts.fallback[0].provider"],
            "{errs:?}"
        );
    }

    #[test]
    fn minimal_config_is_valid_and_derives_poll_url() {
        let s = validate(load_str(MINIMAL, HashMap::new()).unwrap()).unwrap();
        let BotSettings::Kore(k) = &s.bot else {
            panic!("a Kore [bot]");
        };
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
        let BotSettings::Kore(k) = &s.bot else {
            panic!("a Kore [bot]");
        };
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
        let BotSettings::Kore(k) = &s.bot else {
            panic!("a Kore [bot]");
        };
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
        let BotSettings::Kore(k) = &s.bot else {
            panic!("a Kore [bot]");
        };
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
            "languages.es.tts.voice",
            "languages.es.dtmf",
        ] {
            assert!(keys.contains(&k), "missing {k} in {keys:?}");
        }
    }

    #[test]
    fn unknown_keys_and_sections_are_rejected() {
        let toml = format!("{MINIMAL}\n[audio]\nvad_treshold = 0.4\n[sst]\nx = 1\n");
        let errs = validate(load_str(&toml, HashMap::new()).unwrap()).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["sst", "audio"], "{errs:?}");
        assert!(errs[1].message.contains("vad_treshold"), "{errs:?}");
    }

    /// A section written in part keeps the defaults of everything else, its backend tag
    /// included (README: every key has a default).
    #[test]
    fn partial_backend_sections_keep_their_defaults() {
        let toml = r#"
            [stt]
            model_path = "models/other.bin"
            [tts]
            voice = "rms"
            [bot]
            webhook_url = "https://bots.kore.ai/chatbot/v2/webhook/st-1"
            client_id = "cs"
            client_secret = "s"
        "#;
        let s = validate(load_str(toml, HashMap::new()).unwrap()).unwrap();
        let SttSettings::Whisper(w) = &s.stt else {
            panic!("{:?}", s.stt)
        };
        assert_eq!((w.model_path.as_str(), w.threads), ("models/other.bin", 2));
        let TtsSettings::Flite(f) = &s.tts else {
            panic!("{:?}", s.tts)
        };
        assert_eq!(f.voice, "rms");
        let BotSettings::Kore(k) = &s.bot else {
            panic!("a Kore [bot]");
        };
        assert_eq!(k.api, KoreApi::V2);
    }

    /// Type errors in several sections, an unknown key and a range error: all reported in
    /// one run, each with its key.
    #[test]
    fn type_errors_do_not_hide_other_problems() {
        let toml = r#"
            [server]
            max_concurent_calls = 10
            [audio]
            vad_threshold = "high"
            [bot]
            webhook_url = "https://bots.kore.ai/chatbot/v2/webhook/st-1"
            client_id = "cs"
            client_secret = "s"
            jwt_ttl_secs = 99999
        "#;
        let errs = validate(load_str(toml, HashMap::new()).unwrap()).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["server", "audio.vad_threshold", "bot.jwt_ttl_secs"],
            "{errs:?}"
        );
        assert!(errs[0].message.contains("max_concurent_calls"), "{errs:?}");
        assert!(errs[1].message.contains("invalid type"), "{errs:?}");
    }

    #[test]
    fn admitting_far_more_calls_than_whisper_serves_is_a_warning() {
        let mut s = validate(load_str(MINIMAL, HashMap::new()).unwrap()).unwrap();
        assert!(s.warnings(2).is_empty(), "the default 100 fits 2 cores");
        s.server.max_concurrent_calls = 1_000;
        let w = s.warnings(2);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("max_concurrent_calls = 1000"), "{w:?}");
        assert!(s.warnings(16).is_empty());
        s.stt = SttSettings::from_toml("stt", "provider = \"fake\"").unwrap();
        assert!(s.warnings(2).is_empty(), "a fake STT has no local limit");
    }

    #[test]
    fn a_language_overrides_any_backend_key_or_the_backend() {
        let toml = r#"
            [stt]
            provider = "fake"
            latency_ms = 5
            transcripts = ["hello"]
            [tts]
            provider = "fake"
            ms_per_char = 10
            [languages.es.stt]
            transcripts = ["hola"]
            [languages.es.tts]
            first_chunk_latency_ms = 7
            [languages.de.stt]
            provider = "whisper"
            model_path = "models/de.bin"
            [bot]
            webhook_url = "https://bots.kore.ai/chatbot/v2/webhook/st-1"
            client_id = "cs"
            client_secret = "s"
        "#;
        let s = validate(load_str(toml, HashMap::new()).unwrap()).unwrap();
        let (de, es) = (&s.languages[0], &s.languages[1]);
        let Some(SttSettings::Fake(f)) = &es.stt else {
            panic!("{es:?}")
        };
        assert_eq!(
            (&*f.transcripts, f.latency.as_millis()),
            (&["hola".to_string()][..], 5)
        );
        let Some(TtsSettings::Fake(t)) = &es.tts else {
            panic!("{es:?}")
        };
        assert_eq!(
            (t.per_char.as_millis(), t.first_chunk_latency.as_millis()),
            (10, 7)
        );
        let Some(SttSettings::Whisper(w)) = &de.stt else {
            panic!("{de:?}")
        };
        assert_eq!(w.model_path, "models/de.bin");
        assert!(de.tts.is_none());
    }

    #[test]
    fn missing_bot_is_an_error() {
        let errs = validate(load_str("", HashMap::new()).unwrap()).unwrap_err();
        assert_eq!(errs[0].key, "bot");
    }
}
