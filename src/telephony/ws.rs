//! The media socket loop, shared by every provider: a reader task that enforces the size limit
//! and decodes frames with the connection's [`MediaDecoder`], and a writer task that encodes
//! commands with its [`MediaEncoder`], sends the decoder's protocol replies and hands it the
//! provider's flow-control changes ([`super::Flow`]). The halves share no lock. Once the call
//! attaches a listener, caller audio goes from the reader straight to it (a full queue drops
//! and counts the frame); only control events reach the call. Both tasks run on the call's task tracker and stop with its cancellation token.
//!
//! The loop runs any [`MediaTransport`]: a WebSocket, or a raw TCP connection (`tcp.rs`,
//! for providers that are TCP listeners), whose byte chunks the provider's decoder frames.
//! Encoders that pace playback themselves (AudioSocket, where the peer plays what it gets
//! at once) hold frames and name their next due time ([`MediaEncoder::next_due`]); the
//! writer's one timer releases them, and marks they emulate come back as events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::{CallStart, Codec, Flow, InboundEvent, OutboundCommand, ProtocolError, WireFrame};
use crate::telemetry::metrics;

/// Reader → call: decoded control events (and media until a listener is attached).
/// `send().await`: a stalled call stops reading the socket rather than buffering without
/// bound.
pub const INBOUND_EVENT_CAPACITY: usize = 64;
/// Call → writer: commands (audio frames are already paced, so this stays short).
pub const OUTBOUND_COMMAND_CAPACITY: usize = 32;
/// Reader → writer: the start (for the encoder) and protocol replies; rare and small.
const INTERNAL_CAPACITY: usize = 8;
/// Call → reader: listener changes (call start, language switches).
const ROUTE_CAPACITY: usize = 2;
/// How long the socket stays open after a fault's close frame, so the peer can read it.
const FAULT_LINGER: Duration = Duration::from_secs(1);

/// What the reader reports.
#[derive(Debug)]
pub enum LinkEvent {
    /// A decoded provider event.
    Event(InboundEvent),
    /// A protocol violation; the reader has stopped.
    Error(ProtocolError),
    /// The socket closed; the reader has stopped.
    Closed,
}

/// The call's side of a media socket.
pub struct MediaLink {
    /// Events from the provider.
    pub events: mpsc::Receiver<LinkEvent>,
    /// Commands to the provider.
    pub commands: mpsc::Sender<OutboundCommand>,
    /// Where caller audio goes.
    pub audio: AudioRoute,
}

/// The call's handle on where the reader sends caller audio.
#[derive(Clone)]
pub struct AudioRoute {
    tx: mpsc::Sender<Option<mpsc::Sender<Vec<i16>>>>,
    dropped: Arc<AtomicU64>,
}

impl AudioRoute {
    /// From now on caller audio goes to `listener` (`None`: it is discarded).
    pub async fn attach(&self, listener: Option<mpsc::Sender<Vec<i16>>>) {
        let _ = self.tx.send(listener).await;
    }

    /// Caller frames dropped so far because the listener was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Hands a frame that reached the call as an event (before the listener was attached)
    /// to `listener`, counted like the reader's own.
    pub fn forward(&self, listener: &mpsc::Sender<Vec<i16>>, pcm: Vec<i16>) {
        send_audio(listener, pcm, &self.dropped);
    }
}

/// A connection the socket loop can run: its frames out ([`Message`]s into a sink) and in (a
/// stream of them). A WebSocket is one; `tcp.rs` makes a raw TCP stream one.
pub trait MediaTransport: Send + 'static {
    /// Frames to the provider.
    type Sink: Sink<Message, Error = axum::Error> + Send + Unpin + 'static;
    /// Frames from the provider.
    type Stream: Stream<Item = Result<Message, axum::Error>> + Send + Unpin + 'static;
    /// The two halves, for the writer and the reader.
    fn split(self) -> (Self::Sink, Self::Stream);
}

impl MediaTransport for WebSocket {
    type Sink = futures_util::stream::SplitSink<WebSocket, Message>;
    type Stream = futures_util::stream::SplitStream<WebSocket>;

    fn split(self) -> (Self::Sink, Self::Stream) {
        StreamExt::split(self)
    }
}

enum ToWriter {
    Started(Box<CallStart>),
    Reply(WireFrame),
    Flow(Flow),
}

/// Starts the reader and writer tasks for `socket`.
pub fn spawn<T: MediaTransport>(
    socket: T,
    codec: Codec,
    max_message_bytes: usize,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> MediaLink {
    let (mut sink, mut stream) = socket.split();
    let Codec {
        mut decoder,
        mut encoder,
    } = codec;
    let (event_tx, events) = mpsc::channel(INBOUND_EVENT_CAPACITY);
    // The writer's way to the call for events its encoder makes (emulated marks); weak, so
    // the reader's end still closes the channel.
    let writer_events = event_tx.downgrade();
    let (commands, mut command_rx) = mpsc::channel::<OutboundCommand>(OUTBOUND_COMMAND_CAPACITY);
    let (internal_tx, mut internal_rx) = mpsc::channel::<ToWriter>(INTERNAL_CAPACITY);
    let (route_tx, mut route_rx) = mpsc::channel(ROUTE_CAPACITY);
    let dropped = Arc::new(AtomicU64::new(0));
    // The reader's verdict on a protocol violation, for the writer's close frame (set once,
    // read once).
    let fault: Arc<OnceLock<(u16, &'static str)>> = Arc::new(OnceLock::new());
    let reader_fault = fault.clone();
    let reader_dropped = dropped.clone();
    let reader_cancel = cancel.clone();
    let decode_time = metrics::frame_timer("inbound");
    let encode_time = metrics::frame_timer("outbound");
    tracker.spawn(
        async move {
            let mut listener: Option<mpsc::Sender<Vec<i16>>> = None;
            let mut replies = Vec::new();
            loop {
                let msg = tokio::select! {
                    _ = reader_cancel.cancelled() => return,
                    route = route_rx.recv() => {
                        if let Some(route) = route {
                            listener = route;
                        }
                        continue;
                    }
                    msg = stream.next() => msg,
                };
                let decoded = match msg {
                    None | Some(Ok(Message::Close(_))) => {
                        let _ = event_tx.send(LinkEvent::Closed).await;
                        return;
                    }
                    Some(Err(e)) if dropped_without_close(&e) => {
                        // The provider went away (a crash, a network cut): the call ends as a
                        // closed socket, not as a protocol error of a live peer.
                        tracing::debug!(error = %e, "Media socket dropped without a close frame.");
                        let _ = event_tx.send(LinkEvent::Closed).await;
                        return;
                    }
                    Some(Err(e)) => Err(classify_socket_error(e, max_message_bytes)),
                    Some(Ok(Message::Text(text))) if text.len() > max_message_bytes => {
                        Err(ProtocolError::TooLarge {
                            size: text.len(),
                            limit: max_message_bytes,
                        })
                    }
                    Some(Ok(Message::Text(text))) => {
                        let t = Instant::now();
                        let decoded = decoder.decode_text(text.as_str(), &mut replies);
                        decode_time.record(t.elapsed());
                        decoded
                    }
                    Some(Ok(Message::Binary(data))) => {
                        let t = Instant::now();
                        let decoded = decoder.decode_binary(&data, &mut replies);
                        decode_time.record(t.elapsed());
                        decoded
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(None),
                };
                for reply in replies.drain(..) {
                    if internal_tx.send(ToWriter::Reply(reply)).await.is_err() {
                        return;
                    }
                }
                if let Some(flow) = decoder.take_flow() {
                    if internal_tx.send(ToWriter::Flow(flow)).await.is_err() {
                        return;
                    }
                }
                // The frame's own event, then whatever the decoder released with it.
                let mut decoded = decoded;
                loop {
                    let ev = match decoded {
                        Ok(None) => None,
                        Ok(Some(InboundEvent::Audio(pcm))) if listener.is_some() => {
                            if let Some(l) = &listener {
                                send_audio(l, pcm, &reader_dropped);
                            }
                            None
                        }
                        Ok(Some(InboundEvent::Start(start))) => {
                            let _ = internal_tx.send(ToWriter::Started(start.clone())).await;
                            Some(LinkEvent::Event(InboundEvent::Start(start)))
                        }
                        Ok(Some(ev)) => Some(LinkEvent::Event(ev)),
                        Err(e) => {
                            let _ = reader_fault.set(e.close_frame());
                            Some(LinkEvent::Error(e))
                        }
                    };
                    if let Some(ev) = ev {
                        let stop = matches!(ev, LinkEvent::Error(_));
                        if event_tx.send(ev).await.is_err() || stop {
                            return;
                        }
                    }
                    match decoder.take_pending() {
                        Some(ev) => decoded = Ok(Some(ev)),
                        None => break,
                    }
                }
            }
        }
        .in_current_span(),
    );

    tracker.spawn(
        async move {
            let mut frames = Vec::with_capacity(2);
            let mut reader_alive = true;
            // One timer for an encoder that paces its own output, moved only when its due
            // time changes.
            let pace = tokio::time::sleep_until(Instant::now());
            tokio::pin!(pace);
            let mut armed: Option<Instant> = None;
            loop {
                let due = encoder.next_due();
                if due != armed {
                    if let Some(at) = due {
                        pace.as_mut().reset(at);
                    }
                    armed = due;
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    () = &mut pace, if armed.is_some() => {
                        armed = None;
                        encoder.release(Instant::now(), &mut frames);
                    }
                    msg = internal_rx.recv(), if reader_alive => match msg {
                        Some(ToWriter::Started(start)) => encoder.started(&start),
                        Some(ToWriter::Reply(frame)) => encoder.reply(frame, &mut frames),
                        Some(ToWriter::Flow(flow)) => encoder.flow(flow, &mut frames),
                        None => reader_alive = false,
                    },
                    cmd = command_rx.recv() => match cmd {
                        Some(c) => {
                            let t = Instant::now();
                            encoder.encode(&c, &mut frames);
                            encode_time.record(t.elapsed());
                        }
                        None => break,
                    },
                }
                for frame in frames.drain(..) {
                    if let Err(e) = sink.send(to_message(frame)).await {
                        tracing::debug!(error = %e, "Media socket send failed.");
                        return;
                    }
                }
                while let Some(ev) = encoder.take_event() {
                    let Some(tx) = writer_events.upgrade() else {
                        break;
                    };
                    if tx.send(LinkEvent::Event(ev)).await.is_err() {
                        break;
                    }
                }
            }
            // Replies the reader queued before the end (a Genesys `closed`) still go out, then
            // the protocol's last words, then the close frame.
            while let Ok(msg) = internal_rx.try_recv() {
                match msg {
                    ToWriter::Started(start) => encoder.started(&start),
                    ToWriter::Reply(frame) => encoder.reply(frame, &mut frames),
                    ToWriter::Flow(flow) => encoder.flow(flow, &mut frames),
                }
            }
            encoder.closing(fault.get().is_some(), &mut frames);
            for frame in frames.drain(..) {
                if sink.send(to_message(frame)).await.is_err() {
                    return;
                }
            }
            // 1000 for a call that ended normally; the provider sees why otherwise.
            let fault = fault.get().copied();
            let (code, reason) = fault.unwrap_or((1000, "call ended"));
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
            let _ = sink.close().await;
            if fault.is_some() {
                // After a fault the peer's bytes may sit unread (an oversized message is
                // refused at its header); closing the socket now would send a TCP reset that
                // can destroy the close frame before the peer reads why. Hold it briefly.
                tokio::time::sleep(FAULT_LINGER).await;
            }
        }
        .in_current_span(),
    );

    MediaLink {
        events,
        commands,
        audio: AudioRoute {
            tx: route_tx,
            dropped,
        },
    }
}

fn to_message(frame: WireFrame) -> Message {
    match frame {
        WireFrame::Text(t) => Message::Text(t.into()),
        WireFrame::Binary(b) => Message::Binary(b.into()),
    }
}

/// Hands a caller frame to the listener without waiting; a full queue drops it (counted,
/// logged at powers of two) so a slow recogniser never stalls the socket.
fn send_audio(listener: &mpsc::Sender<Vec<i16>>, pcm: Vec<i16>, dropped: &AtomicU64) {
    if let Err(mpsc::error::TrySendError::Full(_)) = listener.try_send(pcm) {
        let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
        crate::telemetry::metrics::inbound_frame_dropped();
        if n.is_power_of_two() {
            tracing::warn!(dropped = n, "Caller audio dropped: recognition is behind.");
        }
    }
}

/// The socket ended without a closing handshake: reset, or cut while we read. tungstenite's
/// errors reach here boxed in `axum::Error`, so their text is what can be told apart.
fn dropped_without_close(e: &axum::Error) -> bool {
    let text = e.to_string();
    [
        "without closing handshake",
        "Connection reset",
        "Broken pipe",
        "unexpected end of file",
    ]
    .iter()
    .any(|t| text.contains(t))
}

fn classify_socket_error(e: axum::Error, limit: usize) -> ProtocolError {
    let text = e.to_string();
    if text.contains("too long") || text.contains("Space limit") || text.contains("size") {
        ProtocolError::TooLarge {
            size: limit + 1,
            limit,
        }
    } else {
        ProtocolError::Socket(text)
    }
}
