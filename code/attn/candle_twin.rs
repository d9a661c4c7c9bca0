//! The framework twin: the masked softmax, scaled dot-product attention, RoPE and
//! multi-head attention written again in candle ops, whose autograd (in `F64`) gives
//! the third opinion on every gradient of [`crate::attn`].
//!
//! The twin is written the way the equations read: one batched `matmul` for all heads,
//! the mask as a multiplication by zeros and ones (not $-\infty$, so that autograd never
//! meets $0 \cdot \infty$), the rotation as two products with $\cos$ and $\sin$. The
//! from-scratch code instead loops over (batch, head) pairs with one GEMM each and
//! writes $-\infty$ into masked scores: agreement checks both.

use anyhow::{anyhow, Result};
use candle_core::{DType, Tensor, Var, D};
use ndarray::ArrayD;

use super::{mask_for_heads, Mask, MultiHeadAttention, Rope};
use crate::nn::candle_twin::{to_array, to_tensor};
use crate::nn::gradcheck::Grads;
use crate::nn::Module;

/// A boolean mask as a tensor of ones (keep) and zeros (masked) in `dtype`.
pub fn keep_tensor(keep: &ArrayD<bool>, dtype: DType) -> Result<Tensor> {
    to_tensor(&keep.mapv(|k| if k { 1.0f32 } else { 0.0 }), dtype)
}

// ANCHOR: candle_softmax
/// The masked softmax over the last axis; `keep` (ones and zeros, the shape of `s`)
/// masks entries, and a fully masked row is all zeros.
pub fn masked_softmax(s: &Tensor, keep: Option<&Tensor>) -> Result<Tensor> {
    let Some(keep) = keep else {
        // the max is a constant shift: detached, it changes no gradient
        let m = s.max_keepdim(D::Minus1)?.detach();
        let e = s.broadcast_sub(&m)?.exp()?;
        return Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?);
    };
    // masked scores replaced by -1e30 (finite: autograd never meets 0 * inf); their
    // exponentials underflow to zero, and are zeroed anyway by the product with `keep`
    let low = (keep.affine(-1.0, 1.0)? * -1e30)?;
    let safe = ((s * keep)? + low)?;
    let m = safe.max_keepdim(D::Minus1)?.detach();
    let e = (safe.broadcast_sub(&m)?.exp()? * keep)?;
    // a row with no key left: denominator 1 instead of 0, so the row stays zero
    let empty = keep.max_keepdim(D::Minus1)?.affine(-1.0, 1.0)?;
    let denom = (e.sum_keepdim(D::Minus1)? + empty)?;
    Ok(e.broadcast_div(&denom)?)
}
// ANCHOR_END: candle_softmax

// ANCHOR: candle_sdpa
/// Scaled dot-product attention on `(b, heads, t, d)` tensors; `keep` is
/// `(b, heads, t_q, t_k)`. Returns the output and the weights.
pub fn sdpa(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    keep: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let d_k = q.dim(D::Minus1)?;
    let s = (q.matmul(&k.t()?.contiguous()?)? / (d_k as f64).sqrt())?;
    let a = masked_softmax(&s, keep)?;
    Ok((a.matmul(v)?, a))
}

/// RoPE on `(b, heads, t, d_k)`: pair $(2i, 2i+1)$ at position $p$ rotated by
/// $p\,\theta_i$.
pub fn rope(x: &Tensor, r: Rope) -> Result<Tensor> {
    let (b, h, t, dk) = x.dims4()?;
    let mut c = Vec::with_capacity(t * dk / 2);
    let mut s = Vec::with_capacity(t * dk / 2);
    for p in 0..t {
        for i in 0..dk / 2 {
            let a = p as f64 * f64::from(r.base).powf(-2.0 * i as f64 / dk as f64);
            c.push(a.cos());
            s.push(a.sin());
        }
    }
    let dev = x.device();
    let cos = Tensor::from_vec(c, (t, dk / 2), dev)?.to_dtype(x.dtype())?;
    let sin = Tensor::from_vec(s, (t, dk / 2), dev)?.to_dtype(x.dtype())?;
    let pairs = x.reshape((b, h, t, dk / 2, 2))?;
    let x0 = pairs.narrow(4, 0, 1)?.squeeze(4)?;
    let x1 = pairs.narrow(4, 1, 1)?.squeeze(4)?;
    let y0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
    let y1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
    Ok(Tensor::stack(&[y0, y1], 4)?.reshape((b, h, t, dk))?)
}
// ANCHOR_END: candle_sdpa

/// The four projections of a [`MultiHeadAttention`] as candle variables, in visiting
/// order, with their dotted names.
#[derive(Clone, Debug)]
pub struct CandleMha {
    /// `(name, variable)` in the layer's visiting order.
    pub vars: Vec<(String, Var)>,
    /// The number of heads.
    pub n_heads: usize,
    /// Rotary encodings, if any.
    pub rope: Option<Rope>,
    /// Whether the projections have biases.
    pub bias: bool,
}

impl CandleMha {
    /// Copies of `layer`'s parameters in `dtype`.
    pub fn new(layer: &MultiHeadAttention, dtype: DType) -> Result<Self> {
        let mut l = layer.clone();
        let mut vars = vec![];
        let mut err = None;
        l.visit_params("", &mut |name, p| match to_tensor(&p.value, dtype)
            .and_then(|t| Ok(Var::from_tensor(&t)?))
        {
            Ok(v) => vars.push((name.to_string(), v)),
            Err(e) => err = Some(e),
        });
        if let Some(e) = err {
            return Err(e);
        }
        Ok(CandleMha {
            vars,
            n_heads: layer.n_heads,
            rope: layer.rope,
            bias: layer.has_bias(),
        })
    }

    fn var(&self, name: &str) -> Result<&Tensor> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_tensor())
            .ok_or_else(|| anyhow!("CandleMha: no parameter {name}"))
    }

    /// `x W^T + b` of projection `p` on `(b, t, d)`.
    fn project(&self, p: &str, x: &Tensor) -> Result<Tensor> {
        let y = x.broadcast_matmul(&self.var(&format!("{p}.weight"))?.t()?)?;
        Ok(if self.bias {
            y.broadcast_add(self.var(&format!("{p}.bias"))?)?
        } else {
            y
        })
    }

    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        Ok(x.reshape((b, t, self.n_heads, d / self.n_heads))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    // ANCHOR: candle_mha
    /// Multi-head attention of queries from `x` over keys and values from `memory`
    /// (`(b, t, d)` each), `keep` `(b, heads, t_q, t_k)`.
    pub fn forward(
        &self,
        x: &Tensor,
        memory: &Tensor,
        keep: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut q = self.split(&self.project("q", x)?)?;
        let mut k = self.split(&self.project("k", memory)?)?;
        let v = self.split(&self.project("v", memory)?)?;
        if let Some(r) = self.rope {
            q = rope(&q, r)?;
            k = rope(&k, r)?;
        }
        let (o, _) = sdpa(&q, &k, &v, keep)?;
        let (b, h, t, dk) = o.dims4()?;
        let merged = o.transpose(1, 2)?.contiguous()?.reshape((b, t, h * dk))?;
        self.project("o", &merged)
    }
    // ANCHOR_END: candle_mha
}

/// The mask a layer applies: `mask`, and the causal mask for causal self-attention.
fn effective_mask(
    layer: &MultiHeadAttention,
    x: &ArrayD<f32>,
    cross: bool,
    mask: Option<&Mask>,
) -> Option<Mask> {
    let causal =
        (layer.causal && !cross).then(|| Mask::causal(x.shape()[0], x.shape()[1]));
    match (mask, causal) {
        (Some(m), Some(c)) => Some(m.and(&c)),
        (Some(m), None) => Some(m.clone()),
        (None, c) => c,
    }
}

/// The output of `layer` computed by the twin in `F64`: self-attention on `x` when
/// `memory` is `None`, cross-attention otherwise; `mask` `(b, t_q, t_k)`.
pub fn mha_forward(
    layer: &MultiHeadAttention,
    x: &ArrayD<f32>,
    memory: Option<&ArrayD<f32>>,
    mask: Option<&Mask>,
) -> Result<ArrayD<f64>> {
    let tw = CandleMha::new(layer, DType::F64)?;
    let xt = to_tensor(x, DType::F64)?;
    let mt = memory.map(|m| to_tensor(m, DType::F64)).transpose()?;
    let keep = effective_mask(layer, x, memory.is_some(), mask)
        .map(|m| keep_tensor(&mask_for_heads(&m, layer.n_heads), DType::F64))
        .transpose()?;
    to_array(&tw.forward(&xt, mt.as_ref().unwrap_or(&xt), keep.as_ref())?)
}

// ANCHOR: candle_mha_grads
/// Candle's gradients (in `F64`) of $L = \langle \operatorname{MHA}(x, m), r\rangle$
/// for `layer`'s weights: `dx` and the parameters by their dotted names, then (for
/// cross-attention, `memory` given) `d memory`.
pub fn mha_grads(
    layer: &MultiHeadAttention,
    x: &ArrayD<f32>,
    memory: Option<&ArrayD<f32>>,
    mask: Option<&Mask>,
    r: &ArrayD<f32>,
) -> Result<(Grads, Option<ArrayD<f64>>)> {
    let tw = CandleMha::new(layer, DType::F64)?;
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let mv = memory
        .map(|m| -> Result<Var> { Ok(Var::from_tensor(&to_tensor(m, DType::F64)?)?) })
        .transpose()?;
    let keep = effective_mask(layer, x, memory.is_some(), mask)
        .map(|m| keep_tensor(&mask_for_heads(&m, layer.n_heads), DType::F64))
        .transpose()?;
    let mem = mv.as_ref().map_or(xv.as_tensor(), |v| v.as_tensor());
    let y = tw.forward(xv.as_tensor(), mem, keep.as_ref())?;
    let loss = (y * to_tensor(r, DType::F64)?)?.sum_all()?;
    let g = loss.backward()?;
    let grad = |v: &Var| to_array(g.get(v).ok_or_else(|| anyhow!("no gradient"))?);
    let params = tw
        .vars
        .iter()
        .map(|(n, v)| Ok((n.clone(), grad(v)?)))
        .collect::<Result<Vec<_>>>()?;
    let dmem = mv.as_ref().map(&grad).transpose()?;
    Ok((
        Grads {
            dx: grad(&xv)?,
            params,
        },
        dmem,
    ))
}
// ANCHOR_END: candle_mha_grads

/// Candle's output and gradients (in `F64`) of the masked softmax: $y$ and
/// $\partial \langle y, r\rangle / \partial s$.
pub fn softmax_grads(
    s: &ArrayD<f32>,
    keep: Option<&ArrayD<bool>>,
    r: &ArrayD<f32>,
) -> Result<(ArrayD<f64>, ArrayD<f64>)> {
    let sv = Var::from_tensor(&to_tensor(s, DType::F64)?)?;
    let keep = keep.map(|k| keep_tensor(k, DType::F64)).transpose()?;
    let y = masked_softmax(sv.as_tensor(), keep.as_ref())?;
    let loss = (&y * to_tensor(r, DType::F64)?)?.sum_all()?;
    let g = loss.backward()?;
    let ds = g.get(&sv).ok_or_else(|| anyhow!("no gradient"))?;
    Ok((to_array(&y)?, to_array(ds)?))
}

/// Candle's output and gradients (in `F64`) of scaled dot-product attention on
/// `(b, heads, t, d)` arrays with an optional mask `(b, t_q, t_k)`: `[out, dq, dk, dv]`
/// for $L = \langle O, r\rangle$.
pub fn sdpa_grads(
    q: &ArrayD<f32>,
    k: &ArrayD<f32>,
    v: &ArrayD<f32>,
    mask: Option<&Mask>,
    r: &ArrayD<f32>,
) -> Result<[ArrayD<f64>; 4]> {
    let var = |a: &ArrayD<f32>| -> Result<Var> {
        Ok(Var::from_tensor(&to_tensor(a, DType::F64)?)?)
    };
    let (qv, kv, vv) = (var(q)?, var(k)?, var(v)?);
    let keep = mask
        .map(|m| keep_tensor(&mask_for_heads(m, q.shape()[1]), DType::F64))
        .transpose()?;
    let (o, _) = sdpa(
        qv.as_tensor(),
        kv.as_tensor(),
        vv.as_tensor(),
        keep.as_ref(),
    )?;
    let loss = (&o * to_tensor(r, DType::F64)?)?.sum_all()?;
    let g = loss.backward()?;
    let grad = |v: &Var| to_array(g.get(v).ok_or_else(|| anyhow!("no gradient"))?);
    Ok([to_array(&o)?, grad(&qv)?, grad(&kv)?, grad(&vv)?])
}

/// Candle's gradient (in `F64`) of $\langle x + PE, r\rangle$ for a positional table:
/// `[dx, d table]`, the table `(max_len, d)` added to the first `t` positions.
pub fn encoding_grads(
    x: &ArrayD<f32>,
    table: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> Result<[ArrayD<f64>; 2]> {
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let tv = Var::from_tensor(&to_tensor(table, DType::F64)?)?;
    let t = x.shape()[1];
    let y = xv
        .as_tensor()
        .broadcast_add(&tv.as_tensor().narrow(0, 0, t)?)?;
    let loss = (y * to_tensor(r, DType::F64)?)?.sum_all()?;
    let g = loss.backward()?;
    let grad = |v: &Var| to_array(g.get(v).ok_or_else(|| anyhow!("no gradient"))?);
    Ok([grad(&xv)?, grad(&tv)?])
}

// ANCHOR: candle_block
/// Layer norm over the last axis in candle ops: $(x - \mu)/\sqrt{\sigma^2 + \epsilon}
/// \cdot \gamma + \beta$, with the biased variance, as [`LayerNorm`](crate::nn::layernorm::LayerNorm).
fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let x_hat = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(x_hat.broadcast_mul(gamma)?.broadcast_add(beta)?)
}

/// Candle's gradients (in `F64`) of $L = \langle \operatorname{block}(x), r\rangle$ for
/// an [`AttnBlock`](super::block::AttnBlock)'s weights: the same pre-norm block
/// written in candle ops ([`CandleMha`] for the attention), `dx` and the parameters by
/// their dotted names.
pub fn block_grads(
    block: &mut super::block::AttnBlock,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> Result<Grads> {
    let mut vars: Vec<(String, Var)> = vec![];
    let mut err = None;
    block.visit_params("", &mut |name, p| match to_tensor(&p.value, DType::F64)
        .and_then(|t| Ok(Var::from_tensor(&t)?))
    {
        Ok(v) => vars.push((name.to_string(), v)),
        Err(e) => err = Some(e),
    });
    if let Some(e) = err {
        return Err(e);
    }
    let var = |name: &str| -> Result<&Tensor> {
        vars.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_tensor())
            .ok_or_else(|| anyhow!("block_grads: no parameter {name}"))
    };
    let attn = CandleMha {
        vars: vars
            .iter()
            .filter_map(|(n, v)| {
                n.strip_prefix("attn.").map(|s| (s.to_string(), v.clone()))
            })
            .collect(),
        n_heads: block.attn.n_heads,
        rope: block.attn.rope,
        bias: block.attn.has_bias(),
    };
    let linear = |x: &Tensor, p: &str| -> Result<Tensor> {
        Ok(x.broadcast_matmul(&var(&format!("{p}.weight"))?.t()?)?
            .broadcast_add(var(&format!("{p}.bias"))?)?)
    };
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let eps = 1e-5;
    // h = x + MHA(LN1(x)); y = h + fc2(relu(fc1(LN2(h))))
    let n1 = layer_norm(xv.as_tensor(), var("norm1.gamma")?, var("norm1.beta")?, eps)?;
    let h = (xv.as_tensor() + attn.forward(&n1, &n1, None)?)?;
    let n2 = layer_norm(&h, var("norm2.gamma")?, var("norm2.beta")?, eps)?;
    let m = linear(&linear(&n2, "mlp.fc1")?.relu()?, "mlp.fc2")?;
    let y = (h + m)?;
    let loss = (y * to_tensor(r, DType::F64)?)?.sum_all()?;
    let g = loss.backward()?;
    let grad = |v: &Var| to_array(g.get(v).ok_or_else(|| anyhow!("no gradient"))?);
    Ok(Grads {
        dx: grad(&xv)?,
        params: vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), grad(v)?)))
            .collect::<Result<Vec<_>>>()?,
    })
}
// ANCHOR_END: candle_block
