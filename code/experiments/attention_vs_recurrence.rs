//! Experiment `attention_vs_recurrence`: the lookup task of
//! [`seq::lookup`](crate::seq::lookup) at growing sequence lengths $T$, for a one-block
//! attention model, an LSTM and a GRU with (as nearly as whole widths allow) the same
//! number of parameters, the same training budget and the same seeds; what each costs
//! per sequence; and what the trained attention model looks at.
//!
//! Every step draws a fresh batch; the test set is fixed (one per length, from its own
//! seed). The attention map is drawn from the first seed's model at `map_length`, and
//! the weight on the matching key is measured on that length's whole test set.

use anyhow::Result;
use ndarray::{s, Array2, Axis, Ix2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::seq::lookup::{
    attention_weights, book_cells, lookup_task, step_labels, train_lookup, weight_on_key, AttnSpec,
    Lookup, LookupModel, LookupSpec, LookupTrain, WeightsTap,
};
use crate::attn::{MhaConfig, Mask, MultiHeadAttention};
use crate::data::DataDir;
use crate::nn::{Mode, Module, Named};
use crate::report::{
    attention::AttentionPlot, attention_figure, col, Figure, Format, Plot, Report, Scale,
    Series, Table, Value,
};
use crate::rnn::memory::CellSpec;

/// Experiment `attention_vs_recurrence`, registered in [`super::all`].
pub struct AttentionVsRecurrence;

impl Experiment for AttentionVsRecurrence {
    const NAME: &'static str = "attention_vs_recurrence";
    const CHAPTER: &'static str = "ch10";
    const TITLE: &'static str =
        "Key-value lookup far back: attention against the LSTM and GRU at one parameter budget";
    type Config = Config;

    fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Sequence lengths $T$.
    pub lengths: Vec<usize>,
    /// Keys, values and pairs per sequence.
    pub task: LookupSpec,
    /// The attention model; its parameter count is the budget of the recurrent ones.
    pub attn: AttnSpec,
    /// The recurrent cells, each at the width that meets the budget.
    pub cells: Vec<CellSpec>,
    /// Steps, batch, learning rate, clipping: the same for every model.
    pub train: LookupTrain,
    /// Test sequences per length.
    pub n_test: usize,
    /// Seeds (weights and training batches).
    pub seeds: Vec<u64>,
    /// The length whose trained attention model the map shows.
    pub map_length: usize,
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            lengths: vec![16, 32, 64, 128],
            task: LookupSpec::BOOK,
            attn: AttnSpec::BOOK,
            cells: book_cells(),
            train: LookupTrain {
                steps: 700,
                batch_size: 32,
                lr: 3e-3,
                clip_norm: Some(1.0),
            },
            n_test: 300,
            seeds: vec![0, 1, 2],
            map_length: 32,
        }
    }

    /// The test configuration: two short lengths, fewer steps.
    fn quick() -> Self {
        Config {
            lengths: vec![12, 24],
            train: LookupTrain {
                steps: 150,
                ..Self::full().train
            },
            n_test: 200,
            map_length: 12,
            ..Self::full()
        }
    }
}

/// The models of `cfg`: the attention model, then each cell at the width whose parameter
/// count is closest to the attention model's.
pub fn models(cfg: &Config) -> Vec<LookupModel> {
    LookupModel::at_budget(cfg.attn, &cfg.cells, &cfg.task)
}

/// The fixed test set of length `t`.
pub fn test_set(cfg: &Config, t: usize) -> Lookup {
    lookup_task(
        cfg.n_test,
        t,
        &cfg.task,
        &mut ChaCha8Rng::seed_from_u64(20_000 + t as u64),
    )
}

/// What one trained model gives: its accuracy, and for the attention model at the map's
/// length, the weight each head puts on the matching key and the weights of block 0 on
/// the first test sequence `(heads, t, t)`.
struct Outcome {
    accuracy: f64,
    key_weight: Option<Vec<f64>>,
    map: Option<ndarray::Array3<f32>>,
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, r: &mut Report) -> Result<()> {
    r.seeds = cfg.seeds.clone();
    let models = models(cfg);
    let tests: Vec<Lookup> = cfg.lengths.iter().map(|&t| test_set(cfg, t)).collect();
    let map_l = cfg
        .lengths
        .iter()
        .position(|&t| t == cfg.map_length)
        .unwrap_or_else(|| panic!("map_length {} is not one of the lengths", cfg.map_length));
    // Longest sequences first, so the two threads finish together.
    let mut jobs: Vec<(usize, usize, usize)> = (0..models.len())
        .flat_map(|m| {
            (0..cfg.lengths.len())
                .flat_map(move |l| (0..cfg.seeds.len()).map(move |s| (m, l, s)))
        })
        .collect();
    jobs.sort_by_key(|&(_, l, _)| std::cmp::Reverse(cfg.lengths[l]));
    let bar = crate::progress::bar(jobs.len() as u64, "lookup");
    let mut outcomes: Vec<((usize, usize, usize), Outcome)> = jobs
        .par_iter()
        .map(|&(m, l, si)| {
            let (t, seed) = (cfg.lengths[l], cfg.seeds[si]);
            let max_len = cfg.lengths.iter().copied().max().unwrap_or(1);
            let (mut net, taps) = models[m].build(&cfg.task, max_len, seed);
            let test = &tests[l];
            let accuracy = train_lookup(&mut net, &cfg.train, &cfg.task, t, seed, &test.data);
            let (mut key_weight, mut map) = (None, None);
            if !taps.is_empty() && l == map_l {
                key_weight = Some(mean_key_weight(&mut net, &taps, test));
                let x0 = test.data.x.slice_axis(Axis(0), (0..1).into()).to_owned();
                let w = attention_weights(&mut net, &taps, &x0).swap_remove(0);
                let w = w.into_dimensionality::<ndarray::Ix4>().expect("(b, h, t, t)");
                map = Some(w.index_axis(Axis(0), 0).to_owned());
            }
            bar.inc(1);
            (
                (m, l, si),
                Outcome {
                    accuracy,
                    key_weight,
                    map,
                },
            )
        })
        .collect();
    bar.finish_and_clear();
    outcomes.sort_by_key(|&(job, _)| job);
    // outcomes[(m * lengths + l) * seeds + s]
    let at = |m: usize, l: usize| -> &[((usize, usize, usize), Outcome)] {
        let n = cfg.seeds.len();
        let first = (m * cfg.lengths.len() + l) * n;
        &outcomes[first..first + n]
    };
    let acc = |m: usize, l: usize| -> Vec<f64> { at(m, l).iter().map(|(_, o)| o.accuracy).collect() };
    let (d_in, n_out) = (cfg.task.n_features(), cfg.task.n_values);
    let params: Vec<usize> = models
        .iter()
        .map(|m| m.build(&cfg.task, cfg.map_length, 0).0.n_params())
        .collect();
    r.fact("chance", 1.0 / cfg.task.n_values as f64, Format::Percent(1));
    r.fact("budget", params[0] as f64, Format::Int);
    for (m, model) in models.iter().enumerate() {
        let key = model.name().split(',').next().unwrap_or("").to_lowercase();
        r.fact(&format!("params_{key}"), params[m] as f64, Format::Int);
        if let LookupModel::Recurrent(_, h) = model {
            r.fact(&format!("hidden_{key}"), *h as f64, Format::Int);
        }
        let longest = cfg.lengths.len() - 1;
        r.fact(
            &format!("accuracy_{key}_longest"),
            Value::Seeds(acc(m, longest)),
            Format::Percent(1),
        );
        r.fact(
            &format!("accuracy_{key}_shortest"),
            Value::Seeds(acc(m, 0)),
            Format::Percent(1),
        );
    }
    r.fact("longest", *cfg.lengths.last().unwrap_or(&0) as f64, Format::Int);
    r.fact("shortest", cfg.lengths[0] as f64, Format::Int);
    let budget = format!(
        "{} Adam steps (η = {}) of {} fresh sequences, gradient norm clipped at {}; {} keys, \
         {} values, {} pairs in the first half; {} test sequences per length; mean ± std \
         over {} seeds",
        cfg.train.steps,
        cfg.train.lr,
        cfg.train.batch_size,
        cfg.train.clip_norm.map_or("∞".into(), |c| c.to_string()),
        cfg.task.n_keys,
        cfg.task.n_values,
        cfg.task.n_pairs,
        cfg.n_test,
        cfg.seeds.len()
    );
    let mut columns = vec![col("model", Format::Int), col("parameters", Format::Int)];
    columns.extend(
        cfg.lengths
            .iter()
            .map(|t| col(&format!("T = {t}"), Format::Percent(1))),
    );
    let rows = models
        .iter()
        .enumerate()
        .map(|(m, model)| {
            let mut row = vec![Value::Text(model.name()), Value::Num(params[m] as f64)];
            row.extend((0..cfg.lengths.len()).map(|l| Value::Seeds(acc(m, l))));
            row
        })
        .collect();
    r.tables.push(Table {
        name: "accuracy".into(),
        caption: format!(
            "Lookup task, test accuracy by sequence length T (chance is 1 in {}): {budget}.",
            cfg.task.n_values
        ),
        columns,
        rows,
    });
    let series = models
        .iter()
        .enumerate()
        .map(|(m, model)| {
            let (y, band): (Vec<f64>, Vec<f64>) = (0..cfg.lengths.len())
                .map(|l| {
                    let a: Vec<f64> = acc(m, l).iter().map(|a| 100.0 * a).collect();
                    Value::mean_std(&a)
                })
                .unzip();
            Series {
                name: model.name(),
                x: cfg.lengths.iter().map(|&t| t as f64).collect(),
                y,
                band: Some(band),
            }
        })
        .collect();
    r.figures.push(Figure {
        name: "accuracy".into(),
        title: "Lookup far back: accuracy against sequence length".into(),
        plot: Plot::Lines {
            x_label: "sequence length T".into(),
            y_label: "test accuracy, % (mean ± std over seeds)".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
            series,
        },
    });
    // What each model costs per sequence: arithmetic, and the steps that must run in turn.
    let mut columns = vec![
        col("model", Format::Int),
        col("width", Format::Int),
        col("parameters", Format::Int),
        col("steps in sequence", Format::Int),
    ];
    columns.extend(
        cfg.lengths
            .iter()
            .map(|t| col(&format!("kFLOPs, T = {t}"), Format::Int)),
    );
    let rows = models
        .iter()
        .enumerate()
        .map(|(m, model)| {
            let steps = match model {
                LookupModel::Attention(a) => format!("{} (blocks)", a.n_layers),
                LookupModel::Recurrent(..) => "T".to_string(),
            };
            let mut row = vec![
                Value::Text(model.name()),
                Value::Num(model.width() as f64),
                Value::Num(params[m] as f64),
                Value::Text(steps),
            ];
            row.extend(
                cfg.lengths
                    .iter()
                    .map(|&t| Value::Num(model.flops(&cfg.task, t) as f64 / 1e3)),
            );
            row
        })
        .collect();
    r.tables.push(Table {
        name: "cost".into(),
        caption: format!(
            "What each model costs: width (d_model or hidden), parameters (counted on the \
             built model, {d_in} input features, {n_out} classes), how many steps must run \
             one after another, and forward thousands of FLOPs per sequence by length \
             (matrix products and biases). Measured time per training step is in the \
             benchmark `dlbook bench --name mha`."
        ),
        columns,
        rows,
    });
    for &t in &cfg.lengths {
        let ratio = models[0].flops(&cfg.task, t) as f64 / models[1].flops(&cfg.task, t) as f64;
        r.fact(&format!("flops_ratio_{t}"), ratio, Format::Fixed(2));
    }
    // What the trained attention model looks at.
    let key_weights: Vec<Vec<f64>> = at(0, map_l)
        .iter()
        .map(|(_, o)| o.key_weight.clone().expect("attention at the map length"))
        .collect();
    let best: Vec<f64> = key_weights
        .iter()
        .map(|w| w.iter().copied().fold(0.0, f64::max))
        .collect();
    r.fact("key_weight_best_head", Value::Seeds(best), Format::Fixed(3));
    r.fact("key_weight_uniform", 1.0 / cfg.map_length as f64, Format::Fixed(3));
    r.fact("map_length", cfg.map_length as f64, Format::Int);
    let map = at(0, map_l)[0].1.map.clone().expect("seed 0's map");
    let x0 = tests[map_l]
        .data
        .x
        .index_axis(Axis(0), 0)
        .to_owned()
        .into_dimensionality::<Ix2>()
        .expect("(t, features)");
    let labels = step_labels(&x0, &cfg.task);
    r.fact(
        "map_key_pos",
        tests[map_l].key_pos[0] as f64,
        Format::Int,
    );
    r.figures.push(attention_figure(
        "map",
        &format!(
            "Trained attention, T = {}, seed {}: the weights of each head on one test \
             sequence",
            cfg.map_length, cfg.seeds[0]
        ),
        map.view(),
        &labels,
        &labels,
    ));
    r.figures.push(masks_figure());
    Ok(())
}

/// The mean weight each head of block 0 puts, from the last step, on the matching key's
/// position, over the whole test set (in chunks, to bound the `(b, h, t, t)` weights).
fn mean_key_weight(
    net: &mut Named,
    taps: &[WeightsTap],
    test: &Lookup,
) -> Vec<f64> {
    let n = test.key_pos.len();
    let mut sums: Vec<f64> = vec![];
    for start in (0..n).step_by(100) {
        let end = (start + 100).min(n);
        let x = test.data.x.slice_axis(Axis(0), (start..end).into()).to_owned();
        let w = attention_weights(net, taps, &x).swap_remove(0);
        let per_head = weight_on_key(&w, &test.key_pos[start..end]);
        sums.resize(per_head.len(), 0.0);
        for (s, w) in sums.iter_mut().zip(per_head) {
            *s += w * (end - start) as f64;
        }
    }
    sums.iter().map(|s| s / n.max(1) as f64).collect()
}

/// The masks on a small example: a batch of two sequences of 6 steps, the second padded
/// after 4. Panels: the causal mask, the second sequence's padding mask, both, and the
/// weights of a (random, untrained) attention layer under both: zero wherever the mask
/// says no, each row summing to one.
pub fn masks_figure() -> Figure {
    let (t, lengths) = (6usize, [6usize, 4]);
    let causal = Mask::causal(2, t);
    let padding = Mask::padding(&lengths, t, t);
    let both = causal.and(&padding);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut mha = MultiHeadAttention::new(MhaConfig::new(8, 1), &mut rng);
    mha.causal = true; // forward_masked adds the causal mask to the padding mask
    let x = crate::nn::gradcheck::normal(&[2, t, 8], &mut rng);
    let _ = mha.forward_masked(&x, &padding, Mode::Eval);
    let w = mha
        .last_weights()
        .expect("a forward pass")
        .clone()
        .into_dimensionality::<ndarray::Ix4>()
        .expect("(b, h, t, t)");
    let as_f = |m: &Mask| -> Vec<Vec<f64>> {
        m.keep
            .slice(s![1, .., ..])
            .outer_iter()
            .map(|r| r.iter().map(|&k| f64::from(u8::from(k))).collect())
            .collect()
    };
    let weights: Array2<f32> = w.slice(s![1, 0, .., ..]).to_owned();
    let labels: Vec<String> = (0..t)
        .map(|i| {
            if i < lengths[1] {
                format!("x{i}")
            } else {
                "pad".into()
            }
        })
        .collect();
    Figure {
        name: "masks".into(),
        title: "Masks on a sequence of 4 steps padded to 6 (dark: may attend, white: masked) and the weights they leave".into(),
        plot: Plot::Attention(AttentionPlot {
            panels: vec![
                "causal".into(),
                "padding".into(),
                "causal and padding".into(),
                "weights under both".into(),
            ],
            query_labels: labels.clone(),
            key_labels: labels,
            weights: vec![
                as_f(&causal),
                as_f(&padding),
                as_f(&both),
                weights
                    .outer_iter()
                    .map(|r| r.iter().map(|&v| f64::from(v)).collect())
                    .collect(),
            ],
        }),
    }
}
