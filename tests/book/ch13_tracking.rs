//! Chapter 13: experiment tracking in MLflow's file-store layout.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use dlbook::mlops::tracking::{RunStatus, Tracker};

fn scratch(name: &str) -> PathBuf {
    let d =
        std::env::temp_dir().join(format!("dlbook-ch13-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The environment variable that turns this test binary into the child of
/// [`a_killed_run_leaves_a_readable_store`]: it logs into the store it names until it
/// is killed.
const CHILD_STORE: &str = "DLBOOK_TRACKING_CHILD_STORE";

/// The child's work: a run that logs parameters, tags, an artifact and metrics as fast
/// as it can, forever. Not a test of its own: the process that
/// [`a_killed_run_leaves_a_readable_store`] starts and kills.
#[test]
#[ignore = "the child process of a_killed_run_leaves_a_readable_store, run by it"]
fn tracking_child() {
    let root = std::env::var(CHILD_STORE).expect("started by the crash test");
    let t = Tracker::open(std::path::Path::new(&root)).unwrap();
    let exp = t.experiment("crash").unwrap();
    let mut run = t.start_run(&exp, "killed", &[("kind", "child")]).unwrap();
    let artifact = std::path::Path::new(&root).join("artifact.bin");
    std::fs::write(&artifact, vec![7u8; 1 << 16]).unwrap();
    for step in 0i64.. {
        run.log_metric("loss", 1.0 / (step + 1) as f64, step)
            .unwrap();
        run.log_metric("acc", step as f64, step).unwrap();
        run.set_tag("step", &step.to_string()).unwrap();
        if step % 50 == 0 {
            run.log_param(&format!("p{step}"), &"x".repeat(100))
                .unwrap();
            run.log_artifact(&artifact, &format!("a{}", step % 3))
                .unwrap();
        }
    }
}

/// A run killed (SIGKILL, no unwinding) at many moments, including while it is being
/// created, leaves a store that reads back whole: every run is either skipped (killed
/// before its meta.yaml existed) or reads with status RUNNING and every metric line
/// intact, and the next run in the same store works.
#[test]
fn a_killed_run_leaves_a_readable_store() {
    let root = scratch("killed");
    let exe = std::env::current_exe().unwrap();
    let mut seen_metrics = 0;
    for (i, delay_ms) in [0u64, 1, 2, 3, 5, 8, 13, 21, 34, 55].iter().enumerate() {
        let mut child = Command::new(&exe)
            .args(["--exact", "ch13_tracking::tracking_child", "--ignored"])
            .env(CHILD_STORE, &root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*delay_ms + 20));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let t = Tracker::open(&root).unwrap();
        let Some((exp, _)) = t
            .experiments()
            .unwrap()
            .into_iter()
            .find(|e| e.1 == "crash")
        else {
            continue; // killed before the experiment existed
        };
        let runs = t
            .runs(&exp)
            .unwrap_or_else(|e| panic!("kill {i}: the store does not read: {e:#}"));
        for r in &runs {
            assert_eq!(r.status, RunStatus::Running, "kill {i}: {}", r.run_id);
            if let Some(loss) = r.metrics.get("loss") {
                for (k, &(_, v, step)) in loss.iter().enumerate() {
                    assert_eq!(step, k as i64, "kill {i}: steps in order, none torn");
                    assert_eq!(v, 1.0 / (k + 1) as f64);
                }
                seen_metrics += loss.len();
            }
        }
    }
    assert!(seen_metrics > 0, "some run got as far as logging");
    // The store still takes new runs.
    let t = Tracker::open(&root).unwrap();
    let exp = t.experiment("crash").unwrap();
    let mut run = t.start_run(&exp, "after", &[]).unwrap();
    run.log_metric("loss", 0.5, 0).unwrap();
    run.end(RunStatus::Finished).unwrap();
    let after = t.runs(&exp).unwrap();
    assert!(after
        .iter()
        .any(|r| r.name == "after" && r.status == RunStatus::Finished));
}
