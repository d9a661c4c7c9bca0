//! The framework twin of the seed MNIST CNN: the same network written with candle ops,
//! its weights copied from the from-scratch model by dotted name.
//!
//! Two of candle 0.11's built-in ops differ from the from-scratch layers at exactly the
//! points the seed model visits, so the twin writes them from smaller candle ops:
//!
//! - **ReLU.** Candle's `relu` backward passes the gradient where the input is `>= 0`;
//!   the from-scratch ReLU (like PyTorch) passes it where the input is `> 0`. After
//!   `conv1` every blank patch of an image has pre-activation exactly the bias, which
//!   starts at zero, so the two would disagree on most pixels. The twin multiplies by
//!   the mask $\mathbb{1}(x > 0)$, a constant for autograd.
//! - **Max pooling.** Candle's `max_pool2d` backward spreads the gradient by nearest
//!   upsampling back to the input size, which puts it in the wrong places when the pool
//!   drops a row (11 to 5 in the second pool), and shares it between tied maxima, as
//!   does the gradient of candle's `max` reduction. Ties are common here: inside a
//!   saturated stroke neighbouring receptive fields see the same pixels. The
//!   from-scratch pool gives the whole gradient to the first maximum in row-major
//!   order, so the twin gathers each window on a last axis and picks that entry with
//!   `argmax` (which also keeps the first maximum) and `gather`.
//!
//! Dropout takes its mask as an input, so a test can pass the very mask the
//! from-scratch [`Dropout`](crate::nn::dropout::Dropout) drew.

use anyhow::{anyhow, bail, Result};
use candle_core::{DType, Tensor, Var, D};
use candle_nn::Optimizer as _;
use ndarray::{Array2, ArrayD, Axis};

use crate::nn::candle_twin::{to_array, to_tensor, NamedGrads};
use crate::nn::Module;

/// The parameter names of the seed model, in visiting order.
pub const PARAM_NAMES: [&str; 8] = [
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "fc1.weight",
    "fc1.bias",
    "fc2.weight",
    "fc2.bias",
];

/// The seed CNN in candle: one variable per parameter of the from-scratch model.
pub struct CandleCnn {
    /// `(dotted name, variable)` in the order of [`PARAM_NAMES`].
    pub vars: Vec<(String, Var)>,
    /// The dtype of every variable.
    pub dtype: DType,
}

/// `relu(x)` whose gradient is `[x > 0]`, as in the from-scratch layer.
fn relu(x: &Tensor) -> Result<Tensor> {
    let mask = x.gt(0.0)?.to_dtype(x.dtype())?; // a constant: comparisons carry no graph
    Ok((x * mask)?)
}

/// 2x2 max pooling with stride 2 of `(n, c, h, w)`: each window gathered on a last
/// axis, and its first maximum picked by `argmax` (a constant for autograd) and `gather`
/// (whose gradient goes to the picked entry alone).
fn max_pool_2x2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / 2, w / 2);
    // crop what no window reaches; (n, c, ho, 2, wo, 2) -> (n, c, ho, wo, 2, 2) ->
    // (n, c, ho, wo, 4), the window in row-major order
    let win = x
        .narrow(2, 0, 2 * ho)?
        .narrow(3, 0, 2 * wo)?
        .reshape((n, c, ho, 2, wo, 2))?
        .permute((0, 1, 2, 4, 3, 5))?
        .reshape((n, c, ho, wo, 4))?;
    let first = win.argmax_keepdim(D::Minus1)?; // (n, c, ho, wo, 1)
    Ok(win.gather(&first, D::Minus1)?.squeeze(D::Minus1)?)
}

// ANCHOR: candle_cnn
impl CandleCnn {
    /// The network with `x` `(n, 784)` (or `(n, 1, 28, 28)`) pixels in, `(n, 10)` logits
    /// out. `dropout_mask` is the scaled mask `m / q` of shape `(n, 128)` applied after
    /// the hidden ReLU (`None`: evaluation mode, dropout is the identity).
    pub fn forward(&self, x: &Tensor, dropout_mask: Option<&Tensor>) -> Result<Tensor> {
        let n = x.dim(0)?;
        let x = x.reshape((n, 1, 28, 28))?;
        let h = conv(&x, self.var(0), self.var(1))?; // (n, 32, 26, 26)
        let h = max_pool_2x2(&relu(&h)?)?; // (n, 32, 13, 13)
        let h = conv(&h, self.var(2), self.var(3))?; // (n, 64, 11, 11)
        let h = max_pool_2x2(&relu(&h)?)?; // (n, 64, 5, 5)
        let h = h.flatten_from(1)?; // (n, 1600), channel-major like Flatten
        let h = relu(&h.matmul(&self.var(4).t()?)?.broadcast_add(self.var(5))?)?;
        let h = match dropout_mask {
            Some(m) => (h * m)?,
            None => h,
        };
        Ok(h.matmul(&self.var(6).t()?)?.broadcast_add(self.var(7))?)
    }
}
// ANCHOR_END: candle_cnn

/// A 3x3 convolution with stride 1, no padding, and a bias per output channel.
fn conv(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let c_out = w.dim(0)?;
    let y = x.conv2d(w, 0, 1, 1, 1)?;
    Ok(y.broadcast_add(&b.reshape((1, c_out, 1, 1))?)?)
}

impl CandleCnn {
    /// A copy of the seed model's parameters, looked up by dotted name, in `dtype`.
    /// Fails naming the parameter when `model` lacks one or has another.
    pub fn from_model(model: &mut dyn Module, dtype: DType) -> Result<Self> {
        let mut found: Vec<(String, ArrayD<f32>)> = vec![];
        model.visit_params("", &mut |name, p| {
            found.push((name.to_string(), p.value.clone()))
        });
        let mut vars = vec![];
        for name in PARAM_NAMES {
            let v = found
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| anyhow!("the model has no parameter {name}"))?;
            vars.push((
                name.to_string(),
                Var::from_tensor(&to_tensor(&v.1, dtype)?)?,
            ));
        }
        if let Some((extra, _)) = found.iter().find(|(n, _)| !PARAM_NAMES.contains(&&**n))
        {
            bail!("the twin has no parameter {extra}: it is the seed model only");
        }
        Ok(CandleCnn { vars, dtype })
    }

    fn var(&self, i: usize) -> &Tensor {
        self.vars[i].1.as_tensor()
    }

    /// The mean softmax cross-entropy of the logits against `labels`.
    pub fn loss(&self, logits: &Tensor, labels: &[usize]) -> Result<Tensor> {
        let t: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
        let t = Tensor::new(t.as_slice(), logits.device())?;
        Ok(candle_nn::loss::cross_entropy(logits, &t)?)
    }

    /// The loss of a batch and its gradient for every parameter (named as in the
    /// from-scratch model), in the twin's dtype, as `f64` arrays.
    pub fn loss_grads(
        &self,
        x: &ArrayD<f32>,
        labels: &[usize],
        dropout_mask: Option<&ArrayD<f32>>,
    ) -> Result<(f64, NamedGrads)> {
        let mask = dropout_mask.map(|m| to_tensor(m, self.dtype)).transpose()?;
        let logits = self.forward(&to_tensor(x, self.dtype)?, mask.as_ref())?;
        let loss = self.loss(&logits, labels)?;
        let g = loss.backward()?;
        let mut out = vec![];
        for (name, v) in &self.vars {
            let grad = g.get(v).ok_or_else(|| anyhow!("no gradient for {name}"))?;
            out.push((name.clone(), to_array(grad)?));
        }
        Ok((loss.to_dtype(DType::F64)?.to_scalar::<f64>()?, out))
    }

    /// The logits of `x` in evaluation mode, as an `f64` array.
    pub fn logits(&self, x: &ArrayD<f32>) -> Result<ArrayD<f64>> {
        to_array(&self.forward(&to_tensor(x, self.dtype)?, None)?)
    }

    /// Accuracy on `(x, labels)` in evaluation mode, in batches of 1,000.
    pub fn accuracy(&self, x: &Array2<f32>, labels: &[usize]) -> Result<f64> {
        let mut hits = 0usize;
        for start in (0..labels.len()).step_by(1000) {
            let end = (start + 1000).min(labels.len());
            let xb = x.slice(ndarray::s![start..end, ..]).to_owned().into_dyn();
            let pred = self
                .forward(&to_tensor(&xb, self.dtype)?, None)?
                .argmax(D::Minus1)?
                .to_vec1::<u32>()?;
            hits += pred
                .iter()
                .zip(&labels[start..end])
                .filter(|(p, y)| **p as usize == **y)
                .count();
        }
        Ok(hits as f64 / labels.len().max(1) as f64)
    }

    /// One epoch of candle-nn's `AdamW` (weight decay 0, so Adam) over `x` in the given
    /// batch order (consecutive chunks of `batch_size` indices of `order`), with the
    /// dropout mask of each batch from `mask_of(batch_len)`. Returns the mean loss.
    pub fn train_epoch(
        &self,
        opt: &mut candle_nn::AdamW,
        x: &Array2<f32>,
        labels: &[usize],
        order: &[usize],
        batch_size: usize,
        mask_of: &mut dyn FnMut(usize) -> ArrayD<f32>,
    ) -> Result<f64> {
        let (mut total, mut batches) = (0.0, 0);
        for chunk in order.chunks(batch_size) {
            let xb = x.select(Axis(0), chunk).into_dyn();
            let yb: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
            let mask = to_tensor(&mask_of(chunk.len()), self.dtype)?;
            let logits = self.forward(&to_tensor(&xb, self.dtype)?, Some(&mask))?;
            let loss = self.loss(&logits, &yb)?;
            opt.backward_step(&loss)?;
            total += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            batches += 1;
        }
        Ok(total / batches.max(1) as f64)
    }

    /// candle-nn's `AdamW` over the twin's variables with weight decay 0 (plain Adam).
    pub fn adam(&self, lr: f64) -> Result<candle_nn::AdamW> {
        let vars = self.vars.iter().map(|(_, v)| v.clone()).collect();
        Ok(candle_nn::AdamW::new(
            vars,
            candle_nn::ParamsAdamW {
                lr,
                weight_decay: 0.0,
                ..candle_nn::ParamsAdamW::default()
            },
        )?)
    }
}
