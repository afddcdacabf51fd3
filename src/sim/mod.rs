//! Simulators for trying and testing voxhook without a phone or a bot account: a local
//! Kore-compatible development bot ([`kore`]), a Twilio Media Streams caller ([`caller`]) and
//! the demo call that uses both ([`demo`]).

pub mod assemblyai;
pub mod audiosocket;
pub mod caller;
pub mod deepgram;
pub mod demo;
pub mod elevenlabs;
pub mod ingenious;
pub mod kore;
pub mod openai;
pub mod piper;
pub mod plivo_api;
pub mod redis_server;
pub mod speech_set;
pub mod telnyx_api;
pub mod twilio_api;
pub mod vonage_api;
pub mod vosk;

/// An `[stt]`/`[tts]` section pointing a backend at a local fake (its key, its URL).
pub fn backend_section(provider: &str, key: &str, base_url: &str) -> String {
    format!("provider = \"{provider}\"\napi_key = \"{key}\"\nbase_url = \"{base_url}\"")
}

/// The next recorded item `next` hands out, waiting up to `timeout` for `arrived` to be
/// notified of a new one: the wait loop of the REST fakes' `wait_for_*`.
pub(crate) async fn wait_next<T>(
    arrived: &tokio::sync::Notify,
    timeout: std::time::Duration,
    mut next: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(item) = next() {
            return Some(item);
        }
        tokio::time::timeout_at(deadline, notified).await.ok()?;
    }
}

/// The accept loop of the WebSocket speech fakes: a loopback listener whose connections are
/// each served on a task of their own, with the record they share; accepting stops when it
/// is dropped.
pub(crate) struct WsFake<S> {
    addr: std::net::SocketAddr,
    /// What the fake's connections record, for assertions.
    pub(crate) shared: std::sync::Arc<std::sync::Mutex<S>>,
    task: tokio::task::JoinHandle<()>,
}

impl<S: Default + Send + 'static> WsFake<S> {
    /// Binds a loopback port and serves each connection with `serve(tcp, options, shared)`.
    pub(crate) async fn start<O, F, Fut>(options: O, serve: F) -> std::io::Result<Self>
    where
        O: Send + Sync + 'static,
        F: Fn(tokio::net::TcpStream, std::sync::Arc<O>, std::sync::Arc<std::sync::Mutex<S>>) -> Fut
            + Send
            + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = std::sync::Arc::new(std::sync::Mutex::new(S::default()));
        let options = std::sync::Arc::new(options);
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, options.clone(), s.clone()));
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `ws://127.0.0.1:port`, the `base_url` to configure.
    pub(crate) fn base_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The shared record, locked (a test thread that panicked does not poison it).
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, S> {
        lock(&self.shared)
    }
}

impl<S> Drop for WsFake<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Locks a fake's shared record, even after a panic elsewhere.
pub(crate) fn lock<S>(s: &std::sync::Mutex<S>) -> std::sync::MutexGuard<'_, S> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
