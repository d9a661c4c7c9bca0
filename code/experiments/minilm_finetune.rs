//! Experiment `minilm_finetune`: all-MiniLM-L6-v2 fine-tuned for sentence polarity
//! (Pang & Lee's Rotten Tomatoes sentences), against frozen embeddings with logistic
//! regression, against freezing the lower layers, and against the same architecture
//! trained from random initialisation. Test accuracy over seeds on one fixed split, the
//! accuracy after every epoch, and (full preset only, since times vary from run to
//! run) training sentences per second.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use serde::Serialize;

use super::{Experiment, Preset};
use crate::bench::load_average;
use crate::data::polarity::{self, LabeledText};
use crate::data::{data_ref, DataDir, Dataset};
use crate::models::bert::{self, mean_pool_normalize, BertConfig, MiniLmTokenizer};
use crate::models::bert_finetune::{
    argmax, load_weights, random_weights, FinetuneConfig, Finetuner, MiniLmClassifier, Start,
};
use crate::models::count::thousands;
use crate::optim::Adam;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::train::{fit, ClassifierLoss, TrainSpec};
use crate::transfer::folder::Head;

/// Experiment `minilm_finetune`, registered in [`super::all`].
pub struct MinilmFinetune;

impl Experiment for MinilmFinetune {
    const NAME: &'static str = "minilm_finetune";
    const CHAPTER: &'static str = "ch11";
    const TITLE: &'static str =
        "Fine-tuning all-MiniLM-L6-v2 on sentence polarity: against frozen embeddings with logistic regression, frozen lower layers, and random initialisation";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Training sentences per class (a stratified sample of the 4,000).
    pub train_per_class: usize,
    /// Test sentences per class (others).
    pub test_per_class: usize,
    /// Seed of the split (the same for every variant and seed).
    pub split_seed: u64,
    /// Training seeds: the head's initial weights, the batch order, and the random
    /// encoder's weights.
    pub seeds: Vec<u64>,
    /// Share of all sentences the token cap must cover.
    pub coverage: f64,
    /// Epochs of every fine-tuned variant.
    pub epochs: usize,
    /// Optimiser settings of the fine-tuned variants.
    pub finetune: FinetuneConfig,
    /// Lower layers frozen, one variant each (besides 0, full fine-tuning).
    pub frozen: Vec<usize>,
    /// Epochs of the logistic regression on frozen embeddings.
    pub logreg_epochs: usize,
    /// Its AdamW learning rate.
    pub logreg_lr: f32,
    /// Whether to time the variants (full preset only: times differ from run to run,
    /// and the quick preset's outcome must be reproducible).
    pub timed: bool,
    /// Where to save the first seed's fully fine-tuned classifier, relative to the data
    /// folder (safetensors in MiniLM's tensor names plus the head), if anywhere.
    pub export: Option<String>,
}

/// Where the full preset saves the fine-tuned classifier, in the data folder (90 MB:
/// not part of the book's files).
pub const EXPORT: &str = "minilm_finetuned/sentence_polarity.safetensors";

impl Preset for Config {
    fn full() -> Self {
        Config {
            train_per_class: 64,
            test_per_class: 100,
            split_seed: 11,
            seeds: vec![0, 1, 2],
            coverage: 0.95,
            epochs: 2,
            finetune: FinetuneConfig {
                batch_size: 16,
                lr_encoder: 5e-5,
                lr_head: 1e-3,
                weight_decay: 0.01,
            },
            frozen: vec![3, 6],
            logreg_epochs: 100,
            logreg_lr: 1e-3,
            timed: true,
            export: Some(EXPORT.into()),
        }
    }

    /// A few sentences, one epoch, one seed: seconds.
    fn quick() -> Self {
        Config {
            train_per_class: 4,
            test_per_class: 4,
            seeds: vec![0],
            epochs: 1,
            finetune: FinetuneConfig {
                batch_size: 8,
                ..Self::full().finetune
            },
            logreg_epochs: 20,
            timed: false,
            export: None,
            ..Self::full()
        }
    }
}

/// One trained variant's results over the seeds.
struct Variant {
    name: String,
    trainable: usize,
    /// Test accuracy after each epoch, per seed.
    curves: Vec<Vec<f64>>,
    /// Mean training loss of the last epoch, per seed.
    last_loss: Vec<f64>,
    /// Sentences trained on and seconds taken, summed over seeds and epochs.
    sentences: usize,
    seconds: f64,
}

/// The `q`-quantile (0..=1) of `v` by the nearest-rank rule.
fn quantile(v: &[usize], q: f64) -> usize {
    let mut s = v.to_vec();
    s.sort_unstable();
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// Mean-pooled, normalised embeddings of `texts` from the (frozen) encoder of `model`.
fn embeddings(
    model: &MiniLmClassifier,
    tok: &MiniLmTokenizer,
    texts: &[String],
) -> Result<ndarray::Array2<f32>> {
    let d = model.config.hidden_size;
    let mut out = ndarray::Array2::<f32>::zeros((texts.len(), d));
    for (c, chunk) in texts.chunks(32).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let batch = tok.encode(&refs)?;
        let hidden = model.hidden_states(&batch)?;
        let mask = Tensor::from_slice(&batch.mask, (batch.rows, batch.cols), &Device::Cpu)?;
        for (i, row) in mean_pool_normalize(&hidden, &mask)?
            .to_vec2::<f32>()?
            .into_iter()
            .enumerate()
        {
            for (j, x) in row.into_iter().enumerate() {
                out[[c * 32 + i, j]] = x;
            }
        }
    }
    Ok(out)
}

// ANCHOR: logreg
/// Logistic regression on frozen embeddings with the book's own code: chapter 6's head
/// (features standardised with the training set's statistics, then one linear layer),
/// trained by `train::fit` with AdamW on the cross-entropy. Test accuracy.
fn logistic_regression(
    train_x: &ndarray::Array2<f32>,
    train: &LabeledText,
    test_x: &ndarray::Array2<f32>,
    test: &LabeledText,
    cfg: &Config,
    seed: u64,
) -> Result<f64> {
    let mut head = Head::new(train_x, train.n_classes, seed);
    let set = Dataset::classes(head.standardise(train_x).into_dyn(), train.labels.clone());
    let mut opt = Adam::adamw(cfg.logreg_lr, cfg.finetune.weight_decay as f32);
    let spec = TrainSpec {
        n_epochs: cfg.logreg_epochs,
        batch_size: 32,
        seed,
        ..TrainSpec::default()
    };
    fit(
        &mut head.fc,
        &mut opt,
        &ClassifierLoss::CrossEntropy,
        &set,
        None,
        &spec,
        &mut [],
    )?;
    let right = head
        .logits(test_x)
        .rows()
        .into_iter()
        .zip(&test.labels)
        .filter(|(z, &l)| argmax(z.as_slice().expect("a contiguous row")) == l)
        .count();
    Ok(right as f64 / test.len() as f64)
}
// ANCHOR_END: logreg

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    r.data = [polarity::PATH, bert::WEIGHTS, bert::CONFIG, bert::TOKENIZER]
        .into_iter()
        .map(data_ref)
        .collect();
    r.seeds = cfg.seeds.clone();
    let load_before = load_average();
    let all = polarity::read(dir)?;
    let counts = all.class_counts();
    r.fact("sentences", thousands(all.len()), Format::Int);
    r.fact("negative", thousands(counts[0]), Format::Int);
    r.fact("positive", thousands(counts[1]), Format::Int);

    // ANCHOR: cap
    // Token lengths of every sentence, [CLS] and [SEP] included (no truncation below the
    // model's 512 positions), and the cap that covers `coverage` of them.
    let tok_path = dir.verified(bert::TOKENIZER)?;
    let untruncated = MiniLmTokenizer::from_file(&tok_path, 512)?;
    let mut lengths = vec![];
    for chunk in all.texts.chunks(256) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        lengths.extend(untruncated.encode(&refs)?.tokens.iter().map(Vec::len));
    }
    let cap = quantile(&lengths, cfg.coverage);
    let covered = lengths.iter().filter(|&&n| n <= cap).count() as f64 / lengths.len() as f64;
    let tok = MiniLmTokenizer::from_file(&tok_path, cap)?;
    // ANCHOR_END: cap
    r.fact("len_median", quantile(&lengths, 0.5) as f64, Format::Int);
    r.fact("len_max", *lengths.iter().max().expect("sentences") as f64, Format::Int);
    r.fact("cap", cap as f64, Format::Int);
    r.fact("covered", covered, Format::Percent(1));

    let (train_idx, test_idx) =
        all.stratified_split(cfg.train_per_class, cfg.test_per_class, cfg.split_seed)?;
    let (train, test) = (all.subset(&train_idx), all.subset(&test_idx));
    r.fact("n_train", train.len() as f64, Format::Int);
    r.fact("n_test", test.len() as f64, Format::Int);
    r.fact("epochs", cfg.epochs as f64, Format::Int);
    r.fact("batch", cfg.finetune.batch_size as f64, Format::Int);
    r.fact("lr_encoder", cfg.finetune.lr_encoder, Format::Sci(0));
    r.fact("lr_head", cfg.finetune.lr_head, Format::Sci(0));
    r.fact("n_seeds", cfg.seeds.len() as f64, Format::Int);

    // The weights are read once (sha256 checked); every variant starts from them.
    let t = Instant::now();
    let bert_cfg = BertConfig::from_file(&dir.verified(bert::CONFIG)?)?;
    let pretrained = load_weights(&dir.verified(bert::WEIGHTS)?, &bert_cfg)?;
    let load_secs = t.elapsed().as_secs_f64();
    let layers = bert_cfg.num_hidden_layers;
    // (a) Frozen embeddings + logistic regression: the encoder runs once.
    let frozen = MiniLmClassifier::new(bert_cfg.clone(), &pretrained, 2, layers, 0)?;
    let bar = crate::progress::bar(
        (cfg.seeds.len() * (1 + cfg.frozen.len() + 2) * cfg.epochs) as u64,
        "finetune",
    );
    bar.set_message("embeddings for logistic regression");
    let t = Instant::now();
    let train_x = embeddings(&frozen, &tok, &train.texts)?;
    let test_x = embeddings(&frozen, &tok, &test.texts)?;
    let embed_secs = t.elapsed().as_secs_f64();
    let logreg: Vec<f64> = cfg
        .seeds
        .iter()
        .map(|&s| logistic_regression(&train_x, &train, &test_x, &test, cfg, s))
        .collect::<Result<_>>()?;
    drop(frozen);

    // (b)-(d): fine-tuned variants, every one trained the same way.
    let mut plans: Vec<(String, Start, usize)> =
        vec![(format!("fine-tuned, all {layers} layers"), Start::Pretrained, 0)];
    for &k in &cfg.frozen {
        let name = if k == layers {
            format!("head only (all {k} layers frozen)")
        } else {
            format!("fine-tuned, lower {k} layers frozen")
        };
        plans.push((name, Start::Pretrained, k));
    }
    plans.push((
        format!("random initialisation, all {layers} layers"),
        Start::Random(0),
        0,
    ));
    let mut variants = vec![];
    for (name, start, k) in plans {
        let mut v = Variant {
            name,
            trainable: 0,
            curves: vec![],
            last_loss: vec![],
            sentences: 0,
            seconds: 0.0,
        };
        for &seed in &cfg.seeds {
            bar.set_message(format!("{} (seed {seed})", v.name));
            let weights = match start {
                Start::Random(_) => random_weights(&pretrained, 1000 + seed)?,
                Start::Pretrained => pretrained.clone(),
            };
            let model = MiniLmClassifier::new(bert_cfg.clone(), &weights, 2, k, seed)?;
            v.trainable = model.trainable_params();
            let mut ft = Finetuner::new(model, &cfg.finetune)?;
            let mut curve = vec![];
            let mut loss = f64::NAN;
            for e in 0..cfg.epochs {
                let stats = ft.epoch(&tok, &train, seed * 1000 + e as u64)?;
                v.sentences += stats.sentences;
                v.seconds += stats.seconds;
                loss = stats.loss;
                curve.push(ft.model.accuracy(&tok, &test, 64)?);
                bar.inc(1);
            }
            v.curves.push(curve);
            if let (Some(rel), true, 0) = (&cfg.export, seed == cfg.seeds[0], k) {
                if matches!(start, Start::Pretrained) {
                    let path = dir.path(rel);
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    ft.model.save(&path)?;
                }
            }
            // Kept to three decimals: the last bits depend on how matrix products split
            // their sums over threads.
            v.last_loss.push((loss * 1000.0).round() / 1000.0);
        }
        variants.push(v);
    }
    bar.finish_and_clear();
    let load_after = load_average();

    let final_acc = |v: &Variant| -> Vec<f64> {
        v.curves.iter().map(|c| *c.last().expect("an epoch")).collect()
    };
    let mean = |x: &[f64]| Value::mean_std(x).0;
    r.fact("acc_logreg", Value::Seeds(logreg.clone()), Format::Percent(1));
    for (key, v) in ["acc_full", "acc_frozen3", "acc_head", "acc_random"]
        .iter()
        .zip(&variants)
    {
        r.fact(key, Value::Seeds(final_acc(v)), Format::Percent(1));
    }
    // What the claims compare: mean accuracies over the seeds.
    let full_mean = mean(&final_acc(&variants[0]));
    let random_mean = mean(&final_acc(variants.last().expect("variants")));
    r.fact("gain_over_logreg", full_mean - mean(&logreg), Format::Percent(1));
    r.fact("gain_over_random", full_mean - random_mean, Format::Percent(1));

    let mut rows = vec![vec![
        Value::from("frozen embeddings + logistic regression"),
        Value::from(thousands(frozen_head_params(train_x.ncols(), 2))),
        Value::Seeds(logreg.clone()),
        Value::from("–"),
    ]];
    for v in &variants {
        rows.push(vec![
            Value::from(v.name.as_str()),
            Value::from(thousands(v.trainable)),
            Value::Seeds(final_acc(v)),
            Value::Seeds(v.last_loss.clone()),
        ]);
    }
    r.tables.push(Table {
        name: "comparison".into(),
        caption: format!(
            "Sentence polarity, {} training and {} test sentences (one fixed stratified \
             split), tokens capped at {cap}: test accuracy after {} epoch(s), mean ± std over \
             {} seed(s), and the last epoch's mean training loss. Fine-tuning: AdamW, \
             batch {}, learning rate {:e} for the encoder and {:e} for the head.",
            train.len(),
            test.len(),
            cfg.epochs,
            cfg.seeds.len(),
            cfg.finetune.batch_size,
            cfg.finetune.lr_encoder,
            cfg.finetune.lr_head
        ),
        columns: vec![
            col("variant", Format::Int),
            col("trainable parameters", Format::Int),
            col("test accuracy", Format::Percent(1)),
            col("training loss", Format::Fixed(3)),
        ],
        rows,
    });

    // Accuracy after every epoch.
    let epochs: Vec<f64> = (1..=cfg.epochs).map(|e| e as f64).collect();
    let (lm, ls) = Value::mean_std(&logreg);
    let mut series = vec![Series {
        name: "frozen + logistic regression".into(),
        x: epochs.clone(),
        y: vec![100.0 * lm; cfg.epochs],
        band: Some(vec![100.0 * ls; cfg.epochs]),
    }];
    for v in &variants {
        let (y, band) = (0..cfg.epochs)
            .map(|e| {
                let acc: Vec<f64> = v.curves.iter().map(|c| 100.0 * c[e]).collect();
                Value::mean_std(&acc)
            })
            .unzip();
        series.push(Series {
            name: v.name.clone(),
            x: epochs.clone(),
            y,
            band: Some(band),
        });
    }
    r.figures.push(Figure {
        name: "accuracy".into(),
        title: "Sentence polarity: test accuracy after each epoch".into(),
        plot: Plot::Lines {
            x_label: "epochs".into(),
            y_label: "test accuracy, % (mean ± std over seeds)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series,
        },
    });

    if cfg.timed {
        let mut rows = vec![vec![
            Value::from("encoder forward only (embeddings for logistic regression)"),
            Value::from((train.len() + test.len()) as f64 / embed_secs),
        ]];
        for v in &variants {
            rows.push(vec![
                Value::from(v.name.as_str()),
                Value::from(v.sentences as f64 / v.seconds),
            ]);
        }
        r.fact("load_secs", load_secs, Format::Fixed(1));
        r.tables.push(Table {
            name: "speed".into(),
            caption: format!(
                "Training sentences per second (tokenization, forward, backward, AdamW \
                 step; batch {}, tokens capped at {cap}), over all epochs and seeds of one \
                 run on 2 cores shared with other work (load average {load_before:.1} \
                 before, {load_after:.1} after); the first row runs the encoder forward only. \
                 Loading the weights took {load_secs:.1} s.",
                cfg.finetune.batch_size
            ),
            columns: vec![
                col("variant", Format::Int),
                col("sentences/s", Format::Fixed(1)),
            ],
            rows,
        });
    }
    Ok(())
}

/// Parameters of the logistic regression on `d` features: one weight per feature and
/// class, and a bias per class.
fn frozen_head_params(d: usize, classes: usize) -> usize {
    d * classes + classes
}
