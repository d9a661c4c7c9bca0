//! Chapter 2, the layer machinery: `Linear`, activations, softmax, losses and the MLP,
//! each gradient checked three ways (manual backward, finite differences, candle), and
//! the shape and stability claims of the chapter.

use std::sync::OnceLock;

use dlbook::experiments::gradient_checks::{self, Check};
use dlbook::experiments::Preset as _;
use dlbook::nn::activation::{sigmoid, Activation, ActivationLayer};
use dlbook::nn::gradcheck::normal;
use dlbook::nn::linear::{Init, Linear};
use dlbook::nn::loss::{
    bce_with_logits, logsumexp, mse, softmax_cross_entropy, softmax_cross_entropy_naive,
};
use dlbook::nn::{Layer, Mlp, Mode, Module};
use ndarray::{array, ArrayD};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn checks() -> &'static Vec<Check> {
    static C: OnceLock<Vec<Check>> = OnceLock::new();
    C.get_or_init(|| {
        gradient_checks::check_all(&gradient_checks::Config::quick()).expect("checks run")
    })
}

fn check(name: &str) -> &'static Check {
    checks()
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check named {name}"))
}

fn worst(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, &x| m.max(x))
}

/// The tolerances the chapter states: manual (f32) vs candle (F64) within `1e-5`;
/// anything involving f32 finite differences (h = 1e-2) within `1e-3`.
fn assert_three_ways(name: &str) {
    let c = check(name);
    let (a, b, d) = (
        worst(&c.manual_vs_fd),
        worst(&c.manual_vs_candle),
        worst(&c.fd_vs_candle),
    );
    assert!(b < 1e-5, "{name}: manual vs candle {b:e}");
    assert!(a < 1e-3, "{name}: manual vs finite differences {a:e}");
    assert!(d < 1e-3, "{name}: finite differences vs candle {d:e}");
}

#[test]
fn linear_gradients_agree_three_ways() {
    assert_three_ways("Linear");
}

#[test]
fn activation_gradients_agree_three_ways() {
    for name in ["sigmoid", "tanh", "ReLU", "leaky ReLU (0.01)"] {
        assert_three_ways(name);
    }
}

#[test]
fn softmax_gradient_agrees_three_ways() {
    assert_three_ways("softmax");
}

#[test]
fn loss_gradients_agree_three_ways() {
    for name in [
        "MSE",
        "binary cross-entropy (logits)",
        "softmax cross-entropy",
    ] {
        assert_three_ways(name);
    }
}

#[test]
fn mlp_backprop_agrees_three_ways() {
    assert_three_ways("MLP 5-6-4-3 (tanh) + softmax CE");
}

// ANCHOR: usage_linear
/// A 3 -> 2 layer with hand-picked weights on a batch of one.
fn linear_by_hand() -> ArrayD<f32> {
    let w = array![[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]]; // (d_out, d_in) = (2, 3)
    let mut layer = Linear::from_weights(w, array![0.5, -0.5]);
    layer.forward(&array![[1.0, 2.0, 3.0]].into_dyn(), Mode::Eval)
}
// ANCHOR_END: usage_linear

#[test]
fn linear_computes_x_w_transpose_plus_b() {
    // [1-3+0.5, 2+2-0.5] = [-1.5, 3.5]
    assert_eq!(linear_by_hand(), array![[-1.5, 3.5]].into_dyn());
}

#[test]
#[should_panic(expected = "expected shape (n, 3), got [2, 4]")]
fn linear_panics_naming_the_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut layer = Linear::new(3, 2, Init::He, &mut rng);
    let _ = layer.forward(&ArrayD::zeros(vec![2, 4]), Mode::Eval);
}

#[test]
fn gradients_accumulate_across_backward_calls() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut layer = Linear::new(3, 2, Init::Xavier, &mut rng);
    let x = normal(&[4, 3], &mut rng);
    let dy = normal(&[4, 2], &mut rng);
    let _ = layer.forward(&x, Mode::Train);
    let _ = layer.backward(&dy);
    let once = layer.weight.grad.clone();
    let _ = layer.backward(&dy);
    let diff = (&layer.weight.grad - &(&once * 2.0)).mapv(f32::abs);
    assert!(diff.iter().all(|&d| d < 1e-5));
    layer.zero_grad();
    assert!(layer.weight.grad.iter().all(|&g| g == 0.0));
}

// ANCHOR: usage_init_std
/// The measured standard deviation of the weights of a 400 -> 100 layer, per init.
fn measured_init_std() -> Vec<(Init, f32, f32)> {
    [Init::Normal(0.01), Init::Xavier, Init::He]
        .into_iter()
        .map(|init| {
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let w = Linear::new(400, 100, init, &mut rng).weight.value;
            let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
            (init, std, init.std(400, 100))
        })
        .collect()
}
// ANCHOR_END: usage_init_std

#[test]
fn init_scales_match_their_formulas() {
    for (init, measured, want) in measured_init_std() {
        assert!(
            (measured / want - 1.0).abs() < 0.02,
            "{init:?}: std {measured} vs {want}"
        );
    }
}

#[test]
fn init_is_seeded() {
    let a = Mlp::new(&[4, 3, 2], Activation::Relu, Init::He, 7);
    let b = Mlp::new(&[4, 3, 2], Activation::Relu, Init::He, 7);
    let c = Mlp::new(&[4, 3, 2], Activation::Relu, Init::He, 8);
    assert_eq!(a.linears[0].weight, b.linears[0].weight);
    assert_ne!(a.linears[0].weight, c.linears[0].weight);
}

// ANCHOR: usage_mlp_names
/// The parameter names and sizes of a 784-128-64-10 MLP.
fn mlp_param_names() -> (Vec<String>, usize) {
    let mut mlp = Mlp::new(&[784, 128, 64, 10], Activation::Relu, Init::He, 0);
    let mut names = vec![];
    mlp.visit_params("", &mut |name, _| names.push(name.to_string()));
    (names, mlp.n_params())
}
// ANCHOR_END: usage_mlp_names

#[test]
fn mlp_parameters_have_dotted_names() {
    let (names, n) = mlp_param_names();
    assert_eq!(
        names,
        [
            "layers.0.weight",
            "layers.0.bias",
            "layers.2.weight",
            "layers.2.bias",
            "layers.4.weight",
            "layers.4.bias"
        ]
    );
    assert_eq!(n, 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10);
}

#[test]
fn sigmoid_derivative_is_at_most_a_quarter() {
    let xs: Vec<f32> = (-800..=800).map(|i| i as f32 / 100.0).collect();
    let max = xs
        .iter()
        .map(|&x| Activation::Sigmoid.df(x, sigmoid(x)))
        .fold(0.0f32, f32::max);
    assert!((max - 0.25).abs() < 1e-6, "max sigmoid' = {max}");
    let max_tanh = xs
        .iter()
        .map(|&x| Activation::Tanh.df(x, x.tanh()))
        .fold(0.0f32, f32::max);
    assert!((max_tanh - 1.0).abs() < 1e-6);
}

#[test]
fn sigmoid_is_finite_for_huge_inputs() {
    assert_eq!(sigmoid(-1000.0), 0.0);
    assert_eq!(sigmoid(1000.0), 1.0);
    let layer_out = ActivationLayer::new(Activation::Sigmoid)
        .forward(&array![-1e4f32, 1e4].into_dyn(), Mode::Eval);
    assert!(layer_out.iter().all(|v| v.is_finite()));
}

// ANCHOR: usage_stable_ce
/// Cross-entropy of logits `[1000, 0, -1000]` with label 0, naive and stable.
fn ce_with_huge_logits() -> (f32, f32) {
    let z = array![[1000.0f32, 0.0, -1000.0]].into_dyn();
    (
        softmax_cross_entropy_naive(&z, &[0]),
        softmax_cross_entropy(&z, &[0]).0,
    )
}
// ANCHOR_END: usage_stable_ce

#[test]
fn naive_cross_entropy_overflows_stable_does_not() {
    let (naive, stable) = ce_with_huge_logits();
    assert!(!naive.is_finite(), "naive = {naive}");
    assert!(
        stable.is_finite() && stable.abs() < 1e-6,
        "stable = {stable}"
    );
}

#[test]
fn logsumexp_shifts_exactly() {
    let z = array![[1.0f32, 2.0, 3.0]].into_dyn();
    let shifted = &z + 500.0;
    let (a, b) = (logsumexp(&z)[0], logsumexp(&shifted)[0]);
    assert!((b - a - 500.0).abs() < 1e-9);
}

#[test]
fn softmax_ce_gradient_is_probabilities_minus_one_hot() {
    let z = array![[2.0f32, 1.0, 0.1], [0.0, 0.0, 0.0]].into_dyn();
    let (_, g) = softmax_cross_entropy(&z, &[0, 2]);
    let s = dlbook::nn::activation::softmax(&z);
    let mut want = s / 2.0;
    want[[0, 0]] -= 0.5;
    want[[1, 2]] -= 0.5;
    assert!((&g - &want).iter().all(|d| d.abs() < 1e-7));
    // Each row of the gradient sums to zero.
    assert!(g.sum_axis(ndarray::Axis(1)).iter().all(|s| s.abs() < 1e-7));
}

#[test]
fn bce_from_logits_is_stable_and_correct() {
    let z = array![[-200.0f32, 0.0, 200.0]].into_dyn();
    let t = array![[1.0f32, 1.0, 0.0]].into_dyn();
    let (l, g) = bce_with_logits(&z, &t);
    // Two terms of 200 each and one of log 2, averaged over 3.
    assert!(
        (f64::from(l) - (400.0 + 2f64.ln()) / 3.0).abs() < 1e-3,
        "loss {l}"
    );
    assert!(g.iter().all(|v| v.is_finite()));
}

#[test]
fn mse_of_a_known_pair() {
    let (l, g) = mse(
        &array![1.0f32, 3.0].into_dyn(),
        &array![0.0f32, 1.0].into_dyn(),
    );
    assert!((l - 2.5).abs() < 1e-7);
    assert_eq!(g, array![1.0f32, 2.0].into_dyn());
}

#[test]
#[should_panic(expected = "logits [2, 3] need shape (n, c) with n = 3 labels")]
fn cross_entropy_panics_naming_the_shapes() {
    let _ = softmax_cross_entropy(&ArrayD::zeros(vec![2, 3]), &[0, 1, 2]);
}
