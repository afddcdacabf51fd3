//! Embedded offline TTS: CMU flite (BSD-style licence) through a minimal FFI binding.
//!
//! flite keeps global state (lexicon, feature tables, the registered voices) and is not
//! thread-safe, so the process has exactly one thread that touches it, named `flite`: it
//! initialises flite, registers the built-in voices and synthesizes every sentence of every
//! call, one at a time. More threads would only have to take turns on a lock. Calls hand it
//! one job per sentence over a bounded queue and await the answer, so a burst of speech
//! parks no tokio blocking thread (whisper's decodes need those), and a job whose message was
//! cancelled (barge-in, hang-up) while it waited is skipped without being synthesized. A
//! sentence takes a few tens of ms.

use std::ffi::{c_char, c_int, c_short, CString};
use std::sync::OnceLock;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{split_sentences, TextToSpeech, TtsError, TtsRequest, TtsStream, TTS_CHUNK_CAPACITY};

/// Voices linked into the binary.
pub const VOICES: &[&str] = &["slt", "rms", "awb"];

/// Capacity of the queue into the flite thread, in sentences, shared by all calls (each
/// stream has at most one sentence in it at a time). A sentence that finds it full waits in
/// `send().await` (backpressure on the runtime, never a blocked thread) and leaves when its
/// token is cancelled. 32 sentences are about a second of the thread's work.
pub const FLITE_QUEUE_CAPACITY: usize = 32;

#[repr(C)]
struct CstWave {
    kind: *const c_char,
    sample_rate: c_int,
    num_samples: c_int,
    num_channels: c_int,
    samples: *mut c_short,
}

#[repr(C)]
struct CstVoice {
    _private: [u8; 0],
}

extern "C" {
    fn flite_init() -> c_int;
    fn flite_text_to_wave(text: *const c_char, voice: *mut CstVoice) -> *mut CstWave;
    fn delete_wave(w: *mut CstWave);
    fn register_cmu_us_slt(voxdir: *const c_char) -> *mut CstVoice;
    fn register_cmu_us_rms(voxdir: *const c_char) -> *mut CstVoice;
    fn register_cmu_us_awb(voxdir: *const c_char) -> *mut CstVoice;
}

/// One sentence for the flite thread.
struct Job {
    sentence: String,
    /// Index into [`VOICES`].
    voice: usize,
    /// The message's token: once cancelled, the thread skips the job.
    cancel: CancellationToken,
    /// The sentence's PCM; dropped unanswered when the job is skipped.
    reply: oneshot::Sender<Result<Vec<i16>, TtsError>>,
}

/// What the flite thread is asked to do.
enum Request {
    Speak(Job),
    /// Tests: keep the thread busy until the other end is dropped.
    #[cfg(test)]
    Hold(std::sync::mpsc::Receiver<()>),
}

/// The process's flite thread, started on first use.
struct Engine {
    /// Into the thread: [`FLITE_QUEUE_CAPACITY`] requests.
    jobs: mpsc::Sender<Request>,
    /// Sample rate of each voice, in [`VOICES`] order.
    rates: Vec<u32>,
}

static ENGINE: OnceLock<Result<Engine, TtsError>> = OnceLock::new();

/// Sentences the flite thread synthesized, for tests to tell a skipped job from a done one.
#[cfg(test)]
static SPOKEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn engine() -> Result<&'static Engine, TtsError> {
    ENGINE
        .get_or_init(Engine::start)
        .as_ref()
        .map_err(Clone::clone)
}

// === impl Engine ===

impl Engine {
    /// Starts the flite thread and waits (a few ms, once per process) until its voices are
    /// registered.
    fn start() -> Result<Engine, TtsError> {
        let (jobs, rx) = mpsc::channel(FLITE_QUEUE_CAPACITY);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("flite".into())
            .spawn(move || run(rx, ready_tx))
            .map_err(|e| TtsError::Init(format!("starting the flite thread: {e}")))?;
        let rates = ready_rx
            .recv()
            .map_err(|_| TtsError::Init("the flite thread stopped while starting".into()))??;
        Ok(Engine { jobs, rates })
    }
}

/// The flite thread: the only code that calls into flite. Runs for the life of the process
/// (the queue's sender lives in a static).
fn run(
    mut jobs: mpsc::Receiver<Request>,
    ready: std::sync::mpsc::SyncSender<Result<Vec<u32>, TtsError>>,
) {
    let voices = match init() {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let rates = voices
        .iter()
        .map(|&v| synth(v, "ok").map(|(_, rate)| rate))
        .collect();
    if ready.send(rates).is_err() {
        return;
    }
    while let Some(req) = jobs.blocking_recv() {
        match req {
            Request::Speak(job) => answer(&voices, job),
            #[cfg(test)]
            Request::Hold(until) => {
                let _ = until.recv();
            }
        }
    }
}

/// Synthesizes one job's sentence and sends it back, unless nobody wants it any more.
fn answer(voices: &[*mut CstVoice], job: Job) {
    // Barged in or hung up while queued: nobody would play it.
    if job.cancel.is_cancelled() || job.reply.is_closed() {
        return;
    }
    #[cfg(test)]
    SPOKEN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(job.sentence.clone());
    let res = match voices.get(job.voice) {
        Some(&v) => synth(v, &job.sentence).map(|(pcm, _)| pcm),
        None => Err(TtsError::Synthesis(format!("no voice #{}", job.voice))),
    };
    let _ = job.reply.send(res);
}

/// Initialises flite and registers [`VOICES`], in order. Runs on the flite thread.
fn init() -> Result<Vec<*mut CstVoice>, TtsError> {
    // SAFETY: flite_init only sets up global tables; this thread is the only flite caller.
    unsafe { flite_init() };
    VOICES
        .iter()
        .map(|&name| {
            // SAFETY: registration functions take an optional voice dir (null) and return a
            // voice owned by flite for the life of the process.
            let v = unsafe {
                match name {
                    "slt" => register_cmu_us_slt(std::ptr::null()),
                    "rms" => register_cmu_us_rms(std::ptr::null()),
                    _ => register_cmu_us_awb(std::ptr::null()),
                }
            };
            if v.is_null() {
                return Err(TtsError::Init(format!(
                    "flite could not register voice {name}"
                )));
            }
            Ok(v)
        })
        .collect()
}

/// Synthesizes one piece of text with a registered voice. Runs on the flite thread.
fn synth(voice: *mut CstVoice, text: &str) -> Result<(Vec<i16>, u32), TtsError> {
    let c =
        CString::new(text.replace('\0', " ")).map_err(|e| TtsError::Synthesis(e.to_string()))?;
    // SAFETY: valid C string and a registered voice, on the only thread calling flite; the
    // returned wave is owned by us and freed below with delete_wave after copying its samples.
    unsafe {
        let w = flite_text_to_wave(c.as_ptr(), voice);
        if w.is_null() {
            return Err(TtsError::Synthesis("flite returned no audio".into()));
        }
        let wave = &*w;
        let n = usize::try_from(wave.num_samples).unwrap_or(0)
            * usize::try_from(wave.num_channels.max(1)).unwrap_or(1);
        let samples = if n == 0 || wave.samples.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(wave.samples, n).to_vec()
        };
        let rate = u32::try_from(wave.sample_rate).unwrap_or(16_000);
        delete_wave(w);
        Ok((samples, rate))
    }
}

fn stopped() -> TtsError {
    TtsError::Synthesis("the flite thread stopped".into())
}

/// Queues one sentence and waits for its PCM.
async fn speak(
    jobs: &mpsc::Sender<Request>,
    sentence: String,
    voice: usize,
    cancel: CancellationToken,
) -> Result<Vec<i16>, TtsError> {
    let (reply, answer) = oneshot::channel();
    let job = Job {
        sentence,
        voice,
        cancel,
        reply,
    };
    jobs.send(Request::Speak(job))
        .await
        .map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// The flite backend with one voice.
pub struct FliteTts {
    engine: &'static Engine,
    /// Index into [`VOICES`].
    voice: usize,
}

impl FliteTts {
    /// Selects `voice` (one of [`VOICES`]); the first call in a process starts the flite
    /// thread.
    pub fn new(voice: &str) -> Result<Self, TtsError> {
        let Some(idx) = VOICES.iter().position(|&v| v == voice) else {
            return Err(TtsError::Init(format!(
                "unknown flite voice `{voice}`; built in: {VOICES:?}"
            )));
        };
        Ok(Self {
            engine: engine()?,
            voice: idx,
        })
    }
}

#[async_trait]
impl TextToSpeech for FliteTts {
    fn name(&self) -> &'static str {
        "flite"
    }

    fn sample_rate(&self) -> u32 {
        self.engine.rates.get(self.voice).copied().unwrap_or(16_000)
    }

    async fn synthesize(
        &self,
        req: &TtsRequest,
        cancel: CancellationToken,
    ) -> Result<TtsStream, TtsError> {
        let (tx, rx) = mpsc::channel(TTS_CHUNK_CAPACITY);
        // Plain text only (flite takes no SSML); the voice is the configured one.
        let sentences = split_sentences(&req.text);
        let (jobs, voice) = (self.engine.jobs.clone(), self.voice);
        tokio::spawn(async move {
            for sentence in sentences {
                let res = tokio::select! {
                    // A job the thread skipped has no answer: cancellation wins that race.
                    biased;
                    _ = cancel.cancelled() => return,
                    res = speak(&jobs, sentence, voice, cancel.clone()) => res,
                };
                let failed = res.is_err();
                if tx.send(res).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// `[tts] provider = "flite"` as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FliteConfig {
    /// Voice: `slt` (female), `rms` or `awb` (male); all 16 kHz.
    pub voice: String,
}

impl Default for FliteConfig {
    fn default() -> Self {
        Self {
            voice: "slt".into(),
        }
    }
}

/// Validated flite settings.
#[derive(Debug, Clone)]
pub struct FliteSettings {
    /// One of [`VOICES`].
    pub voice: String,
}

impl crate::component::Component for FliteSettings {
    type Raw = FliteConfig;

    fn validate(
        raw: FliteConfig,
        ctx: &crate::component::Ctx<'_>,
        errs: &mut crate::component::Errors,
    ) -> Self {
        errs.check(
            VOICES.contains(&raw.voice.as_str()),
            &ctx.key("voice"),
            &format!("unknown flite voice; built in: {VOICES:?}"),
        );
        Self { voice: raw.voice }
    }
}

impl super::TtsBackend for FliteSettings {
    fn build(&self) -> Result<std::sync::Arc<dyn TextToSpeech>, TtsError> {
        Ok(std::sync::Arc::new(FliteTts::new(&self.voice)?))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spoken(sentence: &str) -> bool {
        SPOKEN.lock().unwrap().iter().any(|s| s == sentence)
    }

    /// Keeps the flite thread busy (behind whatever is queued now) until the guard drops.
    async fn hold_thread() -> std::sync::mpsc::Sender<()> {
        let (guard, until) = std::sync::mpsc::channel();
        engine()
            .unwrap()
            .jobs
            .send(Request::Hold(until))
            .await
            .unwrap();
        guard
    }

    #[tokio::test]
    async fn speaks_each_sentence_at_16_khz() {
        let tts = FliteTts::new("slt").unwrap();
        assert_eq!(tts.sample_rate(), 16_000);
        let mut rx = tts
            .synthesize(
                &TtsRequest::text("Hello there. How can I help?"),
                CancellationToken::new(),
            )
            .await
            .unwrap();
        let mut chunks = Vec::new();
        while let Some(c) = rx.recv().await {
            chunks.push(c.unwrap());
        }
        assert_eq!(chunks.len(), 2);
        for c in &chunks {
            // Each sentence is at least half a second of non-silent audio.
            assert!(c.len() > 8_000, "{}", c.len());
            assert!(c.iter().any(|&s| s.abs() > 1_000));
        }
    }

    #[tokio::test]
    async fn cancel_stops_the_stream() {
        let tts = FliteTts::new("slt").unwrap();
        let cancel = CancellationToken::new();
        let mut rx = tts
            .synthesize(
                &TtsRequest::text("One. Two. Three. Four. Five. Six."),
                cancel.clone(),
            )
            .await
            .unwrap();
        cancel.cancel();
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
        }
        assert!(n < 6);
    }

    #[test]
    fn unknown_voices_are_refused() {
        let err = FliteTts::new("kal").err().unwrap();
        assert!(err.to_string().contains("unknown flite voice"), "{err}");
    }

    /// Issue 8: a queued job whose token was cancelled is dropped unanswered and never
    /// synthesized; the job behind it is.
    #[tokio::test]
    async fn issue_8_the_flite_thread_skips_cancelled_jobs() {
        let jobs = &engine().unwrap().jobs;
        let guard = hold_thread().await;
        let job = |sentence: &str, cancel: &CancellationToken| {
            let (reply, answer) = oneshot::channel();
            let job = Job {
                sentence: sentence.into(),
                voice: 0,
                cancel: cancel.clone(),
                reply,
            };
            (Request::Speak(job), answer)
        };
        let barged_in = CancellationToken::new();
        let (skip, skipped) = job("Zanzibar was barged in.", &barged_in);
        let (keep, kept) = job("Yokohama is still wanted.", &CancellationToken::new());
        jobs.send(skip).await.unwrap();
        jobs.send(keep).await.unwrap();
        barged_in.cancel();
        drop(guard);
        assert!(skipped.await.is_err(), "a cancelled job was answered");
        assert!(!kept.await.unwrap().unwrap().is_empty());
        assert!(!spoken("Zanzibar was barged in."));
        assert!(spoken("Yokohama is still wanted."));
    }

    /// Issue 8: a message barged in while its sentence waits for the engine yields nothing,
    /// and the sentence is never synthesized.
    #[tokio::test]
    async fn issue_8_a_barged_in_message_is_not_synthesized() {
        let tts = FliteTts::new("slt").unwrap();
        let guard = hold_thread().await;
        let cancel = CancellationToken::new();
        let mut rx = tts
            .synthesize(
                &TtsRequest::text("Timbuktu was interrupted."),
                cancel.clone(),
            )
            .await
            .unwrap();
        // Let the stream's task queue its sentence behind the hold.
        tokio::task::yield_now().await;
        cancel.cancel();
        drop(guard);
        assert!(rx.recv().await.is_none());
        // Once a later sentence is done, the cancelled one has been passed (one FIFO queue).
        let mut after = tts
            .synthesize(&TtsRequest::text("Later words."), CancellationToken::new())
            .await
            .unwrap();
        assert!(after.recv().await.unwrap().is_ok());
        assert!(!spoken("Timbuktu was interrupted."));
    }

    /// Issue 8: synthesis waits on no tokio blocking thread, so a busy blocking pool (whisper
    /// decodes) cannot hold up speech, and speech cannot hold up decodes.
    #[test]
    fn issue_8_synthesis_needs_no_tokio_blocking_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        rt.block_on(async {
            let tts = FliteTts::new("slt").unwrap();
            let (release, held) = std::sync::mpsc::channel::<()>();
            let hog = tokio::task::spawn_blocking(move || {
                let _ = held.recv_timeout(Duration::from_secs(30));
            });
            let first = tokio::time::timeout(Duration::from_secs(5), async {
                let mut rx = tts
                    .synthesize(
                        &TtsRequest::text("Still speaking."),
                        CancellationToken::new(),
                    )
                    .await
                    .unwrap();
                rx.recv().await
            })
            .await;
            let _ = release.send(());
            hog.await.unwrap();
            let chunk = first.expect("synthesis waited for the blocking pool");
            assert!(!chunk.expect("a chunk").unwrap().is_empty());
        });
    }
}
