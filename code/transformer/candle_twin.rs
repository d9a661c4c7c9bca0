//! The framework twin of the blocks: the encoder and decoder blocks written again in
//! candle ops on copies of a from-scratch block's parameters, reusing the attention twin
//! ([`crate::attn::candle_twin::CandleMha`]). Its outputs check the blocks' forward
//! passes, and its autograd (in `F64`) gives the third opinion on their gradients.

use anyhow::{anyhow, Result};
use candle_core::{DType, Tensor, Var, D};
use ndarray::ArrayD;

use super::{BlockConfig, DecoderBlock, DecoderMasks, EncoderBlock, Norm};
use crate::attn::candle_twin::{keep_tensor, CandleMha};
use crate::attn::{mask_for_heads, Mask};
use crate::nn::candle_twin::{activation, to_array, to_tensor};
use crate::nn::gradcheck::Grads;
use crate::nn::Module;

/// A block's parameters as candle variables, by the block's dotted names, in its
/// visiting order.
#[derive(Clone, Debug)]
pub struct CandleBlock {
    /// `(name, variable)` in the block's visiting order.
    pub vars: Vec<(String, Var)>,
    /// The block's options.
    pub cfg: BlockConfig,
}

impl CandleBlock {
    /// Copies of the parameters `module` visits, in `dtype`.
    pub fn new(module: &mut dyn Module, cfg: BlockConfig, dtype: DType) -> Result<Self> {
        let mut vars = vec![];
        let mut err = None;
        module.visit_params("", &mut |name, p| match to_tensor(&p.value, dtype)
            .and_then(|t| Ok(Var::from_tensor(&t)?))
        {
            Ok(v) => vars.push((name.to_string(), v)),
            Err(e) => err = Some(e),
        });
        match err {
            Some(e) => Err(e),
            None => Ok(CandleBlock { vars, cfg }),
        }
    }

    fn var(&self, name: &str) -> Result<&Tensor> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_tensor())
            .ok_or_else(|| anyhow!("CandleBlock: no parameter {name}"))
    }

    /// The attention twin over the variables under `prefix` (the same variables, so
    /// gradients reach them).
    fn mha(&self, prefix: &str) -> CandleMha {
        let p = format!("{prefix}.");
        CandleMha {
            vars: self
                .vars
                .iter()
                .filter_map(|(n, v)| {
                    n.strip_prefix(&p).map(|s| (s.to_string(), v.clone()))
                })
                .collect(),
            n_heads: self.cfg.n_heads,
            rope: None,
            bias: self.cfg.bias,
        }
    }

    // ANCHOR: candle_ln_ffn
    /// Layer norm over the last axis with the scale and shift under `prefix`.
    fn layer_norm(&self, prefix: &str, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let x_hat = xc.broadcast_div(&(var + f64::from(self.cfg.ln_eps))?.sqrt()?)?;
        Ok(x_hat
            .broadcast_mul(self.var(&format!("{prefix}.gamma"))?)?
            .broadcast_add(self.var(&format!("{prefix}.beta"))?)?)
    }

    fn linear(&self, prefix: &str, x: &Tensor) -> Result<Tensor> {
        let y = x.broadcast_matmul(&self.var(&format!("{prefix}.weight"))?.t()?)?;
        Ok(if self.cfg.bias {
            y.broadcast_add(self.var(&format!("{prefix}.bias"))?)?
        } else {
            y
        })
    }

    /// The feed-forward network.
    fn ffn(&self, x: &Tensor) -> Result<Tensor> {
        let h = activation(self.cfg.activation, &self.linear("ffn.fc1", x)?)?;
        self.linear("ffn.fc2", &h)
    }
    // ANCHOR_END: candle_ln_ffn

    /// One residual step: `F` wrapped pre-LN or post-LN, with the layer norm `ln`.
    fn step(
        &self,
        ln: &str,
        x: &Tensor,
        f: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let add = |x: &Tensor, y: Tensor| -> Result<Tensor> {
            Ok(if self.cfg.residual { (y + x)? } else { y })
        };
        match self.cfg.norm {
            Norm::PreLn => add(x, f(&self.layer_norm(ln, x)?)?),
            Norm::PostLn => self.layer_norm(ln, &add(x, f(x)?)?),
        }
    }

    /// The encoder block on `x` `(b, t, d)`, `keep` `(b, heads, t, t)`.
    pub fn encoder(&self, x: &Tensor, keep: Option<&Tensor>) -> Result<Tensor> {
        let attn = self.mha("attn");
        let h = self.step("ln1", x, |z| attn.forward(z, z, keep))?;
        self.step("ln2", &h, |z| self.ffn(z))
    }

    /// The decoder block on `x` `(b, t, d)` reading `memory` `(b, t_m, d)`; `self_keep`
    /// `(b, heads, t, t)` already includes the causal mask.
    pub fn decoder(
        &self,
        x: &Tensor,
        memory: &Tensor,
        self_keep: &Tensor,
        memory_keep: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (sa, ca) = (self.mha("self_attn"), self.mha("cross_attn"));
        let h1 = self.step("ln1", x, |z| sa.forward(z, z, Some(self_keep)))?;
        let h2 = self.step("ln2", &h1, |z| ca.forward(z, memory, memory_keep))?;
        self.step("ln3", &h2, |z| self.ffn(z))
    }
}

fn keep(mask: Option<&Mask>, heads: usize) -> Result<Option<Tensor>> {
    mask.map(|m| keep_tensor(&mask_for_heads(m, heads), DType::F64))
        .transpose()
}

/// The decoder's self-attention mask: causal, and the target's padding if any.
fn self_mask(x: &ArrayD<f32>, target: Option<&Mask>) -> Mask {
    let causal = Mask::causal(x.shape()[0], x.shape()[1]);
    target.map_or(causal.clone(), |m| m.and(&causal))
}

fn var(a: &ArrayD<f32>) -> Result<Var> {
    Ok(Var::from_tensor(&to_tensor(a, DType::F64)?)?)
}

/// The twin's output of an encoder block (in `F64`) on the block's weights.
pub fn encoder_forward(
    block: &EncoderBlock,
    x: &ArrayD<f32>,
    mask: Option<&Mask>,
) -> Result<ArrayD<f64>> {
    let tw = CandleBlock::new(&mut block.clone(), block.cfg, DType::F64)?;
    let k = keep(mask, block.cfg.n_heads)?;
    to_array(&tw.encoder(&to_tensor(x, DType::F64)?, k.as_ref())?)
}

/// Candle's gradients (in `F64`) of $L = \langle \text{block}(x), r\rangle$: `dx` and
/// every parameter by its dotted name.
pub fn encoder_grads(
    block: &EncoderBlock,
    x: &ArrayD<f32>,
    mask: Option<&Mask>,
    r: &ArrayD<f32>,
) -> Result<Grads> {
    let tw = CandleBlock::new(&mut block.clone(), block.cfg, DType::F64)?;
    let xv = var(x)?;
    let k = keep(mask, block.cfg.n_heads)?;
    let y = tw.encoder(xv.as_tensor(), k.as_ref())?;
    let g = (y * to_tensor(r, DType::F64)?)?.sum_all()?.backward()?;
    let grad = |v: &Var| to_array(g.get(v).ok_or_else(|| anyhow!("no gradient"))?);
    Ok(Grads {
        dx: grad(&xv)?,
        params: tw
            .vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), grad(v)?)))
            .collect::<Result<_>>()?,
    })
}

/// The twin's output of a decoder block (in `F64`).
pub fn decoder_forward(
    block: &DecoderBlock,
    x: &ArrayD<f32>,
    memory: &ArrayD<f32>,
    masks: DecoderMasks<'_>,
) -> Result<ArrayD<f64>> {
    let tw = CandleBlock::new(&mut block.clone(), block.cfg, DType::F64)?;
    let h = block.cfg.n_heads;
    let sk = keep(Some(&self_mask(x, masks.target)), h)?.expect("a mask");
    let mk = keep(masks.memory, h)?;
    let (xt, mt) = (to_tensor(x, DType::F64)?, to_tensor(memory, DType::F64)?);
    to_array(&tw.decoder(&xt, &mt, &sk, mk.as_ref())?)
}

/// Candle's gradients (in `F64`) of $L = \langle \text{block}(x, m), r\rangle$: `dx`
/// and the parameters, then `d memory`.
pub fn decoder_grads(
    block: &DecoderBlock,
    x: &ArrayD<f32>,
    memory: &ArrayD<f32>,
    masks: DecoderMasks<'_>,
    r: &ArrayD<f32>,
) -> Result<(Grads, ArrayD<f64>)> {
    let tw = CandleBlock::new(&mut block.clone(), block.cfg, DType::F64)?;
    let h = block.cfg.n_heads;
    let sk = keep(Some(&self_mask(x, masks.target)), h)?.expect("a mask");
    let mk = keep(masks.memory, h)?;
    let (xv, mv) = (var(x)?, var(memory)?);
    let y = tw.decoder(xv.as_tensor(), mv.as_tensor(), &sk, mk.as_ref())?;
    let g = (y * to_tensor(r, DType::F64)?)?.sum_all()?.backward()?;
    let grad = |v: &Var| to_array(g.get(v).ok_or_else(|| anyhow!("no gradient"))?);
    let params = tw
        .vars
        .iter()
        .map(|(n, v)| Ok((n.clone(), grad(v)?)))
        .collect::<Result<_>>()?;
    Ok((
        Grads {
            dx: grad(&xv)?,
            params,
        },
        grad(&mv)?,
    ))
}
