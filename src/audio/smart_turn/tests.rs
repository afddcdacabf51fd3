//! smart-turn on the real model and ONNX Runtime library (`scripts/install-onnx.sh`),
//! checked against pipecat's own Python front end and model run on the same recordings.

use super::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn settings() -> SmartTurnSettings {
    let raw = SmartTurnConfig {
        enabled: true,
        model_path: root()
            .join("models/smart-turn-v3.2-cpu.onnx")
            .display()
            .to_string(),
        library_path: root()
            .join("models/libonnxruntime.so.1.32.0")
            .display()
            .to_string(),
        ..SmartTurnConfig::default()
    };
    let mut errs = Errors::default();
    let s = raw
        .validate("audio.smart_turn", &mut errs)
        .expect("enabled");
    assert!(errs.0.is_empty(), "{:?}", errs.0);
    s
}

fn model() -> SmartTurnModel {
    let s = settings();
    SmartTurnModel::load(&s.model_path, &s.library_path)
        .expect("smart-turn model and ONNX Runtime (run scripts/install-onnx.sh)")
}

/// A 16 kHz recording of `pocketsphinx-testdata` (`scripts/setup.sh` installs it).
fn recording(path: &str) -> Vec<i16> {
    let path = Path::new("/usr/share/pocketsphinx/test/data").join(path);
    let mut r = hound::WavReader::open(&path).expect("pocketsphinx-testdata");
    assert_eq!(r.spec().sample_rate, 16_000);
    r.samples::<i16>().map(Result::unwrap).collect()
}

const MAN: &str = "librivox/sense_and_sensibility_01_austen_64kb-0880.wav";
const CARDS: &str = "cards/001.wav";

/// pipecat 1.14.0's `compute_whisper_log_mel_features` and `smart-turn-v3.2-cpu.onnx` on
/// the same audio (int16 / 32768, zero-padded at the start to 8 s), numpy and the
/// onnxruntime 1.32.0 Python wheel: the sum of all 64,000 features, four of them
/// (`[band, frame]`), and the probability.
struct Reference {
    sum: f64,
    points: [((usize, usize), f32); 4],
    probability: f32,
}

const REFERENCES: [(&str, Reference); 2] = [
    (
        MAN,
        Reference {
            sum: 9866.0964,
            points: [
                ((0, 0), 1.108436),
                ((40, 700), 0.852180),
                ((79, 799), -0.195615),
                ((10, 500), 0.190903),
            ],
            probability: 0.09924,
        },
    ),
    (
        CARDS,
        Reference {
            sum: 6982.6445,
            points: [
                ((0, 0), -0.004589),
                ((40, 700), 0.416301),
                ((79, 799), -0.004589),
                ((10, 500), -0.004589),
            ],
            probability: 0.98801,
        },
    ),
];

#[test]
fn the_front_end_matches_pipecats() {
    let mut mel = features::LogMel::new();
    for (path, want) in REFERENCES {
        let f = mel.compute(&recording(path));
        assert_eq!(f.len(), features::BANDS * features::FRAMES);
        let sum: f64 = f.iter().map(|&v| f64::from(v)).sum();
        assert!(
            (sum - want.sum).abs() < 0.05,
            "{path}: sum {sum}, pipecat's {}",
            want.sum
        );
        for ((band, frame), v) in want.points {
            let got = f[band * features::FRAMES + frame];
            assert!(
                (got - v).abs() < 1e-4,
                "{path} [{band}, {frame}]: {got}, pipecat's {v}"
            );
        }
    }
}

#[test]
fn the_model_agrees_with_pipecat_and_costs_little_cpu() {
    let mut m = model();
    for (path, want) in REFERENCES {
        let v = m.predict(&recording(path)).unwrap();
        assert!(
            (v.probability - want.probability).abs() < 0.005,
            "{path}: {}, pipecat's {}",
            v.probability,
            want.probability
        );
        // Tens of ms on this machine; a second would mean something is badly wrong.
        assert!(v.cpu < Duration::from_secs(2), "{:?}", v.cpu);
    }
    // More than 8 s: only the last 8 s count.
    let long = [vec![1_000i16; features::SAMPLES], recording(CARDS)].concat();
    let tail = &long[long.len() - features::SAMPLES..];
    assert_eq!(
        m.predict(&long).unwrap().probability,
        m.predict(tail).unwrap().probability
    );
}

#[tokio::test]
async fn the_pool_answers_and_is_busy_when_full() {
    let pool = SmartTurnPool::start(
        vec![model()],
        SmartTurnSettings {
            queue_size: 1,
            ..settings()
        },
    )
    .unwrap();
    let audio = recording(CARDS);
    let v = pool.ask(&audio).expect("room").await.unwrap();
    assert!((v.probability - REFERENCES[1].1.probability).abs() < 0.005);
    assert_eq!(pool.decisions(), 1);
    // One on the thread, one queued, the rest refused at once.
    let mut accepted = Vec::new();
    let mut busy = 0;
    for _ in 0..6 {
        match pool.ask(&audio) {
            Ok(p) => accepted.push(p),
            Err(Busy) => busy += 1,
        }
    }
    assert!(busy >= 3, "{busy} busy, {} accepted", accepted.len());
    // Withdrawn requests are skipped: only the one already running (if any) is decided.
    drop(accepted);
    let v = loop {
        match pool.ask(&audio) {
            Ok(p) => break p.await.unwrap(),
            Err(Busy) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    };
    assert!(v.probability > 0.5);
    assert!(pool.decisions() <= 3, "{} decisions", pool.decisions());
}

#[test]
fn missing_and_wrong_files_are_named() {
    let good = settings();
    let nowhere = root().join("models/no-such-turn.onnx");
    let Err(e) = SmartTurnModel::load(&nowhere, &good.library_path) else {
        panic!("loaded a missing model")
    };
    let text = e.to_string();
    assert!(text.starts_with("audio.smart_turn.model_path: "), "{text}");
    assert!(text.contains("scripts/install-onnx.sh"), "{text}");
    let broken = SmartTurnSettings {
        model_path: nowhere,
        ..good.clone()
    };
    let missing = broken.missing_files();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].key, "audio.smart_turn.model_path");
    // Silero's model is an ONNX file, but not this one.
    let Err(e) = SmartTurnModel::load(&root().join("models/silero_vad.onnx"), &good.library_path)
    else {
        panic!("loaded Silero as smart-turn")
    };
    assert!(
        matches!(&e, SmartTurnError::Load(LoadError::Model { reason, .. }) if reason.contains("not a smart-turn")),
        "{e}"
    );
}

#[test]
fn config_is_checked_only_when_enabled_and_names_its_keys() {
    let mut errs = Errors::default();
    assert!(SmartTurnConfig::default()
        .validate("audio.smart_turn", &mut errs)
        .is_none());
    assert!(errs.0.is_empty());
    let bad = SmartTurnConfig {
        enabled: true,
        pause_ms: 5,
        complete_ms: 3_000,
        incomplete_ms: 2_000,
        threshold: 1.0,
        workers: 0,
        queue_size: 0,
        library_path: "".into(),
        ..SmartTurnConfig::default()
    };
    bad.validate("audio.smart_turn", &mut errs);
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "audio.smart_turn.pause_ms",
            "audio.smart_turn.complete_ms",
            "audio.smart_turn.threshold",
            "audio.smart_turn.workers",
            "audio.smart_turn.queue_size",
            "audio.smart_turn.library_path",
        ]
    );
}
