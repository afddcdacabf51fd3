//! A TTS backend with fallbacks (`[tts] fallback`): a message the first backend cannot
//! start (refused, unreachable, or its stream failing before any audio) is synthesized by
//! the next one, in order. Output is at the first backend's rate; a fallback at another rate
//! is resampled once. A failure after audio has gone out is passed on: the caller already
//! heard part of the message, and starting it again in another voice would be worse.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{TextToSpeech, TtsError, TtsRequest, TtsStream, TTS_CHUNK_CAPACITY};
use crate::audio::resample::Resampler;

/// `primary` followed by `fallbacks` (just `primary` when there are none).
pub fn with_fallbacks(
    primary: Arc<dyn TextToSpeech>,
    fallbacks: &[Arc<dyn TextToSpeech>],
) -> Arc<dyn TextToSpeech> {
    if fallbacks.is_empty() {
        return primary;
    }
    let mut backends = vec![primary];
    backends.extend(fallbacks.iter().cloned());
    Arc::new(Chain { backends })
}

struct Chain {
    /// Tried in order; never empty.
    backends: Vec<Arc<dyn TextToSpeech>>,
}

#[async_trait]
impl TextToSpeech for Chain {
    fn name(&self) -> &'static str {
        self.backends[0].name()
    }

    fn sample_rate(&self) -> u32 {
        self.backends[0].sample_rate()
    }

    async fn synthesize(
        &self,
        req: &TtsRequest,
        cancel: CancellationToken,
    ) -> Result<TtsStream, TtsError> {
        let (tx, rx) = mpsc::channel(TTS_CHUNK_CAPACITY);
        let backends = self.backends.clone();
        let req = req.clone();
        tokio::spawn(async move {
            let rate = backends[0].sample_rate();
            let mut last = None;
            for (i, backend) in backends.iter().enumerate() {
                match relay(&**backend, &req, rate, &tx, &cancel).await {
                    Relayed::Done => return,
                    Relayed::FailedBeforeAudio(e) => {
                        if let Some(next) = backends.get(i + 1) {
                            tracing::warn!(backend = backend.name(), next = next.name(),
                                error = %e, "TTS failed before any audio; trying the next backend.");
                        }
                        last = Some(e);
                    }
                }
            }
            if let Some(e) = last {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(rx)
    }
}

enum Relayed {
    /// The stream ended, failed after audio (error passed on), or nobody listens any more.
    Done,
    /// Nothing was sent: the next backend may try.
    FailedBeforeAudio(TtsError),
}

/// Streams `req` from `backend` into `tx` at `rate`.
async fn relay(
    backend: &dyn TextToSpeech,
    req: &TtsRequest,
    rate: u32,
    tx: &mpsc::Sender<Result<Vec<i16>, TtsError>>,
    cancel: &CancellationToken,
) -> Relayed {
    let mut stream = match backend.synthesize(req, cancel.child_token()).await {
        Ok(s) => s,
        Err(e) => return Relayed::FailedBeforeAudio(e),
    };
    let mut resampler = match backend.sample_rate() {
        r if r == rate => None,
        r => match Resampler::new(r, rate) {
            Ok(r) => Some(r),
            Err(e) => return Relayed::FailedBeforeAudio(TtsError::Synthesis(e.to_string())),
        },
    };
    let mut sent = false;
    loop {
        let chunk = tokio::select! {
            _ = cancel.cancelled() => return Relayed::Done,
            c = stream.recv() => c,
        };
        let pcm = match chunk {
            Some(Ok(pcm)) => pcm,
            Some(Err(e)) if !sent => return Relayed::FailedBeforeAudio(e),
            Some(Err(e)) => {
                let _ = tx.send(Err(e)).await;
                return Relayed::Done;
            }
            None => {
                if let Some(r) = resampler.as_mut() {
                    let mut tail = Vec::new();
                    r.flush(&mut tail);
                    if !tail.is_empty() {
                        let _ = tx.send(Ok(tail)).await;
                    }
                }
                return Relayed::Done;
            }
        };
        let pcm = match resampler.as_mut() {
            None => pcm,
            Some(r) => {
                let mut out = Vec::with_capacity(pcm.len() * 2);
                r.process(&pcm, &mut out);
                out
            }
        };
        sent = true;
        if tx.send(Ok(pcm)).await.is_err() {
            return Relayed::Done;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tts::TtsSettings;

    fn backend(toml: &str) -> Arc<dyn TextToSpeech> {
        crate::tts::build(&TtsSettings::from_toml("tts", toml).unwrap()).unwrap()
    }

    async fn collect(tts: &dyn TextToSpeech, text: &str) -> Result<usize, TtsError> {
        let mut s = tts
            .synthesize(&TtsRequest::text(text), CancellationToken::new())
            .await?;
        let mut n = 0;
        while let Some(c) = s.recv().await {
            n += c?.len();
        }
        Ok(n)
    }

    /// A first backend failing before any audio: the message comes from the next one,
    /// resampled to the first one's rate.
    #[tokio::test]
    async fn a_failed_message_is_spoken_by_the_next_backend_at_the_first_ones_rate() {
        let failing = backend("provider = \"fake\"\nsample_rate = 8000\nfail_on = \"Hello\"");
        let fake = backend("provider = \"fake\"\nsample_rate = 16000");
        let chain = with_fallbacks(failing.clone(), std::slice::from_ref(&fake));
        assert_eq!(chain.sample_rate(), 8_000);
        assert!(collect(&*failing, "Hello there.").await.is_err());
        let direct = collect(&*fake, "Hello there.").await.unwrap();
        let via = collect(&*chain, "Hello there.").await.unwrap();
        assert!(
            via.abs_diff(direct / 2) < direct / 50,
            "{via} samples, expected about {}",
            direct / 2
        );
    }

    /// Every backend failing ends the stream with the last error (the speaker's fallback
    /// clip takes it from there); a failure after audio is not retried elsewhere.
    #[tokio::test]
    async fn failures_after_audio_or_of_every_backend_reach_the_speaker() {
        let failing = || backend("provider = \"fake\"\nfail_on = \"Hello\"");
        let chain = with_fallbacks(failing(), &[failing()]);
        assert!(collect(&*chain, "Hello.").await.is_err());
        let chain = with_fallbacks(failing(), &[backend("provider = \"fake\"")]);
        assert!(collect(&*chain, "Good day. Hello.").await.is_err());
    }

    #[test]
    fn without_fallbacks_the_backend_is_used_as_it_is() {
        let fake = backend("provider = \"fake\"");
        assert!(Arc::ptr_eq(&with_fallbacks(fake.clone(), &[]), &fake));
    }
}
