//! Agglomerative (hierarchical) clustering: single, complete, average and Ward linkage,
//! as a scipy-style linkage matrix, in $O(N^2)$ memory.
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
//! $O(N^2)$ time computing each distance when needed, so it needs $O(N)$ memory and no
//! distance matrix at all.
//!
//! # The linkage matrix
//!
//! Row $t$ of the $(N-1)\times 4$ result says: at height $Z_{t,2}$, clusters $Z_{t,0} <
//! Z_{t,1}$ merged into cluster $N + t$ of $Z_{t,3}$ samples, where clusters $0..N$ are
//! the samples. This is scipy's `linkage` format, so the two can be compared row by row.

use anyhow::{bail, Result};
use ndarray::{Array2, ArrayView1};
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
        let merges = match self.linkage {
            Linkage::Single => prim_single(x),
            l => nn_chain(condensed_distances(x), n, l),
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

fn dist(a: ArrayView1<f64>, b: ArrayView1<f64>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(u, v)| (u - v) * (u - v))
        .sum::<f64>()
        .sqrt()
}

/// All pairwise Euclidean distances, upper triangle row by row (scipy's `pdist`).
pub fn condensed_distances(x: &Array2<f64>) -> Vec<f64> {
    let n = x.nrows();
    let rows: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| ((i + 1)..n).map(|j| dist(x.row(i), x.row(j))).collect())
        .collect();
    rows.concat()
}

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
/// Single linkage as Prim's minimum spanning tree, distances computed on the fly.
fn prim_single(x: &Array2<f64>) -> Vec<Merge> {
    let n = x.nrows();
    let mut merged = vec![false; n];
    let mut best = vec![f64::INFINITY; n];
    let mut merges = Vec::with_capacity(n - 1);
    let mut cur = 0;
    for _ in 0..n - 1 {
        merged[cur] = true;
        // Distances from the newest tree vertex lower every outside vertex's best edge.
        let xc = x.row(cur);
        best.par_iter_mut()
            .enumerate()
            .filter(|(i, _)| !merged[*i])
            .for_each(|(i, b)| {
                *b = b.min(dist(xc, x.row(i)));
            });
        let (mut next, mut h) = (usize::MAX, f64::INFINITY);
        for i in 0..n {
            if !merged[i] && best[i] < h {
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
