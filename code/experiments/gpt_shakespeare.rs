//! Experiment `gpt_shakespeare`: the GPT of section 11.3 trained from scratch on Tiny
//! Shakespeare, character level, over several seeds, and text sampled from it.
//!
//! The full preset is the reference configuration ([`GptConfig::reference`]: 4 blocks,
//! 4 heads, $d = 128$, context 128, pre-LN, tied embeddings) trained for 2,000 steps of
//! batches of 32 windows at random positions of the first 90 % of the text, AdamW
//! ($\eta = 10^{-3}$, $\beta = (0.9, 0.99)$, weight decay 0.1 on the matrices), the
//! global gradient norm clipped to 1. Every `eval_every` steps the model scores the same
//! fixed validation batches (consecutive windows of the last 10 %). A seed fixes the
//! initialization and the windows drawn. The first seed's model then writes text from
//! one prompt with one sampling seed, with the KV cache.

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::common::{band_series, over_seeds};
use super::{Experiment, Preset};
use crate::data::{data_ref, DataDir};
use crate::gpt::{train_step, Gpt, GptConfig, GptOptimizer, Norm, Sampling};
use crate::nn::Module;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Table, Value};
use crate::seq::text::{random_batch, validation_batches, Batch, CharCorpus, TINY_SHAKESPEARE};

/// Experiment `gpt_shakespeare`, registered in [`super::all`].
pub struct GptShakespeare;

impl Experiment for GptShakespeare {
    const NAME: &'static str = "gpt_shakespeare";
    const CHAPTER: &'static str = "ch11";
    const TITLE: &'static str =
        "A character-level GPT on Tiny Shakespeare: validation loss and samples";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// How to train: the model's sizes and the optimizer's settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainConfig {
    /// Blocks.
    pub n_layers: usize,
    /// Heads per block.
    pub n_heads: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Characters per window (the context).
    pub seq_len: usize,
    /// Windows per batch.
    pub batch_size: usize,
    /// AdamW's learning rate.
    pub lr: f32,
    /// AdamW's $\beta_2$.
    pub beta2: f32,
    /// Weight decay of the matrices.
    pub weight_decay: f32,
    /// Global gradient-norm clip.
    pub clip: f32,
    /// Training steps.
    pub steps: usize,
    /// Steps between two validations.
    pub eval_every: usize,
    /// Validation batches (at most; as many as the validation text holds).
    pub val_batches: usize,
}

impl TrainConfig {
    /// The reference training: 2,000 steps, validation every 250 on 20 batches.
    pub fn reference() -> Self {
        let m = GptConfig::reference(65);
        TrainConfig {
            n_layers: m.n_layers,
            n_heads: m.n_heads,
            d_model: m.d_model,
            seq_len: m.seq_len,
            batch_size: 32,
            lr: 1e-3,
            beta2: 0.99,
            weight_decay: 0.1,
            clip: 1.0,
            steps: 2000,
            eval_every: 250,
            val_batches: 20,
        }
    }

    /// A model of a few thousand parameters trained for 60 steps: seconds.
    pub fn tiny() -> Self {
        TrainConfig {
            n_layers: 2,
            n_heads: 2,
            d_model: 32,
            seq_len: 32,
            batch_size: 8,
            lr: 3e-3,
            steps: 60,
            eval_every: 20,
            val_batches: 2,
            ..Self::reference()
        }
    }

    /// The model's configuration on a vocabulary of `vocab_size`.
    pub fn model(&self, vocab_size: usize) -> GptConfig {
        GptConfig {
            vocab_size,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            d_model: self.d_model,
            seq_len: self.seq_len,
            positions: true,
            norm: Norm::Pre,
            residual: true,
        }
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The model and its training.
    pub train: TrainConfig,
    /// One training run each.
    pub seeds: Vec<u64>,
    /// The text the samples start from.
    pub prompt: String,
    /// Characters per sample.
    pub sample_chars: usize,
    /// Seed of the sampling generator.
    pub sample_seed: u64,
    /// The temperatures and top-k values sampled.
    pub samples: Vec<Sampling>,
}

impl Preset for Config {
    /// The book's configuration: the reference model and training (2,000 steps), three
    /// seeds.
    fn full() -> Self {
        let spec = |temperature, top_k| Sampling { temperature, top_k };
        Config {
            train: TrainConfig::reference(),
            seeds: vec![0, 1, 2],
            prompt: "ROMEO:".into(),
            sample_chars: 300,
            sample_seed: 0,
            samples: vec![spec(0.0, None), spec(0.8, Some(10)), spec(1.0, None)],
        }
    }

    /// The test configuration: a tiny model, 60 steps, two seeds.
    fn quick() -> Self {
        Config {
            train: TrainConfig::tiny(),
            seeds: vec![0, 1],
            sample_chars: 40,
            ..Self::full()
        }
    }
}

/// The validation loss of one run at steps `0, eval_every, ...` (and at the last step),
/// and its model.
pub struct Run {
    /// Steps of the validations.
    pub steps: Vec<f64>,
    /// Validation loss, nats per character, at each.
    pub val_loss: Vec<f64>,
    /// Mean training loss of the last `eval_every` steps.
    pub train_loss: f64,
    /// The trained model.
    pub model: Gpt,
}

// ANCHOR: train_gpt
/// Trains a model of `cfg` (with switches `model`) with `seed` on `corpus`, validating
/// on `val`.
pub fn train_one(
    cfg: &TrainConfig,
    model: &GptConfig,
    corpus: &CharCorpus,
    val: &[Batch],
    seed: u64,
) -> Run {
    train_warm(cfg, model, corpus, val, seed, 0)
}

/// [`train_one`] with the learning rate rising linearly over the first `warmup` steps,
/// $\eta_s = \eta \min(1, s / w)$ at step $s$ (none for `warmup = 0`).
pub fn train_warm(
    cfg: &TrainConfig,
    model: &GptConfig,
    corpus: &CharCorpus,
    val: &[Batch],
    seed: u64,
    warmup: usize,
) -> Run {
    let mut gpt = Gpt::new(model, seed);
    let mut opt = GptOptimizer::new(cfg.lr, cfg.beta2, cfg.weight_decay, Some(cfg.clip));
    // The windows' stream is apart from the initialization's.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let (mut steps, mut val_loss) = (vec![0.0], vec![gpt.mean_loss(val)]);
    let mut recent = vec![];
    for step in 1..=cfg.steps {
        if step <= warmup {
            opt.set_lr(cfg.lr * step as f32 / warmup as f32);
        }
        let batch = random_batch(&corpus.train, cfg.batch_size, cfg.seq_len, &mut rng);
        let stats = train_step(&mut gpt, &mut opt, &batch);
        recent.push(f64::from(stats.loss));
        if recent.len() > cfg.eval_every {
            recent.remove(0);
        }
        if step % cfg.eval_every == 0 || step == cfg.steps {
            steps.push(step as f64);
            val_loss.push(gpt.mean_loss(val));
        }
    }
    let train_loss = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
    Run {
        steps,
        val_loss,
        train_loss,
        model: gpt,
    }
}
// ANCHOR_END: train_gpt

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let corpus = CharCorpus::tiny_shakespeare(dir)?;
    let t = &cfg.train;
    let val = validation_batches(&corpus.valid, t.batch_size, t.seq_len, t.val_batches)?;
    r.seeds = cfg.seeds.clone();
    r.data = vec![data_ref(TINY_SHAKESPEARE)];
    let v = corpus.vocab.len();
    let mcfg = t.model(v);
    r.fact("vocab_size", v as f64, Format::Int);
    r.fact("ln_vocab", (v as f64).ln(), Format::Fixed(3));
    r.fact("n_params", mcfg.n_params() as f64, Format::Int);
    r.fact(
        "val_chars_scored",
        (val.len() * t.batch_size * t.seq_len) as f64,
        Format::Int,
    );
    r.fact("steps", t.steps as f64, Format::Int);
    let tokens = t.steps * t.batch_size * t.seq_len;
    r.fact("train_tokens", tokens as f64, Format::Int);
    let mut runs = over_seeds("gpt_shakespeare", &cfg.seeds, |seed| {
        train_one(t, &mcfg, &corpus, &val, seed)
    });
    let built = runs[0].model.n_params();
    anyhow::ensure!(
        built == mcfg.n_params(),
        "the model has {built} parameters, the formula says {}",
        mcfg.n_params()
    );
    let per_seed = |f: &dyn Fn(&Run) -> f64| Value::Seeds(runs.iter().map(f).collect());
    r.fact("initial_val_loss", per_seed(&|x| x.val_loss[0]), Format::Fixed(3));
    let last = |x: &Run| *x.val_loss.last().expect("validated");
    r.fact("final_val_loss", per_seed(&last), Format::Fixed(3));
    r.fact("final_train_loss", per_seed(&|x| x.train_loss), Format::Fixed(3));
    r.fact(
        "final_val_bits",
        per_seed(&|x| last(x) / std::f64::consts::LN_2),
        Format::Fixed(3),
    );

    let steps = runs[0].steps.clone();
    let curves: Vec<&[f64]> = runs.iter().map(|x| x.val_loss.as_slice()).collect();
    let rows = steps
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            vec![
                Value::Num(s),
                Value::Seeds(curves.iter().map(|c| c[i]).collect()),
            ]
        })
        .collect();
    r.tables.push(Table {
        name: "curve".into(),
        caption: format!(
            "Validation loss (nats per character on {} fixed windows of {} characters) \
             during training: {} blocks, {} heads, d = {}, batch {}, AdamW η = {}, \
             weight decay {}, clip {}; mean ± std over seeds {:?}.",
            val.len() * t.batch_size,
            t.seq_len,
            t.n_layers,
            t.n_heads,
            t.d_model,
            t.batch_size,
            t.lr,
            t.weight_decay,
            t.clip,
            cfg.seeds
        ),
        columns: vec![col("step", Format::Int), col("validation loss", Format::Fixed(3))],
        rows,
    });
    r.figures.push(Figure {
        name: "curve".into(),
        title: format!("Validation loss ± std over {} seeds", cfg.seeds.len()),
        plot: Plot::Lines {
            x_label: "training step".into(),
            y_label: "validation loss (nats/char)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![band_series("GPT", &steps, &curves)],
        },
    });

    // Samples from the first seed's model, with the KV cache.
    let model = &mut runs[0].model;
    let prompt = corpus.vocab.encode(&cfg.prompt)?;
    let prompt: Vec<usize> = prompt.iter().map(|&i| i as usize).collect();
    let mut rows = vec![];
    for spec in &cfg.samples {
        let ids = model.generate(&prompt, cfg.sample_chars, *spec, cfg.sample_seed);
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        let shown = format!("{}{}", cfg.prompt, corpus.vocab.decode(&ids))
            .replace('\n', " ↵ ")
            .replace('|', "¦");
        rows.push(vec![
            Value::Num(f64::from(spec.temperature)),
            Value::from(spec.top_k.map_or("all".to_string(), |k| k.to_string())),
            Value::from(shown),
        ]);
    }
    r.tables.push(Table {
        name: "samples".into(),
        caption: format!(
            "{} characters generated after the prompt {:?} by the model of seed {} \
             (sampling seed {}, KV cache); ↵ marks a line break. Temperature 0 is the \
             most likely character at every step.",
            cfg.sample_chars, cfg.prompt, cfg.seeds[0], cfg.sample_seed
        ),
        columns: vec![
            col("temperature", Format::Fixed(1)),
            col("top-k", Format::Int),
            col("sample", Format::Int),
        ],
        rows,
    });
    Ok(())
}
