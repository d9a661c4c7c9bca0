//! Kernels, the kernel-row cache the solver reads, and batched kernel matrices for
//! prediction.
//!
//! A kernel row `K(x_i, x_j)` for all `j` costs up to `N * F` multiply-adds; SMO asks for the
//! same few rows again and again, so an LRU cache of rows bounded in megabytes (libsvm's
//! `Cache`) turns most requests into a lookup.

use ndarray::{s, Array2, ArrayView2, Axis};
use rayon::prelude::*;
use serde::Serialize;

/// A kernel with every hyper-parameter resolved (no `"scale"` left).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Kernel {
    /// `x . z`.
    Linear,
    /// `(gamma x . z + coef0)^degree`.
    Poly {
        /// Scale of the dot product.
        gamma: f64,
        /// Constant added before the power.
        coef0: f64,
        /// Power.
        degree: u32,
    },
    /// `exp(-gamma ||x - z||^2)`.
    Rbf {
        /// Inverse squared length scale.
        gamma: f64,
    },
}

impl Kernel {
    // ANCHOR: from_dot
    /// The kernel value from the dot product `d = x . z` and the squared norms.
    #[inline]
    pub fn from_dot(&self, d: f64, xx: f64, zz: f64) -> f64 {
        match *self {
            Kernel::Linear => d,
            Kernel::Poly {
                gamma,
                coef0,
                degree,
            } => (gamma * d + coef0).powi(degree as i32),
            // max(0): rounding can make ||x||^2 + ||z||^2 - 2 x.z slightly negative.
            Kernel::Rbf { gamma } => (-gamma * (xx + zz - 2.0 * d).max(0.0)).exp(),
        }
    }
    // ANCHOR_END: from_dot

    /// `K(x, z)` of two points. Panics if their lengths differ.
    pub fn eval(&self, x: &[f64], z: &[f64]) -> f64 {
        assert_eq!(
            x.len(),
            z.len(),
            "Kernel::eval: {} vs {} features",
            x.len(),
            z.len()
        );
        self.from_dot(dot(x, z), dot(x, x), dot(z, z))
    }

    /// The `(A, B)` kernel matrix between the rows of `a` `(A, F)` and `b` `(B, F)`:
    /// one GEMM `a b^T` plus the elementwise map, in blocks of rows over rayon.
    pub fn matrix(&self, a: ArrayView2<f64>, b: ArrayView2<f64>) -> Array2<f64> {
        assert_eq!(
            a.ncols(),
            b.ncols(),
            "Kernel::matrix: {:?} rows against {:?} rows",
            a.shape(),
            b.shape()
        );
        let bn: Vec<f64> = b.rows().into_iter().map(|r| r.dot(&r)).collect();
        let bt = b.t();
        let mut out = Array2::<f64>::zeros((a.nrows(), b.nrows()));
        const BLOCK: usize = 128;
        out.axis_chunks_iter_mut(Axis(0), BLOCK)
            .into_par_iter()
            .enumerate()
            .for_each(|(blk, mut out_blk)| {
                let lo = blk * BLOCK;
                let a_blk = a.slice(s![lo..lo + out_blk.nrows(), ..]);
                // (rows, F) x (F, B) -> (rows, B)
                out_blk.assign(&a_blk.dot(&bt));
                for (r, mut row) in out_blk.rows_mut().into_iter().enumerate() {
                    let ar = a_blk.row(r);
                    let an = ar.dot(&ar);
                    for (v, &zn) in row.iter_mut().zip(&bn) {
                        *v = self.from_dot(*v, an, zn);
                    }
                }
            });
        out
    }
}

/// Dot product with eight independent accumulators, so the compiler can vectorise it.
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, z) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * z[k];
        }
    }
    let mut t: f64 = acc.iter().sum();
    for (x, z) in ra.iter().zip(rb) {
        t += x * z;
    }
    t
}

/// The signed kernel matrix `Q_ij = y_i y_j K(x_i, x_j)` of one binary problem, served
/// row by row from an LRU cache of at most `cache_mb` megabytes (at least two rows, since
/// an SMO step reads two).
///
/// Rows are stored in `f32`, as libsvm stores them (its `Qfloat`): twice the rows per
/// megabyte, and the same rounding, so SMO takes the same steps as libsvm. The diagonal
/// stays in `f64`, as in libsvm.
pub struct QMatrix<'a> {
    y: &'a [f64],
    kernel: Kernel,
    /// `(F, N)` the rows of `x` as columns, so one feature of every row is contiguous.
    xt: Array2<f64>,
    /// Each row's nonzero features `(feature, value)`, in feature order.
    nonzero: Vec<Vec<(usize, f64)>>,
    norms: Vec<f64>,
    diag: Vec<f64>,
    /// `(N,)` scratch for the dot products of one row.
    acc: Vec<f64>,
    /// `slot_of[i]`: the cache slot holding row `i`, if any.
    slot_of: Vec<Option<usize>>,
    /// Each slot's row and when it was last used.
    slots: Vec<(usize, u64, Vec<f32>)>,
    capacity: usize,
    clock: u64,
    /// Rows computed (cache misses), for the chapter's cache study.
    pub misses: u64,
    /// Rows requested.
    pub requests: u64,
}

impl<'a> QMatrix<'a> {
    /// The matrix of `x` `(N, F)` with labels `y` in `{-1, +1}`.
    pub fn new(
        x: ArrayView2<'a, f64>,
        y: &'a [f64],
        kernel: Kernel,
        cache_mb: f64,
    ) -> Self {
        assert_eq!(
            x.nrows(),
            y.len(),
            "QMatrix: {:?} rows, {} labels",
            x.shape(),
            y.len()
        );
        let n = x.nrows();
        let nonzero: Vec<Vec<(usize, f64)>> = x
            .rows()
            .into_iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .filter(|(_, &v)| v != 0.0)
                    .map(|(f, &v)| (f, v))
                    .collect()
            })
            .collect();
        // The squared norms summed in feature order, as every dot product below is.
        let norms: Vec<f64> = nonzero
            .iter()
            .map(|nz| nz.iter().fold(0.0, |t, &(_, v)| t + v * v))
            .collect();
        let diag = (0..n)
            .map(|i| kernel.from_dot(norms[i], norms[i], norms[i]))
            .collect();
        let bytes = (cache_mb.max(0.0) * (1 << 20) as f64) as usize;
        let capacity = (bytes / (4 * n.max(1))).clamp(2, n.max(2));
        QMatrix {
            y,
            kernel,
            xt: x.t().as_standard_layout().into_owned(),
            nonzero,
            norms,
            diag,
            acc: vec![0.0; n],
            slot_of: vec![None; n],
            slots: Vec::new(),
            capacity,
            clock: 0,
            misses: 0,
            requests: 0,
        }
    }

    /// `Q_ii = K(x_i, x_i)` for every `i`.
    pub fn diag(&self) -> &[f64] {
        &self.diag
    }

    /// How many rows the cache holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    // ANCHOR: fill
    /// Row `i` of `Q` into `row`. The dot products `x_i . x_j` for every `j` at once, as
    /// a sum over the features where `x_i` is nonzero of `x_if` times the contiguous
    /// column `(x_1f, ..., x_Nf)`: a zero of `x_i` costs nothing (most MNIST pixels are
    /// zero), the inner loop is a vectorised multiply-add over `N` values, and each sum
    /// adds its terms in feature order, as libsvm's dense dot product does, so the
    /// values are bit for bit libsvm's.
    fn fill(&mut self, i: usize, row: &mut [f32]) {
        let acc = &mut self.acc;
        acc.fill(0.0);
        for &(f, v) in &self.nonzero[i] {
            let col = self.xt.row(f);
            let col = col.as_slice().expect("standard layout");
            for (a, &x) in acc.iter_mut().zip(col) {
                *a += v * x;
            }
        }
        let (k, yi, ni) = (self.kernel, self.y[i], self.norms[i]);
        for (((v, &d), &yj), &nj) in
            row.iter_mut().zip(acc.iter()).zip(self.y).zip(&self.norms)
        {
            *v = (yi * yj * k.from_dot(d, ni, nj)) as f32;
        }
    }
    // ANCHOR_END: fill

    /// Makes row `i` resident without evicting row `keep`; returns its slot.
    fn ensure(&mut self, i: usize, keep: Option<usize>) -> usize {
        self.clock += 1;
        self.requests += 1;
        if let Some(s) = self.slot_of[i] {
            self.slots[s].1 = self.clock;
            return s;
        }
        self.misses += 1;
        let n = self.y.len();
        let s = if self.slots.len() < self.capacity {
            self.slots.push((i, self.clock, vec![0.0; n]));
            self.slots.len() - 1
        } else {
            // Least recently used slot not holding `keep`; O(capacity), small next to
            // the O(N F) row it saves.
            let keep_slot = keep.and_then(|k| self.slot_of[k]);
            let s = (0..self.slots.len())
                .filter(|&s| Some(s) != keep_slot)
                .min_by_key(|&s| self.slots[s].1)
                .expect("capacity >= 2");
            self.slot_of[self.slots[s].0] = None;
            self.slots[s].0 = i;
            self.slots[s].1 = self.clock;
            s
        };
        let mut row = std::mem::take(&mut self.slots[s].2);
        self.fill(i, &mut row);
        self.slots[s].2 = row;
        self.slot_of[i] = Some(s);
        s
    }

    /// Row `i` of `Q`.
    pub fn row(&mut self, i: usize) -> &[f32] {
        let s = self.ensure(i, None);
        &self.slots[s].2
    }

    /// Rows `i` and `j` of `Q` together.
    pub fn rows2(&mut self, i: usize, j: usize) -> (&[f32], &[f32]) {
        let si = self.ensure(i, None);
        let sj = self.ensure(j, Some(i));
        debug_assert_eq!(self.slot_of[i], Some(si));
        (&self.slots[si].2, &self.slots[sj].2)
    }
}
