//! Chapter 13: what training and the experiments record in the tracker.

use std::path::PathBuf;

use dlbook::data::DataDir;
use dlbook::mlops::logging::{
    data_digest, flatten_params, log_report, Logged, TAG_COMMIT, TAG_CONFIG, TAG_DATA,
};
use dlbook::mlops::tracking::{RunStatus, Tracker};
use dlbook::report::Value as ReportValue;
use dlbook::train::{Callback, EpochInfo, HistoryLogger, Metrics, StepInfo};

fn scratch(name: &str) -> PathBuf {
    let d =
        std::env::temp_dir().join(format!("dlbook-ch13-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An experiment's report becomes a finished run of the MLflow experiment named after
/// it, with its lineage (commit, one digest of the data files it read, the whole
/// configuration), its configuration's leaves as parameters, its facts as metrics and
/// the files it wrote as artifacts.
#[test]
fn an_experiment_report_becomes_a_tracked_run() {
    let report =
        dlbook::experiments::quick("clustering", &DataDir::resolve(None)).unwrap();
    let dir = scratch("report");
    let files = report.write_to(&dir.join("generated")).unwrap();
    let t = Tracker::open(&dir.join("mlruns")).unwrap();
    let id = log_report(&t, report, "quick", "c0ffee", &files).unwrap();

    let exp = t.experiment(&report.experiment).unwrap();
    let runs = t.runs(&exp).unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(
        (r.run_id.as_str(), r.status),
        (id.as_str(), RunStatus::Finished)
    );
    assert_eq!(r.name, "quick");
    assert_eq!(r.tags[TAG_COMMIT], "c0ffee");
    let data: Vec<(String, String)> = report
        .data
        .iter()
        .map(|d| (d.file.clone(), d.sha256.clone()))
        .collect();
    assert!(
        !data.is_empty(),
        "the clustering experiment reads data files"
    );
    assert_eq!(r.tags[TAG_DATA], data_digest(&data));
    let config: serde_json::Value = serde_json::from_str(&r.tags[TAG_CONFIG]).unwrap();
    assert_eq!(config, report.config);
    let params = flatten_params(&report.config);
    assert!(!params.is_empty());
    for (k, v) in &params {
        assert_eq!(&r.params[k], v, "parameter {k}");
    }
    let mut n_facts = 0;
    for (name, fact) in &report.facts {
        if let ReportValue::Num(v) = fact.value {
            assert_eq!(
                r.metrics[name],
                vec![(r.metrics[name][0].0, v, 0)],
                "{name}"
            );
            n_facts += 1;
        }
    }
    assert!(n_facts > 0, "some fact is a number");
    let run_dir = t.root().unwrap().join(&exp).join(&id).join("artifacts");
    for f in files.iter().chain([&dir.join("config.json")]) {
        let name = f.file_name().unwrap();
        assert!(run_dir.join(name).exists(), "artifact {name:?}");
    }
}

/// The training callback logs the mean loss of every `log_every` steps and each
/// epoch's metrics, with the step count as MLflow's step, and leaves the wrapped
/// callback's checkpoint state as it was.
#[test]
fn training_logs_each_window_and_epoch() {
    let dir = scratch("callback");
    let t = Tracker::open(&dir).unwrap();
    let exp = t.experiment("training").unwrap();
    let mut run = t.start_run(&exp, "r", &[]).unwrap();
    let mut bare = HistoryLogger::new(4);
    let mut inner = HistoryLogger::new(4);
    {
        let mut logged = Logged::new(&mut inner, Some(&mut run), 5);
        for step in 1..=20usize {
            let info = StepInfo {
                epoch: (step - 1) / 10,
                step,
                loss: step as f32,
                lr: 0.1,
                batch_size: 8,
            };
            logged.on_step(&info);
            bare.on_step(&info);
            if step % 10 == 0 {
                let e = EpochInfo {
                    epoch: step / 10,
                    step,
                    train_loss: 1.0 / step as f64,
                    val: Some(Metrics {
                        loss: 0.5,
                        accuracy: Some(step as f64 / 40.0),
                    }),
                    order: &[],
                };
                logged.on_epoch(&e);
                bare.on_epoch(&e);
            }
        }
        assert_eq!(
            logged.state(),
            bare.state(),
            "the checkpoint state is the inner one"
        );
        logged.finish().unwrap();
    }
    run.end(RunStatus::Finished).unwrap();
    let r = &t.runs(&exp).unwrap()[0];
    let series = |k: &str| -> Vec<(i64, f64)> {
        r.metrics[k].iter().map(|&(_, v, s)| (s, v)).collect()
    };
    // Means of steps 1-5, 6-10, ...: 3, 8, 13, 18.
    assert_eq!(
        series("train/loss"),
        vec![(5, 3.0), (10, 8.0), (15, 13.0), (20, 18.0)]
    );
    assert_eq!(series("val/accuracy"), vec![(10, 0.25), (20, 0.5)]);
    assert_eq!(series("epoch/train_loss"), vec![(10, 0.1), (20, 0.05)]);
    assert_eq!(inner.history.train_loss, bare.history.train_loss);
    assert_eq!(inner.history.test_acc, bare.history.test_acc);
}
