//! Chapter 4, feature maps and learned filters: the seed CNN trained briefly on MNIST,
//! its activations and filters, and the frozen-filter ablation, re-run at their quick
//! sizes.

use std::sync::OnceLock;

use dlbook::data::DataDir;
use dlbook::experiments::cnn_features as features;
use dlbook::experiments::{self, Preset as _};
use dlbook::models::mnist_cnn::{mnist_cnn, CnnConfig};
use dlbook::nn::freeze::freeze;
use dlbook::nn::loss::softmax_cross_entropy;
use dlbook::nn::{Layer, Mode, Module};
use dlbook::optim::{Adam, Optimizer};
use dlbook::report::Report;
use ndarray::ArrayD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn features_report() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        experiments::quick("cnn_features", &DataDir::resolve(None))
            .cloned()
            .expect("the quick run")
    })
}

fn frozen_report() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        experiments::quick("frozen_filters", &DataDir::resolve(None))
            .cloned()
            .expect("the quick run")
    })
}

fn fact(r: &Report, name: &str) -> f64 {
    r.get_fact(name)
        .unwrap_or_else(|| panic!("the report has no fact {name}"))
}

#[test]
fn a_briefly_trained_seed_cnn_clears_90_percent() {
    let acc = fact(features_report(), "test_acc");
    assert!(acc > 0.90, "test accuracy {acc}");
}

#[test]
fn training_turns_on_first_layer_units() {
    let r = features_report();
    let (init, trained) = (fact(r, "zero_relu1_init"), fact(r, "zero_relu1"));
    assert!(
        trained < init,
        "zeros after relu1: {init} at init, {trained} trained"
    );
}

#[test]
fn most_conv2_activations_are_zero_after_relu() {
    let r = features_report();
    for name in ["zero_relu2_init", "zero_relu2"] {
        let z = fact(r, name);
        assert!(z > 0.5, "{name} = {z}");
    }
}

#[test]
fn trained_filters_moved_and_conv2_moved_further_than_conv1() {
    let r = features_report();
    let (c1, c2) = (fact(r, "change_conv1"), fact(r, "change_conv2"));
    assert!(c1 > 0.02, "conv1 moved by {c1}");
    assert!(c2 > c1, "conv2 moved by {c2}, conv1 by {c1}");
}

#[test]
fn feature_figures_show_every_filter_and_the_chosen_maps() {
    let r = features_report();
    let cfg = features::Config::quick();
    let names: Vec<&str> = r.figures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["filters", "maps_conv1", "maps_conv2"]);
    for f in &r.figures {
        if let dlbook::report::Plot::Images { images, .. } = &f.plot {
            let want = match f.name.as_str() {
                "filters" => 2 * 32,
                _ => cfg.digits.len() * (1 + cfg.n_maps),
            };
            assert_eq!(images.len(), want, "{}", f.name);
        } else {
            panic!("{} is not an image grid", f.name);
        }
    }
}

#[test]
fn frozen_random_filters_already_clear_80_percent() {
    let r = frozen_report();
    let all_frozen = fact(r, "acc_2");
    assert!(all_frozen > 0.80, "both convolutions frozen: {all_frozen}");
}

// ANCHOR: frozen_stays
/// One Adam step on a random batch with both convolutions frozen: (did the conv2
/// output change, did the fc1 output change, trainable parameters).
fn one_step_with_frozen_convs() -> (bool, bool, usize) {
    let mut model = mnist_cnn(&CnnConfig::default(), 0);
    freeze(&mut model, &["conv1", "conv2"]);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = ArrayD::from_shape_fn(vec![8, 784], |_| rng.random_range(0.0f32..1.0));
    let y: Vec<usize> = (0..8).collect();
    let before = [
        model.layer_output(&x, "conv2"),
        model.layer_output(&x, "fc1"),
    ];
    let mut opt = Adam::new(1e-2);
    model.zero_grad();
    let logits = model.forward(&x, Mode::Train);
    let (_, dlogits) = softmax_cross_entropy(&logits, &y);
    model.backward(&dlogits);
    opt.step(&mut model);
    let after = [
        model.layer_output(&x, "conv2"),
        model.layer_output(&x, "fc1"),
    ];
    (
        before[0] != after[0],
        before[1] != after[1],
        model.n_params(),
    )
}
// ANCHOR_END: frozen_stays

#[test]
fn frozen_layers_do_not_learn_and_the_rest_does() {
    let (conv_moved, fc_moved, n) = one_step_with_frozen_convs();
    assert!(!conv_moved && fc_moved);
    let full = mnist_cnn(&CnnConfig::default(), 0).n_params();
    let conv = (32 * 9 + 32) + (64 * 32 * 9 + 64);
    assert_eq!(n, full - conv);
}
