//! Section 5.3, making it fast: the `dlbook bench` harness. Timings are never asserted
//! here; these tests check that the command runs and writes a well-formed report, that
//! the FLOP count matches the layers' shapes, and that the peak kernel does its work.

use std::path::PathBuf;

use dlbook::bench::{self, peak};
use dlbook::nn::Mode;
use dlbook::report::{Report, Value};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn scratch(name: &str) -> PathBuf {
    let d =
        std::env::temp_dir().join(format!("dlbook-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn bench_quick_writes_a_well_formed_report() {
    let out = scratch("bench");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_dlbook"))
        .args(["bench", "--quick", "--runs", "2", "--out"])
        .arg(&out)
        .status()
        .expect("runs dlbook");
    assert!(status.success(), "dlbook bench --quick failed");
    let (report, problems) = Report::check_dir(&out, "throughput").unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    for name in ["throughput", "compute", "profile", "flops"] {
        let t = report
            .table(name)
            .unwrap_or_else(|| panic!("no table {name}"));
        assert!(!t.rows.is_empty(), "table {name} is empty");
        for row in &t.rows {
            assert_eq!(row.len(), t.columns.len(), "table {name}: ragged row");
            for v in row {
                if let Value::Num(x) = v {
                    assert!(x.is_finite() && *x >= 0.0, "table {name}: {x} in {row:?}");
                }
            }
        }
    }
    // Median, min and max are ordered in every summary row.
    for name in ["throughput", "compute"] {
        for row in &report.table(name).unwrap().rows {
            let n = |i: usize| match &row[i] {
                Value::Num(x) => *x,
                v => panic!("not a number: {v:?}"),
            };
            assert!(n(2) <= n(1) && n(1) <= n(3), "{row:?}");
            assert!(n(1) > 0.0, "{row:?}");
        }
    }
    let profile = report.table("profile").unwrap();
    let layers: Vec<String> = profile
        .rows
        .iter()
        .map(|r| match &r[0] {
            Value::Text(s) => s.clone(),
            v => panic!("{v:?}"),
        })
        .collect();
    assert!(layers.iter().any(|l| l == "conv1"));
    assert!(layers.iter().any(|l| l == "adam"));
    assert!(report.get_fact("load_before").is_some());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn flop_count_matches_the_layer_shapes() {
    // Multiply-adds read off the layers' outputs: each output of a convolution takes
    // c_in kh kw of them, each output of a linear layer d_in.
    let mut model = bench::seed_cnn(0);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (mut h, _) = bench::synthetic_batch(1, &mut rng);
    let mut outputs = vec![];
    for (name, layer) in model.layers.iter_mut() {
        h = layer.forward(&h, Mode::Eval);
        outputs.push((name.clone(), h.len()));
    }
    let per_output = [("conv1", 9), ("conv2", 32 * 9), ("fc1", 1600), ("fc2", 128)];
    let macs = bench::seed_cnn_macs();
    assert_eq!(macs.len(), per_output.len());
    for (name, k) in per_output {
        let n = outputs.iter().find(|(n, _)| *n == name).unwrap().1;
        let m = macs.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(m, (n * k) as u64, "{name}");
    }
    let total: u64 = macs.iter().map(|(_, m)| m).sum();
    assert_eq!(bench::train_flops_per_image(), 6.0 * total as f64);
}

#[test]
fn fma_kernel_does_every_iteration() {
    // From 0, acc <- 0.999 acc + 0.001 holds 1 - 0.999^k after k rounds: the sum over
    // the lanes and accumulators tells how many rounds ran.
    let isa = peak::Isa::detect();
    for iters in [0u64, 1, 1000, 5000] {
        let got = peak::fma_kernel(isa, iters) as f64;
        let want = (1.0 - 0.999f64.powi(iters as i32))
            * (isa.lanes() * peak::ACCUMULATORS) as f64;
        assert!(
            (got - want).abs() <= 1e-3 * want.max(1e-3),
            "{iters}: {got} vs {want}"
        );
    }
    assert_eq!(
        peak::kernel_flops(isa, 10),
        2.0 * (isa.lanes() * peak::ACCUMULATORS * 10) as f64
    );
}

/// The parameters after `steps` training steps of the seed CNN on `threads` threads.
fn params_after(threads: usize, steps: usize) -> Vec<(String, Vec<f32>)> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut model = bench::seed_cnn(3);
        let mut opt = dlbook::optim::Adam::new(1e-3);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (x, labels) = bench::synthetic_batch(32, &mut rng);
        for _ in 0..steps {
            bench::train_step(&mut model, &mut opt, &x, &labels);
        }
        let mut out = vec![];
        dlbook::nn::Module::visit_params(&mut model, "", &mut |n, p| {
            out.push((n.to_string(), p.value.iter().copied().collect()));
        });
        out
    })
}

#[test]
fn training_is_bitwise_identical_on_one_and_two_threads() {
    // The parallel layers split work so that every sum is taken in the same order
    // whatever the number of threads: the trained weights agree to the last bit.
    let (one, two) = (params_after(1, 3), params_after(2, 3));
    assert_eq!(one.len(), 8);
    for ((n1, a), (n2, b)) in one.iter().zip(&two) {
        assert_eq!(n1, n2);
        let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{n1} differs between one and two threads");
    }
    // And the steps did change the weights (the check is not vacuous).
    let fresh = params_after(1, 0);
    assert!(fresh.iter().zip(&one).any(|((_, a), (_, b))| a != b));
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn fast_conv_layer_matches_the_direct_loops() {
    use dlbook::cnn::conv::{conv2d_direct, conv2d_direct_backward};
    use dlbook::cnn::Conv2d;
    use dlbook::nn::{Layer, Module};
    use ndarray::{Array4, Ix4};
    use rand::Rng;
    // (batch, c_in, c_out, side, stride, padding): the seed's conv2 with a batch that
    // spans several cache blocks, a padded one and a strided one.
    for (n, ci, co, side, s, p) in
        [(7, 32, 8, 13, 1, 0), (3, 3, 4, 9, 1, 1), (2, 2, 3, 8, 2, 1)]
    {
        let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
        let mut conv = Conv2d::new(ci, co, (3, 3), s, p, &mut rng);
        let x = Array4::from_shape_fn((n, ci, side, side), |_| rng.random::<f32>() - 0.5);
        let y = conv.forward(&x.clone().into_dyn(), Mode::Train);
        let want = conv2d_direct(&x.view(), &conv.w(), &conv.b(), s, p);
        let dy = Array4::from_shape_fn(want.dim(), |_| rng.random::<f32>() - 0.5);
        conv.zero_grad();
        let dx = conv.backward(&dy.clone().into_dyn());
        let (dx0, dw0, db0) =
            conv2d_direct_backward(&x.view(), &conv.w(), &dy.view(), s, p);
        let tol = 1e-4;
        let flat = |a: &ndarray::ArrayD<f32>| a.iter().copied().collect::<Vec<_>>();
        assert_eq!(y.shape(), want.shape());
        assert!(
            max_abs_diff(&flat(&y), want.as_slice().unwrap()) < tol,
            "y, {n} {ci}"
        );
        let dx = dx.into_dimensionality::<Ix4>().unwrap();
        assert!(max_abs_diff(dx.as_slice().unwrap(), dx0.as_slice().unwrap()) < tol);
        let dw = flat(&conv.weight.grad);
        assert!(
            max_abs_diff(&dw, dw0.as_slice().unwrap()) < tol,
            "dw, {n} {ci}"
        );
        assert!(max_abs_diff(&flat(&conv.bias.grad), db0.as_slice().unwrap()) < tol);
    }
}

#[test]
fn fast_max_pool_matches_the_window_maxima() {
    use dlbook::cnn::MaxPool2d;
    use dlbook::nn::Layer;
    use ndarray::{ArrayD, IxDyn};
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    // Values on a coarse grid, so that windows often hold ties.
    let x =
        ArrayD::from_shape_fn(IxDyn(&[2, 3, 6, 7]), |_| rng.random_range(0..4) as f32);
    let mut pool = MaxPool2d::new((2, 2), (2, 2));
    let y = pool.forward(&x, Mode::Train);
    assert_eq!(y.shape(), &[2, 3, 3, 3]);
    let arg = pool.argmax().unwrap().to_vec();
    let mut k = 0;
    for s in 0..2 {
        for c in 0..3 {
            for i in 0..3 {
                for j in 0..3 {
                    // The first maximum of the window in row-major order.
                    let mut best = (f32::NEG_INFINITY, 0);
                    for r in 2 * i..2 * i + 2 {
                        for t in 2 * j..2 * j + 2 {
                            let v = x[[s, c, r, t]];
                            if v > best.0 {
                                best = (v, ((s * 3 + c) * 6 + r) * 7 + t);
                            }
                        }
                    }
                    assert_eq!(y[[s, c, i, j]], best.0);
                    assert_eq!(arg[k], best.1, "window {s} {c} {i} {j}");
                    k += 1;
                }
            }
        }
    }
}

/// Every parameter gradient of `net`, by name.
fn grads(net: &mut dlbook::nn::Named) -> Vec<(String, Vec<f32>)> {
    use dlbook::nn::Module;
    let mut out = vec![];
    net.visit_params("", &mut |name, p| {
        out.push((name.to_string(), p.grad.iter().copied().collect()))
    });
    out
}

/// A real-looking batch for the seed model: MNIST-shaped pixels with exact zeros, so
/// ReLU and max pooling see ties and units at the kink.
fn batch_with_zeros(n: usize) -> (ndarray::ArrayD<f32>, Vec<usize>) {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[n, 784]), |_| {
        if rng.random::<f32>() < 0.6 {
            0.0
        } else {
            rng.random::<f32>()
        }
    });
    let y = (0..n).map(|i| i % 10).collect();
    (x, y)
}

#[test]
fn handing_activations_along_changes_no_bit() {
    use dlbook::nn::{softmax_cross_entropy, Layer, Module};
    let (x, labels) = batch_with_zeros(37);
    // The borrowing path, layer by layer, as chapters 2 to 4 wrote it.
    let mut a = bench::seed_cnn(3);
    let mut h = x.clone();
    for (_, layer) in a.layers.iter_mut() {
        h = layer.forward(&h, Mode::Train);
    }
    let (loss_a, d) = softmax_cross_entropy(&h, &labels);
    let mut da = d.clone();
    for (_, layer) in a.layers.iter_mut().rev() {
        da = layer.backward(&da);
    }
    // The owning path: in-place ReLU, moved caches, and no dx below conv1.
    let mut b = bench::seed_cnn(3);
    let logits = b.forward_owned(x.clone(), Mode::Train);
    let (loss_b, d) = softmax_cross_entropy(&logits, &labels);
    assert_eq!(h, logits, "logits differ");
    assert_eq!(loss_a.to_bits(), loss_b.to_bits());
    b.backward_params(d.clone());
    let (ga, gb) = (grads(&mut a), grads(&mut b));
    assert_eq!(ga.len(), 8);
    for ((name, ga), (_, gb)) in ga.iter().zip(&gb) {
        assert!(ga.iter().any(|&g| g != 0.0), "{name}: no gradient at all");
        let same = ga.iter().zip(gb).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{name}: gradients differ");
    }
    // And the full owning backward gives the borrowing dx, bit for bit.
    let mut c = bench::seed_cnn(3);
    c.forward_owned(x, Mode::Train);
    let dc = c.backward_owned(d);
    assert_eq!(da, dc, "dx differs");
    c.zero_grad();
}

#[test]
fn in_place_relu_matches_relu() {
    use dlbook::nn::{Activation, ActivationLayer, Layer};
    let values = [
        -2.0f32,
        -0.0,
        0.0,
        1e-30,
        3.0,
        f32::NAN,
        -f32::INFINITY,
        7.5,
    ];
    let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[5, 8]), |i| {
        values[(i[0] + i[1]) % 8]
    });
    let dy = x.mapv(|v| if v.is_nan() { 1.5 } else { v - 0.25 });
    for transposed in [false, true] {
        let x = if transposed {
            x.clone().reversed_axes()
        } else {
            x.clone()
        };
        let dy = if transposed {
            dy.clone().reversed_axes()
        } else {
            dy.clone()
        };
        let mut a = ActivationLayer::new(Activation::Relu);
        let ya = a.forward(&x, Mode::Train);
        let dxa = a.backward(&dy);
        let mut b = ActivationLayer::new(Activation::Relu);
        let yb = b.forward_owned(x.clone(), Mode::Train);
        let dxb = b.backward_owned(dy.clone());
        let bits =
            |a: &ndarray::ArrayD<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&ya), bits(&yb), "forward, transposed = {transposed}");
        assert_eq!(
            bits(&dxa),
            bits(&dxb),
            "backward, transposed = {transposed}"
        );
        assert_eq!(ya.shape(), yb.shape());
        // In place, only the signs are kept: the output is gone, the borrowed
        // backward still works.
        assert_eq!(b.last_output().is_none(), !transposed);
        assert_eq!(bits(&b.backward(&dy)), bits(&dxa));
    }
}

#[test]
fn first_conv_skips_dx_but_not_its_gradients() {
    use dlbook::cnn::Conv2d;
    use dlbook::nn::{Layer, Module};
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = bench::synthetic_batch(45, &mut rng).0; // several blocks
    let mut a = Conv2d::new(1, 8, (3, 3), 1, 1, &mut rng);
    let mut b = a.clone();
    let y = a.forward(&x, Mode::Train);
    let dy = y.mapv(|v| v.sin());
    let dx = a.backward(&dy);
    assert_eq!(dx.shape(), x.shape());
    b.forward_owned(x, Mode::Train);
    b.backward_params(dy);
    let (mut ga, mut gb) = (vec![], vec![]);
    a.visit_params("", &mut |_, p| ga.push(p.grad.clone()));
    b.visit_params("", &mut |_, p| gb.push(p.grad.clone()));
    assert_eq!(ga, gb);
}
