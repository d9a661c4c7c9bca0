//! `dlbook bench --name ensemble_speed`: the ensembles of section 12.3 against
//! scikit-learn and XGBoost on the same rows, in one run: test accuracy, CPU-seconds
//! (user + system of the whole process, so insensitive to other load) and wall time of
//! fitting and predicting. The references run through `python3 -c` (the script
//! `ensemble_sklearn.py` is embedded) when scikit-learn and XGBoost import; otherwise
//! the report says why they were skipped.

use std::time::Instant;

use anyhow::{anyhow, Result};
use serde::Serialize;

use super::python;
use super::{load_average, process_cpu_seconds};
use crate::data::folds::stratified_split;
use crate::data::idx::mnist;
use crate::data::tables::{read_table, TableSet};
use crate::data::{DataDir, Split};
use crate::ensemble::{
    accuracy, AdaBoost, Columns, Forest, GradientBoosting, LogisticRegression, Objective,
    Stacking,
};
use crate::progress;
use crate::report::{col, Format, Report, Table, Value};

/// What to time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnsembleBenchConfig {
    /// MNIST training images (the first ones; the 10,000 test images are all used).
    pub mnist_train: usize,
    /// Which rows to run: `bc_rf`, `bc_gb`, `bc_ada`, `mnist_rf`, `mnist_rf_seed1`,
    /// `mnist_rf_seed2` (the seed spread), `mnist_gb`, `mnist_gb_long` (150 rounds,
    /// against XGBoost's 100), `mnist_stack`.
    pub rows: Vec<String>,
    /// Runs per row (the report keeps the last one's accuracy and the median times).
    pub runs: usize,
    /// Threads for ours (rayon) and the references (`n_jobs`, `nthread`).
    pub threads: usize,
}

impl EnsembleBenchConfig {
    /// Seconds: the breast-cancer rows and 2,000 MNIST digits.
    pub fn quick() -> Self {
        EnsembleBenchConfig {
            mnist_train: 2000,
            ..Self::full()
        }
    }

    /// Every row of the comparison, on all 60,000 digits.
    pub fn full() -> Self {
        EnsembleBenchConfig {
            mnist_train: 60_000,
            rows: [
                "bc_rf",
                "bc_gb",
                "bc_ada",
                "mnist_rf",
                "mnist_rf_seed1",
                "mnist_rf_seed2",
                "mnist_gb",
                "mnist_gb_long",
                "mnist_stack",
            ]
            .map(String::from)
            .to_vec(),
            runs: 1,
            threads: 2,
        }
    }
}

/// Rounds of the `mnist_gb_long` row: half as many again as XGBoost's 100.
const LONG_ROUNDS: usize = 150;

/// A row: its name, what it is, the reference model, and the row whose reference run
/// it is compared with (its own, but for `mnist_gb_long`, which takes `mnist_gb`'s
/// XGBoost run rather than fit the same reference twice).
const ROWS: [(&str, &str, &str, &str); 9] = [
    (
        "bc_rf",
        "breast cancer: random forest, 100 trees",
        "random_forest",
        "bc_rf",
    ),
    (
        "bc_gb",
        "breast cancer: gradient boosting, 100 rounds (vs XGBoost)",
        "xgboost",
        "bc_gb",
    ),
    (
        "bc_ada",
        "breast cancer: AdaBoost, 50 stumps",
        "adaboost",
        "bc_ada",
    ),
    (
        "mnist_rf",
        "MNIST: random forest, 100 trees",
        "random_forest",
        "mnist_rf",
    ),
    (
        "mnist_rf_seed1",
        "MNIST: random forest, 100 trees, seed 1",
        "random_forest",
        "mnist_rf_seed1",
    ),
    (
        "mnist_rf_seed2",
        "MNIST: random forest, 100 trees, seed 2",
        "random_forest",
        "mnist_rf_seed2",
    ),
    (
        "mnist_gb",
        "MNIST: hist boosting, 100 rounds, depth 6, lr 0.3 (vs XGBoost)",
        "xgboost",
        "mnist_gb",
    ),
    (
        "mnist_gb_long",
        "MNIST: hist boosting, 150 rounds, depth 6, lr 0.3 (vs XGBoost's 100)",
        "xgboost",
        "mnist_gb",
    ),
    (
        "mnist_stack",
        "MNIST: stacking RF50 + ExtraTrees50 -> logistic",
        "stacking",
        "mnist_stack",
    ),
];

/// MNIST as `u8` columns: training pixels and labels, then test pixels and labels.
type Digits = (Columns<u8>, Vec<usize>, Columns<u8>, Vec<usize>);

/// Accuracy, CPU-seconds and wall seconds of one fit + predict.
type Measured = (f64, f64, f64);

fn measure(f: impl FnOnce() -> Result<f64>) -> Result<Measured> {
    let (c, t) = (process_cpu_seconds(), Instant::now());
    let acc = f()?;
    Ok((acc, process_cpu_seconds() - c, t.elapsed().as_secs_f64()))
}

/// The references' numbers per row, or why they could not be measured.
fn references(
    dir: &DataDir,
    cfg: &EnsembleBenchConfig,
    tasks: &[serde_json::Value],
) -> Result<(Vec<(String, Measured)>, String)> {
    let args = [dir.root().display().to_string(), cfg.threads.to_string()];
    let input = serde_json::to_string(tasks)?;
    let stdout = python::run(
        include_str!("ensemble_sklearn.py"),
        &args,
        &[],
        Some(input.as_bytes()),
    )?;
    let mut rows = Vec::new();
    let mut versions = String::new();
    for line in stdout.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first() {
            Some(&"row") if w.len() == 8 => {
                let num =
                    |i: usize| w[i].parse::<f64>().map_err(|e| anyhow!("{line}: {e}"));
                rows.push((w[1].to_string(), (num(3)?, num(5)?, num(7)?)));
            }
            Some(&"versions") => versions = w[1..].join(" / "),
            _ => {}
        }
    }
    Ok((rows, versions))
}

/// Runs the rows of `cfg` (ours, then the references) and reports them.
pub fn run(cfg: &EnsembleBenchConfig, dir: &DataDir, name: &str) -> Result<Report> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()?;
    let want = |r: &str| cfg.rows.iter().any(|x| x == r);
    let table = read_table(dir, TableSet::BreastCancer)?;
    let (tr, te) = stratified_split(&table.labels, 0.25, 0)?;
    let (btr, bte) = (table.select(&tr), table.select(&te));
    let (bx, bxt) = (
        Columns::from_rows(btr.features.view()),
        Columns::from_rows(bte.features.view()),
    );
    let load_mnist = || -> Result<Digits> {
        let (a, b) = (mnist(dir, Split::Train)?, mnist(dir, Split::Test)?);
        let n = cfg.mnist_train.min(a.images.n);
        let cols = |im: &crate::data::idx::Images, n: usize| {
            Columns::from_u8_rows(&im.pixels[..n * 784], n, 784)
        };
        let lab = |l: &[u8], n: usize| l[..n].iter().map(|&v| usize::from(v)).collect();
        Ok((
            cols(&a.images, n),
            lab(&a.labels, n),
            cols(&b.images, b.images.n),
            lab(&b.labels, b.images.n),
        ))
    };
    let needs_mnist = cfg.rows.iter().any(|r| r.starts_with("mnist"));
    let m = if needs_mnist {
        Some(load_mnist()?)
    } else {
        None
    };
    let mut ours = Vec::new();
    let mut tasks: Vec<serde_json::Value> = Vec::new();
    let bar = progress::bar(cfg.rows.len() as u64, "ensemble rows (ours)");
    for &(row, _, reference, compared) in ROWS.iter().filter(|r| want(r.0)) {
        let mut times = Vec::new();
        for _ in 0..cfg.runs {
            let measured = pool.install(|| -> Result<Measured> {
                match row {
                    "bc_rf" => measure(|| {
                        let f = Forest::random(100, 0).fit(&bx, &btr.labels, 2)?;
                        Ok(accuracy(&f.predict(&bxt), &bte.labels))
                    }),
                    "bc_gb" => measure(|| {
                        let y: Vec<f64> = btr.labels.iter().map(|&c| c as f64).collect();
                        let f = GradientBoosting::default().fit(&bx, &y, None)?;
                        Ok(accuracy(&f.predict(&bxt), &bte.labels))
                    }),
                    "bc_ada" => measure(|| {
                        let f = AdaBoost::stumps(50).fit(&bx, &btr.labels, 2)?;
                        Ok(accuracy(&f.predict(&bxt), &bte.labels))
                    }),
                    _ => {
                        let (x, y, xt, yt) = m.as_ref().expect("MNIST loaded");
                        match row {
                            "mnist_rf" | "mnist_rf_seed1" | "mnist_rf_seed2" => {
                                measure(|| {
                                    // Seeds far apart: forest seeds count up per tree.
                                    let f = Forest::random(100, seed(row) * 1000)
                                        .fit(x, y, 10)?;
                                    Ok(accuracy(&f.predict(xt), yt))
                                })
                            }
                            "mnist_gb" | "mnist_gb_long" => measure(|| {
                                let yf: Vec<f64> = y.iter().map(|&c| c as f64).collect();
                                let f = GradientBoosting {
                                    objective: Objective::Softmax(10),
                                    n_rounds: if row == "mnist_gb" {
                                        100
                                    } else {
                                        LONG_ROUNDS
                                    },
                                    ..Default::default()
                                }
                                .fit(x, &yf, None)?;
                                Ok(accuracy(&f.predict(xt), yt))
                            }),
                            _ => measure(|| {
                                let f = Stacking {
                                    bases: vec![
                                        Forest::random(50, 0),
                                        Forest::extra(50, 0),
                                    ],
                                    n_folds: 5,
                                    meta: LogisticRegression::default(),
                                    seed: 0,
                                }
                                .fit(x, y, 10)?;
                                Ok(accuracy(&f.predict(xt), yt))
                            }),
                        }
                    }
                }
            })?;
            times.push(measured);
        }
        bar.inc(1);
        ours.push((row, median(&times)));
        if tasks.iter().any(|t| t["name"] == compared) {
            continue;
        }
        tasks.push(serde_json::json!({
            "name": compared,
            "model": reference,
            "data": if row.starts_with("mnist") { "mnist" } else { "breast_cancer" },
            "n_train": cfg.mnist_train,
            "seed": seed(compared),
            "train": tr,
            "test": te,
        }));
    }
    bar.finish_and_clear();
    let spinner = progress::spinner("scikit-learn and XGBoost on the same rows");
    let refs = references(dir, cfg, &tasks);
    spinner.finish_and_clear();
    let mut r = Report::new(
        "ch12",
        name,
        "Trees and ensembles against scikit-learn and XGBoost",
    );
    r.config = serde_json::to_value(cfg)?;
    let (refs, versions) = match refs {
        Ok(v) => v,
        Err(e) => {
            progress::println(format!("references skipped: {e:#}"));
            (Vec::new(), format!("not run: {e:#}"))
        }
    };
    let cell = |v: Option<f64>| v.map_or(Value::Text("–".into()), Value::Num);
    r.tables.push(Table {
        name: "speed".into(),
        caption: format!(
            "Fit + predict on {} threads: test accuracy, CPU-seconds (user + system) and wall \
             seconds; references: scikit-learn / XGBoost {versions}; {} MNIST training images",
            cfg.threads, cfg.mnist_train
        ),
        columns: vec![
            col("row", Format::Int),
            col("ours: accuracy", Format::Fixed(4)),
            col("ours: CPU-s", Format::Fixed(1)),
            col("ours: wall s", Format::Fixed(1)),
            col("reference: accuracy", Format::Fixed(4)),
            col("reference: CPU-s", Format::Fixed(1)),
            col("reference: wall s", Format::Fixed(1)),
        ],
        rows: ours
            .iter()
            .map(|(row, (a, c, w))| {
                let what = ROWS.iter().find(|x| x.0 == *row).expect("a row").1;
                let compared = ROWS.iter().find(|x| x.0 == *row).expect("a row").3;
                let theirs = refs.iter().find(|(n, _)| n == compared).map(|x| x.1);
                vec![
                    Value::Text(what.into()),
                    Value::Num(*a),
                    Value::Num(*c),
                    Value::Num(*w),
                    cell(theirs.map(|t| t.0)),
                    cell(theirs.map(|t| t.1)),
                    cell(theirs.map(|t| t.2)),
                ]
            })
            .collect(),
    });
    r.fact("load_average", load_average(), Format::Fixed(1));
    Ok(r)
}

/// The seed of a row: its `_seedS` suffix, else 0.
fn seed(row: &str) -> u64 {
    row.rsplit_once("_seed")
        .and_then(|(_, s)| s.parse().ok())
        .unwrap_or(0)
}

/// The run with the median CPU time.
fn median(v: &[Measured]) -> Measured {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.1.total_cmp(&b.1));
    s[s.len() / 2]
}
