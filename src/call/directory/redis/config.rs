//! `[routing] backend = "redis"`: raw and validated.

use std::time::Duration;

use serde::Deserialize;

use super::RedisDirectory;
use crate::bot::BotChannel;
use crate::call::directory::{CallDirectory, DirectoryError, RoutingBackend};
use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;

/// `[routing] backend = "redis"` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS. A secret when it
    /// carries a password: best from `VOXHOOK__ROUTING__URL` or a systemd credential.
    pub url: SensitiveString,
    /// Prefix of every key and channel, so several fleets can share one Redis.
    pub key_prefix: String,
    /// How long an instance's claims outlive its last renewal (renewed every third of it):
    /// a dead instance's calls are taken over after at most this long.
    pub lease_ttl_ms: u64,
    /// This instance's name in Redis (default: host name, process id and a random suffix).
    pub instance_id: String,
    /// While Redis is unreachable: `refuse` new calls (`/ready` 503), or route them `local`ly
    /// (their callbacks must then reach this instance).
    pub on_redis_error: String,
    /// PEM file of the CA that signed the server's certificate (`rediss://` with a private
    /// CA); empty: the webpki roots. Read at start.
    pub tls_ca_file: String,
    /// Time allowed for one Redis command (and for connecting); at most half the lease, so a
    /// slow renewal still lands before the lease lapses.
    pub timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: SensitiveString::new("redis://127.0.0.1:6379"),
            key_prefix: "voxhook".into(),
            lease_ttl_ms: 15_000,
            instance_id: String::new(),
            on_redis_error: "refuse".into(),
            tls_ca_file: String::new(),
            timeout_ms: 1_000,
        }
    }
}

/// Validated Redis routing settings.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Server URL (a secret: it may carry the password).
    pub url: SensitiveString,
    /// Key and channel prefix.
    pub key_prefix: String,
    /// Lease of every claim; renewed every third of it.
    pub lease_ttl: Duration,
    /// `None`: generated at start.
    pub instance_id: Option<String>,
    /// Route new calls locally while Redis is unreachable (instead of refusing them).
    pub fallback_local: bool,
    /// Per-command and connect timeout.
    pub timeout: Duration,
    /// CA certificate (PEM) trusted for `rediss://`.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl Component for RedisSettings {
    type Raw = RedisConfig;

    fn validate(raw: RedisConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        let url = raw.url.expose();
        // Parsing only (no connection); the message never repeats the URL: it may hold a password.
        let scheme_ok = url.starts_with("redis://") || url.starts_with("rediss://");
        errs.check(
            scheme_ok && redis::Client::open(url).is_ok(),
            &ctx.key("url"),
            "must be a Redis URL: redis://[user:password@]host:port[/db] or rediss://… for TLS",
        );
        let prefix_ok = !raw.key_prefix.is_empty()
            && raw.key_prefix.len() <= 64
            && raw.key_prefix.bytes().all(|b| b.is_ascii_graphic());
        errs.check(
            prefix_ok,
            &ctx.key("key_prefix"),
            "must be 1-64 printable characters without spaces",
        );
        errs.check(
            (2_000..=600_000).contains(&raw.lease_ttl_ms),
            &ctx.key("lease_ttl_ms"),
            "must be between 2000 and 600000",
        );
        errs.check(
            (50..=raw.lease_ttl_ms / 2).contains(&raw.timeout_ms),
            &ctx.key("timeout_ms"),
            "must be at least 50 and at most half of lease_ttl_ms",
        );
        let id_ok = raw.instance_id.len() <= 64
            && raw
                .instance_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        errs.check(
            id_ok,
            &ctx.key("instance_id"),
            "must be at most 64 letters, digits, '.', '_' or '-'",
        );
        errs.check(
            raw.tls_ca_file.is_empty() || url.starts_with("rediss://"),
            &ctx.key("tls_ca_file"),
            "is for TLS: the url must start with rediss://",
        );
        let fallback_local = match raw.on_redis_error.as_str() {
            "refuse" => false,
            "local" => true,
            _ => {
                errs.push(
                    &ctx.key("on_redis_error"),
                    "must be \"refuse\" or \"local\"",
                );
                false
            }
        };
        Self {
            url: raw.url,
            key_prefix: raw.key_prefix,
            lease_ttl: Duration::from_millis(raw.lease_ttl_ms),
            instance_id: (!raw.instance_id.is_empty()).then_some(raw.instance_id),
            fallback_local,
            timeout: Duration::from_millis(raw.timeout_ms),
            tls_ca_file: (!raw.tls_ca_file.is_empty()).then(|| raw.tls_ca_file.into()),
        }
    }
}

impl RoutingBackend for RedisSettings {
    fn build(
        &self,
        bot: std::sync::Arc<dyn BotChannel>,
    ) -> Result<std::sync::Arc<dyn CallDirectory>, DirectoryError> {
        Ok(std::sync::Arc::new(RedisDirectory::new(self.clone(), bot)?))
    }
}

#[cfg(test)]
mod tests {
    use crate::call::directory::RoutingSettings;

    fn parse(toml: &str) -> Result<RoutingSettings, Vec<String>> {
        RoutingSettings::from_toml("routing", toml)
            .map_err(|errs| errs.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn defaults_and_every_problem_with_its_key() {
        let Ok(RoutingSettings::Redis(s)) = parse("backend = \"redis\"") else {
            panic!("redis with defaults");
        };
        assert_eq!(s.lease_ttl.as_millis(), 15_000);
        assert!(!s.fallback_local && s.instance_id.is_none());
        let errs = parse(
            "backend = \"redis\"\nurl = \"http://:hunter2@cache:6379\"\nkey_prefix = \"a b\"\n\
             lease_ttl_ms = 100\ntimeout_ms = 10\ninstance_id = \"no spaces\"\non_redis_error = \"ignore\"",
        )
        .unwrap_err();
        for key in [
            "routing.url",
            "routing.key_prefix",
            "routing.lease_ttl_ms",
            "routing.timeout_ms",
            "routing.instance_id",
            "routing.on_redis_error",
        ] {
            assert!(errs.iter().any(|e| e.contains(key)), "{key} in {errs:?}");
        }
        assert!(!errs.join(" ").contains("hunter2"), "{errs:?}");
    }

    #[test]
    fn tls_urls_and_local_fallback_are_accepted_and_the_password_never_shows() {
        let Ok(RoutingSettings::Redis(s)) = parse(
            "backend = \"redis\"\nurl = \"rediss://:hunter2@cache.internal:6380/2\"\n\
             on_redis_error = \"local\"",
        ) else {
            panic!("valid");
        };
        assert!(s.fallback_local);
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
