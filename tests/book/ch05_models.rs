//! Chapter 5: the seed model and its variants are the networks the text describes.

use dlbook::models::{mnist_cnn, CnnConfig, Downsample};
use dlbook::nn::{Layer, Mode, Module};
use ndarray::ArrayD;

/// Parameter names and sizes of the seed model, in visiting order.
pub fn seed_model_parameters() -> Vec<(String, usize)> {
    let mut net = mnist_cnn(&CnnConfig::default(), 0);
    let mut out = Vec::new();
    net.visit_params("", &mut |name, p| {
        out.push((name.to_string(), p.value.len()))
    });
    out
}

#[test]
fn seed_model_has_the_layers_and_parameter_count_of_the_text() {
    let params = seed_model_parameters();
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias"
        ]
    );
    // conv1 32*1*9 + 32, conv2 64*32*9 + 64, fc1 1600*128 + 128, fc2 128*10 + 10
    let sizes: Vec<usize> = params.iter().map(|(_, s)| *s).collect();
    assert_eq!(sizes, [288, 32, 18432, 64, 204800, 128, 1280, 10]);
    assert_eq!(sizes.iter().sum::<usize>(), 225_034);
}

#[test]
fn every_variant_maps_mnist_rows_to_ten_logits_and_back() {
    let variants = [
        CnnConfig::default(),
        CnnConfig {
            dropout: 0.0,
            ..CnnConfig::default()
        },
        CnnConfig {
            downsample: Downsample::StridedConv,
            ..CnnConfig::default()
        },
        CnnConfig {
            n_conv: 1,
            ..CnnConfig::default()
        },
        CnnConfig {
            batch_norm: true,
            ..CnnConfig::default()
        },
    ];
    let x = ArrayD::from_shape_fn(vec![3, 784], |i| (i[1] % 17) as f32 / 17.0);
    for cfg in variants {
        let mut net = mnist_cnn(&cfg, 1);
        let y = net.forward(&x, Mode::Train);
        assert_eq!(y.shape(), [3, 10], "{}", cfg.name());
        assert!(y.iter().all(|v| v.is_finite()), "{}", cfg.name());
        let dx = net.backward(&ArrayD::ones(vec![3, 10]));
        assert_eq!(dx.shape(), [3, 784], "{}", cfg.name());
        let mut grads = 0.0f32;
        net.visit_params("", &mut |_, p| {
            grads += p.grad.iter().map(|g| g.abs()).sum::<f32>()
        });
        assert!(
            grads > 0.0,
            "{}: no gradient reached the parameters",
            cfg.name()
        );
    }
}
