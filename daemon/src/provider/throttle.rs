//! Upload bandwidth limit: one schedule shared by every transfer this node
//! serves. The provider asks before each ~16 KiB chunk; the answer is
//! delayed until the chunk fits the configured rate.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// A rate limiter over bytes (virtual-time schedule, no burst beyond one chunk).
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: f64,
    next_free: Mutex<Instant>,
}

impl RateLimit {
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec: bytes_per_sec.max(1) as f64,
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// How long the caller must wait before sending `bytes`.
    fn reserve(&self, bytes: u64) -> Duration {
        let now = Instant::now();
        let Ok(mut next) = self.next_free.lock() else {
            return Duration::ZERO;
        };
        let start = (*next).max(now);
        *next = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec);
        start - now
    }

    /// Waits until `bytes` may be sent.
    pub async fn acquire(&self, bytes: u64) {
        let wait = self.reserve(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spaces_chunks_at_the_rate() {
        let r = RateLimit::new(1_000_000);
        assert!(r.reserve(500_000) <= Duration::from_millis(1));
        let second = r.reserve(500_000);
        assert!(
            second >= Duration::from_millis(490) && second <= Duration::from_millis(510),
            "{second:?}"
        );
    }
}
