//! Experiment `detector`: the single-stage detector trained from scratch on canvases of
//! MNIST digits, evaluated with COCO's mean average precision over several seeds.
//!
//! Training canvases are made from MNIST's training digits, test canvases from its test
//! digits, each with a fixed seed (the same canvases for every run): a run's seed fixes
//! the initialization and the batch order, so the spread over seeds is the spread of
//! training. The loss is the multibox loss (cross-entropy with 3:1 hard negative mining,
//! smooth-L1 on the positives' deltas), trained with Adam by the book's one training
//! loop. Evaluation: decode, score threshold, NMS per class, top-k, then `coco_eval`
//! (AP averaged over IoU 0.5:0.95, AP at 0.5 and 0.75, per-class AP). The first seed's
//! model is then shown on test canvases, with its failures found automatically.

use anyhow::Result;
use serde::Serialize;

use super::common::{final_losses, loss_curve, loss_figure, over_seeds, TrainFields};
use super::{Experiment, Preset};
use crate::data::{mnist_refs, DataDir, Dataset, Split};
use crate::detect::anchors::{all_anchors, dataset, MatchThresholds};
use crate::detect::ap::{coco_eval, CocoParams, CocoSummary};
use crate::detect::boxes::Bbox;
use crate::detect::canvas::{make_canvases, CanvasConfig, Canvases};
use crate::detect::inference::{postprocess_batch, raw_outputs, InferenceConfig};
use crate::detect::multibox::MultiboxLoss;
use crate::detect::nms::Detection;
use crate::detect::ssd::{Ssd, SsdConfig};
use crate::nn::Module;
use crate::optim::Adam;
use crate::report::boxes::{BoxesPlot, DrawnBox};
use crate::report::{col, Figure, Format, Plot, Report, Scale, Table, Value};
use crate::train::{train_with, History, TrainSpec};

/// Experiment `detector`, registered in [`super::all`].
pub struct Detector;

impl Experiment for Detector {
    const NAME: &'static str = "detector";
    const CHAPTER: &'static str = "ch07";
    const TITLE: &'static str =
        "A single-stage detector on MNIST canvases: mAP over seeds, per-class AP, predictions";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// The seed of the training canvases (the same for every run).
pub const TRAIN_CANVAS_SEED: u64 = 7001;
/// The seed of the test canvases.
pub const TEST_CANVAS_SEED: u64 = 7002;

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// How canvases are drawn.
    pub canvas: CanvasConfig,
    /// Training canvases.
    pub n_train: usize,
    /// Test canvases.
    pub n_test: usize,
    /// The detector.
    pub model: SsdConfig,
    /// Epochs, batches and seeds.
    #[serde(flatten)]
    pub train: TrainFields,
    /// Adam's learning rate.
    pub lr: f32,
    /// Steps per point of the training-loss curve.
    pub log_every: usize,
    /// Negatives kept per positive anchor.
    pub neg_ratio: usize,
    /// Weight of the box term of the loss.
    pub box_weight: f32,
    /// From outputs to detections.
    pub inference: InferenceConfig,
    /// Detections drawn in the figures score at least this.
    pub show_score: f32,
    /// Test canvases shown with their predictions.
    pub n_show: usize,
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            canvas: CanvasConfig::default(),
            n_train: 3_000,
            n_test: 500,
            model: SsdConfig::default(),
            train: TrainFields {
                n_epochs: 10,
                batch_size: 32,
                seeds: vec![0, 1, 2],
            },
            lr: 3e-3,
            log_every: 50,
            neg_ratio: 3,
            box_weight: 1.0,
            inference: InferenceConfig::default(),
            show_score: 0.5,
            n_show: 8,
        }
    }

    /// The test configuration: 256 training canvases, one epoch, 64 test canvases.
    fn quick() -> Self {
        Config {
            n_train: 256,
            n_test: 64,
            train: TrainFields {
                n_epochs: 1,
                seeds: vec![0, 1],
                ..Self::full().train
            },
            log_every: 2,
            ..Self::full()
        }
    }
}

/// The canvases of a run: training ones from MNIST's training digits, test ones from its
/// test digits.
pub fn canvases(cfg: &CanvasConfig, dir: &DataDir, n_train: usize, n_test: usize) -> Result<(Canvases, Canvases)> {
    let train = Dataset::mnist(dir, Split::Train, 60_000)?;
    let test = Dataset::mnist(dir, Split::Test, 10_000)?;
    Ok((
        make_canvases(&train, n_train, cfg, TRAIN_CANVAS_SEED),
        make_canvases(&test, n_test, cfg, TEST_CANVAS_SEED),
    ))
}

// ANCHOR: train_detector
/// Trains the detector `model` with `seed` on the training canvases `train` (already
/// matched to the model's anchors by [`dataset`]) with Adam and the multibox loss.
pub fn train_detector(
    model: &SsdConfig,
    train: &Dataset,
    fields: &TrainFields,
    lr: f32,
    log_every: usize,
    loss: &MultiboxLoss,
    seed: u64,
) -> (Ssd, History) {
    let mut net = Ssd::new(model, seed);
    let mut opt = Adam::new(lr);
    let spec = TrainSpec {
        log_every,
        ..fields.spec(seed)
    };
    let h = train_with(&mut net, &mut opt, loss, train, None, &spec);
    (net, h)
}
// ANCHOR_END: train_detector

// ANCHOR: evaluate
/// The detections of `model` on the canvases `test` and their COCO evaluation.
pub fn evaluate(
    net: &mut Ssd,
    model: &SsdConfig,
    test: &Canvases,
    inference: &InferenceConfig,
) -> (Vec<Detection>, CocoSummary) {
    let anchors = all_anchors(&model.grids());
    let images = test.images.clone().into_dyn();
    let out = raw_outputs(net, &images, 64);
    let dets = postprocess_batch(out.view(), &anchors, 0, model.side as f32, inference);
    let summary = coco_eval(
        &test.ground_truths(),
        &dets,
        model.n_classes,
        &CocoParams::default(),
    );
    (dets, summary)
}
// ANCHOR_END: evaluate

/// One trained run: the model, its history, its detections on the test canvases and
/// their evaluation.
pub struct Run {
    /// The trained detector.
    pub net: Ssd,
    /// What training logged.
    pub history: History,
    /// Detections on the test canvases.
    pub dets: Vec<Detection>,
    /// Their COCO evaluation.
    pub summary: CocoSummary,
}

/// Trains and evaluates `model` over `seeds`: the runs in seed order.
pub fn runs(cfg: &Config, model: &SsdConfig, box_weight: f32, train: &Canvases, test: &Canvases, what: &str) -> Vec<Run> {
    let anchors = all_anchors(&model.grids());
    let data = dataset(train, &anchors, MatchThresholds::default());
    let loss = MultiboxLoss {
        n_classes: model.n_classes,
        neg_ratio: cfg.neg_ratio,
        box_weight,
    };
    over_seeds(what, &cfg.train.seeds, |seed| {
        let (mut net, history) =
            train_detector(model, &data, &cfg.train, cfg.lr, cfg.log_every, &loss, seed);
        let (dets, summary) = evaluate(&mut net, model, test, &cfg.inference);
        Run {
            net,
            history,
            dets,
            summary,
        }
    })
}

/// The ground truth of canvas `i` drawn as dashed grey boxes, no labels.
fn truth_boxes(c: &Canvases, i: usize) -> Vec<DrawnBox> {
    c.objects[i]
        .iter()
        .map(|o| drawn(&o.bbox, String::new(), 7, true))
        .collect()
}

fn drawn(b: &Bbox, label: String, color: usize, dashed: bool) -> DrawnBox {
    DrawnBox {
        x0: f64::from(b.x0),
        y0: f64::from(b.y0),
        x1: f64::from(b.x1),
        y1: f64::from(b.y1),
        label,
        color,
        dashed,
    }
}

/// What went wrong on one canvas at a display threshold (see [`failures`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Failures {
    /// Digits with no shown detection at IoU >= 0.5.
    pub missed: usize,
    /// Shown detections whose best digit (IoU >= 0.5) is of another class.
    pub wrong_class: usize,
    /// Digits with two or more shown detections at IoU >= 0.5.
    pub duplicates: usize,
    /// Shown detections at IoU < 0.5 with every digit.
    pub spurious: usize,
}

// ANCHOR: failures
/// The failures of `dets` (one canvas's detections with score >= `min_score`) against
/// the canvas's `objects`.
pub fn failures(
    objects: &[crate::detect::canvas::Object],
    dets: &[&Detection],
) -> Failures {
    let mut f = Failures::default();
    let mut hits = vec![0usize; objects.len()];
    for d in dets {
        let best = objects
            .iter()
            .enumerate()
            .map(|(g, o)| (g, o.bbox.iou(&d.bbox)))
            .fold(None, |b: Option<(usize, f32)>, x| match b {
                Some(y) if y.1 >= x.1 => Some(y),
                _ => Some(x),
            });
        match best {
            Some((g, iou)) if iou >= 0.5 => {
                hits[g] += 1;
                if objects[g].class != d.class {
                    f.wrong_class += 1;
                }
            }
            _ => f.spurious += 1,
        }
    }
    f.missed = hits.iter().filter(|&&h| h == 0).count();
    f.duplicates = hits.iter().filter(|&&h| h >= 2).count();
    f
}
// ANCHOR_END: failures

/// The detections of canvas `i` with score at least `min`.
fn shown(dets: &[Detection], i: usize, min: f32) -> Vec<&Detection> {
    dets.iter().filter(|d| d.image == i && d.score >= min).collect()
}

fn prediction_figure(name: &str, title: String, test: &Canvases, dets: &[Detection], picks: &[(usize, String)], min: f32) -> Figure {
    let side = test.images.shape()[2];
    let mut images = vec![];
    let mut boxes = vec![];
    let mut captions = vec![];
    for (i, caption) in picks {
        images.push(test.bytes(*i));
        let mut b = truth_boxes(test, *i);
        for d in shown(dets, *i, min) {
            b.push(drawn(&d.bbox, format!("{} {:.2}", d.class, d.score), d.class, false));
        }
        boxes.push(b);
        captions.push(caption.clone());
    }
    Figure {
        name: name.into(),
        title,
        plot: Plot::Boxes(BoxesPlot {
            width: side,
            height: side,
            n_cols: 4,
            captions,
            images,
            boxes,
        }),
    }
}

fn ap_row(name: &str, runs: &[Run], f: impl Fn(&CocoSummary) -> f64) -> Vec<Value> {
    vec![
        Value::Text(name.into()),
        Value::Seeds(runs.iter().map(|r| f(&r.summary)).collect()),
    ]
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let (train, test) = canvases(&cfg.canvas, dir, cfg.n_train, cfg.n_test)?;
    let seeds = &cfg.train.seeds;
    r.seeds = seeds.clone();
    r.data = mnist_refs();
    let n_objects: usize = train.objects.iter().map(Vec::len).sum();
    let n_test_objects: usize = test.objects.iter().map(Vec::len).sum();
    r.fact("n_train_digits", Value::Num(n_objects as f64), Format::Int);
    r.fact("n_test_digits", Value::Num(n_test_objects as f64), Format::Int);
    let n_anchors = all_anchors(&cfg.model.grids()).len();
    r.fact("n_anchors", Value::Num(n_anchors as f64), Format::Int);

    // A few training canvases with their boxes.
    let picks: Vec<(usize, String)> = (0..cfg.n_show.min(train.len()))
        .map(|i| {
            let digits: Vec<String> = train.objects[i].iter().map(|o| o.class.to_string()).collect();
            (i, format!("digits: {}", if digits.is_empty() { "none".into() } else { digits.join(" ") }))
        })
        .collect();
    let side = cfg.canvas.side;
    r.figures.push(Figure {
        name: "canvases".into(),
        title: format!("Training canvases ({side}x{side}) and the ink box of each digit"),
        plot: Plot::Boxes(BoxesPlot {
            width: side,
            height: side,
            n_cols: 4,
            captions: picks.iter().map(|p| p.1.clone()).collect(),
            images: picks.iter().map(|p| train.bytes(p.0)).collect(),
            boxes: picks
                .iter()
                .map(|p| {
                    train.objects[p.0]
                        .iter()
                        .map(|o| drawn(&o.bbox, o.class.to_string(), o.class, false))
                        .collect()
                })
                .collect(),
        }),
    });

    let mut runs = runs(cfg, &cfg.model, cfg.box_weight, &train, &test, "detector");
    let n_params = runs[0].net.n_params();
    r.fact("n_params", Value::Num(n_params as f64), Format::Int);
    let ap: Vec<f64> = runs.iter().map(|x| x.summary.stats[0]).collect();
    let ap50: Vec<f64> = runs.iter().map(|x| x.summary.stats[1]).collect();
    r.fact("ap", Value::Seeds(ap), Format::Fixed(3));
    r.fact("ap50", Value::Seeds(ap50), Format::Fixed(3));
    r.tables.push(Table {
        name: "map".into(),
        caption: format!(
            "The detector ({n_params} parameters, {n_anchors} anchors) trained {} epochs on \
             {} canvases, evaluated on {} test canvases ({n_test_objects} digits) with \
             COCO's protocol: mean ± std over seeds {seeds:?}.",
            cfg.train.n_epochs, cfg.n_train, cfg.n_test
        ),
        columns: vec![col("metric", Format::Int), col("value", Format::Fixed(3))],
        rows: vec![
            ap_row("AP@[.5:.95]", &runs, |s| s.stats[0]),
            ap_row("AP@0.5", &runs, |s| s.stats[1]),
            ap_row("AP@0.75", &runs, |s| s.stats[2]),
            ap_row("AR@100", &runs, |s| s.stats[8]),
        ],
    });
    let rows = (0..cfg.model.n_classes)
        .map(|k| {
            vec![
                Value::Text(k.to_string()),
                Value::Seeds(runs.iter().map(|x| x.summary.per_class_ap50[k]).collect()),
                Value::Seeds(runs.iter().map(|x| x.summary.per_class_ap[k]).collect()),
            ]
        })
        .collect();
    r.tables.push(Table {
        name: "per_class".into(),
        caption: format!("Average precision per digit, mean ± std over seeds {seeds:?}."),
        columns: vec![
            col("digit", Format::Int),
            col("AP@0.5", Format::Fixed(3)),
            col("AP@[.5:.95]", Format::Fixed(3)),
        ],
        rows,
    });

    // Training loss.
    let hs: Vec<&History> = runs.iter().map(|x| &x.history).collect();
    r.fact("loss_first", Value::Seeds(hs.iter().map(|h| h.train_loss[0]).collect()), Format::Fixed(3));
    r.fact("loss_last", Value::Seeds(final_losses(hs.iter().copied())), Format::Fixed(3));
    let mut fig = loss_figure("loss", cfg.log_every, seeds, Scale::Log, vec![loss_curve("multibox loss", hs.iter().copied())]);
    if let Plot::Lines { y_label, .. } = &mut fig.plot {
        *y_label = "multibox loss".into();
    }
    r.figures.push(fig);

    // The first seed's model on the test canvases.
    let run0 = &mut runs[0];
    let min = cfg.show_score;
    let per_canvas: Vec<Failures> = (0..test.len())
        .map(|i| failures(&test.objects[i], &shown(&run0.dets, i, min)))
        .collect();
    let total = |f: fn(&Failures) -> usize| per_canvas.iter().map(f).sum::<usize>();
    r.tables.push(Table {
        name: "failures".into(),
        caption: format!(
            "Failures of the seed-{} model on the {} test canvases ({n_test_objects} digits), \
             counting detections with score ≥ {min}, a match being IoU ≥ 0.5.",
            seeds[0], cfg.n_test
        ),
        columns: vec![col("failure", Format::Int), col("count", Format::Int)],
        rows: vec![
            vec![Value::Text("missed digits".into()), Value::Num(total(|f| f.missed) as f64)],
            vec![Value::Text("wrong class".into()), Value::Num(total(|f| f.wrong_class) as f64)],
            vec![Value::Text("duplicates".into()), Value::Num(total(|f| f.duplicates) as f64)],
            vec![Value::Text("spurious detections".into()), Value::Num(total(|f| f.spurious) as f64)],
        ],
    });
    r.fact("missed", Value::Num(total(|f| f.missed) as f64), Format::Int);
    r.fact("wrong_class", Value::Num(total(|f| f.wrong_class) as f64), Format::Int);
    r.fact("duplicates", Value::Num(total(|f| f.duplicates) as f64), Format::Int);

    let picks: Vec<(usize, String)> = (0..cfg.n_show.min(test.len()))
        .map(|i| (i, format!("test canvas {i}")))
        .collect();
    r.figures.push(prediction_figure(
        "predictions",
        format!("Detections (score ≥ {min}) on the first test canvases; dashed: ground truth"),
        &test,
        &run0.dets,
        &picks,
        min,
    ));
    // Up to two canvases of each failure kind, in canvas order.
    let mut picks = vec![];
    type Count = fn(&Failures) -> usize;
    let kinds: [(&str, Count); 3] = [
        ("missed digit", |f| f.missed),
        ("wrong class", |f| f.wrong_class),
        ("duplicate", |f| f.duplicates),
    ];
    for (what, count) in kinds {
        picks.extend(
            per_canvas
                .iter()
                .enumerate()
                .filter(|(_, f)| count(f) > 0)
                .take(2)
                .map(|(i, _)| (i, format!("{what} (canvas {i})"))),
        );
    }
    if !picks.is_empty() {
        r.figures.push(prediction_figure(
            "failures",
            format!("Failures of the seed-{} model (score ≥ {min}); dashed: ground truth", seeds[0]),
            &test,
            &run0.dets,
            &picks,
            min,
        ));
    }
    Ok(())
}
