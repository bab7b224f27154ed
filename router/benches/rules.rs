//! Criterion benchmarks of query-rule matching against the classification it extends, on
//! sysbench's point select: no rules, four rules without a regular expression (user, address,
//! digest: the digest is computed once per statement), and the same with one regex rule.
//! Run: `cargo bench -p router --bench rules`.

use criterion::{criterion_group, criterion_main, Criterion};
use router::classify::classify;
use router::config::Config;
use router::rules::{Input, QueryRules, Scratch};
use std::hint::black_box;
use std::net::IpAddr;

const POINT_SELECT: &str = "SELECT c FROM sbtest1 WHERE id=5017";
const BASE: &str = "servers:\n  - {name: p, host: h, port: 1, role: primary}\nmonitor: {user: m}\n";

fn rules(text: &str) -> QueryRules {
    Config::from_yaml("bench.yaml", &format!("{BASE}query_rules:\n{text}"))
        .expect("valid rules")
        .rules
}

const NO_REGEX: &str = "  - {name: batch, user: batch, route: primary}
  - {name: office, client_addr: 10.0.0.0/8, max_lag_ms: 100}
  - {name: orders, digest: \"SELECT * FROM orders WHERE id = 1\", route: primary}
  - {name: reports, schema: reports, timeout_ms: 5000}
";

fn matching(r: &QueryRules, scratch: &mut Scratch, client: IpAddr) -> bool {
    let input = Input {
        sql: black_box(POINT_SELECT.as_bytes()),
        user: "app",
        client: Some(client),
        schema: || Some("sbtest".to_string()),
    };
    r.first_match(input, scratch).is_some()
}

fn bench(c: &mut Criterion) {
    let client: IpAddr = "192.168.1.20".parse().expect("ip");
    c.bench_function("rules/classify_point_select", |b| {
        b.iter(|| classify(black_box(POINT_SELECT.as_bytes())))
    });
    let mut scratch = Scratch::default();
    for (name, r) in [
        ("rules/none_point_select", QueryRules::default()),
        ("rules/4_no_regex_point_select", rules(NO_REGEX)),
        (
            "rules/5_with_regex_point_select",
            rules(&format!(
                "{NO_REGEX}  - {{name: slow, match: \"(?i)sleep\\\\(|benchmark\\\\(\", timeout_ms: 1000}}\n"
            )),
        ),
    ] {
        c.bench_function(name, |b| b.iter(|| matching(&r, &mut scratch, client)));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
