//! Chapter 12.3, trees and ensembles: CART against scikit-learn's tree, the boosted trees
//! against XGBoost's first trees, and the ensembles' accuracies against the references'
//! on the same breast-cancer split (the fixture in `tests/fixtures/ch12_ensemble/`, made
//! by its `make.py`).

use std::path::Path;

use dlbook::ensemble::{
    accuracy, AdaBoost, Binner, Columns, Criterion, DecisionTree, FittedTree, Forest,
    GradientBoosting, LogisticRegression, Objective, Stacking, Target,
};
use dlbook::report::Report;
use ndarray::Array2;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ch12_ensemble")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
    Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
}

/// A matrix of floats written as strings (parsed by Rust's correctly rounded parser, so
/// every value is the very double Python wrote).
fn exact_matrix(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<String>> = serde_json::from_value(v.clone()).unwrap();
    Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| {
        rows[i][j].parse().unwrap()
    })
}

fn labels(v: &Value) -> Vec<usize> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Our tree against scikit-learn's, walked together from the root: at every node the
/// same sample count and class shares (within 1e-12: a division on both sides), and at
/// every split the same feature and the same threshold to the last bit (both sides take
/// the midpoint of the same two float32 values in f64). scikit-learn visits the features
/// in a random order even when it examines all of them, and keeps the first best split,
/// so where two features split a node equally well (typically both into pure children)
/// the two trees may choose differently. Such a node is accepted only if its children's
/// weighted Gini impurity is the same on both sides (the two splits are equally good),
/// and its subtrees are not compared. Returns the number of such ties.
fn same_tree(ours: &FittedTree, theirs: &[Value], a: usize, b: usize) -> usize {
    let (na, nb) = (&ours.nodes[a], &theirs[b]);
    assert_eq!(
        na.n_samples as u64,
        nb["n_samples"].as_u64().unwrap(),
        "node {b}"
    );
    let value: Vec<f64> = serde_json::from_value(nb["value"].clone()).unwrap();
    for (p, q) in na.value.iter().zip(&value) {
        assert!(
            (p - q).abs() < 1e-12,
            "node {b}: shares {:?} vs {value:?}",
            na.value
        );
    }
    let feature = nb["feature"].as_i64().unwrap();
    let Some(f) = na.feature else {
        assert_eq!(feature, -2, "node {b}: ours is a leaf, theirs is not");
        return 0;
    };
    assert!(feature >= 0, "node {b}: theirs is a leaf, ours is not");
    let (l, r) = (
        nb["left"].as_u64().unwrap() as usize,
        nb["right"].as_u64().unwrap() as usize,
    );
    if f as i64 != feature {
        let gini = |n: f64, shares: &[f64]| {
            n * (1.0 - shares.iter().map(|p| p * p).sum::<f64>())
        };
        let ours_cost: f64 = [na.left, na.right]
            .iter()
            .map(|&c| gini(ours.nodes[c].n_samples as f64, &ours.nodes[c].value))
            .sum();
        let theirs_cost: f64 = [l, r]
            .iter()
            .map(|&c| {
                let shares: Vec<f64> =
                    serde_json::from_value(theirs[c]["value"].clone()).unwrap();
                gini(theirs[c]["n_samples"].as_f64().unwrap(), &shares)
            })
            .sum();
        assert!(
            (ours_cost - theirs_cost).abs() < 1e-9,
            "node {b}: feature {f} vs {feature}, children's impurity {ours_cost} vs {theirs_cost}"
        );
        return 1;
    }
    let threshold: f64 = nb["threshold"].as_str().unwrap().parse().unwrap();
    assert_eq!(na.threshold, threshold, "node {b}");
    same_tree(ours, theirs, na.left, l) + same_tree(ours, theirs, na.right, r)
}

fn assert_same_tree(ours: &FittedTree, theirs: &Value) -> usize {
    same_tree(ours, theirs.as_array().unwrap(), 0, 0)
}

// ANCHOR: cart_vs_sklearn
/// A full Gini tree and a depth-3 entropy tree on the 426 training rows.
fn breast_cancer_trees() -> (FittedTree, FittedTree) {
    let inputs = fixture("inputs.json");
    let x = Columns::from_rows(exact_matrix(&inputs["x_train_f32"]).view());
    let y = labels(&inputs["y_train"]);
    let gini = DecisionTree::classifier(Criterion::Gini, None);
    let entropy = DecisionTree::classifier(Criterion::Entropy, Some(3));
    (
        gini.fit(&x, Target::Classes(&y, 2)).unwrap(),
        entropy.fit(&x, Target::Classes(&y, 2)).unwrap(),
    )
}
// ANCHOR_END: cart_vs_sklearn

#[test]
fn cart_grows_the_same_tree_as_scikit_learn() {
    let expected = fixture("expected.json");
    let (gini, entropy) = breast_cancer_trees();
    // The full tree has a few exact ties low down, where a node of a handful of rows
    // splits into pure children on several features; the depth-3 tree has none.
    let ties = assert_same_tree(&gini, &expected["tree"]);
    // Measured: four such nodes on this split, each checked equally good above.
    assert!(ties <= 4, "{ties} tied nodes");
    assert_eq!(
        assert_same_tree(&entropy, &expected["tree_entropy_depth3"]),
        0
    );
}

/// XGBoost's trees against ours, node by node (both number nodes level by level, left
/// before right): the same split feature and split value, and gain, cover and leaf
/// weight within a relative 1e-4. The tolerance is XGBoost's arithmetic: it stores
/// gradients and hessians in float32 (about 7 significant digits) before summing them
/// in double, and a gain is a difference of three such sums' ratios, so it keeps
/// about 5 digits; ours are f64 throughout.
fn assert_same_boosted(
    ours: &[Vec<dlbook::ensemble::boosting::BoostNode>],
    theirs: &Value,
) {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1e-2);
    for (t, (tree, exp)) in ours.iter().zip(theirs.as_array().unwrap()).enumerate() {
        let exp = exp.as_array().unwrap();
        assert_eq!(tree.len(), exp.len(), "tree {t}: node counts");
        for (a, b) in tree.iter().zip(exp) {
            let i = b["node"].as_u64().unwrap();
            assert!(
                close(a.cover, b["cover"].as_f64().unwrap()),
                "tree {t} node {i} cover {}",
                a.cover
            );
            match a.feature {
                None => {
                    assert_eq!(b["feature"].as_i64().unwrap(), -1, "tree {t} node {i}");
                    let leaf = b["leaf"].as_f64().unwrap();
                    assert!(
                        close(a.leaf, leaf),
                        "tree {t} node {i}: leaf {} vs {leaf}",
                        a.leaf
                    );
                }
                Some(f) => {
                    assert_eq!(
                        f as i64,
                        b["feature"].as_i64().unwrap(),
                        "tree {t} node {i}"
                    );
                    assert_eq!(
                        a.threshold,
                        b["split"].as_f64().unwrap(),
                        "tree {t} node {i}"
                    );
                    assert_eq!(a.left as i64, b["left"].as_i64().unwrap());
                    assert_eq!(a.right as i64, b["right"].as_i64().unwrap());
                    let gain = b["gain"].as_f64().unwrap();
                    assert!(
                        close(a.gain, gain),
                        "tree {t} node {i}: gain {} vs {gain}",
                        a.gain
                    );
                }
            }
        }
    }
}

fn xgboost_like(objective: Objective, n_rounds: usize) -> GradientBoosting {
    GradientBoosting {
        objective,
        n_rounds,
        lr: 0.3,
        max_depth: 3,
        lambda: 1.0,
        base_score: Some(0.5),
        ..Default::default()
    }
}

#[test]
fn boosted_trees_match_xgboost_first_trees() {
    let (inputs, expected) = (fixture("inputs.json"), fixture("expected.json"));
    let x = Columns::from_rows(matrix(&inputs["binned"]).view());
    let y: Vec<f64> = labels(&inputs["y_train"])
        .iter()
        .map(|&c| c as f64)
        .collect();
    let fit = xgboost_like(Objective::Logistic, 3)
        .fit(&x, &y, None)
        .unwrap();
    assert_same_boosted(&fit.trees, &expected["xgb_logistic"]);
    let y3: Vec<f64> = labels(&inputs["y3"]).iter().map(|&c| c as f64).collect();
    let fit = xgboost_like(Objective::Softmax(3), 2)
        .fit(&x, &y3, None)
        .unwrap();
    assert_same_boosted(&fit.trees, &expected["xgb_softmax"]);
}

#[test]
fn integer_codes_get_one_bin_each_so_the_cuts_are_xgboost_s() {
    let inputs = fixture("inputs.json");
    let x = Columns::from_rows(matrix(&inputs["binned"]).view());
    let b = Binner::fit(&x, 256).unwrap();
    assert!(b
        .cuts
        .iter()
        .all(|c| c == &(1..16).map(f64::from).collect::<Vec<_>>()));
}

// ANCHOR: breast_cancer_accuracies
/// Test accuracies on the fixture's 426/143 split: random forest (100 trees), gradient
/// boosting (XGBoost's defaults), AdaBoost (50 stumps).
fn breast_cancer_accuracies() -> [f64; 3] {
    let dir = dlbook::data::DataDir::resolve(None);
    let table = dlbook::data::tables::read_table(
        &dir,
        dlbook::data::tables::TableSet::BreastCancer,
    )
    .unwrap();
    let inputs = fixture("inputs.json");
    let (train, test) = (labels(&inputs["train"]), labels(&inputs["test"]));
    let (tr, te) = (table.select(&train), table.select(&test));
    let (xtr, xte) = (
        Columns::from_rows(tr.features.view()),
        Columns::from_rows(te.features.view()),
    );
    let rf = Forest::random(100, 0).fit(&xtr, &tr.labels, 2).unwrap();
    let y: Vec<f64> = tr.labels.iter().map(|&c| c as f64).collect();
    let gb = GradientBoosting::default().fit(&xtr, &y, None).unwrap();
    let ada = AdaBoost::stumps(50).fit(&xtr, &tr.labels, 2).unwrap();
    [
        accuracy(&rf.predict(&xte), &te.labels),
        accuracy(&gb.predict(&xte), &te.labels),
        accuracy(&ada.predict(&xte), &te.labels),
    ]
}
// ANCHOR_END: breast_cancer_accuracies

/// Ours within 0.03 of the reference's accuracy (about four of the 143 test rows): the
/// forests are seeded differently, so their accuracies differ by their seed spread; a
/// row or two either way is that noise, not a different algorithm.
#[test]
fn ensembles_match_the_references_on_breast_cancer() {
    let expected = fixture("expected.json");
    let acc = &expected["accuracy"];
    let ours = breast_cancer_accuracies();
    let refs = ["random_forest", "xgboost", "adaboost"].map(|k| acc[k].as_f64().unwrap());
    for (o, r) in ours.iter().zip(refs) {
        assert!(
            (o - r).abs() <= 0.03,
            "ours {ours:?} vs references {refs:?}"
        );
    }
}

fn quick() -> &'static dlbook::report::Report {
    dlbook::experiments::quick(
        "ensemble_breast_cancer",
        &dlbook::data::DataDir::resolve(None),
    )
    .unwrap()
}

fn fact(name: &str) -> f64 {
    quick().get_fact(name).unwrap()
}

#[test]
fn a_forest_beats_a_single_tree() {
    assert!(fact("forest_err_max") < fact("tree_err"));
    assert!(fact("acc_random_forest") > fact("acc_decision_tree"));
}

#[test]
fn more_trees_lower_the_forest_error() {
    assert!(fact("forest_err_max") < fact("forest_err_1"));
    assert!(fact("bagging_err_max") < fact("bagging_err_1"));
}

/// The digits table's pixels are the integers 0..16: as `u8` columns, nodes of 48 rows
/// or more are searched through the 256-code histogram, as `f64` columns every node is
/// sorted (the path the scikit-learn fixtures above use). With unit weights, and with a
/// forest's bootstrap counts, class weights are whole numbers, so both searches see the
/// same costs to the last bit: the trees must be identical, node for node, and so must a
/// random forest's (the same features are drawn on both paths).
#[test]
fn the_histogram_search_grows_the_exact_trees() {
    let dir = dlbook::data::DataDir::resolve(None);
    let table =
        dlbook::data::tables::read_table(&dir, dlbook::data::tables::TableSet::Digits)
            .unwrap();
    let xf = Columns::from_rows(table.features.view());
    let codes: Vec<u8> = (0..xf.n_cols())
        .flat_map(|j| xf.col(j).iter().map(|&v| v as u8).collect::<Vec<_>>())
        .collect();
    assert!((0..xf.n_cols()).all(|j| xf.col(j).iter().all(|&v| v == f64::from(v as u8))));
    let xb = Columns::new(codes, xf.n_rows(), xf.n_cols());
    let y = &table.labels;
    let tree = DecisionTree::default();
    let (a, b) = (
        tree.fit(&xf, Target::Classes(y, 10)).unwrap(),
        tree.fit(&xb, Target::Classes(y, 10)).unwrap(),
    );
    assert!(a.nodes[0].n_samples >= 48 && a.nodes.len() > 100);
    assert_eq!(a, b);
    let forest = Forest::random(4, 3);
    let (fa, fb) = (
        forest.fit(&xf, y, 10).unwrap(),
        forest.fit(&xb, y, 10).unwrap(),
    );
    assert_eq!(fa.trees, fb.trees);
}

/// The committed report of `dlbook bench --name ensemble_speed` (its caption and
/// configuration say how many MNIST training digits it used).
fn speed() -> Report {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("chapters/generated/ch12/ensemble_speed.json");
    Report::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(ours: accuracy, CPU-s, reference: accuracy, CPU-s)` of the rows whose label starts
/// with `prefix`.
fn speed_rows(r: &Report, prefix: &str) -> Vec<[f64; 4]> {
    let t = r.table("speed").unwrap();
    let rows: Vec<[f64; 4]> = t
        .rows
        .iter()
        .filter(|row| matches!(&row[0], dlbook::report::Value::Text(s) if s.starts_with(prefix)))
        .map(|row| [1, 2, 4, 5].map(|c| row[c].number().unwrap()))
        .collect();
    assert!(!rows.is_empty(), "no row {prefix}");
    rows
}

/// Random forests on MNIST, three seeds each side: the mean accuracies within 0.003
/// (30 of the 10,000 test digits; one forest's accuracies over seeds spread over about
/// that much), and every one of ours fitted and predicted in fewer CPU-seconds than
/// every one of scikit-learn's in the same run.
#[test]
fn our_forest_matches_scikit_learn_on_mnist_in_fewer_cpu_seconds() {
    let rows = speed_rows(&speed(), "MNIST: random forest");
    assert_eq!(rows.len(), 3);
    let mean = |c: usize| rows.iter().map(|r| r[c]).sum::<f64>() / rows.len() as f64;
    assert!((mean(0) - mean(2)).abs() <= 0.003, "{rows:?}");
    let slowest_ours = rows.iter().map(|r| r[1]).fold(0.0, f64::max);
    let fastest_theirs = rows.iter().map(|r| r[3]).fold(f64::INFINITY, f64::min);
    assert!(slowest_ours < fastest_theirs, "{rows:?}");
}

/// Histogram boosting with XGBoost's settings (100 rounds, depth 6, lr 0.3) on MNIST:
/// accuracy no more than 0.003 below XGBoost's (30 test digits: both grow the
/// same kind of trees from different bin cuts, so a few digits either way are noise),
/// in fewer CPU-seconds than XGBoost's in the same run.
#[test]
fn our_boosting_matches_xgboost_on_mnist_in_fewer_cpu_seconds() {
    let rows = speed_rows(&speed(), "MNIST: hist boosting, 100 rounds");
    let [acc, cpu, ref_acc, ref_cpu] = rows[0];
    assert!(acc >= ref_acc - 0.003 && cpu < ref_cpu, "{rows:?}");
}

/// The goal for boosting: at least 0.978 on MNIST in fewer CPU-seconds than
/// XGBoost's 100 rounds. Ours gets there with 150 rounds (XGBoost's settings otherwise),
/// compared with the XGBoost run of the row above, in the same bench run.
#[test]
fn our_boosting_reaches_0_978_on_mnist_in_fewer_cpu_seconds_than_xgboost() {
    let rows = speed_rows(&speed(), "MNIST: hist boosting, 150 rounds");
    let [acc, cpu, _, ref_cpu] = rows[0];
    assert!(acc >= 0.978 && cpu < ref_cpu, "{rows:?}");
}

/// Stacking RF50 + ExtraTrees50 into a logistic regression on MNIST: accuracy within
/// 0.005 of scikit-learn's `StackingClassifier` (50 test digits). One seed a side, and
/// each forest holds half the trees of the forest rows, whose own seeds spread over
/// about 0.003: a single stack can sit that far from its mean on either side.
#[test]
fn our_stacking_matches_scikit_learn_on_mnist() {
    let rows = speed_rows(&speed(), "MNIST: stacking");
    let [acc, _, ref_acc, _] = rows[0];
    assert!((acc - ref_acc).abs() <= 0.005, "{rows:?}");
}

/// Two noisy classes on one feature, two base models: the meta-model gets two features
/// (each forest's share of class 1), not four collinear ones.
#[test]
fn binary_stacking_keeps_one_probability_per_base_model() {
    let v: Vec<f64> = (0..80)
        .map(|i| (i % 2) as f64 + 0.8 * ((i * 7) as f64).sin())
        .collect();
    let y: Vec<usize> = (0..80).map(|i| i % 2).collect();
    let x = Columns::new(v, 80, 1);
    let fit = Stacking {
        bases: vec![Forest::random(5, 0), Forest::extra(5, 0)],
        n_folds: 3,
        meta: LogisticRegression::default(),
        seed: 0,
    }
    .fit(&x, &y, 2)
    .unwrap();
    assert_eq!(fit.meta.n_features, 2);
    let z = fit.features(&x);
    assert_eq!(z.len(), 80 * 2);
    let (p0, p1) = (
        fit.bases[0].predict_proba(&x),
        fit.bases[1].predict_proba(&x),
    );
    assert!((0..80).all(|i| z[2 * i] == p0[2 * i + 1] && z[2 * i + 1] == p1[2 * i + 1]));
}
