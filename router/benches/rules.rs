//! Criterion benchmarks of query-rule matching against the classification it extends (issue 12:
//! "matching costs no more than the classification it extends"), per statement of a realistic
//! mix: sysbench `oltp_read_write`'s statements plus two long ones (a 2 KB ORM SELECT, a
//! 50-row INSERT). Each iteration runs the whole mix as the proxy does per COM_QUERY: a new
//! statement (the digest cache reset), classification, then matching.
//!
//! - `mix/classify`: classification alone;
//! - `mix/classify_rules_{0,4,20}`: plus matching 0, 4 or 20 rules of every kind (user,
//!   schema, client address, digest, regular expression); one digest rule names sysbench's
//!   range SELECT, so its statements need their digest computed;
//! - `mix/classify_digest` and `mix/classify_digest_rules_20`: what the proxy runs with
//!   statement statistics on (the digest computed for `/admin/top` anyway), without and with
//!   the 20 rules: what rules add once the digest is there;
//! - `mix/lex` and `mix/digest`: one lexer pass over each statement, and the digest alone: the
//!   lexer pass is the most that producing the digest from the classifier's own pass could save.
//!
//! Run: `cargo bench -p router --bench rules`.

use criterion::{criterion_group, criterion_main, Criterion};
use router::classify::{classify, split_statements, StatementDigest};
use router::config::Config;
use router::rules::{Input, QueryRules};
use std::hint::black_box;
use std::net::IpAddr;

const BASE: &str = "servers:\n  - {name: p, host: h, port: 1, role: primary}\nmonitor: {user: m}\n";

fn rules(text: &str) -> QueryRules {
    Config::from_yaml("bench.yaml", &format!("{BASE}query_rules:\n{text}"))
        .expect("valid rules")
        .rules
}

/// One rule of each kind (schema with an address); the digest rule matches sysbench's simple
/// range SELECT.
const FOUR: &str = "  - {name: batch, user: batch, route: primary}
  - {name: office_reports, client_addr: 10.0.0.0/8, schema: reports, timeout_ms: 5000}
  - {name: ranges_fresh, digest: \"SELECT c FROM sbtest1 WHERE id BETWEEN 1 AND 2\", max_lag_ms: 100}
  - {name: slow, match: \"(?i)sleep\\\\(|benchmark\\\\(\", timeout_ms: 1000}
";

/// Sixteen more, as an operator's list grows: users, subnets, schemas, digests of other
/// tables, expressions.
const SIXTEEN: &str = "  - {name: etl, user: etl, timeout_ms: 60000}
  - {name: vpn, client_addr: 172.16.0.0/12, max_lag_ms: 500}
  - {name: analytics, schema: analytics, route: primary}
  - {name: orders_by_id, digest: \"SELECT * FROM orders WHERE id = 1\", route: primary}
  - {name: carts, digest: \"SELECT * FROM carts WHERE user_id = 1 AND status = 'open'\", max_lag_ms: 200}
  - {name: no_outfile, match: \"(?i)into\\\\s+outfile\", block: \"no files\"}
  - {name: audit_deletes, match: \"^DELETE FROM audit_log\", block: \"append only\"}
  - {name: admin_net, client_addr: 192.168.100.0/24, user: admin, route: primary}
  - {name: billing_user, user: billing, schema: billing, max_lag_ms: 50}
  - {name: session_touch, digest: \"UPDATE sessions SET seen = NOW() WHERE id = 1\", timeout_ms: 2000}
  - {name: stock_insert, digest: \"INSERT INTO stock (sku, qty) VALUES (1, 2)\", route: primary}
  - {name: info_schema, match: \"(?i)information_schema\", route: primary}
  - {name: legacy_app, user: legacy, client_addr: 10.9.0.0/16, block: \"retired\"}
  - {name: v6_clients, client_addr: \"fd00::/8\", max_lag_ms: 1000}
  - {name: search_like, match: \"(?i)like\\\\s+'%\", timeout_ms: 3000}
  - {name: reports_schema, schema: reports, max_lag_ms: 5000}
";

/// sysbench `oltp_read_write`'s statements (one transaction's kinds) and two long ones.
fn statements() -> Vec<String> {
    let c = "83868641912-28773972837-60736120486-75162659906-27563526494-20381887404-\
             41576422241-93426793964-56405065102-33518432330";
    let pad = "67847967377-48000963322-62604785301-91415491898-96926520291";
    let mut v: Vec<String> = [
        "BEGIN",
        "SELECT c FROM sbtest1 WHERE id=5017",
        "SELECT c FROM sbtest1 WHERE id BETWEEN 5017 AND 5116",
        "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 5017 AND 5116",
        "SELECT c FROM sbtest1 WHERE id BETWEEN 5017 AND 5116 ORDER BY c",
        "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 5017 AND 5116 ORDER BY c",
        "UPDATE sbtest1 SET k=k+1 WHERE id=5017",
        "DELETE FROM sbtest1 WHERE id=5017",
        "COMMIT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("UPDATE sbtest1 SET c='{c}' WHERE id=5017"));
    v.push(format!(
        "INSERT INTO sbtest1 (id, k, c, pad) VALUES (5017, 4993, '{c}', '{pad}')"
    ));
    v.push(orm_select());
    let rows: Vec<String> = (0..50)
        .map(|i| format!("({i}, {}, '{c}', '{pad}')", 4993 + i))
        .collect();
    v.push(format!(
        "INSERT INTO sbtest1 (id, k, c, pad) VALUES {}",
        rows.join(", ")
    ));
    v
}

/// A Hibernate-style SELECT of about 2 KB (as in the `router` bench).
fn orm_select() -> String {
    let cols: Vec<String> = (0..40)
        .map(|i| format!("order0_.column_number_{i} as column_{i}_1_0_"))
        .collect();
    format!(
        "select {}, customer1_.email as email2_3_1_ from orders order0_ \
         inner join customers customer1_ on order0_.customer_id=customer1_.id \
         where order0_.status in ('NEW', 'PAID', 'SHIPPED') and order0_.created_at>=? \
         and lower(customer1_.email) like ? order by order0_.created_at desc limit ?",
        cols.join(", ")
    )
}

/// What the proxy does per COM_QUERY: a new statement, classification, statistics' digest
/// (when `top`), rule matching. Returns something of each so nothing is optimised away.
fn run(
    mix: &[String],
    r: Option<&QueryRules>,
    top: bool,
    digest: &mut StatementDigest,
    client: IpAddr,
) -> usize {
    let mut n = 0;
    for sql in mix {
        let sql = black_box(sql.as_bytes());
        digest.reset();
        n += classify(sql).is_read() as usize;
        if top {
            n += digest.get(sql).1.len();
        }
        if let Some(r) = r {
            let input = Input {
                sql,
                user: "app",
                client: Some(client),
                schema: || Some("sbtest".to_string()),
            };
            n += r.first_match(input, digest).map_or(0, |(i, _)| i + 1);
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let client: IpAddr = "192.168.1.20".parse().expect("ip");
    let mix = statements();
    let none = QueryRules::default();
    let four = rules(FOUR);
    let twenty = rules(&format!("{FOUR}{SIXTEEN}"));
    assert_eq!((four.len(), twenty.len()), (4, 20));
    let mut d = StatementDigest::default();
    let mut g = c.benchmark_group("mix");
    for (name, r, top) in [
        ("classify", None, false),
        ("classify_rules_0", Some(&none), false),
        ("classify_rules_4", Some(&four), false),
        ("classify_rules_20", Some(&twenty), false),
        ("classify_digest", None, true),
        ("classify_digest_rules_20", Some(&twenty), true),
    ] {
        g.bench_function(name, |b| b.iter(|| run(&mix, r, top, &mut d, client)));
    }
    g.bench_function("lex", |b| {
        b.iter(|| {
            mix.iter()
                .map(|s| split_statements(black_box(s.as_bytes())).count())
                .sum::<usize>()
        })
    });
    g.bench_function("digest", |b| {
        b.iter(|| {
            mix.iter()
                .map(|s| {
                    d.reset();
                    d.get(black_box(s.as_bytes())).1.len()
                })
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
