//! Chapter 6: transfer learning, reusing a network trained on one task for another.
//!
//! A network trained on ImageNet's 1.3 million photos has learnt, in its convolutions,
//! features that are useful far beyond its 1000 classes: edges and textures first, parts
//! of objects later. To reuse it on a new task with few labels, keep the convolutions
//! and replace the classifier. Three ways, from cheapest to dearest:
//!
//! - **feature extraction**: freeze the whole backbone, compute each image's pooled
//!   features once ([`run_frozen`]), and train a linear softmax classifier on them;
//! - **fine-tuning the last blocks**: freeze the front, cache its output once, and train
//!   the last blocks together with the new classifier (their batch norms either frozen,
//!   [`EvalMode`], or updated, and their learning rate maybe smaller than the
//!   classifier's);
//! - **training everything**, from the pre-trained weights or from random ones.
//!
//! Fashion-MNIST's 28 x 28 grey images become the backbone's input by [`backbone_input`]:
//! resized, the grey value copied to the three colour channels, normalised as the
//! backbone expects.

use ndarray::{concatenate, Array2, ArrayD, Axis, Ix2};

use crate::data::image::resize;
use crate::nn::{Layer, Mode, Module, Named, Param};
use crate::progress;

pub mod folder;

// ANCHOR: backbone_input
/// Grey images `(n, 1, h, w)` with values in `[0, 1]` as a colour network's input
/// `(n, 3, size, size)`: resized by [`resize`], the grey plane copied to red, green and
/// blue, then mapped by `normalize` (the backbone's own input normalisation).
pub fn backbone_input(
    gray: &ArrayD<f32>,
    size: usize,
    normalize: impl Fn(f32) -> f32,
) -> ArrayD<f32> {
    let shape = gray.shape();
    assert!(
        shape.len() == 4 && shape[1] == 1,
        "backbone_input: expected (n, 1, h, w), got {shape:?}"
    );
    let n = shape[0];
    let mut out = ArrayD::zeros(vec![n, 3, size, size]);
    for (i, img) in gray.axis_iter(Axis(0)).enumerate() {
        let img = img
            .into_dimensionality::<ndarray::Ix3>()
            .expect("(1, h, w)");
        let plane = resize(&img, size, size).mapv(&normalize);
        for c in 0..3 {
            out.index_axis_mut(Axis(0), i)
                .index_axis_mut(Axis(0), c)
                .assign(&plane.index_axis(Axis(0), 0));
        }
    }
    out
}
// ANCHOR_END: backbone_input

/// Runs the frozen `net` over `x` in evaluation mode, `batch` examples at a time, with a
/// progress bar labelled `what`; returns the outputs stacked on axis 0.
pub fn run_frozen(
    net: &mut dyn Layer,
    x: &ArrayD<f32>,
    batch: usize,
    what: &str,
) -> ArrayD<f32> {
    let n = x.shape()[0];
    assert!(
        n > 0 && batch > 0,
        "run_frozen: {n} examples in batches of {batch}"
    );
    let bar = progress::bar(n as u64, what);
    let mut parts = vec![];
    for start in (0..n).step_by(batch) {
        let end = (start + batch).min(n);
        let chunk = x.slice_axis(Axis(0), (start..end).into()).to_owned();
        parts.push(net.forward_owned(chunk, Mode::Eval));
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    concatenate(Axis(0), &views).expect("outputs of one network have one shape")
}

/// Splits `net` before the layer called `name`: `(front, back)`. Parameter names keep
/// their layer names, so both halves still load a checkpoint of the whole network.
pub fn split_before(mut net: Named, name: &str) -> (Named, Named) {
    let at = net
        .names()
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("split_before: the network has no layer {name:?}"));
    let back = net.layers.split_off(at);
    (net, Named { layers: back })
}

// ANCHOR: eval_mode
/// A layer that always runs in evaluation mode, also while it is trained: its batch
/// norms normalise with their running statistics (which stay as loaded) instead of the
/// batch's, while their $\gamma$, $\beta$ and the convolutions still learn. "Freezing
/// the batch-norm statistics" when fine-tuning on small batches of a new dataset.
///
/// # Shapes
/// Those of the wrapped layer.
pub struct EvalMode(pub Box<dyn Layer>);

impl Module for EvalMode {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.0.visit_params(prefix, f);
    }

    fn visit_buffers(
        &mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, ndarray::ArrayViewMutD<'_, f32>),
    ) {
        self.0.visit_buffers(prefix, f);
    }

    fn reset_state(&mut self) {
        self.0.reset_state();
    }
}

impl Layer for EvalMode {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        self.0.forward(x, Mode::Eval)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.0.backward(dy)
    }
}
// ANCHOR_END: eval_mode

/// Per-feature standardisation fitted on training features: $(x - \mu) / \sigma$ with
/// the training mean and standard deviation (a feature constant on the training set is
/// only centred), so one learning rate suits every feature of a linear classifier.
#[derive(Clone, Debug)]
pub struct Standardize {
    mean: ndarray::Array1<f32>,
    std: ndarray::Array1<f32>,
}

impl Standardize {
    /// Fitted on the rows of `x` `(n, d)`.
    pub fn fit(x: &Array2<f32>) -> Self {
        let mean = x.mean_axis(Axis(0)).expect("at least one row");
        let std = x
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 1e-6 { s } else { 1.0 });
        Standardize { mean, std }
    }

    /// `x` `(n, d)` standardised.
    pub fn apply(&self, x: &Array2<f32>) -> Array2<f32> {
        (x - &self.mean) / &self.std
    }
}

/// The rows `idx` of features `f` `(n, d)`.
pub fn feature_rows(f: &ArrayD<f32>, idx: &[usize]) -> Array2<f32> {
    f.view()
        .into_dimensionality::<Ix2>()
        .expect("features are (n, d)")
        .select(Axis(0), idx)
}
