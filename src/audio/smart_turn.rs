//! smart-turn v3.2 (`smart-turn-v3.2-cpu.onnx`, BSD-2, from the PyPI `pipecat-ai` wheel): a
//! semantic end-of-turn model that hears the last 8 s of an utterance and says whether the
//! caller finished (a complete sentence, a falling tone) or paused mid-thought. The
//! endpointer asks it once per pause (`[audio.smart_turn] pause_ms` of silence), and its
//! answer picks the hangover: `complete_ms` or `incomplete_ms`.
//!
//! [`SmartTurnModel`] is the front end ([`features::LogMel`]) and the network;
//! [`SmartTurnPool`] owns `workers` models, each on a dedicated thread with a bounded queue,
//! so a decision (tens of ms of CPU) never runs on the runtime that carries the calls' media
//! and a full pool answers [`Busy`] at once (the fixed hangover then applies).

pub mod features;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::onnx::{self, Files, LoadError};
use super::vad::TurnTiming;
use crate::component::{ConfigError, Errors};

pub use super::onnx::Busy;

/// Errors of smart-turn: loading (each naming the file) and inference.
#[derive(Debug, thiserror::Error)]
pub enum SmartTurnError {
    /// The model or the library could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A run failed.
    #[error("smart-turn inference failed: {0}")]
    Run(String),
    /// The worker's thread is gone (it panicked or could not start).
    #[error("smart-turn pool stopped")]
    Stopped,
}

// === config ===

/// `[audio.smart_turn]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmartTurnConfig {
    /// Ask the model at each pause.
    pub enabled: bool,
    /// `smart-turn-v3.2-cpu.onnx` (or another v3 export with the same input).
    pub model_path: String,
    /// `libonnxruntime.so` (1.28 or newer; the same library Silero uses).
    pub library_path: String,
    /// Silence within an utterance after which the model is asked.
    pub pause_ms: u64,
    /// Hangover (silence from the end of speech) when the model says complete.
    pub complete_ms: u64,
    /// Hangover when it says incomplete, and while its answer is pending.
    pub incomplete_ms: u64,
    /// Probability from which the turn is complete.
    pub threshold: f32,
    /// Models, each on its own thread (one core each while deciding).
    pub workers: usize,
    /// Decisions that may wait per worker; beyond them a pause gets the fixed hangover.
    pub queue_size: usize,
}

impl Default for SmartTurnConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            model_path: "models/smart-turn-v3.2-cpu.onnx".into(),
            library_path: "models/libonnxruntime.so.1.32.0".into(),
            pause_ms: 200,
            complete_ms: 200,
            incomplete_ms: 1_500,
            threshold: 0.5,
            workers: 1,
            queue_size: 8,
        }
    }
}

/// Validated `[audio.smart_turn]` (present only when enabled).
#[derive(Debug, Clone)]
pub struct SmartTurnSettings {
    /// The model file.
    pub model_path: PathBuf,
    /// The ONNX Runtime library.
    pub library_path: PathBuf,
    /// When the endpointer asks.
    pub pause: Duration,
    /// Hangover on "complete".
    pub complete: Duration,
    /// Hangover on "incomplete" or while pending.
    pub incomplete: Duration,
    /// Completion threshold.
    pub threshold: f32,
    /// Worker threads.
    pub workers: usize,
    /// Queue bound per worker.
    pub queue_size: usize,
}

impl SmartTurnConfig {
    /// Checks the section at `path` (`audio.smart_turn`); `None` when disabled. Pure: whether
    /// the files exist is [`SmartTurnSettings::missing_files`]'s business (`voxhook validate`).
    pub fn validate(self, path: &str, errs: &mut Errors) -> Option<SmartTurnSettings> {
        if !self.enabled {
            return None;
        }
        let key = |k: &str| format!("{path}.{k}");
        errs.check(
            (16..=2_000).contains(&self.pause_ms),
            &key("pause_ms"),
            "must be between 16 and 2000",
        );
        errs.check(
            self.complete_ms <= self.incomplete_ms,
            &key("complete_ms"),
            "must be at most incomplete_ms",
        );
        errs.check(
            self.pause_ms <= self.incomplete_ms && self.incomplete_ms <= 10_000,
            &key("incomplete_ms"),
            "must be between pause_ms and 10000",
        );
        errs.check(
            self.threshold > 0.0 && self.threshold < 1.0,
            &key("threshold"),
            "must be above 0 and below 1",
        );
        errs.check(
            (1..=64).contains(&self.workers),
            &key("workers"),
            "must be between 1 and 64",
        );
        errs.check(
            (1..=1_024).contains(&self.queue_size),
            &key("queue_size"),
            "must be between 1 and 1024",
        );
        for (k, v) in [
            ("model_path", &self.model_path),
            ("library_path", &self.library_path),
        ] {
            errs.check(!v.trim().is_empty(), &key(k), "must name a file");
        }
        Some(SmartTurnSettings {
            model_path: self.model_path.into(),
            library_path: self.library_path.into(),
            pause: Duration::from_millis(self.pause_ms),
            complete: Duration::from_millis(self.complete_ms),
            incomplete: Duration::from_millis(self.incomplete_ms),
            threshold: self.threshold,
            workers: self.workers,
            queue_size: self.queue_size,
        })
    }
}

impl SmartTurnSettings {
    /// What the endpointer does with the model's verdicts.
    pub fn timing(&self) -> TurnTiming {
        TurnTiming {
            pause: self.pause,
            complete: self.complete,
            incomplete: self.incomplete,
        }
    }

    /// The configured files that do not exist, as errors at `audio.smart_turn.<key>`.
    pub fn missing_files(&self) -> Vec<ConfigError> {
        files(&self.model_path, &self.library_path).missing()
    }
}

/// The files smart-turn needs, as `[audio.smart_turn]` names them.
fn files<'a>(model: &'a Path, library: &'a Path) -> Files<'a> {
    Files {
        section: "audio.smart_turn",
        what: "smart-turn",
        model,
        library,
    }
}

// === model ===

/// One decision: the model's probability that the turn is complete, and what it cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Probability (0..1) that the caller finished the turn.
    pub probability: f32,
    /// CPU time of the front end and the run, on the worker's thread.
    pub cpu: Duration,
}

/// smart-turn's front end and network in ONNX Runtime. A run takes `&mut self`: one thread
/// owns it.
pub struct SmartTurnModel {
    session: Session,
    mel: features::LogMel,
}

impl SmartTurnModel {
    /// Loads ONNX Runtime from `library` (once per process) and the model from `model`.
    /// Each failure names its file.
    pub fn load(model: &Path, library: &Path) -> Result<Self, SmartTurnError> {
        let files = files(model, library);
        let session = files.session()?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if inputs != ["input_features"] || outputs.len() != 1 {
            return Err(files
                .wrong_model(format!(
                    "not a smart-turn v3 model: inputs {inputs:?}, outputs {outputs:?}"
                ))
                .into());
        }
        Ok(Self {
            session,
            mel: features::LogMel::new(),
        })
    }

    /// The probability that the utterance `audio` (16 kHz, its last 8 s count) is a
    /// finished turn.
    pub fn predict(&mut self, audio: &[i16]) -> Result<Verdict, SmartTurnError> {
        let start = onnx::thread_cpu();
        let input = self.mel.compute(audio);
        let run = |e: ort::Error| SmartTurnError::Run(e.to_string());
        let t = Tensor::from_array(([1, features::BANDS, features::FRAMES], input)).map_err(run)?;
        let out = self
            .session
            .run(ort::inputs!["input_features" => t])
            .map_err(run)?;
        let (_, p) = out[0].try_extract_tensor::<f32>().map_err(run)?;
        let &[probability] = p else {
            return Err(SmartTurnError::Run(format!(
                "expected one probability, got {}",
                p.len()
            )));
        };
        if !(0.0..=1.0).contains(&probability) {
            return Err(SmartTurnError::Run(format!(
                "probability {probability} is outside 0..1"
            )));
        }
        Ok(Verdict {
            probability,
            cpu: onnx::thread_cpu().saturating_sub(start),
        })
    }
}

// === pool ===

/// The answer to [`SmartTurnPool::ask`], to await. Dropping it withdraws the request: a
/// worker that has not started on it skips it.
pub struct Pending(oneshot::Receiver<Result<Verdict, SmartTurnError>>);

impl Future for Pending {
    type Output = Result<Verdict, SmartTurnError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(SmartTurnError::Stopped)))
    }
}

struct Job {
    audio: Vec<i16>,
    reply: oneshot::Sender<Result<Verdict, SmartTurnError>>,
}

/// `workers` models, each on a dedicated thread (not the async runtime, whose workers carry
/// the calls' media) behind its own bounded queue: no lock is shared between calls, and a
/// request goes to the next worker with room.
pub struct SmartTurnPool {
    queues: Vec<std_mpsc::SyncSender<Job>>,
    next: AtomicUsize,
    settings: SmartTurnSettings,
    /// Decisions made, read by the tests.
    decisions: Arc<AtomicU64>,
}

impl SmartTurnPool {
    /// Loads `workers` models as `settings` name them and starts their threads.
    pub fn load(settings: &SmartTurnSettings) -> Result<Arc<Self>, SmartTurnError> {
        let models = (0..settings.workers)
            .map(|_| SmartTurnModel::load(&settings.model_path, &settings.library_path))
            .collect::<Result<Vec<_>, _>>()?;
        Self::start(models, settings.clone())
    }

    /// Starts one thread per loaded model. The threads end when the pool is dropped.
    pub fn start(
        models: Vec<SmartTurnModel>,
        settings: SmartTurnSettings,
    ) -> Result<Arc<Self>, SmartTurnError> {
        let decisions = Arc::new(AtomicU64::new(0));
        let mut queues = Vec::with_capacity(models.len());
        for (i, model) in models.into_iter().enumerate() {
            let (queue, jobs) = std_mpsc::sync_channel(settings.queue_size);
            let made = decisions.clone();
            std::thread::Builder::new()
                .name(format!("smart-turn-{i}"))
                .spawn(move || serve(model, jobs, &made))
                .map_err(|e| {
                    SmartTurnError::Run(format!("cannot start a smart-turn thread: {e}"))
                })?;
            queues.push(queue);
        }
        Ok(Arc::new(Self {
            queues,
            next: AtomicUsize::new(0),
            settings,
            decisions,
        }))
    }

    /// The settings the pool was built from (the endpointer's timings).
    pub fn settings(&self) -> &SmartTurnSettings {
        &self.settings
    }

    /// Decisions made since the pool started.
    pub fn decisions(&self) -> u64 {
        self.decisions.load(Ordering::Relaxed)
    }

    /// Asks whether `audio` (16 kHz; its last 8 s are copied) is a finished turn. Never
    /// waits: when every worker's queue is full (or every worker stopped) it answers
    /// [`Busy`] at once.
    pub fn ask(&self, audio: &[i16]) -> Result<Pending, Busy> {
        let (reply, answer) = oneshot::channel();
        let mut job = Job {
            audio: audio[audio.len().saturating_sub(features::SAMPLES)..].to_vec(),
            reply,
        };
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..self.queues.len() {
            match self.queues[(first + k) % self.queues.len()].try_send(job) {
                Ok(()) => return Ok(Pending(answer)),
                Err(std_mpsc::TrySendError::Full(j) | std_mpsc::TrySendError::Disconnected(j)) => {
                    job = j
                }
            }
        }
        Err(Busy)
    }
}

/// A worker's thread: one decision at a time, until the pool is dropped.
fn serve(mut model: SmartTurnModel, jobs: std_mpsc::Receiver<Job>, made: &AtomicU64) {
    while let Ok(job) = jobs.recv() {
        // Withdrawn (the caller spoke again, or the call ended): no work for nothing.
        if job.reply.is_closed() {
            continue;
        }
        let verdict = model.predict(&job.audio);
        if let Err(e) = &verdict {
            tracing::warn!(error = %e, "smart-turn run failed.");
        } else {
            made.fetch_add(1, Ordering::Relaxed);
        }
        let _ = job.reply.send(verdict);
    }
}

#[cfg(test)]
mod tests;
