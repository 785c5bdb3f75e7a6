//! A source's rate cap: a token bucket in its virtual-time form (GCRA), with time given.

use std::time::Duration;

use super::Time;

/// Keeps a source under its bandwidth across all its connections, allowing bursts of
/// `burst` worth of bytes. Pure: the caller says what time it is and waits itself.
#[derive(Debug, Clone)]
pub struct Pacer {
    micros_per_byte: f64,
    burst: Duration,
    /// When the bytes taken so far will have been "paid for".
    paid_until: Time,
}

impl Pacer {
    /// A pacer for `bits_per_sec` (at least 1).
    pub fn new(bits_per_sec: u64, burst: Duration) -> Self {
        Self {
            micros_per_byte: 8e6 / bits_per_sec.max(1) as f64,
            burst,
            paid_until: Time::from_micros(i64::MIN),
        }
    }

    /// Accounts for `bytes` received at `now`; returns when the receiver may read on, if it
    /// must wait (it is more than the burst ahead of the cap).
    pub fn take(&mut self, bytes: u64, now: Time) -> Option<Time> {
        let start = self.paid_until.max(now);
        let cost = (bytes as f64 * self.micros_per_byte).min(i64::MAX as f64 / 4.0) as i64;
        self.paid_until = Time::from_micros(start.micros().saturating_add(cost));
        let free_until = now.plus(self.burst);
        (self.paid_until > free_until).then(|| {
            Time::from_micros(now.micros() + (self.paid_until.micros() - free_until.micros()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_rate_over_time() {
        // 8 Mbps = 1 MB/s: 10 MB in 1 KB reads, always reading at the earliest allowed time.
        let mut p = Pacer::new(8_000_000, Duration::from_millis(50));
        let mut now = Time::from_micros(1_000_000);
        let start = now;
        for _ in 0..10_000 {
            if let Some(until) = p.take(1000, now) {
                assert!(until > now);
                now = until;
            }
        }
        let secs = (now.micros() - start.micros()) as f64 / 1e6;
        // 10 s at the cap, less the 50 ms burst allowance.
        assert!((9.9..=10.0).contains(&secs), "{secs}");
    }

    #[test]
    fn idle_time_is_not_banked_beyond_the_burst() {
        let mut p = Pacer::new(8_000_000, Duration::from_millis(50));
        assert_eq!(p.take(1000, Time::from_micros(0)), None);
        // An hour later, a 1 MB read must still wait about 1 s less the burst.
        let later = Time::from_unix_secs(3600);
        let until = p.take(1_000_000, later).expect("waits");
        assert_eq!(until.micros() - later.micros(), 950_000);
    }
}
