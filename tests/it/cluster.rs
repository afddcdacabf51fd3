//! Several voxhook instances sharing call routing through one real Redis (issue #12): three
//! real daemons on loopback, the Kore simulator posting async callbacks to whichever
//! instance a balancer would pick, an instance drained with SIGTERM, one killed with SIGKILL,
//! and Redis itself stopped mid-call.

use std::time::Duration;

use tokio::time::Instant;
use voxhook::sim::caller::{CallerOptions, SimCaller};
use voxhook::sim::kore::{KoreSim, Received, Reply};
use voxhook::sim::redis_server::RedisServer;

use crate::support::{transcribe, Daemon, BOT_ID, CLIENT_ID, SECRET, WAIT};

const CALLBACK_SECRET: &str = "cluster-callback-secret-0123456789abcdef";
/// Short, so that a dead instance is noticed within seconds.
const LEASE_MS: u64 = 2_000;

/// `[bot]` additions (`bot` lines) and the `[routing]` section for instance `id`.
fn config(redis: &RedisServer, id: &str, bot: &str) -> String {
    format!(
        "{bot}\n[routing]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"it\"\n\
         lease_ttl_ms = {LEASE_MS}\ntimeout_ms = 500\ninstance_id = \"{id}\"\n",
        redis.url()
    )
}

fn async_bot() -> String {
    format!("mode = \"async\"\ncallback_secret = \"{CALLBACK_SECRET}\"")
}

async fn fleet(bot: &KoreSim, redis: &RedisServer, ids: &[&str], bot_lines: &str) -> Vec<Daemon> {
    let mut out = Vec::new();
    for id in ids {
        out.push(Daemon::spawn(bot, 20, &config(redis, id, bot_lines)).await);
    }
    out
}

fn callback_url(d: &Daemon) -> String {
    d.http_url(&format!("/kore/callback/{CALLBACK_SECRET}"))
}

async fn call(d: &Daemon, from: &str) -> SimCaller {
    let caller = SimCaller::connect(CallerOptions::new(&d.ws_url(), from, "+15550009999"))
        .await
        .unwrap();
    if let Err(log) = caller.wait_for(WAIT, |l| l.marks_played.len() == 1).await {
        panic!(
            "{from}: no greeting ({} frames); daemon log:\n{:#?}",
            log.media_frames,
            d.log_lines_all()
        );
    }
    caller
}

async fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) -> Duration {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

fn said_by(user: &'static str, val: &'static str) -> impl Fn(&Received) -> bool + Send + Sync {
    move |r: &Received| r.user_id == user && r.val == val
}

/// What the caller heard after its `n`-th mark, transcribed.
async fn heard_after_mark(c: &SimCaller, n: usize) -> String {
    let log = c.log();
    transcribe(&log.heard[log.mark_offsets[n].1..]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_posted_to_other_instances_are_spoken_on_the_right_call_in_order() {
    let redis = RedisServer::start().unwrap();
    let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
    let ds = fleet(&bot, &redis, &["a", "b", "c"], &async_bot()).await;
    // The balancer sends every callback to B or C, in turn; both calls live on A.
    bot.set_async_spread(vec![callback_url(&ds[1]), callback_url(&ds[2])], None);
    let (u1, u2) = ("+15550006001", "+15550006002");
    let c1 = call(&ds[0], u1).await;
    let c2 = call(&ds[0], u2).await;

    bot.push_override(
        said_by(u1, "1"),
        Reply::say(&[
            "First, the red one.",
            "Second, the green one.",
            "Third, the blue one.",
        ]),
    );
    bot.push_override(said_by(u2, "2"), Reply::say(&["The banana line is open."]));
    c1.press("1#").await;
    c2.press("2#").await;
    c1.wait_for(WAIT, |l| l.marks_played.len() == 4)
        .await
        .expect("three messages on the first call");
    c2.wait_for(WAIT, |l| l.marks_played.len() == 2)
        .await
        .expect("one message on the second call");
    let said = heard_after_mark(&c1, 0).await;
    let pos = |w: &str| said.find(w).unwrap_or_else(|| panic!("{w} in {said:?}"));
    assert!(
        pos("red") < pos("green") && pos("green") < pos("blue"),
        "{said:?}"
    );
    assert!(!said.contains("banana"), "{said:?}");
    let other = heard_after_mark(&c2, 0).await;
    assert!(
        other.contains("banana") && !other.contains("red"),
        "{other:?}"
    );

    // Every callback was answered 200 by B or C and forwarded to A.
    let results = bot.callback_results();
    assert!(results.len() >= 6, "{results:?}");
    assert!(
        results.iter().all(|(_, status)| *status == 200),
        "{results:?}"
    );
    let forwarded = r#"voxhook_bot_callbacks_total{result="forwarded"}"#;
    let (mb, mc, ma) = (
        ds[1].metrics().await,
        ds[2].metrics().await,
        ds[0].metrics().await,
    );
    let (fb, fc) = (mb[forwarded], mc[forwarded]);
    assert!(fb >= 3.0 && fc >= 3.0, "B {fb}, C {fc}");
    let routed_in = ma[r#"voxhook_routing_forwarded_in_total{result="routed"}"#];
    assert_eq!(routed_in, fb + fc);
    assert_eq!(ma["voxhook_routing_up"], 1.0);

    for c in [&c1, &c2] {
        c.hang_up().await;
    }
    for u in [u1, u2] {
        wait_until("closure", WAIT, || {
            bot.count_event(u, "SESSION_CLOSURE") == 1
        })
        .await;
    }
    assert_eq!(bot.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_calls_from_one_number_on_two_instances_get_two_bot_user_ids() {
    let redis = RedisServer::start().unwrap();
    let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
    let ds = fleet(&bot, &redis, &["a", "b"], "").await;
    let from = "+15550006101";
    let first = call(&ds[0], from).await;
    let second = call(&ds[1], from).await;
    let mut users: Vec<String> = bot
        .received()
        .iter()
        .filter(|r| r.val == "ON_CONNECT")
        .map(|r| r.user_id.clone())
        .collect();
    users.sort();
    assert_eq!(users.len(), 2, "{users:?}");
    assert_eq!(users[0], from);
    assert!(users[1].starts_with(&format!("{from}-")), "{users:?}");
    assert_eq!(
        redis
            .cli(&["GET", &format!("it:user:{from}")])
            .split(' ')
            .next(),
        Some("a")
    );
    first.hang_up().await;
    second.hang_up().await;
    for u in &users {
        wait_until("closure", WAIT, || {
            bot.count_event(u, "SESSION_CLOSURE") == 1
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_instance_keeps_getting_its_calls_callbacks_then_releases_its_keys() {
    let redis = RedisServer::start().unwrap();
    let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
    let mut ds = fleet(&bot, &redis, &["a", "b"], &async_bot()).await;
    bot.set_async_spread(vec![callback_url(&ds[1])], None);
    let user = "+15550006201";
    let caller = call(&ds[0], user).await;

    ds[0].signal("TERM");
    ds[0].wait_note("STOPPING=1").await;
    let ready = reqwest::get(ds[0].http_url("/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    match tokio_tungstenite::connect_async(ds[0].ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("a new call on the draining instance was not refused: {other:?}"),
    }
    // The live call still hears its replies, which reach it through B.
    bot.push_override(said_by(user, "7"), Reply::say(&["Your order has shipped."]));
    caller.press("7#").await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 2)
        .await
        .expect("the reply forwarded during the drain");
    let heard = heard_after_mark(&caller, 0).await;
    assert!(heard.contains("order"), "{heard:?}");
    caller.hang_up().await;
    assert_eq!(ds[0].exit_code().await, Some(0));
    assert_eq!(bot.count_event(user, "SESSION_CLOSURE"), 1);
    // A gave back its lease and its place in the fleet; B is still there.
    assert_eq!(redis.cli(&["EXISTS", "it:lease:a"]), "0");
    assert_eq!(redis.cli(&["SMEMBERS", "it:instances:all"]), "b");
    assert_eq!(redis.cli(&["EXISTS", &format!("it:user:{user}")]), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_bot_sessions_are_closed_once_by_a_survivor() {
    let redis = RedisServer::start().unwrap();
    let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
    let ds = fleet(&bot, &redis, &["a", "b", "c"], "").await;
    let users = ["+15550006301", "+15550006302"];
    let _calls = [call(&ds[0], users[0]).await, call(&ds[0], users[1]).await];
    assert_eq!(redis.cli(&["SCARD", "it:sessions:a"]), "2");

    ds[0].signal("KILL");
    let closed = wait_until("both orphaned sessions closed", WAIT, || {
        users
            .iter()
            .all(|u| bot.count_event(u, "SESSION_CLOSURE") == 1)
    })
    .await;
    // A survivor notices at its first tick after the lease lapsed (a third of it apart).
    let limit = Duration::from_millis(LEASE_MS + LEASE_MS / 3 + 1_500);
    assert!(closed < limit, "closed after {closed:?}");
    tokio::time::sleep(Duration::from_millis(LEASE_MS)).await;
    for u in users {
        assert_eq!(
            bot.count_event(u, "SESSION_CLOSURE"),
            1,
            "{u}: exactly once"
        );
    }
    let closers: usize = [&ds[1], &ds[2]]
        .iter()
        .map(|d| d.log_lines("Orphaned bot session closed.").len())
        .sum();
    assert_eq!(closers, 2);
    assert_eq!(redis.cli(&["EXISTS", "it:sessions:a"]), "0");
    eprintln!("orphan closure after SIGKILL: {closed:?} (lease {LEASE_MS} ms)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_live_calls_go_on_new_calls_are_refused_until_it_returns() {
    let mut redis = RedisServer::start().unwrap();
    let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
    let ds = fleet(&bot, &redis, &["a"], "").await;
    let d = &ds[0];
    let user = "+15550006401";
    let caller = call(d, user).await;

    redis.stop();
    let ready = || async { reqwest::get(d.http_url("/ready")).await.unwrap() };
    let t0 = Instant::now();
    while ready().await.status() != 503 {
        assert!(t0.elapsed() < WAIT, "outage not noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready().await.text().await.unwrap(), "routing unavailable\n");
    match tokio_tungstenite::connect_async(d.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("a new call during the outage was not refused: {other:?}"),
    }
    assert_eq!(d.metrics().await["voxhook_routing_up"], 0.0);
    assert!(!d
        .log_lines_all()
        .iter()
        .any(|l| l.to_string().contains("panicked")));
    // The live call goes on: a turn and its reply.
    caller.press("1234#").await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 2)
        .await
        .expect("the reply during the outage");

    redis.resume().unwrap();
    let t0 = Instant::now();
    while ready().await.status() != 200 {
        assert!(t0.elapsed() < WAIT, "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = call(d, "+15550006402").await;
    for c in [&caller, &after] {
        c.hang_up().await;
    }
    for u in [user, "+15550006402"] {
        wait_until("closure", WAIT, || {
            bot.count_event(u, "SESSION_CLOSURE") == 1
        })
        .await;
    }
    let refused = d.metrics().await[r#"voxhook_calls_refused_total{reason="routing"}"#];
    assert_eq!(refused, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_password_never_reaches_the_logs_even_when_redis_refuses_it() {
    let redis = RedisServer::start().unwrap();
    let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
    // The server has no password, so AUTH fails and every attempt is an error to log.
    let url = redis
        .url()
        .replace("redis://", "redis://:hunter2-redis-pass@");
    let extra = format!(
        "[routing]\nbackend = \"redis\"\nurl = \"{url}\"\nlease_ttl_ms = {LEASE_MS}\ntimeout_ms = 500\n"
    );
    let d = Daemon::spawn(&bot, 1, &extra).await;
    let ready = reqwest::get(d.http_url("/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    tokio::time::sleep(Duration::from_millis(LEASE_MS)).await; // a few failed ticks
    let logs = d.log_lines_all();
    assert!(!d.log_lines("Call routing shared through Redis.").is_empty());
    let unreachable: Vec<_> = logs
        .iter()
        .filter(|l| l.to_string().contains("Redis unreachable"))
        .collect();
    assert_eq!(unreachable.len(), 1, "one line per outage: {logs:#?}");
    let text = serde_json::to_string(&logs).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    let metrics = reqwest::get(d.http_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("hunter2"));
}
