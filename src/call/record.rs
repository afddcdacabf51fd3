//! What an operator learns about a call: the per-call [`CallTrace`] turns the actor's events
//! into metrics (one line per event at the call site) and collects the [`CallRecord`] written
//! as one JSON line when the call ends ([`RecordSink`]). It also decides whether what was said
//! may appear in logs and records at all: transcripts are personal data and off by default.
//!
//! The record is an output format like a wire DTO, so it derives `Serialize`; it holds
//! copies of the call's facts, never the domain types themselves.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::recording::Recording;
use crate::bot::{BotReply, InputMode, TurnInput};
use crate::config::RecordOutput;
use crate::stt::Transcript;
use crate::telemetry::metrics as m;
use crate::telephony::{CallStart, OutboundCommand};

/// One finished call, as written to the call-record output (one JSON object per line).
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// The provider's call id.
    pub call_id: String,
    /// The media stream id.
    pub stream_id: String,
    /// Provider name (`twilio`).
    pub provider: &'static str,
    /// The bot user id (`from.id`).
    pub user_id: String,
    /// The bot platform (`kore_v2`, `ingenious`).
    pub bot_platform: &'static str,
    /// The platform's conversation id (inGenious), `null` where the user id names it.
    pub bot_conversation: Option<String>,
    /// Caller's number, when known.
    pub caller: Option<String>,
    /// Called number, when known.
    pub called: Option<String>,
    /// Start (RFC 3339, UTC).
    pub started_at: String,
    /// End (RFC 3339, UTC).
    pub ended_at: String,
    /// Start to end.
    pub duration_ms: u64,
    /// `CallEndReason` code.
    pub end_reason: &'static str,
    /// `ok`, or the `BotError` code of the failed `SESSION_CLOSURE`.
    pub session_closure: &'static str,
    /// Bot requests in order: the session opening, then each caller turn.
    pub turns: Vec<TurnRecord>,
    /// Bot tasks completed during the call (Kore `completedTaskName`), in order.
    pub bot_tasks: Vec<String>,
    /// Barge-ins.
    pub barge_ins: u64,
    /// Caller frames dropped before recognition.
    pub dropped_frames: u64,
    /// The call's WAV recording, when recording is on.
    pub recording: Option<String>,
}

/// One bot request and what came of it. Times are milliseconds; `at_ms` counts from the
/// call's start, the others from the request unless named otherwise. A value that does not
/// apply (or never happened) is `null`, so every record has the same keys.
#[derive(Debug, Clone, Serialize)]
pub struct TurnRecord {
    /// `open` (the session opening), `speech` or `dtmf`.
    pub input: &'static str,
    /// When the request was sent, from the call's start.
    pub at_ms: u64,
    /// Recognition time of the utterance (speech).
    pub stt_ms: Option<u64>,
    /// Time the utterance waited for a free decoder before recognition (speech).
    pub stt_queue_ms: Option<u64>,
    /// Caller's end of speech → request sent (speech).
    pub end_of_speech_to_request_ms: Option<u64>,
    /// Request → first bot message.
    pub bot_first_message_ms: Option<u64>,
    /// Request → the bot's last message (or its failure).
    pub bot_done_ms: Option<u64>,
    /// Request → first audio frame of the answer sent.
    pub first_audio_ms: Option<u64>,
    /// Caller's end of speech → first audio frame of the answer sent (speech).
    pub end_of_speech_to_first_audio_ms: Option<u64>,
    /// Synthesis start → first TTS chunk of the answer's first message.
    pub tts_first_chunk_ms: Option<u64>,
    /// `BotError` code when the request failed (the fallback was spoken).
    pub bot_error: Option<&'static str>,
    /// What the caller said or typed (only with `call_records.transcripts`).
    pub text: Option<String>,
    /// What the bot answered (only with `call_records.transcripts`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bot_said: Vec<String>,
    #[serde(skip)]
    sent: Option<Instant>,
    #[serde(skip)]
    speech_ended: Option<Instant>,
    #[serde(skip)]
    first_msg: Option<u64>,
}

impl TurnRecord {
    fn new(input: &'static str, at_ms: u64, sent: Instant) -> Self {
        Self {
            input,
            at_ms,
            stt_ms: None,
            stt_queue_ms: None,
            end_of_speech_to_request_ms: None,
            bot_first_message_ms: None,
            bot_done_ms: None,
            first_audio_ms: None,
            end_of_speech_to_first_audio_ms: None,
            tts_first_chunk_ms: None,
            bot_error: None,
            text: None,
            bot_said: Vec::new(),
            sent: Some(sent),
            speech_ended: None,
            first_msg: None,
        }
    }
}

/// How the call ended, for [`CallTrace::finish`].
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The bot platform (`kore_v2`, `ingenious`).
    pub bot_platform: &'static str,
    /// The platform's conversation id, where it has one of its own.
    pub bot_conversation: Option<String>,
    /// `CallEndReason` code.
    pub reason: &'static str,
    /// `ok` or the closure's `BotError` code.
    pub session_closure: &'static str,
    /// Dropped caller frames.
    pub dropped_frames: u64,
}

#[derive(Debug)]
struct Inner {
    turns: Vec<TurnRecord>,
    bot_tasks: Vec<String>,
    barge_ins: u64,
    stt_ms: Option<u64>,
    stt_queue_ms: Option<u64>,
}

/// The call's telemetry: cheap to clone, shared by `run_call` and the actor so a panicking
/// actor still leaves a record.
#[derive(Debug, Clone)]
pub struct CallTrace {
    inner: Arc<Mutex<Inner>>,
    started: Instant,
    started_wall: SystemTime,
    transcripts: bool,
    recording: Option<Recording>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl CallTrace {
    /// A trace for a call starting now. `transcripts` lets text into logs and the record.
    pub fn new(transcripts: bool, recording: Option<Recording>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                turns: Vec::new(),
                bot_tasks: Vec::new(),
                barge_ins: 0,
                stt_ms: None,
                stt_queue_ms: None,
            })),
            started: Instant::now(),
            started_wall: SystemTime::now(),
            transcripts,
            recording,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `text` for a log field when transcripts are on, nothing otherwise (tracing skips a
    /// `None` field).
    pub fn shown<'a>(&self, text: &'a str) -> Option<&'a str> {
        self.transcripts.then_some(text)
    }

    /// Caller audio, for the recording.
    pub fn caller_audio(&self, pcm: &[i16]) {
        if let Some(r) = &self.recording {
            r.caller(pcm);
        }
    }

    /// Routes outbound commands through the recording (when on) on their way to `out`.
    pub fn tap_outbound(
        &self,
        out: mpsc::Sender<OutboundCommand>,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> mpsc::Sender<OutboundCommand> {
        match &self.recording {
            Some(r) => r.tap(out, tracker, cancel.child_token()),
            None => out,
        }
    }

    /// The session opening (`ON_CONNECT`) was requested.
    pub fn opened(&self) {
        let now = Instant::now();
        let at = ms(now - self.started);
        self.lock().turns.push(TurnRecord::new("open", at, now));
    }

    /// An utterance was recognised.
    pub fn transcript(&self, t: &Transcript) {
        m::stt_duration(Duration::from_millis(t.decode_ms));
        m::stt_queue_wait(Duration::from_millis(t.queue_ms));
        let mut inner = self.lock();
        inner.stt_ms = Some(t.decode_ms);
        inner.stt_queue_ms = Some(t.queue_ms);
    }

    /// A caller turn went to the bot; `speech_ended` is the end of the utterance.
    pub fn turn_sent(&self, turn: &TurnInput, speech_ended: Option<Instant>) {
        m::turn_sent(turn.mode.as_str());
        let now = Instant::now();
        let mut rec = TurnRecord::new(turn.mode.as_str(), ms(now - self.started), now);
        let mut inner = self.lock();
        if turn.mode == InputMode::Speech {
            rec.stt_ms = inner.stt_ms.take();
            rec.stt_queue_ms = inner.stt_queue_ms.take();
            rec.speech_ended = speech_ended;
            rec.end_of_speech_to_request_ms = speech_ended.map(|t| ms(now - t));
        }
        rec.text = self.transcripts.then(|| turn.text.clone());
        inner.turns.push(rec);
    }

    /// A bot message arrived for the request in flight.
    pub fn bot_reply(&self, reply: &BotReply) {
        let now = Instant::now();
        let mut inner = self.lock();
        if let Some(task) = &reply.task {
            if inner.bot_tasks.last() != Some(task) {
                inner.bot_tasks.push(task.clone());
            }
        }
        let Some(turn) = inner.turns.last_mut() else {
            return;
        };
        if turn.bot_first_message_ms.is_none() {
            if let Some(sent) = turn.sent {
                m::bot_reply_duration(now - sent);
                turn.bot_first_message_ms = Some(ms(now - sent));
            }
        }
        if let Some(text) = reply.text.as_ref().filter(|_| self.transcripts) {
            turn.bot_said.push(text.clone());
        }
    }

    /// The request in flight finished; `error` is the `BotError` code when it failed.
    pub fn bot_done(&self, error: Option<&'static str>) {
        let now = Instant::now();
        if let Some(turn) = self.lock().turns.last_mut() {
            turn.bot_done_ms = turn.sent.map(|s| ms(now - s));
            turn.bot_error = error;
        }
    }

    /// Message `id` was handed to the speaker.
    pub fn speak(&self, id: u64) {
        if let Some(turn) = self.lock().turns.last_mut() {
            turn.first_msg.get_or_insert(id);
        }
    }

    /// The first frame of message `id` went out; its synthesis on `backend` took `tts` to
    /// start.
    pub fn first_audio(&self, id: u64, tts: Duration, backend: &'static str) {
        m::tts_first_audio(backend, tts);
        let now = Instant::now();
        let mut inner = self.lock();
        let Some(turn) = inner
            .turns
            .iter_mut()
            .rev()
            .find(|t| t.first_msg == Some(id))
        else {
            return;
        };
        turn.first_audio_ms = turn.sent.map(|s| ms(now - s));
        turn.tts_first_chunk_ms = Some(ms(tts));
        if let Some(end) = turn.speech_ended {
            m::response_latency(now - end);
            turn.end_of_speech_to_first_audio_ms = Some(ms(now - end));
        }
    }

    /// The caller interrupted playback.
    pub fn barge_in(&self) {
        m::barge_in();
        self.lock().barge_ins += 1;
    }

    /// The record of the finished call.
    pub fn finish(
        &self,
        start: &CallStart,
        provider: &'static str,
        user_id: &str,
        outcome: CallOutcome,
    ) -> CallRecord {
        let elapsed = self.started.elapsed();
        let inner = self.lock();
        CallRecord {
            call_id: start.call_id.clone(),
            stream_id: start.stream_id.clone(),
            provider,
            user_id: user_id.to_string(),
            bot_platform: outcome.bot_platform,
            bot_conversation: outcome.bot_conversation,
            caller: start.caller.clone(),
            called: start.called.clone(),
            started_at: rfc3339(self.started_wall),
            ended_at: rfc3339(self.started_wall + elapsed),
            duration_ms: ms(elapsed),
            end_reason: outcome.reason,
            session_closure: outcome.session_closure,
            turns: inner.turns.clone(),
            bot_tasks: inner.bot_tasks.clone(),
            barge_ins: inner.barge_ins,
            dropped_frames: outcome.dropped_frames,
            recording: self
                .recording
                .as_ref()
                .map(|r| r.path().display().to_string()),
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Where finished calls' records go: one JSON line each, flushed at once.
pub struct RecordSink {
    out: tokio::sync::Mutex<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    name: String,
}

impl RecordSink {
    /// Opens the output (a file is created if needed and appended to).
    pub async fn open(output: &RecordOutput) -> std::io::Result<Self> {
        let (out, name): (Box<dyn tokio::io::AsyncWrite + Send + Unpin>, String) = match output {
            RecordOutput::Stdout => (Box::new(tokio::io::stdout()), "stdout".into()),
            RecordOutput::File(path) => {
                let f = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await?;
                (Box::new(f), path.display().to_string())
            }
        };
        Ok(Self {
            out: tokio::sync::Mutex::new(out),
            name,
        })
    }

    /// Appends one record; a failure is logged and counted, never fatal to the daemon.
    pub async fn write(&self, rec: &CallRecord) {
        let mut line = match serde_json::to_vec(rec) {
            Ok(l) => l,
            Err(e) => {
                m::call_record_failed();
                tracing::error!(error = %e, "Call record not serialisable.");
                return;
            }
        };
        line.push(b'\n');
        let mut out = self.out.lock().await;
        let res = async {
            out.write_all(&line).await?;
            out.flush().await
        }
        .await;
        if let Err(e) = res {
            m::call_record_failed();
            tracing::error!(error = %e, output = %self.name, "Call record not written.");
        }
    }
}

/// The recording file for a call: its id made safe for a file name.
pub fn recording_path(dir: &std::path::Path, call_id: &str) -> PathBuf {
    let safe: String = call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{safe}.wav"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(mode: InputMode, text: &str) -> TurnInput {
        TurnInput {
            text: text.into(),
            mode,
            confidence: None,
            language: None,
            interrupted: None,
        }
    }

    fn start() -> CallStart {
        CallStart {
            call_id: "CA1".into(),
            stream_id: "MZ1".into(),
            caller: Some("+1555".into()),
            called: None,
            custom: Default::default(),
            inbound_rate: 8000,
            outbound_rate: 8000,
        }
    }

    fn outcome() -> CallOutcome {
        CallOutcome {
            bot_platform: "kore_v2",
            bot_conversation: None,
            reason: "caller.hangup",
            session_closure: "ok",
            dropped_frames: 0,
        }
    }

    #[test]
    fn transcripts_stay_out_unless_enabled() {
        for on in [false, true] {
            let t = CallTrace::new(on, None);
            assert_eq!(t.shown("my pin is 1234").is_some(), on);
            t.opened();
            t.bot_reply(&BotReply {
                text: Some("Welcome".into()),
                ..BotReply::default()
            });
            t.turn_sent(&turn(InputMode::Dtmf, "1234"), None);
            let json =
                serde_json::to_string(&t.finish(&start(), "twilio", "+1555", outcome())).unwrap();
            assert_eq!(json.contains("1234"), on, "{json}");
            assert_eq!(json.contains("Welcome"), on, "{json}");
        }
    }

    #[test]
    fn replies_and_audio_attach_to_their_turn() {
        let t = CallTrace::new(false, None);
        t.opened();
        t.speak(1);
        t.bot_done(None);
        t.turn_sent(&turn(InputMode::Speech, "hi"), Some(Instant::now()));
        t.bot_reply(&BotReply {
            text: Some("a".into()),
            task: Some("Balance".into()),
            ..BotReply::default()
        });
        t.speak(2);
        t.speak(3);
        t.bot_done(Some("bot.timeout"));
        t.first_audio(1, Duration::from_millis(5), "fake");
        t.first_audio(2, Duration::from_millis(7), "fake");
        t.barge_in();
        let r = t.finish(&start(), "twilio", "+1555", outcome());
        assert_eq!(r.turns.len(), 2);
        assert_eq!(r.turns[0].input, "open");
        assert_eq!(r.turns[0].tts_first_chunk_ms, Some(5));
        assert_eq!(r.turns[1].input, "speech");
        assert_eq!(r.turns[1].tts_first_chunk_ms, Some(7));
        assert!(r.turns[1].end_of_speech_to_first_audio_ms.is_some());
        assert!(r.turns[1].bot_first_message_ms.is_some());
        assert_eq!(r.turns[1].bot_error, Some("bot.timeout"));
        assert_eq!(r.bot_tasks, vec!["Balance".to_string()]);
        assert_eq!(r.barge_ins, 1);
    }

    #[test]
    fn a_speech_turn_records_its_decoder_queue_wait() {
        let t = CallTrace::new(false, None);
        t.opened();
        t.transcript(&Transcript {
            text: "hi".into(),
            confidence: None,
            audio_ms: 1_200,
            decode_ms: 150,
            queue_ms: 420,
        });
        t.turn_sent(&turn(InputMode::Speech, "hi"), Some(Instant::now()));
        t.turn_sent(&turn(InputMode::Dtmf, "1"), None);
        let r = t.finish(&start(), "twilio", "+1555", outcome());
        assert_eq!(r.turns[0].stt_queue_ms, None);
        assert_eq!(r.turns[1].stt_ms, Some(150));
        assert_eq!(r.turns[1].stt_queue_ms, Some(420));
        assert_eq!(r.turns[2].stt_queue_ms, None);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["turns"][1]["stt_queue_ms"], 420, "{json}");
        assert!(json["turns"][0]["stt_queue_ms"].is_null(), "{json}");
    }

    #[test]
    fn recording_names_are_safe() {
        let p = recording_path(std::path::Path::new("/r"), "../CA 1");
        assert_eq!(p, PathBuf::from("/r/___CA_1.wav"));
    }
}
