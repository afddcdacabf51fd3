//! The HTTP listener (axum): media WebSocket routes per provider, the bot's async callback
//! route, `/live`, `/ready` and `/metrics` (or the last three on a separate admin listener).
//! Admission (`max_concurrent_calls`), draining and provider authentication are decided
//! here, before the WebSocket upgrade, so a refused call costs no more than an HTTP reply.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;

use crate::call::{self, CallDeps};
use crate::telemetry::metrics;
use crate::telephony::twilio::{signature, TwilioOptions, TwilioProtocol};
use crate::telephony::Provider;

/// Shared state of the HTTP handlers.
pub struct ServerState {
    /// What calls need.
    pub deps: Arc<CallDeps>,
    /// One permit per admitted call.
    pub admission: Arc<Semaphore>,
    /// Set when shutdown begins: new calls are refused and `/ready` fails.
    pub draining: AtomicBool,
    /// Renders `/metrics` (`None`: metrics are off).
    pub metrics: Option<PrometheusHandle>,
}

/// Builds the main router; `with_metrics` adds `/metrics` (when no admin listener has it).
pub fn router(state: Arc<ServerState>, with_metrics: bool) -> Router {
    let r = Router::new()
        .route("/twilio", get(twilio))
        .route(
            "/kore/callback/{secret}",
            post(kore_callback).layer(DefaultBodyLimit::max(
                crate::bot::kore::callback::MAX_CALLBACK_BYTES,
            )),
        )
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready));
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
    if !st.deps.bot.auth_ok() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "bot authentication failing\n",
        )
            .into_response();
    }
    "ready\n".into_response()
}

/// Async bot callbacks: authenticated by the unguessable path (and a bearer token when
/// configured), answered at once, routed to the live call by the ids the body carries.
async fn kore_callback(
    State(st): State<Arc<ServerState>>,
    Path(secret): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use crate::telemetry::metrics::bot_callback;
    let Some(cb) = st.deps.settings.bot.callback() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let bearer_ok = cb.bearer_token.as_ref().is_none_or(|t| {
        let header = headers.get("authorization").and_then(|v| v.to_str().ok());
        let (form, got) = callback_token(header);
        // Which form the platform uses is not documented (Kore v1 "uses the access token for
        // delivering"): log the form, never the value.
        tracing::debug!(form, "Bot callback authorization.");
        got.is_some_and(|got| constant_time_eq(got.as_bytes(), t.expose().as_bytes()))
    });
    if !constant_time_eq(secret.as_bytes(), cb.secret.expose().as_bytes()) || !bearer_ok {
        bot_callback("rejected");
        // Never log the path: it is the secret.
        tracing::warn!(bearer_ok, "Bot callback refused: wrong secret or token.");
        return StatusCode::NOT_FOUND.into_response();
    }
    let parsed = match st.deps.bot.parse_callback(&body) {
        Ok(p) => p,
        Err(e) => {
            bot_callback("malformed");
            tracing::warn!(error = %e, bytes = body.len(), "Bot callback not understood.");
            return (StatusCode::BAD_REQUEST, "bad callback\n").into_response();
        }
    };
    let Some(sink) = st.deps.routes.route(&parsed.keys) else {
        bot_callback("unroutable");
        tracing::warn!(keys = ?parsed.keys, messages = parsed.replies.len(),
            "Bot callback for no live call; dropped.");
        return "ok\n".into_response();
    };
    bot_callback("routed");
    for reply in parsed.replies {
        // Bounded: a call that cannot keep up within a second is not going to speak these.
        let sent = sink
            .send_timeout(reply, std::time::Duration::from_secs(1))
            .await;
        if sent.is_err() {
            tracing::warn!(keys = ?parsed.keys, "Bot callback could not be handed to its call.");
            break;
        }
    }
    "ok\n".into_response()
}

/// The token of an `Authorization` header sent as `Bearer <token>` (any case) or as the bare
/// token, with the form's name for the log.
fn callback_token(header: Option<&str>) -> (&'static str, Option<&str>) {
    let Some(v) = header.map(str::trim) else {
        return ("absent", None);
    };
    match v.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            ("bearer", Some(token.trim()))
        }
        Some(_) => ("other_scheme", None),
        None if v.is_empty() => ("empty", None),
        None => ("bare", Some(v)),
    }
}

/// Compares secrets without leaking their length of common prefix through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn twilio(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    ws: WebSocketUpgrade,
) -> Response {
    let s = &st.deps.settings;
    if !s.twilio.enabled {
        return StatusCode::NOT_FOUND.into_response();
    }
    if st.draining.load(Ordering::Relaxed) {
        metrics::call_refused("draining");
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if let (Some(token), Some(public)) = (&s.twilio.signature_token, &s.server.public_url) {
        let url = signature::signed_url(
            public,
            uri.path_and_query().map_or("/twilio", |p| p.as_str()),
        );
        let sig = headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !signature::verify(token.expose(), &url, sig) {
            tracing::warn!(url = %url, "Twilio signature invalid; connection refused.");
            metrics::call_refused("signature");
            return StatusCode::FORBIDDEN.into_response();
        }
    }
    let Ok(permit) = st.admission.clone().try_acquire_owned() else {
        tracing::warn!(
            limit = s.server.max_concurrent_calls,
            "At capacity; call refused."
        );
        metrics::call_refused("capacity");
        return (StatusCode::SERVICE_UNAVAILABLE, "at capacity\n").into_response();
    };
    let protocol = Box::new(TwilioProtocol::new(TwilioOptions {
        caller_parameter: s.twilio.caller_parameter.clone(),
        called_parameter: s.twilio.called_parameter.clone(),
    }));
    let limits = call::LinkLimits {
        max_message_bytes: s.twilio.max_message_bytes,
        max_early_events: s.twilio.max_early_media_frames,
    };
    let deps = st.deps.clone();
    let conn_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    // Small socket buffers: Twilio messages are ~400 bytes, and tungstenite's 128 KiB default
    // read buffer would dominate an idle call's memory. Writes go out at once.
    ws.max_message_size(s.twilio.max_message_bytes)
        .max_frame_size(s.twilio.max_message_bytes)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_failed_upgrade(|e| tracing::warn!(error = %e, "WebSocket upgrade failed."))
        .on_upgrade(move |socket| {
            let calls = deps.calls.clone();
            calls.track_future(call::handle_socket(
                socket,
                Provider::Twilio,
                protocol,
                limits,
                deps,
                conn_id,
                permit,
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_tokens_are_read_bearer_or_bare() {
        assert_eq!(callback_token(Some("Bearer abc")), ("bearer", Some("abc")));
        assert_eq!(callback_token(Some("bearer abc")), ("bearer", Some("abc")));
        assert_eq!(
            callback_token(Some("BEARER  abc ")),
            ("bearer", Some("abc"))
        );
        assert_eq!(callback_token(Some("abc")), ("bare", Some("abc")));
        assert_eq!(callback_token(Some("Basic abc")), ("other_scheme", None));
        assert_eq!(callback_token(Some("  ")), ("empty", None));
        assert_eq!(callback_token(None), ("absent", None));
    }
}
