//! Audio: PCM frames, G.711 codecs, resampling, voice activity detection and endpointing
//! (earshot per frame, Silero VAD as a second opinion, smart-turn for the end of a turn),
//! outbound pacing. Knows nothing of providers, vendors or calls.

pub mod codec;
pub mod onnx;
pub mod pacer;
pub mod resample;
pub mod silero;
pub mod smart_turn;
pub mod vad;
pub mod wav;

/// Sample rate of telephony G.711 audio.
pub const TELEPHONY_RATE: u32 = 8_000;
/// Internal rate for VAD and STT.
pub const INTERNAL_RATE: u32 = 16_000;
/// Outbound frame length.
pub const FRAME_MS: u64 = 20;

/// Mono 16-bit PCM with an explicit sample rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// Samples, mono.
    pub samples: Vec<i16>,
    /// Samples per second.
    pub sample_rate: u32,
}

impl AudioFrame {
    /// Duration of the frame in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(self.sample_rate.max(1))
    }
}
