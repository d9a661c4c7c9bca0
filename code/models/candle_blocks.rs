//! The framework twins of the architecture blocks: batch norm over feature maps and the
//! basic block written with candle ops in `F64`, on copies of the from-scratch weights,
//! so candle's autograd gives the third opinion on their gradients.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use candle_core::{DType, Tensor, Var};
use ndarray::ArrayD;

use super::resnet::{BasicBlock, Shortcut};
use crate::cnn::{candle_twin, BatchNorm2d};
use crate::nn::candle_twin::{activation, to_array, to_tensor};
use crate::nn::gradcheck::Grads;
use crate::nn::{Mode, Module};

// ANCHOR: candle_bn2d
/// Batch norm of `x` `(n, c, h, w)` in candle with per-channel `gamma`, `beta` `(c,)`:
/// in training with the biased mean and variance over the batch and both spatial axes,
/// in evaluation with the layer's running statistics.
pub fn batchnorm2d(
    bn: &BatchNorm2d,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mode: Mode,
) -> Result<Tensor> {
    let c = x.dims4()?.1;
    let (mean, var) = match mode {
        Mode::Train => {
            let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
            let xc = x.broadcast_sub(&mean)?;
            let var = xc
                .sqr()?
                .mean_keepdim(0)?
                .mean_keepdim(2)?
                .mean_keepdim(3)?;
            (mean, var)
        }
        Mode::Eval => {
            let rm = to_tensor(&bn.inner.running_mean.clone().into_dyn(), DType::F64)?;
            let rv = to_tensor(&bn.inner.running_var.clone().into_dyn(), DType::F64)?;
            (rm.reshape((1, c, 1, 1))?, rv.reshape((1, c, 1, 1))?)
        }
    };
    let eps = f64::from(bn.inner.eps);
    let x_hat = x
        .broadcast_sub(&mean)?
        .broadcast_div(&(var + eps)?.sqrt()?)?;
    let shape = (1, c, 1, 1);
    Ok(x_hat
        .broadcast_mul(&gamma.reshape(shape)?)?
        .broadcast_add(&beta.reshape(shape)?)?)
}
// ANCHOR_END: candle_bn2d

/// The parameters of `layer` as `F64` candle variables, by name, in visiting order.
fn vars_of(layer: &mut dyn Module) -> Result<Vec<(String, Var)>> {
    let mut out = vec![];
    let mut err = None;
    layer.visit_params("", &mut |name, p| match to_tensor(&p.value, DType::F64)
        .and_then(|t| Ok(Var::from_tensor(&t)?))
    {
        Ok(v) => out.push((name.to_string(), v)),
        Err(e) => err = Some(e),
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The gradients of $L = \langle y, r\rangle$ for `xv` and every variable of `vars`.
fn grads(y: &Tensor, r: &ArrayD<f32>, xv: &Var, vars: &[(String, Var)]) -> Result<Grads> {
    let loss = (y * to_tensor(r, DType::F64)?)?.sum_all()?;
    let g = loss.backward()?;
    let grad = |v: &Var| -> Result<ArrayD<f64>> {
        to_array(g.get(v).ok_or_else(|| anyhow!("no gradient"))?)
    };
    Ok(Grads {
        dx: grad(xv)?,
        params: vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), grad(v)?)))
            .collect::<Result<_>>()?,
    })
}

/// Candle's gradients (in `F64`) of $L = \langle \mathrm{BN}(x), r\rangle$ for the
/// input and `gamma`, `beta`, in `mode`.
pub fn batchnorm2d_grads(
    bn: &mut BatchNorm2d,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
    mode: Mode,
) -> Result<Grads> {
    let vars = vars_of(bn)?;
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let y = batchnorm2d(
        bn,
        xv.as_tensor(),
        vars[0].1.as_tensor(),
        vars[1].1.as_tensor(),
        mode,
    )?;
    grads(&y, r, &xv, &vars)
}

// ANCHOR: candle_block
/// The basic block in candle on the variables `p` (named as the block's parameters), in
/// training mode: the same convolutions ([`candle_twin::conv`]), batch norms,
/// activations, shortcut and sum.
pub fn basic_block(
    block: &BasicBlock,
    x: &Tensor,
    p: &BTreeMap<String, Tensor>,
) -> Result<Tensor> {
    let t = |name: &str| p.get(name).ok_or_else(|| anyhow!("no parameter {name}"));
    let conv = |x: &Tensor, w: &Tensor, layer: &crate::cnn::Conv2d| {
        let b = Tensor::zeros(layer.c_out(), DType::F64, x.device())?;
        candle_twin::conv(x, w, &b, layer)
    };
    let bn = |x: &Tensor, layer: &BatchNorm2d, name: &str| {
        batchnorm2d(
            layer,
            x,
            t(&format!("{name}.gamma"))?,
            t(&format!("{name}.beta"))?,
            Mode::Train,
        )
    };
    let h = conv(x, t("conv1.weight")?, &block.conv1.0)?;
    let h = activation(block.act1.kind, &bn(&h, &block.bn1, "bn1")?)?;
    let f = bn(
        &conv(&h, t("conv2.weight")?, &block.conv2.0)?,
        &block.bn2,
        "bn2",
    )?;
    let z = match &block.shortcut {
        Shortcut::None => f,
        Shortcut::Identity => (f + x)?,
        Shortcut::Projection(proj) => {
            let s = conv(x, t("shortcut.conv.weight")?, &proj.conv.0)?;
            (f + bn(&s, &proj.bn, "shortcut.bn")?)?
        }
    };
    activation(block.act2.kind, &z)
}

/// Candle's gradients (in `F64`) of $L = \langle \mathrm{block}(x), r\rangle$ for the
/// input and every parameter of the block, in training mode.
pub fn basic_block_grads(
    block: &mut BasicBlock,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> Result<Grads> {
    let vars = vars_of(block)?;
    let p: BTreeMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let y = basic_block(block, xv.as_tensor(), &p)?;
    grads(&y, r, &xv, &vars)
}
// ANCHOR_END: candle_block

/// The parameters whose names start with `prefix.`, with the prefix removed.
fn under(p: &BTreeMap<String, Tensor>, prefix: &str) -> BTreeMap<String, Tensor> {
    let dotted = format!("{prefix}.");
    p.iter()
        .filter_map(|(n, t)| Some((n.strip_prefix(&dotted)?.to_string(), t.clone())))
        .collect()
}

// ANCHOR: candle_resnet
/// Candle's gradients (in `F64`, training mode) of $L = \langle \mathrm{net}(x), r\rangle$
/// for the input `(n, 784)` and every parameter of `net`, the network [`resnet`] built
/// from `config`: the same stem, blocks (through [`basic_block`]), global average pool
/// and dense layer, on copies of `net`'s weights.
///
/// [`resnet`]: super::resnet::resnet
pub fn resnet_grads(
    config: &super::resnet::ResNetConfig,
    net: &mut dyn crate::nn::Layer,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> Result<Grads> {
    use rand::SeedableRng;
    let vars = vars_of(net)?;
    let p: BTreeMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let t = |name: &str| p.get(name).ok_or_else(|| anyhow!("no parameter {name}"));
    // Layers with the network's shapes and strides; their own weights are not used.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut c = config.width;
    let stem = crate::cnn::Conv2d::new(1, c, (3, 3), config.stem_stride, 1, &mut rng);
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let n = x.shape()[0];
    let h = xv.as_tensor().reshape((n, 1, 28, 28))?;
    let zero = Tensor::zeros(c, DType::F64, h.device())?;
    let h = candle_twin::conv(&h, t("stem.weight")?, &zero, &stem)?;
    let bn = BatchNorm2d::new(c);
    let mut h = batchnorm2d(
        &bn,
        &h,
        t("stem_bn.gamma")?,
        t("stem_bn.beta")?,
        Mode::Train,
    )?
    .relu()?;
    let mut k = 0;
    for (stage, &n_blocks) in config.blocks.iter().enumerate() {
        for b in 0..n_blocks {
            let (c_out, stride) = if stage > 0 && b == 0 {
                (2 * c, 2)
            } else {
                (c, 1)
            };
            k += 1;
            let shape = if config.residual {
                BasicBlock::residual(c, c_out, stride, &mut rng)
            } else {
                BasicBlock::plain(c, c_out, stride, &mut rng)
            };
            h = basic_block(&shape, &h, &under(&p, &format!("block{k}")))?;
            c = c_out;
        }
    }
    let h = h.mean(3)?.mean(2)?; // (n, c)
    let y = h
        .matmul(&t("fc.weight")?.t()?)?
        .broadcast_add(t("fc.bias")?)?;
    grads(&y, r, &xv, &vars)
}
// ANCHOR_END: candle_resnet
