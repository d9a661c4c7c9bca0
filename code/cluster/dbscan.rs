//! DBSCAN: clusters as regions of high density, with a k-d tree for the neighbourhoods.
//!
//! # The definitions
//!
//! With a radius $\varepsilon$ and a count `min_samples`, the $\varepsilon$-neighbourhood
//! of a sample is every sample within distance $\varepsilon$ of it, itself included. A
//! *core* sample has at least `min_samples` of them. Two core samples within
//! $\varepsilon$ of each other are in the same cluster, transitively: a cluster is a
//! connected component of the graph of core samples. A non-core sample within
//! $\varepsilon$ of some core sample is a *border* sample and joins the cluster of the
//! first such core sample reached; anything else is *noise* (label `-1`).
//!
//! Clusters are numbered as scikit-learn numbers them: scanning the samples in order,
//! each not-yet-labelled core sample starts the next cluster, grown by a depth-first
//! walk over core samples. A border sample reachable from two clusters goes to the one
//! with the smaller number, so the labels are the same as scikit-learn's exactly.
//!
//! # Why a tree
//!
//! The neighbourhoods are the cost. All pairwise distances are $N^2$ (and $8N^2$ bytes
//! if stored); a k-d tree answers a radius query by visiting only the boxes that meet
//! the ball, about $O(\log N + m)$ for $m$ neighbours in low dimension, so a few
//! thousand or a million two-dimensional points take milliseconds to seconds.

use anyhow::{bail, Result};
use ndarray::{Array2, ArrayView1};
use rayon::prelude::*;

use super::kmeans::check_finite;

/// Most points in a leaf of the tree: a leaf is scanned linearly, which is faster than
/// descending further for a handful of points.
const LEAF_SIZE: usize = 16;

/// A k-d tree over the rows of a matrix, for radius queries.
pub struct KdTree<'a> {
    x: &'a Array2<f64>,
    /// Row indices, permuted so that every node owns a contiguous range.
    idx: Vec<usize>,
    nodes: Vec<Node>,
}

/// A node owns `idx[lo..hi]`; an inner node splits them at `idx[mid]` on `dim`, with
/// bounding box `lo_box..hi_box` for pruning.
struct Node {
    lo: usize,
    hi: usize,
    bbox: Vec<(f64, f64)>,
    children: Option<(usize, usize)>,
}

impl<'a> KdTree<'a> {
    // ANCHOR: kdtree_build
    /// Builds the tree: each inner node splits its points at the median of the
    /// dimension in which their bounding box is widest.
    pub fn new(x: &'a Array2<f64>) -> KdTree<'a> {
        let mut t = KdTree {
            x,
            idx: (0..x.nrows()).collect(),
            nodes: Vec::new(),
        };
        if x.nrows() > 0 {
            t.build(0, x.nrows());
        }
        t
    }

    fn build(&mut self, lo: usize, hi: usize) -> usize {
        let d = self.x.ncols();
        let mut bbox = vec![(f64::INFINITY, f64::NEG_INFINITY); d];
        for &i in &self.idx[lo..hi] {
            for (b, &v) in bbox.iter_mut().zip(self.x.row(i).iter()) {
                *b = (b.0.min(v), b.1.max(v));
            }
        }
        let id = self.nodes.len();
        self.nodes.push(Node {
            lo,
            hi,
            bbox: bbox.clone(),
            children: None,
        });
        if hi - lo > LEAF_SIZE {
            let dim = (0..d)
                .max_by(|&a, &b| {
                    (bbox[a].1 - bbox[a].0).total_cmp(&(bbox[b].1 - bbox[b].0))
                })
                .expect("d >= 1");
            let mid = (lo + hi) / 2;
            let x = self.x;
            self.idx[lo..hi].select_nth_unstable_by(mid - lo, |&a, &b| {
                x[[a, dim]].total_cmp(&x[[b, dim]])
            });
            let left = self.build(lo, mid);
            let right = self.build(mid, hi);
            self.nodes[id].children = Some((left, right));
        }
        id
    }
    // ANCHOR_END: kdtree_build

    /// Every row within distance `eps` of `q` (boundary included), in no set order.
    pub fn within(&self, q: ArrayView1<f64>, eps: f64) -> Vec<usize> {
        let mut out = Vec::new();
        if self.nodes.is_empty() {
            return out;
        }
        let eps2 = eps * eps;
        let mut stack = vec![0usize];
        while let Some(id) = stack.pop() {
            let node = &self.nodes[id];
            // Squared distance from q to the node's box: zero inside it.
            let gap: f64 = node
                .bbox
                .iter()
                .zip(q.iter())
                .map(|(&(a, b), &v)| {
                    let g = if v < a {
                        a - v
                    } else if v > b {
                        v - b
                    } else {
                        0.0
                    };
                    g * g
                })
                .sum();
            if gap > eps2 {
                continue;
            }
            match node.children {
                Some((l, r)) => stack.extend([l, r]),
                None => {
                    for &i in &self.idx[node.lo..node.hi] {
                        let d2: f64 = self
                            .x
                            .row(i)
                            .iter()
                            .zip(q.iter())
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum();
                        if d2 <= eps2 {
                            out.push(i);
                        }
                    }
                }
            }
        }
        out
    }
}

/// Unfitted DBSCAN: its radius and density threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Dbscan {
    /// Neighbourhood radius (Euclidean).
    pub eps: f64,
    /// Samples (itself included) a core sample has within `eps`.
    pub min_samples: usize,
}

impl Dbscan {
    /// DBSCAN with radius `eps` and scikit-learn's `min_samples = 5`.
    pub fn new(eps: f64) -> Dbscan {
        Dbscan {
            eps,
            min_samples: 5,
        }
    }

    /// The same with this `min_samples`.
    pub fn min_samples(mut self, m: usize) -> Dbscan {
        self.min_samples = m;
        self
    }

    // ANCHOR: dbscan_fit
    /// Labels the rows of `x` `(N, d)`: clusters `0..`, noise `-1`.
    ///
    /// Errors on `eps <= 0`, `min_samples = 0`, or non-finite data.
    pub fn fit(&self, x: &Array2<f64>) -> Result<FittedDbscan> {
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            bail!("DBSCAN needs a finite radius eps > 0, got {}", self.eps);
        }
        if self.min_samples == 0 {
            bail!("DBSCAN needs min_samples >= 1, got 0");
        }
        check_finite(x)?;
        let n = x.nrows();
        let tree = KdTree::new(x);
        let neighbours: Vec<Vec<usize>> = (0..n)
            .into_par_iter()
            .map(|i| tree.within(x.row(i), self.eps))
            .collect();
        let core: Vec<bool> = neighbours
            .iter()
            .map(|nb| nb.len() >= self.min_samples)
            .collect();
        let mut labels = vec![-1i64; n];
        let mut next = 0i64;
        let mut stack = Vec::new();
        for start in 0..n {
            if labels[start] != -1 || !core[start] {
                continue;
            }
            // Depth-first over core samples; border samples are labelled, not expanded.
            stack.push(start);
            while let Some(i) = stack.pop() {
                if labels[i] != -1 {
                    continue;
                }
                labels[i] = next;
                if core[i] {
                    stack.extend(
                        neighbours[i].iter().copied().filter(|&j| labels[j] == -1),
                    );
                }
            }
            next += 1;
        }
        let core_samples = (0..n).filter(|&i| core[i]).collect();
        Ok(FittedDbscan {
            labels,
            core_samples,
            n_clusters: next as usize,
        })
    }
    // ANCHOR_END: dbscan_fit
}

/// DBSCAN's answer on its training data.
#[derive(Clone, Debug, PartialEq)]
pub struct FittedDbscan {
    /// The cluster of every row, `-1` for noise.
    pub labels: Vec<i64>,
    /// Indices of the core samples, ascending.
    pub core_samples: Vec<usize>,
    /// Number of clusters.
    pub n_clusters: usize,
}

impl FittedDbscan {
    /// How many rows are noise.
    pub fn n_noise(&self) -> usize {
        self.labels.iter().filter(|&&l| l < 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn the_tree_finds_exactly_the_brute_force_neighbours() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x = Array2::from_shape_fn((500, 3), |_| rng.random::<f64>());
        let tree = KdTree::new(&x);
        for q in [0, 17, 250, 499] {
            let mut got = tree.within(x.row(q), 0.2);
            got.sort();
            let want: Vec<usize> = (0..500)
                .filter(|&j| {
                    let d2: f64 = (&x.row(q) - &x.row(j)).iter().map(|v| v * v).sum();
                    d2 <= 0.04
                })
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn core_border_and_noise() {
        // A row of points 0.1 apart: the inner ones are core (min_samples 3), the first
        // and the one 0.12 past the end are border, the far one is noise.
        let x = ndarray::array![[0.0], [0.1], [0.2], [0.3], [0.4], [0.52], [9.0]];
        let f = Dbscan::new(0.15).min_samples(3).fit(&x).unwrap();
        assert_eq!(f.labels, vec![0, 0, 0, 0, 0, 0, -1]);
        assert_eq!(f.core_samples, vec![1, 2, 3, 4]);
        assert_eq!(f.n_noise(), 1);
    }

    #[test]
    fn bad_hyper_parameters_are_errors() {
        let x = ndarray::array![[0.0], [1.0]];
        assert!(Dbscan::new(0.0).fit(&x).is_err());
        assert!(Dbscan::new(-1.0).fit(&x).is_err());
        assert!(Dbscan::new(0.5).min_samples(0).fit(&x).is_err());
    }
}
