//! Chapter 7.1, average precision: a case small enough to compute by hand, and
//! agreement with pycocotools on a seeded random problem (the fixture in
//! `tests/fixtures/coco_ap/`, made by its `make.py`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use dlbook::detect::ap::linspace;
use dlbook::detect::{
    coco_eval, pr_curve, voc_ap, Bbox, CocoParams, Detection, GroundTruth,
};
use dlbook::experiments::detection_metrics::hand_case;
use serde::Deserialize;

/// pycocotools' numbers against ours: equal, to the last bit. Every IoU, area and
/// threshold is the same double on both sides (the inputs are exact in `f32`, the
/// thresholds are built as numpy builds them), so every match, every TP and FP count and
/// every sampled precision is the same; and the final means sum in numpy's pairwise
/// order. With a running sum instead, the means differ by about 1e-15 (measured:
/// 1.4e-15 on AP), so a tolerance would only be needed if numpy changed its summation.
const TOL: f64 = 0.0;

// ANCHOR: hand_case_aps
/// The hand case's VOC AP at IoU 0.5, COCO AP at 0.5, and COCO AP@[.5:.95].
fn hand_case_aps() -> (f64, f64, f64) {
    let (gts, dets) = hand_case();
    let coco = coco_eval(&gts, &dets, 1, &CocoParams::default());
    (voc_ap(&gts, &dets, 1, 0.5)[0], coco.stats[1], coco.stats[0])
}
// ANCHOR_END: hand_case_aps

#[test]
fn ap_of_the_hand_case() {
    let (voc, coco50, coco) = hand_case_aps();
    // Envelope 1 up to recall 1/3, 2/3 up to 2/3, 3/5 up to 1.
    assert!((voc - 34.0 / 45.0).abs() < 1e-12, "VOC AP {voc}");
    // 34 recall points in [0, 1/3], 33 in (1/3, 2/3], 34 in (2/3, 1].
    let coco50_exact = (34.0 + 33.0 * 2.0 / 3.0 + 34.0 * 3.0 / 5.0) / 101.0;
    assert!((coco50 - coco50_exact).abs() < 1e-12, "COCO AP50 {coco50}");
    // Above IoU 9/11 (thresholds 0.85, 0.9, 0.95) the shifted box is a miss: the envelope
    // is 1 up to recall 1/3 and 2/5 up to 2/3, then 0.
    let strict = (34.0 + 33.0 * 2.0 / 5.0) / 101.0;
    let coco_exact = (7.0 * coco50_exact + 3.0 * strict) / 10.0;
    assert!((coco - coco_exact).abs() < 1e-12, "COCO AP {coco}");
    // The two AP50s differ only by the sampling of the same envelope.
    assert!((voc - coco50).abs() < 0.01);
}

#[test]
fn the_envelope_is_the_best_precision_to_the_right() {
    let (gts, dets) = fixture();
    for k in 0..3 {
        let c = pr_curve(&gts, &dets, k, 0.5);
        assert!(c.n_gt > 0 && c.recall.len() > 10);
        for i in 0..c.recall.len() {
            let best = c.precision[i..].iter().copied().fold(0.0, f64::max);
            assert_eq!(c.envelope[i], best);
            assert!(c.envelope[i] >= c.precision[i]);
        }
        assert!(
            c.recall.windows(2).all(|w| w[0] <= w[1]),
            "recall never falls"
        );
        assert!(
            c.envelope.windows(2).all(|w| w[0] >= w[1]),
            "the envelope never rises"
        );
    }
}

#[derive(Deserialize)]
struct CocoBox {
    image_id: usize,
    category_id: usize,
    bbox: [f32; 4],
    #[serde(default)]
    score: Option<f32>,
}

#[derive(Deserialize)]
struct CocoGt {
    images: Vec<serde_json::Value>,
    categories: Vec<serde_json::Value>,
    annotations: Vec<CocoBox>,
}

#[derive(Deserialize)]
struct Inputs {
    ground_truth: CocoGt,
    detections: Vec<CocoBox>,
}

/// A double written as a decimal string: `str::parse` rounds correctly, where
/// serde_json's default number parser can miss the last bit of a 17-digit literal.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Num(f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Num).map_err(serde::de::Error::custom)
    }
}

fn nums(v: &[Num]) -> Vec<f64> {
    v.iter().map(|n| n.0).collect()
}

#[derive(Deserialize)]
struct Expected {
    stats: [Num; 12],
    per_class_ap: Vec<Num>,
    per_class_ap50: Vec<Num>,
    iou_thresholds: Vec<Num>,
    recall_thresholds: Vec<Num>,
    /// `(T, K, A, M)`.
    recall: Vec<Vec<Vec<Vec<Num>>>>,
    /// `(T, R, K)` for area `all` and 100 detections.
    precision_all_100: Vec<Vec<Vec<Num>>>,
    /// VOC's AP50 per class, from the devkit's code.
    voc_ap50: Vec<Num>,
}

fn read_fixture<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/coco_ap")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture problem in the library's types: COCO's image and category ids (from 1)
/// become indices (from 0), boxes go from `[x, y, w, h]` to corners.
fn fixture() -> (Vec<GroundTruth>, Vec<Detection>) {
    let inputs: Inputs = read_fixture("inputs.json");
    assert_eq!(inputs.ground_truth.images.len(), 30);
    assert_eq!(inputs.ground_truth.categories.len(), 3);
    let bbox = |b: [f32; 4]| {
        // On the 1/8 grid, as make.py writes them: exact in f32, so both sides see the
        // same box.
        assert!(b.iter().all(|&v| (v * 8.0).fract() == 0.0), "{b:?}");
        Bbox::from_xywh(b[0], b[1], b[2], b[3])
    };
    let gts = inputs
        .ground_truth
        .annotations
        .iter()
        .map(|a| GroundTruth {
            image: a.image_id - 1,
            class: a.category_id - 1,
            bbox: bbox(a.bbox),
        })
        .collect();
    let dets = inputs
        .detections
        .iter()
        .map(|d| Detection {
            image: d.image_id - 1,
            class: d.category_id - 1,
            score: d
                .score
                .filter(|s| (s * 256.0).fract() == 0.0)
                .expect("a score"),
            bbox: bbox(d.bbox),
        })
        .collect();
    (gts, dets)
}

fn close(ours: f64, theirs: f64, what: &str) {
    assert!(
        (ours - theirs).abs() <= TOL,
        "{what}: ours {ours}, pycocotools {theirs}, difference {:e}",
        ours - theirs
    );
}

#[test]
fn coco_eval_agrees_with_pycocotools() {
    let (gts, dets) = fixture();
    let want: Expected = read_fixture("expected.json");
    let p = CocoParams::default();
    // The thresholds are pycocotools' very doubles.
    assert_eq!(p.iou_thresholds, nums(&want.iou_thresholds));
    assert_eq!(
        linspace(0.0, 1.0, p.recall_points),
        nums(&want.recall_thresholds)
    );
    let got = coco_eval(&gts, &dets, 3, &p);
    for (i, (&o, t)) in got.stats.iter().zip(&want.stats).enumerate() {
        close(o, t.0, &format!("stats[{i}]"));
    }
    for k in 0..3 {
        close(
            got.per_class_ap[k],
            want.per_class_ap[k].0,
            &format!("AP of class {k}"),
        );
        let ap50 = want.per_class_ap50[k].0;
        close(got.per_class_ap50[k], ap50, &format!("AP50 of class {k}"));
    }
    // The arrays behind the summary, bit for bit, in row-major order.
    let flat = |v: Vec<&Num>| -> Vec<f64> { v.into_iter().map(|n| n.0).collect() };
    let recall = flat(want.recall.iter().flatten().flatten().flatten().collect());
    identical(
        got.recall.iter().copied().collect(),
        recall,
        "recall (T, K, A, M)",
    );
    let precision = flat(want.precision_all_100.iter().flatten().flatten().collect());
    let ours = got.precision.slice(ndarray::s![.., .., .., 0, 2]);
    identical(
        ours.iter().copied().collect(),
        precision,
        "precision (T, R, K)",
    );
}

/// Equal lengths and equal doubles; names the first difference.
fn identical(ours: Vec<f64>, theirs: Vec<f64>, what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    if let Some(i) = (0..ours.len()).find(|&i| ours[i] != theirs[i]) {
        panic!(
            "{what}: entry {i}: ours {}, pycocotools {}",
            ours[i], theirs[i]
        );
    }
}

#[test]
fn voc_ap_agrees_with_the_devkit() {
    // Same matches and the same precision and recall doubles; the devkit's final
    // numpy sum adds the areas pairwise, ours left to right, which moves the last bit
    // (measured: one unit in the last place, 1.1e-16, on class 0). 1e-15 covers that.
    let (gts, dets) = fixture();
    let want: Expected = read_fixture("expected.json");
    let ours = voc_ap(&gts, &dets, 3, 0.5);
    for (k, (o, t)) in ours.iter().zip(nums(&want.voc_ap50)).enumerate() {
        assert!((o - t).abs() <= 1e-15, "class {k}: ours {o}, devkit {t}");
    }
}

#[test]
fn the_fixture_exercises_every_rule() {
    let (gts, dets) = fixture();
    let mut per_image_class: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for d in &dets {
        *per_image_class.entry((d.image, d.class)).or_default() += 1;
    }
    assert!(
        per_image_class.values().any(|&n| n > 100),
        "maxDets never bites"
    );
    let area = |b: &Bbox| b.area_f64();
    let has = |lo: f64, hi: f64| {
        gts.iter()
            .any(|g| lo <= area(&g.bbox) && area(&g.bbox) <= hi)
    };
    assert!(has(0.0, 1023.0) && has(1025.0, 9215.0) && has(9217.0, 1e10));
    assert!(has(1024.0, 1024.0) && has(9216.0, 9216.0), "boundary areas");
    let images_of = |k: usize| {
        gts.iter()
            .filter(|g| g.class == k)
            .map(|g| g.image)
            .collect::<BTreeSet<_>>()
    };
    assert!(images_of(2).len() < 30, "a class absent from some images");
    let with_gt: BTreeSet<usize> = gts.iter().map(|g| g.image).collect();
    let with_det: BTreeSet<usize> = dets.iter().map(|d| d.image).collect();
    assert!(
        with_det.difference(&with_gt).next().is_some(),
        "an image without objects"
    );
    assert!(
        with_gt.difference(&with_det).next().is_some(),
        "an image without detections"
    );
    let mut scores: Vec<f32> = dets.iter().map(|d| d.score).collect();
    scores.sort_by(f32::total_cmp);
    assert!(scores.windows(2).any(|w| w[0] == w[1]), "tied scores");

    // maxDets matters: 200 detections per image give another precision than 100 ...
    let mut p = CocoParams::default();
    p.max_dets.push(200);
    let wide = coco_eval(&gts, &dets, 3, &p);
    let at = |m: usize| {
        wide.precision
            .slice(ndarray::s![.., .., 0, 0, m])
            .to_owned()
    };
    assert_ne!(at(2), at(3), "the cap of 100 changes nothing");
    // ... and evaluating more per image leaves the numbers at 1, 10 and 100 unchanged.
    let default = coco_eval(&gts, &dets, 3, &CocoParams::default());
    assert_eq!(wide.stats, default.stats);
}

#[test]
fn a_class_without_ground_truth_is_left_out() {
    let (gts, dets) = fixture();
    // Declare a fourth class that never occurs: its cells are -1 and no mean changes.
    let four = coco_eval(&gts, &dets, 4, &CocoParams::default());
    let three = coco_eval(&gts, &dets, 3, &CocoParams::default());
    assert_eq!(four.stats, three.stats);
    assert_eq!(four.per_class_ap[3], -1.0);
    assert!(four
        .precision
        .slice(ndarray::s![.., .., 3, .., ..])
        .iter()
        .all(|&v| v == -1.0));
    assert_eq!(voc_ap(&gts, &dets, 4, 0.5)[3], -1.0);
    // Nothing to evaluate at all: every summary number is -1.
    let empty = coco_eval(&[], &[], 2, &CocoParams::default());
    assert!(empty.stats.iter().all(|&s| s == -1.0));
}

#[test]
fn ap_rewards_localisation() {
    // Move every detection by a fraction of its size: AP50 barely moves, AP@[.5:.95]
    // falls, because the strict thresholds stop counting the shifted boxes.
    let (gts, dets) = fixture();
    let shifted: Vec<Detection> = dets
        .iter()
        .map(|d| {
            let [x, y, w, h] = d.bbox.xywh();
            Detection {
                bbox: Bbox::from_xywh(x + 0.08 * w, y + 0.08 * h, w, h),
                ..*d
            }
        })
        .collect();
    let p = CocoParams::default();
    let (a, b) = (
        coco_eval(&gts, &dets, 3, &p),
        coco_eval(&gts, &shifted, 3, &p),
    );
    let drop = |i: usize| a.stats[i] - b.stats[i];
    assert!(
        drop(0) > 3.0 * drop(1).max(0.0),
        "AP {:?} vs {:?}",
        a.stats,
        b.stats
    );
    assert!(drop(2) > drop(1), "AP75 falls more than AP50");
}

#[test]
fn voc_ap50_is_close_to_coco_ap50_on_the_fixture() {
    // Same envelope idea, different sampling and matching details: per class within a
    // couple of points.
    let (gts, dets) = fixture();
    let voc = voc_ap(&gts, &dets, 3, 0.5);
    let coco = coco_eval(&gts, &dets, 3, &CocoParams::default());
    assert_eq!(voc.len(), 3);
    for (k, (v, c)) in voc.iter().zip(&coco.per_class_ap50).enumerate() {
        assert!((v - c).abs() < 0.03, "class {k}: VOC {v} COCO {c}");
    }
}

fn quick_report() -> &'static dlbook::report::Report {
    dlbook::experiments::quick("detection_metrics", &dlbook::data::DataDir::resolve(None))
        .unwrap()
}

fn fact(name: &str) -> f64 {
    quick_report()
        .get_fact(name)
        .unwrap_or_else(|| panic!("no fact {name}"))
}

#[test]
fn the_report_holds_the_hand_case() {
    let (voc, coco50, coco) = hand_case_aps();
    assert_eq!(fact("hand_voc50"), voc);
    assert_eq!(fact("hand_coco50"), coco50);
    assert_eq!(fact("hand_coco"), coco);
}

#[test]
fn ap50_ignores_a_localisation_error_that_halves_ap() {
    // Boxes off by the middle error: AP50 within two points of exact boxes, while
    // AP@[.5:.95] loses more than 40 % of its value.
    assert!((fact("ap50_mid") - fact("ap50_exact")).abs() < 0.02);
    assert!(fact("ap_mid") < 0.6 * fact("ap_exact"));
    // At the largest error AP75 has all but vanished; AP50 keeps a fair share.
    assert!(fact("ap75_worst") < 0.05);
    assert!(fact("ap50_worst") > 4.0 * fact("ap75_worst"));
}

#[test]
fn exact_boxes_score_the_same_at_every_threshold() {
    // Exact boxes: AP@[.5:.95], AP50 and AP75 within a point (only duplicates that land
    // on a neighbouring object tell them apart).
    let (ap, ap50, ap75) = (fact("ap_exact"), fact("ap50_exact"), fact("ap75_exact"));
    assert!(ap50 - ap < 0.01 && ap50 - ap75 < 0.01, "{ap} {ap50} {ap75}");
}

#[test]
fn voc_and_coco_ap50_agree_within_a_point() {
    for tag in ["exact", "mid", "worst"] {
        let (voc, coco) = (fact(&format!("voc50_{tag}")), fact(&format!("ap50_{tag}")));
        assert!((voc - coco).abs() < 0.01, "{tag}: VOC {voc}, COCO {coco}");
    }
}

#[test]
fn a_diagonal_shift_costs_small_boxes_more() {
    use dlbook::experiments::detection_metrics::diagonal_shift_iou;
    // Overlap (s - d)^2 over union 2 s^2 - (s - d)^2.
    for s in [8.0f32, 16.0, 32.0, 96.0] {
        for d in [0.5f32, 1.0, 2.0, 4.0] {
            let (s64, d64) = (f64::from(s), f64::from(d));
            let o = (s64 - d64).powi(2);
            assert!((diagonal_shift_iou(s, d) - o / (2.0 * s64 * s64 - o)).abs() < 1e-12);
        }
    }
    // Two pixels each way: an 8-pixel object drops below 0.5, a 96-pixel one stays
    // above 0.9.
    assert!(diagonal_shift_iou(8.0, 2.0) < 0.5);
    assert!(diagonal_shift_iou(96.0, 2.0) > 0.9);
}

#[test]
fn the_simulated_detector_changes_only_its_boxes() {
    use dlbook::experiments::detection_metrics::{simulate, Config};
    use dlbook::experiments::Preset;
    let cfg = Config::quick();
    let (g0, d0) = simulate(&cfg, 0.0, 3);
    let (g1, d1) = simulate(&cfg, 0.2, 3);
    assert_eq!(g0, g1);
    assert_eq!(d0.len(), d1.len());
    // Objects of all three COCO sizes.
    let area = |g: &GroundTruth| g.bbox.area_f64();
    assert!(g0.iter().any(|g| area(g) < 32.0 * 32.0));
    assert!(g0
        .iter()
        .any(|g| (32.0 * 32.0..96.0 * 96.0).contains(&area(g))));
    assert!(g0.iter().any(|g| area(g) > 96.0 * 96.0));
    let moved = d0.iter().zip(&d1).filter(|(a, b)| a.bbox != b.bbox).count();
    assert!(moved > d0.len() / 2);
    for (a, b) in d0.iter().zip(&d1) {
        assert_eq!((a.image, a.class, a.score), (b.image, b.class, b.score));
    }
}

#[test]
fn ap_falls_with_every_step_of_error() {
    let t = quick_report()
        .tables
        .iter()
        .find(|t| t.name == "localisation")
        .expect("the localisation table");
    let column = |c: usize| -> Vec<f64> {
        t.rows
            .iter()
            .map(|r| r[c].number().expect("a number"))
            .collect()
    };
    let (sigma, ap, ap50, ap75) = (column(0), column(1), column(2), column(3));
    assert!(ap.windows(2).all(|w| w[1] < w[0]), "AP {ap:?}");
    let mid = fact("sigma_mid");
    for i in (0..sigma.len()).filter(|&i| sigma[i] <= mid) {
        assert!((ap50[i] - ap50[0]).abs() < 0.02, "AP50 {ap50:?}");
    }
    // The smallest error: AP75 unmoved, the average down by more than 5 points.
    assert!((ap75[1] - ap75[0]).abs() < 0.01, "AP75 {ap75:?}");
    assert!(ap[1] < ap[0] - 0.05, "AP {ap:?}");
    assert!(ap75.last() < ap.last(), "AP75 collapses below the average");
}

#[test]
fn a_stricter_threshold_ends_at_lower_recall() {
    use dlbook::experiments::detection_metrics::{simulate, Config};
    use dlbook::experiments::Preset;
    let cfg = Config::full();
    let (gts, dets) = simulate(&cfg, cfg.curve_sigma, cfg.seeds[0]);
    let end = |iou: f64| *pr_curve(&gts, &dets, 0, iou).recall.last().unwrap();
    assert!(end(0.75) < end(0.5) - 0.1, "{} vs {}", end(0.75), end(0.5));
}

#[test]
fn equal_ious_go_to_the_last_ground_truth() {
    // Two objects, a detection exactly between them (IoU 9/11 with each), and a second
    // detection that only reaches the first object (IoU 7/13). pycocotools gives the
    // first detection the *last* object of equal IoU, which leaves the first object to
    // the second detection: two hits at 0.5 (taking the first object would leave one).
    // Checked with pycocotools 2.0.11: AP50 1, dtMatches [2, 1].
    let gt = |x: f32| GroundTruth {
        image: 0,
        class: 0,
        bbox: Bbox::from_xywh(x, 0.0, 10.0, 10.0),
    };
    let det = |x: f32, score: f32| Detection {
        image: 0,
        class: 0,
        score,
        bbox: Bbox::from_xywh(x, 0.0, 10.0, 10.0),
    };
    let s = coco_eval(
        &[gt(0.0), gt(2.0)],
        &[det(1.0, 0.9), det(-3.0, 0.8)],
        1,
        &CocoParams::default(),
    );
    assert_eq!(s.stats[1], 1.0);
    // At 0.55 to 0.8 only the first detection hits (recall 1/2 at precision 1: 51 of
    // the 101 recall points); above 9/11 nothing does.
    let ap = (101.0 + 6.0 * 51.0) / 1010.0;
    assert!((s.stats[0] - ap).abs() < 1e-15, "{} vs {ap}", s.stats[0]);
}

#[test]
fn a_match_to_an_object_in_range_is_preferred() {
    // A small 30x30 object and a medium 33x33 one at the same corner, and one 32x32
    // detection (area 32^2: both small and medium), closer to the medium one (IoU
    // 1024/1089 against 900/1024). For APs the medium object is ignored; the detection
    // takes the small object whenever their IoU clears the threshold (8 of the 10
    // thresholds), although an ignored object fits it better. For APm, the reverse: 9
    // of 10. Checked with pycocotools 2.0.11: APs 0.8, APm 0.9 (to the last bit or so).
    let gt = |side: f32| GroundTruth {
        image: 0,
        class: 0,
        bbox: Bbox::from_xywh(0.0, 0.0, side, side),
    };
    let det = Detection {
        image: 0,
        class: 0,
        score: 0.9,
        bbox: Bbox::from_xywh(0.0, 0.0, 32.0, 32.0),
    };
    let s = coco_eval(&[gt(30.0), gt(33.0)], &[det], 1, &CocoParams::default());
    for (i, want) in [(3, 0.8), (4, 0.9), (9, 0.8), (10, 0.9)] {
        assert!(
            (s.stats[i] - want).abs() < 1e-15,
            "stats[{i}] {}",
            s.stats[i]
        );
    }
}
