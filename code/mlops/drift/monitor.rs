//! A drift [`Monitor`]: a reference window of served requests, a sliding window of the
//! latest ones, and every few requests each detector's score and alarm.

use std::collections::VecDeque;

use anyhow::{ensure, Result};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{chi_square, ks_2samp, wasserstein, FittedPsi, Mmd, Psi};

/// What the monitor keeps of one request: the model's answer and the input's summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The predicted class.
    pub class: usize,
    /// The predicted class's probability.
    pub confidence: f64,
    /// The input's mean pixel intensity (its "ink").
    pub ink: f64,
    /// The penultimate layer's activations.
    pub embedding: Vec<f64>,
}

/// The monitor's detectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// PSI of the confidence, alarm above [`MonitorConfig::psi_threshold`].
    PsiConfidence,
    /// KS test of the confidence, alarm at p < alpha (exact p-value).
    KsConfidence,
    /// KS test of the ink, alarm at p < alpha (exact p-value).
    KsInk,
    /// Wasserstein distance of the ink, alarm above its calibrated threshold.
    WassersteinInk,
    /// Chi-square test of the predicted classes, alarm at p < alpha.
    ChiSquareClass,
    /// MMD permutation test of the embeddings, alarm at p < alpha.
    MmdEmbedding,
}

impl Detector {
    /// Every detector, in table order.
    pub const ALL: [Detector; 6] = [
        Detector::PsiConfidence,
        Detector::KsConfidence,
        Detector::KsInk,
        Detector::WassersteinInk,
        Detector::ChiSquareClass,
        Detector::MmdEmbedding,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Detector::PsiConfidence => "PSI (confidence)",
            Detector::KsConfidence => "KS (confidence)",
            Detector::KsInk => "KS (ink)",
            Detector::WassersteinInk => "Wasserstein (ink)",
            Detector::ChiSquareClass => "chi-square (class)",
            Detector::MmdEmbedding => "MMD (embedding)",
        }
    }
}

/// One detector's verdict on the current window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Signal {
    /// Which detector.
    pub detector: Detector,
    /// Its statistic (PSI, D, W1, X², MMD²).
    pub score: f64,
    /// Its p-value, for the tests that have one.
    pub p_value: Option<f64>,
    /// Whether it raises the alarm.
    pub alarm: bool,
}

/// How the monitor watches.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// Requests in the current (sliding) window.
    pub window: usize,
    /// Requests between two checks.
    pub check_every: usize,
    /// Significance level of each test at each check.
    pub alpha: f64,
    /// PSI bins.
    pub psi_bins: usize,
    /// PSI above this raises the alarm (0.2, the usual "large shift").
    pub psi_threshold: f64,
    /// Shuffles of the MMD test.
    pub n_permutations: usize,
    /// Bootstrap pairs (a reference and a window, both resampled from the reference)
    /// whose Wasserstein distances set the threshold at their `1 - alpha` quantile.
    pub n_calibration: usize,
    /// Seed of the calibration and the shuffles.
    pub seed: u64,
}

// ANCHOR: monitor
/// A fitted monitor: the reference, and the window of the latest requests.
pub struct Monitor {
    cfg: MonitorConfig,
    reference: Vec<Request>,
    psi: FittedPsi,
    w1_threshold: f64,
    window: VecDeque<Request>,
    seen: usize,
}

impl MonitorConfig {
    /// Keeps `reference` (at least one window of requests, with embeddings of one
    /// width) and calibrates the Wasserstein threshold on it. Refuses a window under 2,
    /// and fewer MMD shuffles than a p-value below `alpha` needs.
    pub fn fit(&self, reference: Vec<Request>) -> Result<Monitor> {
        ensure!(self.window >= 2, "the window needs at least 2 requests");
        ensure!(self.check_every >= 1, "check_every must be at least 1");
        // A permutation p-value is at least 1 / (1 + shuffles).
        ensure!(
            (1.0 + self.n_permutations as f64) * self.alpha > 1.0,
            "{} shuffles cannot give the MMD a p-value below alpha = {}: it needs at \
             least {}",
            self.n_permutations,
            self.alpha,
            (1.0 / self.alpha).floor() as usize
        );
        ensure!(
            reference.len() >= self.window,
            "the reference holds {} requests, fewer than one window of {}",
            reference.len(),
            self.window
        );
        let width = reference[0].embedding.len();
        ensure!(
            reference.iter().all(|r| r.embedding.len() == width),
            "the reference's embeddings differ in width"
        );
        let conf: Vec<f64> = reference.iter().map(|r| r.confidence).collect();
        let psi = Psi {
            n_bins: self.psi_bins,
        }
        .fit(&conf)?;
        let ink: Vec<f64> = reference.iter().map(|r| r.ink).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        // W1 between two independent samples of the reference's distribution, one the
        // reference's size and one a window's, both drawn from the reference with
        // replacement. (A window drawn from the reference compared with the reference
        // itself would share values with it and come out too close.)
        let mut w1s = (0..self.n_calibration.max(1))
            .map(|_| {
                let mut draw = |n: usize| -> Vec<f64> {
                    (0..n)
                        .map(|_| ink[rng.random_range(0..ink.len())])
                        .collect()
                };
                let (r, w) = (draw(ink.len()), draw(self.window));
                wasserstein(&r, &w)
            })
            .collect::<Result<Vec<f64>>>()?;
        w1s.sort_by(f64::total_cmp);
        let q = ((1.0 - self.alpha) * (w1s.len() - 1) as f64).round() as usize;
        Ok(Monitor {
            cfg: *self,
            w1_threshold: w1s[q],
            psi,
            reference,
            window: VecDeque::with_capacity(self.window),
            seen: 0,
        })
    }
}

impl Monitor {
    /// Takes one request; every `check_every` requests, once the window is full,
    /// returns every detector's verdict on the window. Errors on an embedding of
    /// another width than the reference's.
    pub fn observe(&mut self, r: Request) -> Result<Option<Vec<Signal>>> {
        ensure!(
            r.embedding.len() == self.reference[0].embedding.len(),
            "a request's embedding has {} values, the reference's {}",
            r.embedding.len(),
            self.reference[0].embedding.len()
        );
        if self.window.len() == self.cfg.window {
            self.window.pop_front();
        }
        self.window.push_back(r);
        self.seen += 1;
        if self.window.len() < self.cfg.window
            || !self.seen.is_multiple_of(self.cfg.check_every)
        {
            return Ok(None);
        }
        self.check().map(Some)
    }

    /// The Wasserstein threshold the calibration set.
    pub fn w1_threshold(&self) -> f64 {
        self.w1_threshold
    }

    /// Every detector's verdict on the current window against the reference.
    pub fn check(&self) -> Result<Vec<Signal>> {
        let alpha = self.cfg.alpha;
        let (rc, cc) = (
            column(&self.reference, |r| r.confidence),
            column(&self.window, |r| r.confidence),
        );
        let (ri, ci) = (
            column(&self.reference, |r| r.ink),
            column(&self.window, |r| r.ink),
        );
        let test = |d, score, p: f64| Signal {
            detector: d,
            score,
            p_value: Some(p),
            alarm: p < alpha,
        };
        let psi = self.psi.score(&cc)?;
        let ks_c = ks_2samp(&rc, &cc)?;
        let ks_i = ks_2samp(&ri, &ci)?;
        let w1 = wasserstein(&ri, &ci)?;
        let n_classes = self
            .reference
            .iter()
            .chain(&self.window)
            .map(|r| r.class + 1)
            .max()
            .unwrap_or(1)
            .max(2);
        let chi = chi_square(
            &class_counts(&self.reference, n_classes),
            &class_counts(&self.window, n_classes),
        )?;
        // The MMD compares the window with as many reference requests, spread evenly
        // over the reference (its cost grows with the square of the pooled size).
        let step = self.reference.len() / self.cfg.window;
        let emb = |rs: Vec<&Request>| {
            let d = rs[0].embedding.len();
            Array2::from_shape_fn((rs.len(), d), |(i, j)| rs[i].embedding[j])
        };
        let xr = emb(self
            .reference
            .iter()
            .step_by(step)
            .take(self.cfg.window)
            .collect());
        let xc = emb(self.window.iter().collect());
        let mmd = Mmd {
            n_permutations: self.cfg.n_permutations,
            seed: self.cfg.seed ^ self.seen as u64,
        }
        .test(xr.view(), xc.view())?;
        Ok(vec![
            Signal {
                detector: Detector::PsiConfidence,
                score: psi,
                p_value: None,
                alarm: psi > self.cfg.psi_threshold,
            },
            test(Detector::KsConfidence, ks_c.statistic, ks_c.p_exact),
            test(Detector::KsInk, ks_i.statistic, ks_i.p_exact),
            Signal {
                detector: Detector::WassersteinInk,
                score: w1,
                p_value: None,
                alarm: w1 > self.w1_threshold,
            },
            test(Detector::ChiSquareClass, chi.statistic, chi.p_value),
            test(Detector::MmdEmbedding, mmd.mmd2, mmd.p_value),
        ])
    }
}
// ANCHOR_END: monitor

/// One number of every request.
fn column<'a>(
    rs: impl IntoIterator<Item = &'a Request>,
    f: fn(&Request) -> f64,
) -> Vec<f64> {
    rs.into_iter().map(f).collect()
}

/// How many of the requests fall in each of `n_classes` classes.
fn class_counts<'a>(
    rs: impl IntoIterator<Item = &'a Request>,
    n_classes: usize,
) -> Vec<u64> {
    let mut c = vec![0u64; n_classes];
    rs.into_iter().for_each(|r| c[r.class] += 1);
    c
}
