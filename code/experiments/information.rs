//! Experiment `information`: entropy, cross-entropy and divergences on textbook cases and
//! on real text.
//!
//! * The binary entropy curve, with the cross-entropy of coding Bernoulli(p) with a
//!   fixed Bernoulli(q): `H(p, q) ≥ H(p)`, touching at `p = q` (Gibbs' inequality).
//! * `KL(p‖q)` and `KL(q‖p)` between `N(0, 1)` and `N(0, σ²)` as `σ` moves, computed on
//!   a discretised grid and compared with the closed form.
//! * A table of entropy, cross-entropy, KL and JS for named pairs of distributions,
//!   including the infinite cases.
//! * Tiny Shakespeare: entropy of characters in bits, conditional entropy given the
//!   previous one or two characters, held-out cross-entropy of smoothed n-gram models,
//!   and the information gain of decision-tree questions about the previous character.
//!
//! Everything here is exact counting on a fixed corpus: there is no randomness, so the
//! quick and full presets are the same.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{Experiment, Preset};
use crate::data::{self, DataDir};
use crate::info::{self, to_bits};
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};

/// Experiment `information`, registered in [`super::all`].
pub struct Information;

impl Experiment for Information {
    const NAME: &'static str = "information";
    const CHAPTER: &'static str = "ch01";
    const TITLE: &'static str = "Entropy, cross-entropy and divergences";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// Configuration. One preset: the experiment is exact and takes well under a second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Says that quick and full are the same.
    pub preset: String,
    /// The corpus (a catalog file).
    pub corpus: String,
    /// Fraction of the corpus, at its end, held out for the cross-entropy of n-gram
    /// models fitted on the rest.
    pub held_out_fraction: f64,
    /// Add-`alpha` smoothing of the n-gram models.
    pub smoothing_alpha: f64,
    /// The fixed `q` of the Bernoulli cross-entropy curve.
    pub bernoulli_q: f64,
    /// Points on the Bernoulli curves.
    pub bernoulli_points: usize,
    /// Range of `σ` for the Gaussian KL curves (log-spaced).
    pub sigma_min: f64,
    /// Upper end of the `σ` range.
    pub sigma_max: f64,
    /// Number of `σ` values.
    pub sigma_points: usize,
    /// The Gaussians are discretised on `[-grid_half_width, grid_half_width]`.
    pub grid_half_width: f64,
    /// Number of grid cells.
    pub grid_cells: usize,
}

impl Config {
    /// The single preset.
    pub fn exact() -> Self {
        Config {
            preset: "exact: quick and full are the same".into(),
            corpus: "tinyshakespeare.txt".into(),
            held_out_fraction: 0.1,
            smoothing_alpha: 0.1,
            bernoulli_q: 0.25,
            bernoulli_points: 201,
            sigma_min: 0.4,
            sigma_max: 2.5,
            sigma_points: 61,
            grid_half_width: 14.0,
            grid_cells: 7000,
        }
    }
}

impl Preset for Config {
    /// Same as [`Config::exact`].
    fn quick() -> Self {
        Self::exact()
    }

    /// Same as [`Config::exact`].
    fn full() -> Self {
        Self::exact()
    }
}

/// A number, or the text `∞` (JSON has no infinity).
fn num(x: f64) -> Value {
    if x.is_infinite() {
        Value::Text(if x > 0.0 { "∞" } else { "-∞" }.into())
    } else {
        Value::Num(x)
    }
}

/// Named pairs of distributions for the divergence table.
pub fn named_pairs() -> Vec<(&'static str, Vec<f64>, Vec<f64>)> {
    vec![
        ("identical", vec![0.2, 0.3, 0.5], vec![0.2, 0.3, 0.5]),
        ("fair vs biased coin", vec![0.5, 0.5], vec![0.9, 0.1]),
        (
            "fair vs loaded die",
            vec![1.0 / 6.0; 6],
            vec![0.5, 0.1, 0.1, 0.1, 0.1, 0.1],
        ),
        (
            "peaked vs uniform",
            vec![0.97, 0.01, 0.01, 0.01],
            vec![0.25; 4],
        ),
        (
            "q misses an outcome",
            vec![0.5, 0.3, 0.2],
            vec![0.6, 0.4, 0.0],
        ),
        ("disjoint supports", vec![1.0, 0.0], vec![0.0, 1.0]),
    ]
}

/// Characters of the corpus as ids `0..vocab` (sorted by byte), with the vocabulary.
pub fn char_ids(text: &str) -> (Vec<usize>, Vec<u8>) {
    let mut seen = [false; 256];
    for &b in text.as_bytes() {
        seen[b as usize] = true;
    }
    let vocab: Vec<u8> = (0..=255u8).filter(|&b| seen[b as usize]).collect();
    let mut id = [0usize; 256];
    for (i, &b) in vocab.iter().enumerate() {
        id[b as usize] = i;
    }
    (text.bytes().map(|b| id[b as usize]).collect(), vocab)
}

/// Counts of `order`-grams: index `ctx * v + c`, where `ctx` encodes the previous
/// `order − 1` characters in base `v`.
fn ngram_counts(ids: &[usize], v: usize, order: usize) -> Vec<u64> {
    let mut counts = vec![0u64; v.pow(order as u32)];
    for w in ids.windows(order) {
        let idx = w.iter().fold(0, |acc, &c| acc * v + c);
        counts[idx] += 1;
    }
    counts
}

/// The empirical joint distribution of (context, next character) as rows of contexts.
fn joint_of(counts: &[u64], v: usize) -> Vec<Vec<f64>> {
    let total: u64 = counts.iter().sum();
    counts
        .chunks(v)
        .map(|r| r.iter().map(|&c| c as f64 / total as f64).collect())
        .collect()
}

/// Plug-in conditional entropy `H(next | previous order−1 characters)` in nats.
pub fn ngram_entropy(ids: &[usize], v: usize, order: usize) -> f64 {
    let joint = joint_of(&ngram_counts(ids, v, order), v);
    if order == 1 {
        info::entropy(&joint[0])
    } else {
        info::conditional_entropy(&joint)
    }
}

/// Held-out cross-entropy in nats per character of an add-`alpha` smoothed n-gram model
/// fitted on `train`: `−(1/N) Σ ln P(c | context)` over the test characters.
pub fn ngram_cross_entropy(
    train: &[usize],
    test: &[usize],
    v: usize,
    order: usize,
    alpha: f64,
) -> f64 {
    let counts = ngram_counts(train, v, order);
    let ctx_totals: Vec<u64> = counts.chunks(v).map(|r| r.iter().sum()).collect();
    let mut total = 0.0;
    let windows = test.windows(order);
    let n = windows.len();
    for w in windows {
        let ctx = w[..order - 1].iter().fold(0, |acc, &c| acc * v + c);
        let c = counts[ctx * v + w[order - 1]] as f64;
        let p = (c + alpha) / (ctx_totals[ctx] as f64 + alpha * v as f64);
        total -= p.ln();
    }
    total / n as f64
}

/// A yes/no question about a character, with its name.
pub type Question = (&'static str, fn(u8) -> bool);

/// Yes/no questions about the previous character, for the information-gain table.
pub fn split_questions() -> Vec<Question> {
    vec![
        ("is a space", |b| b == b' '),
        ("is a newline", |b| b == b'\n'),
        ("is a vowel", |b| b"aeiouAEIOU".contains(&b)),
        ("is a letter", |b| b.is_ascii_alphabetic()),
        ("is upper case", |b| b.is_ascii_uppercase()),
        ("is punctuation", |b| b.is_ascii_punctuation()),
    ]
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {

    // Binary entropy and the cross-entropy against a fixed q.
    let q = cfg.bernoulli_q;
    let ps: Vec<f64> = (0..cfg.bernoulli_points)
        .map(|i| i as f64 / (cfg.bernoulli_points - 1) as f64)
        .collect();
    let h: Vec<f64> = ps
        .iter()
        .map(|&p| to_bits(info::bernoulli_entropy(p)))
        .collect();
    let hq: Vec<f64> = ps
        .iter()
        .map(|&p| to_bits(info::cross_entropy(&[p, 1.0 - p], &[q, 1.0 - q])))
        .collect();
    r.fact(
        "bernoulli_max_bits",
        h.iter().copied().fold(0.0, f64::max),
        Format::Fixed(4),
    );
    r.figures.push(Figure {
        name: "bernoulli".into(),
        title: format!("Entropy of a coin, and its cross-entropy with q = {q}"),
        plot: Plot::Lines {
            x_label: "p = P(heads)".into(),
            y_label: "bits".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![
                Series {
                    name: "H(p)".into(),
                    x: ps.clone(),
                    y: h,
                    band: None,
                },
                Series {
                    name: format!("H(p, q), q = {q}"),
                    x: ps,
                    y: hq,
                    band: None,
                },
            ],
        },
    });

    // KL in both directions between N(0, 1) and N(0, σ²).
    let (lo, hi) = (-cfg.grid_half_width, cfg.grid_half_width);
    let p = info::discretize(|x| info::gaussian_pdf(x, 0.0, 1.0), lo, hi, cfg.grid_cells);
    let sigmas: Vec<f64> = (0..cfg.sigma_points)
        .map(|i| {
            let t = i as f64 / (cfg.sigma_points - 1) as f64;
            (cfg.sigma_min.ln() + t * (cfg.sigma_max / cfg.sigma_min).ln()).exp()
        })
        .collect();
    let (mut kl_pq, mut kl_qp, mut js) = (vec![], vec![], vec![]);
    let mut max_err: f64 = 0.0;
    for &s in &sigmas {
        let qd =
            info::discretize(|x| info::gaussian_pdf(x, 0.0, s), lo, hi, cfg.grid_cells);
        let (a, b) = (info::kl_divergence(&p, &qd), info::kl_divergence(&qd, &p));
        max_err = max_err
            .max((a - info::gaussian_kl(0.0, 1.0, 0.0, s)).abs())
            .max((b - info::gaussian_kl(0.0, s, 0.0, 1.0)).abs());
        kl_pq.push(a);
        kl_qp.push(b);
        js.push(info::js_divergence(&p, &qd));
    }
    r.fact("gaussian_kl_max_error", max_err, Format::Sci(1));
    let at = |target: f64| {
        sigmas
            .iter()
            .position(|&s| (s - target).abs() < 1e-9)
            .unwrap_or_else(|| {
                let d = |s: &f64| (s - target).abs();
                (0..sigmas.len())
                    .min_by(|&i, &j| d(&sigmas[i]).total_cmp(&d(&sigmas[j])))
                    .expect("sigma grid is not empty")
            })
    };
    let narrow = at(cfg.sigma_min);
    r.fact("narrow_sigma", sigmas[narrow], Format::Fixed(1));
    r.fact("narrow_kl_pq", kl_pq[narrow], Format::Fixed(2));
    r.fact("narrow_kl_qp", kl_qp[narrow], Format::Fixed(2));
    let series = |name: &str, y: Vec<f64>| Series {
        name: name.into(),
        x: sigmas.clone(),
        y,
        band: None,
    };
    r.figures.push(Figure {
        name: "kl_asymmetry".into(),
        title: "p = N(0, 1), q = N(0, σ²): KL is not symmetric".into(),
        plot: Plot::Lines {
            x_label: "σ (standard deviation of q)".into(),
            y_label: "nats".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
            series: vec![
                series("KL(p‖q)", kl_pq),
                series("KL(q‖p)", kl_qp),
                series("JS(p, q)", js),
            ],
        },
    });

    // Named pairs.
    let rows = named_pairs()
        .into_iter()
        .map(|(name, p, q)| {
            vec![
                Value::from(name),
                num(info::entropy(&p)),
                num(info::entropy(&q)),
                num(info::cross_entropy(&p, &q)),
                num(info::kl_divergence(&p, &q)),
                num(info::kl_divergence(&q, &p)),
                num(info::js_divergence(&p, &q)),
            ]
        })
        .collect();
    let f4 = Format::Fixed(4);
    r.tables.push(Table {
        name: "named_pairs".into(),
        caption: "Entropy, cross-entropy and divergences of named pairs, in nats. \
                  ∞ marks a q that gives probability 0 to an outcome p can produce."
            .into(),
        columns: vec![
            col("pair", f4),
            col("H(p)", f4),
            col("H(q)", f4),
            col("H(p, q)", f4),
            col("KL(p‖q)", f4),
            col("KL(q‖p)", f4),
            col("JS(p, q)", f4),
        ],
        rows,
    });

    // Tiny Shakespeare.
    let text = data::read_corpus(&dir.verified(&cfg.corpus)?)?;
    r.data.push(data::data_ref(&cfg.corpus));
    let (ids, vocab) = char_ids(&text);
    let v = vocab.len();
    r.fact("corpus_chars", ids.len() as f64, Format::Int);
    r.fact("vocab_size", v as f64, Format::Int);
    r.fact("max_bits", (v as f64).log2(), Format::Fixed(2));
    let split = ids.len() - (cfg.held_out_fraction * ids.len() as f64) as usize;
    let (train, test) = ids.split_at(split);
    let mut rows = vec![];
    for (order, name) in [(1, "unigram"), (2, "bigram"), (3, "trigram")] {
        let h_all = to_bits(ngram_entropy(&ids, v, order));
        let h_train = to_bits(ngram_entropy(train, v, order));
        let ce = to_bits(ngram_cross_entropy(
            train,
            test,
            v,
            order,
            cfg.smoothing_alpha,
        ));
        r.fact(&format!("{name}_bits"), h_all, Format::Fixed(3));
        r.fact(&format!("{name}_heldout_bits"), ce, Format::Fixed(3));
        let context = match order {
            1 => "none".to_string(),
            o => format!("previous {}", o - 1),
        };
        rows.push(vec![
            Value::from(name),
            Value::from(context),
            Value::Num(h_all),
            Value::Num(h_train),
            Value::Num(ce),
        ]);
    }
    let f3 = Format::Fixed(3);
    r.tables.push(Table {
        name: "shakespeare_entropy".into(),
        caption: format!(
            "Tiny Shakespeare, bits per character: plug-in (conditional) entropy on the \
             whole corpus and on the first {:.0} %, and the cross-entropy on the last \
             {:.0} % of an n-gram model fitted on the first part (add-{} smoothing).",
            100.0 * (1.0 - cfg.held_out_fraction),
            100.0 * cfg.held_out_fraction,
            cfg.smoothing_alpha
        ),
        columns: vec![
            col("model", f3),
            col("context", f3),
            col("entropy, all text", f3),
            col("entropy, training part", f3),
            col("held-out cross-entropy", f3),
        ],
        rows,
    });

    // Information gain of questions about the previous character, the label being the
    // next character.
    let labels = &ids[1..];
    let prev = &ids[..ids.len() - 1];
    let h_next = to_bits(info::entropy(&joint_of(&ngram_counts(labels, v, 1), v)[0]));
    let mut rows = vec![];
    let mut best_binary: f64 = 0.0;
    for (name, question) in split_questions() {
        let branch: Vec<usize> =
            prev.iter().map(|&c| question(vocab[c]) as usize).collect();
        let share = branch.iter().sum::<usize>() as f64 / branch.len() as f64;
        let gain = to_bits(info::information_gain(labels, &branch, v, 2));
        best_binary = best_binary.max(gain);
        rows.push(vec![
            Value::from(format!("previous character {name}")),
            Value::Num(share),
            Value::Num(gain),
            Value::Num(gain / h_next),
        ]);
    }
    let full = to_bits(info::information_gain(labels, prev, v, v));
    rows.push(vec![
        Value::from(format!("the whole previous character ({v}-way split)")),
        Value::from("–"),
        Value::Num(full),
        Value::Num(full / h_next),
    ]);
    r.fact("best_binary_gain_bits", best_binary, Format::Fixed(3));
    r.fact("full_split_gain_bits", full, Format::Fixed(3));
    r.tables.push(Table {
        name: "split_gain".into(),
        caption:
            "Information gain about the next character of Tiny Shakespeare, in bits, \
                  of one question about the previous character (a decision-tree split); \
                  \"yes share\" is the fraction of positions where the answer is yes."
                .into(),
        columns: vec![
            col("split", f3),
            col("yes share", Format::Percent(1)),
            col("information gain (bits)", f3),
            col("share of H(next)", Format::Percent(1)),
        ],
        rows,
    });
    Ok(())
}
