//! The framework twin of the detector's head and loss: the same convolutions, the same
//! reshaping of channels into anchors, and the same multibox loss written with candle's
//! tensor operations, whose autograd (in `F64`) gives the third opinion on the gradients
//! derived by hand in [`ssd`](super::ssd) and [`multibox`](super::multibox).
//!
//! The selection of hard negatives is not differentiable (it chooses which terms enter
//! the loss): both sides take the same selection, computed once by
//! [`mine`](super::multibox::mine) from the scratch model's predictions.

use anyhow::{anyhow, Result};
use candle_core::{DType, Tensor, Var, D};
use ndarray::{Array2, Array3, ArrayD};

use super::ssd::Head;
use crate::cnn::candle_twin::conv;
use crate::nn::candle_twin::{to_array, to_tensor};
use crate::nn::gradcheck::Grads;

/// A 3x3 convolution's output `(n, A m, h, w)` as rows `(n, h w A, m)`, like the head.
fn rows(y: &Tensor, per_cell: usize) -> Result<Tensor> {
    let (n, ch, h, w) = y.dims4()?;
    let m = ch / per_cell;
    // (n, A, m, h, w) -> (n, h, w, A, m) -> (n, h w A, m)
    Ok(y.reshape((n, per_cell, m, h, w))?
        .permute((0, 3, 4, 1, 2))?
        .contiguous()?
        .reshape((n, h * w * per_cell, m))?)
}

// ANCHOR: twin_head
/// The head's output in candle, from the feature map `f` and the head's weights given as
/// tensors `(cls_w, cls_b, reg_w, reg_b)` (the regression pair absent without a box head).
pub fn head_forward(
    head: &Head,
    f: &Tensor,
    cls: (&Tensor, &Tensor),
    reg: Option<(&Tensor, &Tensor)>,
) -> Result<Tensor> {
    let scores = rows(&conv(f, cls.0, cls.1, &head.cls)?, head.per_cell)?;
    let deltas = match (reg, &head.reg) {
        (Some((w, b)), Some(layer)) => rows(&conv(f, w, b, layer)?, head.per_cell)?,
        _ => {
            let (n, r, _) = scores.dims3()?;
            Tensor::zeros((n, r, 4), scores.dtype(), scores.device())?
        }
    };
    Ok(Tensor::cat(&[&scores, &deltas], 2)?)
}

/// The multibox loss of `pred` `(n, anchors, K + 5)` in candle, for the per-anchor
/// `targets` `(n, anchors, 5)` and the given `selected` anchors.
pub fn multibox_loss(
    pred: &Tensor,
    targets: &Array3<f32>,
    selected: &Array2<bool>,
    box_weight: f64,
) -> Result<Tensor> {
    let (n, m, w) = pred.dims3()?;
    let k1 = w - 4;
    let dt = pred.dtype();
    let dev = pred.device();
    let mut onehot = vec![0f64; n * m * k1];
    let mut sel = vec![0f64; n * m];
    let mut pos = vec![0f64; n * m];
    let mut tgt = vec![0f64; n * m * 4];
    for i in 0..n {
        for a in 0..m {
            let label = targets[[i, a, 0]];
            let r = i * m + a;
            if label >= 0.0 && selected[[i, a]] {
                sel[r] = 1.0;
                onehot[r * k1 + label as usize] = 1.0;
            }
            if label >= 1.0 {
                pos[r] = 1.0;
                for d in 0..4 {
                    tgt[r * 4 + d] = f64::from(targets[[i, a, 1 + d]]);
                }
            }
        }
    }
    let n_pos = pos.iter().sum::<f64>().max(1.0);
    let t = |v: Vec<f64>, shape: &[usize]| -> Result<Tensor> {
        Ok(Tensor::from_vec(v, shape, dev)?.to_dtype(dt)?)
    };
    let onehot = t(onehot, &[n, m, k1])?;
    let sel = t(sel, &[n, m])?;
    let pos = t(pos, &[n, m, 1])?;
    let tgt = t(tgt, &[n, m, 4])?;
    let logp = candle_nn::ops::log_softmax(&pred.narrow(2, 0, k1)?, D::Minus1)?;
    let ce = ((logp * onehot)?.sum(D::Minus1)?.neg()? * sel)?.sum_all()?;
    // smooth-L1(u) = min(|u|, 1)^2 / 2 + (|u| - min(|u|, 1)), on the positives only.
    let u = pred.narrow(2, k1, 4)?.sub(&tgt)?.broadcast_mul(&pos)?;
    let a = u.abs()?;
    let c = a.broadcast_minimum(&Tensor::ones((), dt, dev)?)?;
    let sl1 = ((c.sqr()? * 0.5)? + (a - &c)?)?.sum_all()?;
    Ok(((ce + (sl1 * box_weight)?)? / n_pos)?)
}
// ANCHOR_END: twin_head

fn grad_of(g: &candle_core::backprop::GradStore, v: &Var) -> Result<ArrayD<f64>> {
    to_array(g.get(v).ok_or_else(|| anyhow!("no gradient"))?)
}

/// Candle's value of the multibox loss at `pred` and its gradient with respect to it.
pub fn loss_grad(
    pred: &ArrayD<f32>,
    targets: &Array3<f32>,
    selected: &Array2<bool>,
    box_weight: f32,
) -> Result<(f64, ArrayD<f64>)> {
    let p = Var::from_tensor(&to_tensor(pred, DType::F64)?)?;
    let l = multibox_loss(p.as_tensor(), targets, selected, f64::from(box_weight))?;
    let g = l.backward()?;
    Ok((l.to_scalar::<f64>()?, grad_of(&g, &p)?))
}

// ANCHOR: twin_grads
/// Candle's gradients (in `F64`) of the multibox loss of the head's output on the
/// feature map `f`, for the feature map and every parameter of `head`, named like them.
pub fn head_loss_grads(
    head: &Head,
    f: &ArrayD<f32>,
    targets: &Array3<f32>,
    selected: &Array2<bool>,
    box_weight: f32,
) -> Result<Grads> {
    let var = |a: &ArrayD<f32>| -> Result<Var> {
        Ok(Var::from_tensor(&to_tensor(a, DType::F64)?)?)
    };
    let x = var(f)?;
    let cw = var(&head.cls.weight.value)?;
    let cb = var(&head.cls.bias.value)?;
    let reg = match &head.reg {
        Some(r) => Some((var(&r.weight.value)?, var(&r.bias.value)?)),
        None => None,
    };
    let out = head_forward(
        head,
        x.as_tensor(),
        (cw.as_tensor(), cb.as_tensor()),
        reg.as_ref().map(|(w, b)| (w.as_tensor(), b.as_tensor())),
    )?;
    let l = multibox_loss(&out, targets, selected, f64::from(box_weight))?;
    let g = l.backward()?;
    let mut params = vec![
        ("cls.weight".to_string(), grad_of(&g, &cw)?),
        ("cls.bias".to_string(), grad_of(&g, &cb)?),
    ];
    if let Some((w, b)) = &reg {
        params.push(("reg.weight".into(), grad_of(&g, w)?));
        params.push(("reg.bias".into(), grad_of(&g, b)?));
    }
    Ok(Grads {
        dx: grad_of(&g, &x)?,
        params,
    })
}
// ANCHOR_END: twin_grads
