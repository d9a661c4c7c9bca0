//! Experiment `transformer_families`: GPT-1, the four GPT-2s, BERT-base and -large,
//! all-MiniLM-L6-v2 and the GPT of section 11.3, side by side: how each was
//! pre-trained, its shape, and its parameters counted from the shape by part
//! ([`families`](crate::transformer::families)), against an exact count made another
//! way and the rounded figure its authors give.
//!
//! The exact counts of the released GPT and BERT weights are reference data (what
//! Hugging Face `transformers` reports for each checkpoint); MiniLM's is measured here
//! by reading its `model.safetensors`, and the book's GPT's by building it.
//! Deterministic: both presets are the same.

use anyhow::{bail, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::{data_ref, DataDir};
use crate::gpt::{Gpt, GptConfig};
use crate::models::bert::{self, file_params, read_vocab, BertConfig, MiniLmTokenizer};
use crate::models::count::thousands;
use crate::nn::Module;
use crate::report::{col, Figure, Format, Plot, Report, Table, Value};
use crate::seq::text::{CharCorpus, TINY_SHAKESPEARE};
use crate::transformer::families::{
    mask_tokens, published, MaskingRule, ModelSpec, Published, Stated, BERT_MASKING,
    GPT2_PAPER_MILLIONS,
};

/// Experiment `transformer_families`, registered in [`super::all`].
pub struct TransformerFamilies;

impl Experiment for TransformerFamilies {
    const NAME: &'static str = "transformer_families";
    const CHAPTER: &'static str = "ch11";
    const TITLE: &'static str =
        "GPT and BERT: pre-training, shapes and parameter counts of the published models";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to count (both presets are the same).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The published models, with their reference counts.
    pub published: Vec<Published>,
    /// BERT's masking rule, shown on an example.
    pub masking: MaskingRule,
    /// The sentence it is applied to (MiniLM's WordPiece tokens).
    pub masking_example: String,
    /// The seed of the example.
    pub masking_seed: u64,
}

impl Preset for Config {
    fn full() -> Self {
        Config {
            published: published(),
            masking: BERT_MASKING,
            masking_example: "The quick brown fox jumps over the lazy dog, and the \
                              tired dog does not bother to chase the fox back \
                              across the field."
                .into(),
            masking_seed: 3,
        }
    }
}

/// One model of the tables.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The shape.
    pub spec: ModelSpec,
    /// Pre-training objective.
    pub objective: String,
    /// Pre-training text.
    pub corpus: String,
    /// Tokenizer.
    pub tokenizer: String,
    /// Paper.
    pub paper: String,
    /// The count made another way.
    pub exact: usize,
    /// How `exact` was made.
    pub exact_source: String,
    /// The authors' rounded figure, if any.
    pub stated: Option<Stated>,
}

impl From<&Published> for Row {
    fn from(p: &Published) -> Self {
        Row {
            spec: p.spec.clone(),
            objective: p.objective.into(),
            corpus: p.corpus.into(),
            tokenizer: p.tokenizer.into(),
            paper: p.paper.into(),
            exact: p.exact,
            exact_source: format!("transformers, `{}`", p.checkpoint),
            stated: Some(p.stated),
        }
    }
}

/// The name of MiniLM's row.
pub const MINILM: &str = "all-MiniLM-L6-v2";
/// The name of the book's GPT's row.
pub const BOOK_GPT: &str = "GPT of 11.3";

/// all-MiniLM-L6-v2 from its `config.json`, its exact count the `f32` values of its
/// weights file.
pub fn minilm_row(dir: &DataDir) -> Result<Row> {
    let cfg = BertConfig::from_file(&dir.verified(bert::CONFIG)?)?;
    let file = file_params(&dir.verified(bert::WEIGHTS)?)?;
    Ok(Row {
        spec: ModelSpec::from_bert(MINILM, &cfg),
        objective: "distilled self-attention, then sentence pairs (contrastive)".into(),
        corpus: "MiniLM: as BERT; pairs: over 1 billion (model card)".into(),
        tokenizer: "WordPiece, uncased (BERT's)".into(),
        paper: "Wang et al. 2020; Reimers & Gurevych 2019".into(),
        exact: file.f32_values,
        exact_source: "f32 values in model.safetensors".into(),
        stated: None,
    })
}

/// The GPT of section 11.3 on Tiny Shakespeare's characters, its exact count the
/// parameters of the built model.
pub fn book_gpt_row(dir: &DataDir) -> Result<Row> {
    let corpus = CharCorpus::tiny_shakespeare(dir)?;
    let cfg = GptConfig::reference(corpus.vocab.len());
    Ok(Row {
        spec: ModelSpec::from_gpt(BOOK_GPT, &cfg),
        objective: "next character, causal mask".into(),
        corpus: "Tiny Shakespeare".into(),
        tokenizer: "characters".into(),
        paper: "section 11.3".into(),
        exact: Gpt::new(&cfg, 0).n_params(),
        exact_source: "`Gpt::new`, `n_params`".into(),
        stated: None,
    })
}

/// The parts of a count, as the table and the figure name them, with their values.
pub fn parts(spec: &ModelSpec) -> [(&'static str, usize); 7] {
    let c = spec.count();
    [
        ("token embeddings", c.token_embeddings),
        ("positions", c.positions),
        ("segments", c.segments),
        ("attention", c.attention),
        ("MLP", c.mlp),
        ("layer norms", c.norms),
        ("pooler", c.pooler),
    ]
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    r.data = [TINY_SHAKESPEARE, bert::CONFIG, bert::WEIGHTS]
        .into_iter()
        .map(data_ref)
        .collect();
    let mut rows: Vec<Row> = cfg.published.iter().map(Row::from).collect();
    rows.push(minilm_row(dir)?);
    rows.push(book_gpt_row(dir)?);
    for row in &rows {
        let n = row.spec.count().total;
        if n != row.exact {
            bail!(
                "{}: {} parameters counted from the shape, {} by {}",
                row.spec.name,
                n,
                row.exact,
                row.exact_source
            );
        }
    }
    let find = |name: &str| rows.iter().find(|r| r.spec.name == name).expect(name);
    let text = |s: &str| Value::from(s);

    r.tables.push(Table {
        name: "pretraining".into(),
        caption: "How each model was pre-trained: the objective, the text and the \
                  tokenizer, and where each is described."
            .into(),
        columns: ["model", "stack", "pre-trained on", "text", "tokenizer", "paper"]
            .map(|h| col(h, Format::Int))
            .to_vec(),
        rows: rows
            .iter()
            .map(|row| {
                vec![
                    text(&row.spec.name),
                    text(row.spec.stack.name()),
                    text(&row.objective),
                    text(&row.corpus),
                    text(&row.tokenizer),
                    text(&row.paper),
                ]
            })
            .collect(),
    });

    let int = |n: usize| Value::from(thousands(n));
    r.tables.push(Table {
        name: "shapes".into(),
        caption: "The shapes: vocabulary V, learned positions c, blocks L, width d, heads \
                  H and their width d/H, MLP width, where the layer norms stand."
            .into(),
        columns: [
            "model", "V", "c", "L", "d", "H", "d/H", "MLP", "layer norm",
        ]
        .map(|h| col(h, Format::Int))
        .to_vec(),
        rows: rows
            .iter()
            .map(|row| {
                let s = &row.spec;
                vec![
                    text(&s.name),
                    int(s.vocab_size),
                    int(s.seq_len),
                    int(s.n_layers),
                    int(s.d_model),
                    int(s.n_heads),
                    int(s.head_size()),
                    int(s.d_ff),
                    text(s.norm.name()),
                ]
            })
            .collect(),
    });

    let mut columns = vec![col("model", Format::Int)];
    columns.extend(parts(&rows[0].spec).map(|(p, _)| col(p, Format::Int)));
    columns.push(col("total", Format::Int));
    columns.push(col("share of token embeddings", Format::Percent(1)));
    r.tables.push(Table {
        name: "params".into(),
        caption: "Parameters counted from the shapes, by part. Attention and MLP sum \
                  over all blocks; layer norms are the blocks' two each plus BERT's \
                  on the embeddings or GPT-2's after the last block; the heads that \
                  predict tokens reuse the token embeddings and add nothing."
            .into(),
        columns,
        rows: rows
            .iter()
            .map(|row| {
                let c = row.spec.count();
                let mut cells = vec![text(&row.spec.name)];
                cells.extend(parts(&row.spec).map(|(_, n)| int(n)));
                cells.push(int(c.total));
                cells.push(Value::from(c.token_embeddings as f64 / c.total as f64));
                cells
            })
            .collect(),
    });

    r.tables.push(Table {
        name: "checks".into(),
        caption: "The count from the shape against an exact count made another way \
                  (the released checkpoint's parameters as Hugging Face transformers \
                  reports them; MiniLM's weights file read here; the book's GPT built \
                  here), and against the rounded figure the authors give."
            .into(),
        columns: [
            "model",
            "counted",
            "exact",
            "exact by",
            "stated",
            "stated by",
        ]
        .map(|h| col(h, Format::Int))
        .to_vec(),
        rows: rows
            .iter()
            .map(|row| {
                let (stated, by) = match row.stated {
                    Some(s) => (format!("{}M", s.millions), s.source.to_string()),
                    None => ("".into(), "".into()),
                };
                vec![
                    text(&row.spec.name),
                    int(row.spec.count().total),
                    int(row.exact),
                    text(&row.exact_source),
                    text(&stated),
                    text(&by),
                ]
            })
            .collect(),
    });

    // Where the parameters go, as shares of each model's total.
    let names: Vec<&str> = parts(&rows[0].spec).map(|(p, _)| p).to_vec();
    r.figures.push(Figure {
        name: "shares".into(),
        title: "Where the parameters are (% of each model's total)".into(),
        plot: Plot::Heatmap {
            x_label: "part".into(),
            y_label: "model".into(),
            row_labels: rows.iter().map(|row| row.spec.name.clone()).collect(),
            col_labels: names.iter().map(|s| s.to_string()).collect(),
            values: rows
                .iter()
                .map(|row| {
                    let total = row.spec.count().total as f64;
                    parts(&row.spec)
                        .map(|(_, n)| 100.0 * n as f64 / total)
                        .to_vec()
                })
                .collect(),
            log_shade: false,
            decimals: 0,
        },
    });

    // Facts the prose quotes.
    let minilm = find(MINILM).spec.count();
    r.fact(
        "minilm_token_share",
        minilm.token_embeddings as f64 / minilm.total as f64,
        Format::Percent(0),
    );
    r.fact("minilm_total", thousands(minilm.total), Format::Int);
    let book = find(BOOK_GPT);
    r.fact("book_gpt_total", thousands(book.exact), Format::Int);
    r.fact("book_gpt_vocab", book.spec.vocab_size as f64, Format::Int);
    let share = |name: &str| {
        let c = find(name).spec.count();
        c.token_embeddings as f64 / c.total as f64
    };
    r.fact("gpt2_small_token_share", share("GPT-2 small"), Format::Percent(0));
    r.fact("gpt2_xl_token_share", share("GPT-2 XL"), Format::Percent(0));
    r.fact("bert_base_token_share", share("BERT-base"), Format::Percent(0));
    let (g1, g2) = (find("GPT-1").spec.count(), find("GPT-2 small").spec.count());
    r.fact("gpt1_per_layer", thousands(g1.per_layer), Format::Int);
    r.fact("gpt2_small_per_layer", thousands(g2.per_layer), Format::Int);
    r.fact(
        "bert_base_per_layer",
        thousands(find("BERT-base").spec.count().per_layer),
        Format::Int,
    );
    r.fact(
        "gpt2_minus_gpt1",
        thousands(g2.total - g1.total),
        Format::Int,
    );
    r.fact(
        "gpt2_paper_millions",
        GPT2_PAPER_MILLIONS
            .map(|m| format!("{m}M"))
            .join(", "),
        Format::Int,
    );

    masking_example(cfg, dir, r)
}

/// BERT's masking rule on the WordPiece tokens of one sentence: the table of what the
/// model reads and what it must predict, and the rule's shares as facts.
fn masking_example(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    r.data.extend([bert::TOKENIZER, bert::VOCAB, bert::SENTENCE_CONFIG].map(data_ref));
    let rule = cfg.masking;
    r.fact("mask_rate", rule.rate, Format::Percent(0));
    r.fact("mask_to_mask", rule.to_mask, Format::Percent(0));
    r.fact("mask_to_random", rule.to_random, Format::Percent(0));
    r.fact(
        "mask_kept",
        1.0 - rule.to_mask - rule.to_random,
        Format::Percent(0),
    );
    let tokenizer = MiniLmTokenizer::load(dir)?;
    let vocab = read_vocab(&dir.verified(bert::VOCAB)?)?;
    let mask_id = match vocab.iter().position(|t| t == "[MASK]") {
        Some(i) => i as u32,
        None => bail!("{}: no [MASK] token", bert::VOCAB),
    };
    let batch = tokenizer.encode(&[cfg.masking_example.as_str()])?;
    // [CLS] and [SEP] are never chosen: only the sentence's own tokens go in.
    let ids = &batch.ids[1..batch.tokens[0].len() - 1];
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.masking_seed);
    let m = mask_tokens(ids, rule, mask_id, vocab.len(), &mut rng);
    let token = |id: u32| vocab[id as usize].clone();
    let words = |ids: &[u32]| ids.iter().map(|&i| token(i)).collect::<Vec<_>>().join(" ");
    let chosen = m.targets.iter().filter(|t| t.is_some()).count();
    r.fact("mask_example_tokens", ids.len() as f64, Format::Int);
    r.fact("mask_example_chosen", chosen as f64, Format::Int);
    r.tables.push(Table {
        name: "masking".into(),
        caption: format!(
            "BERT's masking rule on the WordPiece tokens of \"{}\" (seed {}): the \
             input the model reads and, at the chosen positions only, the token it \
             must predict. [CLS] and [SEP] are never chosen.",
            cfg.masking_example, cfg.masking_seed
        ),
        columns: vec![col("", Format::Int), col("sequence", Format::Int)],
        rows: vec![
            vec![Value::from("tokens"), Value::from(words(ids))],
            vec![Value::from("what the model reads"), Value::from(words(&m.inputs))],
            vec![
                Value::from("what it must predict"),
                Value::from(
                    m.targets
                        .iter()
                        .map(|t| t.map_or("·".to_string(), token))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            ],
        ],
    });
    Ok(())
}
