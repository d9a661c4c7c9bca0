//! Average precision: COCO's evaluation (the twelve numbers of pycocotools, per-class
//! AP) and VOC's all-point AP.
//!
//! **Precision and recall.** Sort a class's detections by score, highest first, and call
//! each one a true positive if it is matched to a ground-truth box of its image, a false
//! positive otherwise. After the first $n$ detections, with $\mathrm{TP}_n$ true
//! positives among them and $G$ ground-truth objects,
//!
//! $$P_n = \frac{\mathrm{TP}_n}{n}, \qquad R_n = \frac{\mathrm{TP}_n}{G}.$$
//!
//! Lowering the score threshold walks along the curve: recall never decreases,
//! precision goes up at each hit and down at each miss. **Average precision** is the area
//! under this curve, made monotone first: the *precision envelope*
//! $\hat P(r) = \max_{n : R_n \ge r} P_n$ is the best precision reachable at recall $r$
//! or more (nobody would choose a threshold that is worse on both axes).
//!
//! - **VOC (2010 on), all-point:** the exact area under the envelope, a sum over the
//!   recall steps, $\mathrm{AP} = \sum_n (R_n - R_{n-1})\, \hat P(R_n)$ ([`voc_ap`]).
//! - **COCO, 101-point:** the mean of the envelope sampled at $r = 0, 0.01, \dots, 1$,
//!   $\mathrm{AP} = \frac{1}{101} \sum_{j=0}^{100} \hat P(j/100)$, with $\hat P(r) = 0$
//!   beyond the highest recall reached. pycocotools samples $\hat P$ at the first
//!   detection whose recall reaches $r$, which is the same number.
//!
//! **Matching.** A detection is a true positive at IoU threshold $t$ if it overlaps an
//! object of its class and image with IoU $\ge t$ that no better-scored detection has
//! taken. COCO walks the detections of each image and class in score order (at most
//! `maxDets` of them, the best-scored) and gives each the unmatched ground truth of
//! highest IoU, so a duplicate of a found object is a false positive. COCO averages AP
//! over ten thresholds $t = 0.50, 0.55, \dots, 0.95$ (written AP@[.5:.95]): at 0.5 a box
//! that is off by a third of the object still counts; at 0.95 only a box within a pixel
//! or two of a 50-pixel object does, so the average rewards localisation, not just
//! finding. AP50 and AP75 are single thresholds.
//!
//! **Area ranges.** APs, APm and APl restrict the evaluation to small (area
//! $\le 32^2$), medium ($32^2$ to $96^2$) and large ($\ge 96^2$) objects: ground truths
//! outside the range are *ignored* (neither found nor missed), and so are detections
//! matched to them and unmatched detections whose own area is outside the range. The
//! bounds are inclusive at both ends, as in pycocotools.
//!
//! **Recall.** AR is the recall after all (up to `maxDets`) detections, averaged over
//! the thresholds and classes; AR1, AR10, AR100 allow 1, 10, 100 detections per image.
//!
//! **Averages.** Each number is a mean over classes (and thresholds); a class with no
//! ground truth in the evaluated area range has no recall, its cells are -1 and are left
//! out of every mean, and a mean with no cell at all is -1.
//!
//! Faithful to pycocotools (`cocoeval.py`; the tests find every number equal to its own,
//! to the last bit, on a random problem of 30 images):
//! stable sorts by score (detections of equal score keep their order within an image;
//! across images, the lower image index first), the last of several ground truths of
//! equal best IoU wins, the matching prefers unignored ground truths, and precision is
//! $\mathrm{TP}/(\mathrm{TP} + \mathrm{FP} + \epsilon)$ with $\epsilon = 2^{-52}$, and
//! means are summed in numpy's pairwise order.
//! **Not supported:** crowd annotations (`iscrowd`), which COCO matches many-to-one and
//! scores by the detection's area; every ground truth here is an ordinary object.
//! **Areas** are box areas, $w h$, for ground truths and detections alike. pycocotools
//! takes a ground truth's area from its annotation, which in COCO's own files is the
//! area of the segmentation mask, smaller than the box; on such files APs, APm and APl
//! can differ from ours (the fixture writes box areas, as a box-only dataset would).

use std::collections::BTreeMap;

use ndarray::{s, Array4, Array5};
use serde::{Deserialize, Serialize};

use super::nms::rank_by_score;
use super::{Bbox, Detection};

/// One annotated object.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// The image it is in (an index into the evaluated set).
    pub image: usize,
    /// Its class.
    pub class: usize,
    /// Where.
    pub bbox: Bbox,
}

/// A named range of box areas (in square pixels, bounds included).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AreaRange {
    /// COCO's label: `all`, `small`, `medium`, `large`.
    pub label: String,
    /// Smallest area in the range.
    pub min: f64,
    /// Largest area in the range.
    pub max: f64,
}

/// The parameters of a COCO evaluation; [`Default`] gives COCO's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CocoParams {
    /// IoU thresholds, ascending: 0.50, 0.55, ..., 0.95 (`f64`, the very values
    /// pycocotools compares with).
    pub iou_thresholds: Vec<f64>,
    /// Recall points at which the envelope is sampled: 101 (0, 0.01, ..., 1).
    pub recall_points: usize,
    /// Detections allowed per image and class, ascending: 1, 10, 100.
    pub max_dets: Vec<usize>,
    /// `all`, `small`, `medium`, `large`.
    pub area_ranges: Vec<AreaRange>,
}

/// `n` evenly spaced numbers from `start` to `stop`, computed as numpy's `linspace`
/// computes them (`i * step + start`, the last set to `stop`), so that the thresholds
/// are bit for bit pycocotools'.
pub fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (stop - start) / (n - 1) as f64;
            let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
            v[n - 1] = stop;
            v
        }
    }
}

impl Default for CocoParams {
    fn default() -> Self {
        let range = |label: &str, min: f64, max: f64| AreaRange {
            label: label.into(),
            min,
            max,
        };
        let (huge, s, m) = (1e5f64 * 1e5, 32.0 * 32.0, 96.0 * 96.0);
        CocoParams {
            iou_thresholds: linspace(0.5, 0.95, 10),
            recall_points: 101,
            max_dets: vec![1, 10, 100],
            area_ranges: vec![
                range("all", 0.0, huge),
                range("small", 0.0, s),
                range("medium", s, m),
                range("large", m, huge),
            ],
        }
    }
}

/// What a COCO evaluation returns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CocoSummary {
    /// pycocotools' twelve numbers, in its order: AP, AP50, AP75, APs, APm, APl (at 100
    /// detections), AR1, AR10, AR100, ARs, ARm, ARl; -1 where nothing was evaluated.
    pub stats: [f64; 12],
    /// AP@[.5:.95] of each class (area `all`, the last `max_dets`); -1 for a class
    /// without ground truth.
    pub per_class_ap: Vec<f64>,
    /// AP@0.5 of each class, likewise.
    pub per_class_ap50: Vec<f64>,
    /// The sampled envelope, `(T, R, K, A, M)`: threshold, recall point, class, area
    /// range, max detections; -1 where a class has no ground truth.
    pub precision: Array5<f64>,
    /// The final recall, `(T, K, A, M)`, -1 likewise.
    pub recall: Array4<f64>,
    /// The recall points the envelope is sampled at (`R` of them).
    pub recall_thresholds: Vec<f64>,
}

/// pycocotools adds this (numpy's `spacing(1)`) to the precision's denominator.
const EPS: f64 = f64::EPSILON;

/// The outcome of matching one image's detections of one class, at every threshold.
struct ImageEval {
    /// Scores of the kept detections, highest first.
    scores: Vec<f64>,
    /// `matched[t][d]`: detection `d` took a ground truth at threshold `t`.
    matched: Vec<Vec<bool>>,
    /// `ignored[t][d]`: detection `d` counts neither as hit nor as miss.
    ignored: Vec<Vec<bool>>,
    /// Ground truths inside the area range (the recall's denominator).
    n_gt: usize,
}

// ANCHOR: match_image
/// COCO's greedy matching in one image for one class. `ious[d][g]` is the IoU of
/// detection `d` (in score order) with ground truth `g`; `gt_ignored[g]` and
/// `dt_outside[d]` say which boxes are outside the area range.
fn match_image(
    ious: &[Vec<f64>],
    gt_ignored: &[bool],
    dt_outside: &[bool],
    thresholds: &[f64],
) -> (Vec<Vec<bool>>, Vec<Vec<bool>>) {
    // Unignored ground truths first (stable), so a match to a real object is preferred.
    let mut order: Vec<usize> = (0..gt_ignored.len()).collect();
    order.sort_by_key(|&g| gt_ignored[g]);
    let (n_dt, n_th) = (dt_outside.len(), thresholds.len());
    let mut matched = vec![vec![false; n_dt]; n_th];
    let mut ignored = vec![vec![false; n_dt]; n_th];
    for (t, &thr) in thresholds.iter().enumerate() {
        let mut taken = vec![false; gt_ignored.len()];
        for d in 0..n_dt {
            let mut best_iou = thr.min(1.0 - 1e-10);
            let mut best: Option<usize> = None;
            for &g in &order {
                if taken[g] {
                    continue;
                }
                // Matched to a real object already: ignored objects cannot do better.
                if best.is_some_and(|m| !gt_ignored[m]) && gt_ignored[g] {
                    break;
                }
                // `>=`: a later ground truth of equal IoU replaces the earlier one.
                if ious[d][g] >= best_iou {
                    best_iou = ious[d][g];
                    best = Some(g);
                }
            }
            if let Some(g) = best {
                taken[g] = true;
                matched[t][d] = true;
                ignored[t][d] = gt_ignored[g];
            } else {
                // An unmatched detection outside the area range is not held against it.
                ignored[t][d] = dt_outside[d];
            }
        }
    }
    (matched, ignored)
}
// ANCHOR_END: match_image

/// The precision envelope, in place: each entry becomes the largest at its position or
/// after it (pycocotools' loop, from the right).
fn envelope(p: &mut [f64]) {
    for i in (1..p.len()).rev() {
        if p[i] > p[i - 1] {
            p[i - 1] = p[i];
        }
    }
}

/// The detections and ground truths of one class, grouped by image (ascending).
type ByImage<'a> = BTreeMap<usize, (Vec<&'a GroundTruth>, Vec<&'a Detection>)>;

fn group_by_image<'a>(
    gts: &'a [GroundTruth],
    dets: &'a [Detection],
    n_classes: usize,
) -> Vec<ByImage<'a>> {
    let mut groups: Vec<ByImage<'a>> = vec![BTreeMap::new(); n_classes];
    for g in gts {
        assert!(
            g.class < n_classes,
            "coco_eval: ground truth of class {} with n_classes {n_classes}",
            g.class
        );
        groups[g.class].entry(g.image).or_default().0.push(g);
    }
    for d in dets {
        assert!(
            d.class < n_classes,
            "coco_eval: detection of class {} with n_classes {n_classes}",
            d.class
        );
        groups[d.class].entry(d.image).or_default().1.push(d);
    }
    groups
}

// ANCHOR: accumulate
/// Precision envelope sampled at `rec_thr`, and the final recall, from the matches of
/// every image (already concatenated) for one threshold: `hits[i]` / `counted[i]` for
/// the detections sorted by score, `n_gt` objects.
fn sampled_envelope(
    hits: &[bool],
    counted: &[bool],
    n_gt: usize,
    rec_thr: &[f64],
) -> (Vec<f64>, f64) {
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    let mut recall = Vec::with_capacity(hits.len());
    let mut precision = Vec::with_capacity(hits.len());
    for (&hit, &c) in hits.iter().zip(counted) {
        if c {
            if hit {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
        }
        recall.push(tp / n_gt as f64);
        precision.push(tp / (fp + tp + EPS));
    }
    // The envelope: the best precision at this recall or any higher one.
    envelope(&mut precision);
    // Sample at the first detection reaching each recall point; 0 beyond the last.
    let q = rec_thr
        .iter()
        .map(|&r| {
            let i = recall.partition_point(|&x| x < r);
            precision.get(i).copied().unwrap_or(0.0)
        })
        .collect();
    (q, recall.last().copied().unwrap_or(0.0))
}
// ANCHOR_END: accumulate

/// COCO's detection evaluation of `dets` against `gts`, classes `0..n_classes`, as
/// pycocotools' `COCOeval` (iouType `bbox`) computes it: `evaluate`, `accumulate`,
/// `summarize`. The evaluated images are those that appear in `gts` or `dets`. Panics on
/// a class not below `n_classes` or a NaN score.
pub fn coco_eval(
    gts: &[GroundTruth],
    dets: &[Detection],
    n_classes: usize,
    p: &CocoParams,
) -> CocoSummary {
    assert!(
        p.max_dets.windows(2).all(|w| w[0] <= w[1]),
        "coco_eval: max_dets {:?} must be ascending",
        p.max_dets
    );
    let (n_t, n_a, n_m) = (
        p.iou_thresholds.len(),
        p.area_ranges.len(),
        p.max_dets.len(),
    );
    let rec_thr = linspace(0.0, 1.0, p.recall_points);
    let mut precision =
        Array5::from_elem((n_t, rec_thr.len(), n_classes, n_a, n_m), -1.0);
    let mut recall = Array4::from_elem((n_t, n_classes, n_a, n_m), -1.0);
    let max_det = p.max_dets.last().copied().unwrap_or(0);
    for (k, images) in group_by_image(gts, dets, n_classes).into_iter().enumerate() {
        for (a, range) in p.area_ranges.iter().enumerate() {
            let evals: Vec<ImageEval> = images
                .values()
                .map(|(g, d)| evaluate_image(g, d, range, max_det, &p.iou_thresholds))
                .collect();
            let n_gt: usize = evals.iter().map(|e| e.n_gt).sum();
            if n_gt == 0 {
                continue;
            }
            for (m, &md) in p.max_dets.iter().enumerate() {
                // Every image's best `md`, then one stable sort by score.
                let kept: Vec<(usize, usize)> = evals
                    .iter()
                    .enumerate()
                    .flat_map(|(e, ev)| (0..ev.scores.len().min(md)).map(move |d| (e, d)))
                    .collect();
                let mut order: Vec<usize> = (0..kept.len()).collect();
                let score = |i: usize| evals[kept[i].0].scores[kept[i].1];
                order.sort_by(|&x, &y| score(y).partial_cmp(&score(x)).unwrap());
                for t in 0..n_t {
                    let pick = |f: fn(&ImageEval, usize, usize) -> bool| -> Vec<bool> {
                        order
                            .iter()
                            .map(|&i| f(&evals[kept[i].0], t, kept[i].1))
                            .collect()
                    };
                    let hits = pick(|e, t, d| e.matched[t][d]);
                    let counted = pick(|e, t, d| !e.ignored[t][d]);
                    let (q, r) = sampled_envelope(&hits, &counted, n_gt, &rec_thr);
                    for (j, v) in q.into_iter().enumerate() {
                        precision[[t, j, k, a, m]] = v;
                    }
                    recall[[t, k, a, m]] = r;
                }
            }
        }
    }
    summarize(p, precision, recall, rec_thr)
}

/// Matches one image's detections of one class (sorted by score, at most `max_det`)
/// against its ground truths, within one area range.
fn evaluate_image(
    gts: &[&GroundTruth],
    dets: &[&Detection],
    range: &AreaRange,
    max_det: usize,
    thresholds: &[f64],
) -> ImageEval {
    let outside = |b: &Bbox| {
        let area = b.area_f64();
        area < range.min || area > range.max
    };
    let order = rank_by_score(dets);
    let dets: Vec<&Detection> = order.iter().take(max_det).map(|&i| dets[i]).collect();
    let ious: Vec<Vec<f64>> = dets
        .iter()
        .map(|d| gts.iter().map(|g| d.bbox.iou_f64(&g.bbox)).collect())
        .collect();
    let gt_ignored: Vec<bool> = gts.iter().map(|g| outside(&g.bbox)).collect();
    let dt_outside: Vec<bool> = dets.iter().map(|d| outside(&d.bbox)).collect();
    let (matched, ignored) = match_image(&ious, &gt_ignored, &dt_outside, thresholds);
    ImageEval {
        scores: dets.iter().map(|d| f64::from(d.score)).collect(),
        matched,
        ignored,
        n_gt: gt_ignored.iter().filter(|&&i| !i).count(),
    }
}

/// The mean of the entries that are not -1, or -1 if there are none.
fn mean_valid<'a>(values: impl Iterator<Item = &'a f64>) -> f64 {
    let v: Vec<f64> = values.copied().filter(|&v| v > -1.0).collect();
    if v.is_empty() {
        -1.0
    } else {
        pairwise_sum(&v) / v.len() as f64
    }
}

/// numpy's summation (`pairwise_sum` in its `loops_utils`): eight running sums over
/// blocks of at most 128 numbers, blocks added pairwise. Besides being more accurate
/// than a running sum, it makes our means the very doubles pycocotools' `np.mean` gives.
fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |s, &x| s + x)
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let full = n - n % 8;
        for chunk in a[8..full].chunks_exact(8) {
            for (rj, &x) in r.iter_mut().zip(chunk) {
                *rj += x;
            }
        }
        let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[full..] {
            s += x;
        }
        s
    } else {
        let half = n / 2;
        let half = half - half % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}

/// pycocotools' `summarize`, plus the per-class AP that detectron2 and others report.
fn summarize(
    p: &CocoParams,
    precision: Array5<f64>,
    recall: Array4<f64>,
    recall_thresholds: Vec<f64>,
) -> CocoSummary {
    let area = |label: &str| p.area_ranges.iter().position(|r| r.label == label);
    let max_det =
        |n: Option<usize>| n.and_then(|n| p.max_dets.iter().position(|&m| m == n));
    // pycocotools selects thresholds by exact equality with the literal.
    let thr = |t: f64| p.iou_thresholds.iter().position(|&x| x == t);
    let n_t = p.iou_thresholds.len();
    let ap = |iou: Option<f64>, label: &str, md: Option<usize>| -> f64 {
        let (Some(a), Some(m)) = (area(label), max_det(md)) else {
            return -1.0;
        };
        let ts = match iou {
            None => 0..n_t,
            Some(t) => match thr(t) {
                Some(i) => i..i + 1,
                None => return -1.0,
            },
        };
        mean_valid(precision.slice(s![ts, .., .., a, m]).iter())
    };
    let ar = |label: &str, md: Option<usize>| -> f64 {
        let (Some(a), Some(m)) = (area(label), max_det(md)) else {
            return -1.0;
        };
        mean_valid(recall.slice(s![.., .., a, m]).iter())
    };
    let md = |i: usize| p.max_dets.get(i).copied();
    let stats = [
        ap(None, "all", Some(100)),
        ap(Some(0.5), "all", md(2)),
        ap(Some(0.75), "all", md(2)),
        ap(None, "small", md(2)),
        ap(None, "medium", md(2)),
        ap(None, "large", md(2)),
        ar("all", md(0)),
        ar("all", md(1)),
        ar("all", md(2)),
        ar("small", md(2)),
        ar("medium", md(2)),
        ar("large", md(2)),
    ];
    let n_classes = precision.shape()[2];
    let per_class = |ts: std::ops::Range<usize>| -> Vec<f64> {
        let (Some(a), Some(m)) = (area("all"), p.max_dets.len().checked_sub(1)) else {
            return vec![-1.0; n_classes];
        };
        (0..n_classes)
            .map(|k| mean_valid(precision.slice(s![ts.clone(), .., k, a, m]).iter()))
            .collect()
    };
    let per_class_ap = per_class(0..n_t);
    let per_class_ap50 = match thr(0.5) {
        Some(i) => per_class(i..i + 1),
        None => vec![-1.0; n_classes],
    };
    CocoSummary {
        stats,
        per_class_ap,
        per_class_ap50,
        precision,
        recall,
        recall_thresholds,
    }
}

/// A class's precision-recall curve at one IoU threshold (VOC matching, all
/// detections): one point per detection in score order, and the envelope.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PrCurve {
    /// Recall after each detection (0 throughout for a class without ground truth).
    pub recall: Vec<f64>,
    /// Precision after each detection.
    pub precision: Vec<f64>,
    /// The envelope: the best precision at this recall or beyond.
    pub envelope: Vec<f64>,
    /// Ground-truth objects of the class.
    pub n_gt: usize,
}

// ANCHOR: voc_curve
/// VOC's precision-recall curve for class `class`: detections sorted by score (stable),
/// each matched to the ground truth of its image it overlaps most; a true positive if
/// that IoU exceeds `iou` (strictly, as in VOC's code) and the object was not taken by a
/// better-scored detection, else a false positive.
pub fn pr_curve(
    gts: &[GroundTruth],
    dets: &[Detection],
    class: usize,
    iou: f64,
) -> PrCurve {
    let mut objects: BTreeMap<usize, Vec<(Bbox, bool)>> = BTreeMap::new();
    for g in gts.iter().filter(|g| g.class == class) {
        objects.entry(g.image).or_default().push((g.bbox, false));
    }
    let n_gt: usize = objects.values().map(Vec::len).sum();
    let dets: Vec<&Detection> = dets.iter().filter(|d| d.class == class).collect();
    let (mut tp, mut fp) = (0usize, 0usize);
    let (mut recall, mut precision) = (vec![], vec![]);
    for i in rank_by_score(&dets) {
        let d = dets[i];
        let hit = objects.get_mut(&d.image).and_then(|objs| {
            // The first of equal maxima, as numpy's argmax.
            let (best, ov) = objs.iter().enumerate().fold((0, f64::MIN), |b, (j, o)| {
                let v = d.bbox.iou_f64(&o.0);
                if v > b.1 {
                    (j, v)
                } else {
                    b
                }
            });
            (ov > iou && !objs[best].1).then(|| objs[best].1 = true)
        });
        if hit.is_some() {
            tp += 1;
        } else {
            fp += 1;
        }
        recall.push(tp as f64 / n_gt.max(1) as f64);
        precision.push(tp as f64 / (tp + fp) as f64);
    }
    let mut env = precision.clone();
    envelope(&mut env);
    PrCurve {
        recall,
        precision,
        envelope: env,
        n_gt,
    }
}
// ANCHOR_END: voc_curve

// ANCHOR: voc_ap
/// VOC's average precision (2010 on) of every class at IoU threshold `iou`: the exact
/// area under the precision envelope, $\sum_n (R_n - R_{n-1}) \hat P(R_n)$; -1 for a
/// class without ground truth.
pub fn voc_ap(
    gts: &[GroundTruth],
    dets: &[Detection],
    n_classes: usize,
    iou: f32,
) -> Vec<f64> {
    (0..n_classes)
        .map(|k| {
            let c = pr_curve(gts, dets, k, f64::from(iou));
            if c.n_gt == 0 {
                return -1.0;
            }
            let mut prev = 0.0;
            let mut ap = 0.0;
            for (&r, &p) in c.recall.iter().zip(&c.envelope) {
                ap += (r - prev) * p;
                prev = r;
            }
            ap
        })
        .collect()
}
// ANCHOR_END: voc_ap
