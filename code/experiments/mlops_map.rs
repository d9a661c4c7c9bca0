//! Experiment `mlops_map`: chapter 13's whole pipeline as one picture, from the data to
//! a monitored model, every box linked to the source file that implements it and the
//! test file that checks it. Nothing is measured: the "result" is the map itself,
//! generated so that the figure and its table are checked like every other (and a test
//! checks that every link resolves).

use anyhow::Result;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::DataDir;
use crate::report::flow::{FlowNode, FlowPlot};
use crate::report::{Column, Figure, Format, Plot, Report, Table, Value};

/// Experiment `mlops_map`, registered in [`super::all`].
pub struct MlopsMap;

impl Experiment for MlopsMap {
    const NAME: &'static str = "mlops_map";
    const CHAPTER: &'static str = "ch13";
    const TITLE: &'static str = "The MLOps pipeline, from data to a monitored model";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// Where the links lead from: the page that shows the map, in `chapters/`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The path from the chapter page to the top of the repository.
    pub root: String,
}

impl Preset for Config {
    fn full() -> Self {
        Config { root: "../".into() }
    }
}

/// One box of the map: its name, a line on what it does, its cell, and its code and
/// test files (paths from the top of the repository).
pub struct Stop {
    /// The box's name.
    pub label: &'static str,
    /// What it does, in a few words.
    pub detail: &'static str,
    /// Its cell, `(col, row)`.
    pub cell: (usize, usize),
    /// The source file that implements it.
    pub code: &'static str,
    /// The test file that checks it.
    pub tests: &'static str,
}

// ANCHOR: stops
/// The boxes of the map, in the order data meets them.
#[rustfmt::skip]
pub const STOPS: [Stop; 14] = [
    Stop { label: "Datasets", detail: "checksummed MNIST files", cell: (0, 0),
           code: "code/data/verify.rs", tests: "tests/book/data_io.rs" },
    Stop { label: "Data checks", detail: "schema, labels, duplicates", cell: (1, 0),
           code: "code/mlops/pipeline.rs", tests: "tests/book/ch13_pipeline.rs" },
    Stop { label: "Tracked training", detail: "a run in MLflow's layout", cell: (2, 0),
           code: "code/mlops/tracking.rs", tests: "tests/book/ch13_tracking.rs" },
    Stop { label: "Sweeps", detail: "grid, random, halving", cell: (3, 0),
           code: "code/mlops/sweep.rs", tests: "tests/book/ch13_sweep.rs" },
    Stop { label: "Evaluation", detail: "the artifact on test images", cell: (2, 1),
           code: "code/mlops/pipeline.rs", tests: "tests/book/ch13_pipeline.rs" },
    Stop { label: "Quality gate", detail: "floor and production's score", cell: (1, 1),
           code: "code/mlops/pipeline.rs", tests: "tests/book/ch13_pipeline.rs" },
    Stop { label: "Registry", detail: "versions with lineage", cell: (0, 1),
           code: "code/mlops/registry.rs", tests: "tests/book/ch13_registry.rs" },
    Stop { label: "Promotion", detail: "the alias moves", cell: (0, 2),
           code: "code/mlops/registry.rs", tests: "tests/book/ch13_registry.rs" },
    Stop { label: "Serving", detail: "follows the alias, reloads", cell: (1, 2),
           code: "code/serve/reload.rs", tests: "tests/book/ch13_serve.rs" },
    Stop { label: "Container", detail: "image and cluster manifests", cell: (1, 3),
           code: "deploy/Dockerfile", tests: "tests/book/ch13_deploy.rs" },
    Stop { label: "Metrics", detail: "/metrics for Prometheus", cell: (2, 2),
           code: "code/serve/metrics.rs", tests: "tests/book/ch13_serve.rs" },
    Stop { label: "Drift tests", detail: "PSI, KS, chi-square, MMD", cell: (3, 2),
           code: "code/mlops/drift/mod.rs", tests: "tests/book/ch13_drift.rs" },
    Stop { label: "Drift monitor", detail: "windows of requests, alarms", cell: (3, 3),
           code: "code/mlops/drift/monitor.rs", tests: "tests/book/ch13_drift.rs" },
    Stop { label: "Alerts, dashboards", detail: "promtool-tested rules, Grafana", cell: (2, 3),
           code: "deploy/prometheus/alerts.yml", tests: "tests/book/ch13_alerts.rs" },
];

/// The arrows, as `(from, to)` indices into [`STOPS`].
#[rustfmt::skip]
pub const ARROWS: [(usize, usize); 14] = [
    (0, 1), (1, 2), (3, 2), (2, 4), (4, 5), (5, 6),
    (6, 7), (7, 8), (9, 8), (8, 10), (10, 11), (11, 12),
    (10, 13), (12, 13),
];
// ANCHOR_END: stops

/// A path's file name, with its folder for a `mod.rs` (`drift/mod.rs`).
fn file_name(path: &str) -> &str {
    let mut cut = path.rsplitn(3, '/');
    let name = cut.next().unwrap_or(path);
    match (name, cut.next()) {
        ("mod.rs", Some(folder)) => &path[path.len() - folder.len() - name.len() - 1..],
        _ => name,
    }
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
    let href = |p: &str| format!("{}{p}", cfg.root);
    let nodes = STOPS
        .iter()
        .map(|s| FlowNode {
            label: s.label.into(),
            detail: s.detail.into(),
            col: s.cell.0,
            row: s.cell.1,
            links: vec![
                (file_name(s.code).into(), href(s.code)),
                (file_name(s.tests).into(), href(s.tests)),
            ],
        })
        .collect();
    let link = |p: &str| Value::Text(format!("[{}]({})", file_name(p), href(p)));
    r.tables.push(Table {
        name: "stops".into(),
        caption: "Every box of the map, with the code that implements it and the tests \
                  that check it."
            .into(),
        columns: vec![
            Column { header: "box".into(), format: Format::Int },
            Column { header: "what it does".into(), format: Format::Int },
            Column { header: "code".into(), format: Format::Int },
            Column { header: "tests".into(), format: Format::Int },
        ],
        rows: STOPS
            .iter()
            .map(|s| {
                vec![
                    Value::Text(s.label.into()),
                    Value::Text(s.detail.into()),
                    link(s.code),
                    link(s.tests),
                ]
            })
            .collect(),
    });
    r.fact("boxes", STOPS.len() as f64, Format::Int);
    r.figures.push(Figure {
        name: "map".into(),
        title: "From data to a monitored model".into(),
        plot: Plot::Flow(FlowPlot {
            nodes,
            edges: ARROWS.to_vec(),
        }),
    });
    Ok(())
}
