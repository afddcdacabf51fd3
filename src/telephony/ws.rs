//! The media socket loop, shared by every provider: a reader task that enforces the size limit
//! and decodes frames with the connection's [`MediaProtocol`], and a writer task that encodes
//! commands. Both run on the call's task tracker and stop with its cancellation token.

use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::{InboundEvent, MediaProtocol, OutboundCommand, ProtocolError};
use crate::telemetry::metrics;

/// Reader → call: decoded events (~1.3 s of 20 ms media). `send().await`: a stalled call
/// stops reading the socket rather than buffering without bound.
pub const INBOUND_EVENT_CAPACITY: usize = 64;
/// Call → writer: commands (audio frames are already paced, so this stays short).
pub const OUTBOUND_COMMAND_CAPACITY: usize = 32;

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
}

/// Starts the reader and writer tasks for `socket`.
pub fn spawn(
    socket: WebSocket,
    protocol: Box<dyn MediaProtocol>,
    max_message_bytes: usize,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> MediaLink {
    let (mut sink, mut stream) = socket.split();
    let protocol = Arc::new(Mutex::new(protocol));
    let (event_tx, events) = mpsc::channel(INBOUND_EVENT_CAPACITY);
    let (commands, mut command_rx) = mpsc::channel::<OutboundCommand>(OUTBOUND_COMMAND_CAPACITY);

    // The reader's verdict on a protocol violation, for the writer's close frame (set once,
    // read once: no lock shared by the two tasks).
    let fault: Arc<OnceLock<(u16, &'static str)>> = Arc::new(OnceLock::new());
    let reader_fault = fault.clone();
    let decoder = protocol.clone();
    let reader_cancel = cancel.clone();
    let decode_time = metrics::frame_timer("inbound");
    let encode_time = metrics::frame_timer("outbound");
    tracker.spawn(
        async move {
            loop {
                let msg = tokio::select! {
                    _ = reader_cancel.cancelled() => return,
                    msg = stream.next() => msg,
                };
                let decoded = match msg {
                    None | Some(Ok(Message::Close(_))) => {
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
                        let decoded = lock(&decoder).decode_text(text.as_str());
                        decode_time.record(t.elapsed());
                        decoded
                    }
                    Some(Ok(Message::Binary(data))) => lock(&decoder).decode_binary(&data),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(None),
                };
                let ev = match decoded {
                    Ok(None) => continue,
                    Ok(Some(ev)) => LinkEvent::Event(ev),
                    Err(e) => {
                        let _ = reader_fault.set(e.close_frame());
                        LinkEvent::Error(e)
                    }
                };
                let stop = matches!(ev, LinkEvent::Error(_));
                if event_tx.send(ev).await.is_err() || stop {
                    return;
                }
            }
        }
        .in_current_span(),
    );

    tracker.spawn(
        async move {
            loop {
                let cmd = tokio::select! {
                    _ = cancel.cancelled() => break,
                    cmd = command_rx.recv() => match cmd { Some(c) => c, None => break },
                };
                let t = Instant::now();
                let encoded = lock(&protocol).encode(&cmd);
                encode_time.record(t.elapsed());
                let Some(text) = encoded else {
                    continue;
                };
                if let Err(e) = sink.send(Message::Text(text.into())).await {
                    tracing::debug!(error = %e, "Media socket send failed.");
                    break;
                }
            }
            // 1000 for a call that ended normally; the provider sees why otherwise.
            let (code, reason) = fault.get().copied().unwrap_or((1000, "call ended"));
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
            let _ = sink.close().await;
        }
        .in_current_span(),
    );

    MediaLink { events, commands }
}

fn lock(p: &Mutex<Box<dyn MediaProtocol>>) -> std::sync::MutexGuard<'_, Box<dyn MediaProtocol>> {
    // A panic inside a codec poisons the lock; the data is a codec, still usable.
    p.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
