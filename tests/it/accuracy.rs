//! Recognition accuracy on real speech through the telephone path, as regression guards
//! with fixed thresholds (the figures behind them: `cargo bench --bench wer`, README
//! "Speech recognition accuracy"), and a Spanish call on the multilingual model.

use voxhook::config::{LanguageSettings, WhisperSettings};
use voxhook::sim::caller::{CallerOptions, SimCaller};
use voxhook::sim::speech_set::{self, normalise, Utterance};
use voxhook::stt::whisper::WhisperStt;
use voxhook::stt::SttSettings;

use crate::support::{root, Harness, WAIT};

fn english() -> Vec<Utterance> {
    speech_set::pocketsphinx_english(std::path::Path::new(speech_set::POCKETSPHINX_DATA))
        .expect("pocketsphinx-testdata (./scripts/setup.sh installs it)")
}

/// Word error rate (%) of `model` on `set` decoded in `language`.
async fn wer(model: &str, language: &str, set: &[Utterance]) -> (f64, Vec<String>) {
    let stt = WhisperStt::load(&WhisperSettings {
        model_path: root().join("models").join(model).display().to_string(),
        language: language.into(),
        threads: 2,
        max_parallel_decodes: 1,
    })
    .expect("model (./scripts/setup.sh installs it)");
    let (mut errors, mut words, mut heard) = (0, 0, Vec::new());
    for u in set {
        let t = stt.transcribe(u.pcm_16k.clone()).await.expect("decode");
        let (e, n) = speech_set::word_errors(&u.text, &t.text);
        errors += e;
        words += n;
        heard.push(t.text);
    }
    (100.0 * errors as f64 / words as f64, heard)
}

/// Measured 10.9 % (10/92 words, unnormalised: "10" for "ten" counts); guard at 15 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_base_hears_real_english_through_the_telephone_path() {
    let (wer, heard) = wer("ggml-base.bin", "en", &english()).await;
    assert!(wer <= 15.0, "WER {wer:.1} %: {heard:#?}");
}

/// Measured 44.6 % (41/92): tiny.en loops on "five five" ("5 5 5 … 5", 29 insertions)
/// and misses "ill disposed"; guard at 50 % so a worse front end (resampler, codec) shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_tiny_en_hears_real_english_through_the_telephone_path() {
    let (wer, heard) = wer("ggml-tiny.en.bin", "en", &english()).await;
    assert!(wer <= 50.0, "WER {wer:.1} %: {heard:#?}");
}

/// `[languages.es]` names the multilingual base model and `stt_language = "es"`: a call
/// started in Spanish (stream parameter) is recognised in Spanish, and the bot gets the
/// Spanish words with `interactiveLanguage = "es"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spanish_call_is_heard_by_the_multilingual_model() {
    let base = root().join("models/ggml-base.bin").display().to_string();
    let h = Harness::start_with(|s| {
        let stt = format!("provider = \"whisper\"\nmodel_path = \"{base}\"\nlanguage = \"es\"");
        s.languages = vec![LanguageSettings {
            code: "es".into(),
            stt_language: "es".into(),
            stt: Some(SttSettings::from_toml("languages.es.stt", &stt).unwrap()),
            tts: None,
            keywords: vec![],
            dtmf: None,
        }];
    })
    .await;
    let user = "+15550003535";
    let mut options = CallerOptions::new(&h.ws_url(), user, "+15550009999");
    options.parameters.insert("language".into(), "es".into());
    let caller = SimCaller::connect(options).await.unwrap();
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeting");
    let said = "Necesito hablar con un agente, por favor.";
    caller
        .say(
            speech_set::espeak_line("es", said)
                .await
                .expect("espeak-ng"),
        )
        .await;
    caller.finish_speaking().await;
    let got = h
        .wait_received(1, |r| r.user_id == user && r.kind == "text")
        .await;
    assert_eq!(got[0].interactive_language.as_deref(), Some("es"));
    assert!(
        normalise(&got[0].val).contains("hablar con un agente"),
        "{:?}",
        got[0].val
    );
    caller.hang_up().await;
    h.assert_closed_once(user).await;
    h.finish().await;
}
