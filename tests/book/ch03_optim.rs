//! Chapter 3, optimizers: each from-scratch optimizer against candle-nn's (or a candle
//! reference built from tensor ops) on identical inputs, their behaviour on the test
//! surfaces, and the MNIST comparison re-run at its quick size.

use std::sync::OnceLock;

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer as _, ParamsAdamW, SGD};
use dlbook::data::DataDir;
use dlbook::experiments;
use dlbook::nn::{Module, Param};
use dlbook::optim::surfaces::{steps_to, trajectory, Surface};
use dlbook::optim::{Adam, Optimizer, OptimizerKind, Sgd};
use dlbook::report::{render_figure, Plot, Report};
use ndarray::ArrayD;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

// ---------------------------------------------------------------------------------------
// A two-parameter model and the candle references

/// A model with a weight matrix and a bias, named like a layer of a network.
struct Toy {
    w: Param,
    b: Param,
}

impl Module for Toy {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&dlbook::nn::join(prefix, "layers.0.weight"), &mut self.w);
        f(&dlbook::nn::join(prefix, "layers.0.bias"), &mut self.b);
    }
}

fn gaussian(shape: &[usize], rng: &mut ChaCha8Rng) -> ArrayD<f32> {
    ArrayD::from_shape_fn(shape.to_vec(), |_| StandardNormal.sample(rng))
}

fn toy(seed: u64) -> Toy {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Toy {
        w: Param::new(gaussian(&[3, 4], &mut rng)),
        b: Param::new(gaussian(&[4], &mut rng)),
    }
}

/// `steps` gradients per parameter, the same for both implementations.
fn gradients(steps: usize, seed: u64) -> Vec<[ArrayD<f32>; 2]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..steps)
        .map(|_| [gaussian(&[3, 4], &mut rng), gaussian(&[4], &mut rng)])
        .collect()
}

fn var(a: &ArrayD<f32>) -> Var {
    Var::from_slice(a.as_slice().expect("contiguous"), a.shape(), &Device::Cpu)
        .expect("a candle var")
}

fn tensor(a: &ArrayD<f32>) -> Tensor {
    Tensor::from_slice(a.as_slice().expect("contiguous"), a.shape(), &Device::Cpu)
        .expect("a candle tensor")
}

fn to_array(t: &Tensor) -> ArrayD<f32> {
    let v = t
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("f32 values");
    ArrayD::from_shape_vec(t.dims().to_vec(), v).expect("same shape")
}

/// Largest |a - b| relative to the largest |b|.
fn rel_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let d = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max(f64::from((x - y).abs())));
    let s = b.iter().fold(0.0f64, |m, y| m.max(f64::from(y.abs())));
    d / s
}

/// Runs our optimizer over the gradients; returns the final parameters.
fn ours(opt: &mut dyn Optimizer, grads: &[[ArrayD<f32>; 2]]) -> [ArrayD<f32>; 2] {
    let mut m = toy(1);
    for [gw, gb] in grads {
        m.w.grad.assign(gw);
        m.b.grad.assign(gb);
        opt.step(&mut m);
    }
    [m.w.value, m.b.value]
}

/// Drives a candle optimizer with exactly these gradients: the gradient of
/// `sum(theta * g)` with respect to `theta` is `g`.
fn candle_run(
    grads: &[[ArrayD<f32>; 2]],
    mut step: impl FnMut(&[Var; 2], &candle_core::backprop::GradStore),
) -> [ArrayD<f32>; 2] {
    let m = toy(1);
    let vars = [var(&m.w.value), var(&m.b.value)];
    for [gw, gb] in grads {
        let loss = ((vars[0].as_tensor() * tensor(gw))
            .unwrap()
            .sum_all()
            .unwrap()
            + (vars[1].as_tensor() * tensor(gb))
                .unwrap()
                .sum_all()
                .unwrap())
        .unwrap();
        let g = loss.backward().unwrap();
        step(&vars, &g);
    }
    [to_array(vars[0].as_tensor()), to_array(vars[1].as_tensor())]
}

// ANCHOR: candle_momentum
/// Heavy-ball / Nesterov momentum built from candle tensor ops, in the same convention:
/// `v = mu v + g`, `theta -= lr (nesterov ? g + mu v : v)`.
fn candle_momentum(
    grads: &[[ArrayD<f32>; 2]],
    lr: f64,
    mu: f64,
    nesterov: bool,
) -> [ArrayD<f32>; 2] {
    let mut velocity: Vec<Option<Tensor>> = vec![None, None];
    candle_run(grads, |vars, g| {
        for (k, v) in vars.iter().enumerate() {
            let grad = g.get(v.as_tensor()).expect("a gradient");
            let vel = match &velocity[k] {
                Some(old) => ((old * mu).unwrap() + grad).unwrap(),
                None => grad.clone(),
            };
            let update = if nesterov {
                (grad + (&vel * mu).unwrap()).unwrap()
            } else {
                vel.clone()
            };
            v.set(&(v.as_tensor() - (update * lr).unwrap()).unwrap())
                .unwrap();
            velocity[k] = Some(vel);
        }
    })
}
// ANCHOR_END: candle_momentum

// ---------------------------------------------------------------------------------------
// Usage listings

// ANCHOR: adam_usage
/// One Adam step on a model whose gradients differ by six orders of magnitude: thanks
/// to the bias correction the first step moves every coordinate by about `lr`.
pub fn adam_usage() -> Vec<f32> {
    let mut model = toy(3);
    let before = model.w.value.clone();
    model.w.grad =
        ArrayD::from_shape_fn(vec![3, 4], |ix| 10f32.powi(ix[1] as i32 * 2 - 3));
    let mut adam = Adam::new(0.01);
    adam.step(&mut model);
    (&before - &model.w.value).iter().copied().collect()
}
// ANCHOR_END: adam_usage

// ANCHOR: stability_usage
/// Gradient descent on $\frac12(x^2 + 50y^2)$ just below and just above $\eta = 2/50$:
/// the loss after 200 steps.
pub fn stability_usage() -> (f32, f32) {
    let quad = Surface::Quadratic(50.0);
    let final_loss = |lr: f32| {
        let path = trajectory(quad, OptimizerKind::Sgd, lr, [1.0, 1.0], 200);
        let [x, y] = *path.last().expect("a path");
        quad.f(x, y)
    };
    (final_loss(0.95 * 2.0 / 50.0), final_loss(1.05 * 2.0 / 50.0))
}
// ANCHOR_END: stability_usage

// ---------------------------------------------------------------------------------------
// Agreement with candle

// ANCHOR: agreement_test
#[test]
fn sgd_matches_candle_sgd() {
    let grads = gradients(20, 7);
    let mine = ours(&mut Sgd::new(0.05), &grads);
    let mut sgd = None;
    let theirs = candle_run(&grads, |vars, g| {
        let opt = sgd.get_or_insert_with(|| SGD::new(vars.to_vec(), 0.05).unwrap());
        opt.step(g).unwrap();
    });
    for k in 0..2 {
        let d = rel_diff(&mine[k], &theirs[k]);
        assert!(d < 1e-6, "parameter {k}: {d:e}");
    }
}

#[test]
fn adam_and_adamw_match_candle_adamw() {
    let grads = gradients(20, 8);
    for wd in [0.0f32, 0.1] {
        let mine = ours(&mut Adam::adamw(0.01, wd), &grads);
        let mut adamw = None;
        let theirs = candle_run(&grads, |vars, g| {
            let opt = adamw.get_or_insert_with(|| {
                let p = ParamsAdamW {
                    lr: 0.01,
                    weight_decay: f64::from(wd),
                    ..ParamsAdamW::default()
                };
                AdamW::new(vars.to_vec(), p).unwrap()
            });
            opt.step(g).unwrap();
        });
        for k in 0..2 {
            let d = rel_diff(&mine[k], &theirs[k]);
            assert!(d < 1e-6, "weight decay {wd}, parameter {k}: {d:e}");
        }
    }
}
// ANCHOR_END: agreement_test

#[test]
fn momentum_and_nesterov_match_the_candle_reference() {
    let grads = gradients(20, 9);
    for nesterov in [false, true] {
        let mut opt = if nesterov {
            Sgd::nesterov(0.05, 0.9)
        } else {
            Sgd::momentum(0.05, 0.9)
        };
        let mine = ours(&mut opt, &grads);
        let theirs = candle_momentum(&grads, 0.05, 0.9, nesterov);
        for k in 0..2 {
            let d = rel_diff(&mine[k], &theirs[k]);
            assert!(d < 1e-6, "nesterov {nesterov}, parameter {k}: {d:e}");
        }
    }
}

#[test]
fn optimizer_state_is_keyed_by_dotted_name() {
    let grads = gradients(1, 2);
    let mut sgd = Sgd::momentum(0.1, 0.9);
    let mut adam = Adam::new(0.1);
    ours(&mut sgd, &grads);
    ours(&mut adam, &grads);
    let names = ["layers.0.bias", "layers.0.weight"];
    assert_eq!(
        sgd.velocity.keys().map(String::as_str).collect::<Vec<_>>(),
        names
    );
    assert_eq!(adam.m.keys().map(String::as_str).collect::<Vec<_>>(), names);
    assert_eq!(adam.v.keys().map(String::as_str).collect::<Vec<_>>(), names);
    // The state has the shape of its parameter.
    assert_eq!(adam.v["layers.0.weight"].shape(), &[3, 4]);
}

// ---------------------------------------------------------------------------------------
// Behaviour

#[test]
fn adam_first_step_is_lr_per_coordinate() {
    let steps = adam_usage();
    for s in steps {
        // m_hat / sqrt(v_hat) = g / |g| = 1, up to eps / |g| for the smallest gradient.
        assert!((s - 0.01).abs() < 1e-4, "step {s}");
    }
}

#[test]
fn gradient_descent_diverges_above_two_over_lambda_max() {
    let (below, above) = stability_usage();
    assert!(below < 1e-3, "below 2/λ: loss {below}");
    assert!(above > 1e3, "above 2/λ: loss {above}");
}

fn surfaces() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| {
        experiments::quick("optim_surfaces", &DataDir::resolve(None))
            .cloned()
            .expect("the experiment runs")
    })
}

#[test]
fn momentum_converges_much_faster_on_the_ill_conditioned_quadratic() {
    let r = surfaces();
    let sgd = r.get_fact("quadratic_sgd_steps").expect("SGD converges");
    let mom = r
        .get_fact("quadratic_momentum_steps")
        .expect("momentum converges");
    let nes = r
        .get_fact("quadratic_nesterov_steps")
        .expect("Nesterov converges");
    assert!(mom * 3.0 < sgd, "momentum {mom} steps vs SGD {sgd}");
    assert!(nes * 3.0 < sgd, "Nesterov {nes} steps vs SGD {sgd}");
}

#[test]
fn sgd_crawls_along_the_rosenbrock_valley() {
    let r = surfaces();
    let sgd = r.get_fact("rosenbrock_sgd_loss").expect("a fact");
    let mom = r.get_fact("rosenbrock_momentum_loss").expect("a fact");
    let adam = r.get_fact("rosenbrock_adam_loss").expect("a fact");
    assert!(sgd > 1e-3, "SGD final loss {sgd:e}");
    assert!(
        mom < sgd / 100.0 && adam < sgd / 100.0,
        "momentum {mom:e}, Adam {adam:e}"
    );
}

#[test]
fn steps_to_tolerance_is_the_first_hit() {
    let quad = Surface::Quadratic(1.0);
    let path = trajectory(quad, OptimizerKind::Sgd, 0.5, [1.0, 0.0], 10);
    // The loss is 0.5 * 0.25^t.
    assert_eq!(steps_to(quad, &path, 0.5 * 0.25f32.powi(3) * 1.01), Some(3));
}

#[test]
fn contour_figures_render_with_their_paths() {
    let r = surfaces();
    for f in r
        .figures
        .iter()
        .filter(|f| matches!(f.plot, Plot::Contour(_)))
    {
        let svg = render_figure(f).expect("renders");
        assert!(
            svg.contains("<rect") && svg.contains("<polyline"),
            "{}",
            f.name
        );
        for k in OptimizerKind::ALL {
            assert!(
                svg.contains(k.name()),
                "{}: no {} in the legend",
                f.name,
                k.name()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// MNIST

fn mnist() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| {
        experiments::quick("optim_mnist", &DataDir::resolve(None))
            .cloned()
            .expect("the experiment runs")
    })
}

#[test]
fn every_tuned_optimizer_learns_mnist() {
    let r = mnist();
    println!("{}", r.to_markdown());
    for k in OptimizerKind::ALL {
        let acc = r
            .get_fact(&format!("acc_{}", k.name().to_lowercase()))
            .expect("a fact");
        assert!(acc > 0.75, "{}: {acc}", k.name());
    }
    assert_eq!(r.seeds.len(), 3);
}

#[test]
fn the_learning_rate_sweep_finds_divergence_and_a_best_rate() {
    let r = mnist();
    let t = r.table("lr_sweep").expect("the sweep");
    // Plain SGD at the largest rate and Adam at the largest rate do worse than at their
    // best rate: the sweep brackets the optimum.
    for row in &t.rows {
        let accs: Vec<f64> = row[1..].iter().filter_map(|v| v.number()).collect();
        let best = accs.iter().cloned().fold(0.0, f64::max);
        assert!(best > 0.7, "{:?}", row[0]);
        assert!(
            accs[0] < best || accs[accs.len() - 1] < best,
            "{:?}: best at both ends",
            row[0]
        );
    }
    let adam_lr = r.get_fact("best_lr_adam").expect("a fact");
    let sgd_lr = r.get_fact("best_lr_sgd").expect("a fact");
    assert!(adam_lr < sgd_lr, "Adam {adam_lr} vs SGD {sgd_lr}");
}
