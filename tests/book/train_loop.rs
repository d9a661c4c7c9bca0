//! The training loop (`dlbook::train`): checkpoints resume bit for bit, frozen groups do
//! not move, learning-rate multipliers scale the step, clipping caps the norm, early
//! stopping restores the best epoch, callbacks see every step, and a bad checkpoint is
//! an error.

use std::path::PathBuf;

use dlbook::data::Dataset;
use dlbook::nn::activation::{Activation, ActivationLayer};
use dlbook::nn::batchnorm::BatchNorm;
use dlbook::nn::dropout::Dropout;
use dlbook::nn::{Init, Linear, Module, Named};
use dlbook::optim::{Adam, Sgd};
use dlbook::train::{
    checkpoint, clip_grad_norm, fit, fit_from, grad_norm, Callback, Checkpointing,
    ClassifierLoss, Control, EarlyStopping, Ending, EpochInfo, HistoryLogger, Monitor,
    ParamGroups, StepInfo, TrainProgress, TrainSpec,
};
use ndarray::{Array2, ArrayD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A fresh folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("dlbook-train-loop-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Three Gaussian blobs in 8 dimensions, `n` points, labels in `0..3`.
fn blobs(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let y: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let x = Array2::from_shape_fn((n, 8), |(i, j)| {
        let centre = if j % 3 == y[i] { 1.5 } else { 0.0 };
        centre + rng.random::<f32>() - 0.5
    });
    Dataset::classes(x.into_dyn(), y)
}

/// A small classifier with every kind of state: parameters, batch-norm buffers and a
/// dropout generator.
fn model(seed: u64) -> Named {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Named::new();
    net.push("fc1", Linear::new(8, 16, Init::He, &mut rng));
    net.push("bn1", BatchNorm::new(16));
    net.push("relu1", ActivationLayer::new(Activation::Relu));
    net.push("dropout", Dropout::new(0.3, seed ^ 7));
    net.push("fc2", Linear::new(16, 3, Init::He, &mut rng));
    net
}

/// Every parameter and buffer, by name.
fn weights(model: &mut dyn Module) -> Vec<(String, ArrayD<f32>)> {
    let mut out = vec![];
    model.visit_params("", &mut |n, p| out.push((n.to_string(), p.value.clone())));
    model.visit_buffers("", &mut |n, b| out.push((n.to_string(), b.to_owned())));
    out
}

fn spec(n_epochs: usize) -> TrainSpec<'static> {
    TrainSpec {
        n_epochs,
        batch_size: 16,
        seed: 3,
        log_every: 2,
        ..TrainSpec::default()
    }
}

// ANCHOR: resume_bit_identical
/// Trains 5 epochs straight, and 2 epochs + checkpoint + load into fresh objects + 3
/// more; returns whether the weights, the optimizer state and the history agree bit
/// for bit.
pub fn resumed_run_matches_straight_run() -> bool {
    let (train, val) = (blobs(96, 1), blobs(30, 2));
    let loss = ClassifierLoss::CrossEntropy;
    // Straight through.
    let (mut m1, mut o1, mut h1) = (model(0), Adam::new(1e-2), HistoryLogger::new(2));
    fit(
        &mut m1,
        &mut o1,
        &loss,
        &train,
        Some(&val),
        &spec(5),
        &mut [&mut h1],
    )
    .unwrap();
    // Two epochs, saving after each.
    let path = scratch("resume").join("run.safetensors");
    let (mut m2, mut o2, mut h2) = (model(0), Adam::new(1e-2), HistoryLogger::new(2));
    let first = TrainSpec {
        checkpoint: Some(Checkpointing {
            path: path.clone(),
            every: 1,
        }),
        ..spec(2)
    };
    fit(
        &mut m2,
        &mut o2,
        &loss,
        &train,
        Some(&val),
        &first,
        &mut [&mut h2],
    )
    .unwrap();
    // Fresh objects (another initialization, to be overwritten), as a new process has.
    let (mut m3, mut o3, mut h3) = (model(99), Adam::new(1e-2), HistoryLogger::new(2));
    let mut state =
        checkpoint::load(&path, &mut m3, &mut o3, &mut [&mut h3], train.len()).unwrap();
    assert_eq!((state.epoch, state.step), (2, 12));
    let cbs: &mut [&mut dyn Callback] = &mut [&mut h3];
    fit_from(
        &mut state,
        &mut m3,
        &mut o3,
        &loss,
        &train,
        Some(&val),
        &spec(5),
        cbs,
    )
    .unwrap();
    weights(&mut m1) == weights(&mut m3)
        && o1.m == o3.m
        && o1.v == o3.v
        && o1.t == o3.t
        && h1.history == h3.history
}
// ANCHOR_END: resume_bit_identical

#[test]
fn resume_from_a_checkpoint_is_bit_identical() {
    assert!(resumed_run_matches_straight_run());
}

#[test]
fn frozen_parameters_do_not_move_and_have_no_optimizer_state() {
    let train = blobs(64, 1);
    let mut m = model(0);
    let before = weights(&mut m);
    let mut opt = Adam::new(1e-2);
    let s = TrainSpec {
        groups: ParamGroups {
            frozen: vec!["fc1".into()],
            ..ParamGroups::default()
        },
        ..spec(2)
    };
    let loss = ClassifierLoss::CrossEntropy;
    fit(&mut m, &mut opt, &loss, &train, None, &s, &mut []).unwrap();
    let after = weights(&mut m);
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        if name.starts_with("fc1.") {
            assert_eq!(a, b, "{name} moved");
        } else if name.starts_with("fc2.") {
            assert_ne!(a, b, "{name} did not train");
        }
    }
    assert!(
        opt.m.keys().all(|k| !k.starts_with("fc1.")),
        "{:?}",
        opt.m.keys()
    );
    assert!(opt.m.contains_key("fc2.weight"));
}

#[test]
fn an_lr_multiplier_of_one_half_moves_params_half_as_far() {
    // One SGD step: the whole set in one batch, one epoch.
    let train = blobs(48, 1);
    let loss = ClassifierLoss::CrossEntropy;
    let one_step = |groups: ParamGroups| {
        let mut m = model(0);
        let before = weights(&mut m);
        let s = TrainSpec {
            batch_size: 48,
            groups,
            ..spec(1)
        };
        fit(&mut m, &mut Sgd::new(0.1), &loss, &train, None, &s, &mut []).unwrap();
        let after = weights(&mut m);
        before
            .into_iter()
            .zip(after)
            .map(|((n, a), (_, b))| (n, &b - &a))
            .collect::<Vec<_>>()
    };
    let full = one_step(ParamGroups::default());
    let half = one_step(ParamGroups {
        lr_scale: vec![("fc1".into(), 0.5)],
        ..ParamGroups::default()
    });
    for ((name, d1), (_, d2)) in full.iter().zip(&half) {
        if name.starts_with("fc1.") {
            assert!(d1.iter().any(|&v| v != 0.0), "{name} did not move");
            for (&a, &b) in d1.iter().zip(d2) {
                assert!(
                    (0.5 * a - b).abs() <= 1e-6 * (1.0 + a.abs()),
                    "{name}: {a} {b}"
                );
            }
        } else {
            assert_eq!(d1, d2, "{name} is not in the scaled group");
        }
    }
}

#[test]
fn clipping_caps_the_global_norm_and_is_a_no_op_below_it() {
    let mut m = model(0);
    let mut k = 0.0f32;
    m.visit_params("", &mut |_, p| {
        p.grad.mapv_inplace(|_| {
            k += 1.0;
            (k * 0.37).sin()
        })
    });
    let none = ParamGroups::default();
    let norm = grad_norm(&mut m, &none);
    assert!(norm > 1.0);
    let grads = |m: &mut Named| {
        let mut g = vec![];
        m.visit_params("", &mut |_, p| g.push(p.grad.clone()));
        g
    };
    let before = grads(&mut m);
    assert_eq!(clip_grad_norm(&mut m, &none, (norm * 2.0) as f32), norm);
    assert_eq!(grads(&mut m), before, "below the threshold nothing changes");
    clip_grad_norm(&mut m, &none, 1.0);
    assert!((grad_norm(&mut m, &none) - 1.0).abs() < 1e-5);
    // The direction is kept.
    for (a, b) in grads(&mut m).iter().zip(&before) {
        for (&x, &y) in a.iter().zip(b) {
            assert!((f64::from(x) - f64::from(y) / norm).abs() < 1e-6);
        }
    }
}

#[test]
fn early_stopping_stops_and_restores_the_best_epoch() {
    // Validation labels shifted by one class: the better the model learns the training
    // labels, the worse its validation loss, so the best epoch comes early.
    let train = blobs(96, 1);
    let mut val = blobs(30, 2);
    val.y = dlbook::data::Targets::Classes(
        val.labels().iter().map(|&y| (y + 1) % 3).collect(),
    );
    let loss = ClassifierLoss::CrossEntropy;
    let es = TrainSpec {
        early_stopping: Some(EarlyStopping {
            monitor: Monitor::Loss,
            patience: 2,
            min_delta: 0.0,
            restore_best: true,
        }),
        ..spec(30)
    };
    let mut m = model(0);
    let mut opt = Adam::new(1e-2);
    let s = fit(&mut m, &mut opt, &loss, &train, Some(&val), &es, &mut []).unwrap();
    assert_eq!(s.ending, Ending::EarlyStopped);
    let best = s.best_epoch.expect("a best epoch");
    assert_eq!(
        s.epochs,
        best + 2,
        "stopped after `patience` epochs without progress"
    );
    // The same run stopped at the best epoch has the restored weights.
    let mut m2 = model(0);
    let s2 = spec(best);
    fit(
        &mut m2,
        &mut Adam::new(1e-2),
        &loss,
        &train,
        None,
        &s2,
        &mut [],
    )
    .unwrap();
    assert_eq!(weights(&mut m), weights(&mut m2));
}

/// Records every step and epoch it is told about; asks to stop at step `stop_at`.
#[derive(Default)]
struct Recorder {
    steps: Vec<(usize, usize, usize)>,
    epochs: Vec<(usize, usize)>,
    stop_at: Option<usize>,
}

impl Callback for Recorder {
    fn on_step(&mut self, info: &StepInfo) -> Control {
        assert!(info.loss.is_finite() && info.lr == 0.05);
        self.steps.push((info.epoch, info.step, info.batch_size));
        if Some(info.step) == self.stop_at {
            Control::Stop
        } else {
            Control::Continue
        }
    }

    fn on_epoch(&mut self, info: &EpochInfo) -> Control {
        assert_eq!(info.order.len(), 40);
        self.epochs.push((info.epoch, info.step));
        Control::Continue
    }
}

#[test]
fn callbacks_see_every_step_and_can_stop_training() {
    let train = blobs(40, 1);
    let loss = ClassifierLoss::CrossEntropy;
    let mut m = model(0);
    let mut run = |rec: &mut Recorder| {
        let mut opt = Sgd::new(0.05);
        fit(&mut m, &mut opt, &loss, &train, None, &spec(3), &mut [rec]).unwrap()
    };
    let mut rec = Recorder::default();
    let s = run(&mut rec);
    // 40 examples in batches of 16: 16, 16, 8 per epoch.
    let want: Vec<(usize, usize, usize)> = (0..9)
        .map(|k| (k / 3, k + 1, if k % 3 == 2 { 8 } else { 16 }))
        .collect();
    assert_eq!(rec.steps, want);
    assert_eq!(rec.epochs, vec![(1, 3), (2, 6), (3, 9)]);
    assert_eq!((s.steps, s.ending), (9, Ending::Completed));

    let mut rec = Recorder {
        stop_at: Some(4),
        ..Recorder::default()
    };
    let s = run(&mut rec);
    assert_eq!(
        (s.steps, s.ending, rec.steps.len()),
        (4, Ending::Callback, 4)
    );
}

#[test]
fn a_progress_bar_watches_and_changes_nothing() {
    let (train, val) = (blobs(40, 1), blobs(12, 2));
    let loss = ClassifierLoss::CrossEntropy;
    let run = |with_bar: bool| {
        let (mut m, mut opt) = (model(0), Adam::new(0.01));
        let mut log = HistoryLogger::new(2);
        // 40 examples in batches of 16: 3 steps per epoch.
        let mut bar = TrainProgress::new(3, 3, 0, true);
        let cbs: &mut [&mut dyn Callback] = if with_bar {
            &mut [&mut log, &mut bar]
        } else {
            &mut [&mut log]
        };
        let s = fit(&mut m, &mut opt, &loss, &train, Some(&val), &spec(3), cbs).unwrap();
        (s, log.history, weights(&mut m))
    };
    let (plain, watched) = (run(false), run(true));
    assert_eq!(plain.0.ending, Ending::Completed);
    assert_eq!(plain, watched);
}

#[test]
fn a_malformed_or_truncated_checkpoint_is_a_clear_error() {
    let dir = scratch("malformed");
    let train = blobs(32, 1);
    let path = dir.join("run.safetensors");
    let s = TrainSpec {
        checkpoint: Some(Checkpointing {
            path: path.clone(),
            every: 1,
        }),
        ..spec(1)
    };
    let loss = ClassifierLoss::CrossEntropy;
    let mut m = model(0);
    fit(
        &mut m,
        &mut Adam::new(1e-2),
        &loss,
        &train,
        None,
        &s,
        &mut [],
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let load_n = |p: &std::path::Path, m: &mut Named, n: usize| {
        checkpoint::load(p, m, &mut Adam::new(1e-2), &mut [], n)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let load = |p: &std::path::Path, m: &mut Named| load_n(p, m, 32);
    let fresh = model(5);
    let mut m2 = model(5);
    // Truncated.
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = load(&cut, &mut m2);
    assert!(
        e.contains("cut.safetensors") && e.contains("truncated"),
        "{e}"
    );
    // Not a safetensors file at all.
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage").unwrap();
    assert!(load(&junk, &mut m2).contains("junk.safetensors"));
    // A model file, not a training checkpoint.
    let model_file = dir.join("model.safetensors");
    dlbook::models::checkpoint::save(&mut m, &model_file).unwrap();
    assert!(load(&model_file, &mut m2).contains("dlbook.train"));
    // Another model.
    let mut other = Named::new();
    other.push(
        "fc1",
        Linear::new(8, 4, Init::He, &mut ChaCha8Rng::seed_from_u64(0)),
    );
    let e = load(&path, &mut other);
    assert!(e.contains("fc1.weight"), "{e}");
    // Another training set size.
    let e = load_n(&path, &mut m2, 33);
    assert!(e.contains("33"), "{e}");
    // Nothing was changed by the failed loads.
    let mut fresh = fresh;
    assert_eq!(weights(&mut m2), weights(&mut fresh));
}

/// Records the inputs the loop hands it; no parameters, passes `dy` through.
struct InputRecorder(std::rc::Rc<std::cell::RefCell<Vec<ArrayD<f32>>>>);

impl Module for InputRecorder {
    fn visit_params(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut dlbook::nn::Param)) {
    }
}

impl dlbook::nn::Layer for InputRecorder {
    fn forward(&mut self, x: &ArrayD<f32>, _: dlbook::nn::Mode) -> ArrayD<f32> {
        self.0.borrow_mut().push(x.clone());
        // (B, C, H, W) -> one logit per class: the first three pixels of channel 0.
        let b = x.shape()[0];
        ArrayD::from_shape_fn(ndarray::IxDyn(&[b, 3]), |ix| x[[ix[0], 0, 0, ix[1]]])
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        dy.clone()
    }
}

#[test]
fn the_loop_augments_colour_images_of_any_size() {
    // Three identical channels of 12 x 10 noise: every augmented image must keep its
    // three channels identical (one shift for all), and differ from the original.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (n, h, w) = (6, 12, 10);
    let plane = ndarray::Array3::from_shape_fn((n, h, w), |_| rng.random::<f32>());
    let x = ndarray::Array4::from_shape_fn((n, 3, h, w), |(i, _, r, c)| plane[[i, r, c]]);
    let data = Dataset::classes(x.clone().into_dyn(), vec![0, 1, 2, 0, 1, 2]);
    let seen = std::rc::Rc::new(std::cell::RefCell::new(vec![]));
    let mut model = InputRecorder(seen.clone());
    let shift = dlbook::augment::Shift { max: 3 };
    let spec = TrainSpec {
        n_epochs: 1,
        batch_size: n,
        augment: Some(&shift),
        ..TrainSpec::default()
    };
    fit(
        &mut model,
        &mut Sgd::new(0.1),
        &ClassifierLoss::CrossEntropy,
        &data,
        None,
        &spec,
        &mut [],
    )
    .unwrap();
    let batch = seen.borrow()[0].clone();
    assert_eq!(batch.shape(), &[n, 3, h, w]);
    for img in batch.outer_iter() {
        assert_eq!(
            img.index_axis(ndarray::Axis(0), 0),
            img.index_axis(ndarray::Axis(0), 1)
        );
        assert_eq!(
            img.index_axis(ndarray::Axis(0), 0),
            img.index_axis(ndarray::Axis(0), 2)
        );
    }
    // Shifts fill with zeros, so a shifted image equals none of the originals.
    let shifted = batch
        .outer_iter()
        .filter(|img| {
            let c0 = img.index_axis(ndarray::Axis(0), 0);
            plane.outer_iter().all(|orig| orig.into_dyn() != c0)
        })
        .count();
    assert!(shifted > 0, "no image of the batch was shifted");
}
