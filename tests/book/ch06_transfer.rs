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
    let gray = ArrayD::from_shape_fn(IxDyn(&[2, 1, 28, 28]), |i| (i[2] * 28 + i[3]) as f32 / 784.0);
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
    let x = ArrayD::from_shape_fn(IxDyn(&[4, 3, 2, 2]), |i| (i[0] * 7 + i[1] * 3 + i[2] + i[3]) as f32);
    for frozen in [true, false] {
        let bn = BatchNorm2d::with_eps(3, 1e-3);
        let mut layer: Box<dyn Layer> = if frozen { Box::new(EvalMode(Box::new(bn))) } else { Box::new(bn) };
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
        assert_eq!(means.iter().all(|&m| m == 0.0), frozen, "frozen {frozen}: {means:?}");
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
