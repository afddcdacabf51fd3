//! Accuracy and speed of each embedded whisper model on speech through the telephone path:
//! word error rate (WER) on real human English (Debian `pocketsphinx-testdata`: 5 LibriVox
//! sentences, 5 spoken card lists) and, for multilingual models, on Spanish (espeak-ng),
//! with the real-time factor (decode time / audio time) of each utterance. "guarded" is the
//! text after `stt::guard` (repeat loops trimmed), which is what the bot receives. One decode at a
//! time, `--threads` threads (default 2), so the RTF is one caller's latency on this machine.
//!
//! `cargo bench --bench wer` (options: `-- --models tiny.en,base --threads 2`). Models come
//! from `models/ggml-<name>.bin` (`python3 scripts/install-model.py --model <name>`); a
//! missing one is skipped with a note.

use std::path::{Path, PathBuf};

use voxhook::config::WhisperSettings;
use voxhook::sim::speech_set::{self, Utterance};
use voxhook::stt::guard::{self, Verdict};
use voxhook::stt::whisper::WhisperStt;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.into())
}

/// Multilingual whisper vocabularies have 51865 tokens; English-only ones 51864.
fn multilingual(model: &Path) -> bool {
    std::fs::read(model)
        .ok()
        .and_then(|b| {
            b.get(4..8)
                .map(|v| i32::from_le_bytes([v[0], v[1], v[2], v[3]]))
        })
        .is_some_and(|n_vocab| n_vocab >= 51_865)
}

struct Score {
    errors: usize,
    /// After `stt::guard` (what the bot receives).
    guarded: usize,
    words: usize,
    rtf: Vec<f64>,
    worst: Vec<String>,
}

async fn score(model: &Path, language: &str, threads: usize, set: &[Utterance]) -> Score {
    let stt = WhisperStt::load(&WhisperSettings {
        model_path: model.display().to_string(),
        language: language.into(),
        threads,
        max_parallel_decodes: 1,
    })
    .expect("whisper model");
    // Warm-up: the first decode allocates the state's buffers.
    stt.transcribe(set[0].pcm_16k.clone())
        .await
        .expect("decode");
    let mut s = Score {
        errors: 0,
        guarded: 0,
        words: 0,
        rtf: Vec::new(),
        worst: Vec::new(),
    };
    for u in set {
        let t = stt.transcribe(u.pcm_16k.clone()).await.expect("decode");
        let (e, n) = speech_set::word_errors(&u.text, &t.text);
        s.errors += e;
        s.words += n;
        let sent = match guard::check(&t.text, t.audio_ms) {
            Verdict::Keep => t.text.clone(),
            Verdict::Trimmed(text) => text,
            Verdict::Dropped => String::new(),
        };
        s.guarded += speech_set::word_errors(&u.text, &sent).0;
        s.rtf.push(t.decode_ms as f64 / 1000.0 / u.seconds());
        if e > 0 {
            s.worst
                .push(format!("  {:<48} heard {:?}", u.id, t.text.trim()));
        }
    }
    s.rtf.sort_by(f64::total_cmp);
    s
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let models = arg("--models", "tiny.en,base");
    let threads: usize = arg("--threads", "2").parse().expect("--threads N");
    let english = speech_set::pocketsphinx_english(Path::new(speech_set::POCKETSPHINX_DATA))
        .expect("English set");
    let spanish = speech_set::espeak("es", speech_set::SPANISH)
        .await
        .expect("Spanish set");
    let seconds = |s: &[Utterance]| s.iter().map(Utterance::seconds).sum::<f64>();
    println!(
        "\nwhisper accuracy through the telephone path (8 kHz μ-law), {threads} thread(s), {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "sets: English pocketsphinx-testdata {} utterances {:.1} s; Spanish espeak-ng {} utterances {:.1} s",
        english.len(),
        seconds(&english),
        spanish.len(),
        seconds(&spanish)
    );
    println!(
        "{:<8} {:<9} {:>7} {:>7} {:>8} {:>8} {:>12} {:>8} {:>10}",
        "model", "set", "words", "errors", "WER", "guarded", "WER guarded", "RTF p50", "RTF max"
    );
    let mut notes = Vec::new();
    for name in models.split(',').map(str::trim) {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("models/ggml-{name}.bin"));
        if !path.exists() {
            println!(
                "{name:<8} skipped: {} missing (scripts/install-model.py --model {name})",
                path.display()
            );
            continue;
        }
        let mut sets = vec![("en", "English", &english)];
        if multilingual(&path) {
            sets.push(("es", "Spanish", &spanish));
        }
        for (language, label, set) in sets {
            let s = score(&path, language, threads, set).await;
            println!(
                "{name:<8} {label:<9} {:>7} {:>7} {:>7.1}% {:>8} {:>11.1}% {:>8.3} {:>10.3}",
                s.words,
                s.errors,
                100.0 * s.errors as f64 / s.words as f64,
                s.guarded,
                100.0 * s.guarded as f64 / s.words as f64,
                pct(&s.rtf, 0.5),
                pct(&s.rtf, 1.0)
            );
            notes.push(format!("{name} {label}:"));
            notes.extend(s.worst);
        }
    }
    println!("\nutterances with errors:");
    for n in notes {
        println!("{n}");
    }
}
