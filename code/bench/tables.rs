//! The report of `dlbook bench`: runs every measurement and sets the figures out as
//! tables (throughput, compute, per-layer profile, FLOPs, before and after, reference).

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::measure::{
    load_average, median_min_max, profile, synthetic_batch, time_inference, time_sgemm,
    time_training, Clock,
};
use super::steps::measuring;
use super::{candle, peak, seed_cnn, seed_cnn_macs, train_flops_per_image, Config};
use crate::optim::Adam;
use crate::report::{Column, Format, Report, Table, Value};

fn col(header: &str, format: Format) -> Column {
    Column {
        header: header.into(),
        format,
    }
}

/// A row `[what, median, min, max, unit]` of the summary table.
pub(super) fn summary_row(what: &str, v: &[f64], unit: &str) -> Vec<Value> {
    let (med, lo, hi) = median_min_max(v);
    vec![
        what.into(),
        Value::Num(med),
        Value::Num(lo),
        Value::Num(hi),
        unit.into(),
    ]
}

/// A table of [`summary_row`]s: measurement, median, min, max (with `decimals` digits)
/// and unit.
pub(super) fn summary_table(
    name: &str,
    caption: String,
    decimals: u8,
    rows: Vec<Vec<Value>>,
) -> crate::report::Table {
    crate::report::Table {
        name: name.into(),
        caption,
        columns: vec![
            col("measurement", Format::Int),
            col("median", Format::Fixed(decimals)),
            col("min", Format::Fixed(decimals)),
            col("max", Format::Fixed(decimals)),
            col("unit", Format::Int),
        ],
        rows,
    }
}

/// Figures reported for this model on this machine kind (2 threads, batch 128, a quiet
/// machine) by other implementations: context for ours, not measured here.
pub const REFERENCE: [(&str, f64, &str); 4] = [
    ("PyTorch, training", 3300.0, "images/s"),
    ("Keras / TensorFlow, training", 3400.0, "images/s"),
    ("OpenBLAS SGEMM, n = 2048", 180.0, "GFLOP/s"),
    ("FMA peak", 200.0, "GFLOP/s"),
];

/// The median of row `what` of table `table` in `r`.
fn median_of(r: &Report, table: &str, what: &str) -> Option<f64> {
    let row = r
        .table(table)?
        .rows
        .iter()
        .find(|row| matches!(&row[0], Value::Text(t) if t.starts_with(what)))?;
    row[1].number()
}

/// Runs every measurement of `cfg` and returns the report `name` (the file stem under
/// `chapters/generated/ch05/`). With a `baseline` report (the same measurements made
/// before the optimisations), a `before_after` table sets the two side by side.
pub fn run(cfg: &Config, name: &str, baseline: Option<&Report>) -> Result<Report> {
    let load_before = load_average();
    let pool = |n: usize| rayon::ThreadPoolBuilder::new().num_threads(n).build();
    let (pool_n, pool_1) = (pool(cfg.threads)?, pool(1)?);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (x, labels) = synthetic_batch(cfg.batch_size, &mut rng);
    let flops = train_flops_per_image();

    // The model is built inside each pool: its layers are not `Send`.
    let (train, cpu_n, prof, infer, sgemm) = pool_n.install(|| {
        let mut model = seed_cnn(cfg.seed);
        let (m, mut opt) = (&mut model, Adam::new(1e-3));
        let (train, cpu_n) = measuring("training, from scratch", || {
            time_training(m, &mut opt, &x, &labels, cfg.steps, cfg.runs)
        });
        let prof = measuring("per-layer profile", || {
            profile(m, &mut opt, &x, &labels, cfg.steps, Clock::Wall)
        });
        let infer: Vec<(usize, Vec<f64>)> = cfg
            .infer_batches
            .iter()
            .map(|&b| {
                let what = format!("inference, from scratch, batch {b}");
                let t = measuring(&what, || {
                    time_inference(m, b, cfg.infer_images, cfg.runs, &mut rng)
                });
                (b, t)
            })
            .collect();
        let sgemm = measuring("SGEMM", || time_sgemm(cfg.gemm_n, cfg.runs, &mut rng));
        (train, cpu_n, prof, infer, sgemm)
    });
    // The candle twin, same shapes (candle runs on its own thread pool, all cores).
    let candle_train = measuring("training, candle", || {
        candle::time_training(&x, &labels, cfg.steps, cfg.runs, cfg.seed)
    })?;
    let candle_infer = cfg
        .infer_batches
        .iter()
        .map(|&b| {
            let what = format!("inference, candle, batch {b}");
            let r = measuring(&what, || {
                candle::time_inference(b, cfg.infer_images, cfg.runs, cfg.seed, &mut rng)
            });
            r.map(|r| (b, r))
        })
        .collect::<Result<Vec<_>>>()?;
    // The load-insensitive figure: CPU time on one thread.
    let (cpu, prof_cpu) = pool_1.install(|| {
        let mut model = seed_cnn(cfg.seed);
        let mut opt = Adam::new(1e-3);
        let (_, cpu) = measuring("training, from scratch, 1 thread", || {
            time_training(&mut model, &mut opt, &x, &labels, cfg.steps, cfg.runs)
        });
        let clock = Clock::ThreadCpu;
        let prof = measuring("per-layer profile, 1 thread", || {
            profile(&mut model, &mut opt, &x, &labels, cfg.steps, clock)
        });
        (cpu, prof)
    });

    let isa = peak::Isa::detect();
    let peak1: Vec<f64> = measuring("FMA peak, 1 thread", || {
        (0..cfg.runs)
            .map(|_| peak::fma_gflops(isa, 1, cfg.peak_iters))
            .collect()
    });
    let peak_n: Vec<f64> = measuring("FMA peak, all threads", || {
        (0..cfg.runs)
            .map(|_| peak::fma_gflops(isa, cfg.threads, cfg.peak_iters))
            .collect()
    });
    let load_after = load_average();

    let gflops: Vec<f64> = train.iter().map(|r| r * flops / 1e9).collect();
    let peak_med = median_min_max(&peak_n).0;
    let frac: Vec<f64> = gflops.iter().map(|g| g / peak_med).collect();

    let mut r = Report::new(
        "ch05",
        name,
        "Throughput of the seed MNIST CNN from scratch, and the machine's peak",
    );
    r.config = serde_json::to_value(cfg)?;
    r.seeds = vec![cfg.seed];
    let cols = vec![
        col("measurement", Format::Int),
        col("median", Format::Fixed(2)),
        col("min", Format::Fixed(2)),
        col("max", Format::Fixed(2)),
        col("unit", Format::Int),
    ];
    let mut rows = vec![summary_row(
        &format!(
            "training, from scratch, batch {}, {} threads",
            cfg.batch_size, cfg.threads
        ),
        &train,
        "images/s",
    )];
    for (b, v) in &infer {
        rows.push(summary_row(
            &format!(
                "inference, from scratch, batch {b}, {} threads",
                cfg.threads
            ),
            v,
            "images/s",
        ));
    }
    rows.push(summary_row(
        &format!("training, candle, batch {}", cfg.batch_size),
        &candle_train,
        "images/s",
    ));
    for (b, v) in &candle_infer {
        rows.push(summary_row(
            &format!("inference, candle, batch {b}"),
            v,
            "images/s",
        ));
    }
    rows.push(summary_row(
        "CPU time per 1,000 training images, 1 thread",
        &cpu,
        "CPU-s",
    ));
    rows.push(summary_row(
        &format!(
            "CPU time per 1,000 training images, {} threads (all threads)",
            cfg.threads
        ),
        &cpu_n,
        "CPU-s",
    ));
    r.tables.push(Table {
        name: "throughput".into(),
        caption: "Throughput of the seed CNN (synthetic MNIST-shaped batches): median, \
                  min and max over the runs."
            .into(),
        columns: cols.clone(),
        rows,
    });
    let rows = vec![
        summary_row(
            &format!("FMA peak, 1 thread ({})", isa.name()),
            &peak1,
            "GFLOP/s",
        ),
        summary_row(
            &format!("FMA peak, {} threads ({})", cfg.threads, isa.name()),
            &peak_n,
            "GFLOP/s",
        ),
        summary_row(
            &format!("SGEMM n = {} (the layers' GEMM)", cfg.gemm_n),
            &sgemm,
            "GFLOP/s",
        ),
        summary_row(
            &format!("training step, from scratch, {} threads", cfg.threads),
            &gflops,
            "GFLOP/s",
        ),
        summary_row(
            &format!("training step / FMA peak, {} threads", cfg.threads),
            &frac.iter().map(|f| f * 100.0).collect::<Vec<_>>(),
            "%",
        ),
    ];
    r.tables.push(Table {
        name: "compute".into(),
        caption: "Arithmetic throughput: the measured FMA peak, SGEMM, and the training \
                  step's FLOPs (counted analytically) per second."
            .into(),
        columns: cols,
        rows,
    });
    r.tables.push(Table {
        name: "profile".into(),
        caption: format!(
            "Where a training step's time goes (batch {}, {} threads): median \
             milliseconds per batch of each layer's forward and backward pass, the loss \
             and the Adam step; then the same in CPU time with everything on one \
             thread (insensitive to other load on the machine).",
            cfg.batch_size, cfg.threads
        ),
        columns: vec![
            col("layer", Format::Int),
            col("forward ms", Format::Fixed(2)),
            col("backward ms", Format::Fixed(2)),
            col("forward CPU-ms, 1 thread", Format::Fixed(2)),
            col("backward CPU-ms, 1 thread", Format::Fixed(2)),
        ],
        rows: prof
            .iter()
            .zip(&prof_cpu)
            .map(|((n, f, b), (_, fc, bc))| {
                vec![
                    n.as_str().into(),
                    Value::Num(*f),
                    Value::Num(*b),
                    Value::Num(*fc),
                    Value::Num(*bc),
                ]
            })
            .collect(),
    });
    r.tables.push(Table {
        name: "flops".into(),
        caption: "FLOPs per training image (2 per multiply-add; forward, then the \
                  weight-gradient and input-gradient products of the backward pass)."
            .into(),
        columns: vec![
            col("layer", Format::Int),
            col("forward MFLOP", Format::Fixed(3)),
            col("training MFLOP", Format::Fixed(3)),
        ],
        rows: seed_cnn_macs()
            .iter()
            .map(|(n, m)| {
                let f = 2.0 * *m as f64 / 1e6;
                vec![n.as_str().into(), Value::Num(f), Value::Num(3.0 * f)]
            })
            .chain(std::iter::once(vec![
                "total".into(),
                Value::Num(flops / 3e6),
                Value::Num(flops / 1e6),
            ]))
            .collect(),
    });
    if let Some(base) = baseline {
        let mut rows = vec![];
        let pairs = [
            ("throughput", "training, from scratch", "training images/s"),
            (
                "throughput",
                "inference, from scratch, batch 1",
                "inference images/s, batch 1",
            ),
            (
                "throughput",
                "inference, from scratch, batch 256",
                "inference images/s, batch 256",
            ),
            (
                "throughput",
                "CPU time per 1,000",
                "CPU-s per 1,000 training images, 1 thread",
            ),
            ("compute", "SGEMM", "SGEMM GFLOP/s (the layers' GEMM)"),
            (
                "compute",
                "training step, from scratch",
                "training step GFLOP/s",
            ),
        ];
        for (table, what, label) in pairs {
            let (Some(b), Some(a)) =
                (median_of(base, table, what), median_of(&r, table, what))
            else {
                continue;
            };
            rows.push(vec![
                label.into(),
                Value::Num(b),
                Value::Num(a),
                Value::Num(a / b),
            ]);
        }
        r.tables.push(Table {
            name: "before_after".into(),
            caption:
                "Before (the first implementation, measured by the same harness) and \
                      after: medians, and their ratio."
                    .into(),
            columns: vec![
                col("measurement", Format::Int),
                col("before", Format::Fixed(2)),
                col("after", Format::Fixed(2)),
                col("after / before", Format::Fixed(2)),
            ],
            rows,
        });
        // Per layer: before, on one thread (the first implementation had no threads),
        // and after, in CPU time on one thread and in elapsed time on all threads.
        if let (Some(before), Some(after)) = (base.table("profile"), r.table("profile")) {
            let rows = before
                .rows
                .iter()
                .filter_map(|b| {
                    let a = after.rows.iter().find(|a| a[0] == b[0])?;
                    Some(vec![
                        b[0].clone(),
                        b[1].clone(),
                        b[2].clone(),
                        a[3].clone(),
                        a[4].clone(),
                        a[1].clone(),
                        a[2].clone(),
                    ])
                })
                .collect();
            r.tables.push(Table {
                name: "profile_before_after".into(),
                caption: format!(
                    "Milliseconds per batch of {}, per layer: before (one thread), after \
                     in CPU time on one thread, and after in elapsed time on {} threads.",
                    cfg.batch_size, cfg.threads
                ),
                columns: vec![
                    col("layer", Format::Int),
                    col("before fwd", Format::Fixed(2)),
                    col("before bwd", Format::Fixed(2)),
                    col("after fwd, 1 thread CPU", Format::Fixed(2)),
                    col("after bwd, 1 thread CPU", Format::Fixed(2)),
                    col(
                        &format!("after fwd, {} threads", cfg.threads),
                        Format::Fixed(2),
                    ),
                    col(
                        &format!("after bwd, {} threads", cfg.threads),
                        Format::Fixed(2),
                    ),
                ],
                rows,
            });
        }
        if let (Some(b), Some(a)) = (
            median_of(base, "throughput", "training, from scratch"),
            median_of(&r, "throughput", "training, from scratch"),
        ) {
            r.fact("train_speedup", a / b, Format::Fixed(1));
        }
    }
    r.tables.push(Table {
        name: "reference".into(),
        caption:
            "Reported for the same model on this machine kind (2 threads, batch 128, \
                  quiet machine): context, not measured by this book."
                .into(),
        columns: vec![
            col("implementation", Format::Int),
            col("reported", Format::Int),
            col("unit", Format::Int),
        ],
        rows: REFERENCE
            .iter()
            .map(|(what, v, unit)| vec![(*what).into(), Value::Num(*v), (*unit).into()])
            .collect(),
    });
    r.fact("train_images_per_s", median_min_max(&train).0, Format::Int);
    r.fact("load_before", load_before, Format::Fixed(2));
    r.fact("load_after", load_after, Format::Fixed(2));
    r.fact("runs", cfg.runs as f64, Format::Int);
    Ok(r)
}
