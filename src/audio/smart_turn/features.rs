//! Whisper's log-mel front end as smart-turn v3 was trained on it (transformers'
//! `WhisperFeatureExtractor`, as pipecat's `_whisper_features.py` re-states it): the last 8 s
//! of 16 kHz audio, zero-padded at the start, normalised to zero mean and unit variance,
//! 25 ms Hann frames every 10 ms (reflect-padded, centred), 80 Slaney mel bands up to 8 kHz,
//! log10, floored 8 decades under the peak and scaled to about −1..1. Computed in f64 like
//! the reference; the output is `[80 × 800]` f32, band-major.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// The model's input rate.
pub const RATE: usize = 16_000;
/// Audio the model sees: the last 8 s of the utterance.
pub const SAMPLES: usize = 8 * RATE;
/// Mel bands.
pub const BANDS: usize = 80;
/// Frames: one per 10 ms of the 8 s (the reference drops the 801st).
pub const FRAMES: usize = SAMPLES / HOP;
const N_FFT: usize = 400;
const HOP: usize = 160;
const BINS: usize = N_FFT / 2 + 1;
const MEL_FLOOR: f64 = 1e-10;
const VARIANCE_EPS: f64 = 1e-7;

/// The front end with its FFT plan, window, filters and buffers, built once per model thread.
pub struct LogMel {
    fft: Arc<dyn RealToComplex<f64>>,
    window: Vec<f64>,
    /// Per band: the first FFT bin it weighs, and its weights from there.
    filters: Vec<(usize, Vec<f64>)>,
    padded: Vec<f64>,
    frame: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    power: Vec<f64>,
    log: Vec<f64>,
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

impl LogMel {
    /// Plans the FFT and builds the filterbank.
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
        let scratch = fft.make_scratch_vec();
        // Periodic Hann (torch.hann_window): 0.5 − 0.5·cos(2πn/N).
        let window = (0..N_FFT)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos())
            .collect();
        Self {
            fft,
            window,
            filters: mel_filters(),
            padded: Vec::with_capacity(SAMPLES + N_FFT),
            frame: vec![0.0; N_FFT],
            spectrum: vec![Complex::default(); BINS],
            scratch,
            power: vec![0.0; BINS],
            log: vec![0.0; BANDS * FRAMES],
        }
    }

    /// The features of `audio` (16 kHz): its last 8 s, or all of it zero-padded at the start.
    pub fn compute(&mut self, audio: &[i16]) -> Vec<f32> {
        let tail = &audio[audio.len().saturating_sub(SAMPLES)..];
        let lead = SAMPLES - tail.len();
        // Normalised over the whole 8 s, padding included, as the reference does.
        let scale = 1.0 / 32_768.0;
        let sum: f64 = tail.iter().map(|&s| f64::from(s) * scale).sum();
        let mean = sum / SAMPLES as f64;
        let sq: f64 = tail
            .iter()
            .map(|&s| (f64::from(s) * scale - mean).powi(2))
            .sum::<f64>()
            + lead as f64 * mean * mean;
        let inv_std = 1.0 / (sq / SAMPLES as f64 + VARIANCE_EPS).sqrt();
        // The reference normalises in f32 before the spectrogram promotes to f64.
        let norm = |x: f64| f64::from(((x - mean) * inv_std) as f32);
        let x = |i: usize| {
            if i < lead {
                norm(0.0)
            } else {
                norm(f64::from(tail[i - lead]) * scale)
            }
        };
        // Centred frames: reflect-padded by half a frame (the edge sample not repeated).
        let pad = N_FFT / 2;
        self.padded.clear();
        self.padded.extend((1..=pad).rev().map(x));
        self.padded.extend((0..SAMPLES).map(x));
        self.padded.extend((0..pad).map(|j| x(SAMPLES - 2 - j)));
        let mut peak = f64::NEG_INFINITY;
        for t in 0..FRAMES {
            let at = t * HOP;
            for ((d, &s), &w) in self
                .frame
                .iter_mut()
                .zip(&self.padded[at..at + N_FFT])
                .zip(&self.window)
            {
                *d = s * w;
            }
            // The buffers are sized for the plan, so this cannot fail.
            let _ = self.fft.process_with_scratch(
                &mut self.frame,
                &mut self.spectrum,
                &mut self.scratch,
            );
            for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
                *p = c.norm_sqr();
            }
            for (m, (first, weights)) in self.filters.iter().enumerate() {
                let e: f64 = weights
                    .iter()
                    .zip(&self.power[*first..])
                    .map(|(w, p)| w * p)
                    .sum();
                let l = e.max(MEL_FLOOR).log10();
                peak = peak.max(l);
                self.log[m * FRAMES + t] = l;
            }
        }
        let floor = peak - 8.0;
        self.log
            .iter()
            .map(|&l| ((l.max(floor) + 4.0) / 4.0) as f32)
            .collect()
    }
}

fn hz_to_mel(f: f64) -> f64 {
    if f >= 1_000.0 {
        15.0 + (f / 1_000.0).ln() * 27.0 / 6.4f64.ln()
    } else {
        3.0 * f / 200.0
    }
}

fn mel_to_hz(m: f64) -> f64 {
    if m >= 15.0 {
        1_000.0 * (6.4f64.ln() / 27.0 * (m - 15.0)).exp()
    } else {
        200.0 * m / 3.0
    }
}

/// `n` evenly spaced values from `a` to `b` inclusive (numpy's `linspace`).
fn linspace(a: f64, b: f64, n: usize) -> impl Iterator<Item = f64> {
    let step = (b - a) / (n - 1) as f64;
    (0..n).map(move |i| if i == n - 1 { b } else { a + i as f64 * step })
}

/// Slaney-normalised triangular filters from 0 Hz to 8 kHz, each as its non-zero run.
fn mel_filters() -> Vec<(usize, Vec<f64>)> {
    let edges: Vec<f64> = linspace(hz_to_mel(0.0), hz_to_mel(RATE as f64 / 2.0), BANDS + 2)
        .map(mel_to_hz)
        .collect();
    let bins: Vec<f64> = linspace(0.0, (RATE / 2) as f64, BINS).collect();
    (0..BANDS)
        .map(|m| {
            let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            let norm = 2.0 / (hi - lo);
            let w: Vec<f64> = bins
                .iter()
                .map(|&f| ((f - lo) / (mid - lo)).min((hi - f) / (hi - mid)).max(0.0) * norm)
                .collect();
            let first = w.iter().position(|&v| v > 0.0).unwrap_or(0);
            let last = w.iter().rposition(|&v| v > 0.0).unwrap_or(first);
            (first, w[first..=last].to_vec())
        })
        .collect()
}
