//! The inGenious AI platform through the real daemon: a Twilio caller, the daemon with
//! `[bot] platform = "ingenious"`, and the inGenious simulator pushing bot messages to the
//! daemon's webhook route and waiting for each acknowledgement.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use voxhook::app::{self, Engines};
use voxhook::bot::BotSettings;
use voxhook::sim::caller::{CallerOptions, SimCaller};
use voxhook::sim::ingenious::{IngeniousSim, Received};
use voxhook::sim::kore::KoreSim;

use crate::support::{fake_engines, speech, WAIT};

const TOKEN: &str = "ing-access-token";
const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A daemon wired to a fresh inGenious simulator (fake STT and TTS unless `real_speech`).
struct Rig {
    bot: IngeniousSim,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    daemon: tokio::task::JoinHandle<Result<(), app::AppError>>,
}

impl Rig {
    async fn start(extra: &str) -> Self {
        Self::start_with(extra, false, |_| {}).await
    }

    async fn start_with(
        extra: &str,
        real_speech: bool,
        tweak: impl FnOnce(&mut voxhook::config::Settings),
    ) -> Self {
        let bot = IngeniousSim::start(TOKEN).await.unwrap();
        // The Kore simulator only lends its daemon defaults; the bot is replaced.
        let kore = KoreSim::start("st-x", "cs-x", "unused").await.unwrap();
        let mut s = kore.daemon_settings("models/ggml-tiny.en.bin");
        s.bot = BotSettings::from_toml("bot", &bot.bot_section(SECRET, extra)).unwrap();
        s.call.no_input = None;
        if !real_speech {
            fake_engines(&mut s);
        }
        tweak(&mut s);
        let engines = Engines::load(&s).unwrap();
        let listener = TcpListener::bind(s.server.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        bot.set_target(format!("http://{addr}/ingenious/webhook/{SECRET}"), None);
        let stop = CancellationToken::new();
        let daemon = tokio::spawn(app::serve(s, engines, listener, stop.clone()));
        Self {
            bot,
            addr,
            stop,
            daemon,
        }
    }

    async fn call(&self, from: &str) -> SimCaller {
        let url = format!("ws://{}/twilio", self.addr);
        SimCaller::connect(CallerOptions::new(&url, from, "+15550009999"))
            .await
            .unwrap()
    }

    async fn received(&self, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        self.bot
            .wait_received(WAIT, pred)
            .await
            .unwrap_or_else(|| panic!("bot received only {:?}", self.bot.received()))
    }

    async fn finish(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.daemon)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(self.bot.violations(), Vec::<String>::new());
    }
}

fn count(r: &[Received], kind: &str) -> usize {
    r.iter().filter(|x| x.kind == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingenious_chat_greets_answers_speech_and_digits_with_every_message_acknowledged() {
    // Real speech both ways: flite greets, whisper recognises the caller.
    let rig = Rig::start_with("", true, |_| {}).await;
    let caller = rig.call("+15550007001").await;
    // Chat created with the call's metadata, then the default entry point's postback.
    let got = rig.received(|r| count(r, "postback") == 1).await;
    assert_eq!(got[0].kind, "create");
    assert_eq!(
        got[0].body["metadata"]["callId"],
        caller.options.call_sid.as_str()
    );
    assert_eq!(got[0].body["metadata"]["provider"], "twilio");
    assert_eq!(got[0].body["displayName"], "Phone call from +15550007001");
    assert_eq!(
        got[1].body["content"]["payload"],
        serde_json::json!({"restart": true})
    );
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeting played");
    rig.received(|r| count(r, "ack") == 1).await;

    // A spoken turn: two bot messages, the second sent only after the first was acknowledged.
    caller
        .say(speech("I would like to check my account balance.").await)
        .await;
    let got = rig.received(|r| count(r, "text") == 1).await;
    let turn = got.iter().find(|r| r.kind == "text").unwrap();
    assert!(turn.val.contains("balance"), "{:?}", turn.val);
    assert_eq!(turn.body["metadata"]["inputMode"], "speech");
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 3)
        .await
        .expect("both messages played");
    let pushed = rig
        .bot
        .wait_pushed(WAIT, |p| {
            p.iter().filter(|m| m.acked_at.is_some()).count() == 3
        })
        .await
        .expect("three messages acknowledged");
    let msgs: Vec<_> = pushed
        .iter()
        .filter(|p| p.kind == "conversation:message")
        .collect();
    assert!(msgs[2].at >= msgs[1].acked_at.unwrap(), "paced by acks");
    assert!(pushed.iter().all(|p| p.status == 200));

    // Digits, marked as DTMF.
    caller.press("1234#").await;
    let got = rig.received(|r| count(r, "text") == 2).await;
    let digits = got.iter().filter(|r| r.kind == "text").nth(1).unwrap();
    assert_eq!(digits.val, "1234");
    assert_eq!(digits.body["metadata"]["inputMode"], "dtmf");
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 4)
        .await
        .expect("balance played");
    rig.received(|r| count(r, "ack") == 4).await;
    caller.hang_up().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.finish().await;
}

/// `ack = "played"` paces the bot to the caller: the greeting is acknowledged only once its
/// audio (about 1 s of fake TTS) has played; `queued` acknowledges it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn played_acks_wait_for_the_audio_and_queued_ones_do_not() {
    for (mode, played) in [("queued", false), ("played", true)] {
        let rig = Rig::start(&format!("ack = \"{mode}\"")).await;
        let caller = rig.call("+15550007002").await;
        let pushed = rig
            .bot
            .wait_pushed(WAIT, |p| p.iter().any(|m| m.acked_at.is_some()))
            .await
            .expect("greeting acknowledged");
        let greeting = pushed.iter().find(|m| m.acked_at.is_some()).unwrap();
        let latency = greeting.acked_at.unwrap() - greeting.at;
        // WELCOME is 51 characters at 20 ms each.
        if played {
            assert!(latency >= Duration::from_millis(900), "{mode}: {latency:?}");
            assert_eq!(caller.log().marks_played.len(), 1, "acked after its mark");
        } else {
            assert!(latency < Duration::from_millis(700), "{mode}: {latency:?}");
        }
        caller.hang_up().await;
        rig.finish().await;
    }
}

/// A rejected token: `/ready` fails and the caller hears the fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_fails_readiness_and_speaks_the_fallback() {
    let rig = Rig::start("").await;
    rig.bot.fail_next("conversations", 401, None);
    let caller = rig.call("+15550007003").await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("fallback played");
    let ready = reqwest::get(format!("http://{}/ready", rig.addr))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    assert_eq!(count(&rig.bot.received(), "create"), 0);
    caller.hang_up().await;
    rig.finish().await;
}

/// A quick reply answered by a key goes back as its postback; a handover then transfers the
/// call through Twilio's REST API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_reply_by_key_then_a_handover_transfers_through_twilio_rest() {
    use voxhook::config::{SensitiveString, TwilioRestSettings};
    use voxhook::sim::ingenious::{Reply, SimMessage};
    use voxhook::sim::twilio_api::TwilioApiSim;
    let twilio = TwilioApiSim::start("AC0123456789abcdef", "twilio-token")
        .await
        .unwrap();
    let rig = Rig::start_with("handover_target = \"+15550004444\"", false, |s| {
        crate::support::twilio(s).rest = Some(TwilioRestSettings {
            api_base_url: twilio.base_url(),
            account_sid: "AC0123456789abcdef".into(),
            auth_token: SensitiveString::new("twilio-token"),
            timeout: Duration::from_secs(5),
        });
    })
    .await;
    let caller = rig.call("+15550007004").await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeting played");
    rig.bot.push_override(
        |r: &Received| r.val == "5",
        Reply::Say(vec![SimMessage {
            text: "What would you like to do?".into(),
            quick_replies: vec![
                serde_json::json!({"title": "Account balance", "payload": {"nextPassage": {"passageId": "balance"}}}),
                serde_json::json!({"title": "Speak to an agent", "payload": {"nextPassage": {"passageId": "agent"}}}),
            ],
        }]),
    );
    caller.press("5#").await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 2)
        .await
        .expect("menu played");
    caller.press("2").await;
    let got = rig.received(|r| count(r, "postback") == 2).await;
    let pick = got.iter().filter(|r| r.kind == "postback").nth(1).unwrap();
    assert_eq!(
        pick.body["content"]["payload"],
        serde_json::json!({"nextPassage": {"passageId": "agent"}})
    );
    let update = twilio
        .wait_for_update(WAIT)
        .await
        .expect("transfer request");
    assert_eq!(update.call_sid, caller.options.call_sid);
    let twiml = update.twiml.unwrap_or_default();
    assert!(twiml.contains("<Dial>+15550004444</Dial>"), "{twiml}");
    caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("stream ends");
    assert_eq!(twilio.violations(), Vec::<String>::new());
    rig.finish().await;
}

/// A 429 with `Retry-After` on a turn: resent after the pause, answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_turn_is_resent_after_retry_after() {
    let rig = Rig::start("").await;
    let caller = rig.call("+15550007005").await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeting played");
    rig.bot.fail_next("messages", 429, Some(1));
    let sent = tokio::time::Instant::now();
    caller.press("1234#").await;
    let got = rig.received(|r| count(r, "text") == 1).await;
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "waited Retry-After"
    );
    assert_eq!(got.iter().filter(|r| r.kind == "text").count(), 1);
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 2)
        .await
        .expect("the answer played");
    caller.hang_up().await;
    rig.finish().await;
}

/// A bot message for a chat whose call has ended is answered 200 and counted as unroutable;
/// a request to the route with the wrong secret gets 404 and is counted as rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_messages_are_answered_and_forged_ones_refused() {
    let rig = Rig::start("").await;
    let caller = rig.call("+15550007006").await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeting played");
    caller.hang_up().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let chat = rig
        .bot
        .pushed()
        .first()
        .map(|p| p.conversation.clone())
        .expect("the greeting was pushed");
    let late = serde_json::json!({"events": [{"id": "ev-late", "timestamp": 1,
        "type": "conversation:message",
        "payload": {"conversation": {"id": chat},
                    "message": {"id": "msg-late", "author": {"type": "chatbot"},
                                "content": {"type": "text", "text": "Still there?"}}}}]});
    let http = reqwest::Client::new();
    let url = |secret: &str| format!("http://{}/ingenious/webhook/{secret}", rig.addr);
    let res = http.post(url(SECRET)).json(&late).send().await.unwrap();
    assert_eq!(res.status(), 200, "late message answered");
    let res = http
        .post(url("not-the-secret"))
        .json(&late)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "wrong secret refused");
    let metrics = reqwest::get(format!("http://{}/metrics", rig.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = |result: &str| -> f64 {
        let key = format!("voxhook_bot_callbacks_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(counted("unroutable") >= 1.0, "{metrics}");
    assert!(counted("rejected") >= 1.0, "{metrics}");
    rig.finish().await;
}
