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
}

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
