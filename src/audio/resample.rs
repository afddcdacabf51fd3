//! Band-limited streaming resampling (rubato's FFT resampler) between telephony, internal and
//! TTS rates. Naive linear interpolation aliases audibly and hurts recognition, so every rate
//! change goes through here. State is kept per stream; input of any length is accepted.

use rubato::{FftFixedIn, Resampler as _};

/// Errors building a resampler.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// rubato refused the rates.
    #[error("cannot resample {from} Hz -> {to} Hz: {reason}")]
    Unsupported {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
        /// rubato's message.
        reason: String,
    },
}

/// A streaming mono resampler; a pass-through when both rates are equal.
pub struct Resampler {
    inner: Option<FftFixedIn<f32>>,
    chunk: usize,
    pending: Vec<f32>,
    out_buf: Vec<Vec<f32>>,
    /// Output samples still to drop to compensate the filter delay.
    skip: usize,
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz working in 10 ms input chunks.
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        if from == to {
            return Ok(Self {
                inner: None,
                chunk: 0,
                pending: Vec::new(),
                out_buf: Vec::new(),
                skip: 0,
            });
        }
        let chunk = (from / 100) as usize;
        let inner =
            FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 1, 1).map_err(|e| {
                ResampleError::Unsupported {
                    from,
                    to,
                    reason: e.to_string(),
                }
            })?;
        let skip = rubato::Resampler::output_delay(&inner);
        let out_buf = vec![vec![0.0; rubato::Resampler::output_frames_max(&inner)]];
        Ok(Self {
            inner: Some(inner),
            chunk,
            pending: Vec::with_capacity(chunk),
            out_buf,
            skip,
        })
    }

    /// Resamples `input`, appending whatever output is ready to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        for &s in input {
            self.pending.push(f32::from(s) / 32_768.0);
            if self.pending.len() == self.chunk {
                if let Ok((_, n)) =
                    inner.process_into_buffer(&[&self.pending], &mut self.out_buf, None)
                {
                    emit(&self.out_buf[0][..n], &mut self.skip, out);
                }
                self.pending.clear();
            }
        }
    }

    /// Forgets a stream cut short (no flush), so the next one starts clean.
    pub fn reset(&mut self) {
        self.pending.clear();
        if let Some(inner) = self.inner.as_mut() {
            inner.reset();
            self.skip = rubato::Resampler::output_delay(inner);
        }
    }

    /// Pushes out the samples held in the filter (end of a stream).
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        // Two partial chunks drain both the pending input and the filter delay.
        for _ in 0..2 {
            let partial: Option<&[&[f32]]> = Some(&[&self.pending]);
            if let Ok((_, n)) = inner.process_partial_into_buffer(partial, &mut self.out_buf, None)
            {
                emit(&self.out_buf[0][..n], &mut self.skip, out);
            }
            self.pending.clear();
        }
        inner.reset();
        self.skip = rubato::Resampler::output_delay(inner);
    }
}

fn emit(samples: &[f32], skip: &mut usize, out: &mut Vec<i16>) {
    let drop = (*skip).min(samples.len());
    *skip -= drop;
    out.extend(
        samples[drop..]
            .iter()
            .map(|&v| (v * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                ((i as f32 * hz * std::f32::consts::TAU / rate as f32).sin() * 10_000.0) as i16
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn lengths_follow_the_ratio_after_flush() {
        for (from, to) in [(8_000, 16_000), (16_000, 8_000), (22_050, 8_000)] {
            let mut r = Resampler::new(from, to).unwrap();
            let input = sine(from, 440.0, from as usize); // one second, odd chunking
            let mut out = Vec::new();
            for part in input.chunks(137) {
                r.process(part, &mut out);
            }
            r.flush(&mut out);
            let want = to as i64;
            assert!(
                (out.len() as i64 - want).abs() <= (to / 50) as i64,
                "{from}->{to}: {}",
                out.len()
            );
        }
    }

    #[test]
    fn keeps_in_band_tones_and_removes_out_of_band_ones() {
        let mut down = Resampler::new(16_000, 8_000).unwrap();
        let mut out = Vec::new();
        down.process(&sine(16_000, 1_000.0, 16_000), &mut out);
        assert!(rms(&out[2_000..6_000]) > 6_000.0, "1 kHz tone must pass");
        let mut down = Resampler::new(16_000, 8_000).unwrap();
        let mut out = Vec::new();
        // 6 kHz is above the 4 kHz Nyquist of 8 kHz: linear decimation would alias it to 2 kHz.
        down.process(&sine(16_000, 6_000.0, 16_000), &mut out);
        assert!(
            rms(&out[2_000..6_000]) < 300.0,
            "6 kHz must be filtered, rms {}",
            rms(&out)
        );
    }

    #[test]
    fn same_rate_is_pass_through() {
        let mut r = Resampler::new(8_000, 8_000).unwrap();
        let mut out = Vec::new();
        r.process(&[1, 2, 3], &mut out);
        assert_eq!(out, vec![1, 2, 3]);
    }
}
