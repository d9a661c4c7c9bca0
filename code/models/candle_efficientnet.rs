//! EfficientNet-Lite0 in candle: the framework twin of the from-scratch network
//! ([`efficientnet_lite0`](super::efficientnet::efficientnet_lite0)), reading the same
//! state dict by the same names, batch norm in inference mode. The blocks are chapter
//! 6.1's [`CandleMbConv`]; the stem, head and classifier are written here.

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;

use super::candle_mbconv::{CandleBatchNorm, CandleMbConv};
use super::efficientnet::{CLASSES, FEATURES};
use super::mbconv::{lite0_blocks, BN_EPS};
use super::pth::PthTensor;
use crate::cnn::candle_twin::{grouped_conv, zero_pad};
use crate::cnn::pad::{same_padding, ZeroPad2d};

// ANCHOR: candle_lite0
/// EfficientNet-Lite0's layers as candle tensors.
pub struct CandleEfficientNet {
    stem: (Tensor, CandleBatchNorm),
    blocks: Vec<CandleMbConv>,
    head: (Tensor, CandleBatchNorm),
    fc: (Tensor, Tensor),
}

impl CandleEfficientNet {
    /// The network with the `f32` tensors of `state` (as
    /// [`read_pth`](super::pth::read_pth) gives them), on the CPU, in `dtype`.
    pub fn new(state: &[PthTensor], dtype: DType) -> Result<Self> {
        let mut tensors = HashMap::new();
        for t in state {
            if let Some(v) = &t.value {
                let data: Vec<f32> = v.iter().copied().collect();
                let x =
                    Tensor::from_vec(data, v.shape(), &Device::Cpu)?.to_dtype(dtype)?;
                tensors.insert(t.name.clone(), x);
            }
        }
        let vb = VarBuilder::from_tensors(tensors, dtype, &Device::Cpu);
        let bn = |c, name: &str| CandleBatchNorm::new(c, f64::from(BN_EPS), vb.pp(name));
        let blocks = lite0_blocks()
            .into_iter()
            .enumerate()
            .map(|(i, b)| CandleMbConv::new(b, vb.pp(format!("_blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(CandleEfficientNet {
            stem: (vb.get((32, 3, 3, 3), "_conv_stem.weight")?, bn(32, "_bn0")?),
            blocks,
            head: (
                vb.get((FEATURES, 320, 1, 1), "_conv_head.weight")?,
                bn(FEATURES, "_bn1")?,
            ),
            fc: (
                vb.get((CLASSES, FEATURES), "_fc.weight")?,
                vb.get(CLASSES, "_fc.bias")?,
            ),
        })
    }

    /// The pooled features `(n, 1280)` of normalised images `(n, 3, h, w)`.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (top, bottom) = same_padding(h, 3, 2);
        let (left, right) = same_padding(w, 3, 2);
        let x = zero_pad(x, &ZeroPad2d::new(top, bottom, left, right))?;
        let (w, bn) = &self.stem;
        let mut h = bn
            .forward(&grouped_conv(&x, w, None, 2, 0, 1)?)?
            .clamp(0.0, 6.0)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        let (w, bn) = &self.head;
        let h = bn
            .forward(&grouped_conv(&h, w, None, 1, 0, 1)?)?
            .clamp(0.0, 6.0)?;
        Ok(h.mean(D::Minus1)?.mean(D::Minus1)?)
    }

    /// The ImageNet logits `(n, 1000)` of normalised images `(n, 3, h, w)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (w, b) = &self.fc;
        Ok(self.features(x)?.matmul(&w.t()?)?.broadcast_add(b)?)
    }
}
// ANCHOR_END: candle_lite0
