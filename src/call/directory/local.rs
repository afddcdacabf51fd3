//! The in-process call directory: the bot user ids in use (so two live calls never share
//! one) and a map from route key to the call's reply channel. Guards release their entries
//! when dropped, whatever path the call ends on.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{CallDirectory, Delivery, Registration, RoutingBackend, UserClaim};
use crate::bot::{BotReply, ReplySink};
use crate::component::{Component, Ctx, Errors};

/// How long a callback waits for its call to take each message: a call that cannot keep up
/// within a second is not going to speak these.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(1);

/// `[routing] backend = "local"` has no keys.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {}

/// Validated local directory settings (none).
#[derive(Debug, Clone, Default)]
pub struct LocalSettings;

impl Component for LocalSettings {
    type Raw = LocalConfig;
    fn validate(_raw: LocalConfig, _ctx: &Ctx<'_>, _errs: &mut Errors) -> Self {
        LocalSettings
    }
}

impl RoutingBackend for LocalSettings {
    fn build(
        &self,
        _bot: Arc<dyn crate::bot::BotChannel>,
    ) -> Result<Arc<dyn CallDirectory>, super::DirectoryError> {
        Ok(Arc::new(LocalDirectory::default()))
    }
}

/// The in-process directory.
#[derive(Debug, Default)]
pub struct LocalDirectory {
    registry: Arc<Registry>,
    routes: Arc<Mutex<HashMap<String, ReplySink>>>,
}

#[async_trait]
impl CallDirectory for LocalDirectory {
    fn name(&self) -> &'static str {
        "local"
    }

    fn live_calls(&self) -> usize {
        self.registry.live_calls()
    }

    async fn claim_user(&self, preferred: &str, call_id: &str) -> UserClaim {
        self.claim_local(preferred, call_id)
    }

    async fn register(&self, keys: Vec<String>, sink: ReplySink) -> Registration {
        let mut map = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        for k in &keys {
            map.insert(k.clone(), sink.clone());
        }
        Registration(Box::new(RouteGuard {
            routes: self.routes.clone(),
            keys,
        }))
    }

    async fn deliver(&self, keys: &[String], replies: Vec<BotReply>) -> Delivery {
        match self.find(keys) {
            Some(sink) => hand_over(&sink, replies).await,
            None => Delivery::Unroutable,
        }
    }
}

impl LocalDirectory {
    /// The reply channel of the live call of this process named by the first key that names one.
    pub(super) fn find(&self, keys: &[String]) -> Option<ReplySink> {
        let map = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().find_map(|k| map.get(k)).cloned()
    }

    /// Claims `preferred` (or a suffixed id) among this process's calls.
    pub(super) fn claim_local(&self, preferred: &str, call_id: &str) -> UserClaim {
        let guard = self.registry.claim(preferred, call_id);
        UserClaim::new(guard.id().to_string(), Box::new(guard))
    }
}

/// Hands `replies` to one call's channel in order, each within [`DELIVERY_TIMEOUT`].
pub(super) async fn hand_over(sink: &ReplySink, replies: Vec<BotReply>) -> Delivery {
    for reply in replies {
        if sink
            .send_timeout(Box::new(reply), DELIVERY_TIMEOUT)
            .await
            .is_err()
        {
            return Delivery::Stalled;
        }
    }
    Delivery::Delivered
}

/// Unregisters a call's keys when dropped.
struct RouteGuard {
    routes: Arc<Mutex<HashMap<String, ReplySink>>>,
    keys: Vec<String>,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let mut map = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        for k in &self.keys {
            map.remove(k);
        }
    }
}

/// The bot user ids in use and the number of calls holding one.
#[derive(Debug, Default)]
struct Registry {
    user_ids: Mutex<HashSet<String>>,
    live: AtomicUsize,
}

/// Holds a bot user id (and one live-call count) until dropped.
#[derive(Debug)]
struct UserIdGuard {
    registry: Arc<Registry>,
    id: String,
}

impl Registry {
    /// Number of calls with a bot session.
    fn live_calls(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Claims `preferred` as a bot user id, or `preferred-{call_id}` when a live call holds it.
    fn claim(self: &Arc<Self>, preferred: &str, call_id: &str) -> UserIdGuard {
        let mut ids = self.user_ids.lock().unwrap_or_else(|p| p.into_inner());
        let mut id = preferred.to_string();
        if ids.contains(&id) {
            id = format!("{preferred}-{call_id}");
        }
        let mut n = 1;
        while ids.contains(&id) {
            n += 1;
            id = format!("{preferred}-{call_id}-{n}");
        }
        ids.insert(id.clone());
        self.live.fetch_add(1, Ordering::Relaxed);
        UserIdGuard {
            registry: self.clone(),
            id,
        }
    }
}

impl UserIdGuard {
    /// The claimed id.
    fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for UserIdGuard {
    fn drop(&mut self) {
        let mut ids = self
            .registry
            .user_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        ids.remove(&self.id);
        self.registry.live.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_while_live_and_released_on_drop() {
        let r = Arc::new(Registry::default());
        let a = r.claim("+1555", "CA1");
        let b = r.claim("+1555", "CA2");
        assert_eq!(a.id(), "+1555");
        assert_eq!(b.id(), "+1555-CA2");
        assert_eq!(r.live_calls(), 2);
        drop(a);
        let c = r.claim("+1555", "CA3");
        assert_eq!(c.id(), "+1555");
        drop((b, c));
        assert_eq!(r.live_calls(), 0);
    }

    #[tokio::test]
    async fn routes_by_the_first_live_key_until_the_registration_drops() {
        let d = LocalDirectory::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let reg = d.register(vec!["+1555".into(), "CA1".into()], tx).await;
        let one = || vec![BotReply::default()];
        assert_eq!(
            d.deliver(&["nobody".into(), "CA1".into()], one()).await,
            Delivery::Delivered
        );
        assert_eq!(
            d.deliver(&["+1555".into()], one()).await,
            Delivery::Delivered
        );
        assert_eq!(rx.recv().await, Some(Box::default()));
        drop(reg);
        assert_eq!(
            d.deliver(&["+1555".into(), "CA1".into()], one()).await,
            Delivery::Unroutable
        );
    }
}
