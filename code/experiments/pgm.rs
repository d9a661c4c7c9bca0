//! Experiment `pgm`: hidden Markov models, Markov chains and Bayesian networks at work.
//!
//! * The dishonest casino: 300 rolls drawn from the two-state model, the posterior
//!   probability of the loaded die at every roll beside the true state, and the
//!   accuracy of Viterbi and posterior decoding.
//! * Tiny Shakespeare's letters (26 letters and a word break): a two-state HMM trained
//!   by Baum-Welch from several random starting models on the whole corpus; which
//!   letters each state emits more often, and whether its states alternate or persist.
//! * Markov chains: the total-variation distance to stationarity against steps, the
//!   gambler's ruin (fundamental matrix against simulation), and the character bigram
//!   chain of Tiny Shakespeare, whose entropy rate is chapter 1's conditional entropy.
//! * Bayesian networks: likelihood weighting's error against the number of samples on
//!   the alarm network, and CPTs of the Asia network recovered from samples of it.

use anyhow::Result;
use ndarray::array;
use rayon::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::information::{char_ids, ngram_entropy};
use super::{Experiment, Preset};
use crate::data::{self, DataDir};
use crate::info::to_bits;
use crate::pgm::bayesnet::{alarm, asia};
use crate::pgm::markov::{gamblers_ruin, simulate_absorption};
use crate::pgm::{BaumWelch, Hmm, MarkovChain};
use crate::progress;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};

/// Experiment `pgm`, registered in [`super::all`].
pub struct Pgm;

impl Experiment for Pgm {
    const NAME: &'static str = "pgm";
    const CHAPTER: &'static str = "ch12";
    const TITLE: &'static str = "Hidden Markov models, Markov chains and Bayesian networks";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// Configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Rolls of the casino example.
    pub casino_rolls: usize,
    /// Seed of the casino's rolls.
    pub casino_seed: u64,
    /// The corpus.
    pub corpus: String,
    /// Characters of the corpus used for the letter HMM, from its start; `None` for the
    /// whole corpus.
    pub letters_chars: Option<usize>,
    /// Seeds of the letter HMM's random starting models.
    pub seeds: Vec<u64>,
    /// Most Baum-Welch iterations.
    pub n_iter: usize,
    /// Small EM's random starts per fit (seed `s` of `seeds` uses seeds
    /// `s * small_em_starts ..`).
    pub small_em_starts: usize,
    /// Iterations of each of small EM's short runs.
    pub small_em_iter: usize,
    /// Probabilities of staying of the starting models with fixed transitions (random
    /// emissions, both states staying with `stay` and handing over with `1 - stay`); 0.5
    /// is uniform.
    pub start_stays: Vec<f64>,
    /// Baum-Welch stops when the log-likelihood gains less than this.
    pub tol: f64,
    /// Steps of the mixing curves.
    pub mixing_steps: usize,
    /// States of the gambler's ruin (0..=n).
    pub ruin_n: usize,
    /// Win probability of the gambler.
    pub ruin_p: f64,
    /// Simulated walks per starting state.
    pub ruin_walks: usize,
    /// Sample counts of the likelihood-weighting curve.
    pub lw_samples: Vec<usize>,
    /// Repetitions of each count (seeds 0..reps).
    pub lw_reps: usize,
    /// Sample sizes of the parameter-learning table.
    pub learn_samples: Vec<usize>,
    /// Dirichlet prior of the learned CPTs.
    pub learn_alpha: f64,
}

impl Preset for Config {
    /// Seconds: a prefix of the corpus, fewer seeds, samples and walks.
    fn quick() -> Self {
        Config {
            letters_chars: Some(20_000),
            n_iter: 300,
            ruin_walks: 20_000,
            lw_reps: 5,
            learn_samples: vec![1_000, 10_000],
            ..Self::full()
        }
    }

    /// The preset behind the book's numbers.
    fn full() -> Self {
        Config {
            casino_rolls: 300,
            casino_seed: 3,
            corpus: "tinyshakespeare.txt".into(),
            letters_chars: None,
            seeds: (0..12).collect(),
            n_iter: 400,
            small_em_starts: 4,
            small_em_iter: 10,
            start_stays: vec![0.5, 0.6],
            tol: 1e-3,
            mixing_steps: 40,
            ruin_n: 10,
            ruin_p: 0.45,
            ruin_walks: 50_000,
            lw_samples: vec![100, 300, 1_000, 3_000, 10_000, 30_000, 100_000],
            lw_reps: 20,
            learn_samples: vec![100, 1_000, 10_000, 100_000],
            learn_alpha: 1.0,
        }
    }
}

// ANCHOR: casino
/// The dishonest casino: a fair die (state 0) and a loaded one (state 1) that rolls a
/// six half the time; the croupier switches with probability 0.05 and back with 0.1.
pub fn casino() -> Hmm {
    Hmm::new(
        vec![0.5, 0.5],
        vec![vec![0.95, 0.05], vec![0.1, 0.9]],
        vec![vec![1.0 / 6.0; 6], vec![0.1, 0.1, 0.1, 0.1, 0.1, 0.5]],
    )
    .expect("the casino's rows are distributions")
}
// ANCHOR_END: casino

/// The 27 symbols of the letter HMM: `a`..`z`, then `_` for a word break.
pub const LETTERS: &str = "abcdefghijklmnopqrstuvwxyz_";

/// A text as letter symbols: letters lower-cased to 0..26, every run of other
/// characters one word break (26).
pub fn letter_symbols(text: &str) -> Vec<usize> {
    let mut out = Vec::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphabetic() {
            out.push((b.to_ascii_lowercase() - b'a') as usize);
        } else if out.last().is_some_and(|&s| s != 26) {
            out.push(26);
        }
    }
    out
}

/// The vowels, as symbols.
pub fn vowels() -> Vec<usize> {
    b"aeiou".iter().map(|&b| (b - b'a') as usize).collect()
}

/// Which state of a two-state letter HMM is the vowel state (the one that emits `e`
/// more often), and for each letter whether the vowel state emits it more often than
/// the other state does.
pub fn vowel_split(hmm: &Hmm) -> (usize, Vec<bool>) {
    let b = hmm.emit();
    let e = 4;
    let v = if b[[0, e]] > b[[1, e]] { 0 } else { 1 };
    let c = 1 - v;
    (v, (0..26).map(|k| b[[v, k]] > b[[c, k]]).collect())
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    r.seeds = cfg.seeds.clone();

    // The casino.
    let hmm = casino();
    let (states, rolls) =
        hmm.sample(cfg.casino_rolls, &mut ChaCha8Rng::seed_from_u64(cfg.casino_seed));
    let (gamma, _) = hmm.posteriors(&rolls);
    let (path, _) = hmm.viterbi(&rolls);
    let post = hmm.posterior_decode(&rolls);
    let acc = |p: &[usize]| {
        p.iter().zip(&states).filter(|(a, b)| a == b).count() as f64 / states.len() as f64
    };
    r.fact("casino_viterbi_accuracy", acc(&path), Format::Percent(1));
    r.fact("casino_posterior_accuracy", acc(&post), Format::Percent(1));
    r.fact(
        "casino_loaded_share",
        states.iter().sum::<usize>() as f64 / states.len() as f64,
        Format::Percent(1),
    );
    let x: Vec<f64> = (1..=rolls.len()).map(|t| t as f64).collect();
    r.figures.push(Figure {
        name: "casino".into(),
        title: "The dishonest casino: P(loaded die | all rolls) at every roll".into(),
        plot: Plot::Lines {
            x_label: "roll".into(),
            y_label: "probability".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![
                Series {
                    name: "posterior P(loaded)".into(),
                    x: x.clone(),
                    y: gamma.chunks(2).map(|g| g[1]).collect(),
                    band: None,
                },
                Series {
                    name: "true state (1 = loaded)".into(),
                    x,
                    y: states.iter().map(|&s| s as f64).collect(),
                    band: None,
                },
            ],
        },
    });

    // Letters of Tiny Shakespeare.
    let text = data::read_corpus(&dir.verified(&cfg.corpus)?)?;
    r.data.push(data::data_ref(&cfg.corpus));
    let end = cfg.letters_chars.map_or(text.len(), |n| text.len().min(n));
    let syms = letter_symbols(&text[..end]);
    r.fact("letters_symbols", syms.len() as f64, Format::Int);
    let seqs = vec![syms];
    let bar = progress::bar(cfg.seeds.len() as u64, "Baum-Welch on letters");
    // The starts are independent: one per core.
    let fits = cfg
        .seeds
        .par_iter()
        .map(|&seed| {
            let fit = BaumWelch {
                n_states: 2,
                n_symbols: 27,
                n_iter: cfg.n_iter,
                tol: cfg.tol,
                seed,
            }
            .fit(&seqs);
            bar.inc(1);
            fit.map(|f| (seed, f))
        })
        .collect::<Result<Vec<_>>>()?;
    bar.finish_and_clear();
    let mut rows = vec![];
    let mut best: Option<(f64, u64, Hmm)> = None;
    let mut found = 0;
    let mut random_starts = vec![];
    for (seed, fit) in fits {
        random_starts.push((split_and_stay(&fit.hmm), fit.log_likelihoods.len()));
        let (_, split) = vowel_split(&fit.hmm);
        let vs = vowels();
        let vowel_ok = vs.iter().filter(|&&k| split[k]).count();
        let consonant_ok = (0..26).filter(|k| !vs.contains(k) && !split[*k]).count();
        if vowel_ok == 5 && consonant_ok == 21 {
            found += 1;
        }
        // The likelihood of the final model (the history holds the ones before each
        // update).
        let ll = fit.hmm.log_likelihood(&seqs[0]) / seqs[0].len() as f64;
        let a = fit.hmm.trans();
        rows.push(vec![
            Value::Num(seed as f64),
            Value::Num(ll),
            Value::Num(fit.log_likelihoods.len() as f64),
            Value::Num(vowel_ok as f64),
            Value::Num(consonant_ok as f64),
            Value::Num(0.5 * (a[[0, 0]] + a[[1, 1]])),
        ]);
        if best.as_ref().is_none_or(|b| ll > b.0) {
            best = Some((ll, seed, fit.hmm));
        }
    }
    r.fact("letters_starts", cfg.seeds.len() as f64, Format::Int);
    r.fact("letters_split_starts", found as f64, Format::Int);
    r.tables.push(Table {
        name: "letters_seeds".into(),
        caption: format!(
            "Two-state HMM on the letters of Tiny Shakespeare, Baum-Welch from {} random \
             starting models (one per seed): final log-likelihood per symbol, iterations \
             (at most {}, stopping at a gain below {}), how many of the 5 vowels and 21 \
             consonants fall in their own state (the state that emits them more often), and \
             the mean probability of staying in the same state, (A00 + A11) / 2.",
            cfg.seeds.len(),
            cfg.n_iter,
            cfg.tol
        ),
        columns: vec![
            col("seed", Format::Int),
            col("log-likelihood per symbol (nats)", Format::Fixed(4)),
            col("iterations", Format::Int),
            col("vowels in the vowel state", Format::Int),
            col("consonants in the other state", Format::Int),
            col("P(stay)", Format::Fixed(3)),
        ],
        rows,
    });
    let (_, best_seed, fitted) = best.expect("at least one seed");
    let (v, _) = vowel_split(&fitted);
    let b = fitted.emit();
    let mut order: Vec<usize> = (0..27).collect();
    // Sorted by how strongly the vowel state prefers the symbol.
    order.sort_by(|&i, &j| {
        let ratio = |k: usize| b[[v, k]] / b[[1 - v, k]];
        ratio(j).total_cmp(&ratio(i))
    });
    let names: Vec<char> = LETTERS.chars().collect();
    r.tables.push(Table {
        name: "letters_emissions".into(),
        caption: format!(
            "Emission probabilities of the two states of the fit with the highest \
             likelihood (seed {best_seed}), symbols sorted by the ratio of the two."
        ),
        columns: vec![
            col("symbol", Format::Fixed(3)),
            col("P(symbol | vowel state)", Format::Fixed(3)),
            col("P(symbol | other state)", Format::Fixed(3)),
        ],
        rows: order
            .iter()
            .map(|&k| {
                vec![
                    Value::from(names[k].to_string().as_str()),
                    Value::Num(b[[v, k]]),
                    Value::Num(b[[1 - v, k]]),
                ]
            })
            .collect(),
    });

    letter_starts(cfg, &seqs, random_starts, r)?;

    // Mixing of two chains.
    let fast = MarkovChain::new(array![[0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.3, 0.3, 0.4]])?;
    let slow = MarkovChain::new(array![[0.95, 0.05, 0.0], [0.05, 0.9, 0.05], [0.0, 0.05, 0.95]])?;
    let mut series = vec![];
    for (name, c) in [("well-mixed chain", &fast), ("sticky chain", &slow)] {
        let pi = c.stationary_eigen()?;
        let (pw, _) = c.stationary_power(1e-13, 100_000)?;
        r.fact(
            &format!("{}_eigen_vs_power", name.split('-').next().unwrap_or(name).replace(' ', "_")),
            crate::pgm::markov::tv_distance(&pi, &pw),
            Format::Sci(1),
        );
        let tv = c.tv_curve(&array![1.0, 0.0, 0.0], &pi, cfg.mixing_steps);
        series.push(Series {
            name: name.into(),
            x: (0..tv.len()).map(|t| t as f64).collect(),
            y: tv.iter().map(|&d| d.max(1e-16)).collect(),
            band: None,
        });
    }
    r.figures.push(Figure {
        name: "mixing".into(),
        title: "Total-variation distance to stationarity, starting in state 0".into(),
        plot: Plot::Lines {
            x_label: "steps".into(),
            y_label: "TV distance".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Log,
            series,
        },
    });

    // The gambler's ruin.
    let ruin = gamblers_ruin(cfg.ruin_n, cfg.ruin_p);
    let a = ruin.absorption()?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut rows = vec![];
    let mut worst_rel: f64 = 0.0;
    for (row, &i) in a.transient.iter().enumerate() {
        let (steps, ends) =
            simulate_absorption(&ruin, &a.absorbing, i, cfg.ruin_walks, 100_000, &mut rng);
        worst_rel = worst_rel.max((steps - a.expected_steps[row]).abs() / a.expected_steps[row]);
        rows.push(vec![
            Value::Num(i as f64),
            Value::Num(a.expected_steps[row]),
            Value::Num(steps),
            Value::Num(a.probabilities[[row, 0]]),
            Value::Num(ends[0]),
        ]);
    }
    r.fact("ruin_worst_relative_error", worst_rel, Format::Percent(1));
    r.tables.push(Table {
        name: "ruin".into(),
        caption: format!(
            "Gambler's ruin on 0..{} with win probability {}: expected steps and ruin \
             probability from the fundamental matrix, against {} simulated walks from each start.",
            cfg.ruin_n, cfg.ruin_p, cfg.ruin_walks
        ),
        columns: vec![
            col("start", Format::Int),
            col("steps, N·1", Format::Fixed(2)),
            col("steps, simulated", Format::Fixed(2)),
            col("ruin, B", Format::Fixed(4)),
            col("ruin, simulated", Format::Fixed(4)),
        ],
        rows,
    });

    // The character bigram chain of Tiny Shakespeare.
    let (ids, vocab) = char_ids(&text);
    let chain = MarkovChain::from_sequence(&ids, vocab.len())?;
    let pi = chain.stationary_eigen()?;
    r.fact("text_entropy_rate_bits", to_bits(chain.entropy_rate(&pi)), Format::Fixed(4));
    r.fact(
        "text_conditional_entropy_bits",
        to_bits(ngram_entropy(&ids, vocab.len(), 2)),
        Format::Fixed(4),
    );

    // Likelihood weighting on the alarm network: P(Burglary | JohnCalls, MaryCalls).
    let net = alarm();
    let ev = [(net.index("JohnCalls")?, 1), (net.index("MaryCalls")?, 1)];
    let b = net.index("Burglary")?;
    let exact = net.query_elimination(b, &ev)[1];
    r.fact("alarm_exact", exact, Format::Fixed(4));
    let mut err = vec![];
    for &n in &cfg.lw_samples {
        let e: f64 = (0..cfg.lw_reps as u64)
            .map(|s| {
                let mut rng = ChaCha8Rng::seed_from_u64(s);
                (net.query_likelihood_weighting(b, &ev, n, &mut rng)[1] - exact).abs()
            })
            .sum::<f64>()
            / cfg.lw_reps as f64;
        err.push(e.max(1e-12));
    }
    r.figures.push(Figure {
        name: "likelihood_weighting".into(),
        title: format!(
            "Alarm network, P(Burglary | John and Mary call): mean absolute error of \
             likelihood weighting over {} runs",
            cfg.lw_reps
        ),
        plot: Plot::Lines {
            x_label: "samples".into(),
            y_label: "absolute error".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Log,
            series: vec![Series {
                name: "likelihood weighting".into(),
                x: cfg.lw_samples.iter().map(|&n| n as f64).collect(),
                y: err,
                band: None,
            }],
        },
    });

    // Learning Asia's CPTs from samples of it.
    let truth = asia();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let max_n = cfg.learn_samples.iter().copied().max().unwrap_or(0);
    let data: Vec<Vec<usize>> = (0..max_n).map(|_| truth.sample(&mut rng)).collect();
    let mut rows = vec![];
    for &n in &cfg.learn_samples {
        let learned = truth.fit_cpts(&data[..n], cfg.learn_alpha)?;
        let (max_err, mean_err) = cpt_errors(&truth, &learned);
        rows.push(vec![Value::Num(n as f64), Value::Num(mean_err), Value::Num(max_err)]);
    }
    r.tables.push(Table {
        name: "asia_learning".into(),
        caption: format!(
            "CPTs of the Asia network learned from samples of it (Dirichlet prior α = {}): \
             mean and largest absolute error over every CPT entry.",
            cfg.learn_alpha
        ),
        columns: vec![
            col("samples", Format::Int),
            col("mean |error|", Format::Fixed(4)),
            col("max |error|", Format::Fixed(4)),
        ],
        rows,
    });
    Ok(())
}

/// Largest and mean absolute difference between two networks' CPT entries.
pub fn cpt_errors(a: &crate::pgm::BayesNet, b: &crate::pgm::BayesNet) -> (f64, f64) {
    let diffs: Vec<f64> = a
        .cpts()
        .iter()
        .zip(b.cpts())
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .collect();
    let max = diffs.iter().copied().fold(0.0, f64::max);
    (max, diffs.iter().sum::<f64>() / diffs.len() as f64)
}

/// Whether a letter HMM puts all five vowels in one state and all 21 consonants in the
/// other, and its mean probability of staying, (A00 + A11) / 2.
fn split_and_stay(hmm: &Hmm) -> (bool, f64) {
    let (_, split) = vowel_split(hmm);
    let vs = vowels();
    let ok = (0..26).all(|k| split[k] == vs.contains(&k));
    let a = hmm.trans();
    (ok, 0.5 * (a[[0, 0]] + a[[1, 1]]))
}

/// A two-state letter model with the random emissions (and start) of seed `seed` and
/// fixed transitions: each state stays with probability `stay`.
fn fixed_transitions_start(seed: u64, stay: f64) -> Result<Hmm> {
    let random = Hmm::random(2, 27, &mut ChaCha8Rng::seed_from_u64(seed));
    let rows = |m: ndarray::ArrayView2<'_, f64>| -> Vec<Vec<f64>> {
        m.rows().into_iter().map(|r| r.to_vec()).collect()
    };
    Hmm::new(
        random.start().to_vec(),
        vec![vec![stay, 1.0 - stay], vec![1.0 - stay, stay]],
        rows(random.emit()),
    )
}

/// A fit of the letters as the comparison of starts sees it: whether it found the split,
/// its probability of staying, and the EM iterations it spent.
type StartOutcome = ((bool, f64), usize);

/// Ways of starting Baum-Welch on the letters, each once per seed: a random model (the
/// fits `random`, made already); random emissions with fixed transitions, for each
/// probability of staying in `start_stays`; and small EM. Writes the table
/// `letters_starts` and, per way, the fact `letters_split_<way>` (fits that find the
/// split): `random`, `stay20` for a probability of staying of 0.2, ..., `small_em`.
fn letter_starts(
    cfg: &Config,
    seqs: &[Vec<usize>],
    random: Vec<StartOutcome>,
    r: &mut Report,
) -> Result<()> {
    let bw = |seed| BaumWelch { n_states: 2, n_symbols: 27, n_iter: cfg.n_iter, tol: cfg.tol, seed };
    let ways = cfg.start_stays.len() + 1;
    let bar = progress::bar((ways * cfg.seeds.len()) as u64, "Baum-Welch starts");
    let mut rows = vec![];
    starts_row(r, "random", "random model", &random, &mut rows);
    for way in 0..ways {
        let stay = cfg.start_stays.get(way).copied();
        let fits: Vec<StartOutcome> = cfg
            .seeds
            .par_iter()
            .map(|&seed| {
                let (fit, spent) = match stay {
                    Some(stay) => {
                        let fit = bw(seed).fit_from(fixed_transitions_start(seed, stay)?, seqs)?;
                        let n = fit.log_likelihoods.len();
                        (fit, n)
                    }
                    None => {
                        let fit = bw(seed * cfg.small_em_starts as u64).fit_small_em(
                            seqs,
                            cfg.small_em_starts,
                            cfg.small_em_iter,
                        )?;
                        // The discarded short runs count too.
                        let n = fit.log_likelihoods.len()
                            + (cfg.small_em_starts - 1) * cfg.small_em_iter;
                        (fit, n)
                    }
                };
                bar.inc(1);
                Ok((split_and_stay(&fit.hmm), spent))
            })
            .collect::<Result<Vec<_>>>()?;
        let (key, label) = match stay {
            Some(p) => (
                format!("stay{:.0}", 100.0 * p),
                format!("random emissions, P(stay) = {p}{}", if p == 0.5 { " (uniform)" } else { "" }),
            ),
            None => ("small_em".to_string(), "small EM".to_string()),
        };
        starts_row(r, &key, &label, &fits, &mut rows);
    }
    bar.finish_and_clear();
    r.tables.push(Table {
        name: "letters_starts".into(),
        caption: format!(
            "Ways to start Baum-Welch on the same letters, each once per seed ({} seeds): a \
             random model (as in the table above); the same random emissions with fixed \
             transitions, both states staying with the probability shown; small EM, {} \
             random models run {} iterations each and the likeliest continued. Fits that \
             find the vowel/consonant split, fits whose states persist (P(stay) > 0.5 at \
             the end), and the median EM iterations a fit spends (small EM's discarded \
             short runs included).",
            cfg.seeds.len(),
            cfg.small_em_starts,
            cfg.small_em_iter
        ),
        columns: vec![
            col("start", Format::Int),
            col("fits", Format::Int),
            col("find the split", Format::Int),
            col("persistent", Format::Int),
            col("median EM iterations", Format::Int),
        ],
        rows,
    });
    Ok(())
}

/// The row of [`letter_starts`]'s table for one way of starting, and its fact.
fn starts_row(r: &mut Report, key: &str, label: &str, fits: &[StartOutcome], rows: &mut Vec<Vec<Value>>) {
    let found = fits.iter().filter(|((ok, _), _)| *ok).count();
    let persistent = fits.iter().filter(|((_, stay), _)| *stay > 0.5).count();
    let mut spent: Vec<f64> = fits.iter().map(|(_, n)| *n as f64).collect();
    spent.sort_by(f64::total_cmp);
    r.fact(&format!("letters_split_{key}"), found as f64, Format::Int);
    rows.push(vec![
        Value::from(label),
        Value::Num(fits.len() as f64),
        Value::Num(found as f64),
        Value::Num(persistent as f64),
        Value::Num(spent[spent.len() / 2]),
    ]);
}
