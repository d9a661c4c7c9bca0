//! CART decision trees: one greedy, axis-aligned split at a time.
//!
//! A node holding rows $S$ with weights $w_i$ is split on the feature $j$ and threshold
//! $t$ that most lower the weighted impurity,
//!
//! $$\Delta = W_S\,I(S) - W_L\,I(L) - W_R\,I(R), \qquad L = \{i \in S : x_{ij} \le t\},$$
//!
//! with $I$ the Gini impurity $1 - \sum_k p_k^2$ or the entropy $-\sum_k p_k \ln p_k$ of
//! the weighted class shares $p_k$ (classification), or the weighted variance of the
//! target (regression: squared error). The exact search sorts the node's values of each
//! candidate feature and sweeps the sorted order once, moving one row at a time from
//! right to left and updating the children's sufficient statistics (class weights, or
//! $\sum w$, $\sum w y$), so a feature costs $O(n \log n)$. Thresholds sit halfway
//! between two consecutive distinct values, as scikit-learn places them. The sum of a
//! feature's $\Delta$ over the tree, normalised to sum to one, is its importance.
//!
//! Features arrive column-major ([`Columns`]), in `f64` or as `u8` codes (MNIST's
//! pixels): a column is then contiguous, which is what the per-feature sweep reads.
//! For `u8` codes a node of at least 48 rows skips the sort: it adds each row's weight
//! to a 256-bin histogram of class weights and sweeps the bins, which meets the same
//! candidate thresholds in $O(n + 256 k)$; with whole-number weights it finds the very
//! split the sorted sweep finds. A node draws its candidate features one at a time
//! (a partial Fisher-Yates shuffle), so drawing 28 of MNIST's 784 costs 28 draws.

use anyhow::{bail, Result};
use ndarray::ArrayView2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// scikit-learn's rule for two feature values to count as distinct (its
/// `FEATURE_THRESHOLD`): a split between values closer than this is not considered.
const DISTINCT: f64 = 1e-7;

/// Nodes with at least this many rows search `u8` features through a histogram of the
/// 256 codes instead of sorting (below it, sorting a few rows is cheaper than sweeping
/// the bins).
const HISTOGRAM_MIN_ROWS: usize = 48;

/// How many rows ahead a pass over a node's rows asks for the feature value it will
/// need: the rows of a deep node are scattered over the column, so each value is a
/// cache miss the hardware cannot foresee, and asking early overlaps them (on MNIST's
/// 60,000 digits this took a quarter off the forest's CPU time).
pub(crate) const PREFETCH_AHEAD: usize = 24;

/// Asks the CPU to bring `v` into cache; a hint only, with no effect on results.
pub(crate) fn prefetch<T>(v: &T) {
    // SAFETY: a prefetch never faults and reads nothing into the program; `v` is a
    // valid reference besides.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (v as *const T).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// A feature value a tree can split on.
pub trait Feature: Copy + PartialOrd + Send + Sync + 'static {
    /// The value as `f64` (thresholds are stored in `f64`).
    fn value(self) -> f64;

    /// The value as one of 256 codes, for types that have them (`u8`): such features
    /// can be searched through a histogram, which finds the same split as sorting.
    fn code(self) -> Option<u8> {
        None
    }
}

impl Feature for f64 {
    fn value(self) -> f64 {
        self
    }
}

impl Feature for u8 {
    fn value(self) -> f64 {
        f64::from(self)
    }

    fn code(self) -> Option<u8> {
        Some(self)
    }
}

/// A column-major feature matrix: column `j` is `data[j * n_rows..(j + 1) * n_rows]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Columns<T> {
    data: Vec<T>,
    n_rows: usize,
    n_cols: usize,
}

impl<T: Feature> Columns<T> {
    /// From column-major values. Panics if `data.len() != n_rows * n_cols`.
    pub fn new(data: Vec<T>, n_rows: usize, n_cols: usize) -> Self {
        assert_eq!(
            data.len(),
            n_rows * n_cols,
            "Columns::new: {} values for a ({n_rows}, {n_cols}) matrix",
            data.len()
        );
        Columns {
            data,
            n_rows,
            n_cols,
        }
    }

    /// Column `j`.
    pub fn col(&self, j: usize) -> &[T] {
        &self.data[j * self.n_rows..(j + 1) * self.n_rows]
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of columns (features).
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Row `i` as a vector.
    pub fn row(&self, i: usize) -> Vec<T> {
        (0..self.n_cols).map(|j| self.col(j)[i]).collect()
    }

    /// The rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Self {
        let mut data = Vec::with_capacity(idx.len() * self.n_cols);
        for j in 0..self.n_cols {
            let c = self.col(j);
            data.extend(idx.iter().map(|&i| c[i]));
        }
        Columns::new(data, idx.len(), self.n_cols)
    }
}

impl Columns<f64> {
    /// From an `(N, F)` row-major matrix.
    pub fn from_rows(x: ArrayView2<f64>) -> Self {
        let (n, f) = x.dim();
        // (N, F) -> column-major: iterate the transpose in logical order.
        let data: Vec<f64> = x.t().iter().copied().collect();
        Columns::new(data, n, f)
    }
}

impl Columns<u8> {
    /// From `(N, F)` rows of bytes stored row by row (MNIST's layout).
    pub fn from_u8_rows(rows: &[u8], n_rows: usize, n_cols: usize) -> Self {
        assert_eq!(
            rows.len(),
            n_rows * n_cols,
            "Columns::from_u8_rows: {} bytes for ({n_rows}, {n_cols})",
            rows.len()
        );
        let mut data = vec![0u8; rows.len()];
        for i in 0..n_rows {
            for j in 0..n_cols {
                data[j * n_rows + i] = rows[i * n_cols + j];
            }
        }
        Columns::new(data, n_rows, n_cols)
    }
}

/// What a tree predicts.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// Class labels in `0..n_classes`.
    Classes(&'a [usize], usize),
    /// Real values (regression).
    Values(&'a [f64]),
}

impl Target<'_> {
    fn len(&self) -> usize {
        match self {
            Target::Classes(y, _) => y.len(),
            Target::Values(y) => y.len(),
        }
    }
}

/// The impurity a split lowers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Criterion {
    /// Gini impurity $1 - \sum_k p_k^2$ (classification).
    Gini,
    /// Entropy $-\sum_k p_k \ln p_k$ (classification).
    Entropy,
    /// Weighted variance of the target (regression).
    SquaredError,
}

/// How many features a split looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MaxFeatures {
    /// Every feature (the tree is deterministic).
    All,
    /// $\lfloor\sqrt F\rfloor$ features drawn at random per split (random forests).
    Sqrt,
    /// This many features drawn at random per split.
    Count(usize),
}

// ANCHOR: tree_params
/// An unfitted CART tree: its hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecisionTree {
    /// The impurity to lower.
    pub criterion: Criterion,
    /// Deepest node depth (the root has depth 0); `None`: grow until pure.
    pub max_depth: Option<usize>,
    /// A node with fewer rows is a leaf.
    pub min_samples_split: usize,
    /// Each child keeps at least this many rows.
    pub min_samples_leaf: usize,
    /// Features drawn per split, without replacement. As in scikit-learn, a drawn
    /// feature counts even if it is constant on the node's rows, and drawing goes on
    /// past the number only until one non-constant feature has been examined.
    pub max_features: MaxFeatures,
    /// Extremely randomised trees: one uniform random threshold per examined feature
    /// instead of the best one.
    pub random_thresholds: bool,
    /// Seed of the feature draws and random thresholds.
    pub seed: u64,
}
// ANCHOR_END: tree_params

impl Default for DecisionTree {
    fn default() -> Self {
        DecisionTree {
            criterion: Criterion::Gini,
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: MaxFeatures::All,
            random_thresholds: false,
            seed: 0,
        }
    }
}

/// One node of a fitted tree.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    /// The split feature, or `None` for a leaf.
    pub feature: Option<usize>,
    /// Rows with `x[feature] <= threshold` go left.
    pub threshold: f64,
    /// Index of the left child (0 for a leaf).
    pub left: usize,
    /// Index of the right child (0 for a leaf).
    pub right: usize,
    /// Class shares (classification) or the mean target (regression, one value).
    pub value: Vec<f64>,
    /// The node's impurity.
    pub impurity: f64,
    /// Rows in the node.
    pub n_samples: usize,
    /// Their total weight.
    pub weight: f64,
}

/// A fitted tree: nodes in pre-order (a node, its left subtree, its right subtree), as
/// scikit-learn numbers them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FittedTree {
    /// The nodes; the root is node 0.
    pub nodes: Vec<Node>,
    /// Number of features it was fitted on.
    pub n_features: usize,
    /// Classes (classification) or 1 (regression).
    pub n_outputs: usize,
    /// Total impurity decrease per feature, normalised to sum to one (zeros if the
    /// tree is a single leaf).
    pub importances: Vec<f64>,
}

/// Sufficient statistics of a set of weighted rows.
#[derive(Clone, Debug)]
enum Stats {
    /// Weight per class.
    Classes(Vec<f64>),
    /// `(sum w, sum w y, sum w y^2)`.
    Values(f64, f64, f64),
}

impl Stats {
    fn empty(target: &Target) -> Stats {
        match target {
            Target::Classes(_, k) => Stats::Classes(vec![0.0; *k]),
            Target::Values(_) => Stats::Values(0.0, 0.0, 0.0),
        }
    }

    fn add(&mut self, target: &Target, i: usize, w: f64, sign: f64) {
        match (self, target) {
            (Stats::Classes(c), Target::Classes(y, _)) => c[y[i]] += sign * w,
            (Stats::Values(sw, swy, swyy), Target::Values(y)) => {
                *sw += sign * w;
                *swy += sign * w * y[i];
                *swyy += sign * w * y[i] * y[i];
            }
            _ => unreachable!("statistics and target of different kinds"),
        }
    }

    /// Back to no rows, keeping the allocation.
    fn clear(&mut self) {
        match self {
            Stats::Classes(c) => c.fill(0.0),
            Stats::Values(a, b, c) => (*a, *b, *c) = (0.0, 0.0, 0.0),
        }
    }

    fn weight(&self) -> f64 {
        match self {
            Stats::Classes(c) => c.iter().sum(),
            Stats::Values(sw, _, _) => *sw,
        }
    }

    /// The impurity of these rows.
    fn impurity(&self, criterion: Criterion) -> f64 {
        let w = self.weight();
        if w <= 0.0 {
            return 0.0;
        }
        match (self, criterion) {
            (Stats::Classes(c), Criterion::Gini) => {
                1.0 - c.iter().map(|&ck| (ck / w) * (ck / w)).sum::<f64>()
            }
            (Stats::Classes(c), Criterion::Entropy) => -c
                .iter()
                .filter(|&&ck| ck > 0.0)
                .map(|&ck| (ck / w) * (ck / w).ln())
                .sum::<f64>(),
            (Stats::Values(sw, swy, swyy), Criterion::SquaredError) => {
                let mean = swy / sw;
                (swyy / sw - mean * mean).max(0.0)
            }
            _ => unreachable!("criterion {criterion:?} does not fit the target"),
        }
    }

    fn value(&self) -> Vec<f64> {
        let w = self.weight();
        match self {
            Stats::Classes(c) => c
                .iter()
                .map(|&ck| if w > 0.0 { ck / w } else { 0.0 })
                .collect(),
            Stats::Values(sw, swy, _) => vec![if *sw > 0.0 { swy / sw } else { 0.0 }],
        }
    }
}

/// The best split found at a node.
struct Split {
    feature: usize,
    threshold: f64,
    /// Weighted impurity of the two children, `W_L I(L) + W_R I(R)`: lower is better.
    child_cost: f64,
}

/// What the recursive builder carries.
struct Builder<'a, T> {
    params: &'a DecisionTree,
    x: &'a Columns<T>,
    target: Target<'a>,
    weights: &'a [f64],
    rng: ChaCha8Rng,
    nodes: Vec<Node>,
    decrease: Vec<f64>,
    /// Scratch: `(value, row)` of one feature in one node.
    buf: Vec<(T, u32)>,
    /// Scratch: the rows going right while a node is partitioned.
    right: Vec<u32>,
    /// The features in the order they are drawn: each node draws its candidates by a
    /// Fisher-Yates pass over the front of this permutation, stopping when it has
    /// enough, instead of shuffling all `F` features.
    order: Vec<usize>,
    /// Scratch: the statistics of a left child during a sweep.
    left: Stats,
    /// Scratch for the histogram search: class weights per code, `(256, k)` row-major.
    hist: Vec<f64>,
    /// Scratch for the histogram search: rows per code.
    hist_rows: Vec<u32>,
    /// Scratch for the histogram and random-threshold searches: the class and the
    /// weight of each of the node's rows, gathered once per node instead of once per
    /// examined feature.
    node_y: Vec<u32>,
    node_w: Vec<f64>,
}

impl DecisionTree {
    /// A classification tree with every other parameter at its default.
    pub fn classifier(criterion: Criterion, max_depth: Option<usize>) -> Self {
        DecisionTree {
            criterion,
            max_depth,
            ..Default::default()
        }
    }

    /// A regression tree (squared error).
    pub fn regressor(max_depth: Option<usize>) -> Self {
        DecisionTree {
            criterion: Criterion::SquaredError,
            max_depth,
            ..Default::default()
        }
    }

    /// Checks the hyper-parameters against the data.
    fn validate(&self, n_rows: usize, n_cols: usize, target: &Target) -> Result<()> {
        if n_rows == 0 || n_cols == 0 {
            bail!("cannot fit a tree on a ({n_rows}, {n_cols}) feature matrix");
        }
        if target.len() != n_rows {
            bail!("{} targets for {n_rows} rows", target.len());
        }
        if self.min_samples_split < 2 {
            bail!(
                "min_samples_split is {}: it must be >= 2",
                self.min_samples_split
            );
        }
        if self.min_samples_leaf < 1 {
            bail!("min_samples_leaf is 0: it must be >= 1");
        }
        if self.max_depth == Some(0) {
            bail!("max_depth is 0: a tree needs depth >= 1 (or None)");
        }
        if self.max_features == MaxFeatures::Count(0) {
            bail!("max_features is 0: a split must look at >= 1 feature");
        }
        match (target, self.criterion) {
            (Target::Classes(y, k), Criterion::Gini | Criterion::Entropy) => {
                if let Some(&bad) = y.iter().find(|&&c| c >= *k) {
                    bail!("class label {bad} outside 0..{k}");
                }
            }
            (Target::Values(y), Criterion::SquaredError) => {
                if y.iter().any(|v| !v.is_finite()) {
                    bail!("a regression target is not finite");
                }
            }
            (_, c) => bail!("criterion {c:?} does not fit this kind of target"),
        }
        Ok(())
    }

    /// Fits on the rows of `x` with unit weights.
    pub fn fit<T: Feature>(&self, x: &Columns<T>, target: Target) -> Result<FittedTree> {
        let rows: Vec<u32> = (0..x.n_rows() as u32).collect();
        self.fit_weighted(x, target, &rows, &vec![1.0; x.n_rows()])
    }

    // ANCHOR: tree_fit
    /// Fits on the rows `rows` of `x` (a bootstrap sample lists each drawn row once and
    /// counts repeats in `weights`), with per-row `weights` indexed by row of `x`.
    pub fn fit_weighted<T: Feature>(
        &self,
        x: &Columns<T>,
        target: Target,
        rows: &[u32],
        weights: &[f64],
    ) -> Result<FittedTree> {
        self.validate(x.n_rows(), x.n_cols(), &target)?;
        if weights.len() != x.n_rows() || weights.iter().any(|w| w.is_nan() || *w < 0.0) {
            bail!("need one non-negative weight per row ({} rows)", x.n_rows());
        }
        if rows.is_empty() {
            bail!("no rows to fit a tree on");
        }
        let mut b = Builder {
            params: self,
            x,
            target,
            weights,
            rng: ChaCha8Rng::seed_from_u64(self.seed),
            nodes: Vec::new(),
            decrease: vec![0.0; x.n_cols()],
            buf: Vec::with_capacity(rows.len()),
            right: Vec::with_capacity(rows.len()),
            order: (0..x.n_cols()).collect(),
            left: Stats::empty(&target),
            hist: match target {
                Target::Classes(_, k) => vec![0.0; 256 * k],
                Target::Values(_) => Vec::new(),
            },
            hist_rows: vec![0; 256],
            node_y: Vec::with_capacity(rows.len()),
            node_w: Vec::with_capacity(rows.len()),
        };
        let mut rows = rows.to_vec();
        b.grow(&mut rows, 0, vec![false; x.n_cols()]);
        let total: f64 = b.decrease.iter().sum();
        let importances = if total > 0.0 {
            b.decrease.iter().map(|d| d / total).collect()
        } else {
            vec![0.0; x.n_cols()]
        };
        Ok(FittedTree {
            nodes: b.nodes,
            n_features: x.n_cols(),
            n_outputs: match target {
                Target::Classes(_, k) => k,
                Target::Values(_) => 1,
            },
            importances,
        })
    }
    // ANCHOR_END: tree_fit
}

impl<T: Feature> Builder<'_, T> {
    fn stats(&self, rows: &[u32]) -> Stats {
        let mut s = Stats::empty(&self.target);
        for &i in rows {
            s.add(&self.target, i as usize, self.weights[i as usize], 1.0);
        }
        s
    }

    /// Grows the subtree of `rows` at `depth` and returns its node index. `constant`
    /// marks the features an ancestor found constant: constant on a node's rows, a
    /// feature is constant on every subset of them, so the search skips it without a
    /// pass over the rows (as scikit-learn does). The features drawn, and so the tree,
    /// are the same as with a pass that finds it constant again.
    fn grow(&mut self, rows: &mut [u32], depth: usize, mut constant: Vec<bool>) -> usize {
        let stats = self.stats(rows);
        let impurity = stats.impurity(self.params.criterion);
        let id = self.nodes.len();
        self.nodes.push(Node {
            feature: None,
            threshold: 0.0,
            left: 0,
            right: 0,
            value: stats.value(),
            impurity,
            n_samples: rows.len(),
            weight: stats.weight(),
        });
        let p = self.params;
        let n = rows.len();
        let leaf = p.max_depth.is_some_and(|d| depth >= d)
            || n < p.min_samples_split
            || n < 2 * p.min_samples_leaf
            || impurity <= f64::EPSILON;
        if leaf {
            return id;
        }
        let Some(split) = self.best_split(rows, &stats, &mut constant) else {
            return id;
        };
        // Partition the rows in place: left ones first, both sides in their current order.
        let col = self.x.col(split.feature);
        let mut right = std::mem::take(&mut self.right);
        right.clear();
        let mut n_left = 0;
        for p in 0..n {
            let i = rows[p];
            if let Some(&ahead) = rows.get(p + PREFETCH_AHEAD) {
                prefetch(&col[ahead as usize]);
            }
            if col[i as usize].value() <= split.threshold {
                rows[n_left] = i;
                n_left += 1;
            } else {
                right.push(i);
            }
        }
        rows[n_left..].copy_from_slice(&right);
        self.right = right;
        self.decrease[split.feature] += stats.weight() * impurity - split.child_cost;
        let (lrows, rrows) = rows.split_at_mut(n_left);
        let l = self.grow(lrows, depth + 1, constant.clone());
        let r = self.grow(rrows, depth + 1, constant);
        let node = &mut self.nodes[id];
        node.feature = Some(split.feature);
        node.threshold = split.threshold;
        node.left = l;
        node.right = r;
        id
    }

    /// The best split over the examined features, or `None` if no feature splits the
    /// rows into two children of at least `min_samples_leaf` rows. Features found
    /// constant on the rows are marked in `constant`.
    fn best_split(
        &mut self,
        rows: &[u32],
        stats: &Stats,
        constant: &mut [bool],
    ) -> Option<Split> {
        let f = self.x.n_cols();
        let want = match self.params.max_features {
            MaxFeatures::All => f,
            MaxFeatures::Sqrt => ((f as f64).sqrt().floor() as usize).max(1),
            MaxFeatures::Count(k) => k.min(f),
        };
        let draw = want < f || self.params.random_thresholds;
        if let Target::Classes(y, _) = self.target {
            let codes = self.x.col(0).first().is_some_and(|v| v.code().is_some());
            let histogram = rows.len() >= HISTOGRAM_MIN_ROWS && codes;
            if histogram || self.params.random_thresholds {
                self.node_y.clear();
                self.node_y
                    .extend(rows.iter().map(|&i| y[i as usize] as u32));
                self.node_w.clear();
                self.node_w
                    .extend(rows.iter().map(|&i| self.weights[i as usize]));
            }
        }
        let mut best: Option<Split> = None;
        let (mut visited, mut examined) = (0, 0);
        for t in 0..f {
            // scikit-learn's rule: every drawn feature counts towards `want`, constant
            // ones too, but drawing goes on past `want` until one non-constant feature
            // has been examined, so a split is still found when many features are
            // constant (MNIST's border pixels).
            if visited >= want && examined > 0 {
                break;
            }
            visited += 1;
            let j = if draw {
                let pick = self.rng.random_range(t..f);
                self.order.swap(t, pick);
                self.order[t]
            } else {
                t
            };
            if constant[j] {
                continue;
            }
            let (cand, is_constant) = self.best_split_on(rows, stats, j);
            if is_constant {
                constant[j] = true;
                continue;
            }
            examined += 1;
            if let Some(c) = cand {
                if best.as_ref().is_none_or(|b| c.child_cost < b.child_cost) {
                    best = Some(c);
                }
            }
        }
        best
    }

    /// The best split on feature `j` and whether `j` is constant on these rows.
    fn best_split_on(
        &mut self,
        rows: &[u32],
        stats: &Stats,
        j: usize,
    ) -> (Option<Split>, bool) {
        let col = self.x.col(j);
        let crit = self.params.criterion;
        let min_leaf = self.params.min_samples_leaf;
        if self.params.random_thresholds {
            return self.random_split_on(rows, stats, j);
        }
        if let Target::Classes(_, k) = self.target {
            if rows.len() >= HISTOGRAM_MIN_ROWS && col[0].code().is_some() {
                return self.best_split_histogram(rows, stats, j, k);
            }
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for (p, &i) in rows.iter().enumerate() {
            if let Some(&ahead) = rows.get(p + PREFETCH_AHEAD) {
                prefetch(&col[ahead as usize]);
            }
            buf.push((col[i as usize], i));
        }
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &(v, _) in &buf {
            lo = lo.min(v.value());
            hi = hi.max(v.value());
        }
        if hi <= lo + DISTINCT {
            self.buf = buf;
            return (None, true);
        }
        let n = buf.len();
        let mut best: Option<Split> = None;
        buf.sort_unstable_by(|a, b| a.0.partial_cmp(&b.0).expect("NaN feature"));
        let mut left = std::mem::replace(&mut self.left, Stats::Values(0.0, 0.0, 0.0));
        left.clear();
        for p in 1..n {
            let (v, i) = buf[p - 1];
            left.add(&self.target, i as usize, self.weights[i as usize], 1.0);
            let next = buf[p].0.value();
            if next <= v.value() + DISTINCT || p < min_leaf || n - p < min_leaf {
                continue;
            }
            let c = children_cost(stats, &left, crit);
            if best.as_ref().is_none_or(|b| c < b.child_cost) {
                best = Some(Split {
                    feature: j,
                    threshold: halfway(v.value(), next),
                    child_cost: c,
                });
            }
        }
        self.left = left;
        self.buf = buf;
        (best, false)
    }

    /// [`Self::best_split_on`] for extremely randomised trees: one pass for the range
    /// `(lo, hi)` of feature `j` on the rows, one uniform threshold in it, and one pass
    /// adding up the left child (the rows' classes and weights gathered by
    /// [`Self::best_split`] for a class target). No sort and no copy of the values.
    fn random_split_on(
        &mut self,
        rows: &[u32],
        stats: &Stats,
        j: usize,
    ) -> (Option<Split>, bool) {
        let col = self.x.col(j);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for (p, &i) in rows.iter().enumerate() {
            if let Some(&ahead) = rows.get(p + PREFETCH_AHEAD) {
                prefetch(&col[ahead as usize]);
            }
            let v = col[i as usize].value();
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if hi <= lo + DISTINCT {
            return (None, true);
        }
        let t = self.rng.random_range(lo..hi);
        let mut left = std::mem::replace(&mut self.left, Stats::Values(0.0, 0.0, 0.0));
        left.clear();
        let mut n_left = 0;
        match &mut left {
            Stats::Classes(lw) => {
                for ((&i, &c), &w) in rows.iter().zip(&self.node_y).zip(&self.node_w) {
                    if col[i as usize].value() <= t {
                        lw[c as usize] += w;
                        n_left += 1;
                    }
                }
            }
            Stats::Values(..) => {
                for &i in rows {
                    if col[i as usize].value() <= t {
                        left.add(&self.target, i as usize, self.weights[i as usize], 1.0);
                        n_left += 1;
                    }
                }
            }
        }
        let min_leaf = self.params.min_samples_leaf;
        let split =
            (n_left >= min_leaf && rows.len() - n_left >= min_leaf).then(|| Split {
                feature: j,
                threshold: t,
                child_cost: children_cost(stats, &left, self.params.criterion),
            });
        self.left = left;
        (split, false)
    }

    /// [`Self::best_split_on`] for a classification target and a feature with codes:
    /// one pass adds each row's weight to its code's class weights, then a sweep over
    /// the non-empty codes in increasing order evaluates the same boundaries as the
    /// sorted sweep (between consecutive distinct values), at `O(n + 256 k)` instead of
    /// `O(n log n)`. With whole-number weights (unit weights, bootstrap counts) the
    /// class weights are exact sums whatever their order, so the costs, thresholds and
    /// ties are bit for bit those of the sorted sweep.
    fn best_split_histogram(
        &mut self,
        rows: &[u32],
        stats: &Stats,
        j: usize,
        k: usize,
    ) -> (Option<Split>, bool) {
        let col = self.x.col(j);
        let crit = self.params.criterion;
        let min_leaf = self.params.min_samples_leaf;
        let (mut lo, mut hi) = (255usize, 0usize);
        for (p, ((&i, &c), &w)) in
            rows.iter().zip(&self.node_y).zip(&self.node_w).enumerate()
        {
            if let Some(&ahead) = rows.get(p + PREFETCH_AHEAD) {
                prefetch(&col[ahead as usize]);
            }
            let b = usize::from(col[i as usize].code().expect("a feature with codes"));
            self.hist_rows[b] += 1;
            self.hist[b * k + c as usize] += w;
            lo = lo.min(b);
            hi = hi.max(b);
        }
        let n = rows.len();
        let mut best: Option<Split> = None;
        if lo < hi {
            let mut left =
                std::mem::replace(&mut self.left, Stats::Values(0.0, 0.0, 0.0));
            left.clear();
            let mut n_left = 0;
            let mut prev = lo;
            for b in lo..=hi {
                let rows_b = self.hist_rows[b] as usize;
                if rows_b == 0 {
                    continue;
                }
                if b > lo && n_left >= min_leaf && n - n_left >= min_leaf {
                    let c = children_cost(stats, &left, crit);
                    if best.as_ref().is_none_or(|s| c < s.child_cost) {
                        best = Some(Split {
                            feature: j,
                            threshold: halfway(prev as f64, b as f64),
                            child_cost: c,
                        });
                    }
                }
                let Stats::Classes(lw) = &mut left else {
                    unreachable!("class statistics for a class target")
                };
                for (a, h) in lw.iter_mut().zip(&self.hist[b * k..(b + 1) * k]) {
                    *a += h;
                }
                n_left += rows_b;
                prev = b;
            }
            self.left = left;
        }
        self.hist[lo * k..(hi + 1) * k].fill(0.0);
        self.hist_rows[lo..=hi].fill(0);
        (best, lo == hi)
    }
}

/// The threshold between two consecutive distinct values: halfway, as scikit-learn
/// places it; if rounding lands on the upper value, the lower one keeps it on the left.
fn halfway(v: f64, next: f64) -> f64 {
    let t = v / 2.0 + next / 2.0;
    if t == next || !t.is_finite() {
        v
    } else {
        t
    }
}

/// `W_L I(L) + W_R I(R)` of the children `left` and `total - left`, without building
/// the right child's statistics (this runs once per candidate threshold).
fn children_cost(total: &Stats, left: &Stats, crit: Criterion) -> f64 {
    match (total, left) {
        (Stats::Classes(t), Stats::Classes(l)) if crit == Criterion::Gini => {
            // W (1 - sum_k (c_k / W)^2) = W - sum_k c_k^2 / W: one division per child
            // instead of k (scikit-learn ranks splits by the same quantity).
            let (mut wl, mut sl, mut wr, mut sr) = (0.0, 0.0, 0.0, 0.0);
            for (&a, &b) in t.iter().zip(l) {
                let r = a - b;
                wl += b;
                sl += b * b;
                wr += r;
                sr += r * r;
            }
            let side = |w: f64, s: f64| if w > 0.0 { w - s / w } else { 0.0 };
            side(wl, sl) + side(wr, sr)
        }
        (Stats::Classes(t), Stats::Classes(l)) => {
            class_cost(l.iter().copied(), crit)
                + class_cost(t.iter().zip(l).map(|(a, b)| a - b), crit)
        }
        (Stats::Values(a, b, c), Stats::Values(d, e, f)) => {
            let right = Stats::Values(a - d, b - e, c - f);
            left.weight() * left.impurity(crit) + right.weight() * right.impurity(crit)
        }
        _ => unreachable!("statistics of different kinds"),
    }
}

/// `W I` of rows with class weights `c` (entropy; Gini has its shortcut above).
fn class_cost(c: impl Iterator<Item = f64> + Clone, crit: Criterion) -> f64 {
    let w: f64 = c.clone().sum();
    if w <= 0.0 {
        return 0.0;
    }
    let impurity = match crit {
        Criterion::Gini => 1.0 - c.map(|ck| (ck / w) * (ck / w)).sum::<f64>(),
        Criterion::Entropy => -c
            .filter(|&ck| ck > 0.0)
            .map(|ck| (ck / w) * (ck / w).ln())
            .sum::<f64>(),
        Criterion::SquaredError => unreachable!("squared error on class statistics"),
    };
    w * impurity
}

impl FittedTree {
    /// The leaf reached by a row whose feature `j` has the value `value(j)`.
    fn walk(&self, value: impl Fn(usize) -> f64) -> &Node {
        let mut node = &self.nodes[0];
        while let Some(j) = node.feature {
            node = if value(j) <= node.threshold {
                &self.nodes[node.left]
            } else {
                &self.nodes[node.right]
            };
        }
        node
    }

    /// The leaf that row `x` (one value per feature) falls in.
    pub fn leaf_of<T: Feature>(&self, x: &[T]) -> &Node {
        assert_eq!(
            x.len(),
            self.n_features,
            "a row of {} features for a tree of {}",
            x.len(),
            self.n_features
        );
        self.walk(|j| x[j].value())
    }

    /// The leaf that row `i` of `x` falls in (reads the row's values in place).
    pub fn leaf_at<T: Feature>(&self, x: &Columns<T>, i: usize) -> &Node {
        self.check_columns(x);
        self.walk(|j| x.col(j)[i].value())
    }

    fn check_columns<T: Feature>(&self, x: &Columns<T>) {
        assert_eq!(
            x.n_cols(),
            self.n_features,
            "a ({}, {}) matrix for a tree of {} features",
            x.n_rows(),
            x.n_cols(),
            self.n_features
        );
    }

    /// The leaf value of every row of `x`: `(N, n_outputs)` row-major (class shares, or
    /// the predicted value).
    pub fn predict_values<T: Feature>(&self, x: &Columns<T>) -> Vec<f64> {
        self.check_columns(x);
        let mut out = vec![0.0; x.n_rows() * self.n_outputs];
        for (i, o) in out.chunks_mut(self.n_outputs).enumerate() {
            o.copy_from_slice(&self.walk(|j| x.col(j)[i].value()).value);
        }
        out
    }

    /// The most likely class of every row (classification trees).
    pub fn predict<T: Feature>(&self, x: &Columns<T>) -> Vec<usize> {
        argmax_rows(&self.predict_values(x), self.n_outputs)
    }

    /// Depth of the deepest leaf.
    pub fn depth(&self) -> usize {
        fn d(t: &FittedTree, i: usize) -> usize {
            match t.nodes[i].feature {
                None => 0,
                Some(_) => 1 + d(t, t.nodes[i].left).max(d(t, t.nodes[i].right)),
            }
        }
        d(self, 0)
    }

    /// Number of leaves.
    pub fn n_leaves(&self) -> usize {
        self.nodes.iter().filter(|n| n.feature.is_none()).count()
    }
}

/// The index of the largest value of each row of `(N, k)` row-major `p` (the first on
/// ties).
pub fn argmax_rows(p: &[f64], k: usize) -> Vec<usize> {
    p.chunks(k)
        .map(|r| {
            let mut best = 0;
            for (c, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = c;
                }
            }
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xor() -> (Columns<f64>, Vec<usize>) {
        // Two features; class = (x0 > 0.5) xor (x1 > 0.5), 4 points each corner.
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for (a, b) in [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)] {
            for k in 0..4 {
                rows.push([a + 0.01 * k as f64, b + 0.02 * k as f64]);
                y.push(usize::from((a > 0.5) != (b > 0.5)));
            }
        }
        let x = ndarray::Array2::from_shape_fn((16, 2), |(i, j)| rows[i][j]);
        (Columns::from_rows(x.view()), y)
    }

    #[test]
    fn a_deep_enough_tree_fits_xor_exactly_and_a_stump_cannot() {
        let (x, y) = xor();
        let t = DecisionTree::classifier(Criterion::Gini, None)
            .fit(&x, Target::Classes(&y, 2))
            .unwrap();
        // Greedy growth cannot see that two cuts solve xor (the first cut alone gains
        // almost nothing), so the tree may be deeper than 2, but it fits every row.
        assert_eq!(t.predict(&x), y);
        let stump = DecisionTree::classifier(Criterion::Entropy, Some(1))
            .fit(&x, Target::Classes(&y, 2))
            .unwrap();
        let acc = stump
            .predict(&x)
            .iter()
            .zip(&y)
            .filter(|(a, b)| a == b)
            .count();
        assert!(acc <= 12, "a stump got {acc}/16 on xor");
    }

    #[test]
    fn thresholds_are_midpoints_and_importances_sum_to_one() {
        let x = ndarray::array![[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0]];
        let y = [0, 0, 1, 1];
        let t = DecisionTree::default()
            .fit(&Columns::from_rows(x.view()), Target::Classes(&y, 2))
            .unwrap();
        assert_eq!(t.nodes[0].feature, Some(0));
        assert_eq!(t.nodes[0].threshold, 2.5);
        assert_eq!(t.importances, vec![1.0, 0.0]);
        assert_eq!(t.n_leaves(), 2);
    }

    #[test]
    fn a_regression_tree_predicts_leaf_means() {
        let x = ndarray::array![[0.0], [1.0], [2.0], [3.0]];
        let y = [1.0, 1.0, 3.0, 5.0];
        let t = DecisionTree::regressor(Some(1))
            .fit(&Columns::from_rows(x.view()), Target::Values(&y))
            .unwrap();
        // The best single cut separates {1,1} from {3,5}: SSE 0 + 2 beats 8/3 + 0.
        assert_eq!(t.nodes[0].threshold, 1.5);
        assert_eq!(
            t.predict_values(&Columns::from_rows(x.view())),
            vec![1.0, 1.0, 4.0, 4.0]
        );
    }

    #[test]
    fn bad_hyper_parameters_and_inputs_are_errors() {
        let (x, y) = xor();
        let bad = [
            DecisionTree {
                max_depth: Some(0),
                ..Default::default()
            },
            DecisionTree {
                min_samples_leaf: 0,
                ..Default::default()
            },
            DecisionTree {
                min_samples_split: 1,
                ..Default::default()
            },
            DecisionTree {
                max_features: MaxFeatures::Count(0),
                ..Default::default()
            },
            DecisionTree::regressor(None),
        ];
        for p in bad {
            assert!(p.fit(&x, Target::Classes(&y, 2)).is_err(), "{p:?}");
        }
        assert!(DecisionTree::default()
            .fit(&x, Target::Classes(&y, 1))
            .is_err());
        assert!(DecisionTree::default()
            .fit(&x, Target::Classes(&y[1..], 2))
            .is_err());
    }

    #[test]
    fn u8_columns_split_like_their_f64_values() {
        let (xf, y) = xor();
        let bytes: Vec<u8> = (0..16)
            .flat_map(|i| [(xf.col(0)[i] * 100.0) as u8, (xf.col(1)[i] * 100.0) as u8])
            .collect();
        let xb = Columns::from_u8_rows(&bytes, 16, 2);
        let t = DecisionTree::default()
            .fit(&xb, Target::Classes(&y, 2))
            .unwrap();
        assert_eq!(t.predict(&xb), y);
    }
}
