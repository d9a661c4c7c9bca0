//! Chapter 5, the candle twin of the seed model: from the same initial weights, the same
//! logits and the same loss gradient for every parameter as the from-scratch network.
//!
//! Tolerances: the from-scratch model (`f32`) against the twin in `F64` within `1e-5`
//! relative (max-norm); the twin in `F32` within `1e-4` (both sides round in `f32`, in
//! a different order).

use candle_core::DType;
use dlbook::cnn::candle_twin::max_pool_builtin;
use dlbook::cnn::MaxPool2d;
use dlbook::data::{DataDir, Dataset, Split};
use dlbook::models::candle_twin::CandleCnn;
use dlbook::models::{mnist_cnn, CnnConfig};
use dlbook::nn::dropout::Dropout;
use dlbook::nn::gradcheck::rel_error;
use dlbook::nn::softmax_cross_entropy;
use dlbook::nn::{Layer, Mode, Module};
use ndarray::{ArrayD, IxDyn};

fn batch(split: Split, n: usize) -> (ArrayD<f32>, Vec<usize>) {
    let d = Dataset::mnist(&DataDir::resolve(None), split, n)
        .expect("MNIST is in the data dir");
    let y = d.labels().to_vec();
    (d.x, y)
}

/// The largest relative gap between the from-scratch logits and the twin's (eval mode)
/// on 32 test digits, with the twin in `dtype`.
pub fn twin_logit_gap(dtype: DType) -> f64 {
    let (x, _) = batch(Split::Test, 32);
    let mut net = mnist_cnn(&CnnConfig::default(), 0);
    let ours = net.forward(&x, Mode::Eval).mapv(f64::from);
    let twin = CandleCnn::from_model(&mut net, dtype).unwrap();
    rel_error(&ours, &twin.logits(&x).unwrap())
}

/// The relative gap between the from-scratch model in training mode and the twin given
/// the same dropout mask, on 32 training digits: for the loss and for the gradient of
/// every parameter, by name.
pub fn twin_gradient_gaps(dtype: DType) -> Vec<(String, f64)> {
    let (x, y) = batch(Split::Train, 32);
    let seed = 0;
    let mut net = mnist_cnn(&CnnConfig::default(), seed);
    let twin = CandleCnn::from_model(&mut net, dtype).unwrap();
    // The model's dropout draws from a generator seeded with seed ^ 0xD80B, one number
    // per activation, whatever the activations are: a twin of that layer draws the
    // same first mask.
    let mut drop = Dropout::new(0.5, seed ^ 0xD80B);
    drop.forward(&ArrayD::ones(IxDyn(&[32, 128])), Mode::Train);
    let mask = drop.mask().unwrap().clone();

    net.zero_grad();
    let logits = net.forward(&x, Mode::Train);
    let (loss, dlogits) = softmax_cross_entropy(&logits, &y);
    net.backward(&dlogits);
    let mut ours = vec![];
    net.visit_params("", &mut |n, p| {
        ours.push((n.to_string(), p.grad.mapv(f64::from)))
    });
    let (twin_loss, theirs) = twin.loss_grads(&x, &y, Some(&mask)).unwrap();
    let mut gaps = vec![(
        "loss".to_string(),
        (f64::from(loss) - twin_loss).abs() / twin_loss.abs(),
    )];
    for ((n, a), (m, b)) in ours.iter().zip(&theirs) {
        assert_eq!(n, m);
        gaps.push((n.clone(), rel_error(a, b)));
    }
    gaps
}

fn largest(gaps: &[(String, f64)]) -> f64 {
    gaps.iter().fold(0.0, |m, (_, g)| m.max(*g))
}

#[test]
fn twin_logits_match_the_scratch_model_in_f64() {
    let gap = twin_logit_gap(DType::F64);
    assert!(gap <= 1e-5, "logits differ by {gap:e}");
}

#[test]
fn twin_gradients_match_the_scratch_model_in_f64() {
    let gaps = twin_gradient_gaps(DType::F64);
    assert_eq!(gaps.len(), 1 + 8, "{gaps:?}");
    assert!(largest(&gaps) <= 1e-5, "{gaps:?}");
}

#[test]
fn twin_in_f32_agrees_to_single_precision() {
    let gaps = twin_gradient_gaps(DType::F32);
    let logits = twin_logit_gap(DType::F32);
    assert!(
        logits <= 1e-4 && largest(&gaps) <= 1e-4,
        "{logits:e} {gaps:?}"
    );
}

/// Our 2x2/2 max-pool gradient on an 11x11 map (the second pool of the seed model), and
/// candle's built-in one, with distinct input values (no ties).
pub fn pool_gradients_11x11() -> (ArrayD<f64>, ArrayD<f64>) {
    let x = ArrayD::from_shape_fn(IxDyn(&[1, 1, 11, 11]), |i| {
        ((i[2] * 37 + i[3] * 11) % 121) as f32 / 121.0
    });
    let r =
        ArrayD::from_shape_fn(IxDyn(&[1, 1, 5, 5]), |i| 1.0 + (i[2] * 5 + i[3]) as f32);
    let mut pool = MaxPool2d::new((2, 2), (2, 2));
    pool.forward(&x, Mode::Train);
    let ours = pool.backward(&r).mapv(f64::from);
    let (_, builtin) = max_pool_builtin((2, 2), (2, 2), &x, &r).unwrap();
    (ours, builtin.unwrap())
}

#[test]
fn candle_builtin_max_pool_gradient_is_misplaced_when_the_pool_drops_a_row() {
    let (ours, builtin) = pool_gradients_11x11();
    // Nearest upsampling from 5 to 11 puts the gradient of window (i, j) near pixel
    // 11 i / 5, not at 2 i or 2 i + 1.
    assert!(rel_error(&ours, &builtin) > 0.1);
}

/// The outputs of `conv1` (before its ReLU) and of `relu1` on 32 test digits.
fn conv1_maps() -> (ArrayD<f32>, ArrayD<f32>) {
    let (x, _) = batch(Split::Test, 32);
    let mut net = mnist_cnn(&CnnConfig::default(), 0);
    let maps = net.forward_all(&x, Mode::Eval);
    let get = |name: &str| maps.iter().find(|(n, _)| n == name).unwrap().1.clone();
    (get("conv1"), get("relu1"))
}

#[test]
fn most_conv1_pre_activations_of_a_digit_are_exactly_zero() {
    let (pre, _) = conv1_maps();
    let zeros = pre.iter().filter(|&&v| v == 0.0).count();
    assert!(zeros * 2 > pre.len(), "{zeros} of {}", pre.len());
}

#[test]
fn tied_positive_maxima_occur_in_the_first_pool() {
    let (_, h) = conv1_maps(); // (32, 32, 26, 26)
    let mut tied = 0;
    let s = h.shape().to_vec();
    for n in 0..s[0] {
        for c in 0..s[1] {
            for i in 0..s[2] / 2 {
                for j in 0..s[3] / 2 {
                    let w = [
                        h[[n, c, 2 * i, 2 * j]],
                        h[[n, c, 2 * i, 2 * j + 1]],
                        h[[n, c, 2 * i + 1, 2 * j]],
                        h[[n, c, 2 * i + 1, 2 * j + 1]],
                    ];
                    let m = w.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    if m > 0.0 && w.iter().filter(|&&v| v == m).count() > 1 {
                        tied += 1;
                    }
                }
            }
        }
    }
    assert!(tied > 0, "no tied positive maximum");
}

fn stored_twin() -> dlbook::report::Report {
    let path = format!(
        "{}/chapters/generated/ch05/cnn_twin.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    dlbook::report::Report::from_json(&text).expect("a valid report")
}

#[test]
fn trained_twins_stay_within_half_a_point_of_each_other() {
    let r = stored_twin();
    let t = r.table("training").unwrap();
    assert!(t.rows.len() >= 2);
    for row in &t.rows {
        let (ours, twin) = (row[1].number().unwrap(), row[2].number().unwrap());
        assert!((ours - twin).abs() <= 0.005, "{ours} vs {twin}");
    }
    // And both learned: the last epoch is far above chance.
    let last = &t.rows[t.rows.len() - 1];
    assert!(last[1].number().unwrap() > 0.8 && last[2].number().unwrap() > 0.8);
}
