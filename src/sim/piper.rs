//! A local fake of Piper's HTTP server (`python -m piper.http_server`, piper-tts 1.8):
//! `POST /synthesize` with the JSON body it reads, answered with a whole WAV (a tone as long
//! as the text, 60 ms per character) at 22,050 Hz (16,000 Hz for the voice `rate-16000`),
//! labelled `text/html; charset=utf-8` as Flask labels bytes. Empty text fails with 500 as
//! the real server does; so does any text containing `FAIL` (for the conformance suite).

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::kore::LocalServer;

/// Audio per character of text.
const MS_PER_CHAR: u64 = 60;

/// The running fake.
pub struct PiperSim {
    server: LocalServer,
    requests: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl PiperSim {
    /// Starts on a loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/synthesize", post(synthesize))
            .with_state(requests.clone());
        let server = LocalServer::start("127.0.0.1:0", app).await?;
        Ok(Self { server, requests })
    }

    /// `http://127.0.0.1:port`, the `base_url` to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Request bodies, in order.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// What Flask answers for an unhandled exception (the real server's empty-text failure).
fn internal_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [("content-type", "text/html; charset=utf-8")],
        "<!doctype html>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>",
    )
        .into_response()
}

async fn synthesize(
    State(requests): State<Arc<Mutex<Vec<serde_json::Value>>>>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(req) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return internal_error();
    };
    requests
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(req.clone());
    let text = req["text"].as_str().unwrap_or("").trim();
    if text.is_empty() || text.contains("FAIL") {
        return internal_error();
    }
    let rate = if req["voice"] == "rate-16000" {
        16_000
    } else {
        22_050
    };
    let n = (text.chars().count() as u64 * MS_PER_CHAR * u64::from(rate) / 1000) as usize;
    let wav = crate::stt::openai::wav_bytes(&super::openai::tone(n, rate), rate);
    ([("content-type", "text/html; charset=utf-8")], wav).into_response()
}
