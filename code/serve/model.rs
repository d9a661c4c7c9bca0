//! The served network: chapter 5's MNIST CNN, loaded from the safetensors file that
//! `dlbook train mnist-cnn` writes, run in evaluation mode.

use std::path::Path;

use anyhow::{Context, Result};
use ndarray::{ArrayD, IxDyn};

use super::batcher::Classifier;
use crate::models::{checkpoint, mnist_cnn, CnnConfig};
use crate::nn::{Layer, Mode, Named};

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

impl Classifier for MnistCnn {
    fn n_classes(&self) -> usize {
        10
    }

    fn predict(&mut self, pixels: &[f32], n: usize) -> Vec<f32> {
        let x = ArrayD::from_shape_vec(IxDyn(&[n, 1, 28, 28]), pixels.to_vec())
            .expect("MnistCnn::predict: n × 784 pixels");
        let logits = self.model.forward(&x, Mode::Eval);
        let logits = logits.as_slice().expect("contiguous logits");
        let mut probs = Vec::with_capacity(n * 10);
        for row in logits.chunks(10) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|z| (z - max).exp()).collect();
            let s: f32 = e.iter().sum();
            probs.extend(e.iter().map(|v| v / s));
        }
        probs
    }
}
