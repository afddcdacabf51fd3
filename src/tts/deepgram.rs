//! Deepgram Aura speech (REST): one `POST {base_url}/v1/speak?model=…&encoding=…&
//! sample_rate=…&container=none` per sentence, `Authorization: Token …`, body
//! `{"text": …}`. The chunked response is played as it arrives. Deepgram synthesizes at the
//! telephone's own format (μ-law or linear16 at 8 kHz by default), so nothing is resampled.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::http::{next_piece, send, speak_request, ChunkTx, Failure};
use super::{TextToSpeech, TtsBackend, TtsError, TtsRequest, TtsStream};
use crate::audio::codec::Codec;
use crate::component::{Component, Ctx, Errors};
use crate::config::SensitiveString;

/// Name in config, logs and the metrics' `backend` label.
const NAME: &str = "deepgram";
/// Aura's limit on `text` per request.
const MAX_TEXT_CHARS: usize = 2_000;

/// `[tts] provider = "deepgram"` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuraConfig {
    /// API key (`Authorization: Token …`); from the environment: `VOXHOOK__TTS__API_KEY`.
    pub api_key: SensitiveString,
    /// `https://api.deepgram.com` or a self-hosted / test endpoint.
    pub base_url: String,
    /// Voice model (`aura-2-thalia-en`, …); a request's voice overrides it.
    pub model: String,
    /// `mulaw` or `linear16`.
    pub encoding: String,
    /// Rate of the audio asked for (`mulaw`: 8000 or 16000).
    pub sample_rate: u32,
    /// Time allowed until the response starts.
    pub first_byte_timeout_ms: u64,
    /// Time allowed between two pieces of the body.
    pub read_timeout_ms: u64,
    /// Connection deadline.
    pub connect_timeout_ms: u64,
}

impl Default for AuraConfig {
    fn default() -> Self {
        Self {
            api_key: SensitiveString::default(),
            base_url: "https://api.deepgram.com".into(),
            model: "aura-2-thalia-en".into(),
            encoding: "linear16".into(),
            sample_rate: 8_000,
            first_byte_timeout_ms: 5_000,
            read_timeout_ms: 5_000,
            connect_timeout_ms: 3_000,
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct AuraSettings {
    /// The key (never printed).
    pub api_key: SensitiveString,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// Voice model.
    pub model: String,
    /// μ-law (`true`) or linear16.
    pub mulaw: bool,
    /// Rate.
    pub sample_rate: u32,
    /// First-byte deadline.
    pub first_byte_timeout: Duration,
    /// Per-read deadline.
    pub read_timeout: Duration,
    /// Connect deadline.
    pub connect_timeout: Duration,
}

impl Component for AuraSettings {
    type Raw = AuraConfig;

    fn validate(raw: AuraConfig, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
        errs.check(
            !raw.api_key.is_empty(),
            &ctx.key("api_key"),
            &format!(
                "missing: the Deepgram API key (set it here or in {})",
                ctx.env_var("api_key")
            ),
        );
        let base = raw.base_url.trim_end_matches('/').to_string();
        errs.check(
            base.starts_with("https://") || base.starts_with("http://"),
            &ctx.key("base_url"),
            "must start with https:// (or http:// for a local endpoint)",
        );
        errs.check(
            !raw.model.is_empty()
                && raw
                    .model
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            &ctx.key("model"),
            "must be a voice model name such as aura-2-thalia-en",
        );
        let mulaw = match raw.encoding.as_str() {
            "mulaw" => true,
            "linear16" => false,
            _ => {
                errs.push(&ctx.key("encoding"), "must be \"mulaw\" or \"linear16\"");
                false
            }
        };
        let rates: &[u32] = if mulaw {
            &[8_000, 16_000]
        } else {
            &[8_000, 16_000, 24_000, 32_000, 48_000]
        };
        errs.check(
            rates.contains(&raw.sample_rate),
            &ctx.key("sample_rate"),
            &format!("must be one of {rates:?} for {}", raw.encoding),
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
            api_key: raw.api_key,
            base_url: base,
            model: raw.model,
            mulaw,
            sample_rate: raw.sample_rate,
            first_byte_timeout: Duration::from_millis(raw.first_byte_timeout_ms),
            read_timeout: Duration::from_millis(raw.read_timeout_ms),
            connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
        }
    }
}

impl TtsBackend for AuraSettings {
    fn build(&self) -> Result<Arc<dyn TextToSpeech>, TtsError> {
        let http = super::http::client(NAME, self.connect_timeout)?;
        Ok(Arc::new(AuraTts(Arc::new(Client {
            cfg: self.clone(),
            http,
        }))))
    }
}

impl AuraSettings {
    /// The `/v1/speak` URL for `model`.
    pub fn speak_url(&self, model: &str) -> String {
        format!(
            "{}/v1/speak?model={model}&encoding={}&sample_rate={}&container=none",
            self.base_url,
            if self.mulaw { "mulaw" } else { "linear16" },
            self.sample_rate
        )
    }
}

struct Client {
    cfg: AuraSettings,
    http: reqwest::Client,
}

/// The Aura backend.
#[derive(Clone)]
pub struct AuraTts(Arc<Client>);

#[async_trait]
impl TextToSpeech for AuraTts {
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
            &self.0.cfg.model,
            cancel,
            self.0.clone(),
            |client, sentence, model, tx| async move { client.speak(&sentence, &model, &tx).await },
        ))
    }
}

impl Client {
    /// Speaks one sentence into `tx`; `Ok(false)`: the receiver is gone.
    async fn speak(&self, sentence: &str, model: &str, tx: &ChunkTx) -> Result<bool, Failure> {
        let text: String = sentence.chars().take(MAX_TEXT_CHARS).collect();
        let req = self
            .http
            .post(self.cfg.speak_url(model))
            .header(
                "authorization",
                format!("Token {}", self.cfg.api_key.expose()),
            )
            .json(&serde_json::json!({ "text": text }));
        let mut resp = send(req, self.cfg.first_byte_timeout).await?;
        let mut odd: Option<u8> = None;
        let mut pcm = Vec::new();
        loop {
            let piece = next_piece(&mut resp, self.cfg.read_timeout).await?;
            let Some(bytes) = piece else {
                return Ok(true);
            };
            pcm.clear();
            if self.cfg.mulaw {
                Codec::Mulaw.decode_into(&bytes, &mut pcm);
            } else {
                let mut it = odd.take().into_iter().chain(bytes.iter().copied());
                while let Some(lo) = it.next() {
                    match it.next() {
                        Some(hi) => pcm.push(i16::from_le_bytes([lo, hi])),
                        None => odd = Some(lo),
                    }
                }
            }
            if !pcm.is_empty() && tx.send(Ok(pcm.clone())).await.is_err() {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tts::TtsSettings;

    #[test]
    fn the_default_asks_for_telephone_audio_and_problems_carry_keys() {
        let s = TtsSettings::from_toml("tts", "provider = \"deepgram\"\napi_key = \"k\"").unwrap();
        let TtsSettings::Deepgram(s) = s else {
            panic!("{s:?}")
        };
        assert_eq!(
            s.speak_url("aura-2-thalia-en"),
            "https://api.deepgram.com/v1/speak?model=aura-2-thalia-en&encoding=linear16&sample_rate=8000&container=none"
        );
        let errs = TtsSettings::from_toml(
            "tts",
            "provider = \"deepgram\"\nencoding = \"mulaw\"\nsample_rate = 24000\nmodel = \"a b\"",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["tts.api_key", "tts.model", "tts.sample_rate"],
            "{errs:?}"
        );
    }

    #[cfg(feature = "sim")]
    pub(crate) async fn against(
        options: crate::sim::deepgram::AuraSimOptions,
        extra: &str,
    ) -> (Arc<dyn TextToSpeech>, crate::sim::deepgram::AuraSim) {
        let sim = crate::sim::deepgram::AuraSim::start(options).await.unwrap();
        let toml = format!(
            "provider = \"deepgram\"\napi_key = \"dg-test-key\"\nbase_url = \"{}\"\n{extra}",
            sim.base_url()
        );
        let b = crate::tts::build(&TtsSettings::from_toml("tts", &toml).unwrap()).unwrap();
        (b, sim)
    }

    /// The conformance subject: against the local fake, and one failing on "FAIL".
    #[cfg(feature = "sim")]
    pub(crate) async fn subject() -> crate::tts::conformance::Subject {
        use crate::sim::deepgram::AuraSimOptions;
        let (backend, sim) = against(AuraSimOptions::default(), "").await;
        let faulty = AuraSimOptions {
            fail_on: Some("FAIL".into()),
            ..AuraSimOptions::default()
        };
        let (faulty, faulty_sim) = against(faulty, "encoding = \"mulaw\"").await;
        // The fakes serve the whole test process.
        Box::leak(Box::new((sim, faulty_sim)));
        crate::tts::conformance::Subject {
            backend,
            faulty: Some(faulty),
        }
    }

    #[cfg(feature = "sim")]
    mod against_the_fake {
        use super::*;
        use crate::sim::deepgram::AuraSimOptions;

        use crate::tts::conformance::all;

        /// μ-law at 8 kHz, streamed in pieces (odd byte splits included for linear16),
        /// the request as documented, and a wrong key refused without being printed.
        #[tokio::test]
        async fn aura_streams_telephone_audio_and_refuses_a_wrong_key() {
            for encoding in ["mulaw", "linear16"] {
                let (b, sim) = against(
                    AuraSimOptions::default(),
                    &format!("encoding = \"{encoding}\""),
                )
                .await;
                let chunks = all(&b, "Twenty characters!!").await;
                assert!(chunks.len() > 3, "{encoding}: {} chunks", chunks.len());
                let n: usize = chunks.iter().map(|c| c.as_ref().unwrap().len()).sum();
                assert_eq!(n, 19 * 50 * 8, "{encoding}");
                let r = &sim.requests()[0];
                assert_eq!(r.query["encoding"], encoding);
                assert_eq!(r.query["sample_rate"], "8000");
                assert_eq!(r.query["container"], "none");
                assert_eq!(r.text, "Twenty characters!!");
            }
            let (_, sim) = against(AuraSimOptions::default(), "").await;
            let toml = format!(
                "provider = \"deepgram\"\napi_key = \"dg-wrong\"\nbase_url = \"{}\"",
                sim.base_url()
            );
            let b = crate::tts::build(&TtsSettings::from_toml("tts", &toml).unwrap()).unwrap();
            let err = all(&b, "Hello.").await[0].as_ref().unwrap_err().to_string();
            assert!(
                err.contains("401") && err.contains("Invalid credentials"),
                "{err}"
            );
            assert!(!err.contains("dg-wrong"), "{err}");
        }
    }
}
