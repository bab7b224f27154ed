//! A per-backend circuit breaker: after N consecutive failures the backend is ejected for a
//! cool-down, then half-open (trial traffic allowed); a success closes it, a failure reopens it.

/// Breaker thresholds from `routing.breaker_failures` / `routing.breaker_cooldown_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failures: u32,
    pub cooldown_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures: 3,
            cooldown_ms: 5000,
        }
    }
}

/// The breaker's state as seen at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Ejected until this time (ms, same clock as passed in).
    Open {
        until_ms: u64,
    },
    /// Cool-down over: traffic allowed as a trial.
    HalfOpen,
}

/// Consecutive-failure counting breaker. Time is passed in: no clock inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CircuitBreaker {
    consecutive_failures: u32,
    /// Set while open or half-open: when the current ejection ends.
    open_until_ms: Option<u64>,
}

impl CircuitBreaker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The state at `now_ms`.
    pub fn state(&self, now_ms: u64) -> BreakerState {
        match self.open_until_ms {
            None => BreakerState::Closed,
            Some(until_ms) if now_ms < until_ms => BreakerState::Open { until_ms },
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// True when traffic may go to the backend at `now_ms` (closed or half-open).
    #[inline]
    pub fn allows(&self, now_ms: u64) -> bool {
        self.open_until_ms.is_none_or(|until| now_ms >= until)
    }

    pub fn record_success(&mut self) {
        self.consecutive_failures = 0;
        self.open_until_ms = None;
    }

    /// Records a connect/IO failure. Closed: counts, and opens at `policy.failures` in a row.
    /// Half-open: the trial failed, so it opens again for a full cool-down. Open: no change.
    pub fn record_failure(&mut self, now_ms: u64, policy: &BreakerPolicy) {
        match self.state(now_ms) {
            BreakerState::Open { .. } => {}
            BreakerState::HalfOpen => {
                self.open_until_ms = Some(now_ms.saturating_add(policy.cooldown_ms));
            }
            BreakerState::Closed => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.consecutive_failures >= policy.failures.max(1) {
                    self.open_until_ms = Some(now_ms.saturating_add(policy.cooldown_ms));
                }
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const P: BreakerPolicy = BreakerPolicy {
        failures: 3,
        cooldown_ms: 1000,
    };

    #[test]
    fn opens_after_consecutive_failures_then_half_opens() {
        let mut b = CircuitBreaker::new();
        b.record_failure(0, &P);
        b.record_failure(10, &P);
        assert_eq!(b.state(10), BreakerState::Closed);
        b.record_failure(20, &P);
        assert_eq!(b.state(20), BreakerState::Open { until_ms: 1020 });
        assert!(!b.allows(1019));
        assert_eq!(b.state(1020), BreakerState::HalfOpen);
        assert!(b.allows(1020));
    }

    #[test]
    fn success_resets_the_count() {
        let mut b = CircuitBreaker::new();
        b.record_failure(0, &P);
        b.record_failure(0, &P);
        b.record_success();
        b.record_failure(0, &P);
        assert_eq!(b.state(0), BreakerState::Closed);
    }

    #[test]
    fn failed_trial_reopens_for_a_full_cooldown() {
        let mut b = CircuitBreaker::new();
        for _ in 0..3 {
            b.record_failure(0, &P);
        }
        b.record_failure(1500, &P);
        assert_eq!(b.state(1500), BreakerState::Open { until_ms: 2500 });
        b.record_success();
        assert_eq!(b.state(1500), BreakerState::Closed);
    }
}
