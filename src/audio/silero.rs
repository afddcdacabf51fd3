//! Silero VAD (`silero_vad.onnx` v5/v6, 16 kHz) as a second opinion on what earshot calls
//! speech: [`SileroModel`] runs the network through ONNX Runtime (loaded at run time from
//! `[audio.silero] library_path`), [`SileroPool`] owns one model on one dedicated thread and
//! batches the windows of every call that asks into one run. It is far dearer than earshot,
//! so it never runs per frame: the listener asks it twice per utterance at most (is a
//! barge-in candidate speech? where does the utterance's speech start and end?).
//!
//! Silero must hear 16 kHz audio: at 8 kHz it misses most telephone speech (measured,
//! `speech-backends.md`), so it takes the listener's 16 kHz audio, upsampled from the line.

use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::onnx::{Files, LoadError};
use crate::component::{ConfigError, Errors};

pub use super::onnx::Busy;

/// New samples per window: 32 ms at 16 kHz (the model's fixed 16 kHz window).
pub const WINDOW: usize = 512;
/// Samples of the previous window the model sees before each new one.
const CONTEXT: usize = 64;
/// The recurrent state: `[2, batch, 128]`.
const STATE_ROWS: usize = 2;
const STATE_WIDTH: usize = 128;
/// The model's sample rate input.
const RATE: i64 = 16_000;
/// Most streams scored in one run: beyond this a run's latency grows faster than the
/// per-window cost falls (benches/turns.rs measures 1, 8 and 32).
pub const MAX_BATCH: usize = 32;

/// Errors of Silero VAD: loading (each naming the file) and inference.
#[derive(Debug, thiserror::Error)]
pub enum SileroError {
    /// The model or the library could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A run failed.
    #[error("Silero inference failed: {0}")]
    Run(String),
    /// The pool's thread is gone (it panicked or could not start).
    #[error("Silero pool stopped")]
    Stopped,
}

// === config ===

/// `[audio.silero]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SileroConfig {
    /// Run Silero at all.
    pub enabled: bool,
    /// `silero_vad.onnx` (v5/v6, 16 kHz).
    pub model_path: String,
    /// `libonnxruntime.so` (1.28 or newer).
    pub library_path: String,
    /// Speech probability (0..1) from which a 32 ms window is speech.
    pub threshold: f32,
    /// A VAD barge-in interrupts the bot only when Silero hears speech in its last audio.
    pub confirm_barge_in: bool,
    /// Leading and trailing non-speech is cut from an utterance before an utterance STT
    /// decodes it; an utterance without speech is dropped.
    pub trim_utterances: bool,
    /// Audio kept around the speech Silero found when trimming.
    pub trim_margin_ms: u64,
    /// Requests waiting for the pool; beyond it a request is answered busy at once.
    pub queue_size: usize,
}

impl Default for SileroConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            model_path: "models/silero_vad.onnx".into(),
            library_path: "models/libonnxruntime.so.1.32.0".into(),
            threshold: 0.5,
            confirm_barge_in: true,
            trim_utterances: true,
            trim_margin_ms: 100,
            queue_size: 64,
        }
    }
}

/// Validated `[audio.silero]` (present only when enabled).
#[derive(Debug, Clone)]
pub struct SileroSettings {
    /// The model file.
    pub model_path: PathBuf,
    /// The ONNX Runtime library.
    pub library_path: PathBuf,
    /// Window speech threshold.
    pub threshold: f32,
    /// Confirm VAD barge-ins.
    pub confirm_barge_in: bool,
    /// Trim utterances before an utterance STT.
    pub trim_utterances: bool,
    /// Audio kept around the speech when trimming.
    pub trim_margin: Duration,
    /// Bound of the pool's request queue.
    pub queue_size: usize,
}

impl SileroConfig {
    /// Checks the section at `path` (`audio.silero`); `None` when disabled. Pure: whether the
    /// files exist is [`SileroSettings::missing_files`]'s business (`voxhook validate`).
    pub fn validate(self, path: &str, errs: &mut Errors) -> Option<SileroSettings> {
        if !self.enabled {
            return None;
        }
        let key = |k: &str| format!("{path}.{k}");
        errs.check(
            self.threshold > 0.0 && self.threshold <= 1.0,
            &key("threshold"),
            "must be above 0 and at most 1",
        );
        errs.check(
            (1..=4_096).contains(&self.queue_size),
            &key("queue_size"),
            "must be between 1 and 4096",
        );
        errs.check(
            self.trim_margin_ms <= 1_000,
            &key("trim_margin_ms"),
            "must be at most 1000",
        );
        errs.check(
            self.confirm_barge_in || self.trim_utterances,
            &key("enabled"),
            "Silero has nothing to do: set confirm_barge_in or trim_utterances (or enabled = false)",
        );
        for (k, v) in [
            ("model_path", &self.model_path),
            ("library_path", &self.library_path),
        ] {
            errs.check(!v.trim().is_empty(), &key(k), "must name a file");
        }
        Some(SileroSettings {
            model_path: self.model_path.into(),
            library_path: self.library_path.into(),
            threshold: self.threshold,
            confirm_barge_in: self.confirm_barge_in,
            trim_utterances: self.trim_utterances,
            trim_margin: Duration::from_millis(self.trim_margin_ms),
            queue_size: self.queue_size,
        })
    }
}

impl SileroSettings {
    /// The configured files that do not exist, as errors at `audio.silero.<key>`.
    pub fn missing_files(&self) -> Vec<ConfigError> {
        files(&self.model_path, &self.library_path).missing()
    }
}

/// The files Silero needs, as `[audio.silero]` names them.
fn files<'a>(model: &'a Path, library: &'a Path) -> Files<'a> {
    Files {
        section: "audio.silero",
        what: "Silero",
        model,
        library,
    }
}

// === model ===

/// The memory one stream of windows carries from one window to the next.
#[derive(Debug, Clone)]
pub struct SileroState {
    /// The last [`CONTEXT`] samples of the previous window.
    context: [f32; CONTEXT],
    /// The recurrent state, `[2, 128]` of this stream.
    rnn: [f32; STATE_ROWS * STATE_WIDTH],
}

impl Default for SileroState {
    fn default() -> Self {
        Self {
            context: [0.0; CONTEXT],
            rnn: [0.0; STATE_ROWS * STATE_WIDTH],
        }
    }
}

/// One Silero network in ONNX Runtime. Not shared: a run takes `&mut self`, so one thread
/// owns it ([`SileroPool`]).
pub struct SileroModel {
    session: Session,
}

impl SileroModel {
    /// Loads ONNX Runtime from `library` (once per process; a second model reuses it) and
    /// the model from `model`. Each failure names its file.
    pub fn load(model: &Path, library: &Path) -> Result<Self, SileroError> {
        let files = files(model, library);
        let session = files.session()?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if inputs != ["input", "state", "sr"] || outputs != ["output", "stateN"] {
            return Err(files
                .wrong_model(format!(
                    "not a Silero v5/v6 model: inputs {inputs:?}, outputs {outputs:?}"
                ))
                .into());
        }
        Ok(Self { session })
    }

    /// Scores one window per stream, all in one run: `windows[i]` (up to [`WINDOW`] samples,
    /// zero-padded) continues `states[i]`, which is updated. Returns each window's speech
    /// probability.
    pub fn run_batch(
        &mut self,
        states: &mut [&mut SileroState],
        windows: &[&[i16]],
    ) -> Result<Vec<f32>, SileroError> {
        let n = states.len();
        debug_assert_eq!(n, windows.len());
        if n == 0 {
            return Ok(Vec::new());
        }
        let row = CONTEXT + WINDOW;
        let mut input = vec![0f32; n * row];
        // `[2, batch, 128]`: layer-major, so one stream's state is two strided runs.
        let mut state = vec![0f32; STATE_ROWS * n * STATE_WIDTH];
        for (b, (s, w)) in states.iter().zip(windows).enumerate() {
            let x = &mut input[b * row..(b + 1) * row];
            x[..CONTEXT].copy_from_slice(&s.context);
            for (d, &v) in x[CONTEXT..].iter_mut().zip(w.iter()) {
                *d = f32::from(v) / 32_768.0;
            }
            for l in 0..STATE_ROWS {
                let at = (l * n + b) * STATE_WIDTH;
                state[at..at + STATE_WIDTH]
                    .copy_from_slice(&s.rnn[l * STATE_WIDTH..(l + 1) * STATE_WIDTH]);
            }
        }
        let run = |e: ort::Error| SileroError::Run(e.to_string());
        let input_t = Tensor::from_array(([n, row], input.clone())).map_err(run)?;
        let state_t = Tensor::from_array(([STATE_ROWS, n, STATE_WIDTH], state.into_boxed_slice()))
            .map_err(run)?;
        let sr_t = Tensor::from_array(((), vec![RATE])).map_err(run)?;
        let out = self
            .session
            .run(ort::inputs!["input" => input_t, "state" => state_t, "sr" => sr_t])
            .map_err(run)?;
        let (_, probs) = out["output"].try_extract_tensor::<f32>().map_err(run)?;
        let (_, next) = out["stateN"].try_extract_tensor::<f32>().map_err(run)?;
        if probs.len() != n || next.len() != STATE_ROWS * n * STATE_WIDTH {
            return Err(SileroError::Run(format!(
                "unexpected output sizes {} and {} for a batch of {n}",
                probs.len(),
                next.len()
            )));
        }
        for (b, s) in states.iter_mut().enumerate() {
            for l in 0..STATE_ROWS {
                let at = (l * n + b) * STATE_WIDTH;
                s.rnn[l * STATE_WIDTH..(l + 1) * STATE_WIDTH]
                    .copy_from_slice(&next[at..at + STATE_WIDTH]);
            }
            // The next window's context is the end of this one's audio, as fed.
            s.context
                .copy_from_slice(&input[(b + 1) * row - CONTEXT..(b + 1) * row]);
        }
        Ok(probs.to_vec())
    }

    /// Scores `samples` (16 kHz) window by window from a fresh state: one probability per
    /// [`WINDOW`] (the last one zero-padded).
    pub fn score(&mut self, samples: &[i16]) -> Result<Vec<f32>, SileroError> {
        let mut state = SileroState::default();
        samples
            .chunks(WINDOW)
            .map(|w| Ok(self.run_batch(&mut [&mut state], &[w])?[0]))
            .collect()
    }
}

// === decisions ===

/// True when any window of a barge-in candidate is speech.
pub fn confirms(probs: &[f32], threshold: f32) -> bool {
    probs.iter().any(|&p| p >= threshold)
}

/// The samples of an utterance of `len` samples to keep: from the first to the last speech
/// window, widened by `margin` samples on each side; `None` when no window is speech.
pub fn speech_span(
    probs: &[f32],
    threshold: f32,
    margin: usize,
    len: usize,
) -> Option<Range<usize>> {
    let first = probs.iter().position(|&p| p >= threshold)?;
    let last = probs.iter().rposition(|&p| p >= threshold)?;
    let start = (first * WINDOW).saturating_sub(margin);
    let end = ((last + 1) * WINDOW + margin).min(len);
    Some(start..end)
}

// === pool ===

/// The answer to [`SileroPool::score`], to await: one speech probability per [`WINDOW`].
/// Dropping it withdraws the request: the pool skips its remaining windows.
pub struct Pending(oneshot::Receiver<Result<Vec<f32>, SileroError>>);

impl Future for Pending {
    type Output = Result<Vec<f32>, SileroError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(SileroError::Stopped)))
    }
}

/// One request on the pool's thread: its audio, where it is, its own state (requests never
/// share one: each call's audio continues only its own).
struct Job {
    samples: Vec<i16>,
    next: usize,
    state: SileroState,
    probs: Vec<f32>,
    reply: oneshot::Sender<Result<Vec<f32>, SileroError>>,
}

impl Job {
    fn done(&self) -> bool {
        self.next >= self.samples.len()
    }
}

/// One [`SileroModel`] on a dedicated thread (not the async runtime, whose workers carry the
/// calls' media, and not `spawn_blocking`, which would load a model per thread). Requests
/// wait in a bounded queue; every pending request contributes its next window to each run,
/// so many calls cost one batched run per 32 ms of audio instead of one run each.
pub struct SileroPool {
    queue: std_mpsc::SyncSender<Job>,
    settings: SileroSettings,
    /// Runs and windows scored so far: windows per run is how well calls were batched.
    counts: Arc<Counts>,
}

/// What the pool's thread did, read by the benchmark and tests.
#[derive(Debug, Default)]
struct Counts {
    runs: AtomicU64,
    windows: AtomicU64,
}

impl SileroPool {
    /// Loads the model named by `settings` and starts its thread.
    pub fn load(settings: &SileroSettings) -> Result<Arc<Self>, SileroError> {
        let model = SileroModel::load(&settings.model_path, &settings.library_path)?;
        Self::start(model, settings.clone())
    }

    /// Starts the thread around a loaded model. The thread ends when the pool is dropped.
    pub fn start(model: SileroModel, settings: SileroSettings) -> Result<Arc<Self>, SileroError> {
        let (queue, jobs) = std_mpsc::sync_channel(settings.queue_size);
        let counts = Arc::new(Counts::default());
        let seen = counts.clone();
        std::thread::Builder::new()
            .name("silero".into())
            .spawn(move || serve(model, jobs, &seen))
            .map_err(|e| SileroError::Run(format!("cannot start the Silero thread: {e}")))?;
        Ok(Arc::new(Self {
            queue,
            settings,
            counts,
        }))
    }

    /// Batched runs and windows scored since the pool started.
    pub fn runs_and_windows(&self) -> (u64, u64) {
        (
            self.counts.runs.load(Ordering::Relaxed),
            self.counts.windows.load(Ordering::Relaxed),
        )
    }

    /// The settings the pool was built from (the listener's knobs).
    pub fn settings(&self) -> &SileroSettings {
        &self.settings
    }

    /// Asks for the speech probabilities of `samples` (16 kHz; copied, since the caller
    /// still needs them to act on the answer). Never waits: a full queue answers [`Busy`]
    /// at once.
    pub fn score(&self, samples: &[i16]) -> Result<Pending, Busy> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            samples: samples.to_vec(),
            next: 0,
            state: SileroState::default(),
            probs: Vec::new(),
            reply,
        };
        // A stopped thread (it panicked) is busy for good: callers keep earshot's decision.
        self.queue.try_send(job).map_err(|_| Busy)?;
        Ok(Pending(answer))
    }
}

/// The pool's thread: runs one batch of windows per step over every request in hand, taking
/// new requests between steps, until the pool is dropped.
fn serve(mut model: SileroModel, jobs: std_mpsc::Receiver<Job>, counts: &Counts) {
    let mut active: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        if active.is_empty() {
            match jobs.recv() {
                Ok(j) => active.push(j),
                Err(_) => return,
            }
        }
        while active.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => active.push(j),
                Err(_) => break,
            }
        }
        let mut i = 0;
        while i < active.len() {
            // Withdrawn requests (their call ended or moved on) cost nothing more.
            if active[i].reply.is_closed() {
                active.swap_remove(i);
            } else if active[i].done() {
                let j = active.swap_remove(i);
                let _ = j.reply.send(Ok(j.probs));
            } else {
                i += 1;
            }
        }
        if active.is_empty() {
            continue;
        }
        let (windows, mut states): (Vec<&[i16]>, Vec<&mut SileroState>) = active
            .iter_mut()
            .map(|j| {
                let end = (j.next + WINDOW).min(j.samples.len());
                (&j.samples[j.next..end], &mut j.state)
            })
            .unzip();
        match model.run_batch(&mut states, &windows) {
            Ok(probs) => {
                counts.runs.fetch_add(1, Ordering::Relaxed);
                counts
                    .windows
                    .fetch_add(probs.len() as u64, Ordering::Relaxed);
                for (j, p) in active.iter_mut().zip(probs) {
                    j.probs.push(p);
                    j.next += WINDOW;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, batch = active.len(), "Silero run failed.");
                for j in active.drain(..) {
                    let _ = j.reply.send(Err(SileroError::Run(e.to_string())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
