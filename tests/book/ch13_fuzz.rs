//! Chapter 13: the server fuzzed from its own OpenAPI document by schemathesis (PyPI
//! `schemathesis==4.32.5`), every check on, against a real socket.
//!
//! The test runs the `schemathesis` that `DLBOOK_SCHEMATHESIS` names; `bash .ci/setup all`
//! installs it in a venv and `bash .ci/test` sets the variable. Without it the test fails
//! and says how to get it: a fuzz run that was not run must not read as one that passed.

use std::path::PathBuf;
use std::process::Command;

use dlbook::serve::local::Running;
use serde_json::Value;

/// The variable naming the schemathesis command.
const VAR: &str = "DLBOOK_SCHEMATHESIS";
/// Test cases per operation, and the seed: a bounded, repeatable run.
const MAX_EXAMPLES: u32 = 40;
const SEED: u32 = 13;

fn schemathesis() -> PathBuf {
    let Some(p) = std::env::var_os(VAR).filter(|p| !p.is_empty()) else {
        panic!(
            "{VAR} is not set: this test runs the real schemathesis. Install it with \
             `bash .ci/setup all` (a venv with schemathesis==4.32.5 under ~/.cache/dlbook) \
             and run the suite with `bash .ci/test`, or set {VAR} to a `schemathesis` \
             command from `pip install schemathesis==4.32.5`"
        )
    };
    let p = PathBuf::from(p);
    assert!(
        p.exists(),
        "{VAR}={} does not exist: run `bash .ci/setup all`",
        p.display()
    );
    p
}

/// The server as `dlbook serve` runs it (an untrained CNN: the fuzzer checks the
/// service, not the model), on a free port.
fn server() -> Running {
    Running::start(super::ch13_serve::untrained("fuzz", 2, 256), 2).unwrap()
}

/// What one schemathesis run found.
struct Fuzzed {
    /// Test cases run.
    cases: u64,
    /// Answers by status.
    statuses: std::collections::BTreeMap<u64, u64>,
    /// Failed checks, each with what failed.
    failures: Vec<String>,
    /// What schemathesis printed.
    text: String,
}

fn fuzz() -> Fuzzed {
    let bin = schemathesis();
    let srv = server();
    let scratch =
        std::env::temp_dir().join(format!("dlbook-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let report = scratch.join("report");
    let out = Command::new(&bin)
        .arg("run")
        .arg(srv.url("/openapi.json"))
        .args(["--checks", "all", "--mode", "all"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--seed", &SEED.to_string()])
        .args(["--workers", "2", "--request-timeout", "10", "--no-color"])
        // Nothing written into the working tree (Hypothesis keeps a database by default).
        .args(["--generation-database", "none"])
        .args(["--report", "ndjson", "--report-dir"])
        .arg(&report)
        // One of the cases it sends is a body of several megabytes.
        .args(["--suppress-health-check", "data_too_large,too_slow"])
        .env("SCHEMATHESIS_HOOKS", "")
        // It keeps a cache of crashes in its working directory: not in the book's tree.
        .current_dir(&scratch)
        .output()
        .expect("starting schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    srv.stop().unwrap();
    // The cases and failures, from its event log.
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    let log = std::fs::read_dir(&report)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .unwrap_or_default();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(checks) = v.pointer("/ScenarioFinished/recorder/checks") {
            for (_, list) in checks.as_object().into_iter().flatten() {
                for c in list.as_array().into_iter().flatten() {
                    if c["status"] != "success" {
                        failures.push(format!("{}: {}", c["name"], c["failure_info"]));
                    }
                }
            }
        }
        if let Some(cs) = v.pointer("/ScenarioFinished/recorder/cases") {
            cases += cs.as_object().map_or(0, |o| o.len() as u64);
        }
        if let Some(its) = v.pointer("/ScenarioFinished/recorder/interactions") {
            for (_, it) in its.as_object().into_iter().flatten() {
                if let Some(code) =
                    it.pointer("/response/status_code").and_then(Value::as_u64)
                {
                    *statuses.entry(code).or_insert(0) += 1;
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        out.status.success() || !failures.is_empty(),
        "schemathesis ended with {} and no failure in its log:\n{text}",
        out.status
    );
    Fuzzed {
        cases,
        statuses,
        failures,
        text,
    }
}

/// Every check schemathesis has, on cases drawn from the server's own OpenAPI document
/// (valid requests and deliberately broken ones): no 5xx, and every answer's status,
/// content type and body as the document says.
#[test]
fn the_openapi_fuzz_run_finds_no_failure() {
    let f = fuzz();
    let text = &f.text;
    assert!(
        f.failures.is_empty(),
        "{} failed checks:\n{}\n{text}",
        f.failures.len(),
        f.failures.join("\n")
    );
    assert!(f.cases >= 100, "only {} test cases ran:\n{text}", f.cases);
    // The run reached the model (valid requests answered) and the validator (invalid
    // ones refused), and nothing was a server error.
    let count = |lo: u64, hi: u64| f.statuses.range(lo..hi).map(|(_, n)| n).sum::<u64>();
    assert!(count(200, 300) >= 10, "few 2xx answers: {:?}", f.statuses);
    assert!(count(400, 500) >= 10, "few 4xx answers: {:?}", f.statuses);
    assert_eq!(count(500, 600), 0, "server errors: {:?}", f.statuses);
    eprintln!(
        "schemathesis: {} test cases, answers by status {:?}, no failure",
        f.cases, f.statuses
    );
}
