//! The framework twin: the three cells written again in candle ops, unrolled over the
//! sequence, whose autograd (in `F64`) gives the third opinion on every gradient of the
//! recurrent layers; and the bridge to candle-nn's own `LSTM` and `GRU`.
//!
//! The twin is built from a layer's parameters, so both sides compute the same function.
//! Its step is written the way the equations read (two products and the gate algebra),
//! with none of the from-scratch layer's restructuring (the input projection hoisted out
//! of the loop, the gradients of all steps stacked into one product): agreement checks
//! that restructuring too.
//!
//! candle-nn names a layer's parameters as PyTorch does, with the layer index suffix
//! (`weight_ih_l0`); [`candle_nn_varmap`] fills a `VarMap` with a layer's weights under
//! those names, so `candle_nn::rnn::lstm` and `gru` load them with no reshuffling.

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, IndexOp, Tensor, Var};
use candle_nn::VarMap;
use ndarray::ArrayD;

use super::Weights;
use crate::nn::candle_twin::{to_array, to_tensor};
use crate::nn::gradcheck::Grads;

/// Which recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// $h_t = \tanh(a_t)$.
    Rnn,
    /// Gates `i, f, g, o` and a cell state.
    Lstm,
    /// Gates `r, z, n`.
    Gru,
}

impl Cell {
    /// The number of gates `G`.
    pub fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }

    /// The number of state tensors: 2 for the LSTM ($h$, $c$), 1 otherwise.
    pub fn n_states(self) -> usize {
        if self == Cell::Lstm {
            2
        } else {
            1
        }
    }
}

/// A layer's four parameters as candle variables.
#[derive(Clone, Debug)]
pub struct CandleWeights {
    /// `(G h, d_in)`.
    pub w_ih: Var,
    /// `(G h, h)`.
    pub w_hh: Var,
    /// `(G h,)`.
    pub b_ih: Var,
    /// `(G h,)`.
    pub b_hh: Var,
}

impl CandleWeights {
    /// Copies of `w` in `dtype`.
    pub fn new(w: &Weights, dtype: DType) -> Result<Self> {
        let var = |a: &ArrayD<f32>| -> Result<Var> {
            Ok(Var::from_tensor(&to_tensor(a, dtype)?)?)
        };
        Ok(CandleWeights {
            w_ih: var(&w.weight_ih.value)?,
            w_hh: var(&w.weight_hh.value)?,
            b_ih: var(&w.bias_ih.value)?,
            b_hh: var(&w.bias_hh.value)?,
        })
    }

    /// The input side $x W_{ih}^\top + b_{ih}$ and the hidden side
    /// $h W_{hh}^\top + b_{hh}$ of a step, `(b, G h)` each.
    fn sides(&self, x: &Tensor, h: &Tensor) -> Result<(Tensor, Tensor)> {
        let xi = x.matmul(&self.w_ih.t()?)?.broadcast_add(&self.b_ih)?;
        let hh = h.matmul(&self.w_hh.t()?)?.broadcast_add(&self.b_hh)?;
        Ok((xi, hh))
    }
}

// ANCHOR: candle_cells
/// One step of `cell` on `x` `(b, d_in)` from `state` (`[h]`, or `[h, c]` for the LSTM),
/// in candle ops; returns the new state.
pub fn step(
    cell: Cell,
    w: &CandleWeights,
    x: &Tensor,
    state: &[Tensor],
) -> Result<Vec<Tensor>> {
    let sig = |t: &Tensor| candle_nn::ops::sigmoid(t);
    let (xi, hh) = w.sides(x, &state[0])?;
    Ok(match cell {
        Cell::Rnn => vec![(xi + hh)?.tanh()?],
        Cell::Lstm => {
            let a = (xi + hh)?.chunk(4, 1)?;
            let (i, f, g, o) = (sig(&a[0])?, sig(&a[1])?, a[2].tanh()?, sig(&a[3])?);
            let c = ((f * &state[1])? + (i * g)?)?;
            vec![(o * c.tanh()?)?, c]
        }
        Cell::Gru => {
            let (xi, hh) = (xi.chunk(3, 1)?, hh.chunk(3, 1)?);
            let r = sig(&(&xi[0] + &hh[0])?)?;
            let z = sig(&(&xi[1] + &hh[1])?)?;
            let n = (&xi[2] + (r * &hh[2])?)?.tanh()?;
            let one_minus_z = z.affine(-1.0, 1.0)?;
            vec![((one_minus_z * n)? + (z * &state[0])?)?]
        }
    })
}

/// `cell` unrolled over `x` `(b, t, d_in)` from `init`: every step's $h$ stacked,
/// `(b, t, h)`, and the final state.
pub fn sequence(
    cell: Cell,
    w: &CandleWeights,
    x: &Tensor,
    init: &[Tensor],
) -> Result<(Tensor, Vec<Tensor>)> {
    let (_, t, _) = x.dims3()?;
    let mut state = init.to_vec();
    let mut hs = Vec::with_capacity(t);
    for s in 0..t {
        state = step(cell, w, &x.i((.., s, ..))?.contiguous()?, &state)?;
        hs.push(state[0].clone());
    }
    Ok((Tensor::stack(&hs, 1)?, state))
}
// ANCHOR_END: candle_cells

// ANCHOR: candle_sequence_grads
/// Candle's gradients (in `F64`) of $L = \langle y, r\rangle$, $y$ the outputs of every
/// step of `cell` with weights `w` on `x` `(b, t, d_in)` from the initial state `init`
/// (`[h0]` or `[h0, c0]`, `(b, h)` each): the input, the four parameters by the layer's
/// names, then the initial state as `h0` (and `c0`).
pub fn sequence_grads(
    cell: Cell,
    w: &Weights,
    x: &ArrayD<f32>,
    init: &[ArrayD<f32>],
    r: &ArrayD<f32>,
) -> Result<Grads> {
    let cw = CandleWeights::new(w, DType::F64)?;
    let xv = Var::from_tensor(&to_tensor(x, DType::F64)?)?;
    let sv = init
        .iter()
        .map(|s| Ok(Var::from_tensor(&to_tensor(s, DType::F64)?)?))
        .collect::<Result<Vec<Var>>>()?;
    let st: Vec<Tensor> = sv.iter().map(|v| v.as_tensor().clone()).collect();
    let (y, _) = sequence(cell, &cw, xv.as_tensor(), &st)?;
    let loss = (y * to_tensor(r, DType::F64)?)?.sum_all()?;
    let g = loss.backward()?;
    let grad = |v: &Var| to_array(g.get(v).ok_or_else(|| anyhow!("no gradient"))?);
    let mut params = vec![
        ("weight_ih".to_string(), grad(&cw.w_ih)?),
        ("weight_hh".to_string(), grad(&cw.w_hh)?),
        ("bias_ih".to_string(), grad(&cw.b_ih)?),
        ("bias_hh".to_string(), grad(&cw.b_hh)?),
    ];
    for (name, v) in ["h0", "c0"].iter().zip(&sv) {
        params.push((name.to_string(), grad(v)?));
    }
    Ok(Grads {
        dx: grad(&xv)?,
        params,
    })
}
// ANCHOR_END: candle_sequence_grads

/// The outputs `(b, t, h)` and final state of `cell` with weights `w` on `x` from `init`,
/// computed by the twin in `F64`.
pub fn sequence_forward(
    cell: Cell,
    w: &Weights,
    x: &ArrayD<f32>,
    init: &[ArrayD<f32>],
) -> Result<(ArrayD<f64>, Vec<ArrayD<f64>>)> {
    let cw = CandleWeights::new(w, DType::F64)?;
    let st = init
        .iter()
        .map(|s| to_tensor(s, DType::F64))
        .collect::<Result<Vec<Tensor>>>()?;
    let (y, last) = sequence(cell, &cw, &to_tensor(x, DType::F64)?, &st)?;
    Ok((
        to_array(&y)?,
        last.iter().map(to_array).collect::<Result<_>>()?,
    ))
}

// ANCHOR: candle_nn_varmap
/// A `VarMap` holding `w` in `dtype` under candle-nn's (and PyTorch's) names for a
/// one-layer network: `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`.
pub fn candle_nn_varmap(w: &Weights, dtype: DType) -> Result<VarMap> {
    let map = VarMap::new();
    {
        let mut data = map
            .data()
            .lock()
            .map_err(|_| anyhow!("candle_nn_varmap: poisoned lock"))?;
        for (name, p) in [
            ("weight_ih", &w.weight_ih),
            ("weight_hh", &w.weight_hh),
            ("bias_ih", &w.bias_ih),
            ("bias_hh", &w.bias_hh),
        ] {
            let t = to_tensor(&p.value, dtype)?.to_device(&Device::Cpu)?;
            data.insert(format!("{name}_l0"), Var::from_tensor(&t)?);
        }
    }
    Ok(map)
}
// ANCHOR_END: candle_nn_varmap
