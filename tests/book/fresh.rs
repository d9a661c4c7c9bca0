//! The book's results cannot go stale: for every experiment, the quick preset's outcome
//! on the code as it is now must have the fingerprint its committed full results record
//! (see `dlbook::experiments`). A change that alters what an experiment measures fails
//! here with "results of X are stale: run `dlbook regen X`".
//!
//! One test per experiment, so they run in parallel and a failure names its experiment.
//! The quick runs are shared with the chapter tests (`experiments::quick`).

use std::path::PathBuf;

use dlbook::data::DataDir;
use dlbook::experiments;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(name: &str) {
    let quick = experiments::quick(name, &DataDir::resolve(None)).unwrap();
    if let Err(err) = experiments::check_fresh(&root(), name, quick) {
        panic!("{err:#}");
    }
}

macro_rules! fresh {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*

        #[test]
        fn every_experiment_has_its_freshness_test() {
            let listed = [$(stringify!($name)),*];
            for e in experiments::all() {
                assert!(
                    listed.contains(&e.name),
                    "tests/book/fresh.rs: add `{}` to the fresh! list",
                    e.name
                );
            }
        }
    };
}

fresh! {
    pca_mnist,
    information,
    beta_binomial,
    diagnostic_test,
    autograd_graph,
    gradient_checks,
    perceptron_xor,
    activations_mnist,
    mse_vs_ce,
    gradient_depth,
    twin_mnist,
    optim_surfaces,
    optim_mnist,
    regularization_ablation,
    receptive_fields,
    cnn_features,
    frozen_filters,
    architectures,
    residual_vs_plain,
    mnist_cnn,
    cnn_ablation,
    cnn_twin,
    mobile_blocks,
    folder_digits,
    pretrained_photos,
    transfer_fashion,
    transfer_full,
    detection_metrics,
    detector,
    detector_ablation,
    gradient_through_time,
    adding_problem,
    adding_ablation,
    forecast_baselines,
    forecast_lstm,
    sequence_mnist,
    char_lstm,
    attention_scale,
    attention_vs_recurrence,
    minilm_embeddings,
    minilm_scratch,
    seq2seq_sort,
    ln_placement,
    gpt_shakespeare,
    gpt_ablation,
    transformer_families,
    minilm_finetune,
    tsa_arima,
    pgm,
    clustering,
    svm_classify,
    ensemble_breast_cancer,
    sweep_mnist,
    drift_tests,
    drift_stream,
    mlops_map,
    datasets,
}

/// The fingerprints are thread-count independent: a quick run on one thread gives the
/// outcome the committed results record (which were made on two). `cnn_ablation` is the
/// run that exercises the most parallel code: convolutions split by rayon, Adam over
/// chunks, augmentation and batch norm.
#[test]
fn one_thread_gives_the_committed_outcome() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let e = experiments::by_name("cnn_ablation").unwrap();
    let quick = pool
        .install(|| (e.run)(experiments::Tier::Quick, &DataDir::resolve(None)))
        .unwrap();
    if let Err(err) = experiments::check_fresh(&root(), e.name, &quick) {
        panic!("on one thread: {err:#}");
    }
}
