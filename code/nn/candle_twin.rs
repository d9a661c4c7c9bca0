//! The framework twin: the same layers, losses and MLP in candle, whose autograd gives the
//! third opinion on every gradient.
//!
//! Weights are copied from the from-scratch layers, so both sides compute the same
//! function. For gradient checks candle runs in `F64`, so its gradients are exact to
//! about $10^{-15}$ and any disagreement measures the error of the `f32` manual
//! backward. For training the twin runs in `F32`, like the from-scratch MLP.
//!
//! Note that candle's `binary_cross_entropy_with_logit` computes
//! $-t\log\sigma(z) - (1-t)\log(1-\sigma(z))$ as written, which is exact in `F64` for
//! moderate logits but not stable for large ones; the from-scratch
//! [`bce_with_logits`](super::loss::bce_with_logits) is.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{Module as _, Optimizer as _};
use ndarray::{Array2, ArrayD, IxDyn};

use super::activation::Activation;
use super::gradcheck::Grads;
use super::linear::Linear;
use super::mlp::Mlp;

/// An `f32` array as a candle tensor of type `dtype` on the CPU.
pub fn to_tensor(a: &ArrayD<f32>, dtype: DType) -> Result<Tensor> {
    let v: Vec<f32> = a.iter().copied().collect();
    Ok(Tensor::from_vec(v, a.shape(), &Device::Cpu)?.to_dtype(dtype)?)
}

/// A candle tensor as an `f64` array.
pub fn to_array(t: &Tensor) -> Result<ArrayD<f64>> {
    let v = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    Ok(ArrayD::from_shape_vec(IxDyn(t.dims()), v)?)
}

/// A candle tensor as an `f32` array.
pub fn to_array_f32(t: &Tensor) -> Result<ArrayD<f32>> {
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(ArrayD::from_shape_vec(IxDyn(t.dims()), v)?)
}

/// Applies an activation with candle ops.
pub fn activation(kind: Activation, x: &Tensor) -> Result<Tensor> {
    Ok(match kind {
        Activation::Sigmoid => candle_nn::ops::sigmoid(x)?,
        Activation::Tanh => x.tanh()?,
        Activation::Relu => x.relu()?,
        Activation::LeakyRelu(a) => candle_nn::ops::leaky_relu(x, f64::from(a))?,
        Activation::Identity => x.clone(),
        Activation::Relu6 => x.clamp(0.0, 6.0)?,
        Activation::Gelu => x.gelu_erf()?,
    })
}

/// $\langle y, r \rangle$ as a candle scalar.
fn contract(y: &Tensor, r: &ArrayD<f32>) -> Result<Tensor> {
    Ok((y * to_tensor(r, y.dtype())?)?.sum_all()?)
}

// ANCHOR: candle_linear
/// Candle's gradients (in `F64`) of $L = \langle x W^\top + b, r\rangle$ for the weights
/// of `layer`, named like the layer's parameters.
pub fn linear_grads(layer: &Linear, x: &ArrayD<f32>, r: &ArrayD<f32>) -> Result<Grads> {
    let w = Var::from_tensor(&to_tensor(&layer.weight.value, DType::F64)?)?;
    let b = Var::from_tensor(&to_tensor(&layer.bias.value, DType::F64)?)?;
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let lin = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
    let loss = contract(&lin.forward(xv.as_tensor())?, r)?;
    let g = loss.backward()?;
    let grad = |v: &Var| -> Result<ArrayD<f64>> {
        to_array(g.get(v).ok_or_else(|| anyhow::anyhow!("no gradient"))?)
    };
    Ok(Grads {
        dx: grad(&xv)?,
        params: vec![("weight".into(), grad(&w)?), ("bias".into(), grad(&b)?)],
    })
}
// ANCHOR_END: candle_linear

/// Candle's gradient (in `F64`) of $L = \langle f(x), r\rangle$ for an activation `f`.
pub fn activation_grads(
    kind: Activation,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> Result<Grads> {
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let loss = contract(&activation(kind, xv.as_tensor())?, r)?;
    let g = loss.backward()?;
    Ok(Grads {
        dx: to_array(g.get(&xv).ok_or_else(|| anyhow::anyhow!("no gradient"))?)?,
        params: vec![],
    })
}

/// Candle's gradient (in `F64`) of $L = \langle \mathrm{softmax}(z), r\rangle$.
pub fn softmax_grads(z: &ArrayD<f32>, r: &ArrayD<f32>) -> Result<Grads> {
    let zv = Var::from_tensor(&to_tensor(z, DType::F64)?)?;
    let loss = contract(&candle_nn::ops::softmax(zv.as_tensor(), D::Minus1)?, r)?;
    let g = loss.backward()?;
    Ok(Grads {
        dx: to_array(g.get(&zv).ok_or_else(|| anyhow::anyhow!("no gradient"))?)?,
        params: vec![],
    })
}

/// Which loss a candle check computes.
#[derive(Clone, Debug)]
pub enum LossKind {
    /// Mean squared error against these targets.
    Mse(ArrayD<f32>),
    /// Binary cross-entropy from logits against these targets in $[0, 1]$.
    Bce(ArrayD<f32>),
    /// Softmax cross-entropy against these labels.
    SoftmaxCe(Vec<usize>),
}

/// A loss as a candle scalar.
fn candle_loss(kind: &LossKind, pred: &Tensor) -> Result<Tensor> {
    let dtype = pred.dtype();
    Ok(match kind {
        LossKind::Mse(t) => candle_nn::loss::mse(pred, &to_tensor(t, dtype)?)?,
        LossKind::Bce(t) => {
            candle_nn::loss::binary_cross_entropy_with_logit(pred, &to_tensor(t, dtype)?)?
        }
        LossKind::SoftmaxCe(labels) => {
            let l: Vec<u32> = labels.iter().map(|&y| y as u32).collect();
            let target = Tensor::from_vec(l, labels.len(), &Device::Cpu)?;
            candle_nn::loss::cross_entropy(pred, &target)?
        }
    })
}

// ANCHOR: candle_loss
/// Candle's value and gradient (in `F64`) of a loss with respect to the prediction.
pub fn loss_grad(kind: &LossKind, pred: &ArrayD<f32>) -> Result<(f64, ArrayD<f64>)> {
    let p = Var::from_tensor(&to_tensor(pred, DType::F64)?)?;
    let loss = candle_loss(kind, p.as_tensor())?;
    let g = loss.backward()?;
    let dp = to_array(g.get(&p).ok_or_else(|| anyhow::anyhow!("no gradient"))?)?;
    Ok((loss.to_scalar::<f64>()?, dp))
}
// ANCHOR_END: candle_loss

/// Gradients by parameter name.
pub type NamedGrads = Vec<(String, ArrayD<f64>)>;

// ANCHOR: candle_mlp
/// The MLP in candle: `candle_nn::Linear` layers holding [`Var`]s copied from a
/// from-scratch [`Mlp`], the same activation between them.
pub struct CandleMlp {
    /// `(weight, bias)` variables of each layer, `(d_out, d_in)` and `(d_out,)`.
    pub vars: Vec<(Var, Var)>,
    /// The hidden activation.
    pub activation: Activation,
}

impl CandleMlp {
    /// A copy of `mlp`'s weights in candle, in `dtype`.
    pub fn from_mlp(mlp: &Mlp, dtype: DType) -> Result<Self> {
        let mut vars = vec![];
        for l in &mlp.linears {
            let w = Var::from_tensor(&to_tensor(&l.weight.value, dtype)?)?;
            let b = Var::from_tensor(&to_tensor(&l.bias.value, dtype)?)?;
            vars.push((w, b));
        }
        Ok(CandleMlp {
            vars,
            activation: mlp
                .activations
                .first()
                .map_or(Activation::Identity, |a| a.kind),
        })
    }

    /// The logits for a batch `x` of shape `(n, d_in)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (k, (w, b)) in self.vars.iter().enumerate() {
            let lin = candle_nn::Linear::new(
                w.as_tensor().clone(),
                Some(b.as_tensor().clone()),
            );
            h = lin.forward(&h)?;
            if k + 1 < self.vars.len() {
                h = activation(self.activation, &h)?;
            }
        }
        Ok(h)
    }
}
// ANCHOR_END: candle_mlp

impl CandleMlp {
    /// Every variable in the order of [`Mlp`]'s `visit_params`, with the same names.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let mut out = vec![];
        for (k, (w, b)) in self.vars.iter().enumerate() {
            let p = Mlp::linear_prefix(k);
            out.push((format!("{p}.weight"), w.clone()));
            out.push((format!("{p}.bias"), b.clone()));
        }
        out
    }

    /// The softmax cross-entropy of `x` against `labels`, and its gradient for every
    /// variable (named as in [`Mlp`]).
    pub fn ce_grads(
        &self,
        x: &ArrayD<f32>,
        labels: &[usize],
    ) -> Result<(f64, NamedGrads)> {
        let dtype = self.vars[0].0.dtype();
        let logits = self.forward(&to_tensor(x, dtype)?)?;
        let loss = candle_loss(&LossKind::SoftmaxCe(labels.to_vec()), &logits)?;
        let g = loss.backward()?;
        let mut out = vec![];
        for (name, v) in self.named_vars() {
            let grad = g
                .get(&v)
                .ok_or_else(|| anyhow::anyhow!("no gradient for {name}"))?;
            out.push((name, to_array(grad)?));
        }
        Ok((loss.to_dtype(DType::F64)?.to_scalar::<f64>()?, out))
    }

    /// One epoch of plain SGD with softmax cross-entropy over `x` `(n, d_in)` in the given
    /// batch order (`order` lists row indices; consecutive chunks of `batch_size` are
    /// the batches). Returns the mean training loss.
    pub fn train_epoch(
        &self,
        x: &Array2<f32>,
        labels: &[usize],
        order: &[usize],
        batch_size: usize,
        lr: f64,
    ) -> Result<f64> {
        let all: Vec<Var> = self
            .vars
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect();
        let mut sgd = candle_nn::SGD::new(all, lr)?;
        let dtype = self.vars[0].0.dtype();
        let (mut total, mut batches) = (0.0, 0);
        for chunk in order.chunks(batch_size) {
            let xb = x.select(ndarray::Axis(0), chunk).into_dyn();
            let yb: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
            let logits = self.forward(&to_tensor(&xb, dtype)?)?;
            let loss = candle_loss(&LossKind::SoftmaxCe(yb), &logits)?;
            sgd.backward_step(&loss)?;
            total += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            batches += 1;
        }
        Ok(total / batches.max(1) as f64)
    }

    /// The logits of `x` as an array.
    pub fn predict(&self, x: &ArrayD<f32>) -> Result<ArrayD<f32>> {
        let dtype = self.vars[0].0.dtype();
        to_array_f32(&self.forward(&to_tensor(x, dtype)?)?)
    }
}
