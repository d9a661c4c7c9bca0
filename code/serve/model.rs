//! The served network: chapter 5's MNIST CNN, loaded from the safetensors file that
//! `dlbook train mnist-cnn` writes, run in evaluation mode.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use ndarray::{ArrayD, IxDyn};

use super::batcher::{Batcher, Classifier, Loader};
use crate::models::{checkpoint, mnist_cnn, CnnConfig};
use crate::nn::{Mode, Named};

/// The MNIST CNN as a [`Classifier`]: 784 pixels in, 10 probabilities out.
pub struct MnistCnn {
    model: Named,
}

impl MnistCnn {
    /// The network of `CnnConfig::default()` with the weights in `path`. A file that
    /// is not such a model (missing or misshapen tensors, not safetensors) is an error
    /// naming what is wrong.
    pub fn load(path: &Path) -> Result<MnistCnn> {
        let mut model = mnist_cnn(&CnnConfig::default(), 0);
        checkpoint::load(&mut model, path)
            .with_context(|| format!("loading the MNIST CNN from {}", path.display()))?;
        Ok(MnistCnn { model })
    }

    /// A network with freshly initialised weights (seeded): for tests of the server,
    /// which check the service, not the model.
    pub fn untrained(seed: u64) -> MnistCnn {
        MnistCnn {
            model: mnist_cnn(&CnnConfig::default(), seed),
        }
    }
}

/// The layer whose output is the served CNN's embedding (128 values per image: the
/// penultimate layer, what the drift monitor's MMD compares).
pub const EMBEDDING_LAYER: &str = "relu3";

impl Classifier for MnistCnn {
    fn n_classes(&self) -> usize {
        10
    }

    fn predict(&mut self, pixels: &[f32], n: usize) -> Vec<f32> {
        self.predict_embedded(pixels, n).0
    }

    fn predict_embedded(&mut self, pixels: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
        let mut h = ArrayD::from_shape_vec(IxDyn(&[n, 1, 28, 28]), pixels.to_vec())
            .expect("MnistCnn::predict: n × 784 pixels");
        // The layers one by one, each handed its input (what `Named::forward` does),
        // keeping a copy of the embedding on the way.
        let mut embedding = Vec::new();
        for (name, layer) in &mut self.model.layers {
            h = layer.forward_owned(h, Mode::Eval);
            if name == EMBEDDING_LAYER {
                embedding = h.iter().copied().collect();
            }
        }
        let logits = h.as_slice().expect("contiguous logits");
        let mut probs = Vec::with_capacity(n * 10);
        for row in logits.chunks(10) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|z| (z - max).exp()).collect();
            let s: f32 = e.iter().sum();
            probs.extend(e.iter().map(|v| v / s));
        }
        (probs, embedding)
    }
}

/// Inference workers for the MNIST CNN in `path`: `workers` threads, each with its own
/// copy, running its matrix products on one core, a queue of `queue` requests, and
/// batches of at most `max_batch` images
/// ([`MAX_BATCH_IMAGES`](super::batcher::MAX_BATCH_IMAGES) normally). A file that
/// is not such a model is an error, and no worker is left running.
pub fn start_workers(
    path: &Path,
    workers: usize,
    queue: usize,
    max_batch: usize,
) -> Result<Batcher> {
    crate::gemm::single_threaded_blas();
    let path = path.to_path_buf();
    let load: Loader = Arc::new(move || {
        MnistCnn::load(&path).map(|m| Box::new(m) as Box<dyn Classifier>)
    });
    Batcher::start_batching(load, workers, queue, max_batch)
}
