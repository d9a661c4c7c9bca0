//! Experiment `drift_stream`: the MNIST CNN serves a stream of requests that starts
//! clean and then shifts (rotated, noisy, thickened or thinned digits, or Fashion-MNIST
//! clothes), suddenly or gradually; a drift [`Monitor`] watches it. Per detector and
//! scenario: how many requests after the shift the first alarm comes (the delay), how
//! often it alarmed before the shift, and whether it beats the accuracy, which is known
//! only when the labels arrive `label_lag` requests late.
//!
//! The CNN is the seed model trained on the first `n_train` MNIST training images. The
//! monitor's reference is its answers on `n_reference` test images drawn at random; the
//! stream draws from the other test images (and the Fashion-MNIST test set), in a new
//! order per seed. A sudden shift changes every request from request `n_clean` on; a
//! gradual one changes each with a probability that grows linearly from 0 to 1 over the
//! `n_shifted` requests after it.
//!
//! The accuracy's alarm: at each check, the latest `window` labelled requests' accuracy
//! falls below the reference accuracy by more than a one-sided binomial test at `alpha`
//! allows. A Fashion-MNIST item has no right digit, so it counts as an error.

use anyhow::{ensure, Result};
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use super::{Experiment, Preset};
use crate::augment::rotate;
use crate::bench::median_min_max;
use crate::data::{data_ref, shuffled_order, fashion_mnist_files, mnist_refs, DataDir, Dataset, Split};
use crate::mlops::drift::{Detector, Monitor, MonitorConfig, Request};
use crate::models::{mnist_cnn, CnnConfig};
use crate::nn::{Mode, Named};
use crate::optim::Adam;
use crate::progress;
use crate::serve::drift::{default_monitor, ink};
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::train::{train_classifier, TrainSpec};

/// Experiment `drift_stream`, registered in [`super::all`].
pub struct DriftStream;

impl Experiment for DriftStream {
    const NAME: &'static str = "drift_stream";
    const CHAPTER: &'static str = "ch13";
    const TITLE: &'static str =
        "The MNIST CNN meets shifted requests: detection delays, false alarms, accuracy";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// MNIST training images the CNN learns from (the first ones).
    pub n_train: usize,
    /// Its epochs.
    pub n_epochs: usize,
    /// Its seed (initialisation, batch order, dropout).
    pub train_seed: u64,
    /// Test images (a random sample) whose answers are the monitor's reference.
    pub n_reference: usize,
    /// Clean requests before the shift.
    pub n_clean: usize,
    /// Requests from the shift on.
    pub n_shifted: usize,
    /// How late labels arrive, in requests.
    pub label_lag: usize,
    /// The monitor.
    pub monitor: MonitorConfig,
    /// Rotation of the rotated digits, degrees.
    pub degrees: f32,
    /// Standard deviation of the pixel noise.
    pub noise_std: f32,
    /// Stream seeds: order of the requests, which are shifted, the noise.
    pub seeds: Vec<u64>,
}

impl Preset for Config {
    fn full() -> Self {
        Config {
            n_train: 10_000,
            n_epochs: 2,
            train_seed: 0,
            n_reference: 1_000,
            n_clean: 1_000,
            n_shifted: 1_500,
            label_lag: 300,
            // The server's default monitor, with more shuffles: the stream's MMD is
            // read at alpha = 0.01 and 100 shuffles would leave it barely able to alarm.
            monitor: MonitorConfig {
                n_permutations: 300,
                ..default_monitor()
            },
            degrees: 45.0,
            noise_std: 0.2,
            seeds: (0..5).collect(),
        }
    }

    fn quick() -> Self {
        let full = Self::full();
        Config {
            n_train: 1_000,
            n_epochs: 1,
            n_reference: 300,
            n_clean: 200,
            n_shifted: 300,
            label_lag: 100,
            monitor: MonitorConfig {
                window: 100,
                check_every: 50,
                n_permutations: 200,
                n_calibration: 50,
                ..full.monitor
            },
            seeds: vec![0],
            ..full
        }
    }
}

/// What happens to a request after the shift.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shift {
    /// Nothing: the control stream.
    None,
    /// Rotated by the configured degrees.
    Rotate,
    /// Gaussian pixel noise of the configured standard deviation.
    Noise,
    /// Strokes thickened: a 3 × 3 cross-shaped dilation (maximum filter).
    Thicken,
    /// Strokes thinned: a 3 × 3 cross-shaped erosion (minimum filter).
    Thin,
    /// A Fashion-MNIST image instead of a digit.
    Fashion,
}

/// The scenarios, in table order: name, shift, gradual.
pub const SCENARIOS: [(&str, Shift, bool); 8] = [
    ("no shift", Shift::None, false),
    ("rotation, sudden", Shift::Rotate, false),
    ("rotation, gradual", Shift::Rotate, true),
    ("noise, sudden", Shift::Noise, false),
    ("thicker strokes, sudden", Shift::Thicken, false),
    ("thinner strokes, sudden", Shift::Thin, false),
    ("Fashion-MNIST, sudden", Shift::Fashion, false),
    ("Fashion-MNIST, gradual", Shift::Fashion, true),
];

/// The scenarios' fact-name stems, in [`SCENARIOS`] order.
pub const SCENARIO_SLUGS: [&str; 8] = [
    "none",
    "rotation_sudden",
    "rotation_gradual",
    "noise_sudden",
    "thicker_sudden",
    "thinner_sudden",
    "fashion_sudden",
    "fashion_gradual",
];

/// The detectors' fact-name stems, in [`Detector::ALL`] order, then the accuracy's.
pub const DETECTOR_SLUGS: [&str; 7] = [
    "psi",
    "ks_confidence",
    "ks_ink",
    "wasserstein",
    "chi_square",
    "mmd",
    "accuracy",
];

// ANCHOR: morphology
/// A 28 × 28 image through a 3 × 3 cross-shaped window: each pixel becomes the maximum
/// (`dilate`) or minimum of itself and its four neighbours (outside counts as 0).
pub fn morph(img: &[f32], dilate: bool) -> Vec<f32> {
    let at = |r: i32, c: i32| {
        if (0..28).contains(&r) && (0..28).contains(&c) {
            img[(r * 28 + c) as usize]
        } else {
            0.0
        }
    };
    let mut out = vec![0.0; 784];
    for r in 0..28i32 {
        for c in 0..28i32 {
            let v = [
                at(r, c),
                at(r - 1, c),
                at(r + 1, c),
                at(r, c - 1),
                at(r, c + 1),
            ];
            let pick = if dilate { f32::max } else { f32::min };
            out[(r * 28 + c) as usize] = v.into_iter().reduce(pick).expect("five values");
        }
    }
    out
}
// ANCHOR_END: morphology

/// The model's view of a batch of images (n × 784): probabilities and embeddings.
fn serve(model: &mut Named, images: &Array2<f32>) -> Vec<Request> {
    let mut out = Vec::with_capacity(images.nrows());
    for chunk in images.axis_chunks_iter(Axis(0), 256) {
        let n = chunk.nrows();
        let x = ArrayD::from_shape_vec(
            IxDyn(&[n, 1, 28, 28]),
            chunk.iter().copied().collect(),
        )
        .expect("n × 784 pixels");
        let outs = model.forward_all(&x, Mode::Eval);
        let emb = &outs
            .iter()
            .find(|(name, _)| name == "relu3")
            .expect("the seed CNN has relu3")
            .1;
        let logits = &outs.last().expect("layers").1;
        for i in 0..n {
            let z: Vec<f32> = (0..10).map(|k| logits[[i, k]]).collect();
            let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f64> = z.iter().map(|v| f64::from((v - max).exp())).collect();
            let s: f64 = e.iter().sum();
            let class = (0..10)
                .max_by(|&a, &b| e[a].total_cmp(&e[b]))
                .expect("10 classes");
            out.push(Request {
                class,
                confidence: e[class] / s,
                ink: ink(chunk.row(i).as_slice().expect("a standard-layout row")),
                embedding: (0..emb.shape()[1])
                    .map(|k| f64::from(emb[[i, k]]))
                    .collect(),
            });
        }
    }
    out
}

/// One stream's outcome, per detector (the accuracy's test last).
struct Outcome {
    /// The first alarm's delay after the shift, in requests.
    delay: Vec<Option<usize>>,
    /// Alarms at checks that saw only clean requests (for the accuracy: only clean
    /// labels).
    false_alarms: Vec<usize>,
    /// Checks that saw only clean requests (clean labels, for the accuracy).
    clean_checks: Vec<usize>,
    /// The accuracy of the latest `window` requests, at every check.
    accuracy: Vec<(usize, f64)>,
}

// ANCHOR: stream
/// Feeds `requests` (with whether each was answered right) to a fresh monitor, and
/// the labels `lag` requests late to the accuracy's test. A check is clean while its
/// window holds no request from the shift on; for the accuracy, while the labels it
/// has do not.
fn watch(
    cfg: &Config,
    reference: &[Request],
    ref_acc: f64,
    requests: Vec<Request>,
    correct: &[bool],
) -> Result<Outcome> {
    let mut monitor: Monitor = cfg.monitor.fit(reference.to_vec())?;
    let w = cfg.monitor.window;
    let n_det = Detector::ALL.len() + 1;
    let mut out = Outcome {
        delay: vec![None; n_det],
        false_alarms: vec![0; n_det],
        clean_checks: vec![0; n_det],
        accuracy: vec![],
    };
    // One-sided binomial test: alarm when the labelled accuracy is below this.
    let z = normal_quantile(1.0 - cfg.monitor.alpha);
    let floor = ref_acc - z * (ref_acc * (1.0 - ref_acc) / w as f64).sqrt();
    let share = |c: &[bool]| c.iter().filter(|&&c| c).count() as f64 / c.len() as f64;
    for (t, req) in requests.into_iter().enumerate() {
        let Some(signals) = monitor.observe(req)? else {
            continue;
        };
        let seen = t + 1;
        out.accuracy.push((seen, share(&correct[seen - w..seen])));
        // The labels known now are those of requests before `seen - lag`; no verdict
        // before a window's worth of them.
        let labelled = seen.saturating_sub(cfg.label_lag);
        let acc_alarm =
            (labelled >= w).then(|| share(&correct[labelled - w..labelled]) < floor);
        let alarms = signals.iter().map(|s| Some(s.alarm)).chain([acc_alarm]);
        for (d, alarm) in alarms.enumerate() {
            let Some(alarm) = alarm else { continue };
            let newest = if d + 1 < n_det { seen } else { labelled };
            if newest <= cfg.n_clean {
                out.clean_checks[d] += 1;
                out.false_alarms[d] += usize::from(alarm);
            } else if alarm && out.delay[d].is_none() {
                out.delay[d] = Some(seen - cfg.n_clean);
            }
        }
    }
    Ok(out)
}
// ANCHOR_END: stream

/// The standard normal quantile by bisection on $\Phi$.
fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if crate::tsa::norm_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

// ANCHOR: shifts
/// A 28 × 28 digit after `shift` (Fashion-MNIST replaces the digit elsewhere).
fn apply(cfg: &Config, shift: Shift, img: &[f32], rng: &mut ChaCha8Rng) -> Vec<f32> {
    match shift {
        Shift::None | Shift::Fashion => img.to_vec(),
        Shift::Rotate => rotate(img, 28, 28, cfg.degrees.to_radians()),
        Shift::Noise => {
            let normal = Normal::new(0.0, cfg.noise_std).expect("a finite std");
            img.iter()
                .map(|p| (p + normal.sample(rng)).clamp(0.0, 1.0))
                .collect()
        }
        Shift::Thicken => morph(img, true),
        Shift::Thin => morph(img, false),
    }
}

/// The stream of `scenario` for `seed`: images and labels (`None` for Fashion-MNIST),
/// the digits drawn from `digits` in a new order per seed.
fn stream(
    cfg: &Config,
    (shift, gradual): (Shift, bool),
    digits: &Dataset,
    fashion: &Dataset,
    seed: u64,
) -> (Array2<f32>, Vec<Option<usize>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..digits.len()).collect();
    order.shuffle(&mut rng);
    order.truncate(cfg.n_clean + cfg.n_shifted);
    let n = order.len();
    let (dx, fx) = (digits.flat(), fashion.flat());
    let mut images = Array2::zeros((n, 784));
    let mut labels = Vec::with_capacity(n);
    for (t, &i) in order.iter().enumerate() {
        // A gradual shift reaches request t with probability (t - n_clean + 1) / n_shifted.
        let share = (t + 1).saturating_sub(cfg.n_clean) as f64 / cfg.n_shifted as f64;
        let shifted = t >= cfg.n_clean && (!gradual || rng.random::<f64>() < share);
        let (img, label) = match (shifted, shift) {
            (true, Shift::Fashion) => (fx.row(rng.random_range(0..fx.nrows())).to_vec(), None),
            (true, _) => (
                apply(cfg, shift, dx.row(i).as_slice().expect("rows are contiguous"), &mut rng),
                Some(digits.labels()[i]),
            ),
            (false, _) => (dx.row(i).to_vec(), Some(digits.labels()[i])),
        };
        images
            .row_mut(t)
            .assign(&ndarray::ArrayView1::from(img.as_slice()));
        labels.push(label);
    }
    (images, labels)
}
// ANCHOR_END: shifts

/// A table cell of delays over streams: the median with the range, "(k/n)" when only
/// k of the n streams alarmed, "never" when none did.
fn delay_cell(ds: &[Option<usize>]) -> String {
    let got: Vec<f64> = ds.iter().flatten().map(|&d| d as f64).collect();
    if got.is_empty() {
        return "never".into();
    }
    let (med, lo, hi) = median_min_max(&got);
    let mut cell = if lo < hi {
        format!("{med:.0} [{lo:.0}–{hi:.0}]")
    } else {
        format!("{med:.0}")
    };
    if got.len() < ds.len() {
        cell += &format!(" ({}/{})", got.len(), ds.len());
    }
    cell
}

/// Whether a detector alarmed strictly before the accuracy did (or the accuracy never).
fn earlier(detector: Option<usize>, accuracy: Option<usize>) -> bool {
    match (detector, accuracy) {
        (Some(d), Some(a)) => d < a,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Example inputs: a few digits under every shift, and Fashion-MNIST items.
fn examples(cfg: &Config, digits: &Dataset, fashion: &Dataset) -> Figure {
    let shifts = [Shift::None, Shift::Rotate, Shift::Noise, Shift::Thicken, Shift::Thin];
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let bytes = |img: &[f32]| img.iter().map(|p| (p.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    let mut images = vec![];
    for k in 0..4 {
        let digit = digits.flat().row(k).to_vec();
        for shift in shifts {
            images.push(bytes(&apply(cfg, shift, &digit, &mut rng)));
        }
        images.push(bytes(fashion.flat().row(k).as_slice().expect("contiguous")));
    }
    Figure {
        name: "examples".into(),
        title: "Requests before and after each shift".into(),
        plot: Plot::Images {
            width: 28,
            height: 28,
            row_labels: vec![String::new(); 4],
            col_labels: [
                "clean".to_string(),
                format!("rotated {}°", cfg.degrees),
                format!("noise σ = {}", cfg.noise_std),
                "thicker".into(),
                "thinner".into(),
                "Fashion-MNIST".into(),
            ]
            .into(),
            images,
        },
    }
}

fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    ensure!(!cfg.seeds.is_empty(), "drift_stream needs at least one stream seed");
    let train = Dataset::mnist(dir, Split::Train, cfg.n_train)?;
    let test = Dataset::mnist(dir, Split::Test, 10_000)?;
    let fashion = Dataset::fashion_mnist(dir, Split::Test, 10_000)?;
    ensure!(
        cfg.n_reference + cfg.n_clean + cfg.n_shifted <= test.len(),
        "{} reference, {} clean and {} shifted requests need more than the {} MNIST test \
         images",
        cfg.n_reference,
        cfg.n_clean,
        cfg.n_shifted,
        test.len()
    );
    let (fi, fl) = fashion_mnist_files(Split::Test);
    r.data = mnist_refs();
    r.data.extend([data_ref(fi), data_ref(fl)]);
    r.seeds = cfg.seeds.clone();
    let mut model = mnist_cnn(&CnnConfig::default(), cfg.train_seed);
    let spec = TrainSpec {
        n_epochs: cfg.n_epochs,
        batch_size: 128,
        seed: cfg.train_seed,
        ..TrainSpec::default()
    };
    // The reference is a random sample of the test set and the stream draws from the
    // rest: the test set is not in random order (its first 5,000 images come from
    // NIST's training set, the last 5,000 from its test set).
    let order = shuffled_order(test.len(), &mut ChaCha8Rng::seed_from_u64(cfg.train_seed));
    let (head, pool) = (
        test.select(&order[..cfg.n_reference]),
        test.select(&order[cfg.n_reference..]),
    );
    train_classifier(&mut model, &mut Adam::new(1e-3), &train, &head, &spec);
    let reference = serve(&mut model, &head.flat().to_owned());
    let ref_acc = reference
        .iter()
        .zip(head.labels())
        .filter(|(q, y)| q.class == **y)
        .count() as f64
        / reference.len() as f64;
    r.fact("reference_accuracy", ref_acc, Format::Percent(1));

    let (n_det, n_seeds) = (Detector::ALL.len() + 1, cfg.seeds.len());
    // delays[scenario][detector][seed]
    let mut delays = vec![vec![vec![]; n_det]; SCENARIOS.len()];
    // Per detector and seed: false alarms per clean check, pooled over the scenarios.
    let mut fa = vec![vec![0.0; n_seeds]; n_det];
    // Per detector: streams with at least one false alarm.
    let mut fa_streams = vec![0usize; n_det];
    // Per scenario: the last window's accuracy, per seed.
    let mut final_acc = vec![vec![]; SCENARIOS.len()];
    let mut curves = vec![];
    let bar = progress::bar((n_seeds * SCENARIOS.len()) as u64, "drift streams");
    for (si, &seed) in cfg.seeds.iter().enumerate() {
        let (mut alarms, mut checks) = (vec![0; n_det], vec![0; n_det]);
        for (k, &(name, shift, gradual)) in SCENARIOS.iter().enumerate() {
            let (images, labels) =
                stream(cfg, (shift, gradual), &pool, &fashion, seed * 100 + k as u64);
            let requests = serve(&mut model, &images);
            let correct: Vec<bool> = requests
                .iter()
                .zip(&labels)
                .map(|(q, y)| Some(q.class) == *y)
                .collect();
            let out = watch(cfg, &reference, ref_acc, requests, &correct)?;
            for d in 0..n_det {
                delays[k][d].push(out.delay[d]);
                alarms[d] += out.false_alarms[d];
                checks[d] += out.clean_checks[d];
                fa_streams[d] += usize::from(out.false_alarms[d] > 0);
            }
            final_acc[k].push(out.accuracy.last().map_or(f64::NAN, |&(_, a)| a));
            if si == 0 {
                let (x, y): (Vec<f64>, Vec<f64>) =
                    out.accuracy.iter().map(|&(t, a)| (t as f64, a)).unzip();
                curves.push(Series {
                    name: name.into(),
                    x,
                    y,
                    band: None,
                });
            }
            bar.inc(1);
        }
        for d in 0..n_det {
            fa[d][si] = alarms[d] as f64 / checks[d].max(1) as f64;
        }
    }
    bar.finish_and_clear();

    let names: Vec<String> = Detector::ALL
        .iter()
        .map(|d| d.name().to_string())
        .chain([format!("accuracy (labels {} late)", cfg.label_lag)])
        .collect();
    let mut columns = vec![
        col("scenario", Format::Int),
        col("accuracy at the end", Format::Percent(1)),
    ];
    columns.extend(names.iter().map(|n| col(n, Format::Int)));
    r.tables.push(Table {
        name: "delays".into(),
        caption: format!(
            "Requests from the shift to the first alarm: median [min–max] over {} streams \
             ((k/n): only k of the n streams alarmed; never: none did), and the accuracy \
             of the last {} requests, mean ± std. Checks every {} requests on a window of \
             the latest {}; tests at alpha = {}, PSI above {}; the shift comes after {} \
             clean requests and lasts {}; a gradual shift's share of shifted requests \
             grows from 0 to 100 % over those {}. In the no-shift row every alarm is a \
             false one",
            n_seeds,
            cfg.monitor.window,
            cfg.monitor.check_every,
            cfg.monitor.window,
            cfg.monitor.alpha,
            cfg.monitor.psi_threshold,
            cfg.n_clean,
            cfg.n_shifted,
            cfg.n_shifted
        ),
        columns,
        rows: SCENARIOS
            .iter()
            .zip(&delays)
            .zip(&final_acc)
            .map(|(((name, _, _), per_det), acc)| {
                let mut row = vec![Value::Text((*name).into()), Value::Seeds(acc.clone())];
                row.extend(per_det.iter().map(|ds| Value::Text(delay_cell(ds))));
                row
            })
            .collect(),
    });
    let acc = n_det - 1;
    let mut columns = vec![col("scenario", Format::Int)];
    columns.extend(names[..acc].iter().map(|n| col(n, Format::Percent(0))));
    r.tables.push(Table {
        name: "before_accuracy".into(),
        caption: format!(
            "Share of the {} streams in which the detector alarmed before the accuracy's \
             test did (or alarmed and the accuracy's never did); the accuracy learns each \
             request's label {} requests later",
            n_seeds, cfg.label_lag
        ),
        columns,
        rows: SCENARIOS[1..]
            .iter()
            .zip(&delays[1..])
            .map(|((name, _, _), per_det)| {
                let mut row = vec![Value::Text((*name).into())];
                row.extend(per_det[..acc].iter().map(|ds| {
                    let k = ds
                        .iter()
                        .zip(&per_det[acc])
                        .filter(|(d, a)| earlier(**d, **a))
                        .count();
                    Value::Num(k as f64 / ds.len() as f64)
                }));
                row
            })
            .collect(),
    });
    let n_streams = (n_seeds * SCENARIOS.len()) as f64;
    r.tables.push(Table {
        name: "false_alarms".into(),
        caption: format!(
            "False alarms before the shift: the share of checks that alarmed while the \
             window held only clean requests (the accuracy: only clean labels), pooled \
             over the {} scenarios' clean stretches, mean ± std over {} seeds; and the \
             share of all {} streams with at least one such alarm",
            SCENARIOS.len(),
            n_seeds,
            n_streams
        ),
        columns: vec![
            col("detector", Format::Int),
            col("false alarms per check", Format::Percent(1)),
            col("streams with a false alarm", Format::Percent(0)),
        ],
        rows: names
            .iter()
            .zip(&fa)
            .zip(&fa_streams)
            .map(|((n, v), &s)| {
                vec![
                    Value::Text(n.clone()),
                    Value::Seeds(v.clone()),
                    Value::Num(s as f64 / n_streams),
                ]
            })
            .collect(),
    });
    for (k, sc) in SCENARIO_SLUGS.iter().enumerate() {
        r.fact(
            &format!("final_accuracy_{sc}"),
            Value::Seeds(final_acc[k].clone()),
            Format::Percent(1),
        );
    }
    for (d, slug) in DETECTOR_SLUGS.iter().enumerate() {
        r.fact(
            &format!("false_alarms_{slug}"),
            Value::Seeds(fa[d].clone()),
            Format::Percent(1),
        );
        r.fact(
            &format!("false_alarm_streams_{slug}"),
            fa_streams[d] as f64 / n_streams,
            Format::Percent(0),
        );
        for (k, sc) in SCENARIO_SLUGS.iter().enumerate() {
            let ds = &delays[k][d];
            let got: Vec<f64> = ds.iter().flatten().map(|&v| v as f64).collect();
            r.fact(
                &format!("detected_{sc}_{slug}"),
                got.len() as f64 / ds.len() as f64,
                Format::Percent(0),
            );
            if !got.is_empty() {
                let (med, _, max) = median_min_max(&got);
                r.fact(&format!("delay_median_{sc}_{slug}"), med, Format::Int);
                // The slowest stream's delay: by then, every stream that alarmed had.
                r.fact(&format!("delay_max_{sc}_{slug}"), max, Format::Int);
            }
            if d != acc {
                let k_earlier = ds
                    .iter()
                    .zip(&delays[k][acc])
                    .filter(|(d, a)| earlier(**d, **a))
                    .count();
                r.fact(
                    &format!("before_accuracy_{sc}_{slug}"),
                    k_earlier as f64 / ds.len() as f64,
                    Format::Percent(0),
                );
            }
        }
    }
    r.figures.push(Figure {
        name: "accuracy".into(),
        title: format!(
            "Accuracy of the latest {} requests (stream seed {}; shift after request {})",
            cfg.monitor.window, cfg.seeds[0], cfg.n_clean
        ),
        plot: Plot::Lines {
            x_label: "requests served".into(),
            y_label: "accuracy".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: curves,
        },
    });
    r.figures.push(examples(cfg, &pool, &fashion));
    Ok(())
}
