//! Chapter 7.2, a single-stage detector: the canvases, anchors and matching, the box
//! encoding, the gradients of the head and the multibox loss checked three ways, the
//! post-processing, and the claims the text makes about the experiments.

use std::path::PathBuf;

use dlbook::data::{DataDir, Dataset, Split};
use dlbook::detect::anchors::{
    all_anchors, decode, encode, match_anchors, AnchorGrid, Assignment, MatchThresholds,
};
use dlbook::detect::ap::GroundTruth;
use dlbook::detect::boxes::Bbox;
use dlbook::detect::candle_twin::{head_loss_grads, loss_grad};
use dlbook::detect::canvas::{ink_box, make_canvases, CanvasConfig, Object};
use dlbook::detect::inference::{postprocess, InferenceConfig};
use dlbook::detect::multibox::{mine, multibox_selected};
use dlbook::detect::nms::Detection;
use dlbook::detect::ssd::{Head, Ssd, SsdConfig};
use dlbook::experiments::{self, detector};
use dlbook::nn::gradcheck::{finite_diff, max_rel_error, normal, rel_error, Grads};
use dlbook::nn::{Layer, Mode, Module};
use dlbook::report::{Report, Value};
use ndarray::{Array2, Array3, ArrayD, Ix3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dir() -> DataDir {
    DataDir::resolve(None)
}

fn quick(name: &str) -> &'static Report {
    experiments::quick(name, &dir()).unwrap()
}

fn full(name: &str) -> Report {
    experiments::committed(&root(), name).unwrap()
}

fn seeds(r: &Report, fact: &str) -> Vec<f64> {
    match &r.facts[fact].value {
        Value::Seeds(v) => v.clone(),
        other => panic!("{fact}: {other:?}"),
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

// ---------------------------------------------------------------- the data

fn test_digits() -> Dataset {
    Dataset::mnist(&dir(), Split::Test, 500).unwrap()
}

#[test]
fn canvases_are_a_function_of_the_seed() {
    let digits = test_digits();
    let cfg = CanvasConfig::default();
    let a = make_canvases(&digits, 20, &cfg, 3);
    let b = make_canvases(&digits, 20, &cfg, 3);
    let c = make_canvases(&digits, 20, &cfg, 4);
    assert_eq!(a, b);
    assert_ne!(a.objects, c.objects);
}

// ANCHOR: canvas_rules
/// For 200 canvases: the digit counts, the largest IoU between two digits of a canvas,
/// and whether every box lies inside its canvas and has ink on each of its four edges.
pub fn canvas_rules() -> (Vec<usize>, f32, bool) {
    let cfg = CanvasConfig::default();
    let c = make_canvases(&test_digits(), 200, &cfg, 11);
    let counts = c.objects.iter().map(Vec::len).collect();
    let mut worst_iou = 0f32;
    let mut tight = true;
    for (i, objs) in c.objects.iter().enumerate() {
        for (a, o) in objs.iter().enumerate() {
            for p in &objs[..a] {
                worst_iou = worst_iou.max(o.bbox.iou(&p.bbox));
            }
            let b = o.bbox;
            let side = cfg.side as f32;
            tight &= b.x0 >= 0.0 && b.y0 >= 0.0 && b.x1 <= side && b.y1 <= side;
            let (x0, y0, x1, y1) =
                (b.x0 as usize, b.y0 as usize, b.x1 as usize, b.y1 as usize);
            let img = c.images.slice(ndarray::s![i, 0, y0..y1, x0..x1]);
            let ink =
                |v: ndarray::ArrayView1<f32>| v.iter().any(|&p| p > cfg.ink_threshold);
            tight &= ink(img.row(0)) && ink(img.row(y1 - y0 - 1));
            tight &= ink(img.column(0)) && ink(img.column(x1 - x0 - 1));
        }
    }
    (counts, worst_iou, tight)
}
// ANCHOR_END: canvas_rules

#[test]
fn canvases_hold_zero_to_four_digits_that_do_not_hide_each_other() {
    let (counts, worst_iou, tight) = canvas_rules();
    assert!(counts.iter().all(|&n| n <= 4));
    assert!(counts.contains(&0) && counts.contains(&4), "{counts:?}");
    assert!(worst_iou <= CanvasConfig::default().max_iou, "{worst_iou}");
    assert!(worst_iou > 0.0, "digits are allowed to touch");
    assert!(
        tight,
        "a box outside its canvas or with an edge without ink"
    );
}

#[test]
fn the_ink_box_is_the_tight_box_of_the_pixels_above_the_threshold() {
    let mut img = Array2::<f32>::zeros((6, 5));
    img[[1, 2]] = 0.9;
    img[[4, 1]] = 0.5;
    img[[3, 3]] = 0.2; // below the threshold
    let b = ink_box(img.view(), 0.3, 10, 20).unwrap();
    assert_eq!(b, Bbox::new(11.0, 21.0, 13.0, 25.0));
    assert!(ink_box(Array2::zeros((3, 3)).view(), 0.3, 0, 0).is_none());
}

// ---------------------------------------------------------------- anchors

// ANCHOR: round_trip
/// The largest error, in pixels, of `decode(a, encode(a, g))` against `g` over 2,000
/// random anchors and boxes of 4 to 60 pixels.
pub fn encode_decode_round_trip_error() -> f32 {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut worst = 0f32;
    for _ in 0..2000 {
        let mut bx = || {
            let (w, h) = (rng.random_range(4.0..60.0), rng.random_range(4.0..60.0));
            Bbox::from_cxcywh(
                rng.random_range(0.0..64.0),
                rng.random_range(0.0..64.0),
                w,
                h,
            )
        };
        let (a, g) = (bx(), bx());
        let back = decode(&a, encode(&a, &g));
        for (u, v) in [
            (back.x0, g.x0),
            (back.y0, g.y0),
            (back.x1, g.x1),
            (back.y1, g.y1),
        ] {
            worst = worst.max((u - v).abs());
        }
    }
    worst
}
// ANCHOR_END: round_trip

#[test]
fn decoding_inverts_encoding() {
    let e = encode_decode_round_trip_error();
    assert!(e < 1e-3, "{e} px");
}

#[test]
fn an_anchor_on_its_box_encodes_to_zero() {
    let a = Bbox::from_cxcywh(20.0, 30.0, 10.0, 16.0);
    assert_eq!(encode(&a, &a), [0.0; 4]);
}

#[test]
fn anchors_are_centred_on_their_cells_in_output_order() {
    let g = AnchorGrid {
        stride: 8,
        cells: 2,
        sizes: vec![12.0, 18.0],
        ratios: vec![0.5, 1.0],
    };
    let a = g.anchors();
    assert_eq!(a.len(), 2 * 2 * 4);
    // Row 0, cell 1, third anchor (size 18, ratio 0.5): centre (12, 4).
    let [cx, cy, w, h] = a[4 + 2].cxcywh();
    assert!((cx - 12.0).abs() < 1e-5 && (cy - 4.0).abs() < 1e-5);
    assert!((w / h - 0.5).abs() < 1e-5 && ((w * h).sqrt() - 18.0).abs() < 1e-4);
}

// ANCHOR: matching
/// Matching of the detector's anchors against the digits of 100 test canvases: the
/// number of digits, of digits with a positive anchor, of positives below IoU 0.5 (kept
/// by the best-anchor rule), and of negatives at IoU >= 0.4.
pub fn matching_counts() -> (usize, usize, usize, usize) {
    let anchors = all_anchors(&SsdConfig::default().grids());
    let c = make_canvases(&test_digits(), 100, &CanvasConfig::default(), 12);
    let (mut n, mut covered, mut low_pos, mut bad_neg) = (0, 0, 0, 0);
    for objs in &c.objects {
        let m = match_anchors(&anchors, objs, MatchThresholds::default());
        n += objs.len();
        covered += (0..objs.len())
            .filter(|&g| m.contains(&Assignment::Positive { gt: g }))
            .count();
        for (a, m) in anchors.iter().zip(&m) {
            let best = objs.iter().map(|o| a.iou(&o.bbox)).fold(0f32, f32::max);
            match m {
                Assignment::Positive { .. } if best < 0.5 => low_pos += 1,
                Assignment::Negative if best >= 0.4 => bad_neg += 1,
                _ => {}
            }
        }
    }
    (n, covered, low_pos, bad_neg)
}
// ANCHOR_END: matching

#[test]
fn every_digit_gets_an_anchor_and_negatives_stay_below_0_4() {
    let (n, covered, low_pos, bad_neg) = matching_counts();
    assert!(n > 100);
    assert_eq!(covered, n);
    assert_eq!(bad_neg, 0);
    // Small and thin digits have no anchor at IoU 0.5: the second rule is what keeps them.
    assert!(low_pos > 0);
}

// ---------------------------------------------------------------- gradients

fn random_targets(n: usize, m: usize, k: usize, rng: &mut ChaCha8Rng) -> Array3<f32> {
    Array3::from_shape_fn((n, m, 5), |(_, _, j)| {
        if j == 0 {
            // A third positive, some ignored, the rest background.
            let u: f32 = rng.random();
            if u < 0.3 {
                rng.random_range(1..=k) as f32
            } else if u < 0.4 {
                -1.0
            } else {
                0.0
            }
        } else {
            rng.random_range(-2.5f32..2.5)
        }
    })
}

fn loss_value(pred: &ArrayD<f32>, t: &Array3<f32>, sel: &Array2<bool>) -> f64 {
    let p = pred.view().into_dimensionality::<Ix3>().unwrap();
    let (parts, _) = multibox_selected(p, t.view(), sel, 1.0);
    parts.cls + parts.reg
}

// ANCHOR: loss_three_ways
/// The multibox loss's gradient with respect to the predictions, three ways: by hand,
/// by central differences, and by candle's autograd. Returns the two relative gaps
/// (hand vs differences, hand vs candle) and the gap between the loss values.
pub fn loss_gradient_gaps(seed: u64) -> (f64, f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (n, m, k) = (3, 12, 4);
    let pred = normal(&[n, m, k + 5], &mut rng);
    let t = random_targets(n, m, k, &mut rng);
    let p3 = pred.view().into_dimensionality::<Ix3>().unwrap();
    let sel = mine(p3, t.view(), 3);
    let (parts, manual) = multibox_selected(p3, t.view(), &sel, 1.0);
    let manual = manual.mapv(f64::from);
    let numeric = finite_diff(&pred, 1e-2, |p| loss_value(p, &t, &sel));
    let (value, candle) = loss_grad(&pred, &t, &sel, 1.0).unwrap();
    (
        rel_error(&manual, &numeric),
        rel_error(&manual, &candle),
        (parts.cls + parts.reg - value).abs() / value.abs(),
    )
}
// ANCHOR_END: loss_three_ways

#[test]
fn multibox_gradient_agrees_three_ways() {
    for seed in 0..4 {
        let (fd, candle, value) = loss_gradient_gaps(seed);
        assert!(fd < 1e-2, "seed {seed}: hand vs differences {fd}");
        assert!(candle < 1e-5, "seed {seed}: hand vs candle {candle}");
        assert!(value < 1e-5, "seed {seed}: loss values {value}");
    }
}

#[test]
fn mining_keeps_three_negatives_per_positive_the_hardest_ones() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (m, k) = (40, 3);
    let pred = normal(&[1, m, k + 5], &mut rng);
    let mut t = Array3::<f32>::zeros((1, m, 5));
    t[[0, 5, 0]] = 2.0;
    t[[0, 17, 0]] = 1.0;
    t[[0, 3, 0]] = -1.0;
    let p3 = pred.view().into_dimensionality::<Ix3>().unwrap();
    let sel = mine(p3, t.view(), 3);
    assert_eq!(sel.iter().filter(|&&s| s).count(), 2 + 6);
    assert!(sel[[0, 5]] && sel[[0, 17]] && !sel[[0, 3]]);
    // Every selected negative is at least as hard (background score as low) as every
    // unselected one: cross-entropy of class 0 is decreasing in the margin z_0 - lse.
    let ce0 = |a: usize| {
        let z: Vec<f32> = (0..k + 1).map(|j| pred[[0, a, j]]).collect();
        let lse = z.iter().map(|v| v.exp()).sum::<f32>().ln();
        lse - z[0]
    };
    let (t, sel) = (&t, &sel);
    let neg =
        |want: bool| (0..m).filter(move |&a| t[[0, a, 0]] == 0.0 && sel[[0, a]] == want);
    let easiest_selected = neg(true).map(&ce0).fold(f32::MAX, f32::min);
    let hardest_left = neg(false).map(&ce0).fold(f32::MIN, f32::max);
    assert!(easiest_selected >= hardest_left);
}

fn small_head(seed: u64, box_head: bool) -> Head {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Head::new(3, 2, 4, box_head, &mut rng)
}

/// The head's loss gradients by hand (forward, the loss's gradient, backward).
fn head_manual(
    head: &mut Head,
    f: &ArrayD<f32>,
    t: &Array3<f32>,
    sel: &Array2<bool>,
) -> Grads {
    head.zero_grad();
    let out = head.forward(f, Mode::Train);
    let o3 = out.view().into_dimensionality::<Ix3>().unwrap();
    let (_, dout) = multibox_selected(o3, t.view(), sel, 1.0);
    let dx = head.backward(&dout);
    let mut params = vec![];
    head.visit_params("", &mut |n, p| {
        params.push((n.to_string(), p.grad.mapv(f64::from)))
    });
    Grads {
        dx: dx.mapv(f64::from),
        params,
    }
}

/// The same by central differences.
fn head_numeric(
    head: &mut Head,
    f: &ArrayD<f32>,
    t: &Array3<f32>,
    sel: &Array2<bool>,
) -> Grads {
    let h = 1e-2;
    let eval = |head: &mut Head, f: &ArrayD<f32>| {
        loss_value(&head.forward(f, Mode::Train), t, sel)
    };
    let dx = finite_diff(f, h, |f| eval(head, f));
    let mut names = vec![];
    head.visit_params("", &mut |n, p| names.push((n.to_string(), p.value.clone())));
    let mut params = vec![];
    for (name, value) in names {
        let g = finite_diff(&value, h, |v| {
            head.visit_params("", &mut |n, p| {
                if n == name {
                    p.value.assign(v);
                }
            });
            eval(head, f)
        });
        head.visit_params("", &mut |n, p| {
            if n == name {
                p.value.assign(&value);
            }
        });
        params.push((name, g));
    }
    Grads { dx, params }
}

// ANCHOR: head_three_ways
/// The gradients of the multibox loss of the head's output on a random feature map, for
/// the map and the head's weights, three ways; returns (hand vs differences, hand vs
/// candle), each the largest relative gap over the input and every parameter.
pub fn head_gradient_gaps(seed: u64, box_head: bool) -> (f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(100 + seed);
    let mut head = small_head(seed, box_head);
    let f = normal(&[2, 3, 4, 4], &mut rng);
    let rows = 4 * 4 * 2;
    let t = random_targets(2, rows, 4, &mut rng);
    let out = head.forward(&f, Mode::Train);
    let sel = mine(
        out.view().into_dimensionality::<Ix3>().unwrap(),
        t.view(),
        3,
    );
    let manual = head_manual(&mut head, &f, &t, &sel);
    let numeric = head_numeric(&mut head, &f, &t, &sel);
    let candle = head_loss_grads(&head, &f, &t, &sel, 1.0).unwrap();
    (
        max_rel_error(&manual, &numeric),
        max_rel_error(&manual, &candle),
    )
}
// ANCHOR_END: head_three_ways

#[test]
fn head_and_loss_gradients_agree_three_ways() {
    for seed in 0..3 {
        for box_head in [true, false] {
            let (fd, candle) = head_gradient_gaps(seed, box_head);
            assert!(
                fd < 2e-2,
                "seed {seed}, box head {box_head}: differences {fd}"
            );
            assert!(
                candle < 1e-4,
                "seed {seed}, box head {box_head}: candle {candle}"
            );
        }
    }
}

/// A tiny detector: 32x32 canvases, two maps of 4x4 and 2x2 cells.
fn tiny() -> SsdConfig {
    SsdConfig {
        side: 32,
        n_classes: 3,
        widths: [2, 3, 3, 4],
        sizes8: vec![10.0],
        sizes16: vec![20.0],
        ratios: vec![0.5, 1.0],
        box_head: true,
    }
}

#[test]
fn the_whole_detector_backward_matches_finite_differences() {
    // Both branches (the stride-8 heads, and conv4 into the stride-16 heads) feed the
    // gradient of the stride-8 map: a missing term would show here. Batch norm is in
    // training mode, so the input gradient couples the images of the batch.
    let mut net = Ssd::new(&tiny(), 3);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x = normal(&[2, 1, 32, 32], &mut rng);
    let out = net.forward(&x, Mode::Train);
    let r = normal(out.shape(), &mut rng);
    net.zero_grad();
    let _ = net.forward(&x, Mode::Train);
    let dx = net.backward(&r).mapv(f64::from);
    let contract = |y: &ArrayD<f32>| {
        y.iter()
            .zip(&r)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum::<f64>()
    };
    let numeric = finite_diff(&x, 1e-2, |x| contract(&net.forward(x, Mode::Train)));
    // A few inputs sit within the step of a ReLU or max-pool kink, where the central
    // difference straddles two pieces: a few percent; a missing branch would be O(1).
    let e = rel_error(&dx, &numeric);
    assert!(e < 5e-2, "input gradient {e}");
    // And one parameter of each branch's head.
    let mut grads = vec![];
    net.visit_params("", &mut |n, p| {
        if n.starts_with("head") && n.ends_with("cls.bias") {
            grads.push((n.to_string(), p.grad.mapv(f64::from), p.value.clone()));
        }
    });
    assert_eq!(grads.len(), 2);
    for (name, g, value) in grads {
        let numeric = finite_diff(&value, 1e-2, |v| {
            net.visit_params("", &mut |n, p| {
                if n == name {
                    p.value.assign(v);
                }
            });
            contract(&net.forward(&x, Mode::Train))
        });
        net.visit_params("", &mut |n, p| {
            if n == name {
                p.value.assign(&value);
            }
        });
        let e = rel_error(&g, &numeric);
        assert!(e < 1e-2, "{name}: {e}");
    }
}

#[test]
fn the_detector_gives_one_row_per_anchor() {
    let cfg = SsdConfig::default();
    let mut net = Ssd::new(&cfg, 0);
    let out = net.forward(&ArrayD::zeros(vec![2, 1, 64, 64]), Mode::Eval);
    let n_anchors = all_anchors(&cfg.grids()).len();
    assert_eq!(out.shape(), &[2, n_anchors, 15]);
}

// ---------------------------------------------------------------- inference

// ANCHOR: decode_one
/// A raw output that puts digit 3 on one anchor with the deltas of a box near it, and
/// background everywhere else, post-processed: the detections.
pub fn one_confident_anchor() -> (Bbox, Vec<Detection>) {
    let cfg = SsdConfig::default();
    let anchors = all_anchors(&cfg.grids());
    let mut out = Array2::<f32>::zeros((anchors.len(), 15));
    out.column_mut(0).fill(8.0); // background everywhere
    let target = Bbox::new(20.0, 10.0, 31.0, 29.0);
    let a = 37;
    out[[a, 0]] = 0.0;
    out[[a, 1 + 3]] = 8.0; // digit 3 is score column 4
    let t = encode(&anchors[a], &target);
    for d in 0..4 {
        out[[a, 11 + d]] = t[d];
    }
    let dets = postprocess(out.view(), &anchors, 0, 64.0, &InferenceConfig::default());
    (target, dets)
}
// ANCHOR_END: decode_one

#[test]
fn postprocessing_decodes_the_confident_anchor_into_its_box() {
    let (target, dets) = one_confident_anchor();
    assert_eq!(dets.len(), 1, "{dets:?}");
    assert_eq!(dets[0].class, 3);
    assert!(dets[0].score > 0.99);
    assert!(dets[0].bbox.iou(&target) > 0.999, "{:?}", dets[0].bbox);
}

#[test]
fn failures_are_counted_by_kind() {
    let o = |c, x: f32| Object {
        class: c,
        bbox: Bbox::new(x, 0.0, x + 10.0, 10.0),
    };
    let objects = [o(1, 0.0), o(2, 20.0), o(3, 40.0)];
    let d = |c, x: f32| Detection {
        image: 0,
        class: c,
        score: 0.9,
        bbox: Bbox::new(x, 0.0, x + 10.0, 10.0),
    };
    // Digit 1 found twice, digit 2 called 7, digit 3 missed, one box on nothing.
    let dets = [d(1, 0.0), d(1, 1.0), d(7, 20.0), d(5, 55.0)];
    let f = detector::failures(&objects, &dets.iter().collect::<Vec<_>>());
    assert_eq!(
        (f.missed, f.wrong_class, f.duplicates, f.spurious),
        (1, 1, 1, 1)
    );
}

#[test]
fn ground_truths_number_the_canvases() {
    let c = make_canvases(&test_digits(), 10, &CanvasConfig::default(), 1);
    let gts: Vec<GroundTruth> = c.ground_truths();
    assert_eq!(gts.len(), c.objects.iter().map(Vec::len).sum::<usize>());
    assert!(gts.iter().all(|g| g.image < 10 && g.class < 10));
}

// ---------------------------------------------------------------- experiments

#[test]
fn quick_training_lowers_the_multibox_loss() {
    let r = quick("detector");
    let (first, last) = (seeds(r, "loss_first"), seeds(r, "loss_last"));
    for (a, b) in first.iter().zip(&last) {
        assert!(b < a, "loss {a} -> {b}");
    }
}

#[test]
fn every_seed_of_the_full_run_clears_0_7_ap50() {
    let r = full("detector");
    assert_eq!(r.seeds.len(), 3);
    let ap50 = seeds(&r, "ap50");
    assert!(ap50.iter().all(|&a| a > 0.7), "{ap50:?}");
    // The stricter COCO average is well below: localisation is the hard part.
    assert!(mean(&seeds(&r, "ap")) < mean(&ap50));
}

#[test]
fn box_regression_is_worth_more_than_anything_else() {
    let r = full("detector_ablation");
    let base = mean(&seeds(&r, "baseline_map"));
    let drop = |k: &str| base - mean(&seeds(&r, &format!("{k}_map")));
    let no_box = drop("no_box");
    assert!(no_box > 0.0);
    for other in ["one_size", "one_map"] {
        assert!(
            no_box > drop(other),
            "{other}: {} vs no box {no_box}",
            drop(other)
        );
    }
}

#[test]
fn no_nms_lowers_ap() {
    let r = full("detector_ablation");
    let at = |k: &str| mean(&seeds(&r, k));
    assert!(at("nms_100_map50") < at("nms_45_map50"));
    assert!(at("nms_100_map") < at("nms_45_map"));
}

#[test]
fn the_full_run_shows_each_kind_of_failure() {
    let r = full("detector");
    for kind in ["missed", "wrong_class", "duplicates"] {
        assert!(r.get_fact(kind).unwrap() > 0.0, "{kind}");
    }
    let fig = r.figures.iter().find(|f| f.name == "failures").unwrap();
    let dlbook::report::Plot::Boxes(b) = &fig.plot else {
        panic!("failures is not a boxes figure")
    };
    for kind in ["missed digit", "wrong class", "duplicate"] {
        assert!(b.captions.iter().any(|c| c.starts_with(kind)), "{kind}");
    }
}

#[test]
fn the_ablation_baseline_is_below_the_main_run() {
    let main = mean(&seeds(&full("detector"), "ap50"));
    let base = mean(&seeds(&full("detector_ablation"), "baseline_map50"));
    assert!(base < main, "{base} vs {main}");
}

#[test]
fn the_thin_one_is_the_hardest_digit() {
    let r = full("detector");
    let t = r.table("per_class").unwrap();
    let ap50: Vec<f64> = t.rows.iter().map(|row| row[1].number().unwrap()).collect();
    let worst = (0..ap50.len())
        .min_by(|&a, &b| ap50[a].total_cmp(&ap50[b]))
        .unwrap();
    assert_eq!(worst, 1, "{ap50:?}");
}

/// The quick speed benchmark measures training and inference (the timings themselves are
/// never asserted).
#[test]
fn the_detector_benchmark_times_training_and_inference() {
    use dlbook::bench::detector::{run, DetectorBenchConfig};
    let r = run(
        &DetectorBenchConfig::quick(),
        &dlbook::data::DataDir::resolve(None),
        "detector_speed",
    )
    .unwrap();
    let t = r.table("speed").unwrap();
    assert_eq!(t.rows.len(), 2);
    for row in &t.rows {
        assert!(row[1].number().unwrap() > 0.0, "{row:?}");
    }
}
