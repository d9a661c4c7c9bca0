//! EfficientNet-Lite0 in candle: the framework twin of the from-scratch network, reading
//! the same state dict by the same names (inference mode: batch norm uses its running
//! statistics).

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor, D};

use super::efficientnet::{blocks, same_padding, BlockArgs, BN_EPS};
use super::pth::PthTensor;

/// The network's weights as candle tensors, by their PyTorch names.
pub struct CandleEfficientNet {
    weights: HashMap<String, Tensor>,
}

impl CandleEfficientNet {
    /// The network with the `f32` tensors of `state` (as [`read_pth`](super::pth::read_pth)
    /// gives them), on the CPU.
    pub fn new(state: &[PthTensor]) -> Result<Self> {
        let mut weights = HashMap::new();
        for t in state {
            if let Some(v) = &t.value {
                let data: Vec<f32> = v.iter().copied().collect();
                weights.insert(
                    t.name.clone(),
                    Tensor::from_vec(data, v.shape(), &Device::Cpu)?,
                );
            }
        }
        Ok(Self { weights })
    }

    fn w(&self, name: &str) -> Result<&Tensor> {
        self.weights
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no weight named {name}")))
    }

    /// Inference-mode batch norm `prefix` over the channels of `x`.
    fn bn(&self, x: &Tensor, prefix: &str) -> Result<Tensor> {
        let shape = (1, (), 1, 1);
        let g = self.w(&format!("{prefix}.weight"))?.reshape(shape)?;
        let b = self.w(&format!("{prefix}.bias"))?.reshape(shape)?;
        let m = self.w(&format!("{prefix}.running_mean"))?.reshape(shape)?;
        let v = self.w(&format!("{prefix}.running_var"))?.reshape(shape)?;
        let scale = g.broadcast_div(&(v + BN_EPS)?.sqrt()?)?;
        x.broadcast_sub(&m)?
            .broadcast_mul(&scale)?
            .broadcast_add(&b)
    }

    /// Convolution `name` with TensorFlow's SAME padding, `groups` groups.
    fn conv(
        &self,
        x: &Tensor,
        name: &str,
        stride: usize,
        groups: usize,
    ) -> Result<Tensor> {
        let w = self.w(&format!("{name}.weight"))?;
        let k = w.dim(2)?;
        let (h, wd) = (x.dim(2)?, x.dim(3)?);
        let (t, b) = same_padding(h, k, stride);
        let (l, r) = same_padding(wd, k, stride);
        let x = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
        x.conv2d(w, 0, stride, 1, groups)
    }

    fn block(&self, x: &Tensor, i: usize, a: &BlockArgs) -> Result<Tensor> {
        let p = format!("_blocks.{i}");
        let mut h = x.clone();
        if a.expand != 1 {
            h = self.conv(&h, &format!("{p}._expand_conv"), 1, 1)?;
            h = relu6(&self.bn(&h, &format!("{p}._bn0"))?)?;
        }
        let c = h.dim(1)?;
        h = self.conv(&h, &format!("{p}._depthwise_conv"), a.stride, c)?;
        h = relu6(&self.bn(&h, &format!("{p}._bn1"))?)?;
        h = self.conv(&h, &format!("{p}._project_conv"), 1, 1)?;
        h = self.bn(&h, &format!("{p}._bn2"))?;
        if a.has_skip() {
            h = (h + x)?;
        }
        Ok(h)
    }

    /// The pooled features `(n, 1280)` of normalised images `(n, 3, h, w)`.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.conv(x, "_conv_stem", 2, 1)?;
        h = relu6(&self.bn(&h, "_bn0")?)?;
        for (i, a) in blocks().iter().enumerate() {
            h = self.block(&h, i, a)?;
        }
        h = self.conv(&h, "_conv_head", 1, 1)?;
        h = relu6(&self.bn(&h, "_bn1")?)?;
        h.mean(D::Minus1)?.mean(D::Minus1)
    }

    /// The ImageNet logits `(n, 1000)` of normalised images `(n, 3, h, w)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let f = self.features(x)?;
        let w = self.w("_fc.weight")?;
        let b = self.w("_fc.bias")?;
        f.matmul(&w.t()?)?.broadcast_add(b)
    }
}

fn relu6(x: &Tensor) -> Result<Tensor> {
    x.clamp(0f32, 6f32)
}

/// `x` as `f32` (for the comparisons).
pub fn to_f32(x: &Tensor) -> Result<Tensor> {
    x.to_dtype(DType::F32)
}
