//! The call directory: where a call claims its bot user id (unique among live calls), where
//! it registers the keys its async bot messages are routed by, and where the callback
//! handler delivers them. The call code and the server see only [`CallDirectory`]; the
//! in-process [`local::LocalDirectory`] serves one daemon, [`redis::RedisDirectory`] a fleet
//! sharing one Redis (and closing the bot sessions of an instance that died).

pub mod local;
pub mod redis;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::bot::{BotChannel, BotReply, ReplySink};

crate::registry! {
    /// Validated `[routing]`: the directory named by `backend` (default `local`).
    pub enum RoutingSettings: dyn RoutingBackend, tag "backend", default "local" {
        /// In-process maps: one daemon.
        Local(local::LocalSettings) = "local",
        /// Shared through Redis: several daemons behind one load balancer.
        Redis(redis::RedisSettings) = "redis",
    }
}

/// A configured directory: how it is built at startup (inside the runtime: a shared
/// directory starts its background tasks here). `bot` closes sessions orphaned by a peer.
pub trait RoutingBackend: Debug + Send + Sync {
    /// Builds the directory shared by all calls and the callback route.
    fn build(&self, bot: Arc<dyn BotChannel>) -> Result<Arc<dyn CallDirectory>, DirectoryError>;
}

/// A call directory that cannot be built (startup fails).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A file the directory needs (a CA certificate) is unreadable.
    #[error("{key} {path}: {source}")]
    File {
        /// The config key naming it.
        key: &'static str,
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The client rejected its settings.
    #[error("routing client: {0}")]
    Client(#[source] ::redis::RedisError),
}

/// Holds a claimed bot user id until dropped (then another live call may take it).
pub struct UserClaim {
    id: String,
    _release: Box<dyn Send + Sync>,
}

impl UserClaim {
    /// A claim of `id`, released by dropping `release`.
    pub fn new(id: String, release: Box<dyn Send + Sync>) -> Self {
        Self {
            id,
            _release: release,
        }
    }

    /// The claimed id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Keeps a call's route keys registered until dropped.
pub struct Registration(pub Box<dyn Send + Sync>);

/// What became of a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the live call.
    Delivered,
    /// Passed on to the instance holding the call.
    Forwarded,
    /// No live call has any of its keys.
    Unroutable,
    /// The call did not take the messages in time (it is ending or stuck).
    Stalled,
}

/// Bot user ids and callback routes of live calls.
#[async_trait]
pub trait CallDirectory: Send + Sync {
    /// Name for logs.
    fn name(&self) -> &'static str;
    /// Calls of this instance that hold a claim.
    fn live_calls(&self) -> usize;
    /// Claims `preferred` as a bot user id, or `preferred-{call_id}` when a live call holds it.
    async fn claim_user(&self, preferred: &str, call_id: &str) -> UserClaim;
    /// Routes callbacks carrying any of `keys` to `sink` until the registration drops.
    async fn register(&self, keys: Vec<String>, sink: ReplySink) -> Registration;
    /// Hands `replies` to the call named by the first key that names a live one, in order.
    async fn deliver(&self, keys: &[String], replies: Vec<BotReply>) -> Delivery;
    /// Why new calls cannot be routed now (`None`: they can). Feeds admission and `/ready`.
    fn unavailable(&self) -> Option<&'static str> {
        None
    }
    /// Records a started bot session (`record`: [`BotChannel::orphan_record`]) so that a
    /// peer closes it if this instance dies before [`CallDirectory::release_session`].
    async fn hold_session(&self, record: &str) {
        let _ = record;
    }
    /// The session was closed: forget its record.
    async fn release_session(&self, record: &str) {
        let _ = record;
    }
    /// Connects and starts background work, before the daemon serves its first call.
    async fn start(&self) {}
    /// The daemon is stopping and its calls have ended: give back what it holds.
    async fn shutdown(&self) {}
}
