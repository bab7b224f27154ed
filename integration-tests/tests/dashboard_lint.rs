//! A lint of the Grafana dashboards in `dashboards/`: there is no Grafana here to render them,
//! so what a render would show wrong is checked on the JSON. Every panel takes its data source
//! from the dashboard's data source variable (a hard-coded uid breaks on every other Grafana),
//! has a unit that fits its queries (seconds for latency and lag, a per-second unit for rates,
//! bytes for sizes, none/short for counts and states), a unique title, a refId per query, and
//! uses only variables the dashboard defines; the document has what Grafana needs to import it
//! (uid, title, schemaVersion, templating). The lint's own tests break a copy of the dashboard
//! each way.

use integration_tests::repo_root;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Grafana's own variables, which a dashboard may use without defining them.
const BUILTIN_VARIABLES: &[&str] = &[
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
];

/// What a query's values measure, read from its functions and metric names.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Measure {
    /// Seconds: latency quantiles, lag, ages.
    Duration,
    /// Events per second: `rate()` of a counter.
    Rate,
    /// Bytes per second: `rate()` of a `_bytes` counter.
    ByteRate,
    /// A size in bytes.
    Bytes,
    /// A count, a state (0/1) or an `increase()` over a window.
    Count,
}

impl Measure {
    /// Grafana unit ids that show this measure truthfully.
    fn units(self) -> &'static [&'static str] {
        match self {
            Measure::Duration => &["s", "ms", "µs", "ns", "dtdurations", "dtdurationms"],
            Measure::Rate => &["ops", "reqps", "rps", "wps", "iops", "cps"],
            Measure::ByteRate => &["Bps", "binBps", "bps", "binbps"],
            Measure::Bytes => &["bytes", "decbytes", "bits", "decbits"],
            Measure::Count => &[
                "none",
                "short",
                "locale",
                "bool",
                "bool_yes_no",
                "bool_on_off",
                "percentunit",
            ],
        }
    }
}

/// Metric and recording-rule names in a query (identifiers that start with `rwsplit`).
fn names(expr: &str) -> Vec<&str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("rwsplit"))
        .collect()
}

fn measure(expr: &str) -> Measure {
    let names = names(expr);
    let any = |part: &str| names.iter().any(|n| n.contains(part));
    let per_second = ["rate(", "irate(", "deriv("]
        .iter()
        .any(|f| expr.contains(f))
        || any(":rate");
    if expr.contains("histogram_quantile(") || (any("_seconds_sum") && any("_count")) {
        if any("_seconds") {
            Measure::Duration
        } else {
            Measure::Count
        }
    } else if per_second {
        if any("_bytes") {
            Measure::ByteRate
        } else {
            Measure::Rate
        }
    } else if any("_seconds") {
        Measure::Duration
    } else if any("_bytes") {
        Measure::Bytes
    } else {
        Measure::Count
    }
}

/// Variables a query refers to (`$name`, `${name}`, `${name:format}`).
fn variables(expr: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let name = match rest.strip_prefix('{') {
            Some(braced) => braced.split(['}', ':']).next().unwrap_or(""),
            None => {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            }
        };
        found.push(name);
    }
    found
}

/// Everything wrong with a dashboard, one sentence each naming the panel; empty when it is fine.
fn lint(dashboard: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for key in ["uid", "title"] {
        if dashboard[key].as_str().is_none_or(str::is_empty) {
            problems.push(format!("the dashboard has no {key}"));
        }
    }
    // 33 (Grafana 8.3) is where panels refer to data sources as {type, uid}.
    match dashboard["schemaVersion"].as_u64() {
        Some(v) if v >= 33 => {}
        other => problems.push(format!(
            "schemaVersion is {other:?}: Grafana needs a number, and this lint reads the \
             layout of schema 33 or later"
        )),
    }
    let Some(variables_defined) = dashboard["templating"]["list"].as_array() else {
        problems.push("the dashboard has no templating.list".into());
        return problems;
    };
    let defined: BTreeSet<&str> = variables_defined
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let datasource = variables_defined
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .and_then(|v| v["name"].as_str());
    let Some(datasource) = datasource else {
        problems.push(
            "templating.list has no Prometheus data source variable \
             ({\"type\": \"datasource\", \"query\": \"prometheus\"})"
                .into(),
        );
        return problems;
    };
    let uses_variable = |reference: &Value| {
        let uid = reference["uid"].as_str().unwrap_or("");
        reference["type"] == "prometheus"
            && (uid == format!("${{{datasource}}}") || uid == format!("${datasource}"))
    };

    let mut panels = Vec::new();
    collect_panels(&dashboard["panels"], &mut panels);
    if panels.is_empty() {
        problems.push("the dashboard has no panels".into());
    }
    let mut titles = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("");
        let name = format!("panel {title:?} (id {})", panel["id"]);
        if title.is_empty() {
            problems.push(format!("{name} has no title"));
        } else if !titles.insert(title) {
            problems.push(format!("{name}: the title is used by another panel"));
        }
        if panel["type"] == "row" || panel["type"] == "text" {
            continue;
        }
        if !uses_variable(&panel["datasource"]) {
            problems.push(format!(
                "{name}: datasource is {}, not the ${{{datasource}}} variable",
                panel["datasource"]
            ));
        }
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        if targets.is_empty() {
            problems.push(format!("{name} has no queries"));
        }
        let default_unit = panel["fieldConfig"]["defaults"]["unit"].as_str();
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            let ref_id = target["refId"].as_str().unwrap_or("");
            let expr = target["expr"].as_str().unwrap_or("");
            let query = format!("{name}, query {ref_id:?} ({expr})");
            // Overrides and legends find a query by its refId.
            if ref_id.is_empty() || !ref_ids.insert(ref_id) {
                problems.push(format!("{query} needs a refId of its own in the panel"));
            }
            if expr.trim().is_empty() {
                problems.push(format!("{query} has no expr"));
                continue;
            }
            if !target["datasource"].is_null() && !uses_variable(&target["datasource"]) {
                problems.push(format!(
                    "{query}: datasource is {}, not the ${{{datasource}}} variable",
                    target["datasource"]
                ));
            }
            for variable in variables(expr) {
                if !defined.contains(variable) && !BUILTIN_VARIABLES.contains(&variable) {
                    problems.push(format!(
                        "{query} uses ${variable}, which the dashboard does not define"
                    ));
                }
            }
            let measure = measure(expr);
            match unit_for(panel, ref_id).or(default_unit) {
                None | Some("") => problems.push(format!(
                    "{query} has no unit (expected one of {:?})",
                    measure.units()
                )),
                Some(unit) if !measure.units().contains(&unit) => problems.push(format!(
                    "{query} is shown in {unit:?}, but measures {measure:?} \
                     (expected one of {:?}; a per-query unit goes in a byFrameRefID override)",
                    measure.units()
                )),
                Some(_) => {}
            }
        }
    }
    problems
}

/// Panels in display order, those inside rows included.
fn collect_panels<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
    for panel in panels.as_array().into_iter().flatten() {
        out.push(panel);
        collect_panels(&panel["panels"], out);
    }
}

/// The unit a `byFrameRefID` override gives one query of a panel.
fn unit_for<'a>(panel: &'a Value, ref_id: &str) -> Option<&'a str> {
    panel["fieldConfig"]["overrides"]
        .as_array()?
        .iter()
        .filter(|o| o["matcher"]["id"] == "byFrameRefID" && o["matcher"]["options"] == ref_id)
        .flat_map(|o| o["properties"].as_array().into_iter().flatten())
        .find(|p| p["id"] == "unit")
        .and_then(|p| p["value"].as_str())
}

fn shipped() -> Value {
    let path = repo_root().join("dashboards/rwsplit-overview.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?} is not JSON: {e}"))
}

/// The shipped dashboard with one panel changed by `edit`.
fn with_panel(title: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut dashboard = shipped();
    let panel = dashboard["panels"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title:?} in the shipped dashboard"));
    edit(panel);
    dashboard
}

fn assert_flags(dashboard: &Value, expected: &[&str]) {
    let problems = lint(dashboard);
    for part in expected {
        assert!(
            problems.iter().any(|p| p.contains(part)),
            "expected a problem mentioning {part:?}, got {problems:#?}"
        );
    }
}

#[test]
fn every_shipped_dashboard_passes_the_lint() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_root().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{path:?} is not JSON: {e}"));
            let problems = lint(&dashboard);
            assert!(
                problems.is_empty(),
                "{path:?}:\n  {}",
                problems.join("\n  ")
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "no dashboard found in dashboards/");
}

#[test]
fn a_hard_coded_data_source_is_flagged() {
    let broken = with_panel("Queries / s", |p| {
        p["datasource"] = json!({"type": "prometheus", "uid": "P1809F7CD0C75ACF3"})
    });
    assert_flags(&broken, &["\"Queries / s\"", "P1809F7CD0C75ACF3"]);
    let broken = with_panel("Errors", |p| {
        p["targets"][1]["datasource"] = json!({"type": "prometheus", "uid": "prod"})
    });
    assert_flags(&broken, &["\"Errors\"", "query \"B\"", "\"prod\""]);
}

#[test]
fn a_missing_or_unfitting_unit_is_flagged() {
    let broken = with_panel("Max replica lag", |p| {
        p["fieldConfig"]["defaults"]
            .as_object_mut()
            .unwrap()
            .remove("unit");
    });
    assert_flags(&broken, &["\"Max replica lag\"", "has no unit"]);
    // A rate shown in seconds, and lag shown as a plain number.
    let broken = with_panel("Queries / s", |p| {
        p["fieldConfig"]["defaults"]["unit"] = json!("s")
    });
    assert_flags(&broken, &["\"Queries / s\"", "Rate"]);
    let broken = with_panel("Max replica lag", |p| {
        p["fieldConfig"]["defaults"]["unit"] = json!("short")
    });
    assert_flags(&broken, &["\"Max replica lag\"", "Duration"]);
    // A per-query override that contradicts its query.
    let broken = with_panel("Binlog stream", |p| {
        p["fieldConfig"]["overrides"] = json!([{
            "matcher": {"id": "byFrameRefID", "options": "B"},
            "properties": [{"id": "unit", "value": "reqps"}]
        }])
    });
    assert_flags(&broken, &["\"Binlog stream\"", "query \"B\"", "\"reqps\""]);
}

#[test]
fn a_duplicate_title_is_flagged() {
    let broken = with_panel("Routing reasons", |p| p["title"] = json!("Errors"));
    assert_flags(&broken, &["\"Errors\"", "used by another panel"]);
}

#[test]
fn a_missing_or_repeated_ref_id_is_flagged() {
    let broken = with_panel("Errors", |p| p["targets"][2]["refId"] = json!("A"));
    assert_flags(&broken, &["\"Errors\"", "needs a refId"]);
    let broken = with_panel("Errors", |p| {
        p["targets"][0].as_object_mut().unwrap().remove("refId");
    });
    assert_flags(&broken, &["\"Errors\"", "needs a refId"]);
}

#[test]
fn an_undefined_variable_is_flagged() {
    let broken = with_panel("Backend connections", |p| {
        p["targets"][0]["expr"] =
            json!("sum by (backend, state) (rwsplit_backend_connections{backend=~\"$backend\"})")
    });
    assert_flags(&broken, &["\"Backend connections\"", "$backend"]);
}

#[test]
fn a_document_grafana_cannot_import_is_flagged() {
    let mut broken = shipped();
    broken.as_object_mut().unwrap().remove("uid");
    broken["schemaVersion"] = json!("39");
    assert_flags(&broken, &["no uid", "schemaVersion"]);
    let mut broken = shipped();
    broken["templating"]["list"] = json!([]);
    assert_flags(&broken, &["no Prometheus data source variable"]);
    let mut broken = shipped();
    broken.as_object_mut().unwrap().remove("templating");
    assert_flags(&broken, &["no templating.list"]);
}

#[test]
fn measures_are_read_from_the_query() {
    use Measure::*;
    for (expr, want) in [
        ("sum(rate(rwsplit_queries_total[1m]))", Rate),
        (
            "histogram_quantile(0.99, sum by (le) (rate(rwsplit_query_duration_seconds_bucket[5m])))",
            Duration,
        ),
        ("max(rwsplit_replica_lag_seconds)", Duration),
        ("rwsplit_binlog_last_event_age_seconds", Duration),
        ("sum(rate(rwsplit_binlog_bytes_total[1m]))", ByteRate),
        ("increase(rwsplit_binlog_stream_reconnects_total[5m])", Count),
        ("sum by (backend, state) (rwsplit_backend_connections)", Count),
        ("rwsplit:queries:rate1m", Rate),
        ("rwsplit:query_duration_seconds:p99_5m", Duration),
    ] {
        assert_eq!(measure(expr), want, "{expr}");
    }
}
