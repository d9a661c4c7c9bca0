//! Chapter 2, training: activations compared on MNIST, cross-entropy vs squared error,
//! gradient norms against depth, and the candle twin trained side by side.

use std::sync::OnceLock;

use dlbook::data::DataDir;
use dlbook::experiments::{activations_mnist, gradient_depth, mse_vs_ce, twin_mnist};
use dlbook::report::{Report, Value};

fn dir() -> DataDir {
    DataDir::resolve(None)
}

fn activations() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        activations_mnist::run(&activations_mnist::Config::quick(), &dir()).unwrap()
    })
}

fn losses() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| mse_vs_ce::run(&mse_vs_ce::Config::quick(), &dir()).unwrap())
}

fn depth() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        gradient_depth::run(&gradient_depth::Config::quick(), &dir()).unwrap()
    })
}

fn twin() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| twin_mnist::run(&twin_mnist::Config::quick(), &dir()).unwrap())
}

/// A per-seed cell of a table row, by the row's first cell and a column header.
fn cell(r: &Report, table: &str, row: &str, col: &str) -> Vec<f64> {
    let t = r.table(table).expect("table");
    let j = t
        .columns
        .iter()
        .position(|c| c.header == col)
        .expect("column");
    let row = t
        .rows
        .iter()
        .find(|cells| cells[0] == Value::Text(row.into()))
        .unwrap_or_else(|| panic!("no row {row}"));
    match &row[j] {
        Value::Seeds(v) => v.clone(),
        Value::Num(x) => vec![*x],
        Value::Text(t) => panic!("text cell {t}"),
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

#[test]
fn relu_learns_faster_than_sigmoid() {
    let r = activations();
    let relu = cell(r, "activations", "ReLU", "test acc. after epoch 1");
    let sigmoid = cell(r, "activations", "sigmoid", "test acc. after epoch 1");
    // Every ReLU seed beats every sigmoid seed after one epoch.
    assert!(
        min(&relu) > max(&sigmoid),
        "relu {relu:?} sigmoid {sigmoid:?}"
    );
}

#[test]
fn every_activation_learns_mnist() {
    let r = activations();
    for act in ["sigmoid", "tanh", "ReLU", "leaky ReLU (0.01)"] {
        let acc = cell(r, "activations", act, "final test acc.");
        assert!(min(&acc) > 0.75, "{act}: {acc:?}");
    }
}

#[test]
fn a_large_learning_rate_kills_relu_units_not_leaky_ones() {
    let r = activations();
    let normal = cell(r, "activations", "ReLU", "dead units");
    let high = cell(r, "dead_relu", "ReLU", "dead units");
    let leaky = cell(r, "dead_relu", "leaky ReLU (0.01)", "dead units");
    assert!(
        mean(&high) > 0.05 && mean(&high) > 5.0 * mean(&normal).max(0.001),
        "high lr {high:?} vs default {normal:?}"
    );
    assert_eq!(max(&leaky), 0.0);
}

#[test]
fn sigmoid_saturates_more_than_tanh() {
    let r = activations();
    let s = cell(r, "activations", "sigmoid", "saturated");
    let t = cell(r, "activations", "tanh", "saturated");
    assert!(mean(&s) > mean(&t), "sigmoid {s:?} tanh {t:?}");
}

// ANCHOR: usage_true_class_gradient
/// The true-class logit gradient of each loss when that logit trails the others by 10.
fn confidently_wrong_gradients() -> (f32, f32) {
    mse_vs_ce::true_class_gradient(10.0)
}
// ANCHOR_END: usage_true_class_gradient

#[test]
fn squared_error_gradient_vanishes_when_confidently_wrong() {
    let (ce, mse) = confidently_wrong_gradients();
    assert!((ce + 1.0).abs() < 1e-3, "cross-entropy gradient {ce}");
    assert!(mse.abs() < 1e-3, "squared-error gradient {mse}");
}

#[test]
fn cross_entropy_beats_squared_error_at_its_best_rate() {
    let r = losses();
    let ce = r.get_fact("best_ce").expect("fact");
    let mse = r.get_fact("best_mse").expect("fact");
    assert!(ce > mse, "ce {ce} mse {mse}");
}

#[test]
fn sigmoid_gradients_vanish_with_depth_under_every_init() {
    let r = depth();
    for init in ["naive N(0, 0.01²)", "naive N(0, 1²)", "Xavier", "He"] {
        let t = r.table("norms").unwrap();
        let row = t
            .rows
            .iter()
            .find(|c| {
                c[0] == Value::Text("sigmoid".into()) && c[1] == Value::Text(init.into())
            })
            .expect("row");
        let Value::Seeds(ratio) = &row[4] else {
            panic!()
        };
        assert!(max(ratio) < 1e-2, "sigmoid {init}: first/last {ratio:?}");
    }
}

fn ratio(r: &Report, act: &str, init: &str) -> Vec<f64> {
    let t = r.table("norms").unwrap();
    let row = t
        .rows
        .iter()
        .find(|c| c[0] == Value::Text(act.into()) && c[1] == Value::Text(init.into()))
        .expect("row");
    let Value::Seeds(v) = &row[4] else { panic!() };
    v.clone()
}

#[test]
fn matched_init_keeps_gradients_within_a_factor_of_ten() {
    let r = depth();
    for (act, init) in [("ReLU", "He"), ("tanh", "Xavier")] {
        let v = ratio(r, act, init);
        assert!(min(&v) > 0.1 && max(&v) < 10.0, "{act} {init}: {v:?}");
    }
}

#[test]
fn naive_init_vanishes_or_explodes() {
    let r = depth();
    for act in ["tanh", "ReLU"] {
        let small = ratio(r, act, "naive N(0, 0.01²)");
        assert!(max(&small) < 1e-6, "{act} small init: {small:?}");
    }
    let big = ratio(r, "ReLU", "naive N(0, 1²)");
    assert!(min(&big) > 1e3, "ReLU N(0,1): {big:?}");
}

#[test]
fn scratch_and_candle_train_to_the_same_accuracy() {
    let r = twin();
    let gap = r.get_fact("max_acc_gap").expect("fact");
    assert!(gap <= 0.005, "accuracy gap {gap}");
    let t = r.table("twin").unwrap();
    let Value::Seeds(diffs) = &t.rows[0][3] else {
        panic!()
    };
    assert!(max(diffs) < 1e-3, "weight differences {diffs:?}");
}
