//! Experiment `gradient_checks`: every layer and loss of chapter 2, its manual `backward`
//! against central finite differences and against candle's autograd, on the same
//! weights and inputs.
//!
//! Layers are checked through $L = \langle f(x), r\rangle$ for a fixed random $r$
//! (see [`crate::nn::gradcheck`]); losses directly. Inputs are standard normal, with
//! entries closer than $0.1$ to zero pushed away from it so that no finite-difference
//! step of $h = 10^{-2}$ straddles the kink of ReLU. The layers compute in `f32`,
//! candle in `F64`.

use anyhow::Result;
use ndarray::ArrayD;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::DataDir;
use crate::nn::activation::{Activation, ActivationLayer, Softmax};
use crate::nn::candle_twin::{self, CandleMlp, LossKind};
use crate::nn::gradcheck::{
    finite_diff, manual_grads, max_rel_error, normal, numeric_grads, Grads,
};
use crate::nn::linear::{Init, Linear};
use crate::nn::loss;
use crate::nn::mlp::Mlp;
use crate::nn::{Layer, Mode, Module};
use crate::report::{Column, Format, Report, Table, Value};

/// Experiment `gradient_checks`, registered in [`super::all`].
pub struct GradientChecks;

impl Experiment for GradientChecks {
    const NAME: &'static str = "gradient_checks";
    const CHAPTER: &'static str = "ch02";
    const TITLE: &'static str = "Gradient checks: manual backward vs finite differences vs candle autograd";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Batch size of the test inputs.
    pub n: usize,
    /// Input width.
    pub d_in: usize,
    /// Output width (classes for the losses).
    pub d_out: usize,
    /// Finite-difference step.
    pub h: f32,
    /// Seeds (each draws new weights, inputs and `r`).
    pub seeds: Vec<u64>,
}

impl Preset for Config {
    /// The book's configuration (it takes well under a second, so tests use it too).
    fn full() -> Self {
        Config {
            n: 4,
            d_in: 5,
            d_out: 3,
            h: 1e-2,
            seeds: vec![0, 1, 2],
        }
    }

    /// Same as [`Config::full`].
    fn quick() -> Self {
        Self::full()
    }
}

/// The three pairwise relative errors of one layer or loss.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// What was checked (`Linear`, `sigmoid`, `softmax cross-entropy`, ...).
    pub name: String,
    /// Manual backward vs finite differences, one value per seed.
    pub manual_vs_fd: Vec<f64>,
    /// Manual backward vs candle, one value per seed.
    pub manual_vs_candle: Vec<f64>,
    /// Finite differences vs candle, one value per seed.
    pub fd_vs_candle: Vec<f64>,
}

fn errors(manual: &Grads, fd: &Grads, candle: &Grads) -> [f64; 3] {
    [
        max_rel_error(manual, fd),
        max_rel_error(manual, candle),
        max_rel_error(fd, candle),
    ]
}

/// One seed of every check, as `(name, [manual vs fd, manual vs candle, fd vs candle])`.
fn check_seed(cfg: &Config, seed: u64) -> Result<Vec<(String, [f64; 3])>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (n, d_in, d_out, h) = (cfg.n, cfg.d_in, cfg.d_out, cfg.h);
    let mut out = vec![];

    // Linear, with a non-zero bias so the bias path is exercised.
    let mut lin = Linear::new(d_in, d_out, Init::Xavier, &mut rng);
    lin.bias.value = normal(&[d_out], &mut rng);
    let x = normal(&[n, d_in], &mut rng);
    let r = normal(&[n, d_out], &mut rng);
    let m = manual_grads(&mut lin, &x, &r);
    let f = numeric_grads(&mut lin, &x, &r, h);
    let c = candle_twin::linear_grads(&lin, &x, &r)?;
    out.push(("Linear".to_string(), errors(&m, &f, &c)));

    // Activations: inputs spread over [-4, 4] to reach the saturated regions.
    for kind in [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu(0.01),
    ] {
        let x = normal(&[n, d_out], &mut rng) * 2.0;
        let r = normal(&[n, d_out], &mut rng);
        let mut layer = ActivationLayer::new(kind);
        let m = manual_grads(&mut layer, &x, &r);
        let f = numeric_grads(&mut layer, &x, &r, h);
        let c = candle_twin::activation_grads(kind, &x, &r)?;
        out.push((kind.name(), errors(&m, &f, &c)));
    }

    // Softmax.
    let z = normal(&[n, d_out], &mut rng) * 2.0;
    let r = normal(&[n, d_out], &mut rng);
    let mut sm = Softmax::new();
    let m = manual_grads(&mut sm, &z, &r);
    let f = numeric_grads(&mut sm, &z, &r, h);
    let c = candle_twin::softmax_grads(&z, &r)?;
    out.push(("softmax".to_string(), errors(&m, &f, &c)));

    // Losses, gradient with respect to the prediction.
    let pred = normal(&[n, d_out], &mut rng) * 2.0;
    let target = normal(&[n, d_out], &mut rng);
    let probs = ArrayD::from_shape_fn(vec![n, d_out], |_| {
        let u: f32 = StandardNormal.sample(&mut rng);
        crate::nn::activation::sigmoid(u)
    });
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + seed as usize) % d_out).collect();
    let cases: Vec<(&str, LossKind)> = vec![
        ("MSE", LossKind::Mse(target)),
        ("binary cross-entropy (logits)", LossKind::Bce(probs)),
        ("softmax cross-entropy", LossKind::SoftmaxCe(labels)),
    ];
    for (name, kind) in cases {
        let value = |p: &ArrayD<f32>| -> (f32, ArrayD<f32>) {
            match &kind {
                LossKind::Mse(t) => loss::mse(p, t),
                LossKind::Bce(t) => loss::bce_with_logits(p, t),
                LossKind::SoftmaxCe(y) => loss::softmax_cross_entropy(p, y),
            }
        };
        let (_, dm) = value(&pred);
        let df = finite_diff(&pred, h, |p| f64::from(value(p).0));
        let (_, dc) = candle_twin::loss_grad(&kind, &pred)?;
        let g = |dx| Grads { dx, params: vec![] };
        out.push((
            name.to_string(),
            errors(&g(dm.mapv(f64::from)), &g(df), &g(dc)),
        ));
    }

    // A whole MLP with softmax cross-entropy: manual backprop vs candle, every parameter.
    let mut mlp = Mlp::new(&[d_in, 6, 4, d_out], Activation::Tanh, Init::Xavier, seed);
    let labels: Vec<usize> = (0..n).map(|i| (i + seed as usize) % d_out).collect();
    let x = normal(&[n, d_in], &mut rng);
    mlp.zero_grad();
    let logits = mlp.forward(&x, Mode::Train);
    let (_, dlogits) = loss::softmax_cross_entropy(&logits, &labels);
    let dx = mlp.backward(&dlogits);
    let mut manual = vec![];
    mlp.visit_params("", &mut |name, p| {
        manual.push((name.to_string(), p.grad.mapv(f64::from)))
    });
    let mut fd = vec![];
    let names: Vec<String> = manual.iter().map(|(n, _)| n.clone()).collect();
    for name in &names {
        let mut value = None;
        mlp.visit_params("", &mut |n, p| {
            if n == name {
                value = Some(p.value.clone());
            }
        });
        let value = value.expect("the parameter exists");
        let g = finite_diff(&value, h, |v| {
            mlp.visit_params("", &mut |n, p| {
                if n == name {
                    p.value.assign(v);
                }
            });
            f64::from(
                loss::softmax_cross_entropy(&mlp.forward(&x, Mode::Eval), &labels).0,
            )
        });
        mlp.visit_params("", &mut |n, p| {
            if n == name {
                p.value.assign(&value);
            }
        });
        fd.push((name.clone(), g));
    }
    let dx_fd = finite_diff(&x, h, |x| {
        f64::from(loss::softmax_cross_entropy(&mlp.forward(x, Mode::Eval), &labels).0)
    });
    let twin = CandleMlp::from_mlp(&mlp, candle_core::DType::F64)?;
    let (_, cg) = twin.ce_grads(&x, &labels)?;
    let xv = candle_core::Var::from_tensor(&candle_twin::to_tensor(
        &x,
        candle_core::DType::F64,
    )?)?;
    let l = candle_nn::loss::cross_entropy(
        &twin.forward(xv.as_tensor())?,
        &candle_core::Tensor::from_vec(
            labels.iter().map(|&y| y as u32).collect::<Vec<_>>(),
            n,
            &candle_core::Device::Cpu,
        )?,
    )?;
    let gx = l.backward()?;
    let dx_c =
        candle_twin::to_array(gx.get(&xv).ok_or_else(|| anyhow::anyhow!("no dx"))?)?;
    let m = Grads {
        dx: dx.mapv(f64::from),
        params: manual,
    };
    let f = Grads {
        dx: dx_fd,
        params: fd,
    };
    let c = Grads {
        dx: dx_c,
        params: cg,
    };
    out.push((
        "MLP 5-6-4-3 (tanh) + softmax CE".to_string(),
        errors(&m, &f, &c),
    ));
    Ok(out)
}

// ANCHOR: check_all
/// Every check over every seed of `cfg`.
pub fn check_all(cfg: &Config) -> Result<Vec<Check>> {
    let mut checks: Vec<Check> = vec![];
    for &seed in &cfg.seeds {
        for (i, (name, [a, b, c])) in check_seed(cfg, seed)?.into_iter().enumerate() {
            if checks.len() <= i {
                checks.push(Check {
                    name,
                    manual_vs_fd: vec![],
                    manual_vs_candle: vec![],
                    fd_vs_candle: vec![],
                });
            }
            checks[i].manual_vs_fd.push(a);
            checks[i].manual_vs_candle.push(b);
            checks[i].fd_vs_candle.push(c);
        }
    }
    Ok(checks)
}
// ANCHOR_END: check_all

fn max(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, &x| m.max(x))
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
    let checks = check_all(cfg)?;
    r.seeds = cfg.seeds.clone();
    let col = |h: &str, f| Column {
        header: h.into(),
        format: f,
    };
    let rows = checks
        .iter()
        .map(|c| {
            vec![
                Value::Text(c.name.clone()),
                Value::Num(max(&c.manual_vs_fd)),
                Value::Num(max(&c.manual_vs_candle)),
                Value::Num(max(&c.fd_vs_candle)),
            ]
        })
        .collect();
    r.tables.push(Table {
        name: "errors".into(),
        caption: format!(
            "Largest relative error, max |a − b| / max(|a|, |b|), over input and parameter \
             gradients and over {} seeds. Manual and finite differences in f32 \
             (h = {}), candle in F64.",
            cfg.seeds.len(),
            cfg.h
        ),
        columns: vec![
            col("layer or loss", Format::Int),
            col("manual vs finite diff.", Format::Sci(1)),
            col("manual vs candle", Format::Sci(1)),
            col("finite diff. vs candle", Format::Sci(1)),
        ],
        rows,
    });
    let worst =
        |f: fn(&Check) -> &Vec<f64>| checks.iter().map(|c| max(f(c))).fold(0.0, f64::max);
    r.fact(
        "worst_manual_vs_candle",
        worst(|c| &c.manual_vs_candle),
        Format::Sci(1),
    );
    r.fact(
        "worst_manual_vs_fd",
        worst(|c| &c.manual_vs_fd),
        Format::Sci(1),
    );
    Ok(())
}
