//! Experiment `detection_metrics`: what IoU and average precision measure, on a case
//! small enough to follow by hand and on simulated detectors whose only flaw is
//! imprecise boxes.
//!
//! No data and no training: a *simulated detector* sees seeded random objects (squares
//! and oblongs from 8 to 160 pixels on 256 x 256 images, three classes), finds each
//! with a fixed probability, places its box with a localisation error of relative size
//! $\sigma$ (the centre moves by $\sigma w$, $\sigma h$ and the sides scale by
//! $e^{\sigma z}$, with $z$ standard normal), adds duplicates and false positives, and
//! scores hits above misses on average but not always. Only $\sigma$ changes from row to
//! row, with the same seeds, so each row's objects, hits and scores are the same and
//! only the boxes move. Metrics are mean ± std over the seeds.
//!
//! The report holds: the hand case of the chapter (per detection: TP or FP, precision,
//! recall, envelope, and the three APs), the COCO and VOC numbers of the simulated
//! detector for every $\sigma$, one class's precision-recall curve with its envelope at
//! two IoU thresholds, and the IoU of a square and its shifted copy for four sizes.

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use super::common::{band_series, over_seeds};
use super::{Experiment, Preset};
use crate::data::DataDir;
use crate::detect::{
    coco_eval, pr_curve, voc_ap, Bbox, CocoParams, Detection, GroundTruth,
};
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};

/// Experiment `detection_metrics`, registered in [`super::all`].
pub struct DetectionMetrics;

impl Experiment for DetectionMetrics {
    const NAME: &'static str = "detection_metrics";
    const CHAPTER: &'static str = "ch07";
    const TITLE: &'static str =
        "Average precision by hand and for simulated detectors of varying localisation error";
    type Config = Config;

    fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Images per simulated problem.
    pub n_images: usize,
    /// Image side in pixels.
    pub side: f32,
    /// Classes.
    pub n_classes: usize,
    /// Objects per image: uniform in `1..=max_objects`.
    pub max_objects: usize,
    /// Probability that the detector finds an object.
    pub p_found: f64,
    /// Probability that a found object gets a second, lower-scored box.
    pub p_duplicate: f64,
    /// False positives per image: uniform in `0..=max_false`.
    pub max_false: usize,
    /// The localisation errors compared, relative to the object's size.
    pub sigmas: Vec<f32>,
    /// The error of the precision-recall figure (one of `sigmas`).
    pub curve_sigma: f32,
    /// Object sides of the shifted-square figure, in pixels.
    pub shift_sides: Vec<f32>,
    /// Seeds of the simulated problems.
    pub seeds: Vec<u64>,
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            n_images: 500,
            side: 256.0,
            n_classes: 3,
            max_objects: 6,
            p_found: 0.85,
            p_duplicate: 0.15,
            max_false: 3,
            sigmas: vec![0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2],
            curve_sigma: 0.075,
            shift_sides: vec![8.0, 16.0, 32.0, 96.0],
            seeds: vec![0, 1, 2, 3, 4],
        }
    }

    /// The test configuration: fewer images and seeds.
    fn quick() -> Self {
        Config {
            n_images: 100,
            seeds: vec![0, 1],
            ..Self::full()
        }
    }
}

// ANCHOR: hand_case
/// The chapter's hand case: three 10 x 10 objects in one image and five detections,
/// best first: a hit, a miss, a hit shifted by one pixel (IoU 9/11), a miss, a hit.
pub fn hand_case() -> (Vec<GroundTruth>, Vec<Detection>) {
    let square = |x: f32, y: f32| Bbox::from_xywh(x, y, 10.0, 10.0);
    let gt = |x, y| GroundTruth {
        image: 0,
        class: 0,
        bbox: square(x, y),
    };
    let det = |score, x, y| Detection {
        image: 0,
        class: 0,
        score,
        bbox: square(x, y),
    };
    let gts = vec![gt(0.0, 0.0), gt(50.0, 0.0), gt(100.0, 0.0)];
    let dets = vec![
        det(0.9, 0.0, 0.0),   // object 1, exactly
        det(0.8, 0.0, 50.0),  // nothing there
        det(0.7, 51.0, 0.0),  // object 2, one pixel off
        det(0.6, 0.0, 100.0), // nothing there
        det(0.5, 100.0, 0.0), // object 3, exactly
    ];
    (gts, dets)
}
// ANCHOR_END: hand_case

/// A standard normal draw as `f32`.
fn normal(rng: &mut impl Rng) -> f32 {
    let z: f64 = StandardNormal.sample(rng);
    z as f32
}

/// `b` with its centre moved by `sigma` times its size and its sides scaled by
/// `exp(sigma z)`, with the noise `z` given (so that every sigma moves the box the
/// same way, by a different amount), clipped to the image.
fn misplace(b: &Bbox, sigma: f32, z: [f32; 4], side: f32) -> Bbox {
    let [cx, cy, w, h] = b.cxcywh();
    let (w2, h2) = (w * (sigma * z[2]).exp(), h * (sigma * z[3]).exp());
    Bbox::from_cxcywh(cx + sigma * w * z[0], cy + sigma * h * z[1], w2, h2)
        .clip(side, side)
}

/// A random object box, its side log-uniform in 8..160 pixels, aspect within 1:2.
fn random_box(rng: &mut impl Rng, side: f32) -> Bbox {
    let s = (rng.random_range(8f32.ln()..160f32.ln())).exp();
    let a = rng.random_range(-0.35f32..0.35).exp();
    let (w, h) = (s * a, s / a);
    let x = rng.random_range(0.0..(side - w).max(1.0));
    let y = rng.random_range(0.0..(side - h).max(1.0));
    Bbox::from_xywh(x, y, w, h).clip(side, side)
}

// ANCHOR: simulate
/// A simulated problem: objects, and what a detector with localisation error `sigma`
/// reports. The random draws do not depend on `sigma`: one seed gives the same objects,
/// hits, misses, false positives and scores for every `sigma`.
pub fn simulate(
    cfg: &Config,
    sigma: f32,
    seed: u64,
) -> (Vec<GroundTruth>, Vec<Detection>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut gts, mut dets) = (vec![], vec![]);
    for image in 0..cfg.n_images {
        for _ in 0..rng.random_range(1..=cfg.max_objects) {
            let class = rng.random_range(0..cfg.n_classes);
            let bbox = random_box(&mut rng, cfg.side);
            gts.push(GroundTruth { image, class, bbox });
            let found = rng.random_bool(cfg.p_found);
            let z = [(); 4].map(|_| normal(&mut rng));
            // Hits score higher than false positives on average, with overlap.
            let score = rng.random_range(0.3f32..1.0);
            if found {
                let bbox = misplace(&bbox, sigma, z, cfg.side);
                dets.push(Detection {
                    image,
                    class,
                    score,
                    bbox,
                });
            }
            let z2 = [(); 4].map(|_| normal(&mut rng));
            if found && rng.random_bool(cfg.p_duplicate) {
                let bbox = misplace(&bbox, sigma.max(0.1) * 2.0, z2, cfg.side);
                let score = score * rng.random_range(0.3f32..0.9);
                dets.push(Detection {
                    image,
                    class,
                    score,
                    bbox,
                });
            }
        }
        for _ in 0..rng.random_range(0..=cfg.max_false) {
            let class = rng.random_range(0..cfg.n_classes);
            let bbox = random_box(&mut rng, cfg.side);
            let score = rng.random_range(0.0f32..0.7);
            dets.push(Detection {
                image,
                class,
                score,
                bbox,
            });
        }
    }
    (gts, dets)
}
// ANCHOR_END: simulate

/// The metrics of one simulated problem: COCO's 12 numbers and the mean VOC AP50.
fn metrics(cfg: &Config, sigma: f32, seed: u64) -> ([f64; 12], f64) {
    let (gts, dets) = simulate(cfg, sigma, seed);
    let coco = coco_eval(&gts, &dets, cfg.n_classes, &CocoParams::default());
    let voc = voc_ap(&gts, &dets, cfg.n_classes, 0.5);
    (coco.stats, voc.iter().sum::<f64>() / voc.len() as f64)
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, r: &mut Report) -> Result<()> {
    r.seeds = cfg.seeds.clone();
    hand_case_table(r);

    // AP against localisation error.
    let runs: Vec<Vec<([f64; 12], f64)>> = cfg
        .sigmas
        .iter()
        .map(|&sigma| {
            over_seeds(
                &format!("detection_metrics, sigma {sigma}"),
                &cfg.seeds,
                |s| metrics(cfg, sigma, s),
            )
        })
        .collect();
    let stat =
        |i: usize, k: usize| Value::Seeds(runs[i].iter().map(|m| m.0[k]).collect());
    let voc = |i: usize| Value::Seeds(runs[i].iter().map(|m| m.1).collect());
    let mut rows = vec![];
    for (i, &sigma) in cfg.sigmas.iter().enumerate() {
        rows.push(vec![
            f64::from(sigma).into(),
            stat(i, 0),
            stat(i, 1),
            stat(i, 2),
            stat(i, 3),
            stat(i, 4),
            stat(i, 5),
            stat(i, 8),
            voc(i),
        ]);
    }
    let last = cfg.sigmas.len() - 1;
    let mid = cfg
        .sigmas
        .iter()
        .position(|&s| s == cfg.curve_sigma)
        .expect("curve_sigma is one of the sigmas");
    for (i, tag) in [(0, "exact"), (mid, "mid"), (last, "worst")] {
        r.fact(&format!("ap_{tag}"), stat(i, 0), Format::Fixed(3));
        r.fact(&format!("ap50_{tag}"), stat(i, 1), Format::Fixed(3));
        r.fact(&format!("ap75_{tag}"), stat(i, 2), Format::Fixed(3));
        r.fact(&format!("voc50_{tag}"), voc(i), Format::Fixed(3));
        r.fact(
            &format!("sigma_{tag}"),
            f64::from(cfg.sigmas[i]),
            Format::Fixed(3),
        );
    }
    let n_obj = (1 + cfg.max_objects) as f64 / 2.0 * cfg.n_images as f64;
    r.tables.push(Table {
        name: "localisation".into(),
        caption: format!(
            "COCO's numbers and VOC's AP50 (mean over classes) for a simulated \
             detector whose boxes are off by a relative error σ, on {} images of about \
             {n_obj:.0} objects in {} classes, mean ± std over seeds {:?}. Each seed's \
             objects, hits, misses and scores are the same in every row; only the boxes \
             move.",
            cfg.n_images, cfg.n_classes, cfg.seeds
        ),
        columns: vec![
            col("σ", Format::Fixed(3)),
            col("AP", Format::Fixed(3)),
            col("AP50", Format::Fixed(3)),
            col("AP75", Format::Fixed(3)),
            col("APs", Format::Fixed(3)),
            col("APm", Format::Fixed(3)),
            col("APl", Format::Fixed(3)),
            col("AR100", Format::Fixed(3)),
            col("VOC AP50", Format::Fixed(3)),
        ],
        rows,
    });
    let sigmas: Vec<f64> = cfg.sigmas.iter().map(|&s| f64::from(s)).collect();
    // One curve over the sigmas per seed; the line is their mean, the band their std.
    let ap_series = |name: &str, k: usize| {
        let curves: Vec<Vec<f64>> = (0..cfg.seeds.len())
            .map(|s| runs.iter().map(|by_seed| by_seed[s].0[k]).collect())
            .collect();
        band_series(name, &sigmas, &curves)
    };
    r.figures.push(Figure {
        name: "localisation".into(),
        title: "AP of a simulated detector by localisation error (mean ± std over seeds)"
            .into(),
        plot: Plot::Lines {
            x_label: "relative localisation error σ".into(),
            y_label: "average precision".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![
                ap_series("AP50", 1),
                ap_series("AP75", 2),
                ap_series("AP@[.5:.95]", 0),
            ],
        },
    });

    pr_figure(cfg, r);
    shift_figure(cfg, r);
    Ok(())
}

/// The hand case, detection by detection, and its three APs.
fn hand_case_table(r: &mut Report) {
    let (gts, dets) = hand_case();
    let c = pr_curve(&gts, &dets, 0, 0.5);
    let mut rows = vec![];
    for (n, d) in dets.iter().enumerate() {
        // The detections are already in score order.
        let best = gts
            .iter()
            .map(|g| d.bbox.iou_f64(&g.bbox))
            .fold(0.0, f64::max);
        let tp = n == 0 || c.recall[n] > c.recall[n - 1];
        rows.push(vec![
            ((n + 1) as f64).into(),
            f64::from(d.score).into(),
            best.into(),
            Value::from(if tp { "TP" } else { "FP" }),
            c.precision[n].into(),
            c.recall[n].into(),
            c.envelope[n].into(),
        ]);
    }
    r.tables.push(Table {
        name: "hand_case".into(),
        caption: "The hand case at IoU threshold 0.5: each detection in score order, \
                  its best IoU with an object, whether it is a hit, and precision, recall \
                  and the envelope after it."
            .into(),
        columns: vec![
            col("n", Format::Int),
            col("score", Format::Fixed(1)),
            col("best IoU", Format::Fixed(3)),
            col("at 0.5", Format::Int),
            col("precision", Format::Fixed(3)),
            col("recall", Format::Fixed(3)),
            col("envelope", Format::Fixed(3)),
        ],
        rows,
    });
    let coco = coco_eval(&gts, &dets, 1, &CocoParams::default());
    r.fact(
        "hand_voc50",
        voc_ap(&gts, &dets, 1, 0.5)[0],
        Format::Fixed(4),
    );
    r.fact("hand_coco50", coco.stats[1], Format::Fixed(4));
    r.fact("hand_coco", coco.stats[0], Format::Fixed(4));
}

/// One class's precision-recall curve and envelope at IoU 0.5 and 0.75.
fn pr_figure(cfg: &Config, r: &mut Report) {
    let seed = cfg.seeds[0];
    let (gts, dets) = simulate(cfg, cfg.curve_sigma, seed);
    let mut series = vec![];
    for iou in [0.5, 0.75] {
        let c = pr_curve(&gts, &dets, 0, iou);
        series.push(Series {
            name: format!("precision, IoU {iou}"),
            x: c.recall.clone(),
            y: c.precision,
            band: None,
        });
        series.push(Series {
            name: format!("envelope, IoU {iou}"),
            x: c.recall,
            y: c.envelope,
            band: None,
        });
    }
    r.figures.push(Figure {
        name: "pr_curve".into(),
        title: format!(
            "Precision and its envelope against recall, class 0, σ = {}, seed {seed}",
            cfg.curve_sigma
        ),
        plot: Plot::Lines {
            x_label: "recall".into(),
            y_label: "precision".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series,
        },
    });
}

// ANCHOR: shift
/// IoU of a `side` x `side` square with its copy moved `d` pixels right and `d` down.
pub fn diagonal_shift_iou(side: f32, d: f32) -> f64 {
    let a = Bbox::from_xywh(0.0, 0.0, side, side);
    a.iou_f64(&Bbox::from_xywh(d, d, side, side))
}
// ANCHOR_END: shift

/// IoU against a diagonal shift, for squares of several sizes.
fn shift_figure(cfg: &Config, r: &mut Report) {
    let shifts: Vec<f64> = (0..=32).map(|i| f64::from(i) * 0.25).collect();
    let series = cfg
        .shift_sides
        .iter()
        .map(|&s| Series {
            name: format!("{s} px square"),
            x: shifts.clone(),
            y: shifts
                .iter()
                .map(|&d| diagonal_shift_iou(s, d as f32))
                .collect(),
            band: None,
        })
        .collect();
    r.figures.push(Figure {
        name: "shift".into(),
        title: "IoU of a square and its copy shifted diagonally".into(),
        plot: Plot::Lines {
            x_label: "shift along each axis (pixels)".into(),
            y_label: "IoU".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series,
        },
    });
}
