//! The seed CNN in candle, timed like the from-scratch one: the same architecture and
//! starting weights, candle `Tensor` operations forward, `backward()` for the gradients
//! and candle's AdamW with zero weight decay (which is Adam) for the step.
//!
//! Candle's dropout draws its masks from candle's own generator, so the two models see
//! different masks; for timing that does not matter.

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer as _, ParamsAdamW};
use ndarray::ArrayD;
use rand::Rng;
use std::time::Instant;

use crate::nn::candle_twin::to_tensor;
use crate::nn::Module;

/// The parameters in the order [`CandleCnn::forward`] uses them.
const NAMES: [&str; 8] = [
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "fc1.weight",
    "fc1.bias",
    "fc2.weight",
    "fc2.bias",
];

/// The seed CNN as candle variables, with its optimizer.
pub struct CandleCnn {
    vars: Vec<Var>,
    opt: AdamW,
}

impl CandleCnn {
    /// The candle twin of [`super::seed_cnn`]`(seed)`: the same starting weights, Adam
    /// with learning rate `lr`.
    pub fn new(seed: u64, lr: f64) -> Result<Self> {
        let mut model = super::seed_cnn(seed);
        let mut found: Vec<Option<Var>> = vec![None; NAMES.len()];
        let mut err = None;
        model.visit_params("", &mut |name, p| {
            if let Some(i) = NAMES.iter().position(|n| *n == name) {
                match to_tensor(&p.value, DType::F32)
                    .and_then(|t| Ok(Var::from_tensor(&t)?))
                {
                    Ok(v) => found[i] = Some(v),
                    Err(e) => err = Some(e),
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        let vars = found
            .into_iter()
            .zip(NAMES)
            .map(|(v, n)| v.ok_or_else(|| anyhow!("the seed model has no parameter {n}")))
            .collect::<Result<Vec<_>>>()?;
        let params = ParamsAdamW {
            lr,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        };
        let opt = AdamW::new(vars.clone(), params)?;
        Ok(CandleCnn { vars, opt })
    }

    /// Logits `(n, 10)` of images `(n, 1, 28, 28)`; dropout only when `train`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let v: Vec<&Tensor> = self.vars.iter().map(|v| v.as_tensor()).collect();
        let conv = |h: &Tensor, w: &Tensor, b: &Tensor| -> Result<Tensor> {
            let c = b.dim(0)?;
            Ok(h.conv2d(w, 0, 1, 1, 1)?
                .broadcast_add(&b.reshape((1, c, 1, 1))?)?
                .relu()?
                .max_pool2d(2)?)
        };
        let h = conv(x, v[0], v[1])?;
        let h = conv(&h, v[2], v[3])?.flatten_from(1)?;
        let h = h.matmul(&v[4].t()?)?.broadcast_add(v[5])?.relu()?;
        let h = if train {
            candle_nn::ops::dropout(&h, 0.5)?
        } else {
            h
        };
        Ok(h.matmul(&v[6].t()?)?.broadcast_add(v[7])?)
    }

    /// One training step on images `x` and `u32` labels `y`; returns the loss.
    pub fn train_step(&mut self, x: &Tensor, y: &Tensor) -> Result<f32> {
        let loss = candle_nn::loss::cross_entropy(&self.forward(x, true)?, y)?;
        self.opt.backward_step(&loss)?;
        Ok(loss.to_scalar::<f32>()?)
    }
}

/// The batch as candle tensors: images `(n, 1, 28, 28)` and `u32` labels.
pub fn to_tensors(x: &ArrayD<f32>, labels: &[usize]) -> Result<(Tensor, Tensor)> {
    let y: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    Ok((
        to_tensor(x, DType::F32)?,
        Tensor::from_vec(y, labels.len(), &Device::Cpu)?,
    ))
}

/// Candle's training throughput, images/s, like [`super::time_training`].
pub fn time_training(
    x: &ArrayD<f32>,
    labels: &[usize],
    steps: usize,
    runs: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    let mut model = CandleCnn::new(seed, 1e-3)?;
    let (xt, yt) = to_tensors(x, labels)?;
    model.train_step(&xt, &yt)?;
    let mut rates = vec![];
    for _ in 0..runs {
        let t = Instant::now();
        for _ in 0..steps {
            std::hint::black_box(model.train_step(&xt, &yt)?);
        }
        rates.push((steps * labels.len()) as f64 / t.elapsed().as_secs_f64());
    }
    Ok(rates)
}

/// Candle's inference throughput, images/s, like [`super::time_inference`].
pub fn time_inference(
    batch: usize,
    images: usize,
    runs: usize,
    seed: u64,
    rng: &mut impl Rng,
) -> Result<Vec<f64>> {
    let model = CandleCnn::new(seed, 1e-3)?;
    let (x, labels) = super::synthetic_batch(batch, rng);
    let (xt, _) = to_tensors(&x, &labels)?;
    let calls = images.div_ceil(batch).max(1);
    // Reading the logits back forces the lazy work to finish.
    let run = || -> Result<()> {
        std::hint::black_box(model.forward(&xt, false)?.to_vec2::<f32>()?);
        Ok(())
    };
    run()?;
    let mut rates = vec![];
    for _ in 0..runs {
        let t = Instant::now();
        for _ in 0..calls {
            run()?;
        }
        rates.push((calls * batch) as f64 / t.elapsed().as_secs_f64());
    }
    Ok(rates)
}
