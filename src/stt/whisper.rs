//! Embedded offline STT: whisper.cpp (via `whisper-rs`) decoding each utterance on a blocking
//! thread. A fixed pool of decoder states bounds parallelism and memory; `audio_ctx` is sized
//! to the utterance, which is several times faster than whisper's default 30 s window.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::{
    SpeechToText, SttControl, SttError, SttEvent, SttInput, SttParams, SttStream, Transcript,
    STT_EVENT_CAPACITY, STT_INPUT_CAPACITY,
};
use crate::audio::vad;
use crate::component::{Component, Ctx, Errors};
use crate::telemetry::metrics;

const RATE: u32 = 16_000;
/// earshot score of a speech frame for the no-speech check (the VAD's default threshold).
const SPEECH_SCORE: f32 = 0.5;
/// Utterances with a smaller share of speech frames than this hold no speech.
const MIN_SPEECH_SHARE: f32 = 0.1;
/// whisper.cpp ignores input shorter than one second; shorter utterances are padded.
const MIN_SAMPLES: usize = RATE as usize + RATE as usize / 10;
/// whisper's window: 30 s.
const MAX_SAMPLES: usize = 30 * RATE as usize;
/// Encoder positions per second of audio (1500 per 30 s).
const CTX_PER_SEC: usize = 50;
/// Extra encoder context. Measured on 8 kHz μ-law speech from four flite voices: a margin of
/// 128 or 192 produced repetition loops and temperature fallbacks on some utterances (decode
/// time above real time); 384 decoded all of them correctly at a real-time factor of ~0.13.
const CTX_MARGIN: usize = 384;
/// Token budget per second of audio (speech is ~3–4 tokens/s); bounds a runaway decode.
const TOKENS_PER_SEC: usize = 8;

/// Threads per decode such that `parallel` decodes at once use at most `cores` threads.
/// ggml's threads meet at a barrier after every operation, so a thread without a core
/// stalls its whole decode; more threads than cores never add throughput (README,
/// Performance).
fn decode_threads(threads: usize, parallel: usize, cores: usize) -> usize {
    threads.min(cores / parallel.max(1)).max(1)
}

/// The whisper.cpp backend.
pub struct WhisperStt {
    inner: Arc<Inner>,
}

struct Inner {
    /// Kept alive for the states created from it.
    _ctx: WhisperContext,
    states: Mutex<Vec<WhisperState>>,
    /// One permit per pooled state. A permit travels with its decode into the blocking
    /// closure (owned), so it is only released once that decode has put its state back.
    permits: Arc<Semaphore>,
    language: String,
    threads: usize,
}

impl WhisperStt {
    /// Loads the model and creates the decoder pool.
    pub fn load(s: &WhisperSettings) -> Result<Self, SttError> {
        whisper_rs::install_logging_hooks();
        if !std::path::Path::new(&s.model_path).is_file() {
            return Err(SttError::Init(format!(
                "model file {} not found: run `python3 scripts/install-model.py` first",
                s.model_path
            )));
        }
        let ctx =
            WhisperContext::new_with_params(&s.model_path, WhisperContextParameters::default())
                .map_err(|e| SttError::Init(format!("loading {}: {e}", s.model_path)))?;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let threads = decode_threads(s.threads, s.max_parallel_decodes, cores);
        if threads < s.threads {
            tracing::warn!(
                configured = s.threads,
                threads,
                max_parallel_decodes = s.max_parallel_decodes,
                cores,
                "Fewer whisper threads per decode than stt.threads, so parallel decodes fit the cores."
            );
        }
        let states = (0..s.max_parallel_decodes)
            .map(|_| ctx.create_state())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SttError::Init(format!("creating decoder state: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                _ctx: ctx,
                states: Mutex::new(states),
                permits: Arc::new(Semaphore::new(s.max_parallel_decodes)),
                language: s.language.clone(),
                threads,
            }),
        })
    }

    /// Threads each decode uses: `stt.threads`, lowered so that `max_parallel_decodes`
    /// decodes at once fit the cores.
    pub fn threads_per_decode(&self) -> usize {
        self.inner.threads
    }

    /// Decodes one utterance (16 kHz mono) to text; runs the model on a blocking thread.
    pub async fn transcribe(&self, samples: Vec<i16>) -> Result<Transcript, SttError> {
        self.inner.clone().transcribe(samples, None).await
    }
}

impl Inner {
    async fn transcribe(
        self: Arc<Self>,
        samples: Vec<i16>,
        language: Option<Arc<str>>,
    ) -> Result<Transcript, SttError> {
        let queued = tokio::time::Instant::now();
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SttError::Closed)?;
        let me = self.clone();
        // If this future is dropped (the call hung up, the session was cancelled), the
        // blocking decode still runs to the end with a state out of the pool. The permit is
        // moved in here so that it is released only after the state is back.
        tokio::task::spawn_blocking(move || {
            let language = language.as_deref().unwrap_or(&me.language);
            let res = me.decode_blocking(&samples, language, queued);
            drop(permit);
            res
        })
        .await
        .map_err(|e| SttError::Decode(format!("decoder thread: {e}")))?
    }

    /// Decodes on the calling (blocking) thread; `queued` is when the utterance asked for a
    /// permit, so the wait includes the blocking pool's own scheduling delay.
    fn decode_blocking(
        &self,
        samples: &[i16],
        language: &str,
        queued: tokio::time::Instant,
    ) -> Result<Transcript, SttError> {
        let started = tokio::time::Instant::now();
        let audio_ms = samples.len() as u64 * 1000 / u64::from(RATE);
        let mut pcm: Vec<f32> = samples
            .iter()
            .take(MAX_SAMPLES)
            .map(|&s| f32::from(s) / 32_768.0)
            .collect();
        if pcm.len() < MIN_SAMPLES {
            pcm.resize(MIN_SAMPLES, 0.0);
        }
        // Whisper turns near-silence and noise into "you" or "Thank you."; its no-speech
        // probability does not help (single-segment decoding without timestamps reports
        // about 2e-5 on silence, measured), so the VAD's second look decides.
        if vad::speech_share(samples, SPEECH_SCORE) < MIN_SPEECH_SHARE {
            metrics::stt_guarded("no_speech");
            tracing::info!(audio_ms, "No speech in the utterance; not decoded.");
            return Ok(Transcript {
                text: String::new(),
                confidence: None,
                audio_ms,
                decode_ms: 0,
                queue_ms: (started - queued).as_millis() as u64,
            });
        }
        let audio_ctx = (pcm.len() * CTX_PER_SEC / RATE as usize + CTX_MARGIN).min(1500);

        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_language(Some(language));
        params.set_n_threads(self.threads as i32);
        params.set_audio_ctx(audio_ctx as i32);
        params.set_max_tokens((16 + pcm.len() * TOKENS_PER_SEC / RATE as usize) as i32);
        params.set_no_context(true);
        params.set_single_segment(true);
        params.set_no_timestamps(true);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);

        // The permit guarantees a free state; the lock is held only to take and return it.
        let mut state = self
            .states
            .lock()
            .map_err(|_| SttError::Decode("decoder pool poisoned".into()))?
            .pop()
            .ok_or_else(|| SttError::Decode("no free decoder state".into()))?;
        let res = state.full(params, &pcm);
        let out = res
            .map_err(|e| SttError::Decode(e.to_string()))
            .map(|_| collect_text(&state));
        if let Ok(mut pool) = self.states.lock() {
            pool.push(state);
        }
        let (text, confidence) = out?;
        Ok(Transcript {
            text,
            confidence,
            audio_ms,
            decode_ms: started.elapsed().as_millis() as u64,
            queue_ms: (started - queued).as_millis() as u64,
        })
    }
}

/// Joins the segments' text and averages the probability of the text tokens.
fn collect_text(state: &WhisperState) -> (String, Option<f32>) {
    let mut text = String::new();
    let (mut p_sum, mut n) = (0.0f32, 0u32);
    for seg in state.as_iter() {
        if let Ok(t) = seg.to_str_lossy() {
            text.push_str(&t);
        }
        for i in 0..seg.n_tokens() {
            if let Some(tok) = seg.get_token(i) {
                let is_text = tok.to_str_lossy().is_ok_and(|s| !s.starts_with("[_"));
                if is_text {
                    p_sum += tok.token_probability();
                    n += 1;
                }
            }
        }
    }
    (clean(&text), (n > 0).then(|| p_sum / n as f32))
}

/// Trims whisper's output and drops its non-speech annotations (`[BLANK_AUDIO]`, `(music)`)
/// and text without a letter or digit (`♪`, stray bytes).
fn clean(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut depth = 0i32;
    for c in raw.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth = (depth - 1).max(0),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    if !out.chars().any(char::is_alphanumeric) {
        return String::new();
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[async_trait]
impl SpeechToText for WhisperStt {
    fn name(&self) -> &'static str {
        "whisper"
    }

    fn sample_rate(&self) -> u32 {
        RATE
    }

    async fn open(
        &self,
        params: SttParams,
        cancel: CancellationToken,
    ) -> Result<SttStream, SttError> {
        let (input_tx, mut input_rx) = mpsc::channel(STT_INPUT_CAPACITY);
        let (event_tx, events) = mpsc::channel(STT_EVENT_CAPACITY);
        let inner = self.inner.clone();
        let language: Option<Arc<str>> = params.language.map(Arc::from);
        let task = async move {
            let mut buf: Vec<i16> = Vec::new();
            loop {
                let input = tokio::select! {
                    _ = cancel.cancelled() => break,
                    it = input_rx.recv() => match it { Some(it) => it, None => break },
                };
                match input {
                    SttInput::Audio(samples) => {
                        if buf.len() < MAX_SAMPLES {
                            buf.extend_from_slice(&samples);
                        }
                    }
                    // Nothing to keep alive locally.
                    SttInput::Control(SttControl::KeepAlive) => {}
                    SttInput::Control(SttControl::Close) => break,
                    SttInput::Control(SttControl::Finalize) => {
                        let audio = std::mem::take(&mut buf);
                        if audio.is_empty() {
                            // Nothing to decode: whisper would hallucinate words ("you")
                            // on the padding alone.
                            let empty = SttEvent::Final(Transcript {
                                text: String::new(),
                                confidence: None,
                                audio_ms: 0,
                                decode_ms: 0,
                                queue_ms: 0,
                            });
                            if event_tx.send(empty).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        let res = tokio::select! {
                            _ = cancel.cancelled() => break,
                            res = inner.clone().transcribe(audio, language.clone()) => res,
                        };
                        let ev = match res {
                            Ok(t) => {
                                tracing::debug!(call_id = %params.call_id,
                                    audio_ms = t.audio_ms, decode_ms = t.decode_ms,
                                    queue_ms = t.queue_ms, "Utterance decoded.");
                                SttEvent::Final(t)
                            }
                            Err(e) => SttEvent::Error(e.to_string()),
                        };
                        if event_tx.send(ev).await.is_err() {
                            break;
                        }
                    }
                }
            }
        };
        tokio::spawn(tracing::Instrument::in_current_span(task));
        Ok(SttStream {
            input: input_tx,
            events,
        })
    }
}

/// `[stt] provider = "whisper"` as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhisperConfig {
    /// ggml model file (made by `scripts/install-model.py`).
    pub model_path: String,
    /// Spoken language code.
    pub language: String,
    /// Threads per decode.
    pub threads: usize,
    /// Decodes running at once across all calls; more wait their turn.
    pub max_parallel_decodes: usize,
}

impl Default for WhisperConfig {
    fn default() -> Self {
        Self {
            model_path: "models/ggml-tiny.en.bin".into(),
            language: "en".into(),
            threads: 2,
            max_parallel_decodes: 1,
        }
    }
}

/// Validated whisper settings.
#[derive(Debug, Clone)]
pub struct WhisperSettings {
    /// Model path.
    pub model_path: String,
    /// Language code.
    pub language: String,
    /// Threads per decode.
    pub threads: usize,
    /// Parallel decodes.
    pub max_parallel_decodes: usize,
}

impl Component for WhisperSettings {
    type Raw = WhisperConfig;

    fn validate(w: WhisperConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            !w.model_path.is_empty(),
            &ctx.key("model_path"),
            "must name the ggml model file",
        );
        errs.check(w.threads > 0, &ctx.key("threads"), "must be at least 1");
        errs.check(
            w.max_parallel_decodes > 0,
            &ctx.key("max_parallel_decodes"),
            "must be at least 1",
        );
        WhisperSettings {
            model_path: w.model_path,
            language: w.language,
            threads: w.threads,
            max_parallel_decodes: w.max_parallel_decodes,
        }
    }
}

/// Seconds of one core's time per second of speech for tiny.en: about 9 s of speech per
/// core-second (`cargo bench --bench whisper`, README "Speech recognition capacity"),
/// rounded up for a machine that also runs the calls; larger models cost more.
const CORE_SECONDS_PER_SPEECH_SECOND: f64 = 0.125;
/// Share of a call's time the caller speaks (a typical IVR conversation: the bot talks
/// most of the time).
const SPEECH_SHARE: f64 = 0.25;

impl super::SttBackend for WhisperSettings {
    fn build(&self) -> Result<Arc<dyn SpeechToText>, SttError> {
        Ok(Arc::new(WhisperStt::load(self)?))
    }

    fn capacity(&self, cores: usize) -> Option<usize> {
        let per_call = CORE_SECONDS_PER_SPEECH_SECOND * SPEECH_SHARE;
        Some(((cores as f64) / per_call).floor() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tts::TextToSpeech as _;

    fn load(max_parallel_decodes: usize) -> WhisperStt {
        WhisperStt::load(&WhisperSettings {
            model_path: concat!(env!("CARGO_MANIFEST_DIR"), "/models/ggml-tiny.en.bin").into(),
            language: "en".into(),
            threads: 2,
            max_parallel_decodes,
        })
        .unwrap()
    }

    /// `text` spoken by flite at whisper's rate (flite's voices are 16 kHz already).
    async fn speech_16k(text: &str) -> Vec<i16> {
        let tts = crate::tts::flite::FliteTts::new("rms").unwrap();
        assert_eq!(tts.sample_rate(), RATE);
        let mut rx = tts
            .synthesize(
                &crate::tts::TtsRequest::text(text),
                CancellationToken::new(),
            )
            .await
            .unwrap();
        let mut pcm = Vec::new();
        while let Some(chunk) = rx.recv().await {
            pcm.extend(chunk.unwrap());
        }
        pcm
    }

    /// Issue 8: a decode cancelled mid-way kept its decoder state on the blocking thread but
    /// gave its permit back, so the next utterance failed with "no free decoder state".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn issue_8_cancelled_decode_keeps_its_permit_until_the_state_is_back() {
        let stt = load(1);
        let long = speech_16k(
            "I would like to check the balance of my savings account. \
             Then please tell me when my last payment arrived, and how much it was.",
        )
        .await;
        assert!(long.len() > 4 * RATE as usize, "{}", long.len());
        let short = speech_16k("Please send me a new debit card.").await;

        let first = tokio::spawn(stt.inner.clone().transcribe(long, None));
        // Wait until the blocking decode has taken the only state out of the pool.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !stt.inner.states.lock().unwrap().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "decode never started"
            );
            tokio::task::yield_now().await;
        }
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());

        let res = stt.transcribe(short).await;
        let t = res.expect("second decode after a cancelled one");
        assert!(t.text.to_lowercase().contains("debit card"), "{t:?}");
        // It waited for the cancelled decode to finish.
        assert!(t.queue_ms > 0, "{t:?}");
    }

    #[test]
    fn parallel_decodes_never_use_more_threads_than_cores() {
        assert_eq!(decode_threads(2, 1, 2), 2);
        assert_eq!(decode_threads(2, 2, 2), 1);
        assert_eq!(decode_threads(4, 3, 2), 1);
        assert_eq!(decode_threads(4, 2, 16), 4);
        assert_eq!(decode_threads(8, 2, 8), 4);
        assert_eq!(decode_threads(1, 0, 1), 1);
    }

    #[test]
    fn clean_drops_annotations_and_spaces() {
        assert_eq!(clean(" [BLANK_AUDIO] hello  there (music) "), "hello there");
        assert_eq!(
            clean(" I would like my balance."),
            "I would like my balance."
        );
    }
}
