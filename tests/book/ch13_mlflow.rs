//! Chapter 13: the real MLflow reads what the tracker writes, over its REST API and from
//! the file store.
//!
//! These tests run MLflow itself (PyPI `mlflow==3.17.2`), from the Python that
//! `DLBOOK_MLFLOW_PYTHON` names; `bash .ci/setup all` installs it in a venv and
//! `bash .ci/test` sets the variable. Without it the tests fail and say how to get it:
//! a proof that was not run must not read as one that passed.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dlbook::mlops::rest::error_code;
use dlbook::mlops::tracking::{RunStatus, Tracker};
use serde_json::Value;

/// The variable naming the Python that has MLflow.
const PYTHON_VAR: &str = "DLBOOK_MLFLOW_PYTHON";
/// The longest a fresh server may take to answer `/health` (it creates its SQLite
/// schema first: seconds on an idle machine, more on a loaded 2-core one).
const SERVER_START: Duration = Duration::from_secs(120);

pub(crate) fn scratch(name: &str) -> PathBuf {
    let d =
        std::env::temp_dir().join(format!("dlbook-ch13-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The Python with MLflow, or a failure saying how to install it.
pub(crate) fn mlflow_python() -> PathBuf {
    let Some(p) = std::env::var_os(PYTHON_VAR).filter(|p| !p.is_empty()) else {
        panic!(
            "{PYTHON_VAR} is not set: these tests run the real MLflow. Install it with \
             `bash .ci/setup all` (a venv with mlflow==3.17.2 under ~/.cache/dlbook) and run \
             the suite with `bash .ci/test`, or set {PYTHON_VAR} to a python that has \
             `pip install mlflow==3.17.2`"
        )
    };
    let p = PathBuf::from(p);
    assert!(
        p.exists(),
        "{PYTHON_VAR}={} does not exist: run `bash .ci/setup all`",
        p.display()
    );
    p
}

/// Runs `script` with MLflow's Python and `env`, and parses the JSON it prints last.
pub(crate) fn python_json(python: &Path, script: &str, env: &[(&str, &str)]) -> Value {
    let out = Command::new(python)
        .args(["-c", script])
        .envs(env.iter().copied())
        .output()
        .expect("starting MLflow's Python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// An `mlflow server` child, killed (and waited for) when dropped, also when a test
/// fails.
pub(crate) struct Server {
    child: Child,
    pub(crate) uri: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `mlflow server` on a free port of 127.0.0.1 with a SQLite store and proxied
    /// artifacts in `dir`, and waits (bounded) until it answers.
    pub(crate) fn start(python: &Path, dir: &Path) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("server.log");
        let child = Command::new(python)
            .args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .args(["--workers", "1"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting mlflow server");
        let mut server = Server {
            child,
            uri: format!("http://127.0.0.1:{port}"),
            log,
        };
        let t0 = Instant::now();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        loop {
            if agent.get(format!("{}/health", server.uri)).call().is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("mlflow server exited ({status}):\n{}", server.log_text());
            }
            assert!(
                t0.elapsed() < SERVER_START,
                "mlflow server did not answer within {SERVER_START:?}:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

/// What both tests log: per-step losses (one of them NaN, which JSON cannot spell), two
/// parameters, a tag and an artifact. Returns the run's id.
fn log_a_run(t: &Tracker, exp: &str, name: &str, artifact: &Path) -> String {
    let mut run = t
        .start_run(
            exp,
            name,
            &[("git_commit", "0123abc"), ("data_sha256", "feed")],
        )
        .unwrap();
    run.log_param("lr", "0.05").unwrap();
    run.log_param("epochs", "4").unwrap();
    for (step, loss) in LOSSES.iter().enumerate() {
        run.log_metrics(&[("loss", *loss), ("acc", step as f64 / 4.0)], step as i64)
            .unwrap();
    }
    run.log_artifact(artifact, "model.safetensors").unwrap();
    let id = run.id().to_string();
    run.end(RunStatus::Finished).unwrap();
    id
}

const LOSSES: [f64; 4] = [2.25, 1.5, f64::NAN, 0.75];

/// The Python that reads runs back with MLflow's client: every run of experiment
/// `EXP` (an environment variable), with its parameters, tags, loss history and artifact names.
const READ_BACK: &str = r#"
import json, math, os, mlflow
from mlflow import MlflowClient
exp = os.environ["EXP"]
df = mlflow.search_runs(experiment_names=[exp], output_format="list")
c = MlflowClient()
out = []
for r in df:
    hist = c.get_metric_history(r.info.run_id, "loss")
    out.append({
        "run_id": r.info.run_id,
        "name": r.info.run_name,
        "status": r.info.status,
        "params": r.data.params,
        "tags": {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")},
        "loss": [[m.step, None if math.isnan(m.value) else m.value]
                 for m in sorted(hist, key=lambda m: m.step)],
        "acc_last": r.data.metrics.get("acc"),
        "artifacts": sorted(a.path for a in c.list_artifacts(r.info.run_id)),
    })
print(json.dumps(out))
"#;

/// Checks the Python client's view of the run `id` logged by [`log_a_run`].
fn check_read_back(runs: &Value, id: &str, name: &str) {
    let r = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == id)
        .unwrap_or_else(|| panic!("run {id} not found by MLflow: {runs}"));
    assert_eq!(r["name"], name);
    assert_eq!(r["status"], "FINISHED");
    assert_eq!(r["params"]["lr"], "0.05");
    assert_eq!(r["params"]["epochs"], "4");
    assert_eq!(r["tags"]["git_commit"], "0123abc");
    assert_eq!(r["tags"]["data_sha256"], "feed");
    let loss: Vec<(i64, Option<f64>)> =
        serde_json::from_value(r["loss"].clone()).unwrap();
    let expected: Vec<(i64, Option<f64>)> = LOSSES
        .iter()
        .enumerate()
        .map(|(s, &v)| (s as i64, (!v.is_nan()).then_some(v)))
        .collect();
    assert_eq!(
        loss, expected,
        "the loss history, step by step (NaN as null)"
    );
    assert_eq!(r["acc_last"], 0.75);
    assert_eq!(r["artifacts"], serde_json::json!(["model.safetensors"]));
}

/// Runs logged from Rust to a real `mlflow server` over its REST API read back
/// identically with MLflow's own Python client (parameters, tags, each step's metric,
/// NaN included, status, and the artifact uploaded through the server's proxy); the
/// server's refusal to change a parameter arrives as MLflow's error code, not a panic.
#[test]
fn mlflow_server_reads_runs_logged_over_rest() {
    let python = mlflow_python();
    let dir = scratch("server");
    let server = Server::start(&python, &dir);
    let artifact = dir.join("weights.bin");
    std::fs::write(&artifact, [1u8, 2, 3, 4]).unwrap();

    let t = Tracker::connect(&server.uri, Duration::from_secs(30)).unwrap();
    let exp = t.experiment("rest proof").unwrap();
    assert_eq!(t.experiment("rest proof").unwrap(), exp, "found by name");
    let a = log_a_run(&t, &exp, "first", &artifact);
    let b = log_a_run(&t, &exp, "second", &artifact);

    let mut run = t.start_run(&exp, "changed", &[]).unwrap();
    run.log_param("lr", "0.1").unwrap();
    let e = run.log_param("lr", "0.2").unwrap_err();
    assert_eq!(error_code(&e), Some("INVALID_PARAMETER_VALUE"), "{e:#}");
    run.end(RunStatus::Failed).unwrap();

    // Our own reader over REST agrees with what was logged.
    let ours = t.runs(&exp).unwrap();
    assert_eq!(ours.len(), 3);
    assert_eq!(ours[0].run_id, a);
    assert_eq!(ours[0].metrics["loss"].len(), LOSSES.len());
    assert!(ours[0].metrics["loss"][2].1.is_nan());
    assert_eq!(ours[2].status, RunStatus::Failed);

    let runs = python_json(
        &python,
        READ_BACK,
        &[("MLFLOW_TRACKING_URI", &server.uri), ("EXP", "rest proof")],
    );
    check_read_back(&runs, &a, "first");
    check_read_back(&runs, &b, "second");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// MLflow's `search_runs`, `get_metric_history` and `list_artifacts` read the file
/// store the tracker writes (MLflow 3.17 opens a file store only when
/// `MLFLOW_ALLOW_FILE_STORE=true`: it keeps reading the format but steers new users
/// to a database).
#[test]
fn mlflow_search_runs_reads_our_file_store() {
    let python = mlflow_python();
    let dir = scratch("filestore");
    let artifact = dir.join("weights.bin");
    std::fs::write(&artifact, [1u8, 2, 3, 4]).unwrap();
    let t = Tracker::open(&dir.join("mlruns")).unwrap();
    let exp = t.experiment("file proof").unwrap();
    let a = log_a_run(&t, &exp, "first", &artifact);
    let b = log_a_run(&t, &exp, "second", &artifact);
    let uri = format!("file://{}", t.root().unwrap().display());
    let runs = python_json(
        &python,
        READ_BACK,
        &[
            ("MLFLOW_TRACKING_URI", &uri),
            ("MLFLOW_ALLOW_FILE_STORE", "true"),
            ("EXP", "file proof"),
        ],
    );
    assert_eq!(runs.as_array().unwrap().len(), 2);
    check_read_back(&runs, &a, "first");
    check_read_back(&runs, &b, "second");
    let _ = std::fs::remove_dir_all(&dir);
}
