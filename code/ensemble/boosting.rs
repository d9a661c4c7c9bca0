//! Gradient boosting with second-order (Newton) steps and histogram split finding, the
//! XGBoost objective derived from the loss.
//!
//! The model is a sum of trees, $F_M(x) = F_0 + \eta \sum_{m \le M} f_m(x)$. Round $m$
//! adds the tree $f$ that lowers the regularised loss
//! $\sum_i \ell(y_i, F_{m-1}(x_i) + f(x_i)) + \sum_{\text{leaves}} (\gamma + \tfrac12
//! \lambda w_\ell^2)$. A second-order Taylor expansion around the current margin, with
//! $g_i = \partial \ell / \partial F$ and $h_i = \partial^2 \ell / \partial F^2$, turns it
//! into a sum over leaves, each leaf $\ell$ holding rows $I_\ell$ with
//! $G = \sum_{I_\ell} g_i$, $H = \sum_{I_\ell} h_i$:
//!
//! $$\tilde L = \sum_\ell \left(G w_\ell + \tfrac12 (H + \lambda) w_\ell^2\right) + \gamma T.$$
//!
//! Each term is a parabola in $w_\ell$, minimised at $w^* = -G/(H+\lambda)$ with value
//! $-\frac12 G^2/(H+\lambda)$. Splitting a leaf into $L$ and $R$ therefore lowers the loss
//! by half the **gain**
//!
//! $$\text{gain} = \frac{G_L^2}{H_L+\lambda} + \frac{G_R^2}{H_R+\lambda} -
//! \frac{(G_L+G_R)^2}{H_L+H_R+\lambda},$$
//!
//! and a split is kept when its gain is positive and at least $\gamma$, with each child
//! holding hessian weight at least `min_child_weight`. Squared error has $g = F - y$,
//! $h = 1$; the logistic loss has $g = p - y$, $h = p(1-p)$ with $p = \sigma(F)$; the
//! softmax loss grows one tree per class per round with $g_k = p_k - [y = k]$ and, as
//! XGBoost does, $h_k = 2p_k(1-p_k)$ (a diagonal bound of the Hessian, twice its
//! diagonal, that keeps the Newton step from overshooting).
//!
//! **Histograms.** Every feature is cut at quantiles into at most 256 bins and stored as
//! a `u8` bin index, column-major. A node's split search needs only, per feature and
//! bin, the sums of $g$ and $h$ of its rows: one pass over the node's row list, and the
//! sweep over at most 256 bins finds the best threshold. A parent's histogram is the sum
//! of its children's, so only the smaller child's is built from rows; the larger one's is
//! the parent's minus it (the subtraction trick), which halves the work at every level.

use anyhow::{bail, Result};
use rayon::prelude::*;
use serde::Serialize;

use super::tree::{prefetch, Columns, Feature, PREFETCH_AHEAD};
use crate::progress;

/// Quantile cuts of every feature: bin `b` of feature `j` holds the values
/// `cuts[j][b-1] <= x < cuts[j][b]` (XGBoost's convention), so a split "bin <= t" is the
/// split `x < cuts[j][t]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Binner {
    /// Per feature, the sorted upper edges of its bins but the last.
    pub cuts: Vec<Vec<f64>>,
}

/// A row-major matrix of bin indices: a row's bins are contiguous, so building a
/// histogram reads a node's rows a cache line of features at a time (see
/// `build_hist`).
#[derive(Clone, Debug)]
pub struct Binned {
    /// Row-major bins: row `i` is `data[i * F..(i + 1) * F]` for `F` features.
    pub data: Vec<u8>,
    /// Rows.
    pub n_rows: usize,
    /// Bins of each feature.
    pub n_bins: Vec<usize>,
}

impl Binned {
    /// The bin of row `i`, feature `j`.
    fn at(&self, i: usize, j: usize) -> u8 {
        self.data[i * self.n_bins.len() + j]
    }
}

impl Binner {
    /// Cuts every feature of `x` into at most `max_bins` (2..=256) bins. With at most
    /// `max_bins` distinct values every value gets its own bin (then the cuts are the
    /// distinct values but the smallest, and the bins are exact); otherwise the cuts
    /// are the values at the quantiles `b / max_bins`.
    pub fn fit<T: Feature>(x: &Columns<T>, max_bins: usize) -> Result<Binner> {
        if !(2..=256).contains(&max_bins) {
            bail!("max_bins is {max_bins}: it must be in 2..=256 (bins are u8)");
        }
        let cuts = (0..x.n_cols())
            .into_par_iter()
            .map(|j| {
                let mut v: Vec<f64> = x.col(j).iter().map(|a| a.value()).collect();
                v.sort_unstable_by(f64::total_cmp);
                let mut distinct = v.clone();
                distinct.dedup();
                if distinct.len() <= max_bins {
                    return distinct[1..].to_vec();
                }
                let n = v.len();
                let mut c: Vec<f64> =
                    (1..max_bins).map(|b| v[b * n / max_bins]).collect();
                c.dedup();
                c.retain(|&t| t > v[0]);
                c
            })
            .collect();
        Ok(Binner { cuts })
    }

    /// The bin of value `v` of feature `j`: the number of cuts `<= v`.
    pub fn bin(&self, j: usize, v: f64) -> u8 {
        self.cuts[j].partition_point(|&c| c <= v) as u8
    }

    /// Bins every value of `x`. Panics if `x` has another number of features.
    pub fn transform<T: Feature>(&self, x: &Columns<T>) -> Binned {
        assert_eq!(
            x.n_cols(),
            self.cuts.len(),
            "binning ({}, {}) with cuts for {} features",
            x.n_rows(),
            x.n_cols(),
            self.cuts.len()
        );
        let (n, f) = (x.n_rows(), x.n_cols());
        let mut data = vec![0u8; n * f];
        // Blocks of 64 rows: the 64 values of a column that a block reads share a cache
        // line or two, so reading the columns across stays in cache.
        data.par_chunks_mut(64 * f.max(1))
            .enumerate()
            .for_each(|(block, out)| {
                for (r, row) in out.chunks_mut(f).enumerate() {
                    let i = block * 64 + r;
                    for (j, o) in row.iter_mut().enumerate() {
                        *o = self.bin(j, x.col(j)[i].value());
                    }
                }
            });
        Binned {
            data,
            n_rows: n,
            n_bins: self.cuts.iter().map(|c| c.len() + 1).collect(),
        }
    }
}

/// The loss a booster minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Objective {
    /// $\frac12 (y - F)^2$.
    SquaredError,
    /// Binary log loss, labels 0 and 1, $p = \sigma(F)$.
    Logistic,
    /// Multinomial log loss over this many classes, one tree per class per round.
    Softmax(usize),
}

impl Objective {
    fn n_outputs(self) -> usize {
        match self {
            Objective::Softmax(k) => k,
            _ => 1,
        }
    }
}

// ANCHOR: booster_params
/// Unfitted gradient-boosted trees.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GradientBoosting {
    /// The loss.
    pub objective: Objective,
    /// Boosting rounds (trees per output).
    pub n_rounds: usize,
    /// Shrinkage $\eta$ applied to every leaf weight.
    pub lr: f64,
    /// Depth of every tree (the root is depth 0).
    pub max_depth: usize,
    /// L2 penalty $\lambda$ on leaf weights.
    pub lambda: f64,
    /// Smallest gain a split must have ($\gamma$).
    pub gamma: f64,
    /// Smallest hessian sum in a child.
    pub min_child_weight: f64,
    /// Bins per feature (at most 256).
    pub max_bins: usize,
    /// Starting prediction: a probability for `Logistic`, a value for `SquaredError`
    /// (margin 0 for `Softmax`); `None`: the training mean (the log-odds of it).
    pub base_score: Option<f64>,
    /// Stop when the validation loss has not improved for this many rounds (needs a
    /// validation set), keeping the best round's trees.
    pub early_stopping_rounds: Option<usize>,
}
// ANCHOR_END: booster_params

impl Default for GradientBoosting {
    /// XGBoost's defaults: 100 rounds, $\eta = 0.3$, depth 6, $\lambda = 1$, 256 bins.
    fn default() -> Self {
        GradientBoosting {
            objective: Objective::Logistic,
            n_rounds: 100,
            lr: 0.3,
            max_depth: 6,
            lambda: 1.0,
            gamma: 0.0,
            min_child_weight: 1.0,
            max_bins: 256,
            base_score: None,
            early_stopping_rounds: None,
        }
    }
}

/// One node of a boosted tree.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BoostNode {
    /// The split feature, or `None` for a leaf.
    pub feature: Option<usize>,
    /// Rows whose bin is `<= bin` go left.
    pub bin: u8,
    /// The same split on raw values: `x < threshold` goes left.
    pub threshold: f64,
    /// Left child.
    pub left: usize,
    /// Right child.
    pub right: usize,
    /// The leaf's weight, shrinkage included (0 for an inner node).
    pub leaf: f64,
    /// The split's gain (0 for a leaf).
    pub gain: f64,
    /// The node's hessian sum (XGBoost's "cover").
    pub cover: f64,
}

/// A fitted booster.
#[derive(Clone, Debug, Serialize)]
pub struct FittedBoosting {
    /// Trees in order: round `m`, output `k` is `trees[m * n_outputs + k]`.
    pub trees: Vec<Vec<BoostNode>>,
    /// Outputs per round (classes for softmax, else 1).
    pub n_outputs: usize,
    /// The starting margin of every output.
    pub base_margin: f64,
    /// The loss.
    pub objective: Objective,
    /// The binner the trees' bins refer to.
    pub binner: Binner,
    /// Validation loss after every round (empty without a validation set).
    pub valid_loss: Vec<f64>,
    /// Rounds kept (after early stopping: the best one).
    pub best_rounds: usize,
}

/// Gradient and hessian sums of one bin.
type GH = [f64; 2];

/// Histogram buffers of finished nodes, kept for the next ones: a histogram of MNIST
/// is 784 × 256 bins (3 MB), and freeing and allocating one per node makes the
/// allocator hand the memory back to the kernel and fault it in again.
#[derive(Default)]
struct Spare(Vec<Vec<GH>>);

impl Spare {
    /// A zeroed histogram of `len` bins.
    fn zeroed(&mut self, len: usize) -> Vec<GH> {
        match self.0.pop() {
            Some(mut v) => {
                v.clear();
                v.resize(len, [0.0; 2]);
                v
            }
            None => vec![[0.0; 2]; len],
        }
    }

    fn give(&mut self, v: Vec<GH>) {
        if v.capacity() > 0 {
            self.0.push(v);
        }
    }
}

/// Features whose histograms one pass over a node's rows builds (see `build_hist`).
const FEATURES_PER_PASS: usize = 32;

/// One node being grown: its rows and its histogram (`n_features * stride` bins).
struct Growing {
    id: usize,
    rows: Vec<u32>,
    hist: Vec<GH>,
    /// The gradient sum of its rows.
    g: f64,
}

impl GradientBoosting {
    fn validate(&self, n: usize, y: &[f64]) -> Result<()> {
        if n == 0 || y.len() != n {
            bail!("{} targets for {n} rows", y.len());
        }
        if self.n_rounds == 0 || self.lr.is_nan() || self.lr <= 0.0 || self.max_depth == 0
        {
            bail!(
                "need n_rounds >= 1, lr > 0 and max_depth >= 1 (got {}, {}, {})",
                self.n_rounds,
                self.lr,
                self.max_depth
            );
        }
        if self.lambda.is_nan()
            || self.lambda < 0.0
            || self.gamma.is_nan()
            || self.gamma < 0.0
            || self.min_child_weight.is_nan()
            || self.min_child_weight < 0.0
        {
            bail!("lambda, gamma and min_child_weight must be >= 0");
        }
        let ok = match self.objective {
            Objective::SquaredError => y.iter().all(|v| v.is_finite()),
            Objective::Logistic => y.iter().all(|&v| v == 0.0 || v == 1.0),
            Objective::Softmax(k) => {
                k >= 2
                    && y.iter()
                        .all(|&v| v >= 0.0 && v.fract() == 0.0 && (v as usize) < k)
            }
        };
        if !ok {
            bail!("targets do not fit the objective {:?}", self.objective);
        }
        if let Some(b) = self.base_score {
            if self.objective == Objective::Logistic && !(b > 0.0 && b < 1.0) {
                bail!("base_score {b} is not a probability in (0, 1)");
            }
        }
        Ok(())
    }

    /// Fits on `x` with targets `y` (class indices as `f64` for the classifiers),
    /// watching the loss on `valid` if given (and stopping early if asked to).
    pub fn fit<T: Feature>(
        &self,
        x: &Columns<T>,
        y: &[f64],
        valid: Option<(&Columns<T>, &[f64])>,
    ) -> Result<FittedBoosting> {
        self.validate(x.n_rows(), y)?;
        if self.early_stopping_rounds.is_some() && valid.is_none() {
            bail!("early stopping needs a validation set");
        }
        let binner = Binner::fit(x, self.max_bins)?;
        let bx = binner.transform(x);
        let bv = valid.map(|(v, vy)| (binner.transform(v), vy));
        self.fit_binned(binner, &bx, y, bv.as_ref().map(|(b, vy)| (b, *vy)))
    }

    // ANCHOR: boost_rounds
    /// Fits on pre-binned features (the bins of `binner`).
    pub fn fit_binned(
        &self,
        binner: Binner,
        x: &Binned,
        y: &[f64],
        valid: Option<(&Binned, &[f64])>,
    ) -> Result<FittedBoosting> {
        self.validate(x.n_rows, y)?;
        let (n, k) = (x.n_rows, self.objective.n_outputs());
        let base_margin = match (self.objective, self.base_score) {
            (Objective::Softmax(_), _) => 0.0,
            (Objective::SquaredError, b) => b.unwrap_or(y.iter().sum::<f64>() / n as f64),
            (Objective::Logistic, b) => {
                let p = b
                    .unwrap_or(y.iter().sum::<f64>() / n as f64)
                    .clamp(1e-6, 1.0 - 1e-6);
                (p / (1.0 - p)).ln()
            }
        };
        let mut margin = vec![base_margin; n * k];
        let mut vmargin = valid.map(|(v, _)| vec![base_margin; v.n_rows * k]);
        let (mut trees, mut valid_loss) = (Vec::new(), Vec::new());
        let (mut best, mut best_rounds) = (f64::INFINITY, 0);
        let mut spare = Spare::default();
        let bar = progress::bar(self.n_rounds as u64, "boosting rounds");
        for round in 0..self.n_rounds {
            let (g, h) = self.gradients(&margin, y);
            for c in 0..k {
                let gc: Vec<f64> = (0..n).map(|i| g[i * k + c]).collect();
                let hc: Vec<f64> = (0..n).map(|i| h[i * k + c]).collect();
                let (tree, leaf_rows) = self.grow_tree(&binner, x, &gc, &hc, &mut spare);
                for (leaf, rows) in leaf_rows {
                    for i in rows {
                        margin[i as usize * k + c] += tree[leaf].leaf;
                    }
                }
                if let (Some(vm), Some((v, _))) = (vmargin.as_mut(), valid) {
                    for i in 0..v.n_rows {
                        vm[i * k + c] += predict_binned(&tree, v, i);
                    }
                }
                trees.push(tree);
            }
            bar.inc(1);
            if let (Some(vm), Some((_, vy))) = (vmargin.as_ref(), valid) {
                let l = self.loss(vm, vy);
                valid_loss.push(l);
                if l < best {
                    (best, best_rounds) = (l, round + 1);
                } else if self
                    .early_stopping_rounds
                    .is_some_and(|s| round + 1 - best_rounds >= s)
                {
                    break;
                }
            }
        }
        bar.finish_and_clear();
        let rounds = if self.early_stopping_rounds.is_some() {
            best_rounds
        } else {
            trees.len() / k
        };
        trees.truncate(rounds * k);
        Ok(FittedBoosting {
            trees,
            n_outputs: k,
            base_margin,
            objective: self.objective,
            binner,
            valid_loss,
            best_rounds: rounds,
        })
    }
    // ANCHOR_END: boost_rounds

    // ANCHOR: gradients
    /// First and second derivatives of the loss at the margins, `(N, k)` row-major.
    fn gradients(&self, margin: &[f64], y: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let mut g = vec![0.0; margin.len()];
        let mut h = vec![0.0; margin.len()];
        match self.objective {
            Objective::SquaredError => {
                for i in 0..y.len() {
                    (g[i], h[i]) = (margin[i] - y[i], 1.0);
                }
            }
            Objective::Logistic => {
                for i in 0..y.len() {
                    let p = sigmoid(margin[i]);
                    (g[i], h[i]) = (p - y[i], (p * (1.0 - p)).max(1e-16));
                }
            }
            Objective::Softmax(k) => {
                for (i, &yi) in y.iter().enumerate() {
                    let p = softmax(&margin[i * k..(i + 1) * k]);
                    for c in 0..k {
                        let t = if c == yi as usize { 1.0 } else { 0.0 };
                        g[i * k + c] = p[c] - t;
                        h[i * k + c] = (2.0 * p[c] * (1.0 - p[c])).max(1e-16);
                    }
                }
            }
        }
        (g, h)
    }
    // ANCHOR_END: gradients

    /// Mean loss at the margins: half the mean squared error, or the mean log loss.
    fn loss(&self, margin: &[f64], y: &[f64]) -> f64 {
        let n = y.len() as f64;
        match self.objective {
            Objective::SquaredError => {
                margin
                    .iter()
                    .zip(y)
                    .map(|(m, t)| 0.5 * (m - t) * (m - t))
                    .sum::<f64>()
                    / n
            }
            Objective::Logistic => {
                margin
                    .iter()
                    .zip(y)
                    .map(|(&m, &t)| {
                        let p = sigmoid(m).clamp(1e-15, 1.0 - 1e-15);
                        -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
                    })
                    .sum::<f64>()
                    / n
            }
            Objective::Softmax(k) => {
                y.iter()
                    .enumerate()
                    .map(|(i, &t)| {
                        -softmax(&margin[i * k..(i + 1) * k])[t as usize]
                            .max(1e-15)
                            .ln()
                    })
                    .sum::<f64>()
                    / n
            }
        }
    }

    // ANCHOR: grow_tree
    /// Grows one tree depth by depth on gradients `g` and hessians `h`; returns its
    /// nodes and the rows of each leaf.
    fn grow_tree(
        &self,
        binner: &Binner,
        x: &Binned,
        g: &[f64],
        h: &[f64],
        spare: &mut Spare,
    ) -> (Vec<BoostNode>, Vec<(usize, Vec<u32>)>) {
        // Bins per feature in the histogram, padded by one cache line (4 bins): with
        // 256 bins a feature's histogram is 4 KiB, and 64 histograms 4 KiB apart would
        // all fall in the same few sets of the L1 cache.
        let stride = x
            .n_bins
            .iter()
            .copied()
            .max()
            .unwrap_or(1)
            .next_multiple_of(4)
            + 4;
        let rows: Vec<u32> = (0..x.n_rows as u32).collect();
        let mut hist = spare.zeroed(x.n_bins.len() * stride);
        build_hist(x, stride, &rows, g, h, &mut hist);
        let (gs, hs) = (
            rows.iter().map(|&i| g[i as usize]).sum(),
            rows.iter().map(|&i| h[i as usize]).sum(),
        );
        let mut nodes = vec![self.leaf_node(gs, hs)];
        let mut level = vec![Growing {
            id: 0,
            rows,
            hist,
            g: gs,
        }];
        let mut leaves = Vec::new();
        for depth in 0..=self.max_depth {
            let mut next = Vec::new();
            for node in level {
                let (gsum, hsum) = (node.g, nodes[node.id].cover);
                let split = if depth < self.max_depth {
                    self.best_split(x, &node.hist, stride, gsum, hsum)
                } else {
                    None
                };
                let Some((f, t, gain, [gl, hl])) = split else {
                    spare.give(node.hist);
                    leaves.push((node.id, node.rows));
                    continue;
                };
                let (lrows, rrows): (Vec<u32>, Vec<u32>) =
                    node.rows.iter().partition(|&&i| x.at(i as usize, f) <= t);
                let (l, r) = (nodes.len(), nodes.len() + 1);
                nodes.push(self.leaf_node(gl, hl));
                nodes.push(self.leaf_node(gsum - gl, hsum - hl));
                let n = &mut nodes[node.id];
                *n = BoostNode {
                    feature: Some(f),
                    bin: t,
                    threshold: binner.cuts[f]
                        .get(t as usize)
                        .copied()
                        .unwrap_or(f64::INFINITY),
                    left: l,
                    right: r,
                    leaf: 0.0,
                    gain,
                    cover: hsum,
                };
                // Build the smaller child's histogram; the larger one is the parent's
                // minus it. Children at the last depth are leaves and need none.
                let (gr, left_small) = (gsum - gl, lrows.len() <= rrows.len());
                let (small, small_id, small_g, large, large_id, large_g) = if left_small {
                    (lrows, l, gl, rrows, r, gr)
                } else {
                    (rrows, r, gr, lrows, l, gl)
                };
                let (mut small_hist, mut large_hist) = (Vec::new(), node.hist);
                if depth + 1 < self.max_depth {
                    small_hist = spare.zeroed(large_hist.len());
                    build_hist(x, stride, &small, g, h, &mut small_hist);
                    for (a, b) in large_hist.iter_mut().zip(&small_hist) {
                        a[0] -= b[0];
                        a[1] -= b[1];
                    }
                } else {
                    spare.give(std::mem::take(&mut large_hist));
                }
                next.push(Growing {
                    id: small_id,
                    rows: small,
                    hist: small_hist,
                    g: small_g,
                });
                next.push(Growing {
                    id: large_id,
                    rows: large,
                    hist: large_hist,
                    g: large_g,
                });
            }
            // Children in creation order, so nodes are numbered level by level, left
            // before right, as XGBoost numbers them.
            next.sort_by_key(|g| g.id);
            level = next;
        }
        (nodes, leaves)
    }
    // ANCHOR_END: grow_tree

    fn leaf_node(&self, g: f64, h: f64) -> BoostNode {
        BoostNode {
            feature: None,
            bin: 0,
            threshold: 0.0,
            left: 0,
            right: 0,
            leaf: -self.lr * g / (h + self.lambda),
            gain: 0.0,
            cover: h,
        }
    }

    // ANCHOR: best_split
    /// The best split of a node from its histogram: `(feature, bin, gain, left sums)`.
    /// Ties go to the lower feature, then the lower bin (as in XGBoost).
    fn best_split(
        &self,
        x: &Binned,
        hist: &[GH],
        stride: usize,
        gsum: f64,
        hsum: f64,
    ) -> Option<(usize, u8, f64, GH)> {
        let lambda = self.lambda;
        let parent = gsum * gsum / (hsum + lambda);
        let per_feature: Vec<Option<(f64, u8, GH)>> = hist
            .par_chunks(stride)
            .zip(&x.n_bins)
            .map(|(bins, &nb)| {
                let mut best: Option<(f64, u8, GH)> = None;
                let (mut gl, mut hl) = (0.0, 0.0);
                for (b, gh) in bins[..nb - 1].iter().enumerate() {
                    gl += gh[0];
                    hl += gh[1];
                    let (gr, hr) = (gsum - gl, hsum - hl);
                    if hl < self.min_child_weight || hr < self.min_child_weight {
                        continue;
                    }
                    let gain = gl * gl / (hl + lambda) + gr * gr / (hr + lambda) - parent;
                    if best.is_none_or(|(bg, _, _)| gain > bg) {
                        best = Some((gain, b as u8, [gl, hl]));
                    }
                }
                best
            })
            .collect();
        let mut best: Option<(usize, u8, f64, GH)> = None;
        for (f, c) in per_feature.into_iter().enumerate() {
            if let Some((gain, b, gh)) = c {
                // Two features that cut the rows the same way have the same gain up to
                // the order of the sums; such a tie goes to the lower feature.
                if best.is_none_or(|(_, _, bg, _)| gain > bg + 1e-10 * bg.abs()) {
                    best = Some((f, b, gain, gh));
                }
            }
        }
        // XGBoost's rule: a split must gain more than 1e-6 and at least gamma.
        best.filter(|&(_, _, gain, [_, hl])| {
            gain > 1e-6 && gain >= self.gamma && hl > 0.0 && hsum - hl > 0.0
        })
    }
    // ANCHOR_END: best_split
}

// ANCHOR: build_hist
/// The gradient and hessian sums per feature and bin over `rows`, added into `hist`
/// (`(F, stride)` bins, zeroed by the caller). The rows' `(g, h)` pairs are first
/// gathered into row-list order. Each rayon task then takes a block of 32 features
/// (its histograms, 32 × 256 bins, stay in the core's cache) and passes over the rows
/// once: a row's 32 bins are one contiguous read, and its pair goes into 32 different
/// histograms, additions that do not wait for each other. Each bin still sums its rows
/// in row-list order, so the sums are those of one feature and one row at a time, to
/// the last bit. (A constant feature gets its sums too; the split search skips it.)
fn build_hist(
    x: &Binned,
    stride: usize,
    rows: &[u32],
    g: &[f64],
    h: &[f64],
    hist: &mut [GH],
) {
    let f = x.n_bins.len();
    let gh: Vec<GH> = rows
        .iter()
        .map(|&i| [g[i as usize], h[i as usize]])
        .collect();
    hist.par_chunks_mut(FEATURES_PER_PASS * stride)
        .enumerate()
        .for_each(|(block, out)| {
            let (j0, width) = (block * FEATURES_PER_PASS, out.len() / stride);
            for (p, (&i, pair)) in rows.iter().zip(&gh).enumerate() {
                if let Some(&ahead) = rows.get(p + PREFETCH_AHEAD) {
                    let start = ahead as usize * f + j0;
                    prefetch(&x.data[start]);
                    prefetch(&x.data[start + width - 1]);
                }
                let start = i as usize * f + j0;
                for (o, &b) in x.data[start..start + width].iter().enumerate() {
                    let s = &mut out[o * stride + b as usize];
                    *s = [s[0] + pair[0], s[1] + pair[1]];
                }
            }
        });
}
// ANCHOR_END: build_hist

fn predict_binned(tree: &[BoostNode], x: &Binned, i: usize) -> f64 {
    let mut n = &tree[0];
    while let Some(f) = n.feature {
        n = if x.at(i, f) <= n.bin {
            &tree[n.left]
        } else {
            &tree[n.right]
        };
    }
    n.leaf
}

fn predict_raw<T: Feature>(tree: &[BoostNode], x: &Columns<T>, i: usize) -> f64 {
    let mut n = &tree[0];
    while let Some(f) = n.feature {
        n = if x.col(f)[i].value() < n.threshold {
            &tree[n.left]
        } else {
            &tree[n.right]
        };
    }
    n.leaf
}

/// $\sigma(z) = 1 / (1 + e^{-z})$.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The softmax of `z`, shifted by its maximum for stability.
pub fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

impl FittedBoosting {
    /// Margins of every row of `x` (raw values): `(N, n_outputs)` row-major.
    pub fn margins<T: Feature>(&self, x: &Columns<T>) -> Vec<f64> {
        let k = self.n_outputs;
        let mut m = vec![self.base_margin; x.n_rows() * k];
        m.par_chunks_mut(k).enumerate().for_each(|(i, out)| {
            for (t, tree) in self.trees.iter().enumerate() {
                out[t % k] += predict_raw(tree, x, i);
            }
        });
        m
    }

    /// Predicted values (squared error), probabilities of class 1 (logistic) or class
    /// probabilities (softmax, `(N, k)` row-major).
    pub fn predict_proba<T: Feature>(&self, x: &Columns<T>) -> Vec<f64> {
        let m = self.margins(x);
        match self.objective {
            Objective::SquaredError => m,
            Objective::Logistic => m.into_iter().map(sigmoid).collect(),
            Objective::Softmax(k) => m.chunks(k).flat_map(softmax).collect(),
        }
    }

    /// Predicted classes (the classifiers).
    pub fn predict<T: Feature>(&self, x: &Columns<T>) -> Vec<usize> {
        let p = self.predict_proba(x);
        match self.objective {
            Objective::Softmax(k) => super::tree::argmax_rows(&p, k),
            _ => p.into_iter().map(|v| usize::from(v > 0.5)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_get_one_bin_each_and_quantiles_cap_the_rest() {
        let x = ndarray::Array2::from_shape_fn((1000, 2), |(i, j)| {
            if j == 0 {
                (i % 4) as f64
            } else {
                i as f64
            }
        });
        let b = Binner::fit(&Columns::from_rows(x.view()), 16).unwrap();
        assert_eq!(b.cuts[0], vec![1.0, 2.0, 3.0]);
        assert_eq!(b.cuts[1].len(), 15);
        let bx = b.transform(&Columns::from_rows(x.view()));
        assert_eq!(bx.n_bins, vec![4, 16]);
        // Equal-count bins: each holds 1000 / 16 rows, give or take one.
        let mut count = [0usize; 16];
        (0..1000).for_each(|i| count[bx.at(i, 1) as usize] += 1);
        assert!(count.iter().all(|&c| (62..=63).contains(&c)), "{count:?}");
        assert!(Binner::fit(&Columns::from_rows(x.view()), 257).is_err());
    }

    #[test]
    fn one_round_of_squared_error_with_lambda_zero_and_lr_one_is_the_regression_tree() {
        // With h = 1, lambda = 0 and eta = 1 a leaf's weight is minus its mean gradient:
        // the mean residual, as a least-squares tree would predict.
        let x = ndarray::array![[0.0], [1.0], [2.0], [3.0]];
        let y = [1.0, 1.0, 3.0, 5.0];
        let gb = GradientBoosting {
            objective: Objective::SquaredError,
            n_rounds: 1,
            lr: 1.0,
            max_depth: 1,
            lambda: 0.0,
            min_child_weight: 0.0,
            base_score: Some(0.0),
            ..Default::default()
        };
        let x = Columns::from_rows(x.view());
        let f = gb.fit(&x, &y, None).unwrap();
        assert_eq!(f.predict_proba(&x), vec![1.0, 1.0, 4.0, 4.0]);
        // gain = 2^2/2 + 8^2/2 - 10^2/4 = 2 + 32 - 25.
        assert!((f.trees[0][0].gain - 9.0).abs() < 1e-12);
    }

    #[test]
    fn the_subtraction_trick_gives_the_histogram_built_from_rows() {
        // Six features, one of them constant.
        let x = ndarray::Array2::from_shape_fn((200, 6), |(i, j)| {
            if j == 4 {
                1.0
            } else {
                ((i * (j + 3)) % 17) as f64
            }
        });
        let b = Binner::fit(&Columns::from_rows(x.view()), 256).unwrap();
        let bx = b.transform(&Columns::from_rows(x.view()));
        let g: Vec<f64> = (0..200).map(|i| (i as f64).sin()).collect();
        let h: Vec<f64> = (0..200).map(|i| 1.0 + (i % 3) as f64).collect();
        let all: Vec<u32> = (0..200).collect();
        let (l, r): (Vec<u32>, Vec<u32>) = all.iter().partition(|&&i| i % 5 < 2);
        let stride = 17;
        let built = |rows: &[u32]| {
            let mut hist = vec![[0.0; 2]; 6 * stride];
            build_hist(&bx, stride, rows, &g, &h, &mut hist);
            hist
        };
        let (parent, left, right) = (built(&all), built(&l), built(&r));
        // One feature and one row at a time, in row order: the same bits.
        let mut naive = vec![[0.0; 2]; 6 * stride];
        for j in 0..6 {
            for &i in &l {
                let b = &mut naive[j * stride + bx.at(i as usize, j) as usize];
                b[0] += g[i as usize];
                b[1] += h[i as usize];
            }
        }
        assert_eq!(left, naive);
        for ((p, a), b) in parent.iter().zip(&left).zip(&right) {
            assert!(
                (p[0] - a[0] - b[0]).abs() < 1e-12 && (p[1] - a[1] - b[1]).abs() < 1e-12
            );
        }
    }

    #[test]
    fn bad_hyper_parameters_and_labels_are_errors() {
        let x = Columns::from_rows(ndarray::array![[0.0], [1.0]].view());
        let gb = GradientBoosting::default();
        assert!(gb.fit(&x, &[0.0, 2.0], None).is_err());
        assert!(GradientBoosting {
            lr: 0.0,
            ..gb.clone()
        }
        .fit(&x, &[0.0, 1.0], None)
        .is_err());
        assert!(GradientBoosting {
            max_depth: 0,
            ..gb.clone()
        }
        .fit(&x, &[0.0, 1.0], None)
        .is_err());
        let es = GradientBoosting {
            early_stopping_rounds: Some(3),
            ..gb
        };
        assert!(es.fit(&x, &[0.0, 1.0], None).is_err());
    }
}
