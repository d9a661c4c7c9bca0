//! Experiment `mnist_cnn`: the seed CNN trained on all of MNIST, over several seeds.
//!
//! Adam ($\eta = 10^{-3}$), batches of 128, pixels in $[0, 1]$, no augmentation: the
//! seed model exactly. A seed fixes the initialization, the batch order and the
//! dropout masks. After every epoch the model is evaluated on the whole 10,000-image
//! test set; the table and figure give the mean ± std over the seeds. The model of the
//! first seed is then studied on the test set: its confusion matrix and the digits it
//! gets most wrong (highest cross-entropy).

use anyhow::Result;
use ndarray::Axis;
use serde::Serialize;

use super::common::{
    band_series, final_losses, loss_curve, loss_figure, over_seeds, TrainFields,
};
use super::{Experiment, Preset};
use crate::data::Dataset;
use crate::data::{mnist_refs, DataDir, Split};
use crate::metrics::{confusion, per_example};
use crate::models::{mnist_cnn, CnnConfig};
use crate::nn::Named;
use crate::optim::Adam;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Table, Value};
use crate::train::{train_classifier, History, TrainSpec};

/// Experiment `mnist_cnn`, registered in [`super::all`].
pub struct MnistCnn;

impl Experiment for MnistCnn {
    const NAME: &'static str = "mnist_cnn";
    const CHAPTER: &'static str = "ch05";
    const TITLE: &'static str = "The seed CNN on MNIST: test accuracy per epoch, confusions, worst digits";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The architecture (the seed model by default).
    pub model: CnnConfig,
    /// Training images (the first ones).
    pub n_train: usize,
    /// Test images (the first ones).
    pub n_test: usize,
    /// Epochs, batches and seeds.
    #[serde(flatten)]
    pub train: TrainFields,
    /// Adam's learning rate.
    pub lr: f32,
    /// Steps per point of the training-loss curve.
    pub log_every: usize,
    /// How many of the worst-classified test digits to show.
    pub n_worst: usize,
}

impl Preset for Config {
    /// The book's configuration: all 60,000 training images, the 10,000 test images.
    fn full() -> Self {
        Config {
            model: CnnConfig::default(),
            n_train: 60_000,
            n_test: 10_000,
            train: TrainFields {
                n_epochs: 5,
                batch_size: 128,
                seeds: vec![0, 1, 2],
            },
            lr: 1e-3,
            log_every: 47,
            n_worst: 12,
        }
    }

    /// The test configuration: 2,000 training images, 1,000 test images, two seeds.
    fn quick() -> Self {
        Config {
            n_train: 2_000,
            n_test: 1_000,
            train: TrainFields {
                seeds: vec![0, 1],
                ..Self::full().train
            },
            log_every: 4,
            ..Self::full()
        }
    }
}

// ANCHOR: train_seed_model
/// Trains the configured model with `seed` (initialization, batch order, dropout) and
/// returns it with what training measured.
pub fn train_one(
    cfg: &Config,
    train: &Dataset,
    test: &Dataset,
    seed: u64,
) -> (Named, History) {
    let mut model = mnist_cnn(&cfg.model, seed);
    let mut opt = Adam::new(cfg.lr);
    let spec = TrainSpec {
        log_every: cfg.log_every,
        ..cfg.train.spec(seed)
    };
    let h = train_classifier(&mut model, &mut opt, train, test, &spec);
    (model, h)
}
// ANCHOR_END: train_seed_model

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let train = Dataset::mnist(dir, Split::Train, cfg.n_train)?;
    let test = Dataset::mnist(dir, Split::Test, cfg.n_test)?;
    let (n_epochs, seeds) = (cfg.train.n_epochs, &cfg.train.seeds);
    r.seeds = seeds.clone();
    r.data = mnist_refs();

    let mut runs = over_seeds("mnist_cnn", seeds, |seed| train_one(cfg, &train, &test, seed));
    let n_params = runs_n_params(&mut runs);
    let hs: Vec<&History> = runs.iter().map(|(_, h)| h).collect();

    // Accuracy per epoch.
    let mut rows = vec![];
    for e in 0..n_epochs {
        let accs: Vec<f64> = hs.iter().map(|h| h.test_acc[e]).collect();
        rows.push(vec![Value::Num((e + 1) as f64), Value::Seeds(accs.clone())]);
        if e + 1 == n_epochs {
            r.fact("final_acc", Value::Seeds(accs), Format::Percent(2));
        }
    }
    let errors: Vec<f64> = hs
        .iter()
        .map(|h| (1.0 - h.final_acc()) * cfg.n_test as f64)
        .collect();
    r.fact("final_errors", Value::Seeds(errors), Format::Fixed(0));
    r.tables.push(Table {
        name: "accuracy".into(),
        caption: format!(
            "The seed CNN ({} parameters), Adam η = {}, batch {}, {} training images: \
             accuracy on the {} test images after each epoch, mean ± std over seeds {:?}.",
            n_params,
            cfg.lr,
            cfg.train.batch_size,
            cfg.n_train,
            cfg.n_test,
            seeds
        ),
        columns: vec![col("epoch", Format::Int), col("test accuracy", Format::Percent(2))],
        rows,
    });
    r.figures.push(Figure {
        name: "accuracy".into(),
        title: format!("Test accuracy ± std over {} seeds", seeds.len()),
        plot: Plot::Lines {
            x_label: "epoch".into(),
            y_label: "test accuracy".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![band_series(
                "seed CNN",
                &(1..=n_epochs).map(|e| e as f64).collect::<Vec<_>>(),
                &hs.iter().map(|h| &h.test_acc).collect::<Vec<_>>(),
            )],
        },
    });

    // Training loss.
    let first: Vec<f64> = hs.iter().map(|h| h.train_loss[0]).collect();
    r.fact("loss_first", Value::Seeds(first), Format::Fixed(3));
    r.fact(
        "loss_last",
        Value::Seeds(final_losses(hs.iter().copied())),
        Format::Fixed(3),
    );
    let curve = loss_curve("seed CNN", hs.iter().copied());
    r.figures.push(Figure {
        title: format!(
            "Training loss (mean of {} steps, dropout on) ± std over {} seeds",
            cfg.log_every,
            seeds.len()
        ),
        ..loss_figure("loss", cfg.log_every, seeds, Scale::Log, vec![curve])
    });

    // The first seed's model on the test set.
    let (model, _) = &mut runs[0];
    let (losses, preds) = per_example(model, test.flat(), test.labels());
    let conf = confusion(test.labels(), &preds, 10);
    let mut columns = vec![col("true \\ predicted", Format::Int)];
    columns.extend((0..10).map(|k| col(&k.to_string(), Format::Int)));
    columns.push(col("recall", Format::Percent(1)));
    let rows = conf
        .iter()
        .enumerate()
        .map(|(t, row)| {
            let total: usize = row.iter().sum();
            let mut cells = vec![Value::Text(t.to_string())];
            cells.extend(row.iter().map(|&c| Value::Num(c as f64)));
            cells.push(Value::Num(row[t] as f64 / total.max(1) as f64));
            cells
        })
        .collect();
    r.figures.push(Figure {
        name: "confusion".into(),
        title: format!(
            "Confusion matrix, seed {}, {} test images",
            seeds[0], cfg.n_test
        ),
        plot: Plot::Heatmap {
            x_label: "predicted digit".into(),
            y_label: "true digit".into(),
            row_labels: (0..10).map(|k| k.to_string()).collect(),
            col_labels: (0..10).map(|k| k.to_string()).collect(),
            values: conf
                .iter()
                .map(|row| row.iter().map(|&c| c as f64).collect())
                .collect(),
            log_shade: true,
            decimals: 0,
        },
    });
    r.tables.push(Table {
        name: "confusion".into(),
        caption: format!(
            "Confusion matrix of the seed-{} model on the {} test images after {} \
             epochs: row = true digit, column = predicted digit; recall = diagonal / row.",
            seeds[0], cfg.n_test, n_epochs
        ),
        columns,
        rows,
    });

    let mut order: Vec<usize> = (0..losses.len()).collect();
    order.sort_by(|&a, &b| losses[b].total_cmp(&losses[a]).then(a.cmp(&b)));
    let worst = &order[..cfg.n_worst.min(order.len())];
    let mut images = vec![];
    let mut labels = vec![];
    let mut rows = vec![];
    for (rank, &i) in worst.iter().enumerate() {
        images.push(
            test.x
                .index_axis(Axis(0), i)
                .iter()
                .map(|&p| (p.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect(),
        );
        labels.push(format!("{} → {}", test.labels()[i], preds[i]));
        rows.push(vec![
            Value::Num((rank + 1) as f64),
            Value::Num(i as f64),
            Value::Num(test.labels()[i] as f64),
            Value::Num(preds[i] as f64),
            Value::Num(losses[i]),
        ]);
    }
    r.tables.push(Table {
        name: "worst".into(),
        caption: format!(
            "The {} test digits with the highest cross-entropy under the seed-{} model.",
            worst.len(),
            seeds[0]
        ),
        columns: vec![
            col("rank", Format::Int),
            col("test index", Format::Int),
            col("true", Format::Int),
            col("predicted", Format::Int),
            col("cross-entropy", Format::Fixed(2)),
        ],
        rows,
    });
    r.figures.push(Figure {
        name: "worst".into(),
        title: "Worst-classified test digits (true → predicted)".into(),
        plot: Plot::Images {
            width: 28,
            height: 28,
            row_labels: vec![],
            col_labels: labels,
            images,
        },
    });
    Ok(())
}

fn runs_n_params(runs: &mut [(Named, History)]) -> usize {
    use crate::nn::Module;
    runs.first_mut().map_or(0, |(m, _)| m.n_params())
}
