//! Chapter 6.1, the mobile building blocks: grouped and depthwise convolution, "SAME"
//! padding, ReLU6, batch norm in inference mode and its folding, and the MBConv block,
//! every gradient checked three ways (manual backward, finite differences, candle
//! autograd in `F64`) over three seeds; the counts of EfficientNet-Lite0.
//!
//! Tolerances, as in chapter 4: manual (`f32`) vs candle (`F64`) within `1e-5`; anything
//! involving `f32` finite differences (step `h = 1e-2`) within `1e-3`; two from-scratch
//! computations of the same `f32` sums in another order within `1e-5`; a folded layer
//! against the convolution and batch norm it replaces within `1e-5` (relative, the
//! rounding of the rescaled weights).

use candle_core::{DType, Device, Var};
use candle_nn::VarBuilder;
use dlbook::bench::depthwise::{self, DepthwiseConfig};
use dlbook::cnn::candle_twin;
use dlbook::cnn::conv::conv2d_direct;
use dlbook::cnn::depthwise::{
    grouped_conv2d_direct, grouped_conv2d_direct_backward, grouped_conv2d_im2col,
    grouped_conv2d_im2col_backward,
};
use dlbook::cnn::pad::same_padding;
use dlbook::cnn::{out_size, BatchNorm2d, Conv2d, GroupedConv2d, ZeroPad2d};
use dlbook::data::DataDir;
use dlbook::experiments;
use dlbook::models::candle_blocks;
use dlbook::models::candle_mbconv::{torch_name, varmap_from_block, CandleMbConv};
use dlbook::models::count::{count, totals};
use dlbook::models::mbconv::{lite0_blocks, lite0_spec, MbConv, MbConvConfig, BN_EPS};
use dlbook::nn::candle_twin::{to_array, to_tensor};
use dlbook::nn::gradcheck::{
    manual_grads, max_rel_error, numeric_grads, rel_error, Grads,
};
use dlbook::nn::{Activation, ActivationLayer, Layer, Mode, Module, Param};
use ndarray::{Array1, ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Finite-difference step for the `f32` layers.
const H: f32 = 1e-2;

/// Finite-difference step for the whole MBConv block, checked with the identity in place
/// of ReLU6: the block is then linear in its input and in each single parameter (every
/// weight, $\gamma$ and $\beta$ enters one product of the chain once), so the central
/// difference has no truncation error and a large step shrinks the `f32` rounding of the
/// three stacked convolutions. (With tanh and `H`, that rounding and tanh's curvature
/// leave about `1e-3` on the smallest gradients, those of the first batch norm.) The
/// activations themselves are checked on their own, and the block with ReLU6 against
/// candle.
const H_BLOCK: f32 = 0.1;

/// Seeds of every three-way check.
const SEEDS: [u64; 3] = [0, 1, 2];

fn randn(shape: &[usize], rng: &mut ChaCha8Rng) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(shape), |_| StandardNormal.sample(rng))
}

fn f64v(a: &ArrayD<f32>) -> ArrayD<f64> {
    a.mapv(f64::from)
}

fn assert_three_ways(who: &str, (a, b, c): (f64, f64, f64)) {
    eprintln!("{who}: manual-fd {a:e}, manual-candle {b:e}, fd-candle {c:e}");
    assert!(b < 1e-5, "{who}: manual vs candle {b:e}");
    assert!(a < 1e-3, "{who}: manual vs finite differences {a:e}");
    assert!(c < 1e-3, "{who}: finite differences vs candle {c:e}");
}

/// The worst of two `(manual-fd, manual-candle, fd-candle)` triples.
fn worst(
    acc: (f64, f64, f64),
    manual: &Grads,
    numeric: &Grads,
    candle: &Grads,
) -> (f64, f64, f64) {
    (
        acc.0.max(max_rel_error(manual, numeric)),
        acc.1.max(max_rel_error(manual, candle)),
        acc.2.max(max_rel_error(numeric, candle)),
    )
}

/// A layer run in evaluation mode whatever mode it is asked for: the gradient checks
/// call `forward` in training mode, and batch norm in inference is what is checked here.
struct Eval<L>(L);

impl<L: Layer> Module for Eval<L> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.0.visit_params(prefix, f);
    }
}

impl<L: Layer> Layer for Eval<L> {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        self.0.forward(x, Mode::Eval)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.0.backward(dy)
    }
}

/// A grouped-convolution case: `(c_in, c_out, groups, h, w, (kh, kw), stride,
/// padding, bias)`.
type Case = (
    usize,
    usize,
    usize,
    usize,
    usize,
    (usize, usize),
    usize,
    usize,
    bool,
);

/// Depthwise (3x3 and 5x5, strides 1 and 2, with and without padding, inputs the
/// stride does not divide), depthwise with two outputs per channel, two and three
/// groups, one group, 1x1 kernels, a rectangular kernel.
const CASES: [Case; 9] = [
    (3, 3, 3, 6, 6, (3, 3), 1, 1, false),
    (4, 4, 4, 9, 8, (5, 5), 2, 0, false),
    (2, 2, 2, 7, 7, (5, 5), 1, 2, true),
    (3, 3, 3, 8, 7, (3, 3), 2, 1, true),
    (2, 4, 2, 5, 6, (3, 3), 1, 1, true),
    (4, 6, 2, 6, 5, (3, 3), 2, 1, true),
    (6, 3, 3, 5, 5, (1, 1), 1, 0, false),
    (3, 2, 1, 6, 6, (3, 2), 1, 1, true),
    (4, 8, 2, 4, 4, (1, 1), 1, 0, true),
];

/// A seeded layer, input and output weights `r` for one case (batch of 2).
fn grouped_case(case: Case, seed: u64) -> (GroupedConv2d, ArrayD<f32>, ArrayD<f32>) {
    let (ci, co, g, h, w, k, s, p, bias) = case;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut layer = GroupedConv2d::new(ci, co, k, s, p, g, bias, &mut rng);
    if let Some(b) = &mut layer.bias {
        b.value = randn(&[co], &mut rng);
    }
    let x = randn(&[2, ci, h, w], &mut rng);
    let y = layer.forward(&x, Mode::Eval);
    let r = randn(y.shape(), &mut rng);
    (layer, x, r)
}

// ANCHOR: grouped_layer_vs_loops
/// The largest relative disagreement between the fast [`GroupedConv2d`] (plane loops or
/// im2col + GEMM) and the direct loops over [`CASES`], for the output and the gradients
/// `dx`, `dw` (and `db`).
fn grouped_layer_vs_loops() -> f64 {
    let mut e = 0.0f64;
    for (k, &case) in CASES.iter().enumerate() {
        let (mut layer, x, r) = grouped_case(case, 10 + k as u64);
        let y = layer.forward(&x, Mode::Train);
        layer.zero_grad();
        let dx = layer.backward(&r);
        let x4 = x.view().into_dimensionality().unwrap();
        let r4 = r.view().into_dimensionality().unwrap();
        let (w, b) = (layer.w(), layer.b());
        let (s, p, g) = (layer.stride, layer.padding, layer.groups);
        let y_ref = grouped_conv2d_direct(&x4, &w, &b.view(), s, p, g).into_dyn();
        let (dx_ref, dw_ref, db_ref) =
            grouped_conv2d_direct_backward(&x4, &w, &r4, s, p, g);
        e = e
            .max(rel_error(&f64v(&y), &f64v(&y_ref)))
            .max(rel_error(&f64v(&dx), &f64v(&dx_ref.into_dyn())))
            .max(rel_error(
                &f64v(&layer.weight.grad),
                &f64v(&dw_ref.into_dyn()),
            ));
        if let Some(bias) = &layer.bias {
            e = e.max(rel_error(&f64v(&bias.grad), &f64v(&db_ref.into_dyn())));
        }
    }
    e
}
// ANCHOR_END: grouped_layer_vs_loops

#[test]
fn grouped_conv_layer_computes_the_direct_loops() {
    let e = grouped_layer_vs_loops();
    eprintln!("grouped layer vs loops: {e:e}");
    assert!(e < 1e-5, "grouped layer vs loops: {e:e}");
}

/// The im2col-per-group baseline of the benchmark computes the same convolution.
#[test]
fn grouped_im2col_matches_the_loops() {
    for (k, &case) in CASES.iter().enumerate() {
        let (layer, x, r) = grouped_case(case, 30 + k as u64);
        let x4 = x.view().into_dimensionality().unwrap();
        let r4 = r.view().into_dimensionality().unwrap();
        let (w, b) = (layer.w(), layer.b());
        let (s, p, g) = (layer.stride, layer.padding, layer.groups);
        let y = grouped_conv2d_im2col(&x4, &w, &b.view(), s, p, g);
        let y_ref = grouped_conv2d_direct(&x4, &w, &b.view(), s, p, g);
        let grads = grouped_conv2d_im2col_backward(&x4, &w, &r4, s, p, g);
        let refs = grouped_conv2d_direct_backward(&x4, &w, &r4, s, p, g);
        let e = |a: ndarray::ArrayD<f32>, b: ndarray::ArrayD<f32>| {
            rel_error(&f64v(&a), &f64v(&b))
        };
        let worst = e(y.into_dyn(), y_ref.into_dyn())
            .max(e(grads.0.into_dyn(), refs.0.into_dyn()))
            .max(e(grads.1.into_dyn(), refs.1.into_dyn()))
            .max(e(grads.2.into_dyn(), refs.2.into_dyn()));
        assert!(worst < 1e-5, "{case:?}: {worst:e}");
    }
}

/// The quick benchmark run measures every implementation (the timings themselves are
/// never asserted).
#[test]
fn the_depthwise_benchmark_times_three_implementations() {
    let r = depthwise::run(&DepthwiseConfig::quick(), "depthwise").unwrap();
    let t = &r.tables[0];
    assert_eq!(t.rows.len(), 9);
    for row in &t.rows {
        assert!(row[1].number().unwrap() > 0.0, "{:?}", row[0]);
    }
}

/// The outputs and gradients of `layer` on `x`, `r`, computed on `threads` threads.
fn on_threads(
    layer: &GroupedConv2d,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
    threads: usize,
) -> Vec<ArrayD<f32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut layer = layer.clone();
        layer.zero_grad();
        let y = layer.forward(x, Mode::Train);
        let dx = layer.backward(r);
        let mut out = vec![y, dx];
        layer.visit_params("", &mut |_, p| out.push(p.grad.clone()));
        out
    })
}

/// Every path (depthwise planes, grouped and one-group products, one image or several)
/// gives the same bits on one thread and on two, so results made with it do not depend
/// on the machine's thread count.
#[test]
fn grouped_conv_is_bitwise_identical_on_one_and_two_threads() {
    let mut rng = ChaCha8Rng::seed_from_u64(25);
    for (n, ci, co, g, k) in [
        (1, 64, 128, 1, 1),
        (3, 8, 8, 8, 5),
        (2, 8, 12, 2, 3),
        (1, 32, 64, 1, 3),
    ] {
        let mut layer = GroupedConv2d::new(ci, co, (k, k), 1, k / 2, g, true, &mut rng);
        let x = randn(&[n, ci, 20, 20], &mut rng);
        let r = randn(layer.forward(&x, Mode::Eval).shape(), &mut rng);
        assert_eq!(
            on_threads(&layer, &x, &r, 1),
            on_threads(&layer, &x, &r, 2),
            "{n} images, {ci} -> {co} in {g} groups"
        );
    }
}

#[test]
fn one_group_is_the_ordinary_convolution() {
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    let x = randn(&[2, 3, 7, 6], &mut rng);
    let w = randn(&[4, 3, 3, 3], &mut rng);
    let b = randn(&[4], &mut rng);
    let (x4, w4) = (
        x.view().into_dimensionality().unwrap(),
        w.view().into_dimensionality().unwrap(),
    );
    let b1 = b.view().into_dimensionality().unwrap();
    let ours = grouped_conv2d_direct(&x4, &w4, &b1, 2, 1, 1);
    let plain = conv2d_direct(&x4, &w4, &b1, 2, 1);
    assert_eq!(ours, plain, "the same sums in the same order");
}

#[test]
fn depthwise_is_one_filter_per_channel() {
    // Channel c of a depthwise output depends on channel c of the input only.
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut layer = GroupedConv2d::depthwise(4, 3, 1, 1, &mut rng);
    let x = randn(&[1, 4, 5, 5], &mut rng);
    let y = layer.forward(&x, Mode::Eval);
    let mut x2 = x.clone();
    x2.slice_mut(ndarray::s![.., 2, .., ..]).fill(0.0);
    let y2 = layer.forward(&x2, Mode::Eval);
    for c in 0..4 {
        let same =
            y.slice(ndarray::s![.., c, .., ..]) == y2.slice(ndarray::s![.., c, .., ..]);
        assert_eq!(same, c != 2, "channel {c}");
    }
}

// ANCHOR: grouped_three_ways
/// The worst three-way errors of the [`GroupedConv2d`] gradients (input, weight, bias)
/// over [`CASES`] and three seeds.
fn grouped_three_ways() -> (f64, f64, f64) {
    let mut acc = (0.0, 0.0, 0.0);
    for seed in SEEDS {
        for (k, &case) in CASES.iter().enumerate() {
            let (mut layer, x, r) = grouped_case(case, 100 * seed + k as u64);
            let manual = manual_grads(&mut layer, &x, &r);
            let numeric = numeric_grads(&mut layer, &x, &r, H);
            let candle =
                candle_twin::grouped_conv2d_grads(&layer, &x, &r).expect("candle");
            acc = worst(acc, &manual, &numeric, &candle);
        }
    }
    acc
}
// ANCHOR_END: grouped_three_ways

#[test]
fn grouped_conv_gradients_agree_three_ways() {
    assert_three_ways("GroupedConv2d", grouped_three_ways());
}

#[test]
fn grouped_conv_forward_matches_candle() {
    for (k, &case) in CASES.iter().enumerate() {
        let (mut layer, x, _) = grouped_case(case, 300 + k as u64);
        let ours = f64v(&layer.forward(&x, Mode::Eval));
        let theirs =
            candle_twin::grouped_conv2d_forward(&layer, &x).expect("candle runs");
        let e = rel_error(&ours, &theirs);
        assert!(e < 1e-5, "{case:?}: {e:e}");
    }
}

#[test]
fn a_bias_free_conv_has_no_bias_parameter() {
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let mut dw = GroupedConv2d::depthwise(96, 5, 2, 0, &mut rng);
    let mut names = vec![];
    dw.visit_params("_depthwise_conv", &mut |n, _| names.push(n.to_string()));
    assert_eq!(names, ["_depthwise_conv.weight"]);
    // PyTorch: Conv2d(96, 96, 5, groups=96, bias=False) has 96 * 1 * 5 * 5 weights.
    assert_eq!(dw.n_params(), 96 * 25);
    let mut biased = GroupedConv2d::new(8, 4, (3, 3), 1, 1, 2, true, &mut rng);
    assert_eq!(biased.n_params(), 4 * 4 * 9 + 4);
}

#[test]
#[should_panic(
    expected = "grouped conv2d: input [1, 4, 5, 5], weight [6, 3, 3, 3] and bias (6,) do not fit 2 groups"
)]
fn grouped_mismatch_panics_naming_shapes() {
    let x = ndarray::Array4::<f32>::zeros((1, 4, 5, 5));
    let w = ndarray::Array4::<f32>::zeros((6, 3, 3, 3));
    let b = Array1::<f32>::zeros(6);
    grouped_conv2d_direct(&x.view(), &w.view(), &b.view(), 1, 0, 2);
}

#[test]
#[should_panic(
    expected = "GroupedConv2d::forward: expected input (n, 6, h, w), got [1, 4, 5, 5]"
)]
fn grouped_layer_wrong_channels_panics_naming_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut layer = GroupedConv2d::depthwise(6, 3, 1, 1, &mut rng);
    layer.forward(&ArrayD::zeros(IxDyn(&[1, 4, 5, 5])), Mode::Eval);
}

/// An axis length, a kernel side and a stride.
type Nks = (usize, usize, usize);

// ANCHOR: same_padding_cases
/// "SAME" padding `(before, after)` for `(n, k, s)`: the cases EfficientNet-Lite0 meets
/// at 224 x 224, and an odd input.
fn same_padding_cases() -> Vec<(Nks, (usize, usize))> {
    [
        (224, 3, 2),
        (112, 3, 2),
        (56, 5, 2),
        (28, 3, 2),
        (14, 5, 2),
        (113, 3, 2),
        (14, 5, 1),
    ]
    .into_iter()
    .map(|(n, k, s)| ((n, k, s), same_padding(n, k, s)))
    .collect()
}
// ANCHOR_END: same_padding_cases

/// Stride-2 "SAME" padding puts the extra zero after (bottom, right): one zero after a
/// 3x3 window, one before and two after a 5x5 one, on even inputs.
#[test]
fn same_padding_pads_more_after_with_stride_two() {
    for ((n, k, s), (before, after)) in same_padding_cases() {
        let want = match (n % 2, k, s) {
            (0, 3, 2) => (0, 1),
            (0, 5, 2) => (1, 2),
            (1, 3, 2) => (1, 1),
            (_, 5, 1) => (2, 2),
            _ => unreachable!("a case without its expectation"),
        };
        assert_eq!((before, after), want, "n {n}, k {k}, s {s}");
    }
}

/// For every input size, kernel and stride: the output has ⌈n/s⌉ positions, and the
/// padding is the least that gives them, split with the smaller half before.
#[test]
fn same_padding_gives_ceil_n_over_s_outputs() {
    for n in 1..40 {
        for k in 1..8 {
            for s in 1..4 {
                let (b, a) = same_padding(n, k, s);
                assert!(b <= a && a <= b + 1, "n {n} k {k} s {s}: ({b}, {a})");
                if n + b + a >= k {
                    assert_eq!(
                        out_size(n + b + a, k, s, 0),
                        n.div_ceil(s),
                        "n {n} k {k} s {s}"
                    );
                }
                if b + a > 0 {
                    // One zero less would lose the last output.
                    assert!(
                        n + b + a - 1 < (n.div_ceil(s) - 1) * s + k,
                        "n {n} k {k} s {s}"
                    );
                }
            }
        }
    }
}

#[test]
fn zero_pad_gradients_agree_three_ways() {
    let mut acc = (0.0, 0.0, 0.0);
    for seed in SEEDS {
        let mut rng = ChaCha8Rng::seed_from_u64(30 + seed);
        let mut pad = ZeroPad2d::new(seed as usize, 1, 2, seed as usize % 2);
        let x = randn(&[2, 3, 4, 5], &mut rng);
        let r = randn(pad.forward(&x, Mode::Eval).shape(), &mut rng);
        let manual = manual_grads(&mut pad, &x, &r);
        let numeric = numeric_grads(&mut pad, &x, &r, H);
        let candle = candle_twin::zero_pad_grads(&pad, &x, &r).expect("candle");
        acc = worst(acc, &manual, &numeric, &candle);
    }
    assert_three_ways("ZeroPad2d", acc);
}

/// Inputs spread over `[-9, 9]`, none within `0.1` of the kinks of ReLU6 at 0 and 6.
fn relu6_input(shape: &[usize], rng: &mut ChaCha8Rng) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(shape), |_| loop {
        let v: f32 = rng.random_range(-9.0..9.0);
        if v.abs() > 0.1 && (v - 6.0).abs() > 0.1 {
            break v;
        }
    })
}

#[test]
fn relu6_gradients_agree_three_ways() {
    let mut acc = (0.0, 0.0, 0.0);
    for seed in SEEDS {
        let mut rng = ChaCha8Rng::seed_from_u64(40 + seed);
        let x = relu6_input(&[3, 4, 5, 5], &mut rng);
        let r = randn(x.shape(), &mut rng);
        let mut layer = ActivationLayer::new(Activation::Relu6);
        let manual = manual_grads(&mut layer, &x, &r);
        let numeric = numeric_grads(&mut layer, &x, &r, H);
        let candle = candle_twin::relu6_grads(&x, &r).expect("candle");
        acc = worst(acc, &manual, &numeric, &candle);
    }
    assert_three_ways("ReLU6", acc);
}

/// ReLU6 is ReLU capped at 6: the identity on `[0, 6]`, zero below, six above, with
/// derivative one strictly inside and zero outside.
#[test]
fn relu6_is_relu_capped_at_six() {
    let f = Activation::Relu6;
    for (x, y, d) in [
        (-3.0, 0.0, 0.0),
        (0.5, 0.5, 1.0),
        (5.9, 5.9, 1.0),
        (7.0, 6.0, 0.0),
    ] {
        assert_eq!(f.f(x), y, "ReLU6({x})");
        assert_eq!(f.df(x, f.f(x)), d, "ReLU6'({x})");
    }
    assert!(f.df_from_output(), "0 < y < 6 exactly when 0 < x < 6");
}

/// A batch norm over `c` channels with $\epsilon = 10^{-3}$ and random $\gamma$ (in
/// `[0.5, 1.5]`), $\beta$ and running statistics (variances in `[0.5, 2]`).
fn random_bn(c: usize, rng: &mut ChaCha8Rng) -> BatchNorm2d {
    let mut bn = BatchNorm2d::with_eps(c, BN_EPS);
    bn.inner.gamma.value =
        ArrayD::from_shape_fn(IxDyn(&[c]), |_| rng.random_range(0.5..1.5));
    bn.inner.beta.value = randn(&[c], rng);
    bn.inner.running_mean = Array1::from_shape_fn(c, |_| rng.random_range(-1.0..1.0));
    bn.inner.running_var = Array1::from_shape_fn(c, |_| rng.random_range(0.5..2.0));
    bn
}

// ANCHOR: bn_eval_three_ways
/// The worst three-way errors of batch norm's gradients (input, $\gamma$, $\beta$) in
/// evaluation mode, $\epsilon = 10^{-3}$, random running statistics, three seeds.
fn bn_eval_three_ways() -> (f64, f64, f64) {
    let mut acc = (0.0, 0.0, 0.0);
    for seed in SEEDS {
        let mut rng = ChaCha8Rng::seed_from_u64(50 + seed);
        let mut bn = Eval(random_bn(4, &mut rng));
        let x = randn(&[3, 4, 3, 5], &mut rng);
        let r = randn(x.shape(), &mut rng);
        let manual = manual_grads(&mut bn, &x, &r);
        let numeric = numeric_grads(&mut bn, &x, &r, H);
        let candle = {
            let g = Var::from_tensor(
                &to_tensor(&bn.0.inner.gamma.value, DType::F64).unwrap(),
            )
            .unwrap();
            let b =
                Var::from_tensor(&to_tensor(&bn.0.inner.beta.value, DType::F64).unwrap())
                    .unwrap();
            let xv = Var::from_tensor(&to_tensor(&x, DType::F64).unwrap()).unwrap();
            let y = candle_blocks::batchnorm2d(&bn.0, xv.as_tensor(), &g, &b, Mode::Eval)
                .unwrap();
            let loss = (y * to_tensor(&r, DType::F64).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            let get = |v: &Var| to_array(grads.get(v).unwrap()).unwrap();
            Grads {
                dx: get(&xv),
                params: vec![("gamma".into(), get(&g)), ("beta".into(), get(&b))],
            }
        };
        acc = worst(acc, &manual, &numeric, &candle);
    }
    acc
}
// ANCHOR_END: bn_eval_three_ways

#[test]
fn batchnorm_eval_gradients_agree_three_ways() {
    assert_three_ways("BatchNorm2d (eval, eps 1e-3)", bn_eval_three_ways());
}

// ANCHOR: fold_error
/// The largest relative difference between a convolution followed by batch norm (in
/// evaluation mode) and the single folded convolution, over a 3x3 and a 1x1
/// [`Conv2d`] and a depthwise [`GroupedConv2d`], three seeds.
fn fold_error() -> f64 {
    let mut e = 0.0f64;
    for seed in SEEDS {
        let mut rng = ChaCha8Rng::seed_from_u64(60 + seed);
        let x = randn(&[2, 6, 8, 8], &mut rng);
        for k in [3, 1] {
            let mut conv = Conv2d::new(6, 5, (k, k), 1, k / 2, &mut rng);
            conv.bias.value = randn(&[5], &mut rng);
            let mut bn = random_bn(5, &mut rng);
            let before = bn.forward(&conv.forward(&x, Mode::Eval), Mode::Eval);
            bn.fold_into_conv2d(&mut conv);
            e = e.max(rel_error(
                &f64v(&before),
                &f64v(&conv.forward(&x, Mode::Eval)),
            ));
        }
        let mut dw = GroupedConv2d::depthwise(6, 5, 2, 2, &mut rng);
        let mut bn = random_bn(6, &mut rng);
        let before = bn.forward(&dw.forward(&x, Mode::Eval), Mode::Eval);
        dw.fold_batchnorm(&bn);
        e = e.max(rel_error(
            &f64v(&before),
            &f64v(&dw.forward(&x, Mode::Eval)),
        ));
    }
    e
}
// ANCHOR_END: fold_error

#[test]
fn folding_batchnorm_into_the_conv_keeps_the_outputs() {
    let e = fold_error();
    eprintln!("folded vs conv + BN: {e:e}");
    assert!(e < 1e-5, "folded vs conv + BN: {e:e}");
}

#[test]
fn folding_gives_a_bias_free_conv_its_bias() {
    let mut rng = ChaCha8Rng::seed_from_u64(61);
    let mut dw = GroupedConv2d::depthwise(3, 3, 1, 1, &mut rng);
    assert!(dw.bias.is_none());
    dw.fold_batchnorm(&random_bn(3, &mut rng));
    assert_eq!(dw.n_params(), 3 * 9 + 3);
}

/// Small MBConv shapes: no expansion with the skip, expansion with stride 2 and a 5x5
/// kernel, expansion with the skip, stride 2 on an odd input.
const BLOCKS: [(MbConvConfig, usize); 4] = [
    (cfg(1, 3, 1, 3, 3), 6),
    (cfg(3, 5, 2, 2, 3), 8),
    (cfg(3, 3, 1, 2, 2), 5),
    (cfg(2, 3, 2, 3, 4), 7),
];

const fn cfg(e: usize, k: usize, s: usize, c_in: usize, c_out: usize) -> MbConvConfig {
    MbConvConfig {
        expand_ratio: e,
        kernel: k,
        stride: s,
        c_in,
        c_out,
    }
}

/// A block with random batch-norm parameters and statistics, its input `(2, c_in, n,
/// n)` and output weights `r`.
fn block_case(
    config: MbConvConfig,
    n: usize,
    seed: u64,
) -> (MbConv, ArrayD<f32>, ArrayD<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut block = MbConv::new(config, &mut rng);
    let mut bns = vec![];
    block.visit_buffers("", &mut |name, _| bns.push(name.to_string()));
    for part in [
        block.expand.as_mut(),
        Some(&mut block.depthwise),
        Some(&mut block.project),
    ]
    .into_iter()
    .flatten()
    {
        let c = part.conv.c_out();
        part.bn = Some(random_bn(c, &mut rng));
    }
    let x = randn(&[2, config.c_in, n, n], &mut rng);
    let y = block.forward(&x, Mode::Eval);
    let r = randn(y.shape(), &mut rng);
    (block, x, r)
}

/// Candle's gradients of $\langle \mathrm{block}(x), r\rangle$ from the twin built on
/// the block's weights by PyTorch name, named like the block's parameters.
fn candle_block_grads(
    block: &mut MbConv,
    kind: Activation,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> (ArrayD<f64>, Grads) {
    let map = varmap_from_block(block, DType::F64).unwrap();
    let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
    let twin = CandleMbConv::new(block.config, vb)
        .unwrap()
        .with_activation(kind);
    let xv = Var::from_tensor(&to_tensor(x, DType::F64).unwrap()).unwrap();
    let y = twin.forward(xv.as_tensor()).unwrap();
    let loss = (&y * to_tensor(r, DType::F64).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let vars = map.data().lock().unwrap();
    let mut params = vec![];
    block.visit_params("", &mut |name, _| {
        let v = &vars[&torch_name(name)];
        params.push((name.to_string(), to_array(grads.get(v).unwrap()).unwrap()));
    });
    let dx = to_array(grads.get(&xv).unwrap()).unwrap();
    (to_array(&y).unwrap(), Grads { dx, params })
}

// ANCHOR: mbconv_three_ways
/// The worst three-way errors of the MBConv block's gradients (input and every
/// parameter) in evaluation mode over [`BLOCKS`] and three seeds, with the identity in
/// place of ReLU6 (see [`H_BLOCK`]).
fn mbconv_three_ways() -> (f64, f64, f64) {
    let mut acc = (0.0, 0.0, 0.0);
    for seed in SEEDS {
        for (k, &(config, n)) in BLOCKS.iter().enumerate() {
            let (block, x, r) = block_case(config, n, 70 + 10 * seed + k as u64);
            let mut block = Eval(block.with_activation(Activation::Identity));
            let manual = manual_grads(&mut block, &x, &r);
            let numeric = numeric_grads(&mut block, &x, &r, H_BLOCK);
            let (_, candle) =
                candle_block_grads(&mut block.0, Activation::Identity, &x, &r);
            acc = worst(acc, &manual, &numeric, &candle);
        }
    }
    acc
}
// ANCHOR_END: mbconv_three_ways

#[test]
fn mbconv_gradients_agree_three_ways() {
    assert_three_ways("MbConv (linear, eval)", mbconv_three_ways());
}

// ANCHOR: mbconv_vs_candle
/// The worst relative differences `(outputs, gradients)` between the from-scratch block
/// with ReLU6 and its candle twin built from the same weights by PyTorch name.
fn mbconv_vs_candle() -> (f64, f64) {
    let (mut ey, mut eg) = (0.0f64, 0.0f64);
    for seed in SEEDS {
        for (k, &(config, n)) in BLOCKS.iter().enumerate() {
            let (block, x, r) = block_case(config, n, 90 + 10 * seed + k as u64);
            let mut block = Eval(block);
            let y = f64v(&block.forward(&x, Mode::Eval));
            let manual = manual_grads(&mut block, &x, &r);
            let (y_c, candle) =
                candle_block_grads(&mut block.0, Activation::Relu6, &x, &r);
            ey = ey.max(rel_error(&y, &y_c));
            eg = eg.max(max_rel_error(&manual, &candle));
        }
    }
    (ey, eg)
}
// ANCHOR_END: mbconv_vs_candle

#[test]
fn mbconv_with_relu6_matches_candle_twin() {
    let (ey, eg) = mbconv_vs_candle();
    eprintln!("MbConv vs candle: outputs {ey:e}, gradients {eg:e}");
    assert!(ey < 1e-5 && eg < 1e-5, "outputs {ey:e}, gradients {eg:e}");
}

#[test]
fn mbconv_fold_keeps_the_outputs() {
    let mut e = 0.0f64;
    for seed in SEEDS {
        for (k, &(config, n)) in BLOCKS.iter().enumerate() {
            let (mut block, x, _) = block_case(config, n, 110 + 10 * seed + k as u64);
            let before = block.forward(&x, Mode::Eval);
            block.fold_batchnorm();
            assert!(block.is_folded());
            let mut buffers = 0;
            block.visit_buffers("", &mut |_, _| buffers += 1);
            assert_eq!(buffers, 0, "no batch norm left");
            // Folded, the block is the same function in either mode.
            e = e
                .max(rel_error(
                    &f64v(&before),
                    &f64v(&block.forward(&x, Mode::Eval)),
                ))
                .max(rel_error(
                    &f64v(&before),
                    &f64v(&block.forward(&x, Mode::Train)),
                ));
        }
    }
    eprintln!("MbConv folded vs unfolded: {e:e}");
    assert!(e < 1e-5, "MbConv folded vs unfolded: {e:e}");
}

#[test]
fn mbconv_names_follow_the_pytorch_modules() {
    let mut rng = ChaCha8Rng::seed_from_u64(120);
    let mut block = MbConv::new(cfg(6, 5, 2, 16, 24), &mut rng);
    let mut names = vec![];
    block.visit_params("_blocks.3", &mut |n, p| {
        names.push((n.to_string(), p.value.shape().to_vec()))
    });
    let want: Vec<(String, Vec<usize>)> = [
        ("_expand_conv.weight", vec![96, 16, 1, 1]),
        ("_bn0.gamma", vec![96]),
        ("_bn0.beta", vec![96]),
        ("_depthwise_conv.weight", vec![96, 1, 5, 5]),
        ("_bn1.gamma", vec![96]),
        ("_bn1.beta", vec![96]),
        ("_project_conv.weight", vec![24, 96, 1, 1]),
        ("_bn2.gamma", vec![24]),
        ("_bn2.beta", vec![24]),
    ]
    .into_iter()
    .map(|(n, s)| (format!("_blocks.3.{n}"), s))
    .collect();
    assert_eq!(names, want);
    let mut buffers = vec![];
    block.visit_buffers("_blocks.3", &mut |n, _| buffers.push(torch_name(n)));
    assert_eq!(
        buffers[..2],
        ["_blocks.3._bn0.running_mean", "_blocks.3._bn0.running_var"]
    );
    assert_eq!(torch_name("_blocks.3._bn0.gamma"), "_blocks.3._bn0.weight");
    let mut plain = MbConv::new(cfg(1, 3, 1, 32, 16), &mut rng);
    let mut first = None;
    plain.visit_params("", &mut |n, _| {
        first.get_or_insert(n.to_string());
    });
    assert_eq!(
        first.as_deref(),
        Some("_depthwise_conv.weight"),
        "no expansion at e = 1"
    );
}

#[test]
fn mbconv_output_is_ceil_of_the_input_over_the_stride() {
    let mut rng = ChaCha8Rng::seed_from_u64(130);
    for (config, n) in [
        (cfg(6, 5, 2, 4, 6), 9),
        (cfg(6, 3, 2, 4, 6), 10),
        (cfg(6, 5, 1, 4, 4), 7),
    ] {
        let mut block = MbConv::new(config, &mut rng);
        let y = block.forward(&ArrayD::zeros(IxDyn(&[1, 4, n, n])), Mode::Eval);
        let m = n.div_ceil(config.stride);
        assert_eq!(y.shape(), [1, config.c_out, m, m], "{config:?} on {n}");
    }
}

// --- EfficientNet-Lite0, counted ---

/// The parameters of EfficientNet-Lite0 counted from the layers the book builds: the
/// 16 MBConv blocks (built), and the stem, head and classifier from their shapes.
fn lite0_built_params() -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(140);
    let blocks: usize = lite0_blocks()
        .into_iter()
        .map(|c| MbConv::new(c, &mut rng).n_params())
        .sum();
    let stem = 32 * 3 * 3 * 3 + 2 * 32;
    let head = 1280 * 320 + 2 * 1280;
    let fc = 1280 * 1000 + 1000;
    stem + blocks + head + fc
}

/// Multiply-adds of EfficientNet-Lite0 at 224 x 224, written out by hand from the stage
/// table: for each block, the expansion $C_i \cdot eC_i \cdot HW$, the depthwise
/// $eC_i k^2 H'W'$ and the projection $eC_i C_o H'W'$, with $H' = \lceil H/s \rceil$.
fn lite0_macs_by_hand() -> usize {
    let mut side = 112; // after the stem
    let mut macs = 32 * 3 * 9 * side * side;
    for b in lite0_blocks() {
        let hid = b.expand_ratio * b.c_in;
        if b.expand_ratio != 1 {
            macs += b.c_in * hid * side * side;
        }
        side = side.div_ceil(b.stride);
        macs += hid * b.kernel * b.kernel * side * side + hid * b.c_out * side * side;
    }
    macs + 320 * 1280 * side * side + 1280 * 1000
}

#[test]
fn lite0_has_its_published_size() {
    let (p, m) = totals(&count((3, 224, 224), &lite0_spec(false)));
    // The parameter count of PyTorch's EfficientNet-Lite0 (4.65 M, published).
    assert_eq!(p, 4_652_008);
    assert_eq!(p, lite0_built_params(), "description vs built blocks");
    assert_eq!(m, lite0_macs_by_hand(), "description vs formula");
    assert!(
        (m as f64 / 1e9 - 0.385).abs() < 0.0005,
        "published 0.385 G: {m}"
    );
}

/// The quick report of the experiment (cached once per process).
fn report() -> &'static dlbook::report::Report {
    experiments::quick("mobile_blocks", &DataDir::resolve(None)).unwrap()
}

fn fact(name: &str) -> f64 {
    report()
        .get_fact(name)
        .unwrap_or_else(|| panic!("no fact {name}"))
}

#[test]
fn the_block_table_totals_the_published_count() {
    let r = report();
    let blocks = r.tables.iter().find(|t| t.name == "blocks").unwrap();
    assert_eq!(blocks.rows.len(), 16 + 3, "stem, 16 blocks, head, total");
    let total = blocks.rows.last().unwrap();
    assert_eq!(total[3], "4,652,008".into());
    assert_eq!(r.facts["params"].value, "4,652,008".into());
}

/// Depthwise separable convolution costs $k^2 C + C C'$ per output pixel instead of
/// $k^2 C C'$: with full convolutions in place of the depthwise ones, Lite0 would need
/// many times the multiply-adds.
#[test]
fn standard_convolutions_would_cost_many_times_more() {
    let ratio = fact("standard_mac_ratio");
    assert!(ratio > 5.0, "standard / depthwise multiply-adds: {ratio}");
    let r = report();
    let blocks = r.tables.iter().find(|t| t.name == "blocks").unwrap();
    // Per block, the ratio grows with the width: every block gains at least 2x.
    for row in &blocks.rows[1..17] {
        let x = row[7].number().unwrap();
        assert!(x > 2.0, "{:?}: {x}", row[0]);
    }
}

/// The 1x1 convolutions do most of the work; the depthwise filters, which do all the
/// spatial filtering, cost a small share.
#[test]
fn pointwise_convolutions_do_most_of_the_work() {
    let pw = fact("pointwise_mac_share");
    let dw = fact("depthwise_mac_share");
    assert!(pw > 0.7, "1x1 share {pw}");
    assert!(dw < 0.15, "depthwise share {dw}");
}

/// The classifier holds over a quarter of the parameters but almost no compute.
#[test]
fn the_classifier_holds_a_quarter_of_the_weights() {
    let share = fact("classifier_param_share");
    assert!(share > 0.25 && share < 0.3, "classifier share {share}");
}
