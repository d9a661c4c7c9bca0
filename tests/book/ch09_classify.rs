//! Chapter 9.2, sequence classification: MNIST read row by row; the mean over steps
//! checked three ways (manual, finite differences, candle autograd in `F64`); the
//! order-blind model blind to the order of its rows and the LSTM not; the row orders;
//! and the claims about the experiment's committed results.

use std::sync::OnceLock;

use candle_core::{DType, Var};
use dlbook::data::{DataDir, Dataset, Split};
use dlbook::experiments;
use dlbook::nn::candle_twin::{to_array, to_tensor};
use dlbook::nn::gradcheck::{manual_grads, max_rel_error, normal, numeric_grads, Grads};
use dlbook::nn::{Layer, Mode};
use dlbook::report::{Report, Value};
use dlbook::seq::{
    order_blind_net, recurrent_net, reorder, rows_as_sequence, Cell, MeanOverSteps,
    RowOrder,
};
use ndarray::{ArrayD, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn dir() -> DataDir {
    DataDir::resolve(None)
}

/// The first `n` MNIST test images as 28-step sequences of 28 pixels.
fn digits(n: usize) -> Dataset {
    rows_as_sequence(&Dataset::mnist(&dir(), Split::Test, n).unwrap()).unwrap()
}

// ANCHOR: mean_three_ways
/// The worst `(manual-fd, manual-candle, fd-candle)` disagreement of the gradient of
/// $L = \langle \mathrm{mean}_t(x), r\rangle$ with respect to `x`, over three seeds.
fn mean_over_steps_three_ways() -> (f64, f64, f64) {
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for seed in 0..3 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (x, r) = (normal(&[2, 5, 3], &mut rng), normal(&[2, 3], &mut rng));
        let mut layer = MeanOverSteps::new();
        let m = manual_grads(&mut layer, &x, &r);
        let n = numeric_grads(&mut layer, &x, &r, 1e-2);
        let xv = Var::from_tensor(&to_tensor(&x, DType::F64).unwrap()).unwrap();
        let rt = to_tensor(&r, DType::F64).unwrap();
        let loss = (xv.as_tensor().mean(1).unwrap() * rt)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let c = Grads {
            dx: to_array(grads.get(xv.as_tensor()).unwrap()).unwrap(),
            params: vec![],
        };
        worst = (
            worst.0.max(max_rel_error(&m, &n)),
            worst.1.max(max_rel_error(&m, &c)),
            worst.2.max(max_rel_error(&n, &c)),
        );
    }
    worst
}
// ANCHOR_END: mean_three_ways

#[test]
fn the_mean_over_steps_agrees_three_ways() {
    let (a, b, c) = mean_over_steps_three_ways();
    assert!(b < 1e-5, "manual vs candle {b:e}");
    assert!(a < 1e-3, "manual vs finite differences {a:e}");
    assert!(c < 1e-3, "finite differences vs candle {c:e}");
}

#[test]
#[should_panic(expected = "MeanOverSteps: expected a sequence")]
fn the_mean_over_steps_of_a_matrix_is_a_programming_error() {
    MeanOverSteps::new().forward(&ArrayD::zeros(vec![2, 3]), Mode::Eval);
}

#[test]
fn an_image_becomes_a_sequence_of_its_rows() {
    let images = Dataset::mnist(&dir(), Split::Test, 3).unwrap();
    let seqs = rows_as_sequence(&images).unwrap();
    assert_eq!(seqs.x.shape(), &[3, 28, 28]);
    // Step 10 of image 2 is row 10 of image 2.
    assert_eq!(
        seqs.x.index_axis(Axis(0), 2).index_axis(Axis(0), 10),
        images
            .x
            .index_axis(Axis(0), 2)
            .index_axis(Axis(0), 0)
            .index_axis(Axis(0), 10)
    );
    assert_eq!(seqs.labels(), images.labels());
    // Anything but images is an error, not a panic.
    let flat = Dataset::classes(ArrayD::zeros(vec![3, 784]), vec![0, 1, 2]);
    let e = format!("{:#}", rows_as_sequence(&flat).unwrap_err());
    assert!(e.contains("expected images"), "{e}");
}

/// The rows of sequence `i` of `d`, as vectors, sorted: the set of its rows.
fn row_set(d: &Dataset, i: usize) -> Vec<Vec<u32>> {
    let mut rows: Vec<Vec<u32>> =
        d.x.index_axis(Axis(0), i)
            .axis_iter(Axis(0))
            .map(|r| r.iter().map(|v| v.to_bits()).collect())
            .collect();
    rows.sort();
    rows
}

#[test]
fn reordering_permutes_rows_and_nothing_else() {
    let d = digits(20);
    let fixed = reorder(&d, RowOrder::Fixed { seed: 3 }, 1);
    let shuffled = reorder(&d, RowOrder::PerImage { seed: 3 }, 1);
    assert_eq!(reorder(&d, RowOrder::Natural, 1).x, d.x);
    for i in 0..20 {
        assert_eq!(row_set(&fixed, i), row_set(&d, i));
        assert_eq!(row_set(&shuffled, i), row_set(&d, i));
    }
    // Where row 0 of the first image went: the same place in every image for the fixed
    // order; not for the per-image order. (Rows are told apart by an image whose rows
    // are all different: a marker per row.)
    let marked = Dataset::classes(
        ArrayD::from_shape_fn(vec![4, 6, 1], |i| i[1] as f32),
        vec![0; 4],
    );
    let where_ = |d: &Dataset| -> Vec<Vec<f32>> {
        (0..4)
            .map(|i| d.x.index_axis(Axis(0), i).iter().copied().collect())
            .collect()
    };
    let f = where_(&reorder(&marked, RowOrder::Fixed { seed: 3 }, 1));
    assert!(f.iter().all(|p| p == &f[0]));
    assert_ne!(f[0], (0..6).map(|v| v as f32).collect::<Vec<_>>());
    let s = where_(&reorder(&marked, RowOrder::PerImage { seed: 3 }, 1));
    assert!(s.iter().any(|p| p != &s[0]));
    // Another salt, other per-image orders (the test images do not repeat the training
    // images' permutations).
    assert_ne!(
        s,
        where_(&reorder(&marked, RowOrder::PerImage { seed: 3 }, 2))
    );
}

// ANCHOR: order_blind_usage
/// The largest change of the order-blind model's and of an LSTM classifier's outputs
/// on 50 digits when each digit's rows are shuffled.
fn output_change_when_rows_are_shuffled() -> (f32, f32) {
    let d = digits(50);
    let shuffled = reorder(&d, RowOrder::PerImage { seed: 1 }, 0);
    let change = |mut net: dlbook::nn::Named| {
        let (a, b) = (
            net.forward(&d.x, Mode::Eval),
            net.forward(&shuffled.x, Mode::Eval),
        );
        (a - b).iter().fold(0.0f32, |m, v| m.max(v.abs()))
    };
    (
        change(order_blind_net(28, 32, 10, 0)),
        change(recurrent_net(Cell::Lstm, 28, 16, 10, 0)),
    )
}
// ANCHOR_END: order_blind_usage

#[test]
fn the_order_blind_model_cannot_see_the_order() {
    let (blind, lstm) = output_change_when_rows_are_shuffled();
    // Only rounding: the mean sums the same numbers in another order.
    assert!(blind < 1e-5, "order-blind: {blind}");
    assert!(lstm > 1e-3, "LSTM: {lstm}");
}

#[test]
fn the_quick_preset_runs_every_variant() {
    let r = experiments::quick("sequence_mnist", &dir()).unwrap();
    let t = r.table("accuracy").unwrap();
    assert_eq!(t.rows.len(), 7);
    for row in &t.rows {
        let acc = row[2].number().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{row:?}");
    }
}

/// The committed full results of `sequence_mnist`, read once.
fn report() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        experiments::committed(root, "sequence_mnist").unwrap()
    })
}

/// The per-seed test accuracies of variant `k` (in the order of the table).
fn accs(k: usize) -> Vec<f64> {
    match &report().facts[&format!("acc_{k}")].value {
        Value::Seeds(v) => v.clone(),
        v => panic!("{v:?}"),
    }
}

fn mean(k: usize) -> f64 {
    Value::mean_std(&accs(k)).0
}

/// The variants, in the table's order.
const LSTM: usize = 0;
const GRU: usize = 1;
const BLIND: usize = 2;
const FIXED: usize = 3;
const SHUFFLED: usize = 4;
const BLIND_SHUFFLED: usize = 5;
const RNN: usize = 6;

#[test]
fn the_last_step_accuracy_is_the_networks_own() {
    let d = digits(200);
    let mut net = recurrent_net(Cell::Gru, 28, 8, 10, 3);
    let by_step = dlbook::seq::accuracy_by_step(&mut net, &d).unwrap();
    assert_eq!(by_step.len(), 28);
    assert_eq!(by_step[27], dlbook::train::accuracy_on(&mut net, &d));
}

#[test]
fn reading_in_order_beats_the_order_blind_model() {
    for k in [LSTM, GRU] {
        assert!(
            mean(k) - mean(BLIND) > 0.25,
            "{k}: {} vs {}",
            mean(k),
            mean(BLIND)
        );
    }
}

#[test]
fn the_lstm_and_the_gru_are_within_a_point() {
    assert!((mean(LSTM) - mean(GRU)).abs() < 0.01);
}

#[test]
fn a_fixed_permutation_is_learned() {
    // Far above the shuffled rows, a few points below the natural order.
    assert!(mean(FIXED) - mean(SHUFFLED) > 0.15);
    let loss = mean(LSTM) - mean(FIXED);
    assert!(loss > 0.02 && loss < 0.15, "{loss}");
}

#[test]
fn shuffling_each_image_destroys_the_lstms_lead() {
    // Most of the lead over the order-blind model is gone...
    assert!(mean(LSTM) - mean(SHUFFLED) > 0.2);
    assert!(mean(SHUFFLED) - mean(BLIND) < 0.1);
    // ...though the LSTM still counts, weighs and combines rows better than a mean.
    assert!(mean(SHUFFLED) > mean(BLIND));
}

#[test]
fn the_order_blind_model_scores_the_same_on_shuffled_rows() {
    for (a, b) in accs(BLIND).iter().zip(accs(BLIND_SHUFFLED)) {
        // The same seeds: only the rounding of the mean differs.
        assert!((a - b).abs() <= 0.001, "{a} vs {b}");
    }
}

#[test]
fn the_lstm_decides_late() {
    let half = |k: usize| report().get_fact(&format!("acc_half_{k}")).unwrap();
    // After 14 of 28 rows the in-order networks are barely above chance...
    for k in [LSTM, GRU, FIXED] {
        assert!(half(k) < 0.25, "{k}: {}", half(k));
    }
    // ...while the network that cannot rely on order has already gathered evidence.
    assert!(half(SHUFFLED) > 0.4, "{}", half(SHUFFLED));
}

/// The gateless RNN reading the rows in order: above the order-blind model, below both
/// gated cells by more than the sum of the two spreads.
#[test]
fn the_gateless_rnn_trails_the_gated_cells_on_rows() {
    the_gateless_rnn_trails_the_gated_cells_on_rows_check();
}

/// The check of [`the_gateless_rnn_trails_the_gated_cells_on_rows`], shared with chapter 8's tests.
pub(crate) fn the_gateless_rnn_trails_the_gated_cells_on_rows_check() {
    let (rnn, srnn) = Value::mean_std(&accs(RNN));
    assert!(
        rnn > mean(BLIND) + 0.1,
        "RNN {rnn} vs order-blind {}",
        mean(BLIND)
    );
    for k in [LSTM, GRU] {
        let (m, s) = Value::mean_std(&accs(k));
        assert!(m - rnn > s + srnn, "{k}: {m} ± {s} vs RNN {rnn} ± {srnn}");
    }
}
