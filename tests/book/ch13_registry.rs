//! Chapter 13: the model registry (versions with lineage, aliases), read by the real
//! MLflow from our file store and written by our REST client into a real `mlflow
//! server`; and a server that follows the `production` alias under load.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dlbook::mlops::registry::{register_run, Registry, MODEL_ARTIFACT};
use dlbook::mlops::tracking::{RunStatus, Tracker};
use dlbook::models::{checkpoint, mnist_cnn, CnnConfig};
use dlbook::serve::reload::{Outcome, Reloader, Source};
use dlbook::serve::{AppState, ServeConfig};
use serde_json::{json, Value};

use crate::ch13_mlflow::{mlflow_python, python_json, scratch, Server};

/// A run in `tracker` with lineage tags and `artifact` logged as the model (unless
/// `None`); returns its id.
fn a_run(t: &Tracker, name: &str, artifact: Option<&Path>) -> String {
    let exp = t.experiment("mnist_cnn").unwrap();
    let mut run = t
        .start_run(
            &exp,
            name,
            &[("git_commit", "0123abc"), ("data_sha256", "feed42")],
        )
        .unwrap();
    if let Some(a) = artifact {
        run.log_artifact(a, MODEL_ARTIFACT).unwrap();
    }
    let id = run.id().to_string();
    run.end(RunStatus::Finished).unwrap();
    id
}

/// Writes the (untrained) MNIST CNN of `seed` as a model file.
fn model_file(dir: &Path, seed: u64) -> PathBuf {
    let path = dir.join(format!("cnn-{seed}.safetensors"));
    checkpoint::save(&mut mnist_cnn(&CnnConfig::default(), seed), &path).unwrap();
    path
}

// ANCHOR: register_and_promote
/// Registers two runs' models as versions 1 and 2 of `mnist_cnn` and points
/// `production` at version 1, then at version 2: what `dlbook models register` and
/// `dlbook models promote` do. Returns the versions `production` named each time.
fn register_and_promote(t: &Tracker, artifact: &Path) -> (u64, u64) {
    let registry = Registry::of(t);
    let first = a_run(t, "first", Some(artifact));
    let second = a_run(t, "second", Some(artifact));
    let v1 = register_run(t, &registry, &first, "mnist_cnn", MODEL_ARTIFACT).unwrap();
    let v2 = register_run(t, &registry, &second, "mnist_cnn", MODEL_ARTIFACT).unwrap();
    registry
        .set_alias("mnist_cnn", "production", v1.version)
        .unwrap();
    let before = registry
        .version_by_alias("mnist_cnn", "production")
        .unwrap();
    registry
        .set_alias("mnist_cnn", "production", v2.version)
        .unwrap();
    let after = registry
        .version_by_alias("mnist_cnn", "production")
        .unwrap();
    (before.version, after.version)
}
// ANCHOR_END: register_and_promote

/// Versions are numbered 1, 2, ... and carry their lineage (the run, the commit, the
/// data's sha256, the artifact's URI); an alias names one version and moves.
#[test]
fn a_version_keeps_its_lineage_and_an_alias_moves() {
    let dir = scratch("registry-lineage");
    let artifact = model_file(&dir, 1);
    let t = Tracker::open(&dir.join("mlruns")).unwrap();
    assert_eq!(register_and_promote(&t, &artifact), (1, 2));
    let registry = Registry::of(&t);
    let models = registry.models().unwrap();
    assert_eq!(models.len(), 1);
    let m = &models[0];
    assert_eq!(m.versions.len(), 2);
    assert_eq!(m.aliases["production"], 2);
    let v = &m.versions[1];
    assert_eq!((v.git_commit(), v.data_sha256()), ("0123abc", "feed42"));
    assert_eq!(v.aliases, vec!["production".to_string()]);
    let run = t.find_run(&v.run_id).unwrap();
    assert_eq!(run.record.name, "second");
    assert!(v
        .source
        .ends_with(&format!("{}/artifacts/{MODEL_ARTIFACT}", v.run_id)));
    let bytes = std::fs::read(registry.artifact(v, &dir).unwrap()).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(&artifact).unwrap(),
        "the source is the model file"
    );
}

/// Unknown models, versions, aliases and runs, a run without a model artifact, and an
/// alias MLflow reserves are errors that say what is wrong, and write nothing.
#[test]
fn registry_mistakes_are_clear_errors() {
    let dir = scratch("registry-errors");
    let artifact = model_file(&dir, 1);
    let t = Tracker::open(&dir.join("mlruns")).unwrap();
    let registry = Registry::of(&t);
    let bare = a_run(&t, "no model", None);
    let e = register_run(&t, &registry, &bare, "mnist_cnn", MODEL_ARTIFACT).unwrap_err();
    assert!(format!("{e:#}").contains("has no artifact"), "{e:#}");
    assert!(registry.models().unwrap().is_empty(), "nothing registered");
    let e = register_run(&t, &registry, &"0".repeat(32), "mnist_cnn", MODEL_ARTIFACT)
        .unwrap_err();
    assert!(format!("{e:#}").contains("no run"), "{e:#}");
    let e = register_run(&t, &registry, "../../etc", "mnist_cnn", MODEL_ARTIFACT)
        .unwrap_err();
    assert!(format!("{e:#}").contains("not a run id"), "{e:#}");

    let good = a_run(&t, "model", Some(&artifact));
    register_run(&t, &registry, &good, "mnist_cnn", MODEL_ARTIFACT).unwrap();
    fn msg<T>(r: anyhow::Result<T>) -> String {
        format!("{:#}", r.err().expect("an error"))
    }
    let unknown_model = msg(registry.version_by_alias("resnet", "production"));
    assert!(
        unknown_model.contains("no registered model \"resnet\"")
            && unknown_model.contains("mnist_cnn"),
        "{unknown_model}"
    );
    let unknown_version = msg(registry.set_alias("mnist_cnn", "production", 7));
    assert!(
        unknown_version.contains("no version 7") && unknown_version.contains("it has: 1"),
        "{unknown_version}"
    );
    let unknown_alias = msg(registry.version_by_alias("mnist_cnn", "staging"));
    assert!(
        unknown_alias.contains("no alias \"staging\""),
        "{unknown_alias}"
    );
    assert!(msg(registry.set_alias("mnist_cnn", "latest", 1)).contains("reserved"));
    assert!(msg(registry.create_model("a/b")).contains("model name"));
}

/// Eight threads registering at once get eight different version numbers, and the
/// store reads back whole.
#[test]
fn concurrent_registrations_get_distinct_versions() {
    let dir = scratch("registry-race");
    let artifact = model_file(&dir, 1);
    let t = Tracker::open(&dir.join("mlruns")).unwrap();
    let runs: Vec<String> = (0..8)
        .map(|i| a_run(&t, &format!("r{i}"), Some(&artifact)))
        .collect();
    let mut got: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|id| {
                let t = t.clone();
                s.spawn(move || {
                    register_run(&t, &Registry::of(&t), id, "mnist_cnn", MODEL_ARTIFACT)
                        .unwrap()
                        .version
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    got.sort_unstable();
    assert_eq!(got, (1..=8).collect::<Vec<u64>>());
    let listed = Registry::of(&t).versions("mnist_cnn").unwrap();
    let mut by_run: Vec<&str> = listed.iter().map(|v| v.run_id.as_str()).collect();
    by_run.sort_unstable();
    let mut want: Vec<&str> = runs.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(by_run, want, "each run registered once");
}

/// MLflow's Python client reads a registered model by alias.
const READ_ALIAS: &str = r#"
import json
from mlflow import MlflowClient
c = MlflowClient()
v = c.get_model_version_by_alias("mnist_cnn", "production")
m = c.get_registered_model("mnist_cnn")
vs = c.search_model_versions("name='mnist_cnn'")
print(json.dumps({
    "version": str(v.version), "run_id": v.run_id, "source": v.source,
    "tags": v.tags, "aliases": list(v.aliases), "status": v.status,
    "model_aliases": {k: str(x) for k, x in m.aliases.items()},
    "versions": sorted(int(x.version) for x in vs),
}))
"#;

/// Checks MLflow's view of the registry [`register_and_promote`] filled.
fn check_mlflow_view(v: &Value, t: &Tracker) {
    assert_eq!(v["version"], "2", "{v}");
    assert_eq!(v["status"], "READY");
    assert_eq!(v["aliases"], json!(["production"]));
    assert_eq!(v["model_aliases"], json!({"production": "2"}));
    assert_eq!(v["versions"], json!([1, 2]));
    assert_eq!(v["tags"]["git_commit"], "0123abc");
    assert_eq!(v["tags"]["data_sha256"], "feed42");
    let run = t.find_run(v["run_id"].as_str().unwrap()).unwrap();
    assert_eq!(run.record.name, "second");
    assert!(v["source"].as_str().unwrap().ends_with(MODEL_ARTIFACT));
}

/// MLflow's `MlflowClient.get_model_version_by_alias` reads the registry we write in a
/// file store: the version, its run, its lineage tags and its aliases.
#[test]
fn mlflow_reads_our_file_registry_by_alias() {
    let python = mlflow_python();
    let dir = scratch("registry-file");
    let artifact = model_file(&dir, 1);
    let t = Tracker::open(&dir.join("mlruns")).unwrap();
    register_and_promote(&t, &artifact);
    let uri = format!("file://{}", t.root().unwrap().display());
    let v = python_json(
        &python,
        READ_ALIAS,
        &[
            ("MLFLOW_TRACKING_URI", &uri),
            ("MLFLOW_ALLOW_FILE_STORE", "true"),
        ],
    );
    check_mlflow_view(&v, &t);
}

/// Our REST client registers versions and moves the alias on a real `mlflow server`;
/// MLflow's Python client reads them back, and the artifact downloads byte for byte.
#[test]
fn our_rest_client_registers_into_a_real_mlflow_server() {
    let python = mlflow_python();
    let dir = scratch("registry-server");
    let artifact = model_file(&dir, 1);
    let server = Server::start(&python, &dir);
    let t = Tracker::connect(&server.uri, Duration::from_secs(30)).unwrap();
    assert_eq!(register_and_promote(&t, &artifact), (1, 2));
    let registry = Registry::of(&t);
    let prod = registry
        .version_by_alias("mnist_cnn", "production")
        .unwrap();
    let downloaded = registry.artifact(&prod, &dir.join("cache")).unwrap();
    assert_eq!(
        std::fs::read(downloaded).unwrap(),
        std::fs::read(&artifact).unwrap()
    );
    let e = registry
        .set_alias("mnist_cnn", "production", 9)
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("RESOURCE_DOES_NOT_EXIST"),
        "{e:#}"
    );
    let v = python_json(&python, READ_ALIAS, &[("MLFLOW_TRACKING_URI", &server.uri)]);
    check_mlflow_view(&v, &t);
    drop(server);
}

/// Posts one image; returns the version that answered, or the failure.
fn predict(agent: &ureq::Agent, addr: SocketAddr) -> Result<String, String> {
    let body = json!({"instances": [vec![0.5; 784]]}).to_string();
    let mut resp = agent
        .post(format!("http://{addr}/v1/models/mnist_cnn/predict"))
        .header("content-type", "application/json")
        .send(body)
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {text}"));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    Ok(v["version"].as_str().unwrap_or("").to_string())
}

fn get_text(agent: &ureq::Agent, url: &str) -> String {
    agent
        .get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// Waits (bounded) until `cond` holds.
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server following `mnist_cnn@production` under a stream of concurrent requests:
/// when the alias moves to version 2, answers switch to version 2 and `/metrics` says
/// so, without one failed request; when it moves to a version whose artifact is corrupt,
/// the server keeps answering with version 2 and counts the failed reload.
#[test]
fn the_server_follows_the_alias_under_load_without_failing_a_request() {
    let dir = scratch("registry-reload");
    let t = Tracker::open(&dir.join("mlruns")).unwrap();
    let registry = Registry::of(&t);
    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, b"not a model at all").unwrap();
    for (name, file) in [
        ("v1", model_file(&dir, 1)),
        ("v2", model_file(&dir, 2)),
        ("v3", corrupt),
    ] {
        let id = a_run(&t, name, Some(&file));
        register_run(&t, &registry, &id, "mnist_cnn", MODEL_ARTIFACT).unwrap();
    }
    registry.set_alias("mnist_cnn", "production", 1).unwrap();

    let state = AppState::new(ServeConfig {
        log_requests: false,
        ..ServeConfig::default()
    });
    let mut reloader = Reloader::new(
        Source {
            registry: registry.clone(),
            model: "mnist_cnn".into(),
            alias: "production".into(),
            served_name: "mnist_cnn".into(),
            workers: 1,
            queue: 256,
            cache: dir.join("cache"),
        },
        state.clone(),
    );
    assert_eq!(reloader.poll(), Outcome::Deployed(1));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = reloader
        .spawn(Duration::from_millis(20), stop.clone())
        .unwrap();

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(dlbook::serve::serve(addr, state, async {
                let _ = stop_rx.await;
            }))
    });
    wait_for("the server binds", Duration::from_secs(10), || {
        TcpStream::connect(addr).is_ok()
    });

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let done = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let last = Arc::new(std::sync::Mutex::new(String::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (agent, done, ok, failed, last) = (
                agent.clone(),
                done.clone(),
                ok.clone(),
                failed.clone(),
                last.clone(),
            );
            std::thread::spawn(move || {
                let mut failures = vec![];
                while !done.load(Ordering::Relaxed) {
                    match predict(&agent, addr) {
                        Ok(v) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            *last.lock().unwrap() = v;
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            failures.push(e);
                        }
                    }
                }
                failures
            })
        })
        .collect();
    let answered = |v: &str| last.lock().unwrap().as_str() == v;
    wait_for("answers from version 1", Duration::from_secs(30), || {
        answered("1")
    });
    let before = ok.load(Ordering::Relaxed);
    registry.set_alias("mnist_cnn", "production", 2).unwrap();
    wait_for("answers from version 2", Duration::from_secs(30), || {
        answered("2")
    });
    let metrics = get_text(&agent, &format!("http://{addr}/metrics"));
    assert!(
        metrics.contains(r#"dlbook_model_loaded{model="mnist_cnn",version="2"} 1"#)
            && metrics
                .contains(r#"dlbook_model_loaded{model="mnist_cnn",version="1"} 0"#),
        "{metrics}"
    );
    registry.set_alias("mnist_cnn", "production", 3).unwrap();
    wait_for(
        "the failed reload is counted",
        Duration::from_secs(30),
        || {
            get_text(&agent, &format!("http://{addr}/metrics"))
                .contains(r#"dlbook_model_reloads_total{version="3",outcome="failed"} 1"#)
        },
    );
    let at_failure = ok.load(Ordering::Relaxed);
    wait_for(
        "more answers after the failure",
        Duration::from_secs(30),
        || ok.load(Ordering::Relaxed) > at_failure + 20,
    );
    done.store(true, Ordering::Relaxed);
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(
        ok.load(Ordering::Relaxed) > before,
        "requests were answered throughout"
    );
    assert!(
        answered("2"),
        "still serving version 2 after the corrupt version 3"
    );
    let ready: Value =
        serde_json::from_str(&get_text(&agent, &format!("http://{addr}/readyz")))
            .unwrap();
    assert_eq!(ready["version"], "2");
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    stop_tx.send(()).unwrap();
    server.join().unwrap().unwrap();
}
