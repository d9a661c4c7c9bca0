//! GPT and BERT side by side: each published configuration as a description
//! ([`ModelSpec`]), and its parameters counted from that description, by part
//! ([`ParamCount`]).
//!
//! # What is counted
//!
//! Both families stack $L$ blocks of width $d$ on a table of token embeddings
//! ($V \times d$) and a table of learned absolute positions ($c \times d$, $c$ the
//! longest input); BERT adds $S$ segment (token type) embeddings. A block holds four
//! $d \times d$ maps for attention (GPT-2 fuses $Q, K, V$ into one $d \times 3d$ map,
//! which counts the same), an MLP $d \to d_{ff} \to d$, and two layer norms. With biases
//! on every linear map and a scale and shift on every layer norm, as in GPT-1, GPT-2 and
//! BERT, one block has
//!
//! $$4(d^2 + d) + (d\,d_{ff} + d_{ff}) + (d_{ff}\,d + d) + 2 \cdot 2d,$$
//!
//! $12 d^2 + 13 d$ when $d_{ff} = 4d$. What differs between the families is around the
//! blocks: GPT-2 (pre-LN) has one more layer norm at the end, BERT (post-LN) one after
//! the embeddings; BERT has a *pooler*, a $d \times d$ dense layer on `[CLS]` trained for
//! next-sentence prediction. Neither has a separate output layer: the language-model head
//! reuses the token embeddings (*tied*), so it adds nothing. The GPT of section 11.3 has
//! no biases and layer norms without a shift, so its block is $12d^2 + 2d$
//! ([`GptConfig::n_params`]).

use rand::Rng;
use serde::Serialize;

use crate::gpt::{self, GptConfig};
use crate::models::bert::BertConfig;
use crate::transformer::Norm;

/// Which half of the Transformer a model keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stack {
    /// Causal self-attention: position $s$ reads positions $1..s$ (GPT).
    Decoder,
    /// Bidirectional self-attention, masking only padding (BERT).
    Encoder,
}

impl Stack {
    /// `decoder` or `encoder`, for tables.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Decoder => "decoder",
            Stack::Encoder => "encoder",
        }
    }
}

// ANCHOR: spec
/// The shape of a Transformer language model: what its parameter count depends on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelSpec {
    /// Row name.
    pub name: String,
    /// Decoder (GPT) or encoder (BERT).
    pub stack: Stack,
    /// Tokens in the vocabulary, $V$.
    pub vocab_size: usize,
    /// Learned positions, $c$: the longest input.
    pub seq_len: usize,
    /// Segment (token type) embeddings, $S$: 2 in BERT, none in GPT.
    pub n_segments: usize,
    /// Blocks, $L$.
    pub n_layers: usize,
    /// Width of the residual stream, $d$.
    pub d_model: usize,
    /// Attention heads per block, $H$.
    pub n_heads: usize,
    /// Width of the MLP's hidden layer, $d_{ff}$.
    pub d_ff: usize,
    /// Where the block's layer norms stand.
    pub norm: Norm,
    /// A layer norm on the summed embeddings (BERT).
    pub embedding_norm: bool,
    /// A layer norm after the last block (pre-LN models).
    pub final_norm: bool,
    /// Linear maps have biases.
    pub biases: bool,
    /// Layer norms have a shift as well as a scale.
    pub norm_shift: bool,
    /// A pooler, a dense $d \times d$ layer on the first token (BERT).
    pub pooler: bool,
}
// ANCHOR_END: spec

// ANCHOR: count
/// The parameters of a [`ModelSpec`], by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ParamCount {
    /// The token embedding table, $V d$ (also the head, when tied).
    pub token_embeddings: usize,
    /// The position table, $c d$.
    pub positions: usize,
    /// The segment table, $S d$.
    pub segments: usize,
    /// The attention maps of all blocks.
    pub attention: usize,
    /// The MLPs of all blocks.
    pub mlp: usize,
    /// Every layer norm: two per block, and the embedding and final ones.
    pub norms: usize,
    /// The pooler.
    pub pooler: usize,
    /// One block: attention, MLP and its two layer norms.
    pub per_layer: usize,
    /// Everything.
    pub total: usize,
}

impl ModelSpec {
    /// Width of one head, $d / H$.
    pub fn head_size(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// The parameters, counted from the sizes.
    pub fn count(&self) -> ParamCount {
        let (d, l) = (self.d_model, self.n_layers);
        let bias = |n: usize| if self.biases { n } else { 0 };
        let linear = |n_in: usize, n_out: usize| n_in * n_out + bias(n_out);
        let layer_norm = if self.norm_shift { 2 * d } else { d };
        let attention = 4 * linear(d, d); // Q, K, V and the output projection
        let mlp = linear(d, self.d_ff) + linear(self.d_ff, d);
        let per_layer = attention + mlp + 2 * layer_norm;
        let outer_norms = usize::from(self.embedding_norm) + usize::from(self.final_norm);
        let c = ParamCount {
            token_embeddings: self.vocab_size * d,
            positions: self.seq_len * d,
            segments: self.n_segments * d,
            attention: l * attention,
            mlp: l * mlp,
            norms: (2 * l + outer_norms) * layer_norm,
            pooler: if self.pooler { linear(d, d) } else { 0 },
            per_layer,
            total: 0,
        };
        ParamCount {
            total: c.token_embeddings
                + c.positions
                + c.segments
                + c.attention
                + c.mlp
                + c.norms
                + c.pooler,
            ..c
        }
    }
    // ANCHOR_END: count

    /// GPT-1 (Radford et al. 2018): 12 post-LN blocks of width 768, 12 heads, MLP 3072,
    /// 512 positions, a BPE vocabulary of 40,478 tokens (40,000 merges), as in its
    /// released `openai-gpt` configuration.
    pub fn gpt1() -> Self {
        ModelSpec {
            name: "GPT-1".into(),
            stack: Stack::Decoder,
            vocab_size: 40_478,
            seq_len: 512,
            n_segments: 0,
            n_layers: 12,
            d_model: 768,
            n_heads: 12,
            d_ff: 3072,
            norm: Norm::PostLn,
            embedding_norm: false,
            final_norm: false,
            biases: true,
            norm_shift: true,
            pooler: false,
        }
    }

    /// GPT-2 (Radford et al. 2019) of `n_layers` pre-LN blocks of width `d_model` with
    /// `n_heads` heads: MLP $4d$, 1024 positions, a byte-level BPE vocabulary of 50,257
    /// tokens (256 bytes, 50,000 merges, `<|endoftext|>`), a final layer norm.
    pub fn gpt2(name: &str, n_layers: usize, d_model: usize, n_heads: usize) -> Self {
        ModelSpec {
            name: name.into(),
            vocab_size: 50_257,
            seq_len: 1024,
            n_layers,
            d_model,
            n_heads,
            d_ff: 4 * d_model,
            norm: Norm::PreLn,
            final_norm: true,
            ..Self::gpt1()
        }
    }

    /// A BERT encoder read from its `config.json` ([`BertConfig`]): post-LN, a layer
    /// norm on the embeddings, biases everywhere, a pooler.
    pub fn from_bert(name: &str, c: &BertConfig) -> Self {
        ModelSpec {
            name: name.into(),
            stack: Stack::Encoder,
            vocab_size: c.vocab_size,
            seq_len: c.max_position_embeddings,
            n_segments: c.type_vocab_size,
            n_layers: c.num_hidden_layers,
            d_model: c.hidden_size,
            n_heads: c.num_attention_heads,
            d_ff: c.intermediate_size,
            norm: Norm::PostLn,
            embedding_norm: true,
            final_norm: false,
            biases: true,
            norm_shift: true,
            pooler: true,
        }
    }

    /// BERT-base or BERT-large (Devlin et al. 2019): `n_layers` blocks of width
    /// `d_model`, `n_heads` heads, MLP $4d$, 512 positions, 2 segments, the uncased
    /// WordPiece vocabulary of 30,522 tokens.
    pub fn bert(name: &str, n_layers: usize, d_model: usize, n_heads: usize) -> Self {
        Self::from_bert(
            name,
            &BertConfig {
                vocab_size: 30_522,
                hidden_size: d_model,
                num_hidden_layers: n_layers,
                num_attention_heads: n_heads,
                intermediate_size: 4 * d_model,
                hidden_act: "gelu".into(),
                max_position_embeddings: 512,
                type_vocab_size: 2,
                layer_norm_eps: 1e-12,
                pad_token_id: 0,
            },
        )
    }

    /// The GPT of section 11.3 ([`GptConfig`]): no biases, layer norms with a scale
    /// only, tied head; its ablations (no positions, post-LN) drop the position table or
    /// the final layer norm. Residual connections have no parameters.
    pub fn from_gpt(name: &str, c: &GptConfig) -> Self {
        ModelSpec {
            name: name.into(),
            stack: Stack::Decoder,
            vocab_size: c.vocab_size,
            seq_len: if c.positions { c.seq_len } else { 0 },
            n_segments: 0,
            n_layers: c.n_layers,
            d_model: c.d_model,
            n_heads: c.n_heads,
            d_ff: 4 * c.d_model,
            norm: match c.norm {
                gpt::Norm::Pre => Norm::PreLn,
                gpt::Norm::Post => Norm::PostLn,
            },
            embedding_norm: false,
            final_norm: c.norm == gpt::Norm::Pre,
            biases: false,
            norm_shift: false,
            pooler: false,
        }
    }
}

/// A parameter count as its authors state it, rounded: "124M" is 124 million.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Stated {
    /// The figure, in millions.
    pub millions: usize,
    /// Where it is stated.
    pub source: &'static str,
}

impl Stated {
    /// Whether a count rounds to the stated figure: it lies within half a unit of the
    /// figure's last non-zero digit ("340M" allows 335M to 345M, "124M" 123.5M to
    /// 124.5M).
    pub fn agrees(&self, count: usize) -> bool {
        let mut unit = 1_000_000usize;
        let mut m = self.millions;
        while m > 0 && m.is_multiple_of(10) {
            m /= 10;
            unit *= 10;
        }
        let stated = self.millions * 1_000_000;
        2 * count.abs_diff(stated) <= unit
    }
}

// ANCHOR: published
/// A released model: its shape, how it was pre-trained, and the counts others give.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Published {
    /// The shape.
    pub spec: ModelSpec,
    /// What it was pre-trained to predict.
    pub objective: &'static str,
    /// On what text.
    pub corpus: &'static str,
    /// Its tokenizer.
    pub tokenizer: &'static str,
    /// The paper that describes it.
    pub paper: &'static str,
    /// The exact parameter count of the released weights, as Hugging Face
    /// `transformers` reports it (`model.num_parameters()` of the checkpoint named in
    /// `checkpoint`, tied embeddings counted once, pooler included for BERT).
    pub exact: usize,
    /// The checkpoint `exact` was counted on.
    pub checkpoint: &'static str,
    /// The rounded figure its authors give.
    pub stated: Stated,
}

/// The published models of the section's table, GPT-1 to BERT-large.
pub fn published() -> Vec<Published> {
    let gpt2 = |spec: ModelSpec, exact, checkpoint, millions| Published {
        spec,
        objective: "next token, causal mask",
        corpus: "WebText (40 GB of web pages linked from Reddit)",
        tokenizer: "byte-level BPE",
        paper: "Radford et al. 2019",
        exact,
        checkpoint,
        stated: Stated {
            millions,
            source: "openai/gpt-2 README (corrects the paper)",
        },
    };
    let bert = |spec: ModelSpec, exact, checkpoint, millions| Published {
        spec,
        objective: "masked tokens (15 %) and next sentence, padding mask only",
        corpus: "BooksCorpus and English Wikipedia",
        tokenizer: "WordPiece, uncased",
        paper: "Devlin et al. 2019",
        exact,
        checkpoint,
        stated: Stated {
            millions,
            source: "Devlin et al. 2019, section 3",
        },
    };
    vec![
        Published {
            spec: ModelSpec::gpt1(),
            objective: "next token, causal mask",
            corpus: "BooksCorpus (7,000 unpublished books)",
            tokenizer: "BPE, 40,000 merges",
            paper: "Radford et al. 2018",
            exact: 116_534_784,
            checkpoint: "openai-gpt",
            stated: Stated {
                millions: 117,
                source: "Radford et al. 2019, table 2 (the model equivalent to GPT-1)",
            },
        },
        gpt2(
            ModelSpec::gpt2("GPT-2 small", 12, 768, 12),
            124_439_808,
            "gpt2",
            124,
        ),
        gpt2(
            ModelSpec::gpt2("GPT-2 medium", 24, 1024, 16),
            354_823_168,
            "gpt2-medium",
            355,
        ),
        gpt2(
            ModelSpec::gpt2("GPT-2 large", 36, 1280, 20),
            774_030_080,
            "gpt2-large",
            774,
        ),
        gpt2(
            ModelSpec::gpt2("GPT-2 XL", 48, 1600, 25),
            1_557_611_200,
            "gpt2-xl",
            1558,
        ),
        bert(
            ModelSpec::bert("BERT-base", 12, 768, 12),
            109_482_240,
            "bert-base-uncased",
            110,
        ),
        bert(
            ModelSpec::bert("BERT-large", 24, 1024, 16),
            335_141_888,
            "bert-large-uncased",
            340,
        ),
    ]
}
// ANCHOR_END: published

/// The figures the GPT-2 paper gives for its four sizes (Radford et al. 2019, table 2),
/// in millions, smallest first: the README of `openai/gpt-2` says they were wrong.
pub const GPT2_PAPER_MILLIONS: [usize; 4] = [117, 345, 762, 1542];

// ANCHOR: masking
/// BERT's masked-language-model corruption (Devlin et al. 2019, section 3.1): each
/// token is chosen with probability `rate`; a chosen token is replaced by `[MASK]` with
/// probability `to_mask`, by a token drawn uniformly from the vocabulary with
/// probability `to_random`, and left as it is otherwise. The model must predict the
/// original at every chosen position, and only there.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MaskingRule {
    /// Share of the tokens chosen.
    pub rate: f64,
    /// Share of the chosen ones replaced by `[MASK]`.
    pub to_mask: f64,
    /// Share of the chosen ones replaced by a random token.
    pub to_random: f64,
}

/// The rule of the BERT paper: 15 % chosen, of which 80 % masked, 10 % random, 10 %
/// kept. Keeping some and corrupting some means the model cannot learn that only
/// `[MASK]` positions matter, since `[MASK]` never occurs when it is fine-tuned.
pub const BERT_MASKING: MaskingRule = MaskingRule {
    rate: 0.15,
    to_mask: 0.8,
    to_random: 0.1,
};

/// A corrupted sequence and what the model must predict.
///
/// # Shapes
/// `inputs` and `targets` have one entry per token of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Masked {
    /// The ids the model reads.
    pub inputs: Vec<u32>,
    /// The original id at each chosen position, `None` elsewhere (no loss there).
    pub targets: Vec<Option<u32>>,
}

/// Applies `rule` to `ids` (pass only the tokens that may be chosen: BERT never masks
/// `[CLS]`, `[SEP]` or padding). Each token is chosen independently, as Hugging Face's
/// data collator does; the original code chose a fixed number per sequence instead.
///
/// # Panics
/// If `vocab_size` is 0 or the rule's shares are not probabilities.
pub fn mask_tokens(
    ids: &[u32],
    rule: MaskingRule,
    mask_id: u32,
    vocab_size: usize,
    rng: &mut impl Rng,
) -> Masked {
    assert!(vocab_size > 0, "mask_tokens: empty vocabulary");
    assert!(
        (0.0..=1.0).contains(&rule.rate)
            && rule.to_mask >= 0.0
            && rule.to_random >= 0.0
            && rule.to_mask + rule.to_random <= 1.0,
        "mask_tokens: {rule:?} is not a split of probabilities"
    );
    let mut inputs = ids.to_vec();
    let mut targets = vec![None; ids.len()];
    for (i, &id) in ids.iter().enumerate() {
        if rng.random::<f64>() >= rule.rate {
            continue;
        }
        targets[i] = Some(id);
        let u = rng.random::<f64>();
        if u < rule.to_mask {
            inputs[i] = mask_id;
        } else if u < rule.to_mask + rule.to_random {
            inputs[i] = rng.random_range(0..vocab_size) as u32;
        }
    }
    Masked { inputs, targets }
}
// ANCHOR_END: masking
