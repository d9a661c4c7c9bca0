//! Experiment `svm_classify`: support vector machines on real data (section 12.2).
//!
//! * Breast cancer (a stratified 75/25 split, standardised on the training rows),
//!   digits (pixels / 16) and, in the full run, MNIST (the first training images against
//!   the test images, pixels in [0, 1]): test accuracy of the RBF SVC.
//! * Grid search over C x gamma by stratified k-fold on breast cancer's training rows:
//!   the mean accuracy heat map, and the test accuracy of the chosen pair.
//! * What C does: a linear SVM on two standardised breast-cancer features for several C:
//!   margin 2/||w||, support vectors, how many sit at the bound C, accuracies; one
//!   figure of the boundary, margins and support vectors per C.
//! * What gamma does: an RBF SVM on the same two features for several gamma.

use anyhow::Result;
use ndarray::{s, Array2, Axis};
use serde::{Deserialize, Serialize};

use super::{Experiment, Preset};
use crate::data::folds::{stratified_split, Standardizer};
use crate::data::tables::{read_table, Table as DataTable, TableSet};
use crate::data::{self, DataDir, Dataset, Split};
use crate::report::contour::iso_lines;
use crate::report::{col, Figure, Format, Group, Plot, Report, Series, Table, Value};
use crate::svm::{grid_search, FittedSvc, Gamma, KernelKind, Svc};

/// Experiment `svm_classify`, registered in [`super::all`].
pub struct SvmClassify;

impl Experiment for SvmClassify {
    const NAME: &'static str = "svm_classify";
    const CHAPTER: &'static str = "ch12";
    const TITLE: &'static str = "Support vector machines: accuracy, grid search, C and gamma";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// Configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Seed of the train/test split and the folds.
    pub seed: u64,
    /// Share of the rows held out for testing.
    pub test_fraction: f64,
    /// Values of C of the grid search.
    pub grid_cs: Vec<f64>,
    /// Values of gamma of the grid search.
    pub grid_gammas: Vec<f64>,
    /// Folds of the grid search.
    pub k_folds: usize,
    /// MNIST training images (the first ones); 0 skips MNIST.
    pub mnist_train: usize,
    /// MNIST test images (the first ones).
    pub mnist_test: usize,
    /// Values of C on MNIST.
    pub mnist_cs: Vec<f64>,
    /// The two breast-cancer features of the 2-D figures (column indices).
    pub features_2d: [usize; 2],
    /// Values of C of the linear 2-D study.
    pub margin_cs: Vec<f64>,
    /// Values of gamma of the RBF 2-D study (C = 1).
    pub margin_gammas: Vec<f64>,
    /// Grid points per axis where the 2-D decision function is evaluated.
    pub grid_points: usize,
}

impl Preset for Config {
    /// Seconds: no MNIST, a smaller grid.
    fn quick() -> Self {
        Config {
            grid_cs: vec![0.1, 1.0, 10.0],
            grid_gammas: vec![0.01, 0.1],
            mnist_train: 0,
            grid_points: 60,
            ..Self::full()
        }
    }

    /// The preset behind the book's numbers.
    fn full() -> Self {
        Config {
            seed: 0,
            test_fraction: 0.25,
            grid_cs: vec![0.01, 0.1, 1.0, 10.0, 100.0, 1000.0],
            grid_gammas: vec![0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0],
            k_folds: 5,
            mnist_train: 10_000,
            mnist_test: 10_000,
            mnist_cs: vec![1.0, 10.0],
            features_2d: [0, 1],
            margin_cs: vec![0.01, 1.0, 100.0],
            margin_gammas: vec![0.1, 1.0, 30.0],
            grid_points: 150,
        }
    }
}

/// `(x_train, y_train, x_test, y_test)`.
pub type XySplit = (Array2<f64>, Vec<usize>, Array2<f64>, Vec<usize>);

/// Breast cancer split and standardised on its training rows:
/// `((x_train, y_train, x_test, y_test), class names)`.
pub fn breast_cancer(
    dir: &DataDir,
    test_fraction: f64,
    seed: u64,
) -> Result<(XySplit, Vec<String>)> {
    let t = read_table(dir, TableSet::BreastCancer)?;
    let (tr, te) = stratified_split(&t.labels, test_fraction, seed)?;
    let (train, test) = (t.select(&tr), t.select(&te));
    let s = Standardizer::fit(&train.features);
    Ok((
        (
            s.transform(&train.features),
            train.labels,
            s.transform(&test.features),
            test.labels,
        ),
        t.class_names,
    ))
}

/// MNIST's first `n_train` training and `n_test` test images, flattened, in [0, 1].
pub fn mnist(
    dir: &DataDir,
    n_train: usize,
    n_test: usize,
) -> Result<XySplit> {
    let load = |split, n| -> Result<(Array2<f64>, Vec<usize>)> {
        let d = Dataset::mnist(dir, split, n)?;
        Ok((d.flat().mapv(f64::from), d.labels().to_vec()))
    };
    let (xtr, ytr) = load(Split::Train, n_train)?;
    let (xte, yte) = load(Split::Test, n_test)?;
    Ok((xtr, ytr, xte, yte))
}

fn accuracy_row(
    r: &mut Table,
    name: &str,
    setting: &str,
    model: &FittedSvc,
    (xtr, ytr, xte, yte): (&Array2<f64>, &[usize], &Array2<f64>, &[usize]),
) -> f64 {
    let acc = model.score(xte, yte);
    r.rows.push(vec![
        Value::Text(name.into()),
        Value::Text(setting.into()),
        Value::Num(xtr.nrows() as f64),
        Value::Num(xte.nrows() as f64),
        Value::Num(model.support.len() as f64),
        Value::Num(model.score(xtr, ytr)),
        Value::Num(acc),
    ]);
    acc
}

/// The two classes, the support vectors, and as lines the boundary `f = 0` and the
/// margins `f = +-1` (level sets of the decision value over an `n x n` grid).
fn margin_figure(
    (name, title): (&str, String),
    model: &FittedSvc,
    x: &Array2<f64>,
    y: &[usize],
    class_names: &[String],
    labels: [&str; 2],
    n: usize,
) -> Figure {
    let lo = x.fold_axis(Axis(0), f64::INFINITY, |a, &b| a.min(b));
    let hi = x.fold_axis(Axis(0), f64::NEG_INFINITY, |a, &b| a.max(b));
    let at = |d: usize, k: usize| lo[d] - 0.5 + (hi[d] - lo[d] + 1.0) * k as f64 / (n - 1) as f64;
    let grid = Array2::from_shape_fn((n * n, 2), |(p, d)| at(d, if d == 0 { p % n } else { p / n }));
    let f = model.decision_ovo(&grid).column(0).to_owned(); // (n*n,), positive: class 0
    let mut groups: Vec<Group> = (0..2)
        .map(|c| Group {
            name: class_names[c].clone(),
            x: (0..y.len()).filter(|&i| y[i] == c).map(|i| x[[i, 0]]).collect(),
            y: (0..y.len()).filter(|&i| y[i] == c).map(|i| x[[i, 1]]).collect(),
        })
        .collect();
    groups.push(Group {
        name: "support vectors".into(),
        x: model.support_vectors.column(0).to_vec(),
        y: model.support_vectors.column(1).to_vec(),
    });
    // The boundary and the margins as level sets of f over the grid.
    let xs: Vec<f64> = (0..n).map(|i| at(0, i)).collect();
    let ys: Vec<f64> = (0..n).map(|j| at(1, j)).collect();
    let z: Vec<Vec<f64>> = (0..n).map(|j| f.slice(s![j * n..(j + 1) * n]).to_vec()).collect();
    let mut lines = vec![];
    for (label, levels) in [("boundary f = 0", &[0.0][..]), ("margins f = ±1", &[-1.0, 1.0][..])] {
        for &level in levels {
            for piece in iso_lines(&xs, &ys, &z, level) {
                lines.push(Series {
                    name: label.into(),
                    x: piece.iter().map(|p| p.0).collect(),
                    y: piece.iter().map(|p| p.1).collect(),
                    band: None,
                });
            }
        }
    }
    Figure {
        name: name.into(),
        title,
        plot: Plot::ScatterLines {
            x_label: labels[0].into(),
            y_label: labels[1].into(),
            groups,
            lines,
        },
    }
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    r.seeds = vec![cfg.seed];
    r.data.push(data::data_ref(TableSet::BreastCancer.file()));
    r.data.push(data::data_ref(TableSet::Digits.file()));
    let mut acc = Table {
        name: "accuracy".into(),
        caption: "RBF SVC (gamma = \"scale\" unless given), test accuracy".into(),
        columns: vec![
            col("data", Format::Int),
            col("setting", Format::Int),
            col("train rows", Format::Int),
            col("test rows", Format::Int),
            col("support vectors", Format::Int),
            col("train accuracy", Format::Percent(2)),
            col("test accuracy", Format::Percent(2)),
        ],
        rows: vec![],
    };
    let ((xtr, ytr, xte, yte), names) = breast_cancer(dir, cfg.test_fraction, cfg.seed)?;
    let base = Svc::default();
    let m = base.fit(&xtr, &ytr)?;
    let a = accuracy_row(&mut acc, "breast cancer", "C = 1", &m, (&xtr, &ytr, &xte, &yte));
    r.fact("bc_test_accuracy", a, Format::Percent(2));
    r.fact("bc_train_rows", xtr.nrows() as f64, Format::Int);
    r.fact("bc_test_rows", xte.nrows() as f64, Format::Int);

    // Grid search on the training rows only; the test rows judge the winner once.
    let gs = grid_search(&base, &xtr, &ytr, &cfg.grid_cs, &cfg.grid_gammas, cfg.k_folds, cfg.seed)?;
    let best = Svc::rbf(gs.best_c(), Gamma::Value(gs.best_gamma())).fit(&xtr, &ytr)?;
    let setting = format!("grid best C = {}, gamma = {}", gs.best_c(), gs.best_gamma());
    let a_best = accuracy_row(&mut acc, "breast cancer", &setting, &best, (&xtr, &ytr, &xte, &yte));
    r.fact("grid_best_cv_accuracy", gs.mean_accuracy[gs.best.0][gs.best.1], Format::Percent(2));
    r.fact("grid_best_test_accuracy", a_best, Format::Percent(2));
    r.fact("grid_best_c", gs.best_c(), Format::Fixed(2));
    r.fact("grid_best_gamma", gs.best_gamma(), Format::Fixed(4));
    let worst = gs.mean_accuracy.iter().flatten().copied().fold(f64::INFINITY, f64::min);
    r.fact("grid_worst_cv_accuracy", worst, Format::Percent(2));
    r.figures.push(Figure {
        name: "grid".into(),
        title: format!("Breast cancer, {}-fold CV accuracy (%)", cfg.k_folds),
        plot: Plot::Heatmap {
            x_label: "gamma".into(),
            y_label: "C".into(),
            row_labels: gs.cs.iter().map(|c| format!("{c}")).collect(),
            col_labels: gs.gammas.iter().map(|g| format!("{g}")).collect(),
            values: gs.mean_accuracy.iter().map(|row| row.iter().map(|a| 100.0 * a).collect()).collect(),
            log_shade: false,
            decimals: 1,
        },
    });

    let digits: DataTable = read_table(dir, TableSet::Digits)?;
    let (tr, te) = stratified_split(&digits.labels, cfg.test_fraction, cfg.seed)?;
    let (dtr, dte) = (digits.select(&tr), digits.select(&te));
    let (dxtr, dxte) = (dtr.features / 16.0, dte.features / 16.0);
    let m = base.fit(&dxtr, &dtr.labels)?;
    let a = accuracy_row(&mut acc, "digits", "C = 1", &m, (&dxtr, &dtr.labels, &dxte, &dte.labels));
    r.fact("digits_test_accuracy", a, Format::Percent(2));

    if cfg.mnist_train > 0 {
        for split in [Split::Train, Split::Test] {
            let (im, lab) = data::mnist_files(split);
            r.data.push(data::data_ref(im));
            r.data.push(data::data_ref(lab));
        }
        let (mxtr, mytr, mxte, myte) = mnist(dir, cfg.mnist_train, cfg.mnist_test)?;
        for &c in &cfg.mnist_cs {
            let sp = crate::progress::spinner(&format!("MNIST, C = {c}"));
            let m = Svc::rbf(c, Gamma::Scale).fit(&mxtr, &mytr)?;
            let a = accuracy_row(&mut acc, "MNIST", &format!("C = {c}"), &m, (&mxtr, &mytr, &mxte, &myte));
            sp.finish_and_clear();
            r.fact(&format!("mnist_c{c}_test_accuracy"), a, Format::Percent(2));
        }
    }
    r.tables.push(acc);

    // Two features, so the boundary can be drawn.
    let [f0, f1] = cfg.features_2d;
    let x2 = xtr.select(Axis(1), &[f0, f1]);
    let x2te = xte.select(Axis(1), &[f0, f1]);
    let axis = ["feature 1 (standardised)", "feature 2 (standardised)"];
    let mut sweep = Table {
        name: "c_sweep".into(),
        caption: "Linear SVM on two standardised breast-cancer features".into(),
        columns: vec![
            col("C", Format::Fixed(2)),
            col("margin 2/‖w‖", Format::Fixed(3)),
            col("support vectors", Format::Int),
            col("at the bound C", Format::Int),
            col("train accuracy", Format::Percent(1)),
            col("test accuracy", Format::Percent(1)),
        ],
        rows: vec![],
    };
    for (k, &c) in cfg.margin_cs.iter().enumerate() {
        let svc = Svc { c, kernel: KernelKind::Linear, ..Svc::default() };
        let m = svc.fit(&x2, &ytr)?;
        let p = &m.pairs[0];
        let mut w = [0.0; 2];
        for (&s, &a) in p.sv.iter().zip(&p.coef) {
            w[0] += a * m.support_vectors[[s, 0]];
            w[1] += a * m.support_vectors[[s, 1]];
        }
        let margin = 2.0 / (w[0] * w[0] + w[1] * w[1]).sqrt();
        // A multiplier at the bound is C up to rounding in the solver's clipping.
        let at_bound = p.coef.iter().filter(|a| a.abs() >= c * (1.0 - 1e-12)).count();
        sweep.rows.push(vec![
            Value::Num(c),
            Value::Num(margin),
            Value::Num(m.support.len() as f64),
            Value::Num(at_bound as f64),
            Value::Num(m.score(&x2, &ytr)),
            Value::Num(m.score(&x2te, &yte)),
        ]);
        r.figures.push(margin_figure(
            (
                &format!("margin_c{k}"),
                format!(
                    "Linear SVM, C = {c}: margin {margin:.2}, {} support vectors",
                    m.support.len()
                ),
            ),
            &m,
            &x2,
            &ytr,
            &names,
            axis,
            cfg.grid_points,
        ));
    }
    r.tables.push(sweep);
    let mut gam = Table {
        name: "gamma_sweep".into(),
        caption: "RBF SVM (C = 1) on the same two features".into(),
        columns: vec![
            col("gamma", Format::Fixed(2)),
            col("support vectors", Format::Int),
            col("train accuracy", Format::Percent(1)),
            col("test accuracy", Format::Percent(1)),
        ],
        rows: vec![],
    };
    for (k, &g) in cfg.margin_gammas.iter().enumerate() {
        let m = Svc::rbf(1.0, Gamma::Value(g)).fit(&x2, &ytr)?;
        gam.rows.push(vec![
            Value::Num(g),
            Value::Num(m.support.len() as f64),
            Value::Num(m.score(&x2, &ytr)),
            Value::Num(m.score(&x2te, &yte)),
        ]);
        r.figures.push(margin_figure(
            (
                &format!("margin_gamma{k}"),
                format!("RBF SVM, C = 1, gamma = {g}: {} support vectors", m.support.len()),
            ),
            &m,
            &x2,
            &ytr,
            &names,
            axis,
            cfg.grid_points,
        ));
    }
    r.tables.push(gam);
    Ok(())
}
