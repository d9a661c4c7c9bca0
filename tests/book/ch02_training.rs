//! Chapter 2, training: activations compared on MNIST, cross-entropy vs squared error,
//! gradient norms against depth, and the candle twin trained side by side.

use std::sync::OnceLock;

use dlbook::data::DataDir;
use dlbook::experiments::mse_vs_ce;
use dlbook::experiments::{self};
use dlbook::report::{Report, Value};

fn dir() -> DataDir {
    DataDir::resolve(None)
}

fn activations() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        experiments::quick("activations_mnist", &dir())
            .cloned()
            .unwrap()
    })
}

fn losses() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| experiments::quick("mse_vs_ce", &dir()).cloned().unwrap())
}

fn depth() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        experiments::quick("gradient_depth", &dir())
            .cloned()
            .unwrap()
    })
}

fn twin() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| experiments::quick("twin_mnist", &dir()).cloned().unwrap())
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
fn sigmoid_ends_behind_the_others() {
    let r = activations();
    let sigmoid = cell(r, "activations", "sigmoid", "final test acc.");
    for act in ["tanh", "ReLU", "leaky ReLU (0.01)"] {
        let acc = cell(r, "activations", act, "final test acc.");
        assert!(min(&acc) > 0.6, "{act}: {acc:?}");
        assert!(
            min(&acc) > max(&sigmoid),
            "{act}: {acc:?} vs sigmoid {sigmoid:?}"
        );
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
    // Neither trains well at that rate.
    for act in ["ReLU", "leaky ReLU (0.01)"] {
        let high = cell(r, "dead_relu", act, "test acc.");
        let default = cell(r, "activations", act, "test acc. after epoch 1");
        assert!(
            mean(&high) < mean(&default),
            "{act}: {high:?} vs {default:?}"
        );
    }
}

#[test]
fn saturation_is_rare_at_this_learning_rate() {
    let r = activations();
    for act in ["sigmoid", "tanh"] {
        let s = cell(r, "activations", act, "saturated");
        assert!(max(&s) < 0.1, "{act}: {s:?}");
    }
    // ReLU outputs are exactly zero (derivative 0) for a large share of inputs.
    let relu = cell(r, "activations", "ReLU", "saturated");
    assert!(min(&relu) > 0.25, "relu zeros {relu:?}");
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
fn cross_entropy_leads_at_the_same_rate_mse_catches_up_at_a_larger_one() {
    let r = losses();
    let t = r.table("losses").unwrap();
    let at = |loss: &str, lr: f64| -> Vec<f64> {
        let row = t
            .rows
            .iter()
            .find(|c| {
                c[0] == Value::Text(loss.into())
                    && c[1].number().is_some_and(|x| (x - lr).abs() < 1e-6)
            })
            .expect("row");
        let Value::Seeds(v) = &row[2] else { panic!() };
        v.clone()
    };
    let (ce, mse) = (at("cross-entropy", 0.1), at("MSE on softmax", 0.1));
    for (c, m) in ce.iter().zip(&mse) {
        assert!(c > m, "at lr 0.1: ce {ce:?} mse {mse:?}");
    }
    let best_ce = r.get_fact("best_ce").expect("fact");
    let best_mse = r.get_fact("best_mse").expect("fact");
    assert!(
        (best_ce - best_mse).abs() < 0.02,
        "best ce {best_ce} mse {best_mse}"
    );
}

#[test]
fn sigmoid_gradients_vanish_under_xavier_and_he() {
    let r = depth();
    for init in ["naive N(0, 0.01²)", "Xavier", "He"] {
        let v = ratio(r, "sigmoid", init);
        assert!(max(&v) < 1e-4, "sigmoid {init}: first/last {v:?}");
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
fn matched_init_keeps_the_signal_within_a_factor_of_three() {
    let r = depth();
    for (act, init) in [("ReLU", "He"), ("tanh", "Xavier")] {
        let v = ratio(r, act, init);
        assert!(min(&v) > 0.3 && max(&v) < 3.0, "{act} {init}: {v:?}");
    }
}

#[test]
fn naive_init_vanishes_or_explodes() {
    let r = depth();
    for act in ["tanh", "ReLU"] {
        let small = ratio(r, act, "naive N(0, 0.01²)");
        assert!(max(&small) < 1e-6, "{act} small init: {small:?}");
    }
    for act in ["tanh", "ReLU"] {
        let big = ratio(r, act, "naive N(0, 1²)");
        assert!(min(&big) > 1e3, "{act} N(0,1): {big:?}");
    }
}

#[test]
fn xavier_halves_the_relu_signal_at_every_layer() {
    // He's factor 2 missing: each layer scales the signal by about 1/sqrt(2), so 11
    // layers give about 2^(-5.5) = 0.022.
    let v = ratio(depth(), "ReLU", "Xavier");
    assert!(min(&v) > 0.01 && max(&v) < 0.05, "{v:?}");
}

#[test]
fn scratch_and_candle_train_to_the_same_accuracy() {
    let r = twin();
    let gap = r.get_fact("max_acc_gap").expect("fact");
    assert!(gap <= 0.002, "accuracy gap {gap}");
    let t = r.table("twin").unwrap();
    let Value::Seeds(diffs) = &t.rows[0][3] else {
        panic!()
    };
    assert!(max(diffs) < 1e-5, "weight differences {diffs:?}");
}

#[test]
fn sgd_without_momentum_is_sgd_step_bit_for_bit() {
    // The experiments train with `Sgd::new(lr)` in the shared loop: its update must be
    // the same floats as `sgd_step`'s.
    use dlbook::nn::{sgd_step, Activation, Init, Mlp, Module};
    use dlbook::optim::{Optimizer, Sgd};
    let mut a = Mlp::new(&[20, 16, 10], Activation::Relu, Init::He, 0);
    let mut k = 0.0f32;
    a.visit_params("", &mut |_, p| {
        p.grad.mapv_inplace(|_| {
            k += 1.0;
            (k * 0.61).sin() * 3.0
        })
    });
    let mut b = Mlp::new(&[20, 16, 10], Activation::Relu, Init::He, 0);
    let mut grads = vec![];
    a.visit_params("", &mut |_, p| grads.push(p.grad.clone()));
    let mut it = grads.into_iter();
    b.visit_params("", &mut |_, p| p.grad = it.next().unwrap());
    sgd_step(&mut a, 0.07);
    Sgd::new(0.07).step(&mut b);
    let bits = |m: &mut Mlp| {
        let mut v = vec![];
        m.visit_params("", &mut |_, p| {
            v.extend(p.value.iter().map(|x| x.to_bits()))
        });
        v
    };
    let (wa, wb) = (bits(&mut a), bits(&mut b));
    assert_eq!(wa, wb);
    assert_ne!(
        wa,
        bits(&mut Mlp::new(&[20, 16, 10], Activation::Relu, Init::He, 0))
    );
}
