//! Experiment `minilm_embeddings`: the pre-trained sentence encoder all-MiniLM-L6-v2,
//! run through candle-transformers' `BertModel`. Its configuration and parameter count
//! (counted from `config.json` and checked against the safetensors file), WordPiece
//! tokens of example sentences, and the cosine similarities of sentence triples: an
//! anchor, a paraphrase of it and an unrelated sentence.
//!
//! Deterministic (no training, no seeds); both presets are the same, since one forward
//! pass of fifteen short sentences takes well under a second.

use anyhow::{bail, Result};
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::{data_ref, DataDir};
use crate::models::bert::{self, cosine, file_params, CandleMiniLm};
use crate::models::count::thousands;
use crate::report::{col, Format, Report, Table, Value};

/// Experiment `minilm_embeddings`, registered in [`super::all`].
pub struct MinilmEmbeddings;

impl Experiment for MinilmEmbeddings {
    const NAME: &'static str = "minilm_embeddings";
    const CHAPTER: &'static str = "ch11";
    const TITLE: &'static str =
        "all-MiniLM-L6-v2 in candle: configuration, parameters, WordPiece tokens, and cosine similarities of paraphrases";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

// ANCHOR: triples
/// Sentence triples: an anchor, a paraphrase of it (other words, same meaning), and an
/// unrelated sentence.
pub const TRIPLES: [[&str; 3]; 5] = [
    [
        "A man is playing a guitar.",
        "Someone is strumming a guitar.",
        "The stock market fell sharply today.",
    ],
    [
        "The cat sleeps on the sofa.",
        "A kitten is napping on the couch.",
        "Interest rates will rise next year.",
    ],
    [
        "How do I reset my password?",
        "What are the steps to change my password?",
        "The train to Paris leaves at noon.",
    ],
    [
        "The children are playing football in the park.",
        "Kids are kicking a ball around on the grass.",
        "She baked bread for the neighbours.",
    ],
    [
        "It is raining heavily in the city.",
        "There is a downpour downtown.",
        "He fixed the flat tyre of his bicycle.",
    ],
];
// ANCHOR_END: triples

/// Sentences whose WordPiece tokens the report lists.
pub const TOKEN_EXAMPLES: [&str; 3] = [
    "Transformers learn embeddings.",
    "The cat sleeps on the sofa.",
    "Unbelievably, tokenization splits rare words!",
];

/// What to run (both presets are the same).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The sentence triples (anchor, paraphrase, unrelated).
    pub triples: Vec<[String; 3]>,
    /// The sentences whose tokens are listed.
    pub token_examples: Vec<String>,
}

impl Preset for Config {
    fn full() -> Self {
        Config {
            triples: TRIPLES
                .iter()
                .map(|t| t.map(str::to_string))
                .collect(),
            token_examples: TOKEN_EXAMPLES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The same: the experiment takes a second.
    fn quick() -> Self {
        Self::full()
    }
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    r.data = [
        bert::WEIGHTS,
        bert::CONFIG,
        bert::TOKENIZER,
        bert::SENTENCE_CONFIG,
    ]
    .into_iter()
    .map(data_ref)
    .collect();
    let model = CandleMiniLm::load(dir)?;
    let c = &model.config;
    let p = c.params();
    let file = file_params(&dir.verified(bert::WEIGHTS)?)?;
    if file.f32_values != p.total {
        bail!(
            "{}: {} parameters in the file, {} counted from the config",
            bert::WEIGHTS,
            file.f32_values,
            p.total
        );
    }

    // The configuration, as facts the prose quotes.
    r.fact("layers", c.num_hidden_layers as f64, Format::Int);
    r.fact("hidden", c.hidden_size as f64, Format::Int);
    r.fact("heads", c.num_attention_heads as f64, Format::Int);
    r.fact("head_size", c.head_size() as f64, Format::Int);
    r.fact("ffn", c.intermediate_size as f64, Format::Int);
    r.fact("vocab", thousands(c.vocab_size), Format::Int);
    r.fact("positions", c.max_position_embeddings as f64, Format::Int);
    r.fact("max_len", model.tokenizer.max_len() as f64, Format::Int);
    // Counts as text: the report keeps six significant digits of a number.
    r.fact("params_total", thousands(p.total), Format::Int);
    r.fact("params_millions", p.total as f64 / 1e6, Format::Fixed(1));
    r.fact("params_file", thousands(file.f32_values), Format::Int);
    r.fact("tensors_file", file.tensors as f64, Format::Int);
    r.fact(
        "embedding_share",
        p.embeddings as f64 / p.total as f64,
        Format::Percent(0),
    );
    let count = |part: &str, n: usize| {
        vec![
            Value::from(part),
            Value::from(thousands(n)),
            (n as f64 / p.total as f64).into(),
        ]
    };
    r.tables.push(Table {
        name: "params".into(),
        caption: format!(
            "Parameters of all-MiniLM-L6-v2, counted from its config.json ({} layers, \
             width {}, {} heads, feed-forward width {}, vocabulary {}, {} positions); \
             the total equals the number of f32 values in model.safetensors.",
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.intermediate_size,
            thousands(c.vocab_size),
            c.max_position_embeddings
        ),
        columns: vec![
            col("part", Format::Int),
            col("parameters", Format::Int),
            col("share", Format::Percent(1)),
        ],
        rows: vec![
            count("embeddings (word, position, segment, layer norm)", p.embeddings),
            count(
                &format!("{} encoder layers", c.num_hidden_layers),
                p.layers,
            ),
            count("  of which one layer", p.per_layer),
            count("pooler (unused by mean pooling)", p.pooler),
            count("total", p.total),
        ],
    });

    // WordPiece tokens of the examples.
    let examples: Vec<&str> = cfg.token_examples.iter().map(String::as_str).collect();
    let batch = model.tokenizer.encode(&examples)?;
    let rows = examples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = batch.tokens[i].len();
            let ids: Vec<String> = batch.ids[i * batch.cols..i * batch.cols + n]
                .iter()
                .map(u32::to_string)
                .collect();
            vec![
                Value::from(*s),
                Value::from(batch.tokens[i].join(" ")),
                Value::from(ids.join(" ")),
            ]
        })
        .collect();
    r.tables.push(Table {
        name: "tokens".into(),
        caption: "Sentences as the model's WordPiece tokenizer splits them: lower-cased, \
                  punctuation split off, rare words cut into pieces (a piece that \
                  continues a word starts with ##), between [CLS] and [SEP]; and the \
                  token ids, which are line numbers in vocab.txt (from 0)."
            .into(),
        columns: vec![
            col("sentence", Format::Int),
            col("tokens", Format::Int),
            col("ids", Format::Int),
        ],
        rows,
    });

    // Cosine similarities of the triples, all sentences in one padded batch.
    let flat: Vec<&str> = cfg
        .triples
        .iter()
        .flat_map(|t| t.iter().map(String::as_str))
        .collect();
    let emb = model.embed(&flat)?;
    let mut rows = vec![];
    let mut margins = vec![];
    for (k, t) in cfg.triples.iter().enumerate() {
        let (a, para, other) = (&emb[3 * k], &emb[3 * k + 1], &emb[3 * k + 2]);
        // Kept to three decimals (as printed): the last bits of an f32 forward pass
        // depend on how the matrix products split their sums over threads, and the
        // report's fingerprint must not.
        let milli = |x: f32| (x as f64 * 1000.0).round() / 1000.0;
        let (cp, co) = (milli(cosine(a, para)), milli(cosine(a, other)));
        margins.push(cp - co);
        rows.push(vec![
            Value::from(t[0].as_str()),
            Value::from(t[1].as_str()),
            Value::from(t[2].as_str()),
            cp.into(),
            co.into(),
        ]);
    }
    let min_margin = margins.iter().cloned().fold(f64::INFINITY, f64::min);
    r.fact("min_margin", min_margin, Format::Fixed(2));
    r.fact("dim", emb[0].len() as f64, Format::Int);
    r.tables.push(Table {
        name: "triples".into(),
        caption: "Cosine similarity of each anchor to its paraphrase and to an unrelated \
                  sentence (sentence embeddings: mean of the last hidden states over real \
                  tokens, L2-normalised)."
            .into(),
        columns: vec![
            col("anchor", Format::Int),
            col("paraphrase", Format::Int),
            col("unrelated", Format::Int),
            col("cos(anchor, paraphrase)", Format::Fixed(3)),
            col("cos(anchor, unrelated)", Format::Fixed(3)),
        ],
        rows,
    });
    Ok(())
}
