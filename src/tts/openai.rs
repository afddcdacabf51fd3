//! OpenAI-compatible speech: one `POST {base_url}/v1/audio/speech` per sentence (`model`,
//! `voice`, `input`, `response_format` = `pcm` or `wav`), the response body streamed to the
//! call as it arrives, so the first audio plays while the server is still synthesizing.
//! OpenAI's `pcm` is headerless 24 kHz s16le; compatible servers differ, so the rate is
//! configured, taken from a `rate=` in the Content-Type when the server sends one, and for
//! `wav` read from the RIFF header. Audio at another rate than the configured one is
//! resampled here, once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::http::{next_piece, send, speak_request, ChunkTx, Failure};
use super::{TextToSpeech, TtsBackend, TtsError, TtsRequest, TtsStream};
use crate::audio::resample::Resampler;
use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;

/// Name in config, logs and the metrics' `backend` label.
const NAME: &str = "openai";
/// OpenAI's limit on `input`.
const MAX_INPUT_CHARS: usize = 4_096;

/// `[tts] provider = "openai"` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiTtsConfig {
    /// Bearer key; required for api.openai.com, optional for a self-hosted server.
    pub api_key: SensitiveString,
    /// `https://api.openai.com` or a compatible server (`/v1/audio/speech` is appended).
    pub base_url: String,
    /// `model` (`tts-1`, `gpt-4o-mini-tts`, …).
    pub model: String,
    /// `voice` (`alloy`, `nova`, …); a request's voice overrides it.
    pub voice: String,
    /// `pcm` (headerless s16le) or `wav`.
    pub response_format: String,
    /// Rate of `pcm` audio when the server does not say (OpenAI: 24000), and the rate this
    /// backend hands out.
    pub sample_rate: u32,
    /// `speed`, 0.25..=4.0.
    pub speed: f32,
    /// Time allowed until the response starts.
    pub first_byte_timeout_ms: u64,
    /// Time allowed between two pieces of the body.
    pub read_timeout_ms: u64,
    /// Connection deadline.
    pub connect_timeout_ms: u64,
}

impl Default for OpenAiTtsConfig {
    fn default() -> Self {
        Self {
            api_key: SensitiveString::default(),
            base_url: "https://api.openai.com".into(),
            model: "tts-1".into(),
            voice: "alloy".into(),
            response_format: "pcm".into(),
            sample_rate: 24_000,
            speed: 1.0,
            first_byte_timeout_ms: 5_000,
            read_timeout_ms: 5_000,
            connect_timeout_ms: 3_000,
        }
    }
}

/// Body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Headerless s16le mono.
    Pcm,
    /// A RIFF header, then s16le.
    Wav,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct OpenAiTtsSettings {
    /// Bearer key (`None`: no header).
    pub api_key: Option<SensitiveString>,
    /// The speech endpoint.
    pub url: String,
    /// Model.
    pub model: String,
    /// Default voice.
    pub voice: String,
    /// Body format.
    pub format: Format,
    /// Output rate (and `pcm`'s assumed rate).
    pub sample_rate: u32,
    /// Speed.
    pub speed: f32,
    /// First-byte deadline.
    pub first_byte_timeout: Duration,
    /// Per-read deadline.
    pub read_timeout: Duration,
    /// Connect deadline.
    pub connect_timeout: Duration,
}

impl Component for OpenAiTtsSettings {
    type Raw = OpenAiTtsConfig;

    fn validate(raw: OpenAiTtsConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        let base = crate::stt::openai::endpoint(&raw.base_url, &raw.api_key, ctx, errs);
        errs.check(
            !raw.model.trim().is_empty(),
            &ctx.key("model"),
            "must not be empty",
        );
        errs.check(
            !raw.voice.trim().is_empty(),
            &ctx.key("voice"),
            "must not be empty",
        );
        let format = match raw.response_format.as_str() {
            "pcm" => Format::Pcm,
            "wav" => Format::Wav,
            _ => {
                errs.push(
                    &ctx.key("response_format"),
                    "must be \"pcm\" or \"wav\" (voxhook does not decode compressed audio)",
                );
                Format::Pcm
            }
        };
        errs.check(
            (8_000..=48_000).contains(&raw.sample_rate),
            &ctx.key("sample_rate"),
            "must be 8000..=48000",
        );
        errs.check(
            (0.25..=4.0).contains(&raw.speed),
            &ctx.key("speed"),
            "must be 0.25..=4.0",
        );
        for (key, ms) in [
            ("first_byte_timeout_ms", raw.first_byte_timeout_ms),
            ("read_timeout_ms", raw.read_timeout_ms),
            ("connect_timeout_ms", raw.connect_timeout_ms),
        ] {
            errs.check(
                (100..=60_000).contains(&ms),
                &ctx.key(key),
                "must be 100..=60000",
            );
        }
        Self {
            api_key: (!raw.api_key.is_empty()).then_some(raw.api_key),
            url: format!("{base}/v1/audio/speech"),
            model: raw.model,
            voice: raw.voice,
            format,
            sample_rate: raw.sample_rate,
            speed: raw.speed,
            first_byte_timeout: Duration::from_millis(raw.first_byte_timeout_ms),
            read_timeout: Duration::from_millis(raw.read_timeout_ms),
            connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
        }
    }
}

impl TtsBackend for OpenAiTtsSettings {
    fn build(&self) -> Result<Arc<dyn TextToSpeech>, TtsError> {
        let http = super::http::client(NAME, self.connect_timeout)?;
        Ok(Arc::new(OpenAiTts(Arc::new(Client {
            cfg: self.clone(),
            http,
        }))))
    }
}

struct Client {
    cfg: OpenAiTtsSettings,
    http: reqwest::Client,
}

/// The OpenAI-compatible backend.
#[derive(Clone)]
pub struct OpenAiTts(Arc<Client>);

#[async_trait]
impl TextToSpeech for OpenAiTts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sample_rate(&self) -> u32 {
        self.0.cfg.sample_rate
    }

    async fn synthesize(
        &self,
        req: &TtsRequest,
        cancel: CancellationToken,
    ) -> Result<TtsStream, TtsError> {
        Ok(speak_request(
            NAME,
            req,
            &self.0.cfg.voice,
            cancel,
            self.0.clone(),
            |client, sentence, voice, tx| async move { client.speak(&sentence, &voice, &tx).await },
        ))
    }
}

impl Client {
    /// Speaks one sentence into `tx`; `Ok(false)`: the receiver is gone.
    async fn speak(&self, sentence: &str, voice: &str, tx: &ChunkTx) -> Result<bool, Failure> {
        let input: String = sentence.chars().take(MAX_INPUT_CHARS).collect();
        let format = match self.cfg.format {
            Format::Pcm => "pcm",
            Format::Wav => "wav",
        };
        let body = serde_json::json!({
            "model": self.cfg.model, "voice": voice, "input": input,
            "response_format": format, "speed": self.cfg.speed,
        });
        let mut req = self.http.post(&self.cfg.url).json(&body);
        if let Some(key) = &self.cfg.api_key {
            req = req.bearer_auth(key.expose());
        }
        let mut resp = send(req, self.cfg.first_byte_timeout).await?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut decoder = BodyDecoder::new(
            self.cfg.format,
            rate_in(content_type).unwrap_or(self.cfg.sample_rate),
            self.cfg.sample_rate,
        );
        let mut out = Vec::new();
        loop {
            let piece = next_piece(&mut resp, self.cfg.read_timeout).await?;
            out.clear();
            let done = match &piece {
                Some(bytes) => {
                    decoder.push(bytes, &mut out)?;
                    false
                }
                None => {
                    decoder.finish(&mut out)?;
                    true
                }
            };
            if !out.is_empty() && tx.send(Ok(out.clone())).await.is_err() {
                return Ok(false);
            }
            if done {
                return Ok(true);
            }
        }
    }
}

/// `rate=N` in a Content-Type such as `audio/pcm;rate=24000;channels=1`.
fn rate_in(content_type: &str) -> Option<u32> {
    content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("rate="))
        .and_then(|r| r.trim().parse().ok())
        .filter(|r| (8_000..=96_000).contains(r))
}

/// Turns body bytes (pcm, or wav with its header) into PCM at the output rate, across
/// arbitrary chunk boundaries.
struct BodyDecoder {
    /// Bytes not yet decoded (a WAV header in progress, an odd byte).
    pending: Vec<u8>,
    /// Still reading a WAV header.
    in_header: bool,
    rate: u32,
    out_rate: u32,
    channels: usize,
    resampler: Option<Resampler>,
    samples: Vec<i16>,
}

impl BodyDecoder {
    fn new(format: Format, rate: u32, out_rate: u32) -> Self {
        Self {
            pending: Vec::new(),
            in_header: format == Format::Wav,
            rate,
            out_rate,
            channels: 1,
            resampler: None,
            samples: Vec::new(),
        }
    }

    fn push(&mut self, bytes: &[u8], out: &mut Vec<i16>) -> Result<(), Failure> {
        self.pending.extend_from_slice(bytes);
        if self.in_header && !self.header()? {
            return Ok(());
        }
        let frame = 2 * self.channels;
        let whole = self.pending.len() / frame * frame;
        self.samples.clear();
        self.samples
            .extend(self.pending[..whole].chunks_exact(frame).map(|f| {
                let sum: i32 = f
                    .chunks_exact(2)
                    .map(|b| i32::from(i16::from_le_bytes([b[0], b[1]])))
                    .sum();
                (sum / self.channels as i32) as i16
            }));
        self.pending.drain(..whole);
        self.convert(out)
    }

    fn convert(&mut self, out: &mut Vec<i16>) -> Result<(), Failure> {
        if self.rate == self.out_rate {
            out.extend_from_slice(&self.samples);
            return Ok(());
        }
        if self.resampler.is_none() {
            let r = Resampler::new(self.rate, self.out_rate)
                .map_err(|e| ("protocol", format!("cannot resample: {e}")))?;
            self.resampler = Some(r);
        }
        if let Some(r) = &mut self.resampler {
            r.process(&self.samples, out);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<i16>) -> Result<(), Failure> {
        if self.in_header && !self.pending.is_empty() {
            return Err(("protocol", "the WAV header never ended".into()));
        }
        if let Some(r) = &mut self.resampler {
            r.flush(out);
        }
        Ok(())
    }

    /// Parses the RIFF header once it is all here; `Ok(false)`: more bytes needed. A
    /// streamed WAV may carry 0 or 0xFFFFFFFF as its lengths; they are not used.
    fn header(&mut self) -> Result<bool, Failure> {
        let bad = |m: &str| ("protocol", format!("bad WAV: {m}"));
        let p = &self.pending;
        if p.len() < 12 {
            return Ok(false);
        }
        if &p[0..4] != b"RIFF" || &p[8..12] != b"WAVE" {
            return Err(bad("no RIFF/WAVE header"));
        }
        let mut at = 12;
        loop {
            if p.len() < at + 8 {
                return Ok(false);
            }
            let id = &p[at..at + 4];
            let len = u32::from_le_bytes([p[at + 4], p[at + 5], p[at + 6], p[at + 7]]) as usize;
            if id == b"data" {
                self.pending.drain(..at + 8);
                self.in_header = false;
                return Ok(true);
            }
            if id == b"fmt " {
                if p.len() < at + 8 + 16 {
                    return Ok(false);
                }
                let f = &p[at + 8..];
                let tag = u16::from_le_bytes([f[0], f[1]]);
                let channels = u16::from_le_bytes([f[2], f[3]]);
                let rate = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
                let bits = u16::from_le_bytes([f[14], f[15]]);
                if !(tag == 1 || tag == 0xFFFE) || bits != 16 || channels == 0 {
                    return Err(bad("only 16-bit PCM is supported"));
                }
                if !(8_000..=96_000).contains(&rate) {
                    return Err(bad("sample rate out of range"));
                }
                self.rate = rate;
                self.channels = usize::from(channels);
            }
            if len > 1 << 20 {
                return Err(bad("oversized header chunk"));
            }
            at += 8 + len + (len & 1);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tts::TtsSettings;

    fn decode(format: Format, rate: u32, out_rate: u32, body: &[u8], split: usize) -> Vec<i16> {
        let mut d = BodyDecoder::new(format, rate, out_rate);
        let mut out = Vec::new();
        for piece in body.chunks(split) {
            d.push(piece, &mut out).unwrap();
        }
        d.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn pcm_and_wav_decode_across_any_chunk_boundary() {
        let pcm: Vec<i16> = (0..2_400).map(|i| (i * 13 % 4000 - 2000) as i16).collect();
        let raw: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        for split in [1, 3, 7, 4096] {
            assert_eq!(decode(Format::Pcm, 24_000, 24_000, &raw, split), pcm);
            let mut wav = crate::stt::openai::wav_bytes(&pcm, 24_000);
            // A streamed header: lengths unknown.
            wav[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
            assert_eq!(decode(Format::Wav, 8_000, 24_000, &wav, split), pcm);
        }
        // The header's rate wins over the configured one: 0.1 s at 16 kHz → 0.1 s at 8 kHz.
        let wav = crate::stt::openai::wav_bytes(&vec![500i16; 1_600], 16_000);
        let out = decode(Format::Wav, 24_000, 8_000, &wav, 100);
        // (the resampler's filter costs up to one 10 ms block at the end)
        assert!((720..=810).contains(&out.len()), "{}", out.len());
        let mut bad = BodyDecoder::new(Format::Wav, 8_000, 8_000);
        assert!(bad
            .push(b"ID3\x03 not a wav file", &mut Vec::new())
            .is_err());
    }

    #[test]
    fn a_rate_in_the_content_type_is_used() {
        assert_eq!(rate_in("audio/pcm;rate=22050;channels=1"), Some(22_050));
        assert_eq!(rate_in("audio/pcm"), None);
        assert_eq!(rate_in("audio/pcm; rate=abc"), None);
    }

    #[test]
    fn config_problems_are_reported_with_their_keys() {
        let errs = TtsSettings::from_toml(
            "tts",
            "provider = \"openai\"\nresponse_format = \"mp3\"\nspeed = 9.0",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["tts.api_key", "tts.response_format", "tts.speed"],
            "{errs:?}"
        );
        assert!(errs[0].message.contains("VOXHOOK__TTS__API_KEY"));
    }

    /// The conformance subject: the backend against the local fake (pcm at 24 kHz), and
    /// one that fails sentences containing "FAIL".
    #[cfg(feature = "sim")]
    pub(crate) async fn subject() -> crate::tts::conformance::Subject {
        use crate::sim::openai::OpenAiSimOptions;
        let (backend, sim) = against(OpenAiSimOptions::default(), "").await;
        let faulty = OpenAiSimOptions {
            fail_on: Some("FAIL".into()),
            ..OpenAiSimOptions::default()
        };
        let (faulty, faulty_sim) = against(faulty, "").await;
        // The fakes serve the whole test process.
        Box::leak(Box::new((sim, faulty_sim)));
        crate::tts::conformance::Subject {
            backend,
            faulty: Some(faulty),
        }
    }

    #[cfg(feature = "sim")]
    pub(crate) async fn against(
        options: crate::sim::openai::OpenAiSimOptions,
        extra: &str,
    ) -> (Arc<dyn TextToSpeech>, crate::sim::openai::OpenAiSim) {
        let sim = crate::sim::openai::OpenAiSim::start(options).await.unwrap();
        let toml = format!(
            "provider = \"openai\"\napi_key = \"sk-test-key\"\nbase_url = \"{}\"\n{extra}",
            sim.base_url()
        );
        let b = crate::tts::build(&TtsSettings::from_toml("tts", &toml).unwrap()).unwrap();
        (b, sim)
    }

    #[cfg(feature = "sim")]
    mod against_the_fake {
        use super::*;
        use crate::sim::openai::OpenAiSimOptions;

        use crate::tts::conformance::all;

        /// The first audio arrives while the sentence is still streaming, the request has
        /// the documented fields, and 20 characters at 50 ms come back as 1 s at 24 kHz.
        #[tokio::test]
        async fn speech_streams_per_sentence_with_the_documented_request() {
            let (b, sim) = against(OpenAiSimOptions::default(), "voice = \"nova\"").await;
            let chunks = all(&b, "Twenty characters!!").await;
            assert!(chunks.len() > 3, "streamed in pieces: {}", chunks.len());
            let n: usize = chunks.iter().map(|c| c.as_ref().unwrap().len()).sum();
            assert_eq!(n, 19 * 50 * 24);
            let req = &sim.speeches()[0];
            assert_eq!(req["model"], "tts-1");
            assert_eq!(req["voice"], "nova");
            assert_eq!(req["input"], "Twenty characters!!");
            assert_eq!(req["response_format"], "pcm");
        }

        /// A server whose pcm is 22,050 Hz and says so in its Content-Type, and one that
        /// sends wav: both come out at the configured 24 kHz.
        #[tokio::test]
        async fn other_rates_are_read_from_the_response_and_resampled() {
            for (format, in_ct) in [("pcm", true), ("wav", false)] {
                let options = OpenAiSimOptions {
                    speech_rate: 22_050,
                    rate_in_content_type: in_ct,
                    ..OpenAiSimOptions::default()
                };
                let extra = format!("response_format = \"{format}\"");
                let (b, _sim) = against(options, &extra).await;
                let n: usize = all(&b, "Twenty characters!!")
                    .await
                    .iter()
                    .map(|c| c.as_ref().unwrap().len())
                    .sum();
                let want = 19 * 50 * 24;
                assert!(n.abs_diff(want) < 500, "{format}: {n} samples, want {want}");
            }
        }

        #[tokio::test]
        async fn a_cut_stream_and_a_wrong_key_are_errors() {
            let cut = OpenAiSimOptions {
                cut_after: Some(4_800),
                ..OpenAiSimOptions::default()
            };
            let (b, _sim) = against(cut, "").await;
            let chunks = all(&b, "Twenty characters!!").await;
            assert!(chunks.first().is_some_and(Result::is_ok), "{chunks:?}");
            let err = chunks.last().unwrap().as_ref().unwrap_err().to_string();
            assert!(err.contains("broke"), "{err}");

            let (_, sim) = against(OpenAiSimOptions::default(), "").await;
            let toml = format!(
                "provider = \"openai\"\napi_key = \"sk-wrong\"\nbase_url = \"{}\"",
                sim.base_url()
            );
            let b = crate::tts::build(&TtsSettings::from_toml("tts", &toml).unwrap()).unwrap();
            let chunks = all(&b, "Hello.").await;
            let err = chunks[0].as_ref().unwrap_err().to_string();
            assert!(err.contains("401") && !err.contains("sk-wrong"), "{err}");
        }
    }
}
