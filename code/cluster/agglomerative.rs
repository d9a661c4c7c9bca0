//! Agglomerative (hierarchical) clustering: single, complete, average and Ward linkage,
//! as a scipy-style linkage matrix, in $O(N^2)$ memory: one condensed distance matrix.
//!
//! # Linkages and the Lance–Williams update
//!
//! Start with every sample its own cluster and repeatedly merge the two closest
//! clusters. "Closest" is the linkage: the *single* linkage is the smallest distance
//! between members, *complete* the largest, *average* the mean over all pairs, and
//! *Ward* the rise in within-cluster sum of squares the merge would cause, written as a
//! distance $\sqrt{2\,\frac{|A||B|}{|A|+|B|}}\,\lVert \mu_A - \mu_B\rVert$. After merging
//! $x$ and $y$ the distance to any other cluster $i$ follows from the old ones
//! (Lance and Williams, 1967):
//!
//! * complete: $d(i, x\cup y) = \max(d_{ix}, d_{iy})$;
//! * average: $d(i, x\cup y) = \frac{n_x d_{ix} + n_y d_{iy}}{n_x + n_y}$;
//! * Ward: $d(i, x\cup y)^2 = \frac{(n_i+n_x) d_{ix}^2 + (n_i + n_y) d_{iy}^2 - n_i
//!   d_{xy}^2}{n_i + n_x + n_y}$.
//!
//! # The nearest-neighbour chain
//!
//! These three linkages are *reducible*: merging $x$ and $y$ never brings the new
//! cluster closer to $i$ than $\min(d_{ix}, d_{iy})$. Then any pair of *mutual* nearest
//! neighbours may be merged at once, in any order, without changing the hierarchy. The
//! chain follows nearest neighbours $a \to b \to c \to \dots$ until two are each other's
//! nearest and merges them; the rest of the chain stays valid. Every sample enters the
//! chain a bounded number of times, so the whole is $O(N^2)$ time over the $N(N-1)/2$
//! stored distances, instead of $O(N^3)$ for the naive search. The merges come out of
//! order and are sorted by height at the end (stably, as scipy does).
//!
//! # Single linkage is a minimum spanning tree
//!
//! The single-linkage hierarchy is exactly the minimum spanning tree of the complete
//! distance graph, its edges taken in increasing order. Prim's algorithm builds it in
//! $O(N^2)$ time from the same stored distances.
//!
//! # Computing the distances
//!
//! The $N(N-1)/2$ distances are most of the work: $N^2 d / 2$ subtractions,
//! multiplications and additions, against $O(N^2)$ for the whole chain. A plain loop
//! over one pair waits on its running sum at every feature; instead a small kernel
//! computes a block of rows against a *panel* of eight other rows stored feature-major,
//! so eight independent sums advance in one vector instruction and the panel is reused
//! from cache by every row of the block. Each sum still adds its terms in feature
//! order, so the distances are bit for bit those of the plain loop, and exact ties
//! stay ties. The expansion
//! $\lVert a-b\rVert^2 = \lVert a\rVert^2 + \lVert b\rVert^2 - 2 a\cdot b$ would turn the
//! work into one matrix product, but it rounds differently for every pair: duplicate
//! rows would no longer be at distance exactly 0, and tied distances would be broken
//! by rounding noise, changing the merge order.
//!
//! # The linkage matrix
//!
//! Row $t$ of the $(N-1)\times 4$ result says: at height $Z_{t,2}$, clusters $Z_{t,0} <
//! Z_{t,1}$ merged into cluster $N + t$ of $Z_{t,3}$ samples, where clusters $0..N$ are
//! the samples. This is scipy's `linkage` format, so the two can be compared row by row.

use anyhow::{bail, Result};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::kmeans::check_finite;

/// How the distance between two clusters is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Linkage {
    /// Smallest distance between members.
    Single,
    /// Largest distance between members.
    Complete,
    /// Mean distance over all pairs of members.
    Average,
    /// Rise in within-cluster sum of squares.
    Ward,
}

impl Linkage {
    /// Every linkage.
    pub const ALL: [Linkage; 4] = [
        Linkage::Single,
        Linkage::Complete,
        Linkage::Average,
        Linkage::Ward,
    ];

    /// Its name, as scipy spells it.
    pub fn name(self) -> &'static str {
        match self {
            Linkage::Single => "single",
            Linkage::Complete => "complete",
            Linkage::Average => "average",
            Linkage::Ward => "ward",
        }
    }
}

/// Unfitted agglomerative clustering.
#[derive(Clone, Debug, PartialEq)]
pub struct Agglomerative {
    /// The linkage.
    pub linkage: Linkage,
}

impl Agglomerative {
    /// Agglomerative clustering with this linkage.
    pub fn new(linkage: Linkage) -> Agglomerative {
        Agglomerative { linkage }
    }

    /// Builds the whole hierarchy of the rows of `x` `(N, d)`.
    ///
    /// Errors on fewer than 2 rows or non-finite data.
    pub fn fit(&self, x: &Array2<f64>) -> Result<Dendrogram> {
        let n = x.nrows();
        if n < 2 {
            bail!("agglomerative clustering needs at least 2 samples, got {n}");
        }
        check_finite(x)?;
        let d = condensed_distances(x);
        let merges = match self.linkage {
            Linkage::Single => prim_single(&d, n),
            l => nn_chain(d, n, l),
        };
        Ok(Dendrogram {
            n,
            linkage: relabel(merges, n),
        })
    }
}

/// The index of pair `i < j` in a condensed distance vector of `n` points.
fn condensed(n: usize, i: usize, j: usize) -> usize {
    let (i, j) = if i < j { (i, j) } else { (j, i) };
    n * i - i * (i + 1) / 2 + (j - i - 1)
}

/// Rows `j` per panel of the packed matrix: the lanes of the distance kernel.
const LANES: usize = 8;
/// Rows `i` per call of the distance kernel.
const ROWS: usize = 4;
/// Rows `i` per parallel task: their outputs are one contiguous run of the condensed
/// vector, and their `d`-vectors stay in the core's cache while the panels stream by.
const STRIPE: usize = 32;

/// The rows of `x` packed in panels of [`LANES`] rows, each panel stored `[k][lane]`
/// (feature-major), the last one padded with zero rows. One load then brings feature
/// `k` of eight rows `j`, and eight distances advance in one vector operation.
fn pack_panels(x: &ArrayView2<f64>) -> Vec<f64> {
    let (n, d) = x.dim();
    let mut panels = vec![0.0; n.div_ceil(LANES) * d * LANES];
    for (j, row) in x.rows().into_iter().enumerate() {
        let base = (j / LANES) * d * LANES + j % LANES;
        for (k, &v) in row.iter().enumerate() {
            panels[base + k * LANES] = v;
        }
    }
    panels
}

// ANCHOR: kernel
/// Squared distances from [`ROWS`] rows to the [`LANES`] rows of one panel. Each lane
/// sums its pair's squared differences one feature after the other, in the order a
/// plain loop over one pair would: the vector units work across pairs, never across
/// the terms of one sum, so the result is the same bit for bit.
#[inline(always)]
fn kernel(rows: [&[f64]; ROWS], panel: &[f64]) -> [[f64; LANES]; ROWS] {
    let d = panel.len() / LANES;
    let rows = rows.map(|r| &r[..d]);
    let mut acc = [[0.0f64; LANES]; ROWS];
    for (k, p) in panel.chunks_exact(LANES).enumerate() {
        for r in 0..ROWS {
            let a = rows[r][k];
            for l in 0..LANES {
                let t = a - p[l];
                acc[r][l] += t * t;
            }
        }
    }
    acc
}
// ANCHOR_END: kernel

/// The `(n, d)` rows, row-major, and the same rows packed by [`pack_panels`].
#[derive(Clone, Copy)]
struct Packed<'a> {
    x: &'a [f64],
    panels: &'a [f64],
    n: usize,
    d: usize,
}

/// The distances of rows `i0..i1` to every later row, into `out` (their run of the
/// condensed vector). Panels are the outer loop, so each is read from memory once per
/// stripe and then reused from cache by every block of rows.
#[inline(always)]
fn stripe(m: &Packed, i0: usize, i1: usize, out: &mut [f64]) {
    let Packed { x, panels, n, d } = *m;
    let base = condensed(n, i0, i0 + 1);
    for p in (i0 + 1) / LANES..n.div_ceil(LANES) {
        let panel = &panels[p * d * LANES..(p + 1) * d * LANES];
        let j_end = ((p + 1) * LANES).min(n);
        for ib in (i0..i1).step_by(ROWS) {
            if j_end <= ib + 1 {
                break;
            }
            // Rows past the stripe repeat its last row; their results are dropped.
            let rows: [&[f64]; ROWS] = std::array::from_fn(|r| {
                let i = (ib + r).min(i1 - 1);
                &x[i * d..(i + 1) * d]
            });
            let acc = kernel(rows, panel);
            for (r, acc) in acc.iter().enumerate() {
                let i = ib + r;
                if i >= i1 {
                    break;
                }
                for j in (p * LANES).max(i + 1)..j_end {
                    out[condensed(n, i, j) - base] = acc[j - p * LANES].sqrt();
                }
            }
        }
    }
}

/// [`stripe`] compiled for AVX2: the same operations in wider vectors, so the same
/// results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn stripe_avx2(m: &Packed, i0: usize, i1: usize, out: &mut [f64]) {
    stripe(m, i0, i1, out)
}

// ANCHOR: pdist
/// All pairwise Euclidean distances, upper triangle row by row (scipy's `pdist`
/// layout); every distance is the square root of its squared differences summed in
/// feature order, as a plain loop over the pair would. Stripes of rows run in
/// parallel; within one, a kernel computes a block of rows against a panel of rows at
/// a time, in AVX2 vectors when the CPU has them.
pub fn condensed_distances(x: &Array2<f64>) -> Vec<f64> {
    let (n, d) = x.dim();
    let x = x.as_standard_layout();
    let rows = x.as_slice().expect("standard layout");
    let panels = pack_panels(&x.view());
    let m = Packed {
        x: rows,
        panels: &panels,
        n,
        d,
    };
    let mut out = vec![0.0; n * n.saturating_sub(1) / 2];
    let mut tasks = Vec::new();
    let mut rest = out.as_mut_slice();
    for i0 in (0..n.saturating_sub(1)).step_by(STRIPE) {
        let i1 = (i0 + STRIPE).min(n - 1);
        let len: usize = (i0..i1).map(|i| n - i - 1).sum();
        let (head, tail) = rest.split_at_mut(len);
        tasks.push((i0, i1, head));
        rest = tail;
    }
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::is_x86_feature_detected!("avx2");
    tasks.into_par_iter().for_each(|(i0, i1, out)| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU has AVX2, checked above.
            unsafe { stripe_avx2(&m, i0, i1, out) };
            return;
        }
        stripe(&m, i0, i1, out)
    });
    out
}
// ANCHOR_END: pdist

/// One merge before relabelling: two representatives, the height.
type Merge = (usize, usize, f64);

// ANCHOR: nn_chain
/// The nearest-neighbour chain over the condensed distances `d` (overwritten by the
/// Lance–Williams updates). Cluster `y` of a merge keeps representing the union.
fn nn_chain(mut d: Vec<f64>, n: usize, linkage: Linkage) -> Vec<Merge> {
    let mut size = vec![1usize; n];
    let mut chain: Vec<usize> = Vec::with_capacity(n);
    let mut merges = Vec::with_capacity(n - 1);
    for _ in 0..n - 1 {
        if chain.is_empty() {
            chain.push((0..n).find(|&i| size[i] > 0).expect("a cluster is left"));
        }
        let (x, y, h) = loop {
            let x = *chain.last().expect("chain is not empty");
            // Prefer the previous element on ties, so the chain cannot cycle.
            let (mut y, mut best) = match chain.len() {
                1 => (usize::MAX, f64::INFINITY),
                l => (chain[l - 2], d[condensed(n, x, chain[l - 2])]),
            };
            for i in 0..n {
                if size[i] > 0 && i != x && d[condensed(n, x, i)] < best {
                    (y, best) = (i, d[condensed(n, x, i)]);
                }
            }
            if chain.len() > 1 && y == chain[chain.len() - 2] {
                break (x, y, best);
            }
            chain.push(y);
        };
        chain.truncate(chain.len() - 2);
        let (x, y) = (x.min(y), x.max(y));
        let (nx, ny) = (size[x] as f64, size[y] as f64);
        merges.push((x, y, h));
        size[y] += size[x];
        size[x] = 0;
        for i in 0..n {
            if size[i] == 0 || i == y {
                continue;
            }
            let (dix, diy) = (d[condensed(n, i, x)], d[condensed(n, i, y)]);
            let ni = size[i] as f64;
            d[condensed(n, i, y)] = match linkage {
                Linkage::Complete => dix.max(diy),
                Linkage::Average => (nx * dix + ny * diy) / (nx + ny),
                Linkage::Ward => {
                    let t = 1.0 / (nx + ny + ni);
                    ((ni + nx) * t * dix * dix + (ni + ny) * t * diy * diy
                        - ni * t * h * h)
                        .sqrt()
                }
                Linkage::Single => dix.min(diy),
            };
        }
    }
    merges
}
// ANCHOR_END: nn_chain

// ANCHOR: prim
/// Single linkage as Prim's minimum spanning tree over the condensed distances `d`.
fn prim_single(d: &[f64], n: usize) -> Vec<Merge> {
    let mut merged = vec![false; n];
    let mut best = vec![f64::INFINITY; n];
    let mut merges = Vec::with_capacity(n - 1);
    let mut cur = 0;
    for _ in 0..n - 1 {
        merged[cur] = true;
        // Distances from the newest tree vertex lower every outside vertex's best edge.
        let (mut next, mut h) = (usize::MAX, f64::INFINITY);
        for i in 0..n {
            if merged[i] {
                continue;
            }
            best[i] = best[i].min(d[condensed(n, cur, i)]);
            if best[i] < h {
                (next, h) = (i, best[i]);
            }
        }
        merges.push((cur, next, h));
        cur = next;
    }
    merges
}
// ANCHOR_END: prim

/// Sorts the merges by height (stably) and names clusters as scipy does: the samples
/// are `0..N`, the cluster made by row `t` is `N + t`.
fn relabel(mut merges: Vec<Merge>, n: usize) -> Array2<f64> {
    merges.sort_by(|a, b| a.2.total_cmp(&b.2));
    let mut parent: Vec<usize> = (0..2 * n - 1).collect();
    let mut size = vec![1usize; 2 * n - 1];
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut z = Array2::<f64>::zeros((n - 1, 4));
    for (t, &(a, b, h)) in merges.iter().enumerate() {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        let new = n + t;
        parent[ra] = new;
        parent[rb] = new;
        size[new] = size[ra] + size[rb];
        z[[t, 0]] = ra.min(rb) as f64;
        z[[t, 1]] = ra.max(rb) as f64;
        z[[t, 2]] = h;
        z[[t, 3]] = size[new] as f64;
    }
    z
}

/// A fitted hierarchy: the linkage matrix and flat cuts of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Dendrogram {
    /// Number of samples.
    pub n: usize,
    /// The `(N - 1, 4)` linkage matrix: merged clusters, height, size (scipy's layout).
    pub linkage: Array2<f64>,
}

impl Dendrogram {
    // ANCHOR: cut
    /// The flat clustering into `k` clusters: the state after the first `N - k` merges.
    /// Clusters are numbered by their smallest sample.
    ///
    /// Errors if `k` is 0 or more than `N`.
    pub fn cut(&self, k: usize) -> Result<Vec<usize>> {
        let n = self.n;
        if k == 0 || k > n {
            bail!("a cut into k clusters needs 1 <= k <= N = {n}, got k = {k}");
        }
        let mut parent: Vec<usize> = (0..2 * n - 1).collect();
        for t in 0..n - k {
            for c in 0..2 {
                parent[self.linkage[[t, c]] as usize] = n + t;
            }
        }
        let root = |mut i: usize| {
            while parent[i] != i {
                i = parent[i];
            }
            i
        };
        let mut names = std::collections::HashMap::new();
        Ok((0..n)
            .map(|i| {
                let m = names.len();
                *names.entry(root(i)).or_insert(m)
            })
            .collect())
    }
    // ANCHOR_END: cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn line() -> Array2<f64> {
        array![[0.0], [1.0], [3.0], [7.0], [15.0]]
    }

    #[test]
    fn condensed_index_matches_scipy_layout() {
        // n = 4: pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3).
        let got: Vec<usize> = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
            .iter()
            .map(|&(i, j)| condensed(4, i, j))
            .collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(condensed(4, 3, 1), 4);
    }

    #[test]
    fn single_and_complete_on_a_line() {
        let s = Agglomerative::new(Linkage::Single).fit(&line()).unwrap();
        assert_eq!(s.linkage.column(2).to_vec(), vec![1.0, 2.0, 4.0, 8.0]);
        assert_eq!(s.linkage.row(0).to_vec(), vec![0.0, 1.0, 1.0, 2.0]);
        assert_eq!(s.linkage.row(1).to_vec(), vec![2.0, 5.0, 2.0, 3.0]);
        let c = Agglomerative::new(Linkage::Complete).fit(&line()).unwrap();
        assert_eq!(c.linkage.column(2).to_vec(), vec![1.0, 3.0, 7.0, 15.0]);
    }

    #[test]
    fn ward_height_of_two_points_is_their_distance() {
        // Ward's height for two singletons is sqrt(2 * 1/2) * |a - b| = |a - b|; for a
        // pair {0, 2} and a point 10: sqrt(2 * 2/3) * |1 - 10|.
        let w = Agglomerative::new(Linkage::Ward)
            .fit(&array![[0.0], [2.0], [10.0]])
            .unwrap();
        assert!((w.linkage[[0, 2]] - 2.0).abs() < 1e-12);
        assert!((w.linkage[[1, 2]] - (4.0f64 / 3.0).sqrt() * 9.0).abs() < 1e-12);
    }

    #[test]
    fn cuts_undo_the_last_merges() {
        let s = Agglomerative::new(Linkage::Single).fit(&line()).unwrap();
        assert_eq!(s.cut(1).unwrap(), vec![0; 5]);
        assert_eq!(s.cut(2).unwrap(), vec![0, 0, 0, 0, 1]);
        assert_eq!(s.cut(5).unwrap(), vec![0, 1, 2, 3, 4]);
        assert!(s.cut(0).is_err());
        assert!(s.cut(6).is_err());
        assert!(Agglomerative::new(Linkage::Ward)
            .fit(&array![[1.0]])
            .is_err());
    }
}
