//! Fine-tuning all-MiniLM-L6-v2 for sentence classification with candle autograd: the
//! encoder written out in candle operations that all have a backward pass, its weights
//! taken from `model.safetensors` into a `VarMap`-backed `VarBuilder` (so the trainable
//! ones are `Var`s that AdamW updates), a linear head on the attention-masked mean of the
//! last hidden states, and a safetensors checkpoint in MiniLM's own tensor names.
//!
//! Why not candle-transformers' `BertModel`, which [`super::bert::CandleMiniLm`] runs?
//! Its layer normalisation calls candle-nn's fused layer-norm kernel, an operation
//! without a backward pass: the output of every `LayerNorm` is cut from the graph, so no
//! gradient reaches a single encoder weight (chapter 11's tests show it). The encoder
//! here computes the same function with differentiable operations, and is checked
//! against `BertModel` on the same sentences.
//!
//! Freezing the lower `k` layers makes their weights (and the embeddings) plain tensors
//! instead of `Var`s: candle then records no graph below layer `k`, so their backward
//! pass is not computed at all, which is where freezing saves time.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::bert::{self, BertConfig, MiniLmTokenizer, TokenBatch};
use crate::data::polarity::LabeledText;
use crate::data::DataDir;

/// The head's tensor names in a checkpoint (beside MiniLM's own).
pub const HEAD_WEIGHT: &str = "classifier.weight";
/// The head's bias.
pub const HEAD_BIAS: &str = "classifier.bias";

/// Where the encoder's starting weights come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// all-MiniLM-L6-v2's pre-trained weights.
    Pretrained,
    /// BERT's initialisation drawn from a seed: every weight matrix and embedding
    /// $\mathcal N(0, 0.02^2)$, biases 0, layer-norm gains 1. The same architecture and
    /// shapes, none of the pre-training.
    Random(u64),
}

/// The encoder's tensors by name (MiniLM's names), as loaded or initialised.
pub type Weights = BTreeMap<String, Tensor>;

/// The names of the tensors the encoder uses, in the order of the file: embeddings,
/// then each layer's attention, feed-forward block and layer norms.
pub fn encoder_names(cfg: &BertConfig) -> Vec<String> {
    let mut names: Vec<String> = [
        "word_embeddings.weight",
        "position_embeddings.weight",
        "token_type_embeddings.weight",
        "LayerNorm.weight",
        "LayerNorm.bias",
    ]
    .iter()
    .map(|n| format!("embeddings.{n}"))
    .collect();
    for l in 0..cfg.num_hidden_layers {
        for n in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "attention.output.LayerNorm",
            "intermediate.dense",
            "output.dense",
            "output.LayerNorm",
        ] {
            for p in ["weight", "bias"] {
                names.push(format!("encoder.layer.{l}.{n}.{p}"));
            }
        }
    }
    names
}

/// Loads the encoder's tensors from a safetensors file (MiniLM's or a checkpoint): an
/// error naming the first missing tensor.
pub fn load_weights(path: &Path, cfg: &BertConfig) -> Result<Weights> {
    let mut all = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    let mut out = Weights::new();
    for name in encoder_names(cfg) {
        let t = all
            .remove(&name)
            .with_context(|| format!("{}: no tensor `{name}`", path.display()))?;
        out.insert(name, t.to_dtype(DType::F32)?);
    }
    for name in [HEAD_WEIGHT, HEAD_BIAS] {
        if let Some(t) = all.remove(name) {
            out.insert(name.to_string(), t.to_dtype(DType::F32)?);
        }
    }
    Ok(out)
}

/// BERT's initialisation for tensors of the shapes of `like`, drawn from `seed` in name
/// order: weights $\mathcal N(0, 0.02^2)$, biases 0, layer-norm gains 1.
pub fn random_weights(like: &Weights, seed: u64) -> Result<Weights> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 0.02).expect("a valid normal");
    let mut out = Weights::new();
    for (name, t) in like {
        let shape = t.dims().to_vec();
        let n: usize = shape.iter().product();
        let values: Vec<f32> = if name.ends_with("LayerNorm.weight") {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        };
        out.insert(name.clone(), Tensor::from_vec(values, shape, &Device::Cpu)?);
    }
    Ok(out)
}

// ANCHOR: layer_norm
/// Layer normalisation over the last axis, written with differentiable operations
/// (candle-nn's fused kernel has no backward pass).
///
/// # Shapes
/// `x`: `(..., d)`; `gain`, `shift`: `(d,)`; result like `x`.
pub fn layer_norm(
    x: &Tensor,
    gain: &Tensor,
    shift: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed.broadcast_mul(gain)?.broadcast_add(shift)
}
// ANCHOR_END: layer_norm

/// The attention-masked mean of the hidden states (padding excluded), not normalised.
///
/// # Shapes
/// `hidden`: `(batch, tokens, d)`; `mask`: `(batch, tokens)`, 1 on real tokens; result
/// `(batch, d)`.
pub fn masked_mean(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let m = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?;
    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::INFINITY)?;
    summed.broadcast_div(&count)
}

/// A linear map `x W^T + b`.
struct Dense {
    w: Tensor,
    b: Tensor,
}

impl Dense {
    /// `x`: `(batch, tokens, in)` -> `(batch, tokens, out)`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let y = x.reshape((b * t, d))?.matmul(&self.w.t()?)?;
        let out = self.w.dim(0)?;
        y.broadcast_add(&self.b)?.reshape((b, t, out))
    }
}

/// A layer norm's gain and shift.
struct Norm {
    gain: Tensor,
    shift: Tensor,
}

/// One encoder layer.
struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    attn_out: Dense,
    attn_norm: Norm,
    ffn_in: Dense,
    ffn_out: Dense,
    out_norm: Norm,
}

/// The tensors of a classifier: trainable ones are `Var`s registered in a `VarMap`
/// (through a `VarBuilder` over it), frozen ones plain tensors.
struct Builder<'a> {
    weights: &'a Weights,
    vb: VarBuilder<'a>,
    varmap: &'a VarMap,
    frozen: Vec<(String, Tensor)>,
}

impl Builder<'_> {
    fn take(&mut self, name: &str, trainable: bool) -> Result<Tensor> {
        let value = self
            .weights
            .get(name)
            .with_context(|| format!("the weights have no tensor `{name}`"))?;
        if !trainable {
            self.frozen.push((name.to_string(), value.clone()));
            return Ok(value.clone());
        }
        // The VarBuilder creates the Var (zeros) in the VarMap; its value is then set to
        // the loaded one: the returned tensor shares the Var's storage.
        let t =
            self.vb
                .get_with_hints(value.dims(), name, candle_nn::Init::Const(0.0))?;
        let vars = self.varmap.data().lock().expect("VarMap lock");
        vars.get(name)
            .with_context(|| format!("`{name}` is not in the VarMap"))?
            .set(value)?;
        Ok(t)
    }

    fn dense(&mut self, prefix: &str, trainable: bool) -> Result<Dense> {
        Ok(Dense {
            w: self.take(&format!("{prefix}.weight"), trainable)?,
            b: self.take(&format!("{prefix}.bias"), trainable)?,
        })
    }

    fn norm(&mut self, prefix: &str, trainable: bool) -> Result<Norm> {
        Ok(Norm {
            gain: self.take(&format!("{prefix}.weight"), trainable)?,
            shift: self.take(&format!("{prefix}.bias"), trainable)?,
        })
    }
}

// ANCHOR: classifier
/// all-MiniLM-L6-v2 with a linear classification head on the masked mean of its last
/// hidden states, ready to train: the encoder's layers from `frozen_layers` up (and the
/// embeddings, when nothing is frozen) and the head are `Var`s; the rest is constant.
pub struct MiniLmClassifier {
    /// The encoder's configuration.
    pub config: BertConfig,
    /// Classes.
    pub n_classes: usize,
    /// Lower encoder layers kept frozen (0: all trained; `num_hidden_layers`: the head
    /// alone).
    pub frozen_layers: usize,
    /// The trainable encoder tensors.
    pub encoder_vars: VarMap,
    /// The head's tensors.
    pub head_vars: VarMap,
    frozen: Vec<(String, Tensor)>,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: Norm,
    layers: Vec<Layer>,
    head_w: Tensor,
    head_b: Tensor,
}
// ANCHOR_END: classifier

impl MiniLmClassifier {
    /// Builds the classifier from encoder `weights` (MiniLM's names). The head comes from
    /// `weights` too when they hold one (a checkpoint), else it is drawn from `head_seed`
    /// ($\mathcal N(0, 0.02^2)$ weights, zero bias, as BERT initialises its heads).
    ///
    /// Fails if a tensor is missing or has the wrong shape, `n_classes < 2`, or
    /// `frozen_layers` exceeds the number of layers.
    pub fn new(
        config: BertConfig,
        weights: &Weights,
        n_classes: usize,
        frozen_layers: usize,
        head_seed: u64,
    ) -> Result<Self> {
        if n_classes < 2 {
            bail!("{n_classes} class(es): a classifier needs at least 2");
        }
        if frozen_layers > config.num_hidden_layers {
            bail!(
                "{frozen_layers} frozen layers, but the encoder has {}",
                config.num_hidden_layers
            );
        }
        let d = config.hidden_size;
        let expect = |name: &str, shape: &[usize]| -> Result<()> {
            let t = weights
                .get(name)
                .with_context(|| format!("the weights have no tensor `{name}`"))?;
            if t.dims() != shape {
                bail!("`{name}` has shape {:?}, expected {shape:?}", t.dims());
            }
            Ok(())
        };
        expect("embeddings.word_embeddings.weight", &[config.vocab_size, d])?;
        expect(
            "encoder.layer.0.intermediate.dense.weight",
            &[config.intermediate_size, d],
        )?;
        let encoder_vars = VarMap::new();
        let head_vars = VarMap::new();
        let device = Device::Cpu;
        // F32 as loaded; F64 when a gradient check hands in F64 weights.
        let dtype = weights["embeddings.word_embeddings.weight"].dtype();
        let mut b = Builder {
            weights,
            vb: VarBuilder::from_varmap(&encoder_vars, dtype, &device),
            varmap: &encoder_vars,
            frozen: vec![],
        };
        let train_emb = frozen_layers == 0;
        let word = b.take("embeddings.word_embeddings.weight", train_emb)?;
        let position = b.take("embeddings.position_embeddings.weight", train_emb)?;
        let token_type = b.take("embeddings.token_type_embeddings.weight", train_emb)?;
        let emb_norm = b.norm("embeddings.LayerNorm", train_emb)?;
        let mut layers = vec![];
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let t = l >= frozen_layers;
            layers.push(Layer {
                query: b.dense(&format!("{p}.attention.self.query"), t)?,
                key: b.dense(&format!("{p}.attention.self.key"), t)?,
                value: b.dense(&format!("{p}.attention.self.value"), t)?,
                attn_out: b.dense(&format!("{p}.attention.output.dense"), t)?,
                attn_norm: b.norm(&format!("{p}.attention.output.LayerNorm"), t)?,
                ffn_in: b.dense(&format!("{p}.intermediate.dense"), t)?,
                ffn_out: b.dense(&format!("{p}.output.dense"), t)?,
                out_norm: b.norm(&format!("{p}.output.LayerNorm"), t)?,
            });
        }
        let frozen = std::mem::take(&mut b.frozen);
        drop(b);
        // The head: from the checkpoint, or drawn from the seed.
        let (w0, b0) = match (weights.get(HEAD_WEIGHT), weights.get(HEAD_BIAS)) {
            (Some(w), Some(bias)) => {
                if w.dims() != [n_classes, d] || bias.dims() != [n_classes] {
                    bail!(
                        "the head has shapes {:?} and {:?}, expected [{n_classes}, {d}] and \
                         [{n_classes}]",
                        w.dims(),
                        bias.dims()
                    );
                }
                (w.clone(), bias.clone())
            }
            _ => {
                let mut rng = ChaCha8Rng::seed_from_u64(head_seed);
                let normal = Normal::new(0.0f32, 0.02).expect("a valid normal");
                let w: Vec<f32> = (0..n_classes * d)
                    .map(|_| normal.sample(&mut rng))
                    .collect();
                (
                    Tensor::from_vec(w, (n_classes, d), &device)?.to_dtype(dtype)?,
                    Tensor::zeros(n_classes, dtype, &device)?,
                )
            }
        };
        let head_w = Var::from_tensor(&w0)?;
        let head_b = Var::from_tensor(&b0)?;
        {
            let mut data = head_vars.data().lock().expect("head VarMap lock");
            data.insert(HEAD_WEIGHT.to_string(), head_w.clone());
            data.insert(HEAD_BIAS.to_string(), head_b.clone());
        }
        Ok(MiniLmClassifier {
            config,
            n_classes,
            frozen_layers,
            encoder_vars,
            head_vars,
            frozen,
            word,
            position,
            token_type,
            emb_norm,
            layers,
            head_w: head_w.as_tensor().clone(),
            head_b: head_b.as_tensor().clone(),
        })
    }

    /// The fetched all-MiniLM-L6-v2 (or its architecture from random weights) with a
    /// new head.
    pub fn from_minilm(
        data: &DataDir,
        start: Start,
        n_classes: usize,
        frozen_layers: usize,
        head_seed: u64,
    ) -> Result<Self> {
        let config = BertConfig::from_file(&data.verified(bert::CONFIG)?)?;
        let weights = load_weights(&data.verified(bert::WEIGHTS)?, &config)?;
        let weights = match start {
            Start::Pretrained => weights,
            Start::Random(seed) => random_weights(&weights, seed)?,
        };
        Self::new(config, &weights, n_classes, frozen_layers, head_seed)
    }

    /// A saved classifier (see [`MiniLmClassifier::save`]), every tensor frozen.
    pub fn load(path: &Path, config: BertConfig, n_classes: usize) -> Result<Self> {
        let weights = load_weights(path, &config)?;
        if !weights.contains_key(HEAD_WEIGHT) {
            bail!("{}: no classifier head (`{HEAD_WEIGHT}`)", path.display());
        }
        let layers = config.num_hidden_layers;
        Self::new(config, &weights, n_classes, layers, 0)
    }

    /// Every tensor by name, trained values included: MiniLM's encoder names plus
    /// `classifier.weight` and `classifier.bias`.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        let mut out: HashMap<String, Tensor> = self.frozen.iter().cloned().collect();
        for vm in [&self.encoder_vars, &self.head_vars] {
            for (name, var) in vm.data().lock().expect("VarMap lock").iter() {
                out.insert(name.clone(), var.as_tensor().clone());
            }
        }
        out
    }

    /// Saves every tensor as safetensors, in MiniLM's tensor names (so any BERT encoder
    /// that reads all-MiniLM-L6-v2 reads the fine-tuned encoder) plus the head.
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.tensors(), path)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Trainable parameters: the encoder's `Var`s and the head's.
    pub fn trainable_params(&self) -> usize {
        [&self.encoder_vars, &self.head_vars]
            .iter()
            .flat_map(|vm| vm.all_vars())
            .map(|v| v.elem_count())
            .sum()
    }

    /// The last hidden states of a tokenized batch.
    ///
    /// # Shapes
    /// Result `(rows, cols, hidden_size)`.
    pub fn hidden_states(&self, batch: &TokenBatch) -> Result<Tensor> {
        let (n, t) = (batch.rows, batch.cols);
        let dev = Device::Cpu;
        let c = &self.config;
        if t > c.max_position_embeddings {
            bail!(
                "{t} tokens: the encoder reads at most {}",
                c.max_position_embeddings
            );
        }
        let ids = Tensor::from_slice(&batch.ids, n * t, &dev)?;
        let types = Tensor::from_slice(&batch.type_ids, n * t, &dev)?;
        let d = c.hidden_size;
        let x = self
            .word
            .index_select(&ids, 0)?
            .add(&self.token_type.index_select(&types, 0)?)?
            .reshape((n, t, d))?
            .broadcast_add(&self.position.narrow(0, 0, t)?)?;
        let eps = c.layer_norm_eps;
        let mut x = layer_norm(&x, &self.emb_norm.gain, &self.emb_norm.shift, eps)?;
        // Padding gets a large negative score, so the softmax gives it no weight.
        let mask = Tensor::from_slice(&batch.mask, (n, t), &dev)?.to_dtype(x.dtype())?;
        let min = f32::MIN as f64;
        let bias = mask.affine(-min, min)?.reshape((n, 1, 1, t))?; // 0 or f32::MIN
        let (h, hs) = (c.num_attention_heads, c.head_size());
        let heads = |y: Tensor| -> candle_core::Result<Tensor> {
            y.reshape((n, t, h, hs))?.transpose(1, 2)?.contiguous()
        };
        for layer in &self.layers {
            let q = heads(layer.query.forward(&x)?)?;
            let k = heads(layer.key.forward(&x)?)?;
            let v = heads(layer.value.forward(&x)?)?;
            let scores =
                (q.matmul(&k.t()?)? / (hs as f64).sqrt())?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((n, t, d))?;
            let a = layer.attn_out.forward(&ctx)?.add(&x)?;
            let a = layer_norm(&a, &layer.attn_norm.gain, &layer.attn_norm.shift, eps)?;
            let f = layer
                .ffn_out
                .forward(&layer.ffn_in.forward(&a)?.gelu_erf()?)?;
            x = layer_norm(
                &f.add(&a)?,
                &layer.out_norm.gain,
                &layer.out_norm.shift,
                eps,
            )?;
        }
        Ok(x)
    }

    /// The class scores of a tokenized batch: the head on the masked mean of the last
    /// hidden states.
    ///
    /// # Shapes
    /// Result `(rows, n_classes)`.
    pub fn logits(&self, batch: &TokenBatch) -> Result<Tensor> {
        let hidden = self.hidden_states(batch)?;
        let mask =
            Tensor::from_slice(&batch.mask, (batch.rows, batch.cols), &Device::Cpu)?;
        let pooled = masked_mean(&hidden, &mask)?;
        Ok(pooled
            .matmul(&self.head_w.t()?)?
            .broadcast_add(&self.head_b)?)
    }

    /// The logits of `texts`, `batch_size` at a time, as rows.
    pub fn predict_logits(
        &self,
        tok: &MiniLmTokenizer,
        texts: &[String],
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>> {
        assert!(batch_size > 0, "predict_logits: batch_size 0");
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(batch_size) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            out.extend(self.logits(&tok.encode(&refs)?)?.to_vec2::<f32>()?);
        }
        Ok(out)
    }

    /// The predicted class of each of `texts`.
    pub fn predict(
        &self,
        tok: &MiniLmTokenizer,
        texts: &[String],
        batch_size: usize,
    ) -> Result<Vec<usize>> {
        Ok(self
            .predict_logits(tok, texts, batch_size)?
            .iter()
            .map(|z| argmax(z))
            .collect())
    }

    /// The share of `data` classified correctly. Fails if `data` has other classes.
    pub fn accuracy(
        &self,
        tok: &MiniLmTokenizer,
        data: &LabeledText,
        batch_size: usize,
    ) -> Result<f64> {
        if data.n_classes != self.n_classes {
            bail!(
                "the data has {} classes, the classifier {}",
                data.n_classes,
                self.n_classes
            );
        }
        let pred = self.predict(tok, &data.texts, batch_size)?;
        let right = pred
            .iter()
            .zip(&data.labels)
            .filter(|(p, l)| p == l)
            .count();
        Ok(right as f64 / data.len() as f64)
    }
}

/// The index of the largest value (the first, on ties).
pub fn argmax(z: &[f32]) -> usize {
    (0..z.len()).fold(0, |a, j| if z[j] > z[a] { j } else { a })
}

/// How to fine-tune.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FinetuneConfig {
    /// Sentences per step.
    pub batch_size: usize,
    /// AdamW's learning rate for the encoder.
    pub lr_encoder: f64,
    /// AdamW's learning rate for the new head (it starts from random numbers, so it gets
    /// a larger one).
    pub lr_head: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
}

// ANCHOR: trainer
/// A classifier with its two AdamW optimisers (encoder and head).
pub struct Finetuner {
    /// The model.
    pub model: MiniLmClassifier,
    encoder_opt: Option<AdamW>,
    head_opt: AdamW,
    batch_size: usize,
}

/// What one epoch did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    /// Mean training loss over the steps.
    pub loss: f64,
    /// Sentences trained on.
    pub sentences: usize,
    /// Wall time of the epoch (tokenization, forward, backward, update).
    pub seconds: f64,
}

/// One epoch over `data` in an order shuffled by `seed`, `batch_size` sentences at a
/// time: `step` trains on one batch (its texts and labels) and returns its mean loss.
pub fn epoch_batches(
    data: &LabeledText,
    batch_size: usize,
    seed: u64,
    mut step: impl FnMut(&[&str], &[usize]) -> Result<f64>,
) -> Result<EpochStats> {
    let start = Instant::now();
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let (mut total, mut steps) = (0.0, 0);
    for chunk in order.chunks(batch_size) {
        let texts: Vec<&str> = chunk.iter().map(|&i| data.texts[i].as_str()).collect();
        let labels: Vec<usize> = chunk.iter().map(|&i| data.labels[i]).collect();
        total += step(&texts, &labels)?;
        steps += 1;
    }
    Ok(EpochStats {
        loss: total / steps as f64,
        sentences: data.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

impl Finetuner {
    /// Wraps `model` with AdamW on its encoder `Var`s and on its head.
    pub fn new(model: MiniLmClassifier, cfg: &FinetuneConfig) -> Result<Self> {
        if cfg.batch_size == 0 {
            bail!("batch size 0");
        }
        let adamw = |vm: &VarMap, lr: f64| {
            AdamW::new(
                vm.all_vars(),
                ParamsAdamW {
                    lr,
                    weight_decay: cfg.weight_decay,
                    ..Default::default()
                },
            )
        };
        let encoder_opt = if model.encoder_vars.all_vars().is_empty() {
            None
        } else {
            Some(adamw(&model.encoder_vars, cfg.lr_encoder)?)
        };
        let head_opt = adamw(&model.head_vars, cfg.lr_head)?;
        Ok(Finetuner {
            model,
            encoder_opt,
            head_opt,
            batch_size: cfg.batch_size,
        })
    }

    /// One epoch over `data` in an order shuffled by `seed`: per batch, the mean
    /// cross-entropy, its gradients by candle's backward pass, one AdamW step each for
    /// the encoder and the head. Fails on a label outside the classifier's classes.
    pub fn epoch(
        &mut self,
        tok: &MiniLmTokenizer,
        data: &LabeledText,
        seed: u64,
    ) -> Result<EpochStats> {
        if data.n_classes != self.model.n_classes {
            bail!(
                "the data has {} classes, the classifier {}",
                data.n_classes,
                self.model.n_classes
            );
        }
        epoch_batches(data, self.batch_size, seed, |texts, labels| {
            let batch = tok.encode(texts)?;
            let logits = self.model.logits(&batch)?;
            let labels: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
            let target = Tensor::from_vec(labels, texts.len(), &Device::Cpu)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &target)?;
            let grads = loss.backward()?;
            if let Some(opt) = &mut self.encoder_opt {
                opt.step(&grads)?;
            }
            self.head_opt.step(&grads)?;
            Ok(loss.to_scalar::<f32>()? as f64)
        })
    }
}
// ANCHOR_END: trainer
