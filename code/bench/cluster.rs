//! Timing of the clustering algorithms against scikit-learn on the same inputs, in one
//! run: k-means on the MNIST pixels and on their first 50 principal components, DBSCAN
//! on two moons, Ward linkage on MNIST images (against scikit-learn's
//! `AgglomerativeClustering`), and the three other linkages on the same images
//! (against scipy's `linkage`, which scikit-learn's runs on). Each row reports CPU
//! seconds (all threads; insensitive to other load on the machine) and wall seconds,
//! ours and the reference's, and the quality each reached (ARI against the digit
//! classes, or the number of clusters), so that speed is never bought with a worse
//! answer. The facts split our Ward time into the distance matrix and the chain.
//!
//! scikit-learn runs through `python3 -c` (the script `cluster_sklearn.py`, embedded)
//! when it is importable; otherwise its columns are empty and the reason is printed.

use std::time::Instant;

use anyhow::{Context, Result};
use ndarray::Array2;
use serde::Serialize;

use super::measure::{load_average, median_min_max, process_cpu_seconds};
use super::python;
use crate::cluster::agglomerative::condensed_distances;
use crate::cluster::metrics::as_i64;
use crate::cluster::moons::make_moons;
use crate::cluster::{adjusted_rand_index, Agglomerative, Dbscan, KMeans, Linkage};
use crate::data::{DataDir, Dataset, Split};
use crate::linalg::{Pca, Solver};
use crate::progress;
use crate::report::{col, Format, Report, Table, Value};

/// The scikit-learn side, run by `python3 -c`.
const SKLEARN_SCRIPT: &str = include_str!("cluster_sklearn.py");

/// What to time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterBenchConfig {
    /// MNIST training images for k-means (the first ones).
    pub n_kmeans: usize,
    /// MNIST images for Ward and the other linkages (the first ones).
    pub n_ward: usize,
    /// Two-moons points for DBSCAN.
    pub n_moons: usize,
    /// DBSCAN's radius.
    pub eps: f64,
    /// Timed runs per row (each its own seed for k-means); the table shows the median.
    pub runs: usize,
    /// Threads, ours and scikit-learn's.
    pub threads: usize,
    /// First seed.
    pub seed: u64,
}

impl ClusterBenchConfig {
    /// Seconds: small inputs that exercise every row.
    pub fn quick() -> Self {
        ClusterBenchConfig {
            n_kmeans: 2000,
            n_ward: 500,
            n_moons: 2000,
            runs: 1,
            ..Self::full()
        }
    }

    /// The rows: 60,000 images, 5,000 for Ward, 20,000 moons, two threads.
    pub fn full() -> Self {
        ClusterBenchConfig {
            n_kmeans: 60_000,
            n_ward: 5000,
            n_moons: 20_000,
            eps: 0.05,
            runs: 3,
            threads: 2,
            seed: 0,
        }
    }
}

/// One timed answer: CPU seconds, wall seconds, labels.
struct Timed {
    cpu: f64,
    wall: f64,
    labels: Vec<i64>,
}

fn ours(threads: usize, f: impl FnOnce() -> Result<Vec<i64>> + Send) -> Result<Timed> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let (c0, w0) = (process_cpu_seconds(), Instant::now());
    let labels = pool.install(f)?;
    Ok(Timed {
        cpu: process_cpu_seconds() - c0,
        wall: w0.elapsed().as_secs_f64(),
        labels,
    })
}

fn sklearn(
    task: &str,
    x: &Array2<f64>,
    k: usize,
    eps: f64,
    threads: usize,
    seed: u64,
) -> Result<Timed> {
    let tmp = std::env::temp_dir()
        .join(format!("dlbook-cluster-{}-{task}", std::process::id()));
    let (data, out) = (tmp.with_extension("f64"), tmp.with_extension("labels"));
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&data, bytes)
        .context("writing the benchmark's input for scikit-learn")?;
    let (n, d) = x.dim();
    let args = [
        task.to_string(),
        data.display().to_string(),
        n.to_string(),
        d.to_string(),
        k.to_string(),
        eps.to_string(),
        threads.to_string(),
        seed.to_string(),
        out.display().to_string(),
    ];
    let env = [("OMP_NUM_THREADS", threads.to_string())];
    let text = python::run(SKLEARN_SCRIPT, &args, &env, None);
    let _ = std::fs::remove_file(&data);
    let text = text?;
    let labels = std::fs::read_to_string(&out)
        .context("reading scikit-learn's labels")?
        .lines()
        .map(|l| l.trim().parse::<i64>().context("a label"))
        .collect::<Result<Vec<_>>>()?;
    let _ = std::fs::remove_file(&out);
    Ok(Timed {
        cpu: python::value(&text, "cpu_s")?,
        wall: python::value(&text, "wall_s")?,
        labels,
    })
}

/// scikit-learn's and scipy's versions, or why they cannot run.
fn sklearn_version() -> Result<String> {
    python::version(
        "import sklearn, scipy, threadpoolctl; \
         print(f'scikit-learn {sklearn.__version__}, scipy {scipy.__version__}')",
        "scikit-learn, scipy and threadpoolctl",
    )
}

/// `name` with its first letter in capitals.
fn capitalised(name: &str) -> String {
    let mut c = name.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Runs the benchmark and returns its report, named `stem`.
pub fn run(cfg: &ClusterBenchConfig, dir: &DataDir, stem: &str) -> Result<Report> {
    crate::gemm::single_threaded_blas();
    let mut rep = Report::new(
        "ch12",
        stem,
        "Clustering: ours against scikit-learn, same inputs, same run",
    );
    rep.config = serde_json::to_value(cfg)?;
    let version = sklearn_version()
        .map_err(|e| progress::println(format!("scikit-learn not timed: {e:#}")))
        .ok();
    let mnist = Dataset::mnist(dir, Split::Train, cfg.n_kmeans.max(cfg.n_ward))?;
    let pixels = mnist
        .flat()
        .mapv(|v| f64::from((v * 255.0).round()) / 255.0);
    let y = as_i64(mnist.labels());
    let kx = pixels.slice(ndarray::s![..cfg.n_kmeans, ..]).to_owned();
    let pca = Pca {
        center: true,
        solver: Solver::Lapack,
    }
    .fit(&kx, 50)?
    .transform(&kx);
    let wx = pixels.slice(ndarray::s![..cfg.n_ward, ..]).to_owned();
    let (moons, _) = make_moons(cfg.n_moons, 0.05, cfg.seed);
    let ari = |labels: &[i64], n: usize| adjusted_rand_index(&y[..n], labels);
    let n_clusters = |labels: &[i64]| {
        let mut v: Vec<i64> = labels.iter().copied().filter(|&l| l >= 0).collect();
        v.sort_unstable();
        v.dedup();
        v.len() as f64
    };
    type Quality<'a> = Box<dyn Fn(&[i64]) -> f64 + 'a>;
    let mut tasks: Vec<(&str, String, &Array2<f64>, usize, Quality)> = vec![
        (
            "kmeans_mnist",
            format!(
                "k-means, MNIST 784-d ({}), k = 10, 1 k-means++ init",
                cfg.n_kmeans
            ),
            &kx,
            10,
            Box::new(|l: &[i64]| ari(l, cfg.n_kmeans)),
        ),
        (
            "kmeans_pca50",
            format!("k-means, MNIST PCA-50 ({}), k = 10", cfg.n_kmeans),
            &pca,
            10,
            Box::new(|l: &[i64]| ari(l, cfg.n_kmeans)),
        ),
        (
            "dbscan_moons",
            format!("DBSCAN, {} moons, eps {}", cfg.n_moons, cfg.eps),
            &moons,
            0,
            Box::new(n_clusters),
        ),
        (
            "ward_mnist",
            format!("Ward, first {} MNIST images, cut at 10", cfg.n_ward),
            &wx,
            10,
            Box::new(|l: &[i64]| ari(l, cfg.n_ward)),
        ),
    ];
    for l in [Linkage::Complete, Linkage::Average, Linkage::Single] {
        tasks.push((
            match l {
                Linkage::Complete => "linkage_complete",
                Linkage::Average => "linkage_average",
                _ => "linkage_single",
            },
            format!(
                "{} linkage, first {} MNIST images, cut at 10 (scipy)",
                capitalised(l.name()),
                cfg.n_ward
            ),
            &wx,
            10,
            Box::new(|l: &[i64]| ari(l, cfg.n_ward)),
        ));
    }
    let mut rows = Vec::new();
    let bar = progress::bar((tasks.len() * cfg.runs) as u64, "cluster_speed");
    for (task, label, x, k, quality) in &tasks {
        let (mut oc, mut ow, mut oq, mut sc, mut sw, mut sq) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for run in 0..cfg.runs {
            let seed = cfg.seed + run as u64;
            let t = ours(cfg.threads, || -> Result<Vec<i64>> {
                Ok(match *task {
                    "dbscan_moons" => Dbscan::new(cfg.eps).fit(x)?.labels,
                    "ward_mnist" => {
                        as_i64(&Agglomerative::new(Linkage::Ward).fit(x)?.cut(*k)?)
                    }
                    linkage if linkage.starts_with("linkage_") => {
                        let l = Linkage::ALL
                            .into_iter()
                            .find(|l| linkage.ends_with(l.name()))
                            .expect("a linkage task names its linkage");
                        as_i64(&Agglomerative::new(l).fit(x)?.cut(*k)?)
                    }
                    _ => as_i64(&KMeans::new(*k).seed(seed).fit(x)?.labels),
                })
            })?;
            oc.push(t.cpu);
            ow.push(t.wall);
            oq.push(quality(&t.labels));
            if version.is_some() {
                match sklearn(task, x, *k, cfg.eps, cfg.threads, seed) {
                    Ok(t) => {
                        sc.push(t.cpu);
                        sw.push(t.wall);
                        sq.push(quality(&t.labels));
                    }
                    Err(e) => {
                        progress::println(format!("scikit-learn failed on {task}: {e:#}"))
                    }
                }
            }
            bar.inc(1);
        }
        let cell = |v: Vec<f64>| {
            if v.is_empty() {
                Value::Text("–".into())
            } else {
                Value::Num(median_min_max(&v).0)
            }
        };
        let spread = |v: Vec<f64>| {
            if v.len() > 1 {
                Value::Seeds(v)
            } else if v.is_empty() {
                Value::Text("–".into())
            } else {
                Value::Num(v[0])
            }
        };
        rows.push(vec![
            label.clone().into(),
            cell(oc),
            cell(ow),
            spread(oq),
            cell(sc),
            cell(sw),
            spread(sq),
        ]);
    }
    bar.finish_and_clear();
    // Where Ward's time goes: the distance matrix alone, timed the same way.
    let mut dist_cpu = Vec::new();
    for _ in 0..cfg.runs {
        let t = ours(cfg.threads, || {
            Ok(vec![condensed_distances(&wx).len() as i64])
        })?;
        dist_cpu.push(t.cpu);
    }
    rep.fact(
        "ward_distances_cpu_s",
        median_min_max(&dist_cpu).0,
        Format::Fixed(2),
    );
    rep.fact("load_average", load_average(), Format::Fixed(2));
    rep.tables.push(Table {
        name: "cluster_speed".into(),
        caption: format!(
            "Median over {} runs (k-means: one k-means++ seed per run) on {} threads, ours \
             and the reference ({}) on the same inputs in the same process run: \
             scikit-learn, or scipy's `linkage` and `fcluster` on the rows marked scipy; \
             CPU seconds count every thread. Quality: ARI against the digit classes (mean \
             ± std over the runs), or the number of clusters for DBSCAN. 1-minute load \
             average at the end: see the facts.",
            cfg.runs,
            cfg.threads,
            version.as_deref().unwrap_or("(not installed)")
        ),
        columns: vec![
            col("task", Format::Int),
            col("ours CPU s", Format::Fixed(2)),
            col("ours wall s", Format::Fixed(2)),
            col("ours quality", Format::Fixed(3)),
            col("reference CPU s", Format::Fixed(2)),
            col("reference wall s", Format::Fixed(2)),
            col("reference quality", Format::Fixed(3)),
        ],
        rows,
    });
    Ok(rep)
}
