//! Single-precision matrix products, $C \leftarrow \alpha\, A B + \beta\, C$, through the
//! system OpenBLAS (`cblas_sgemm`).
//!
//! A GEMM is where a convolution spends its arithmetic, and a tuned BLAS runs it close
//! to the FMA peak: it packs blocks of $A$ and $B$ to fit the caches and runs a register
//! kernel written for the CPU at hand. ndarray's own `dot` is portable Rust and single
//! threaded; this module is the fast path the convolution layers use.
//!
//! Operands are ndarray views. A view that is row-major (unit column stride) is passed
//! as is; one that is the transpose of a row-major matrix (unit row stride, as
//! `a.t()`) is passed with BLAS's transpose flag, so no copy is made; anything else is
//! copied to standard layout first. $\beta = 1$ accumulates into $C$, which is how
//! layers add weight gradients into [`Param::grad`](crate::nn::Param) without a
//! temporary.
//!
//! **Threads.** One thread pool does all the parallel work of the layers: rayon's.
//! OpenBLAS is kept single-threaded (its own pool would compete with rayon's for the
//! same cores, and its idle threads spin), and [`sgemm`] splits $C$ into blocks of
//! columns (or rows), one per rayon thread, each a single-threaded OpenBLAS call. Every
//! entry of $C$ is still one dot product over the whole $k$, summed by one thread, so
//! results are reproducible at a fixed thread count.

use std::os::raw::c_int;

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

#[link(name = "openblas")]
extern "C" {
    fn cblas_sgemm(
        layout: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
    fn openblas_set_num_threads(n: c_int);
    fn openblas_get_num_threads() -> c_int;
}

/// Sets the number of threads OpenBLAS itself uses (at least 1). [`sgemm`] sets it to 1
/// on first use and parallelises with rayon instead.
pub fn set_blas_threads(n: usize) {
    // SAFETY: a plain setter of OpenBLAS's global thread count.
    unsafe { openblas_set_num_threads(n.max(1) as c_int) }
}

/// The number of threads OpenBLAS itself uses.
pub fn blas_threads() -> usize {
    // SAFETY: a plain getter.
    unsafe { openblas_get_num_threads() as usize }
}

static SINGLE_THREADED_BLAS: std::sync::Once = std::sync::Once::new();

/// Makes OpenBLAS single-threaded for the rest of the process (once; later calls do
/// nothing). Every product through BLAS, [`sgemm`]'s and `ndarray`'s `dot` alike, then
/// rounds the same way whatever ran before it and however many cores the machine has:
/// OpenBLAS splits some sums by its thread count, so a result would otherwise depend on
/// the order the work ran in. [`sgemm`] and every experiment call it first; parallel
/// work is rayon's.
pub fn single_threaded_blas() {
    SINGLE_THREADED_BLAS.call_once(|| set_blas_threads(1));
}

/// Products smaller than this many multiply-adds run on one thread.
const PAR_MIN_MACS: usize = 1 << 20;

/// How BLAS should read `m`: `(transpose flag, leading dimension)`, or `None` when the
/// view is neither row-major nor a transposed row-major matrix.
fn blas_layout(m: &ArrayView2<f32>) -> Option<(c_int, c_int)> {
    let (rows, cols) = m.dim();
    let (s0, s1) = (m.strides()[0], m.strides()[1]);
    let ld = |s: isize, min: usize| -> Option<c_int> {
        let min = min.max(1);
        let ld = if s >= min as isize { s as usize } else { min };
        c_int::try_from(ld).ok()
    };
    if (s1 == 1 || cols <= 1) && (rows <= 1 || s0 >= cols as isize) {
        Some((NO_TRANS, ld(s0, cols)?))
    } else if (s0 == 1 || rows <= 1) && (cols <= 1 || s1 >= rows as isize) {
        Some((TRANS, ld(s1, rows)?))
    } else {
        None
    }
}

// ANCHOR: sgemm
/// $C \leftarrow \alpha\, A B + \beta\, C$ in `f32` (with $\beta = 0$, `c` is only
/// written), split over the rayon threads.
///
/// # Shapes
/// - `a`: `(m, k)`, `b`: `(k, n)`, `c`: `(m, n)` row-major (unit column stride);
///   `a` and `b` may be transposed views (`x.t()`).
pub fn sgemm(
    alpha: f32,
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    single_threaded_blas();
    let ((m, k), (_, n)) = (a.dim(), b.dim());
    let blocks = if m * n * k < PAR_MIN_MACS {
        1
    } else {
        rayon::current_num_threads()
    };
    split(alpha, a.view(), b.view(), beta, c.view_mut(), blocks);
}
// ANCHOR_END: sgemm

/// [`sgemm_serial`] on `blocks` blocks of `c`, split along its longer side, in
/// parallel.
fn split(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    mut c: ArrayViewMut2<f32>,
    blocks: usize,
) {
    let (m, n) = c.dim();
    if blocks <= 1 || m.max(n) < 2 {
        return sgemm_serial(alpha, &a, &b, beta, &mut c);
    }
    let left = blocks / 2;
    if n >= m {
        let at = n * left / blocks;
        let (b1, b2) = b.split_at(Axis(1), at);
        let (c1, c2) = c.split_at(Axis(1), at);
        rayon::join(
            || split(alpha, a.view(), b1, beta, c1, left),
            || split(alpha, a.view(), b2, beta, c2, blocks - left),
        );
    } else {
        let at = m * left / blocks;
        let (a1, a2) = a.split_at(Axis(0), at);
        let (c1, c2) = c.split_at(Axis(0), at);
        rayon::join(
            || split(alpha, a1, b.view(), beta, c1, left),
            || split(alpha, a2, b.view(), beta, c2, blocks - left),
        );
    }
}

/// $C \leftarrow \alpha\, A B + \beta\, C$ by one OpenBLAS call on the calling thread.
///
/// # Shapes
/// - as [`sgemm`].
pub fn sgemm_serial(
    alpha: f32,
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    single_threaded_blas();
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert!(
        k == k2 && c.dim() == (m, n),
        "sgemm: a {:?} times b {:?} into c {:?}",
        a.shape(),
        b.shape(),
        c.shape()
    );
    let ldc = match blas_layout(&c.view()) {
        Some((NO_TRANS, ld)) => ld,
        _ => panic!(
            "sgemm: c {:?} with strides {:?} must be row-major",
            c.shape(),
            c.strides()
        ),
    };
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.mapv_inplace(|v| if beta == 0.0 { 0.0 } else { beta * v });
        return;
    }
    let (a_own, b_own);
    let (a, (ta, lda)) = match blas_layout(a) {
        Some(l) => (a.view(), l),
        None => {
            a_own = a.as_standard_layout().into_owned();
            (a_own.view(), (NO_TRANS, k.max(1) as c_int))
        }
    };
    let (b, (tb, ldb)) = match blas_layout(b) {
        Some(l) => (b.view(), l),
        None => {
            b_own = b.as_standard_layout().into_owned();
            (b_own.view(), (NO_TRANS, n.max(1) as c_int))
        }
    };
    let dim = |x: usize| c_int::try_from(x).expect("sgemm: dimension exceeds i32");
    // SAFETY: the shapes were checked above; each pointer is the first element of a
    // view whose layout (transpose flag and leading dimension) was read off its strides,
    // so BLAS reads only elements of the views and writes only elements of `c`.
    unsafe {
        cblas_sgemm(
            ROW_MAJOR,
            ta,
            tb,
            dim(m),
            dim(n),
            dim(k),
            alpha,
            a.as_ptr(),
            lda,
            b.as_ptr(),
            ldb,
            beta,
            c.as_mut_ptr(),
            ldc,
        );
    }
}

/// $A B$ as a new matrix, by [`sgemm`].
///
/// # Shapes
/// - `a`: `(m, k)`, `b`: `(k, n)`; output `(m, n)`.
pub fn matmul(a: &ArrayView2<f32>, b: &ArrayView2<f32>) -> Array2<f32> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    sgemm(1.0, a, b, 0.0, &mut c.view_mut());
    c
}
