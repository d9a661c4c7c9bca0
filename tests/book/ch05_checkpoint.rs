//! Chapter 5, model files: save and load round-trip bit for bit (batch-norm running
//! statistics included), candle reads our files, and every bad file is a clear error.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use dlbook::models::checkpoint::{load, save, CheckpointError};
use dlbook::models::{mnist_cnn, CnnConfig};
use dlbook::nn::{Layer, Mode, Module, Named};
use ndarray::ArrayD;

/// A fresh folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dlbook-ch05-checkpoint-{test}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn inputs() -> ArrayD<f32> {
    ArrayD::from_shape_fn(vec![4, 784], |i| {
        ((i[0] * 31 + i[1] * 7) % 23) as f32 / 23.0
    })
}

fn with_bn() -> CnnConfig {
    CnnConfig {
        batch_norm: true,
        ..CnnConfig::default()
    }
}

/// Every parameter and buffer value of `m`, by name.
fn state(m: &mut Named) -> Vec<(String, Vec<f32>)> {
    let mut out = vec![];
    m.visit_params("", &mut |n, p| {
        out.push((n.to_string(), p.value.iter().copied().collect()))
    });
    m.visit_buffers("", &mut |n, b| {
        out.push((n.to_string(), b.iter().copied().collect()))
    });
    out
}

fn load_err(model: &mut Named, path: &std::path::Path) -> String {
    match load(model, path) {
        Ok(()) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn saved_model_loads_back_to_bit_identical_logits() {
    let dir = scratch("roundtrip");
    let x = inputs();
    // Batch norm: a few training passes move the running statistics off their start.
    let mut a = mnist_cnn(&with_bn(), 0);
    for _ in 0..3 {
        a.forward(&x, Mode::Train);
    }
    let path = dir.join("model.safetensors");
    save(&mut a, &path).unwrap();
    let mut b = mnist_cnn(&with_bn(), 7);
    assert_ne!(state(&mut a), state(&mut b));
    load(&mut b, &path).unwrap();
    assert_eq!(state(&mut a), state(&mut b));
    let (ya, yb) = (a.forward(&x, Mode::Eval), b.forward(&x, Mode::Eval));
    assert!(ya.iter().zip(&yb).all(|(p, q)| p.to_bits() == q.to_bits()));
    // No temporary file is left next to it.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn batch_norm_running_statistics_are_in_the_file() {
    let mut m = mnist_cnn(&with_bn(), 0);
    let mut names = vec![];
    m.visit_buffers("", &mut |n, _| names.push(n.to_string()));
    assert_eq!(
        names,
        [
            "bn1.running_mean",
            "bn1.running_var",
            "bn2.running_mean",
            "bn2.running_var"
        ]
    );
    let dir = scratch("buffers");
    let path = dir.join("bn.safetensors");
    save(&mut m, &path).unwrap();
    let file = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    for n in names {
        assert!(file.contains_key(&n), "{n} not in the file");
    }
}

#[test]
fn candle_reads_our_model_file_with_the_same_values() {
    let dir = scratch("candle");
    let path = dir.join("seed.safetensors");
    let mut m = mnist_cnn(&CnnConfig::default(), 3);
    save(&mut m, &path).unwrap();
    let file = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    assert_eq!(file.len(), 8);
    let mut checked = 0;
    m.visit_params("", &mut |name, p| {
        let t = &file[name];
        assert_eq!(t.dtype(), DType::F32, "{name}");
        assert_eq!(t.dims(), p.value.shape(), "{name}");
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v
            .iter()
            .zip(p.value.iter())
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        checked += 1;
    });
    assert_eq!(checked, 8);
}

#[test]
fn a_file_that_is_not_safetensors_is_an_error() {
    let dir = scratch("not");
    let path = dir.join("notes.txt");
    std::fs::write(&path, "these are not the weights you are looking for").unwrap();
    let mut m = mnist_cnn(&CnnConfig::default(), 0);
    let before = state(&mut m);
    let e = load_err(&mut m, &path);
    assert!(e.contains("not a safetensors model file"), "{e}");
    assert_eq!(state(&mut m), before);
    let e = load_err(&mut m, &dir.join("missing.safetensors"));
    assert!(e.contains("missing.safetensors"), "{e}");
}

#[test]
fn every_truncation_of_a_model_file_is_an_error() {
    let dir = scratch("truncated");
    let path = dir.join("seed.safetensors");
    let mut m = mnist_cnn(&CnnConfig::default(), 0);
    save(&mut m, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let before = state(&mut m);
    let cut = dir.join("cut.safetensors");
    // Every byte of the 8-byte length and the header, then every 997th byte of the data.
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let lengths = (0..header + 8).chain((header + 8..bytes.len()).step_by(997));
    let mut n = 0;
    for len in lengths {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        match load(&mut m, &cut) {
            Err(CheckpointError::Format { .. }) => {}
            other => panic!("{len} of {} bytes: {other:?}", bytes.len()),
        }
        n += 1;
    }
    assert!(n > 200, "{n} truncations");
    assert_eq!(state(&mut m), before);
}

#[test]
fn a_header_that_claims_too_much_is_an_error_without_allocating_it() {
    let dir = scratch("claims");
    let mut m = mnist_cnn(&CnnConfig::default(), 0);
    // A header length of 2^63 bytes.
    let path = dir.join("huge-header.safetensors");
    std::fs::write(&path, (1u64 << 63).to_le_bytes()).unwrap();
    assert!(load_err(&mut m, &path).contains("not a safetensors"));
    // A tensor claiming 10^12 elements in a tiny file.
    let header = r#"{"conv1.weight":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4000000000000]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 16]);
    let path = dir.join("huge-tensor.safetensors");
    std::fs::write(&path, bytes).unwrap();
    assert!(load_err(&mut m, &path).contains("not a safetensors"));
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = scratch("missing");
    let path = dir.join("one-conv.safetensors");
    save(
        &mut mnist_cnn(
            &CnnConfig {
                n_conv: 1,
                ..CnnConfig::default()
            },
            0,
        ),
        &path,
    )
    .unwrap();
    let e = load_err(&mut mnist_cnn(&CnnConfig::default(), 0), &path);
    assert!(e.contains("tensor conv2.weight is missing"), "{e}");
    assert!(e.contains("[64, 32, 3, 3]"), "{e}");
}

#[test]
fn an_unexpected_tensor_is_named() {
    let dir = scratch("unexpected");
    let path = dir.join("bn.safetensors");
    save(&mut mnist_cnn(&with_bn(), 0), &path).unwrap();
    let e = load_err(&mut mnist_cnn(&CnnConfig::default(), 0), &path);
    assert!(e.contains("unexpected tensor bn1.beta"), "{e}");
}

#[test]
fn a_wrong_shape_names_both_shapes() {
    let dir = scratch("shape");
    let path = dir.join("seed.safetensors");
    save(&mut mnist_cnn(&CnnConfig::default(), 0), &path).unwrap();
    let mut small = mnist_cnn(
        &CnnConfig {
            hidden: 64,
            ..CnnConfig::default()
        },
        0,
    );
    let before = state(&mut small);
    let e = load_err(&mut small, &path);
    assert!(
        e.ends_with("fc1.weight: file has [128, 1600], model wants [64, 1600]"),
        "{e}"
    );
    // Nothing was loaded, not even the tensors before fc1 that did fit.
    assert_eq!(state(&mut small), before);
}

#[test]
fn a_wrong_dtype_is_named() {
    let dir = scratch("dtype");
    let path = dir.join("f64.safetensors");
    let mut m = mnist_cnn(&CnnConfig::default(), 0);
    let mut tensors = std::collections::HashMap::new();
    m.visit_params("", &mut |n, p| {
        let v: Vec<f64> = p.value.iter().map(|&x| f64::from(x)).collect();
        tensors.insert(
            n.to_string(),
            Tensor::from_vec(v, p.value.shape(), &Device::Cpu).unwrap(),
        );
    });
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let e = load_err(&mut m, &path);
    assert!(
        e.ends_with("conv1.weight: file has dtype F64, model wants F32"),
        "{e}"
    );
}

#[test]
fn an_mlp_with_batch_norm_saves_its_running_statistics() {
    use dlbook::nn::batchnorm::BatchNorm;
    use dlbook::nn::{Activation, ActivationLayer, Init, Linear, Sequential};
    use rand::SeedableRng;
    let build = |seed: u64| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut s = Sequential::new();
        s.push(Linear::new(784, 16, Init::He, &mut rng));
        s.push(BatchNorm::new(16));
        s.push(ActivationLayer::new(Activation::Relu));
        s.push(Linear::new(16, 10, Init::He, &mut rng));
        s
    };
    let x = inputs();
    let mut a = build(0);
    for _ in 0..3 {
        a.forward(&x, Mode::Train);
    }
    let mut names = vec![];
    a.visit_buffers("", &mut |n, _| names.push(n.to_string()));
    assert_eq!(names, ["layers.1.running_mean", "layers.1.running_var"]);
    let path = scratch("mlp-bn").join("mlp.safetensors");
    save(&mut a, &path).unwrap();
    let mut b = build(1);
    load(&mut b, &path).unwrap();
    let (ya, yb) = (a.forward(&x, Mode::Eval), b.forward(&x, Mode::Eval));
    assert!(ya.iter().zip(&yb).all(|(p, q)| p.to_bits() == q.to_bits()));
}
