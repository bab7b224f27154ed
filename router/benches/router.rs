//! Criterion benchmarks of the routing hot path: classification of sysbench's point select, an
//! INSERT, a 2 KB ORM SELECT and a transaction sequence through a session; replica choice among
//! 3 and 64 replicas. Targets (issue 3): < 1 µs point select and INSERT, < 200 ns choice of 64.

use criterion::{criterion_group, criterion_main, Criterion};
use router::choice::{
    BreakerPolicy, Choice, ChoiceIndex, CircuitBreaker, LagGate, ServerState, TopologySnapshot,
};
use router::classify::classify;
use router::config::{NoReplicaPolicy, Role};
use router::session::{Session, SessionOptions, SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS};
use std::hint::black_box;

const POINT_SELECT: &str = "SELECT c FROM sbtest1 WHERE id=5017";
const INSERT: &str = "INSERT INTO sbtest1 (id, k, c, pad) VALUES (5017, 4993, \
    '83868641912-28773972837-60736120486-75162659906-27563526494-20381887404-41576422241-93426793964-56405065102-33518432330', \
    '67847967377-48000963322-62604785301-91415491898-96926520291')";

/// A Hibernate-style SELECT of about 2 KB: many aliased columns, joins, functions, IN list.
fn orm_select() -> String {
    let mut cols = Vec::new();
    for i in 0..40 {
        cols.push(format!("order0_.column_number_{i} as column_{i}_1_0_"));
    }
    let s = format!(
        "select {}, customer1_.email as email2_3_1_, COALESCE(customer1_.nickname, customer1_.name) as name3_3_1_, \
         DATE_FORMAT(order0_.created_at, '%Y-%m-%d') as created4_1_0_ from orders order0_ \
         inner join customers customer1_ on order0_.customer_id=customer1_.id \
         left outer join addresses address2_ on customer1_.address_id=address2_.id \
         where order0_.status in ('NEW', 'PAID', 'SHIPPED') and order0_.created_at>=? and lower(customer1_.email) like ? \
         and order0_.id in (select max(o.id) from orders o group by o.customer_id) \
         order by order0_.created_at desc limit ?",
        cols.join(", ")
    );
    assert!(s.len() >= 2000, "{}", s.len());
    s
}

fn topology(replicas: usize) -> TopologySnapshot {
    let mut servers = Vec::with_capacity(replicas + 1);
    for i in 0..=replicas {
        let mut gate = LagGate::default();
        gate.update(Some(10), 1000, 500);
        servers.push(ServerState {
            idx: i,
            role: if i == 0 { Role::Primary } else { Role::Replica },
            // Worst case: every replica in the proxy's own location, so none is skipped early.
            location_rank: 0,
            weight: 1 + (i % 2) as u32,
            reachable: true,
            replicating: true,
            maintenance: false,
            lag_ms: Some(10),
            max_lag_ms: 1000,
            lag_gate: gate,
            in_flight: (i % 4) as u32,
            connections: (i % 7) as u32,
            breaker: CircuitBreaker::new(),
        });
    }
    let mut t = TopologySnapshot {
        servers,
        primary: Some(0),
        last_writer: None,
        lag_recovery_ms: 500,
        min_serving: 0,
        no_replica: NoReplicaPolicy::Primary,
        breaker: BreakerPolicy::default(),
        index: ChoiceIndex::default(),
    };
    // As the proxy does once per published topology; choices then scan the candidate list.
    t.reindex();
    assert!(matches!(
        t.choose_replica(None, 1_000, 1),
        Choice::Replica { .. }
    ));
    t
}

fn bench(c: &mut Criterion) {
    c.bench_function("classify/point_select", |b| {
        b.iter(|| classify(black_box(POINT_SELECT.as_bytes())))
    });
    c.bench_function("classify/insert", |b| {
        b.iter(|| classify(black_box(INSERT.as_bytes())))
    });
    let orm = orm_select();
    c.bench_function("classify/orm_select_2kb", |b| {
        b.iter(|| classify(black_box(orm.as_bytes())))
    });
    // What every COM_QUERY pays for KILL and CONNECTION_ID() (issue 9): the KILL check lexes the
    // first token; the CONNECTION_ID() pre-check scans for `_` (many in ORM SQL, none in 1 MB of
    // INSERT values) and allocates nothing when the name is absent.
    let mut out = Vec::with_capacity(256);
    // Statement digests for /admin/top: computed once per statement the proxy runs.
    let mut digest_buf = String::new();
    c.bench_function("digest/point_select", |b| {
        b.iter(|| router::classify::digest(black_box(POINT_SELECT.as_bytes()), &mut digest_buf))
    });
    c.bench_function("digest/insert", |b| {
        b.iter(|| router::classify::digest(black_box(INSERT.as_bytes()), &mut digest_buf))
    });
    c.bench_function("digest/orm_select_2kb", |b| {
        b.iter(|| router::classify::digest(black_box(orm.as_bytes()), &mut digest_buf))
    });
    c.bench_function("session_id/kill_check_point_select", |b| {
        b.iter(|| router::classify::kill(black_box(POINT_SELECT.as_bytes())))
    });
    c.bench_function("session_id/connection_id_check_point_select", |b| {
        b.iter(|| {
            router::classify::substitute_connection_id(
                black_box(POINT_SELECT.as_bytes()),
                7,
                &mut out,
            )
        })
    });
    c.bench_function("session_id/connection_id_check_orm_select_2kb", |b| {
        b.iter(|| {
            router::classify::substitute_connection_id(black_box(orm.as_bytes()), 7, &mut out)
        })
    });
    let big = format!(
        "INSERT INTO t VALUES {}",
        vec!["(1,'abcdefghij')"; 70_000].join(",")
    );
    c.bench_function("session_id/connection_id_check_insert_1mb", |b| {
        b.iter(|| {
            router::classify::substitute_connection_id(black_box(big.as_bytes()), 7, &mut out)
        })
    });
    c.bench_function("session_id/connection_id_substitute", |b| {
        b.iter(|| {
            out.clear();
            router::classify::substitute_connection_id(
                black_box(b"SELECT CONNECTION_ID()".as_slice()),
                7,
                &mut out,
            )
        })
    });
    // sysbench oltp_read_write's transaction shape through the session state machine.
    let trx: [&[u8]; 6] = [
        b"BEGIN",
        b"SELECT c FROM sbtest1 WHERE id=5017",
        b"UPDATE sbtest1 SET k=k+1 WHERE id=5017",
        b"DELETE FROM sbtest1 WHERE id=5017",
        INSERT.as_bytes(),
        b"COMMIT",
    ];
    let mut session = Session::new(SessionOptions::default());
    c.bench_function("session/transaction_6_statements", |b| {
        b.iter(|| {
            for (i, sql) in trx.iter().enumerate() {
                black_box(session.route_query(black_box(sql)));
                let in_trans = if i + 1 < trx.len() {
                    SERVER_STATUS_IN_TRANS
                } else {
                    0
                };
                session.on_ok(SERVER_STATUS_AUTOCOMMIT | in_trans);
            }
        })
    });
    // Busy replicas (varied in-flight counts and connections) and idle ones (all equal: every
    // replica ties, so every one enters the weighted draw — the worst case).
    let mut idle = topology(64);
    for s in &mut idle.servers {
        s.in_flight = 0;
        s.connections = 0;
        s.weight = 1;
    }
    idle.reindex();
    assert!(matches!(
        idle.choose_replica(None, 1_000, 1),
        Choice::Replica { .. }
    ));
    let mut seed = 0u64;
    c.bench_function("choice/replicas_64_idle", |b| {
        b.iter(|| {
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            idle.choose_replica(None, black_box(1_000), seed)
        })
    });
    for n in [3usize, 64] {
        let t = topology(n);
        let mut seed = 0u64;
        c.bench_function(&format!("choice/replicas_{n}"), |b| {
            b.iter(|| {
                seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                t.choose_replica(None, black_box(1_000), seed)
            })
        });
    }
    // A `rwsplit:max_lag_ms` hint replaces each replica's lag limit and gate: the choice
    // filters the index's replicas with a known lag by the hint.
    let t = topology(64);
    let mut seed = 0u64;
    c.bench_function("choice/replicas_64_max_lag_hint", |b| {
        b.iter(|| {
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            t.choose_replica(black_box(Some(5_000)), black_box(1_000), seed)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
