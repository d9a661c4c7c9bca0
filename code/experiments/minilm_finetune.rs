//! Experiment `minilm_finetune`: all-MiniLM-L6-v2 fine-tuned for sentence polarity
//! (Pang & Lee's Rotten Tomatoes sentences), against frozen embeddings with logistic
//! regression, against freezing the lower layers, and against the same architecture
//! trained from random initialisation. Every variant trains the from-scratch classifier
//! ([`ScratchClassifier`]: its hand-written backward, AdamW from [`crate::optim`]). Test
//! accuracy over seeds on one fixed split, the accuracy after every epoch, (full preset
//! only, since times vary from run to run) training sentences per second, and the
//! attention maps of the fine-tuned model on test sentences it gets right and the
//! logistic regression gets wrong.

use std::time::Instant;

use anyhow::{anyhow, Result};
use ndarray::{s, Array2};
use serde::Serialize;

use super::{Experiment, Preset};
use crate::bench::load_average;
use crate::data::polarity::{self, LabeledText};
use crate::data::{data_ref, DataDir, Dataset};
use crate::models::bert::{self, BertConfig, MiniLmTokenizer};
use crate::models::bert_finetune::{argmax, FinetuneConfig};
use crate::models::count::thousands;
use crate::nn::Module;
use crate::optim::Adam;
use crate::report::attention::AttentionPlot;
use crate::report::{
    attention_figure, col, Figure, Format, Plot, Report, Scale, Series, Table, Value,
};
use crate::train::{fit, ClassifierLoss, TrainSpec};
use crate::transfer::folder::Head;
use crate::transformer::bert::ScratchMiniLm;
use crate::transformer::bert_classifier::{embeddings, ScratchClassifier, ScratchFinetuner};

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
    /// Test sentences drawn as attention maps (one positive, one negative), at most
    /// this many tokens each (`[CLS]` and `[SEP]` included), so the maps stay legible.
    pub attention_max_tokens: usize,
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
            train_per_class: 1000,
            test_per_class: 500,
            split_seed: 11,
            seeds: vec![0, 1, 2],
            coverage: 0.95,
            epochs: 2,
            finetune: FinetuneConfig {
                batch_size: 32,
                lr_encoder: 5e-5,
                lr_head: 1e-3,
                weight_decay: 0.01,
            },
            frozen: vec![3, 6],
            logreg_epochs: 100,
            logreg_lr: 1e-3,
            attention_max_tokens: 12,
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
            attention_max_tokens: 64,
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

// ANCHOR: logreg
/// Logistic regression on frozen embeddings with the book's own code: chapter 6's head
/// (features standardised with the training set's statistics, then one linear layer),
/// trained by `train::fit` with AdamW on the cross-entropy. The predicted class of
/// every test sentence.
fn logistic_regression(
    train_x: &Array2<f32>,
    train: &LabeledText,
    test_x: &Array2<f32>,
    cfg: &Config,
    seed: u64,
) -> Result<Vec<usize>> {
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
    Ok(head
        .logits(test_x)
        .rows()
        .into_iter()
        .map(|z| argmax(z.as_slice().expect("a contiguous row")))
        .collect())
}
// ANCHOR_END: logreg

/// The share of `pred` equal to `labels`.
fn share_right(pred: &[usize], labels: &[usize]) -> f64 {
    let right = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
    right as f64 / labels.len() as f64
}

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
    r.fact("weight_decay", cfg.finetune.weight_decay, Format::Fixed(2));
    r.fact("n_seeds", cfg.seeds.len() as f64, Format::Int);

    // The pre-trained encoder is read once (sha256 checked); every variant starts from a
    // copy of it.
    let t = Instant::now();
    let mut pretrained = ScratchMiniLm::load(dir)?;
    let load_secs = t.elapsed().as_secs_f64();
    let bert_cfg: BertConfig = pretrained.config.clone();
    let layers = bert_cfg.num_hidden_layers;
    let bar = crate::progress::bar(
        (cfg.seeds.len() * (2 + cfg.frozen.len()) * cfg.epochs) as u64,
        "finetune",
    );
    // (a) Frozen embeddings + logistic regression: the encoder runs once.
    bar.set_message("embeddings for logistic regression");
    let t = Instant::now();
    let train_x = embeddings(&mut pretrained, &tok, &train.texts)?;
    let test_x = embeddings(&mut pretrained, &tok, &test.texts)?;
    let embed_secs = t.elapsed().as_secs_f64();
    let logreg_pred: Vec<Vec<usize>> = cfg
        .seeds
        .iter()
        .map(|&s| logistic_regression(&train_x, &train, &test_x, cfg, s))
        .collect::<Result<_>>()?;
    let logreg: Vec<f64> = logreg_pred
        .iter()
        .map(|p| share_right(p, &test.labels))
        .collect();

    // (b)-(d): fine-tuned variants, every one trained the same way.
    let mut plans: Vec<(String, bool, usize)> =
        vec![(format!("fine-tuned, all {layers} layers"), true, 0)];
    for &k in &cfg.frozen {
        let name = if k == layers {
            format!("head only (all {k} layers frozen)")
        } else {
            format!("fine-tuned, lower {k} layers frozen")
        };
        plans.push((name, true, k));
    }
    plans.push((format!("random initialisation, all {layers} layers"), false, 0));
    let mut variants = vec![];
    // The first seed's fully fine-tuned model, kept for its attention maps.
    let mut tuned: Option<ScratchClassifier> = None;
    for (name, is_pretrained, k) in plans {
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
            let tokenizer = MiniLmTokenizer::load(dir)?;
            let encoder = if is_pretrained {
                pretrained.copy_with(tokenizer)?
            } else {
                ScratchMiniLm::random(bert_cfg.clone(), tokenizer, 1000 + seed)?
            };
            let mut model = ScratchClassifier::new(encoder, 2, k, seed)?;
            v.trainable = model.trainable().n_params();
            let mut ft = ScratchFinetuner::new(model, &cfg.finetune)?;
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
            // Kept to three decimals: the last bits depend on how matrix products split
            // their sums over threads.
            v.last_loss.push((loss * 1000.0).round() / 1000.0);
            if is_pretrained && k == 0 && seed == cfg.seeds[0] {
                if let Some(rel) = &cfg.export {
                    ft.model.save(&dir.path(rel))?;
                }
                tuned = Some(ft.model);
            }
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
             {} seed(s), and the last epoch's mean training loss. Fine-tuning: the \
             from-scratch encoder and its hand-written backward, AdamW, batch {}, learning \
             rate {:e} for the encoder and {:e} for the head, weight decay {} on matrices.",
            train.len(),
            test.len(),
            cfg.epochs,
            cfg.seeds.len(),
            cfg.finetune.batch_size,
            cfg.finetune.lr_encoder,
            cfg.finetune.lr_head,
            cfg.finetune.weight_decay,
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

    let mut tuned = tuned.ok_or_else(|| anyhow!("no fully fine-tuned model"))?;
    attention_maps(cfg, &tok, &test, &logreg_pred[0], &mut pretrained, &mut tuned, r)?;

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
        let rate = |v: &Variant| v.sentences as f64 / v.seconds;
        r.fact("speed_full", rate(&variants[0]), Format::Fixed(1));
        r.fact("speed_frozen3", rate(&variants[1]), Format::Fixed(1));
        r.fact("speedup_frozen3", rate(&variants[1]) / rate(&variants[0]), Format::Fixed(1));
        r.fact("speed_head", rate(&variants[2]), Format::Fixed(1));
        r.fact("load_before", load_before, Format::Fixed(1));
        r.fact("load_after", load_after, Format::Fixed(1));
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

// ANCHOR: attention
/// Attention maps of the fully fine-tuned model on one positive and one negative test
/// sentence of at most `attention_max_tokens` tokens, each chosen as the first that the
/// fine-tuned model classifies right and the logistic regression on frozen embeddings
/// wrong (failing that, the first it gets right; failing that, the first): every head
/// of the last layer, and the head whose weights moved most in fine-tuning, before and
/// after.
fn attention_maps(
    cfg: &Config,
    tok: &MiniLmTokenizer,
    test: &LabeledText,
    logreg_pred: &[usize],
    pretrained: &mut ScratchMiniLm,
    tuned: &mut ScratchClassifier,
    r: &mut Report,
) -> Result<()> {
    let tuned_pred: Vec<usize> = tuned
        .predict_logits(tok, &test.texts, 64)?
        .iter()
        .map(|z| argmax(z))
        .collect();
    let short: Vec<bool> = test
        .texts
        .iter()
        .map(|t| -> Result<bool> { Ok(tok.encode(&[t.as_str()])?.cols <= cfg.attention_max_tokens) })
        .collect::<Result<_>>()?;
    let last = tuned.encoder.layers.len() - 1;
    for (label, key) in [(1, "positive"), (0, "negative")] {
        // 2: right here and wrong for the logistic regression; 1: right here; 0: any.
        let candidate = |level: u8| {
            (0..test.len()).find(|&i| {
                test.labels[i] == label
                    && short[i]
                    && (level < 1 || tuned_pred[i] == label)
                    && (level < 2 || logreg_pred[i] != label)
            })
        };
        let (i, fixed) = match (candidate(2), candidate(1), candidate(0)) {
            (Some(i), _, _) => (i, true),
            (None, Some(i), _) | (None, None, Some(i)) => (i, false),
            (None, None, None) => {
                return Err(anyhow!(
                    "no {key} test sentence of at most {} tokens",
                    cfg.attention_max_tokens
                ))
            }
        };
        let sentence = test.texts[i].as_str();
        r.fact(&format!("attention_{key}"), sentence.to_string(), Format::Int);
        r.fact(
            &format!("attention_{key}_fixed"),
            if fixed { "yes" } else { "no" }.to_string(),
            Format::Int,
        );
        let batch = tok.encode(&[sentence])?;
        let tokens = batch.tokens[0].clone();
        pretrained.hidden_states(&batch)?;
        tuned.logits(&batch)?;
        let weights = |m: &ScratchMiniLm| -> Result<ndarray::Array3<f32>> {
            let w = m.attention_weights()[last].ok_or_else(|| anyhow!("no attention weights"))?;
            Ok(w.slice(s![0, .., .., ..])
                .to_owned()
                .into_dimensionality::<ndarray::Ix3>()?)
        };
        let (before, after) = (weights(pretrained)?, weights(&tuned.encoder)?);
        r.figures.push(attention_figure(
            &format!("attention-{key}"),
            &format!(
                "Fine-tuned, layer {}: every head on a {key} test sentence",
                last + 1
            ),
            after.view(),
            &tokens,
            &tokens,
        ));
        // The head that fine-tuning moved most on this sentence (mean absolute change).
        let change = |h: usize| {
            (&before.slice(s![h, .., ..]) - &after.slice(s![h, .., ..]))
                .mapv(f32::abs)
                .mean()
                .unwrap_or(0.0)
        };
        let head = (0..before.shape()[0])
            .max_by(|&a, &b| change(a).total_cmp(&change(b)))
            .expect("heads");
        r.fact(&format!("attention_{key}_head"), head as f64, Format::Int);
        r.fact(&format!("attention_{key}_change"), f64::from(change(head)), Format::Fixed(3));
        let panel = |w: &ndarray::Array3<f32>| -> Vec<Vec<f64>> {
            w.slice(s![head, .., ..])
                .outer_iter()
                .map(|row| row.iter().map(|&v| f64::from(v)).collect())
                .collect()
        };
        r.figures.push(Figure {
            name: format!("compare-{key}"),
            title: format!(
                "Layer {}, head {head} on a {key} test sentence: pre-trained and fine-tuned",
                last + 1
            ),
            plot: Plot::Attention(AttentionPlot {
                panels: vec!["pre-trained".into(), "fine-tuned".into()],
                query_labels: tokens.clone(),
                key_labels: tokens.clone(),
                weights: vec![panel(&before), panel(&after)],
            }),
        });
    }
    r.fact("attention_layer", (last + 1) as f64, Format::Int);
    r.fact(
        "attention_max_tokens",
        cfg.attention_max_tokens as f64,
        Format::Int,
    );
    Ok(())
}
// ANCHOR_END: attention

/// Parameters of the logistic regression on `d` features: one weight per feature and
/// class, and a bias per class.
fn frozen_head_params(d: usize, classes: usize) -> usize {
    d * classes + classes
}
