//! Prometheus metrics: every metric name is a constant here, with one function per event so
//! a call site is one line. Labels take values from closed sets only (end-reason codes, input
//! modes, HTTP status codes, refusal reasons): never a call id, number or text.
//!
//! The recorder is process-global (the `metrics` facade). [`install`] sets it once; in a
//! process where it is not installed (unit tests), the event functions are no-ops.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Gauge: calls with a bot session right now.
pub const CALLS_LIVE: &str = "voxhook_calls_live";
/// Counter: calls that started (the provider's start message arrived).
pub const CALLS_STARTED: &str = "voxhook_calls_started_total";
/// Counter by `reason` (a `CallEndReason` code): calls that ended.
pub const CALLS_ENDED: &str = "voxhook_calls_ended_total";
/// Counter by `reason` (one of [`REFUSAL_REASONS`]): connections refused before the
/// WebSocket upgrade.
pub const CALLS_REFUSED: &str = "voxhook_calls_refused_total";
/// The `reason` labels of [`CALLS_REFUSED`].
pub const REFUSAL_REASONS: &[&str] = &["draining", "capacity", "signature", "routing"];
/// Counter by `mode` (`speech`, `dtmf`): caller turns sent to the bot.
pub const TURNS: &str = "voxhook_turns_total";
/// Counter by `endpoint` (`webhook`, `poll`) and `code` (HTTP status, or `timeout`,
/// `connect_error`, `io_error`): HTTP requests to the bot, one per attempt.
pub const BOT_REQUESTS: &str = "voxhook_bot_requests_total";
/// Counter: caller barge-ins that cleared playback.
pub const BARGE_INS: &str = "voxhook_barge_ins_total";
/// Counter: bot audio frames sent after the provider had played out everything before them
/// (an audible gap inside a message).
pub const OUTBOUND_FRAMES_LATE: &str = "voxhook_outbound_frames_late_total";
/// Counter: caller audio frames dropped because recognition was behind.
pub const INBOUND_FRAMES_DROPPED: &str = "voxhook_inbound_frames_dropped_total";
/// Counter: bot callbacks (asynchronous mode) by `result`: `routed` (delivered to a call of
/// this instance), `forwarded` (to the instance holding the call), `unroutable` (no live
/// call), `rejected` (wrong secret or token), `malformed`.
pub const BOT_CALLBACKS: &str = "voxhook_bot_callbacks_total";
/// The `result` labels of [`BOT_CALLBACKS`].
pub const CALLBACK_RESULTS: &[&str] =
    &["routed", "forwarded", "unroutable", "rejected", "malformed"];
/// Counter by `result` (one of [`FORWARD_RESULTS`]): callbacks a peer instance forwarded to
/// this one (shared routing).
pub const CALLBACKS_FORWARDED_IN: &str = "voxhook_routing_forwarded_in_total";
/// The `result` labels of [`CALLBACKS_FORWARDED_IN`].
pub const FORWARD_RESULTS: &[&str] = &["routed", "unroutable", "malformed"];
/// Counter by `result` (`closed`, `failed`): bot sessions of a dead peer instance this one
/// closed (shared routing).
pub const ORPHANS_CLOSED: &str = "voxhook_orphan_sessions_closed_total";
/// Gauge: 1 while the shared call directory (Redis) is reachable, 0 while it is not; always
/// 1 with local routing.
pub const ROUTING_UP: &str = "voxhook_routing_up";
/// The `endpoint` labels of [`BOT_REQUESTS`].
const BOT_ENDPOINTS: &[&str] = &["webhook", "poll"];
/// The non-HTTP `code` labels of [`BOT_REQUESTS`].
const TRANSPORT_CODES: &[&str] = &["timeout", "connect_error", "io_error"];
/// Counter: call records that could not be written.
pub const CALL_RECORDS_FAILED: &str = "voxhook_call_records_failed_total";
/// Counter by `backend` (an STT provider name) and `result` (one of [`STT_SESSION_RESULTS`]):
/// sessions of remote STT backends.
pub const STT_SESSIONS: &str = "voxhook_stt_sessions_total";
/// The `result` labels of [`STT_SESSIONS`].
pub const STT_SESSION_RESULTS: &[&str] = &["opened", "failed", "reconnected"];
/// Counter by `backend` and `kind` (one of [`REMOTE_ERROR_KINDS`]): failures of remote STT
/// backends.
pub const STT_ERRORS: &str = "voxhook_stt_errors_total";
/// The `kind` labels of [`STT_ERRORS`] and [`TTS_ERRORS`].
pub const REMOTE_ERROR_KINDS: &[&str] = &[
    "connect",
    "timeout",
    "auth",
    "http",
    "protocol",
    "disconnect",
];
/// Counter by `backend` (a TTS provider name) and `kind` (one of [`REMOTE_ERROR_KINDS`]):
/// failures of remote TTS backends.
pub const TTS_ERRORS: &str = "voxhook_tts_errors_total";
/// Counter by `reason` (one of [`GUARD_REASONS`]): final transcripts changed before they
/// reached the bot because part or all of the text was invented (`stt::guard`).
pub const STT_GUARDED: &str = "voxhook_stt_transcripts_guarded_total";
/// The `reason` labels of [`STT_GUARDED`]: a repeat loop trimmed, text longer than its audio
/// could hold dropped, whisper's no-speech probability high (dropped), or Silero VAD heard
/// no speech in the utterance (`[audio.silero] trim_utterances`; dropped before any decode).
pub const GUARD_REASONS: &[&str] = &["repeat", "rate", "no_speech", "silero"];
/// Counter by `result` (one of [`SILERO_BARGE_IN_RESULTS`]): VAD barge-ins Silero was asked
/// to confirm (`[audio.silero] confirm_barge_in`).
pub const SILERO_BARGE_INS: &str = "voxhook_silero_barge_ins_total";
/// The `result` labels of [`SILERO_BARGE_INS`]: it heard speech (the bot is interrupted), it
/// did not (playback goes on), or it could not answer (busy or failed; the VAD decides).
pub const SILERO_BARGE_IN_RESULTS: &[&str] = &["confirmed", "rejected", "busy"];
/// Counter by `result` (one of [`SILERO_UTTERANCE_RESULTS`]): utterances Silero trimmed
/// before an utterance STT (`[audio.silero] trim_utterances`).
pub const SILERO_UTTERANCES: &str = "voxhook_silero_utterances_total";
/// The `result` labels of [`SILERO_UTTERANCES`]: sent whole, trimmed, dropped (no speech;
/// also counted in [`STT_GUARDED`] as `silero`), or sent untrimmed (busy or failed).
pub const SILERO_UTTERANCE_RESULTS: &[&str] = &["kept", "trimmed", "dropped", "busy"];
/// Counter by `result` (one of [`SMART_TURN_RESULTS`]): pauses the end-of-turn model was
/// asked about (`[audio.smart_turn]`).
pub const SMART_TURN_DECISIONS: &str = "voxhook_smart_turn_decisions_total";
/// The `result` labels of [`SMART_TURN_DECISIONS`]: the turn ends after the short hangover,
/// waits for the long one, or the model could not answer (its queue was full, or it failed;
/// the fixed hangover applies).
pub const SMART_TURN_RESULTS: &[&str] = &["complete", "incomplete", "busy", "failed"];
/// Counter by `backend` (the STT provider that failed): calls whose STT session could not
/// open or was lost, handed to `[stt] fallback`.
pub const STT_FALLBACKS: &str = "voxhook_stt_fallbacks_total";
/// Histogram by `backend`: a remote STT's end of speech → final transcript (as the backend
/// measures it: audio streamed after the last word, or the request's round trip).
pub const STT_FINAL_LATENCY: &str = "voxhook_stt_final_latency_seconds";
/// Histogram: whisper decode time of one utterance.
pub const STT_DURATION: &str = "voxhook_stt_duration_seconds";
/// Counter by `reason` (one of [`CONNECTION_REFUSAL_REASONS`]): connections the listener
/// closed before any request reached a route.
pub const CONNECTIONS_REFUSED: &str = "voxhook_connections_refused_total";
/// The `reason` labels of [`CONNECTIONS_REFUSED`]: too many pending connections from one
/// address (`[server] max_pending_per_ip`), or a request head not sent within
/// `header_timeout_ms`.
pub const CONNECTION_REFUSAL_REASONS: &[&str] = &["per_ip", "header_timeout"];
/// Histogram: CPU time of one end-of-turn decision (front end and model, on its thread).
pub const SMART_TURN_CPU: &str = "voxhook_smart_turn_cpu_seconds";
/// Histogram: time an utterance waited for a free decoder before its decode started.
pub const STT_QUEUE_WAIT: &str = "voxhook_stt_queue_wait_seconds";
/// Histogram: turn (or `ON_CONNECT`) sent → first bot message received.
pub const BOT_REPLY_DURATION: &str = "voxhook_bot_reply_duration_seconds";
/// Histogram by `backend`: synthesis start → first TTS audio chunk, per message.
pub const TTS_FIRST_AUDIO: &str = "voxhook_tts_first_audio_seconds";
/// Histogram: caller's end of speech → first audio frame of the reply sent.
pub const RESPONSE_LATENCY: &str = "voxhook_response_latency_seconds";

/// Histogram by `direction` (one of [`FRAME_DIRECTIONS`]): time the media socket loop spends
/// on one WebSocket message: decoding a provider message (`inbound`) or encoding a command
/// (`outbound`).
pub const FRAME_HANDLING: &str = "voxhook_frame_handling_seconds";
/// The `direction` labels of [`FRAME_HANDLING`].
pub const FRAME_DIRECTIONS: &[&str] = &["inbound", "outbound"];

/// Histogram buckets in seconds: from a fast TTS chunk (tens of ms) to a slow bot (30 s).
const BUCKETS: &[f64] = &[
    0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
];

/// [`FRAME_HANDLING`] buckets in seconds: a few microseconds per message normally, up to
/// 10 ms when the runtime is starved.
const FRAME_BUCKETS: &[f64] = &[
    2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle)
/// and registers every metric's description.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = builder()
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("A metrics recorder was already installed; /metrics stays empty.");
            }
            describe();
            register_all();
            // Histogram samples pile up between scrapes until upkeep folds them in; a plain
            // thread keeps that bounded whatever runtime (or none) is running.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "Metrics upkeep thread not started.");
            }
            handle
        })
        .clone()
}

/// The exporter with this module's bucket layouts.
fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets(BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(FRAME_HANDLING.into()), FRAME_BUCKETS)
}

/// Counters and their help texts.
const COUNTERS: &[(&str, &str)] = &[
    (CALLS_STARTED, "Calls whose media stream started."),
    (CALLS_ENDED, "Calls that ended, by end reason code."),
    (
        CALLS_REFUSED,
        "Media connections refused before the upgrade, by reason.",
    ),
    (TURNS, "Caller turns sent to the bot, by input mode."),
    (
        BOT_REQUESTS,
        "HTTP requests (attempts) to the bot, by endpoint and status code.",
    ),
    (BARGE_INS, "Caller barge-ins that cleared bot playback."),
    (
        OUTBOUND_FRAMES_LATE,
        "Bot audio frames sent after the provider ran out of audio mid-message.",
    ),
    (
        INBOUND_FRAMES_DROPPED,
        "Caller audio frames dropped because recognition was behind.",
    ),
    (
        BOT_CALLBACKS,
        "Bot callbacks (async mode) by result: routed, forwarded, unroutable, rejected, malformed.",
    ),
    (
        CALLBACKS_FORWARDED_IN,
        "Bot callbacks forwarded here by a peer instance, by result: routed, unroutable, malformed.",
    ),
    (
        ORPHANS_CLOSED,
        "Bot sessions of a dead peer instance closed here, by result: closed, failed.",
    ),
    (
        CALL_RECORDS_FAILED,
        "Call records that could not be written.",
    ),
    (
        STT_SESSIONS,
        "Remote STT sessions by backend and result: opened, failed, reconnected.",
    ),
    (STT_ERRORS, "Remote STT failures by backend and kind."),
    (TTS_ERRORS, "Remote TTS failures by backend and kind."),
    (
        STT_FALLBACKS,
        "Calls whose STT session failed and the fallback STT took over, by failed backend.",
    ),
    (
        STT_GUARDED,
        "Final transcripts trimmed or dropped as invented, by reason: repeat, rate, no_speech, silero.",
    ),
    (
        SILERO_BARGE_INS,
        "VAD barge-ins Silero VAD was asked to confirm, by result: confirmed, rejected, busy.",
    ),
    (
        SILERO_UTTERANCES,
        "Utterances Silero VAD trimmed before STT, by result: kept, trimmed, dropped, busy.",
    ),
    (
        CONNECTIONS_REFUSED,
        "Connections closed before any request reached a route, by reason: per_ip, header_timeout.",
    ),
    (
        SMART_TURN_DECISIONS,
        "Pauses the end-of-turn model decided, by result: complete, incomplete, busy, failed.",
    ),
];

/// Histograms (all in seconds) and their help texts.
const HISTOGRAMS: &[(&str, &str)] = &[
    (STT_DURATION, "Speech recognition time per utterance."),
    (
        STT_QUEUE_WAIT,
        "Time an utterance waited for a free decoder before recognition started.",
    ),
    (
        BOT_REPLY_DURATION,
        "Request sent to the bot until its first message arrived.",
    ),
    (
        RESPONSE_LATENCY,
        "Caller's end of speech until the first frame of the reply was sent.",
    ),
    (
        SMART_TURN_CPU,
        "CPU time of one end-of-turn decision by the smart-turn model.",
    ),
];

fn describe() {
    describe_gauge!(CALLS_LIVE, "Calls with a bot session right now.");
    describe_gauge!(
        ROUTING_UP,
        "1 while the shared call directory is reachable (always 1 with local routing)."
    );
    for &(name, help) in COUNTERS {
        describe_counter!(name, help);
    }
    for &(name, help) in HISTOGRAMS {
        describe_histogram!(name, metrics::Unit::Seconds, help);
    }
    describe_histogram!(
        STT_FINAL_LATENCY,
        metrics::Unit::Seconds,
        "Remote STT: end of speech until the final transcript, by backend."
    );
    describe_histogram!(
        TTS_FIRST_AUDIO,
        metrics::Unit::Seconds,
        "Synthesis start until the first TTS audio chunk, per message, by backend (clip: recorded audio)."
    );
    describe_histogram!(
        FRAME_HANDLING,
        metrics::Unit::Seconds,
        "Media socket loop time per WebSocket message, by direction: decode (inbound) or encode (outbound)."
    );
}

/// Creates every series at 0 (each label from its closed set), so a fresh daemon exposes
/// them all: `rate()` and `increase()` would miss the first event of a series that appears
/// only when it first increments.
fn register_all() {
    gauge!(CALLS_LIVE).set(0.0);
    counter!(CALLS_STARTED).absolute(0);
    for reason in crate::call::CallEndReason::ALL {
        counter!(CALLS_ENDED, "reason" => reason.code()).absolute(0);
    }
    for &reason in REFUSAL_REASONS {
        counter!(CALLS_REFUSED, "reason" => reason).absolute(0);
    }
    for mode in crate::bot::InputMode::ALL {
        counter!(TURNS, "mode" => mode.as_str()).absolute(0);
    }
    let codes = STATUS_LABELS.iter().map(|(_, l)| *l);
    let codes = codes.chain(STATUS_CLASSES.iter().copied());
    for code in codes.chain(TRANSPORT_CODES.iter().copied()) {
        for &endpoint in BOT_ENDPOINTS {
            counter!(BOT_REQUESTS, "endpoint" => endpoint, "code" => code).absolute(0);
        }
    }
    for name in [
        BARGE_INS,
        OUTBOUND_FRAMES_LATE,
        INBOUND_FRAMES_DROPPED,
        CALL_RECORDS_FAILED,
    ] {
        counter!(name).absolute(0);
    }
    for &result in CALLBACK_RESULTS {
        counter!(BOT_CALLBACKS, "result" => result).absolute(0);
    }
    for &result in FORWARD_RESULTS {
        counter!(CALLBACKS_FORWARDED_IN, "result" => result).absolute(0);
    }
    for result in ["closed", "failed"] {
        counter!(ORPHANS_CLOSED, "result" => result).absolute(0);
    }
    for &reason in GUARD_REASONS {
        counter!(STT_GUARDED, "reason" => reason).absolute(0);
    }
    for &result in SILERO_BARGE_IN_RESULTS {
        counter!(SILERO_BARGE_INS, "result" => result).absolute(0);
    }
    for &result in SILERO_UTTERANCE_RESULTS {
        counter!(SILERO_UTTERANCES, "result" => result).absolute(0);
    }
    for &reason in CONNECTION_REFUSAL_REASONS {
        counter!(CONNECTIONS_REFUSED, "reason" => reason).absolute(0);
    }
    for &result in SMART_TURN_RESULTS {
        counter!(SMART_TURN_DECISIONS, "result" => result).absolute(0);
    }
    gauge!(ROUTING_UP).set(1.0);
    for &(name, _) in HISTOGRAMS {
        // Registering is enough: the exporter renders an empty histogram's buckets at 0.
        let _ = histogram!(name);
    }
    for &direction in FRAME_DIRECTIONS {
        let _ = histogram!(FRAME_HANDLING, "direction" => direction);
    }
    for &backend in crate::stt::SttSettings::NAMES {
        for &result in STT_SESSION_RESULTS {
            counter!(STT_SESSIONS, "backend" => backend, "result" => result).absolute(0);
        }
        for &kind in REMOTE_ERROR_KINDS {
            counter!(STT_ERRORS, "backend" => backend, "kind" => kind).absolute(0);
        }
        let _ = histogram!(STT_FINAL_LATENCY, "backend" => backend);
        counter!(STT_FALLBACKS, "backend" => backend).absolute(0);
    }
    for &backend in crate::tts::TtsSettings::NAMES {
        for &kind in REMOTE_ERROR_KINDS {
            counter!(TTS_ERRORS, "backend" => backend, "kind" => kind).absolute(0);
        }
        let _ = histogram!(TTS_FIRST_AUDIO, "backend" => backend);
    }
    let _ = histogram!(TTS_FIRST_AUDIO, "backend" => crate::call::speaker::CLIP);
}

/// Counts one live call until the returned guard drops.
#[must_use = "the call counts as live until the guard drops"]
pub fn call_started() -> LiveCall {
    counter!(CALLS_STARTED).increment(1);
    gauge!(CALLS_LIVE).increment(1.0);
    LiveCall(())
}

/// Keeps a call in [`CALLS_LIVE`] while it exists.
#[derive(Debug)]
pub struct LiveCall(());

impl Drop for LiveCall {
    fn drop(&mut self) {
        gauge!(CALLS_LIVE).decrement(1.0);
    }
}

/// A call ended with this reason code.
pub fn call_ended(reason: &'static str) {
    counter!(CALLS_ENDED, "reason" => reason).increment(1);
}

/// A connection was refused before the upgrade (`draining`, `capacity`, `signature`).
pub fn call_refused(reason: &'static str) {
    counter!(CALLS_REFUSED, "reason" => reason).increment(1);
}

/// A caller turn went to the bot (`speech` or `dtmf`).
pub fn turn_sent(mode: &'static str) {
    counter!(TURNS, "mode" => mode).increment(1);
}

/// One HTTP attempt to the bot (`endpoint`: `webhook` or `poll`) finished with `res`.
pub fn bot_request(endpoint: &'static str, res: &Result<reqwest::Response, reqwest::Error>) {
    let code = match res {
        Ok(resp) => status_label(resp.status().as_u16()),
        Err(e) if e.is_timeout() => "timeout",
        Err(e) if e.is_connect() => "connect_error",
        Err(_) => "io_error",
    };
    counter!(BOT_REQUESTS, "endpoint" => endpoint, "code" => code).increment(1);
}

/// Statuses labelled exactly; others by class ([`STATUS_CLASSES`]).
const STATUS_LABELS: &[(u16, &str)] = &[
    (200, "200"),
    (201, "201"),
    (202, "202"),
    (204, "204"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (408, "408"),
    (429, "429"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];
/// Labels of the statuses not in [`STATUS_LABELS`].
const STATUS_CLASSES: &[&str] = &["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The status as a static label: a bounded set, so no allocation and no unbounded values.
fn status_label(status: u16) -> &'static str {
    if let Some((_, label)) = STATUS_LABELS.iter().find(|(s, _)| *s == status) {
        return label;
    }
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The caller barged in.
pub fn barge_in() {
    counter!(BARGE_INS).increment(1);
}

/// A bot frame went out after the provider had run dry mid-message.
pub fn outbound_frame_late() {
    counter!(OUTBOUND_FRAMES_LATE).increment(1);
}

/// A caller frame was dropped before recognition.
pub fn inbound_frame_dropped() {
    counter!(INBOUND_FRAMES_DROPPED).increment(1);
}

/// A bot callback was handled (asynchronous mode); `result` is one of the fixed set above.
pub fn bot_callback(result: &'static str) {
    counter!(BOT_CALLBACKS, "result" => result).increment(1);
}

/// A callback forwarded by a peer was handled; `result` is one of [`FORWARD_RESULTS`].
pub fn callback_forwarded_in(result: &'static str) {
    counter!(CALLBACKS_FORWARDED_IN, "result" => result).increment(1);
}

/// A dead peer's bot session was closed here (`ok`) or could not be.
pub fn orphan_closed(ok: bool) {
    counter!(ORPHANS_CLOSED, "result" => if ok { "closed" } else { "failed" }).increment(1);
}

/// Whether the shared call directory is reachable.
pub fn routing_up(up: bool) {
    gauge!(ROUTING_UP).set(if up { 1.0 } else { 0.0 });
}

/// A call record could not be written.
pub fn call_record_failed() {
    counter!(CALL_RECORDS_FAILED).increment(1);
}

/// One utterance took `d` to recognise.
pub fn stt_duration(d: Duration) {
    histogram!(STT_DURATION).record(d.as_secs_f64());
}

/// A remote STT session of `backend` was opened, failed to open or reconnected (`result`,
/// one of [`STT_SESSION_RESULTS`]).
pub fn stt_session(backend: &'static str, result: &'static str) {
    counter!(STT_SESSIONS, "backend" => backend, "result" => result).increment(1);
}

/// A remote STT backend failed (`kind`, one of [`REMOTE_ERROR_KINDS`]).
pub fn stt_error(backend: &'static str, kind: &'static str) {
    counter!(STT_ERRORS, "backend" => backend, "kind" => kind).increment(1);
}

/// The call's STT session on `backend` failed; the fallback STT took over.
pub fn stt_fallback(backend: &'static str) {
    counter!(STT_FALLBACKS, "backend" => backend).increment(1);
}

/// A final transcript was trimmed or dropped as invented (`reason`, one of
/// [`GUARD_REASONS`]).
pub fn stt_guarded(reason: &'static str) {
    counter!(STT_GUARDED, "reason" => reason).increment(1);
}

/// Silero answered a barge-in candidate (`result`, one of [`SILERO_BARGE_IN_RESULTS`]).
pub fn silero_barge_in(result: &'static str) {
    counter!(SILERO_BARGE_INS, "result" => result).increment(1);
}

/// Silero judged an utterance (`result`, one of [`SILERO_UTTERANCE_RESULTS`]).
pub fn silero_utterance(result: &'static str) {
    counter!(SILERO_UTTERANCES, "result" => result).increment(1);
}

/// The listener closed a connection before any route saw it (`reason`, one of
/// [`CONNECTION_REFUSAL_REASONS`]).
pub fn connection_refused(reason: &'static str) {
    counter!(CONNECTIONS_REFUSED, "reason" => reason).increment(1);
}

/// The end-of-turn model answered a pause (`result`, one of [`SMART_TURN_RESULTS`]).
pub fn smart_turn_decision(result: &'static str) {
    counter!(SMART_TURN_DECISIONS, "result" => result).increment(1);
}

/// One end-of-turn decision cost `cpu`.
pub fn smart_turn_cpu(cpu: std::time::Duration) {
    histogram!(SMART_TURN_CPU).record(cpu.as_secs_f64());
}

/// A remote TTS backend failed (`kind`, one of [`REMOTE_ERROR_KINDS`]).
pub fn tts_error(backend: &'static str, kind: &'static str) {
    counter!(TTS_ERRORS, "backend" => backend, "kind" => kind).increment(1);
}

/// `backend`'s final transcript came `d` after the end of speech.
pub fn stt_final_latency(backend: &'static str, d: Duration) {
    histogram!(STT_FINAL_LATENCY, "backend" => backend).record(d.as_secs_f64());
}

/// One utterance waited `d` for a decoder before its recognition started.
pub fn stt_queue_wait(d: Duration) {
    histogram!(STT_QUEUE_WAIT).record(d.as_secs_f64());
}

/// The bot's first message came `d` after the request.
pub fn bot_reply_duration(d: Duration) {
    histogram!(BOT_REPLY_DURATION).record(d.as_secs_f64());
}

/// TTS produced its first chunk `d` after synthesis started.
pub fn tts_first_audio(backend: &'static str, d: Duration) {
    histogram!(TTS_FIRST_AUDIO, "backend" => backend).record(d.as_secs_f64());
}

/// The reply's first frame went out `d` after the caller stopped speaking.
pub fn response_latency(d: Duration) {
    histogram!(RESPONSE_LATENCY).record(d.as_secs_f64());
}

/// One connection's handle on [`FRAME_HANDLING`] for one direction, resolved once so that a
/// frame costs one sample push and no registry lookup.
#[derive(Clone)]
pub struct FrameTimer(metrics::Histogram);

impl FrameTimer {
    /// One message took `d` to decode or encode.
    pub fn record(&self, d: Duration) {
        self.0.record(d.as_secs_f64());
    }
}

/// The [`FrameTimer`] for `direction` (`inbound` or `outbound`).
pub fn frame_timer(direction: &'static str) -> FrameTimer {
    FrameTimer(histogram!(FRAME_HANDLING, "direction" => direction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_bounded() {
        let labels: std::collections::HashSet<_> = (0..=1000).map(status_label).collect();
        assert!(labels.len() < 25, "{labels:?}");
        assert_eq!(status_label(429), "429");
        assert_eq!(status_label(418), "4xx");
        assert_eq!(status_label(599), "5xx");
    }

    #[test]
    fn exposition_uses_prometheus_names_and_histograms() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            call_ended("caller.hangup");
            turn_sent("dtmf");
            stt_duration(Duration::from_millis(300));
            frame_timer("inbound").record(Duration::from_micros(30));
        });
        let text = handle.render();
        assert!(
            text.contains("voxhook_calls_ended_total{reason=\"caller.hangup\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("voxhook_turns_total{mode=\"dtmf\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("voxhook_stt_duration_seconds_bucket{le=\"0.5\"} 1"),
            "{text}"
        );
        assert!(text.contains("# HELP voxhook_turns_total"), "{text}");
        // The frame histogram has its own fine buckets; the others keep the coarse ones.
        assert!(
            text.contains(
                "voxhook_frame_handling_seconds_bucket{direction=\"inbound\",le=\"0.00005\"} 1"
            ),
            "{text}"
        );
        assert!(
            !text.contains("voxhook_stt_duration_seconds_bucket{le=\"0.00005\"}"),
            "{text}"
        );
    }

    #[test]
    fn stt_queue_wait_is_a_described_histogram() {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            stt_queue_wait(Duration::from_millis(200));
        });
        let text = handle.render();
        assert!(
            text.contains("# HELP voxhook_stt_queue_wait_seconds "),
            "{text}"
        );
        assert!(
            text.contains("voxhook_stt_queue_wait_seconds_bucket{le=\"0.25\"} 1"),
            "{text}"
        );
    }
}
