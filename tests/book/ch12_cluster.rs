//! Chapter 12.1, clustering: k-means, DBSCAN and agglomerative clustering against
//! scikit-learn and scipy on fixed inputs (the fixture in `tests/fixtures/ch12_cluster/`,
//! made by its `make.py`), the metrics against scikit-learn's, and the claims about the
//! experiment's results.

use std::path::Path;

use dlbook::cluster::metrics::as_i64;
use dlbook::cluster::{
    adjusted_rand_index, normalized_mutual_info, silhouette_samples, silhouette_score,
    Agglomerative, Dbscan, KMeans, Linkage,
};
use dlbook::data::{read_table, DataDir, TableSet};
use ndarray::{Array2, Axis};
use serde::Deserialize;

fn dir() -> DataDir {
    DataDir::resolve(None)
}

fn table(set: TableSet) -> (Array2<f64>, Vec<usize>) {
    let t = read_table(&dir(), set).unwrap();
    (t.features, t.labels)
}

/// Floats are stored as the strings Python's `repr` writes, parsed exactly here.
fn f(s: &str) -> f64 {
    s.parse().unwrap()
}

#[derive(Deserialize)]
struct Expected {
    kmeans: Vec<KMeansCase>,
    dbscan: Vec<DbscanCase>,
    linkage: LinkageCases,
    scores: Vec<ScoreCase>,
    silhouette: Vec<SilhouetteCase>,
}

#[derive(Deserialize)]
struct KMeansCase {
    name: String,
    rows: Vec<usize>,
    init_rows: Vec<usize>,
    labels: Vec<usize>,
    centres: Vec<Vec<String>>,
    inertia: String,
    n_iter: usize,
}

#[derive(Deserialize)]
struct DbscanCase {
    eps: String,
    min_samples: usize,
    labels: Vec<i64>,
    core_samples: Vec<usize>,
}

#[derive(Deserialize)]
struct LinkageCases {
    rows: Vec<usize>,
    methods: Vec<LinkageCase>,
}

#[derive(Deserialize)]
struct LinkageCase {
    method: String,
    z: Vec<Vec<String>>,
    cuts: std::collections::BTreeMap<String, Vec<usize>>,
}

#[derive(Deserialize)]
struct ScoreCase {
    name: String,
    a: Vec<i64>,
    b: Vec<i64>,
    ari: String,
    nmi: String,
}

#[derive(Deserialize)]
struct SilhouetteCase {
    name: String,
    labels: Vec<usize>,
    mean: String,
    samples: Vec<String>,
}

fn expected() -> Expected {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ch12_cluster/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// k-means from given centres against scikit-learn's Lloyd: the same labels and number
/// of iterations, exactly, and centres and inertia to 1e-9 relative. Not bit for bit:
/// both sides centre the data and assign by ||x||^2 - 2x.c + ||c||^2, but the matrix
/// products sum in different orders, so the distances differ in the last bits (a
/// relative 1e-15 or so), and the centres (means of the same rows) and the inertia (a
/// sum of 150 to 500 terms) inherit only that.
#[test]
fn kmeans_matches_scikit_learn_from_given_centres() {
    let (iris, _) = table(TableSet::Iris);
    let (digits, _) = table(TableSet::Digits);
    for case in expected().kmeans {
        let x = if case.name.starts_with("iris") {
            &iris
        } else {
            &digits
        };
        let x = x.select(Axis(0), &case.rows);
        let init = x.select(Axis(0), &case.init_rows);
        let fit = KMeans::new(case.init_rows.len())
            .init_centres(init)
            .fit(&x)
            .unwrap();
        assert_eq!(fit.labels, case.labels, "{}: labels", case.name);
        assert_eq!(fit.n_iter, case.n_iter, "{}: iterations", case.name);
        let inertia = f(&case.inertia);
        assert!(
            (fit.inertia - inertia).abs() <= 1e-9 * inertia,
            "{}: {} vs {inertia}",
            case.name,
            fit.inertia
        );
        for (ours, theirs) in fit.centres.rows().into_iter().zip(&case.centres) {
            for (a, b) in ours.iter().zip(theirs) {
                let b = f(b);
                assert!(
                    (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    "{}: centre {a} vs {b}",
                    case.name
                );
            }
        }
    }
}

/// DBSCAN on the committed moons sample against scikit-learn, at three radii (two
/// clusters and no noise; two clusters and noise; many small clusters): the same
/// labels and the same core samples, exactly (the neighbourhoods are exact sets, and
/// the clusters are numbered by the same scan).
#[test]
fn dbscan_matches_scikit_learn_on_the_moons_sample() {
    let (x, _) = table(TableSet::Moons);
    for case in expected().dbscan {
        let fit = Dbscan::new(f(&case.eps))
            .min_samples(case.min_samples)
            .fit(&x)
            .unwrap();
        assert_eq!(
            fit.core_samples, case.core_samples,
            "eps {}: core samples",
            case.eps
        );
        assert_eq!(fit.labels, case.labels, "eps {}: labels", case.eps);
    }
}

/// scipy's `linkage` on 60 iris rows, which hold duplicate rows and many tied distances:
/// the same merges in the same order, exactly, and heights to 1e-9 relative, for all
/// four linkages; and our cuts into 2 to 6 clusters are scipy's `cut_tree` partitions.
/// The merge order agrees even through the ties because both sides run the same
/// algorithm (Prim; the nearest-neighbour chain preferring the previous chain element,
/// then the lowest index) on the same distances; the heights differ at most by the
/// rounding of the Lance–Williams updates.
#[test]
fn linkage_matches_scipy_on_iris_rows() {
    let (iris, _) = table(TableSet::Iris);
    let cases = expected().linkage;
    let x = iris.select(Axis(0), &cases.rows);
    for case in cases.methods {
        let linkage = Linkage::ALL
            .into_iter()
            .find(|l| l.name() == case.method)
            .unwrap();
        let tree = Agglomerative::new(linkage).fit(&x).unwrap();
        for (t, (ours, theirs)) in
            tree.linkage.rows().into_iter().zip(&case.z).enumerate()
        {
            let theirs: Vec<f64> = theirs.iter().map(|v| f(v)).collect();
            assert_eq!(
                ours[0], theirs[0],
                "{} merge {t}: {ours} vs {theirs:?}",
                case.method
            );
            assert_eq!(
                ours[1], theirs[1],
                "{} merge {t}: {ours} vs {theirs:?}",
                case.method
            );
            assert_eq!(ours[3], theirs[3], "{} merge {t}: size", case.method);
            assert!(
                (ours[2] - theirs[2]).abs() <= 1e-9 * theirs[2].max(1.0),
                "{} merge {t}: height",
                case.method
            );
        }
        for (k, labels) in &case.cuts {
            let ours = tree.cut(k.parse().unwrap()).unwrap();
            assert_eq!(
                adjusted_rand_index(&as_i64(&ours), &as_i64(labels)),
                1.0,
                "{} cut {k}",
                case.method
            );
        }
    }
}

/// ARI and NMI on fixed labelings (one with noise labels -1 and more clusters than
/// classes) to 1e-12: both are short sums over a contingency table, so they differ from
/// scikit-learn's only by the order of a few additions.
#[test]
fn ari_and_nmi_match_scikit_learn() {
    for case in expected().scores {
        let ari = adjusted_rand_index(&case.a, &case.b);
        let nmi = normalized_mutual_info(&case.a, &case.b);
        assert!(
            (ari - f(&case.ari)).abs() < 1e-12,
            "{}: ARI {ari} vs {}",
            case.name,
            case.ari
        );
        assert!(
            (nmi - f(&case.nmi)).abs() < 1e-12,
            "{}: NMI {nmi} vs {}",
            case.name,
            case.nmi
        );
    }
}

/// The silhouette of every iris sample under three labelings, to 1e-12: each is a ratio
/// of two means of at most 150 distances.
#[test]
fn silhouette_matches_scikit_learn() {
    let (iris, _) = table(TableSet::Iris);
    for case in expected().silhouette {
        let s = silhouette_samples(&iris, &case.labels);
        for (i, (a, b)) in s.iter().zip(&case.samples).enumerate() {
            assert!(
                (a - f(b)).abs() < 1e-12,
                "{} sample {i}: {a} vs {b}",
                case.name
            );
        }
        let m = silhouette_score(&iris, &case.labels);
        assert!((m - f(&case.mean)).abs() < 1e-12, "{}: mean {m}", case.name);
    }
}

fn quick() -> &'static dlbook::report::Report {
    dlbook::experiments::quick("clustering", &dir()).unwrap()
}

fn fact(name: &str) -> f64 {
    quick()
        .get_fact(name)
        .unwrap_or_else(|| panic!("no fact {name}"))
}

/// On two moons k-means (mean over seeds) agrees with the moons little better than a
/// straight cut can, while DBSCAN finds exactly two clusters that are the moons.
#[test]
fn kmeans_fails_on_the_moons_and_dbscan_succeeds() {
    let km = fact("ari_moons_k_means");
    let db = fact("ari_moons_dbscan");
    assert!(km < 0.6, "k-means ARI on the moons {km}");
    assert!(db > 0.95, "DBSCAN ARI on the moons {db}");
    assert_eq!(fact("moons_dbscan_clusters"), 2.0);
}

/// Bad hyper-parameters are errors from `fit`, with a message, never panics.
#[test]
fn bad_hyper_parameters_are_errors_not_panics() {
    let (x, _) = table(TableSet::Iris);
    let msg = |r: anyhow::Result<()>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg(KMeans::new(0).fit(&x).map(|_| ())).contains("k >= 1"));
    assert!(msg(Dbscan::new(0.0).fit(&x).map(|_| ())).contains("eps > 0"));
    let tree = Agglomerative::new(Linkage::Ward).fit(&x).unwrap();
    assert!(msg(tree.cut(0).map(|_| ())).contains("1 <= k"));
}

/// Single linkage separates the moons perfectly (the gap between them is wider than any
/// step along a moon) but chains on real data: on wine and digits nearly every sample
/// ends in one cluster (ARI near 0), where Ward linkage finds most of the classes.
#[test]
fn single_linkage_follows_the_moons_but_chains_on_real_data() {
    assert!(fact("ari_moons_single_linkage") > 0.95);
    for set in ["wine", "digits"] {
        let single = fact(&format!("ari_{set}_single_linkage"));
        let ward = fact(&format!("ari_{set}_ward_linkage"));
        assert!(single < 0.05, "{set}: single linkage ARI {single}");
        assert!(ward > 0.7, "{set}: Ward ARI {ward}");
    }
}

/// Ward is the best of the four linkages on digits and on MNIST, and beats k-means
/// (mean over seeds) on digits.
#[test]
fn ward_is_the_best_linkage_on_the_digits() {
    for set in ["digits", "mnist_pca50"] {
        let ward = fact(&format!("ari_{set}_ward_linkage"));
        for other in ["single", "complete", "average"] {
            let o = fact(&format!("ari_{set}_{other}_linkage"));
            assert!(ward > o, "{set}: Ward {ward} vs {other} {o}");
        }
    }
    assert!(fact("ari_digits_ward_linkage") > fact("ari_digits_k_means"));
}

/// One row of the committed speed benchmark (`dlbook bench --name cluster_speed`):
/// ours and the reference's median CPU seconds and mean quality.
fn speed_row(task_prefix: &str) -> [f64; 4] {
    use dlbook::report::{Report, Value};
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = dlbook::book::generated_dir(&root).join("ch12/cluster_speed.json");
    let r = Report::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let t = r.table("cluster_speed").expect("cluster_speed table");
    let row = t
        .rows
        .iter()
        .find(|row| matches!(&row[0], Value::Text(s) if s.starts_with(task_prefix)))
        .unwrap_or_else(|| panic!("no row {task_prefix}"));
    let num = |v: &Value| match v {
        Value::Num(x) => *x,
        Value::Seeds(v) => v.iter().sum::<f64>() / v.len() as f64,
        Value::Text(t) => panic!("{task_prefix}: not a number: {t}"),
    };
    [num(&row[1]), num(&row[4]), num(&row[3]), num(&row[6])]
}

/// In the committed benchmark, Ward linkage on 5,000 MNIST images costs fewer CPU
/// seconds than scikit-learn's in the same run, and reaches the same ARI (to 1e-3: both
/// build the same tree on the same distances, so only a tie at the cut could differ).
#[test]
fn ward_costs_less_cpu_than_scikit_learn_for_the_same_ari() {
    let [ours, theirs, our_ari, their_ari] = speed_row("Ward");
    assert!(
        ours <= theirs,
        "Ward CPU s: ours {ours}, scikit-learn {theirs}"
    );
    assert!(
        (our_ari - their_ari).abs() < 1e-3,
        "ARI {our_ari} vs {their_ari}"
    );
}

/// Complete, average and single linkage on the same 5,000 images each cost fewer CPU
/// seconds than scipy's `linkage` (with `fcluster`) in the committed benchmark, with
/// the same ARI (to 1e-3, as for Ward).
#[test]
fn every_linkage_costs_less_cpu_than_scipy_for_the_same_ari() {
    for name in ["Complete", "Average", "Single"] {
        let [ours, theirs, our_ari, their_ari] = speed_row(name);
        assert!(ours <= theirs, "{name} CPU s: ours {ours}, scipy {theirs}");
        assert!(
            (our_ari - their_ari).abs() < 1e-3,
            "{name} ARI {our_ari} vs {their_ari}"
        );
    }
}

/// The tiled distance kernel gives every distance bit for bit as a plain loop over the
/// pair does (sizes that are not multiples of the panel, block or stripe, and values
/// whose sums round, so any change of summation order would show), in scipy's
/// condensed layout.
#[test]
fn tiled_distances_equal_the_plain_loop_bit_for_bit() {
    use dlbook::cluster::agglomerative::condensed_distances;
    for (n, d) in [(2, 1), (9, 3), (75, 19), (70, 8)] {
        let x = Array2::from_shape_fn((n, d), |(i, k)| {
            ((i * 31 + k * 17) % 23) as f64 / 7.0 + (i as f64).sqrt() * 0.1
        });
        let got = condensed_distances(&x);
        let mut want = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                let mut s = 0.0f64;
                for k in 0..d {
                    s += (x[[i, k]] - x[[j, k]]) * (x[[i, k]] - x[[j, k]]);
                }
                want.push(s.sqrt());
            }
        }
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "n = {n}, d = {d}");
    }
}
