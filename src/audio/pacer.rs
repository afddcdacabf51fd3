//! Outbound pacing: fixed 20 ms frames sent at most `lead` ahead of the provider's playback,
//! computed from a monotonic epoch (never a sleep per chunk, which drifts).

use std::time::Duration;

use tokio::time::Instant;

use super::FRAME_MS;

/// Tracks how much audio the provider holds and when the next frame may go.
#[derive(Debug)]
pub struct Pacer {
    lead: Duration,
    /// When the provider started (or will start) playing the first frame of the current run.
    epoch: Option<Instant>,
    frames: u32,
}

impl Pacer {
    /// A pacer that keeps at most `lead` of audio queued at the provider.
    pub fn new(lead: Duration) -> Self {
        Self {
            lead,
            epoch: None,
            frames: 0,
        }
    }

    /// When the provider will have played everything sent so far.
    pub fn playout_end(&self) -> Option<Instant> {
        self.epoch
            .map(|e| e + Duration::from_millis(FRAME_MS) * self.frames)
    }

    /// The earliest time the next frame may be sent.
    pub fn next_due(&self, now: Instant) -> Instant {
        match self.playout_end() {
            Some(end) if end > now + self.lead => end - self.lead,
            _ => now,
        }
    }

    /// Records that one frame was sent at `now`.
    pub fn on_sent(&mut self, now: Instant) {
        match self.playout_end() {
            // The provider ran dry: a new run of audio starts playing now.
            Some(end) if end >= now => {}
            _ => {
                self.epoch = Some(now);
                self.frames = 0;
            }
        }
        self.frames += 1;
    }

    /// Forgets queued audio (after a clear).
    pub fn reset(&mut self) {
        self.epoch = None;
        self.frames = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_lead_of_real_time() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Duration::from_millis(100));
        let mut now = t0;
        let mut sent_at = Vec::new();
        for _ in 0..50 {
            now = now.max(p.next_due(now));
            p.on_sent(now);
            sent_at.push(now - t0);
        }
        // The first 100 ms worth (5 frames + the one playing) go at once, then one per 20 ms.
        assert_eq!(sent_at[5], Duration::ZERO);
        assert_eq!(sent_at[6], Duration::from_millis(20));
        assert_eq!(sent_at[49], Duration::from_millis(20 * 44));
        let queued = p.playout_end().unwrap() - now;
        assert!(queued <= Duration::from_millis(120));
    }

    #[test]
    fn a_gap_restarts_the_epoch() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Duration::from_millis(100));
        p.on_sent(t0);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(p.next_due(later), later);
        p.on_sent(later);
        assert_eq!(p.playout_end(), Some(later + Duration::from_millis(20)));
    }
}
