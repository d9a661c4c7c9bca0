//! Experiment `diagnostic_test`: Bayes' rule and the base-rate effect.
//!
//! A test with sensitivity 99 % is applied where 1 % of people have the disease. The
//! probability of disease given a positive result is computed by Bayes' rule across
//! prevalences and specificities, shown as natural frequencies, updated over repeated
//! positive tests, and cross-checked by simulating a seeded population and counting.

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Experiment, Preset};
use crate::bayes::{odds, prob_from_odds, DiagnosticTest};
use crate::data::DataDir;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};

/// Experiment `diagnostic_test`, registered in [`super::all`].
pub struct DiagnosticTestExperiment;

impl Experiment for DiagnosticTestExperiment {
    const NAME: &'static str = "diagnostic_test";
    const CHAPTER: &'static str = "ch01";
    const TITLE: &'static str = "Bayes' rule for a diagnostic test: the base-rate effect";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// Configuration. Everything but the population simulation is exact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// `P(+ | disease)`.
    pub sensitivity: f64,
    /// The specificity of the headline test.
    pub specificity: f64,
    /// The prevalence of the headline case.
    pub prevalence: f64,
    /// Specificities compared in the figure and table.
    pub specificities: Vec<f64>,
    /// Prevalences of the table.
    pub prevalences: Vec<f64>,
    /// Range of the figure's prevalence axis (log-spaced).
    pub prevalence_min: f64,
    /// Upper end of that range.
    pub prevalence_max: f64,
    /// Points on each curve.
    pub curve_points: usize,
    /// People in the natural-frequency table.
    pub natural_population: u64,
    /// Repeated positive tests (assumed independent given disease status).
    pub max_repeats: u32,
    /// Seeds of the simulated populations.
    pub seeds: Vec<u64>,
    /// People per simulated population.
    pub population: u64,
}

impl Preset for Config {
    /// Seconds: smaller simulated populations.
    fn quick() -> Self {
        Config {
            population: 200_000,
            ..Self::full()
        }
    }

    /// The preset behind the book's numbers.
    fn full() -> Self {
        Config {
            sensitivity: 0.99,
            specificity: 0.95,
            prevalence: 0.01,
            specificities: vec![0.9, 0.95, 0.99, 0.999],
            prevalences: vec![0.001, 0.01, 0.05, 0.1, 0.3, 0.5],
            prevalence_min: 1e-4,
            prevalence_max: 0.5,
            curve_points: 81,
            natural_population: 10_000,
            max_repeats: 3,
            seeds: vec![0, 1, 2, 3, 4],
            population: 2_000_000,
        }
    }
}

/// Simulates `population` people: each is ill with probability `prevalence` and tests
/// positive with the test's rates. Returns the fraction of positives who are ill.
pub fn simulate_ppv(
    test: &DiagnosticTest,
    prevalence: f64,
    population: u64,
    seed: u64,
) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut positives, mut true_positives) = (0u64, 0u64);
    for _ in 0..population {
        let ill = rng.random::<f64>() < prevalence;
        let p_pos = if ill {
            test.sensitivity
        } else {
            1.0 - test.specificity
        };
        if rng.random::<f64>() < p_pos {
            positives += 1;
            true_positives += ill as u64;
        }
    }
    true_positives as f64 / positives as f64
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
    r.seeds = cfg.seeds.clone();
    let test = DiagnosticTest::new(cfg.sensitivity, cfg.specificity);
    let prev = cfg.prevalence;
    let pc = Format::Percent(1);

    r.fact("sensitivity", cfg.sensitivity, Format::Percent(0));
    r.fact("specificity", cfg.specificity, Format::Percent(0));
    r.fact("prevalence", prev, Format::Percent(0));
    r.fact("ppv", test.p_disease_given_positive(prev), pc);
    r.fact("lr_positive", test.lr_positive(), Format::Fixed(1));
    r.fact(
        "p_disease_given_negative",
        test.p_disease_given_negative(prev),
        Format::Sci(1),
    );
    let best = cfg.specificities.iter().copied().fold(0.0, f64::max);
    r.fact("best_specificity", best, Format::Percent(1));
    r.fact(
        "ppv_best_specificity",
        DiagnosticTest::new(cfg.sensitivity, best).p_disease_given_positive(prev),
        pc,
    );
    let per_seed: Vec<f64> = cfg
        .seeds
        .iter()
        .map(|&s| simulate_ppv(&test, prev, cfg.population, s))
        .collect();
    r.fact("ppv_simulated", Value::Seeds(per_seed), Format::Percent(2));

    // Natural frequencies.
    let n = cfg.natural_population as f64;
    let ill = n * prev;
    let healthy = n - ill;
    let tp = ill * test.sensitivity;
    let fp = healthy * (1.0 - test.specificity);
    let f1 = Format::Fixed(1);
    r.tables.push(Table {
        name: "natural_frequencies".into(),
        caption: format!(
            "Expected counts among {} people tested, at prevalence {:.0} %, sensitivity \
             {:.0} %, specificity {:.0} %.",
            cfg.natural_population,
            100.0 * prev,
            100.0 * cfg.sensitivity,
            100.0 * cfg.specificity
        ),
        columns: vec![
            col("", f1),
            col("test positive", f1),
            col("test negative", f1),
            col("total", f1),
        ],
        rows: vec![
            vec!["ill".into(), tp.into(), (ill - tp).into(), ill.into()],
            vec![
                "healthy".into(),
                fp.into(),
                (healthy - fp).into(),
                healthy.into(),
            ],
            vec![
                "total".into(),
                (tp + fp).into(),
                (n - tp - fp).into(),
                n.into(),
            ],
        ],
    });
    r.fact("natural_tp", tp, f1);
    r.fact("natural_fp", fp, f1);

    // P(disease | +) across prevalences.
    let tests: Vec<DiagnosticTest> = cfg
        .specificities
        .iter()
        .map(|&sp| DiagnosticTest::new(cfg.sensitivity, sp))
        .collect();
    let mut columns = vec![col("prevalence", pc), col("P(+)", pc)];
    columns.extend(
        cfg.specificities
            .iter()
            .map(|sp| col(&format!("P(ill ∣ +), sp = {:.1} %", 100.0 * sp), pc)),
    );
    columns.push(col("P(ill ∣ −)", Format::Sci(1)));
    let rows = cfg
        .prevalences
        .iter()
        .map(|&p| {
            let mut row = vec![Value::Num(p), Value::Num(test.p_positive(p))];
            row.extend(
                tests
                    .iter()
                    .map(|t| Value::Num(t.p_disease_given_positive(p))),
            );
            row.push(Value::Num(test.p_disease_given_negative(p)));
            row
        })
        .collect();
    r.tables.push(Table {
        name: "by_prevalence".into(),
        caption: format!(
            "Probability of disease after a positive test, sensitivity {:.0} %, for \
             several specificities; P(+) and P(ill ∣ −) are for specificity {:.0} %.",
            100.0 * cfg.sensitivity,
            100.0 * cfg.specificity
        ),
        columns,
        rows,
    });

    let xs: Vec<f64> = (0..cfg.curve_points)
        .map(|i| {
            let t = i as f64 / (cfg.curve_points - 1) as f64;
            (cfg.prevalence_min.ln() + t * (cfg.prevalence_max / cfg.prevalence_min).ln())
                .exp()
        })
        .collect();
    let series = tests
        .iter()
        .map(|t| Series {
            name: format!("specificity {:.1} %", 100.0 * t.specificity),
            x: xs.clone(),
            y: xs.iter().map(|&p| t.p_disease_given_positive(p)).collect(),
            band: None,
        })
        .collect();
    r.figures.push(Figure {
        name: "ppv".into(),
        title: format!(
            "P(ill | positive) for a {:.0} %-sensitive test",
            100.0 * cfg.sensitivity
        ),
        plot: Plot::Lines {
            x_label: "prevalence".into(),
            y_label: "P(ill | +)".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
            series,
        },
    });

    // Repeated positive tests: the posterior after one is the prior of the next.
    let mut rows = vec![];
    let mut p = prev;
    for i in 1..=cfg.max_repeats {
        let before = p;
        p = test.p_disease_given_positive(p);
        let via_odds = prob_from_odds(odds(before) * test.lr_positive());
        rows.push(vec![
            Value::Num(i as f64),
            Value::Num(before),
            Value::Num(p),
            Value::Num(via_odds),
        ]);
        r.fact(&format!("ppv_after_{i}"), p, pc);
    }
    r.tables.push(Table {
        name: "repeat_tests".into(),
        caption: "Successive positive results, assumed independent given the disease \
                  status: the posterior after each test is the prior of the next; the \
                  odds form gives the same numbers."
            .into(),
        columns: vec![
            col("positive tests", Format::Int),
            col("prior", Format::Percent(2)),
            col("posterior (Bayes' rule)", Format::Percent(2)),
            col("posterior (odds × LR+)", Format::Percent(2)),
        ],
        rows,
    });
    Ok(())
}
