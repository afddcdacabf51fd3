//! Per-call recording (off by default): a two-channel WAV, caller left and bot right, at the
//! provider's rate. The call hands frames over with `try_send` and a blocking thread writes
//! the file, so disk I/O never delays the call; frames that do not fit are dropped and
//! logged at the end.
//!
//! Alignment: caller frames arrive in real time and define the timeline. A bot frame plays
//! at the later of the moment it was sent and the end of the bot audio before it (the
//! provider plays its queue back to back), and a `clear` drops the bot audio not yet played.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::telephony::ws::OUTBOUND_COMMAND_CAPACITY;
use crate::telephony::OutboundCommand;

/// Call → recording writer: audio frames of both directions (~2.5 s of two-way 20 ms
/// frames). `try_send`: a slow disk drops recorded frames, never call audio.
pub const RECORDING_CAPACITY: usize = 256;

/// Recording failures (the call goes on without a recording).
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The directory or file could not be created.
    #[error("cannot create recording {path}: {source}")]
    Create {
        /// File.
        path: PathBuf,
        /// Cause.
        source: hound::Error,
    },
    /// Writing the file failed.
    #[error("cannot write recording {path}: {source}")]
    Write {
        /// File.
        path: PathBuf,
        /// Cause.
        source: hound::Error,
    },
    /// Caller and bot audio have different rates.
    #[error("caller audio at {inbound} Hz and bot audio at {outbound} Hz cannot share a WAV")]
    Rates {
        /// Caller rate.
        inbound: u32,
        /// Bot rate.
        outbound: u32,
    },
}

enum Tap {
    Caller(Vec<i16>),
    Bot(Vec<i16>, Instant),
    Clear(Instant),
}

/// The sending side of one call's recording; the file is finished when every clone is gone.
#[derive(Debug, Clone)]
pub struct Recording {
    tx: mpsc::Sender<Tap>,
    path: Arc<PathBuf>,
    dropped: Arc<AtomicU64>,
}

impl Recording {
    /// Starts the writer thread, which creates `path` (off the runtime: opening a file can
    /// block on a slow disk). Taps made before it is open wait in the queue.
    pub fn start(path: PathBuf, inbound: u32, outbound: u32) -> Result<Self, RecordingError> {
        if inbound != outbound {
            return Err(RecordingError::Rates { inbound, outbound });
        }
        let (tx, rx) = mpsc::channel(RECORDING_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let span = tracing::Span::current();
        let (file, lost) = (path.clone(), dropped.clone());
        tokio::task::spawn_blocking(move || {
            let _enter = span.enter();
            let written = create(&file, inbound).and_then(|writer| {
                write(rx, writer, inbound, Instant::now()).map_err(|source| RecordingError::Write {
                    path: file.clone(),
                    source,
                })
            });
            match written {
                Ok(seconds) => tracing::info!(path = %file.display(), seconds,
                    dropped_frames = lost.load(Ordering::Relaxed), "Recording saved."),
                Err(e) => tracing::error!(path = %file.display(), error = %e, "Recording failed."),
            }
        });
        Ok(Self {
            tx,
            path: Arc::new(path),
            dropped,
        })
    }

    /// The WAV file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, tap: Tap) {
        if self.tx.try_send(tap).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records caller audio.
    pub fn caller(&self, pcm: &[i16]) {
        self.send(Tap::Caller(pcm.to_vec()));
    }

    /// Returns a sender that records bot audio and clears, then forwards them to `out`.
    pub fn tap(
        &self,
        out: mpsc::Sender<OutboundCommand>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> mpsc::Sender<OutboundCommand> {
        let (tx, mut rx) = mpsc::channel::<OutboundCommand>(OUTBOUND_COMMAND_CAPACITY);
        let rec = self.clone();
        tracker.spawn(
            async move {
                loop {
                    let cmd = tokio::select! {
                        _ = cancel.cancelled() => return,
                        cmd = rx.recv() => match cmd { Some(c) => c, None => return },
                    };
                    match &cmd {
                        OutboundCommand::Audio(pcm) => {
                            rec.send(Tap::Bot(pcm.clone(), Instant::now()))
                        }
                        OutboundCommand::Clear => rec.send(Tap::Clear(Instant::now())),
                        OutboundCommand::Mark(_) => {}
                    }
                    if out.send(cmd).await.is_err() {
                        return;
                    }
                }
            }
            .in_current_span(),
        );
        tx
    }
}

/// Creates the two-channel WAV (and its directory).
fn create(
    path: &Path,
    rate: u32,
) -> Result<hound::WavWriter<std::io::BufWriter<std::fs::File>>, RecordingError> {
    let fail = |source| RecordingError::Create {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(hound::Error::IoError(e)))?;
    }
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(path, spec).map_err(fail)
}

/// The writer loop: interleaves caller samples with the bot audio due at the same time.
/// Returns the recorded length in seconds.
fn write<W: std::io::Write + std::io::Seek>(
    mut rx: mpsc::Receiver<Tap>,
    mut wav: hound::WavWriter<W>,
    rate: u32,
    epoch: Instant,
) -> Result<f64, hound::Error> {
    let mut bot = std::collections::VecDeque::<i16>::new();
    let mut written: u64 = 0;
    let at_sample = |t: Instant| ((t - epoch).as_secs_f64() * f64::from(rate)) as u64;
    while let Some(tap) = rx.blocking_recv() {
        match tap {
            Tap::Caller(pcm) => {
                for s in pcm {
                    wav.write_sample(s)?;
                    wav.write_sample(bot.pop_front().unwrap_or(0))?;
                }
                written = u64::from(wav.duration());
            }
            Tap::Bot(pcm, at) => {
                let starts = at_sample(at).max(written + bot.len() as u64);
                let pad = starts.saturating_sub(written + bot.len() as u64) as usize;
                bot.extend(std::iter::repeat_n(0, pad));
                bot.extend(pcm);
            }
            Tap::Clear(at) => {
                let played = at_sample(at).saturating_sub(written) as usize;
                bot.truncate(played);
            }
        }
    }
    // The call ended: the bot audio still queued was (at most) the last lead's worth.
    for s in bot {
        wav.write_sample(0)?;
        wav.write_sample(s)?;
    }
    let seconds = f64::from(wav.duration()) / f64::from(rate);
    wav.finalize()?;
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::time::Duration;

    use super::*;

    fn run(epoch: Instant, taps: Vec<Tap>) -> Vec<(i16, i16)> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut buf = Cursor::new(Vec::new());
        let (tx, rx) = mpsc::channel(64);
        for t in taps {
            tx.try_send(t).ok().unwrap();
        }
        drop(tx);
        write(
            rx,
            hound::WavWriter::new(&mut buf, spec).unwrap(),
            8000,
            epoch,
        )
        .unwrap();
        buf.set_position(0);
        let samples: Vec<i16> = hound::WavReader::new(buf)
            .unwrap()
            .samples::<i16>()
            .map(Result::unwrap)
            .collect();
        samples.chunks(2).map(|c| (c[0], c[1])).collect()
    }

    #[test]
    fn bot_audio_lands_where_it_played_and_clear_drops_the_unplayed_rest() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // A caller frame arrives once its 20 ms were spoken, so bot frames sent meanwhile
        // come first.
        let frames = run(
            t0,
            vec![
                // Sent at 10 ms, playing from 10 ms (sample 80).
                Tap::Bot(vec![5; 160], at(10)),
                // Sent at once after it: queued back to back (sample 240).
                Tap::Bot(vec![6; 160], at(10)),
                Tap::Caller(vec![1; 160]),
                // Cleared at 30 ms (sample 240): the second frame never played.
                Tap::Clear(at(30)),
                Tap::Caller(vec![2; 160]),
                Tap::Caller(vec![3; 160]),
            ],
        );
        assert_eq!(frames.len(), 480);
        assert_eq!(frames[0], (1, 0));
        assert_eq!(frames[80], (1, 5));
        assert_eq!(frames[239], (2, 5));
        assert_eq!(frames[240], (2, 0));
        assert!(frames[320..].iter().all(|&f| f == (3, 0)));
    }
}
