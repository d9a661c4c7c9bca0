//! Experiment `detector_ablation`: what each part of the detector is worth, as mAP with
//! its spread over seeds.
//!
//! Four detectors are trained exactly as in `detector` and differ in one thing each: the
//! baseline; one anchor size per feature map instead of two; no box-regression head (the
//! anchors themselves are the boxes, trained on the classification loss alone); one
//! feature map (stride 8, carrying all four anchor sizes) instead of two. Then the
//! baseline's raw outputs are post-processed again with NMS thresholds from 0.3 to none
//! at all (a threshold of 1 suppresses nothing): no retraining.

use anyhow::Result;
use serde::Serialize;

use super::common::TrainFields;
use super::detector::{self, canvases, evaluate, runs, Run};
use super::{Experiment, Preset};
use crate::data::{mnist_refs, DataDir};
use crate::detect::inference::InferenceConfig;
use crate::detect::ssd::SsdConfig;
use crate::nn::Module;
use crate::report::{col, Format, Report, Table, Value};

/// Experiment `detector_ablation`, registered in [`super::all`].
pub struct DetectorAblation;

impl Experiment for DetectorAblation {
    const NAME: &'static str = "detector_ablation";
    const CHAPTER: &'static str = "ch07";
    const TITLE: &'static str =
        "Detector ablations: anchor sizes, box regression, feature maps, NMS threshold";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run: the `detector` configuration (smaller), the variants and the NMS
/// thresholds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Data, training and inference, as in `detector`.
    pub base: detector::Config,
    /// NMS IoU thresholds tried on the baseline's outputs (1 = no suppression).
    pub nms_thresholds: Vec<f32>,
}

impl Preset for Config {
    /// The book's configuration: `detector`'s, with 1,500 training canvases and 6 epochs
    /// (four detectors per seed).
    fn full() -> Self {
        let d = detector::Config::full();
        Config {
            base: detector::Config {
                n_train: 1_500,
                train: TrainFields {
                    n_epochs: 6,
                    ..d.train.clone()
                },
                ..d
            },
            nms_thresholds: vec![0.3, 0.45, 0.6, 0.8, 1.0],
        }
    }

    /// The test configuration: `detector`'s quick one, with 128 training canvases and
    /// one seed.
    fn quick() -> Self {
        let q = detector::Config::quick();
        Config {
            base: detector::Config {
                n_train: 128,
                train: TrainFields {
                    seeds: vec![0],
                    ..q.train.clone()
                },
                ..q
            },
            ..Self::full()
        }
    }
}

/// The variants: a name and the detector it trains (with its box-loss weight).
pub fn variants(base: &SsdConfig, box_weight: f32) -> Vec<(&'static str, SsdConfig, f32)> {
    let mut sizes8 = base.sizes8.clone();
    sizes8.extend(&base.sizes16);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    vec![
        ("baseline", base.clone(), box_weight),
        (
            "one anchor size per map",
            SsdConfig {
                sizes8: vec![mean(&base.sizes8)],
                sizes16: vec![mean(&base.sizes16)],
                ..base.clone()
            },
            box_weight,
        ),
        (
            "no box regression (anchors as boxes)",
            SsdConfig {
                box_head: false,
                ..base.clone()
            },
            0.0,
        ),
        (
            "one feature map (stride 8)",
            SsdConfig {
                sizes8,
                sizes16: vec![],
                ..base.clone()
            },
            box_weight,
        ),
    ]
}

fn seeds_of(runs: &[Run], f: impl Fn(&Run) -> f64) -> Value {
    Value::Seeds(runs.iter().map(f).collect())
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let b = &cfg.base;
    let (train, test) = canvases(&b.canvas, dir, b.n_train, b.n_test)?;
    r.seeds = b.train.seeds.clone();
    r.data = mnist_refs();
    let mut rows = vec![];
    let mut baseline = vec![];
    for (k, (name, model, box_weight)) in variants(&b.model, b.box_weight).into_iter().enumerate() {
        let mut rs = runs(b, &model, box_weight, &train, &test, name);
        let n_params = rs[0].net.n_params();
        let n_anchors = crate::detect::anchors::all_anchors(&model.grids()).len();
        rows.push(vec![
            Value::Text(name.into()),
            Value::Num(n_params as f64),
            Value::Num(n_anchors as f64),
            seeds_of(&rs, |x| x.summary.stats[1]),
            seeds_of(&rs, |x| x.summary.stats[0]),
        ]);
        let key = ["baseline", "one_size", "no_box", "one_map"][k];
        r.fact(&format!("{key}_map50"), seeds_of(&rs, |x| x.summary.stats[1]), Format::Fixed(3));
        r.fact(&format!("{key}_map"), seeds_of(&rs, |x| x.summary.stats[0]), Format::Fixed(3));
        if k == 0 {
            baseline = std::mem::take(&mut rs);
        }
    }
    r.tables.push(Table {
        name: "variants".into(),
        caption: format!(
            "Detector variants trained {} epochs on {} canvases, evaluated on {} test \
             canvases: COCO AP, mean ± std over seeds {:?}.",
            b.train.n_epochs, b.n_train, b.n_test, b.train.seeds
        ),
        columns: vec![
            col("variant", Format::Int),
            col("parameters", Format::Int),
            col("anchors", Format::Int),
            col("AP@0.5", Format::Fixed(3)),
            col("AP@[.5:.95]", Format::Fixed(3)),
        ],
        rows,
    });

    // NMS thresholds on the baseline models, no retraining.
    let mut rows = vec![];
    for &t in &cfg.nms_thresholds {
        let inf = InferenceConfig {
            nms_iou: t,
            ..b.inference
        };
        let evals: Vec<_> = baseline
            .iter_mut()
            .map(|x| evaluate(&mut x.net, &b.model, &test, &inf))
            .collect();
        let shown: Vec<f64> = evals
            .iter()
            .map(|(d, _)| d.iter().filter(|d| d.score >= b.show_score).count() as f64 / b.n_test as f64)
            .collect();
        let ap50 = Value::Seeds(evals.iter().map(|(_, s)| s.stats[1]).collect());
        let ap = Value::Seeds(evals.iter().map(|(_, s)| s.stats[0]).collect());
        let key = format!("nms_{:02}", (t * 100.0).round() as u32);
        r.fact(&format!("{key}_map50"), ap50.clone(), Format::Fixed(3));
        r.fact(&format!("{key}_map"), ap.clone(), Format::Fixed(3));
        rows.push(vec![
            Value::Text(if t >= 1.0 { "none".into() } else { format!("{t}") }),
            ap50,
            ap,
            Value::Seeds(shown),
        ]);
    }
    r.tables.push(Table {
        name: "nms".into(),
        caption: format!(
            "The baseline detectors' outputs post-processed with NMS at several IoU \
             thresholds (per class; \"none\" keeps every box): COCO AP and detections per \
             canvas with score ≥ {}, mean ± std over seeds {:?}.",
            b.show_score, b.train.seeds
        ),
        columns: vec![
            col("NMS IoU", Format::Int),
            col("AP@0.5", Format::Fixed(3)),
            col("AP@[.5:.95]", Format::Fixed(3)),
            col("detections / canvas", Format::Fixed(2)),
        ],
        rows,
    });
    Ok(())
}
