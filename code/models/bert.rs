//! A pre-trained BERT encoder, all-MiniLM-L6-v2, run through candle-transformers: the
//! configuration read from the model's `config.json`, its parameters counted from that
//! configuration, WordPiece tokenization by the `tokenizers` crate from the model's
//! `tokenizer.json`, and sentence embeddings exactly as the model card defines them
//! (the attention-masked mean of the last hidden states, then L2 normalisation).
//!
//! This is the framework reference of chapter 11.5: a from-scratch encoder is checked
//! against [`CandleMiniLm`] by comparing embeddings of the same sentences.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as CandleBertConfig};
use serde::{Deserialize, Serialize};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::data::DataDir;

/// The model's folder inside the data folder (`dlbook data fetch minilm`).
pub const DIR: &str = "minilm";
/// The weights, in safetensors.
pub const WEIGHTS: &str = "minilm/model.safetensors";
/// The encoder's configuration (Hugging Face `config.json`).
pub const CONFIG: &str = "minilm/config.json";
/// The tokenizer: normaliser, pre-tokenizer, WordPiece vocabulary, `[CLS] … [SEP]`.
pub const TOKENIZER: &str = "minilm/tokenizer.json";
/// The WordPiece vocabulary, one token per line, line `i` (from 0) being id `i`.
pub const VOCAB: &str = "minilm/vocab.txt";
/// sentence-transformers' settings: the maximum sequence length.
pub const SENTENCE_CONFIG: &str = "minilm/sentence_bert_config.json";
/// sentence-transformers' pooling settings (mean pooling, for this model).
pub const POOLING_CONFIG: &str = "minilm/1_Pooling/config.json";

// ANCHOR: config
/// A BERT encoder's shape, read from the `config.json` that ships with the weights (the
/// fields this book uses; the others are ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Size of the WordPiece vocabulary.
    pub vocab_size: usize,
    /// Width of every hidden state, $d$.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer ($d$ is split among them).
    pub num_attention_heads: usize,
    /// Width of the feed-forward block's hidden layer.
    pub intermediate_size: usize,
    /// The feed-forward activation (`gelu`).
    pub hidden_act: String,
    /// Number of learned positions: the longest input the model can read.
    pub max_position_embeddings: usize,
    /// Number of segment (token type) embeddings: 2, for sentence A and sentence B.
    pub type_vocab_size: usize,
    /// The epsilon of every layer normalisation.
    pub layer_norm_eps: f64,
    /// The id of `[PAD]`.
    pub pad_token_id: u32,
}
// ANCHOR_END: config

/// The parameters of a BERT encoder, counted from its configuration, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BertParams {
    /// Word, position and token-type embeddings and their layer norm.
    pub embeddings: usize,
    /// One encoder layer: Q, K, V and output projections, two layer norms, the
    /// feed-forward block.
    pub per_layer: usize,
    /// All encoder layers.
    pub layers: usize,
    /// The pooler (a dense layer on `[CLS]`, trained for next-sentence prediction; mean
    /// pooling does not use it, but the file holds it).
    pub pooler: usize,
    /// Everything.
    pub total: usize,
}

impl BertConfig {
    /// Reads a Hugging Face BERT `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?;
        let cfg: BertConfig = serde_json::from_str(&text)
            .with_context(|| format!("parsing {} as a BERT config", path.display()))?;
        if cfg.num_attention_heads == 0
            || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        {
            bail!(
                "{}: hidden_size {} is not a multiple of num_attention_heads {}",
                path.display(),
                cfg.hidden_size,
                cfg.num_attention_heads
            );
        }
        Ok(cfg)
    }

    /// Width of one attention head, $d / h$.
    pub fn head_size(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    // ANCHOR: params
    /// The parameters, counted from the configuration: every linear layer has a weight
    /// and a bias, every layer norm a scale and a shift.
    pub fn params(&self) -> BertParams {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let linear = |n_in: usize, n_out: usize| n_in * n_out + n_out;
        let layer_norm = 2 * h;
        let embeddings =
            (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h
                + layer_norm;
        let attention = 4 * linear(h, h) + layer_norm; // Q, K, V, output; then add & norm
        let feed_forward = linear(h, i) + linear(i, h) + layer_norm;
        let per_layer = attention + feed_forward;
        let layers = self.num_hidden_layers * per_layer;
        let pooler = linear(h, h);
        BertParams {
            embeddings,
            per_layer,
            layers,
            pooler,
            total: embeddings + layers + pooler,
        }
    }
    // ANCHOR_END: params
}

/// What a safetensors file holds: the number of tensors, the number of `f32` values
/// (the parameters), and the names of the tensors that are not `f32` (buffers such as
/// `embeddings.position_ids`), read from the header alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileParams {
    /// Tensors in the file.
    pub tensors: usize,
    /// Values in its `f32` tensors.
    pub f32_values: usize,
    /// Names of the tensors of another dtype.
    pub other: Vec<String>,
}

/// Counts the parameters stored in a safetensors file.
pub fn file_params(path: &Path) -> Result<FileParams> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    let mut out = FileParams {
        tensors: 0,
        f32_values: 0,
        other: vec![],
    };
    for (name, view) in st.tensors() {
        out.tensors += 1;
        if view.dtype() == safetensors::Dtype::F32 {
            out.f32_values += view.shape().iter().product::<usize>();
        } else {
            out.other.push(name);
        }
    }
    out.other.sort();
    Ok(out)
}

/// A batch of tokenized sentences, padded to the longest one.
///
/// # Shapes
/// `ids`, `type_ids` and `mask` are row-major `(rows, cols)`: one row per sentence, `cols`
/// the longest sentence's token count (after truncation); `mask` is 1 on real tokens and
/// 0 on padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBatch {
    /// Sentences.
    pub rows: usize,
    /// Tokens per row, padding included.
    pub cols: usize,
    /// Token ids.
    pub ids: Vec<u32>,
    /// Segment ids (all 0 for single sentences).
    pub type_ids: Vec<u32>,
    /// Attention mask.
    pub mask: Vec<u32>,
    /// The tokens of each row, without padding.
    pub tokens: Vec<Vec<String>>,
}

// ANCHOR: tokenizer
/// The model's WordPiece tokenizer. The `tokenizer.json` shipped with the model pads
/// every input to 128 tokens and truncates there; this wrapper instead pads a batch to
/// its longest sentence and truncates at the sentence-transformers maximum
/// (`max_seq_length` in `sentence_bert_config.json`, 256), as the model card's pipeline
/// does. The `[SEP]` that closes a sentence survives truncation: the sentence's own
/// tokens are cut, not the template.
pub struct MiniLmTokenizer {
    inner: Tokenizer,
    max_len: usize,
}

impl MiniLmTokenizer {
    /// Loads `tokenizer.json`; inputs are truncated to `max_len` tokens, `[CLS]` and
    /// `[SEP]` included.
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        if max_len < 2 {
            bail!("max_len {max_len}: a sentence needs room for [CLS] and [SEP]");
        }
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: not a tokenizer.json: {e}", path.display()))?;
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| anyhow!("setting truncation: {e}"))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        Ok(MiniLmTokenizer { inner, max_len })
    }

    /// The tokenizer of the fetched model, with the model's maximum sequence length.
    pub fn load(data: &DataDir) -> Result<Self> {
        let max_len = sentence_max_len(&data.verified(SENTENCE_CONFIG)?)?;
        Self::from_file(&data.verified(TOKENIZER)?, max_len)
    }

    /// The longest input, in tokens (`[CLS]` and `[SEP]` included).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Tokenizes a batch: `[CLS]`, the sentence's WordPiece tokens, `[SEP]`, then `[PAD]`
    /// up to the batch's longest row.
    pub fn encode(&self, sentences: &[&str]) -> Result<TokenBatch> {
        let encs = self
            .inner
            .encode_batch(sentences.to_vec(), true)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        let rows = encs.len();
        let cols = encs.first().map_or(0, |e| e.get_ids().len());
        let mut b = TokenBatch {
            rows,
            cols,
            ids: Vec::with_capacity(rows * cols),
            type_ids: Vec::with_capacity(rows * cols),
            mask: Vec::with_capacity(rows * cols),
            tokens: Vec::with_capacity(rows),
        };
        for e in &encs {
            b.ids.extend_from_slice(e.get_ids());
            b.type_ids.extend_from_slice(e.get_type_ids());
            b.mask.extend_from_slice(e.get_attention_mask());
            let tokens = e
                .get_tokens()
                .iter()
                .zip(e.get_attention_mask())
                .filter(|(_, &m)| m == 1)
                .map(|(t, _)| t.clone())
                .collect();
            b.tokens.push(tokens);
        }
        Ok(b)
    }
}
// ANCHOR_END: tokenizer

/// Reads `max_seq_length` from sentence-transformers' `sentence_bert_config.json`.
pub fn sentence_max_len(path: &Path) -> Result<usize> {
    #[derive(Deserialize)]
    struct S {
        max_seq_length: usize,
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let s: S = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(s.max_seq_length)
}

// ANCHOR: pool
/// Mean pooling over real tokens, then L2 normalisation: the sentence embedding of
/// sentence-transformers' `Pooling(mean)` followed by `Normalize`.
///
/// # Shapes
/// `hidden`: `(batch, tokens, d)`; `mask`: `(batch, tokens)`, 1 on real tokens; result
/// `(batch, d)`, each row of unit length.
pub fn mean_pool_normalize(
    hidden: &Tensor,
    mask: &Tensor,
) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?; // (b, t, 1)
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // padding adds nothing
                                                       // The model card clamps the count at 1e-9 so an all-padding row does not divide by 0.
    let count = mask.sum(1)?.clamp(1e-9, f64::INFINITY)?; // (b, 1)
    let mean = summed.broadcast_div(&count)?;
    let norm = mean
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    mean.broadcast_div(&norm)
}
// ANCHOR_END: pool

// ANCHOR: candle_minilm
/// all-MiniLM-L6-v2 in candle: candle-transformers' `BertModel` on the fetched
/// weights, the model's tokenizer, mean pooling and normalisation.
pub struct CandleMiniLm {
    /// The configuration read from `config.json`.
    pub config: BertConfig,
    /// The tokenizer.
    pub tokenizer: MiniLmTokenizer,
    model: BertModel,
    device: Device,
}

impl CandleMiniLm {
    /// Loads the fetched model (each file's sha256 checked first; a missing or altered
    /// file is an error that says `run dlbook data fetch minilm`).
    pub fn load(data: &DataDir) -> Result<Self> {
        let config_path = data.verified(CONFIG)?;
        let config = BertConfig::from_file(&config_path)?;
        // candle-transformers reads the same file into its own config type.
        let candle_config: CandleBertConfig =
            serde_json::from_str(&std::fs::read_to_string(&config_path)?)
                .with_context(|| format!("parsing {}", config_path.display()))?;
        let tokenizer = MiniLmTokenizer::load(data)?;
        let weights = data.verified(WEIGHTS)?;
        let device = Device::Cpu;
        // SAFETY: the file was just verified and is not written while mapped; mapping
        // instead of reading avoids a second 90 MB copy.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device)?
        };
        // MiniLM's tensors have no `bert.` prefix (`embeddings.word_embeddings.weight`);
        // `BertModel::load` looks for the prefix and falls back to the bare names.
        let model = BertModel::load(vb, &candle_config)
            .with_context(|| format!("loading {} into BertModel", weights.display()))?;
        Ok(CandleMiniLm {
            config,
            tokenizer,
            model,
            device,
        })
    }

    /// The last hidden states of a tokenized batch.
    ///
    /// # Shapes
    /// Result `(rows, cols, hidden_size)`.
    pub fn hidden_states(&self, batch: &TokenBatch) -> Result<Tensor> {
        let shape = (batch.rows, batch.cols);
        let ids = Tensor::from_slice(&batch.ids, shape, &self.device)?;
        let types = Tensor::from_slice(&batch.type_ids, shape, &self.device)?;
        let mask = Tensor::from_slice(&batch.mask, shape, &self.device)?;
        Ok(self.model.forward(&ids, &types, Some(&mask))?)
    }

    /// Sentence embeddings: one unit-length row of `hidden_size` values per sentence.
    pub fn embed(&self, sentences: &[&str]) -> Result<Vec<Vec<f32>>> {
        if sentences.is_empty() {
            return Ok(vec![]);
        }
        let batch = self.tokenizer.encode(sentences)?;
        let hidden = self.hidden_states(&batch)?;
        let mask =
            Tensor::from_slice(&batch.mask, (batch.rows, batch.cols), &self.device)?;
        Ok(mean_pool_normalize(&hidden, &mask)?.to_vec2::<f32>()?)
    }
}
// ANCHOR_END: candle_minilm

/// The cosine of the angle between two vectors (their dot product, for unit vectors).
///
/// # Panics
/// If the lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(
        a.len(),
        b.len(),
        "cosine of vectors of lengths {} and {}",
        a.len(),
        b.len()
    );
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Reads `vocab.txt` into a list, id `i` being line `i`.
pub fn read_vocab(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().map(str::to_string).collect())
}
