//! The LSTM, PyTorch's `nn.LSTM` (one layer, gates `i, f, g, o`); the derivation of its
//! backward pass is in the [module docs](super).
//!
//! **Forget-gate bias.** With PyTorch's initialization the forget gate starts near
//! $\sigma(0) = 1/2$: the cell halves its memory at every step before it has learned
//! anything, and the gradient along the cell path, $\bar c_{t-1} = f \odot \bar c_t$,
//! halves too. Gers, Schmidhuber and Cummins (2000) and Jozefowicz, Zaremba and
//! Sutskever (2015) start the forget gate's bias at 1 instead, so the cell keeps most of
//! its memory from the first step: [`Lstm::init_forget_bias`] sets the forget slice of
//! `bias_ih` to the value given and that of `bias_hh` to zero, so the gate's total bias
//! is exactly that value.

use ndarray::{s, Array2, ArrayD, Axis};
use rand::Rng;

use super::{batch_major, sigmoid, time_major, time_major_like, StateSlot, Weights};
use crate::gemm::sgemm;

/// An LSTM layer over a batch of sequences, returning every step's hidden state.
///
/// # Shapes
/// - input `x`: `(b, t, d_in)`
/// - output `y`: `(b, t, h)`, step `s` of sequence `i` is $h_{s+1}$ of that sequence
/// - initial and final states $h$ and $c$: `(b, h)` each
/// - parameters: see [`Weights`] with four gates, stacked `i, f, g, o`.
#[derive(Clone, Debug)]
pub struct Lstm {
    /// `weight_ih (4h, d_in)`, `weight_hh (4h, h)`, `bias_ih (4h)`, `bias_hh (4h)`.
    pub weights: Weights,
    /// When true, the final state of a `forward` is the initial state of the next,
    /// carried as a value (truncated BPTT);
    /// [`reset_state`](crate::nn::Module::reset_state) goes back to zeros.
    pub carry_state: bool,
    state: StateSlot,
    cache: Option<Cache>,
}

/// What backward needs, time-major.
#[derive(Clone, Debug)]
struct Cache {
    /// `(t b, d_in)`.
    x: Array2<f32>,
    /// $h_0, \dots, h_T$: `((t + 1) b, h)`.
    hs: Array2<f32>,
    /// $c_0, \dots, c_T$: `((t + 1) b, h)`.
    cs: Array2<f32>,
    /// The gate activations $i, f, g, o$ of every step: `(t b, 4h)`.
    gates: Array2<f32>,
    /// $\tanh(c_t)$ of every step: `(t b, h)`.
    tc: Array2<f32>,
    b: usize,
    t: usize,
}

// ANCHOR: lstm_cell
/// One step of one sequence, in place: `gates` holds the pre-activations
/// $a^i, a^f, a^g, a^o$ (each of width `h`) and leaves with the activations
/// $i, f, g, o$; writes $c_t$, $\tanh c_t$ and $h_t$.
fn cell(gates: &mut [f32], c_prev: &[f32], c: &mut [f32], tc: &mut [f32], h: &mut [f32]) {
    let n = c.len();
    let (gi, rest) = gates.split_at_mut(n);
    let (gf, rest) = rest.split_at_mut(n);
    let (gg, go) = rest.split_at_mut(n);
    for j in 0..n {
        let (i, f) = (sigmoid(gi[j]), sigmoid(gf[j]));
        let (g, o) = (gg[j].tanh(), sigmoid(go[j]));
        (gi[j], gf[j], gg[j], go[j]) = (i, f, g, o);
        c[j] = f * c_prev[j] + i * g;
        tc[j] = c[j].tanh();
        h[j] = o * tc[j];
    }
}

/// The backward pass of [`cell`] for one sequence: from $\bar h_t$ (`dh`) and the
/// $\bar c_t$ that comes back from step $t + 1$ (`dc`), writes the pre-activation
/// gradients `da` and leaves $\bar c_{t-1}$ in `dc`.
fn cell_backward(
    gates: &[f32],
    c_prev: &[f32],
    tc: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    da: &mut [f32],
) {
    let n = dc.len();
    let (dai, rest) = da.split_at_mut(n);
    let (daf, rest) = rest.split_at_mut(n);
    let (dag, dao) = rest.split_at_mut(n);
    for j in 0..n {
        let (i, f, g, o) = (gates[j], gates[n + j], gates[2 * n + j], gates[3 * n + j]);
        let dc_t = dc[j] + dh[j] * o * (1.0 - tc[j] * tc[j]);
        dai[j] = dc_t * g * i * (1.0 - i);
        daf[j] = dc_t * c_prev[j] * f * (1.0 - f);
        dag[j] = dc_t * i * (1.0 - g * g);
        dao[j] = dh[j] * tc[j] * o * (1.0 - o);
        dc[j] = dc_t * f; // the cell path back in time: only the forget gate
    }
}
// ANCHOR_END: lstm_cell

impl Lstm {
    /// A `d_in -> hidden` layer with PyTorch's initialization, drawn from `rng`.
    pub fn new(d_in: usize, hidden: usize, rng: &mut impl Rng) -> Self {
        Lstm {
            weights: Weights::new(d_in, hidden, 4, rng),
            carry_state: false,
            state: StateSlot::default(),
            cache: None,
        }
    }

    // ANCHOR: forget_bias
    /// Starts the forget gate's total bias at `value` (1 is the usual choice): the
    /// forget slice `h..2h` of `bias_ih` is set to `value` and that of `bias_hh` to zero.
    pub fn init_forget_bias(mut self, value: f32) -> Self {
        let h = self.hidden();
        self.weights
            .bias_ih
            .value
            .slice_mut(s![h..2 * h])
            .fill(value);
        self.weights.bias_hh.value.slice_mut(s![h..2 * h]).fill(0.0);
        self
    }
    // ANCHOR_END: forget_bias

    /// The hidden width `h`.
    pub fn hidden(&self) -> usize {
        self.weights.hidden()
    }

    /// Sets the initial states `h0` and `c0` `(b, h)` of the next forward passes (every
    /// one without `carry_state`, the next one with it).
    pub fn set_initial_state(&mut self, h0: Array2<f32>, c0: Array2<f32>) {
        assert_eq!(
            h0.dim(),
            c0.dim(),
            "Lstm::set_initial_state: h0 {:?} vs c0 {:?}",
            h0.shape(),
            c0.shape()
        );
        self.state.set(vec![h0, c0]);
    }

    /// The final states $(h_T, c_T)$ of the last forward pass, `(b, h)` each.
    pub fn final_state(&self) -> Option<(&Array2<f32>, &Array2<f32>)> {
        Some((self.state.last(0)?, self.state.last(1)?))
    }

    /// $\partial L / \partial h_0$ from the last backward pass, `(b, h)`.
    pub fn dh0(&self) -> Option<&Array2<f32>> {
        self.state.grad(0)
    }

    /// $\partial L / \partial c_0$ from the last backward pass, `(b, h)`.
    pub fn dc0(&self) -> Option<&Array2<f32>> {
        self.state.grad(1)
    }

    /// BPTT over the steps of the last forward pass; `dx` only when `need_dx`.
    fn backward_seq(&mut self, dy: &ArrayD<f32>, need_dx: bool) -> Option<ArrayD<f32>> {
        let h = self.hidden();
        let Cache {
            x,
            hs,
            cs,
            gates,
            tc,
            b,
            t,
        } = self
            .cache
            .as_ref()
            .expect("Lstm::backward called before forward");
        let (b, t) = (*b, *t);
        let dy = time_major_like(dy, (b, t, h), "Lstm::backward"); // (t b, h)
        let w_hh = self.weights.w_hh();
        let mut da = Array2::<f32>::zeros((t * b, 4 * h)); // dL/da_s of every step
        let mut dh = Array2::<f32>::zeros((b, h)); // dL/dh_s, from step s + 1 and y_s
        let mut dc = Array2::<f32>::zeros((b, h)); // dL/dc_s, from step s + 1
        for step in (0..t).rev() {
            let rows = step * b..(step + 1) * b;
            dh += &dy.slice(s![rows.clone(), ..]);
            let mut da_s = da.slice_mut(s![rows.clone(), ..]);
            let g_s = gates.slice(s![rows.clone(), ..]);
            let tc_s = tc.slice(s![rows.clone(), ..]);
            let c_prev = cs.slice(s![rows, ..]);
            for (k, mut da_row) in da_s.rows_mut().into_iter().enumerate() {
                cell_backward(
                    g_s.row(k).as_slice().expect("contiguous"),
                    c_prev.row(k).as_slice().expect("contiguous"),
                    tc_s.row(k).as_slice().expect("contiguous"),
                    dh.row(k).as_slice().expect("contiguous"),
                    dc.row_mut(k).into_slice().expect("contiguous"),
                    da_row.as_slice_mut().expect("contiguous"),
                );
            }
            sgemm(1.0, &da_s.view(), &w_hh, 0.0, &mut dh.view_mut()); // dL/dh_{s-1}
        }
        self.state.grad = Some(vec![dh, dc]);
        let h_prev = hs.slice(s![..t * b, ..]); // h_0 .. h_{T-1}
        let dx = self.weights.accumulate(x, &h_prev, &da, &da, need_dx);
        dx.map(|m| batch_major(m.view(), b, t))
    }
}

// ANCHOR: lstm_layer
impl Lstm {
    /// The forward pass of [`Layer::forward`](crate::nn::Layer::forward): every step's
    /// state, caching what BPTT needs.
    fn forward_seq(&mut self, x: &ArrayD<f32>) -> ArrayD<f32> {
        let h = self.hidden();
        let (x, b, t) = time_major(x, self.weights.d_in(), "Lstm::forward"); // (t b, d_in)
        let mut init = self.state.start(2, b, h, "Lstm::forward");
        let (mut hs, mut cs) = (
            Array2::zeros(((t + 1) * b, h)),
            Array2::zeros(((t + 1) * b, h)),
        );
        cs.slice_mut(s![..b, ..]).assign(&init.pop().expect("c0"));
        hs.slice_mut(s![..b, ..]).assign(&init.pop().expect("h0"));
        let mut gates = self.weights.project(&x, true); // x W_ih^T + b_ih + b_hh, (t b, 4h)
        let mut tc = Array2::zeros((t * b, h));
        for step in 0..t {
            let rows = step * b..(step + 1) * b;
            let mut g_s = gates.slice_mut(s![rows.clone(), ..]);
            let (h_done, mut h_rest) = hs.view_mut().split_at(Axis(0), (step + 1) * b);
            self.weights
                .recur(&h_done.slice(s![step * b.., ..]), &mut g_s);
            let (c_done, mut c_rest) = cs.view_mut().split_at(Axis(0), (step + 1) * b);
            let c_prev = c_done.slice(s![step * b.., ..]);
            let mut tc_s = tc.slice_mut(s![rows, ..]);
            for k in 0..b {
                cell(
                    g_s.row_mut(k).into_slice().expect("contiguous"),
                    c_prev.row(k).to_slice().expect("contiguous"),
                    c_rest.row_mut(k).into_slice().expect("contiguous"),
                    tc_s.row_mut(k).into_slice().expect("contiguous"),
                    h_rest.row_mut(k).into_slice().expect("contiguous"),
                );
            }
        }
        let last = |m: &Array2<f32>| m.slice(s![t * b.., ..]).to_owned();
        self.state
            .finish(vec![last(&hs), last(&cs)], self.carry_state);
        let y = batch_major(hs.slice(s![b.., ..]), b, t); // (b, t, h)
        self.cache = Some(Cache {
            x,
            hs,
            cs,
            gates,
            tc,
            b,
            t,
        });
        y
    }
}
// ANCHOR_END: lstm_layer

super::recurrent_layer!(Lstm);
