//! Chapter 6.3, transfer to Fashion-MNIST: the input conversion, batch norm frozen by
//! `EvalMode`, and the claims the section makes about the learning curve (on the
//! committed full results, which `fresh::transfer_fashion` ties to the code).

use std::sync::OnceLock;

use dlbook::cnn::BatchNorm2d;
use dlbook::data::DataDir;
use dlbook::experiments;
use dlbook::models::efficientnet::normalize;
use dlbook::nn::{Layer, Mode};
use dlbook::report::{Report, Value};
use dlbook::transfer::{backbone_input, EvalMode};
use ndarray::{ArrayD, IxDyn};

/// A grey image becomes three equal colour planes of the asked size, normalised.
#[test]
fn backbone_input_copies_grey_to_three_normalised_planes() {
    let gray = ArrayD::from_shape_fn(IxDyn(&[2, 1, 28, 28]), |i| {
        (i[2] * 28 + i[3]) as f32 / 784.0
    });
    let x = backbone_input(&gray, 32, normalize);
    assert_eq!(x.shape(), &[2, 3, 32, 32]);
    for c in 1..3 {
        for i in 0..32 {
            assert_eq!(x[[1, c, i, 5]], x[[1, 0, i, 5]]);
        }
    }
    let black = backbone_input(&ArrayD::zeros(IxDyn(&[1, 1, 28, 28])), 16, normalize);
    assert!(black.iter().all(|&v| (v - normalize(0.0)).abs() < 1e-6));
}

/// Trained inside `EvalMode`, batch norm's running statistics stay as loaded while its
/// scale and shift learn; trained as it is, the statistics move.
#[test]
fn eval_mode_keeps_the_running_statistics() {
    let x = ArrayD::from_shape_fn(IxDyn(&[4, 3, 2, 2]), |i| {
        (i[0] * 7 + i[1] * 3 + i[2] + i[3]) as f32
    });
    for frozen in [true, false] {
        let bn = BatchNorm2d::with_eps(3, 1e-3);
        let mut layer: Box<dyn Layer> = if frozen {
            Box::new(EvalMode(Box::new(bn)))
        } else {
            Box::new(bn)
        };
        let y = layer.forward(&x, Mode::Train);
        layer.backward(&y);
        let mut means = vec![];
        layer.visit_buffers("", &mut |name, b| {
            if name.ends_with("running_mean") {
                means.extend(b.iter().copied());
            }
        });
        let mut grad = 0.0f32;
        layer.visit_params("", &mut |_, p| grad += p.grad.mapv(f32::abs).sum());
        assert!(grad > 0.0, "gamma and beta get gradients");
        assert_eq!(
            means.iter().all(|&m| m == 0.0),
            frozen,
            "frozen {frozen}: {means:?}"
        );
    }
}

fn full() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        experiments::committed(root, "transfer_fashion").unwrap()
    })
}

/// Per-seed accuracies of method `m` (row of the curve table) at size column `k`.
fn curve(m: usize, k: usize) -> Vec<f64> {
    match &full().table("curve").unwrap().rows[m][k + 1] {
        Value::Seeds(s) => s.clone(),
        v => panic!("cell {v:?}"),
    }
}

fn mean(v: &[f64]) -> f64 {
    Value::mean_std(v).0
}

/// The quick preset runs every method and every strategy, and gives accuracies.
#[test]
fn quick_run_fills_the_tables() {
    let r = experiments::quick("transfer_fashion", &DataDir::resolve(None)).unwrap();
    let curve = r.table("curve").unwrap();
    assert_eq!(curve.rows.len(), 5);
    for row in &curve.rows {
        for cell in &row[1..] {
            let a = cell.number().unwrap();
            assert!((0.0..=1.0).contains(&a), "{row:?}");
        }
    }
    assert_eq!(r.table("strategies").unwrap().rows.len(), 6);
}

/// Rows of the curve table.
const IMAGENET_FROZEN: usize = 0;
const IMAGENET_TUNED: usize = 1;
const RANDOM_FROZEN: usize = 2;
const MNIST_FROZEN: usize = 3;
const CNN_SCRATCH: usize = 4;

fn sizes() -> usize {
    full().table("curve").unwrap().columns.len() - 1
}

/// The ImageNet weights are worth something on clothes: with the architecture fixed,
/// their frozen features beat random weights' at every size, on every seed.
#[test]
fn imagenet_weights_beat_random_weights_at_every_size() {
    for k in 0..sizes() {
        let (a, b) = (curve(IMAGENET_FROZEN, k), curve(RANDOM_FROZEN, k));
        assert!(
            a.iter().zip(&b).all(|(x, y)| x > y),
            "size {k}: {a:?} vs {b:?}"
        );
    }
}

/// Fine-tuning the last two stages beats the frozen features at every size (means).
#[test]
fn fine_tuning_beats_frozen_features_at_every_size() {
    for k in 0..sizes() {
        assert!(
            mean(&curve(IMAGENET_TUNED, k)) > mean(&curve(IMAGENET_FROZEN, k)),
            "size {k}"
        );
    }
}

/// Digit features transfer badly to clothes: the MNIST-trained CNN, frozen, is below the
/// same CNN trained on the clothes themselves at every size.
#[test]
fn digit_features_transfer_worse_than_training_on_clothes() {
    for k in 0..sizes() {
        assert!(
            mean(&curve(MNIST_FROZEN, k)) < mean(&curve(CNN_SCRATCH, k)),
            "size {k}"
        );
    }
}

/// At 32 x 32 inputs, from 1,000 images on, the small CNN trained from scratch at
/// Fashion-MNIST's own resolution beats the fine-tuned ImageNet network by more than the
/// larger of the two spreads; at 100 images the two are within each other's spread.
#[test]
fn small_cnn_from_scratch_wins_from_a_thousand_images_at_32_pixels() {
    let n = sizes();
    for k in 1..n {
        let (a, b) = (curve(CNN_SCRATCH, k), curve(IMAGENET_TUNED, k));
        let ((ma, sa), (mb, sb)) = (Value::mean_std(&a), Value::mean_std(&b));
        assert!(ma - mb > sa.max(sb), "size {k}: {ma} ± {sa} vs {mb} ± {sb}");
    }
    let (a, b) = (curve(CNN_SCRATCH, 0), curve(IMAGENET_TUNED, 0));
    let ((ma, sa), (mb, sb)) = (Value::mean_std(&a), Value::mean_std(&b));
    assert!((ma - mb).abs() < sa.max(sb), "{ma} ± {sa} vs {mb} ± {sb}");
}

/// A 64 x 64 input raises the frozen features' accuracy by more than five points over
/// 32 x 32, more than fine-tuning adds at 32 x 32 with a single learning rate.
#[test]
fn a_larger_input_buys_more_than_fine_tuning() {
    let r = full();
    let f = |k: &str| r.get_fact(k).unwrap();
    let gain = f("strategy_large_input") - f("strategy_linear");
    assert!(gain > 0.05, "gain {gain}");
    for k in 0..3 {
        assert!(
            f("strategy_large_input") > f(&format!("strategy_{k}")),
            "strategy {k}"
        );
    }
}

/// Of the fine-tuning strategies, the one that gives the pre-trained layers a ten times
/// smaller learning rate than the new classifier is the best.
#[test]
fn a_smaller_rate_for_pretrained_layers_is_the_best_strategy() {
    let r = full();
    let best = r.get_fact("strategy_3").unwrap();
    for k in 0..3 {
        assert!(
            best > r.get_fact(&format!("strategy_{k}")).unwrap(),
            "strategy {k}"
        );
    }
}

/// Batch norm's statistics frozen or updated (last two stages fine-tuned): the means
/// differ by less than the larger spread over seeds.
#[test]
fn batch_norm_statistics_choice_is_within_the_spread() {
    let t = full().table("strategies").unwrap();
    let seeds = |row: usize| match &t.rows[row][1] {
        Value::Seeds(s) => s.clone(),
        v => panic!("cell {v:?}"),
    };
    // Row 0 is the frozen-features reference; rows 2 and 3 the two batch-norm choices.
    let ((ma, sa), (mb, sb)) = (Value::mean_std(&seeds(2)), Value::mean_std(&seeds(3)));
    assert!((ma - mb).abs() < sa.max(sb), "{ma} ± {sa} vs {mb} ± {sb}");
}

// The second experiment: the whole network trained, and the curve at 64 x 64.

fn whole() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        experiments::committed(root, "transfer_full").unwrap()
    })
}

/// Per-seed accuracies of `transfer_full`'s method `m` at size column `k`.
fn whole_curve(m: usize, k: usize) -> Vec<f64> {
    match &whole().table("curve").unwrap().rows[m][k + 1] {
        Value::Seeds(s) => s.clone(),
        v => panic!("cell {v:?}"),
    }
}

/// Rows of `transfer_full`'s table.
const WHOLE_IMAGENET: usize = 0;
const WHOLE_RANDOM: usize = 1;
const LARGE_FROZEN: usize = 2;
const LARGE_TUNED: usize = 3;

/// The quick preset trains every method of `transfer_full`.
#[test]
fn quick_run_trains_the_whole_network() {
    let r = experiments::quick("transfer_full", &DataDir::resolve(None)).unwrap();
    let curve = r.table("curve").unwrap();
    assert_eq!(curve.rows.len(), 4);
    for row in &curve.rows {
        for cell in &row[1..] {
            assert!((0.0..=1.0).contains(&cell.number().unwrap()), "{row:?}");
        }
    }
}

/// The two experiments share their draws, seeds and budget: where they measure the same
/// thing (frozen features at 64 x 64, N = strategy size) they give the same accuracies.
#[test]
fn the_two_experiments_agree_where_they_overlap() {
    assert_eq!(whole().config["curve"], full().config);
    let n = full().config["strategy_size"].as_u64().unwrap();
    let k = full().config["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s.as_u64() == Some(n))
        .unwrap();
    let t = full().table("strategies").unwrap();
    let large = t.rows.last().unwrap();
    assert_eq!(large[1], Value::Seeds(whole_curve(LARGE_FROZEN, k)));
}

/// With the whole network trained, the ImageNet initialisation beats the random one at
/// every size and on every seed, by a margin that shrinks as the labels grow.
#[test]
fn imagenet_init_beats_random_init_by_less_as_labels_grow() {
    let mut gaps = vec![];
    for k in 0..sizes() {
        let (a, b) = (whole_curve(WHOLE_IMAGENET, k), whole_curve(WHOLE_RANDOM, k));
        assert!(
            a.iter().zip(&b).all(|(x, y)| x > y),
            "size {k}: {a:?} vs {b:?}"
        );
        gaps.push(mean(&a) - mean(&b));
    }
    assert!(gaps.windows(2).all(|w| w[0] > w[1]), "gaps {gaps:?}");
}

/// With 100 images, fine-tuning every layer (the pre-trained layers at a tenth of the
/// classifier's rate) is worse than fine-tuning the last two stages, by more than the
/// sum of the two spreads.
#[test]
fn fine_tuning_everything_loses_to_the_last_stages_with_few_labels() {
    assert_eq!(
        whole().config["pretrained_lr_scale"],
        serde_json::json!(0.1)
    );
    assert_eq!(full().config["sizes"][0], serde_json::json!(100));
    let ((ma, sa), (mb, sb)) = (
        Value::mean_std(&whole_curve(WHOLE_IMAGENET, 0)),
        Value::mean_std(&curve(IMAGENET_TUNED, 0)),
    );
    assert!(mb - ma > sa + sb, "{ma} ± {sa} vs {mb} ± {sb}");
}

/// At 64 x 64 the frozen features beat the 32 x 32 ones at every size and on every seed.
#[test]
fn a_larger_input_lifts_frozen_features_at_every_size() {
    for k in 0..sizes() {
        let (a, b) = (whole_curve(LARGE_FROZEN, k), curve(IMAGENET_FROZEN, k));
        assert!(
            a.iter().zip(&b).all(|(x, y)| x > y),
            "size {k}: {a:?} vs {b:?}"
        );
    }
}

/// At 64 x 64, the ImageNet network with its last two stages fine-tuned is at least as
/// good as the small CNN trained from scratch at every size (means), where at 32 x 32 it
/// lost from 1,000 images on.
#[test]
fn at_64_pixels_the_pretrained_network_catches_up_with_the_small_cnn() {
    for k in 0..sizes() {
        let (a, b) = (
            mean(&whole_curve(LARGE_TUNED, k)),
            mean(&curve(CNN_SCRATCH, k)),
        );
        assert!(a >= b, "size {k}: {a} vs {b}");
    }
}

/// With the most labels, fine-tuning every layer beats the other ImageNet rows at 32 x 32
/// (frozen features, the last two stages fine-tuned; means).
#[test]
fn with_many_labels_fine_tuning_everything_is_the_best_at_32_pixels() {
    let k = sizes() - 1;
    let all = mean(&whole_curve(WHOLE_IMAGENET, k));
    for m in [IMAGENET_FROZEN, IMAGENET_TUNED] {
        assert!(all > mean(&curve(m, k)), "row {m}");
    }
}
