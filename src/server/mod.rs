//! The HTTP listener (axum): media WebSocket routes per provider, the bot's async callback
//! route, `/live`, `/ready` and `/metrics` (or the last three on a separate admin listener).
//! Admission (`max_concurrent_calls`), draining and provider authentication are decided
//! here, before the WebSocket upgrade, so a refused call costs no more than an HTTP reply.
//! Providers that are raw TCP listeners ([`Provider::tcp_listen`]) get an accept loop
//! ([`serve_tcp`]) with the same admission instead of a route; a refused connection is
//! closed at once. [`accept`] is the HTTP accept loop and its connection limits.

pub mod accept;
pub mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::call::directory::Delivery;
use crate::call::{self, CallDeps};
use crate::telemetry::metrics;
use crate::telephony::tcp::TcpTransport;
use crate::telephony::Provider;

/// Largest callback body accepted (a message with a big carousel is a few KiB).
const MAX_CALLBACK_BYTES: usize = 256 * 1024;

/// Shared state of the HTTP handlers.
pub struct ServerState {
    /// What calls need.
    pub deps: Arc<CallDeps>,
    /// The enabled telephony providers; each serves its own route.
    pub providers: Vec<Arc<dyn Provider>>,
    /// One permit per admitted call.
    pub admission: Arc<Semaphore>,
    /// Set when shutdown begins: new calls are refused and `/ready` fails.
    pub draining: AtomicBool,
    /// Renders `/metrics` (`None`: metrics are off).
    pub metrics: Option<PrometheusHandle>,
}

/// Builds the main router; `with_metrics` adds `/metrics` (when no admin listener has it).
pub fn router(state: Arc<ServerState>, with_metrics: bool) -> Router {
    let mut r = Router::new()
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready));
    for (i, p) in state.providers.iter().enumerate() {
        if p.tcp_listen().is_some() {
            continue;
        }
        r = r.route(
            p.route(),
            get(
                move |st: State<Arc<ServerState>>,
                      headers: HeaderMap,
                      uri: OriginalUri,
                      ws: WebSocketUpgrade| media(st, i, headers, uri, ws),
            ),
        );
    }
    if let Some(path) = state.deps.bot.callback_route() {
        r = r.route(
            path,
            post(bot_callback).layer(DefaultBodyLimit::max(MAX_CALLBACK_BYTES)),
        );
    }
    let r = if with_metrics {
        r.route("/metrics", get(metrics_text))
    } else {
        r
    };
    r.with_state(state)
}

/// The admin listener's router: health and metrics, no media.
pub fn admin_router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn metrics_text(State(st): State<Arc<ServerState>>) -> Response {
    match &st.metrics {
        Some(h) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            h.render(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn ready(State(st): State<Arc<ServerState>>) -> Response {
    if st.draining.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    if let Some(why) = st.deps.directory.unavailable() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    }
    if !st.deps.bot.auth_ok() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "bot authentication failing\n",
        )
            .into_response();
    }
    "ready\n".into_response()
}

/// Async bot callbacks: authenticated by the platform (an unguessable path segment, a
/// token), answered at once, and delivered to the live call the ids in the body name.
async fn bot_callback(
    State(st): State<Arc<ServerState>>,
    Path(secret): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use crate::telemetry::metrics::bot_callback;
    let bot = &st.deps.bot;
    if !bot.authorize_callback(&secret, &headers) {
        // The platform logged why; never log the path: it is the secret.
        bot_callback("rejected");
        return StatusCode::NOT_FOUND.into_response();
    }
    let parsed = match bot.parse_callback(&body) {
        Ok(p) => p,
        Err(e) => {
            bot_callback("malformed");
            tracing::warn!(error = %e, bytes = body.len(), "Bot callback not understood.");
            return (StatusCode::BAD_REQUEST, "bad callback\n").into_response();
        }
    };
    let messages = parsed.replies.len();
    match st
        .deps
        .directory
        .deliver(&parsed.keys, parsed.replies)
        .await
    {
        Delivery::Delivered => bot_callback("routed"),
        Delivery::Forwarded => bot_callback("forwarded"),
        Delivery::Unroutable => {
            bot_callback("unroutable");
            tracing::warn!(keys = ?parsed.keys, messages, "Bot callback for no live call; dropped.");
        }
        Delivery::Stalled => {
            bot_callback("routed");
            tracing::warn!(keys = ?parsed.keys, "Bot callback could not be handed to its call.");
        }
    }
    "ok\n".into_response()
}

/// Why a new call cannot be taken now (draining, or routing unavailable), as the status and
/// body a WebSocket upgrade is refused with; counted and logged here.
fn refuse_new_call(st: &ServerState, provider: &dyn Provider) -> Option<(StatusCode, String)> {
    if st.draining.load(Ordering::Relaxed) {
        metrics::call_refused("draining");
        return Some((StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into()));
    }
    if let Some(why) = st.deps.directory.unavailable() {
        metrics::call_refused("routing");
        tracing::warn!(
            provider = provider.name(),
            reason = why,
            "Call refused: {why}."
        );
        return Some((StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")));
    }
    None
}

/// An admission slot, or `None` at capacity (counted and logged).
fn admission_permit(st: &ServerState, provider: &dyn Provider) -> Option<OwnedSemaphorePermit> {
    let permit = st.admission.clone().try_acquire_owned().ok();
    if permit.is_none() {
        tracing::warn!(
            limit = st.deps.settings.server.max_concurrent_calls,
            provider = provider.name(),
            "At capacity; call refused."
        );
        metrics::call_refused("capacity");
    }
    permit
}

fn new_conn_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// A provider's media route: admission and the provider's own authentication before the
/// upgrade, then the call.
async fn media(
    State(st): State<Arc<ServerState>>,
    index: usize,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    ws: WebSocketUpgrade,
) -> Response {
    let provider = st.providers[index].clone();
    if let Some(refusal) = refuse_new_call(&st, &*provider) {
        return refusal.into_response();
    }
    let path = uri
        .path_and_query()
        .map_or(provider.route(), |p| p.as_str());
    if let Err(refusal) = provider.authenticate(&headers, path) {
        metrics::call_refused(refusal.reason);
        return refusal.status.into_response();
    }
    let Some(permit) = admission_permit(&st, &*provider) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "at capacity\n").into_response();
    };
    let limits = provider.limits();
    let deps = st.deps.clone();
    let conn_id = new_conn_id();
    // Small socket buffers: media messages are ~400 bytes, and tungstenite's 128 KiB default
    // read buffer would dominate an idle call's memory (it reserves this much again on top
    // of what a partial frame holds, so 4 KiB grew to 8). Writes go out at once.
    ws.protocols(provider.subprotocols().iter().copied())
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .on_failed_upgrade(|e| tracing::warn!(error = %e, "WebSocket upgrade failed."))
        .on_upgrade(move |socket| {
            let calls = deps.calls.clone();
            calls.track_future(call::handle_socket(socket, provider, deps, conn_id, permit))
        })
}

/// Pause after a failed accept (out of file descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The accept loop of provider `index`, a raw TCP listener: each connection passes the same
/// admission as a WebSocket upgrade (draining, routing, capacity; a refused one is closed at
/// once) and becomes a call. Runs until `stop`.
pub async fn serve_tcp(
    state: Arc<ServerState>,
    index: usize,
    listener: TcpListener,
    stop: CancellationToken,
) {
    let provider = state.providers[index].clone();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            res = listener.accept() => match res {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(provider = provider.name(), error = %e, "Accept failed.");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if refuse_new_call(&state, &*provider).is_some() {
            continue;
        }
        let Some(permit) = admission_permit(&state, &*provider) else {
            continue;
        };
        // Media frames are small and paced: send each at once.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set.");
        }
        let conn_id = new_conn_id();
        tracing::debug!(
            provider = provider.name(),
            conn = %conn_id,
            %peer,
            "Media connection accepted."
        );
        let deps = state.deps.clone();
        let calls = deps.calls.clone();
        let call = call::handle_socket(
            TcpTransport(stream),
            provider.clone(),
            deps,
            conn_id,
            permit,
        );
        tokio::spawn(calls.track_future(call));
    }
}
