//! Experiment `minilm_scratch`: BERT's encoder from scratch ([`ScratchMiniLm`], six
//! post-LN encoder blocks of this chapter) against candle-transformers' `BertModel`
//! ([`CandleMiniLm`]) on the same pre-trained weights: the largest difference of their
//! hidden states and of their sentence embeddings on real sentences padded to a common
//! length, and the attention weights of one head on one sentence.

use anyhow::Result;
use serde::Serialize;

use super::minilm_embeddings::{TOKEN_EXAMPLES, TRIPLES};
use super::{Experiment, Preset};
use crate::data::{data_ref, DataDir};
use crate::models::bert::{CandleMiniLm, CONFIG, TOKENIZER, WEIGHTS};
use crate::nn::candle_twin::to_array_f32;
use crate::report::{Figure, Format, Plot, Report};
use crate::transformer::bert::ScratchMiniLm;

/// Experiment `minilm_scratch`, registered in [`super::all`].
pub struct MinilmScratch;

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The layer and head whose attention weights are drawn.
    pub layer: usize,
    /// The head.
    pub head: usize,
}

impl Preset for Config {
    fn full() -> Self {
        Config { layer: 2, head: 0 }
    }
}

/// The sentences compared: the section's triples and token examples, one batch.
pub fn sentences() -> Vec<&'static str> {
    TRIPLES
        .iter()
        .flatten()
        .chain(TOKEN_EXAMPLES.iter())
        .copied()
        .collect()
}

/// The largest absolute differences between the two encoders on `sentences` (one
/// padded batch): `(hidden states, embeddings)`.
pub fn max_differences(
    scratch: &mut ScratchMiniLm,
    candle: &CandleMiniLm,
    sentences: &[&str],
) -> Result<(f64, f64)> {
    let batch = candle.tokenizer.encode(sentences)?;
    let a = scratch.hidden_states(&batch)?;
    let b = to_array_f32(&candle.hidden_states(&batch)?)?;
    anyhow::ensure!(a.shape() == b.shape(), "{:?} vs {:?}", a.shape(), b.shape());
    let hidden = a
        .iter()
        .zip(b.iter())
        .fold(0.0f64, |m, (x, y)| m.max(f64::from((x - y).abs())));
    let ea = scratch.embed(sentences)?;
    let eb = candle.embed(sentences)?;
    let emb = ea
        .iter()
        .flatten()
        .zip(eb.iter().flatten())
        .fold(0.0f64, |m, (x, y)| m.max(f64::from((x - y).abs())));
    Ok((hidden, emb))
}

impl Experiment for MinilmScratch {
    const NAME: &'static str = "minilm_scratch";
    const CHAPTER: &'static str = "ch11";
    const TITLE: &'static str =
        "BERT's encoder from scratch against candle-transformers on all-MiniLM-L6-v2";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        r.data = [CONFIG, TOKENIZER, WEIGHTS].into_iter().map(data_ref).collect();
        let spinner = crate::progress::spinner("minilm_scratch");
        spinner.set_message("loading both encoders");
        let candle = CandleMiniLm::load(dir)?;
        let mut scratch = ScratchMiniLm::load(dir)?;
        spinner.set_message("comparing");
        let text = sentences();
        let (hidden, emb) = max_differences(&mut scratch, &candle, &text)?;
        let batch = candle.tokenizer.encode(&text)?;
        r.fact("sentences", text.len() as f64, Format::Int);
        r.fact("tokens", batch.cols as f64, Format::Int);
        r.fact("max_diff_hidden", hidden, Format::Sci(1));
        r.fact("max_diff_embedding", emb, Format::Sci(1));
        // the attention of one head on one sentence
        let sentence = TOKEN_EXAMPLES[1];
        let one = candle.tokenizer.encode(&[sentence])?;
        scratch.hidden_states(&one)?;
        let w = scratch.attention_weights()[cfg.layer]
            .ok_or_else(|| anyhow::anyhow!("no attention weights"))?
            .clone();
        let t = one.cols;
        let tokens = one.tokens[0].clone();
        spinner.finish_and_clear();
        r.fact("attention_sentence", sentence.to_string(), Format::Int);
        r.figures.push(Figure {
            name: "attention".into(),
            title: format!(
                "all-MiniLM-L6-v2 from scratch: layer {}, head {}",
                cfg.layer + 1,
                cfg.head
            ),
            plot: Plot::Heatmap {
                x_label: "key token".into(),
                y_label: "query token".into(),
                row_labels: tokens.clone(),
                col_labels: tokens,
                values: (0..t)
                    .map(|i| (0..t).map(|j| f64::from(w[[0, cfg.head, i, j]])).collect())
                    .collect(),
                log_shade: false,
                decimals: 2,
            },
        });
        r.fact("attention_layer", (cfg.layer + 1) as f64, Format::Int);
        r.fact("attention_head", cfg.head as f64, Format::Int);
        Ok(())
    }
}
