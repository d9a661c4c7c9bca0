//! Experiment `ln_placement`: pre-LN against post-LN in a deeper encoder-decoder
//! Transformer (6 + 6 blocks) on the sorting task of `seq2seq_sort`, with and without a
//! learning-rate warm-up: the gradient norm of every block at initialisation, the
//! training loss curves, and the final loss and accuracy.

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::seq2seq_sort::{model_config, windowed};
use super::{Experiment, Preset};
use crate::data::DataDir;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::transformer::seq2seq::{
    block_grad_norms, sort_accuracy, train_sort, Seq2Seq, SortTraining,
};
use crate::transformer::Norm;

/// Experiment `ln_placement`, registered in [`super::all`].
pub struct LnPlacement;

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Blocks in each stack.
    pub n_layers: usize,
    /// The training (its `warmup` is used by the warm-up runs; the others have none).
    pub train: SortTraining,
    /// Sequences of the batch whose gradients are measured at initialisation.
    pub grad_batch: usize,
    /// Test sequences (of the longest training length) for the final accuracy.
    pub n_test: usize,
    /// Seeds.
    pub seeds: Vec<u64>,
}

impl Preset for Config {
    fn full() -> Self {
        Config {
            n_layers: 6,
            train: SortTraining {
                steps: 800,
                batch_size: 32,
                lr: 2e-3,
                warmup: 200,
                min_len: 2,
                max_len: 6,
            },
            grad_batch: 64,
            n_test: 100,
            seeds: vec![0, 1],
        }
    }

    fn quick() -> Self {
        let full = Self::full();
        Config {
            train: SortTraining {
                steps: 40,
                warmup: 10,
                ..full.train
            },
            n_test: 10,
            seeds: vec![0],
            ..full
        }
    }
}

/// The four variants: normalisation and whether the learning rate warms up.
const VARIANTS: [(Norm, bool); 4] = [
    (Norm::PreLn, false),
    (Norm::PreLn, true),
    (Norm::PostLn, false),
    (Norm::PostLn, true),
];

fn variant_name(norm: Norm, warmup: bool) -> String {
    format!(
        "{}, {}",
        norm.name(),
        if warmup { "warm-up" } else { "no warm-up" }
    )
}

struct Run {
    losses: Vec<f32>,
    accuracy: f64,
}

impl Experiment for LnPlacement {
    const NAME: &'static str = "ln_placement";
    const CHAPTER: &'static str = "ch11";
    const TITLE: &'static str =
        "Pre-LN against post-LN: gradients at initialisation and training with and without warm-up";
    type Config = Config;

    fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
        r.seeds = cfg.seeds.clone();
        // gradient norms of every block at initialisation, per normalisation and seed
        let mut grad_rows = vec![];
        let mut series = vec![];
        let mut names = vec![];
        let mut per_norm = vec![];
        for norm in [Norm::PreLn, Norm::PostLn] {
            let by_seed: Vec<Vec<(String, f64)>> = cfg
                .seeds
                .iter()
                .map(|&s| {
                    let mut rng = ChaCha8Rng::seed_from_u64(s);
                    let mut model = Seq2Seq::new(model_config(cfg.n_layers, norm), &mut rng);
                    block_grad_norms(&mut model, cfg.grad_batch, cfg.train.max_len, &mut rng)
                })
                .collect();
            names = by_seed[0].iter().map(|(n, _)| n.clone()).collect();
            for stack in ["encoder", "decoder"] {
                // the mean over seeds (a ± band would cross zero on the log axis)
                let y: Vec<f64> = names
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.starts_with(stack))
                    .map(|(b, _)| {
                        Value::mean_std(&by_seed.iter().map(|s| s[b].1).collect::<Vec<_>>()).0
                    })
                    .collect();
                series.push(Series {
                    name: format!("{}, {stack}", norm.name()),
                    x: (1..=y.len()).map(|i| i as f64).collect(),
                    y,
                    band: None,
                });
            }
            per_norm.push(by_seed);
        }
        for (b, name) in names.iter().enumerate() {
            let mut row = vec![Value::Text(name.clone())];
            for by_seed in &per_norm {
                row.push(Value::Seeds(by_seed.iter().map(|s| s[b].1).collect()));
            }
            grad_rows.push(row);
        }
        // the ratio of the last decoder block's gradient to the first encoder block's
        for (norm, by_seed) in [Norm::PreLn, Norm::PostLn].iter().zip(&per_norm) {
            let key = match norm {
                Norm::PreLn => "pre",
                Norm::PostLn => "post",
            };
            let ratio: Vec<f64> = by_seed
                .iter()
                .map(|s| s[s.len() - 1].1 / s[0].1)
                .collect();
            r.fact(
                &format!("{key}_last_over_first"),
                Value::Seeds(ratio),
                Format::Fixed(2),
            );
        }
        r.tables.push(Table {
            name: "grad_norms".into(),
            caption: format!(
                "Gradient norm of each block's parameters at initialisation, one batch of \
                 {} sequences of length {}, {} + {} blocks; mean ± std over {} seeds.",
                cfg.grad_batch,
                cfg.train.max_len,
                cfg.n_layers,
                cfg.n_layers,
                cfg.seeds.len()
            ),
            columns: vec![
                col("block", Format::Int),
                col("pre-LN", Format::Sci(2)),
                col("post-LN", Format::Sci(2)),
            ],
            rows: grad_rows,
        });
        r.figures.push(Figure {
            name: "grad_norms".into(),
            title: "Gradient norm per block at initialisation".into(),
            plot: Plot::Lines {
                x_label: "block (1 = bottom of its stack)".into(),
                y_label: "gradient norm (mean over seeds)".into(),
                x_scale: Scale::Linear,
                y_scale: Scale::Log,
                series,
            },
        });
        // training: four variants by seeds
        let jobs: Vec<(usize, usize)> = (0..VARIANTS.len())
            .flat_map(|v| (0..cfg.seeds.len()).map(move |s| (v, s)))
            .collect();
        let bar = crate::progress::bar(jobs.len() as u64, "pre-LN vs post-LN runs");
        let runs: Vec<Run> = jobs
            .par_iter()
            .map(|&(v, s)| {
                let (norm, warm) = VARIANTS[v];
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seeds[s]);
                let mut model = Seq2Seq::new(model_config(cfg.n_layers, norm), &mut rng);
                let train = SortTraining {
                    warmup: if warm { cfg.train.warmup } else { 0 },
                    ..cfg.train
                };
                let mut losses = vec![];
                train_sort(&mut model, &train, &mut rng, |_, l| losses.push(l));
                let mut test = ChaCha8Rng::seed_from_u64(2_000);
                let accuracy =
                    sort_accuracy(&mut model, cfg.n_test, cfg.train.max_len, 1, &mut test);
                bar.inc(1);
                Run { losses, accuracy }
            })
            .collect();
        bar.finish_and_clear();
        let w = (cfg.train.steps / 40).max(1);
        let mut rows = vec![];
        let mut curves = vec![];
        for (v, &(norm, warm)) in VARIANTS.iter().enumerate() {
            let mine: Vec<&Run> = (0..cfg.seeds.len())
                .map(|s| &runs[v * cfg.seeds.len() + s])
                .collect();
            let windows: Vec<(Vec<f64>, Vec<f64>)> =
                mine.iter().map(|run| windowed(&run.losses, w)).collect();
            let x = windows[0].0.clone();
            // the mean over seeds (a ± band would cross zero on the log axis)
            let y: Vec<f64> = (0..x.len())
                .map(|i| {
                    Value::mean_std(&windows.iter().map(|(_, y)| y[i]).collect::<Vec<_>>()).0
                })
                .collect();
            let final_loss: Vec<f64> = windows
                .iter()
                .map(|(_, y)| y.last().copied().unwrap_or(f64::NAN))
                .collect();
            let acc: Vec<f64> = mine.iter().map(|run| run.accuracy).collect();
            let key = format!(
                "{}_{}",
                match norm {
                    Norm::PreLn => "pre",
                    Norm::PostLn => "post",
                },
                if warm { "warmup" } else { "nowarmup" }
            );
            r.fact(&format!("{key}_loss"), Value::Seeds(final_loss.clone()), Format::Fixed(3));
            r.fact(&format!("{key}_acc"), Value::Seeds(acc.clone()), Format::Percent(1));
            rows.push(vec![
                Value::Text(variant_name(norm, warm)),
                Value::Seeds(final_loss),
                Value::Seeds(acc),
            ]);
            curves.push(Series {
                name: variant_name(norm, warm),
                x,
                y,
                band: None,
            });
        }
        r.fact("warmup", cfg.train.warmup as f64, Format::Int);
        r.fact("steps", cfg.train.steps as f64, Format::Int);
        r.fact("n_layers", cfg.n_layers as f64, Format::Int);
        r.tables.push(Table {
            name: "training".into(),
            caption: format!(
                "{} + {} blocks on the sorting task (lengths {} to {}), {} Adam steps at \
                 η = {} with a linear warm-up over {} steps or none: the training loss \
                 over the last {} steps, and greedy exact-sequence accuracy on {} test \
                 sequences of length {}; mean ± std over {} seeds.",
                cfg.n_layers,
                cfg.n_layers,
                cfg.train.min_len,
                cfg.train.max_len,
                cfg.train.steps,
                cfg.train.lr,
                cfg.train.warmup,
                w,
                cfg.n_test,
                cfg.train.max_len,
                cfg.seeds.len()
            ),
            columns: vec![
                col("variant", Format::Int),
                col("final loss", Format::Fixed(3)),
                col("accuracy", Format::Percent(1)),
            ],
            rows,
        });
        r.figures.push(Figure {
            name: "loss".into(),
            title: format!("{} + {} blocks: training loss", cfg.n_layers, cfg.n_layers),
            plot: Plot::Lines {
                x_label: "step".into(),
                y_label: format!("cross-entropy, mean over {w} steps and the seeds"),
                x_scale: Scale::Linear,
                y_scale: Scale::Log,
                series: curves,
            },
        });
        Ok(())
    }
}
