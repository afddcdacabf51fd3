//! Live calls: the count and the bot user ids in use, so two live calls never share one id.
//! A [`UserIdGuard`] releases its id when the call ends, whatever the path.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Live-call bookkeeping shared by the server and the calls.
#[derive(Debug, Default)]
pub struct Registry {
    user_ids: Mutex<HashSet<String>>,
    live: AtomicUsize,
}

/// Holds a bot user id (and one live-call count) until dropped.
#[derive(Debug)]
pub struct UserIdGuard {
    registry: Arc<Registry>,
    id: String,
}

impl Registry {
    /// Number of calls with a bot session.
    pub fn live_calls(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Claims `preferred` as a bot user id, or `preferred-{call_id}` when a live call holds it.
    pub fn claim(self: &Arc<Self>, preferred: &str, call_id: &str) -> UserIdGuard {
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
    pub fn id(&self) -> &str {
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
}
