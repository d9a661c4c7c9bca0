//! The framework twin: candle's `conv2d` and pooling, whose autograd (in `F64`) gives the
//! third opinion on every gradient of this module.
//!
//! Weights are copied from the from-scratch layers, so both sides compute the same
//! function. Candle's own `max_pool2d` and `avg_pool2d` only support a backward pass
//! when the stride equals the kernel, so for the gradient checks the pooling windows are
//! gathered with `index_select` (differentiable for any stride) and reduced with `max`
//! or `mean`; [`max_pool_builtin`] and [`avg_pool_builtin`] are candle's own ops, used to
//! check the forward passes and, for non-overlapping windows, the built-in backward.

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use ndarray::ArrayD;

use super::conv::Conv2d;
use super::depthwise::GroupedConv2d;
use super::pad::ZeroPad2d;
use crate::nn::candle_twin::{to_array, to_tensor};
use crate::nn::gradcheck::Grads;

/// $\langle y, r \rangle$ as a candle scalar.
fn contract(y: &Tensor, r: &ArrayD<f32>) -> Result<Tensor> {
    Ok((y * to_tensor(r, y.dtype())?)?.sum_all()?)
}

fn grad_of(g: &candle_core::backprop::GradStore, v: &Var) -> Result<ArrayD<f64>> {
    to_array(g.get(v).ok_or_else(|| anyhow!("no gradient"))?)
}

/// Candle's convolution of `x` with the layer's weights, in `F64`.
pub fn conv2d_forward(layer: &Conv2d, x: &ArrayD<f32>) -> Result<ArrayD<f64>> {
    let w = to_tensor(&layer.weight.value, DType::F64)?;
    let b = to_tensor(&layer.bias.value, DType::F64)?;
    let y = conv(&to_tensor(x, DType::F64)?, &w, &b, layer)?;
    to_array(&y)
}

/// The convolution of `x` with weights `w` and bias `b` in candle, with the stride and
/// padding of `layer` (whose own weights are not used). The padding is applied explicitly and the rows and columns
/// that no receptive field reaches (when the stride does not divide the padded input)
/// are cut off before calling `conv2d` with zero padding: the same function, but it
/// sidesteps a limitation of candle 0.11's `conv2d` backward, which derives the
/// `output_padding` of its transposed convolution from the height alone and so fails
/// ("shape mismatch in add") when the two axes leave different remainders.
pub fn conv(x: &Tensor, w: &Tensor, b: &Tensor, layer: &Conv2d) -> Result<Tensor> {
    let (_, _, h, wd) = x.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    let (s, p) = (layer.stride, layer.padding);
    let (ho, wo) = (super::out_size(h, kh, s, p), super::out_size(wd, kw, s, p));
    let xp = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
    let xp = xp
        .narrow(2, 0, (ho - 1) * s + kh)?
        .narrow(3, 0, (wo - 1) * s + kw)?;
    let y = xp.conv2d(w, 0, s, 1, 1)?;
    Ok(y.broadcast_add(&b.reshape((1, layer.c_out(), 1, 1))?)?)
}

// ANCHOR: candle_conv
/// Candle's gradients (in `F64`) of $L = \langle \mathrm{conv}(x), r\rangle$ for the input
/// and the weights of `layer`, named like the layer's parameters.
pub fn conv2d_grads(layer: &Conv2d, x: &ArrayD<f32>, r: &ArrayD<f32>) -> Result<Grads> {
    let w = Var::from_tensor(&to_tensor(&layer.weight.value, DType::F64)?)?;
    let b = Var::from_tensor(&to_tensor(&layer.bias.value, DType::F64)?)?;
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let loss = contract(
        &conv(xv.as_tensor(), w.as_tensor(), b.as_tensor(), layer)?,
        r,
    )?;
    let g = loss.backward()?;
    Ok(Grads {
        dx: grad_of(&g, &xv)?,
        params: vec![
            ("weight".into(), grad_of(&g, &w)?),
            ("bias".into(), grad_of(&g, &b)?),
        ],
    })
}
// ANCHOR_END: candle_conv

/// The pooling windows of `x` `(n, c, h, w)` stacked on a new last axis:
/// `(n, c, h_out, w_out, kh kw)`, gathered with `index_select` so any stride works.
pub fn windows(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let ho = super::out_size(h, kernel.0, stride.0, 0);
    let wo = super::out_size(w, kernel.1, stride.1, 0);
    let mut parts = vec![];
    for p in 0..kernel.0 {
        let rows: Vec<u32> = (0..ho).map(|i| (i * stride.0 + p) as u32).collect();
        let rows = Tensor::from_vec(rows, ho, &Device::Cpu)?;
        let xr = x.index_select(&rows, 2)?;
        for q in 0..kernel.1 {
            let cols: Vec<u32> = (0..wo).map(|j| (j * stride.1 + q) as u32).collect();
            let cols = Tensor::from_vec(cols, wo, &Device::Cpu)?;
            parts.push(xr.index_select(&cols, 3)?);
        }
    }
    Ok(Tensor::stack(&parts, D::Minus1)?)
}

/// How a candle pooling check reduces each window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// The maximum.
    Max,
    /// The mean.
    Avg,
}

// ANCHOR: candle_pool
/// Candle's gradient (in `F64`) of $L = \langle \mathrm{pool}(x), r\rangle$, with the
/// windows gathered by [`windows`] and reduced by `max` or `mean`.
pub fn pool_grads(
    kind: PoolKind,
    kernel: (usize, usize),
    stride: (usize, usize),
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> Result<Grads> {
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let win = windows(xv.as_tensor(), kernel, stride)?;
    let y = match kind {
        PoolKind::Max => win.max(D::Minus1)?,
        PoolKind::Avg => win.mean(D::Minus1)?,
    };
    let g = contract(&y, r)?.backward()?;
    Ok(Grads {
        dx: grad_of(&g, &xv)?,
        params: vec![],
    })
}
// ANCHOR_END: candle_pool

/// Candle's built-in `max_pool2d_with_stride` in `F64`: its output and, through its own
/// backward pass (which requires `stride == kernel`), the gradient of
/// $\langle y, r\rangle$.
pub fn max_pool_builtin(
    kernel: (usize, usize),
    stride: (usize, usize),
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> Result<(ArrayD<f64>, Result<ArrayD<f64>>)> {
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let y = xv.as_tensor().max_pool2d_with_stride(kernel, stride)?;
    let dx = contract(&y, r)
        .and_then(|l| Ok(l.backward()?))
        .and_then(|g| grad_of(&g, &xv));
    Ok((to_array(&y)?, dx))
}

/// Candle's built-in `avg_pool2d_with_stride` in `F64`: its output and, through its own
/// backward pass (which requires `stride == kernel`), the gradient of
/// $\langle y, r\rangle$.
pub fn avg_pool_builtin(
    kernel: (usize, usize),
    stride: (usize, usize),
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> Result<(ArrayD<f64>, Result<ArrayD<f64>>)> {
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let y = xv.as_tensor().avg_pool2d_with_stride(kernel, stride)?;
    let dx = contract(&y, r)
        .and_then(|l| Ok(l.backward()?))
        .and_then(|g| grad_of(&g, &xv));
    Ok((to_array(&y)?, dx))
}

/// Candle's gradient (in `F64`) of $L = \langle \mathrm{mean}_{h,w}(x), r\rangle$
/// (global average pooling).
pub fn global_avg_pool_grads(x: &ArrayD<f32>, r: &ArrayD<f32>) -> Result<Grads> {
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let y = xv.as_tensor().mean(D::Minus1)?.mean(D::Minus1)?;
    let g = contract(&y, r)?.backward()?;
    Ok(Grads {
        dx: grad_of(&g, &xv)?,
        params: vec![],
    })
}

/// Candle's gradient (in `F64`) of $L = \langle \mathrm{flatten}(x), r\rangle$.
pub fn flatten_grads(x: &ArrayD<f32>, r: &ArrayD<f32>) -> Result<Grads> {
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let y = xv.as_tensor().flatten_from(1)?;
    let g = contract(&y, r)?.backward()?;
    Ok(Grads {
        dx: grad_of(&g, &xv)?,
        params: vec![],
    })
}

/// Candle's grouped convolution of `x` with weights `w` `(c_out, c_in/groups, kh, kw)`
/// and an optional bias `b` `(c_out,)`: `Tensor::conv2d(.., groups)`, with the padding
/// applied explicitly and the unreachable rows and columns cut off first, as in
/// [`conv`].
pub fn grouped_conv(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    let (_, _, h, wd) = x.dims4()?;
    let (co, _, kh, kw) = w.dims4()?;
    let (s, p) = (stride, padding);
    let (ho, wo) = (super::out_size(h, kh, s, p), super::out_size(wd, kw, s, p));
    let xp = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
    let xp = xp
        .narrow(2, 0, (ho - 1) * s + kh)?
        .narrow(3, 0, (wo - 1) * s + kw)?;
    let y = xp.conv2d(w, 0, s, 1, groups)?;
    Ok(match b {
        Some(b) => y.broadcast_add(&b.reshape((1, co, 1, 1))?)?,
        None => y,
    })
}

/// Candle's output (in `F64`) of the grouped convolution `layer` on `x`.
pub fn grouped_conv2d_forward(
    layer: &GroupedConv2d,
    x: &ArrayD<f32>,
) -> Result<ArrayD<f64>> {
    let w = to_tensor(&layer.weight.value, DType::F64)?;
    let b = match &layer.bias {
        Some(b) => Some(to_tensor(&b.value, DType::F64)?),
        None => None,
    };
    let x = to_tensor(x, DType::F64)?;
    let y = grouped_conv(
        &x,
        &w,
        b.as_ref(),
        layer.stride,
        layer.padding,
        layer.groups,
    )?;
    to_array(&y)
}

// ANCHOR: candle_grouped
/// Candle's gradients (in `F64`) of $L = \langle \mathrm{conv}(x), r\rangle$ for the input,
/// the weights and (if the layer has one) the bias of the grouped convolution `layer`.
pub fn grouped_conv2d_grads(
    layer: &GroupedConv2d,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> Result<Grads> {
    let w = Var::from_tensor(&to_tensor(&layer.weight.value, DType::F64)?)?;
    let b = match &layer.bias {
        Some(b) => Some(Var::from_tensor(&to_tensor(&b.value, DType::F64)?)?),
        None => None,
    };
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let y = grouped_conv(
        xv.as_tensor(),
        w.as_tensor(),
        b.as_ref().map(|b| b.as_tensor()),
        layer.stride,
        layer.padding,
        layer.groups,
    )?;
    let g = contract(&y, r)?.backward()?;
    let mut params = vec![("weight".to_string(), grad_of(&g, &w)?)];
    if let Some(b) = &b {
        params.push(("bias".into(), grad_of(&g, b)?));
    }
    Ok(Grads {
        dx: grad_of(&g, &xv)?,
        params,
    })
}
// ANCHOR_END: candle_grouped

/// ReLU6, $\min(\max(x, 0), 6)$, with candle ops (`clamp` is a `maximum` then a
/// `minimum`, both differentiable).
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    Ok(x.clamp(0.0, 6.0)?)
}

/// Candle's gradient (in `F64`) of $L = \langle \mathrm{ReLU6}(x), r\rangle$.
pub fn relu6_grads(x: &ArrayD<f32>, r: &ArrayD<f32>) -> Result<Grads> {
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let g = contract(&relu6(xv.as_tensor())?, r)?.backward()?;
    Ok(Grads {
        dx: grad_of(&g, &xv)?,
        params: vec![],
    })
}

/// Candle's zero padding, `pad_with_zeros` on the two spatial axes.
pub fn zero_pad(x: &Tensor, pad: &ZeroPad2d) -> Result<Tensor> {
    Ok(x.pad_with_zeros(2, pad.top, pad.bottom)?
        .pad_with_zeros(3, pad.left, pad.right)?)
}

/// Candle's gradient (in `F64`) of $L = \langle \mathrm{pad}(x), r\rangle$.
pub fn zero_pad_grads(
    pad: &ZeroPad2d,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> Result<Grads> {
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let g = contract(&zero_pad(xv.as_tensor(), pad)?, r)?.backward()?;
    Ok(Grads {
        dx: grad_of(&g, &xv)?,
        params: vec![],
    })
}
