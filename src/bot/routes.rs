//! Routing of async bot callbacks to live calls. The call code only sees the
//! [`ReplyRoutes`] trait: [`LocalRoutes`] (in-process) serves one daemon; a shared registry
//! (Redis, say) can replace it for a fleet behind one callback URL without touching calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::ReplySink;

/// Where callbacks for a call go.
pub trait ReplyRoutes: Send + Sync {
    /// Routes messages carrying any of `keys` to `sink` until unregistered.
    fn register(&self, keys: &[String], sink: ReplySink);
    /// Removes the keys (the call ended).
    fn unregister(&self, keys: &[String]);
    /// The sink of the first key that names a live call.
    fn route(&self, keys: &[String]) -> Option<ReplySink>;
}

/// In-process routes: a map from call key to the call's reply channel.
#[derive(Default)]
pub struct LocalRoutes {
    sinks: Mutex<HashMap<String, ReplySink>>,
}

impl ReplyRoutes for LocalRoutes {
    fn register(&self, keys: &[String], sink: ReplySink) {
        let mut map = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            map.insert(k.clone(), sink.clone());
        }
    }

    fn unregister(&self, keys: &[String]) {
        let mut map = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            map.remove(k);
        }
    }

    fn route(&self, keys: &[String]) -> Option<ReplySink> {
        let map = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().find_map(|k| map.get(k)).cloned()
    }
}

/// Keeps a call's routes registered; unregisters them when dropped, whatever the path.
pub struct RouteGuard {
    routes: Arc<dyn ReplyRoutes>,
    keys: Vec<String>,
}

impl RouteGuard {
    /// Registers `keys` → `sink`.
    pub fn new(routes: Arc<dyn ReplyRoutes>, keys: Vec<String>, sink: ReplySink) -> Self {
        routes.register(&keys, sink);
        Self { routes, keys }
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.routes.unregister(&self.keys);
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    #[test]
    fn routes_by_the_first_live_key_until_the_guard_drops() {
        let routes: Arc<dyn ReplyRoutes> = Arc::new(LocalRoutes::default());
        let (tx, _rx) = mpsc::channel(1);
        let guard = RouteGuard::new(routes.clone(), vec!["+1555".into(), "CA1".into()], tx);
        assert!(routes.route(&["nobody".into(), "CA1".into()]).is_some());
        assert!(routes.route(&["+1555".into()]).is_some());
        drop(guard);
        assert!(routes.route(&["+1555".into(), "CA1".into()]).is_none());
    }
}
