//! Embedded offline TTS: CMU flite (BSD-style licence) through a minimal FFI binding, one
//! sentence at a time on a blocking thread. flite keeps global state and is not documented as
//! thread-safe, so syntheses are serialised by one lock; a sentence takes a few tens of ms.

use std::ffi::{c_char, c_int, c_short, CString};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{split_sentences, TextToSpeech, TtsError, TtsRequest, TtsStream, TTS_CHUNK_CAPACITY};

/// Voices linked into the binary.
pub const VOICES: &[&str] = &["slt", "rms", "awb"];

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

/// A registered voice. The pointer is only used under [`ENGINE`]'s lock.
struct Voice(*mut CstVoice);
// SAFETY: the voice is only touched while holding the engine lock.
unsafe impl Send for Voice {}

/// flite's global lock: initialisation and every synthesis go through it.
static ENGINE: OnceLock<Mutex<()>> = OnceLock::new();

fn engine() -> &'static Mutex<()> {
    ENGINE.get_or_init(|| {
        // SAFETY: flite_init only sets up global tables; OnceLock runs it once.
        unsafe { flite_init() };
        Mutex::new(())
    })
}

/// The flite backend with one voice.
pub struct FliteTts {
    voice: Arc<Mutex<Voice>>,
    rate: u32,
}

impl FliteTts {
    /// Registers `voice` (one of [`VOICES`]) and measures its sample rate.
    pub fn new(voice: &str) -> Result<Self, TtsError> {
        let lock = engine()
            .lock()
            .map_err(|_| TtsError::Init("flite lock poisoned".into()))?;
        // SAFETY: registration functions take an optional voice dir (null) and return a
        // voice owned by flite for the life of the process.
        let v = unsafe {
            match voice {
                "slt" => register_cmu_us_slt(std::ptr::null()),
                "rms" => register_cmu_us_rms(std::ptr::null()),
                "awb" => register_cmu_us_awb(std::ptr::null()),
                other => {
                    return Err(TtsError::Init(format!(
                        "unknown flite voice `{other}`; built in: {VOICES:?}"
                    )))
                }
            }
        };
        if v.is_null() {
            return Err(TtsError::Init(format!(
                "flite could not register voice {voice}"
            )));
        }
        let voice = Voice(v);
        let (_, rate) = synth_locked(&voice, "ok")?;
        drop(lock);
        Ok(Self {
            voice: Arc::new(Mutex::new(voice)),
            rate,
        })
    }
}

/// Synthesizes one piece of text; the caller holds the engine lock.
fn synth_locked(voice: &Voice, text: &str) -> Result<(Vec<i16>, u32), TtsError> {
    let c =
        CString::new(text.replace('\0', " ")).map_err(|e| TtsError::Synthesis(e.to_string()))?;
    // SAFETY: valid C string and a registered voice; the returned wave is owned by us and
    // freed below with delete_wave after copying its samples.
    unsafe {
        let w = flite_text_to_wave(c.as_ptr(), voice.0);
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

#[async_trait]
impl TextToSpeech for FliteTts {
    fn name(&self) -> &'static str {
        "flite"
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }

    async fn synthesize(
        &self,
        req: &TtsRequest,
        cancel: CancellationToken,
    ) -> Result<TtsStream, TtsError> {
        let (tx, rx) = mpsc::channel(TTS_CHUNK_CAPACITY);
        // Plain text only (flite and the fake take no SSML); the voice is the configured one.
        let sentences = split_sentences(&req.text);
        let voice = self.voice.clone();
        tokio::spawn(async move {
            for sentence in sentences {
                let voice = voice.clone();
                let job = tokio::task::spawn_blocking(move || {
                    let _engine = engine()
                        .lock()
                        .map_err(|_| TtsError::Synthesis("flite lock poisoned".into()))?;
                    let v = voice
                        .lock()
                        .map_err(|_| TtsError::Synthesis("voice lock poisoned".into()))?;
                    synth_locked(&v, &sentence).map(|(s, _)| s)
                });
                let res = tokio::select! {
                    _ = cancel.cancelled() => return,
                    res = job => res.unwrap_or_else(|e| Err(TtsError::Synthesis(e.to_string()))),
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
    fn build(&self) -> Result<Arc<dyn TextToSpeech>, TtsError> {
        Ok(Arc::new(FliteTts::new(&self.voice)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
