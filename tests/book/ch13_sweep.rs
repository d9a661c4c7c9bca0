//! Chapter 13: hyperparameter sweeps. Successive halving spends the budget its formula
//! says, every trial is a tracked run, the winner is chosen on validation images that
//! were never trained on, and the results do not depend on the number of threads.

use dlbook::data::{DataDir, Dataset, Split};
use dlbook::experiments::Preset;
use dlbook::mlops::sweep::{
    self, Strategy, SweepConfig, SweepData, SweepResult, Tracking,
};
use dlbook::mlops::tracking::{RunStatus, Tracker};

use crate::ch13_mlflow::scratch;

fn data(cfg: &SweepConfig) -> SweepData {
    SweepData::load(&DataDir::resolve(None), cfg).unwrap()
}

fn run(cfg: &SweepConfig, s: Strategy, threads: usize) -> SweepResult {
    sweep::run(cfg, s, &data(cfg), threads, None, &|| {}).unwrap()
}

// ANCHOR: halving_budget
/// Successive halving's budget in epochs: measured by a quick sweep, and by the formula
/// $n_0 r_0 (1 + s(1 - 1/\eta))$ for the quick and the book's configurations.
fn halving_budgets() -> [(usize, f64); 2] {
    let formula = |c: &SweepConfig| {
        let s = (c.rungs().len() - 1) as f64;
        let eta = c.eta as f64;
        (c.n_halving * c.min_epochs) as f64 * (1.0 + s * (1.0 - 1.0 / eta))
    };
    let quick = SweepConfig::quick();
    let measured = run(&quick, Strategy::Halving, 2).budget;
    let full = SweepConfig::full();
    [
        (measured, formula(&quick)),
        (full.halving_budget(), formula(&full)),
    ]
}
// ANCHOR_END: halving_budget

/// Successive halving spends exactly the epochs its formula counts, a fraction of what
/// training every one of its points fully would cost.
#[test]
fn halving_spends_what_its_formula_says() {
    for (measured, formula) in halving_budgets() {
        assert!(
            (measured as f64 - formula).abs() < 1e-9,
            "{measured} vs {formula}"
        );
    }
    let full = SweepConfig::full();
    let all_full = full.n_halving * full.max_epochs;
    assert!(
        full.halving_budget() * 3 < all_full,
        "{} vs {all_full}",
        full.halving_budget()
    );
    assert_eq!(full.rungs(), vec![(27, 1), (9, 3), (3, 9)]);
}

/// The validation images are the training file's images after the training ones, so a
/// trial never trains on what it is chosen by; the test images are another file.
#[test]
fn validation_comes_from_the_training_file_and_is_never_trained_on() {
    let cfg = SweepConfig::quick();
    let d = data(&cfg);
    let all = Dataset::mnist(
        &DataDir::resolve(None),
        Split::Train,
        cfg.n_train + cfg.n_val,
    )
    .unwrap()
    .into_flat();
    assert_eq!((d.train.len(), d.val.len()), (cfg.n_train, cfg.n_val));
    let val_idx: Vec<usize> = (cfg.n_train..cfg.n_train + cfg.n_val).collect();
    assert_eq!(d.val.x, all.select(&val_idx).x);
    assert_eq!(d.train.x, all.head(cfg.n_train).x);
}

/// Every trial is a tracked run tagged with the sweep's id, with its parameters and one
/// validation accuracy per epoch; the winner, the only run tagged `chosen`, has the best
/// validation accuracy of the points trained fully.
#[test]
fn every_trial_is_a_tracked_run_and_the_winner_is_best_on_validation() {
    let cfg = SweepConfig::quick();
    let dir = scratch("sweep-tracked");
    let tracker = Tracker::open(&dir.join("mlruns")).unwrap();
    let tracking = Tracking {
        tracker: &tracker,
        experiment_id: tracker.experiment("sweep").unwrap(),
        sweep_id: "s1".into(),
    };
    let res = sweep::run(
        &cfg,
        Strategy::Halving,
        &data(&cfg),
        2,
        Some(&tracking),
        &|| {},
    )
    .unwrap();
    let runs = tracker.runs(&tracking.experiment_id).unwrap();
    assert_eq!(runs.len(), cfg.n_halving);
    let mut chosen = vec![];
    for r in &runs {
        assert_eq!(r.status, RunStatus::Finished);
        assert_eq!(r.tags["sweep"], "s1");
        assert_eq!(r.tags["strategy"], "halving");
        assert!(r.params.contains_key("lr") && r.params.contains_key("hidden"));
        let t = res
            .trials
            .iter()
            .find(|t| t.run_id.as_deref() == Some(&r.run_id))
            .unwrap();
        let logged: Vec<f64> = r.metrics["val_acc"].iter().map(|m| m.1).collect();
        assert_eq!(logged, t.val_acc, "one value per epoch");
        if r.tags["chosen"] == "true" {
            chosen.push(t.index);
        }
    }
    assert_eq!(chosen, vec![res.best]);
    let finalists = res.trials.iter().filter(|t| t.epochs() == cfg.max_epochs);
    assert!(finalists.clone().count() >= 1);
    for t in finalists {
        assert!(t.score() <= res.winner().score());
    }
    assert_eq!(
        res.winner().epochs(),
        cfg.max_epochs,
        "the winner was trained fully"
    );
}

/// A sweep on one thread and on three gives the same trials, epoch for epoch.
#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let cfg = SweepConfig::quick();
    let (a, b) = (run(&cfg, Strategy::Grid, 1), run(&cfg, Strategy::Grid, 3));
    let accs = |r: &SweepResult| {
        r.trials
            .iter()
            .map(|t| t.val_acc.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(accs(&a), accs(&b));
    assert_eq!(a.best, b.best);
}

fn quick() -> &'static dlbook::report::Report {
    dlbook::experiments::quick("sweep_mnist", &DataDir::resolve(None)).unwrap()
}

/// The quick preset's sweep learns: every strategy's winner is far above chance (10 %)
/// on the test images it was not chosen on.
#[test]
fn every_strategy_finds_a_network_that_learns() {
    for s in ["grid", "random", "halving"] {
        let acc = quick().get_fact(&format!("{s}_test_acc")).unwrap();
        assert!(acc > 0.3, "{s}: {acc}");
    }
}
