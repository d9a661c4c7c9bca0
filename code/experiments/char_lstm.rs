//! Experiment `char_lstm`: a character-level LSTM language model on Tiny Shakespeare,
//! over several seeds, and text sampled from it.
//!
//! The model and training are the reference configuration of section 9.3:
//! `Embedding(65, 64) -> LSTM(256) -> Linear(256 -> 65)`, windows of 100 characters at
//! random positions of the first 90 % of the text, batches of 32, Adam with learning rate
//! $2 \cdot 10^{-3}$, the global gradient norm clipped to 1, cross-entropy per
//! character. Every `eval_every` steps the model scores the fixed validation batches
//! (consecutive windows of the last 10 %, each from a zero state). A seed fixes the
//! initialization and the windows drawn. The first seed's model then writes text at
//! several temperatures and top-k values, from one prompt and one sampling seed.

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::common::{band_series, over_seeds};
use super::{Experiment, Preset};
use crate::data::{data_ref, DataDir};
use crate::optim::Adam;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Table, Value};
use crate::seq::text::{
    generate, random_batch, train_step, validation_batches, CharCorpus, CharLstm,
    CharLstmConfig, SampleSpec, TINY_SHAKESPEARE,
};

/// Experiment `char_lstm`, registered in [`super::all`].
pub struct CharLstmExperiment;

impl Experiment for CharLstmExperiment {
    const NAME: &'static str = "char_lstm";
    const CHAPTER: &'static str = "ch09";
    const TITLE: &'static str =
        "A character-level LSTM on Tiny Shakespeare: validation loss and samples";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Embedding width.
    pub d_embed: usize,
    /// LSTM hidden width.
    pub hidden: usize,
    /// Windows per batch.
    pub batch_size: usize,
    /// Characters per window.
    pub seq_len: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// Global gradient-norm clip.
    pub clip: f32,
    /// Training steps.
    pub steps: usize,
    /// Steps between two validations.
    pub eval_every: usize,
    /// Validation batches (at most; as many as the validation text holds).
    pub val_batches: usize,
    /// One training run each.
    pub seeds: Vec<u64>,
    /// The text the samples start from.
    pub prompt: String,
    /// Characters per sample.
    pub sample_chars: usize,
    /// Seed of the sampling generator.
    pub sample_seed: u64,
    /// The temperatures and top-k values sampled.
    pub samples: Vec<SampleSpec>,
    /// Characters of the validation passage whose gates the figure shows.
    pub gate_chars: usize,
    /// Hidden units in that figure.
    pub gate_units: usize,
}

impl Preset for Config {
    /// The book's configuration: the reference model, 2,000 steps, three seeds.
    fn full() -> Self {
        let spec = |temperature, top_k| SampleSpec { temperature, top_k };
        Config {
            d_embed: 64,
            hidden: 256,
            batch_size: 32,
            seq_len: 100,
            lr: 2e-3,
            clip: 1.0,
            steps: 2000,
            eval_every: 100,
            val_batches: 34,
            seeds: vec![0, 1, 2],
            prompt: "ROMEO:".into(),
            sample_chars: 240,
            sample_seed: 0,
            samples: vec![
                spec(0.0, None),
                spec(0.5, None),
                spec(0.8, Some(10)),
                spec(1.0, None),
                spec(1.0, Some(5)),
            ],
            gate_chars: 40,
            gate_units: 4,
        }
    }

    /// The test configuration: a small model, short windows, 60 steps, two seeds.
    fn quick() -> Self {
        Config {
            d_embed: 16,
            hidden: 32,
            batch_size: 8,
            seq_len: 32,
            steps: 60,
            eval_every: 20,
            val_batches: 2,
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
    pub model: CharLstm,
}

// ANCHOR: train_char_lstm
/// Trains the model of `cfg` with `seed` on `corpus`, validating on `val`.
pub fn train_one(
    cfg: &Config,
    corpus: &CharCorpus,
    val: &[crate::seq::text::Batch],
    seed: u64,
) -> Run {
    let mcfg = CharLstmConfig {
        vocab_size: corpus.vocab.len(),
        d_embed: cfg.d_embed,
        hidden: cfg.hidden,
    };
    let mut model = CharLstm::new(&mcfg, seed);
    let mut opt = Adam::new(cfg.lr);
    // The windows' stream is apart from the initialization's.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let (mut steps, mut val_loss) = (vec![0.0], vec![model.mean_loss(val)]);
    let mut recent = vec![];
    for step in 1..=cfg.steps {
        let batch = random_batch(&corpus.train, cfg.batch_size, cfg.seq_len, &mut rng);
        let stats = train_step(&mut model, &mut opt, &batch, Some(cfg.clip));
        recent.push(f64::from(stats.loss));
        if recent.len() > cfg.eval_every {
            recent.remove(0);
        }
        if step % cfg.eval_every == 0 || step == cfg.steps {
            steps.push(step as f64);
            val_loss.push(model.mean_loss(val));
        }
    }
    let train_loss = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
    Run {
        steps,
        val_loss,
        train_loss,
        model,
    }
}
// ANCHOR_END: train_char_lstm

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let corpus = CharCorpus::tiny_shakespeare(dir)?;
    let val =
        validation_batches(&corpus.valid, cfg.batch_size, cfg.seq_len, cfg.val_batches)?;
    r.seeds = cfg.seeds.clone();
    r.data = vec![data_ref(TINY_SHAKESPEARE)];
    let v = corpus.vocab.len();
    r.fact("vocab_size", v as f64, Format::Int);
    r.fact("ln_vocab", (v as f64).ln(), Format::Fixed(3));
    r.fact("train_chars", corpus.train.len() as f64, Format::Int);
    r.fact("valid_chars", corpus.valid.len() as f64, Format::Int);
    r.fact(
        "val_chars_scored",
        (val.len() * cfg.batch_size * cfg.seq_len) as f64,
        Format::Int,
    );
    let mut runs = over_seeds("char_lstm", &cfg.seeds, |seed| {
        train_one(cfg, &corpus, &val, seed)
    });
    let n_params = {
        use crate::nn::Module;
        runs[0].model.n_params()
    };
    r.fact("n_params", n_params as f64, Format::Int);
    let per_seed = |f: &dyn Fn(&Run) -> f64| Value::Seeds(runs.iter().map(f).collect());
    r.fact(
        "initial_val_loss",
        per_seed(&|x| x.val_loss[0]),
        Format::Fixed(3),
    );
    let last = |x: &Run| *x.val_loss.last().expect("validated");
    r.fact("final_val_loss", per_seed(&last), Format::Fixed(3));
    r.fact(
        "final_train_loss",
        per_seed(&|x| x.train_loss),
        Format::Fixed(3),
    );
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
             during training: embedding {}, LSTM {}, batch {}, Adam η = {}, clip {}; mean \
             ± std over seeds {:?}.",
            val.len() * cfg.batch_size,
            cfg.seq_len,
            cfg.d_embed,
            cfg.hidden,
            cfg.batch_size,
            cfg.lr,
            cfg.clip,
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
            series: vec![band_series("char LSTM", &steps, &curves)],
        },
    });

    gate_figure(cfg, &corpus, &mut runs[0].model, r)?;

    // Samples from the first seed's model.
    let model = &mut runs[0].model;
    let mut rows = vec![];
    for spec in &cfg.samples {
        let text = generate(
            model,
            &corpus.vocab,
            &cfg.prompt,
            cfg.sample_chars,
            *spec,
            cfg.sample_seed,
        )?;
        let shown = format!("{}{}", cfg.prompt, text)
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
             (sampling seed {}); ↵ marks a line break. Temperature 0 is the most likely \
             character at every step.",
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

/// The first seed's gates over a validation passage: the `gate_chars` characters after
/// the first blank line of the validation part, read from a zero state. The figure
/// shows the input, forget and output gates of the `gate_units` hidden units whose
/// forget gate moves most over the passage; the facts give each gate's mean over every
/// unit and character.
fn gate_figure(
    cfg: &Config,
    corpus: &CharCorpus,
    model: &mut CharLstm,
    r: &mut Report,
) -> Result<()> {
    use crate::nn::Mode;
    let newline = corpus.vocab.id('\n').ok_or_else(|| anyhow::anyhow!("no line breaks"))?;
    let start = corpus
        .valid
        .windows(2)
        .position(|w| w == [newline, newline])
        .map_or(0, |p| p + 2);
    let ids = &corpus.valid[start..(start + cfg.gate_chars).min(corpus.valid.len())];
    let x = ndarray::Array2::from_shape_fn((1, ids.len()), |(_, s)| ids[s] as f32).into_dyn();
    model.logits(&x, Mode::Eval);
    let (gates, _) = model.lstm.last_gates().expect("a forward pass just ran");
    let h = model.lstm.hidden();
    let t = ids.len();
    // gates (1, t, 4h): i, f, g, o.
    let gate = |k: usize, unit: usize, s: usize| f64::from(gates[[0, s, k * h + unit]]);
    for (k, name) in [(0, "input"), (1, "forget"), (3, "output")] {
        let mean = (0..h)
            .flat_map(|u| (0..t).map(move |s| (u, s)))
            .map(|(u, s)| gate(k, u, s))
            .sum::<f64>()
            / (h * t) as f64;
        r.fact(&format!("mean_{name}_gate"), mean, Format::Fixed(2));
    }
    let spread = |u: usize| {
        let v: Vec<f64> = (0..t).map(|s| gate(1, u, s)).collect();
        let m = v.iter().sum::<f64>() / t as f64;
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>()
    };
    let mut units: Vec<usize> = (0..h).collect();
    units.sort_by(|&a, &b| spread(b).total_cmp(&spread(a)).then(a.cmp(&b)));
    units.truncate(cfg.gate_units);
    let (mut row_labels, mut values) = (vec![], vec![]);
    for &u in &units {
        for (k, name) in [(0, "i"), (1, "f"), (3, "o")] {
            row_labels.push(format!("unit {u}: {name}"));
            values.push((0..t).map(|s| gate(k, u, s)).collect());
        }
    }
    let shown = |c: char| match c {
        '\n' => "↵".to_string(),
        ' ' => "␣".to_string(),
        c => c.to_string(),
    };
    r.figures.push(Figure {
        name: "gates".into(),
        title: format!(
            "Input (i), forget (f) and output (o) gates of the {} units whose forget \
             gate moves most, seed {}",
            cfg.gate_units, cfg.seeds[0]
        ),
        plot: Plot::Heatmap {
            x_label: "character read (validation text)".into(),
            y_label: "gate".into(),
            row_labels,
            col_labels: corpus.vocab.decode(ids).chars().map(shown).collect(),
            values,
            log_shade: false,
            decimals: 1,
        },
    });
    Ok(())
}
