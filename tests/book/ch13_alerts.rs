//! Chapter 13: the alerting rules, the Alertmanager route and the Grafana dashboard in
//! `deploy/`, checked by Prometheus' own tools and against what the server exports.
//!
//! `promtool` and `amtool` come from the Debian packages `prometheus` and
//! `prometheus-alertmanager` (`bash .ci/setup all` installs them; `bash .ci/test`
//! points `DLBOOK_PROMTOOL` and `DLBOOK_AMTOOL` at them). Without them the tests fail
//! and say how to get them: a rule check that was not run must not read as one that
//! passed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const RULES: &str = "deploy/prometheus/alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/alerts_test.yml";
const ALERTMANAGER: &str = "deploy/prometheus/alertmanager.yml";
const GRAFANA: &str = "deploy/grafana/dlbook.json";

/// Metrics Prometheus makes itself, which a rule may name.
const PROMETHEUS_OWN: [&str; 1] = ["up"];

fn tool(var: &str, package: &str) -> PathBuf {
    let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
        panic!(
            "{var} is not set: this test runs Prometheus' own tools. Install them with \
             `bash .ci/setup all` (the Debian package `{package}`) and run the suite with \
             `bash .ci/test`, or set {var} to the tool's path (`apt-get install {package}`)"
        )
    };
    let p = PathBuf::from(p);
    assert!(
        p.exists(),
        "{var}={} does not exist: run `bash .ci/setup all`",
        p.display()
    );
    p
}

fn promtool() -> PathBuf {
    tool("DLBOOK_PROMTOOL", "prometheus")
}

fn amtool() -> PathBuf {
    tool("DLBOOK_AMTOOL", "prometheus-alertmanager")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `bin args` in the book's root; returns whether it succeeded and what it printed.
fn run(bin: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap()
}

/// The alert names of a rules file, in order.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|s| s.trim().to_string())
        .collect()
}

/// The metric names an expression names: the project's own all start with `dlbook_`;
/// Prometheus' own are listed in [`PROMETHEUS_OWN`].
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let is_own =
                PROMETHEUS_OWN.contains(&word) && expr[i..].trim_start().starts_with('{');
            if word.starts_with("dlbook_") || is_own {
                out.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The `expr:` of every rule (one line, or the indented block after `expr: |`).
fn rule_exprs(rules: &str) -> Vec<String> {
    let lines: Vec<&str> = rules.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.trim().strip_prefix("expr:") else {
            continue;
        };
        if rest.trim() == "|" {
            let indent = l.len() - l.trim_start().len();
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|b| b.len() - b.trim_start().len() > indent)
                .copied()
                .collect();
            out.push(block.join("\n"));
        } else {
            out.push(rest.trim().to_string());
        }
    }
    out
}

/// `promtool check rules` reads every rule: valid PromQL, valid templates.
#[test]
fn promtool_accepts_the_alert_rules() {
    let (ok, text) = run(&promtool(), &["check", "rules", RULES]);
    assert!(ok, "{text}");
    let n = alert_names(&read(RULES)).len();
    assert!(n >= 6, "only {n} alerts");
    assert!(
        text.contains(&format!("SUCCESS: {n} rules found")),
        "{text}"
    );
}

/// `promtool test rules` passes, and it tests every alert: each one is expected to fire
/// on some series (and, since promtool fails on any alert it did not expect, to stay
/// quiet on the healthy series beside it).
#[test]
fn every_alert_fires_on_a_bad_series_and_not_on_a_healthy_one() {
    let (ok, text) = run(&promtool(), &["test", "rules", RULE_TESTS]);
    assert!(ok && text.contains("SUCCESS"), "{text}");
    let tests = read(RULE_TESTS);
    for alert in alert_names(&read(RULES)) {
        // The test blocks that name this alert and expect it with labels.
        let fires = tests
            .split("- eval_time:")
            .filter(|block| block.contains(&format!("alertname: {alert}\n")))
            .any(|block| block.contains("exp_labels:"));
        assert!(fires, "no test expects {alert} to fire");
    }
}

/// The rule tests have teeth: the same tests run on rules whose latency threshold is
/// moved from 200 ms to 500 ms fail.
#[test]
fn the_rule_tests_fail_on_a_wrong_threshold() {
    let dir = std::env::temp_dir().join(format!("dlbook-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = read(RULES);
    let wrong = rules.replacen("          ) > 0.2\n", "          ) > 0.5\n", 1);
    assert_ne!(wrong, rules, "the latency threshold was not found");
    std::fs::write(dir.join("alerts.yml"), wrong).unwrap();
    std::fs::write(dir.join("alerts_test.yml"), read(RULE_TESTS)).unwrap();
    let out = Command::new(promtool())
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !out.status.success(),
        "the tests passed on wrong rules:\n{text}"
    );
    assert!(text.contains("DlbookHighLatencyP99"), "{text}");
}

/// `amtool check-config` accepts the Alertmanager configuration, and its routes send
/// pages to the on-call receiver and drift tickets to the model's team.
#[test]
fn the_alertmanager_route_sends_pages_and_drift_tickets_apart() {
    let am = amtool();
    let (ok, text) = run(&am, &["check-config", ALERTMANAGER]);
    assert!(ok && text.contains("SUCCESS"), "{text}");
    let route = |labels: &[&str]| {
        let cfg = format!("--config.file={ALERTMANAGER}");
        let mut args = vec!["config", "routes", "test", cfg.as_str()];
        args.extend_from_slice(labels);
        let (ok, text) = run(&am, &args);
        assert!(ok, "{text}");
        text.lines()
            .filter(|l| !l.starts_with("Warning"))
            .collect::<String>()
            .trim()
            .to_string()
    };
    assert_eq!(
        route(&["alertname=DlbookHighErrorRate", "severity=page"]),
        "on-call"
    );
    assert_eq!(
        route(&["alertname=DlbookDrift", "severity=ticket"]),
        "ml-team"
    );
}

/// The sample names a live server exports (after traffic and drift checks).
fn exported() -> BTreeSet<String> {
    let text = &super::ch13_monitor::live_metrics();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Every metric the alert rules and the Grafana dashboard name is one a live server
/// exports (read from its `/metrics`), so neither can go stale when a metric is renamed.
#[test]
fn every_metric_the_rules_and_the_dashboard_name_is_exported() {
    let have = exported();
    let mut used = BTreeSet::new();
    for e in rule_exprs(&read(RULES)) {
        let names = metric_names(&e);
        assert!(!names.is_empty(), "a rule names no metric: {e}");
        used.extend(names);
    }
    for e in grafana_exprs(&grafana()) {
        let names = metric_names(&e);
        assert!(!names.is_empty(), "a panel names no metric: {e}");
        used.extend(names);
    }
    let missing: Vec<&String> = used
        .iter()
        .filter(|m| !have.contains(*m) && !PROMETHEUS_OWN.contains(&m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "named but not exported: {missing:?}\nexported: {have:?}"
    );
    // The rules cover latency, errors, readiness and drift.
    for m in [
        "dlbook_http_request_duration_seconds_bucket",
        "dlbook_http_requests_total",
        "dlbook_model_ready",
        "dlbook_drift_alarm",
    ] {
        assert!(used.contains(m), "nothing uses {m}");
    }
}

fn grafana() -> Value {
    serde_json::from_str(&read(GRAFANA)).expect("the Grafana dashboard is JSON")
}

fn grafana_exprs(d: &Value) -> Vec<String> {
    d["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect()
}

/// The Grafana dashboard has what Grafana needs to import it: a title, a uid, a schema
/// version, a Prometheus datasource variable that every panel and query uses, and
/// panels with a known type, a place on the 24-column grid that overlaps no other,
/// and queries with a `refId` and an expression.
#[test]
fn the_grafana_dashboard_has_what_grafana_needs() {
    let d = grafana();
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let uid = d["uid"].as_str().unwrap();
    assert!(!uid.is_empty() && uid.len() <= 40, "uid {uid:?}");
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(ids.insert(p["id"].as_u64().unwrap()), "{title}: id reused");
        let kind = p["type"].as_str().unwrap();
        assert!(
            [
                "timeseries",
                "stat",
                "table",
                "piechart",
                "bargauge",
                "gauge"
            ]
            .contains(&kind),
            "{title}: type {kind}"
        );
        kinds.insert(kind);
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(w >= 1 && h >= 1 && x + w <= 24, "{title}: gridPos {g}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "{title} overlaps another panel");
            }
        }
        assert_eq!(p["datasource"]["uid"], ds_ref.as_str(), "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert!(
                t["refId"].as_str().is_some_and(|r| !r.is_empty()),
                "{title}"
            );
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}");
        }
    }
    // Latency quantiles, throughput, errors, classes and drift scores all have a panel.
    let exprs = grafana_exprs(&d).join("\n");
    for needle in [
        "histogram_quantile(0.5,",
        "histogram_quantile(0.99,",
        "status=\"200\"",
        "status=~\"5..\"",
        "dlbook_predictions_total",
        "dlbook_drift_score",
    ] {
        assert!(exprs.contains(needle), "no panel queries {needle}");
    }
}

/// The name extraction the staleness check rests on finds the metrics and only them.
#[test]
fn metric_names_are_read_from_promql() {
    let e =
        "histogram_quantile(0.99, sum by (le) (rate(dlbook_x_bucket{route=\"a\"}[5m]))) \
             > on (job) 2 * dlbook_y or up{job=\"dlbook\"} == 0";
    let names: Vec<String> = metric_names(e).into_iter().collect();
    assert_eq!(names, ["dlbook_x_bucket", "dlbook_y", "up"]);
}
