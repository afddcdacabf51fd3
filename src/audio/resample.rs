//! Band-limited streaming resampling between telephony, internal and TTS rates: a polyphase
//! Kaiser-windowed sinc for small integer ratios (8 ↔ 16 ↔ 24 ↔ 48 kHz, what every call
//! runs), rubato's FFT resampler for the rest. Naive linear interpolation aliases audibly and
//! hurts recognition, so every rate change goes through here. State is kept per stream; input
//! of any length is accepted.

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
    kind: Kind,
}

enum Kind {
    Same,
    /// Small integer ratios (8 ↔ 16 ↔ 24 ↔ 48 kHz): every call holds one or two of these,
    /// and a polyphase filter keeps ~1 KiB of state where an FFT resampler keeps ~18 KiB.
    Poly(Polyphase),
    /// Other ratios (22,050 Hz TTS voices, 44.1 kHz clips).
    Fft(Box<FftStream>),
}

/// Largest up- or down-sampling factor (after reduction) the polyphase filter takes.
const MAX_POLY_FACTOR: u32 = 6;

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz.
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        let unsupported = |reason: String| ResampleError::Unsupported { from, to, reason };
        if from == 0 || to == 0 {
            return Err(unsupported("a rate is zero".into()));
        }
        if from == to {
            return Ok(Self { kind: Kind::Same });
        }
        let g = gcd(from, to);
        let (up, down) = (to / g, from / g);
        let kind = if up.max(down) <= MAX_POLY_FACTOR {
            Kind::Poly(Polyphase::new(up as usize, down as usize))
        } else {
            Kind::Fft(Box::new(FftStream::new(from, to).map_err(unsupported)?))
        };
        Ok(Self { kind })
    }

    /// Resamples `input`, appending whatever output is ready to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        match &mut self.kind {
            Kind::Same => out.extend_from_slice(input),
            Kind::Poly(p) => p.process(input, out),
            Kind::Fft(f) => f.process(input, out),
        }
    }

    /// Forgets a stream cut short (no flush), so the next one starts clean.
    pub fn reset(&mut self) {
        match &mut self.kind {
            Kind::Same => {}
            Kind::Poly(p) => p.reset(),
            Kind::Fft(f) => f.reset(),
        }
    }

    /// Pushes out the samples held in the filter (end of a stream).
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        match &mut self.kind {
            Kind::Same => {}
            Kind::Poly(p) => p.flush(out),
            Kind::Fft(f) => f.flush(out),
        }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Most input samples taken into the history at once (20 ms at 16 kHz).
const PIECE: usize = 320;
/// Taps per phase of the polyphase filter, per unit of the larger factor.
const TAPS_PER_FACTOR: usize = 48;
/// Kaiser window β: ~80 dB stop-band attenuation.
const KAISER_BETA: f64 = 8.0;
/// Cut-off (−6 dB) as a share of the lower rate's Nyquist frequency: 3.36 kHz at 8 kHz, where
/// telephone speech ends. This matches the FFT resampler's response closely enough that the
/// VAD scores noise the same: with a 3.6 kHz cut-off, white noise (±1,000–3,000) through the
/// telephone path scored as speech in 5 of 6 clips (share 0.2–0.97); the FFT path and this
/// filter score 0 on all six.
const ROLLOFF: f64 = 0.84;

/// Rational `up/down` resampling with a Kaiser-windowed sinc, in polyphase form: each
/// output sample is one dot product of `taps` input samples with one phase of the filter.
struct Polyphase {
    up: usize,
    down: usize,
    /// Taps per phase.
    taps: usize,
    /// `coeffs[phase * taps + taps - 1 - k]` weighs input `base - k`.
    coeffs: Vec<f32>,
    /// The last `taps - 1` inputs of earlier calls, then the current input.
    history: Vec<f32>,
    /// Position of the next output on the up-sampled grid, relative to `history[taps - 1]`.
    next: usize,
    /// Output samples still to drop to compensate the filter delay.
    skip: usize,
    /// Inputs taken and outputs given since the stream began (for `flush`'s length).
    taken: u64,
    given: u64,
    /// How many of the newest history samples are exactly zero: an output whose inputs
    /// all lie there is zero without its dot product (a caller on a digitally silent line).
    zero_run: usize,
}

impl Polyphase {
    fn new(up: usize, down: usize) -> Self {
        let factor = up.max(down);
        let taps = TAPS_PER_FACTOR * factor.div_ceil(up).max(1);
        let len = taps * up;
        // Cut-off on the up-sampled grid (cycles per sample).
        let cutoff = ROLLOFF * 0.5 / factor as f64;
        // The filter's centre, a whole number of output samples in: the delay is then
        // dropped exactly (taps past twice the centre stay zero).
        let centre_at = (len - 1) / 2 / down * down;
        let centre = centre_at as f64;
        let i0_beta = bessel_i0(KAISER_BETA);
        let mut proto = vec![0f64; len];
        for (n, c) in proto.iter_mut().enumerate() {
            let t = n as f64 - centre;
            let sinc = if t == 0.0 {
                2.0 * cutoff
            } else {
                (std::f64::consts::TAU * cutoff * t).sin() / (std::f64::consts::PI * t)
            };
            let r = t / centre;
            if r.abs() > 1.0 {
                continue;
            }
            let window = bessel_i0(KAISER_BETA * (1.0 - r * r).sqrt()) / i0_beta;
            // Gain `up`: zero-stuffing divides the signal by it.
            *c = sinc * window * up as f64;
        }
        // Each phase reversed, so an output is a forward dot product with the history.
        let mut coeffs = vec![0f32; len];
        for phase in 0..up {
            for k in 0..taps {
                coeffs[phase * taps + taps - 1 - k] = proto[phase + k * up] as f32;
            }
        }
        let mut p = Self {
            up,
            down,
            taps,
            coeffs,
            history: Vec::new(),
            next: 0,
            skip: 0,
            taken: 0,
            given: 0,
            zero_run: 0,
        };
        p.reset();
        p
    }

    fn reset(&mut self) {
        self.history.clear();
        self.history.resize(self.taps - 1, 0.0);
        self.next = 0;
        // The filter's delay, in output samples (see `new`).
        self.skip = (self.taps * self.up - 1) / 2 / self.down;
        self.taken = 0;
        self.given = 0;
        self.zero_run = self.history.len();
    }

    fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.taken += input.len() as u64;
        // In pieces: a TTS chunk can be a whole sentence, and the history keeps its capacity.
        for piece in input.chunks(PIECE) {
            self.history
                .extend(piece.iter().map(|&s| f32::from(s) / 32_768.0));
            self.zero_run = match piece.iter().rposition(|&s| s != 0) {
                Some(last) => piece.len() - 1 - last,
                None => self.zero_run + piece.len(),
            };
            self.run(out, u64::MAX);
        }
    }

    /// Emits every output whose inputs are all in `history` (at most up to `limit` outputs
    /// in all), then keeps only the inputs later outputs need.
    fn run(&mut self, out: &mut Vec<i16>, limit: u64) {
        // The newest base whose `taps` inputs are all here.
        let Some(newest) = self.history.len().checked_sub(self.taps) else {
            return;
        };
        loop {
            let base = self.next / self.up;
            if base > newest || self.given >= limit {
                break;
            }
            let phase = self.next % self.up;
            let h = &self.coeffs[phase * self.taps..(phase + 1) * self.taps];
            // history[base + taps - 1] is the newest input this output sees.
            let v = if base >= self.history.len() - self.zero_run {
                0.0
            } else {
                dot(h, &self.history[base..base + self.taps])
            };
            self.next += self.down;
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            self.given += 1;
            out.push((v * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16);
        }
        let used = (self.next / self.up).min(self.history.len() - (self.taps - 1));
        self.history.drain(..used);
        self.zero_run = self.zero_run.min(self.history.len());
        self.next -= used * self.up;
    }

    fn flush(&mut self, out: &mut Vec<i16>) {
        // As many outputs as the ratio gives for everything taken.
        let want = (self.taken * self.up as u64).div_ceil(self.down as u64);
        let zeros = self.taps + self.skip * self.down / self.up + 2;
        self.history.extend(std::iter::repeat_n(0.0, zeros));
        self.zero_run += zeros;
        self.run(out, want);
        self.reset();
    }
}

/// `Σ a[i]·b[i]` in eight independent lanes: a plain sequential float sum cannot be
/// vectorised (the order of additions would change), and this runs for every output sample
/// of every call (in one sum it cost the load benchmark ~40 % more CPU per call).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Zeroth-order modified Bessel function of the first kind (Kaiser window), by its series.
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, half) = (1.0, 1.0, x / 2.0);
    for k in 1..50 {
        term *= (half / k as f64).powi(2);
        sum += term;
        if term < sum * 1e-12 {
            break;
        }
    }
    sum
}

/// rubato's FFT resampler in 10 ms input chunks, for ratios the polyphase filter does not take.
struct FftStream {
    inner: FftFixedIn<f32>,
    chunk: usize,
    pending: Vec<f32>,
    out_buf: Vec<Vec<f32>>,
    /// Output samples still to drop to compensate the filter delay.
    skip: usize,
}

impl FftStream {
    fn new(from: u32, to: u32) -> Result<Self, String> {
        let chunk = (from / 100).max(1) as usize;
        let inner = FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 1, 1)
            .map_err(|e| e.to_string())?;
        let skip = rubato::Resampler::output_delay(&inner);
        let out_buf = vec![vec![0.0; rubato::Resampler::output_frames_max(&inner)]];
        Ok(Self {
            inner,
            chunk,
            pending: Vec::with_capacity(chunk),
            out_buf,
            skip,
        })
    }

    fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        for &s in input {
            self.pending.push(f32::from(s) / 32_768.0);
            if self.pending.len() == self.chunk {
                if let Ok((_, n)) =
                    self.inner
                        .process_into_buffer(&[&self.pending], &mut self.out_buf, None)
                {
                    emit(&self.out_buf[0][..n], &mut self.skip, out);
                }
                self.pending.clear();
            }
        }
    }

    fn reset(&mut self) {
        self.pending.clear();
        self.inner.reset();
        self.skip = rubato::Resampler::output_delay(&self.inner);
    }

    fn flush(&mut self, out: &mut Vec<i16>) {
        // Two partial chunks drain both the pending input and the filter delay.
        for _ in 0..2 {
            let partial: Option<&[&[f32]]> = Some(&[&self.pending]);
            if let Ok((_, n)) =
                self.inner
                    .process_partial_into_buffer(partial, &mut self.out_buf, None)
            {
                emit(&self.out_buf[0][..n], &mut self.skip, out);
            }
            self.pending.clear();
        }
        self.reset();
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

    /// Power of `x` at `hz` (Goertzel), as an amplitude.
    fn tone_level(x: &[i16], rate: u32, hz: f64) -> f64 {
        let w = std::f64::consts::TAU * hz / f64::from(rate);
        let (mut s1, mut s2) = (0.0, 0.0);
        for &v in x {
            let s = f64::from(v) + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2).sqrt() * 2.0 / x.len() as f64
    }

    #[test]
    fn the_call_rates_take_the_polyphase_filter_and_odd_ones_the_fft() {
        for (from, to) in [
            (8_000, 16_000),
            (16_000, 8_000),
            (8_000, 24_000),
            (48_000, 8_000),
        ] {
            let r = Resampler::new(from, to).unwrap();
            assert!(matches!(r.kind, Kind::Poly(_)), "{from}->{to}");
        }
        let r = Resampler::new(22_050, 8_000).unwrap();
        assert!(matches!(r.kind, Kind::Fft(_)));
        assert!(Resampler::new(0, 8_000).is_err());
    }

    #[test]
    fn upsampling_keeps_the_tone_in_time_and_removes_its_image() {
        let input = sine(8_000, 1_000.0, 8_000);
        let mut r = Resampler::new(8_000, 16_000).unwrap();
        let mut out = Vec::new();
        r.process(&input, &mut out);
        r.flush(&mut out);
        assert_eq!(out.len(), 16_000);
        // Aligned with the same tone made at 16 kHz (the filter delay is compensated).
        let want = sine(16_000, 1_000.0, 16_000);
        let err = out[1_000..15_000]
            .iter()
            .zip(&want[1_000..15_000])
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
            .fold(0.0, f64::max);
        assert!(err < 1_200.0, "max error {err}");
        // 3 kHz in, its 5 kHz image out of zero-stuffing must be gone.
        let mut r = Resampler::new(8_000, 16_000).unwrap();
        let mut out = Vec::new();
        r.process(&sine(8_000, 3_000.0, 8_000), &mut out);
        let body = &out[1_000..15_000];
        assert!(tone_level(body, 16_000, 3_000.0) > 9_000.0);
        assert!(tone_level(body, 16_000, 5_000.0) < 30.0);
    }

    #[test]
    fn output_does_not_depend_on_how_input_is_chunked() {
        for (from, to) in [(8_000, 16_000), (16_000, 8_000), (16_000, 24_000)] {
            let input = sine(from, 700.0, 4_000);
            let run = |chunk: usize| {
                let mut r = Resampler::new(from, to).unwrap();
                let mut out = Vec::new();
                for part in input.chunks(chunk) {
                    r.process(part, &mut out);
                }
                r.flush(&mut out);
                out
            };
            assert_eq!(run(160), run(1), "{from}->{to}");
            assert_eq!(run(160), run(4_000), "{from}->{to}");
        }
    }

    #[test]
    fn a_long_chunk_leaves_a_small_history() {
        // A TTS backend may hand over a whole sentence at once; the speaker keeps its
        // resampler for the call.
        let mut r = Resampler::new(16_000, 8_000).unwrap();
        let mut out = Vec::new();
        r.process(&sine(16_000, 440.0, 48_000), &mut out);
        r.flush(&mut out);
        let Kind::Poly(p) = &r.kind else {
            panic!("polyphase")
        };
        assert!(p.history.capacity() < 2_048, "{}", p.history.capacity());
    }

    #[cfg(feature = "sim")]
    #[test]
    fn white_noise_through_the_telephone_path_is_not_speech_to_the_vad() {
        use crate::sim::speech_set;
        // The VAD's second look keeps whisper from turning noise into "you"; a wider pass
        // band (3.6 kHz) made it score such noise as speech.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for clip in 0..4 {
            let noise = speech_set::white_noise(32_000, 3_000.0, &mut seed);
            let heard = speech_set::telephone_path(&noise, 16_000);
            let share = crate::audio::vad::speech_share(&heard, 0.5);
            assert!(share < 0.05, "clip {clip}: speech share {share}");
        }
    }

    #[test]
    fn digital_silence_skips_the_filter_and_matches_it() {
        // Silence, a tone, silence: the zero shortcut gives what the dot products would.
        let mut input = vec![0i16; 800];
        input.extend(sine(8_000, 700.0, 400));
        input.extend(vec![0i16; 800]);
        let mut r = Resampler::new(8_000, 16_000).unwrap();
        let mut out = Vec::new();
        for part in input.chunks(160) {
            r.process(part, &mut out);
        }
        let Kind::Poly(p) = &r.kind else {
            panic!("polyphase")
        };
        let mut slow = Vec::new();
        let mut history = vec![0f32; p.taps - 1];
        history.extend(input.iter().map(|&s| f32::from(s) / 32_768.0));
        let mut next = 0;
        let mut skip = (p.taps * p.up - 1) / 2 / p.down;
        while next / p.up + p.taps <= history.len() {
            let (base, phase) = (next / p.up, next % p.up);
            let h = &p.coeffs[phase * p.taps..(phase + 1) * p.taps];
            let v = dot(h, &history[base..base + p.taps]);
            next += p.down;
            if skip > 0 {
                skip -= 1;
                continue;
            }
            slow.push((v * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16);
        }
        assert_eq!(out, slow);
        assert!(out[..1_500].iter().all(|&s| s == 0));
        assert!(out.iter().any(|&s| s != 0));
        assert!(out[out.len() - 1_000..].iter().all(|&s| s == 0));
    }

    #[test]
    fn a_reset_stream_starts_as_a_new_one() {
        let input = sine(8_000, 500.0, 800);
        let mut fresh = Resampler::new(8_000, 16_000).unwrap();
        let mut a = Vec::new();
        fresh.process(&input, &mut a);
        let mut used = Resampler::new(8_000, 16_000).unwrap();
        used.process(&sine(8_000, 2_000.0, 333), &mut Vec::new());
        used.reset();
        let mut b = Vec::new();
        used.process(&input, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn same_rate_is_pass_through() {
        let mut r = Resampler::new(8_000, 8_000).unwrap();
        let mut out = Vec::new();
        r.process(&[1, 2, 3], &mut out);
        assert_eq!(out, vec![1, 2, 3]);
    }
}
