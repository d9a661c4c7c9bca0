//! BERT's encoder from scratch on this module's blocks, loading the pre-trained
//! all-MiniLM-L6-v2 (the model of [`crate::models::bert`]).
//!
//! BERT is a stack of **post-LN** [`EncoderBlock`]s with biases and GELU:
//!
//! $$e = \operatorname{LN}(E_\text{word}\[x\] + E_\text{pos}\[0..t\] + E_\text{type}\[s\]),
//! \qquad h_{l} = \operatorname{Block}_l(h_{l-1}),\ h_0 = e,$$
//!
//! each block being $h = \operatorname{LN}_1(x + \operatorname{MHA}(x))$,
//! $y = \operatorname{LN}_2(h + \operatorname{FFN}(h))$ with every layer norm's
//! $\epsilon = 10^{-12}$, exactly the block of [`crate::transformer`] with
//! [`Norm::PostLn`]. Loading is renaming: Hugging Face's
//! `encoder.layer.{i}.attention.self.query.weight` is our `layers.{i}.attn.q.weight`,
//! `attention.output.dense` is `attn.o`, `attention.output.LayerNorm` is `ln1`,
//! `intermediate.dense` and `output.dense` are `ffn.fc1` and `ffn.fc2`, `output.LayerNorm`
//! is `ln2`; a layer norm's `weight` and `bias` are our `gamma` and `beta`. Linear
//! weights are stored `(d_out, d_in)` in both. The pooler (a dense layer on `[CLS]`) is
//! not used by mean pooling and not loaded.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array2, ArrayD, Axis, Ix2};

use super::{BlockConfig, EncoderBlock, Norm, SeqLayerNorm};
use crate::attn::Mask;
use crate::data::DataDir;
use crate::models::bert::{BertConfig, MiniLmTokenizer, TokenBatch, CONFIG, WEIGHTS};
use crate::nn::{Activation, Embedding, Layer, Mode, Module, Param};

/// Reads one `f32` tensor of the expected shape from a safetensors file.
fn read_tensor(
    st: &safetensors::SafeTensors<'_>,
    name: &str,
    shape: &[usize],
) -> Result<ArrayD<f32>> {
    let t = st
        .tensor(name)
        .map_err(|e| anyhow!("the weights have no tensor {name}: {e}"))?;
    if t.dtype() != safetensors::Dtype::F32 {
        bail!("tensor {name} is {:?}, expected F32", t.dtype());
    }
    if t.shape() != shape {
        bail!(
            "tensor {name} has shape {:?}, expected {shape:?}",
            t.shape()
        );
    }
    let values: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(ArrayD::from_shape_vec(shape.to_vec(), values)?)
}

/// The Hugging Face name of each of our parameter names of one layer.
fn hf_name(layer: usize, ours: &str) -> Result<String> {
    let (module, leaf) = ours
        .rsplit_once('.')
        .ok_or_else(|| anyhow!("unexpected parameter {ours}"))?;
    let hf_module = match module {
        "attn.q" => "attention.self.query",
        "attn.k" => "attention.self.key",
        "attn.v" => "attention.self.value",
        "attn.o" => "attention.output.dense",
        "ln1" => "attention.output.LayerNorm",
        "ffn.fc1" => "intermediate.dense",
        "ffn.fc2" => "output.dense",
        "ln2" => "output.LayerNorm",
        _ => bail!("unexpected parameter {ours}"),
    };
    let hf_leaf = match leaf {
        "gamma" => "weight",
        "beta" => "bias",
        other => other,
    };
    Ok(format!("encoder.layer.{layer}.{hf_module}.{hf_leaf}"))
}

/// The Hugging Face name of one of [`ScratchMiniLm`]'s dotted parameter names
/// (`layers.3.attn.q.weight` is `encoder.layer.3.attention.self.query.weight`,
/// `emb_ln.gamma` is `embeddings.LayerNorm.weight`): an error for a name it does not
/// have.
pub fn hf_param_name(ours: &str) -> Result<String> {
    Ok(match ours {
        "word.weight" => "embeddings.word_embeddings.weight".into(),
        "position.weight" => "embeddings.position_embeddings.weight".into(),
        "token_type.weight" => "embeddings.token_type_embeddings.weight".into(),
        "emb_ln.gamma" => "embeddings.LayerNorm.weight".into(),
        "emb_ln.beta" => "embeddings.LayerNorm.bias".into(),
        _ => {
            let rest = ours
                .strip_prefix("layers.")
                .ok_or_else(|| anyhow!("unexpected parameter {ours}"))?;
            let (layer, name) = rest
                .split_once('.')
                .ok_or_else(|| anyhow!("unexpected parameter {ours}"))?;
            let layer: usize = layer
                .parse()
                .map_err(|_| anyhow!("unexpected parameter {ours}"))?;
            hf_name(layer, name)?
        }
    })
}

// ANCHOR: scratch_minilm
/// all-MiniLM-L6-v2 from scratch: embeddings and [`EncoderBlock`]s on `ndarray`.
///
/// # Shapes
/// - a batch of `rows` sentences of `cols` tokens gives hidden states
///   `(rows, cols, hidden_size)` and embeddings `(rows, hidden_size)`.
pub struct ScratchMiniLm {
    /// The configuration read from `config.json`.
    pub config: BertConfig,
    /// The tokenizer (the same as the candle path's).
    pub tokenizer: MiniLmTokenizer,
    /// Word embeddings, `(vocab_size, d)`.
    pub word: Embedding,
    /// Learned position embeddings, `(max_position_embeddings, d)`.
    pub position: Embedding,
    /// Segment embeddings, `(type_vocab_size, d)`.
    pub token_type: Embedding,
    /// The embeddings' layer norm.
    pub emb_ln: SeqLayerNorm,
    /// The encoder blocks: post-LN, biases, GELU.
    pub layers: Vec<EncoderBlock>,
}

/// Where [`ScratchMiniLm`]'s builder gets each tensor: by Hugging Face name and shape.
type TensorSource<'a> = dyn FnMut(&str, &[usize]) -> Result<ArrayD<f32>> + 'a;

impl ScratchMiniLm {
    /// Loads the fetched model (each file's sha256 checked first).
    pub fn load(data: &DataDir) -> Result<Self> {
        let config = BertConfig::from_file(&data.verified(CONFIG)?)?;
        let tokenizer = MiniLmTokenizer::load(data)?;
        Self::from_weights(config, tokenizer, &data.verified(WEIGHTS)?)
    }

    /// Builds the encoder of `config` and reads its parameters from a safetensors file
    /// with Hugging Face's BERT names (with or without the `bert.` prefix).
    pub fn from_weights(
        config: BertConfig,
        tokenizer: MiniLmTokenizer,
        weights: &Path,
    ) -> Result<Self> {
        let bytes = std::fs::read(weights)
            .with_context(|| format!("reading {}", weights.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{}: not a safetensors file: {e}", weights.display()))?;
        let prefix = if st.names().iter().any(|n| n.starts_with("bert.")) {
            "bert."
        } else {
            ""
        };
        Self::build(config, tokenizer, &mut |name, shape| {
            read_tensor(&st, &format!("{prefix}{name}"), shape)
        })
    }

    /// The architecture of `config` with BERT's initialisation drawn from `seed`: every
    /// weight matrix and embedding $\mathcal N(0, 0.02^2)$, biases 0, layer-norm gains 1
    /// (the same shapes as the pre-trained model, none of its training).
    pub fn random(
        config: BertConfig,
        tokenizer: MiniLmTokenizer,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
        let normal = rand_distr::Normal::new(0.0f32, 0.02).expect("a valid normal");
        Self::build(config, tokenizer, &mut |name, shape| {
            Ok(if name.ends_with("LayerNorm.weight") {
                ArrayD::ones(shape.to_vec())
            } else if name.ends_with(".bias") {
                ArrayD::zeros(shape.to_vec())
            } else {
                ArrayD::from_shape_simple_fn(shape.to_vec(), || {
                    rand_distr::Distribution::sample(&normal, &mut rng)
                })
            })
        })
    }

    /// Builds the encoder of `config`, asking `get` for each tensor by its Hugging Face
    /// name and shape.
    fn build(
        config: BertConfig,
        tokenizer: MiniLmTokenizer,
        get: &mut TensorSource,
    ) -> Result<Self> {
        if config.hidden_act != "gelu" {
            bail!(
                "activation {:?}: only BERT's exact gelu is built",
                config.hidden_act
            );
        }
        let d = config.hidden_size;
        let mut emb = |name: &str, rows: usize| -> Result<Embedding> {
            let w = get(&format!("embeddings.{name}.weight"), &[rows, d])?;
            Ok(Embedding::from_weights(w.into_dimensionality::<Ix2>()?))
        };
        let word = emb("word_embeddings", config.vocab_size)?;
        let position = emb("position_embeddings", config.max_position_embeddings)?;
        let token_type = emb("token_type_embeddings", config.type_vocab_size)?;
        let eps = config.layer_norm_eps as f32;
        let mut emb_ln = SeqLayerNorm::new(d, eps);
        emb_ln.ln.gamma.value = get("embeddings.LayerNorm.weight", &[d])?;
        emb_ln.ln.beta.value = get("embeddings.LayerNorm.bias", &[d])?;
        let block = BlockConfig {
            d_model: d,
            n_heads: config.num_attention_heads,
            d_ff: config.intermediate_size,
            norm: Norm::PostLn,
            residual: true,
            bias: true,
            activation: Activation::Gelu,
            ln_eps: eps,
        };
        // the initial values are overwritten: any seed would do
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        let mut layers = vec![];
        for i in 0..config.num_hidden_layers {
            let mut blk = EncoderBlock::new(block, &mut rng);
            let mut err = None;
            blk.visit_params("", &mut |name, p| {
                let loaded = hf_name(i, name).and_then(|hf| get(&hf, p.value.shape()));
                match loaded {
                    Ok(v) => p.value = v,
                    Err(e) => err = err.take().or(Some(e)),
                }
            });
            if let Some(e) = err {
                return Err(e);
            }
            layers.push(blk);
        }
        Ok(ScratchMiniLm {
            word,
            position,
            token_type,
            emb_ln,
            layers,
            config,
            tokenizer,
        })
    }

    /// A copy of the encoder (its configuration and current parameters) with
    /// `tokenizer`: a fresh start from the same weights without reading the file again.
    pub fn copy_with(&mut self, tokenizer: MiniLmTokenizer) -> Result<Self> {
        let mut values = std::collections::HashMap::new();
        self.visit_hf(&mut |name, p| {
            values.insert(name.to_string(), p.value.clone());
        });
        Self::build(self.config.clone(), tokenizer, &mut |name, _| {
            values
                .remove(name)
                .ok_or_else(|| anyhow!("no parameter {name} to copy"))
        })
    }

    /// Calls `f` on every parameter under its Hugging Face name
    /// (`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`,
    /// ...), in visiting order: what a checkpoint in MiniLM's own names holds.
    pub fn visit_hf(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        self.visit_params("", &mut |name, p| {
            let hf =
                hf_param_name(name).expect("every parameter has a Hugging Face name");
            f(&hf, p)
        });
    }

    /// The last hidden states of a tokenized batch, `(rows, cols, hidden_size)`.
    pub fn hidden_states(&mut self, batch: &TokenBatch) -> Result<ArrayD<f32>> {
        let (rows, cols) = (batch.rows, batch.cols);
        if cols > self.config.max_position_embeddings {
            bail!(
                "{cols} tokens, more than the model's {} positions",
                self.config.max_position_embeddings
            );
        }
        let as_ids = |v: &[u32]| {
            Array2::from_shape_fn((rows, cols), |(r, c)| v[r * cols + c] as f32)
                .into_dyn()
        };
        let positions = Array2::from_shape_fn((rows, cols), |(_, c)| c as f32).into_dyn();
        let mode = Mode::Eval;
        let e = self.word.forward(&as_ids(&batch.ids), mode)
            + self.position.forward(&positions, mode)
            + self.token_type.forward(&as_ids(&batch.type_ids), mode);
        let mut h = self.emb_ln.forward(&e, mode);
        // padding keys are masked for every query (the mask holds 1s then 0s per row)
        let lengths: Vec<usize> = batch
            .mask
            .chunks(cols.max(1))
            .map(|m| m.iter().filter(|&&v| v == 1).count())
            .collect();
        let mask = Mask::padding(&lengths, cols, cols);
        for blk in &mut self.layers {
            h = blk.forward_masked(&h, Some(&mask), mode);
        }
        Ok(h)
    }

    /// Sentence embeddings: mean of the last hidden states over real tokens, then unit
    /// length, as [`crate::models::bert::mean_pool_normalize`] does in candle.
    pub fn embed(&mut self, sentences: &[&str]) -> Result<Vec<Vec<f32>>> {
        if sentences.is_empty() {
            return Ok(vec![]);
        }
        let batch = self.tokenizer.encode(sentences)?;
        let hidden = self.hidden_states(&batch)?;
        Ok(mean_pool_normalize(&hidden, &batch.mask, batch.cols))
    }

    /// The attention weights `(rows, heads, cols, cols)` of each layer on the last batch.
    pub fn attention_weights(&self) -> Vec<Option<&ArrayD<f32>>> {
        self.layers.iter().map(|b| b.attn.last_weights()).collect()
    }
}
// ANCHOR_END: scratch_minilm

impl Module for ScratchMiniLm {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        let j = |n: &str| crate::nn::join(prefix, n);
        self.word.visit_params(&j("word"), f);
        self.position.visit_params(&j("position"), f);
        self.token_type.visit_params(&j("token_type"), f);
        self.emb_ln.visit_params(&j("emb_ln"), f);
        for (i, blk) in self.layers.iter_mut().enumerate() {
            blk.visit_params(&j(&format!("layers.{i}")), f);
        }
    }
}

/// Mean over the positions where `mask` (row-major `(rows, cols)`) is 1, then unit
/// length (the count clamped at $10^{-9}$ and the norm at $10^{-12}$, as the model card
/// does).
///
/// # Shapes
/// `hidden`: `(rows, cols, d)`; result: `rows` vectors of `d` values.
pub fn mean_pool_normalize(
    hidden: &ArrayD<f32>,
    mask: &[u32],
    cols: usize,
) -> Vec<Vec<f32>> {
    hidden
        .axis_iter(Axis(0))
        .enumerate()
        .map(|(r, states)| {
            let d = states.shape()[1];
            let mut sum = vec![0.0f32; d];
            let mut count = 0.0f32;
            for (c, row) in states.axis_iter(Axis(0)).enumerate() {
                if mask[r * cols + c] == 1 {
                    sum.iter_mut().zip(row.iter()).for_each(|(s, &v)| *s += v);
                    count += 1.0;
                }
            }
            let count = count.max(1e-9);
            sum.iter_mut().for_each(|s| *s /= count);
            let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            sum.iter().map(|v| v / norm).collect()
        })
        .collect()
}
