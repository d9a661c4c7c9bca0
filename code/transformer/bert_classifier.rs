//! A sentence classifier on the from-scratch all-MiniLM-L6-v2 ([`ScratchMiniLm`]),
//! trained with a hand-written backward pass: the encoder, the attention-masked mean of
//! its last hidden states, a linear head, softmax cross-entropy.
//!
//! # Backward
//!
//! With $h_{r,c}$ the last hidden state of token $c$ of sentence $r$, $m_{r,c} \in
//! \{0, 1\}$ its attention mask and $n_r = \sum_c m_{r,c}$ its length, the pooled
//! feature is $p_r = \frac1{n_r}\sum_c m_{r,c}\, h_{r,c}$ and the logits are
//! $z_r = W p_r + b$. Backwards, in the order the pass runs:
//!
//! - the cross-entropy gives $\bar z = (\operatorname{softmax}(z) - \operatorname{onehot}(y))/N$;
//! - the head: $\bar W = \bar z^\top p$, $\bar b = \sum_r \bar z_r$, $\bar p = \bar z W$;
//! - the pooling spreads $\bar p_r$ evenly over the real tokens,
//!   $\bar h_{r,c} = m_{r,c}\, \bar p_r / n_r$, and gives padding nothing;
//! - every trainable block, top down, through [`EncoderBlock`](crate::transformer::EncoderBlock)'s own backward (its
//!   attention weights on padding keys are 0, so no gradient flows to padding
//!   through attention either);
//! - when nothing is frozen, the embeddings' layer norm, then the three lookups: the
//!   gradient of the sum $E_\text{word}(x) + E_\text{pos}(c) + E_\text{type}(s)$ reaches
//!   each table unchanged and is added into the rows its ids selected.
//!
//! **Freezing** the lower $k$ layers stops the loop at layer $k$: the backward pass of
//! the layers below and of the embeddings is never run, and the optimiser never visits
//! their parameters ([`ScratchClassifier::trainable`]). That is where freezing saves
//! time: the forward pass is the same.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array2, ArrayD, Axis, Ix2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::bert::ScratchMiniLm;
use crate::data::polarity::LabeledText;
use crate::models::bert::{BertConfig, MiniLmTokenizer, TokenBatch};
use crate::models::bert_finetune::{
    argmax, epoch_batches, EpochStats, FinetuneConfig, HEAD_BIAS, HEAD_WEIGHT,
};
use crate::nn::regularization::is_weight;
use crate::nn::{softmax_cross_entropy, Layer, Linear, Mode, Module, Param};
use crate::optim::{Adam, Optimizer};

/// What the pooling's backward needs from the forward pass.
#[derive(Clone, Debug)]
struct PoolCache {
    rows: usize,
    cols: usize,
    mask: Vec<u32>,
    /// Real tokens per row, $n_r$ (at least 1).
    counts: Vec<f32>,
}

// ANCHOR: classifier
/// all-MiniLM-L6-v2 from scratch with a linear head on the attention-masked mean of its
/// last hidden states.
///
/// Parameters: the encoder's under `encoder.` (see [`ScratchMiniLm`]), the head's as
/// `head.weight` `(n_classes, d)` and `head.bias` `(n_classes,)`.
///
/// # Shapes
/// - a batch of `rows` sentences of `cols` tokens gives logits `(rows, n_classes)`;
/// - the backward pass takes `dlogits` of the same shape.
pub struct ScratchClassifier {
    /// The encoder.
    pub encoder: ScratchMiniLm,
    /// The head, $d \to$ classes.
    pub head: Linear,
    /// Lower encoder layers kept frozen (0: everything trains, embeddings included;
    /// `num_hidden_layers`: the head alone).
    pub frozen_layers: usize,
    cache: Option<PoolCache>,
}
// ANCHOR_END: classifier

impl ScratchClassifier {
    /// A head for `n_classes` on `encoder`, drawn from `head_seed` as BERT initialises
    /// its heads ($\mathcal N(0, 0.02^2)$ weights, zero bias; the same draws as
    /// [`crate::models::bert_finetune::MiniLmClassifier`]'s head of the same seed).
    ///
    /// Fails if `n_classes < 2` or `frozen_layers` exceeds the encoder's layers.
    pub fn new(
        encoder: ScratchMiniLm,
        n_classes: usize,
        frozen_layers: usize,
        head_seed: u64,
    ) -> Result<Self> {
        if n_classes < 2 {
            bail!("{n_classes} class(es): a classifier needs at least 2");
        }
        let d = encoder.config.hidden_size;
        let mut rng = ChaCha8Rng::seed_from_u64(head_seed);
        let normal = Normal::new(0.0f32, 0.02).expect("a valid normal");
        let w = Array2::from_shape_simple_fn((n_classes, d), || normal.sample(&mut rng));
        let head = Linear::from_weights(w, ndarray::Array1::zeros(n_classes));
        let mut c = ScratchClassifier {
            encoder,
            head,
            frozen_layers: 0,
            cache: None,
        };
        c.set_frozen_layers(frozen_layers)?;
        Ok(c)
    }

    /// Freezes the lower `k` layers (and the embeddings, when `k > 0`). Fails if `k`
    /// exceeds the encoder's layers.
    pub fn set_frozen_layers(&mut self, k: usize) -> Result<()> {
        let layers = self.encoder.layers.len();
        if k > layers {
            bail!("{k} frozen layers, but the encoder has {layers}");
        }
        self.frozen_layers = k;
        Ok(())
    }

    /// Classes.
    pub fn n_classes(&self) -> usize {
        self.head.d_out()
    }

    /// The encoder's configuration.
    pub fn config(&self) -> &BertConfig {
        &self.encoder.config
    }

    // ANCHOR: forward
    /// The class scores of a tokenized batch, `(rows, n_classes)`; caches what
    /// [`ScratchClassifier::backward`] needs. Fails on an empty batch or one longer than
    /// the model's positions.
    pub fn logits(&mut self, batch: &TokenBatch) -> Result<Array2<f32>> {
        let (rows, cols) = (batch.rows, batch.cols);
        if rows == 0 || cols == 0 {
            bail!("an empty batch ({rows} sentences of {cols} tokens)");
        }
        let hidden = self.encoder.hidden_states(batch)?; // (rows, cols, d)
        let d = hidden.shape()[2];
        let hidden = hidden.into_dimensionality::<ndarray::Ix3>()?;
        let mut pooled = Array2::<f32>::zeros((rows, d));
        let mut counts = Vec::with_capacity(rows);
        for (r, mut p) in pooled.outer_iter_mut().enumerate() {
            let mask = &batch.mask[r * cols..(r + 1) * cols];
            let mut n = 0.0f32;
            for (c, h) in hidden.index_axis(Axis(0), r).outer_iter().enumerate() {
                if mask[c] == 1 {
                    p += &h;
                    n += 1.0;
                }
            }
            // as the model card does: the count clamped away from 0
            let n = n.max(1e-9);
            p /= n;
            counts.push(n);
        }
        self.cache = Some(PoolCache {
            rows,
            cols,
            mask: batch.mask.clone(),
            counts,
        });
        let z = self.head.forward(&pooled.into_dyn(), Mode::Train);
        Ok(z.into_dimensionality::<Ix2>()?)
    }
    // ANCHOR_END: forward

    // ANCHOR: backward
    /// The backward pass of the last [`ScratchClassifier::logits`] from `dlogits`
    /// `(rows, n_classes)`: accumulates the gradients of the trainable parameters (the
    /// head, the layers from [`ScratchClassifier::frozen_layers`] up, and the embeddings
    /// when nothing is frozen) and runs no backward below them.
    ///
    /// # Panics
    /// Before any forward pass, or if `dlogits` has the wrong shape.
    pub fn backward(&mut self, dlogits: &Array2<f32>) {
        let cache = self
            .cache
            .as_ref()
            .expect("ScratchClassifier::backward called before logits");
        assert_eq!(
            dlogits.dim(),
            (cache.rows, self.n_classes()),
            "ScratchClassifier::backward: dlogits {:?}, logits were ({}, {})",
            dlogits.dim(),
            cache.rows,
            self.n_classes()
        );
        let dpooled = self.head.backward(&dlogits.view().into_dyn().to_owned());
        let d = dpooled.shape()[1];
        // The mean spreads each row's gradient evenly over its real tokens.
        let mut dh = ArrayD::<f32>::zeros(vec![cache.rows, cache.cols, d]);
        for r in 0..cache.rows {
            let g = dpooled.index_axis(Axis(0), r).mapv(|v| v / cache.counts[r]);
            for c in 0..cache.cols {
                if cache.mask[r * cache.cols + c] == 1 {
                    dh.index_axis_mut(Axis(0), r)
                        .index_axis_mut(Axis(0), c)
                        .assign(&g);
                }
            }
        }
        let k = self.frozen_layers;
        let enc = &mut self.encoder;
        for blk in enc.layers[k..].iter_mut().rev() {
            dh = blk.backward(&dh);
        }
        if k == 0 {
            let de = enc.emb_ln.backward(&dh);
            // e = word[x] + position[c] + type[s]: the same gradient reaches each table
            enc.word.backward(&de);
            enc.position.backward(&de);
            enc.token_type.backward(&de);
        }
    }
    // ANCHOR_END: backward

    /// The mean cross-entropy of `batch` against `labels`, and its gradients accumulated
    /// into the trainable parameters. Fails on a label outside the classes or a count
    /// that does not match the batch.
    pub fn loss_and_backward(
        &mut self,
        batch: &TokenBatch,
        labels: &[usize],
    ) -> Result<f32> {
        check_labels(labels, batch.rows, self.n_classes())?;
        let z = self.logits(batch)?.into_dyn();
        let (loss, dz) = softmax_cross_entropy(&z, labels);
        self.backward(&dz.into_dimensionality::<Ix2>()?);
        Ok(loss)
    }

    /// The logits of `texts`, `batch_size` at a time, as rows.
    pub fn predict_logits(
        &mut self,
        tok: &MiniLmTokenizer,
        texts: &[String],
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>> {
        assert!(batch_size > 0, "predict_logits: batch_size 0");
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(batch_size) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let z = self.logits(&tok.encode(&refs)?)?;
            out.extend(z.outer_iter().map(|r| r.to_vec()));
        }
        Ok(out)
    }

    /// The share of `data` classified correctly. Fails if `data` has other classes.
    pub fn accuracy(
        &mut self,
        tok: &MiniLmTokenizer,
        data: &LabeledText,
        batch_size: usize,
    ) -> Result<f64> {
        self.check_classes(data)?;
        let z = self.predict_logits(tok, &data.texts, batch_size)?;
        let right = z
            .iter()
            .zip(&data.labels)
            .filter(|(z, &l)| argmax(z) == l)
            .count();
        Ok(right as f64 / data.len() as f64)
    }

    fn check_classes(&self, data: &LabeledText) -> Result<()> {
        if data.n_classes != self.n_classes() {
            bail!(
                "the data has {} classes, the classifier {}",
                data.n_classes,
                self.n_classes()
            );
        }
        Ok(())
    }

    /// The parameters that train, as a [`Module`] for an optimiser: the head, the layers
    /// from [`ScratchClassifier::frozen_layers`] up, and the embeddings and their layer
    /// norm when nothing is frozen. Names as in the classifier's own
    /// [`Module::visit_params`].
    pub fn trainable(&mut self) -> Trainable<'_> {
        Trainable(self)
    }

    /// Every tensor under MiniLM's own names plus `classifier.weight` and
    /// `classifier.bias`, as safetensors at `path`: any BERT encoder that reads
    /// all-MiniLM-L6-v2 reads the fine-tuned encoder.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        let mut tensors = std::collections::HashMap::new();
        let mut err = None;
        let mut put = |name: &str, p: &mut Param| {
            let t = candle_core::Tensor::from_slice(
                p.value.as_slice().expect("parameters are contiguous"),
                p.value.shape(),
                &candle_core::Device::Cpu,
            );
            match t {
                Ok(t) => {
                    tensors.insert(name.to_string(), t);
                }
                Err(e) => err = Some(e),
            }
        };
        self.encoder.visit_hf(&mut put);
        put(HEAD_WEIGHT, &mut self.head.weight);
        put(HEAD_BIAS, &mut self.head.bias);
        if let Some(e) = err {
            return Err(e.into());
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        candle_core::safetensors::save(&tensors, path)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// A classifier saved by [`ScratchClassifier::save`] (or by the candle twin's
    /// `save`), every layer trainable. Fails with a clear error on a file that is not
    /// safetensors, misses a tensor or has one of the wrong shape.
    pub fn load(
        path: &Path,
        config: BertConfig,
        tokenizer: MiniLmTokenizer,
        n_classes: usize,
    ) -> Result<Self> {
        let encoder = ScratchMiniLm::from_weights(config, tokenizer, path)?;
        let bytes =
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{}: not a safetensors file: {e}", path.display()))?;
        let d = encoder.config.hidden_size;
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = st.tensor(name).map_err(|_| {
                anyhow!("{}: no classifier head (`{name}`)", path.display())
            })?;
            if t.dtype() != safetensors::Dtype::F32 || t.shape() != shape {
                bail!(
                    "{}: `{name}` is {:?} {:?}, expected F32 {shape:?}",
                    path.display(),
                    t.dtype(),
                    t.shape()
                );
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let w =
            Array2::from_shape_vec((n_classes, d), read(HEAD_WEIGHT, &[n_classes, d])?)?;
        let b = ndarray::Array1::from(read(HEAD_BIAS, &[n_classes])?);
        let mut c = Self::new(encoder, n_classes, 0, 0)?;
        c.head = Linear::from_weights(w, b);
        Ok(c)
    }
}

impl Module for ScratchClassifier {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.encoder
            .visit_params(&crate::nn::join(prefix, "encoder"), f);
        self.head.visit_params(&crate::nn::join(prefix, "head"), f);
    }
}

/// The trainable parameters of a [`ScratchClassifier`] (see
/// [`ScratchClassifier::trainable`]).
pub struct Trainable<'a>(&'a mut ScratchClassifier);

impl Module for Trainable<'_> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        let c = &mut *self.0;
        let k = c.frozen_layers;
        let e = crate::nn::join(prefix, "encoder");
        let j = |n: &str| crate::nn::join(&e, n);
        let enc = &mut c.encoder;
        if k == 0 {
            enc.word.visit_params(&j("word"), f);
            enc.position.visit_params(&j("position"), f);
            enc.token_type.visit_params(&j("token_type"), f);
            enc.emb_ln.visit_params(&j("emb_ln"), f);
        }
        for (i, blk) in enc.layers.iter_mut().enumerate().skip(k) {
            blk.visit_params(&j(&format!("layers.{i}")), f);
        }
        c.head.visit_params(&crate::nn::join(prefix, "head"), f);
    }
}

/// Checks that `labels` are `rows` class indices below `n_classes`.
fn check_labels(labels: &[usize], rows: usize, n_classes: usize) -> Result<()> {
    if labels.len() != rows {
        bail!("{} labels for a batch of {rows} sentences", labels.len());
    }
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l >= n_classes) {
        bail!("label {l} of sentence {i} is out of range for {n_classes} classes");
    }
    Ok(())
}

/// The parameters of a [`Module`] that `keep` selects: one optimiser group.
struct Group<'a> {
    model: &'a mut dyn Module,
    keep: &'a dyn Fn(&str, &Param) -> bool,
}

impl Module for Group<'_> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        let keep = self.keep;
        self.model.visit_params(prefix, &mut |name, p| {
            if keep(name, p) {
                f(name, p)
            }
        });
    }
}

// ANCHOR: optimizer
/// AdamW for fine-tuning: the encoder at a small learning rate, the new head at a
/// larger one, each with decoupled weight decay on its matrices (weights and embedding
/// tables) and none on its vectors (biases, layer-norm gains and shifts, whose neutral
/// values are not zero): four [`Adam`]s, one per group.
#[derive(Clone, Debug)]
pub struct FinetuneOptimizer {
    /// `[encoder matrices, encoder vectors, head matrix, head bias]`.
    pub groups: [Adam; 4],
}

/// Which parameters (by name) one optimiser group updates.
type Selector = dyn Fn(&str, &Param) -> bool;

impl FinetuneOptimizer {
    /// AdamW with `cfg`'s learning rates and weight decay.
    pub fn new(cfg: &FinetuneConfig) -> Self {
        let (enc, head, wd) = (
            cfg.lr_encoder as f32,
            cfg.lr_head as f32,
            cfg.weight_decay as f32,
        );
        FinetuneOptimizer {
            groups: [
                Adam::adamw(enc, wd),
                Adam::adamw(enc, 0.0),
                Adam::adamw(head, wd),
                Adam::adamw(head, 0.0),
            ],
        }
    }

    /// One update of the trainable parameters of `model` from their gradients.
    pub fn step(&mut self, model: &mut ScratchClassifier) {
        let mut params = model.trainable();
        let selectors: [&Selector; 4] = [
            &|n: &str, p: &Param| !n.starts_with("head") && is_weight(p),
            &|n: &str, p: &Param| !n.starts_with("head") && !is_weight(p),
            &|n: &str, p: &Param| n.starts_with("head") && is_weight(p),
            &|n: &str, p: &Param| n.starts_with("head") && !is_weight(p),
        ];
        for (opt, keep) in self.groups.iter_mut().zip(selectors) {
            opt.step(&mut Group {
                model: &mut params,
                keep,
            });
        }
    }
}
// ANCHOR_END: optimizer

// ANCHOR: trainer
/// A [`ScratchClassifier`] with its optimiser.
pub struct ScratchFinetuner {
    /// The model.
    pub model: ScratchClassifier,
    /// AdamW in four groups.
    pub opt: FinetuneOptimizer,
    batch_size: usize,
}

impl ScratchFinetuner {
    /// Wraps `model` with [`FinetuneOptimizer`]. Fails on a batch size of 0.
    pub fn new(model: ScratchClassifier, cfg: &FinetuneConfig) -> Result<Self> {
        if cfg.batch_size == 0 {
            bail!("batch size 0");
        }
        Ok(ScratchFinetuner {
            model,
            opt: FinetuneOptimizer::new(cfg),
            batch_size: cfg.batch_size,
        })
    }

    /// One epoch over `data` in an order shuffled by `seed`: per batch, zero the
    /// trainable gradients, the mean cross-entropy and its backward pass, one AdamW step.
    /// Fails if `data` has other classes than the classifier.
    pub fn epoch(
        &mut self,
        tok: &MiniLmTokenizer,
        data: &LabeledText,
        seed: u64,
    ) -> Result<EpochStats> {
        self.model.check_classes(data)?;
        epoch_batches(data, self.batch_size, seed, |texts, labels| {
            let batch = tok.encode(texts)?;
            self.model.trainable().zero_grad();
            let loss = f64::from(self.model.loss_and_backward(&batch, labels)?);
            self.opt.step(&mut self.model);
            Ok(loss)
        })
    }
}
// ANCHOR_END: trainer

/// Mean-pooled, normalised sentence embeddings of `texts` from `encoder`, `(n, d)`, 32
/// at a time: the frozen features of the logistic-regression baseline.
pub fn embeddings(
    encoder: &mut ScratchMiniLm,
    tok: &MiniLmTokenizer,
    texts: &[String],
) -> Result<Array2<f32>> {
    let d = encoder.config.hidden_size;
    let mut out = Array2::<f32>::zeros((texts.len(), d));
    for (c, chunk) in texts.chunks(32).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let batch = tok.encode(&refs)?;
        let hidden = encoder.hidden_states(&batch)?;
        for (i, row) in super::bert::mean_pool_normalize(&hidden, &batch.mask, batch.cols)
            .into_iter()
            .enumerate()
        {
            out.row_mut(c * 32 + i).assign(&ndarray::Array1::from(row));
        }
    }
    Ok(out)
}
