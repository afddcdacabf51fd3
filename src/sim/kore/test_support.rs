//! Test helpers: a local receiver for async callbacks and a signed-request builder.

use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use tokio::sync::mpsc;

use super::serve::LocalServer;
use crate::bot::kore::auth::TokenMinter;
use crate::config::{JwtAlgorithm, SensitiveString};

/// Bot id, client id and secret of the test simulator.
pub const BOT: &str = "st-bot";
pub const CLIENT: &str = "cs-app";
pub const SECRET: &str = "sim-secret";

/// One callback as received: its `Authorization` header and body.
pub type Delivered = (Option<String>, Value);

/// A callback receiver on loopback; `rx` yields each POST in arrival order.
pub struct Receiver {
    /// The server; dropping it stops receiving.
    pub server: LocalServer,
    /// Callbacks as they arrive.
    pub rx: mpsc::UnboundedReceiver<Delivered>,
}

impl Receiver {
    /// Starts a receiver on an ephemeral loopback port.
    pub async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new().route("/cb", post(receive)).with_state(tx);
        let server = LocalServer::start("127.0.0.1:0", app).await.unwrap();
        Self { server, rx }
    }

    /// The callback URL to give the simulator.
    pub fn url(&self) -> String {
        format!("http://{}/cb", self.server.addr())
    }

    /// The next `n` callbacks, failing the test if they take more than 5 s.
    pub async fn take(&mut self, n: usize) -> Vec<Delivered> {
        let mut out = Vec::new();
        for _ in 0..n {
            let next = tokio::time::timeout(Duration::from_secs(5), self.rx.recv()).await;
            out.push(next.expect("callback in time").expect("receiver open"));
        }
        out
    }
}

async fn receive(
    State(tx): State<mpsc::UnboundedSender<Delivered>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let _ = tx.send((auth, body));
}

/// POSTs `body` to `url` with a fresh token for `user`; returns status and JSON body.
pub async fn post_signed(url: &str, user: &str, body: Value) -> (u16, Value) {
    let minter = TokenMinter::new(
        JwtAlgorithm::Hs256,
        &SensitiveString::new(SECRET),
        CLIENT,
        Duration::from_secs(60),
        true,
    )
    .unwrap();
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(minter.mint(user).unwrap())
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or_default(),
    )
}

/// A simulator with the test credentials.
pub async fn sim() -> super::KoreSim {
    super::KoreSim::start(BOT, CLIENT, SECRET).await.unwrap()
}

/// A valid v2 request body.
pub fn v2_body(user: &str, kind: &str, val: &str) -> Value {
    serde_json::json!({"session": {"new": val == "ON_CONNECT"},
        "message": {"type": kind, "val": val}, "from": {"id": user}, "to": {"id": BOT},
        "customData": {"callId": format!("CA-{user}")}})
}

/// A valid v1 request body.
pub fn v1_body(user: &str, text: &str, new: bool) -> Value {
    serde_json::json!({"session": {"new": new}, "message": {"text": text, "attachments": []},
        "from": {"id": user}, "to": {"id": BOT}, "customData": {"callId": format!("CA-{user}")}})
}
