//! A simulated Twilio caller: speaks Twilio's Media Streams protocol to voxhook like Twilio
//! does. It streams caller audio in real time (20 ms μ-law frames, silence between
//! utterances), sends keys, and keeps a playback buffer like Twilio's: bot audio plays at real
//! time, marks are echoed when playback reaches them, and `clear` flushes the buffer (echoing
//! the flushed marks). Used by `voxhook demo` and the integration tests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::audio::codec::Codec;
use crate::audio::resample::Resampler;
use crate::tts::flite::FliteTts;
use crate::tts::TextToSpeech;

/// 20 ms at 8 kHz.
const FRAME: usize = 160;

/// Caller speech for simulations: `text` spoken by flite's `rms` voice (a male voice, unlike
/// the bot's default `slt`), as 8 kHz telephony PCM.
pub async fn caller_speech(text: &str) -> Result<Vec<i16>, String> {
    let tts = FliteTts::new("rms").map_err(|e| e.to_string())?;
    let mut stream = tts
        .synthesize(
            &crate::tts::TtsRequest::text(text),
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut r = Resampler::new(tts.sample_rate(), 8_000).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.recv().await {
        r.process(&chunk.map_err(|e| e.to_string())?, &mut out);
    }
    r.flush(&mut out);
    Ok(out)
}

/// Identity of the simulated call.
#[derive(Debug, Clone)]
pub struct CallerOptions {
    /// `ws://host:port/twilio`.
    pub url: String,
    /// `callSid`.
    pub call_sid: String,
    /// `streamSid`.
    pub stream_sid: String,
    /// Custom parameters (`from`, `to`, …).
    pub parameters: BTreeMap<String, String>,
    /// Send `connected` and `start` right away.
    pub send_start: bool,
    /// `X-Twilio-Signature` header for the upgrade request, if any.
    pub signature: Option<String>,
}

impl CallerOptions {
    /// A call from `from` to `to` with fresh ids.
    pub fn new(url: &str, from: &str, to: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            url: url.to_string(),
            call_sid: format!("CA{id}"),
            stream_sid: format!("MZ{id}"),
            parameters: BTreeMap::from([
                ("from".to_string(), from.to_string()),
                ("to".to_string(), to.to_string()),
            ]),
            send_start: true,
            signature: None,
        }
    }
}

/// Something that came back from voxhook, in playback order.
#[derive(Debug, Clone)]
enum Queued {
    Audio(Vec<i16>),
    Mark(String),
}

/// What the caller observed.
#[derive(Debug, Default, Clone)]
pub struct CallerLog {
    /// Everything played to the caller (8 kHz PCM), silence excluded.
    pub heard: Vec<i16>,
    /// Media messages received.
    pub media_frames: usize,
    /// Media payloads that were not 160 bytes of μ-law.
    pub odd_frames: usize,
    /// Messages with a streamSid other than ours.
    pub wrong_stream_sid: usize,
    /// Marks reached by playback, in order.
    pub marks_played: Vec<String>,
    /// Marks flushed by a clear.
    pub marks_cleared: Vec<String>,
    /// `clear` messages received.
    pub clears: usize,
    /// Messages that are not valid Twilio outbound JSON.
    pub invalid_messages: usize,
    /// When bot audio last played.
    pub last_audio_at: Option<Instant>,
    /// Offsets in `heard` where each played mark was reached.
    pub mark_offsets: Vec<(String, usize)>,
    /// The socket closed.
    pub closed: bool,
    /// The close frame voxhook sent: RFC 6455 code and reason (`None`: no frame, or none
    /// with a code).
    pub close_frame: Option<(u16, String)>,
    /// Audio queued and not yet played.
    pub queued_samples: usize,
    /// The most audio ever queued at once (how far ahead of playback voxhook sent).
    pub max_queued_samples: usize,
}

enum Command {
    Say(Vec<i16>),
    Dtmf(char),
    Raw(Message),
    Hangup,
}

/// A live simulated call.
pub struct SimCaller {
    commands: mpsc::Sender<Command>,
    log: Arc<Mutex<CallerLog>>,
    speaking: Arc<Mutex<usize>>,
    /// The call's ids.
    pub options: CallerOptions,
}

impl SimCaller {
    /// Connects and starts the stream.
    pub async fn connect(options: CallerOptions) -> Result<Self, String> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let fail = |e: &dyn std::fmt::Display| format!("connect {}: {e}", options.url);
        let mut req = options
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| fail(&e))?;
        if let Some(sig) = &options.signature {
            let value = sig.parse().map_err(|e| fail(&e))?;
            req.headers_mut().insert("x-twilio-signature", value);
        }
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .map_err(|e| fail(&e))?;
        let (commands, rx) = mpsc::channel(64);
        let log = Arc::new(Mutex::new(CallerLog::default()));
        let speaking = Arc::new(Mutex::new(0));
        tokio::spawn(run(ws, options.clone(), rx, log.clone(), speaking.clone()));
        Ok(Self {
            commands,
            log,
            speaking,
            options,
        })
    }

    /// Queues speech (8 kHz PCM), streamed in real time after what is queued already.
    pub async fn say(&self, pcm_8k: Vec<i16>) {
        let _ = self.commands.send(Command::Say(pcm_8k)).await;
    }

    /// Sends keys, 150 ms apart.
    pub async fn press(&self, keys: &str) {
        for k in keys.chars() {
            let _ = self.commands.send(Command::Dtmf(k)).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Sends any frame as is (for protocol-fault tests).
    pub async fn send_raw(&self, msg: Message) {
        let _ = self.commands.send(Command::Raw(msg)).await;
    }

    /// Sends `stop` and closes the socket.
    pub async fn hang_up(&self) {
        let _ = self.commands.send(Command::Hangup).await;
    }

    /// A snapshot of what was observed.
    pub fn log(&self) -> CallerLog {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until queued caller speech has been streamed.
    pub async fn finish_speaking(&self) {
        while *self.speaking.lock().unwrap_or_else(|p| p.into_inner()) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `cond` holds, up to `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        cond: impl Fn(&CallerLog) -> bool,
    ) -> Result<CallerLog, CallerLog> {
        let end = Instant::now() + timeout;
        loop {
            let log = self.log();
            if cond(&log) {
                return Ok(log);
            }
            if Instant::now() > end {
                return Err(log);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until bot audio has played and then stayed silent for `quiet`.
    pub async fn wait_bot_quiet(
        &self,
        quiet: Duration,
        timeout: Duration,
    ) -> Result<CallerLog, CallerLog> {
        let heard_before = self.log().heard.len();
        self.wait_for(timeout, |l| {
            l.heard.len() > heard_before
                && l.queued_samples == 0
                && l.last_audio_at.is_some_and(|t| t.elapsed() >= quiet)
        })
        .await
    }
}

async fn run<S>(
    ws: S,
    opts: CallerOptions,
    mut commands: mpsc::Receiver<Command>,
    log: Arc<Mutex<CallerLog>>,
    speaking: Arc<Mutex<usize>>,
) where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures_util::Sink<Message>
        + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let sid = opts.stream_sid.clone();
    let mut seq = 0u64;
    let mut next_seq = || {
        seq += 1;
        seq.to_string()
    };
    if opts.send_start {
        let start = json!({"event": "start", "sequenceNumber": next_seq(), "streamSid": sid,
            "start": {"accountSid": "ACsimulated", "streamSid": sid, "callSid": opts.call_sid,
                "tracks": ["inbound"], "customParameters": opts.parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}});
        let connected = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
        for m in [connected, start] {
            if sink
                .send(Message::Text(m.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    let mut outgoing: VecDeque<i16> = VecDeque::new();
    let mut playback: VecDeque<Queued> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut chunk = 0u64;
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Caller → voxhook: one 20 ms frame, speech or silence, like a phone line.
                let frame: Vec<i16> = (0..FRAME).map(|_| outgoing.pop_front().unwrap_or(0)).collect();
                *speaking.lock().unwrap_or_else(|p| p.into_inner()) = outgoing.len();
                let mut bytes = Vec::with_capacity(FRAME);
                Codec::Mulaw.encode_into(&frame, &mut bytes);
                chunk += 1;
                let media = json!({"event": "media", "sequenceNumber": next_seq(), "streamSid": sid,
                    "media": {"track": "inbound", "chunk": chunk.to_string(),
                        "timestamp": started.elapsed().as_millis().to_string(),
                        "payload": B64.encode(&bytes)}});
                if sink.send(Message::Text(media.to_string().into())).await.is_err() {
                    break;
                }
                // voxhook → caller: play 20 ms of the buffer; echo marks playback reaches.
                let mut need = FRAME;
                let mut echoes = Vec::new();
                {
                    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                    while let Some(item) = playback.pop_front() {
                        match item {
                            Queued::Mark(name) => {
                                let at = l.heard.len();
                                l.mark_offsets.push((name.clone(), at));
                                l.marks_played.push(name.clone());
                                echoes.push(name);
                            }
                            Queued::Audio(mut a) => {
                                if need == 0 {
                                    playback.push_front(Queued::Audio(a));
                                    break;
                                }
                                let take = need.min(a.len());
                                l.heard.extend(a.drain(..take));
                                l.last_audio_at = Some(Instant::now());
                                need -= take;
                                if !a.is_empty() {
                                    playback.push_front(Queued::Audio(a));
                                }
                            }
                        }
                    }
                    l.queued_samples = queued(&playback);
                }
                for name in echoes {
                    let m = json!({"event": "mark", "sequenceNumber": next_seq(), "streamSid": sid, "mark": {"name": name}});
                    if sink.send(Message::Text(m.to_string().into())).await.is_err() {
                        break;
                    }
                }
            }
            cmd = commands.recv() => match cmd {
                Some(Command::Say(pcm)) => {
                    outgoing.extend(pcm);
                    *speaking.lock().unwrap_or_else(|p| p.into_inner()) = outgoing.len();
                }
                Some(Command::Dtmf(k)) => {
                    let m = json!({"event": "dtmf", "sequenceNumber": next_seq(), "streamSid": sid,
                        "dtmf": {"track": "inbound_track", "digit": k.to_string()}});
                    let _ = sink.send(Message::Text(m.to_string().into())).await;
                }
                Some(Command::Raw(m)) => { let _ = sink.send(m).await; }
                Some(Command::Hangup) | None => {
                    let m = json!({"event": "stop", "sequenceNumber": next_seq(), "streamSid": sid,
                        "stop": {"accountSid": "ACsimulated", "callSid": opts.call_sid}});
                    let _ = sink.send(Message::Text(m.to_string().into())).await;
                    let _ = sink.close().await;
                    break;
                }
            },
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                let Message::Text(text) = msg else {
                    if let Message::Close(frame) = msg {
                        let frame = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                        log.lock().unwrap_or_else(|p| p.into_inner()).close_frame = frame;
                        break;
                    }
                    continue;
                };
                let flushed = on_message(text.as_str(), &sid, &mut playback, &log);
                for name in flushed {
                    let m = json!({"event": "mark", "sequenceNumber": next_seq(), "streamSid": sid, "mark": {"name": name}});
                    let _ = sink.send(Message::Text(m.to_string().into())).await;
                }
            }
        }
    }
    log.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
}

/// Applies one message from voxhook to the playback buffer; returns marks flushed by a clear,
/// which Twilio echoes back.
fn on_message(
    text: &str,
    sid: &str,
    playback: &mut VecDeque<Queued>,
    log: &Mutex<CallerLog>,
) -> Vec<String> {
    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        l.invalid_messages += 1;
        return Vec::new();
    };
    if v["streamSid"].as_str() != Some(sid) {
        l.wrong_stream_sid += 1;
    }
    let mut flushed = Vec::new();
    match v["event"].as_str() {
        Some("media") => {
            l.media_frames += 1;
            match v["media"]["payload"].as_str().map(|p| B64.decode(p)) {
                Some(Ok(bytes)) => {
                    if bytes.len() != FRAME {
                        l.odd_frames += 1;
                    }
                    let mut pcm = Vec::with_capacity(bytes.len());
                    Codec::Mulaw.decode_into(&bytes, &mut pcm);
                    playback.push_back(Queued::Audio(pcm));
                }
                _ => l.invalid_messages += 1,
            }
        }
        Some("mark") => match v["mark"]["name"].as_str() {
            Some(n) => playback.push_back(Queued::Mark(n.to_string())),
            None => l.invalid_messages += 1,
        },
        Some("clear") => {
            l.clears += 1;
            flushed = playback
                .drain(..)
                .filter_map(|q| match q {
                    Queued::Mark(n) => Some(n),
                    Queued::Audio(_) => None,
                })
                .collect();
            l.marks_cleared.extend(flushed.iter().cloned());
        }
        _ => l.invalid_messages += 1,
    }
    l.queued_samples = queued(playback);
    l.max_queued_samples = l.max_queued_samples.max(l.queued_samples);
    flushed
}

fn queued(q: &VecDeque<Queued>) -> usize {
    q.iter()
        .map(|i| match i {
            Queued::Audio(a) => a.len(),
            Queued::Mark(_) => 0,
        })
        .sum()
}
