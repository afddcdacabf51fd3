//! The call directory shared by a fleet through Redis: bot user ids unique across instances,
//! callbacks forwarded to the instance holding their call, and the bot sessions of an
//! instance that died closed by a survivor, exactly once.
//!
//! Keys (prefix `p`): `p:user:{id}` and `p:route:{key}` name their owner and carry a lease
//! the owner renews every third of `lease_ttl` (one script for all of them); `p:lease:{me}`
//! says the instance is alive; `p:instances` lists instances; `p:sessions:{me}` holds the
//! [`BotChannel::orphan_record`] of each open bot session. A callback for a call elsewhere
//! is published on the owner's channel `p:inbox:{owner}`, which the owner reads in order.
//! When a peer's lease has expired, survivors `SPOP` its session records: each pop is
//! atomic, so exactly one survivor sends each `SESSION_CLOSURE`.
//!
//! One standalone Redis (or a Sentinel-managed primary): the scripts touch several keys,
//! which Redis Cluster would refuse across slots.

pub mod config;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::RedisSettings;

use super::local::{hand_over, LocalDirectory};
use super::{CallDirectory, Delivery, DirectoryError, Registration, UserClaim};
use crate::bot::{BotChannel, BotReply, ReplySink};
use crate::telemetry::metrics;

/// Suffixed candidates tried for a bot user id before falling back to a local claim.
const MAX_CANDIDATES: usize = 8;
/// Keys renewed per script call (a script's arguments live on the Lua stack).
const RENEW_CHUNK: usize = 500;
/// Released keys waiting for the janitor; beyond this their leases simply expire.
const RELEASE_QUEUE: usize = 4_096;
/// Orphaned sessions closed at once.
const ORPHAN_CLOSERS: usize = 16;
/// Reconnect backoff of the callback subscription.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Renews each `KEYS[i]` holding `ARGV[i + 1]` (or nothing: it expired while Redis was
/// away) for `ARGV[1]` ms; returns how many now belong to someone else.
const RENEW: &str = r"
local lost = 0
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v == false or v == ARGV[i + 1] then
    redis.call('SET', k, ARGV[i + 1], 'PX', ARGV[1])
  else
    lost = lost + 1
  end
end
return lost";

/// Deletes `KEYS[1]` if it still holds `ARGV[1]` (never another instance's claim).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// A callback passed from the instance that received it to the one holding the call.
#[derive(serde::Serialize, serde::Deserialize)]
struct Forward {
    keys: Vec<String>,
    replies: Vec<BotReply>,
}

/// The Redis-backed directory (see the module docs).
pub struct RedisDirectory {
    inner: Arc<Inner>,
}

struct Inner {
    s: RedisSettings,
    me: String,
    client: redis::Client,
    conn: ConnectionManager,
    /// This instance's calls: their reply channels, and claims made while Redis was away.
    local: LocalDirectory,
    /// Keys this instance owns in Redis and their values: renewed each tick.
    owned: Mutex<HashMap<String, String>>,
    up: AtomicBool,
    /// Calls holding a Redis claim (local claims are counted by `local`).
    live: AtomicUsize,
    releases: mpsc::Sender<(String, String)>,
    releases_rx: Mutex<Option<mpsc::Receiver<(String, String)>>>,
    bot: Arc<dyn BotChannel>,
    stop: CancellationToken,
    tasks: TaskTracker,
    renew: redis::Script,
    release: redis::Script,
}

impl RedisDirectory {
    /// A directory for `s`; nothing connects until [`CallDirectory::start`].
    /// A directory for `s`; nothing connects until [`CallDirectory::start`]. Fails on an
    /// unreadable CA file or a URL the client refuses.
    pub fn new(s: RedisSettings, bot: Arc<dyn BotChannel>) -> Result<Self, DirectoryError> {
        let me = s.instance_id.clone().unwrap_or_else(default_instance_id);
        let client = match &s.tls_ca_file {
            None => redis::Client::open(s.url.expose()),
            Some(path) => {
                // Read once at startup, before any call (as the models are).
                let pem = std::fs::read(path).map_err(|source| DirectoryError::File {
                    key: "routing.tls_ca_file",
                    path: path.display().to_string(),
                    source,
                })?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                redis::Client::build_with_tls(s.url.expose(), certs)
            }
        }
        .map_err(DirectoryError::Client)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(s.timeout))
            .set_response_timeout(Some(s.timeout))
            .set_number_of_retries(1)
            .set_max_delay(BACKOFF_MAX);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), cfg)
            .map_err(DirectoryError::Client)?;
        let (releases, rx) = mpsc::channel(RELEASE_QUEUE);
        Ok(Self {
            inner: Arc::new(Inner {
                s,
                me,
                client,
                conn,
                local: LocalDirectory::default(),
                owned: Mutex::new(HashMap::new()),
                // Down is logged as a transition; `start` checks before the first call.
                up: AtomicBool::new(true),
                live: AtomicUsize::new(0),
                releases,
                releases_rx: Mutex::new(Some(rx)),
                bot,
                stop: CancellationToken::new(),
                tasks: TaskTracker::new(),
                renew: redis::Script::new(RENEW),
                release: redis::Script::new(RELEASE),
            }),
        })
    }
}

/// `host-pid-xxxx`: readable in Redis, unique per process start.
fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let host = if host.is_empty() {
        "voxhook".into()
    } else {
        host
    };
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

impl Inner {
    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.s.key_prefix)
    }

    /// A handle on the shared multiplexed connection (cheap; it reconnects by itself).
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records reachability; logs only the transitions, so an outage is two lines.
    fn set_up(&self, up: bool, error: Option<&redis::RedisError>) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            metrics::routing_up(up);
            match (up, error) {
                (true, _) => {
                    tracing::info!(instance = %self.me, "Redis reachable: routing shared.")
                }
                (false, e) => tracing::error!(
                    error = e.map(|e| e.to_string()).unwrap_or_default(),
                    fallback = if self.s.fallback_local {
                        "local"
                    } else {
                        "refuse"
                    },
                    "Redis unreachable: live calls continue; new calls {}.",
                    if self.s.fallback_local {
                        "are routed locally"
                    } else {
                        "are refused"
                    }
                ),
            }
        }
    }

    /// A failed command on a call's path: note it (the next tick confirms or clears it).
    fn failed(&self, what: &str, e: &redis::RedisError) {
        tracing::warn!(error = %e, "Redis {what} failed.");
        self.set_up(false, Some(e));
    }

    fn own(&self, key: String, value: String) {
        self.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, value);
    }

    /// Stops renewing `key` and deletes it if still ours (in the background: guards drop
    /// on the call's way out, which must not wait for Redis).
    fn disown(&self, key: String, value: String) {
        self.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        if self.releases.try_send((key, value)).is_err() {
            tracing::debug!("Release queue full; the key's lease will expire.");
        }
    }

    async fn claim(self: &Arc<Self>, preferred: &str, call_id: &str) -> Option<UserClaim> {
        let mut conn = self.conn();
        let value = format!("{} {call_id}", self.me);
        let ttl = self.s.lease_ttl.as_millis() as u64;
        for n in 0..MAX_CANDIDATES {
            let id = match n {
                0 => preferred.to_string(),
                1 => format!("{preferred}-{call_id}"),
                n => format!("{preferred}-{call_id}-{n}"),
            };
            let key = self.key("user", &id);
            let set: Result<Option<String>, _> = redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("NX")
                .arg("PX")
                .arg(ttl)
                .query_async(&mut conn)
                .await;
            match set {
                Ok(Some(_)) => {
                    self.own(key.clone(), value.clone());
                    self.live.fetch_add(1, Ordering::Relaxed);
                    let guard = Owned {
                        inner: self.clone(),
                        keys: vec![(key, value)],
                        live: true,
                    };
                    return Some(UserClaim::new(id, Box::new(guard)));
                }
                Ok(None) => continue,
                Err(e) => {
                    self.failed("user id claim", &e);
                    return None;
                }
            }
        }
        tracing::warn!(
            preferred,
            "No free bot user id among the suffixed candidates; claiming locally."
        );
        None
    }

    async fn register_remote(self: &Arc<Self>, keys: &[String]) -> Option<Owned> {
        let mut conn = self.conn();
        let ttl = self.s.lease_ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        let owned: Vec<(String, String)> = keys
            .iter()
            .map(|k| (self.key("route", k), self.me.clone()))
            .collect();
        for (k, v) in &owned {
            pipe.cmd("SET").arg(k).arg(v).arg("PX").arg(ttl).ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            self.failed("route registration", &e);
            return None;
        }
        for (k, v) in &owned {
            self.own(k.clone(), v.clone());
        }
        Some(Owned {
            inner: self.clone(),
            keys: owned,
            live: false,
        })
    }

    /// The instance that registered the first of `keys` that any instance registered.
    async fn owner(&self, keys: &[String]) -> Result<Option<String>, redis::RedisError> {
        let mut conn = self.conn();
        let names: Vec<String> = keys.iter().map(|k| self.key("route", k)).collect();
        let owners: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut conn)
            .await?;
        Ok(owners.into_iter().flatten().next())
    }

    async fn forward(&self, keys: &[String], replies: Vec<BotReply>) -> Delivery {
        let owner = match self.owner(keys).await {
            Ok(Some(o)) if o != self.me => o,
            Ok(_) => return Delivery::Unroutable,
            Err(e) => {
                self.failed("route lookup", &e);
                return Delivery::Unroutable;
            }
        };
        let payload = match serde_json::to_string(&Forward {
            keys: keys.to_vec(),
            replies,
        }) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "Callback not serialisable; dropped.");
                return Delivery::Unroutable;
            }
        };
        let published: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(self.key("inbox", &owner))
            .arg(payload)
            .query_async(&mut self.conn())
            .await;
        match published {
            Ok(n) if n > 0 => {
                tracing::debug!(owner = %owner, "Bot callback forwarded.");
                Delivery::Forwarded
            }
            Ok(_) => {
                tracing::warn!(owner = %owner, "The instance holding the call is not listening (gone?).");
                Delivery::Unroutable
            }
            Err(e) => {
                self.failed("callback forward", &e);
                Delivery::Unroutable
            }
        }
    }

    /// One tick: this instance's lease, its registration, and every key it owns.
    async fn renew(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.conn();
        let ttl = self.s.lease_ttl.as_millis() as u64;
        redis::pipe()
            .cmd("SET")
            .arg(self.key("lease", &self.me))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .ignore()
            .cmd("SADD")
            .arg(self.key("instances", "all"))
            .arg(&self.me)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        let owned: Vec<(String, String)> = self
            .owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for chunk in owned.chunks(RENEW_CHUNK) {
            let mut inv = self.renew.prepare_invoke();
            inv.arg(ttl);
            for (k, v) in chunk {
                inv.key(k).arg(v);
            }
            let lost: i64 = inv.invoke_async(&mut conn).await?;
            if lost > 0 {
                tracing::warn!(
                    lost,
                    "Keys of live calls were taken by another instance while Redis was away."
                );
            }
        }
        Ok(())
    }

    /// Closes the sessions of every peer whose lease expired.
    async fn reap(self: &Arc<Self>, closers: &Arc<Semaphore>) -> Result<(), redis::RedisError> {
        let mut conn = self.conn();
        let all = self.key("instances", "all");
        let peers: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&all)
            .query_async(&mut conn)
            .await?;
        for peer in peers.into_iter().filter(|p| *p != self.me) {
            let alive: bool = redis::cmd("EXISTS")
                .arg(self.key("lease", &peer))
                .query_async(&mut conn)
                .await?;
            if alive {
                continue;
            }
            let sessions = self.key("sessions", &peer);
            let mut taken = 0usize;
            loop {
                let record: Option<String> = redis::cmd("SPOP")
                    .arg(&sessions)
                    .query_async(&mut conn)
                    .await?;
                let Some(record) = record else { break };
                taken += 1;
                let Ok(permit) = closers.clone().acquire_owned().await else {
                    break;
                };
                let inner = self.clone();
                self.tasks.spawn(async move {
                    let _permit = permit;
                    let res = inner.bot.close_orphan(&record).await;
                    metrics::orphan_closed(res.is_ok());
                    match res {
                        Ok(()) => tracing::info!("Orphaned bot session closed."),
                        Err(e) => tracing::error!(error = %e, code = e.code(),
                            "Orphaned bot session could not be closed."),
                    }
                });
            }
            if taken > 0 {
                tracing::warn!(peer = %peer, sessions = taken,
                    "Instance gone (lease expired): closing its bot sessions.");
            }
            // Every pop is atomic, so this survivor or another took each record exactly once.
            redis::cmd("SREM")
                .arg(&all)
                .arg(&peer)
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// Renews and reaps every third of the lease until stopped.
    async fn lease_loop(self: Arc<Self>) {
        let tick = self.s.lease_ttl / 3;
        let closers = Arc::new(Semaphore::new(ORPHAN_CLOSERS));
        loop {
            let res = match self.renew().await {
                Ok(()) => self.reap(&closers).await,
                Err(e) => Err(e),
            };
            match res {
                Ok(()) => self.set_up(true, None),
                Err(e) => self.set_up(false, Some(&e)),
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// Deletes released keys that are still ours; at shutdown, what is queued, then stops.
    async fn janitor(self: Arc<Self>, mut rx: mpsc::Receiver<(String, String)>) {
        loop {
            let next = tokio::select! {
                n = rx.recv() => n,
                _ = self.stop.cancelled() => rx.try_recv().ok(),
            };
            let Some((key, value)) = next else { return };
            let mut conn = self.conn();
            let res: Result<i64, _> = self
                .release
                .key(&key)
                .arg(&value)
                .invoke_async(&mut conn)
                .await;
            if let Err(e) = res {
                tracing::debug!(error = %e, "Key not released; its lease will expire.");
            }
        }
    }

    /// Reads callbacks forwarded to this instance, in order, until stopped; resubscribes
    /// after Redis comes back.
    async fn inbox_loop(self: Arc<Self>) {
        let client = self.client.clone();
        let channel = self.key("inbox", &self.me);
        let mut backoff = BACKOFF_MIN;
        loop {
            let subscribed = async {
                let mut ps = tokio::time::timeout(self.s.timeout, client.get_async_pubsub())
                    .await
                    .map_err(|_| {
                        redis::RedisError::from((redis::ErrorKind::Io, "connect timed out"))
                    })??;
                ps.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(ps)
            };
            let ps = tokio::select! {
                _ = self.stop.cancelled() => return,
                ps = subscribed => ps,
            };
            match ps {
                Ok(mut ps) => {
                    backoff = BACKOFF_MIN;
                    tracing::debug!(channel = %channel, "Listening for forwarded callbacks.");
                    let mut messages = ps.on_message();
                    loop {
                        let msg = tokio::select! {
                            _ = self.stop.cancelled() => return,
                            m = messages.next() => m,
                        };
                        let Some(msg) = msg else { break };
                        self.take_forward(msg.get_payload_bytes()).await;
                    }
                    tracing::warn!("Forwarded-callback subscription lost; resubscribing.");
                }
                Err(e) => tracing::debug!(error = %e, "Forwarded-callback subscription failed."),
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn take_forward(&self, payload: &[u8]) {
        let Ok(fwd) = serde_json::from_slice::<Forward>(payload) else {
            metrics::callback_forwarded_in("malformed");
            tracing::warn!(bytes = payload.len(), "Forwarded callback not understood.");
            return;
        };
        let Some(sink) = self.local.find(&fwd.keys) else {
            metrics::callback_forwarded_in("unroutable");
            tracing::warn!(keys = ?fwd.keys, "Forwarded callback for a call that has ended.");
            return;
        };
        metrics::callback_forwarded_in("routed");
        if hand_over(&sink, fwd.replies).await == Delivery::Stalled {
            tracing::warn!(keys = ?fwd.keys, "Forwarded callback could not be handed to its call.");
        }
    }
}

/// Keys of one call in Redis; released when dropped.
struct Owned {
    inner: Arc<Inner>,
    keys: Vec<(String, String)>,
    /// Counts as a live call (a user id claim).
    live: bool,
}

impl Drop for Owned {
    fn drop(&mut self) {
        if self.live {
            self.inner.live.fetch_sub(1, Ordering::Relaxed);
        }
        for (k, v) in self.keys.drain(..) {
            self.inner.disown(k, v);
        }
    }
}

#[async_trait]
impl CallDirectory for RedisDirectory {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn live_calls(&self) -> usize {
        self.inner.live.load(Ordering::Relaxed) + self.inner.local.live_calls()
    }

    async fn claim_user(&self, preferred: &str, call_id: &str) -> UserClaim {
        if self.inner.is_up() {
            if let Some(claim) = self.inner.claim(preferred, call_id).await {
                return claim;
            }
        }
        // Admitted while Redis was up (or with the local fallback): unique on this instance.
        tracing::warn!("Bot user id claimed on this instance only (Redis unavailable).");
        self.inner.local.claim_local(preferred, call_id)
    }

    async fn register(&self, keys: Vec<String>, sink: ReplySink) -> Registration {
        let remote = match self.inner.is_up() {
            true => self.inner.register_remote(&keys).await,
            false => None,
        };
        let local = self.inner.local.register(keys, sink).await;
        Registration(Box::new((local, remote)))
    }

    async fn deliver(&self, keys: &[String], replies: Vec<BotReply>) -> Delivery {
        if let Some(sink) = self.inner.local.find(keys) {
            return hand_over(&sink, replies).await;
        }
        if !self.inner.is_up() {
            return Delivery::Unroutable;
        }
        self.inner.forward(keys, replies).await
    }

    fn unavailable(&self) -> Option<&'static str> {
        (!self.inner.is_up() && !self.inner.s.fallback_local).then_some("routing unavailable")
    }

    async fn hold_session(&self, record: &str) {
        let mut conn = self.inner.conn();
        let res: Result<(), _> = redis::cmd("SADD")
            .arg(self.inner.key("sessions", &self.inner.me))
            .arg(record)
            .query_async(&mut conn)
            .await;
        if let Err(e) = res {
            self.inner.failed("session record", &e);
            tracing::warn!("Bot session not recorded: if this instance dies, it stays open.");
        }
    }

    async fn release_session(&self, record: &str) {
        let mut conn = self.inner.conn();
        let res: Result<(), _> = redis::cmd("SREM")
            .arg(self.inner.key("sessions", &self.inner.me))
            .arg(record)
            .query_async(&mut conn)
            .await;
        if let Err(e) = res {
            // A peer may close it again once this instance's lease lapses: harmless for
            // the caller, and logged.
            self.inner.failed("session release", &e);
        }
    }

    async fn start(&self) {
        let inner = &self.inner;
        // host:port only: the URL may carry the password.
        let addr = inner.client.get_connection_info().addr().to_string();
        // The first tick before serving, so a healthy fleet admits calls from the start.
        if let Err(e) = inner.renew().await {
            inner.set_up(false, Some(&e));
        }
        tracing::info!(instance = %inner.me, redis = %addr,
            lease_ms = inner.s.lease_ttl.as_millis() as u64, up = inner.is_up(),
            "Call routing shared through Redis.");
        let rx = inner
            .releases_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(rx) = rx {
            inner.tasks.spawn(inner.clone().janitor(rx));
        }
        inner.tasks.spawn(inner.clone().lease_loop());
        inner.tasks.spawn(inner.clone().inbox_loop());
    }

    async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        inner.tasks.close();
        // Orphan closures under way finish; the janitor ends with the last sender.
        let _ = tokio::time::timeout(inner.s.lease_ttl, inner.tasks.wait()).await;
        let mut conn = inner.conn();
        let sessions = inner.key("sessions", &inner.me);
        let left: Result<usize, _> = redis::cmd("SCARD")
            .arg(&sessions)
            .query_async(&mut conn)
            .await;
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(inner.key("lease", &inner.me)).ignore();
        match left {
            // Sessions left unclosed (calls cut off by the hard deadline): the lease goes
            // now, so a peer closes them at its next tick.
            Ok(n) if n > 0 => tracing::warn!(
                sessions = n,
                "Leaving unclosed bot sessions to a peer instance."
            ),
            _ => {
                pipe.cmd("SREM")
                    .arg(inner.key("instances", "all"))
                    .arg(&inner.me)
                    .ignore();
            }
        }
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => tracing::info!(instance = %inner.me, "Redis routing keys released."),
            Err(e) => {
                tracing::warn!(error = %e, "Redis keys not released; their leases will expire.")
            }
        }
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bot::{BotError, BotSession, Conversation, RouteKeys};
    use crate::sim::redis_server::RedisServer;

    /// Counts the orphaned sessions it is asked to close.
    #[derive(Default)]
    struct Closer(Mutex<Vec<String>>);

    #[async_trait]
    impl BotChannel for Closer {
        fn name(&self) -> &'static str {
            "closer"
        }
        fn conversation(
            self: Arc<Self>,
            _: BotSession,
            _: Arc<dyn RouteKeys>,
        ) -> Arc<dyn Conversation> {
            unreachable!("the directory never opens conversations")
        }
        fn auth_ok(&self) -> bool {
            true
        }
        async fn close_orphan(&self, record: &str) -> Result<(), BotError> {
            self.0.lock().unwrap().push(record.to_string());
            Ok(())
        }
    }

    fn settings(url: &str, id: &str) -> RedisSettings {
        RedisSettings {
            url: crate::config::SensitiveString::new(url),
            key_prefix: "t".into(),
            lease_ttl: Duration::from_millis(2_000),
            instance_id: Some(id.into()),
            fallback_local: false,
            timeout: Duration::from_millis(300),
            tls_ca_file: None,
        }
    }

    async fn instance(redis: &RedisServer, id: &str) -> (RedisDirectory, Arc<Closer>) {
        let closer = Arc::new(Closer::default());
        let d = RedisDirectory::new(settings(&redis.url(), id), closer.clone()).unwrap();
        d.start().await;
        assert!(d.unavailable().is_none(), "{id} up");
        (d, closer)
    }

    async fn until(what: &str, secs: u64, cond: impl Fn() -> bool) {
        let end = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !cond() {
            assert!(tokio::time::Instant::now() < end, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn user_ids_are_unique_across_instances_and_free_again_after_release() {
        let redis = RedisServer::start().unwrap();
        let (a, _) = instance(&redis, "a").await;
        let (b, _) = instance(&redis, "b").await;
        let first = a.claim_user("+1555", "CA1").await;
        let second = b.claim_user("+1555", "CA2").await;
        assert_eq!(first.id(), "+1555");
        assert_eq!(second.id(), "+1555-CA2");
        assert_eq!((a.live_calls(), b.live_calls()), (1, 1));
        assert_eq!(redis.cli(&["GET", "t:user:+1555"]), "a CA1");
        drop(first);
        until("release reaches Redis", 5, || {
            redis.cli(&["EXISTS", "t:user:+1555"]) == "0"
        })
        .await;
        assert_eq!(b.claim_user("+1555", "CA3").await.id(), "+1555");
        a.shutdown().await;
        b.shutdown().await;
    }

    #[tokio::test]
    async fn callbacks_received_elsewhere_reach_the_owner_in_order() {
        let redis = RedisServer::start().unwrap();
        let (a, _) = instance(&redis, "a").await;
        let (b, _) = instance(&redis, "b").await;
        let (c, _) = instance(&redis, "c").await;
        let (tx, mut rx) = mpsc::channel(16);
        let reg = a.register(vec!["+1555".into(), "CA1".into()], tx).await;
        // Subscriptions are made in `start`'s background; wait for A's.
        until("A subscribed", 5, || {
            redis.cli(&["PUBSUB", "NUMSUB", "t:inbox:a"]).ends_with('1')
        })
        .await;
        for n in 0..6 {
            let via = if n % 2 == 0 { &b } else { &c };
            let reply = BotReply {
                text: Some(format!("message {n}")),
                ..BotReply::default()
            };
            let got = via.deliver(&["CA1".into()], vec![reply]).await;
            assert_eq!(got, Delivery::Forwarded);
        }
        for n in 0..6 {
            let r = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            assert_eq!(r.unwrap().unwrap().text.unwrap(), format!("message {n}"));
        }
        assert_eq!(
            a.deliver(&["CA1".into()], vec![BotReply::default()]).await,
            Delivery::Delivered
        );
        drop(reg);
        until("route released", 5, || {
            redis.cli(&["EXISTS", "t:route:CA1"]) == "0"
        })
        .await;
        assert_eq!(
            b.deliver(&["CA1".into()], vec![BotReply::default()]).await,
            Delivery::Unroutable
        );
        for d in [a, b, c] {
            d.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_dead_instances_sessions_are_closed_once_by_the_survivors() {
        let redis = RedisServer::start().unwrap();
        let (a, _) = instance(&redis, "a").await;
        let (b, closed_b) = instance(&redis, "b").await;
        let (c, closed_c) = instance(&redis, "c").await;
        for n in 0..5 {
            a.hold_session(&format!("session {n}")).await;
        }
        a.hold_session("closed normally").await;
        a.release_session("closed normally").await;
        // A dies: no renewal, no shutdown.
        a.inner.stop.cancel();
        let closed = || {
            let mut all = closed_b.0.lock().unwrap().clone();
            all.extend(closed_c.0.lock().unwrap().iter().cloned());
            all.sort();
            all
        };
        until("orphans closed", 8, || closed().len() >= 5).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await; // a second tick of each
        let want: Vec<String> = (0..5).map(|n| format!("session {n}")).collect();
        assert_eq!(closed(), want, "each exactly once");
        assert_eq!(redis.cli(&["SISMEMBER", "t:instances:all", "a"]), "0");
        b.shutdown().await;
        c.shutdown().await;
        assert_eq!(redis.cli(&["SCARD", "t:instances:all"]), "0");
        assert_eq!(redis.cli(&["EXISTS", "t:lease:b"]), "0");
    }

    #[tokio::test]
    async fn rediss_with_a_private_ca_is_verified_and_works() {
        let redis = RedisServer::start_tls().unwrap();
        let mut s = settings(&redis.url(), "tls");
        s.tls_ca_file = redis.ca_file();
        let d = RedisDirectory::new(s, Arc::new(Closer::default())).unwrap();
        d.start().await;
        assert!(d.unavailable().is_none(), "TLS connection up");
        assert_eq!(d.claim_user("+1555", "CA1").await.id(), "+1555");
        assert_eq!(redis.cli(&["GET", "t:user:+1555"]), "tls CA1");
        d.shutdown().await;
        // Without the CA (webpki roots only) the self-signed chain is refused.
        let d = RedisDirectory::new(settings(&redis.url(), "x"), Arc::new(Closer::default()));
        let d = d.unwrap();
        d.start().await;
        assert_eq!(d.unavailable(), Some("routing unavailable"));
        d.shutdown().await;
        let missing = RedisSettings {
            tls_ca_file: Some("/nonexistent/ca.pem".into()),
            ..settings(&redis.url(), "y")
        };
        let err = RedisDirectory::new(missing, Arc::new(Closer::default()))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("routing.tls_ca_file /nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_outage_refuses_new_calls_until_redis_returns() {
        let mut redis = RedisServer::start().unwrap();
        let (a, _) = instance(&redis, "a").await;
        let claim = a.claim_user("+1555", "CA1").await;
        redis.stop();
        until("outage seen", 5, || a.unavailable().is_some()).await;
        // A call admitted just before still gets an id (unique on this instance).
        assert_eq!(a.claim_user("+1555", "CA2").await.id(), "+1555");
        redis.resume().unwrap();
        until("recovered", 8, || a.unavailable().is_none()).await;
        // The live call's claim was written back by the renewal (the restart lost it).
        until("claim renewed", 5, || {
            redis.cli(&["GET", "t:user:+1555"]) == "a CA1"
        })
        .await;
        drop(claim);
        a.shutdown().await;
    }
}
