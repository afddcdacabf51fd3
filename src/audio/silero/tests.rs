//! Silero on the real model and ONNX Runtime library (`scripts/install-onnx.sh`).

use super::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn settings() -> SileroSettings {
    let raw = SileroConfig {
        enabled: true,
        model_path: root().join("models/silero_vad.onnx").display().to_string(),
        library_path: root()
            .join("models/libonnxruntime.so.1.32.0")
            .display()
            .to_string(),
        ..SileroConfig::default()
    };
    let mut errs = Errors::default();
    let s = raw.validate("audio.silero", &mut errs).expect("enabled");
    assert!(errs.0.is_empty(), "{:?}", errs.0);
    s
}

fn model() -> SileroModel {
    let s = settings();
    SileroModel::load(&s.model_path, &s.library_path)
        .expect("Silero model and ONNX Runtime (run scripts/install-onnx.sh)")
}

/// White noise at about −35 dBFS, as line hiss (seeded: the same every run).
fn noise(samples: usize) -> Vec<i16> {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    (0..samples)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (((seed % 2001) as f64 / 1000.0 - 1.0) * 600.0) as i16
        })
        .collect()
}

/// A steady two-tone chord (a dial-tone-like hum): loud and periodic, which an energy or
/// pitch-led detector takes for a voice.
fn chord(samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            let s = (2.0 * std::f32::consts::PI * 350.0 * t).sin()
                + (2.0 * std::f32::consts::PI * 440.0 * t).sin();
            (s * 6_000.0) as i16
        })
        .collect()
}

fn share(probs: &[f32], threshold: f32) -> f32 {
    probs.iter().filter(|&&p| p >= threshold).count() as f32 / probs.len().max(1) as f32
}

#[cfg(feature = "sim")]
#[test]
fn real_phone_speech_scores_above_silence_and_noise() {
    use crate::sim::speech_set;
    let set = speech_set::pocketsphinx_english(Path::new(speech_set::POCKETSPHINX_DATA))
        .expect("pocketsphinx-testdata (./scripts/setup.sh installs it)");
    let mut m = model();
    let speech: Vec<f32> = set
        .iter()
        .take(4)
        .map(|u| share(&m.score(&u.pcm_16k).unwrap(), 0.5))
        .collect();
    let silence = m.score(&vec![0; 32_000]).unwrap();
    let hiss = m.score(&noise(32_000)).unwrap();
    let hum = m.score(&chord(32_000)).unwrap();
    for (i, s) in speech.iter().enumerate() {
        assert!(*s > 0.3, "utterance {i}: {s} of its windows are speech");
    }
    let max = |p: &[f32]| p.iter().copied().fold(0.0f32, f32::max);
    assert!(max(&silence) < 0.1, "silence {}", max(&silence));
    assert!(max(&hiss) < 0.5, "line noise {}", max(&hiss));
    assert!(max(&hum) < 0.5, "hum {}", max(&hum));
}

#[test]
fn a_batch_scores_each_window_as_a_single_run_does() {
    let mut m = model();
    let streams = [
        chord(16_000),
        noise(16_000),
        chord(16_000)
            .iter()
            .zip(noise(16_000))
            .map(|(a, b)| a / 2 + b)
            .collect(),
    ];
    let alone: Vec<Vec<f32>> = streams.iter().map(|s| m.score(s).unwrap()).collect();
    let mut states = vec![SileroState::default(); streams.len()];
    let mut batched = vec![Vec::new(); streams.len()];
    for at in (0..16_000).step_by(WINDOW) {
        let windows: Vec<&[i16]> = streams
            .iter()
            .map(|s| &s[at..(at + WINDOW).min(s.len())])
            .collect();
        let mut refs: Vec<&mut SileroState> = states.iter_mut().collect();
        let probs = m.run_batch(&mut refs, &windows).unwrap();
        for (b, p) in batched.iter_mut().zip(probs) {
            b.push(p);
        }
    }
    for (a, b) in alone.iter().zip(&batched) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-4, "alone {x}, batched {y}");
        }
    }
    // The streams differ, so a mixed-up state would show.
    assert_ne!(alone[0], alone[1]);
}

#[test]
fn missing_files_are_reported_with_their_path() {
    let good = settings();
    let nowhere = root().join("models/no-such-silero.onnx");
    let Err(e) = SileroModel::load(&nowhere, &good.library_path) else {
        panic!("loaded a model that does not exist");
    };
    let text = e.to_string();
    assert!(text.starts_with("audio.silero.model_path: "), "{text}");
    assert!(text.contains("no-such-silero.onnx"), "{text}");
    let Err(e) = SileroModel::load(&good.model_path, Path::new("/nowhere/libonnxruntime.so"))
    else {
        panic!("loaded a library that does not exist");
    };
    assert!(
        e.to_string()
            .starts_with("audio.silero.library_path: /nowhere/libonnxruntime.so does not exist"),
        "{e}"
    );
    let broken = SileroSettings {
        model_path: nowhere,
        ..good.clone()
    };
    let missing = broken.missing_files();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0].key, "audio.silero.model_path");
    assert!(missing[0].message.contains("no-such-silero.onnx"));
    assert!(good.missing_files().is_empty());
    // A file that is not a Silero model is named too.
    let Err(e) = SileroModel::load(&root().join("Cargo.toml"), &good.library_path) else {
        panic!("loaded Cargo.toml as a model");
    };
    assert!(
        matches!(&e, SileroError::Load(LoadError::Model { path, .. }) if path.ends_with("Cargo.toml")),
        "{e}"
    );
}

#[tokio::test]
async fn the_pool_batches_and_answers_each() {
    let mut m = model();
    let requests: Vec<Vec<i16>> = (0..8)
        .map(|k| {
            let mut a = chord(4_000 + k * 1_000);
            a.extend(noise(2_000 + k * 500));
            a
        })
        .collect();
    let expected: Vec<Vec<f32>> = requests.iter().map(|r| m.score(r).unwrap()).collect();
    let pool = SileroPool::start(m, settings()).unwrap();
    let pending: Vec<Pending> = requests
        .iter()
        .map(|r| pool.score(r).expect("room in the queue"))
        .collect();
    for (p, want) in pending.into_iter().zip(&expected) {
        let got = p.await.unwrap();
        assert_eq!(got.len(), want.len());
        for (x, y) in got.iter().zip(want) {
            assert!((x - y).abs() < 1e-4, "pool {x}, alone {y}");
        }
    }
    let (runs, windows) = pool.runs_and_windows();
    let total: usize = expected.iter().map(Vec::len).sum();
    assert_eq!(windows, total as u64);
    // Eight requests at once share their runs: far fewer runs than windows.
    assert!(runs * 2 <= windows, "{runs} runs for {windows} windows");
}

#[tokio::test]
async fn busy_when_full_and_a_dropped_request_is_withdrawn() {
    let pool = SileroPool::start(
        model(),
        SileroSettings {
            queue_size: 1,
            ..settings()
        },
    )
    .unwrap();
    // Ten seconds each: the thread is still on its first run while the rest arrive, so the
    // queue (1) and a full batch (MAX_BATCH) fill up and the rest are refused at once.
    let long = noise(160_000);
    let mut accepted = Vec::new();
    let mut busy = 0;
    for _ in 0..MAX_BATCH + 8 {
        match pool.score(&long) {
            Ok(p) => accepted.push(p),
            Err(Busy) => busy += 1,
        }
    }
    assert!(busy > 0, "never busy with {} accepted", accepted.len());
    // Withdrawn requests stop costing runs: the pool is soon free for a new one.
    drop(accepted);
    let t0 = tokio::time::Instant::now();
    let answer = loop {
        match pool.score(&chord(1_600)) {
            Ok(p) => break p.await.unwrap(),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    };
    assert_eq!(answer.len(), 4);
    let (_, windows) = pool.runs_and_windows();
    assert!(
        windows < (MAX_BATCH as u64 + 1) * 313,
        "withdrawn requests were scored to the end ({windows} windows, {:?})",
        t0.elapsed()
    );
}

#[test]
fn the_span_keeps_speech_and_a_margin_and_nothing_without_speech() {
    let probs = [0.1, 0.2, 0.9, 0.3, 0.8, 0.1, 0.05];
    let len = probs.len() * WINDOW - 100;
    assert_eq!(
        speech_span(&probs, 0.5, 160, len),
        Some(2 * WINDOW - 160..5 * WINDOW + 160)
    );
    // The margin stops at the ends of the audio.
    assert_eq!(speech_span(&[0.9, 0.9], 0.5, 1_000, 900), Some(0..900));
    assert_eq!(speech_span(&[0.1, 0.4], 0.5, 160, 1_024), None);
    assert!(confirms(&[0.1, 0.6], 0.5));
    assert!(!confirms(&[0.1, 0.4], 0.5));
    assert!(!confirms(&[], 0.5));
}

#[test]
fn config_is_checked_only_when_enabled_and_names_its_keys() {
    let mut errs = Errors::default();
    assert!(SileroConfig::default()
        .validate("audio.silero", &mut errs)
        .is_none());
    let bad = SileroConfig {
        enabled: true,
        threshold: 0.0,
        queue_size: 0,
        trim_margin_ms: 5_000,
        confirm_barge_in: false,
        trim_utterances: false,
        model_path: " ".into(),
        ..SileroConfig::default()
    };
    bad.validate("audio.silero", &mut errs);
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "audio.silero.threshold",
            "audio.silero.queue_size",
            "audio.silero.trim_margin_ms",
            "audio.silero.enabled",
            "audio.silero.model_path",
        ]
    );
}
