//! Chapter 5, the MNIST classifier: the seed model clears 98 % on the whole test set
//! within `cargo test`, the full experiment's results say what the text says, and the
//! quick configurations of the experiments behave as described.

use std::sync::OnceLock;

use dlbook::data::{DataDir, Dataset, Split};
use dlbook::experiments::{self, Experiment as _, Preset as _};
use dlbook::experiments::{cnn_ablation, mnist_cnn};
use dlbook::models::{mnist_cnn as build, CnnConfig};
use dlbook::optim::Adam;
use dlbook::report::{Report, Value};
use dlbook::train::{train_classifier, TrainSpec};

// ANCHOR: seed_model_test_accuracy
/// The seed model trained exactly as the text says (Adam, learning rate 1e-3, batches
/// of 128, all 60,000 training images with pixels in [0, 1], `n_epochs` passes), and
/// its accuracy on all 10,000 test images.
pub fn seed_model_test_accuracy(seed: u64, n_epochs: usize) -> f64 {
    let dir = DataDir::resolve(None);
    let train = Dataset::mnist(&dir, Split::Train, 60_000).expect("MNIST training set");
    let test = Dataset::mnist(&dir, Split::Test, 10_000).expect("MNIST test set");
    let mut model = build(&CnnConfig::default(), seed);
    let mut opt = Adam::new(1e-3);
    let spec = TrainSpec {
        n_epochs,
        batch_size: 128,
        seed,
        log_every: 100,
        ..TrainSpec::default()
    };
    let history = train_classifier(&mut model, &mut opt, &train, &test, &spec);
    history.final_acc()
}
// ANCHOR_END: seed_model_test_accuracy

#[test]
fn seed_model_reaches_98_percent_on_the_mnist_test_set() {
    let acc = seed_model_test_accuracy(0, 2);
    assert!(acc >= 0.98, "test accuracy {acc}");
}

fn stored(name: &str) -> Report {
    let path = format!(
        "{}/chapters/generated/ch05/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Report::from_json(&text).expect("a valid report")
}

fn seeds(r: &Report, fact: &str) -> Vec<f64> {
    match &r.facts[fact].value {
        Value::Seeds(v) => v.clone(),
        other => panic!("{fact}: {other:?}"),
    }
}

#[test]
fn every_seed_of_the_full_run_clears_98_percent() {
    let r = stored("mnist_cnn");
    assert_eq!(r.seeds.len(), 3);
    // (The integrity test checks that the JSON was made with the current `full()`.)
    assert_eq!(r.config["n_train"], 60_000);
    assert_eq!(r.config["n_test"], 10_000);
    let accs = seeds(&r, "final_acc");
    assert!(accs.iter().all(|&a| a >= 0.98), "{accs:?}");
}

#[test]
fn the_second_epoch_improves_on_the_first() {
    let r = stored("mnist_cnn");
    let t = r.table("accuracy").unwrap();
    let mean = |row: usize| t.rows[row][1].number().unwrap();
    assert!(t.rows.len() >= 2);
    assert!(mean(1) > mean(0), "{} then {}", mean(0), mean(1));
}

fn quick() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        experiments::quick("mnist_cnn", &DataDir::resolve(None))
            .cloned()
            .expect("quick run")
    })
}

#[test]
fn training_loss_falls_for_every_seed() {
    let r = quick();
    let (first, last) = (seeds(r, "loss_first"), seeds(r, "loss_last"));
    for (a, b) in first.iter().zip(&last) {
        assert!(b < a, "loss {a} -> {b}");
    }
}

#[test]
fn confusion_matrix_counts_every_test_digit_once() {
    let r = quick();
    let t = r.table("confusion").unwrap();
    assert_eq!(t.rows.len(), 10);
    let mut total = 0.0;
    for (k, row) in t.rows.iter().enumerate() {
        let counts: Vec<f64> = row[1..11].iter().map(|v| v.number().unwrap()).collect();
        total += counts.iter().sum::<f64>();
        // Each digit is predicted as itself more often than as any other digit.
        let best = (0..10).fold(0, |a, j| if counts[j] > counts[a] { j } else { a });
        assert_eq!(best, k, "row {k}: {counts:?}");
    }
    assert_eq!(total, mnist_cnn::Config::quick().n_test as f64);
}

#[test]
fn the_worst_digits_are_misclassified_and_sorted_by_loss() {
    let r = quick();
    let t = r.table("worst").unwrap();
    assert_eq!(t.rows.len(), mnist_cnn::Config::quick().n_worst);
    let mut prev = f64::INFINITY;
    for row in &t.rows {
        let (truth, pred) = (row[2].number().unwrap(), row[3].number().unwrap());
        let loss = row[4].number().unwrap();
        assert_ne!(truth, pred);
        // Misclassified: the true class has probability below 1/2.
        assert!(loss > std::f64::consts::LN_2 && loss <= prev);
        prev = loss;
    }
}

#[test]
fn ablation_variants_have_the_parameters_of_their_architecture() {
    let cfg = cnn_ablation::Config::quick();
    let r = cnn_ablation::CnnAblation::report(&cfg, &DataDir::resolve(None))
        .expect("quick run");
    let t = r.table("ablation").unwrap();
    assert_eq!(t.rows.len(), 6);
    let params: Vec<f64> = t.rows.iter().map(|row| row[1].number().unwrap()).collect();
    assert_eq!(params[0], 225_034.0);
    assert_eq!(params[1], params[0], "dropout has no parameters");
    assert_eq!(
        params[4],
        params[0] + 2.0 * (32.0 + 64.0),
        "batch norm adds gamma, beta"
    );
    assert_eq!(
        params[5], params[0],
        "augmentation changes the data, not the model"
    );
    // Without the pools the maps stay larger, so the dense layer grows.
    assert!(params[2] > params[0] && params[3] > params[0]);
    for row in &t.rows {
        let acc = row[2].number().unwrap();
        assert!(acc > 0.1, "{:?}: no better than chance", row[0]);
    }
}

/// Per-seed test accuracies of ablation variant `k` (in the order of
/// `cnn_ablation::Config::variants`) in the full run.
fn ablation_accs(k: usize) -> Vec<f64> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let r = dlbook::experiments::committed(root, "cnn_ablation").unwrap();
    seeds(&r, &format!("acc_{k}"))
}

/// Whether variant `a` beats variant `b` on every seed (same seed, same batches).
fn beats_on_every_seed(a: usize, b: usize) -> bool {
    let (a, b) = (ablation_accs(a), ablation_accs(b));
    a.len() == 3 && a.iter().zip(&b).all(|(x, y)| x > y)
}

/// Whether variants `a` and `b` differ in their mean accuracy by less than the larger
/// of their spreads over the seeds.
fn within_spread(a: usize, b: usize) -> bool {
    let (a, b) = (ablation_accs(a), ablation_accs(b));
    let ((ma, sa), (mb, sb)) = (Value::mean_std(&a), Value::mean_std(&b));
    println!("{ma} ± {sa} vs {mb} ± {sb}");
    (ma - mb).abs() < sa.max(sb)
}

#[test]
fn dropout_changes_the_mean_less_than_the_spread_of_seeds() {
    assert!(within_spread(0, 1));
}

#[test]
fn pooling_beats_strided_convolutions_and_two_convolutions_beat_one() {
    assert!(beats_on_every_seed(0, 2), "max pool vs strided");
    assert!(beats_on_every_seed(0, 3), "two conv vs one");
}

#[test]
fn augmentation_costs_accuracy_in_the_short_run() {
    assert!(beats_on_every_seed(0, 5));
}

#[test]
fn batch_norm_changes_the_mean_less_than_the_spread_of_seeds() {
    assert!(within_spread(0, 4));
}

#[test]
fn confusion_heatmap_shows_the_confusion_table() {
    use dlbook::report::{render_figure, Plot};
    let r = quick();
    let fig = r
        .figures
        .iter()
        .find(|f| f.name == "confusion")
        .expect("figure");
    let Plot::Heatmap {
        values,
        row_labels,
        col_labels,
        ..
    } = &fig.plot
    else {
        panic!("not a heatmap");
    };
    assert_eq!((row_labels.len(), col_labels.len()), (10, 10));
    let t = r.table("confusion").unwrap();
    for (row, cells) in t.rows.iter().zip(values) {
        let counts: Vec<f64> = row[1..11].iter().map(|v| v.number().unwrap()).collect();
        assert_eq!(&counts, cells);
    }
    let svg = render_figure(fig).unwrap();
    assert_eq!(
        svg.matches(r##"stroke="#ddd""##).count(),
        100,
        "one cell per entry"
    );
    // Bad matrices are errors that say what is wrong, not panics.
    let mut bad = fig.clone();
    if let Plot::Heatmap { values, .. } = &mut bad.plot {
        values[3].pop();
    }
    let e = render_figure(&bad).unwrap_err().to_string();
    assert!(e.contains("10 values per row"), "{e}");
    if let Plot::Heatmap { values, .. } = &mut bad.plot {
        values[3].push(-1.0);
    }
    let e = render_figure(&bad).unwrap_err().to_string();
    assert!(e.contains("non-negative"), "{e}");
}

#[test]
fn per_example_losses_and_the_confusion_matrix_by_hand() {
    // A model whose logits are its inputs: row 0 is sure of class 0 (right), row 1
    // spreads evenly over 3 classes (a tie: the first class is predicted), row 2
    // prefers class 2 but is class 1.
    let mut model = dlbook::nn::Reshape::new(&[3]);
    let x = ndarray::array![[5.0f32, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 3.0]];
    let labels = [0, 2, 1];
    let (losses, preds) = dlbook::metrics::per_example(&mut model, x.view(), &labels);
    let lse = |z: [f64; 3]| z.iter().map(|v| v.exp()).sum::<f64>().ln();
    let want = [
        lse([5.0, 0.0, 0.0]) - 5.0,
        3f64.ln(),
        lse([0.0, 1.0, 3.0]) - 1.0,
    ];
    for (got, want) in losses.iter().zip(want) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
    assert_eq!(preds, [0, 0, 2]);
    let c = dlbook::metrics::confusion(&labels, &preds, 3);
    assert_eq!(c, [[1, 0, 0], [0, 0, 1], [1, 0, 0]]);
}
