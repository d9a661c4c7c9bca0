//! Experiment `ensemble_breast_cancer`: single trees, bagging, random forests, extremely
//! randomised trees, AdaBoost, gradient boosting and stacking on the breast-cancer table,
//! each seed a new stratified 426/143 split (and new model seeds); and the bias-variance
//! picture: test error against the number of trees for bagging and the forest.

use anyhow::Result;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::folds::stratified_split;
use crate::data::tables::{read_table, TableSet};
use crate::data::{data_ref, DataDir};
use crate::ensemble::{
    accuracy, AdaBoost, Columns, DecisionTree, Forest, GradientBoosting, LogisticRegression,
    Stacking, Target,
};
use crate::progress;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};

/// Experiment `ensemble_breast_cancer`, registered in [`super::all`].
pub struct EnsembleBreastCancer;

impl Experiment for EnsembleBreastCancer {
    const NAME: &'static str = "ensemble_breast_cancer";
    const CHAPTER: &'static str = "ch12";
    const TITLE: &'static str = "Trees and ensembles on breast cancer (426/143 splits)";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Trees of every forest in the model table.
    pub n_trees: usize,
    /// AdaBoost's rounds of stumps.
    pub ada_rounds: usize,
    /// Gradient-boosting rounds (XGBoost's other defaults: depth 6, lr 0.3, lambda 1).
    pub gb_rounds: usize,
    /// Numbers of trees in the bias-variance figure.
    pub tree_counts: Vec<usize>,
    /// Split and model seeds.
    pub seeds: Vec<u64>,
}

impl Preset for Config {
    fn full() -> Self {
        Config {
            n_trees: 100,
            ada_rounds: 50,
            gb_rounds: 100,
            tree_counts: vec![1, 2, 5, 10, 20, 50, 100, 200],
            seeds: (0..10).collect(),
        }
    }

    fn quick() -> Self {
        Config {
            n_trees: 20,
            ada_rounds: 20,
            gb_rounds: 20,
            tree_counts: vec![1, 5, 20],
            seeds: vec![0, 1],
        }
    }
}

/// The models of the table, in order.
pub const MODELS: [&str; 7] = [
    "decision tree",
    "bagging",
    "random forest",
    "extra trees",
    "AdaBoost (stumps)",
    "gradient boosting",
    "stacking (RF + ET -> logistic)",
];

fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let table = read_table(dir, TableSet::BreastCancer)?;
    r.data = vec![data_ref(TableSet::BreastCancer.file())];
    r.seeds = cfg.seeds.clone();
    let mut acc = vec![Vec::new(); MODELS.len()];
    let max_trees = cfg.tree_counts.iter().copied().max().unwrap_or(1);
    // err[model][count] per seed: bagging and forest by number of trees.
    let mut curves = vec![vec![Vec::new(); cfg.tree_counts.len()]; 2];
    let mut tree_err = Vec::new();
    let bar = progress::bar(cfg.seeds.len() as u64, "ensemble seeds");
    for &seed in &cfg.seeds {
        let (tr, te) = stratified_split(&table.labels, 0.25, seed)?;
        let (train, test) = (table.select(&tr), table.select(&te));
        let xtr = Columns::from_rows(train.features.view());
        let xte = Columns::from_rows(test.features.view());
        let (ytr, yte) = (&train.labels, &test.labels);
        let tree = DecisionTree { seed, ..Default::default() }.fit(&xtr, Target::Classes(ytr, 2))?;
        let bag = Forest::bagging(max_trees, seed).fit(&xtr, ytr, 2)?;
        let rf = Forest::random(max_trees, seed).fit(&xtr, ytr, 2)?;
        let et = Forest::extra(cfg.n_trees, seed).fit(&xtr, ytr, 2)?;
        let ada = AdaBoost::stumps(cfg.ada_rounds).fit(&xtr, ytr, 2)?;
        let yf: Vec<f64> = ytr.iter().map(|&c| c as f64).collect();
        let gb = GradientBoosting { n_rounds: cfg.gb_rounds, ..Default::default() }.fit(&xtr, &yf, None)?;
        let stack = Stacking {
            bases: vec![Forest::random(cfg.n_trees, seed), Forest::extra(cfg.n_trees, seed)],
            n_folds: 5,
            meta: LogisticRegression::default(),
            seed,
        }
        .fit(&xtr, ytr, 2)?;
        let first = |f: &crate::ensemble::FittedForest, m: usize| {
            accuracy(&crate::ensemble::tree::argmax_rows(&f.predict_proba_first(&xte, m), 2), yte)
        };
        let scores = [
            accuracy(&tree.predict(&xte), yte),
            first(&bag, cfg.n_trees),
            first(&rf, cfg.n_trees),
            accuracy(&et.predict(&xte), yte),
            accuracy(&ada.predict(&xte), yte),
            accuracy(&gb.predict(&xte), yte),
            accuracy(&stack.predict(&xte), yte),
        ];
        for (a, s) in acc.iter_mut().zip(scores) {
            a.push(s);
        }
        tree_err.push(1.0 - scores[0]);
        for (c, &m) in cfg.tree_counts.iter().enumerate() {
            curves[0][c].push(1.0 - first(&bag, m));
            curves[1][c].push(1.0 - first(&rf, m));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    r.tables.push(Table {
        name: "models".into(),
        caption: format!(
            "Test accuracy on the breast-cancer table, mean ± std over {} stratified 426/143 \
             splits (a new split and new model seeds each); forests of {} trees, {} rounds of \
             AdaBoost stumps, {} rounds of gradient boosting (depth 6, lr 0.3, lambda 1)",
            cfg.seeds.len(),
            cfg.n_trees,
            cfg.ada_rounds,
            cfg.gb_rounds
        ),
        columns: vec![col("model", Format::Int), col("test accuracy", Format::Percent(1))],
        rows: MODELS
            .iter()
            .zip(&acc)
            .map(|(m, a)| vec![Value::Text((*m).into()), Value::Seeds(a.clone())])
            .collect(),
    });
    for (m, a) in MODELS.iter().zip(&acc) {
        r.fact(&format!("acc_{}", slug(m)), Value::Seeds(a.clone()), Format::Percent(1));
    }
    let xs: Vec<f64> = cfg.tree_counts.iter().map(|&c| c as f64).collect();
    let series = |name: &str, errs: &[Vec<f64>]| {
        let (y, band): (Vec<f64>, Vec<f64>) = errs.iter().map(|e| Value::mean_std(e)).unzip();
        Series { name: name.into(), x: xs.clone(), y, band: Some(band) }
    };
    let tree_line = vec![tree_err.clone(); xs.len()];
    r.figures.push(Figure {
        name: "trees_vs_error".into(),
        title: "Test error against the number of trees (mean ± std over splits)".into(),
        plot: Plot::Lines {
            x_label: "trees".into(),
            y_label: "test error".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
            series: vec![
                series("single tree", &tree_line),
                series("bagging", &curves[0]),
                series("random forest", &curves[1]),
            ],
        },
    });
    let last = cfg.tree_counts.len() - 1;
    for (name, c) in [("bagging", &curves[0]), ("forest", &curves[1])] {
        r.fact(&format!("{name}_err_1"), Value::Seeds(c[0].clone()), Format::Percent(1));
        r.fact(&format!("{name}_err_max"), Value::Seeds(c[last].clone()), Format::Percent(1));
    }
    r.fact("tree_err", Value::Seeds(tree_err), Format::Percent(1));
    Ok(())
}

/// `random forest` -> `random_forest`: a model's fact-name stem.
pub fn slug(model: &str) -> String {
    model
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .take(2)
        .collect::<Vec<_>>()
        .join("_")
}
