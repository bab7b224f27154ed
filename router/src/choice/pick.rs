//! The weighted pick among candidates that passed the health tests: best location rank, then
//! least in-flight work per weight, then fewest connections per weight, then a random draw
//! among the remaining ties in proportion to weight. Two passes over the same candidates and
//! one random number per choice, so a tie costs an addition, not a draw.

use super::Load;
use std::cmp::Ordering;

/// One candidate as the picker sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Offer {
    pub server: usize,
    pub rank: u16,
    /// ≥ 1.
    pub weight: u32,
    pub load: Load,
    pub over_lag: bool,
}

impl Offer {
    /// Orders `self` against `other`: rank first, then in-flight per weight, then connections
    /// per weight. `a/wa < b/wb ⇔ a·wb < b·wa`: no division, no floats, no overflow (u32·u32).
    #[inline(always)]
    fn cmp_work(&self, other: &Offer) -> Ordering {
        let (w, ow) = (u64::from(self.weight), u64::from(other.weight));
        let mine = (u128::from(u64::from(self.load.in_flight) * ow) << 64)
            | u128::from(u64::from(self.load.connections) * ow);
        let theirs = (u128::from(u64::from(other.load.in_flight) * w) << 64)
            | u128::from(u64::from(other.load.connections) * w);
        self.rank.cmp(&other.rank).then(mine.cmp(&theirs))
    }
}

/// Picks among `offers()` (called twice: it must yield the same candidates in the same order),
/// for the full scan; the candidate index (`index.rs`) does the same on its sorted lists.
/// Returns the server and its `over_lag` flag, or `None` when there is no candidate.
#[inline(always)]
pub(super) fn pick<I, F>(seed: u64, offers: F) -> Option<(usize, bool)>
where
    F: Fn() -> I,
    I: Iterator<Item = Offer>,
{
    // Pass 1: the best work per weight and the total weight of the candidates tied with it.
    let mut best: Option<Offer> = None;
    let mut tied = 0u64;
    for o in offers() {
        let Some(b) = &best else {
            best = Some(o);
            tied = u64::from(o.weight);
            continue;
        };
        match o.cmp_work(b) {
            Ordering::Less => {
                best = Some(o);
                tied = u64::from(o.weight);
            }
            Ordering::Equal => tied += u64::from(o.weight),
            Ordering::Greater => {}
        }
    }
    let best = best?;
    if tied == u64::from(best.weight) {
        return Some((best.server, best.over_lag));
    }
    // Pass 2: one draw in [0, tied), then walk the ties until it falls within one's weight.
    let mut r = draw(seed, tied);
    for o in offers() {
        if o.cmp_work(&best) == Ordering::Equal {
            let w = u64::from(o.weight);
            if r < w {
                return Some((o.server, o.over_lag));
            }
            r -= w;
        }
    }
    // Only if live load counters moved between the passes: the first best is still a fair answer.
    Some((best.server, best.over_lag))
}

/// A number in `[0, total)` from the caller's seed, uniform up to 2⁻⁶⁴. Callers may pass a
/// counter as seed: splitmix64 makes consecutive seeds independent.
#[inline(always)]
pub(super) fn draw(seed: u64, total: u64) -> u64 {
    ((u128::from(splitmix64(seed)) * u128::from(total)) >> 64) as u64
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
