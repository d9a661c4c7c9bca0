//! Experiment `clustering`: k-means, DBSCAN and agglomerative clustering on two moons,
//! iris, wine, digits and MNIST (PCA-50), judged against the true classes.
//!
//! Every algorithm is asked for as many clusters as there are classes (DBSCAN instead
//! gets a radius, and runs on the moons only: on the other sets no single radius
//! separates the classes). k-means starts from one k-means++ draw per seed, so its rows
//! carry a spread over seeds; the hierarchies are deterministic. Iris and wine are
//! standardised (wine's features differ in scale by three orders of magnitude); digits
//! keeps its pixel counts; MNIST's pixels are scaled to [0, 1] and projected on their
//! first 50 principal components.

use anyhow::Result;
use ndarray::{Array2, Axis};
use serde::Serialize;

use super::{Experiment, Preset};
use crate::cluster::metrics::as_i64;
use crate::cluster::moons::make_moons;
use crate::cluster::{
    adjusted_rand_index, normalized_mutual_info, silhouette_samples, silhouette_score,
    Agglomerative, Dbscan, Dendrogram, KMeans, Linkage,
};
use crate::data::folds::Standardizer;
use crate::data::{self, read_table, DataDir, Dataset, Split, TableSet};
use crate::linalg::{Pca, Solver};
use crate::progress;
use crate::report::{col, Figure, Format, Group, Plot, Report, Scale, Series, Table, Value};

/// Experiment `clustering`, registered in [`super::all`].
pub struct Clustering;

impl Experiment for Clustering {
    const NAME: &'static str = "clustering";
    const CHAPTER: &'static str = "ch12";
    const TITLE: &'static str = "k-means, DBSCAN and agglomerative clustering against the true classes";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Seeds of the k-means++ draws (and of the generated moons: one set per run).
    pub seeds: Vec<u64>,
    /// Points of the generated two moons.
    pub n_moons: usize,
    /// Standard deviation of the moons' noise.
    pub moons_noise: f64,
    /// DBSCAN's radius on the moons.
    pub moons_eps: f64,
    /// DBSCAN's density threshold.
    pub min_samples: usize,
    /// MNIST training images clustered (the first ones).
    pub n_mnist: usize,
    /// Principal components MNIST is projected on.
    pub mnist_pca: usize,
    /// Largest k of the elbow and silhouette curves (on digits).
    pub k_max: usize,
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            seeds: vec![0, 1, 2, 3, 4],
            n_moons: 1000,
            moons_noise: 0.05,
            moons_eps: 0.1,
            min_samples: 5,
            n_mnist: 5000,
            mnist_pca: 50,
            k_max: 15,
        }
    }

    /// The test configuration: two seeds, 1,000 MNIST digits, k up to 12.
    fn quick() -> Self {
        Config { seeds: vec![0, 1], n_mnist: 1000, k_max: 12, ..Self::full() }
    }
}

/// One data set: features, true classes, its name.
struct Set {
    name: &'static str,
    x: Array2<f64>,
    y: Vec<usize>,
}

fn n_classes(y: &[usize]) -> usize {
    y.iter().max().map_or(0, |m| m + 1)
}

fn sets(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<Vec<Set>> {
    let mut out = Vec::new();
    let (x, y) = make_moons(cfg.n_moons, cfg.moons_noise, cfg.seeds[0]);
    out.push(Set { name: "moons", x, y });
    for (set, name, standardise) in [
        (TableSet::Iris, "iris", true),
        (TableSet::Wine, "wine", true),
        (TableSet::Digits, "digits", false),
    ] {
        let t = read_table(dir, set)?;
        r.data.push(data::data_ref(set.file()));
        let x = if standardise { Standardizer::fit(&t.features).transform(&t.features) } else { t.features };
        out.push(Set { name, x, y: t.labels });
    }
    let mnist = Dataset::mnist(dir, Split::Train, cfg.n_mnist)?;
    let (im, lab) = data::mnist_files(Split::Train);
    r.data.push(data::data_ref(im));
    r.data.push(data::data_ref(lab));
    let pixels = mnist.flat().mapv(|v| f64::from((v * 255.0).round()) / 255.0);
    let pca = Pca { center: true, solver: Solver::Lapack }.fit(&pixels, cfg.mnist_pca)?;
    out.push(Set { name: "mnist_pca50", x: pca.transform(&pixels), y: mnist.labels().to_vec() });
    Ok(out)
}

/// ARI and NMI of `labels` against the classes.
fn scores(y: &[usize], labels: &[i64]) -> (f64, f64) {
    let y = as_i64(y);
    (adjusted_rand_index(&y, labels), normalized_mutual_info(&y, labels))
}

/// The silhouette where it is defined (2 to N - 1 clusters; noise counts as one).
fn silhouette_or_nan(x: &Array2<f64>, labels: &[i64]) -> f64 {
    let mut l: Vec<usize> = labels.iter().map(|&v| (v + 1) as usize).collect();
    let mut distinct = l.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 2 || distinct.len() >= l.len() {
        return f64::NAN;
    }
    for v in &mut l {
        *v = distinct.binary_search(v).expect("present");
    }
    silhouette_score(x, &l)
}

fn scatter(name: &str, title: String, x: &Array2<f64>, labels: &[i64]) -> Figure {
    let mut names: Vec<i64> = labels.to_vec();
    names.sort_unstable();
    names.dedup();
    let groups = names
        .iter()
        .map(|&c| {
            let rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
            Group {
                name: if c < 0 { "noise".into() } else { format!("cluster {c}") },
                x: rows.iter().map(|&i| x[[i, 0]]).collect(),
                y: rows.iter().map(|&i| x[[i, 1]]).collect(),
            }
        })
        .collect();
    Figure { name: name.into(), title, plot: Plot::Scatter { x_label: "x1".into(), y_label: "x2".into(), groups } }
}

// ANCHOR: dendrogram_path
/// The dendrogram as one polyline: a depth-first walk that draws every merge as a
/// bracket and retraces its steps back up (retraced segments are drawn twice, which
/// does not show). Leaves sit at x = 0, 1, ... in the order the walk meets them.
pub fn dendrogram_path(d: &Dendrogram) -> (Vec<f64>, Vec<f64>) {
    let n = d.n;
    let z = &d.linkage;
    let child = |c: usize| (z[[c - n, 0]] as usize, z[[c - n, 1]] as usize);
    // Leaf order and every node's x (leaves) or bracket middle (merges), bottom-up.
    let mut order = Vec::with_capacity(n);
    let mut stack = vec![2 * n - 2];
    while let Some(c) = stack.pop() {
        if c < n {
            order.push(c);
        } else {
            let (a, b) = child(c);
            stack.extend([b, a]);
        }
    }
    let mut xs = vec![0.0; 2 * n - 1];
    for (pos, &leaf) in order.iter().enumerate() {
        xs[leaf] = pos as f64;
    }
    let height = |c: usize| if c < n { 0.0 } else { z[[c - n, 2]] };
    for t in 0..n - 1 {
        let (a, b) = child(n + t);
        xs[n + t] = 0.5 * (xs[a] + xs[b]);
    }
    let (mut px, mut py) = (vec![xs[2 * n - 2]], vec![height(2 * n - 2)]);
    fn walk(c: usize, n: usize, xs: &[f64], h: &dyn Fn(usize) -> f64,
            child: &dyn Fn(usize) -> (usize, usize), px: &mut Vec<f64>, py: &mut Vec<f64>) {
        if c < n {
            return;
        }
        let top = h(c);
        let (a, b) = child(c);
        for k in [a, b] {
            for (x, y) in [(xs[k], top), (xs[k], h(k))] {
                px.push(x);
                py.push(y);
            }
            walk(k, n, xs, h, child, px, py);
            px.push(xs[k]);
            py.push(top);
        }
        px.push(xs[c]);
        py.push(top);
    }
    walk(2 * n - 2, n, &xs, &height, &child, &mut px, &mut py);
    (px, py)
}
// ANCHOR_END: dendrogram_path

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    r.seeds = cfg.seeds.clone();
    let sets = sets(cfg, dir, r)?;
    let mut rows: Vec<Vec<Value>> = Vec::new();
    let bar = progress::bar(sets.len() as u64, "clustering");
    for set in &sets {
        let k = n_classes(&set.y);
        let mut push = |r: &mut Report, algo: &str, runs: Vec<Vec<i64>>| {
            let (mut ari, mut nmi, mut sil) = (vec![], vec![], vec![]);
            for labels in &runs {
                let (a, m) = scores(&set.y, labels);
                ari.push(a);
                nmi.push(m);
                sil.push(silhouette_or_nan(&set.x, labels));
            }
            let key = format!("{}_{}", set.name, algo.to_lowercase().replace([' ', '-'], "_"));
            r.fact(&format!("ari_{key}"), Value::Seeds(ari.clone()), Format::Fixed(3));
            r.fact(&format!("nmi_{key}"), Value::Seeds(nmi.clone()), Format::Fixed(3));
            let seeds = |v: Vec<f64>| if v.len() > 1 { Value::Seeds(v) } else { Value::Num(v[0]) };
            rows.push(vec![
                set.name.into(),
                algo.into(),
                seeds(ari),
                seeds(nmi),
                seeds(sil),
            ]);
        };
        let km: Vec<Vec<i64>> = cfg
            .seeds
            .iter()
            .map(|&s| KMeans::new(k).seed(s).fit(&set.x).map(|f| as_i64(&f.labels)))
            .collect::<Result<_>>()?;
        push(r, "k-means", km);
        if set.name == "moons" {
            let db = Dbscan::new(cfg.moons_eps).min_samples(cfg.min_samples).fit(&set.x)?;
            r.fact("moons_dbscan_clusters", db.n_clusters as f64, Format::Int);
            r.fact("moons_dbscan_noise", db.n_noise() as f64, Format::Int);
            push(r, "DBSCAN", vec![db.labels.clone()]);
        }
        for l in Linkage::ALL {
            let cut = Agglomerative::new(l).fit(&set.x)?.cut(k)?;
            push(r, &format!("{} linkage", l.name()), vec![as_i64(&cut)]);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    r.tables.push(Table {
        name: "scores".into(),
        caption: format!(
            "Agreement with the true classes (adjusted Rand index, normalised mutual \
             information) and mean silhouette, each algorithm asked for as many clusters \
             as there are classes; k-means as mean ± std over {} k-means++ seeds. \
             DBSCAN (eps = {}, min_samples = {}) on the moons only; its silhouette counts \
             the noise as one cluster. MNIST: the first {} training images on {} \
             principal components.",
            cfg.seeds.len(),
            cfg.moons_eps,
            cfg.min_samples,
            cfg.n_mnist,
            cfg.mnist_pca
        ),
        columns: vec![
            col("data", Format::Int),
            col("algorithm", Format::Int),
            col("ARI", Format::Fixed(3)),
            col("NMI", Format::Fixed(3)),
            col("silhouette", Format::Fixed(3)),
        ],
        rows,
    });

    // The moons: what each method gets right and wrong.
    let moons = &sets[0];
    let km = KMeans::new(2).seed(cfg.seeds[0]).fit(&moons.x)?;
    r.figures.push(scatter("moons_kmeans", "k-means (k = 2) on two moons".into(), &moons.x, &as_i64(&km.labels)));
    let db = Dbscan::new(cfg.moons_eps).min_samples(cfg.min_samples).fit(&moons.x)?;
    r.figures.push(scatter(
        "moons_dbscan",
        format!("DBSCAN (eps = {}, min_samples = {}) on two moons", cfg.moons_eps, cfg.min_samples),
        &moons.x,
        &db.labels,
    ));
    let single = Agglomerative::new(Linkage::Single).fit(&moons.x)?.cut(2)?;
    let sizes = [0, 1].map(|c| single.iter().filter(|&&l| l == c).count());
    r.fact("moons_single_smaller_cluster", sizes[0].min(sizes[1]) as f64, Format::Int);
    r.figures.push(scatter("moons_single", "Single linkage cut into 2 clusters on two moons".into(), &moons.x, &as_i64(&single)));

    // Elbow and silhouette against k, on digits.
    let digits = &sets[3];
    let ks: Vec<usize> = (2..=cfg.k_max).collect();
    let mut inertia = Vec::new();
    let mut sil = Vec::new();
    for &k in &ks {
        let f = KMeans::new(k).n_init(3).seed(cfg.seeds[0]).fit(&digits.x)?;
        inertia.push(f.inertia);
        sil.push(silhouette_score(&digits.x, &f.labels));
    }
    let best = ks[sil.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).expect("k_max >= 2").0];
    r.fact("digits_best_silhouette_k", best as f64, Format::Int);
    let kx: Vec<f64> = ks.iter().map(|&k| k as f64).collect();
    r.figures.push(Figure {
        name: "elbow".into(),
        title: "k-means inertia against k on digits (best of 3 k-means++ starts)".into(),
        plot: Plot::Lines {
            x_label: "k".into(),
            y_label: "inertia".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![Series { name: "inertia".into(), x: kx.clone(), y: inertia, band: None }],
        },
    });
    r.figures.push(Figure {
        name: "silhouette_k".into(),
        title: "Mean silhouette against k on digits".into(),
        plot: Plot::Lines {
            x_label: "k".into(),
            y_label: "mean silhouette".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![Series { name: "silhouette".into(), x: kx, y: sil, band: None }],
        },
    });

    // A dendrogram (Ward on iris) and a silhouette plot (k-means, k = 3, on iris).
    let iris = &sets[1];
    let ward = Agglomerative::new(Linkage::Ward).fit(&iris.x)?;
    let (px, py) = dendrogram_path(&ward);
    r.figures.push(Figure {
        name: "dendrogram".into(),
        title: "Ward dendrogram of the 150 standardised irises".into(),
        plot: Plot::Lines {
            x_label: "irises, in the order of the tree".into(),
            y_label: "merge height (Ward distance)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![Series { name: "Ward".into(), x: px, y: py, band: None }],
        },
    });
    let km3 = KMeans::new(3).seed(cfg.seeds[0]).fit(&iris.x)?;
    let s = silhouette_samples(&iris.x, &km3.labels);
    let mut series = Vec::new();
    let mut offset = 0.0;
    for c in 0..3 {
        let mut v: Vec<f64> = (0..s.len()).filter(|&i| km3.labels[i] == c).map(|i| s[i]).collect();
        v.sort_by(|a, b| b.total_cmp(a));
        let x: Vec<f64> = (0..v.len()).map(|i| offset + i as f64).collect();
        offset += v.len() as f64 + 5.0;
        series.push(Series { name: format!("cluster {c}"), x, y: v, band: None });
    }
    r.fact("iris_kmeans_negative_silhouettes", s.iter().filter(|&&v| v < 0.0).count() as f64, Format::Int);
    r.figures.push(Figure {
        name: "silhouette_plot".into(),
        title: "Silhouette of every iris under k-means (k = 3), sorted within clusters".into(),
        plot: Plot::Lines {
            x_label: "irises, by cluster".into(),
            y_label: "silhouette s(i)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series,
        },
    });
    let _ = Axis(0);
    Ok(())
}
