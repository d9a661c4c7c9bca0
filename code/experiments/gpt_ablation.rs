//! Experiment `gpt_ablation`: the GPT of section 11.3 against one change of one
//! component at a time (no position embedding, post-LN with and without a learning-rate
//! warm-up, one head instead of four, no residual connections), on the same data, steps,
//! optimiser and seeds; then what the attention heads of the trained reference model do.
//!
//! Every variant trains as `gpt_shakespeare` does ([`train_warm`]): batches of windows at
//! random positions of the first 90 % of Tiny Shakespeare, AdamW, the gradient norm
//! clipped, a seed fixing the initialisation and the windows. The validation loss is
//! measured on the same fixed windows of the last 10 % for every variant.
//!
//! The reference model of the first seed is then read on validation text: its attention
//! weights on one short passage, drawn per block and head, and, over whole validation
//! windows, the share of each head's weight on the previous character, on the character
//! itself, on the window's first character and on spaces and line breaks, next to what a
//! head spreading its weight uniformly over the keys it may see would give.

use anyhow::{ensure, Result};
use candle_core::{Device, Tensor};
use ndarray::{s, Array4, ArrayView4};
use serde::Serialize;

use super::common::{band_series, over_seeds};
use super::gpt_shakespeare::{train_warm, TrainConfig};
use super::{Experiment, Preset};
use crate::data::{data_ref, DataDir};
use crate::gpt::kernels::gelu_keep_slope;
use crate::gpt::{Gpt, GptConfig, Norm};
use crate::report::{
    attention_figure, col, Figure, Format, Plot, Report, Scale, Table, Value,
};
use crate::seq::text::{validation_batches, CharCorpus, TINY_SHAKESPEARE};

/// Experiment `gpt_ablation`, registered in [`super::all`].
pub struct GptAblation;

impl Experiment for GptAblation {
    const NAME: &'static str = "gpt_ablation";
    const CHAPTER: &'static str = "ch11";
    const TITLE: &'static str =
        "The GPT's ablations on Tiny Shakespeare, and the attention heads of the trained model";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// One model of the ablation: the reference with some components changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Variant {
    /// Its name in tables and figures.
    pub name: String,
    /// Its key in the facts (`val_<key>`).
    pub key: String,
    /// Learned position embeddings.
    pub positions: bool,
    /// Pre-LN or post-LN.
    pub norm: Norm,
    /// Heads per block (`None`: the training configuration's).
    pub n_heads: Option<usize>,
    /// Residual connections.
    pub residual: bool,
    /// Steps of linear learning-rate warm-up (0: none).
    pub warmup: usize,
}

impl Variant {
    /// The reference: positions, pre-LN, the configured heads, residuals, no warm-up.
    pub fn reference() -> Self {
        Variant {
            name: "reference".into(),
            key: "reference".into(),
            positions: true,
            norm: Norm::Pre,
            n_heads: None,
            residual: true,
            warmup: 0,
        }
    }

    /// The model of this variant for `train` on a vocabulary of `vocab_size`.
    pub fn model(&self, train: &TrainConfig, vocab_size: usize) -> GptConfig {
        GptConfig {
            positions: self.positions,
            norm: self.norm,
            n_heads: self.n_heads.unwrap_or(train.n_heads),
            residual: self.residual,
            ..train.model(vocab_size)
        }
    }

    /// The reference with `change` applied, called `name` (`key` in the facts).
    fn changed(name: &str, key: &str, change: impl FnOnce(&mut Variant)) -> Self {
        let mut v = Variant {
            name: name.into(),
            key: key.into(),
            ..Self::reference()
        };
        change(&mut v);
        v
    }

    /// The reference and its five changes, with a warm-up of `warmup` steps for the
    /// post-LN variant that has one.
    pub fn all(warmup: usize) -> Vec<Variant> {
        vec![
            Self::reference(),
            Self::changed("no positions", "no_positions", |v| v.positions = false),
            Self::changed("post-LN", "post_ln", |v| v.norm = Norm::Post),
            Self::changed("post-LN, warm-up", "post_ln_warmup", |v| {
                v.norm = Norm::Post;
                v.warmup = warmup;
            }),
            Self::changed("1 head", "one_head", |v| v.n_heads = Some(1)),
            Self::changed("no residuals", "no_residual", |v| v.residual = false),
        ]
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The reference model and its training (every variant trains so).
    pub train: TrainConfig,
    /// One training run of every variant each.
    pub seeds: Vec<u64>,
    /// The variants, the reference first.
    pub variants: Vec<Variant>,
    /// The passage of the validation text whose attention weights are drawn.
    pub map_text: String,
    /// Validation batches over which the heads' shares are measured.
    pub share_batches: usize,
}

impl Preset for Config {
    /// The book's configuration: the reference model and optimiser, 250 steps, two
    /// seeds, a warm-up of 50 steps for the post-LN variant that has one. Twelve runs
    /// of the reference model on two shared cores: 250 steps each is what fits in
    /// about 25 minutes.
    fn full() -> Self {
        Config {
            train: TrainConfig {
                steps: 250,
                eval_every: 25,
                val_batches: 6,
                ..TrainConfig::reference()
            },
            seeds: vec![0, 1],
            variants: Variant::all(50),
            map_text: "BAPTISTA:\nWhen will he be here?\n".into(),
            share_batches: 4,
        }
    }

    /// The test configuration: the tiny model of `gpt_shakespeare`'s quick preset, 60
    /// steps, two seeds.
    fn quick() -> Self {
        Config {
            train: TrainConfig::tiny(),
            variants: Variant::all(20),
            share_batches: 2,
            ..Self::full()
        }
    }
}

/// What one run of one variant gave.
struct Outcome {
    steps: Vec<f64>,
    val_loss: Vec<f64>,
    train_loss: f64,
    /// The trained model, kept for the reference's first seed only.
    model: Option<Gpt>,
}

// ANCHOR: shares
/// The mean weight each head puts on the keys `pick(window, query, key)` selects, over
/// every query of every window but the first position (whose only key is itself):
/// one number per head.
///
/// # Shapes
/// - `att`: `(b, heads, t, t)`, causal attention weights.
pub fn mean_share(att: ArrayView4<f32>, pick: impl Fn(usize, usize, usize) -> bool) -> Vec<f64> {
    let (b, h, t, t2) = att.dim();
    assert!(t == t2 && t >= 2, "mean_share: weights (b, h, t, t) with t >= 2, got {:?}", att.dim());
    (0..h)
        .map(|head| {
            let mut total = 0.0;
            for i in 0..b {
                for q in 1..t {
                    total += (0..=q)
                        .filter(|&k| pick(i, q, k))
                        .map(|k| f64::from(att[[i, head, q, k]]))
                        .sum::<f64>();
                }
            }
            total / (b * (t - 1)) as f64
        })
        .collect()
}

/// The weights of a head that spreads its weight uniformly over the keys it may see:
/// $1/(q + 1)$ on keys $0..=q$.
///
/// # Shapes
/// - output: `(b, heads, t, t)`.
pub fn uniform_causal(b: usize, heads: usize, t: usize) -> Array4<f32> {
    Array4::from_shape_fn((b, heads, t, t), |(_, _, q, k)| {
        if k <= q {
            1.0 / (q + 1) as f32
        } else {
            0.0
        }
    })
}
// ANCHOR_END: shares

/// What the heads' shares measure: a name, a fact key, and which keys each picks given
/// the windows' characters `chars[window][position]`.
type Measure<'a> = (&'a str, &'a str, Box<dyn Fn(usize, usize, usize) -> bool + 'a>);

/// A key selector, boxed.
fn picker<'a>(f: impl Fn(usize, usize, usize) -> bool + 'a) -> Box<dyn Fn(usize, usize, usize) -> bool + 'a> {
    Box::new(f)
}

fn measures(chars: &[Vec<char>]) -> Vec<Measure<'_>> {
    vec![
        ("previous character", "previous", picker(|_, q, k| k + 1 == q)),
        ("itself", "itself", picker(|_, q, k| k == q)),
        ("first position", "first", picker(|_, _, k| k == 0)),
        (
            "spaces and line breaks",
            "space",
            picker(move |i, _, k| matches!(chars[i][k], ' ' | '\n')),
        ),
    ]
}

/// The largest gap between the tanh approximation of the GELU (the kernel's) and the
/// exact $x \Phi(x)$ (candle's `gelu_erf`, in `f64`) on a grid of `[-8, 8]`, and where.
pub fn gelu_gap() -> Result<(f64, f64)> {
    let xs: Vec<f64> = (0..=16_000).map(|i| -8.0 + i as f64 * 1e-3).collect();
    let exact = Tensor::new(xs.as_slice(), &Device::Cpu)?
        .gelu_erf()?
        .to_vec1::<f64>()?;
    let mut slope: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
    let mut approx = vec![0.0f32; xs.len()];
    gelu_keep_slope(&mut slope, &mut approx);
    let (mut gap, mut at) = (0.0f64, 0.0f64);
    for ((x, e), a) in xs.iter().zip(&exact).zip(&approx) {
        let d = (f64::from(*a) - e).abs();
        if d > gap {
            (gap, at) = (d, *x);
        }
    }
    Ok((gap, at))
}

/// A character as an axis label: a space as `␣`, a line break as `↵`.
fn label(c: char) -> String {
    match c {
        ' ' => "␣".into(),
        '\n' => "↵".into(),
        c => c.to_string(),
    }
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let corpus = CharCorpus::tiny_shakespeare(dir)?;
    let t = &cfg.train;
    let val = validation_batches(&corpus.valid, t.batch_size, t.seq_len, t.val_batches)?;
    ensure!(
        cfg.variants.first() == Some(&Variant::reference()),
        "the first variant must be the reference"
    );
    r.seeds = cfg.seeds.clone();
    r.data = vec![data_ref(TINY_SHAKESPEARE)];
    let v = corpus.vocab.len();
    r.fact("steps", t.steps as f64, Format::Int);
    r.fact("n_seeds", cfg.seeds.len() as f64, Format::Int);
    r.fact(
        "val_chars_scored",
        (val.len() * t.batch_size * t.seq_len) as f64,
        Format::Int,
    );
    let warmup = cfg.variants.iter().map(|x| x.warmup).max().unwrap_or(0);
    r.fact("warmup", warmup as f64, Format::Int);

    // ANCHOR: variants
    let mut runs: Vec<Vec<Outcome>> = vec![];
    for (k, variant) in cfg.variants.iter().enumerate() {
        let model = variant.model(t, v);
        let what = format!("gpt_ablation: {}", variant.name);
        runs.push(over_seeds(&what, &cfg.seeds, |seed| {
            let run = train_warm(t, &model, &corpus, &val, seed, variant.warmup);
            let keep = k == 0 && seed == cfg.seeds[0];
            Outcome {
                steps: run.steps,
                val_loss: run.val_loss,
                train_loss: run.train_loss,
                model: keep.then_some(run.model),
            }
        }));
    }
    // ANCHOR_END: variants
    let last = |o: &Outcome| *o.val_loss.last().expect("validated");
    let finals: Vec<Vec<f64>> = runs.iter().map(|os| os.iter().map(last).collect()).collect();
    let mean = |x: &[f64]| Value::mean_std(x).0;
    let mut rows = vec![];
    for (k, variant) in cfg.variants.iter().enumerate() {
        let gap = mean(&finals[k]) - mean(&finals[0]);
        r.fact(
            &format!("val_{}", variant.key),
            Value::Seeds(finals[k].clone()),
            Format::Fixed(3),
        );
        r.fact(&format!("gap_{}", variant.key), gap, Format::Fixed(3));
        rows.push(vec![
            Value::from(variant.name.as_str()),
            Value::Num(variant.model(t, v).n_params() as f64),
            Value::Seeds(finals[k].clone()),
            Value::Num(gap),
            Value::Seeds(runs[k].iter().map(|o| o.train_loss).collect()),
        ]);
    }
    r.tables.push(Table {
        name: "ablation".into(),
        caption: format!(
            "Validation loss (nats per character on {} fixed windows of {} characters) \
             after {} steps of batches of {} windows, AdamW η = {} (post-LN, warm-up: \
             rising linearly over the first {} steps), weight decay {}, clip {}, and its gap \
             to the reference ({} blocks, {} heads, d = {}, pre-LN); training loss: the \
             mean of the last {} steps; mean ± std over seeds {:?}.",
            val.len() * t.batch_size,
            t.seq_len,
            t.steps,
            t.batch_size,
            t.lr,
            warmup,
            t.weight_decay,
            t.clip,
            t.n_layers,
            t.n_heads,
            t.d_model,
            t.eval_every,
            cfg.seeds
        ),
        columns: vec![
            col("variant", Format::Int),
            col("parameters", Format::Int),
            col("validation loss", Format::Fixed(3)),
            col("gap to reference", Format::Fixed(3)),
            col("training loss", Format::Fixed(3)),
        ],
        rows,
    });
    let series = cfg
        .variants
        .iter()
        .zip(&runs)
        .map(|(variant, os)| {
            let curves: Vec<&[f64]> = os.iter().map(|o| o.val_loss.as_slice()).collect();
            band_series(variant.name.as_str(), &os[0].steps, &curves)
        })
        .collect();
    r.figures.push(Figure {
        name: "curves".into(),
        title: format!(
            "Validation loss of each variant ± std over {} seeds",
            cfg.seeds.len()
        ),
        plot: Plot::Lines {
            x_label: "training step".into(),
            y_label: "validation loss (nats/char)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series,
        },
    });

    // The attention of the reference model of the first seed.
    let model = runs[0][0].model.as_mut().expect("the reference's first run is kept");
    attention(cfg, &corpus, model, r)?;

    let (gap, at) = gelu_gap()?;
    r.fact("gelu_max_gap", gap, Format::Sci(1));
    r.fact("gelu_gap_at", at, Format::Fixed(2));
    Ok(())
}

/// The attention maps of `model` on the passage, and the heads' shares over validation
/// windows.
fn attention(cfg: &Config, corpus: &CharCorpus, model: &mut Gpt, r: &mut Report) -> Result<()> {
    let t = &cfg.train;
    let ids = corpus.vocab.encode(&cfg.map_text)?;
    ensure!(
        ids.len() <= t.seq_len,
        "the passage has {} characters, the context {}",
        ids.len(),
        t.seq_len
    );
    ensure!(
        corpus.valid.windows(ids.len()).any(|w| w == ids.as_slice()),
        "the passage {:?} is not in the validation text",
        cfg.map_text
    );
    let x = ndarray::ArrayD::from_shape_vec(
        ndarray::IxDyn(&[1, ids.len()]),
        ids.iter().map(|&i| i as f32).collect(),
    )?;
    let labels: Vec<String> = cfg.map_text.chars().map(label).collect();
    for (l, w) in model.attention_weights(&x).iter().enumerate() {
        r.figures.push(attention_figure(
            &format!("attention_block{l}"),
            &format!(
                "Block {l} of the trained reference (seed {}): each head's weights on a \
                 validation passage (↵ a line break, ␣ a space)",
                cfg.seeds[0]
            ),
            w.slice(s![0, .., .., ..]),
            &labels,
            &labels,
        ));
    }

    // Shares over whole validation windows.
    let batches = validation_batches(&corpus.valid, t.batch_size, t.seq_len, cfg.share_batches)?;
    let heads = model.cfg.n_heads;
    let n_layers = model.cfg.n_layers;
    let mut sums = vec![vec![vec![0.0f64; heads]; 4]; n_layers];
    let mut uniform = [0.0f64; 4];
    for batch in &batches {
        let chars: Vec<Vec<char>> = batch
            .x
            .outer_iter()
            .map(|row| {
                let ids: Vec<u32> = row.iter().map(|&v| v as u32).collect();
                corpus.vocab.decode(&ids).chars().collect()
            })
            .collect();
        let ms = measures(&chars);
        let weights = model.attention_weights(&batch.x);
        let flat = uniform_causal(chars.len(), 1, t.seq_len);
        for (m, (_, _, pick)) in ms.iter().enumerate() {
            uniform[m] += mean_share(flat.view(), pick)[0];
            for (l, w) in weights.iter().enumerate() {
                for (h, s) in mean_share(w.view(), pick).into_iter().enumerate() {
                    sums[l][m][h] += s;
                }
            }
        }
    }
    let nb = batches.len() as f64;
    let names = measures(&[]);
    let mut rows = vec![];
    for (l, by_measure) in sums.iter().enumerate() {
        for h in 0..heads {
            let mut row = vec![Value::from(format!("block {l}, head {h}"))];
            row.extend(by_measure.iter().map(|per_head| Value::Num(per_head[h] / nb)));
            rows.push(row);
        }
    }
    let mut row = vec![Value::from("uniform over the keys seen")];
    row.extend(uniform.iter().map(|u| Value::Num(u / nb)));
    rows.push(row);
    for (m, (_, key, _)) in names.iter().enumerate() {
        let best = sums
            .iter()
            .flat_map(|by_measure| by_measure[m].iter())
            .map(|s| s / nb)
            .fold(0.0f64, f64::max);
        r.fact(&format!("max_{key}"), best, Format::Percent(0));
        r.fact(&format!("uniform_{key}"), uniform[m] / nb, Format::Percent(0));
    }
    r.tables.push(Table {
        name: "heads".into(),
        caption: format!(
            "The share of each head's weight (trained reference, seed {}) on each kind of \
             key, averaged over every query but the first of {} validation windows of {} \
             characters; the last row is a head that spreads its weight uniformly over the \
             keys it may see.",
            cfg.seeds[0],
            batches.len() * t.batch_size,
            t.seq_len
        ),
        columns: std::iter::once(col("head", Format::Int))
            .chain(names.iter().map(|(name, _, _)| col(name, Format::Percent(0))))
            .collect(),
        rows,
    });
    Ok(())
}
