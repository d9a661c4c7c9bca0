//! Chapter 4, convolution and pooling: the direct loops against im2col + GEMM, every
//! gradient checked three ways (manual backward, finite differences, candle autograd
//! in `F64`), the tie rule of max pooling and the shape errors.
//!
//! Tolerances: manual (`f32`) vs candle (`F64`) within `1e-5`; anything involving `f32`
//! finite differences (step `h = 1e-2`) within `1e-3`; manual vs `f64` finite differences
//! of an `f64` reference convolution (step `1e-6`) within `1e-5`; the two from-scratch
//! convolutions (the same `f32` sums in a different order) within `1e-5`.

use candle_core::{DType, Var, D};
use dlbook::cnn::candle_twin::{self, PoolKind};
use dlbook::cnn::conv::{conv2d_direct, conv2d_direct_backward};
use dlbook::cnn::im2col::{conv2d_im2col, conv2d_im2col_backward};
use dlbook::cnn::{AvgPool2d, Conv2d, Flatten, GlobalAvgPool, MaxPool2d};
use dlbook::nn::activation::{Activation, ActivationLayer};
use dlbook::nn::candle_twin::{to_array, to_tensor};
use dlbook::nn::gradcheck::Grads;
use dlbook::nn::gradcheck::{manual_grads, max_rel_error, numeric_grads, rel_error};
use dlbook::nn::linear::{Init, Linear};
use dlbook::nn::{Layer, Mode, Module, Sequential};
use ndarray::{Array1, Array4, ArrayD, IxDyn};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Finite-difference step for the `f32` layers.
const H: f32 = 1e-2;

fn randn(shape: &[usize], rng: &mut ChaCha8Rng) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(shape), |_| StandardNormal.sample(rng))
}

/// A tensor whose entries are pairwise at least `0.05` apart (a shuffled grid), so that
/// no finite-difference step of `h = 1e-2` changes which entry of a window is largest.
fn distinct(shape: &[usize], rng: &mut ChaCha8Rng) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|k| 0.05 * k as f32 - 0.025 * n as f32).collect();
    v.shuffle(rng);
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("sizes match")
}

fn f64v(a: &ArrayD<f32>) -> ArrayD<f64> {
    a.mapv(f64::from)
}

/// A convolution case: `(c_in, c_out, h, w, (kh, kw), stride, padding)`.
type Case = (usize, usize, usize, usize, (usize, usize), usize, usize);

/// Shapes, strides and paddings the checks sweep: square and rectangular kernels,
/// 1x1 kernels, strides 1 to 3, paddings 0 to 2, inputs the stride does not divide.
const CASES: [Case; 7] = [
    (1, 1, 5, 5, (3, 3), 1, 0),
    (2, 3, 7, 6, (3, 3), 1, 1),
    (3, 2, 8, 8, (3, 3), 2, 1),
    (2, 4, 9, 7, (2, 3), 2, 0),
    (1, 2, 6, 6, (5, 5), 3, 2),
    (2, 2, 5, 5, (1, 1), 1, 0),
    (3, 2, 6, 5, (4, 2), 1, 2),
];

/// A seeded layer, input and output weights `r` for one case (batch of 2).
fn conv_case(case: Case, seed: u64) -> (Conv2d, ArrayD<f32>, ArrayD<f32>) {
    let (ci, co, h, w, k, s, p) = case;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut layer = Conv2d::new(ci, co, k, s, p, &mut rng);
    // A non-zero bias, so its gradient path is exercised by the forward check too.
    layer.bias.value = randn(&[co], &mut rng);
    let x = randn(&[2, ci, h, w], &mut rng);
    let y = layer.forward(&x, Mode::Eval);
    let r = randn(y.shape(), &mut rng);
    (layer, x, r)
}

// ANCHOR: direct_vs_im2col
/// The largest relative disagreement between the direct loops and im2col + GEMM over
/// [`CASES`], for the output and the three gradients `dx`, `dw`, `db`.
fn direct_vs_im2col() -> f64 {
    let mut worst = 0.0f64;
    for (k, &case) in CASES.iter().enumerate() {
        let (layer, x, r) = conv_case(case, k as u64);
        let x4 = x.view().into_dimensionality().unwrap();
        let r4 = r.view().into_dimensionality().unwrap();
        let (w, b, s, p) = (layer.w(), layer.b(), layer.stride, layer.padding);
        let y_direct = conv2d_direct(&x4, &w, &b, s, p).into_dyn();
        let y_gemm = conv2d_im2col(&x4, &w, &b, s, p).into_dyn();
        let g_direct = conv2d_direct_backward(&x4, &w, &r4, s, p);
        let g_gemm = conv2d_im2col_backward(&x4, &w, &r4, s, p);
        worst = worst
            .max(rel_error(&f64v(&y_direct), &f64v(&y_gemm)))
            .max(rel_error(
                &f64v(&g_direct.0.into_dyn()),
                &f64v(&g_gemm.0.into_dyn()),
            ))
            .max(rel_error(
                &f64v(&g_direct.1.into_dyn()),
                &f64v(&g_gemm.1.into_dyn()),
            ))
            .max(rel_error(
                &f64v(&g_direct.2.into_dyn()),
                &f64v(&g_gemm.2.into_dyn()),
            ));
    }
    worst
}
// ANCHOR_END: direct_vs_im2col

#[test]
fn im2col_matches_direct_loops_forward_and_backward() {
    let e = direct_vs_im2col();
    eprintln!("direct vs im2col: {e:e}");
    assert!(e < 1e-5, "direct vs im2col: {e:e}");
}

#[test]
fn conv2d_layer_computes_the_im2col_function() {
    for (k, &case) in CASES.iter().enumerate() {
        let (mut layer, x, r) = conv_case(case, 100 + k as u64);
        let y = layer.forward(&x, Mode::Train);
        layer.zero_grad();
        let dx = layer.backward(&r);
        let x4 = x.view().into_dimensionality().unwrap();
        let r4 = r.view().into_dimensionality().unwrap();
        let (w, b, s, p) = (layer.w(), layer.b(), layer.stride, layer.padding);
        let y_ref = conv2d_direct(&x4, &w, &b, s, p).into_dyn();
        let (dx_ref, dw_ref, db_ref) = conv2d_direct_backward(&x4, &w, &r4, s, p);
        assert!(
            rel_error(&f64v(&y), &f64v(&y_ref)) < 1e-5,
            "{case:?}: forward"
        );
        assert!(rel_error(&f64v(&dx), &f64v(&dx_ref.into_dyn())) < 1e-5);
        assert!(rel_error(&f64v(&layer.weight.grad), &f64v(&dw_ref.into_dyn())) < 1e-5);
        assert!(rel_error(&f64v(&layer.bias.grad), &f64v(&db_ref.into_dyn())) < 1e-5);
    }
}

// ANCHOR: conv_three_ways
/// The worst `(manual vs finite differences, manual vs candle, finite differences vs
/// candle)` relative errors of the [`Conv2d`] gradients (input, weight, bias) over
/// [`CASES`].
fn conv_three_ways() -> (f64, f64, f64) {
    let (mut a, mut b, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for (k, &case) in CASES.iter().enumerate() {
        let (mut layer, x, r) = conv_case(case, 200 + k as u64);
        let manual = manual_grads(&mut layer, &x, &r);
        let numeric = numeric_grads(&mut layer, &x, &r, H);
        let candle = candle_twin::conv2d_grads(&layer, &x, &r).expect("candle runs");
        a = a.max(max_rel_error(&manual, &numeric));
        b = b.max(max_rel_error(&manual, &candle));
        c = c.max(max_rel_error(&numeric, &candle));
    }
    (a, b, c)
}
// ANCHOR_END: conv_three_ways

fn assert_three_ways(who: &str, (a, b, c): (f64, f64, f64)) {
    eprintln!("{who}: manual-fd {a:e}, manual-candle {b:e}, fd-candle {c:e}");
    assert!(b < 1e-5, "{who}: manual vs candle {b:e}");
    assert!(a < 1e-3, "{who}: manual vs finite differences {a:e}");
    assert!(c < 1e-3, "{who}: finite differences vs candle {c:e}");
}

#[test]
fn conv2d_gradients_agree_three_ways() {
    assert_three_ways("Conv2d", conv_three_ways());
}

#[test]
fn conv2d_forward_matches_candle() {
    for (k, &case) in CASES.iter().enumerate() {
        let (mut layer, x, _) = conv_case(case, 300 + k as u64);
        let ours = f64v(&layer.forward(&x, Mode::Eval));
        let theirs = candle_twin::conv2d_forward(&layer, &x).expect("candle runs");
        let e = rel_error(&ours, &theirs);
        assert!(e < 1e-5, "{case:?}: {e:e}");
    }
}

/// A pooling case: `(h, w, kernel, stride)`.
type PoolCase = (usize, usize, (usize, usize), (usize, usize));

/// Pooling cases: `(h, w, kernel, stride)`: non-overlapping, overlapping, rectangular,
/// and a stride that does not divide the input.
const POOLS: [PoolCase; 4] = [
    (6, 6, (2, 2), (2, 2)),
    (7, 7, (3, 3), (2, 2)),
    (5, 8, (2, 3), (1, 2)),
    (7, 5, (3, 2), (3, 2)),
];

// ANCHOR: pool_three_ways
/// The worst three-way errors of a pooling layer's input gradient over [`POOLS`], on
/// inputs with well-separated entries (see `distinct`).
fn pool_three_ways(kind: PoolKind) -> (f64, f64, f64) {
    let (mut a, mut b, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for (k, &(h, w, kernel, stride)) in POOLS.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(400 + k as u64);
        let x = distinct(&[2, 3, h, w], &mut rng);
        let mut layer: Box<dyn Layer> = match kind {
            PoolKind::Max => Box::new(MaxPool2d::new(kernel, stride)),
            PoolKind::Avg => Box::new(AvgPool2d::new(kernel, stride)),
        };
        let r = randn(layer.forward(&x, Mode::Eval).shape(), &mut rng);
        let manual = manual_grads(layer.as_mut(), &x, &r);
        let numeric = numeric_grads(layer.as_mut(), &x, &r, H);
        let candle = candle_twin::pool_grads(kind, kernel, stride, &x, &r).expect("runs");
        a = a.max(max_rel_error(&manual, &numeric));
        b = b.max(max_rel_error(&manual, &candle));
        c = c.max(max_rel_error(&numeric, &candle));
    }
    (a, b, c)
}
// ANCHOR_END: pool_three_ways

#[test]
fn max_pool_gradients_agree_three_ways() {
    assert_three_ways("MaxPool2d", pool_three_ways(PoolKind::Max));
}

#[test]
fn avg_pool_gradients_agree_three_ways() {
    assert_three_ways("AvgPool2d", pool_three_ways(PoolKind::Avg));
}

#[test]
fn global_avg_pool_and_flatten_gradients_agree_three_ways() {
    let mut rng = ChaCha8Rng::seed_from_u64(500);
    let x = randn(&[2, 3, 4, 5], &mut rng);
    let r = randn(&[2, 3], &mut rng);
    let mut gap = GlobalAvgPool::new();
    let manual = manual_grads(&mut gap, &x, &r);
    let numeric = numeric_grads(&mut gap, &x, &r, H);
    let candle = candle_twin::global_avg_pool_grads(&x, &r).expect("runs");
    assert_three_ways(
        "GlobalAvgPool",
        (
            max_rel_error(&manual, &numeric),
            max_rel_error(&manual, &candle),
            max_rel_error(&numeric, &candle),
        ),
    );
    let r = randn(&[2, 60], &mut rng);
    let mut flat = Flatten::new();
    let manual = manual_grads(&mut flat, &x, &r);
    let numeric = numeric_grads(&mut flat, &x, &r, H);
    let candle = candle_twin::flatten_grads(&x, &r).expect("runs");
    assert_three_ways(
        "Flatten",
        (
            max_rel_error(&manual, &numeric),
            max_rel_error(&manual, &candle),
            max_rel_error(&numeric, &candle),
        ),
    );
}

#[test]
fn pool_forwards_match_candle_builtins() {
    for (k, &(h, w, kernel, stride)) in POOLS.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(600 + k as u64);
        let x = randn(&[2, 3, h, w], &mut rng);
        let y_max = MaxPool2d::new(kernel, stride).forward(&x, Mode::Eval);
        let y_avg = AvgPool2d::new(kernel, stride).forward(&x, Mode::Eval);
        let r = randn(y_max.shape(), &mut rng);
        let (c_max, _) = candle_twin::max_pool_builtin(kernel, stride, &x, &r).unwrap();
        let (c_avg, _) = candle_twin::avg_pool_builtin(kernel, stride, &x, &r).unwrap();
        assert_eq!(
            rel_error(&f64v(&y_max), &c_max),
            0.0,
            "max {kernel:?} {stride:?}"
        );
        let e = rel_error(&f64v(&y_avg), &c_avg);
        assert!(e < 1e-6, "avg {kernel:?} {stride:?}: {e:e}");
    }
}

/// Candle 0.11's built-in pooling backward, measured against ours: average pooling
/// agrees; max pooling returns our gradient divided by the window size $k_h k_w$ (it
/// multiplies the routed gradient by the *fraction* of maxima in the window instead of
/// dividing by their count); both refuse overlapping windows. This is why the
/// three-way checks use [`candle_twin::pool_grads`].
#[test]
fn candle_builtin_max_pool_backward_is_scaled_by_one_over_the_window() {
    for (k, &(h, w, kernel, stride)) in [(6, 6, (2, 2), (2, 2)), (6, 4, (3, 2), (3, 2))]
        .iter()
        .enumerate()
    {
        let mut rng = ChaCha8Rng::seed_from_u64(700 + k as u64);
        let x = distinct(&[2, 3, h, w], &mut rng);
        let mut mp = MaxPool2d::new(kernel, stride);
        let r = randn(mp.forward(&x, Mode::Eval).shape(), &mut rng);
        let ours_max = f64v(&mp.backward(&r));
        let mut ap = AvgPool2d::new(kernel, stride);
        ap.forward(&x, Mode::Eval);
        let ours_avg = f64v(&ap.backward(&r));
        let (_, c_max) = candle_twin::max_pool_builtin(kernel, stride, &x, &r).unwrap();
        let (_, c_avg) = candle_twin::avg_pool_builtin(kernel, stride, &x, &r).unwrap();
        let window = (kernel.0 * kernel.1) as f64;
        let c_max = c_max.expect("stride == kernel has a backward");
        assert!(rel_error(&ours_avg, &c_avg.expect("backward")) < 1e-6);
        assert!(
            rel_error(&ours_max, &c_max) > 0.5,
            "{kernel:?}: candle is off"
        );
        let e = rel_error(&(&ours_max / window), &c_max);
        assert!(e < 1e-6, "{kernel:?}: candle = ours / (kh kw) up to {e:e}");
    }
    let x = randn(&[1, 1, 7, 7], &mut ChaCha8Rng::seed_from_u64(710));
    let r = ArrayD::zeros(IxDyn(&[1, 1, 3, 3]));
    let (_, c_max) = candle_twin::max_pool_builtin((3, 3), (2, 2), &x, &r).unwrap();
    let (_, c_avg) = candle_twin::avg_pool_builtin((3, 3), (2, 2), &x, &r).unwrap();
    assert!(
        c_max.is_err() && c_avg.is_err(),
        "overlapping windows: no backward"
    );
}

#[test]
fn max_pool_ties_route_to_the_first_maximum() {
    // Every window of a constant input is one big tie.
    let x = ArrayD::from_elem(IxDyn(&[1, 1, 4, 4]), 1.0f32);
    let mut pool = MaxPool2d::new((2, 2), (2, 2));
    let y = pool.forward(&x, Mode::Eval);
    let dx = pool.backward(&ArrayD::from_elem(y.raw_dim(), 1.0f32));
    for ((_, _, r, c), &g) in dx
        .view()
        .into_dimensionality::<ndarray::Ix4>()
        .unwrap()
        .indexed_iter()
    {
        let first = r % 2 == 0 && c % 2 == 0;
        assert_eq!(g, if first { 1.0 } else { 0.0 }, "at ({r}, {c})");
    }
}

#[test]
fn conv2d_gradients_accumulate() {
    let (mut layer, x, r) = conv_case(CASES[2], 800);
    layer.zero_grad();
    layer.forward(&x, Mode::Train);
    let dx1 = layer.backward(&r);
    let once = layer.weight.grad.clone();
    layer.forward(&x, Mode::Train);
    let dx2 = layer.backward(&r);
    assert_eq!(dx1, dx2, "dx does not accumulate");
    let e = rel_error(&f64v(&layer.weight.grad), &f64v(&(&once * 2.0)));
    assert!(e < 1e-6, "weight gradient accumulates: {e:e}");
}

#[test]
fn conv2d_he_init_has_the_fan_in_std() {
    let mut rng = ChaCha8Rng::seed_from_u64(900);
    let layer = Conv2d::new(16, 64, (3, 3), 1, 1, &mut rng);
    let w = &layer.weight.value;
    let std = (w.mapv(|v| v * v).sum() / w.len() as f32).sqrt();
    let want = (2.0f32 / (16.0 * 9.0)).sqrt();
    assert!((std / want - 1.0).abs() < 0.05, "std {std} vs {want}");
    assert_eq!(w.shape(), &[64, 16, 3, 3]);
    assert!(layer.bias.value.iter().all(|&b| b == 0.0));
}

#[test]
#[should_panic(
    expected = "Conv2d::forward: expected input (n, 3, h, w), got [2, 2, 5, 5]"
)]
fn conv2d_wrong_channels_panics_naming_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut layer = Conv2d::new(3, 4, (3, 3), 1, 0, &mut rng);
    layer.forward(&ArrayD::zeros(IxDyn(&[2, 2, 5, 5])), Mode::Eval);
}

#[test]
#[should_panic(
    expected = "Conv2d::backward: dy [2, 4, 4, 4] vs output shape (2, 4, 3, 3)"
)]
fn conv2d_wrong_dy_panics_naming_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut layer = Conv2d::new(3, 4, (3, 3), 1, 0, &mut rng);
    layer.forward(&ArrayD::zeros(IxDyn(&[2, 3, 5, 5])), Mode::Eval);
    layer.backward(&ArrayD::zeros(IxDyn(&[2, 4, 4, 4])));
}

#[test]
#[should_panic(expected = "conv2d: input [1, 2, 5, 5], weight [4, 3, 3, 3] and bias [4]")]
fn conv2d_direct_mismatch_panics_naming_shapes() {
    let x = Array4::<f32>::zeros((1, 2, 5, 5));
    let w = Array4::<f32>::zeros((4, 3, 3, 3));
    let b = Array1::<f32>::zeros(4);
    conv2d_direct(&x.view(), &w.view(), &b.view(), 1, 0);
}

#[test]
#[should_panic(expected = "MaxPool2d::forward: expected input (n, c, h, w), got [2, 9]")]
fn pool_on_a_matrix_panics_naming_shapes() {
    MaxPool2d::new((2, 2), (2, 2)).forward(&ArrayD::zeros(IxDyn(&[2, 9])), Mode::Eval);
}

/// A small CNN: conv 1->3 (3x3, padding 1), tanh, `pool` 2x2, conv 3->4 (3x3,
/// stride 2), tanh, global average pool, linear 4->5.
fn small_cnn(pool: PoolKind, seed: u64) -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Sequential::new();
    net.push(Conv2d::new(1, 3, (3, 3), 1, 1, &mut rng));
    net.push(ActivationLayer::new(Activation::Tanh));
    match pool {
        PoolKind::Max => net.push(MaxPool2d::new((2, 2), (2, 2))),
        PoolKind::Avg => net.push(AvgPool2d::new((2, 2), (2, 2))),
    }
    net.push(Conv2d::new(3, 4, (3, 3), 2, 0, &mut rng));
    net.push(ActivationLayer::new(Activation::Tanh));
    net.push(GlobalAvgPool::new());
    net.push(Linear::new(4, 5, Init::Xavier, &mut rng));
    net
}

/// The same network in candle (`F64`), on copies of `net`'s weights: the gradients of
/// $\langle \mathrm{net}(x), r\rangle$ for the input and every parameter.
fn small_cnn_candle(
    pool: PoolKind,
    net: &mut Sequential,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> Grads {
    let mut vars = vec![];
    net.visit_params("", &mut |name, p| {
        let v = Var::from_tensor(&to_tensor(&p.value, DType::F64).unwrap()).unwrap();
        vars.push((name.to_string(), v));
    });
    let t = |k: usize| vars[k].1.as_tensor();
    // Only the strides and paddings of these two are used.
    let conv1 = Conv2d::new(1, 3, (3, 3), 1, 1, &mut ChaCha8Rng::seed_from_u64(0));
    let conv2 = Conv2d::new(3, 4, (3, 3), 2, 0, &mut ChaCha8Rng::seed_from_u64(0));
    let xv = Var::from_tensor(&to_tensor(x, DType::F64).unwrap()).unwrap();
    let h = candle_twin::conv(xv.as_tensor(), t(0), t(1), &conv1)
        .unwrap()
        .tanh()
        .unwrap();
    let win = candle_twin::windows(&h, (2, 2), (2, 2)).unwrap();
    let h = match pool {
        PoolKind::Max => win.max(D::Minus1).unwrap(),
        PoolKind::Avg => win.mean(D::Minus1).unwrap(),
    };
    let h = candle_twin::conv(&h, t(2), t(3), &conv2)
        .unwrap()
        .tanh()
        .unwrap();
    let h = h.mean(D::Minus1).unwrap().mean(D::Minus1).unwrap(); // (n, 4)
    let y = h
        .matmul(&t(4).t().unwrap())
        .unwrap()
        .broadcast_add(t(5))
        .unwrap();
    let loss = (y * to_tensor(r, DType::F64).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let g = loss.backward().unwrap();
    let grad = |v: &Var| to_array(g.get(v).expect("a gradient")).unwrap();
    Grads {
        dx: grad(&xv),
        params: vars.iter().map(|(n, v)| (n.clone(), grad(v))).collect(),
    }
}

// ANCHOR: small_cnn_three_ways
/// Per seed (3 seeds), the three-way errors `(manual vs finite differences, manual vs
/// candle, finite differences vs candle)` of the gradients of a whole small CNN (input
/// and all six parameter tensors) with `pool` as its pooling layer.
fn small_cnn_three_ways(pool: PoolKind) -> Vec<(f64, f64, f64)> {
    (0..3)
        .map(|seed| {
            let mut net = small_cnn(pool, 1000 + seed);
            let mut rng = ChaCha8Rng::seed_from_u64(2000 + seed);
            let x = randn(&[2, 1, 8, 8], &mut rng);
            let r = randn(&[2, 5], &mut rng);
            let manual = manual_grads(&mut net, &x, &r);
            let numeric = numeric_grads(&mut net, &x, &r, H);
            let candle = small_cnn_candle(pool, &mut net, &x, &r);
            (
                max_rel_error(&manual, &numeric),
                max_rel_error(&manual, &candle),
                max_rel_error(&numeric, &candle),
            )
        })
        .collect()
}
// ANCHOR_END: small_cnn_three_ways

#[test]
fn small_cnn_with_avg_pool_gradients_agree_three_ways() {
    for (seed, errs) in small_cnn_three_ways(PoolKind::Avg).into_iter().enumerate() {
        assert_three_ways(&format!("small CNN (avg pool), seed {seed}"), errs);
    }
}

/// With max pooling inside the network, manual backprop and candle still agree, but a
/// finite-difference step of a first-layer weight moves the pooled activations enough
/// to change some window's argmax on some seeds: the function has a kink there and the
/// difference quotient measures a jump, not the gradient. For every seed where the two
/// disagree, the test finds the first-layer weight with the largest disagreement and
/// checks that stepping it by `+h` and by `-h` selects different argmaxes.
#[test]
fn small_cnn_with_max_pool_agrees_with_candle_but_finite_differences_hit_kinks() {
    let errs = small_cnn_three_ways(PoolKind::Max);
    for (seed, &(a, b, c)) in errs.iter().enumerate() {
        eprintln!("small CNN (max pool), seed {seed}: {a:e} {b:e} {c:e}");
        assert!(b < 1e-5, "seed {seed}: manual vs candle {b:e}");
    }
    assert!(
        errs.iter().any(|&(a, _, _)| a < 1e-3),
        "some seed has no argmax flip"
    );
    assert!(
        errs.iter().any(|&(a, _, c)| a > 1e-2 && c > 1e-2),
        "some seed's finite differences cross a kink"
    );
    for (seed, &(a, _, _)) in errs.iter().enumerate() {
        if a > 1e-3 {
            assert!(
                argmax_flips(seed as u64),
                "seed {seed}: no argmax flip explains {a:e}"
            );
        }
    }
}

/// Whether stepping the first-layer weight with the largest manual-vs-finite-difference
/// disagreement by `+H` and `-H` changes the max pool's argmaxes (seed as in
/// [`small_cnn_three_ways`]).
fn argmax_flips(seed: u64) -> bool {
    let mut net = small_cnn(PoolKind::Max, 1000 + seed);
    let mut rng = ChaCha8Rng::seed_from_u64(2000 + seed);
    let x = randn(&[2, 1, 8, 8], &mut rng);
    let r = randn(&[2, 5], &mut rng);
    let manual = manual_grads(&mut net, &x, &r);
    let numeric = numeric_grads(&mut net, &x, &r, H);
    let (name, g_manual) = &manual.params[0];
    assert_eq!(name, "layers.0.weight");
    let diff = g_manual - &numeric.params[0].1;
    let worst = diff
        .iter()
        .enumerate()
        .fold(
            (0, 0.0f64),
            |m, (i, d)| if d.abs() > m.1 { (i, d.abs()) } else { m },
        )
        .0;
    let (mut w0, mut b0) = (ArrayD::zeros(IxDyn(&[0])), ArrayD::zeros(IxDyn(&[0])));
    net.visit_params("", &mut |n, p| match n {
        "layers.0.weight" => w0 = p.value.clone(),
        "layers.0.bias" => b0 = p.value.clone(),
        _ => {}
    });
    let routes = |step: f32| {
        let mut w = w0.clone();
        w.as_slice_memory_order_mut().unwrap()[worst] += step;
        let w4 = w.into_dimensionality().unwrap();
        let b1 = b0.clone().into_dimensionality().unwrap();
        let mut conv = Conv2d::from_weights(w4, b1, 1, 1);
        let h = conv.forward(&x, Mode::Eval).mapv(f32::tanh);
        let mut pool = MaxPool2d::new((2, 2), (2, 2));
        pool.forward(&h, Mode::Eval);
        pool.argmax().unwrap().to_vec()
    };
    routes(H) != routes(-H)
}

/// The limitation [`candle_twin::conv`] works around: candle 0.11's own `conv2d`
/// backward fails when the stride leaves different remainders on the two axes (here a
/// 9x7 input, a 2x3 kernel, stride 2: one unused row, no unused column), and works when
/// it does not.
#[test]
fn candle_conv2d_backward_fails_on_unequal_remainders() {
    let backward = |h: usize, w: usize| {
        let x = Var::from_tensor(
            &to_tensor(&ArrayD::from_elem(IxDyn(&[1, 1, h, w]), 1.0), DType::F64)
                .unwrap(),
        )
        .unwrap();
        let k =
            to_tensor(&ArrayD::from_elem(IxDyn(&[1, 1, 2, 3]), 1.0), DType::F64).unwrap();
        let y = x.as_tensor().conv2d(&k, 0, 2, 1, 1).unwrap();
        y.sum_all().unwrap().backward().map(|_| ())
    };
    let err = backward(9, 7).expect_err("unequal remainders");
    assert!(err.to_string().contains("shape mismatch"), "{err}");
    assert!(backward(8, 7).is_ok(), "equal remainders");
}

/// col2im is the adjoint (transpose) of im2col:
/// $\langle \mathrm{im2col}(x), C\rangle = \langle x, \mathrm{col2im}(C)\rangle$,
/// which is why it is the backward pass of the copy.
#[test]
fn col2im_is_the_adjoint_of_im2col() {
    use dlbook::cnn::im2col::{col2im, im2col};
    for (k, &(ci, _, h, w, kernel, s, p)) in CASES.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(1100 + k as u64);
        let x = randn(&[2, ci, h, w], &mut rng);
        let x4 = x.view().into_dimensionality::<ndarray::Ix4>().unwrap();
        let cols = im2col(&x4, kernel, s, p);
        let c = randn(cols.shape(), &mut rng)
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap();
        let lhs: f64 = cols.iter().zip(&c).map(|(&a, &b)| f64::from(a * b)).sum();
        let back = col2im(&c, x4.dim(), kernel, s, p);
        let rhs: f64 = x4.iter().zip(&back).map(|(&a, &b)| f64::from(a * b)).sum();
        let scale = lhs.abs().max(rhs.abs()).max(1.0);
        assert!((lhs - rhs).abs() / scale < 1e-5, "{lhs} vs {rhs}");
    }
}

#[test]
#[should_panic(
    expected = "AvgPool2d::backward: dy [1, 1, 3, 3] vs output shape [1, 1, 2, 2]"
)]
fn pool_backward_with_a_wrong_dy_panics_naming_shapes() {
    let mut pool = AvgPool2d::new((2, 2), (2, 2));
    pool.forward(&ArrayD::zeros(IxDyn(&[1, 1, 4, 4])), Mode::Eval);
    pool.backward(&ArrayD::zeros(IxDyn(&[1, 1, 3, 3])));
}

/// The convolution written again in `f64` (the same sums as `conv2d_direct`), for
/// finite differences without `f32` rounding.
fn conv2d_f64(
    x: &ArrayD<f64>,
    w: &ArrayD<f64>,
    b: &ArrayD<f64>,
    stride: usize,
    padding: usize,
) -> ArrayD<f64> {
    let (n, ci, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (co, kh, kw) = (w.shape()[0], w.shape()[2], w.shape()[3]);
    let (ho, wo) = (
        (h + 2 * padding - kh) / stride + 1,
        (wd + 2 * padding - kw) / stride + 1,
    );
    ArrayD::from_shape_fn(IxDyn(&[n, co, ho, wo]), |ix| {
        let (s, o, i, j) = (ix[0], ix[1], ix[2], ix[3]);
        let mut acc = b[[o]];
        for c in 0..ci {
            for p in 0..kh {
                for q in 0..kw {
                    let (r, t) = (stride * i + p, stride * j + q);
                    if r >= padding && t >= padding && r - padding < h && t - padding < wd
                    {
                        acc += w[[o, c, p, q]] * x[[s, c, r - padding, t - padding]];
                    }
                }
            }
        }
        acc
    })
}

/// Central differences in `f64` with step `h` of a scalar function of one tensor.
fn finite_diff_f64(
    u: &ArrayD<f64>,
    h: f64,
    f: impl Fn(&ArrayD<f64>) -> f64,
) -> ArrayD<f64> {
    let mut g = ArrayD::zeros(u.raw_dim());
    let mut v = u.clone();
    for (i, gi) in g.iter_mut().enumerate() {
        let orig = u.as_slice().unwrap()[i];
        v.as_slice_mut().unwrap()[i] = orig + h;
        let up = f(&v);
        v.as_slice_mut().unwrap()[i] = orig - h;
        let down = f(&v);
        v.as_slice_mut().unwrap()[i] = orig;
        *gi = (up - down) / (2.0 * h);
    }
    g
}

// ANCHOR: conv_vs_f64_fd
/// The worst relative error over [`CASES`] between the manual [`Conv2d`] gradients
/// (`f32`) and central differences (`h = 1e-6`) of the `f64` reference convolution on
/// the same weights.
fn conv_vs_f64_finite_differences() -> f64 {
    let mut worst = 0.0f64;
    for (k, &case) in CASES.iter().enumerate() {
        let (mut layer, x, r) = conv_case(case, 1200 + k as u64);
        let manual = manual_grads(&mut layer, &x, &r);
        let (s, p) = (layer.stride, layer.padding);
        let (x, w, b, r) = (
            f64v(&x),
            f64v(&layer.weight.value),
            f64v(&layer.bias.value),
            f64v(&r),
        );
        let loss = |x: &ArrayD<f64>, w: &ArrayD<f64>, b: &ArrayD<f64>| {
            (conv2d_f64(x, w, b, s, p) * &r).sum()
        };
        let numeric = Grads {
            dx: finite_diff_f64(&x, 1e-6, |v| loss(v, &w, &b)),
            params: vec![
                (
                    "weight".into(),
                    finite_diff_f64(&w, 1e-6, |v| loss(&x, v, &b)),
                ),
                (
                    "bias".into(),
                    finite_diff_f64(&b, 1e-6, |v| loss(&x, &w, v)),
                ),
            ],
        };
        worst = worst.max(max_rel_error(&manual, &numeric));
    }
    worst
}
// ANCHOR_END: conv_vs_f64_fd

/// Finite differences in `f64` remove the `f32` rounding of the step: the manual
/// gradients then agree with them as closely as with candle (`1e-5`), instead of the
/// `1e-3` allowed for `f32` finite differences.
#[test]
fn conv2d_gradients_match_f64_finite_differences() {
    let e = conv_vs_f64_finite_differences();
    eprintln!("Conv2d manual vs f64 finite differences: {e:e}");
    assert!(e < 1e-5, "manual vs f64 finite differences {e:e}");
}
