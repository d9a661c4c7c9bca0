//! Chapter 7.1, boxes and NMS: the encodings round-trip, IoU and GIoU keep their
//! properties on thousands of seeded random boxes (degenerate ones included), and greedy
//! NMS does what its definition says.

use dlbook::detect::{iou_matrix, nms, Bbox, BoxError, Detection};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CASES: usize = 20_000;

/// A random box inside a 200 x 200 image, sides from 0 to 120 (some zero on purpose).
fn random_box(rng: &mut impl Rng) -> Bbox {
    let side = |rng: &mut dyn rand::RngCore| -> f32 {
        if rng.random_bool(0.05) {
            0.0
        } else {
            rng.random_range(0.0..120.0)
        }
    };
    let (w, h) = (side(rng), side(rng));
    Bbox::from_xywh(
        rng.random_range(0.0..200.0),
        rng.random_range(0.0..200.0),
        w,
        h,
    )
}

/// A random box whose coordinates are multiples of 1/8 pixel below 1024: every sum,
/// difference and half of them is exact in `f32`.
fn grid_box(rng: &mut impl Rng) -> Bbox {
    let c = |rng: &mut dyn rand::RngCore| rng.random_range(0..4096) as f32 / 8.0;
    let (a, b, c2, d) = (c(rng), c(rng), c(rng), c(rng));
    Bbox::new(a.min(b), c2.min(d), a.max(b), c2.max(d))
}

// ANCHOR: iou_by_hand
/// IoU and GIoU of three pairs worked out in the chapter: two 2x2 squares overlapping by
/// half, two unit squares one unit apart, and a 2x2 square inside a 4x4 one.
fn hand_examples() -> [(f32, f32); 3] {
    let pairs = [
        (Bbox::new(0.0, 0.0, 2.0, 2.0), Bbox::new(1.0, 0.0, 3.0, 2.0)),
        (Bbox::new(0.0, 0.0, 1.0, 1.0), Bbox::new(2.0, 0.0, 3.0, 1.0)),
        (Bbox::new(0.0, 0.0, 4.0, 4.0), Bbox::new(1.0, 1.0, 3.0, 3.0)),
    ];
    pairs.map(|(a, b)| (a.iou(&b), a.giou(&b)))
}
// ANCHOR_END: iou_by_hand

#[test]
fn iou_by_hand() {
    let [half, apart, inside] = hand_examples();
    // Overlap 1 x 2 = 2, union 4 + 4 - 2 = 6; the union fills its 3 x 2 enclosing box.
    assert_eq!(half, (1.0 / 3.0, 1.0 / 3.0));
    // No overlap; the enclosing 3 x 1 box is one third empty.
    assert_eq!(apart, (0.0, -1.0 / 3.0));
    // Containment: 4 / 16, and the enclosing box is the outer one.
    assert_eq!(inside, (0.25, 0.25));
}

#[test]
fn iou_is_symmetric_and_in_unit_interval() {
    let mut rng = ChaCha8Rng::seed_from_u64(71);
    let mut overlapping = 0;
    for _ in 0..CASES {
        let (a, b) = (random_box(&mut rng), random_box(&mut rng));
        let (ab, ba) = (a.iou(&b), b.iou(&a));
        assert_eq!(
            ab.to_bits(),
            ba.to_bits(),
            "IoU not symmetric for {a:?} {b:?}"
        );
        assert!(
            (0.0..=1.0).contains(&ab),
            "IoU {ab} out of [0, 1]: {a:?} {b:?}"
        );
        overlapping += usize::from(ab > 0.0);
    }
    // The generator must produce plenty of overlapping pairs, or the test says little.
    assert!(
        overlapping > CASES / 10,
        "only {overlapping} overlapping pairs"
    );
}

#[test]
fn iou_is_one_only_for_equal_boxes() {
    let mut rng = ChaCha8Rng::seed_from_u64(72);
    for _ in 0..CASES {
        let a = random_box(&mut rng);
        if a.area() > 0.0 {
            assert_eq!(a.iou(&a), 1.0, "equal boxes {a:?}");
        }
        // A near copy: one edge moved by a hundredth of a pixel.
        let mut b = a;
        match rng.random_range(0..4) {
            0 => b.x0 -= 0.01,
            1 => b.y0 -= 0.01,
            2 => b.x1 += 0.01,
            _ => b.y1 += 0.01,
        }
        assert!(a.iou(&b) < 1.0, "IoU 1 for different boxes {a:?} {b:?}");
        let c = random_box(&mut rng);
        if c != a {
            assert!(a.iou(&c) < 1.0, "IoU 1 for different boxes {a:?} {c:?}");
        }
    }
}

#[test]
fn giou_is_at_most_iou_and_at_least_minus_one() {
    let mut rng = ChaCha8Rng::seed_from_u64(73);
    let mut negative = 0;
    for _ in 0..CASES {
        let (a, b) = (random_box(&mut rng), random_box(&mut rng));
        let (g, iou) = (a.giou(&b), a.iou(&b));
        assert!(
            (-1.0..=1.0).contains(&g),
            "GIoU {g} out of [-1, 1]: {a:?} {b:?}"
        );
        assert!(g <= iou, "GIoU {g} above IoU {iou}: {a:?} {b:?}");
        assert_eq!(g.to_bits(), b.giou(&a).to_bits(), "GIoU not symmetric");
        negative += usize::from(g < 0.0);
        // Containment: the union is the enclosing box, so GIoU = IoU.
        let inner = Bbox::new(
            a.x0 + 0.25 * a.width(),
            a.y0 + 0.25 * a.height(),
            a.x1 - 0.25 * a.width(),
            a.y1 - 0.25 * a.height(),
        );
        let (gi, ii) = (a.giou(&inner), a.iou(&inner));
        assert!(
            (gi - ii).abs() <= 1e-6,
            "contained box: GIoU {gi} != IoU {ii}"
        );
    }
    assert!(
        negative > CASES / 10,
        "only {negative} pairs with negative GIoU"
    );
}

// ANCHOR: shifted_iou
/// IoU of an `s x s` square with a copy shifted by `d` pixels to the right, for `d < s`:
/// the overlap is `(s - d) s`, the union `(s + d) s`.
fn shifted_iou(s: f32, d: f32) -> f32 {
    let a = Bbox::from_xywh(0.0, 0.0, s, s);
    a.iou(&Bbox::from_xywh(d, 0.0, s, s))
}
// ANCHOR_END: shifted_iou

#[test]
fn a_shift_costs_small_boxes_more_iou() {
    for s in [4.0f32, 10.0, 32.0, 100.0] {
        for d in [0.5f32, 1.0, 2.0, 3.0] {
            let want = (s - d) / (s + d);
            assert!((shifted_iou(s, d) - want).abs() < 1e-6, "s {s} d {d}");
        }
    }
    // The same 2-pixel error: below COCO's strictest thresholds for a 10-pixel object,
    // harmless for a 100-pixel one.
    assert!(shifted_iou(10.0, 2.0) < 0.7);
    assert!(shifted_iou(100.0, 2.0) > 0.95);
}

#[test]
fn encodings_round_trip() {
    let mut rng = ChaCha8Rng::seed_from_u64(74);
    for _ in 0..CASES {
        // On an eighth-pixel grid the conversions are exact.
        let a = grid_box(&mut rng);
        let [x, y, w, h] = a.xywh();
        assert_eq!(Bbox::from_xywh(x, y, w, h), a);
        let [cx, cy, w, h] = a.cxcywh();
        assert_eq!(Bbox::from_cxcywh(cx, cy, w, h), a);
        // Anywhere else, to within f32 rounding of 200-pixel coordinates.
        let b = random_box(&mut rng);
        let [cx, cy, w, h] = b.cxcywh();
        let c = Bbox::from_cxcywh(cx, cy, w, h);
        for (u, v) in [(b.x0, c.x0), (b.y0, c.y0), (b.x1, c.x1), (b.y1, c.y1)] {
            assert!((u - v).abs() <= 1e-4, "{b:?} -> {c:?}");
        }
        let [x, y, w, h] = b.xywh();
        assert!((Bbox::from_xywh(x, y, w, h).x1 - b.x1).abs() <= 1e-4);
    }
    // The two encodings of one box, checked by hand.
    let b = Bbox::new(10.0, 20.0, 14.0, 30.0);
    assert_eq!(b.xywh(), [10.0, 20.0, 4.0, 10.0]);
    assert_eq!(b.cxcywh(), [12.0, 25.0, 4.0, 10.0]);
    assert_eq!(b.area(), 40.0);
}

#[test]
fn degenerate_boxes_give_no_nan() {
    let mut rng = ChaCha8Rng::seed_from_u64(75);
    let point = Bbox::new(5.0, 5.0, 5.0, 5.0);
    let segment = Bbox::new(0.0, 5.0, 10.0, 5.0);
    let other_point = Bbox::new(9.0, 9.0, 9.0, 9.0);
    for (a, b) in [
        (point, point),
        (point, segment),
        (segment, segment),
        (point, other_point),
    ] {
        assert_eq!(a.iou(&b), 0.0, "{a:?} {b:?}");
        assert!(a.giou(&b).is_finite(), "{a:?} {b:?}");
        assert_eq!(a.intersection(&b), 0.0);
    }
    // Both on one line: the enclosing box has no area either; GIoU falls back to IoU.
    assert_eq!(point.giou(&segment), 0.0);
    // Two distinct points: the whole enclosing box is empty.
    assert_eq!(point.giou(&other_point), -1.0);
    for _ in 0..CASES / 10 {
        let b = random_box(&mut rng);
        for z in [point, segment] {
            assert_eq!(z.iou(&b), 0.0);
            let g = z.giou(&b);
            assert!((-1.0..=0.0).contains(&g), "GIoU {g} of {z:?} and {b:?}");
        }
    }
}

#[test]
fn iou_matrix_holds_every_pair() {
    let mut rng = ChaCha8Rng::seed_from_u64(76);
    let a: Vec<Bbox> = (0..7).map(|_| random_box(&mut rng)).collect();
    let b: Vec<Bbox> = (0..5).map(|_| random_box(&mut rng)).collect();
    let m = iou_matrix(&a, &b);
    assert_eq!(m.dim(), (7, 5));
    for (i, ai) in a.iter().enumerate() {
        for (j, bj) in b.iter().enumerate() {
            assert_eq!(m[[i, j]], ai.iou(bj));
        }
    }
    assert_eq!(iou_matrix(&[], &b).dim(), (0, 5));
}

#[test]
fn clip_keeps_boxes_inside_the_image() {
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    for _ in 0..CASES / 10 {
        let b = random_box(&mut rng);
        let c = b.clip(150.0, 100.0);
        assert!(c.x0 >= 0.0 && c.y0 >= 0.0 && c.x1 <= 150.0 && c.y1 <= 100.0);
        assert!(c.x0 <= c.x1 && c.y0 <= c.y1, "{b:?} clipped to {c:?}");
        assert_eq!(c.clip(150.0, 100.0), c, "clipping twice changes nothing");
        assert!(c.area() <= b.area());
    }
    let inside = Bbox::new(1.0, 2.0, 3.0, 4.0);
    assert_eq!(inside.clip(10.0, 10.0), inside);
    let outside = Bbox::new(20.0, 20.0, 30.0, 30.0).clip(10.0, 10.0);
    assert_eq!(outside, Bbox::new(10.0, 10.0, 10.0, 10.0));
}

#[test]
fn bad_boxes_are_errors_not_panics() {
    assert_eq!(
        Bbox::try_new(0.0, 0.0, -1.0, 1.0),
        Err(BoxError::Inverted {
            x0: 0.0,
            y0: 0.0,
            x1: -1.0,
            y1: 1.0
        })
    );
    assert!(matches!(
        Bbox::try_new(f32::NAN, 0.0, 1.0, 1.0),
        Err(BoxError::NotFinite { .. })
    ));
    let good = Bbox::new(1.0, 2.0, 3.0, 4.5);
    let json = serde_json::to_string(&good).unwrap();
    assert_eq!(serde_json::from_str::<Bbox>(&json).unwrap(), good);
    let err = serde_json::from_str::<Bbox>(r#"{"x0":5,"y0":0,"x1":1,"y1":1}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("x0 <= x1"), "unhelpful error: {err}");
}

#[test]
#[should_panic(expected = "x0 <= x1")]
fn an_inverted_box_is_a_programmer_error() {
    Bbox::new(3.0, 0.0, 1.0, 1.0);
}

fn det(
    image: usize,
    class: usize,
    score: f32,
    x0: f32,
    y0: f32,
    w: f32,
    h: f32,
) -> Detection {
    Detection {
        image,
        class,
        score,
        bbox: Bbox::from_xywh(x0, y0, w, h),
    }
}

// ANCHOR: nms_cluster
/// Two objects, each found by a cluster of shifted boxes, plus one box of another class
/// on the first object; what per-class NMS at IoU 0.5 keeps.
fn nms_two_clusters() -> Vec<usize> {
    let dets = [
        det(0, 0, 0.70, 10.0, 10.0, 20.0, 20.0),
        det(0, 0, 0.90, 12.0, 11.0, 20.0, 20.0), // the best box of object 1
        det(0, 0, 0.80, 9.0, 13.0, 20.0, 20.0),
        det(0, 0, 0.60, 60.0, 60.0, 30.0, 30.0),
        det(0, 0, 0.65, 62.0, 58.0, 30.0, 30.0), // the best box of object 2
        det(0, 1, 0.50, 11.0, 10.0, 20.0, 20.0), // another class on object 1
    ];
    nms(&dets, 0.5, true)
}
// ANCHOR_END: nms_cluster

#[test]
fn nms_collapses_a_cluster_to_its_best_box() {
    assert_eq!(nms_two_clusters(), vec![1, 4, 5]);
}

#[test]
fn nms_keeps_boxes_below_the_threshold() {
    // Two 2x2 squares overlapping by half: IoU exactly 1/3.
    let dets = [
        det(0, 0, 0.9, 0.0, 0.0, 2.0, 2.0),
        det(0, 0, 0.8, 1.0, 0.0, 2.0, 2.0),
    ];
    assert_eq!(nms(&dets, 0.5, true), vec![0, 1]);
    assert_eq!(nms(&dets, 0.3, true), vec![0]);
    // Suppression needs an IoU strictly above the threshold.
    assert_eq!(nms(&dets, 1.0 / 3.0, true), vec![0, 1]);
}

#[test]
fn per_class_nms_keeps_overlapping_boxes_of_other_classes() {
    let dets = [
        det(0, 0, 0.9, 0.0, 0.0, 10.0, 10.0),
        det(0, 1, 0.8, 0.0, 0.0, 10.0, 10.0),
        det(1, 0, 0.7, 0.0, 0.0, 10.0, 10.0), // another image
    ];
    assert_eq!(nms(&dets, 0.5, true), vec![0, 1, 2]);
    assert_eq!(nms(&dets, 0.5, false), vec![0, 2]);
}

#[test]
fn nms_breaks_ties_by_input_order() {
    let same = det(0, 0, 0.5, 0.0, 0.0, 10.0, 10.0);
    let dets = [det(0, 0, 0.4, 50.0, 0.0, 5.0, 5.0), same, same, same];
    assert_eq!(nms(&dets, 0.5, true), vec![1, 0]);
    // Equal scores, disjoint boxes: all kept, in input order.
    let row: Vec<Detection> = (0..5)
        .map(|i| det(0, 0, 0.5, 20.0 * i as f32, 0.0, 10.0, 10.0))
        .collect();
    assert_eq!(nms(&row, 0.5, true), vec![0, 1, 2, 3, 4]);
    assert!(nms(&[], 0.5, true).is_empty());
}

#[test]
fn nms_matches_its_definition_on_random_detections() {
    let mut rng = ChaCha8Rng::seed_from_u64(78);
    for case in 0..300 {
        let n = rng.random_range(0..60);
        let dets: Vec<Detection> = (0..n)
            .map(|_| Detection {
                image: rng.random_range(0..2),
                class: rng.random_range(0..3),
                // Scores on a coarse grid, so ties happen.
                score: rng.random_range(0..20) as f32 / 20.0,
                bbox: random_box(&mut rng),
            })
            .collect();
        let tau = rng.random_range(0.1..0.9);
        for per_class in [true, false] {
            let kept = nms(&dets, tau, per_class);
            let competes = |a: &Detection, b: &Detection| {
                a.image == b.image && (!per_class || a.class == b.class)
            };
            // Ranked: scores descending, equal scores in input order.
            for w in kept.windows(2) {
                let (a, b) = (&dets[w[0]], &dets[w[1]]);
                assert!(a.score > b.score || (a.score == b.score && w[0] < w[1]));
            }
            // No two kept competitors overlap by more than tau.
            for (x, &i) in kept.iter().enumerate() {
                for &j in &kept[x + 1..] {
                    if competes(&dets[i], &dets[j]) {
                        assert!(dets[i].bbox.iou(&dets[j].bbox) <= tau, "case {case}");
                    }
                }
            }
            // Every dropped box overlaps a kept competitor ranked above it.
            for j in (0..n).filter(|j| !kept.contains(j)) {
                let d = &dets[j];
                let cause = kept.iter().any(|&i| {
                    let k = &dets[i];
                    (k.score > d.score || (k.score == d.score && i < j))
                        && competes(k, d)
                        && k.bbox.iou(&d.bbox) > tau
                });
                assert!(cause, "case {case}: detection {j} dropped without cause");
            }
        }
    }
}
