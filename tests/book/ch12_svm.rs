//! Chapter 12.2, support vector machines: the KKT conditions at SMO's solution, the
//! kernel cache changing nothing but speed, hyper-parameter errors, one-vs-one voting,
//! and agreement with scikit-learn's `SVC` (libsvm) on fixed inputs (the fixture in
//! `tests/fixtures/ch12_svm/`, made by its `make.py`).

use std::collections::BTreeMap;
use std::path::Path;

use dlbook::data::DataDir;
use dlbook::experiments;
use dlbook::report::contour::iso_lines;
use dlbook::report::{Plot, Report, Value};
use dlbook::svm::kernel::{Kernel, QMatrix};
use dlbook::svm::{smo, FittedSvc, Gamma, KernelKind, PairModel, Svc};
use ndarray::{array, Array2};
use serde::Deserialize;

/// Decision values: ours against libsvm's within 1e-3, the tolerance both solvers stop
/// at. With the same working-set rule, the same `f32` kernel rows and no shrinking, the
/// two take the same SMO steps and agree to rounding (measured: below 1e-13 on every
/// case); but both stop once the maximal KKT violation is below eps = 1e-3, not at the
/// optimum, so a rounding difference that changed one step's choice could end at
/// another point of the eps-neighbourhood, whose decision values differ by the order of
/// eps (libsvm with and without shrinking: 3.4e-4 on `bc2_rbf_c10`). A tighter bound
/// would test the summation order of two dot products, not the algorithm.
const DEC_TOL: f64 = 1e-3;

/// Dual coefficients `a_i y_i` and offsets: scaled by C, since a multiplier lives in
/// `[0, C]` and the stopping rule bounds gradients, not multipliers; on these
/// well-posed cases they agree to well under 1 % of C.
const COEF_TOL: f64 = 1e-2;

#[derive(Deserialize)]
struct Case {
    params: BTreeMap<String, serde_json::Value>,
    x_train: Vec<Vec<f64>>,
    y_train: Vec<usize>,
    x_test: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
struct Pair {
    pos: usize,
    neg: usize,
    rows: Vec<usize>,
    coef: Vec<f64>,
    rho: f64,
}

#[derive(Deserialize)]
struct Expected {
    gamma: f64,
    support: Vec<usize>,
    n_support: Vec<usize>,
    pairs: Vec<Pair>,
    decision: Vec<Vec<f64>>,
    predict: Vec<usize>,
}

fn read_fixture<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ch12_svm")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn matrix(rows: &[Vec<f64>]) -> Array2<f64> {
    let f = rows[0].len();
    Array2::from_shape_vec((rows.len(), f), rows.concat()).expect("rectangular")
}

fn svc_of(params: &BTreeMap<String, serde_json::Value>) -> Svc {
    let kernel = match params["kernel"].as_str().expect("kernel") {
        "linear" => KernelKind::Linear,
        "poly" => KernelKind::Poly,
        "rbf" => KernelKind::Rbf,
        k => panic!("kernel {k}"),
    };
    let gamma = match params.get("gamma") {
        None => Gamma::Scale,
        Some(v) if v.as_str() == Some("scale") => Gamma::Scale,
        Some(v) => Gamma::Value(v.as_f64().expect("gamma")),
    };
    Svc {
        c: params["C"].as_f64().expect("C"),
        kernel,
        gamma,
        degree: params
            .get("degree")
            .map_or(3, |v| v.as_u64().expect("degree") as u32),
        coef0: params
            .get("coef0")
            .map_or(0.0, |v| v.as_f64().expect("coef0")),
        ..Svc::default()
    }
}

/// Every fixture case: the same gamma, the same support vectors, the same per-pair
/// multipliers and offsets (to [`COEF_TOL`] x C), decision values within [`DEC_TOL`],
/// and the same predictions.
#[test]
fn svc_agrees_with_scikit_learn() {
    let inputs: BTreeMap<String, Case> = read_fixture("inputs.json");
    let expected: BTreeMap<String, serde_json::Value> = read_fixture("expected.json");
    assert_eq!(inputs.len(), 10);
    let mut worst = 0.0f64;
    for (name, case) in &inputs {
        let want: Expected = serde_json::from_value(expected[name].clone()).expect(name);
        let svc = svc_of(&case.params);
        let (xtr, xte) = (matrix(&case.x_train), matrix(&case.x_test));
        let model = svc.fit(&xtr, &case.y_train).expect(name);
        let gamma = match model.kernel {
            Kernel::Linear => want.gamma,
            Kernel::Poly { gamma, .. } | Kernel::Rbf { gamma } => gamma,
        };
        assert!(
            (gamma - want.gamma).abs() <= 1e-12 * want.gamma,
            "{name}: gamma {gamma}"
        );
        assert_eq!(model.support, want.support, "{name}: support vectors");
        assert_eq!(model.n_support, want.n_support, "{name}");
        assert_eq!(model.pairs.len(), want.pairs.len());
        for (ours, theirs) in model.pairs.iter().zip(&want.pairs) {
            assert_eq!((ours.pos, ours.neg), (theirs.pos, theirs.neg));
            let rows: Vec<usize> = ours.sv.iter().map(|&s| model.support[s]).collect();
            assert_eq!(rows, theirs.rows, "{name}: pair {}-{}", ours.pos, ours.neg);
            for (a, b) in ours.coef.iter().zip(&theirs.coef) {
                assert!((a - b).abs() <= COEF_TOL * svc.c, "{name}: coef {a} vs {b}");
            }
            assert!(
                (ours.rho - theirs.rho).abs() <= DEC_TOL,
                "{name}: rho {} vs {}",
                ours.rho,
                theirs.rho
            );
        }
        let dec = model.decision_function(&xte);
        let mut case_worst = 0.0f64;
        for (r, row) in want.decision.iter().enumerate() {
            for (p, &v) in row.iter().enumerate() {
                case_worst = case_worst.max((dec[[r, p]] - v).abs());
            }
        }
        eprintln!("{name}: largest decision-value difference {case_worst:.2e}");
        assert!(
            case_worst <= DEC_TOL,
            "{name}: decision values differ by {case_worst}"
        );
        worst = worst.max(case_worst);
        assert_eq!(model.predict(&xte), want.predict, "{name}: predictions");
    }
    eprintln!("largest decision-value difference: {worst:.2e}");
}

// ANCHOR: separable
/// Four points a hand can solve: the maximum-margin line between (0,0),(1,0) and
/// (0,2),(1,2) is y = 1, with w = (0, 1), b = -1 and margin 2/||w|| = 2.
fn separable() -> (Array2<f64>, Vec<usize>) {
    (
        array![[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 2.0]],
        vec![1, 1, 0, 0],
    )
}
// ANCHOR_END: separable

/// Hard margin (a large C on separable data) finds the line, the margin 2/||w||, and
/// the multipliers the dual predicts: sum a_i = ||w||^2 = 1, split evenly by symmetry.
#[test]
fn hard_margin_recovers_the_maximum_margin_line() {
    let (x, y) = separable();
    let svc = Svc {
        c: 1e6,
        kernel: KernelKind::Linear,
        ..Svc::default()
    };
    let model = svc.fit(&x, &y).unwrap();
    let pair = &model.pairs[0];
    // w = sum_i a_i y_i x_i, with class 0 (the upper points) positive.
    let mut w = [0.0; 2];
    for (&s, &c) in pair.sv.iter().zip(&pair.coef) {
        w[0] += c * model.support_vectors[[s, 0]];
        w[1] += c * model.support_vectors[[s, 1]];
    }
    let norm = (w[0] * w[0] + w[1] * w[1]).sqrt();
    assert!((2.0 / norm - 2.0).abs() < 1e-3, "margin {}", 2.0 / norm);
    assert!(w[0].abs() < 1e-3 && (w[1] - 1.0).abs() < 1e-3, "w {w:?}");
    assert!((pair.rho - 1.0).abs() < 1e-3, "rho {}", pair.rho);
    let sum_alpha: f64 = pair.coef.iter().map(|c| c.abs()).sum();
    assert!(
        (sum_alpha - 1.0).abs() < 1e-3,
        "sum of multipliers {sum_alpha}"
    );
    assert_eq!(model.predict(&array![[0.5, 0.9], [0.5, 1.1]]), vec![1, 0]);
}

/// The training rows of a two-class fixture case, with labels as the solver takes them:
/// class 0 is `+1`, class 1 is `-1`.
fn binary_case(name: &str) -> (Array2<f64>, Vec<f64>) {
    let inputs: BTreeMap<String, Case> = read_fixture("inputs.json");
    let case = &inputs[name];
    let y = case
        .y_train
        .iter()
        .map(|&v| if v == 0 { 1.0 } else { -1.0 })
        .collect();
    (matrix(&case.x_train), y)
}

/// The cache's rows hold libsvm's values bit for bit: `y_i y_j K(x_i, x_j)` from dot
/// products summed one term after another in feature order (libsvm's `dot`), rounded
/// to `f32`. Summed in another order, a few entries would differ in their last bit.
#[test]
fn kernel_rows_are_libsvms_values() {
    let (x, y) = binary_case("bc2_rbf_c10");
    let kernel = Kernel::Rbf { gamma: 0.5 };
    let mut q = QMatrix::new(x.view(), &y, kernel, 1.0);
    let seq = |a: usize, b: usize| -> f64 {
        let mut t = 0.0;
        for f in 0..x.ncols() {
            t += x[[a, f]] * x[[b, f]];
        }
        t
    };
    for i in [0, y.len() / 2, y.len() - 1] {
        let row = q.row(i).to_vec();
        for (j, &v) in row.iter().enumerate() {
            let want =
                (y[i] * y[j] * kernel.from_dot(seq(i, j), seq(i, i), seq(j, j))) as f32;
            assert_eq!(
                v.to_bits(),
                want.to_bits(),
                "Q[{i}][{j}] = {v}, libsvm's {want}"
            );
        }
    }
}

/// At SMO's stopping point the KKT conditions hold to eps: `y_i f(x_i) >= 1` where
/// `a_i = 0`, `= 1` on free support vectors, `<= 1` at the bound C, and `y^T a = 0`.
#[test]
fn smo_solution_satisfies_kkt_conditions() {
    let (x, y) = binary_case("bc2_rbf_c10");
    let (c, eps) = (10.0, 1e-3);
    let kernel = Kernel::Rbf { gamma: 0.5 };
    let mut q = QMatrix::new(x.view(), &y, kernel, 1.0);
    let sol = smo::solve(&mut q, &y, c, eps, 1_000_000).unwrap();
    let k = kernel.matrix(x.view(), x.view());
    let (mut free, mut bound) = (0, 0);
    for i in 0..y.len() {
        let f: f64 = (0..y.len())
            .map(|j| sol.alpha[j] * y[j] * k[[i, j]])
            .sum::<f64>()
            - sol.rho;
        let m = y[i] * f;
        if sol.alpha[i] <= 0.0 {
            assert!(m >= 1.0 - eps, "a_{i} = 0 but y f = {m}");
        } else if sol.alpha[i] >= c {
            bound += 1;
            assert!(m <= 1.0 + eps, "a_{i} = C but y f = {m}");
        } else {
            free += 1;
            assert!((m - 1.0).abs() <= eps, "free a_{i} but y f = {m}");
        }
    }
    assert!(free > 0 && bound > 0, "free {free}, bound {bound}");
    let balance: f64 = sol.alpha.iter().zip(&y).map(|(a, y)| a * y).sum();
    assert!(balance.abs() < 1e-9, "y^T a = {balance}");
}

/// A cache of two rows (every request a recomputation) and one of all rows give the
/// same multipliers to the last bit: the cache only decides what is recomputed.
#[test]
fn kernel_cache_changes_speed_not_answers() {
    let (x, y) = binary_case("bc_rbf");
    let kernel = Kernel::Rbf { gamma: 1.0 / 30.0 };
    let mut tiny = QMatrix::new(x.view(), &y, kernel, 1e-9);
    let mut big = QMatrix::new(x.view(), &y, kernel, 100.0);
    assert_eq!(tiny.capacity(), 2);
    assert_eq!(big.capacity(), y.len());
    let a = smo::solve(&mut tiny, &y, 1.0, 1e-3, 1_000_000).unwrap();
    let b = smo::solve(&mut big, &y, 1.0, 1e-3, 1_000_000).unwrap();
    assert_eq!(a.alpha, b.alpha);
    assert_eq!(a.rho, b.rho);
    // The full cache computes each row at most once; the tiny one recomputes.
    assert!(b.kernel_rows.0 <= y.len() as u64);
    assert!(
        a.kernel_rows.0 > b.kernel_rows.0,
        "{:?} vs {:?}",
        a.kernel_rows,
        b.kernel_rows
    );
}

/// Bad hyper-parameters and unusable data are errors from `fit`, not panics.
#[test]
fn bad_hyper_parameters_are_errors() {
    let (x, y) = separable();
    let bad = [
        Svc {
            c: 0.0,
            ..Svc::default()
        },
        Svc {
            c: -1.0,
            ..Svc::default()
        },
        Svc {
            c: f64::NAN,
            ..Svc::default()
        },
        Svc {
            eps: 0.0,
            ..Svc::default()
        },
        Svc {
            cache_mb: 0.0,
            ..Svc::default()
        },
        Svc {
            gamma: Gamma::Value(0.0),
            ..Svc::default()
        },
        Svc {
            kernel: KernelKind::Poly,
            degree: 0,
            ..Svc::default()
        },
    ];
    for svc in bad {
        let err = svc.fit(&x, &y).unwrap_err().to_string();
        assert!(!err.is_empty());
    }
    assert!(Svc::default().fit(&x, &[1, 1, 1, 1]).is_err(), "one class");
    let mut nan = x.clone();
    nan[[0, 0]] = f64::NAN;
    assert!(Svc::default().fit(&nan, &y).is_err(), "NaN feature");
    assert!(
        Svc::default().fit(&Array2::zeros((0, 2)), &[]).is_err(),
        "no rows"
    );
}

/// A three-way tie in votes goes to the smallest class, as libsvm's `>` scan does. A
/// hand-built model on one feature whose pairs vote in a cycle at x = 1 (0 beats 1, 2
/// beats 0, 1 beats 2): one vote each, and the first class wins.
#[test]
fn vote_ties_go_to_the_smaller_class() {
    let pair = |pos, neg, coef: f64| PairModel {
        pos,
        neg,
        sv: vec![0],
        coef: vec![coef],
        rho: 0.0,
        iterations: 0,
        kernel_rows: (0, 0),
    };
    let mut model = FittedSvc {
        kernel: Kernel::Linear,
        classes: vec![3, 5, 7],
        support: vec![0],
        support_vectors: array![[1.0]],
        n_support: vec![1, 0, 0],
        pairs: vec![pair(0, 1, 1.0), pair(0, 2, -1.0), pair(1, 2, 1.0)],
    };
    assert_eq!(model.predict(&array![[1.0]]), vec![3]);
    // At x = -1 every vote flips: still a cycle, still the first class.
    assert_eq!(model.predict(&array![[-1.0]]), vec![3]);
    // Break the cycle for class 7: it now has two votes.
    model.pairs[2].coef[0] = -1.0;
    assert_eq!(model.predict(&array![[1.0]]), vec![7]);
}

fn report() -> &'static Report {
    experiments::quick("svm_classify", &DataDir::resolve(None)).unwrap()
}

fn column(table: &str, header: &str) -> Vec<f64> {
    let t = report()
        .table(table)
        .unwrap_or_else(|| panic!("no table {table}"));
    let k = t
        .columns
        .iter()
        .position(|c| c.header == header)
        .expect(header);
    t.rows
        .iter()
        .map(|row| row[k].number().expect("a number"))
        .collect()
}

/// On two breast-cancer features, a smaller C buys a wider margin with more support
/// vectors, most of them at the bound C (inside the margin or misclassified).
#[test]
fn smaller_c_widens_the_margin_and_adds_support_vectors() {
    let (c, margin) = (column("c_sweep", "C"), column("c_sweep", "margin 2/‖w‖"));
    let (svs, bound) = (
        column("c_sweep", "support vectors"),
        column("c_sweep", "at the bound C"),
    );
    assert!(c.len() >= 3 && c.windows(2).all(|w| w[0] < w[1]), "C {c:?}");
    assert!(margin.windows(2).all(|w| w[0] > w[1]), "margins {margin:?}");
    assert!(
        svs.windows(2).all(|w| w[0] >= w[1]),
        "support vectors {svs:?}"
    );
    assert!(
        svs.windows(2).any(|w| w[0] > w[1]),
        "support vectors {svs:?}"
    );
    for (b, s) in bound.iter().zip(&svs) {
        assert!(*b > 0.5 * s, "at the bound {b} of {s}");
    }
}

/// A large gamma (a narrow RBF) fits the training rows best and the test rows worst.
#[test]
fn large_gamma_fits_the_training_rows_and_loses_test_accuracy() {
    let train = column("gamma_sweep", "train accuracy");
    let test = column("gamma_sweep", "test accuracy");
    let (tr_last, te_last) = (*train.last().unwrap(), *test.last().unwrap());
    assert!(train.iter().all(|&a| a <= tr_last), "train {train:?}");
    assert!(test.iter().all(|&a| a >= te_last), "test {test:?}");
    assert!(test[0] > te_last, "test {test:?}");
}

/// The RBF SVC with scikit-learn's defaults classifies breast cancer's held-out rows
/// at 95 % or better and digits' at 97 % or better.
#[test]
fn svm_is_accurate_on_breast_cancer_and_digits() {
    let r = report();
    let bc = r.get_fact("bc_test_accuracy").unwrap();
    let digits = r.get_fact("digits_test_accuracy").unwrap();
    assert!(bc >= 0.95, "breast cancer {bc}");
    assert!(digits >= 0.97, "digits {digits}");
}

/// The grid search's choice is the best mean cross-validated accuracy of the grid, and
/// the grid spans a visible range (its worst cell is below its best).
#[test]
fn grid_search_reports_its_best_cell() {
    let r = report();
    let best = r.get_fact("grid_best_cv_accuracy").unwrap();
    let worst = r.get_fact("grid_worst_cv_accuracy").unwrap();
    let fig = r
        .figures
        .iter()
        .find(|f| f.name == "grid")
        .expect("grid figure");
    let Plot::Heatmap { values, .. } = &fig.plot else {
        panic!("the grid figure is not a heat map")
    };
    let top = values
        .iter()
        .flatten()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(
        (top - 100.0 * best).abs() < 1e-9,
        "heat map top {top}, best {best}"
    );
    assert!(worst < best, "worst {worst}, best {best}");
}

/// The committed `svm_speed` run: on every MNIST row our fit and our prediction took
/// fewer CPU-seconds than scikit-learn's, measured in the same run, at the same test
/// accuracy.
#[test]
fn svm_fit_costs_less_cpu_than_scikit_learn_on_mnist() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("chapters/generated/ch12/svm_speed.json");
    let r = Report::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
    let t = &r.tables[0];
    let col = |name: &str| {
        t.columns
            .iter()
            .position(|c| c.header == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let (data, who, acc) = (col("data"), col("implementation"), col("test accuracy"));
    let text = |row: &[Value], k: usize| match &row[k] {
        Value::Text(s) => s.clone(),
        v => panic!("not text: {v:?}"),
    };
    let num = |row: &[Value], k: usize| row[k].number().expect("a number");
    let mnist: Vec<&Vec<Value>> = t
        .rows
        .iter()
        .filter(|row| text(row, data).starts_with("MNIST"))
        .collect();
    assert_eq!(mnist.len(), 4, "ours and scikit-learn's, two values of C");
    for pair in mnist.chunks(2) {
        let (ours, theirs) = (pair[0], pair[1]);
        assert_eq!(text(ours, who), "ours");
        assert!(
            text(theirs, who).starts_with("scikit-learn "),
            "{}",
            text(theirs, who)
        );
        assert_eq!(num(ours, acc), num(theirs, acc), "{}", text(ours, data));
        for step in ["fit CPU-s", "predict CPU-s"] {
            let k = col(step);
            assert!(
                num(ours, k) < num(theirs, k),
                "{}: {step} {} against {}",
                text(ours, data),
                num(ours, k),
                num(theirs, k)
            );
        }
    }
}

/// The margin figures draw the boundary `f = 0` and the margins `f = +-1` as lines (level
/// sets over the grid of decision values) over the classes and support vectors.
#[test]
fn margin_figures_draw_the_boundary_and_margins_as_lines() {
    let r = report();
    let figs: Vec<_> = r
        .figures
        .iter()
        .filter(|f| f.name.starts_with("margin_"))
        .collect();
    assert!(!figs.is_empty(), "no margin figures");
    for f in figs {
        let Plot::ScatterLines { groups, lines, .. } = &f.plot else {
            panic!("{} is not points with lines", f.name)
        };
        assert_eq!(
            groups.len(),
            3,
            "{}: two classes and the support vectors",
            f.name
        );
        for name in ["boundary f = 0", "margins f = ±1"] {
            assert!(
                lines.iter().any(|l| l.name == name && l.x.len() >= 2),
                "{}: no {name} line",
                f.name
            );
        }
    }
}

/// The level-set tracer behind the margin figures, on the circle `x^2 + y^2 = 1`: one
/// closed polyline, every vertex on the circle to within the linear interpolation's
/// error, which is of the order of the squared grid step (0.01 here).
#[test]
fn iso_lines_trace_a_circle() {
    let g: Vec<f64> = (0..41).map(|k| -2.0 + 0.1 * k as f64).collect();
    let z: Vec<Vec<f64>> = g
        .iter()
        .map(|&y| g.iter().map(|&x| x * x + y * y).collect())
        .collect();
    let lines = iso_lines(&g, &g, &z, 1.0);
    assert_eq!(lines.len(), 1, "{} pieces", lines.len());
    let line = &lines[0];
    assert!(line.len() > 40, "{} vertices", line.len());
    assert_eq!(line[0], line[line.len() - 1], "not closed");
    for &(x, y) in line {
        let r = (x * x + y * y).sqrt();
        assert!((r - 1.0).abs() < 0.01, "vertex at radius {r}");
    }
}
