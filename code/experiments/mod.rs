//! The book's experiments: one file each, with a serialisable `Config` that has a
//! `quick()` preset (seconds: used by `cargo test` and the notebooks) and a `full()`
//! preset (minutes: used by `dlbook regen`), and a `run` that returns a
//! [`Report`].
//!
//! [`all`] lists them; `dlbook regen chNN` runs the full presets of one chapter and
//! writes `chapters/generated/chNN/`.

use anyhow::Result;

use crate::data::DataDir;
use crate::report::Report;

pub mod beta_binomial;
pub mod datasets;
pub mod diagnostic_test;
pub mod information;
pub mod pca_mnist;

// Week 2 experiments (declared here, registered in `week2`):
pub mod activations_mnist;
pub mod autograd_graph;
pub mod gradient_checks;
pub mod gradient_depth;
pub mod mse_vs_ce;
pub mod perceptron_xor;
pub mod twin_mnist;

// Week 3 experiments (declared here, registered in `week3`):
pub mod optim_mnist;
pub mod optim_surfaces;
pub mod regularization_ablation;

// Week 4 experiments (declared here, registered in `week4`):
pub mod cnn_features;
pub mod frozen_filters;
pub mod receptive_fields;

// Week 5 experiments: architectures (registered in `week5`):
pub mod architectures;
pub mod residual_vs_plain;

// Week 5 experiments: the MNIST classifier (registered in `week5`):
pub mod cnn_ablation;
pub mod cnn_twin;
pub mod mnist_cnn;

/// Timing reports, `(chapter, file stem)`: written by `dlbook bench`, never by `regen`
/// (timings are not reproducible bytes), but checked like every result: their rendered
/// files must equal the rendering of their JSON.
pub const TIMINGS: &[(&str, &str)] =
    &[("ch05", "throughput"), ("ch05", "throughput_baseline")];

/// Which preset to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Seconds: the preset `cargo test` and the notebooks use.
    Quick,
    /// Minutes: the preset behind the numbers in the book.
    Full,
}

impl Tier {
    /// The preset of this tier, from an experiment's two constructors.
    pub fn pick<T>(self, quick: impl FnOnce() -> T, full: impl FnOnce() -> T) -> T {
        match self {
            Tier::Quick => quick(),
            Tier::Full => full(),
        }
    }
}

/// An entry in the list of experiments.
pub struct Experiment {
    /// File stem of its results (`pca_mnist`).
    pub name: &'static str,
    /// The chapter whose `generated/` folder holds the results (`ch01`).
    pub chapter: &'static str,
    /// The configuration of a preset, as stored in the report.
    pub config: fn(Tier) -> serde_json::Value,
    /// Runs a preset.
    pub run: fn(Tier, &DataDir) -> Result<Report>,
}

/// Every experiment of the book, in chapter order.
pub fn all() -> Vec<Experiment> {
    let mut all = week1();
    all.extend(week2());
    all.extend(week3());
    all.extend(week4());
    all.extend(week5());
    all.push(datasets::EXPERIMENT);
    all
}

fn week1() -> Vec<Experiment> {
    vec![
        pca_mnist::EXPERIMENT,
        information::EXPERIMENT,
        beta_binomial::EXPERIMENT,
        diagnostic_test::EXPERIMENT,
    ]
}

// Week 2: neural-network basics.
fn week2() -> Vec<Experiment> {
    vec![
        autograd_graph::EXPERIMENT,
        gradient_checks::EXPERIMENT,
        perceptron_xor::EXPERIMENT,
        activations_mnist::EXPERIMENT,
        mse_vs_ce::EXPERIMENT,
        gradient_depth::EXPERIMENT,
        twin_mnist::EXPERIMENT,
    ]
}

// Week 3: optimization and regularization.
fn week3() -> Vec<Experiment> {
    vec![
        optim_surfaces::EXPERIMENT,
        optim_mnist::EXPERIMENT,
        regularization_ablation::EXPERIMENT,
    ]
}

// Week 4: CNN fundamentals.
fn week4() -> Vec<Experiment> {
    vec![
        receptive_fields::EXPERIMENT,
        cnn_features::EXPERIMENT,
        frozen_filters::EXPERIMENT,
    ]
}

// Week 5: CNN architectures and the MNIST classifier.
fn week5() -> Vec<Experiment> {
    let mut v = vec![
        // architectures
        architectures::EXPERIMENT,
        residual_vs_plain::EXPERIMENT,
    ];
    v.extend([
        // the MNIST classifier
        mnist_cnn::EXPERIMENT,
        cnn_ablation::EXPERIMENT,
        cnn_twin::EXPERIMENT,
    ]);
    v
}

/// The experiments of one chapter (`ch01`), one experiment by name (`pca_mnist`), or
/// all of them for `all`.
pub fn of_chapter(chapter: &str) -> Vec<Experiment> {
    all()
        .into_iter()
        .filter(|e| chapter == "all" || e.chapter == chapter || e.name == chapter)
        .collect()
}

/// Whether `report` was made with the current full configuration of `e` (compared
/// after rounding, as the JSON stores it).
pub fn is_current(e: &Experiment, report: &Report) -> bool {
    let want = Report {
        config: (e.config)(Tier::Full),
        ..report.clone()
    }
    .rounded();
    want.config == report.config
}

/// The committed full run of the experiment `name`, from
/// `chapters/generated/<chapter>/<name>.json` of the book at `root`. An error unless the
/// file exists and was made with the experiment's current full configuration (`dlbook
/// regen <name>` refreshes it). The tests that check the book's numbers read them so.
pub fn committed(root: &std::path::Path, name: &str) -> anyhow::Result<Report> {
    let e = all()
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| anyhow::anyhow!("there is no experiment called {name:?}"))?;
    let path = root
        .join("chapters/generated")
        .join(e.chapter)
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).map_err(|err| {
        anyhow::anyhow!("{}: {err} (run `dlbook regen {name}`)", path.display())
    })?;
    let report = Report::from_json(&text)?;
    anyhow::ensure!(
        is_current(&e, &report),
        "{}: made with another configuration than the current full(); run `dlbook regen \
         {name}`",
        path.display()
    );
    Ok(report)
}

/// Serialises a config for a report.
pub fn config_json<T: serde::Serialize>(cfg: &T) -> serde_json::Value {
    serde_json::to_value(cfg).expect("configs are plain data")
}
