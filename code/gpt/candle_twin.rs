//! The framework twin: the same GPT written in candle ops, with the weights of a
//! from-scratch [`Gpt`]. In `F64` its autograd is the third opinion on every gradient of
//! the hand-written backward; in `F32`, trained by candle's AdamW, it is the "with a
//! framework" path whose speed the benchmark compares.
//!
//! The twin is written the way the equations read: the full $t \times t$ scores of every
//! head in one batched product, the causal mask as a product with zeros and ones
//! ([`crate::attn::candle_twin::sdpa`]), the layer norm and the GELU from their formulas.

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer as _, ParamsAdamW};
use ndarray::{ArrayD, IxDyn};

use super::{Gpt, GptConfig, Norm};
use crate::attn::candle_twin::{keep_tensor, sdpa};
use crate::attn::{mask_for_heads, Mask};
use crate::nn::candle_twin::{to_array, to_tensor};
use crate::nn::gradcheck::Grads;
use crate::nn::Module;
use crate::seq::text::Batch;

/// A [`Gpt`]'s weights as candle variables, by the model's dotted names.
pub struct CandleGpt {
    /// The sizes and switches.
    pub cfg: GptConfig,
    /// `(name, variable)` in the model's visiting order.
    pub vars: Vec<(String, Var)>,
    dtype: DType,
}

/// $\operatorname{LN}(x) = \gamma \odot (x - \mu) / \sqrt{\sigma^2 + \epsilon}$ over the
/// last axis.
fn layer_norm(x: &Tensor, gamma: &Tensor) -> Result<Tensor> {
    let mu = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mu)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xhat = xc.broadcast_div(&(var + f64::from(super::kernels::LN_EPS))?.sqrt()?)?;
    Ok(xhat.broadcast_mul(gamma)?)
}

/// The tanh GELU from its formula.
fn gelu(x: &Tensor) -> Result<Tensor> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let inner = ((x + (x.powf(3.0)? * 0.044715)?)? * c)?;
    Ok(((x * 0.5)? * (inner.tanh()? + 1.0)?)?)
}

impl CandleGpt {
    /// The twin of `model` in `dtype`.
    pub fn new(model: &mut Gpt, dtype: DType) -> Result<Self> {
        let mut vars = vec![];
        let mut err = None;
        model.visit_params("", &mut |name, p| match to_tensor(&p.value, dtype) {
            Ok(t) => match Var::from_tensor(&t) {
                Ok(v) => vars.push((name.to_string(), v)),
                Err(e) => err = Some(anyhow!(e)),
            },
            Err(e) => err = Some(e),
        });
        if let Some(e) = err {
            return Err(e);
        }
        Ok(CandleGpt {
            cfg: model.cfg.clone(),
            vars,
            dtype,
        })
    }

    fn var(&self, name: &str) -> Result<&Tensor> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_tensor())
            .ok_or_else(|| anyhow!("the twin has no parameter {name}"))
    }

    // ANCHOR: candle_gpt
    /// The logits rows `(b t, V)` of the ids `(b, t)`.
    pub fn logits(&self, x: &ArrayD<f32>) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, t) = (x.shape()[0], x.shape()[1]);
        let (d, heads) = (cfg.d_model, cfg.n_heads);
        let dk = d / heads;
        let dev = Device::Cpu;
        let ids: Vec<u32> = x.iter().map(|&v| v as u32).collect();
        let ids = Tensor::from_vec(ids, b * t, &dev)?;
        let wte = self.var("wte.weight")?;
        // (b t, d) rows, row i t + s
        let mut h = wte.index_select(&ids, 0)?;
        if cfg.positions {
            let p = self.var("wpe.weight")?.narrow(0, 0, t)?;
            h = h
                .reshape((b, t, d))?
                .broadcast_add(&p)?
                .reshape((b * t, d))?;
        }
        let keep = keep_tensor(&mask_for_heads(&Mask::causal(b, t), heads), self.dtype)?;
        let pre = cfg.norm == Norm::Pre;
        for l in 0..cfg.n_layers {
            let w = |n: &str| self.var(&format!("blocks.{l}.{n}"));
            let a_in = if pre {
                layer_norm(&h, w("ln1.weight")?)?
            } else {
                h.clone()
            };
            let qkv = a_in.matmul(&w("attn.qkv.weight")?.t()?)?;
            // (b t, d) -> (b, t, heads, d_k) -> (b, heads, t, d_k)
            let split = |k: usize| -> Result<Tensor> {
                Ok(qkv
                    .narrow(1, k * d, d)?
                    .reshape((b, t, heads, dk))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let (o, _) = sdpa(&split(0)?, &split(1)?, &split(2)?, Some(&keep))?;
            // (b, heads, t, d_k) -> (b, t, heads, d_k) -> (b t, d)
            let o = o.transpose(1, 2)?.contiguous()?.reshape((b * t, d))?;
            let y = o.matmul(&w("attn.proj.weight")?.t()?)?;
            h = if cfg.residual { (h + y)? } else { y };
            if !pre {
                h = layer_norm(&h, w("ln1.weight")?)?;
            }
            let m_in = if pre {
                layer_norm(&h, w("ln2.weight")?)?
            } else {
                h.clone()
            };
            let f = gelu(&m_in.matmul(&w("mlp.fc.weight")?.t()?)?)?;
            let m = f.matmul(&w("mlp.proj.weight")?.t()?)?;
            h = if cfg.residual { (h + m)? } else { m };
            if !pre {
                h = layer_norm(&h, w("ln2.weight")?)?;
            }
        }
        if pre {
            h = layer_norm(&h, self.var("ln_f.weight")?)?;
        }
        Ok(h.matmul(&wte.t()?)?)
    }
    // ANCHOR_END: candle_gpt
}

// ANCHOR: candle_gpt_grads
/// Candle's gradients (in `F64`) of $L = \langle \text{logits}, r\rangle$ with respect
/// to every parameter of `model`, by dotted name (and a zero `dx`: ids have none), with
/// the logits `(b, t, V)`.
pub fn gpt_grads(
    model: &mut Gpt,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> Result<(Grads, ArrayD<f64>)> {
    let tw = CandleGpt::new(model, DType::F64)?;
    let (b, t, v) = (x.shape()[0], x.shape()[1], tw.cfg.vocab_size);
    let z = tw.logits(x)?.reshape((b, t, v))?;
    let loss = (&z * to_tensor(r, DType::F64)?)?.sum_all()?;
    let g = loss.backward()?;
    let params = tw
        .vars
        .iter()
        .map(|(n, var)| {
            let gv = g.get(var).ok_or_else(|| anyhow!("no gradient for {n}"))?;
            Ok((n.clone(), to_array(gv)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let grads = Grads {
        dx: ArrayD::zeros(IxDyn(&[b, t])),
        params,
    };
    Ok((grads, to_array(&z)?))
}
// ANCHOR_END: candle_gpt_grads

/// The twin trained by candle: its autograd, AdamW in two groups (weight decay on the
/// matrices only) and the global gradient norm clipped, like [`super::train_step`].
pub struct CandleTrainer {
    /// The model.
    pub twin: CandleGpt,
    decayed: AdamW,
    plain: AdamW,
    clip: f64,
}

impl CandleTrainer {
    /// A trainer of the `F32` twin of `model` with learning rate `lr`, $\beta =
    /// (0.9, \beta_2)$, weight decay `weight_decay` and clipping at `clip`.
    pub fn new(
        model: &mut Gpt,
        lr: f64,
        beta2: f64,
        weight_decay: f64,
        clip: f64,
    ) -> Result<Self> {
        let twin = CandleGpt::new(model, DType::F32)?;
        let group = |matrices: bool| -> Vec<Var> {
            twin.vars
                .iter()
                .filter(|(_, v)| (v.rank() >= 2) == matrices)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let params = |wd| ParamsAdamW {
            lr,
            beta1: 0.9,
            beta2,
            eps: 1e-8,
            weight_decay: wd,
        };
        Ok(CandleTrainer {
            decayed: AdamW::new(group(true), params(weight_decay))?,
            plain: AdamW::new(group(false), params(0.0))?,
            twin,
            clip,
        })
    }

    /// One training step on a batch; returns the loss.
    pub fn train_step(&mut self, batch: &Batch) -> Result<f32> {
        let n = batch.targets.len();
        let targets: Vec<u32> = batch.targets.iter().map(|&v| v as u32).collect();
        let targets = Tensor::from_vec(targets, n, &Device::Cpu)?;
        let logits = self.twin.logits(&batch.x)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
        let mut grads = loss.backward()?;
        let mut sq = 0.0f64;
        for (_, v) in &self.twin.vars {
            let g = grads.get(v).ok_or_else(|| anyhow!("no gradient"))?;
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
        let norm = sq.sqrt();
        if norm > self.clip {
            for (_, v) in &self.twin.vars {
                let g = grads.get(v).ok_or_else(|| anyhow!("no gradient"))?;
                let scaled = (g * (self.clip / norm))?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
        self.decayed.step(&grads)?;
        self.plain.step(&grads)?;
        Ok(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?)
    }
}
