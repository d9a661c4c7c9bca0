//! Chapter 3, regularization: dropout, batch norm, layer norm and the L1/L2 penalties,
//! each gradient-checked three ways (manual backward, central finite differences,
//! candle autograd in `f64` on the same weights); augmentation; and the ablation
//! re-run at its quick size.

use std::sync::OnceLock;

use candle_core::{Device, Tensor, Var};
use dlbook::augment::{self, Compose, Noise, Rotate, Shift, Transform};
use dlbook::data::DataDir;
use dlbook::experiments::{self};
use dlbook::nn::batchnorm::BatchNorm;
use dlbook::nn::dropout::Dropout;
use dlbook::nn::gradcheck::{
    finite_diff, manual_grads, max_rel_error, numeric_grads, Grads,
};
use dlbook::nn::layernorm::LayerNorm;
use dlbook::nn::regularization::{add_penalty_grad, penalty, Penalty};
use dlbook::nn::{Layer, Mode, Module, Param};
use dlbook::report::Report;
use ndarray::{Array3, ArrayD, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

// ---------------------------------------------------------------------------------------
// Helpers

fn gaussian(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    ArrayD::from_shape_fn(shape.to_vec(), |_| StandardNormal.sample(&mut rng))
}

fn var64(a: &ArrayD<f32>) -> Var {
    let v: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
    Var::from_slice(&v, a.shape(), &Device::Cpu).expect("a candle var")
}

fn to_f64_array(t: &Tensor, shape: &[usize]) -> ArrayD<f64> {
    let v = t
        .flatten_all()
        .and_then(|t| t.to_vec1::<f64>())
        .expect("f64 values");
    ArrayD::from_shape_vec(shape.to_vec(), v).expect("same shape")
}

/// The gradients of $L = \langle f(x; \theta), r\rangle$ by candle's autograd in `f64`,
/// with the layer's own parameter values and names.
fn candle_grads(
    layer: &mut dyn Layer,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
    f: impl Fn(&Tensor, &[Tensor]) -> candle_core::Result<Tensor>,
) -> Grads {
    let mut named = vec![];
    layer.visit_params("", &mut |n, p| named.push((n.to_string(), p.value.clone())));
    let xv = var64(x);
    let pv: Vec<Var> = named.iter().map(|(_, v)| var64(v)).collect();
    let pt: Vec<Tensor> = pv.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(xv.as_tensor(), &pt).expect("the candle forward");
    let rt = var64(r).as_tensor().clone();
    let loss = (y * rt).and_then(|t| t.sum_all()).expect("a scalar");
    let g = loss.backward().expect("autograd");
    let grad = |v: &Var, shape: &[usize]| {
        to_f64_array(g.get(v.as_tensor()).expect("a grad"), shape)
    };
    Grads {
        dx: grad(&xv, x.shape()),
        params: named
            .iter()
            .zip(&pv)
            .map(|((n, value), v)| (n.clone(), grad(v, value.shape())))
            .collect(),
    }
}

/// Manual vs finite differences, and manual vs candle: the two largest relative errors.
fn three_way(
    layer: &mut dyn Layer,
    x: &ArrayD<f32>,
    h: f32,
    f: impl Fn(&Tensor, &[Tensor]) -> candle_core::Result<Tensor>,
) -> (f64, f64) {
    let y = layer.forward(x, Mode::Train);
    let r = gaussian(y.shape(), 99);
    let manual = manual_grads(layer, x, &r);
    let numeric = numeric_grads(layer, x, &r, h);
    let candle = candle_grads(layer, x, &r, f);
    (
        max_rel_error(&manual, &numeric),
        max_rel_error(&manual, &candle),
    )
}

// ---------------------------------------------------------------------------------------
// The candle twins

// ANCHOR: candle_batchnorm
/// Batch norm in training mode from candle ops (differentiable end to end).
fn candle_batchnorm(x: &Tensor, p: &[Tensor], eps: f64) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(0)?; // (1, D)
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(0)?; // biased, (1, D)
    let x_hat = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    x_hat.broadcast_mul(&p[0])?.broadcast_add(&p[1])
}
// ANCHOR_END: candle_batchnorm

// ANCHOR: candle_layernorm
/// Layer norm: candle-nn's own op-by-op implementation.
fn candle_layernorm(x: &Tensor, p: &[Tensor], eps: f32) -> candle_core::Result<Tensor> {
    candle_nn::ops::layer_norm_slow(x, &p[0], &p[1], eps)
}
// ANCHOR_END: candle_layernorm

/// Gamma and beta away from 1 and 0, so a bug that ignores them shows.
fn perturb(layer: &mut dyn Layer, seed: u64) {
    layer.visit_params("", &mut |_, p| {
        let noise = gaussian(p.value.shape(), seed) * 0.5;
        p.value += &noise;
    });
}

/// A layer that always runs its inner layer in evaluation mode.
struct EvalMode<L: Layer>(L);

impl<L: Layer> Module for EvalMode<L> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.0.visit_params(prefix, f);
    }
}

impl<L: Layer> Layer for EvalMode<L> {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        self.0.forward(x, Mode::Eval)
    }
    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.0.backward(dy)
    }
}

/// Dropout re-seeded at every forward, so every evaluation draws the same mask (for
/// finite differences).
struct SameMask {
    p: f32,
    inner: Dropout,
}

impl Module for SameMask {
    fn visit_params(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Param)) {}
}

impl Layer for SameMask {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.inner = Dropout::new(self.p, 5);
        self.inner.forward(x, mode)
    }
    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.inner.backward(dy)
    }
}

// ---------------------------------------------------------------------------------------
// Usage listings

// ANCHOR: batchnorm_check
/// Batch norm's gradients on a (16, 6) batch: the largest relative error of the manual
/// backward against finite differences (f32, step 1e-2) and against candle (f64).
pub fn batchnorm_check() -> (f64, f64) {
    let mut bn = BatchNorm::new(6);
    perturb(&mut bn, 1);
    let x = gaussian(&[16, 6], 2) * 2.0 + 1.0;
    three_way(&mut bn, &x, 1e-2, |x, p| candle_batchnorm(x, p, 1e-5))
}
// ANCHOR_END: batchnorm_check

// ANCHOR: layernorm_check
/// Layer norm's gradients on an (8, 10) batch, checked the same way.
pub fn layernorm_check() -> (f64, f64) {
    let mut ln = LayerNorm::new(10);
    perturb(&mut ln, 3);
    let x = gaussian(&[8, 10], 4) * 2.0 + 1.0;
    three_way(&mut ln, &x, 1e-2, |x, p| candle_layernorm(x, p, 1e-5))
}
// ANCHOR_END: layernorm_check

// ANCHOR: dropout_usage
/// The mean over 2,000 dropout masks of the output for one input, and the fraction of
/// zeros, at p = 0.3.
pub fn dropout_usage() -> (f64, f64) {
    let x = ArrayD::from_elem(vec![50, 20], 1.5f32);
    let mut drop = Dropout::new(0.3, 11);
    let (mut sum, mut zeros) = (0.0f64, 0usize);
    for _ in 0..2000 {
        let y = drop.forward(&x, Mode::Train);
        sum += y.iter().map(|&v| f64::from(v)).sum::<f64>();
        zeros += y.iter().filter(|&&v| v == 0.0).count();
    }
    let n = (2000 * x.len()) as f64;
    (sum / n, zeros as f64 / n)
}
// ANCHOR_END: dropout_usage

// ANCHOR: augment_usage
/// The digit-style pipeline on a small image: two runs from the same seed agree, and a
/// different seed gives a different variant.
pub fn augment_usage() -> (bool, bool) {
    // One channel of 28 x 28: a bar 11 pixels tall and 5 wide in the middle.
    let img = Array3::from_shape_fn((1, 28, 28), |(_, r, c)| {
        if r.abs_diff(14) < 6 && c.abs_diff(14) < 3 {
            1.0
        } else {
            0.0
        }
    });
    let pipeline = augment::digits_pipeline(2, 12.0, 0.1);
    let run = |seed| pipeline.apply(img.view(), &mut ChaCha8Rng::seed_from_u64(seed));
    (run(1) == run(1), run(1) != run(2))
}
// ANCHOR_END: augment_usage

// ---------------------------------------------------------------------------------------
// Gradient checks

#[test]
fn batchnorm_backward_matches_finite_differences_and_candle() {
    let (fd, candle) = batchnorm_check();
    println!("batch norm: vs finite differences {fd:.1e}, vs candle {candle:.1e}");
    assert!(fd < 1e-3, "finite differences: {fd:e}");
    assert!(candle < 1e-6, "candle: {candle:e}");
}

#[test]
fn batchnorm_eval_backward_matches_finite_differences_and_candle() {
    let mut bn = BatchNorm::new(5);
    perturb(&mut bn, 5);
    // Running statistics from a few training batches.
    for s in 0..5 {
        bn.forward(&(gaussian(&[32, 5], 10 + s) * 3.0 + 2.0), Mode::Train);
    }
    let (rm, rv) = (bn.running_mean.clone(), bn.running_var.clone());
    let to_t = |a: &ndarray::Array1<f32>| {
        let v: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
        Tensor::from_slice(&v, (1, a.len()), &Device::Cpu).unwrap()
    };
    let (rm, rv) = (to_t(&rm), to_t(&rv));
    let mut layer = EvalMode(bn);
    let x = gaussian(&[12, 5], 6) * 3.0 + 2.0;
    let (fd, candle) = three_way(&mut layer, &x, 1e-2, |x, p| {
        let x_hat = x
            .broadcast_sub(&rm)?
            .broadcast_div(&(&rv + 1e-5)?.sqrt()?)?;
        x_hat.broadcast_mul(&p[0])?.broadcast_add(&p[1])
    });
    println!("batch norm (eval): vs finite differences {fd:.1e}, vs candle {candle:.1e}");
    assert!(fd < 1e-3, "finite differences: {fd:e}");
    assert!(candle < 1e-6, "candle: {candle:e}");
}

#[test]
fn layernorm_backward_matches_finite_differences_and_candle() {
    let (fd, candle) = layernorm_check();
    println!("layer norm: vs finite differences {fd:.1e}, vs candle {candle:.1e}");
    assert!(fd < 1e-3, "finite differences: {fd:e}");
    assert!(candle < 1e-6, "candle: {candle:e}");
}

#[test]
fn dropout_backward_matches_finite_differences_and_candle() {
    let mut layer = SameMask {
        p: 0.4,
        inner: Dropout::new(0.4, 5),
    };
    let x = gaussian(&[6, 7], 7);
    layer.forward(&x, Mode::Train);
    let mask = layer.inner.mask().expect("a training mask").clone();
    let (fd, candle) = three_way(&mut layer, &x, 1e-2, |x, _| {
        x.mul(&var64(&mask).as_tensor().clone())
    });
    assert!(fd < 1e-3, "finite differences: {fd:e}");
    assert!(candle < 1e-7, "candle: {candle:e}");
}

#[test]
fn penalty_gradients_match_finite_differences_and_candle() {
    struct W(Param, Param);
    impl Module for W {
        fn visit_params(&mut self, _: &str, f: &mut dyn FnMut(&str, &mut Param)) {
            f("weight", &mut self.0);
            f("bias", &mut self.1);
        }
    }
    let w0 = gaussian(&[4, 5], 8);
    for pen in [Penalty::L1(0.3), Penalty::L2(0.3)] {
        let mut m = W(Param::new(w0.clone()), Param::new(gaussian(&[5], 9)));
        add_penalty_grad(&mut m, pen);
        let manual = m.0.grad.mapv(f64::from);
        // The bias is not a weight: no penalty, no gradient.
        assert!(m.1.grad.iter().all(|&g| g == 0.0));
        let fd = finite_diff(&w0, 1e-3, |w| {
            let mut m = W(Param::new(w.clone()), Param::new(gaussian(&[5], 9)));
            f64::from(penalty(&mut m, pen))
        });
        let v = var64(&w0);
        let loss = match pen {
            Penalty::L1(l) => {
                v.as_tensor().abs().unwrap().sum_all().unwrap() * f64::from(l)
            }
            Penalty::L2(l) => {
                v.as_tensor().sqr().unwrap().sum_all().unwrap() * (0.5 * f64::from(l))
            }
        }
        .unwrap();
        let g = loss.backward().unwrap();
        let candle = to_f64_array(g.get(v.as_tensor()).unwrap(), &[4, 5]);
        let err = |a: &ArrayD<f64>, b: &ArrayD<f64>| {
            a.iter()
                .zip(b)
                .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
                / 0.3
        };
        assert!(err(&manual, &fd) < 1e-2, "{pen:?} vs finite differences");
        assert!(err(&manual, &candle) < 1e-6, "{pen:?} vs candle");
    }
}

// ---------------------------------------------------------------------------------------
// Behaviour

#[test]
fn dropout_preserves_the_expectation() {
    let (mean, zeros) = dropout_usage();
    assert!((mean - 1.5).abs() < 0.01, "mean {mean}");
    assert!((zeros - 0.3).abs() < 0.01, "fraction dropped {zeros}");
}

#[test]
fn dropout_is_the_identity_in_evaluation() {
    let x = gaussian(&[4, 9], 1);
    let mut d = Dropout::new(0.5, 3);
    assert_eq!(d.forward(&x, Mode::Eval), x);
    assert_eq!(d.backward(&x), x);
}

#[test]
fn batchnorm_normalises_in_training_and_uses_running_statistics_in_evaluation() {
    let mut bn = BatchNorm::new(3);
    let batch = |s| gaussian(&[256, 3], s) * 4.0 + 7.0;
    let y = bn.forward(&batch(0), Mode::Train);
    let mean = y.mean_axis(Axis(0)).unwrap();
    let var = y.var_axis(Axis(0), 0.0);
    assert!(mean.iter().all(|m| m.abs() < 1e-5), "{mean}");
    assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-3), "{var}");
    for s in 1..100 {
        bn.forward(&batch(s), Mode::Train);
    }
    // The running statistics have converged to the data's mean 7 and variance 16.
    assert!(
        bn.running_mean.iter().all(|m| (m - 7.0).abs() < 0.3),
        "{}",
        bn.running_mean
    );
    assert!(
        bn.running_var.iter().all(|v| (v - 16.0).abs() < 2.0),
        "{}",
        bn.running_var
    );
    // In evaluation, one example's output does not depend on the rest of its batch.
    let x = batch(200);
    let all = bn.forward(&x, Mode::Eval);
    let one = bn.forward(
        &x.slice(ndarray::s![0..1, ..]).to_owned().into_dyn(),
        Mode::Eval,
    );
    assert_eq!(all.slice(ndarray::s![0..1, ..]).into_dyn(), one);
}

#[test]
fn layernorm_is_independent_of_the_batch() {
    let mut ln = LayerNorm::new(6);
    let x = gaussian(&[5, 6], 2) * 3.0;
    let all = ln.forward(&x, Mode::Train);
    let one = ln.forward(
        &x.slice(ndarray::s![2..3, ..]).to_owned().into_dyn(),
        Mode::Train,
    );
    assert_eq!(all.slice(ndarray::s![2..3, ..]).into_dyn(), one);
    let row = all.index_axis(Axis(0), 2);
    assert!(row.mean().unwrap().abs() < 1e-5);
}

#[test]
#[should_panic(expected = "batch norm over 4 features got [3, 5]")]
fn batchnorm_rejects_the_wrong_width() {
    BatchNorm::new(4).forward(&ArrayD::zeros(vec![3, 5]), Mode::Train);
}

#[test]
fn augmentation_is_seeded_and_transforms_compose() {
    let (same, different) = augment_usage();
    assert!(same && different);
    // A shift by (1, 0) moves every pixel one column right.
    let img: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
    let s = augment::shift(&img, 4, 4, 1, 0);
    assert_eq!(&s[1..4], &img[0..3]);
    assert_eq!(s[0], 0.0);
    // A rotation by 0 is the identity; by 90 degrees, four times, too (square image).
    assert_eq!(augment::rotate(&img, 4, 4, 0.0), img);
    let mut r = img.clone();
    for _ in 0..4 {
        r = augment::rotate(&r, 4, 4, std::f32::consts::FRAC_PI_2);
    }
    assert!(r.iter().zip(&img).all(|(a, b)| (a - b).abs() < 1e-4));
    // Noise stays in [0, 1]; an empty pipeline changes nothing.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let img = Array3::from_shape_vec((1, 4, 4), img).unwrap();
    let n = Noise { std: 0.5 }.apply(img.view(), &mut rng);
    assert!(n.iter().all(|p| (0.0..=1.0).contains(p)));
    assert_eq!(Compose(vec![]).apply(img.view(), &mut rng), img);
    let _ = (Shift { max: 1 }, Rotate { max_degrees: 5.0 });
}

// ---------------------------------------------------------------------------------------
// The ablation, quick size

fn report() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| {
        experiments::quick("regularization_ablation", &DataDir::resolve(None))
            .cloned()
            .expect("the experiment runs")
    })
}

#[test]
fn the_best_mlp_reaches_its_accuracy_range() {
    let r = report();
    println!("{}", r.to_markdown());
    let best = r.get_fact("best_acc").expect("a fact");
    println!("best variant {:?}: {best}", r.get_fact("best_variant"));
    assert!((0.85..0.95).contains(&best), "best accuracy {best}");
    assert_eq!(r.seeds.len(), 3);
}

#[test]
fn batch_norm_helps_the_short_run() {
    let r = report();
    let base = r.get_fact("acc_0").expect("baseline");
    let bn = r.get_fact("acc_2").expect("batch norm");
    assert!(bn > base, "batch norm {bn} vs baseline {base}");
}
