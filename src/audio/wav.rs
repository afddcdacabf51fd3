//! WAV files in and out (hound): mono 16-bit PCM at the file's own rate.

use std::path::Path;

use super::AudioFrame;

/// Errors reading or writing WAV files.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// hound failed.
    #[error("WAV {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: hound::Error,
    },
    /// Not 16-bit integer PCM.
    #[error("WAV {0}: only 16-bit PCM is supported")]
    Format(String),
    /// A sample rate no audio path takes (0 Hz was found by fuzzing: the resamplers and
    /// hound's writer divide by it).
    #[error("WAV {path}: a sample rate of {rate} Hz (must be {min}..={max})", min = RATES.start(), max = RATES.end())]
    Rate {
        /// File.
        path: String,
        /// The header's rate.
        rate: u32,
    },
}

/// Sample rates a WAV may have: telephone rates up to studio ones.
const RATES: std::ops::RangeInclusive<u32> = 4_000..=192_000;

/// Reads a WAV file, mixing multi-channel audio down to mono.
pub fn read(path: &Path) -> Result<AudioFrame, WavError> {
    let name = path.display().to_string();
    let reader = hound::WavReader::open(path).map_err(|source| WavError::Io {
        path: name.clone(),
        source,
    })?;
    from_reader(reader, &name)
}

/// Decodes a WAV file held in memory (`name` is for errors).
pub fn decode(bytes: &[u8], name: &str) -> Result<AudioFrame, WavError> {
    let reader =
        hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(|source| WavError::Io {
            path: name.to_string(),
            source,
        })?;
    from_reader(reader, name)
}

fn from_reader<R: std::io::Read>(
    reader: hound::WavReader<R>,
    name: &str,
) -> Result<AudioFrame, WavError> {
    let spec = reader.spec();
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        return Err(WavError::Format(name.to_string()));
    }
    if !RATES.contains(&spec.sample_rate) {
        return Err(WavError::Rate {
            path: name.to_string(),
            rate: spec.sample_rate,
        });
    }
    let channels = usize::from(spec.channels.max(1));
    let raw: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|source| WavError::Io {
            path: name.to_string(),
            source,
        })?;
    let samples = raw
        .chunks(channels)
        .map(|c| (c.iter().map(|&s| i32::from(s)).sum::<i32>() / c.len() as i32) as i16)
        .collect();
    Ok(AudioFrame {
        samples,
        sample_rate: spec.sample_rate,
    })
}

/// Writes mono 16-bit PCM.
pub fn write(path: &Path, frame: &AudioFrame) -> Result<(), WavError> {
    let err = |source| WavError::Io {
        path: path.display().to_string(),
        source,
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: frame.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    for &s in &frame.samples {
        w.write_sample(s).map_err(err)?;
    }
    w.finalize().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mono 16-bit WAV of `samples` whose header then says `rate` Hz.
    fn wav_at(rate: u32, samples: &[i16]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut bytes = std::io::Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut bytes, spec).unwrap();
            for &s in samples {
                w.write_sample(s).unwrap();
            }
            w.finalize().unwrap();
        }
        let mut bytes = bytes.into_inner();
        // The canonical header's sample rate and byte rate (`fmt ` chunk, bytes 24..32),
        // kept consistent, as hound checks.
        bytes[24..28].copy_from_slice(&rate.to_le_bytes());
        bytes[28..32].copy_from_slice(&rate.wrapping_mul(2).to_le_bytes());
        bytes
    }

    /// Regression (fuzz target `wav`, `fuzz/seeds/wav/zero-rate.wav`): a header saying 0 Hz
    /// was accepted, and writing that audio again divided by zero.
    #[test]
    fn a_rate_no_audio_path_takes_is_refused_with_its_value() {
        for rate in [0, 1, 3_999, 192_001, 1_000_000] {
            let e = decode(&wav_at(rate, &[1, 2, 3]), "x.wav").unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("a sample rate of {rate} Hz")),
                "{e}"
            );
        }
        for rate in [4_000, 8_000, 48_000, 192_000] {
            let f = decode(&wav_at(rate, &[1, 2, 3]), "x.wav").unwrap();
            assert_eq!((f.sample_rate, f.samples), (rate, vec![1, 2, 3]));
        }
        let seed =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/wav/zero-rate.wav");
        assert!(matches!(read(&seed), Err(WavError::Rate { rate: 0, .. })));
    }
}
