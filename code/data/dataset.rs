//! The one in-memory dataset type every training loop, evaluation and experiment reads:
//! a tensor of inputs whose first axis is the example, and one target per example.
//!
//! | data | `x` | `y` |
//! |---|---|---|
//! | images | `(N, C, H, W)`, pixels in `[0, 1]` | [`Targets::Classes`] |
//! | sequences | `(N, T, F)`, padded to `T`, with `lengths` | classes or values |
//! | tables | `(N, F)` | classes or [`Targets::Values`] `(N, K)` |
//!
//! A batch is the same type ([`Dataset::select`], [`Dataset::batches`]), so code that
//! trains on a dataset trains on any of them; the layers see `x` with its shape unchanged
//! (a dense model takes [`Dataset::flat`], a CNN reads `(B, C, H, W)` as it is).
//!
//! The order of an epoch is a seeded permutation. Two conventions exist, and each
//! reproduces its own results bit for bit: [`EpochOrder`] shuffles the previous epoch's
//! order again (the CNN and optimizer experiments), [`shuffled_order`] shuffles `0..n`
//! afresh every epoch (the chapter 2 MLP experiments).

use ndarray::{Array2, ArrayD, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::Rng;

/// What each example should be mapped to.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// A class index per example (classification).
    Classes(Vec<usize>),
    /// A row of real values per example, `(N, K)` (regression, forecasting).
    Values(Array2<f32>),
    /// No targets (unsupervised data, or inputs to be predicted from themselves).
    None,
}

impl Targets {
    fn len(&self) -> Option<usize> {
        match self {
            Targets::Classes(c) => Some(c.len()),
            Targets::Values(v) => Some(v.nrows()),
            Targets::None => None,
        }
    }

    fn select(&self, idx: &[usize]) -> Targets {
        match self {
            Targets::Classes(c) => Targets::Classes(idx.iter().map(|&i| c[i]).collect()),
            Targets::Values(v) => Targets::Values(v.select(Axis(0), idx)),
            Targets::None => Targets::None,
        }
    }
}

/// Examples along the first axis of `x`, with their targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Inputs: `(N, ...)`, any shape after the example axis.
    pub x: ArrayD<f32>,
    /// Targets, one per example.
    pub y: Targets,
    /// For sequences padded to a common length: the valid steps of each example.
    pub lengths: Option<Vec<usize>>,
}

impl Dataset {
    /// A dataset of `x` with class labels `y`.
    ///
    /// # Panics
    /// If `y` does not have one label per example of `x`.
    pub fn classes(x: ArrayD<f32>, y: Vec<usize>) -> Self {
        Self::new(x, Targets::Classes(y), None)
    }

    /// A dataset, checked: one target (and one length) per example.
    ///
    /// # Panics
    /// If the counts disagree, naming the shapes.
    pub fn new(x: ArrayD<f32>, y: Targets, lengths: Option<Vec<usize>>) -> Self {
        assert!(
            x.ndim() >= 1,
            "Dataset: x must have an example axis, got shape []"
        );
        let n = x.shape()[0];
        if let Some(m) = y.len() {
            assert_eq!(m, n, "Dataset: {m} targets for x of shape {:?}", x.shape());
        }
        if let Some(l) = &lengths {
            assert_eq!(
                l.len(),
                n,
                "Dataset: {} lengths for x of shape {:?}",
                l.len(),
                x.shape()
            );
        }
        Dataset { x, y, lengths }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.x.shape()[0]
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one example (`[C, H, W]`, `[T, F]` or `[F]`).
    pub fn example_shape(&self) -> &[usize] {
        &self.x.shape()[1..]
    }

    /// The examples at `idx`, in that order (a batch, or a subset).
    pub fn select(&self, idx: &[usize]) -> Dataset {
        Dataset {
            x: self.x.select(Axis(0), idx),
            y: self.y.select(idx),
            lengths: self
                .lengths
                .as_ref()
                .map(|l| idx.iter().map(|&i| l[i]).collect()),
        }
    }

    /// The first `n` examples (all of them if there are fewer).
    pub fn head(&self, n: usize) -> Dataset {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        self.select(&idx)
    }

    /// The class labels.
    ///
    /// # Panics
    /// If the targets are not classes.
    pub fn labels(&self) -> &[usize] {
        match &self.y {
            Targets::Classes(c) => c,
            other => panic!("Dataset::labels: targets are not classes ({other:?})"),
        }
    }

    /// `x` as a `(N, features)` matrix view (every example flattened, row-major), for
    /// dense layers and statistics.
    pub fn flat(&self) -> ArrayView2<'_, f32> {
        let n = self.len();
        let d: usize = self.example_shape().iter().product();
        self.x
            .view()
            .into_shape_with_order((n, d))
            .expect("a standard-layout x flattens")
    }

    /// The same dataset with `x` flattened to `(N, features)` (row-major, as
    /// [`Dataset::flat`]): images as rows of pixels, for a dense model.
    pub fn into_flat(self) -> Dataset {
        let x = self.flat().to_owned().into_dyn(); // (N, features)
        Dataset { x, ..self }
    }

    /// The examples in `order`, `batch_size` at a time (the last batch may be smaller).
    ///
    /// # Panics
    /// If `batch_size` is 0.
    pub fn batches<'a>(&'a self, batch_size: usize, order: &'a [usize]) -> Batches<'a> {
        assert!(
            batch_size > 0,
            "Dataset::batches: batch_size must be positive"
        );
        Batches {
            data: self,
            chunks: order.chunks(batch_size),
        }
    }
}

/// The batches of a [`Dataset`], in a given order: see [`Dataset::batches`].
pub struct Batches<'a> {
    data: &'a Dataset,
    chunks: std::slice::Chunks<'a, usize>,
}

impl Iterator for Batches<'_> {
    type Item = Dataset;

    fn next(&mut self) -> Option<Dataset> {
        self.chunks.next().map(|idx| self.data.select(idx))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// The visiting order of `n` examples over epochs: each [`EpochOrder::next`] shuffles
/// the previous order once more with the generator it is given (epoch 1 shuffles
/// `0..n`), so a seeded generator fixes every epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochOrder {
    order: Vec<usize>,
}

impl EpochOrder {
    /// `0..n`, not yet shuffled.
    pub fn new(n: usize) -> Self {
        EpochOrder {
            order: (0..n).collect(),
        }
    }

    /// The next epoch's order.
    pub fn next(&mut self, rng: &mut impl Rng) -> &[usize] {
        self.order.shuffle(rng);
        &self.order
    }
}

/// `0..n` in a random order, independent of any previous epoch's.
pub fn shuffled_order(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order
}
