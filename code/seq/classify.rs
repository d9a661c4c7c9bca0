//! Sequence classification where order matters: an image read row by row, and a model
//! that cannot see the order of its rows to compare with.
//!
//! An MNIST digit of $28 \times 28$ pixels becomes a sequence of $T = 28$ steps of
//! $d = 28$ pixels, the rows from top to bottom ([`rows_as_sequence`]); a recurrent
//! layer reads them one at a time and its last hidden state is classified
//! ([`recurrent_net`](super::recurrent_net)).
//!
//! **An order-blind baseline** ([`order_blind_net`]) sees exactly the same rows: each
//! row goes through the same small network $g$, and the results are averaged over the
//! rows before a linear classifier,
//!
//! $$ \hat y = W \Big( \frac1T \sum_{t=1}^{T} g(x_t) \Big) + b .$$
//!
//! A sum does not depend on the order of its terms, so the model gives the same output
//! for any permutation of the rows: it sees the *set* of rows, never their order.
//!
//! **Orders** ([`RowOrder`]): the natural one; one fixed random permutation applied to
//! every image (the order is scrambled, but the same for all, so it still carries
//! information a model can learn); and each image's rows shuffled by a permutation of
//! its own (the order carries nothing).

use anyhow::{ensure, Result};
use ndarray::{ArrayD, Axis, Ix3};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::Dataset;
use crate::nn::{
    Activation, ActivationLayer, Init, Layer, Linear, Mode, Module, Named, Param,
};

// ANCHOR: rows_as_sequence
/// Images `(n, 1, h, w)` (or `(n, h, w)`) as sequences `(n, h, w)`: step $t$ is row $t$,
/// its $w$ pixels the features. The labels are kept. An error for any other shape.
pub fn rows_as_sequence(images: &Dataset) -> Result<Dataset> {
    let shape = images.x.shape().to_vec();
    let (n, h, w) = match shape[..] {
        [n, 1, h, w] | [n, h, w] => (n, h, w),
        _ => anyhow::bail!(
            "rows_as_sequence: expected images (n, 1, h, w) or (n, h, w), got {shape:?}"
        ),
    };
    // (n, 1, h, w) -> (n, h, w): the channel axis of one is dropped, nothing moves.
    let x = images
        .x
        .to_shape(vec![n, h, w])
        .expect("the same number of pixels")
        .to_owned();
    Ok(Dataset::new(x, images.y.clone(), None))
}
// ANCHOR_END: rows_as_sequence

/// The order in which a model reads an image's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowOrder {
    /// Top to bottom.
    Natural,
    /// One random permutation, drawn from the seed, the same for every image.
    Fixed {
        /// The seed of the permutation.
        seed: u64,
    },
    /// Every image's rows in an order of its own, drawn from the seed.
    PerImage {
        /// The seed of the permutations.
        seed: u64,
    },
}

impl RowOrder {
    /// A short description for tables.
    pub fn name(self) -> &'static str {
        match self {
            RowOrder::Natural => "rows in order",
            RowOrder::Fixed { .. } => "rows in one fixed random order",
            RowOrder::PerImage { .. } => "rows shuffled per image",
        }
    }
}

// ANCHOR: reorder
/// `seqs` `(n, t, d)` with each sequence's steps put in `order`: step $s$ of the result
/// is step $\pi(s)$ of the input, with $\pi$ the fixed permutation or each sequence's
/// own. `salt` separates the per-image permutations of two datasets (training and test
/// images) that share a seed.
///
/// # Panics
/// If `seqs` is not `(n, t, d)`.
pub fn reorder(seqs: &Dataset, order: RowOrder, salt: u64) -> Dataset {
    let x = seqs
        .x
        .view()
        .into_dimensionality::<Ix3>()
        .unwrap_or_else(|_| {
            panic!("reorder: expected (n, t, d), got {:?}", seqs.x.shape())
        });
    let (n, t, _) = x.dim();
    let perms: Vec<Vec<usize>> = match order {
        RowOrder::Natural => vec![(0..t).collect(); n],
        RowOrder::Fixed { seed } => {
            let mut p: Vec<usize> = (0..t).collect();
            p.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            vec![p; n]
        }
        RowOrder::PerImage { seed } => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ salt.rotate_left(32));
            (0..n)
                .map(|_| {
                    let mut p: Vec<usize> = (0..t).collect();
                    p.shuffle(&mut rng);
                    p
                })
                .collect()
        }
    };
    let mut out = x.to_owned(); // (n, t, d)
    for (i, p) in perms.iter().enumerate() {
        for (s, &from) in p.iter().enumerate() {
            out.index_axis_mut(Axis(0), i)
                .index_axis_mut(Axis(0), s)
                .assign(&x.index_axis(Axis(0), i).index_axis(Axis(0), from));
        }
    }
    Dataset::new(out.into_dyn(), seqs.y.clone(), seqs.lengths.clone())
}
// ANCHOR_END: reorder

// ANCHOR: mean_over_steps
/// The mean over the steps of a sequence, $y = \frac1T \sum_t x_t$: blind to their order.
/// Its backward spreads $\bar y / T$ over every step.
///
/// # Shapes
/// - input `x`: `(b, t, d)`, output `y`: `(b, d)`
#[derive(Clone, Debug, Default)]
pub struct MeanOverSteps {
    /// The input's shape, remembered by `forward`.
    shape: Option<Vec<usize>>,
}

impl MeanOverSteps {
    /// The layer.
    pub fn new() -> Self {
        MeanOverSteps::default()
    }
}

impl Module for MeanOverSteps {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}
}

impl Layer for MeanOverSteps {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        assert!(
            x.ndim() == 3 && x.shape()[1] > 0,
            "MeanOverSteps: expected a sequence (b, t, d) with t > 0, got {:?}",
            x.shape()
        );
        self.shape = Some(x.shape().to_vec());
        x.mean_axis(Axis(1)).expect("t > 0") // (b, d)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let shape = self
            .shape
            .as_ref()
            .expect("MeanOverSteps::backward called before forward");
        assert_eq!(
            dy.shape(),
            &[shape[0], shape[2]],
            "MeanOverSteps::backward: dy {:?} for an input {shape:?}",
            dy.shape()
        );
        let t = shape[1] as f32;
        // (b, d) -> (b, 1, d) -> (b, t, d): every step receives dy / t.
        (dy / t)
            .insert_axis(Axis(1))
            .broadcast(shape.clone())
            .expect("(b, 1, d) broadcasts to (b, t, d)")
            .to_owned()
    }
}
// ANCHOR_END: mean_over_steps

// ANCHOR: order_blind_net
/// The order-blind classifier: `row` ($g$, a linear layer `d_in -> width`, shared by
/// every step), `relu`, `mean` (over the steps), `head` (`width -> n_classes`).
///
/// # Shapes
/// - input `(b, t, d_in)`, output `(b, n_classes)`
pub fn order_blind_net(d_in: usize, width: usize, n_classes: usize, seed: u64) -> Named {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Named::new();
    // Linear treats (b, t, d_in) as b t rows: the same g for every row.
    net.push("row", Linear::new(d_in, width, Init::He, &mut rng));
    net.push("relu", ActivationLayer::new(Activation::Relu));
    net.push("mean", MeanOverSteps::new());
    net.push(
        "head",
        Linear::new(width, n_classes, Init::Xavier, &mut rng),
    );
    net
}
// ANCHOR_END: order_blind_net

/// The accuracy of a [`recurrent_net`](super::recurrent_net) classifier when it stops
/// reading after each step: entry $s$ is the accuracy of the head applied to the hidden
/// state after step $s + 1$ (the last entry is the network's own accuracy). An error if
/// `net` lacks the layers `rnn` and `head` or `data` has no class labels.
pub fn accuracy_by_step(net: &mut Named, data: &Dataset) -> Result<Vec<f64>> {
    let labels = match &data.y {
        crate::data::Targets::Classes(c) => c.clone(),
        _ => anyhow::bail!("accuracy_by_step needs class labels"),
    };
    ensure!(
        net.get_mut("rnn").is_some() && net.get_mut("head").is_some(),
        "accuracy_by_step needs a network with layers `rnn` and `head`, got {:?}",
        net.names()
    );
    let n = data.len();
    let t = data.x.shape()[1];
    let mut hits = vec![0usize; t];
    for start in (0..n).step_by(1000) {
        let end = (start + 1000).min(n);
        let x = data
            .x
            .slice_axis(Axis(0), ndarray::Slice::from(start..end))
            .to_owned();
        let h = net.get_mut("rnn").expect("checked").forward(&x, Mode::Eval); // (b, t, h)
                                                                              // Linear reads (b, t, h) as b t rows: logits of every step at once.
        let logits = net
            .get_mut("head")
            .expect("checked")
            .forward(&h, Mode::Eval); // (b, t, c)
        for (i, seq) in logits.axis_iter(Axis(0)).enumerate() {
            for (s, step) in seq.axis_iter(Axis(0)).enumerate() {
                let guess = step
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (j, &v)| if v > b.1 { (j, v) } else { b },
                    )
                    .0;
                hits[s] += usize::from(guess == labels[start + i]);
            }
        }
    }
    Ok(hits.iter().map(|&h| h as f64 / n as f64).collect())
}
