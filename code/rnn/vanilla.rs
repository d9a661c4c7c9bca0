//! The vanilla (Elman) RNN,
//! $h_t = \tanh(x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh})$, PyTorch's
//! `nn.RNN` with its default tanh; the derivation of its backward pass is in the
//! [module docs](super).

use ndarray::{s, Array2, ArrayD, Axis, Zip};

use super::{batch_major, time_major, time_major_like, StateSlot, Weights};
use crate::gemm::sgemm;

/// A vanilla RNN layer over a batch of sequences, returning every step's hidden state.
///
/// # Shapes
/// - input `x`: `(b, t, d_in)`
/// - output `y`: `(b, t, h)`, step `s` of sequence `i` is $h_{s+1}$ of that sequence
/// - initial and final state: `(b, h)`
/// - parameters: see [`Weights`] with one gate.
#[derive(Clone, Debug)]
pub struct Rnn {
    /// `weight_ih (h, d_in)`, `weight_hh (h, h)`, `bias_ih (h)`, `bias_hh (h)`.
    pub weights: Weights,
    /// When true, the final state of a `forward` is the initial state of the next,
    /// carried as a value (truncated BPTT);
    /// [`reset_state`](crate::nn::Module::reset_state) goes back to zeros.
    pub carry_state: bool,
    state: StateSlot,
    cache: Option<Cache>,
}

/// What backward needs: the input rows and every state, time-major.
#[derive(Clone, Debug)]
struct Cache {
    /// `(t b, d_in)`.
    x: Array2<f32>,
    /// $h_0, \dots, h_T$: `((t + 1) b, h)`.
    hs: Array2<f32>,
    b: usize,
    t: usize,
}

one_state_layer!(Rnn, 1);

impl Rnn {
    /// BPTT over the steps of the last forward pass; `dx` only when `need_dx`.
    fn backward_seq(&mut self, dy: &ArrayD<f32>, need_dx: bool) -> Option<ArrayD<f32>> {
        let h = self.hidden();
        let Cache { x, hs, b, t } = self
            .cache
            .as_ref()
            .expect("Rnn::backward called before forward");
        let (b, t) = (*b, *t);
        let dy = time_major_like(dy, (b, t, h), "Rnn::backward"); // (t b, h)
        let w_hh = self.weights.w_hh();
        let mut da = Array2::zeros((t * b, h)); // dL/da_s of every step
        let mut dh = Array2::zeros((b, h)); // dL/dh_s, from step s + 1 and then y_s
        for step in (0..t).rev() {
            let rows = step * b..(step + 1) * b;
            let mut da_s = da.slice_mut(s![rows.clone(), ..]);
            dh += &dy.slice(s![rows, ..]);
            let h_s = hs.slice(s![(step + 1) * b..(step + 2) * b, ..]);
            Zip::from(&mut da_s)
                .and(&dh)
                .and(&h_s)
                .for_each(|a, &g, &y| *a = g * (1.0 - y * y));
            sgemm(1.0, &da_s.view(), &w_hh, 0.0, &mut dh.view_mut()); // dL/dh_{s-1}
        }
        self.state.grad = Some(vec![dh]);
        let h_prev = hs.slice(s![..t * b, ..]); // h_0 .. h_{T-1}
        let dx = self.weights.accumulate(x, &h_prev, &da, &da, need_dx);
        dx.map(|m| batch_major(m.view(), b, t))
    }
}

// ANCHOR: rnn_layer
impl Rnn {
    /// The forward pass of [`Layer::forward`](crate::nn::Layer::forward): every step's
    /// state, caching what BPTT needs.
    fn forward_seq(&mut self, x: &ArrayD<f32>) -> ArrayD<f32> {
        let h = self.hidden();
        let (x, b, t) = time_major(x, self.weights.d_in(), "Rnn::forward"); // (t b, d_in)
        let h0 = self.state.start(1, b, h, "Rnn::forward").remove(0);
        let mut hs = Array2::zeros(((t + 1) * b, h)); // h_0 .. h_T, time-major
        hs.slice_mut(s![..b, ..]).assign(&h0);
        let pre = self.weights.project(&x, true); // x W_ih^T + b_ih + b_hh, (t b, h)
        for step in 0..t {
            let (done, mut rest) = hs.view_mut().split_at(Axis(0), (step + 1) * b);
            let mut next = rest.slice_mut(s![..b, ..]); // h_{s+1}, (b, h)
            next.assign(&pre.slice(s![step * b..(step + 1) * b, ..]));
            self.weights
                .recur(&done.slice(s![step * b.., ..]), &mut next);
            next.mapv_inplace(f32::tanh);
        }
        let last = hs.slice(s![t * b.., ..]).to_owned();
        self.state.finish(vec![last], self.carry_state);
        let y = batch_major(hs.slice(s![b.., ..]), b, t); // (b, t, h)
        self.cache = Some(Cache { x, hs, b, t });
        y
    }
}
// ANCHOR_END: rnn_layer

super::recurrent_layer!(Rnn);
