//! A simulated caller: one engine that speaks a provider's media-stream protocol to voxhook the
//! way that provider does, through a small per-provider [`CallerWire`] (Twilio Media Streams and
//! SignalWire with its L16 codecs; Telnyx media streaming with its codecs; Plivo; Exotel;
//! jambonz and Genesys, whose audio goes in binary frames; Asterisk AudioSocket over raw TCP,
//! in [`super::audiosocket`]). The engine streams
//! caller audio in real time (20 ms frames, silence between utterances), sends keys, and keeps
//! a playback buffer like the provider's: bot audio plays at real time, marks are echoed when
//! playback reaches them, and `clear` flushes the buffer (echoing the flushed marks). Used by
//! `voxhook demo` and the integration tests.

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
use crate::telephony::plivo::media::StreamCodec as PlivoCodec;
use crate::telephony::telnyx::media::{MediaCodec, PayloadDecoder, PayloadEncoder};
use crate::tts::flite::FliteTts;
use crate::tts::TextToSpeech;

/// 20 ms at 8 kHz.
const FRAME: usize = 160;

/// Samples in 20 ms at `rate`.
fn frame_len(rate: u32) -> usize {
    rate as usize / 50
}

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
    /// The provider protocol spoken.
    pub wire: Wire,
    /// For a `wss://` URL: the TLS client settings (trusted roots) to connect with; `None`:
    /// the public web roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Which provider the caller plays.
#[derive(Debug, Clone)]
pub enum Wire {
    /// Twilio Media Streams (μ-law 8 kHz).
    Twilio,
    /// Telnyx media streaming in RTP bidirectional mode.
    Telnyx {
        /// The codec Telnyx streams the caller in (`start.media_format`).
        inbound: MediaCodec,
        /// The bidirectional codec it expects back (`stream_bidirectional_codec`).
        outbound: MediaCodec,
        /// `stream_auth_token`, sent as `x-telnyx-streaming-auth-token` and in `connected`.
        auth_token: Option<String>,
    },
    /// SignalWire cXML `<Connect><Stream>`: Twilio's wire with UUID ids, the signature in
    /// `X-SignalWire-Signature`, and the `<Stream codec>` both ways: PCMU at 8000 Hz or
    /// little-endian L16 at 16000/24000 Hz (`audio/x-l16` in `start.mediaFormat`).
    SignalWire {
        /// The stream's rate (8000: PCMU).
        rate: u32,
    },
    /// Exotel Voicebot applet streams: snake_case, every value a string, PCM16 little-endian
    /// at the applet's `sample-rate` both ways, numbers and `custom_parameters` in `start`,
    /// `stop` with a reason; Basic auth from the applet URL's `user:password@`.
    Exotel {
        /// 8000, 16000 or 24000.
        rate: u32,
        /// `(user, password)` sent as `Authorization: Basic …`.
        basic_auth: Option<(String, String)>,
    },
    /// Vonage Voice API WebSocket: `websocket:connected` with the `content-type` and the NCCO
    /// endpoint headers (`uuid`, `from`, `to` and the custom parameters) at top level, binary
    /// L16 little-endian 20 ms frames both ways, `websocket:dtmf`, `notify` echoed as
    /// `websocket:notify` when played, `clear` answered by `websocket:cleared`; no stop message
    /// (the socket just closes).
    Vonage {
        /// 8000, 16000 or 24000 (`audio/l16;rate=…`).
        rate: u32,
        /// Shared stream token, sent as `?token=` on the endpoint URI.
        stream_token: Option<String>,
    },
    /// Asterisk chan_websocket dialing voxhook: subprotocol `media`, `MEDIA_START` (JSON with
    /// the numbers in `channel_variables`, or plain text without them), binary media in the
    /// channel format re-framed into `optimal_frame_size` pieces (a remainder dropped),
    /// `DTMF_END`, `MARK_MEDIA` answered by `MEDIA_MARK_PROCESSED` when played, `FLUSH_MEDIA`
    /// dropping the queue and its marks silently, `MEDIA_XOFF`/`MEDIA_XON` at its queue levels;
    /// no stop message (Asterisk closes the socket).
    Asterisk {
        /// Asterisk format name: `ulaw`, `alaw`, `slin`, `slin16`, ….
        format: String,
        /// The control message format.
        control: crate::telephony::asterisk::ControlFormat,
        /// `(user, password)` of `websocket_client.conf`, sent as `Authorization: Basic …`.
        basic_auth: Option<(String, String)>,
        /// Queue levels in frames: XOFF at the first, XON below the second (Asterisk: 900, 800).
        flow_levels: (usize, usize),
    },
    /// Plivo Audio Streams: no `connected`, numbers in `extra_headers`, `playAudio` /
    /// `checkpoint` / `clearAudio` read, `playedStream` / `clearedAudio` answered, the first
    /// checkpoint of the call never acknowledged, no `stop` (the socket just closes).
    Plivo {
        /// The `<Stream contentType>`, both ways.
        codec: PlivoCodec,
        /// Shared stream token, sent as `?token=` on the stream URL.
        stream_token: Option<String>,
    },
    /// Genesys Cloud Audio Connector (AudioHook v2): `X-API-KEY`, the `Audiohook-*` headers
    /// and (with a client secret) the RFC 9421 signature on the upgrade; `open` offering stereo
    /// and mono PCMU, JSON control with strict `seq`/`serverseq`, binary PCMU both ways (the
    /// stereo customer on the left), `dtmf`, `playback_completed` when its buffer runs dry,
    /// `barge_in` flushing it, `disconnect` answered with `close`, `close` to hang up.
    /// `call_sid` is the conversation id, `stream_sid` the session id.
    Genesys {
        /// `X-API-KEY`.
        api_key: String,
        /// The integration's client secret (decoded); `None`: the upgrade is not signed.
        client_secret: Option<Vec<u8>>,
        /// `Audiohook-Organization-Id` and `open.parameters.organizationId`.
        organization_id: String,
        /// Offer only stereo (customer and agent).
        stereo: bool,
    },
    /// Asterisk's `AudioSocket()` application over plain TCP (`url` is `host:port`): the
    /// UUID (`call_sid`) first, slin 8 kHz both ways, `0x03` keys, no marks, no clear, no
    /// playout buffer (see [`super::audiosocket`]); no stop (the socket closes).
    AudioSocket,
    /// jambonz `listen` with `bidirectionalAudio.streaming`: subprotocol `audio.jambonz.org`,
    /// a metadata text frame (webhook attributes, `sampleRate`, `mixType`, `metadata` with the
    /// custom parameters), binary L16 little-endian both ways, `passDtmf` events, marks
    /// answered `playout` when played and `cleared` on `killAudio`, no stop (the socket
    /// closes).
    Jambonz {
        /// The verb's `sampleRate` (caller audio).
        rate: u32,
        /// `bidirectionalAudio.sampleRate` (bot audio).
        bidirectional_rate: u32,
        /// `wsAuth` (user, password), sent as `Authorization: Basic …`.
        ws_auth: Option<(String, String)>,
    },
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
            wire: Wire::Twilio,
            tls: None,
        }
    }

    /// A Telnyx call from `from` to `to` streaming `inbound` and expecting `outbound` back,
    /// with Telnyx-shaped ids (`v3:` call control id, upper-case UUID stream id).
    pub fn telnyx(
        url: &str,
        from: &str,
        to: &str,
        inbound: MediaCodec,
        outbound: MediaCodec,
    ) -> Self {
        let id = uuid::Uuid::new_v4();
        Self {
            call_sid: format!(
                "v3:{}-{}_x",
                &id.simple().to_string()[..20],
                &id.simple().to_string()[20..]
            ),
            stream_sid: id.hyphenated().to_string().to_uppercase(),
            wire: Wire::Telnyx {
                inbound,
                outbound,
                auth_token: None,
            },
            ..Self::new(url, from, to)
        }
    }
}

impl CallerOptions {
    /// An Asterisk call from `from` to `to` on a channel in `format`, with Asterisk-shaped
    /// ids (connection UUID, `pbx-<epoch>.<n>` channel id as the call id).
    pub fn asterisk(
        url: &str,
        from: &str,
        to: &str,
        format: &str,
        control: crate::telephony::asterisk::ControlFormat,
    ) -> Self {
        let n = uuid::Uuid::new_v4().as_u128() % 100_000;
        Self {
            call_sid: format!("pbx1-1764700000.{n}"),
            stream_sid: uuid::Uuid::new_v4().hyphenated().to_string(),
            wire: Wire::Asterisk {
                format: format.into(),
                control,
                basic_auth: None,
                flow_levels: (900, 800),
            },
            ..Self::new(url, from, to)
        }
    }

    /// An AudioSocket connection to `addr` (`host:port`) with a fresh UUID; the protocol
    /// carries no numbers or parameters.
    pub fn audiosocket(addr: &str) -> Self {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        Self {
            call_sid: id.clone(),
            stream_sid: id,
            parameters: BTreeMap::new(),
            wire: Wire::AudioSocket,
            ..Self::new(addr, "", "")
        }
    }

    /// A Vonage call from `from` to `to` whose WebSocket runs at `rate` (8000, 16000 or
    /// 24000), with a Vonage-shaped (UUID) call id in the NCCO endpoint headers.
    pub fn vonage(url: &str, from: &str, to: &str, rate: u32) -> Self {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        Self {
            call_sid: id.clone(),
            stream_sid: id,
            wire: Wire::Vonage {
                rate,
                stream_token: None,
            },
            ..Self::new(url, from, to)
        }
    }

    /// A Plivo call from `from` to `to` (digits only: `extraHeaders` take alphanumerics) in
    /// `codec`, with Plivo-shaped (UUID) call and stream ids.
    pub fn plivo(url: &str, from: &str, to: &str, codec: PlivoCodec) -> Self {
        Self {
            call_sid: uuid::Uuid::new_v4().hyphenated().to_string(),
            stream_sid: uuid::Uuid::new_v4().hyphenated().to_string(),
            wire: Wire::Plivo {
                codec,
                stream_token: None,
            },
            ..Self::new(url, from, to)
        }
    }

    /// An Exotel call from `from` to `to` at `rate`, with Exotel-shaped ids.
    pub fn exotel(url: &str, from: &str, to: &str, rate: u32) -> Self {
        Self {
            wire: Wire::Exotel {
                rate,
                basic_auth: None,
            },
            ..Self::new(url, from, to)
        }
    }

    /// A SignalWire call from `from` to `to` whose stream runs at `rate` (8000: PCMU, 16000 or
    /// 24000: `L16@…h`), with SignalWire-shaped (UUID) call and stream ids.
    pub fn signalwire(url: &str, from: &str, to: &str, rate: u32) -> Self {
        Self {
            call_sid: uuid::Uuid::new_v4().hyphenated().to_string(),
            stream_sid: uuid::Uuid::new_v4().hyphenated().to_string(),
            wire: Wire::SignalWire { rate },
            ..Self::new(url, from, to)
        }
    }
}

impl CallerOptions {
    /// A Genesys Audio Connector session from `from` to `to` (mono PCMU unless `stereo`),
    /// authenticated with `api_key` and, when `client_secret` is set, signed with it.
    pub fn genesys(
        url: &str,
        from: &str,
        to: &str,
        api_key: &str,
        client_secret: Option<&[u8]>,
        stereo: bool,
    ) -> Self {
        Self {
            call_sid: uuid::Uuid::new_v4().hyphenated().to_string(),
            stream_sid: uuid::Uuid::new_v4().hyphenated().to_string(),
            wire: Wire::Genesys {
                api_key: api_key.to_string(),
                client_secret: client_secret.map(<[u8]>::to_vec),
                organization_id: "d7934305-0972-4844-938e-9060eef73d05".into(),
                stereo,
            },
            ..Self::new(url, from, to)
        }
    }

    /// A jambonz `listen` call from `from` to `to`, caller audio at `rate`, bot audio expected
    /// at `bidirectional_rate`, with a jambonz-shaped (UUID) call id.
    pub fn jambonz(url: &str, from: &str, to: &str, rate: u32, bidirectional_rate: u32) -> Self {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        Self {
            call_sid: id.clone(),
            stream_sid: id,
            wire: Wire::Jambonz {
                rate,
                bidirectional_rate,
                ws_auth: None,
            },
            ..Self::new(url, from, to)
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
    /// Everything played to the caller (PCM at `heard_rate`), silence excluded.
    pub heard: Vec<i16>,
    /// Sample rate of `heard` (8 kHz, or the provider's outbound rate).
    pub heard_rate: u32,
    /// Media messages received.
    pub media_frames: usize,
    /// Media payloads that did not hold exactly one 20 ms frame (160 bytes of μ-law for Twilio).
    pub odd_frames: usize,
    /// Messages with a stream id other than ours.
    pub wrong_stream_sid: usize,
    /// Marks reached by playback, in order.
    pub marks_played: Vec<String>,
    /// Marks flushed by a clear.
    pub marks_cleared: Vec<String>,
    /// `clear` messages received.
    pub clears: usize,
    /// Messages that are not valid outbound JSON of the protocol.
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
    /// Times playback ran dry after playing something (reported where the protocol does:
    /// Genesys `playback_completed`).
    pub drains: usize,
    /// XOFFs the provider sent (Asterisk).
    pub pauses: usize,
    /// Hang-up frames voxhook sent (AudioSocket).
    pub hangups: usize,
    /// Audio frames that arrived while the playback buffer was at the wire's cap (a provider
    /// without a playout buffer, AudioSocket): dropped, never played.
    pub overflow_frames: usize,
    /// Media frames voxhook sent after the provider's XOFF, before its XON, past the grace
    /// for frames already in flight (Asterisk).
    pub sent_while_paused: usize,
}

enum Command {
    Say(Vec<i16>),
    Dtmf(char),
    Raw(Message),
    Hangup,
    /// Drop the connection without the provider's `stop` or a close frame.
    Drop,
    /// Go on sending, never read again.
    StopReading,
}

/// Caller speech not yet streamed: `Say`s the loop has not taken yet, and samples queued.
/// Both count, so `finish_speaking` right after `say` waits for that speech.
#[derive(Default)]
struct Speaking {
    says: usize,
    samples: usize,
}

/// A live simulated call.
pub struct SimCaller {
    commands: mpsc::Sender<Command>,
    log: Arc<Mutex<CallerLog>>,
    speaking: Arc<Mutex<Speaking>>,
    /// The call's ids.
    pub options: CallerOptions,
}

impl SimCaller {
    /// Connects and starts the stream.
    pub async fn connect(options: CallerOptions) -> Result<Self, String> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let fail = |e: &dyn std::fmt::Display| format!("connect {}: {e}", options.url);
        if let Wire::AudioSocket = options.wire {
            let wire = make_wire(&options).map_err(|e| fail(&e))?;
            let (sink, stream) = super::audiosocket::connect(&options.url).await?;
            return Ok(Self::spawn(options, move |rx, log, speaking| {
                drive(sink, stream, wire, rx, log, speaking)
            }));
        }
        let url = match &options.wire {
            Wire::Plivo {
                stream_token: Some(t),
                ..
            } => format!(
                "{}?{}={t}",
                options.url,
                crate::telephony::plivo::TOKEN_PARAMETER
            ),
            Wire::Vonage {
                stream_token: Some(t),
                ..
            } => format!(
                "{}?{}={t}",
                options.url,
                crate::telephony::vonage::TOKEN_PARAMETER
            ),
            _ => options.url.clone(),
        };
        let mut req = url.as_str().into_client_request().map_err(|e| fail(&e))?;
        if let Some(sig) = &options.signature {
            let value = sig.parse().map_err(|e| fail(&e))?;
            let header = match options.wire {
                Wire::SignalWire { .. } => crate::telephony::signalwire::SIGNATURE_HEADER,
                _ => "x-twilio-signature",
            };
            req.headers_mut().insert(header, value);
        }
        if let Wire::Exotel {
            basic_auth: Some((user, password)),
            ..
        }
        | Wire::Asterisk {
            basic_auth: Some((user, password)),
            ..
        } = &options.wire
        {
            let value = format!("Basic {}", B64.encode(format!("{user}:{password}")));
            let value = value.parse().map_err(|e| fail(&e))?;
            req.headers_mut().insert("authorization", value);
        }
        if let Wire::Telnyx {
            auth_token: Some(token),
            ..
        } = &options.wire
        {
            let value = token.parse().map_err(|e| fail(&e))?;
            req.headers_mut()
                .insert(crate::telephony::telnyx::AUTH_TOKEN_HEADER, value);
        }
        if let Wire::Asterisk { .. } = &options.wire {
            let value = crate::telephony::asterisk::SUBPROTOCOL
                .parse()
                .map_err(|e| fail(&e))?;
            req.headers_mut().insert("sec-websocket-protocol", value);
        }
        let wire = make_wire(&options).map_err(|e| fail(&e))?;
        for (name, value) in wire.upgrade_headers() {
            let value = value.parse().map_err(|e| fail(&e))?;
            req.headers_mut().insert(name, value);
        }
        let connector = options
            .tls
            .clone()
            .map(tokio_tungstenite::Connector::Rustls);
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(req, None, false, connector)
            .await
            .map_err(|e| fail(&e))?;
        Ok(Self::spawn(options, move |rx, log, speaking| {
            let (sink, stream) = ws.split();
            drive(sink, stream, wire, rx, log, speaking)
        }))
    }

    /// Starts the engine `run` makes (from the command queue and the shared log).
    fn spawn<F>(
        options: CallerOptions,
        run: impl FnOnce(mpsc::Receiver<Command>, Arc<Mutex<CallerLog>>, Arc<Mutex<Speaking>>) -> F,
    ) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (commands, rx) = mpsc::channel(64);
        let log = Arc::new(Mutex::new(CallerLog::default()));
        let speaking = Arc::new(Mutex::new(Speaking::default()));
        tokio::spawn(run(rx, log.clone(), speaking.clone()));
        Self {
            commands,
            log,
            speaking,
            options,
        }
    }

    /// Queues speech (8 kHz PCM, resampled to the wire's rate), streamed in real time after
    /// what is queued already.
    pub async fn say(&self, pcm_8k: Vec<i16>) {
        self.speaking.lock().unwrap_or_else(|p| p.into_inner()).says += 1;
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

    /// Sends the provider's `stop` and closes the socket.
    pub async fn hang_up(&self) {
        let _ = self.commands.send(Command::Hangup).await;
    }

    /// Drops the connection at once: no `stop`, no close frame (a carrier's crash or a
    /// network cut).
    pub async fn drop_connection(&self) {
        let _ = self.commands.send(Command::Drop).await;
    }

    /// Goes on sending media but never reads again, so voxhook's writes back up until the
    /// socket's buffers are full (a stalled peer).
    pub async fn stop_reading(&self) {
        let _ = self.commands.send(Command::StopReading).await;
    }

    /// A snapshot of what was observed.
    pub fn log(&self) -> CallerLog {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until queued caller speech has been streamed.
    pub async fn finish_speaking(&self) {
        while {
            let s = self.speaking.lock().unwrap_or_else(|p| p.into_inner());
            s.says > 0 || s.samples > 0
        } {
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

/// What voxhook sent, as the wire read it.
pub enum Heard {
    /// Bot audio at the wire's outbound rate; `odd` when it was not one 20 ms frame.
    Audio {
        /// The PCM.
        pcm: Vec<i16>,
        /// Not one 20 ms frame.
        odd: bool,
    },
    /// A mark (Plivo: checkpoint) to echo once playback reaches it.
    Mark(String),
    /// Flush playback.
    Clear,
    /// A protocol message the wire answers itself (nothing to play).
    Control(Vec<Value>),
    /// voxhook hung the call up with a protocol frame (AudioSocket `0x00`).
    Hangup,
    /// Not a valid outbound message of the protocol.
    Invalid,
}

/// One provider's wire format, as the engine needs it: the messages a caller sends and how
/// voxhook's messages read. Every `*_message` returns the JSON text of one frame.
pub trait CallerWire: Send + 'static {
    /// Rate of the caller audio sent.
    fn inbound_rate(&self) -> u32;
    /// Rate of the bot audio received.
    fn outbound_rate(&self) -> u32;
    /// The frames that open the stream (`connected`, `start`).
    fn opening(&mut self) -> Vec<Value>;
    /// One 20 ms frame of caller audio (JSON wires; binary ones override [`Self::media_message`]
    /// and leave this unused).
    fn media(&mut self, _pcm: &[i16], _elapsed_ms: u128) -> Value {
        Value::Null
    }
    /// Extra headers on the upgrade request (auth, `Sec-WebSocket-Protocol`).
    fn upgrade_headers(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// A key press.
    fn dtmf(&mut self, key: char) -> Value;
    /// A mark echoed back (played or flushed); `None` when the provider does not
    /// acknowledge this one (Plivo drops a call's first checkpoint).
    fn mark(&mut self, name: &str) -> Option<Value>;
    /// The end of the stream (`None`: the provider only closes the socket).
    fn stop(&mut self) -> Option<Value>;
    /// Whether `v` names a stream other than ours.
    fn wrong_stream(&self, v: &Value) -> bool;
    /// Decodes an outbound media payload (base64) into PCM; `None` when it is not valid.
    fn payload(&mut self, b64: &str) -> Option<(Vec<i16>, bool)>;
    /// Reads one message from voxhook (Twilio-style `media`/`mark`/`clear` by default).
    fn read(&mut self, v: &Value) -> Heard {
        match v["event"].as_str() {
            Some("media") => match v["media"]["payload"].as_str().and_then(|p| self.payload(p)) {
                Some((pcm, odd)) => Heard::Audio { pcm, odd },
                None => Heard::Invalid,
            },
            Some("mark") => match v["mark"]["name"].as_str() {
                Some(n) => Heard::Mark(n.to_string()),
                None => Heard::Invalid,
            },
            Some("clear") => Heard::Clear,
            _ => Heard::Invalid,
        }
    }
    /// What the provider reports when its playback buffer runs dry after playing (Genesys
    /// `playback_completed`); most report nothing.
    fn drained(&mut self) -> Option<Value> {
        None
    }
    /// What the provider answers a clear with: by default it echoes the flushed marks.
    fn cleared(&mut self, flushed: &[String]) -> Vec<Value> {
        flushed.iter().filter_map(|n| self.mark(n)).collect()
    }
    /// One 20 ms frame of caller audio as the message it travels in: by default `media` as
    /// JSON text; binary protocols (Vonage, Asterisk) send the raw bytes.
    fn media_message(&mut self, pcm: &[i16], elapsed_ms: u128) -> Message {
        Message::Text(self.media(pcm, elapsed_ms).to_string().into())
    }
    /// How a control message travels: JSON text by default (a JSON string is sent as its
    /// bare text, for single-line text protocols).
    fn text_message(&self, v: Value) -> Message {
        match v {
            Value::String(line) => Message::Text(line.into()),
            other => Message::Text(other.to_string().into()),
        }
    }
    /// Reads a text message from voxhook into the shape `read` takes (JSON by default).
    fn parse_text(&self, text: &str) -> Option<Value> {
        serde_json::from_str(text).ok()
    }
    /// Reads a binary message from voxhook (not part of a JSON protocol).
    fn read_binary(&mut self, _data: &[u8]) -> Heard {
        Heard::Invalid
    }
    /// The playback queue now holds `queued_samples` (after voxhook's audio arrived or some
    /// played): the flow-control events the provider sends at that point (Asterisk's XOFF and
    /// XON). None by default.
    fn queue_changed(&mut self, _queued_samples: usize) -> Vec<Value> {
        Vec::new()
    }
    /// Flow control so far: how often the provider said XOFF, and how many media frames
    /// voxhook sent while told to stop (past the grace for frames already in flight).
    fn flow_stats(&self) -> (usize, usize) {
        (0, 0)
    }
    /// The most audio (samples) the provider side holds for playback; what arrives beyond it
    /// is dropped and counted (`overflow_frames`). `None` (most providers): a deep buffer.
    fn playback_cap(&self) -> Option<usize> {
        None
    }
}

fn make_wire(o: &CallerOptions) -> Result<Box<dyn CallerWire>, String> {
    Ok(match &o.wire {
        Wire::AudioSocket => Box::new(super::audiosocket::AudioSocketWire::new(o)?),
        Wire::Twilio => Box::new(TwilioWire {
            opts: o.clone(),
            rate: 8_000,
            account: "ACsimulated".into(),
            seq: 0,
            chunk: 0,
        }),
        Wire::SignalWire { rate } => {
            if ![8_000, 16_000, 24_000].contains(rate) {
                return Err(format!("SignalWire streams no codec at {rate} Hz"));
            }
            Box::new(TwilioWire {
                opts: o.clone(),
                rate: *rate,
                account: "b5f3a0c4-8a62-4b7e-9f1d-2c3e4d5f6a7b".into(),
                seq: 0,
                chunk: 0,
            })
        }
        Wire::Exotel { rate, .. } => {
            if ![8_000, 16_000, 24_000].contains(rate) {
                return Err(format!("Exotel streams no PCM at {rate} Hz"));
            }
            Box::new(ExotelWire {
                opts: o.clone(),
                rate: *rate,
                seq: 0,
            })
        }
        Wire::Genesys {
            api_key,
            client_secret,
            organization_id,
            stereo,
        } => Box::new(GenesysWire {
            opts: o.clone(),
            api_key: api_key.clone(),
            client_secret: client_secret.clone(),
            organization_id: organization_id.clone(),
            stereo: *stereo,
            seq: 0,
            server_seq: 0,
            started: Instant::now(),
        }),
        Wire::Jambonz {
            rate,
            bidirectional_rate,
            ws_auth,
        } => {
            let rates = crate::telephony::jambonz::config::RATES;
            if !rates.contains(rate) || !rates.contains(bidirectional_rate) {
                return Err(format!(
                    "jambonz streams no L16 at {rate}/{bidirectional_rate} Hz"
                ));
            }
            Box::new(JambonzWire {
                opts: o.clone(),
                rate: *rate,
                bidirectional_rate: *bidirectional_rate,
                ws_auth: ws_auth.clone(),
            })
        }
        Wire::Vonage { rate, .. } => {
            if !crate::telephony::vonage::RATES.contains(rate) {
                return Err(format!("Vonage streams no L16 at {rate} Hz"));
            }
            Box::new(VonageWire {
                opts: o.clone(),
                rate: *rate,
                notified: BTreeMap::new(),
            })
        }
        Wire::Asterisk {
            format,
            control,
            flow_levels,
            ..
        } => {
            let media = crate::telephony::asterisk::MediaFormat::from_name(format)
                .ok_or_else(|| format!("Asterisk format {format} is not simulated"))?;
            Box::new(AsteriskWire {
                opts: o.clone(),
                name: format.clone(),
                media,
                control: *control,
                xoff: flow_levels.0,
                xon: flow_levels.1,
                paused_at: None,
                pauses: 0,
                sent_while_paused: 0,
            })
        }
        Wire::Plivo { codec, .. } => Box::new(PlivoWire {
            opts: o.clone(),
            codec: *codec,
            acked_first: false,
            seq: 0,
        }),
        Wire::Telnyx {
            inbound,
            outbound,
            auth_token,
        } => Box::new(TelnyxWire {
            opts: o.clone(),
            inbound: *inbound,
            outbound: *outbound,
            auth_token: auth_token.clone(),
            encoder: PayloadEncoder::new(*inbound)?,
            decoder: PayloadDecoder::new(*outbound).map_err(|e| e.to_string())?,
            seq: 0,
            chunk: 0,
        }),
    })
}

/// The engine over one connection's frame sink and stream (a WebSocket's halves, or
/// AudioSocket's framed TCP).
async fn drive<Si, St>(
    mut sink: Si,
    mut stream: St,
    mut wire: Box<dyn CallerWire>,
    mut commands: mpsc::Receiver<Command>,
    log: Arc<Mutex<CallerLog>>,
    speaking: Arc<Mutex<Speaking>>,
) where
    Si: futures_util::Sink<Message> + Unpin,
    St: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    for m in wire.opening() {
        if sink.send(wire.text_message(m)).await.is_err() {
            return;
        }
    }
    let in_frame = frame_len(wire.inbound_rate());
    let out_frame = frame_len(wire.outbound_rate());
    log.lock().unwrap_or_else(|p| p.into_inner()).heard_rate = wire.outbound_rate();
    let mut outgoing: VecDeque<i16> = VecDeque::new();
    let mut playback: VecDeque<Queued> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut reading = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Caller → voxhook: one 20 ms frame, speech or silence, like a phone line.
                let frame: Vec<i16> = (0..in_frame).map(|_| outgoing.pop_front().unwrap_or(0)).collect();
                speaking.lock().unwrap_or_else(|p| p.into_inner()).samples = outgoing.len();
                let media = wire.media_message(&frame, started.elapsed().as_millis());
                if sink.send(media).await.is_err() {
                    break;
                }
                // voxhook → caller: play 20 ms of the buffer; echo marks playback reaches.
                let mut echoes = play(&mut playback, out_frame, wire.as_mut(), &log);
                echoes.extend(wire.queue_changed(queued(&playback)));
                {
                    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                    (l.pauses, l.sent_while_paused) = wire.flow_stats();
                }
                for echo in echoes {
                    if sink.send(wire.text_message(echo)).await.is_err() {
                        break;
                    }
                }
            }
            cmd = commands.recv() => match cmd {
                Some(Command::Say(pcm)) => {
                    outgoing.extend(to_rate(pcm, wire.inbound_rate()));
                    let mut s = speaking.lock().unwrap_or_else(|p| p.into_inner());
                    s.says = s.says.saturating_sub(1);
                    s.samples = outgoing.len();
                }
                Some(Command::Dtmf(k)) => {
                    let key = wire.dtmf(k);
                    let _ = sink.send(wire.text_message(key)).await;
                }
                Some(Command::Raw(m)) => { let _ = sink.send(m).await; }
                Some(Command::Drop) => break,
                Some(Command::StopReading) => reading = false,
                Some(Command::Hangup) | None => {
                    if let Some(stop) = wire.stop() {
                        let _ = sink.send(wire.text_message(stop)).await;
                    }
                    let _ = sink.close().await;
                    break;
                }
            },
            msg = stream.next(), if reading => {
                let Some(Ok(msg)) = msg else { break };
                let heard = match msg {
                    Message::Text(text) => match wire.parse_text(text.as_str()) {
                        Some(v) => {
                            if wire.wrong_stream(&v) {
                                log.lock().unwrap_or_else(|p| p.into_inner()).wrong_stream_sid += 1;
                            }
                            wire.read(&v)
                        }
                        None => Heard::Invalid,
                    },
                    Message::Binary(data) => wire.read_binary(&data),
                    Message::Close(frame) => {
                        let frame = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                        log.lock().unwrap_or_else(|p| p.into_inner()).close_frame = frame;
                        break;
                    }
                    _ => continue,
                };
                let mut answers = on_message(heard, wire.as_mut(), &mut playback, &log);
                answers.extend(wire.queue_changed(queued(&playback)));
                {
                    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                    (l.pauses, l.sent_while_paused) = wire.flow_stats();
                }
                for answer in answers {
                    let _ = sink.send(wire.text_message(answer)).await;
                }
            }
        }
    }
    log.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
}

/// Caller speech at 8 kHz, at the wire's rate.
fn to_rate(pcm_8k: Vec<i16>, rate: u32) -> Vec<i16> {
    if rate == 8_000 {
        return pcm_8k;
    }
    let Ok(mut r) = Resampler::new(8_000, rate) else {
        return pcm_8k;
    };
    let mut out = Vec::with_capacity(pcm_8k.len() * rate as usize / 8_000);
    r.process(&pcm_8k, &mut out);
    r.flush(&mut out);
    out
}

/// Plays `frame` samples of the buffer; returns the echoes of the marks playback reached
/// (a mark the provider does not acknowledge is not counted as played).
fn play(
    playback: &mut VecDeque<Queued>,
    frame: usize,
    wire: &mut dyn CallerWire,
    log: &Mutex<CallerLog>,
) -> Vec<Value> {
    let mut need = frame;
    let mut echoes = Vec::new();
    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
    let had = !playback.is_empty();
    while let Some(item) = playback.pop_front() {
        match item {
            Queued::Mark(name) => {
                let Some(echo) = wire.mark(&name) else {
                    continue;
                };
                let at = l.heard.len();
                l.mark_offsets.push((name.clone(), at));
                l.marks_played.push(name);
                echoes.push(echo);
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
    l.queued_samples = queued(playback);
    if had && playback.is_empty() {
        if let Some(report) = wire.drained() {
            l.drains += 1;
            echoes.push(report);
        }
    }
    echoes
}

/// Applies one message from voxhook to the playback buffer; returns the provider's answer to a
/// clear (the flushed marks echoed, or Plivo's `clearedAudio`).
fn on_message(
    heard: Heard,
    wire: &mut dyn CallerWire,
    playback: &mut VecDeque<Queued>,
    log: &Mutex<CallerLog>,
) -> Vec<Value> {
    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
    let mut answers = Vec::new();
    match heard {
        Heard::Audio { pcm, odd } => {
            l.media_frames += 1;
            l.odd_frames += usize::from(odd);
            let full = wire
                .playback_cap()
                .is_some_and(|cap| queued(playback) + pcm.len() > cap);
            if full {
                l.overflow_frames += 1;
            } else {
                playback.push_back(Queued::Audio(pcm));
            }
        }
        Heard::Hangup => l.hangups += 1,
        Heard::Mark(n) => playback.push_back(Queued::Mark(n)),
        Heard::Clear => {
            l.clears += 1;
            let flushed: Vec<String> = playback
                .drain(..)
                .filter_map(|q| match q {
                    Queued::Mark(n) => Some(n),
                    Queued::Audio(_) => None,
                })
                .collect();
            l.marks_cleared.extend(flushed.iter().cloned());
            answers = wire.cleared(&flushed);
        }
        Heard::Control(replies) => answers = replies,
        Heard::Invalid => l.invalid_messages += 1,
    }
    l.queued_samples = queued(playback);
    l.max_queued_samples = l.max_queued_samples.max(l.queued_samples);
    answers
}

/// Twilio Media Streams: camelCase, string sequence numbers, μ-law 8 kHz, `streamSid` on
/// every message both ways. SignalWire speaks the same, with L16 (little-endian) at 16 or
/// 24 kHz when the `<Stream codec>` asked for it.
struct TwilioWire {
    opts: CallerOptions,
    /// 8000: μ-law; above: L16.
    rate: u32,
    /// `accountSid` (SignalWire: the project ID).
    account: String,
    seq: u64,
    chunk: u64,
}

impl TwilioWire {
    fn next_seq(&mut self) -> String {
        self.seq += 1;
        self.seq.to_string()
    }
}

impl TwilioWire {
    fn l16(&self) -> bool {
        self.rate != 8_000
    }
}

impl CallerWire for TwilioWire {
    fn inbound_rate(&self) -> u32 {
        self.rate
    }

    fn outbound_rate(&self) -> u32 {
        self.rate
    }

    fn opening(&mut self) -> Vec<Value> {
        if !self.opts.send_start {
            return Vec::new();
        }
        let o = &self.opts;
        let sid = o.stream_sid.clone();
        let encoding = if self.l16() {
            "audio/x-l16"
        } else {
            "audio/x-mulaw"
        };
        let start = json!({"event": "start", "sequenceNumber": self.next_seq(), "streamSid": sid,
            "start": {"accountSid": self.account, "streamSid": sid, "callSid": self.opts.call_sid,
                "tracks": ["inbound"], "customParameters": self.opts.parameters,
                "mediaFormat": {"encoding": encoding, "sampleRate": self.rate, "channels": 1}}});
        let connected = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
        vec![connected, start]
    }

    fn media(&mut self, pcm: &[i16], elapsed_ms: u128) -> Value {
        let mut bytes = Vec::with_capacity(pcm.len() * 2);
        if self.l16() {
            bytes.extend(pcm.iter().flat_map(|s| s.to_le_bytes()));
        } else {
            Codec::Mulaw.encode_into(pcm, &mut bytes);
        }
        self.chunk += 1;
        json!({"event": "media", "sequenceNumber": self.next_seq(), "streamSid": self.opts.stream_sid,
            "media": {"track": "inbound", "chunk": self.chunk.to_string(),
                "timestamp": elapsed_ms.to_string(),
                "payload": B64.encode(&bytes)}})
    }

    fn dtmf(&mut self, key: char) -> Value {
        json!({"event": "dtmf", "sequenceNumber": self.next_seq(), "streamSid": self.opts.stream_sid,
            "dtmf": {"track": "inbound_track", "digit": key.to_string()}})
    }

    fn mark(&mut self, name: &str) -> Option<Value> {
        Some(
            json!({"event": "mark", "sequenceNumber": self.next_seq(), "streamSid": self.opts.stream_sid, "mark": {"name": name}}),
        )
    }

    fn stop(&mut self) -> Option<Value> {
        Some(
            json!({"event": "stop", "sequenceNumber": self.next_seq(), "streamSid": self.opts.stream_sid,
            "stop": {"accountSid": self.account, "callSid": self.opts.call_sid}}),
        )
    }

    fn wrong_stream(&self, v: &Value) -> bool {
        v["streamSid"].as_str() != Some(self.opts.stream_sid.as_str())
    }

    fn payload(&mut self, b64: &str) -> Option<(Vec<i16>, bool)> {
        let bytes = B64.decode(b64).ok()?;
        if self.l16() {
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            let pcm: Vec<i16> = bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            let odd = pcm.len() != self.rate as usize / 50;
            return Some((pcm, odd));
        }
        let mut pcm = Vec::with_capacity(bytes.len());
        Codec::Mulaw.decode_into(&bytes, &mut pcm);
        Some((pcm, bytes.len() != FRAME))
    }
}

/// Telnyx media streaming: snake_case, `stream_id` on what Telnyx sends and nothing on what
/// it receives, the call's numbers and `custom_parameters` in `start`, `occurred_at` on
/// digits, RTP payloads in the negotiated codec (L16 big-endian, one Opus frame per message).
struct TelnyxWire {
    opts: CallerOptions,
    inbound: MediaCodec,
    outbound: MediaCodec,
    auth_token: Option<String>,
    encoder: PayloadEncoder,
    decoder: PayloadDecoder,
    seq: u64,
    chunk: u64,
}

impl TelnyxWire {
    fn next_seq(&mut self) -> String {
        self.seq += 1;
        self.seq.to_string()
    }
}

impl CallerWire for TelnyxWire {
    fn inbound_rate(&self) -> u32 {
        self.inbound.rate
    }

    fn outbound_rate(&self) -> u32 {
        self.outbound.rate
    }

    fn opening(&mut self) -> Vec<Value> {
        if !self.opts.send_start {
            return Vec::new();
        }
        let mut connected = json!({"event": "connected", "version": "1.0.0"});
        if let Some(t) = &self.auth_token {
            connected[crate::telephony::telnyx::AUTH_TOKEN_HEADER] = json!(t);
        }
        let o = &self.opts;
        let mut custom = o.parameters.clone();
        let from = custom.remove("from");
        let to = custom.remove("to");
        let start = json!({"event": "start", "sequence_number": self.next_seq(),
            "stream_id": self.opts.stream_sid,
            "start": {"user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
                "call_control_id": self.opts.call_sid,
                "call_session_id": "ff55a038-6f5d-11ef-9692-02420aeffb1f",
                "from": from, "to": to, "tags": [], "custom_parameters": custom,
                "media_format": {"encoding": self.inbound.encoding.name(),
                    "sample_rate": self.inbound.rate, "channels": 1}}});
        vec![connected, start]
    }

    fn media(&mut self, pcm: &[i16], elapsed_ms: u128) -> Value {
        let mut payload = Vec::new();
        self.encoder.encode(pcm, |p| payload.extend_from_slice(p));
        self.chunk += 1;
        json!({"event": "media", "sequence_number": self.next_seq(), "stream_id": self.opts.stream_sid,
            "media": {"track": "inbound", "chunk": self.chunk.to_string(),
                "timestamp": elapsed_ms.to_string(), "payload": B64.encode(&payload)}})
    }

    fn dtmf(&mut self, key: char) -> Value {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let seq = self.next_seq();
        telnyx_dtmf(&self.opts.stream_sid, &seq, key, &now)
    }

    fn mark(&mut self, name: &str) -> Option<Value> {
        Some(
            json!({"event": "mark", "sequence_number": self.next_seq(), "stream_id": self.opts.stream_sid,
            "mark": {"name": name}}),
        )
    }

    fn stop(&mut self) -> Option<Value> {
        Some(
            json!({"event": "stop", "sequence_number": self.next_seq(), "stream_id": self.opts.stream_sid,
            "stop": {"user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
                "call_control_id": self.opts.call_sid}}),
        )
    }

    fn wrong_stream(&self, v: &Value) -> bool {
        // Telnyx needs no stream id on what it receives; one that is there must be ours.
        v.get("stream_id")
            .is_some_and(|id| id.as_str() != Some(self.opts.stream_sid.as_str()))
    }

    fn payload(&mut self, b64: &str) -> Option<(Vec<i16>, bool)> {
        let bytes = B64.decode(b64).ok()?;
        let mut pcm = Vec::new();
        self.decoder.decode(&bytes, &mut pcm).ok()?;
        let odd = pcm.len() != self.outbound.frame_samples();
        Some((pcm, odd))
    }
}

/// Exotel Voicebot streams, as Exotel speaks them (see [`Wire::Exotel`]).
struct ExotelWire {
    opts: CallerOptions,
    rate: u32,
    seq: u64,
}

impl ExotelWire {
    fn next_seq(&mut self) -> String {
        self.seq += 1;
        self.seq.to_string()
    }
}

impl CallerWire for ExotelWire {
    fn inbound_rate(&self) -> u32 {
        self.rate
    }

    fn outbound_rate(&self) -> u32 {
        self.rate
    }

    fn opening(&mut self) -> Vec<Value> {
        if !self.opts.send_start {
            return Vec::new();
        }
        let mut custom = self.opts.parameters.clone();
        let from = custom.remove("from");
        let to = custom.remove("to");
        let sid = self.opts.stream_sid.clone();
        let start = json!({"event": "start", "sequence_number": self.next_seq(), "stream_sid": sid,
            "start": {"stream_sid": sid, "call_sid": self.opts.call_sid, "account_sid": "exotel-sim",
                "from": from, "to": to, "custom_parameters": custom,
                "media_format": {"encoding": "audio/x-raw", "sample_rate": self.rate.to_string(),
                    "bit_rate": "16"}}});
        vec![json!({"event": "connected"}), start]
    }

    fn media(&mut self, pcm: &[i16], elapsed_ms: u128) -> Value {
        let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        let seq = self.next_seq();
        json!({"event": "media", "sequence_number": seq, "stream_sid": self.opts.stream_sid,
            "media": {"chunk": seq, "timestamp": elapsed_ms.to_string(), "payload": B64.encode(&bytes)}})
    }

    fn dtmf(&mut self, key: char) -> Value {
        json!({"event": "dtmf", "sequence_number": self.next_seq(), "stream_sid": self.opts.stream_sid,
            "dtmf": {"digit": key.to_string(), "duration": "100"}})
    }

    fn mark(&mut self, name: &str) -> Option<Value> {
        Some(json!({"event": "mark", "sequence_number": self.next_seq(),
            "stream_sid": self.opts.stream_sid, "mark": {"name": name}}))
    }

    fn stop(&mut self) -> Option<Value> {
        Some(
            json!({"event": "stop", "sequence_number": self.next_seq(), "stream_sid": self.opts.stream_sid,
            "stop": {"call_sid": self.opts.call_sid, "account_sid": "exotel-sim", "reason": "callended"}}),
        )
    }

    fn wrong_stream(&self, v: &Value) -> bool {
        v["stream_sid"].as_str() != Some(self.opts.stream_sid.as_str())
    }

    fn payload(&mut self, b64: &str) -> Option<(Vec<i16>, bool)> {
        let bytes = B64.decode(b64).ok()?;
        // Exotel takes payloads in multiples of 320 bytes.
        if !bytes.len().is_multiple_of(320) {
            return None;
        }
        let pcm: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        // voxhook's chunks (a shorter one only before a mark); never over 100 KB.
        let odd = bytes.len() > crate::telephony::exotel::chunk_bytes(self.rate);
        Some((pcm, odd))
    }
}

/// Vonage's Voice API WebSocket, as Vonage speaks it (see [`Wire::Vonage`]).
struct VonageWire {
    opts: CallerOptions,
    rate: u32,
    /// The payload of each `notify` queued, by mark name: echoed as sent.
    notified: BTreeMap<String, Value>,
}

impl CallerWire for VonageWire {
    fn inbound_rate(&self) -> u32 {
        self.rate
    }

    fn outbound_rate(&self) -> u32 {
        self.rate
    }

    fn opening(&mut self) -> Vec<Value> {
        if !self.opts.send_start {
            return Vec::new();
        }
        let mut connected = json!({"event": "websocket:connected",
            "content-type": format!("audio/l16;rate={}", self.rate), "uuid": self.opts.call_sid});
        for (k, v) in &self.opts.parameters {
            connected[k] = json!(v);
        }
        vec![connected]
    }

    /// Unused: Vonage audio is binary ([`CallerWire::media_message`]).
    fn media(&mut self, _pcm: &[i16], _elapsed_ms: u128) -> Value {
        Value::Null
    }

    fn media_message(&mut self, pcm: &[i16], _elapsed_ms: u128) -> Message {
        Message::Binary(pcm.iter().flat_map(|s| s.to_le_bytes()).collect())
    }

    fn dtmf(&mut self, key: char) -> Value {
        json!({"event": "websocket:dtmf", "digit": key.to_string(), "duration": 260})
    }

    fn mark(&mut self, name: &str) -> Option<Value> {
        let payload = self.notified.remove(name)?;
        Some(json!({"event": "websocket:notify", "payload": payload}))
    }

    fn stop(&mut self) -> Option<Value> {
        None
    }

    fn wrong_stream(&self, _v: &Value) -> bool {
        false
    }

    fn payload(&mut self, _b64: &str) -> Option<(Vec<i16>, bool)> {
        None
    }

    fn read(&mut self, v: &Value) -> Heard {
        match v["action"].as_str() {
            Some("notify") => match v["payload"]["mark"].as_str() {
                Some(name) => {
                    self.notified.insert(name.to_string(), v["payload"].clone());
                    Heard::Mark(name.to_string())
                }
                None => Heard::Invalid,
            },
            Some("clear") if v.as_object().is_some_and(|o| o.len() == 1) => Heard::Clear,
            _ => Heard::Invalid,
        }
    }

    /// Vonage answers with `websocket:cleared`; the flushed notifies are never sent.
    fn cleared(&mut self, flushed: &[String]) -> Vec<Value> {
        for name in flushed {
            self.notified.remove(name);
        }
        vec![json!({"event": "websocket:cleared"})]
    }

    fn read_binary(&mut self, data: &[u8]) -> Heard {
        if !data.len().is_multiple_of(2) {
            return Heard::Invalid;
        }
        let pcm: Vec<i16> = data
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        // Vonage takes exactly one 20 ms frame per message.
        let odd = pcm.len() != frame_len(self.rate);
        Heard::Audio { pcm, odd }
    }
}

/// Asterisk chan_websocket, as Asterisk speaks it (see [`Wire::Asterisk`]).
struct AsteriskWire {
    opts: CallerOptions,
    name: String,
    media: crate::telephony::asterisk::MediaFormat,
    control: crate::telephony::asterisk::ControlFormat,
    xoff: usize,
    xon: usize,
    /// When XOFF went out, while it holds.
    paused_at: Option<Instant>,
    pauses: usize,
    sent_while_paused: usize,
}

impl AsteriskWire {
    /// Frames voxhook sent within this long after an XOFF were already on their way.
    const IN_FLIGHT_GRACE: Duration = Duration::from_millis(100);

    fn json(&self) -> bool {
        self.control == crate::telephony::asterisk::ControlFormat::Json
    }

    fn frame_bytes(&self) -> usize {
        frame_len(self.media.rate()) * self.media.sample_bytes()
    }

    /// An event without parameters but the channel id (`MEDIA_XOFF`, `MEDIA_XON`).
    fn bare(&self, name: &str) -> Value {
        if self.json() {
            json!({"event": name, "channel_id": self.opts.call_sid})
        } else {
            json!(name)
        }
    }
}

impl CallerWire for AsteriskWire {
    fn inbound_rate(&self) -> u32 {
        self.media.rate()
    }

    fn outbound_rate(&self) -> u32 {
        self.media.rate()
    }

    fn opening(&mut self) -> Vec<Value> {
        if !self.opts.send_start {
            return Vec::new();
        }
        let channel = format!("WebSocket/voxhook-{}", &self.opts.stream_sid[..8]);
        let frame = self.frame_bytes();
        if !self.json() {
            return vec![json!(format!(
                "MEDIA_START connection_id:{} channel:{channel} channel_id:{} format:{} \
                 optimal_frame_size:{frame} ptime:20",
                self.opts.stream_sid, self.opts.call_sid, self.name
            ))];
        }
        let mut vars = serde_json::Map::new();
        for (k, v) in &self.opts.parameters {
            let key = match k.as_str() {
                "from" => "VOXHOOK_CALLER".to_string(),
                "to" => "VOXHOOK_CALLED".to_string(),
                other => other.to_string(),
            };
            vars.insert(key, json!(v));
        }
        vec![
            json!({"event": "MEDIA_START", "connection_id": self.opts.stream_sid,
            "channel": channel, "channel_id": self.opts.call_sid, "format": self.name,
            "optimal_frame_size": frame, "ptime": 20, "channel_variables": vars}),
        ]
    }

    /// Unused: Asterisk media is binary ([`CallerWire::media_message`]).
    fn media(&mut self, _pcm: &[i16], _elapsed_ms: u128) -> Value {
        Value::Null
    }

    fn media_message(&mut self, pcm: &[i16], _elapsed_ms: u128) -> Message {
        let mut bytes = Vec::with_capacity(pcm.len() * 2);
        self.media.encode(pcm, &mut bytes);
        Message::Binary(bytes.into())
    }

    fn dtmf(&mut self, key: char) -> Value {
        if self.json() {
            json!({"event": "DTMF_END", "channel_id": self.opts.call_sid, "digit": key.to_string()})
        } else {
            json!(format!(
                "DTMF_END digit:{key} channel_id:{}",
                self.opts.call_sid
            ))
        }
    }

    fn mark(&mut self, name: &str) -> Option<Value> {
        Some(if self.json() {
            json!({"event": "MEDIA_MARK_PROCESSED", "channel_id": self.opts.call_sid,
                "correlation_id": name})
        } else {
            json!(format!("MEDIA_MARK_PROCESSED {name}"))
        })
    }

    fn stop(&mut self) -> Option<Value> {
        None
    }

    fn wrong_stream(&self, _v: &Value) -> bool {
        false
    }

    fn payload(&mut self, _b64: &str) -> Option<(Vec<i16>, bool)> {
        None
    }

    /// Plain text reads as `{"command": NAME, "correlation_id": REST}`; a message in the other
    /// format is not understood (Asterisk would reject it).
    fn parse_text(&self, text: &str) -> Option<Value> {
        let is_json = text.trim_start().starts_with('{');
        if is_json != self.json() {
            return None;
        }
        if is_json {
            return serde_json::from_str(text).ok();
        }
        let (name, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
        Some(json!({"command": name, "correlation_id": (!rest.is_empty()).then_some(rest)}))
    }

    fn read(&mut self, v: &Value) -> Heard {
        match v["command"].as_str() {
            Some("MARK_MEDIA") => match v["correlation_id"].as_str() {
                Some(id) if !id.is_empty() => Heard::Mark(id.to_string()),
                _ => Heard::Invalid,
            },
            Some("FLUSH_MEDIA") => Heard::Clear,
            _ => Heard::Invalid,
        }
    }

    /// `FLUSH_MEDIA` drops the queued marks without a word.
    fn cleared(&mut self, _flushed: &[String]) -> Vec<Value> {
        Vec::new()
    }

    fn read_binary(&mut self, data: &[u8]) -> Heard {
        if self
            .paused_at
            .is_some_and(|t| t.elapsed() > Self::IN_FLIGHT_GRACE)
        {
            self.sent_while_paused += 1;
        }
        // Asterisk cuts the message into whole frames and drops a remainder.
        let frame = self.frame_bytes();
        let whole = data.len() / frame * frame;
        let mut pcm = Vec::with_capacity(whole);
        if self.media.decode(&data[..whole], &mut pcm).is_err() {
            return Heard::Invalid;
        }
        Heard::Audio {
            pcm,
            odd: data.len() != frame,
        }
    }

    fn queue_changed(&mut self, queued_samples: usize) -> Vec<Value> {
        let frames = queued_samples / frame_len(self.media.rate());
        match self.paused_at {
            None if frames >= self.xoff => {
                self.paused_at = Some(Instant::now());
                self.pauses += 1;
                vec![self.bare("MEDIA_XOFF")]
            }
            Some(_) if frames < self.xon => {
                self.paused_at = None;
                vec![self.bare("MEDIA_XON")]
            }
            _ => Vec::new(),
        }
    }

    fn flow_stats(&self) -> (usize, usize) {
        (self.pauses, self.sent_while_paused)
    }
}

/// Plivo Audio Streams, as Plivo speaks it (see [`Wire::Plivo`]).
struct PlivoWire {
    opts: CallerOptions,
    codec: PlivoCodec,
    /// The call's first checkpoint has gone (unacknowledged, as Plivo does).
    acked_first: bool,
    seq: u64,
}

impl PlivoWire {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

impl CallerWire for PlivoWire {
    fn inbound_rate(&self) -> u32 {
        self.codec.rate
    }

    fn outbound_rate(&self) -> u32 {
        self.codec.rate
    }

    fn opening(&mut self) -> Vec<Value> {
        if !self.opts.send_start {
            return Vec::new();
        }
        let extra = self
            .opts
            .parameters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        vec![json!({"event": "start", "sequenceNumber": self.next_seq(),
            "start": {"callId": self.opts.call_sid, "streamId": self.opts.stream_sid,
                "accountId": "MAXXXXXXXXXXXXXXXXXX", "tracks": ["inbound"],
                "mediaFormat": {"encoding": self.codec.content_type(), "sampleRate": self.codec.rate}},
            "extra_headers": extra})]
    }

    fn media(&mut self, pcm: &[i16], elapsed_ms: u128) -> Value {
        let mut bytes = Vec::with_capacity(pcm.len() * 2);
        self.codec.encode(pcm, &mut bytes);
        let seq = self.next_seq();
        json!({"event": "media", "sequenceNumber": seq, "streamId": self.opts.stream_sid,
            "media": {"track": "inbound", "timestamp": elapsed_ms.to_string(), "chunk": seq,
                "payload": B64.encode(&bytes)}})
    }

    fn dtmf(&mut self, key: char) -> Value {
        json!({"event": "dtmf", "sequenceNumber": self.next_seq(), "streamId": self.opts.stream_sid,
            "dtmf": {"track": "inbound", "digit": key.to_string()}})
    }

    fn mark(&mut self, name: &str) -> Option<Value> {
        if !std::mem::replace(&mut self.acked_first, true) {
            return None;
        }
        Some(
            json!({"event": "playedStream", "sequenceNumber": self.next_seq(),
            "streamId": self.opts.stream_sid, "name": name}),
        )
    }

    fn stop(&mut self) -> Option<Value> {
        None
    }

    fn wrong_stream(&self, v: &Value) -> bool {
        v["streamId"].as_str() != Some(self.opts.stream_sid.as_str())
    }

    fn payload(&mut self, b64: &str) -> Option<(Vec<i16>, bool)> {
        let bytes = B64.decode(b64).ok()?;
        let mut pcm = Vec::new();
        self.codec.decode(&bytes, &mut pcm).ok()?;
        Some((pcm, bytes.len() != self.codec.frame_bytes()))
    }

    fn read(&mut self, v: &Value) -> Heard {
        match v["event"].as_str() {
            Some("playAudio") => {
                let m = &v["media"];
                let declared = m["contentType"].as_str() == Some(self.codec.content_type())
                    && m["sampleRate"].as_u64() == Some(u64::from(self.codec.rate));
                match m["payload"].as_str().and_then(|p| self.payload(p)) {
                    Some((pcm, odd)) if declared => Heard::Audio { pcm, odd },
                    _ => Heard::Invalid,
                }
            }
            Some("checkpoint") => match v["name"].as_str() {
                Some(n) => Heard::Mark(n.to_string()),
                None => Heard::Invalid,
            },
            Some("clearAudio") => Heard::Clear,
            _ => Heard::Invalid,
        }
    }

    fn cleared(&mut self, _flushed: &[String]) -> Vec<Value> {
        // Flushed checkpoints are never acknowledged; the clear itself is.
        vec![
            json!({"event": "clearedAudio", "sequenceNumber": self.next_seq(),
            "streamId": self.opts.stream_sid}),
        ]
    }
}

/// A Telnyx `dtmf` frame for `key` pressed at `occurred_at` (RFC 3339), for tests that send
/// digits out of order as Telnyx may.
pub fn telnyx_dtmf(stream_id: &str, seq: &str, key: char, occurred_at: &str) -> Value {
    json!({"event": "dtmf", "stream_id": stream_id, "occurred_at": occurred_at,
        "sequence_number": seq, "dtmf": {"digit": key.to_string()}})
}

fn queued(q: &VecDeque<Queued>) -> usize {
    q.iter()
        .map(|i| match i {
            Queued::Audio(a) => a.len(),
            Queued::Mark(_) => 0,
        })
        .sum()
}

/// jambonz `listen` in bidirectional streaming mode, as jambonz speaks it (see
/// [`Wire::Jambonz`]).
struct JambonzWire {
    opts: CallerOptions,
    rate: u32,
    bidirectional_rate: u32,
    ws_auth: Option<(String, String)>,
}

impl JambonzWire {
    fn mark_event(name: &str, event: &str) -> Value {
        json!({"type": "mark", "data": {"name": name, "event": event}})
    }
}

impl CallerWire for JambonzWire {
    fn inbound_rate(&self) -> u32 {
        self.rate
    }

    fn outbound_rate(&self) -> u32 {
        self.bidirectional_rate
    }

    fn upgrade_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![(
            "sec-websocket-protocol",
            crate::telephony::jambonz::SUBPROTOCOLS[0].to_string(),
        )];
        if let Some((user, password)) = &self.ws_auth {
            let basic = B64.encode(format!("{user}:{password}"));
            h.push(("authorization", format!("Basic {basic}")));
        }
        h
    }

    fn opening(&mut self) -> Vec<Value> {
        if !self.opts.send_start {
            return Vec::new();
        }
        let mut custom = self.opts.parameters.clone();
        let from = custom.remove("from");
        let to = custom.remove("to");
        vec![
            json!({"callSid": self.opts.call_sid, "direction": "inbound", "from": from,
            "to": to, "callId": format!("{}@10.0.0.5", &self.opts.call_sid[..8]),
            "sipStatus": 200, "callStatus": "in-progress", "callerId": from,
            "accountSid": "fef61e75-cec3-496c-a7bc-8368e4f1da5b",
            "applicationSid": "0e0681b0-d49f-4fb8-b973-b5a3c6758de1",
            "sampleRate": self.rate, "mixType": "mono", "metadata": custom}),
        ]
    }

    fn media_message(&mut self, pcm: &[i16], _elapsed_ms: u128) -> Message {
        let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        Message::Binary(bytes.into())
    }

    fn dtmf(&mut self, key: char) -> Value {
        json!({"event": "dtmf", "dtmf": key.to_string(), "duration": "1600"})
    }

    fn mark(&mut self, name: &str) -> Option<Value> {
        Some(Self::mark_event(name, "playout"))
    }

    fn stop(&mut self) -> Option<Value> {
        None
    }

    fn wrong_stream(&self, _v: &Value) -> bool {
        false
    }

    fn payload(&mut self, _b64: &str) -> Option<(Vec<i16>, bool)> {
        None
    }

    fn read(&mut self, v: &Value) -> Heard {
        match v["type"].as_str() {
            Some("mark") => match v["data"]["name"].as_str() {
                Some(n) => Heard::Mark(n.to_string()),
                None => Heard::Invalid,
            },
            Some("killAudio") => Heard::Clear,
            _ => Heard::Invalid,
        }
    }

    fn read_binary(&mut self, data: &[u8]) -> Heard {
        // jambonz carries an odd trailing byte over to the next frame; voxhook never sends one.
        if !data.len().is_multiple_of(2) {
            return Heard::Invalid;
        }
        let pcm: Vec<i16> = data
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let odd = pcm.len() != frame_len(self.bidirectional_rate);
        Heard::Audio { pcm, odd }
    }

    fn cleared(&mut self, flushed: &[String]) -> Vec<Value> {
        flushed
            .iter()
            .map(|n| Self::mark_event(n, "cleared"))
            .collect()
    }
}

/// Genesys Audio Connector, as Genesys speaks it (see [`Wire::Genesys`]).
struct GenesysWire {
    opts: CallerOptions,
    api_key: String,
    client_secret: Option<Vec<u8>>,
    organization_id: String,
    stereo: bool,
    /// Our last `seq`.
    seq: u64,
    /// voxhook's last `seq`.
    server_seq: u64,
    started: Instant,
}

impl GenesysWire {
    fn message(&mut self, kind: &str, parameters: Value) -> Value {
        self.seq += 1;
        let ms = self.started.elapsed().as_millis();
        json!({"version": "2", "id": self.opts.stream_sid, "type": kind, "seq": self.seq,
            "serverseq": self.server_seq, "position": format!("PT{}.{:03}S", ms / 1000, ms % 1000),
            "parameters": parameters})
    }
}

impl CallerWire for GenesysWire {
    fn inbound_rate(&self) -> u32 {
        8_000
    }

    fn outbound_rate(&self) -> u32 {
        8_000
    }

    fn upgrade_headers(&self) -> Vec<(&'static str, String)> {
        let correlation = uuid::Uuid::new_v4().hyphenated().to_string();
        let mut h = vec![
            ("x-api-key", self.api_key.clone()),
            ("audiohook-organization-id", self.organization_id.clone()),
            ("audiohook-session-id", self.opts.stream_sid.clone()),
            ("audiohook-correlation-id", correlation.clone()),
        ];
        if let Some(secret) = &self.client_secret {
            // `@authority` is the Host header tungstenite sends; `@request-target` the path.
            let rest = self.opts.url.split_once("://").map_or("", |(_, r)| r);
            let (authority, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let target = if target.is_empty() { "/" } else { target };
            let nonce = B64.encode(uuid::Uuid::new_v4().as_bytes());
            let created = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let values = [
                target,
                authority,
                &self.organization_id,
                &self.opts.stream_sid,
                &correlation,
                &self.api_key,
            ];
            let (input, signature) = crate::telephony::genesys::signature::sign(
                secret,
                values,
                &self.api_key,
                &nonce,
                created,
            );
            h.push(("signature-input", input));
            h.push(("signature", signature));
        }
        h
    }

    fn opening(&mut self) -> Vec<Value> {
        if !self.opts.send_start {
            return Vec::new();
        }
        let mut custom = self.opts.parameters.clone();
        let from = custom.remove("from").unwrap_or_default();
        let to = custom.remove("to").unwrap_or_default();
        let stereo = json!({"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000});
        let mono =
            json!({"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000});
        let media = if self.stereo {
            json!([stereo])
        } else {
            json!([stereo, mono])
        };
        let open = json!({"organizationId": self.organization_id,
            "conversationId": self.opts.call_sid,
            "participant": {"id": uuid::Uuid::new_v4().hyphenated().to_string(),
                "ani": format!("tel:{from}"), "aniName": "Simulated Caller", "dnis": format!("tel:{to}")},
            "media": media, "language": "en-US", "inputVariables": custom});
        vec![self.message("open", open)]
    }

    fn media_message(&mut self, pcm: &[i16], _elapsed_ms: u128) -> Message {
        let mut bytes = Vec::with_capacity(pcm.len() * 2);
        Codec::Mulaw.encode_into(pcm, &mut bytes);
        if self.stereo {
            // Customer left, a silent agent right.
            let mut silence = Vec::with_capacity(1);
            Codec::Mulaw.encode_into(&[0], &mut silence);
            bytes = bytes.iter().flat_map(|b| [*b, silence[0]]).collect();
        }
        Message::Binary(bytes.into())
    }

    fn dtmf(&mut self, key: char) -> Value {
        self.message("dtmf", json!({"digit": key.to_string()}))
    }

    fn mark(&mut self, _name: &str) -> Option<Value> {
        // AudioHook carries no marks: voxhook reads playback from `playback_completed`.
        None
    }

    fn stop(&mut self) -> Option<Value> {
        Some(self.message("close", json!({"reason": "end"})))
    }

    fn wrong_stream(&self, v: &Value) -> bool {
        v["id"].as_str() != Some(self.opts.stream_sid.as_str())
    }

    fn payload(&mut self, _b64: &str) -> Option<(Vec<i16>, bool)> {
        None
    }

    fn read(&mut self, v: &Value) -> Heard {
        // voxhook numbers its messages 1, 2, … and acknowledges no more than we sent.
        let seq = v["seq"].as_u64();
        let clientseq = v["clientseq"].as_u64();
        if v["version"] != "2"
            || seq != Some(self.server_seq + 1)
            || clientseq.is_none_or(|c| c > self.seq)
        {
            return Heard::Invalid;
        }
        self.server_seq += 1;
        match v["type"].as_str() {
            Some("opened") if v["parameters"]["media"][0]["format"] == "PCMU" => {
                Heard::Control(Vec::new())
            }
            Some("pong" | "updated" | "closed") => Heard::Control(Vec::new()),
            Some("event") if v["parameters"]["entities"][0]["type"] == "barge_in" => Heard::Clear,
            Some("disconnect") => {
                Heard::Control(vec![self.message("close", json!({"reason": "end"}))])
            }
            _ => Heard::Invalid,
        }
    }

    fn read_binary(&mut self, data: &[u8]) -> Heard {
        if data.is_empty()
            || data.len() > crate::telephony::genesys::config::MAX_BINARY_MESSAGE_BYTES
        {
            return Heard::Invalid;
        }
        let mut pcm = Vec::with_capacity(data.len());
        Codec::Mulaw.decode_into(data, &mut pcm);
        // Packets of whole 20 ms frames.
        let odd = !data.len().is_multiple_of(FRAME);
        Heard::Audio { pcm, odd }
    }

    fn drained(&mut self) -> Option<Value> {
        Some(self.message("playback_completed", json!({})))
    }

    fn cleared(&mut self, _flushed: &[String]) -> Vec<Value> {
        // barge_in stops playback: what was queued is gone, and Genesys says so.
        vec![self.message("playback_completed", json!({}))]
    }
}
