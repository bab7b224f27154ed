//! Replica choice: examples of each rule, and proptest properties over random topologies.

use super::*;
use proptest::prelude::*;

fn server(idx: usize, role: Role, rank: u16, lag: Option<u64>) -> ServerState {
    let mut s = ServerState {
        idx,
        role,
        location_rank: rank,
        weight: 1,
        reachable: true,
        replicating: role == Role::Replica,
        maintenance: false,
        lag_ms: None,
        max_lag_ms: 1000,
        lag_gate: LagGate::default(),
        in_flight: 0,
        connections: 0,
        breaker: CircuitBreaker::new(),
    };
    s.lag_ms = lag;
    s.lag_gate.update(lag, s.max_lag_ms, 500);
    s
}

/// A primary at index 0 and replicas with the given (rank, lag).
fn topo(replicas: &[(u16, Option<u64>)]) -> TopologySnapshot {
    let mut servers = vec![server(0, Role::Primary, 0, Some(0))];
    for (i, (rank, lag)) in replicas.iter().enumerate() {
        servers.push(server(i + 1, Role::Replica, *rank, *lag));
    }
    TopologySnapshot {
        servers,
        primary: Some(0),
        last_writer: None,
        lag_recovery_ms: 500,
        min_serving: 0,
        no_replica: NoReplicaPolicy::Primary,
        breaker: BreakerPolicy::default(),
        index: ChoiceIndex::default(),
    }
}

/// Chooses both ways, by scanning every server and through the candidate index (the proxy's
/// way), and checks that they agree exactly (same seed, same draw).
fn choose(t: &TopologySnapshot, max_lag: Option<u64>, now: u64, seed: u64) -> Choice {
    let mut scan = t.clone();
    scan.index = ChoiceIndex::default();
    let mut indexed = t.clone();
    indexed.reindex();
    let c = scan.choose_replica(max_lag, now, seed);
    assert_eq!(
        indexed.choose_replica(max_lag, now, seed),
        c,
        "index and scan disagree"
    );
    c
}

fn picked(c: Choice) -> Option<usize> {
    match c {
        Choice::Replica { server, .. } => Some(server),
        _ => None,
    }
}

#[test]
fn prefers_local_then_fallback_order_then_primary() {
    let mut t = topo(&[(2, Some(0)), (0, Some(0)), (1, Some(0))]);
    assert_eq!(picked(choose(&t, None, 0, 1)), Some(2));
    t.servers[2].reachable = false;
    assert_eq!(
        picked(choose(&t, None, 0, 1)),
        Some(3),
        "first fallback location"
    );
    t.servers[3].replicating = false;
    assert_eq!(
        picked(choose(&t, None, 0, 1)),
        Some(1),
        "second fallback location"
    );
    t.servers[1].maintenance = true;
    assert_eq!(
        choose(&t, None, 0, 1),
        Choice::Primary {
            server: 0,
            reason: FallbackReason::NoHealthyReplica
        }
    );
    t.no_replica = NoReplicaPolicy::Error;
    assert_eq!(
        choose(&t, None, 0, 1),
        Choice::NoServer(NoServerReason::NoReplicaPolicyError)
    );
}

#[test]
fn unused_location_is_never_read_from() {
    let t = topo(&[(LOCATION_UNUSED, Some(0))]);
    assert!(matches!(choose(&t, None, 0, 1), Choice::Primary { .. }));
}

#[test]
fn no_replicas_and_unavailable_primary() {
    let mut t = topo(&[]);
    assert_eq!(
        choose(&t, None, 0, 1),
        Choice::Primary {
            server: 0,
            reason: FallbackReason::NoReplicas
        }
    );
    t.servers[0].reachable = false;
    assert_eq!(
        choose(&t, None, 0, 1),
        Choice::NoServer(NoServerReason::PrimaryUnavailable)
    );
    t.primary = None;
    t.servers[0].reachable = true;
    assert_eq!(
        choose(&t, None, 0, 1),
        Choice::NoServer(NoServerReason::PrimaryUnavailable),
        "split brain / unknown writer: no fallback"
    );
}

#[test]
fn without_a_known_writer_reads_no_replica_takes_go_to_the_last_one() {
    // Mid-failover: server 0 was the writer and is read-only now, the new writer is not seen
    // yet, and the one replica has stopped replicating.
    let mut t = topo(&[(0, Some(0))]);
    t.primary = None;
    t.last_writer = Some(0);
    t.servers[0].role = Role::Replica;
    t.servers[0].replicating = false;
    t.servers[1].replicating = false;
    assert_eq!(
        choose(&t, None, 0, 1),
        Choice::Primary {
            server: 0,
            reason: FallbackReason::NoHealthyReplica
        }
    );
    // A serving replica still comes first.
    t.servers[1].replicating = true;
    assert!(matches!(
        choose(&t, None, 0, 1),
        Choice::Replica { server: 1, .. }
    ));
    // Nor does the last writer survive what would take the primary out, or the policy.
    t.servers[1].replicating = false;
    t.servers[0].reachable = false;
    assert_eq!(
        choose(&t, None, 0, 1),
        Choice::NoServer(NoServerReason::PrimaryUnavailable)
    );
    t.servers[0].reachable = true;
    t.no_replica = NoReplicaPolicy::Error;
    assert_eq!(
        choose(&t, None, 0, 1),
        Choice::NoServer(NoServerReason::NoReplicaPolicyError)
    );
    // Read-your-writes keeps it as the fallback, as it keeps the primary.
    t.no_replica = NoReplicaPolicy::Primary;
    t.retain_servers(|_| false);
    assert!(matches!(
        choose(&t, None, 0, 1),
        Choice::Primary { server: 0, .. }
    ));
}

#[test]
fn lag_limit_unknown_lag_and_hysteresis() {
    let mut t = topo(&[(0, Some(1500)), (0, None)]);
    assert!(matches!(choose(&t, None, 0, 1), Choice::Primary { .. }));
    t.update_lag(1, Some(800));
    assert!(
        matches!(choose(&t, None, 0, 1), Choice::Primary { .. }),
        "came back under max but not under the recovery mark"
    );
    t.update_lag(1, Some(400));
    assert_eq!(picked(choose(&t, None, 0, 1)), Some(1));
    t.update_lag(1, Some(900));
    assert_eq!(
        picked(choose(&t, None, 0, 1)),
        Some(1),
        "stays until above max"
    );
    assert!(
        matches!(choose(&t, Some(200), 0, 1), Choice::Primary { .. }),
        "a per-query limit tighter than the lag"
    );
    t.update_lag(1, Some(3000));
    assert_eq!(
        picked(choose(&t, Some(5000), 0, 1)),
        Some(1),
        "a looser per-query limit"
    );
}

#[test]
fn min_serving_keeps_the_least_lagged_replicas_and_reports_it() {
    let mut t = topo(&[(0, Some(5000)), (0, Some(3000)), (0, None), (0, Some(9000))]);
    assert!(matches!(choose(&t, None, 0, 1), Choice::Primary { .. }));
    t.min_serving = 1;
    for seed in 0..50 {
        assert_eq!(
            choose(&t, None, 0, seed),
            Choice::Replica {
                server: 2,
                over_lag: true
            }
        );
    }
    t.min_serving = 2;
    let mut seen = [false; 5];
    for seed in 0..200 {
        if let Some(i) = picked(choose(&t, None, 0, seed)) {
            seen[i] = true;
        }
    }
    assert_eq!(
        seen,
        [false, true, true, false, false],
        "the two least lagged"
    );
    assert!(
        matches!(choose(&t, Some(100), 0, 1), Choice::Primary { .. }),
        "a per-query lag limit is never relaxed"
    );
}

#[test]
fn open_breaker_ejects_then_half_open_admits() {
    let mut t = topo(&[(0, Some(0))]);
    for _ in 0..3 {
        t.record_failure(1, 1000);
    }
    assert!(matches!(choose(&t, None, 1000, 1), Choice::Primary { .. }));
    assert!(matches!(choose(&t, None, 5999, 1), Choice::Primary { .. }));
    assert_eq!(
        picked(choose(&t, None, 6000, 1)),
        Some(1),
        "half-open trial"
    );
    t.record_success(1);
    assert_eq!(t.servers[1].breaker.state(6000), BreakerState::Closed);
}

#[test]
fn least_outstanding_work_per_weight() {
    let mut t = topo(&[(0, Some(0)), (0, Some(0)), (0, Some(0))]);
    t.servers[1].in_flight = 4;
    t.servers[2].in_flight = 1;
    t.servers[3].in_flight = 3;
    assert_eq!(picked(choose(&t, None, 0, 7)), Some(2));
    t.servers[3].weight = 4; // 3/4 < 1/1
    assert_eq!(picked(choose(&t, None, 0, 7)), Some(3));
    t.servers[3].in_flight = 4; // 4/4 == 1/1: then connections decide
    t.servers[2].connections = 5;
    t.servers[3].connections = 8; // 8/4 < 5/1
    assert_eq!(picked(choose(&t, None, 0, 7)), Some(3));
}

#[test]
fn idle_replicas_share_by_weight() {
    let mut t = topo(&[(0, Some(0)), (0, Some(0))]);
    t.servers[2].weight = 3;
    let mut counts = [0u32; 3];
    for seed in 0..40_000u64 {
        counts[picked(choose(&t, None, 0, seed)).unwrap_or(0)] += 1;
    }
    let share = f64::from(counts[2]) / 40_000.0;
    assert!((0.72..0.78).contains(&share), "weight 3 of 4 got {share}");
}

#[test]
fn consecutive_seeds_spread_evenly() {
    // proptest found raw consecutive seeds skewing one of six replicas to 0.8 of its share.
    let t = topo(&[(0, Some(10)); 6]);
    let base = 7_040_449_572_198_169_425u64;
    let mut counts = [0u32; 7];
    for k in 0..6000 {
        counts[picked(choose(&t, None, 0, base.wrapping_add(k))).unwrap_or(0)] += 1;
    }
    assert!(
        counts[1..].iter().all(|c| (850..1150).contains(c)),
        "{counts:?}"
    );
}

#[test]
fn from_config_ranks_locations() {
    let yaml = include_str!("../../../examples/local-cluster.yaml");
    let config = crate::config::Config::from_yaml("x.yaml", yaml).expect("example parses");
    let t = TopologySnapshot::from_config(&config);
    assert_eq!(t.primary, Some(0));
    let ranks: Vec<u16> = t.servers.iter().map(|s| s.location_rank).collect();
    assert_eq!(ranks, [0, 0, 1]);
    assert!(
        matches!(choose(&t, None, 0, 1), Choice::NoServer(_)),
        "nothing is reachable before the monitor reports"
    );
    assert_eq!(
        location_rank(Some("a"), &["b".into()], Some("c")),
        LOCATION_UNUSED
    );
    assert_eq!(location_rank(Some("a"), &[], Some("c")), 1);
    assert_eq!(location_rank(None, &[], Some("c")), 0);
}

prop_compose! {
    fn arb_server(idx: usize)(
        rank in prop_oneof![Just(0u16), Just(1u16), Just(2u16), Just(LOCATION_UNUSED)],
        weight in 1u32..5,
        reachable in proptest::bool::weighted(0.8),
        replicating in proptest::bool::weighted(0.8),
        maintenance in proptest::bool::weighted(0.1),
        lag in proptest::option::weighted(0.8, 0u64..3000),
        prior_lag in proptest::option::weighted(0.8, 0u64..3000),
        max_lag in 100u64..2000,
        in_flight in 0u32..5,
        connections in 0u32..5,
        failures in 0u32..5,
        failed_at in 0u64..20_000,
    ) -> ServerState {
        let mut s = server(idx, Role::Replica, rank, None);
        s.weight = weight;
        s.reachable = reachable;
        s.replicating = replicating;
        s.maintenance = maintenance;
        s.max_lag_ms = max_lag;
        s.lag_gate.update(prior_lag, max_lag, max_lag / 2);
        s.lag_gate.update(lag, max_lag, max_lag / 2);
        s.lag_ms = lag;
        s.in_flight = in_flight;
        s.connections = connections;
        for _ in 0..failures {
            s.breaker.record_failure(failed_at, &BreakerPolicy::default());
        }
        s
    }
}

fn arb_topology() -> impl Strategy<Value = TopologySnapshot> {
    (0usize..70)
        .prop_flat_map(|n| (0..n).map(|i| arb_server(i + 1)).collect::<Vec<_>>())
        .prop_map(|replicas| {
            let mut t = topo(&[]);
            t.servers.extend(replicas);
            t
        })
}

fn eligible(t: &TopologySnapshot, i: usize, now: u64, max_lag: Option<u64>) -> bool {
    let s = &t.servers[i];
    i != 0
        && s.reachable
        && s.replicating
        && !s.maintenance
        && s.location_rank != LOCATION_UNUSED
        && s.breaker.allows(now)
        && match (s.lag_ms, max_lag) {
            (None, _) => false,
            (Some(l), Some(m)) => l <= m,
            (Some(l), None) => l <= s.max_lag_ms && s.lag_gate.serving(),
        }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Never an unreachable, non-replicating, drained, ejected or over-lag replica; always one
    /// of the best location when any qualifies; the primary only when none does.
    #[test]
    fn chooses_only_healthy_replicas_in_the_best_location(
        t in arb_topology(),
        now in 0u64..30_000,
        seed in any::<u64>(),
        max_lag in proptest::option::of(0u64..3000),
    ) {
        let best_rank = (0..t.servers.len())
            .filter(|&i| eligible(&t, i, now, max_lag))
            .map(|i| t.servers[i].location_rank)
            .min();
        match choose(&t, max_lag, now, seed) {
            Choice::Replica { server, over_lag } => {
                prop_assert!(!over_lag);
                prop_assert!(eligible(&t, server, now, max_lag), "picked {:?}", t.servers[server]);
                prop_assert_eq!(Some(t.servers[server].location_rank), best_rank);
            }
            Choice::Primary { server, .. } => {
                prop_assert_eq!(server, 0);
                prop_assert_eq!(best_rank, None);
            }
            Choice::NoServer(_) => prop_assert!(false, "primary is reachable"),
        }
    }

    /// With min_serving, an over-lag replica is only ever picked when flagged, and it is
    /// otherwise healthy.
    #[test]
    fn min_serving_only_relaxes_lag(t in arb_topology(), min in 0usize..4, seed in any::<u64>()) {
        let mut t = t;
        t.min_serving = min;
        if let Choice::Replica { server, over_lag } = choose(&t, None, 30_000, seed) {
            let s = &t.servers[server];
            prop_assert!(s.reachable && s.replicating && !s.maintenance);
            prop_assert!(s.breaker.allows(30_000) && s.location_rank != LOCATION_UNUSED);
            prop_assert_eq!(over_lag, !eligible(&t, server, 30_000, None));
        }
    }

    /// Equal idle replicas share reads evenly, with seeds from a counter (the cheapest thing a
    /// caller can pass).
    #[test]
    fn spreads_load_evenly_across_equal_replicas(n in 2usize..8, base in any::<u64>()) {
        let t = topo(&vec![(0, Some(10)); n]);
        let draws = 6000u64;
        let mut counts = vec![0u64; n + 1];
        for k in 0..draws {
            if let Some(i) = picked(choose(&t, None, 0, base.wrapping_add(k))) {
                counts[i] += 1;
            }
        }
        let mean = draws as f64 / n as f64;
        for c in &counts[1..] {
            prop_assert!((*c as f64 - mean).abs() < mean * 0.2, "{:?}", counts);
        }
    }
}

#[test]
fn idle_ties_are_drawn_in_proportion_to_weight() {
    let mut t = topo(&[(0, Some(0)), (0, Some(0))]);
    t.servers[2].weight = 3;
    let mut counts = [0u32; 3];
    for seed in 0..20_000 {
        counts[picked(choose(&t, None, 0, seed)).unwrap()] += 1;
    }
    // Expect 5,000 : 15,000; allow a wide margin for a fixed-seed sample.
    assert!((4_400..5_600).contains(&counts[1]), "{counts:?}");
    assert!((14_400..15_600).contains(&counts[2]), "{counts:?}");
}

#[test]
fn more_ties_than_the_tie_list_holds_still_spread_over_all() {
    // 150 idle local replicas, every one tied: the random tie break must reach them all.
    let replicas = vec![(0u16, Some(0u64)); 150];
    let t = topo(&replicas);
    let mut counts = vec![0u32; 151];
    for seed in 0..150_000 {
        counts[picked(choose(&t, None, 0, seed)).unwrap()] += 1;
    }
    assert_eq!(counts[0], 0, "never the primary");
    let (min, max) = (
        counts[1..].iter().min().unwrap(),
        counts[1..].iter().max().unwrap(),
    );
    // 1,000 expected each; a skew toward early or late positions would show here.
    assert!(*min > 800 && *max < 1_200, "min {min} max {max}");
    let first: u32 = counts[1..65].iter().sum();
    assert!(
        (60_000..68_000).contains(&first),
        "first 64 got {first} of 150,000 (expect 64,000)"
    );
}

#[test]
fn many_ties_with_mixed_weights_are_drawn_in_proportion() {
    // Contiguous ties of different weights (binary search on the weights before each), and
    // ties with busier replicas between them (second scan); every call checks index = scan.
    for busy_between in [false, true] {
        let mut t = topo(&[(0, Some(0)); 12]);
        for (i, s) in t.servers.iter_mut().enumerate().skip(1) {
            s.weight = 1 + (i as u32 % 3);
            if busy_between && i % 2 == 0 {
                s.in_flight = 1;
            }
        }
        let tied = |i: usize| !busy_between || i % 2 == 1;
        let total: u32 = (1..13)
            .filter(|&i| tied(i))
            .map(|i| t.servers[i].weight)
            .sum();
        let mut counts = [0u32; 13];
        let draws = 12_000;
        for seed in 0..draws {
            counts[picked(choose(&t, None, 0, seed)).unwrap()] += 1;
        }
        for i in 1..13 {
            let expect =
                f64::from(draws as u32) * f64::from(t.servers[i].weight) / f64::from(total);
            let got = f64::from(counts[i]);
            if tied(i) {
                assert!((got - expect).abs() < expect * 0.2, "{i}: {counts:?}");
            } else {
                assert_eq!(counts[i], 0, "{i} is busier: {counts:?}");
            }
        }
    }
}
