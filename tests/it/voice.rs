//! Voice behaviours voxhook owns around the bot's turns: spoken menus answered by a key,
//! no-input reprompts, filler while the bot stalls, bot-requested hang-up and transfer
//! through Twilio's REST API, and language switching. Every case checks that each session
//! opened with ON_CONNECT was closed exactly once.

use std::time::Duration;

use serde_json::json;
use voxhook::audio::wav;
use voxhook::config::{
    BotSettings, FillerSettings, LanguageSettings, NoInputSettings, Reprompt, SensitiveString,
    TwilioRestSettings,
};
use voxhook::sim::caller::{CallerOptions, SimCaller};
use voxhook::sim::kore::{Received, Reply};
use voxhook::sim::twilio_api::TwilioApiSim;

use crate::support::{contains_clip, median_pitch, transcribe, Harness, WAIT};

fn is_text(v: &'static str) -> impl Fn(&Received) -> bool + Send + Sync {
    move |r: &Received| r.kind == "text" && r.val == v
}

/// What the caller heard after the first `n` marks played.
fn heard_after(caller: &SimCaller, n: usize) -> Vec<i16> {
    let log = caller.log();
    let from = n.checked_sub(1).map_or(0, |i| log.mark_offsets[i].1);
    log.heard[from..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_menu_is_spoken_and_answered_by_one_key() {
    let h = Harness::start().await;
    let user = "+15550003001";
    let caller = h.call_and_hear_greeting(user).await;
    let menu = json!({"type": "template", "payload": {"template_type": "button",
        "text": "What would you like?", "buttons": [
            {"type": "postback", "title": "Balance", "payload": "CHECK_BALANCE"},
            {"type": "web_url", "title": "Our website", "url": "https://example.com"},
            {"type": "postback", "title": "Cards", "payload": "CARD_MENU"}]}});
    // Sent as a JSON string, as Kore does for templates built in script nodes.
    h.bot
        .push_override(is_text("0"), Reply::say(&[&menu.to_string()]));
    caller.press("0#").await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 2)
        .await
        .expect("menu spoken");
    let spoken = transcribe(&heard_after(&caller, 1)).await;
    for word in ["press", "balance", "cards"] {
        assert!(spoken.contains(word), "{word} in {spoken:?}");
    }
    assert!(
        !spoken.contains("website"),
        "links are not options: {spoken:?}"
    );

    // One key picks option 2 at once (no terminator needed); its payload is the turn.
    caller.press("2").await;
    let got = h.wait_received(1, is_text("CARD_MENU")).await;
    assert_eq!(got[0].custom_data["inputMode"], "dtmf");
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_is_reprompted_then_the_call_ends_politely() {
    let h = Harness::start_with(|s| {
        s.call.no_input = Some(NoInputSettings {
            timeout: Duration::from_millis(1_500),
            max_reprompts: 2,
            reprompt: Reprompt::Local("Are you still there?".into()),
            goodbye_text: "I did not hear anything. Goodbye.".into(),
        });
    })
    .await;
    let user = "+15550003002";
    let caller = h.call_and_hear_greeting(user).await;
    caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("voxhook ends the silent call");
    let log = caller.log();
    assert_eq!(
        log.marks_played.len(),
        4,
        "greeting, two reprompts, goodbye"
    );
    let said = transcribe(&heard_after(&caller, 1)).await;
    assert!(said.matches("still there").count() == 2, "{said:?}");
    assert!(said.contains("goodbye"), "{said:?}");
    h.assert_closed_once(user).await;
    assert!(
        h.bot.received().iter().all(|r| r.kind != "text"),
        "local reprompts never reach the bot"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_input_can_be_left_to_the_bot() {
    let h = Harness::start_with(|s| {
        s.call.no_input = Some(NoInputSettings {
            timeout: Duration::from_millis(1_500),
            max_reprompts: 1,
            reprompt: Reprompt::Bot("NO_INPUT".into()),
            goodbye_text: "Goodbye.".into(),
        });
    })
    .await;
    let user = "+15550003003";
    let caller = h.call_and_hear_greeting(user).await;
    let got = h.wait_received(1, is_text("NO_INPUT")).await;
    assert_eq!(got[0].custom_data["inputMode"], "no_input");
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_bot_gets_filler_then_the_fallback() {
    let h = Harness::start_with(|s| {
        let BotSettings::Kore(k) = &mut s.bot else {
            panic!("a Kore [bot]");
        };
        k.turn_deadline = Duration::from_secs(3);
        s.call.filler = Some(FillerSettings {
            delay: Duration::from_millis(500),
            audio: None,
        });
    })
    .await;
    let user = "+15550003004";
    let caller = h.call_and_hear_greeting(user).await;
    h.bot.push_override(
        is_text("6"),
        Reply::Delay(
            Duration::from_secs(8),
            Box::new(Reply::say(&["This answer is too late."])),
        ),
    );
    caller.press("6#").await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 2)
        .await
        .expect("fallback spoken");
    let filler = wav::decode(include_bytes!("../../assets/filler.wav"), "filler").unwrap();
    let after = heard_after(&caller, 1);
    assert!(contains_clip(&after, &filler.samples), "filler heard");
    assert!(
        caller.log().clears >= 1,
        "filler cut when the fallback began"
    );
    let said = transcribe(&after).await;
    assert!(said.contains("sorry"), "fallback heard: {said:?}");
    // The late answer is never spoken.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(caller.log().marks_played.len(), 2);
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_hangs_up_and_transfers_through_twilio_rest() {
    let twilio = TwilioApiSim::start("AC0123456789abcdef", "twilio-token")
        .await
        .unwrap();
    let base = twilio.base_url();
    let h = Harness::start_with(|s| {
        crate::support::twilio(s).rest = Some(TwilioRestSettings {
            api_base_url: base,
            account_sid: "AC0123456789abcdef".into(),
            auth_token: SensitiveString::new("twilio-token"),
            timeout: Duration::from_secs(5),
        });
    })
    .await;

    let user = "+15550003005";
    let caller = h.call_and_hear_greeting(user).await;
    let bye = json!({"text": "Thanks for calling. Goodbye!", "action": "hangup"});
    h.bot
        .push_override(is_text("8"), Reply::say(&[&bye.to_string()]));
    caller.press("8#").await;
    let update = twilio.wait_for_update(WAIT).await.expect("hang-up request");
    assert_eq!(update.call_sid, caller.options.call_sid);
    assert_eq!(update.status.as_deref(), Some("completed"));
    assert_eq!(
        caller.log().marks_played.len(),
        2,
        "the goodbye played before the hang-up"
    );
    caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("stream ends");
    h.assert_closed_once(user).await;

    let user = "+15550003006";
    let caller = h.call_and_hear_greeting(user).await;
    let transfer = json!({"action": "transfer", "target": "+15550004444"});
    h.bot.push_override(
        is_text("9"),
        Reply::say(&["Let me transfer you.", &transfer.to_string()]),
    );
    caller.press("9#").await;
    let update = twilio
        .wait_for_update(WAIT)
        .await
        .expect("transfer request");
    assert_eq!(update.call_sid, caller.options.call_sid);
    let twiml = update.twiml.unwrap_or_default();
    assert!(twiml.contains("<Dial>+15550004444</Dial>"), "{twiml}");
    assert_eq!(caller.log().marks_played.len(), 2);
    caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("stream ends");
    h.assert_closed_once(user).await;
    assert_eq!(twilio.violations(), Vec::<String>::new());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_api_credentials_a_bot_hang_up_closes_the_stream() {
    let h = Harness::start().await;
    let user = "+15550003007";
    let caller = h.call_and_hear_greeting(user).await;
    let bye = json!({"text": "Goodbye!", "action": "hangup"});
    h.bot
        .push_override(is_text("8"), Reply::say(&[&bye.to_string()]));
    caller.press("8#").await;
    caller
        .wait_for(WAIT, |l| l.closed)
        .await
        .expect("stream closed");
    assert_eq!(caller.log().marks_played.len(), 2);
    h.assert_closed_once(user).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_language_choice_switches_the_bot_language_and_the_voice() {
    let h = Harness::start_with(|s| {
        s.languages = vec![LanguageSettings {
            code: "es".into(),
            // tiny.en only knows English; a real deployment names a multilingual model here.
            stt_language: "en".into(),
            stt: None,
            tts: Some(voxhook::tts::TtsSettings::Flite(
                voxhook::tts::flite::FliteSettings {
                    voice: "rms".into(),
                },
            )),
            keywords: vec!["spanish".into()],
            dtmf: Some("*2".into()),
        }];
    })
    .await;
    let user = "+15550003008";
    let caller = h.call_and_hear_greeting(user).await;
    let greeting_pitch = median_pitch(&caller.log().heard);
    let opened = h.wait_received(1, |r| r.val == "ON_CONNECT").await;
    assert_eq!(opened[0].interactive_language, None);

    caller.press("*2#").await;
    let got = h.wait_received(1, is_text("*2")).await;
    assert_eq!(got[0].interactive_language.as_deref(), Some("es"));
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 2)
        .await
        .expect("reply spoken");
    let reply_pitch = median_pitch(&heard_after(&caller, 1));
    assert!(
        greeting_pitch > 1.3 * reply_pitch,
        "voice switched: greeting {greeting_pitch:.0} Hz, reply {reply_pitch:.0} Hz"
    );
    caller.press("7#").await;
    let got = h.wait_received(1, is_text("7")).await;
    assert_eq!(
        got[0].interactive_language.as_deref(),
        Some("es"),
        "it sticks"
    );
    caller.hang_up().await;
    h.assert_closed_once(user).await;

    // A call can also start in a language, named by a stream parameter.
    let user = "+15550003009";
    let mut options = CallerOptions::new(&h.ws_url(), user, "+15550009999");
    options.parameters.insert("language".into(), "es".into());
    let caller = SimCaller::connect(options).await.unwrap();
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeting");
    let opened = h
        .wait_received(1, |r| r.user_id == user && r.val == "ON_CONNECT")
        .await;
    assert_eq!(opened[0].interactive_language.as_deref(), Some("es"));
    let pitch = median_pitch(&caller.log().heard);
    assert!(
        greeting_pitch > 1.3 * pitch,
        "{greeting_pitch:.0} vs {pitch:.0} Hz"
    );
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// After the bot asks for a number, "four five … six seven" with a 1.2 s pause is one
/// turn (the digits hangover, 2 s); after a prompt that asks for none, the same pause ends
/// the turn (700 ms), so the caller's two groups are two turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_while_reading_digits_does_not_end_the_turn() {
    let h = Harness::start_with(|s| {
        s.stt = voxhook::stt::SttSettings::from_toml(
            "stt",
            "provider = \"fake\"\ntranscripts = [\"4 5 6 7\"]\nlatency_ms = 5",
        )
        .unwrap();
    })
    .await;
    let user = "+15550003010";
    let caller = h.call_and_hear_greeting(user).await;
    let groups = [
        crate::support::speech("four five").await,
        vec![0i16; 9_600],
        crate::support::speech("six seven").await,
    ];
    let spoken_turns = || {
        h.bot
            .received()
            .iter()
            .filter(|r| r.kind == "text" && r.val == "4 5 6 7")
            .count()
    };
    for (key, prompt, turns) in [
        ("0", "Please say your card number.", 1),
        ("1", "Thank you. What else can I do?", 2),
    ] {
        h.bot.push_override(is_text(key), Reply::say(&[prompt]));
        let played = caller.log().marks_played.len();
        caller.press(&format!("{key}#")).await;
        caller
            .wait_for(WAIT, |l| l.marks_played.len() > played)
            .await
            .expect("prompt played");
        let before = spoken_turns();
        for pcm in groups.clone() {
            caller.say(pcm).await;
        }
        caller.finish_speaking().await;
        // Longer than the digits hangover: every turn the speech makes has been sent.
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        let seen: Vec<String> = h
            .bot
            .received()
            .iter()
            .map(|r| format!("{}:{}", r.kind, r.val))
            .collect();
        assert_eq!(spoken_turns() - before, turns, "after {prompt:?}: {seen:?}");
    }
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}
