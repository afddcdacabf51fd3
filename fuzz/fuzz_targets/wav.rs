//! WAV loading (`audio::wav::decode`: hound, 16-bit PCM only, channels mixed to mono), with
//! a round trip: what loaded, written again as mono 16-bit, loads as the same audio.
#![no_main]

use voxhook::audio::wav;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(frame) = wav::decode(data, "fuzz.wav") else {
        return;
    };
    // `wav::write` writes a file; the same spec written in memory keeps the target fast.
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: frame.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut bytes = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut bytes, spec).expect("WAV header");
        for &s in &frame.samples {
            w.write_sample(s).expect("WAV sample");
        }
        w.finalize().expect("WAV finalize");
    }
    let again = wav::decode(bytes.get_ref(), "again.wav").expect("reloading our own WAV");
    assert_eq!(again.sample_rate, frame.sample_rate);
    assert_eq!(again.samples, frame.samples);
});
