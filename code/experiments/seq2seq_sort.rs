//! Experiment `seq2seq_sort`: an encoder-decoder Transformer learns to sort a sequence
//! of digits, a task that needs both halves (the encoder reads the whole input, the
//! decoder writes the output one token at a time and looks up, by cross-attention, the
//! input digit that comes next).
//!
//! Trained with teacher forcing on lengths up to `train.max_len`, tested on those
//! lengths and on longer ones; exact-sequence accuracy with greedy decoding and with
//! beam search, over several seeds; and the cross-attention map of the last decoder
//! block of the first seed's model on one test input, one heatmap per head.

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::DataDir;
use crate::nn::{Activation, Mode};
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::transformer::seq2seq::{
    ids_array, sort_accuracy, sort_batch, train_sort, Seq2Seq, Seq2SeqConfig, SortTraining,
};
use crate::transformer::{BlockConfig, Norm};

/// Experiment `seq2seq_sort`, registered in [`super::all`].
pub struct Seq2SeqSort;

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The model.
    pub model: Seq2SeqConfig,
    /// The training.
    pub train: SortTraining,
    /// Test lengths (some longer than any training sequence).
    pub test_lengths: Vec<usize>,
    /// Test sequences per length.
    pub n_test: usize,
    /// The beam width compared with greedy decoding.
    pub beam_width: usize,
    /// Seeds of the weights and of the training batches.
    pub seeds: Vec<u64>,
}

/// The model of the experiment: `n_layers` blocks of width 32 in each stack.
pub fn model_config(n_layers: usize, norm: Norm) -> Seq2SeqConfig {
    Seq2SeqConfig {
        vocab_size: 10,
        n_layers,
        block: BlockConfig {
            d_ff: 64,
            norm,
            activation: Activation::Relu,
            ..BlockConfig::new(32, 4)
        },
        max_len: 32,
    }
}

impl Preset for Config {
    fn full() -> Self {
        Config {
            model: model_config(2, Norm::PreLn),
            train: SortTraining {
                steps: 3000,
                batch_size: 32,
                lr: 2e-3,
                warmup: 100,
                min_len: 2,
                max_len: 8,
            },
            test_lengths: vec![4, 6, 8, 10, 12],
            n_test: 200,
            beam_width: 4,
            seeds: vec![0, 1, 2],
        }
    }

    fn quick() -> Self {
        let full = Self::full();
        Config {
            train: SortTraining {
                steps: 400,
                ..full.train
            },
            test_lengths: vec![4, 8],
            n_test: 30,
            seeds: vec![0],
            ..full
        }
    }
}

/// One seed's outcome.
struct Run {
    /// Greedy accuracy per test length.
    greedy: Vec<f64>,
    /// Beam accuracy per test length.
    beam: Vec<f64>,
    /// The training loss, every step.
    losses: Vec<f32>,
    /// The trained model.
    model: Seq2Seq,
}

/// Which accuracies of a run: greedy or beam.
type Pick = fn(&Run) -> &Vec<f64>;

fn run_seed(cfg: &Config, seed: u64) -> Run {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut model = Seq2Seq::new(cfg.model, &mut rng);
    let mut losses = Vec::with_capacity(cfg.train.steps);
    train_sort(&mut model, &cfg.train, &mut rng, |_, l| losses.push(l));
    let mut greedy = vec![];
    let mut beam = vec![];
    for &len in &cfg.test_lengths {
        // the same test sequences for every seed and both decoders
        let test_rng = || ChaCha8Rng::seed_from_u64(1_000 + len as u64);
        greedy.push(sort_accuracy(&mut model, cfg.n_test, len, 1, &mut test_rng()));
        beam.push(sort_accuracy(
            &mut model,
            cfg.n_test,
            len,
            cfg.beam_width,
            &mut test_rng(),
        ));
    }
    Run {
        greedy,
        beam,
        losses,
        model,
    }
}

/// Mean of `losses` over windows of `w` steps, as `(step at the window's end, mean)`.
pub fn windowed(losses: &[f32], w: usize) -> (Vec<f64>, Vec<f64>) {
    losses
        .chunks(w)
        .enumerate()
        .map(|(i, c)| {
            let mean = c.iter().map(|&l| f64::from(l)).sum::<f64>() / c.len() as f64;
            ((i * w + c.len()) as f64, mean)
        })
        .unzip()
}

impl Experiment for Seq2SeqSort {
    const NAME: &'static str = "seq2seq_sort";
    const CHAPTER: &'static str = "ch11";
    const TITLE: &'static str =
        "Sorting digits with an encoder-decoder Transformer: greedy and beam decoding";
    type Config = Config;

    fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
        r.seeds = cfg.seeds.clone();
        let bar = crate::progress::bar(cfg.seeds.len() as u64, "seq2seq sort (seeds)");
        let mut runs: Vec<Run> = cfg
            .seeds
            .par_iter()
            .map(|&s| {
                let run = run_seed(cfg, s);
                bar.inc(1);
                run
            })
            .collect();
        bar.finish_and_clear();
        let per_len = |f: Pick, l: usize| -> Vec<f64> {
            runs.iter().map(|run| f(run)[l]).collect()
        };
        let mut columns = vec![col("decoding", Format::Int)];
        for &len in &cfg.test_lengths {
            let mark = if len > cfg.train.max_len { " (longer)" } else { "" };
            columns.push(col(&format!("n = {len}{mark}"), Format::Percent(1)));
        }
        let decoders: [(&str, Pick); 2] = [
            ("greedy", |run: &Run| &run.greedy),
            ("beam", |run: &Run| &run.beam),
        ];
        let mut rows = vec![];
        for (name, f) in decoders {
            let label = if name == "beam" {
                format!("beam, width {}", cfg.beam_width)
            } else {
                name.to_string()
            };
            let mut row = vec![Value::Text(label)];
            for (l, &len) in cfg.test_lengths.iter().enumerate() {
                let accs = per_len(f, l);
                r.fact(
                    &format!("{name}_{len}"),
                    Value::Seeds(accs.clone()),
                    Format::Percent(1),
                );
                row.push(Value::Seeds(accs));
            }
            rows.push(row);
        }
        let m = &cfg.model;
        r.fact("train_max_len", cfg.train.max_len as f64, Format::Int);
        r.fact("train_min_len", cfg.train.min_len as f64, Format::Int);
        r.fact("beam_width", cfg.beam_width as f64, Format::Int);
        r.fact("steps", cfg.train.steps as f64, Format::Int);
        r.fact("n_layers", m.n_layers as f64, Format::Int);
        r.fact("d_model", m.block.d_model as f64, Format::Int);
        r.fact("n_heads", m.block.n_heads as f64, Format::Int);
        r.tables.push(Table {
            name: "accuracy".into(),
            caption: format!(
                "Sorting {} digits: share of test sequences whose whole output is right, \
                 by length n, greedy and beam decoding; {} + {} {} blocks of width {} \
                 with {} heads, {} Adam steps (η = {}, warm-up {}) of {} fresh sequences \
                 of lengths {} to {}; {} test sequences per length, mean ± std over {} \
                 seeds.",
                m.vocab_size,
                m.n_layers,
                m.n_layers,
                m.block.norm.name(),
                m.block.d_model,
                m.block.n_heads,
                cfg.train.steps,
                cfg.train.lr,
                cfg.train.warmup,
                cfg.train.batch_size,
                cfg.train.min_len,
                cfg.train.max_len,
                cfg.n_test,
                cfg.seeds.len()
            ),
            columns,
            rows,
        });
        let series = decoders
            .iter()
            .map(|(name, f)| {
                let (y, band) = (0..cfg.test_lengths.len())
                    .map(|l| {
                        let v: Vec<f64> = per_len(*f, l).iter().map(|a| 100.0 * a).collect();
                        Value::mean_std(&v)
                    })
                    .unzip();
                Series {
                    name: name.to_string(),
                    x: cfg.test_lengths.iter().map(|&t| t as f64).collect(),
                    y,
                    band: Some(band),
                }
            })
            .collect();
        r.figures.push(Figure {
            name: "accuracy".into(),
            title: format!(
                "Sorting: exact-sequence accuracy by length (trained on n ≤ {})",
                cfg.train.max_len
            ),
            plot: Plot::Lines {
                x_label: "sequence length n".into(),
                y_label: "exact-sequence accuracy, % (mean ± std)".into(),
                x_scale: Scale::Linear,
                y_scale: Scale::Linear,
                series,
            },
        });
        let w = (cfg.train.steps / 50).max(1);
        let loss_series = runs
            .iter()
            .zip(&cfg.seeds)
            .map(|(run, s)| {
                let (x, y) = windowed(&run.losses, w);
                Series {
                    name: format!("seed {s}"),
                    x,
                    y,
                    band: None,
                }
            })
            .collect();
        r.figures.push(Figure {
            name: "loss".into(),
            title: "Sorting: training loss (teacher forcing)".into(),
            plot: Plot::Lines {
                x_label: "step".into(),
                y_label: format!("cross-entropy, mean over {w} steps"),
                x_scale: Scale::Linear,
                y_scale: Scale::Log,
                series: loss_series,
            },
        });
        let final_loss: Vec<f64> = runs
            .iter()
            .map(|run| windowed(&run.losses, w).1.last().copied().unwrap_or(f64::NAN))
            .collect();
        r.fact("final_loss", Value::Seeds(final_loss), Format::Fixed(3));
        cross_attention_maps(cfg, &mut runs[0].model, r);
        Ok(())
    }
}

// ANCHOR: cross_attention_map
/// The cross-attention weights of the last decoder block, one heatmap per head, on one
/// test input of the longest training length: row $i$ is the output position, column
/// $j$ the input position, so a sorter's rows should each point at the input digit it
/// writes.
fn cross_attention_maps(cfg: &Config, model: &mut Seq2Seq, r: &mut Report) {
    let len = cfg.train.max_len;
    let (src, _, _) = sort_batch(1, len, cfg.model.vocab_size, &mut ChaCha8Rng::seed_from_u64(7));
    let out = model.greedy(&src).swap_remove(0).tokens;
    // one teacher-forced pass on the model's own output fills the weights
    let mut tgt_in = vec![model.bos()];
    tgt_in.extend_from_slice(&out[..len - 1]);
    model.forward(&ids_array(&src), &ids_array(&[tgt_in]), Mode::Eval);
    let last = model.decoder.last().expect("a decoder block");
    let w = last
        .cross_attn
        .last_weights()
        .expect("forward ran")
        .view()
        .into_dimensionality::<ndarray::Ix4>()
        .expect("(b, heads, t_q, t_k)")
        .to_owned(); // (1, heads, len, len)
    let input: Vec<String> = src[0].iter().map(|d| d.to_string()).collect();
    let output: Vec<String> = out.iter().map(|d| d.to_string()).collect();
    r.fact(
        "map_input",
        Value::Text(input.join(" ")),
        Format::Int,
    );
    r.fact("map_output", Value::Text(output.join(" ")), Format::Int);
    // how often each output position's strongest weight (mean over heads) falls on an
    // input position holding the digit it writes
    let heads = w.shape()[1];
    let on_digit = (0..len)
        .filter(|&i| {
            let mean: Vec<f32> = (0..len)
                .map(|j| (0..heads).map(|h| w[[0, h, i, j]]).sum::<f32>())
                .collect();
            let j = (0..len).fold(0, |a, b| if mean[b] > mean[a] { b } else { a });
            src[0][j] == out[i]
        })
        .count();
    r.fact("map_on_digit", on_digit as f64 / len as f64, Format::Percent(0));
    for h in 0..heads {
        r.figures.push(Figure {
            name: format!("cross_attention_head{h}"),
            title: format!("Cross-attention of the last decoder block, head {h}"),
            plot: Plot::Heatmap {
                x_label: "input position (digit)".into(),
                y_label: "output position (digit written)".into(),
                row_labels: output
                    .iter()
                    .enumerate()
                    .map(|(i, d)| format!("{i}: {d}"))
                    .collect(),
                col_labels: input
                    .iter()
                    .enumerate()
                    .map(|(j, d)| format!("{j}: {d}"))
                    .collect(),
                values: (0..len)
                    .map(|i| (0..len).map(|j| f64::from(w[[0, h, i, j]])).collect())
                    .collect(),
                log_shade: false,
                decimals: 1,
            },
        });
    }
}
// ANCHOR_END: cross_attention_map
