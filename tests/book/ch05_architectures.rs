//! Chapter 5.1, architectures: batch norm over feature maps and the basic block checked
//! three ways (manual backward, finite differences, candle autograd in `F64`) over 3
//! seeds; LeNet-5, the small VGG and the small ResNet as built; the parameter and
//! multiply-add counter against hand counts and `n_params`; and the residual vs plain
//! experiment at its quick size.
//!
//! Tolerances as in chapter 4: manual (`f32`) vs candle (`F64`) within `1e-5`; anything
//! involving `f32` finite differences (step `1e-2`) within `1e-3`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use dlbook::cnn::{BatchNorm2d, Conv2d};
use dlbook::data::DataDir;
use dlbook::experiments::architectures as arch;
use dlbook::experiments::{self, Experiment as _, Preset as _};
use dlbook::models::candle_blocks;
use dlbook::models::count::{
    alexnet_spec, count, lenet5_spec, mnist_cnn_spec, totals, LayerCount, Spec,
    ALEXNET_PUBLISHED_PARAMS,
};
use dlbook::models::lenet::lenet5;
use dlbook::models::resnet::{resnet, BasicBlock, ResNetConfig};
use dlbook::models::vgg::{small_vgg, vgg_block};
use dlbook::models::{mnist_cnn, CnnConfig, Downsample};
use dlbook::nn::gradcheck::{manual_grads, max_rel_error, numeric_grads};
use dlbook::nn::{Activation, Layer, Mode, Module, Param};
use dlbook::report::{Report, Value};
use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Finite-difference step for the `f32` layers.
const H: f32 = 1e-2;

/// The step for whole blocks: batch norm over the few pixels of a small test batch is
/// strongly curved, so the truncation error of `1e-2` (which grows as $h^2$) reaches
/// `1e-3`; `2e-3` balances it against the `f32` rounding error (which grows as $1/h$).
const H_BLOCK: f32 = 2e-3;

fn randn(shape: &[usize], rng: &mut ChaCha8Rng) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(shape), |_| StandardNormal.sample(rng))
}

/// `gamma` and `beta` of every batch norm away from 1 and 0, so a bug that ignores
/// them shows.
fn perturb_norms(layer: &mut dyn Layer, rng: &mut ChaCha8Rng) {
    layer.visit_params("", &mut |name, p| {
        if name.ends_with("gamma") || name.ends_with("beta") {
            let noise = randn(p.value.shape(), rng) * 0.3;
            p.value += &noise;
        }
    });
}

/// A layer that always runs its inner layer in evaluation mode (so the gradient-check
/// helpers, which call `forward` in training mode, check the evaluation pass).
struct EvalMode<L: Layer>(L);

impl<L: Layer> Module for EvalMode<L> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.0.visit_params(prefix, f);
    }
}

impl<L: Layer> Layer for EvalMode<L> {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        self.0.forward(x, Mode::Eval)
    }
    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.0.backward(dy)
    }
}

fn assert_three_ways(who: &str, (a, b, c): (f64, f64, f64)) {
    eprintln!("{who}: manual-fd {a:e}, manual-candle {b:e}, fd-candle {c:e}");
    assert!(b < 1e-5, "{who}: manual vs candle {b:e}");
    assert!(a < 1e-3, "{who}: manual vs finite differences {a:e}");
    assert!(c < 1e-3, "{who}: finite differences vs candle {c:e}");
}

// ---------------------------------------------------------------------------------------
// Batch norm over feature maps

// ANCHOR: bn2d_three_ways
/// Per seed (3 seeds), the three-way errors `(manual vs finite differences, manual vs
/// candle, finite differences vs candle)` of [`BatchNorm2d`]'s gradients (input,
/// `gamma`, `beta`) on a `(3, 4, 5, 5)` batch, in training or evaluation mode (after
/// five training batches have set the running statistics).
fn batchnorm2d_three_ways(mode: Mode) -> Vec<(f64, f64, f64)> {
    (0..3)
        .map(|seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(3000 + seed);
            let mut bn = BatchNorm2d::new(4);
            perturb_norms(&mut bn, &mut rng);
            for _ in 0..5 {
                bn.forward(&(randn(&[3, 4, 5, 5], &mut rng) * 2.0 + 1.0), Mode::Train);
            }
            let x = randn(&[3, 4, 5, 5], &mut rng) * 2.0 + 1.0;
            let r = randn(&[3, 4, 5, 5], &mut rng);
            let candle = candle_blocks::batchnorm2d_grads(&mut bn, &x, &r, mode).unwrap();
            let (manual, numeric) = match mode {
                Mode::Train => (
                    manual_grads(&mut bn, &x, &r),
                    numeric_grads(&mut bn, &x, &r, H),
                ),
                Mode::Eval => {
                    let mut eval = EvalMode(bn);
                    (
                        manual_grads(&mut eval, &x, &r),
                        numeric_grads(&mut eval, &x, &r, H),
                    )
                }
            };
            (
                max_rel_error(&manual, &numeric),
                max_rel_error(&manual, &candle),
                max_rel_error(&numeric, &candle),
            )
        })
        .collect()
}
// ANCHOR_END: bn2d_three_ways

#[test]
fn batchnorm2d_gradients_agree_three_ways_in_training() {
    for (seed, e) in batchnorm2d_three_ways(Mode::Train).into_iter().enumerate() {
        assert_three_ways(&format!("BatchNorm2d (train), seed {seed}"), e);
    }
}

#[test]
fn batchnorm2d_gradients_agree_three_ways_in_evaluation() {
    for (seed, e) in batchnorm2d_three_ways(Mode::Eval).into_iter().enumerate() {
        assert_three_ways(&format!("BatchNorm2d (eval), seed {seed}"), e);
    }
}

// ---------------------------------------------------------------------------------------
// The basic block

/// The three kinds of block the checks cover.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Identity shortcut, 3 -> 3 channels, stride 1.
    Identity,
    /// Projection shortcut, 3 -> 4 channels, stride 2.
    Projection,
    /// No shortcut, 3 -> 4 channels, stride 2.
    Plain,
}

fn block(kind: Kind, act: Activation, rng: &mut ChaCha8Rng) -> BasicBlock {
    let b = match kind {
        Kind::Identity => BasicBlock::residual(3, 3, 1, rng),
        Kind::Projection => BasicBlock::residual(3, 4, 2, rng),
        Kind::Plain => BasicBlock::plain(3, 4, 2, rng),
    };
    b.with_activation(act)
}

// ANCHOR: block_three_ways
/// Per seed (3 seeds), the three-way errors of a basic block's gradients (input and
/// every parameter) on a `(2, 3, 8, 8)` batch in training mode. With `act = Tanh` the
/// function is smooth; with ReLU, finite differences would cross its kinks, so the
/// caller compares only manual and candle.
fn block_three_ways(kind: Kind, act: Activation) -> Vec<(f64, f64, f64)> {
    (0..3)
        .map(|seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(4000 + seed);
            let mut b = block(kind, act, &mut rng);
            perturb_norms(&mut b, &mut rng);
            let x = randn(&[2, 3, 8, 8], &mut rng);
            let y = b.forward(&x, Mode::Train);
            let r = randn(y.shape(), &mut rng);
            let manual = manual_grads(&mut b, &x, &r);
            let candle = candle_blocks::basic_block_grads(&mut b, &x, &r).unwrap();
            let numeric = match act {
                Activation::Relu => manual.clone(), // not compared
                _ => numeric_grads(&mut b, &x, &r, H_BLOCK),
            };
            (
                max_rel_error(&manual, &numeric),
                max_rel_error(&manual, &candle),
                max_rel_error(&numeric, &candle),
            )
        })
        .collect()
}
// ANCHOR_END: block_three_ways

#[test]
fn basic_block_gradients_agree_three_ways() {
    for kind in [Kind::Identity, Kind::Projection, Kind::Plain] {
        for (seed, e) in block_three_ways(kind, Activation::Tanh)
            .into_iter()
            .enumerate()
        {
            assert_three_ways(&format!("{kind:?} block (tanh), seed {seed}"), e);
        }
    }
}

#[test]
fn basic_block_with_relu_matches_candle() {
    for kind in [Kind::Identity, Kind::Projection, Kind::Plain] {
        for (seed, (_, b, _)) in block_three_ways(kind, Activation::Relu)
            .into_iter()
            .enumerate()
        {
            eprintln!("{kind:?} block (ReLU), seed {seed}: manual-candle {b:e}");
            assert!(b < 1e-5, "{kind:?} block, seed {seed}: {b:e}");
        }
    }
}

// ANCHOR: silent_branch
/// A block whose branch is switched off ($\gamma_2 = \beta_2 = 0$, so $F(x) = 0$), on a
/// batch `x` and output gradient `dy` of ones: the residual block's input gradient and
/// output, and the plain block's input gradient.
fn silent_branch() -> (ArrayD<f32>, ArrayD<f32>, ArrayD<f32>, ArrayD<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = randn(&[2, 3, 5, 5], &mut rng);
    let dy = ArrayD::ones(x.raw_dim());
    let mut dxs = vec![];
    let mut y_res = ArrayD::zeros(x.raw_dim());
    for residual in [true, false] {
        let mut b = if residual {
            BasicBlock::residual(3, 3, 1, &mut rng)
        } else {
            BasicBlock::plain(3, 3, 1, &mut rng)
        };
        b.bn2.inner.gamma.value.fill(0.0);
        b.bn2.inner.beta.value.fill(0.0);
        let y = b.forward(&x, Mode::Train);
        if residual {
            y_res = y;
        }
        dxs.push(b.backward(&dy));
    }
    let plain = dxs.pop().unwrap();
    (x, y_res, dxs.pop().unwrap(), plain)
}
// ANCHOR_END: silent_branch

#[test]
fn a_silent_branch_leaves_the_identity_path() {
    let (x, y, dx_res, dx_plain) = silent_branch();
    assert_eq!(y, x.mapv(|v| v.max(0.0)), "the block is ReLU(x)");
    let want = x.mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
    assert_eq!(dx_res, want, "dL/dx = dL/dy [x > 0]");
    assert!(
        dx_plain.iter().all(|&g| g == 0.0),
        "the plain block passes nothing"
    );
}

#[test]
fn block_parameters_have_the_pytorch_names() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let names = |b: &mut BasicBlock| {
        let mut v = vec![];
        b.visit_params("", &mut |n, p| v.push((n.to_string(), p.value.len())));
        v
    };
    let got = names(&mut BasicBlock::residual(8, 16, 2, &mut rng));
    let want = [
        ("conv1.weight", 16 * 8 * 9),
        ("bn1.gamma", 16),
        ("bn1.beta", 16),
        ("conv2.weight", 16 * 16 * 9),
        ("bn2.gamma", 16),
        ("bn2.beta", 16),
        ("shortcut.conv.weight", 16 * 8),
        ("shortcut.bn.gamma", 16),
        ("shortcut.bn.beta", 16),
    ];
    let want: Vec<(String, usize)> = want.iter().map(|&(n, s)| (n.into(), s)).collect();
    assert_eq!(got, want);
    let identity = names(&mut BasicBlock::residual(8, 8, 1, &mut rng));
    assert_eq!(identity.len(), 6, "an identity shortcut has no parameters");
    assert!(!BasicBlock::plain(8, 16, 2, &mut rng).is_residual());
}

#[test]
fn blocks_keep_or_halve_the_feature_maps() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = randn(&[2, 8, 7, 7], &mut rng);
    let y = BasicBlock::residual(8, 8, 1, &mut rng).forward(&x, Mode::Train);
    assert_eq!(y.shape(), [2, 8, 7, 7]);
    let y = BasicBlock::residual(8, 16, 2, &mut rng).forward(&x, Mode::Train);
    assert_eq!(y.shape(), [2, 16, 4, 4]);
}

#[test]
#[should_panic(
    expected = "Conv2d::forward: expected input (n, 8, h, w), got [2, 4, 7, 7]"
)]
fn a_block_on_the_wrong_channels_panics_naming_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = randn(&[2, 4, 7, 7], &mut rng);
    BasicBlock::residual(8, 8, 1, &mut rng).forward(&x, Mode::Train);
}

// ANCHOR: resnet_vs_candle
/// Per seed (3 seeds), the largest relative error between the manual gradients of the
/// whole small ResNet (input and all its parameters, training mode, a batch of 4
/// MNIST-sized inputs) and candle's. Through the whole `f32` network, with batch norm
/// dividing by batch deviations at every layer, the rounding adds up past the `1e-5`
/// allowed for a single block; the tolerance is `1e-4`.
fn resnet_vs_candle() -> Vec<f64> {
    (0..3)
        .map(|seed| {
            let cfg = ResNetConfig::small();
            let mut net = resnet(&cfg, 6000 + seed);
            let mut rng = ChaCha8Rng::seed_from_u64(6100 + seed);
            perturb_norms(&mut net, &mut rng);
            let x = randn(&[4, 784], &mut rng);
            let r = randn(&[4, 10], &mut rng);
            let manual = manual_grads(&mut net, &x, &r);
            let candle = candle_blocks::resnet_grads(&cfg, &mut net, &x, &r).unwrap();
            max_rel_error(&manual, &candle)
        })
        .collect()
}
// ANCHOR_END: resnet_vs_candle

#[test]
fn the_whole_small_resnet_matches_candle() {
    for (seed, e) in resnet_vs_candle().into_iter().enumerate() {
        eprintln!("small ResNet, seed {seed}: manual-candle {e:e}");
        assert!(e < 1e-4, "seed {seed}: {e:e}");
    }
}

// ---------------------------------------------------------------------------------------
// The architectures

#[test]
fn every_architecture_maps_mnist_rows_to_ten_logits_and_back() {
    let x = ArrayD::from_shape_fn(vec![3, 784], |i| (i[1] % 13) as f32 / 13.0);
    let nets: Vec<(&str, dlbook::nn::Named)> = vec![
        ("LeNet-5", lenet5(0)),
        ("small VGG", small_vgg(0)),
        ("small ResNet", resnet(&ResNetConfig::small(), 0)),
    ];
    for (name, mut net) in nets {
        let y = net.forward(&x, Mode::Train);
        assert_eq!(y.shape(), [3, 10], "{name}");
        let dx = net.backward(&ArrayD::ones(vec![3, 10]));
        assert_eq!(dx.shape(), [3, 784], "{name}");
        let mut without = vec![];
        net.visit_params("", &mut |n, p| {
            if p.grad.iter().all(|&g| g == 0.0) {
                without.push(n.to_string());
            }
        });
        assert!(
            without.is_empty(),
            "{name}: no gradient reached {without:?}"
        );
    }
}

/// The layer counts of the four MNIST networks, from their descriptions and as built:
/// `(name, counted, built)`.
pub fn described_vs_built() -> Vec<(&'static str, usize, usize)> {
    arch::architectures()
        .into_iter()
        .filter_map(|mut a| {
            let (p, _) = totals(&count(a.input, &a.spec));
            a.built.as_mut().map(|n| (a.name, p, n.n_params()))
        })
        .collect()
}

#[test]
fn described_parameter_counts_equal_the_built_networks() {
    let rows = described_vs_built();
    assert_eq!(rows.len(), 4);
    for (name, counted, built) in rows {
        assert_eq!(counted, built, "{name}");
    }
}

#[test]
fn mnist_cnn_descriptions_count_every_variant_as_built() {
    let seed = CnnConfig::default();
    let variants = [
        seed,
        CnnConfig {
            dropout: 0.0,
            ..seed
        },
        CnnConfig {
            downsample: Downsample::StridedConv,
            ..seed
        },
        CnnConfig { n_conv: 1, ..seed },
        CnnConfig {
            batch_norm: true,
            ..seed
        },
    ];
    for config in variants {
        let counted = totals(&count((1, 28, 28), &mnist_cnn_spec(&config))).0;
        assert_eq!(
            counted,
            mnist_cnn(&config, 0).n_params(),
            "{}",
            config.name()
        );
    }
}

#[test]
fn lenet5_has_61706_parameters() {
    // conv1 6*25 + 6, conv2 16*6*25 + 16, fc1 400*120 + 120, fc2 120*84 + 84,
    // fc3 84*10 + 10
    let want = 156 + 2416 + 48_120 + 10_164 + 850;
    assert_eq!(lenet5(0).n_params(), want);
    assert_eq!(totals(&count((1, 28, 28), &lenet5_spec())).0, want);
}

// ANCHOR: hand_count
/// A case counted by hand: a 3x3 convolution `2 -> 4` with padding 1 and stride 2 on a
/// 2x7x7 input (output 4x4x4: 64 outputs, each 2 * 9 = 18 multiply-adds), then flatten
/// and a dense layer 64 -> 10. Returns the description's per-layer counts.
fn hand_count() -> Vec<LayerCount> {
    let layers = vec![
        ("conv".to_string(), Spec::conv(4, 3, 2, 1)),
        ("flatten".to_string(), Spec::Flatten),
        ("fc".to_string(), Spec::Linear { d_out: 10 }),
    ];
    count((2, 7, 7), &layers)
}
// ANCHOR_END: hand_count

#[test]
fn the_counter_matches_a_hand_count() {
    let c = hand_count();
    assert_eq!(c[0].out, (4, 4, 4));
    assert_eq!((c[0].params, c[0].macs), (4 * 18 + 4, 64 * 18));
    assert_eq!(c[1].out, (64, 1, 1));
    assert_eq!((c[2].params, c[2].macs), (64 * 10 + 10, 640));
    assert_eq!(totals(&c), (76 + 650, 1152 + 640));
    // LeNet-5's first layer: 6 maps of 28x28, 25 multiply-adds each.
    let lenet = count((1, 28, 28), &lenet5_spec());
    assert_eq!(lenet[0].macs, 6 * 28 * 28 * 25);
}

#[test]
#[should_panic(expected = "count: fc is a dense layer on an unflattened (16, 5, 5)")]
fn a_dense_layer_on_a_map_panics_naming_the_shape() {
    let layers = vec![
        ("conv".to_string(), Spec::conv(16, 3, 1, 1)),
        ("fc".to_string(), Spec::Linear { d_out: 10 }),
    ];
    count((1, 5, 5), &layers);
}

/// AlexNet's totals from its description: `(parameters, multiply-adds, share of the
/// parameters in the dense layers, share of the multiply-adds in the convolutions)`.
pub fn alexnet_counts() -> (usize, usize, f64, f64) {
    let c = count((3, 224, 224), &alexnet_spec());
    let (p, m) = totals(&c);
    let conv = |f: fn(&LayerCount) -> usize| -> usize {
        c.iter().filter(|l| l.name.starts_with("conv")).map(f).sum()
    };
    let (cp, cm) = (conv(|l| l.params), conv(|l| l.macs));
    (p, m, 1.0 - cp as f64 / p as f64, cm as f64 / m as f64)
}

#[test]
fn alexnet_has_the_published_sixty_million_parameters() {
    let (p, _, _, _) = alexnet_counts();
    let rel = (p as f64 - ALEXNET_PUBLISHED_PARAMS).abs() / ALEXNET_PUBLISHED_PARAMS;
    eprintln!("AlexNet: {p} parameters, {:.2} % from 60 M", 100.0 * rel);
    assert!(rel < 0.02, "{p}");
    let c = count((3, 224, 224), &alexnet_spec());
    assert_eq!(c[8].out, (256 * 6 * 6, 1, 1), "pool5 is 256 x 6 x 6");
}

#[test]
fn alexnet_weights_live_in_the_dense_layers_and_compute_in_the_convolutions() {
    let (_, m, fc_params, conv_macs) = alexnet_counts();
    eprintln!("AlexNet: {m} multiply-adds, dense {fc_params:.3} of params, conv {conv_macs:.3} of MACs");
    assert!(fc_params > 0.9, "{fc_params}");
    assert!(conv_macs > 0.9, "{conv_macs}");
}

// ANCHOR: two_3x3
/// The receptive field of two stacked 3x3 convolutions (side of the input region that
/// reaches one output, measured by backpropagating from the centre output of a 1 -> C
/// -> C stack with positive weights), and the weights of that stack and of one 5x5
/// convolution, for `C = 8` channels (biases not counted).
pub fn two_3x3_vs_one_5x5() -> (usize, usize, usize) {
    let c = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut stack = vgg_block(1, c, 2, &mut rng);
    stack.layers.pop(); // no pooling: just the two convolutions and their ReLUs
    stack.visit_params("", &mut |_, p| p.value.mapv_inplace(|v| v.abs() + 0.1));
    let x = ArrayD::ones(IxDyn(&[1, 1, 11, 11]));
    let y = stack.forward(&x, Mode::Eval);
    let mut dy = ArrayD::zeros(y.raw_dim());
    dy[[0, 0, 5, 5]] = 1.0;
    let dx = stack.backward(&dy);
    let rows = (0..11).filter(|&i| (0..11).any(|j| dx[[0, 0, i, j]] != 0.0));
    let field = rows.count();
    let w5 = Conv2d::new(c, c, (5, 5), 1, 2, &mut rng).weight.value.len();
    (field, 2 * c * c * 9, w5)
}
// ANCHOR_END: two_3x3

#[test]
fn two_3x3_convolutions_see_5x5_with_fewer_weights() {
    let (field, two, one) = two_3x3_vs_one_5x5();
    assert_eq!(field, 5);
    assert!(two < one, "{two} vs {one}");
    assert_eq!((two, one), (18 * 64, 25 * 64));
}

fn stored(name: &str) -> Report {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("chapters/generated/ch05")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e} (run `dlbook regen {name}`)", path.display())
    });
    Report::from_json(&text).expect("a valid report")
}

#[test]
fn the_generated_architecture_table_is_current() {
    let fresh =
        arch::Architectures::report(&arch::Config::full(), &DataDir::resolve(None))
            .unwrap()
            .rounded();
    assert_eq!(fresh.table("architectures").unwrap().rows.len(), 5);
    let stored = Report {
        quick_fingerprint: None,
        ..stored("architectures")
    };
    assert_eq!(stored, fresh);
}

#[test]
fn the_small_resnet_has_fewer_parameters_than_lenet() {
    let lenet_dense: usize = count((1, 28, 28), &lenet5_spec())
        .iter()
        .filter(|l| l.name.starts_with("fc"))
        .map(|l| l.params)
        .sum();
    let small = resnet(&ResNetConfig::small(), 0).n_params();
    assert!(small < lenet_dense, "{small} vs {lenet_dense}");
}

// ---------------------------------------------------------------------------------------
// Residual vs plain, quick size

fn report() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| {
        experiments::quick("residual_vs_plain", &DataDir::resolve(None))
            .cloned()
            .expect("the experiment runs")
    })
}

fn facts(r: &Report, prefix: &str) -> BTreeMap<String, f64> {
    r.facts
        .keys()
        .filter(|k| k.starts_with(prefix))
        .map(|k| (k.clone(), r.get_fact(k).unwrap()))
        .collect()
}

/// How much the first-layer gradient at initialization grows from `from` to `to`
/// blocks: `(plain, residual)` ratios of the seed means.
fn gradient_growth(r: &Report, from: usize, to: usize) -> (f64, f64) {
    let g = |k: &str| r.get_fact(k).unwrap_or_else(|| panic!("no fact {k}"));
    (
        g(&format!("grad_plain_{to}")) / g(&format!("grad_plain_{from}")),
        g(&format!("grad_res_{to}")) / g(&format!("grad_res_{from}")),
    )
}

#[test]
fn the_plain_first_layer_gradient_grows_faster_with_depth() {
    let r = report();
    println!("{}", r.to_markdown());
    println!("{:?}", facts(r, "grad"));
    let (plain, res) = gradient_growth(r, 1, 8);
    assert!(
        plain > res,
        "growth from 3 to 17 layers: plain {plain}, residual {res}"
    );
    assert!(plain > 2.0, "plain {plain}");
}

#[test]
fn the_quick_run_trains_all_three_networks_for_three_seeds() {
    let r = report();
    assert_eq!(r.seeds.len(), 3);
    let t = r.table("training").expect("the table");
    assert_eq!(t.rows.len(), 3);
    for (k, v) in facts(r, "loss") {
        assert!(v.is_finite() && v > 0.0, "{k} = {v}");
    }
}

/// The committed full run, after checking that it was made with today's full
/// configuration.
fn full_run() -> Report {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    dlbook::experiments::committed(root, "residual_vs_plain").unwrap()
}

#[test]
fn in_the_full_run_the_deep_plain_gradient_explodes() {
    let r = full_run();
    let (plain, res) = gradient_growth(&r, 1, 16);
    println!("growth from 3 to 33 layers: plain {plain}, residual {res}");
    assert!(plain > 10.0 * res, "plain {plain} vs residual {res}");
}

/// The per-seed values of a fact.
fn seeds(r: &Report, name: &str) -> Vec<f64> {
    match &r
        .facts
        .get(name)
        .unwrap_or_else(|| panic!("no fact {name}"))
        .value
    {
        Value::Seeds(v) => v.clone(),
        other => panic!("{name}: not per seed: {other:?}"),
    }
}

#[test]
fn in_the_full_run_the_residual_network_has_the_lowest_training_loss_on_every_seed() {
    let r = full_run();
    let (shallow, plain) = (seeds(&r, "loss_0"), seeds(&r, "loss_1"));
    let res = seeds(&r, "loss_2");
    for (s, q) in res.iter().enumerate() {
        assert!(
            *q < plain[s] && *q < shallow[s],
            "seed {s}: residual {q} vs plain {} and shallow {}",
            plain[s],
            shallow[s]
        );
    }
}

#[test]
fn in_the_full_run_the_deeper_plain_network_degrades() {
    let r = full_run();
    let (shallow, deep) = (seeds(&r, "loss_0"), seeds(&r, "loss_1"));
    for (s, (a, b)) in shallow.iter().zip(&deep).enumerate() {
        assert!(b > a, "seed {s}: deep plain {b} vs shallow plain {a}");
    }
    let acc = |k: &str| r.get_fact(k).unwrap();
    assert!(
        acc("acc_1") < acc("acc_0"),
        "{} vs {}",
        acc("acc_1"),
        acc("acc_0")
    );
}

#[test]
fn in_the_full_run_the_residual_network_is_the_most_accurate() {
    let r = full_run();
    let acc = |k: &str| r.get_fact(k).unwrap();
    for other in ["acc_0", "acc_1"] {
        assert!(
            acc("acc_2") > acc(other),
            "residual {} vs {other} {}",
            acc("acc_2"),
            acc(other)
        );
    }
}
