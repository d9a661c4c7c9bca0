//! The framework twin of the MBConv block: the same block written with candle ops, its
//! weights taken from a [`VarBuilder`] under the names of EfficientNet-Lite's PyTorch
//! state dict (`_expand_conv.weight`, `_bn0.weight`, `_bn0.bias`, `_bn0.running_mean`,
//! `_bn0.running_var`, ...), batch norm in inference mode with $\epsilon = 10^{-3}$.
//!
//! Built on a [`candle_nn::VarMap`] filled from a from-scratch block
//! ([`varmap_from_block`]) it computes the same function, and with candle's `Var`s its
//! autograd gives the third opinion on the block's gradients; built on a `VarBuilder`
//! over a real state dict it runs the pre-trained block.

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::mbconv::{MbConv, MbConvConfig, BN_EPS};
use crate::cnn::candle_twin::{grouped_conv, zero_pad};
use crate::cnn::pad::same_padding;
use crate::cnn::ZeroPad2d;
use crate::nn::candle_twin::{activation, to_tensor};
use crate::nn::{Activation, Module};

/// The name PyTorch gives one of our parameters or buffers: batch norm's `gamma` and
/// `beta` are its `weight` and `bias`; every other name is the same.
pub fn torch_name(ours: &str) -> String {
    if let Some(p) = ours.strip_suffix(".gamma") {
        format!("{p}.weight")
    } else if let Some(p) = ours.strip_suffix(".beta") {
        format!("{p}.bias")
    } else {
        ours.to_string()
    }
}

// ANCHOR: candle_bn_eval
/// Batch norm in inference mode: per channel
/// $y = (x - \bar\mu)/\sqrt{\bar\sigma^2 + \epsilon}\,\gamma + \beta$.
#[derive(Clone, Debug)]
pub struct CandleBatchNorm {
    /// $\gamma$ (PyTorch's `weight`), `(c,)`.
    pub weight: Tensor,
    /// $\beta$ (PyTorch's `bias`), `(c,)`.
    pub bias: Tensor,
    /// Running mean, `(c,)`.
    pub running_mean: Tensor,
    /// Running variance, `(c,)`.
    pub running_var: Tensor,
    /// $\epsilon$.
    pub eps: f64,
}

impl CandleBatchNorm {
    /// Reads `weight`, `bias`, `running_mean` and `running_var` `(c,)` from `vb`.
    pub fn new(c: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(CandleBatchNorm {
            weight: vb.get(c, "weight")?,
            bias: vb.get(c, "bias")?,
            running_mean: vb.get(c, "running_mean")?,
            running_var: vb.get(c, "running_var")?,
            eps,
        })
    }

    /// The normalised `x` `(n, c, h, w)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = x.dims4()?.1;
        let shape = (1, c, 1, 1);
        let inv_std = (self.running_var.reshape(shape)? + self.eps)?
            .sqrt()?
            .recip()?;
        Ok(x.broadcast_sub(&self.running_mean.reshape(shape)?)?
            .broadcast_mul(&inv_std)?
            .broadcast_mul(&self.weight.reshape(shape)?)?
            .broadcast_add(&self.bias.reshape(shape)?)?)
    }
}
// ANCHOR_END: candle_bn_eval

// ANCHOR: candle_mbconv
/// The MBConv block in candle, inference mode, weights by PyTorch name.
#[derive(Clone, Debug)]
pub struct CandleMbConv {
    /// The block's shape.
    pub config: MbConvConfig,
    /// `_expand_conv.weight` and `_bn0` (none when the expansion ratio is 1).
    pub expand: Option<(Tensor, CandleBatchNorm)>,
    /// `_depthwise_conv.weight` and `_bn1`.
    pub depthwise: (Tensor, CandleBatchNorm),
    /// `_project_conv.weight` and `_bn2`.
    pub project: (Tensor, CandleBatchNorm),
    /// The activation after the expansion and the depthwise convolution (ReLU6).
    pub act: Activation,
}

impl CandleMbConv {
    /// Reads a block of shape `config` from `vb` (a block's prefix, e.g.
    /// `vb.pp("_blocks.3")`).
    pub fn new(config: MbConvConfig, vb: VarBuilder) -> Result<Self> {
        let (ci, co, k, hid) =
            (config.c_in, config.c_out, config.kernel, config.hidden());
        let bn = |c, name: &str| CandleBatchNorm::new(c, f64::from(BN_EPS), vb.pp(name));
        let expand = if config.expand_ratio != 1 {
            let w = vb.get((hid, ci, 1, 1), "_expand_conv.weight")?;
            Some((w, bn(hid, "_bn0")?))
        } else {
            None
        };
        Ok(CandleMbConv {
            config,
            expand,
            depthwise: (
                vb.get((hid, 1, k, k), "_depthwise_conv.weight")?,
                bn(hid, "_bn1")?,
            ),
            project: (
                vb.get((co, hid, 1, 1), "_project_conv.weight")?,
                bn(co, "_bn2")?,
            ),
            act: Activation::Relu6,
        })
    }

    /// The block with `kind` in place of ReLU6.
    pub fn with_activation(mut self, kind: Activation) -> Self {
        self.act = kind;
        self
    }

    /// The block's output for `x` `(n, c_in, h, w)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let MbConvConfig {
            kernel: k,
            stride: s,
            ..
        } = self.config;
        let mut h = x.clone();
        if let Some((w, bn)) = &self.expand {
            h = activation(self.act, &bn.forward(&grouped_conv(&h, w, None, 1, 0, 1)?)?)?;
        }
        let padding = if s == 1 {
            k / 2
        } else {
            let (_, _, hh, hw) = h.dims4()?;
            let (top, bottom) = same_padding(hh, k, s);
            let (left, right) = same_padding(hw, k, s);
            h = zero_pad(&h, &ZeroPad2d::new(top, bottom, left, right))?;
            0
        };
        let (w, bn) = &self.depthwise;
        let groups = w.dims4()?.0;
        let h = grouped_conv(&h, w, None, s, padding, groups)?;
        let h = activation(self.act, &bn.forward(&h)?)?;
        let (w, bn) = &self.project;
        let y = bn.forward(&grouped_conv(&h, w, None, 1, 0, 1)?)?;
        Ok(if self.config.has_skip() { (y + x)? } else { y })
    }
}
// ANCHOR_END: candle_mbconv

/// A [`VarMap`] holding the parameters and buffers of the (unfolded) from-scratch
/// `block` as `dtype` variables under their PyTorch names ([`torch_name`]), so that
/// [`CandleMbConv::new`] on `VarBuilder::from_varmap(&map, dtype, &Device::Cpu)` builds
/// its twin, and candle's gradients can be read back by name.
pub fn varmap_from_block(block: &mut MbConv, dtype: DType) -> Result<VarMap> {
    let map = VarMap::new();
    let mut tensors = vec![];
    block.visit_params("", &mut |name, p| {
        tensors.push((name.to_string(), p.value.clone()))
    });
    block.visit_buffers("", &mut |name, b| {
        tensors.push((name.to_string(), b.to_owned()))
    });
    {
        let mut data = map
            .data()
            .lock()
            .map_err(|_| anyhow!("varmap_from_block: poisoned lock"))?;
        for (name, value) in tensors {
            let t = to_tensor(&value, dtype)?.to_device(&Device::Cpu)?;
            data.insert(torch_name(&name), candle_core::Var::from_tensor(&t)?);
        }
    }
    Ok(map)
}
