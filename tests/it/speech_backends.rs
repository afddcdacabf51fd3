//! Cloud speech backends selected in config, each against its local fake (`voxhook::sim`),
//! carrying a whole call through the real daemon.

use voxhook::sim::assemblyai::{AssemblyAiSim, AssemblyAiSimOptions};
use voxhook::sim::backend_section;
use voxhook::sim::deepgram::{AuraSim, AuraSimOptions, DeepgramSim, DeepgramSimOptions};
use voxhook::sim::elevenlabs::{ElevenLabsSim, ElevenLabsSimOptions};
use voxhook::sim::openai::{OpenAiSim, OpenAiSimOptions};
use voxhook::sim::vosk::{VoskSim, VoskSimOptions};
use voxhook::stt::SttSettings;
use voxhook::tts::TtsSettings;

use crate::support::{rms, speech, transcribe, Harness, SpeechServer, WAIT};

const SAID: &str = "I would like to check my account balance.";

async fn deepgram_call(extra: &str) -> DeepgramSim {
    let sim = DeepgramSim::start(DeepgramSimOptions {
        transcripts: vec![SAID.into()],
        ..DeepgramSimOptions::default()
    })
    .await
    .unwrap();
    let toml = format!(
        "{}\n{extra}",
        backend_section("deepgram", "dg-test-key", &sim.base_url())
    );
    call_said(&toml).await;
    sim
}

/// One call whose caller speaks once, with `[stt]` set to `stt_toml`: the bot hears `SAID`.
async fn call_said(stt_toml: &str) {
    assert_eq!(call_heard(stt_toml).await, SAID);
}

/// One call whose caller speaks once, with `[stt]` set to `stt_toml`: what the bot heard.
async fn call_heard(stt_toml: &str) -> String {
    let h = Harness::start_with(|s| s.stt = SttSettings::from_toml("stt", stt_toml).unwrap()).await;
    let user = "+15550003131";
    let caller = h.call_and_hear_greeting(user).await;
    caller.say(speech("Hello, can you hear me?").await).await;
    caller.finish_speaking().await;
    let got = h
        .wait_received(1, |r| r.kind == "text" && r.user_id == user)
        .await;
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
    got[0].val.clone()
}

/// Deepgram with voxhook's VAD ending the turn: the call's μ-law goes to Deepgram at 8 kHz
/// as it is (one byte a sample, no resampling), the VAD's end of speech sends `Finalize`,
/// and the answer is the caller's turn. The call's end closes the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_deepgram_ended_by_the_vad() {
    let sim = deepgram_call("").await;
    let c = sim.connections();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(
        (
            c[0].query["encoding"].as_str(),
            c[0].query["sample_rate"].as_str()
        ),
        ("mulaw", "8000")
    );
    assert!(c[0].audio_bytes > 8_000, "{c:?}");
    assert!(c[0].finalizes >= 1, "{c:?}");
    assert_eq!(c[0].empty_frames, 0);
    assert!(c[0].ended.is_some(), "the stream was closed: {c:?}");
}

/// Deepgram's own endpointing ends the turn (`speech_final`): no `Finalize` is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_deepgram_ended_by_its_endpointing() {
    let sim = deepgram_call("end_of_turn = \"deepgram\"\nencoding = \"linear16\"").await;
    let c = sim.connections();
    assert_eq!(c[0].query["encoding"], "linear16");
    assert_eq!(c[0].finalizes, 0, "{c:?}");
    assert!(
        c[0].sent
            .iter()
            .any(|m| m.contains("\"speech_final\":true")),
        "{c:?}"
    );
}

async fn assemblyai_call(extra: &str) -> AssemblyAiSim {
    let sim = AssemblyAiSim::start(AssemblyAiSimOptions {
        transcripts: vec![SAID.into()],
        ..AssemblyAiSimOptions::default()
    })
    .await
    .unwrap();
    let toml = format!(
        "{}\n{extra}",
        backend_section("assemblyai", "aai-test-key", &sim.base_url())
    );
    call_said(&toml).await;
    sim
}

/// AssemblyAI with voxhook's VAD ending the turn: the call's μ-law goes out at 8 kHz as it
/// is, batched from 20 ms frames into chunks AssemblyAI accepts (50–1000 ms), the VAD's end
/// of speech sends `ForceEndpoint`, the formatted end of turn is the caller's turn, and the
/// call's end sends `Terminate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_assemblyai_ended_by_the_vad() {
    // AssemblyAI's own end of turn set later than the VAD's, so the VAD's comes first.
    let sim = assemblyai_call("min_end_of_turn_silence_when_confident_ms = 3000").await;
    let c = sim.connections();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(
        (
            c[0].query["encoding"].as_str(),
            c[0].query["sample_rate"].as_str(),
            c[0].query["speech_model"].as_str()
        ),
        ("pcm_mulaw", "8000", "universal-streaming-english")
    );
    assert!(c[0].audio_bytes > 8_000, "{c:?}");
    assert!(
        c[0].chunk_ms.iter().all(|ms| (50..=1000).contains(ms)),
        "{:?}",
        c[0].chunk_ms
    );
    assert!(c[0].force_endpoints >= 1, "{c:?}");
    let end = tokio::time::Instant::now() + WAIT;
    while sim.connections()[0].ended.is_none() {
        assert!(
            tokio::time::Instant::now() < end,
            "the stream was not closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        sim.connections()[0].terminates,
        1,
        "billing stops: Terminate sent"
    );
}

/// AssemblyAI's own end of turn (`end_of_turn: true`, formatted) ends the caller's turn: no
/// `ForceEndpoint` is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_assemblyai_ended_by_its_end_of_turn() {
    let sim = assemblyai_call("end_of_turn = \"assemblyai\"\nencoding = \"pcm_s16le\"").await;
    let c = sim.connections();
    assert_eq!(c[0].query["encoding"], "pcm_s16le");
    assert_eq!(c[0].force_endpoints, 0, "{c:?}");
    assert!(
        c[0].sent
            .iter()
            .any(|m| m.contains("\"end_of_turn\":true") && m.contains("\"turn_is_formatted\":true")),
        "{c:?}"
    );
}

/// A self-hosted Vosk server, utterance mode: each utterance the VAD found goes on its own
/// socket (config first, 8 kHz PCM, then the literal `{"eof" : 1}`), and its final result
/// is the caller's turn (Vosk's text: lower case, no punctuation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_a_vosk_server() {
    let sim = VoskSim::start(VoskSimOptions {
        transcripts: vec![SAID.into()],
        ..VoskSimOptions::default()
    })
    .await
    .unwrap();
    let heard = call_heard(&format!(
        "provider = \"vosk\"\nbase_url = \"{}\"",
        sim.base_url()
    ))
    .await;
    assert_eq!(heard, "i would like to check my account balance");
    let c = sim.connections();
    assert_eq!(c[0].config.as_ref().unwrap()["sample_rate"], 8000, "{c:?}");
    assert_eq!(c[0].eofs, 1, "{c:?}");
    assert_eq!(c[0].replies.len(), c[0].audio_frames + 1, "{c:?}");
}

/// Vosk in continuous mode with its endpoint ending the turn: the call's 8 kHz audio as it
/// comes, no eof needed for the turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_vosk_ended_by_its_endpoint() {
    let sim = VoskSim::start(VoskSimOptions {
        transcripts: vec![SAID.into()],
        ..VoskSimOptions::default()
    })
    .await
    .unwrap();
    let toml = format!(
        "provider = \"vosk\"\nbase_url = \"{}\"\nmode = \"continuous\"\nend_of_turn = \"vosk\"",
        sim.base_url()
    );
    assert_eq!(
        call_heard(&toml).await,
        "i would like to check my account balance"
    );
    let end = tokio::time::Instant::now() + WAIT;
    while sim.connections()[0].ended.is_none() {
        assert!(
            tokio::time::Instant::now() < end,
            "the stream was not closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let c = sim.connections();
    // The turn came from the result at Vosk's endpoint; the one eof is the hang-up's, and
    // its answer is empty.
    assert!(
        c[0].replies.iter().any(|r| r.contains("\"result\"")),
        "{c:?}"
    );
    assert_eq!(c[0].eofs, 1, "{c:?}");
    assert!(
        c[0].replies
            .last()
            .is_some_and(|r| r.contains("\"text\" : \"\"")),
        "{c:?}"
    );
    assert!(
        c[0].audio_bytes > 16_000,
        "the call's audio, not only the utterance: {c:?}"
    );
}

/// A real self-hosted STT behind the OpenAI-compatible backend: faster-whisper-server with
/// the tiny.en weights (its quirk: the model field is `model_name`, only `json` answers)
/// hears the caller's real (flite) speech, and the bot gets the words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_heard_by_a_real_faster_whisper_server() {
    let server = SpeechServer::faster_whisper().await;
    let stt = format!(
        "provider = \"openai\"\nbase_url = \"{}\"\nmodel = \"tiny.en\"\nmodel_field = \"model_name\"\nlanguage = \"en\"",
        server.base_url
    );
    let h = Harness::start_with(|s| s.stt = SttSettings::from_toml("stt", &stt).unwrap()).await;
    let user = "+15550003434";
    let caller = h.call_and_hear_greeting(user).await;
    caller.say(speech(SAID).await).await;
    caller.finish_speaking().await;
    let got = h
        .wait_received(1, |r| r.kind == "text" && r.user_id == user)
        .await;
    let heard = got[0].val.to_lowercase();
    assert!(
        heard.contains("check my account balance"),
        "{:?}",
        got[0].val
    );
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// OpenAI-compatible transcription: the VAD's utterance goes out as one 16 kHz WAV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_openai_compatible_transcription() {
    let sim = OpenAiSim::start(OpenAiSimOptions {
        transcripts: vec![SAID.into()],
        ..OpenAiSimOptions::default()
    })
    .await
    .unwrap();
    let toml = backend_section("openai", "sk-test-key", &sim.base_url());
    call_said(&toml).await;
    let r = sim.transcriptions();
    assert_eq!(r.len(), 1, "{r:?}");
    let (rate, ms) = r[0].wav.unwrap();
    assert_eq!(rate, 16_000);
    assert!(ms > 800, "the whole utterance was sent: {ms} ms");
}

/// A call whose bot messages are all spoken by the TTS backend `tts_toml`, with the fake
/// STT: the caller hears the answer to its mark, and the greeting went to the backend.
async fn call_spoken_by(tts_toml: &str, greeted: impl Fn() -> Vec<String>) {
    let h = Harness::start_with(|s| {
        let stt = format!("provider = \"fake\"\ntranscripts = [\"{SAID}\"]");
        s.stt = SttSettings::from_toml("stt", &stt).unwrap();
        s.tts = TtsSettings::from_toml("tts", tts_toml).unwrap();
    })
    .await;
    let user = "+15550003232";
    let caller = h.call_and_hear_greeting(user).await;
    caller.say(speech("Hello, can you hear me?").await).await;
    caller.finish_speaking().await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() >= 2)
        .await
        .expect("the answer played to its mark");
    assert!(
        rms(&caller.log().heard) > 300.0,
        "the fake's tone was heard"
    );
    let inputs = greeted();
    assert!(
        inputs.iter().any(|i| i.contains("Welcome")),
        "the greeting was synthesized: {inputs:?}"
    );
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// OpenAI-compatible speech: 24 kHz pcm streamed in pieces, resampled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_spoken_through_openai_compatible_speech() {
    let sim = OpenAiSim::start(OpenAiSimOptions::default()).await.unwrap();
    let tts = backend_section("openai", "sk-test-key", &sim.base_url());
    call_spoken_by(&tts, || {
        sim.speeches()
            .iter()
            .map(|r| r["input"].as_str().unwrap_or("").to_string())
            .collect()
    })
    .await;
}

/// Deepgram Aura: μ-law at 8 kHz, the telephone's own format, nothing resampled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_spoken_through_deepgram_aura() {
    let sim = AuraSim::start(AuraSimOptions::default()).await.unwrap();
    let tts =
        backend_section("deepgram", "dg-test-key", &sim.base_url()) + "\nencoding = \"mulaw\"";
    call_spoken_by(&tts, || {
        sim.requests().into_iter().map(|r| r.text).collect()
    })
    .await;
    assert!(sim
        .requests()
        .iter()
        .all(|r| r.query["encoding"] == "mulaw"));
}

/// `[audio] barge_in_min_words = 3` with Deepgram's partials: an "uh-huh" over the bot's
/// answer does not interrupt it (the VAD alone would), a sentence does, at its first
/// interim result with three words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_waits_for_the_callers_words() {
    let sim = DeepgramSim::start(DeepgramSimOptions {
        transcripts: vec!["Actually I want to speak to an agent please.".into()],
        ..DeepgramSimOptions::default()
    })
    .await
    .unwrap();
    let h = Harness::start_with(|s| {
        let stt = backend_section("deepgram", "dg-test-key", &sim.base_url());
        s.stt = SttSettings::from_toml("stt", &stt).unwrap();
        s.audio.barge_in_min_words = 3;
    })
    .await;
    let user = "+15550003838";
    let caller = h.call_and_hear_greeting(user).await;
    let long = "Your balance is two thousand dollars. Your last payment was received on Monday. \
                Your next statement is due at the end of the month. Is there anything else?";
    h.bot.push_override(
        |r: &voxhook::sim::kore::Received| r.kind == "text" && r.val == "0",
        voxhook::sim::kore::Reply::say(&[long]),
    );
    caller.press("0#").await;
    caller
        .wait_for(WAIT, |l| l.queued_samples > 0 && l.marks_played.len() == 1)
        .await
        .expect("the answer starts playing");
    caller.say(speech("Uh huh.").await).await;
    caller.finish_speaking().await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(caller.log().clears, 0, "an uh-huh interrupted the bot");
    caller
        .say(speech("Actually, I want to speak to an agent, please.").await)
        .await;
    caller
        .wait_for(WAIT, |l| l.clears >= 1)
        .await
        .expect("the caller's words interrupt the bot");
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// ElevenLabs `stream-input`: μ-law 8 kHz over one socket per message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_spoken_through_elevenlabs() {
    let sim = ElevenLabsSim::start(ElevenLabsSimOptions::default())
        .await
        .unwrap();
    let tts = backend_section("elevenlabs", "xi-test-key", &sim.base_url());
    call_spoken_by(&tts, || {
        sim.connections()
            .into_iter()
            .flat_map(|c| c.texts)
            .collect()
    })
    .await;
    assert!(sim
        .connections()
        .iter()
        .all(|c| c.query["output_format"] == "ulaw_8000"));
}

/// A TTS that refuses every message (a wrong ElevenLabs key) hands each one to the next
/// backend in `[tts] fallback`: the caller hears the fake's tone, never silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_tts_hands_the_message_to_its_fallback() {
    let sim = ElevenLabsSim::start(ElevenLabsSimOptions::default())
        .await
        .unwrap();
    let h = Harness::start_with(|s| {
        let tts = backend_section("elevenlabs", "xi-revoked", &sim.base_url());
        s.tts = TtsSettings::from_toml("tts", &tts).unwrap();
        s.tts_fallback = vec![TtsSettings::from_toml("tts", "provider = \"fake\"").unwrap()];
    })
    .await;
    let user = "+15550003434";
    let caller = h.call_and_hear_greeting(user).await;
    assert!(
        rms(&caller.log().heard) > 300.0,
        "the fallback's tone was heard"
    );
    assert!(!sim.connections().is_empty(), "ElevenLabs was tried first");
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// With no TTS able to speak and no fallback backend, `[call] fallback_audio` is played in
/// place of the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_tts_failing_the_fallback_audio_is_played() {
    let h = Harness::start_with(|s| {
        s.tts =
            TtsSettings::from_toml("tts", "provider = \"fake\"\nfail_on = \"Welcome\"").unwrap();
        s.call.fallback_audio = Some(
            crate::support::root()
                .join("assets/fallback.wav")
                .display()
                .to_string(),
        );
    })
    .await;
    let user = "+15550003535";
    let caller = h.call_and_hear_greeting(user).await;
    let heard = transcribe(&caller.log().heard).await;
    assert!(heard.contains("sorry"), "{heard:?}");
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// An STT that cannot open (Deepgram unreachable) hands the call to `[stt] fallback`: the
/// bot still gets the caller's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_stt_hands_the_call_to_its_fallback() {
    let h = Harness::start_with(|s| {
        let dead = "provider = \"deepgram\"\napi_key = \"k\"\nbase_url = \"ws://127.0.0.1:9\"";
        s.stt = SttSettings::from_toml("stt", dead).unwrap();
        let fake = format!("provider = \"fake\"\ntranscripts = [\"{SAID}\"]");
        s.stt_fallback = Some(SttSettings::from_toml("stt", &fake).unwrap());
    })
    .await;
    let user = "+15550003636";
    let caller = h.call_and_hear_greeting(user).await;
    caller.say(speech("Hello, can you hear me?").await).await;
    caller.finish_speaking().await;
    let turns = h.wait_received(1, |r| r.kind == "text").await;
    assert_eq!(turns[0].val, SAID, "the fallback STT heard the caller");
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// With no fallback, losing the STT is said to the caller once (`[call] stt_outage_text`)
/// and the call goes on: keys still reach the bot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_stt_without_a_fallback_is_said_and_keys_still_work() {
    let h = Harness::start_with(|s| {
        let dead = "provider = \"deepgram\"\napi_key = \"k\"\nbase_url = \"ws://127.0.0.1:9\"";
        s.stt = SttSettings::from_toml("stt", dead).unwrap();
    })
    .await;
    let user = "+15550003737";
    let caller = h.call_and_hear_greeting(user).await;
    caller
        .wait_for(WAIT, |l| l.marks_played.len() >= 2)
        .await
        .expect("the outage message played after the greeting");
    let heard = transcribe(&caller.log().heard).await;
    assert!(
        heard.contains("keypad") || heard.contains("hear you"),
        "{heard:?}"
    );
    caller.press("12#").await;
    let turns = h.wait_received(1, |r| r.kind == "text").await;
    assert_eq!(turns[0].val, "12", "keys still reach the bot");
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}

/// Piper, the self-hosted neural voice, for real: the piper-tts HTTP server with the joe
/// voice (22,050 Hz WAV labelled text/html) speaks the bot, and whisper hears the words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_spoken_by_a_real_piper_server() {
    let piper = SpeechServer::piper().await;
    let h = Harness::start_with(|s| {
        let tts = format!("provider = \"piper\"\nbase_url = \"{}\"", piper.base_url);
        s.tts = TtsSettings::from_toml("tts", &tts).unwrap();
    })
    .await;
    let user = "+15550003333";
    let caller = h.call_and_hear_greeting(user).await;
    let heard = transcribe(&caller.log().heard).await;
    // "Welcome to Voxhook Bank. How can I help you today?"
    assert!(
        heard.contains("welcome") && heard.contains("help you today"),
        "{heard:?}"
    );
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}
