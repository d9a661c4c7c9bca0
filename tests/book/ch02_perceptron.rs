//! Chapter 2, the perceptron: Rosenblatt's rule converges on separable data within
//! Novikoff's bound, cannot fit XOR (no line can, and the weights cycle), and a 2-2-1
//! network solves XOR for most seeds.

use std::sync::OnceLock;

use dlbook::data::DataDir;
use dlbook::experiments::perceptron_xor::{novikoff_bound, separable_data, train_xor};
use dlbook::experiments::{self};
use dlbook::nn::perceptron::{xor_data, Perceptron};
use dlbook::nn::{Activation, Init};
use dlbook::report::{Plot, Report};

fn report() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        experiments::quick("perceptron_xor", &DataDir::resolve(None))
            .cloned()
            .expect("runs")
    })
}

// ANCHOR: usage_separable
/// Rosenblatt's rule on 200 separable points: (epochs, updates, Novikoff bound, accuracy).
fn perceptron_on_separable_data() -> (Option<usize>, usize, f64, f64) {
    let (xs, ys) = separable_data(200, 0.3, 0);
    let mut p = Perceptron::zeros(2);
    let fit = p.fit(&xs, &ys, 1.0, 100);
    (
        fit.converged_at,
        fit.total_mistakes(),
        novikoff_bound(&xs, &ys),
        p.accuracy(&xs, &ys),
    )
}
// ANCHOR_END: usage_separable

#[test]
fn perceptron_converges_within_novikoff_bound() {
    let (converged, updates, bound, acc) = perceptron_on_separable_data();
    assert!(converged.is_some(), "did not converge");
    assert_eq!(acc, 1.0);
    assert!(
        (updates as f64) <= bound,
        "{updates} updates > bound {bound}"
    );
}

// ANCHOR: usage_xor_perceptron
/// Rosenblatt's rule on XOR for 100 epochs: the best accuracy of any epoch's weights,
/// and the first repeat of the weights.
fn perceptron_on_xor() -> (f64, Option<(usize, usize)>, Option<usize>) {
    let (xs, ys) = xor_data();
    let mut p = Perceptron::zeros(2);
    let fit = p.fit(&xs, &ys, 1.0, 100);
    let best = fit
        .weights
        .iter()
        .map(|(w, b)| {
            Perceptron {
                w: w.clone(),
                b: *b,
            }
            .accuracy(&xs, &ys)
        })
        .fold(0.0, f64::max);
    (best, fit.cycle(), fit.converged_at)
}
// ANCHOR_END: usage_xor_perceptron

#[test]
fn perceptron_never_fits_xor_and_cycles() {
    let (best, cycle, converged) = perceptron_on_xor();
    assert!(converged.is_none());
    assert!(best <= 0.75, "best accuracy {best}");
    let (first, again) = cycle.expect("the weights repeat");
    assert!(first < again && again <= 10, "cycle {first} -> {again}");
}

#[test]
fn no_line_classifies_all_four_xor_points() {
    // A brute-force companion to the proof: 25^3 lines, none gets all four right.
    let (xs, ys) = xor_data();
    let grid: Vec<f64> = (-12..=12).map(|i| f64::from(i) * 0.25).collect();
    let mut best = 0.0f64;
    for &w1 in &grid {
        for &w2 in &grid {
            for &b in &grid {
                let p = Perceptron { w: vec![w1, w2], b };
                best = best.max(p.accuracy(&xs, &ys));
            }
        }
    }
    assert_eq!(best, 0.75);
}

// ANCHOR: usage_xor_mlp
/// 2-2-1 sigmoid networks on XOR from seeds 0, 1, 2, ...: the first seed that solves
/// it, and its final loss.
fn xor_network() -> Option<(u64, f32)> {
    (0..10).find_map(|seed| {
        let run = train_xor(Activation::Sigmoid, Init::Xavier, seed, 0.5, 3000);
        run.solved.then_some((seed, run.loss))
    })
}
// ANCHOR_END: usage_xor_mlp

#[test]
fn a_two_two_one_network_solves_xor() {
    let (seed, loss) = xor_network().expect("a seed in 0..10 solves XOR");
    assert!(seed < 3, "first solving seed {seed}");
    assert!(loss < 0.05, "loss {loss}");
}

#[test]
fn xor_success_depends_on_the_seed_and_activation() {
    let r = report();
    let solved = |k: &str| r.get_fact(&format!("xor_solved_{k}")).expect("fact");
    let (sigmoid, tanh, relu) = (solved("sigmoid"), solved("tanh"), solved("relu"));
    assert!(sigmoid > 0.6 && sigmoid < 1.0, "sigmoid solves {sigmoid}");
    assert!(tanh > 0.4 && tanh < 0.75, "tanh solves {tanh}");
    assert!(relu < 0.4, "relu solves {relu}");
}

#[test]
fn most_failed_relu_xor_seeds_have_a_dead_unit() {
    let r = report();
    let relu = r.get_fact("xor_failed_dead_relu").expect("fact");
    assert!(relu > 0.5, "relu failed seeds with a dead unit: {relu}");
    for k in ["tanh", "sigmoid"] {
        assert_eq!(r.get_fact(&format!("xor_failed_dead_{k}")), Some(0.0));
    }
}

#[test]
fn boundary_figure_has_one_image_per_activation_and_outcome() {
    let r = report();
    let fig = r
        .figures
        .iter()
        .find(|f| f.name == "boundary")
        .expect("figure");
    let Plot::Images { images, width, .. } = &fig.plot else {
        panic!("not an image grid")
    };
    assert_eq!(images.len(), 2 * 3);
    assert!(images.iter().all(|im| im.len() == width * width));
}
