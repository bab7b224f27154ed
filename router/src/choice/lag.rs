//! Lag hysteresis: a replica leaves the read rotation when its lag exceeds `max_lag_ms` and
//! comes back only once at or below `lag_recovery_ms`, so it does not flap around one
//! threshold. Unknown lag takes it out, and it must then recover like any lagging replica
//! (a lag check that times out never makes a lagging replica healthy again).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum GateState {
    /// No measurement yet: the first one is judged against `max_lag_ms` alone.
    #[default]
    Fresh,
    In,
    Out,
}

/// Whether a server is in rotation as far as lag is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LagGate {
    state: GateState,
}

impl LagGate {
    /// In rotation (a server never measured is not).
    pub fn serving(&self) -> bool {
        self.state == GateState::In
    }

    /// Feeds a measurement; returns whether the server is now in rotation.
    pub fn update(&mut self, lag_ms: Option<u64>, max_lag_ms: u64, recovery_ms: u64) -> bool {
        let recovery_ms = recovery_ms.min(max_lag_ms);
        self.state = match (self.state, lag_ms) {
            (_, None) => GateState::Out,
            (GateState::Fresh | GateState::In, Some(l)) if l <= max_lag_ms => GateState::In,
            (GateState::Out, Some(l)) if l <= recovery_ms => GateState::In,
            (_, Some(_)) => GateState::Out,
        };
        self.serving()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn leaves_above_max_and_returns_only_below_recovery() {
        let mut g = LagGate::default();
        assert!(!g.serving(), "never measured: not serving");
        assert!(
            g.update(Some(800), 1000, 500),
            "first measurement under max"
        );
        assert!(!g.update(Some(1200), 1000, 500));
        assert!(
            !g.update(Some(900), 1000, 500),
            "under max but above recovery: still out"
        );
        assert!(!g.update(Some(501), 1000, 500));
        assert!(g.update(Some(500), 1000, 500));
        assert!(
            g.update(Some(999), 1000, 500),
            "in rotation until above max"
        );
    }

    #[test]
    fn unknown_lag_takes_out_and_requires_recovery() {
        let mut g = LagGate::default();
        g.update(Some(10), 1000, 500);
        assert!(!g.update(None, 1000, 500));
        assert!(
            !g.update(Some(700), 1000, 500),
            "blind spell must not reset hysteresis"
        );
        assert!(g.update(Some(100), 1000, 500));
    }
}
