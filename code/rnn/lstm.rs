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

use ndarray::{s, Array2, ArrayD, ArrayView2, ArrayViewMut2, Axis};
use rand::Rng;
use rayon::prelude::*;

use super::{
    batch_major, profile, sigmoid, sigmoid_fast, tanh_fast, time_major, time_major_like,
    StateSlot, Weights,
};
use crate::gemm::{sgemm, sgemm_serial};

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
    /// When true, the gates use [`sigmoid_fast`] and [`tanh_fast`] (vectorised, within
    /// a few units in the last place of the exact functions) and each step's work is
    /// split by rows of the batch over the threads: the training path of the character
    /// model. False (the default) computes the exact cell, with `f32::tanh` and `exp`.
    pub fast_gates: bool,
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

// ANCHOR: lstm_cell_fast
/// [`cell`] for `rows` sequences at once, with the fast activations, written as one
/// loop per operation over contiguous slices so that each compiles to vector
/// instructions. `gates` `(rows, 4h)`; `c_prev`, `c`, `tc`, `h` `(rows, h)`.
#[inline(always)]
fn cells_fast(
    n: usize,
    gates: &mut [f32],
    c_prev: &[f32],
    c: &mut [f32],
    tc: &mut [f32],
    h: &mut [f32],
) {
    for ((((g, cp), c), tc), h) in gates
        .chunks_exact_mut(4 * n)
        .zip(c_prev.chunks_exact(n))
        .zip(c.chunks_exact_mut(n))
        .zip(tc.chunks_exact_mut(n))
        .zip(h.chunks_exact_mut(n))
    {
        let (ifg, go) = g.split_at_mut(3 * n);
        let (gif, gg) = ifg.split_at_mut(2 * n);
        gif.iter_mut().for_each(|v| *v = sigmoid_fast(*v));
        gg.iter_mut().for_each(|v| *v = tanh_fast(*v));
        go.iter_mut().for_each(|v| *v = sigmoid_fast(*v));
        let (gi, gf) = gif.split_at(n);
        for j in 0..n {
            c[j] = gf[j] * cp[j] + gi[j] * gg[j];
        }
        for j in 0..n {
            tc[j] = tanh_fast(c[j]);
            h[j] = go[j] * tc[j];
        }
    }
}

/// [`cells_fast`] compiled for AVX2 (eight lanes) when the CPU has it; the same
/// operations in the same order, so the same bits.
fn cells_fast_dispatch(
    n: usize,
    gates: &mut [f32],
    c_prev: &[f32],
    c: &mut [f32],
    tc: &mut [f32],
    h: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(
            n: usize,
            g: &mut [f32],
            cp: &[f32],
            c: &mut [f32],
            tc: &mut [f32],
            h: &mut [f32],
        ) {
            cells_fast(n, g, cp, c, tc, h)
        }
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2(n, gates, c_prev, c, tc, h) };
    }
    cells_fast(n, gates, c_prev, c, tc, h)
}
// ANCHOR_END: lstm_cell_fast

/// Rows per block when a step's batch of `b` rows is split over the threads: one
/// block per thread, at least 8 rows each.
fn block_rows(b: usize) -> usize {
    let blocks = rayon::current_num_threads().min(b / 8).max(1);
    b.div_ceil(blocks)
}

/// `(rows, cols)` row-major matrix view of a slice.
fn mat(s: &[f32], cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((s.len() / cols, cols), s).expect("whole rows")
}

/// The mutable counterpart of [`mat`].
fn mat_mut(s: &mut [f32], cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((s.len() / cols, cols), s).expect("whole rows")
}

// ANCHOR: row_blocks
/// A row-major matrix whose disjoint blocks of rows threads write at the same time:
/// the time loops of [`Lstm::fast_gates`] give each thread the same rows of every step.
#[derive(Clone, Copy)]
struct RowBlocks {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
}

// SAFETY: `RowBlocks::rows` is unsafe, and its callers hand each thread disjoint rows.
unsafe impl Send for RowBlocks {}
unsafe impl Sync for RowBlocks {}

impl RowBlocks {
    fn new(s: &mut [f32], cols: usize) -> Self {
        RowBlocks {
            ptr: s.as_mut_ptr(),
            rows: s.len() / cols,
            cols,
        }
    }

    /// Rows `first..first + n`.
    ///
    /// # Safety
    /// While the slice lives, no other thread may touch these rows, and the matrix it
    /// was made from must outlive it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows<'a>(&self, first: usize, n: usize) -> &'a mut [f32] {
        assert!(
            first + n <= self.rows,
            "rows {first}..{} of {}",
            first + n,
            self.rows
        );
        std::slice::from_raw_parts_mut(self.ptr.add(first * self.cols), n * self.cols)
    }
}
// ANCHOR_END: row_blocks

impl Lstm {
    /// A `d_in -> hidden` layer with PyTorch's initialization, drawn from `rng`.
    pub fn new(d_in: usize, hidden: usize, rng: &mut impl Rng) -> Self {
        Lstm {
            weights: Weights::new(d_in, hidden, 4, rng),
            carry_state: false,
            fast_gates: false,
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

    /// The gate activations $i, f, g, o$ of every step of the last forward pass,
    /// `(b, t, 4h)` in that order (PyTorch's), and $\tanh c_t$, `(b, t, h)`: what the
    /// layer let in, kept, wrote and showed at each step, for plots.
    pub fn last_gates(&self) -> Option<(ArrayD<f32>, ArrayD<f32>)> {
        let c = self.cache.as_ref()?;
        Some((
            batch_major(c.gates.view(), c.b, c.t),
            batch_major(c.tc.view(), c.b, c.t),
        ))
    }

    /// $\partial L / \partial h_0$ from the last backward pass, `(b, h)`.
    pub fn dh0(&self) -> Option<&Array2<f32>> {
        self.state.grad(0)
    }

    /// $\partial L / \partial c_0$ from the last backward pass, `(b, h)`.
    pub fn dc0(&self) -> Option<&Array2<f32>> {
        self.state.grad(1)
    }

    /// The time loop of the forward pass with [`Lstm::fast_gates`]. The rows of a batch
    /// never meet in the time loop, so every block of rows runs all its steps on its own
    /// thread, its own recurrent product and its own cells, with no synchronisation
    /// between steps.
    fn steps_fast(
        &self,
        gates: &mut Array2<f32>,
        hs: &mut Array2<f32>,
        cs: &mut Array2<f32>,
        tc: &mut Array2<f32>,
        b: usize,
        t: usize,
    ) {
        let h = self.hidden();
        let w_t = self.weights.w_hh().reversed_axes(); // (h, 4h)
        let rows = block_rows(b);
        let std = "standard layout";
        let gates = RowBlocks::new(gates.as_slice_mut().expect(std), 4 * h);
        let (hs, cs) = (
            RowBlocks::new(hs.as_slice_mut().expect(std), h),
            RowBlocks::new(cs.as_slice_mut().expect(std), h),
        );
        let tc = RowBlocks::new(tc.as_slice_mut().expect(std), h);
        profile::time("recurrent GEMM + gates, forward", || {
            let blocks = b.div_ceil(rows);
            (0..blocks).into_par_iter().with_max_len(1).for_each(|j| {
                let (r0, n) = (j * rows, rows.min(b - j * rows));
                for step in 0..t {
                    let (now, next) = (step * b + r0, (step + 1) * b + r0);
                    // SAFETY: this thread alone touches rows r0..r0 + n of every step,
                    // and reads step `step`'s states while it writes step `step + 1`'s.
                    let (g, hp, cp, c, tc_s, hn) = unsafe {
                        (
                            gates.rows(now, n),
                            &*hs.rows(now, n),
                            &*cs.rows(now, n),
                            cs.rows(next, n),
                            tc.rows(now, n),
                            hs.rows(next, n),
                        )
                    };
                    let mut gm = mat_mut(g, 4 * h);
                    sgemm_serial(1.0, &mat(hp, h), &w_t, 1.0, &mut gm);
                    cells_fast_dispatch(h, g, cp, c, tc_s, hn);
                }
            });
        });
    }

    /// The time loop of BPTT with [`Lstm::fast_gates`]: every block of rows runs all
    /// its steps backwards on its own thread, its own cell gradients and its own product
    /// with $W_{hh}$. Leaves $\bar h_0$ and $\bar c_0$ in `dh` and `dc`.
    #[allow(clippy::too_many_arguments)]
    fn steps_back_fast(
        w_hh: &ArrayView2<f32>,
        dy: &Array2<f32>,
        gates: ArrayView2<f32>,
        cs: ArrayView2<f32>,
        tc: ArrayView2<f32>,
        da: &mut Array2<f32>,
        dh: &mut Array2<f32>,
        dc: &mut Array2<f32>,
        b: usize,
        t: usize,
    ) {
        let h = dh.ncols();
        let rows = block_rows(b);
        let std = "standard layout";
        let (gates, cs, tc) = (
            gates.to_slice().expect(std),
            cs.to_slice().expect(std),
            tc.to_slice().expect(std),
        );
        let dy = dy.as_slice().expect(std);
        let da = RowBlocks::new(da.as_slice_mut().expect(std), 4 * h);
        let dh = RowBlocks::new(dh.as_slice_mut().expect(std), h);
        let dc = RowBlocks::new(dc.as_slice_mut().expect(std), h);
        profile::time("gates + recurrent GEMM, backward", || {
            let blocks = b.div_ceil(rows);
            (0..blocks).into_par_iter().with_max_len(1).for_each(|j| {
                let (r0, n) = (j * rows, rows.min(b - j * rows));
                // SAFETY: this thread alone touches rows r0..r0 + n of dh, dc and of
                // every step of da.
                let (dh, dc) = unsafe { (dh.rows(r0, n), dc.rows(r0, n)) };
                for step in (0..t).rev() {
                    let now = step * b + r0;
                    let (r4, r1) =
                        (now * 4 * h..(now + n) * 4 * h, now * h..(now + n) * h);
                    // SAFETY: as above.
                    let da_s = unsafe { da.rows(now, n) };
                    let (g, cp, tc, dy) =
                        (&gates[r4], &cs[r1.clone()], &tc[r1.clone()], &dy[r1]);
                    dh.iter_mut().zip(dy).for_each(|(a, b)| *a += b);
                    for (k, da_row) in da_s.chunks_exact_mut(4 * h).enumerate() {
                        let r = k * h..(k + 1) * h;
                        cell_backward(
                            &g[4 * h * k..4 * h * (k + 1)],
                            &cp[r.clone()],
                            &tc[r.clone()],
                            &dh[r.clone()],
                            &mut dc[r],
                            da_row,
                        );
                    }
                    // dL/dh_{s-1} of these rows.
                    sgemm_serial(1.0, &mat(da_s, 4 * h), w_hh, 0.0, &mut mat_mut(dh, h));
                }
            });
        });
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
        let dy = profile::time("LSTM layout copies", || {
            time_major_like(dy, (b, t, h), "Lstm::backward") // (t b, h)
        });
        let w_hh = self.weights.w_hh();
        let mut da = Array2::<f32>::zeros((t * b, 4 * h)); // dL/da_s of every step
        let mut dh = Array2::<f32>::zeros((b, h)); // dL/dh_s, from step s + 1 and y_s
        let mut dc = Array2::<f32>::zeros((b, h)); // dL/dc_s, from step s + 1
        if self.fast_gates {
            let (gates, cs, tc) = (gates.view(), cs.view(), tc.view());
            Self::steps_back_fast(
                &w_hh, &dy, gates, cs, tc, &mut da, &mut dh, &mut dc, b, t,
            );
        }
        for step in (0..t).rev().filter(|_| !self.fast_gates) {
            let rows = step * b..(step + 1) * b;
            dh += &dy.slice(s![rows.clone(), ..]);
            let mut da_s = da.slice_mut(s![rows.clone(), ..]);
            let g_s = gates.slice(s![rows.clone(), ..]);
            let tc_s = tc.slice(s![rows.clone(), ..]);
            let c_prev = cs.slice(s![rows, ..]);
            profile::time("gates backward (element-wise)", || {
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
            });
            profile::time("recurrent GEMM, backward", || {
                sgemm(1.0, &da_s.view(), &w_hh, 0.0, &mut dh.view_mut()); // dL/dh_{s-1}
            });
        }
        self.state.grad = Some(vec![dh, dc]);
        let h_prev = hs.slice(s![..t * b, ..]); // h_0 .. h_{T-1}
        let dx = profile::time("weight- and input-gradient GEMMs", || {
            self.weights.accumulate(x, &h_prev, &da, &da, need_dx)
        });
        profile::time("LSTM layout copies", || {
            dx.map(|m| batch_major(m.view(), b, t))
        })
    }
}

// ANCHOR: lstm_layer
impl Lstm {
    /// The forward pass of [`Layer::forward`](crate::nn::Layer::forward): every step's
    /// state, caching what BPTT needs.
    fn forward_seq(&mut self, x: &ArrayD<f32>) -> ArrayD<f32> {
        let h = self.hidden();
        let (x, b, t) = profile::time("LSTM layout copies", || {
            time_major(x, self.weights.d_in(), "Lstm::forward") // (t b, d_in)
        });
        let mut init = self.state.start(2, b, h, "Lstm::forward");
        let (mut hs, mut cs) = (
            Array2::zeros(((t + 1) * b, h)),
            Array2::zeros(((t + 1) * b, h)),
        );
        cs.slice_mut(s![..b, ..]).assign(&init.pop().expect("c0"));
        hs.slice_mut(s![..b, ..]).assign(&init.pop().expect("h0"));
        let mut gates = profile::time("input projection GEMM", || {
            self.weights.project(&x, true) // x W_ih^T + b_ih + b_hh, (t b, 4h)
        });
        let mut tc = Array2::zeros((t * b, h));
        if self.fast_gates {
            self.steps_fast(&mut gates, &mut hs, &mut cs, &mut tc, b, t);
        }
        for step in (0..t).filter(|_| !self.fast_gates) {
            let rows = step * b..(step + 1) * b;
            let mut g_s = gates.slice_mut(s![rows.clone(), ..]);
            let (h_done, mut h_rest) = hs.view_mut().split_at(Axis(0), (step + 1) * b);
            profile::time("recurrent GEMM, forward", || {
                self.weights
                    .recur(&h_done.slice(s![step * b.., ..]), &mut g_s)
            });
            let (c_done, mut c_rest) = cs.view_mut().split_at(Axis(0), (step + 1) * b);
            let c_prev = c_done.slice(s![step * b.., ..]);
            let mut tc_s = tc.slice_mut(s![rows, ..]);
            profile::time("gates (element-wise)", || {
                for k in 0..b {
                    cell(
                        g_s.row_mut(k).into_slice().expect("contiguous"),
                        c_prev.row(k).to_slice().expect("contiguous"),
                        c_rest.row_mut(k).into_slice().expect("contiguous"),
                        tc_s.row_mut(k).into_slice().expect("contiguous"),
                        h_rest.row_mut(k).into_slice().expect("contiguous"),
                    );
                }
            });
        }
        let last = |m: &Array2<f32>| m.slice(s![t * b.., ..]).to_owned();
        self.state
            .finish(vec![last(&hs), last(&cs)], self.carry_state);
        let y = profile::time("LSTM layout copies", || {
            batch_major(hs.slice(s![b.., ..]), b, t) // (b, t, h)
        });
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
