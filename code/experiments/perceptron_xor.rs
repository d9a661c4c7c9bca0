//! Experiment `perceptron_xor`: Rosenblatt's perceptron on linearly separable data and
//! on XOR, then a 2-2-1 network on XOR over many seeds.
//!
//! The separable data are 2-D standard normal points labelled by the sign of
//! $x_1 + x_2$, keeping only points at distance at least `margin` from that line, so
//! $u = (1, 1, 0)/\sqrt2$ separates them (in the augmented space $(x, 1)$) with margin
//! at least `margin` and Novikoff's bound $(R/\gamma_u)^2$ applies. The 2-2-1 network is
//! an [`Mlp`] trained by full-batch gradient descent on binary cross-entropy from logits;
//! a seed *solves* XOR when all four points are on the right side of $p = 0.5$.

use anyhow::Result;
use ndarray::{array, Array2, ArrayD};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::DataDir;
use crate::nn::activation::{sigmoid, Activation};
use crate::nn::linear::Init;
use crate::nn::loss::bce_with_logits;
use crate::nn::mlp::{sgd_step, Mlp};
use crate::nn::perceptron::{xor_data, Perceptron};
use crate::nn::{Layer, Mode, Module};
use crate::report::{col, Figure, Format, Group, Plot, Report, Table, Value};

/// Experiment `perceptron_xor`, registered in [`super::all`].
pub struct PerceptronXor;

impl Experiment for PerceptronXor {
    const NAME: &'static str = "perceptron_xor";
    const CHAPTER: &'static str = "ch02";
    const TITLE: &'static str = "The perceptron on separable data and XOR; XOR by a 2-2-1 network";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Points of the separable data set.
    pub n_separable: usize,
    /// Minimum distance of a separable point to the line $x_1 + x_2 = 0$.
    pub margin: f64,
    /// Seed of the separable data.
    pub data_seed: u64,
    /// Epoch limit of the perceptron.
    pub max_epochs: usize,
    /// Hidden activations of the 2-2-1 networks compared.
    pub activations: Vec<Activation>,
    /// Initialization of the 2-2-1 networks.
    pub init: Init,
    /// Seeds of the 2-2-1 networks (one network each).
    pub seeds: Vec<u64>,
    /// Learning rate of full-batch gradient descent.
    pub lr: f32,
    /// Gradient-descent steps.
    pub n_epochs: usize,
    /// Grid points per side of the decision-boundary figure.
    pub grid: usize,
}

impl Preset for Config {
    /// The book's configuration: 200 seeds per activation.
    fn full() -> Self {
        Config {
            n_separable: 200,
            margin: 0.3,
            data_seed: 0,
            max_epochs: 100,
            activations: vec![Activation::Tanh, Activation::Sigmoid, Activation::Relu],
            init: Init::Xavier,
            seeds: (0..200).collect(),
            lr: 0.5,
            n_epochs: 3000,
            grid: 48,
        }
    }

    /// The test configuration: 100 seeds.
    fn quick() -> Self {
        Config {
            seeds: (0..100).collect(),
            grid: 24,
            ..Self::full()
        }
    }
}

/// Separable 2-D points labelled by the sign of $x_1 + x_2$, at least `margin` from the
/// line.
pub fn separable_data(n: usize, margin: f64, seed: u64) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut xs, mut ys) = (vec![], vec![]);
    while xs.len() < n {
        let x: [f64; 2] = [
            StandardNormal.sample(&mut rng),
            StandardNormal.sample(&mut rng),
        ];
        let d = (x[0] + x[1]) / 2f64.sqrt();
        if d.abs() >= margin {
            xs.push(x.to_vec());
            ys.push(d.signum());
        }
    }
    (xs, ys)
}

/// Novikoff's bound $(R/\gamma_u)^2$ for the separator $u = (1, 1, 0)/\sqrt2$.
pub fn novikoff_bound(xs: &[Vec<f64>], ys: &[f64]) -> f64 {
    let r = xs
        .iter()
        .map(|x| (x[0] * x[0] + x[1] * x[1] + 1.0).sqrt())
        .fold(0.0, f64::max);
    let gamma = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| y * (x[0] + x[1]) / 2f64.sqrt())
        .fold(f64::INFINITY, f64::min);
    (r / gamma).powi(2)
}

/// The XOR inputs as a `(4, 2)` batch and 0/1 targets `(4, 1)`.
pub fn xor_batch() -> (ArrayD<f32>, ArrayD<f32>) {
    let x = array![[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]].into_dyn();
    let t = array![[0.0f32], [1.0], [1.0], [0.0]].into_dyn();
    (x, t)
}

/// A trained 2-2-1 network and whether it solved XOR.
pub struct XorRun {
    /// The network.
    pub mlp: Mlp,
    /// The final loss.
    pub loss: f32,
    /// All four points on the right side of $p = 0.5$.
    pub solved: bool,
}

impl XorRun {
    /// Whether some hidden unit outputs exactly 0 on all four XOR points (a dead ReLU).
    pub fn has_dead_unit(&mut self) -> bool {
        let (x, _) = xor_batch();
        let _ = self.mlp.forward(&x, Mode::Eval);
        let h = self.mlp.activations[0].last_output().expect("forward ran");
        let h = h
            .view()
            .into_dimensionality::<ndarray::Ix2>()
            .expect("(4, 2)");
        h.columns().into_iter().any(|c| c.iter().all(|&v| v == 0.0))
    }
}

// ANCHOR: train_xor
/// Trains a 2-2-1 network on XOR by full-batch gradient descent.
pub fn train_xor(
    act: Activation,
    init: Init,
    seed: u64,
    lr: f32,
    n_epochs: usize,
) -> XorRun {
    let (x, t) = xor_batch();
    let mut mlp = Mlp::new(&[2, 2, 1], act, init, seed);
    let mut loss = f32::NAN;
    for _ in 0..n_epochs {
        mlp.zero_grad();
        let logits = mlp.forward(&x, Mode::Train);
        let (l, dlogits) = bce_with_logits(&logits, &t);
        mlp.backward(&dlogits);
        sgd_step(&mut mlp, lr);
        loss = l;
    }
    let logits = mlp.forward(&x, Mode::Eval);
    let solved = logits.iter().zip(&t).all(|(&z, &t)| (z > 0.0) == (t > 0.5));
    XorRun { mlp, loss, solved }
}
// ANCHOR_END: train_xor

/// $p = \sigma(\text{logit})$ of a network over a `grid x grid` raster of
/// $[-0.5, 1.5]^2$ (rows from top $x_2 = 1.5$ down), as grey levels `255 p`.
pub fn probability_image(mlp: &mut Mlp, grid: usize) -> Vec<u8> {
    let coord = |i: usize| -0.5 + 2.0 * (i as f32 + 0.5) / grid as f32;
    let pts = Array2::from_shape_fn((grid * grid, 2), |(k, j)| {
        let (row, col) = (k / grid, k % grid);
        if j == 0 {
            coord(col)
        } else {
            coord(grid - 1 - row)
        }
    });
    let logits = mlp.forward(&pts.into_dyn(), Mode::Eval);
    logits
        .iter()
        .map(|&z| (255.0 * sigmoid(z)).round() as u8)
        .collect()
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
    r.seeds = cfg.seeds.clone();

    // Perceptron, separable data.
    let (xs, ys) = separable_data(cfg.n_separable, cfg.margin, cfg.data_seed);
    let mut p = Perceptron::zeros(2);
    let fit = p.fit(&xs, &ys, 1.0, cfg.max_epochs);
    let bound = novikoff_bound(&xs, &ys);
    // Perceptron, XOR.
    let (xx, xy) = xor_data();
    let mut q = Perceptron::zeros(2);
    let xfit = q.fit(&xx, &xy, 1.0, cfg.max_epochs);
    let best_xor = xfit
        .weights
        .iter()
        .map(|(w, b)| {
            Perceptron {
                w: w.clone(),
                b: *b,
            }
            .accuracy(&xx, &xy)
        })
        .fold(0.0, f64::max);
    let cycle = xfit.cycle().map_or(0.0, |(_, again)| again as f64);
    r.tables.push(Table {
        name: "perceptron".into(),
        caption: format!(
            "Rosenblatt's rule (lr = 1, zero start, at most {} epochs). Novikoff's bound \
             uses the separator u = (1, 1, 0)/√2.",
            cfg.max_epochs
        ),
        columns: vec![
            col("data", Format::Int),
            col("epochs run", Format::Int),
            col("converged", Format::Int),
            col("updates", Format::Int),
            col("Novikoff bound", Format::Int),
            col("best accuracy", Format::Percent(0)),
        ],
        rows: vec![
            vec![
                Value::Text(format!("separable, n = {}", xs.len())),
                Value::Num(fit.mistakes.len() as f64),
                Value::Text(
                    if fit.converged_at.is_some() {
                        "yes"
                    } else {
                        "no"
                    }
                    .into(),
                ),
                Value::Num(fit.total_mistakes() as f64),
                Value::Num(bound.floor()),
                Value::Num(p.accuracy(&xs, &ys)),
            ],
            vec![
                Value::Text("XOR, n = 4".into()),
                Value::Num(xfit.mistakes.len() as f64),
                Value::Text(
                    if xfit.converged_at.is_some() {
                        "yes"
                    } else {
                        "no"
                    }
                    .into(),
                ),
                Value::Num(xfit.total_mistakes() as f64),
                Value::Text("–".into()),
                Value::Num(best_xor),
            ],
        ],
    });
    r.fact("separable_epochs", fit.mistakes.len() as f64, Format::Int);
    r.fact("xor_cycle_epoch", cycle, Format::Int);
    r.fact("xor_best_accuracy", best_xor, Format::Percent(0));

    // The separable data and the learned line, as a scatter.
    let pos: Vec<usize> = (0..xs.len()).filter(|&i| ys[i] > 0.0).collect();
    let neg: Vec<usize> = (0..xs.len()).filter(|&i| ys[i] < 0.0).collect();
    let pick =
        |idx: &[usize], k: usize| idx.iter().map(|&i| xs[i][k]).collect::<Vec<_>>();
    let line_x: Vec<f64> = (0..=40).map(|i| -3.0 + 6.0 * i as f64 / 40.0).collect();
    let (lx, ly): (Vec<f64>, Vec<f64>) = line_x
        .iter()
        .map(|&x| (x, -(p.w[0] * x + p.b) / p.w[1]))
        .filter(|(_, y)| y.abs() <= 3.0)
        .unzip();
    r.figures.push(Figure {
        name: "separable".into(),
        title: "Perceptron on separable data: the learned boundary".into(),
        plot: Plot::Scatter {
            x_label: "x1".into(),
            y_label: "x2".into(),
            groups: vec![
                Group {
                    name: "y = +1".into(),
                    x: pick(&pos, 0),
                    y: pick(&pos, 1),
                },
                Group {
                    name: "y = -1".into(),
                    x: pick(&neg, 0),
                    y: pick(&neg, 1),
                },
                Group {
                    name: "w·x + b = 0".into(),
                    x: lx,
                    y: ly,
                },
            ],
        },
    });

    // 2-2-1 networks on XOR.
    let mut rows = vec![];
    let mut images = vec![];
    let mut row_labels = vec![];
    for &act in &cfg.activations {
        let runs: Vec<XorRun> = cfg
            .seeds
            .iter()
            .map(|&s| train_xor(act, cfg.init, s, cfg.lr, cfg.n_epochs))
            .collect();
        let mut runs = runs;
        let solved = runs.iter().filter(|x| x.solved).count() as f64 / runs.len() as f64;
        let n_failed = runs.iter().filter(|x| !x.solved).count();
        let failed_dead = runs
            .iter_mut()
            .filter(|x| !x.solved)
            .map(|x| x.has_dead_unit())
            .filter(|&d| d)
            .count();
        let dead_share = if n_failed == 0 {
            0.0
        } else {
            failed_dead as f64 / n_failed as f64
        };
        let losses: Vec<f64> = runs.iter().map(|x| f64::from(x.loss)).collect();
        rows.push(vec![
            Value::Text(act.name()),
            Value::Num(runs.len() as f64),
            Value::Num(solved),
            Value::Seeds(losses),
            Value::Num(dead_share),
        ]);
        let key = act.name().to_lowercase().replace(' ', "_");
        r.fact(&format!("xor_solved_{key}"), solved, Format::Percent(0));
        r.fact(
            &format!("xor_failed_dead_{key}"),
            dead_share,
            Format::Percent(0),
        );
        // The boundary of the first solved and the first failed seed.
        row_labels.push(act.name());
        for want in [true, false] {
            let img = match runs.iter_mut().find(|x| x.solved == want) {
                Some(x) => probability_image(&mut x.mlp, cfg.grid),
                None => vec![0; cfg.grid * cfg.grid],
            };
            images.push(img);
        }
    }
    r.tables.push(Table {
        name: "xor_mlp".into(),
        caption: format!(
            "2-2-1 networks on XOR: {} seeds each, {} init, full-batch gradient descent \
             (lr = {}, {} steps) on binary cross-entropy. Solved = all 4 points correct; a \
             dead unit outputs 0 on all 4 points after training.",
            cfg.seeds.len(),
            cfg.init.name(),
            cfg.lr,
            cfg.n_epochs
        ),
        columns: vec![
            col("hidden activation", Format::Int),
            col("seeds", Format::Int),
            col("solved", Format::Percent(0)),
            col("final loss", Format::Fixed(3)),
            col("failed seeds with a dead hidden unit", Format::Percent(0)),
        ],
        rows,
    });
    r.figures.push(Figure {
        name: "boundary".into(),
        title: "2-2-1 network on XOR: p(y = 1) over [-0.5, 1.5]², dark = 1".into(),
        plot: Plot::Images {
            width: cfg.grid,
            height: cfg.grid,
            row_labels,
            col_labels: vec!["a solved seed".into(), "a failed seed".into()],
            images,
        },
    });
    Ok(())
}
