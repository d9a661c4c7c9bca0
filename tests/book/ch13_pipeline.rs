//! Chapter 13: `dlbook pipeline`, from data checks to a server serving the promoted
//! version, on the quick preset (a few hundred training images, one epoch) into temporary stores.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dlbook::data::{self, DataDir, Split};
use dlbook::mlops::pipeline::{
    self, check_splits, exact_duplicates, PipelineConfig, PipelineError, PipelineOutcome,
    Stage, METRIC_EVAL, TAG_GATE,
};
use dlbook::mlops::registry::Registry;
use dlbook::mlops::tracking::Tracker;

use crate::ch13_mlflow::scratch;

fn data_dir() -> DataDir {
    DataDir::resolve(None)
}

/// Every file of the store's registry with its contents: what "the registry is
/// unchanged" compares.
fn registry_files(store: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.file_name().is_some_and(|n| n != "meta.yaml") {
                // meta.yaml of a model holds its last-update time; versions and aliases
                // are the rest.
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), vec![]);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&store.join("models"), store, &mut out);
    out
}

/// Runs the pipeline with `cfg` into the store at `store`.
fn run(cfg: &PipelineConfig, store: &Path) -> Result<PipelineOutcome, PipelineError> {
    let t = Tracker::open(store).unwrap();
    pipeline::run(cfg, &data_dir(), &t, Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// The quick preset with a weaker recipe: fewer training images.
fn weaker() -> PipelineConfig {
    PipelineConfig {
        n_train: 100,
        min_accuracy: 0.0,
        ..PipelineConfig::quick()
    }
}

/// What `production` names in the store, if anything.
fn production(store: &Path) -> Option<u64> {
    let t = Tracker::open(store).unwrap();
    pipeline::current_version(&Registry::of(&t), "mnist_cnn", "production")
        .unwrap()
        .map(|v| v.version)
}

// ANCHOR: quick_pipeline
/// The quick pipeline into an empty store: returns the outcome and the version
/// `production` names after it.
fn quick_pipeline(store: &Path) -> (PipelineOutcome, Option<u64>) {
    let outcome = run(&PipelineConfig::quick(), store).expect("every stage passes");
    (outcome, production(store))
}
// ANCHOR_END: quick_pipeline

/// The quick pipeline runs end to end into an empty store: the data checks pass on
/// MNIST (no test image is a copy of a training image), the model clears the floor, is
/// registered as version 1 and `production` points at it; the run records the
/// evaluation and the gate's verdict, and the artifact loaded back scores what the
/// training loop measured on the same images.
#[test]
fn the_quick_pipeline_promotes_version_1() {
    let store = scratch("pipeline-first").join("mlruns");
    let (o, prod) = quick_pipeline(&store);
    assert_eq!((o.version, prod), (1, Some(1)));
    assert!(o.baseline.is_none());
    assert_eq!(o.data.duplicates, 0);
    assert_eq!((o.data.n_train, o.data.n_test), (60_000, 10_000));
    assert!(
        o.data.train_counts.iter().all(|&c| c > 5000),
        "{:?}",
        o.data
    );
    assert!(
        o.accuracy >= PipelineConfig::quick().min_accuracy,
        "{}",
        o.accuracy
    );
    assert_eq!(
        o.accuracy, o.training_accuracy,
        "the artifact is the trained model"
    );
    let t = Tracker::open(&store).unwrap();
    let run = t.find_run(&o.run_id).unwrap();
    assert_eq!(run.record.tags[TAG_GATE], "passed");
    assert_eq!(run.record.metrics[METRIC_EVAL][0].1, o.accuracy);
    assert!(!o.server_reloaded, "no server was given");
}

/// A second run whose model is worse than `production`'s is refused by the gate,
/// which says by how much; `production` stays, the registry is unchanged byte for
/// byte, and the refused run records the verdict. A model under the floor is refused
/// even with no version to compare against.
#[test]
fn the_gate_refuses_a_worse_model_and_production_stays() {
    let store = scratch("pipeline-gate").join("mlruns");
    let first = run(&PipelineConfig::quick(), &store).unwrap();
    let before = registry_files(&store);
    let e = run(&weaker(), &store).unwrap_err();
    assert_eq!(e.stage, Stage::Gate, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("stopped at quality gate")
            && msg.contains("below the")
            && msg.contains("of version 1"),
        "{msg}"
    );
    assert_eq!(production(&store), Some(1));
    assert_eq!(registry_files(&store), before, "the registry is unchanged");
    let t = Tracker::open(&store).unwrap();
    let exp = t.experiment("mnist_cnn").unwrap();
    let runs = t.runs(&exp).unwrap();
    let refused = runs.iter().find(|r| r.run_id != first.run_id).unwrap();
    assert!(refused.tags[TAG_GATE].starts_with("refused"), "{refused:?}");
    assert!(refused.metrics[METRIC_EVAL][0].1 < first.accuracy);

    let empty = scratch("pipeline-floor").join("mlruns");
    let strict = PipelineConfig {
        min_accuracy: 0.999,
        ..PipelineConfig::quick()
    };
    let e = run(&strict, &empty).unwrap_err();
    assert_eq!(e.stage, Stage::Gate);
    assert!(e.to_string().contains("below the floor"), "{e}");
    assert_eq!(production(&empty), None);
    assert!(registry_files(&empty).is_empty(), "nothing registered");
}

/// A data folder holding MNIST with `broken` cut to its first 1,000 bytes (the other
/// files linked from the real folder).
fn data_with_truncated(broken: &str) -> PathBuf {
    let dir = scratch("pipeline-truncated").join("data");
    std::fs::create_dir_all(dir.join("mnist")).unwrap();
    let real = data_dir();
    for split in [Split::Train, Split::Test] {
        let (im, lab) = data::mnist_files(split);
        for f in [im, lab] {
            if f == broken {
                let bytes = std::fs::read(real.path(f)).unwrap();
                std::fs::write(dir.join(f), &bytes[..1000]).unwrap();
            } else {
                std::os::unix::fs::symlink(real.path(f), dir.join(f)).unwrap();
            }
        }
    }
    dir
}

/// `dlbook pipeline` on a data folder with a truncated file stops at the data checks,
/// exits 1, and names the file and what is wrong with it; nothing is trained or
/// registered.
#[test]
fn a_truncated_data_file_stops_the_pipeline_at_data_checks() {
    let (broken, _) = data::mnist_files(Split::Test);
    let want = data::catalog()
        .iter()
        .flat_map(|d| d.files)
        .find(|f| f.path == broken)
        .unwrap()
        .bytes;
    let data = data_with_truncated(broken);
    let store = data.parent().unwrap().join("mlruns");
    let out = Command::new(env!("CARGO_BIN_EXE_dlbook"))
        .args(["pipeline", "--quick", "--store"])
        .arg(&store)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: the pipeline stopped at data checks")
            && stderr.contains("t10k-images-idx3-ubyte.gz")
            && stderr.contains(&format!("1000 bytes where the catalog records {want}")),
        "{stderr}"
    );
    assert!(registry_files(&store).is_empty());
    let t = Tracker::open(&store).unwrap();
    assert!(
        t.experiments()
            .unwrap()
            .iter()
            .all(|(_, n)| n != "mnist_cnn"),
        "no training run was started"
    );
}

/// Test images planted from the training file are found by their pixels' hash and
/// counted, and stop the data checks; MNIST itself has none.
#[test]
fn planted_duplicates_between_train_and_test_are_found() {
    let dir = data_dir();
    let train = data::mnist(&dir, Split::Train).unwrap();
    let mut test = data::mnist(&dir, Split::Test).unwrap();
    assert!(exact_duplicates(&train, &test).is_empty());
    let px = 28 * 28;
    let planted = [(5usize, 123usize), (700, 40_000), (9_999, 59_999)];
    for &(j, i) in &planted {
        let copy = train.images.image(i).to_vec();
        test.images.pixels[j * px..(j + 1) * px].copy_from_slice(&copy);
    }
    let found = exact_duplicates(&train, &test);
    let mut want: Vec<(usize, usize)> = planted.to_vec();
    want.sort_unstable();
    // A planted image equal to an earlier training image is reported with that one.
    for (&(j, i), &(wj, wi)) in found.iter().zip(&want) {
        assert_eq!(j, wj);
        assert_eq!(train.images.image(i), train.images.image(wi));
    }
    assert_eq!(found.len(), 3);
    let e = check_splits(&train, &test, 0).unwrap_err();
    assert!(
        format!("{e:#}").contains("3 test images are exact copies"),
        "{e:#}"
    );
    assert_eq!(check_splits(&train, &test, 3).unwrap().duplicates, 3);
}

/// A `dlbook serve --registry` child process, killed when dropped.
struct ServeChild(Child);

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(url: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    agent.get(url).call().ok()?.body_mut().read_to_string().ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server started with `--registry` on `production` serves version 1; the pipeline
/// run with its URL promotes a better model as version 2 and returns once the server
/// serves it (its `/readyz` and `/metrics` say so). A third run told to wait for a
/// server that never reports the new version fails at the reload stage, and moves
/// `production` back to the version still served.
#[test]
fn a_server_following_the_alias_serves_the_promoted_version() {
    let store = scratch("pipeline-serve").join("mlruns");
    assert_eq!(run(&weaker(), &store).unwrap().version, 1);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = ServeChild(
        Command::new(env!("CARGO_BIN_EXE_dlbook"))
            .args([
                "serve",
                "--quiet",
                "--workers",
                "1",
                "--poll-ms",
                "50",
                "--registry",
            ])
            .arg(&store)
            .arg("mnist_cnn@production")
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    while !get(&format!("{url}/readyz")).is_some_and(|b| b.contains(r#""version":"1""#)) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the server never served v1"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cfg = PipelineConfig {
        server: Some(url.clone()),
        ..PipelineConfig::quick()
    };
    let o = run(&cfg, &store).unwrap();
    assert_eq!(o.version, 2);
    assert!(o.server_reloaded);
    let b = o.baseline.unwrap();
    assert!((b.version, b.recorded) == (1, true) && b.accuracy <= o.accuracy);
    let ready = get(&format!("{url}/readyz")).unwrap();
    assert!(ready.contains(r#""version":"2""#), "{ready}");
    let metrics = get(&format!("{url}/metrics")).unwrap();
    assert!(
        metrics.contains(r#"dlbook_model_loaded{model="mnist_cnn",version="2"} 1"#),
        "{metrics}"
    );

    let nobody = PipelineConfig {
        server: Some(format!("http://127.0.0.1:{}", free_port())),
        server_timeout_ms: 300,
        ..PipelineConfig::quick()
    };
    let e = run(&nobody, &store).unwrap_err();
    assert_eq!(e.stage, Stage::Reload, "{e}");
    assert!(e.to_string().contains("moved back to version 2"), "{e}");
    assert_eq!(production(&store), Some(2));
}

/// Every link of the pipeline's map, in the generated figure and in its table, leads
/// from the chapter page to a file that exists; every box links one file of code (under
/// `code/` or `deploy/`) and one file of tests (under `tests/book/`), and each test
/// file it names holds tests.
#[test]
fn every_link_of_the_map_resolves() {
    let chapters = Path::new(env!("CARGO_MANIFEST_DIR")).join("chapters");
    let generated = chapters.join("generated/ch13");
    let report = dlbook::report::Report::from_json(
        &std::fs::read_to_string(generated.join("mlops_map.json")).unwrap(),
    )
    .unwrap();
    let dlbook::report::Plot::Flow(map) = &report.figures[0].plot else {
        panic!("the map is a flow figure");
    };
    let resolves = |href: &str| {
        let target = chapters.join(href);
        assert!(target.is_file(), "{href} does not lead to a file");
        target
    };
    for node in &map.nodes {
        let hrefs: Vec<&str> = node.links.iter().map(|(_, h)| h.as_str()).collect();
        assert!(
            hrefs
                .iter()
                .any(|h| h.starts_with("../code/") || h.starts_with("../deploy/")),
            "{}: no link to code",
            node.label
        );
        let tests: Vec<&&str> = hrefs
            .iter()
            .filter(|h| h.starts_with("../tests/book/"))
            .collect();
        assert!(!tests.is_empty(), "{}: no link to tests", node.label);
        for h in hrefs.iter() {
            resolves(h);
        }
        for t in tests {
            let text = std::fs::read_to_string(resolves(t)).unwrap();
            assert!(text.contains("#[test]"), "{t} holds no test");
        }
    }
    // What a reader clicks: the hrefs of the SVG and the links of the table.
    let svg = std::fs::read_to_string(generated.join("mlops_map-map.svg")).unwrap();
    let svg_links: Vec<&str> = svg
        .split("<a href=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    let md = std::fs::read_to_string(generated.join("mlops_map.md")).unwrap();
    let md_links: Vec<&str> = md
        .split("](")
        .skip(1)
        .map(|s| s.split(')').next().unwrap())
        .collect();
    assert_eq!(svg_links.len(), 2 * map.nodes.len());
    assert_eq!(md_links.len(), 2 * map.nodes.len());
    for h in svg_links.iter().chain(&md_links) {
        resolves(h);
    }
}
