//! A replica choice allocates nothing, and neither does refilling a scratch snapshot with
//! `clone_from` once it has the capacity (the proxy does both per read). Counted by a global
//! allocator, so this file holds a single test.

use router::choice::{Choice, TopologySnapshot};
use router::config::Config;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn choice_and_scratch_refill_allocate_nothing() {
    let yaml = include_str!("../../examples/local-cluster.yaml");
    let config = Config::from_yaml("x.yaml", yaml).expect("example parses");
    let mut published = TopologySnapshot::from_config(&config);
    for (i, s) in published.servers.iter_mut().enumerate() {
        s.reachable = true;
        s.replicating = i != 0;
    }
    for i in 0..published.servers.len() {
        published.update_lag(i, Some(0));
    }
    // The full scan (no index) and the candidate index (as the monitor publishes it).
    let scan = published.clone();
    published.reindex();
    let (mut scratch, mut scratch_scan) = (published.clone(), scan.clone());
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut picked = 0;
    for seed in 0..1000u64 {
        scratch.clone_from(&published);
        scratch_scan.clone_from(&scan);
        for (t, max_lag) in [
            (&scratch, None),
            (&scratch, Some(10_000)),
            (&scratch_scan, None),
        ] {
            if let Choice::Replica { .. } = t.choose_replica(max_lag, 0, seed) {
                picked += 1;
            }
        }
    }
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed) - before, 0);
    assert_eq!(picked, 3000, "every choice found a replica");
}
