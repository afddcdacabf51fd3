//! Shared routing through a real Redis: how long a callback received by one instance takes
//! to reach its call on another (vs. a local delivery), and how many Redis commands a call
//! costs. Two directories in one process on one `redis-server` (the integration tests run
//! separate daemons; this isolates the directory).
//!
//! `cargo bench --bench routing` (options: `-- --calls N --callbacks N`). Figures are
//! percentiles from one run.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use voxhook::bot::BotReply;
use voxhook::call::directory::{CallDirectory, Delivery, RoutingSettings};
use voxhook::sim::kore::KoreSim;
use voxhook::sim::redis_server::RedisServer;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Total commands Redis executed (scripts' inner calls included) per `INFO commandstats`.
fn commands(redis: &RedisServer) -> u64 {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

async fn instance(redis: &RedisServer, bot: &KoreSim, id: &str) -> Arc<dyn CallDirectory> {
    let toml = format!(
        "backend = \"redis\"\nurl = \"{}\"\ninstance_id = \"{id}\"\nkey_prefix = \"bench\"",
        redis.url()
    );
    let routing = RoutingSettings::from_toml("routing", &toml).expect("valid [routing]");
    let channel = bot
        .daemon_settings("unused")
        .bot
        .get()
        .build()
        .expect("bot channel");
    let d = routing.get().build(channel).expect("directory");
    d.start().await;
    assert!(d.unavailable().is_none(), "Redis reachable");
    d
}

#[tokio::main]
async fn main() {
    let calls = arg("--calls", 200);
    let callbacks = arg("--callbacks", 2_000);
    let redis = RedisServer::start().expect("redis-server (scripts/setup.sh installs it)");
    let bot = KoreSim::start("st-bench", "cs-bench", "bench-secret")
        .await
        .unwrap();
    let a = instance(&redis, &bot, "a").await;
    let b = instance(&redis, &bot, "b").await;
    tokio::time::sleep(Duration::from_millis(200)).await; // A's subscription

    // A call's life in the directory, as `call::run_call` does it (a Kore v2 session).
    let before = commands(&redis);
    let mut sinks = Vec::new();
    let mut held = Vec::new();
    for n in 0..calls {
        let (user, call) = (format!("+1555{n:07}"), format!("CA{n}"));
        let claim = a.claim_user(&user, &call).await;
        let (tx, rx) = mpsc::channel(16);
        let reg = a.register(vec![user.clone(), call.clone()], tx).await;
        a.hold_session(&format!("{{\"call_id\":\"{call}\"}}")).await;
        sinks.push((call, rx));
        held.push((claim, reg));
    }
    let per_call_start = (commands(&redis) - before) as f64 / calls as f64;
    // Renewals while the calls live: per tick, the lease, the membership, the peer scan and
    // one script renewing every key (its inner GET/SET count as commands too).
    let before = commands(&redis);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let renew_per_call_min = (commands(&redis) - before) as f64 * 6.0 / calls as f64;
    let before = commands(&redis);

    let mut forwarded = Vec::with_capacity(callbacks);
    let mut local = Vec::with_capacity(callbacks);
    for i in 0..callbacks {
        let (call, rx) = &mut sinks[i % calls];
        for (via, out) in [(&b, &mut forwarded), (&a, &mut local)] {
            let reply = BotReply {
                text: Some("Your balance is forty two dollars.".into()),
                ..BotReply::default()
            };
            let t0 = Instant::now();
            let got = via.deliver(std::slice::from_ref(call), vec![reply]).await;
            assert!(matches!(got, Delivery::Forwarded | Delivery::Delivered));
            rx.recv().await.expect("delivered");
            out.push(t0.elapsed());
        }
    }
    let per_callback = (commands(&redis) - before) as f64 / callbacks as f64;
    let before = commands(&redis);
    for (n, held) in held.drain(..).enumerate() {
        a.release_session(&format!("{{\"call_id\":\"CA{n}\"}}"))
            .await;
        drop(held);
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // releases are asynchronous
    let per_call_end = (commands(&redis) - before) as f64 / calls as f64;

    forwarded.sort();
    local.sort();
    println!("routing through one redis-server on loopback, {calls} calls, {callbacks} callbacks");
    println!(
        "callback → its call: forwarded p50 {:.3} ms, p99 {:.3} ms; local p50 {:.3} ms, p99 {:.3} ms",
        pct(&forwarded, 0.5),
        pct(&forwarded, 0.99),
        pct(&local, 0.5),
        pct(&local, 0.99)
    );
    println!(
        "Redis commands per call: {per_call_start:.1} at start, {per_call_end:.1} at the end, \
         {renew_per_call_min:.1} per minute of renewals; {per_callback:.1} per forwarded \
         callback (renewals during the run included)"
    );
    a.shutdown().await;
    b.shutdown().await;
}
