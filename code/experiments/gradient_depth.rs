//! Experiment `gradient_depth`: the gradient norm of every layer of a deep MLP at
//! initialization, for sigmoid, tanh and ReLU under naive, Xavier and He initialization.
//!
//! The network is `784 - w - ... - w - 10` with `depth` `Linear` layers, evaluated on one
//! batch of MNIST training images with softmax cross-entropy; we record
//! $\lVert \partial L / \partial W_\ell \rVert_F$ for every layer $\ell$. By the chain
//! rule, $\partial L/\partial h_{\ell-1} = (\partial L/\partial h_\ell \odot f'(a_\ell))
//! W_\ell$, so each layer multiplies the backward signal by roughly
//! $\sqrt{w}\,\sigma_W \cdot \mathrm{rms}(f')$: below one the gradient vanishes
//! geometrically towards the input, above one it explodes. Xavier chooses
//! $\sigma_W^2 \approx 1/w$ (factor about 1 for tanh near 0), He $\sigma_W^2 = 2/w$ (ReLU
//! passes half the units, $\mathrm{rms}(f') = 1/\sqrt2$); sigmoid's $f' \le 1/4$ shrinks
//! the signal whatever the initialization.

use anyhow::Result;
use serde::Serialize;

use super::Experiment;
use crate::data::{self, DataDir, Split};
use crate::nn::activation::Activation;
use crate::nn::linear::Init;
use crate::nn::loss::softmax_cross_entropy;
use crate::nn::mlp::{grad_norms, rows, Mlp};
use crate::nn::{Layer, Mode, Module};
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::train::mnist::image_matrix;

/// The experiment's entry in [`super::all`].
pub const EXPERIMENT: Experiment = Experiment {
    name: "gradient_depth",
    chapter: "ch02",
    config: |t| super::config_json(&t.pick(Config::quick, Config::full)),
    run: |t, d| run(&t.pick(Config::quick, Config::full), d),
};

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Number of `Linear` layers.
    pub depth: usize,
    /// Hidden width.
    pub width: usize,
    /// Images in the batch.
    pub batch_size: usize,
    /// Activations.
    pub activations: Vec<Activation>,
    /// Initializations.
    pub inits: Vec<Init>,
    /// Seeds (one network each).
    pub seeds: Vec<u64>,
}

impl Config {
    /// The book's configuration.
    pub fn full() -> Self {
        Config {
            depth: 12,
            width: 256,
            batch_size: 256,
            activations: vec![Activation::Sigmoid, Activation::Tanh, Activation::Relu],
            inits: vec![
                Init::Normal(0.01),
                Init::Normal(1.0),
                Init::Xavier,
                Init::He,
            ],
            seeds: vec![0, 1, 2],
        }
    }

    /// The test configuration (it takes a few seconds, so the same as the book's).
    pub fn quick() -> Self {
        Self::full()
    }
}

/// What one fresh network measured, per `Linear` layer (input side first).
#[derive(Clone, Debug, PartialEq)]
pub struct DepthRun {
    /// $\lVert \partial L/\partial W_\ell \rVert_F$.
    pub weight_grad: Vec<f64>,
    /// $\lVert \partial L/\partial a_\ell \rVert_F$, the backward signal arriving at
    /// layer $\ell$'s output $a_\ell = h_{\ell-1} W_\ell^\top + b_\ell$.
    pub signal: Vec<f64>,
}

fn norm(a: &ndarray::ArrayD<f32>) -> f64 {
    a.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt()
}

// ANCHOR: layer_grad_norms
/// Backpropagates softmax cross-entropy through a fresh network on one batch, recording
/// the norm of the backward signal and of the weight gradient at every layer.
pub fn layer_grad_norms(
    act: Activation,
    init: Init,
    sizes: &[usize],
    seed: u64,
    x: &ndarray::ArrayD<f32>,
    labels: &[usize],
) -> DepthRun {
    let mut mlp = Mlp::new(sizes, act, init, seed);
    mlp.zero_grad();
    let logits = mlp.forward(x, Mode::Train);
    let (_, mut d) = softmax_cross_entropy(&logits, labels);
    let mut signal = vec![0.0; mlp.depth()];
    for k in (0..mlp.depth()).rev() {
        if k + 1 < mlp.depth() {
            d = mlp.activations[k].backward(&d);
        }
        signal[k] = norm(&d); // dL/da_k
        d = mlp.linears[k].backward(&d);
    }
    let weight_grad = grad_norms(&mut mlp)
        .into_iter()
        .filter(|(name, _)| name.ends_with("weight"))
        .map(|(_, n)| n)
        .collect();
    DepthRun {
        weight_grad,
        signal,
    }
}
// ANCHOR_END: layer_grad_norms

/// All runs: `[activation][init][seed]`.
pub fn all_runs(
    cfg: &Config,
    x: &ndarray::ArrayD<f32>,
    y: &[usize],
) -> Vec<Vec<Vec<DepthRun>>> {
    let mut sizes = vec![x.shape()[1]];
    sizes.extend(std::iter::repeat_n(cfg.width, cfg.depth - 1));
    sizes.push(10);
    cfg.activations
        .iter()
        .map(|&act| {
            cfg.inits
                .iter()
                .map(|&init| {
                    cfg.seeds
                        .iter()
                        .map(|&s| layer_grad_norms(act, init, &sizes, s, x, y))
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Runs the experiment.
pub fn run(cfg: &Config, dir: &DataDir) -> Result<Report> {
    let train = data::mnist(dir, Split::Train)?;
    let (x, y) = image_matrix(&train, cfg.batch_size);
    let xb = rows(&x, 0, x.nrows());
    let norms = all_runs(cfg, &xb, &y);
    let mut r = Report::new(
        "ch02",
        "gradient_depth",
        "Gradient norm per layer at initialization, by activation and initialization",
    );
    r.config = super::config_json(cfg);
    r.seeds = cfg.seeds.clone();
    let (im, lab) = data::mnist_files(Split::Train);
    r.data.push(data::data_ref(im));
    r.data.push(data::data_ref(lab));
    let mut table = vec![];
    for (a, &act) in cfg.activations.iter().enumerate() {
        let mut series = vec![];
        for (i, &init) in cfg.inits.iter().enumerate() {
            let runs = &norms[a][i];
            let l = cfg.depth - 1;
            let first: Vec<f64> = runs.iter().map(|v| v.weight_grad[0]).collect();
            let last: Vec<f64> = runs.iter().map(|v| v.weight_grad[l]).collect();
            let ratio: Vec<f64> =
                runs.iter().map(|v| v.signal[0] / v.signal[l]).collect();
            table.push(vec![
                Value::Text(act.name()),
                Value::Text(init.name()),
                Value::Seeds(first),
                Value::Seeds(last),
                Value::Seeds(ratio),
            ]);
            // Geometric mean over seeds (the figure is on a log scale).
            let y: Vec<f64> = (0..cfg.depth)
                .map(|l| {
                    let logs: f64 =
                        runs.iter().map(|v| v.signal[l].max(1e-300).ln()).sum();
                    (logs / runs.len() as f64).exp().max(1e-30)
                })
                .collect();
            series.push(Series {
                name: init.name(),
                x: (1..=cfg.depth).map(|l| l as f64).collect(),
                y,
                band: None,
            });
        }
        r.figures.push(Figure {
            name: act.name().to_lowercase(),
            title: format!(
                "{}: backward signal per layer at initialization",
                act.name()
            ),
            plot: Plot::Lines {
                x_label: "layer (1 = input side)".into(),
                y_label: "‖dL/da‖ (geometric mean over seeds)".into(),
                x_scale: Scale::Linear,
                y_scale: Scale::Log,
                series,
            },
        });
    }
    r.tables.push(Table {
        name: "norms".into(),
        caption: format!(
            "{}-layer MLP of width {} on a batch of {} MNIST images, softmax cross-entropy, \
             {} seeds (mean ± std). Signal ratio = ‖dL/da₁‖ / ‖dL/da_L‖, the backward \
             signal at the first layer relative to the last (1 = neither vanishes nor \
             explodes).",
            cfg.depth,
            cfg.width,
            cfg.batch_size,
            cfg.seeds.len()
        ),
        columns: vec![
            col("activation", Format::Int),
            col("init", Format::Int),
            col("‖dL/dW₁‖", Format::Sci(1)),
            col("‖dL/dW_L‖", Format::Sci(1)),
            col("signal ratio first / last", Format::Sci(1)),
        ],
        rows: table,
    });
    Ok(r)
}
