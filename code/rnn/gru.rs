//! The GRU, PyTorch's `nn.GRU` (one layer, gates `r, z, n`, the reset gate applied to
//! $h_{t-1} W_{hn}^\top + b_{hn}$); the derivation of its backward pass is in the
//! [module docs](super).
//!
//! Because the reset gate multiplies the hidden side of the candidate after its product
//! with $W_{hn}$ and its bias, the two biases of the candidate are not interchangeable as
//! they are for the other gates: $b_{in}$ is added outside the product with $r$, $b_{hn}$
//! inside. So the input projection carries $b_{ih}$ alone, and each step's hidden-side
//! product carries $b_{hh}$.

use ndarray::{s, Array2, ArrayD, Axis, Ix1};

use super::{batch_major, sigmoid, time_major, time_major_like, StateSlot, Weights};
use crate::gemm::sgemm;

/// A GRU layer over a batch of sequences, returning every step's hidden state.
///
/// # Shapes
/// - input `x`: `(b, t, d_in)`
/// - output `y`: `(b, t, h)`, step `s` of sequence `i` is $h_{s+1}$ of that sequence
/// - initial and final state: `(b, h)`
/// - parameters: see [`Weights`] with three gates, stacked `r, z, n`.
#[derive(Clone, Debug)]
pub struct Gru {
    /// `weight_ih (3h, d_in)`, `weight_hh (3h, h)`, `bias_ih (3h)`, `bias_hh (3h)`.
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
    /// The gate activations $r, z, n$ of every step: `(t b, 3h)`.
    gates: Array2<f32>,
    /// $u = h_{t-1} W_{hn}^\top + b_{hn}$ of every step: `(t b, h)`.
    u: Array2<f32>,
    b: usize,
    t: usize,
}

// ANCHOR: gru_cell
/// One step of one sequence, in place: `gates` holds the input-side pre-activations
/// (`x W_ih^T + b_ih`, slices `r, z, n`) and leaves with the activations $r, z, n$;
/// `hp` is the hidden side $h_{t-1} W_{hh}^\top + b_{hh}$. Writes
/// $u = $ `hp`'s candidate slice and $h_t$.
fn cell(gates: &mut [f32], hp: &[f32], h_prev: &[f32], u: &mut [f32], h: &mut [f32]) {
    let n = h.len();
    for j in 0..n {
        let r = sigmoid(gates[j] + hp[j]);
        let z = sigmoid(gates[n + j] + hp[n + j]);
        let c = (gates[2 * n + j] + r * hp[2 * n + j]).tanh();
        (gates[j], gates[n + j], gates[2 * n + j]) = (r, z, c);
        u[j] = hp[2 * n + j];
        h[j] = (1.0 - z) * c + z * h_prev[j];
    }
}

/// The backward pass of [`cell`] for one sequence: from $\bar h_t$ in `dh`, writes the
/// input-side and hidden-side pre-activation gradients and leaves the direct part of
/// $\bar h_{t-1}$, $\bar h_t \odot z$, in `dh`.
fn cell_backward(
    gates: &[f32],
    u: &[f32],
    h_prev: &[f32],
    dh: &mut [f32],
    da_ih: &mut [f32],
    da_hh: &mut [f32],
) {
    let n = dh.len();
    for j in 0..n {
        let (r, z, c) = (gates[j], gates[n + j], gates[2 * n + j]);
        let dac = dh[j] * (1.0 - z) * (1.0 - c * c);
        let dar = dac * u[j] * r * (1.0 - r);
        let daz = dh[j] * (h_prev[j] - c) * z * (1.0 - z);
        (da_ih[j], da_ih[n + j], da_ih[2 * n + j]) = (dar, daz, dac);
        (da_hh[j], da_hh[n + j], da_hh[2 * n + j]) = (dar, daz, dac * r);
        dh[j] *= z;
    }
}
// ANCHOR_END: gru_cell

one_state_layer!(Gru, 3);

impl Gru {
    /// BPTT over the steps of the last forward pass; `dx` only when `need_dx`.
    fn backward_seq(&mut self, dy: &ArrayD<f32>, need_dx: bool) -> Option<ArrayD<f32>> {
        let h = self.hidden();
        let Cache {
            x,
            hs,
            gates,
            u,
            b,
            t,
        } = self
            .cache
            .as_ref()
            .expect("Gru::backward called before forward");
        let (b, t) = (*b, *t);
        let dy = time_major_like(dy, (b, t, h), "Gru::backward"); // (t b, h)
        let w_hh = self.weights.w_hh();
        let mut da_ih = Array2::<f32>::zeros((t * b, 3 * h));
        let mut da_hh = Array2::<f32>::zeros((t * b, 3 * h));
        let mut dh = Array2::<f32>::zeros((b, h)); // dL/dh_s, from step s + 1 and y_s
        for step in (0..t).rev() {
            let rows = step * b..(step + 1) * b;
            dh += &dy.slice(s![rows.clone(), ..]);
            let g_s = gates.slice(s![rows.clone(), ..]);
            let u_s = u.slice(s![rows.clone(), ..]);
            let h_prev = hs.slice(s![rows.clone(), ..]);
            let mut di_s = da_ih.slice_mut(s![rows.clone(), ..]);
            let mut dh_s = da_hh.slice_mut(s![rows, ..]);
            for k in 0..b {
                cell_backward(
                    g_s.row(k).to_slice().expect("contiguous"),
                    u_s.row(k).to_slice().expect("contiguous"),
                    h_prev.row(k).to_slice().expect("contiguous"),
                    dh.row_mut(k).into_slice().expect("contiguous"),
                    di_s.row_mut(k).into_slice().expect("contiguous"),
                    dh_s.row_mut(k).into_slice().expect("contiguous"),
                );
            }
            sgemm(1.0, &dh_s.view(), &w_hh, 1.0, &mut dh.view_mut()); // + through W_hh
        }
        self.state.grad = Some(vec![dh]);
        let h_prev = hs.slice(s![..t * b, ..]); // h_0 .. h_{T-1}
        let dx = self.weights.accumulate(x, &h_prev, &da_ih, &da_hh, need_dx);
        dx.map(|m| batch_major(m.view(), b, t))
    }
}

// ANCHOR: gru_layer
impl Gru {
    /// The forward pass of [`Layer::forward`](crate::nn::Layer::forward): every step's
    /// state, caching what BPTT needs.
    fn forward_seq(&mut self, x: &ArrayD<f32>) -> ArrayD<f32> {
        let h = self.hidden();
        let (x, b, t) = time_major(x, self.weights.d_in(), "Gru::forward"); // (t b, d_in)
        let h0 = self.state.start(1, b, h, "Gru::forward").remove(0);
        let mut hs = Array2::zeros(((t + 1) * b, h)); // h_0 .. h_T, time-major
        hs.slice_mut(s![..b, ..]).assign(&h0);
        let mut gates = self.weights.project(&x, false); // x W_ih^T + b_ih, (t b, 3h)
        let mut u = Array2::zeros((t * b, h));
        let b_hh = self
            .weights
            .bias_hh
            .value
            .view()
            .into_dimensionality::<Ix1>();
        let b_hh = b_hh.expect("1-D");
        let mut hp = Array2::zeros((b, 3 * h)); // h_{t-1} W_hh^T + b_hh
        for step in 0..t {
            let rows = step * b..(step + 1) * b;
            let (h_done, mut h_rest) = hs.view_mut().split_at(Axis(0), (step + 1) * b);
            let h_prev = h_done.slice(s![step * b.., ..]);
            hp.rows_mut().into_iter().for_each(|mut r| r.assign(&b_hh));
            self.weights.recur(&h_prev, &mut hp.view_mut());
            let mut g_s = gates.slice_mut(s![rows.clone(), ..]);
            let mut u_s = u.slice_mut(s![rows, ..]);
            for k in 0..b {
                cell(
                    g_s.row_mut(k).into_slice().expect("contiguous"),
                    hp.row(k).to_slice().expect("contiguous"),
                    h_prev.row(k).to_slice().expect("contiguous"),
                    u_s.row_mut(k).into_slice().expect("contiguous"),
                    h_rest.row_mut(k).into_slice().expect("contiguous"),
                );
            }
        }
        self.state
            .finish(vec![hs.slice(s![t * b.., ..]).to_owned()], self.carry_state);
        let y = batch_major(hs.slice(s![b.., ..]), b, t); // (b, t, h)
        self.cache = Some(Cache {
            x,
            hs,
            gates,
            u,
            b,
            t,
        });
        y
    }
}
// ANCHOR_END: gru_layer

super::recurrent_layer!(Gru);
