//! Labeled sentences for text classification: Pang & Lee's sentence polarity dataset
//! v1.0 (snippets of Rotten Tomatoes reviews, each labeled positive or negative with its
//! review), in the balanced sample of 2,000 + 2,000 sentences that the Pattern library
//! ships as a test corpus (`dlbook data fetch sentence_polarity`).
//!
//! The file is CSV: one record per sentence, `"label","text"`, the label `1` (positive)
//! or `-1` (negative); quotes inside a field are doubled, and a text ends with a space
//! and a newline inside its quotes (so one record spans two lines).

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::DataDir;

/// The catalog path of the sentences.
pub const PATH: &str = "sentence_polarity/rt-polarity-4000.csv";

/// The class names, by label: 0 negative, 1 positive.
pub const CLASSES: [&str; 2] = ["negative", "positive"];

/// Sentences and their labels, checked to agree in number, be non-empty and lie in
/// `0..n_classes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabeledText {
    /// The sentences.
    pub texts: Vec<String>,
    /// One label per sentence, in `0..n_classes`.
    pub labels: Vec<usize>,
    /// The number of classes.
    pub n_classes: usize,
}

impl LabeledText {
    /// Checks and wraps sentences and labels: an error (never a panic) for an empty set,
    /// unequal lengths, an empty sentence or a label outside `0..n_classes`, naming the
    /// first offending row.
    pub fn new(texts: Vec<String>, labels: Vec<usize>, n_classes: usize) -> Result<Self> {
        if texts.is_empty() {
            bail!("an empty dataset: no sentences to train or test on");
        }
        if texts.len() != labels.len() {
            bail!("{} sentences but {} labels", texts.len(), labels.len());
        }
        if n_classes < 2 {
            bail!("{n_classes} class(es): a classifier needs at least 2");
        }
        for (i, (t, &l)) in texts.iter().zip(&labels).enumerate() {
            if l >= n_classes {
                bail!("row {i}: label {l} is out of range for {n_classes} classes (0..{n_classes})");
            }
            if t.trim().is_empty() {
                bail!("row {i}: an empty sentence");
            }
        }
        Ok(LabeledText {
            texts,
            labels,
            n_classes,
        })
    }

    /// Number of sentences.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Always false: [`LabeledText::new`] rejects an empty set.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Sentences per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.n_classes];
        for &l in &self.labels {
            c[l] += 1;
        }
        c
    }

    /// The rows `idx`, in that order.
    ///
    /// # Panics
    /// If an index is out of range, or `idx` is empty.
    pub fn subset(&self, idx: &[usize]) -> LabeledText {
        assert!(!idx.is_empty(), "LabeledText::subset: no rows");
        LabeledText {
            texts: idx.iter().map(|&i| self.texts[i].clone()).collect(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            n_classes: self.n_classes,
        }
    }

    /// A fixed, seeded, stratified split: `train_per_class` sentences of every class for
    /// training and `test_per_class` others for testing, drawn without replacement by a
    /// ChaCha8 shuffle of each class seeded with `seed`; both lists of indices come
    /// back shuffled (classes interleaved). An error if a class has too few sentences.
    pub fn stratified_split(
        &self,
        train_per_class: usize,
        test_per_class: usize,
        seed: u64,
    ) -> Result<(Vec<usize>, Vec<usize>)> {
        if train_per_class == 0 || test_per_class == 0 {
            bail!("a split needs at least one training and one test sentence per class");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut train, mut test) = (vec![], vec![]);
        for c in 0..self.n_classes {
            let mut rows: Vec<usize> =
                (0..self.len()).filter(|&i| self.labels[i] == c).collect();
            if rows.len() < train_per_class + test_per_class {
                bail!(
                    "class {c} has {} sentences: too few for {train_per_class} training and \
                     {test_per_class} test sentences",
                    rows.len()
                );
            }
            rows.shuffle(&mut rng);
            train.extend_from_slice(&rows[..train_per_class]);
            test.extend_from_slice(
                &rows[train_per_class..train_per_class + test_per_class],
            );
        }
        train.shuffle(&mut rng);
        test.shuffle(&mut rng);
        Ok((train, test))
    }
}

/// Reads the fetched sentences (sha256 checked first: a missing, truncated or altered
/// file is an error that says `run dlbook data fetch sentence_polarity`).
pub fn read(data: &DataDir) -> Result<LabeledText> {
    let path = data.verified(PATH)?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("parsing {}", path.display()))
}

// ANCHOR: parse
/// Parses the sentence-polarity CSV: records `"label","text"` (a leading byte-order mark
/// allowed), label `1` positive and `-1` negative, quotes doubled inside fields, records
/// spanning lines. Texts are trimmed. A record that is not two quoted fields, or whose
/// label is neither `1` nor `-1`, is an error naming its line.
pub fn parse(text: &str) -> Result<LabeledText> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (mut texts, mut labels) = (vec![], vec![]);
    let mut chars = text.chars().peekable();
    let mut line = 1;
    loop {
        // Skip blank lines between records.
        while chars.peek().is_some_and(|c| *c == '\n' || *c == '\r') {
            if chars.next() == Some('\n') {
                line += 1;
            }
        }
        if chars.peek().is_none() {
            break;
        }
        let start = line;
        let mut fields = vec![];
        loop {
            if chars.next() != Some('"') {
                bail!("line {start}: a field must start with a double quote");
            }
            let mut field = String::new();
            loop {
                match chars.next() {
                    None => bail!("line {start}: a quoted field is never closed"),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => {
                        if c == '\n' {
                            line += 1;
                        }
                        field.push(c);
                    }
                }
            }
            fields.push(field);
            match chars.next() {
                Some(',') => continue,
                Some('\r') if chars.peek() == Some(&'\n') => {
                    chars.next();
                    line += 1;
                    break;
                }
                Some('\n') => {
                    line += 1;
                    break;
                }
                None => break,
                Some(c) => bail!("line {start}: `{c}` after a closing quote"),
            }
        }
        if fields.len() != 2 {
            bail!(
                "line {start}: {} field(s), expected 2 (label, text)",
                fields.len()
            );
        }
        let label = match fields[0].as_str() {
            "1" => 1,
            "-1" => 0,
            other => bail!("line {start}: label `{other}`, expected 1 or -1"),
        };
        labels.push(label);
        texts.push(fields[1].trim().to_string());
    }
    LabeledText::new(texts, labels, CLASSES.len())
}
// ANCHOR_END: parse
