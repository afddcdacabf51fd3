//! Transcribes WAV files through the telephony path (8 kHz μ-law → 16 kHz) with the embedded
//! whisper backend and prints text, audio length, decode time and real-time factor.
//! `cargo run --release --example transcribe -- file.wav…`

use voxhook::audio::codec::Codec;
use voxhook::audio::resample::Resampler;
use voxhook::config::WhisperSettings;
use voxhook::sim::demo::load_caller_audio;
use voxhook::stt::whisper::WhisperStt;

#[tokio::main]
async fn main() {
    let stt = WhisperStt::load(&WhisperSettings {
        model_path: "models/ggml-tiny.en.bin".into(),
        language: "en".into(),
        threads: 2,
        max_parallel_decodes: 1,
    })
    .expect("model loads");
    for path in std::env::args().skip(1) {
        let pcm8 = load_caller_audio(path.as_ref()).expect("wav");
        let mut law = Vec::new();
        Codec::Mulaw.encode_into(&pcm8, &mut law);
        let mut line = Vec::new();
        Codec::Mulaw.decode_into(&law, &mut line);
        let mut r = Resampler::new(8_000, 16_000).unwrap();
        let mut pcm16 = Vec::new();
        r.process(&line, &mut pcm16);
        r.flush(&mut pcm16);
        let t = stt.transcribe(pcm16).await.expect("decode");
        println!(
            "{path}: {:?} audio {} ms, decode {} ms, RTF {:.3}",
            t.text,
            t.audio_ms,
            t.decode_ms,
            t.decode_ms as f64 / t.audio_ms as f64
        );
    }
}
