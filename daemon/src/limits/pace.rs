//! One rate limit over bytes that can change at run time.
//!
//! A virtual schedule: each `take` reserves its bytes after everything
//! reserved before it and waits until its turn (no burst beyond what is
//! asked at once). A change of rate starts a new schedule and wakes every
//! waiter, who reserves again at the new rate, so a change applies at
//! once, to transfers already running.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use tokio::sync::Notify;

/// A changeable byte rate; unlimited costs one atomic load per `take`.
#[derive(Debug)]
pub struct Pace {
    /// Bytes per second; 0: unlimited.
    rate: AtomicU64,
    next_free: Mutex<Instant>,
    changed: Notify,
}

impl Default for Pace {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Pace {
    pub fn new(rate: Option<u64>) -> Self {
        Self {
            rate: AtomicU64::new(rate.unwrap_or(0)),
            next_free: Mutex::new(Instant::now()),
            changed: Notify::new(),
        }
    }

    /// The rate in bytes per second, `None`: unlimited.
    pub fn rate(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }

    /// Sets the rate (`None`: unlimited); waiters reserve again at once.
    pub fn set(&self, rate: Option<u64>) {
        let new = rate.unwrap_or(0);
        if self.rate.swap(new, Ordering::Relaxed) == new {
            return;
        }
        if let Ok(mut next) = self.next_free.lock() {
            *next = Instant::now();
        }
        self.changed.notify_waiters();
    }

    /// How long to wait before `bytes` may pass at `rate`.
    fn reserve(&self, bytes: u64, rate: u64) -> Duration {
        let now = Instant::now();
        let Ok(mut next) = self.next_free.lock() else {
            return Duration::ZERO;
        };
        let start = (*next).max(now);
        *next = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
        start - now
    }

    /// Waits until `bytes` may pass; whether that meant waiting.
    pub async fn take(&self, bytes: u64) -> bool {
        let mut waited = false;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let rate = self.rate.load(Ordering::Relaxed);
            if rate == 0 {
                return waited;
            }
            let wait = self.reserve(bytes, rate);
            if wait.is_zero() {
                return waited;
            }
            waited = true;
            tokio::select! {
                _ = tokio::time::sleep(wait) => return true,
                _ = changed => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spaces_bytes_at_the_rate() {
        let p = Pace::new(Some(1_000_000));
        assert!(p.reserve(500_000, 1_000_000) <= Duration::from_millis(1));
        let second = p.reserve(500_000, 1_000_000);
        assert!(
            second >= Duration::from_millis(490) && second <= Duration::from_millis(510),
            "{second:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits_and_a_change_wakes_waiters() {
        let p = std::sync::Arc::new(Pace::new(None));
        let t0 = tokio::time::Instant::now();
        p.take(1 << 30).await;
        assert_eq!(t0.elapsed(), Duration::ZERO);

        // 1 KiB/s: the second 10 KiB would wait 10 s, until the limit goes.
        p.set(Some(1024));
        p.take(10 * 1024).await;
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.take(10 * 1024).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        p.set(None);
        waiter.await.unwrap();
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }
}
