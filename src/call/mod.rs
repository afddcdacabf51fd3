//! Call orchestration: one isolated set of tasks per call under its own cancellation token.
//! `handle_socket` waits for the provider's start (buffering early media), then hands the call
//! to the [`session`] actor, which owns all call state and drives the pure turn logic in
//! [`state`]. The listener (STT), speaker (TTS) and bot worker are helper tasks.

pub mod digits;
pub mod directory;
pub mod end_reason;
pub mod listener;
pub mod record;
pub mod recording;
pub mod session;
pub mod speaker;
pub mod state;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::audio::AudioFrame;
use crate::bot::{template, BotChannel, BotSession, BOT_REPLY_CAPACITY};
use crate::config::Settings;
use crate::stt::SpeechToText;
use crate::telephony::ws::{self, LinkEvent, MediaTransport};
use crate::telephony::{CallStart, InboundEvent, Provider};
use crate::tts::TextToSpeech;
pub use end_reason::CallEndReason;

/// How long teardown waits for the call's helper tasks after cancelling them.
const TEARDOWN_WAIT: Duration = Duration::from_secs(2);

/// The STT and TTS a call uses in one language.
pub struct LanguageEngines {
    /// Speech-to-text backend.
    pub stt: Arc<dyn SpeechToText>,
    /// Language passed to STT sessions (`None`: the backend's own).
    pub stt_language: Option<String>,
    /// Text-to-speech backend (its voice).
    pub tts: Arc<dyn TextToSpeech>,
}

/// What every call shares: settings, engines, the bot channel and the call directory.
pub struct CallDeps {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// Engines of the default language.
    pub engines: LanguageEngines,
    /// Engines per configured language code.
    pub languages: HashMap<String, LanguageEngines>,
    /// Takes over when a call's STT cannot open or loses its session.
    pub stt_fallback: Option<Arc<dyn SpeechToText>>,
    /// Filler clip (when filler is on).
    pub filler: Option<Arc<AudioFrame>>,
    /// Recorded fallback prompt (when configured).
    pub fallback_clip: Option<Arc<AudioFrame>>,
    /// Bot channel.
    pub bot: Arc<dyn BotChannel>,
    /// Bot user ids of live calls and the routes of their async bot messages.
    pub directory: Arc<dyn directory::CallDirectory>,
    /// Silero VAD's second opinion on barge-ins and utterances (`[audio.silero]`).
    pub silero: Option<Arc<crate::audio::silero::SileroPool>>,
    /// The semantic end-of-turn model, asked at each pause (`[audio.smart_turn]`).
    pub smart_turn: Option<Arc<crate::audio::smart_turn::SmartTurnPool>>,
    /// Parent of every call's token: cancelled when the daemon stops.
    pub calls_cancel: CancellationToken,
    /// Tracks every call so shutdown can wait for them.
    pub calls: TaskTracker,
    /// Where finished calls' records go (`None`: no records).
    pub records: Option<Arc<record::RecordSink>>,
}

impl CallDeps {
    /// The engines of `language`, or the default ones.
    pub fn engines_for(&self, language: Option<&str>) -> &LanguageEngines {
        language
            .and_then(|l| self.languages.get(l))
            .unwrap_or(&self.engines)
    }
}

/// Serves one media socket (a WebSocket after its upgrade, or a provider's TCP connection)
/// to teardown. `permit` holds the admission slot.
pub async fn handle_socket<T: MediaTransport>(
    socket: T,
    provider: Arc<dyn Provider>,
    deps: Arc<CallDeps>,
    conn_id: String,
    permit: OwnedSemaphorePermit,
) {
    let limits = provider.limits();
    let span = tracing::info_span!("call", conn = %conn_id, provider = provider.name(),
        call_id = tracing::field::Empty, user = tracing::field::Empty);
    async move {
        let _permit = permit;
        let cancel = deps.calls_cancel.child_token();
        let tracker = TaskTracker::new();
        let mut link = ws::spawn(
            socket,
            provider.codec(),
            limits.max_message_bytes,
            &tracker,
            cancel.clone(),
        );

        // Wait for start; keep media and digits that come first (providers reorder).
        let mut early = Vec::new();
        let early_limit = limits.max_early_events;
        let deadline = tokio::time::sleep(provider.start_timeout());
        tokio::pin!(deadline);
        let start = loop {
            let ev = tokio::select! {
                _ = &mut deadline => {
                    tracing::warn!("No start message in time; closing.");
                    break Err(CallEndReason::NoStart);
                }
                _ = cancel.cancelled() => break Err(CallEndReason::Shutdown),
                ev = link.events.recv() => ev.unwrap_or(LinkEvent::Closed),
            };
            match ev {
                LinkEvent::Event(InboundEvent::Start(s)) => break Ok(*s),
                LinkEvent::Event(ev @ (InboundEvent::Audio(_) | InboundEvent::Dtmf(_))) => {
                    if early.len() >= early_limit {
                        tracing::warn!(
                            frames = early.len(),
                            "Too much media before start; closing."
                        );
                        break Err(CallEndReason::NoStart);
                    }
                    early.push(ev);
                }
                LinkEvent::Event(InboundEvent::Stop) | LinkEvent::Closed => {
                    tracing::info!("Stream ended before start.");
                    break Err(CallEndReason::NoStart);
                }
                LinkEvent::Event(InboundEvent::Mark(_)) => {}
                LinkEvent::Error(e) => {
                    tracing::warn!(error = %e, "Protocol error before start; closing.");
                    break Err(CallEndReason::ProtocolError);
                }
            }
        };
        match start {
            Ok(start) => {
                let (callback_tx, callbacks) = tokio::sync::mpsc::channel(BOT_REPLY_CAPACITY);
                let trace = record::CallTrace::new(
                    deps.settings.call_records.transcripts,
                    start_recording(&start, &deps),
                );
                let init = session::SessionInit {
                    start,
                    provider: provider.name(),
                    control: provider.control(),
                    early,
                    link,
                    tracker: tracker.clone(),
                    cancel: cancel.clone(),
                    callbacks,
                    trace,
                };
                run_call(init, callback_tx, &deps).await;
            }
            Err(reason) => {
                tracing::info!(reason = reason.code(), "Connection closed without a call.")
            }
        }
        cancel.cancel();
        tracker.close();
        let _ = tokio::time::timeout(TEARDOWN_WAIT, tracker.wait()).await;
    }
    .instrument(span)
    .await
}

/// The language named by the start's custom parameter, when it is a configured one.
fn initial_language(start: &CallStart, deps: &CallDeps) -> Option<String> {
    let param = &deps.settings.call.language_parameter;
    let asked = start.custom.get(param)?.trim();
    if deps.languages.contains_key(asked) {
        Some(asked.to_string())
    } else {
        tracing::warn!(language = asked, parameter = %param,
            "Start parameter names an unconfigured language; using the default.");
        None
    }
}

/// The call's recording, when `[recording]` is on; a failure only costs the recording.
fn start_recording(start: &CallStart, deps: &CallDeps) -> Option<recording::Recording> {
    let dir = deps.settings.recording.directory.as_ref()?;
    let path = record::recording_path(dir, &start.call_id);
    recording::Recording::start(path, start.inbound_rate, start.outbound_rate)
        .inspect_err(|e| tracing::error!(error = %e, "Call not recorded."))
        .ok()
}

/// Route keys a conversation learns once open, held until the call's actor ends.
struct CallRoutes {
    directory: Arc<dyn directory::CallDirectory>,
    sink: crate::bot::ReplySink,
    held: std::sync::Mutex<Vec<directory::Registration>>,
}

impl CallRoutes {
    fn release(&self) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[async_trait::async_trait]
impl crate::bot::RouteKeys for CallRoutes {
    async fn add(&self, key: String) {
        let reg = self.directory.register(vec![key], self.sink.clone()).await;
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(reg);
    }
}

/// Opens the bot session, runs the actor and closes the session, exactly once, on every
/// path: hang-up, errors, shutdown and even a panic inside the actor.
async fn run_call(init: session::SessionInit, callback_tx: crate::bot::ReplySink, deps: &CallDeps) {
    let start = &init.start;
    let _live = crate::telemetry::metrics::call_started();
    // The record's copy of the start, only when records are kept (its custom parameters are
    // an idle call's memory otherwise).
    let start_copy = deps.records.as_ref().map(|_| start.clone());
    let (trace, provider) = (init.trace.clone(), init.provider);
    tracing::Span::current().record("call_id", start.call_id.as_str());
    let language = initial_language(start, deps);
    let mut session = BotSession {
        call_id: start.call_id.clone(),
        user_id: String::new(),
        caller: start.caller.clone(),
        called: start.called.clone(),
        provider: init.provider.into(),
        custom: start.custom.clone(),
        language,
    };
    let template = deps.settings.bot.get().user_id_template();
    let preferred = template::render(template, &session.vars(None));
    let preferred = if preferred.trim().is_empty() {
        start.call_id.clone()
    } else {
        preferred
    };
    let user = deps.directory.claim_user(&preferred, &start.call_id).await;
    session.user_id = user.id().to_string();
    tracing::Span::current().record("user", user.id());
    // Callbacks name the call by its bot user id, or by the call id.
    let _routes = match deps.bot.is_async() {
        true => Some(
            deps.directory
                .register(
                    vec![session.user_id.clone(), session.call_id.clone()],
                    callback_tx.clone(),
                )
                .await,
        ),
        false => None,
    };
    tracing::info!(stream_id = %start.stream_id, caller = start.caller.as_deref().unwrap_or("-"),
        called = start.called.as_deref().unwrap_or("-"),
        language = session.language.as_deref().unwrap_or("-"), "Call started.");
    let started = Instant::now();
    let cancel = init.cancel.clone();
    let routes = Arc::new(CallRoutes {
        directory: deps.directory.clone(),
        sink: callback_tx,
        held: std::sync::Mutex::new(Vec::new()),
    });
    // Recorded before the session opens, so a peer closes it if this instance dies mid-call.
    let orphan = deps.bot.orphan_record(&session);
    if let Some(record) = &orphan {
        deps.directory.hold_session(record).await;
    }
    let conversation = deps
        .bot
        .clone()
        .conversation(session.clone(), routes.clone());
    let outcome = AssertUnwindSafe(session::run(init, conversation.clone(), deps))
        .catch_unwind()
        .await;
    // Messages that come after the call's end are the directory's unroutable ones.
    routes.release();
    let summary = outcome.unwrap_or_else(|_| {
        tracing::error!("Call actor panicked; ending the call.");
        session::CallSummary::internal()
    });
    // Stop every helper (in-flight bot requests and polls included) before closing, and
    // close outside the call's token so that shutdown cannot skip it.
    cancel.cancel();
    let closure = match conversation.close().await {
        Ok(()) => {
            tracing::info!("Bot session closed.");
            "ok"
        }
        Err(e) => {
            tracing::error!(error = %e, code = e.code(), "SESSION_CLOSURE failed.");
            e.code()
        }
    };
    if let Some(record) = &orphan {
        deps.directory.release_session(record).await;
    }
    crate::telemetry::metrics::call_ended(summary.reason.code());
    if let (Some(sink), Some(start_copy)) = (&deps.records, &start_copy) {
        let outcome = record::CallOutcome {
            bot_platform: deps.bot.name(),
            bot_conversation: conversation.conversation_id(),
            reason: summary.reason.code(),
            session_closure: closure,
            dropped_frames: summary.dropped_frames,
        };
        sink.write(&trace.finish(start_copy, provider, &session.user_id, outcome))
            .await;
    }
    tracing::info!(
        reason = summary.reason.code(),
        duration_ms = started.elapsed().as_millis() as u64,
        turns = summary.turns,
        dropped_frames = summary.dropped_frames,
        "Call ended."
    );
}
