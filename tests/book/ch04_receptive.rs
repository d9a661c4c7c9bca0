//! Chapter 4, receptive fields: the recurrence against impulses through real layers,
//! gradients as a second measurement, borders, holes, and the stacked-3x3 arithmetic.

use dlbook::cnn::receptive::{
    gradient_field, impulse_fields, measured_mask, probe, receptive_fields,
    stack_weights, Field, Window,
};
use dlbook::data::DataDir;
use dlbook::experiments;
use dlbook::experiments::receptive_fields as experiment;
use dlbook::models::mnist_cnn::{mnist_cnn, model_windows, seed_windows};
use dlbook::nn::Mode;
use ndarray::{Array2, ArrayD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SIDE: usize = 28;

fn max_pool(k: usize, s: usize) -> Window {
    Window::MaxPool {
        kernel: k,
        stride: s,
    }
}

fn avg_pool(k: usize, s: usize) -> Window {
    Window::AvgPool {
        kernel: k,
        stride: s,
    }
}

fn seed_stack(padding: usize) -> Vec<Window> {
    seed_windows(padding).into_iter().map(|(_, w)| w).collect()
}

/// The stacks the chapter checks, by name.
fn stacks() -> Vec<(&'static str, Vec<Window>)> {
    vec![
        ("seed CNN", seed_stack(0)),
        ("seed CNN, padding 1", seed_stack(1)),
        ("three stride-2 3x3 convs", vec![Window::conv(3, 2, 0); 3]),
        (
            "padded 5x5, strided 3x3, 3x3",
            vec![
                Window::conv(5, 1, 2),
                Window::conv(3, 2, 1),
                Window::conv(3, 1, 1),
            ],
        ),
        (
            "overlapping 3x3/2 max pools",
            vec![
                Window::conv(3, 1, 1),
                max_pool(3, 2),
                Window::conv(3, 1, 1),
                max_pool(3, 2),
            ],
        ),
        ("six 3x3 convs", vec![Window::conv(3, 1, 0); 6]),
        (
            "3x3 conv, 2x2/2 avg pool, 3x3 conv",
            vec![Window::conv(3, 1, 0), avg_pool(2, 2), Window::conv(3, 1, 0)],
        ),
    ]
}

// ANCHOR: fields_agree
/// For every stack, layer and unit (border units included): does the impulse-measured
/// field equal the clipped interval of the recurrence? Returns (units compared, units
/// that disagree, units whose field is clipped by the border).
fn analytic_vs_measured() -> (usize, usize, usize) {
    let (mut n, mut bad, mut clipped) = (0, 0, 0);
    for (_, stack) in stacks() {
        let fields = receptive_fields(&stack, SIDE);
        let measured = impulse_fields(&mut probe(&stack, 2), SIDE);
        for (f, (_, m)) in fields.iter().zip(&measured) {
            assert_eq!(m.shape()[1], f.units, "the recurrence counts the units");
            for i in 0..f.units {
                for j in 0..f.units {
                    let want = f.mask(i, j, SIDE);
                    n += 1;
                    bad += usize::from(measured_mask(m, i, j, SIDE) != want);
                    let cells = want.iter().filter(|&&b| b).count();
                    clipped += usize::from(cells < f.size * f.size);
                }
            }
        }
    }
    (n, bad, clipped)
}
// ANCHOR_END: fields_agree

#[test]
fn analytic_and_measured_fields_agree_on_every_unit() {
    let (n, bad, clipped) = analytic_vs_measured();
    assert!(n > 1000, "only {n} units compared");
    assert_eq!(bad, 0, "{bad} of {n} units disagree");
    assert!(clipped > 0, "no border case was exercised");
}

// ANCHOR: stacked_3x3
/// The field of the centre unit after n stacked 3x3 convolutions: (analytic side,
/// measured number of pixels), for n = 1..=6.
fn stacked_3x3_fields() -> Vec<(usize, usize, usize)> {
    (1..=6)
        .map(|n| {
            let stack = vec![Window::conv(3, 1, 0); n];
            let f = receptive_fields(&stack, SIDE)[n - 1];
            let measured = impulse_fields(&mut probe(&stack, 1), SIDE);
            let m = &measured[n - 1].1;
            let c = f.units / 2;
            let pixels = measured_mask(m, c, c, SIDE).iter().filter(|&&b| b).count();
            (n, f.size, pixels)
        })
        .collect()
}
// ANCHOR_END: stacked_3x3

#[test]
fn n_stacked_3x3_convs_see_a_2n_plus_1_square() {
    for (n, side, pixels) in stacked_3x3_fields() {
        assert_eq!(side, 2 * n + 1, "{n} layers");
        assert_eq!(pixels, (2 * n + 1) * (2 * n + 1), "{n} layers, measured");
    }
}

#[test]
fn a_stride_2_at_every_layer_doubles_the_field_plus_one() {
    let stack = vec![Window::conv(3, 2, 1); 8];
    let f = receptive_fields(&stack, 1 << 12);
    for l in 1..f.len() {
        assert_eq!(f[l].size, 2 * f[l - 1].size + 1, "layer {}", l + 1);
        assert_eq!(f[l].jump, 2 * f[l - 1].jump);
    }
    assert_eq!(f[0].size, 3);
}

#[test]
fn three_3x3_layers_see_what_one_7x7_sees_with_fewer_weights() {
    let three = receptive_fields(&[Window::conv(3, 1, 1); 3], SIDE)[2];
    let one = receptive_fields(&[Window::conv(7, 1, 3)], SIDE)[0];
    assert_eq!((three.size, three.jump), (one.size, one.jump));
    for c in [1, 16, 64, 512] {
        assert!(stack_weights(3, 3, c) < stack_weights(1, 7, c));
        assert_eq!(49 * stack_weights(3, 3, c), 27 * stack_weights(1, 7, c));
    }
}

#[test]
fn seed_windows_describe_the_seed_model() {
    for config in experiment::variants() {
        let mut model = mnist_cnn(&config, 0);
        let x = ArrayD::zeros(vec![1, SIDE * SIDE]);
        let outs = model.forward_all(&x, Mode::Eval);
        let windows = model_windows(&config, 0);
        let stack: Vec<Window> = windows.iter().map(|(_, w)| *w).collect();
        for ((name, _), f) in windows.iter().zip(receptive_fields(&stack, SIDE)) {
            let (_, y) = outs
                .iter()
                .find(|(n, _)| n == name)
                .expect("a layer of the model");
            assert_eq!(
                &y.shape()[2..],
                &[f.units, f.units],
                "{}: {name}",
                config.name()
            );
        }
    }
}

#[test]
fn the_strided_and_one_conv_variants_see_less_than_the_seed() {
    let r = experiments::quick("receptive_fields", &DataDir::resolve(None))
        .cloned()
        .expect("the experiment runs");
    let field = |k: usize| r.get_fact(&format!("variant_field_{k}")).expect("a fact");
    assert!(
        field(1) < field(0),
        "strided {} vs seed {}",
        field(1),
        field(0)
    );
    assert!(
        field(2) < field(1),
        "one conv {} vs strided {}",
        field(2),
        field(1)
    );
}

// ANCHOR: border
/// The corner unit of the padded seed stack's first layer: (field size of the
/// recurrence, measured rows, measured columns).
fn padded_corner_field() -> (usize, usize, usize) {
    let stack = seed_stack(1);
    let f = receptive_fields(&stack, SIDE)[0];
    let m = &impulse_fields(&mut probe(&stack, 1), SIDE)[0].1;
    let mask = measured_mask(m, 0, 0, SIDE);
    let rows = (0..SIDE)
        .filter(|&a| mask.row(a).iter().any(|&b| b))
        .count();
    let cols = (0..SIDE)
        .filter(|&b| mask.column(b).iter().any(|&v| v))
        .count();
    (f.size, rows, cols)
}
// ANCHOR_END: border

#[test]
fn padding_clips_the_field_at_the_border() {
    let (size, rows, cols) = padded_corner_field();
    assert_eq!((rows, cols), (size - 1, size - 1));
    let f = receptive_fields(&seed_stack(1), SIDE)[0];
    assert_eq!(f.span(0), (-1, 1));
    assert_eq!(f.clipped(0, SIDE), 0..2);
}

#[test]
fn a_stride_larger_than_the_kernel_leaves_holes() {
    // A 1x1 stride-2 convolution reads every other pixel; the 3x3 after it spans 5.
    let stack = vec![Window::conv(1, 2, 0), Window::conv(3, 1, 0)];
    let f = receptive_fields(&stack, SIDE)[1];
    let m = &impulse_fields(&mut probe(&stack, 1), SIDE)[1].1;
    let measured = measured_mask(m, 2, 2, SIDE);
    let interval = f.mask(2, 2, SIDE);
    assert_eq!(f.size, 5);
    let inside = measured.iter().zip(&interval).all(|(&m, &i)| !m || i);
    assert!(inside, "the measured field lies inside the interval");
    assert_eq!(measured.iter().filter(|&&b| b).count(), 9);
    assert_eq!(interval.iter().filter(|&&b| b).count(), 25);
}

fn positive_input(seed: u64) -> ArrayD<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    ArrayD::from_shape_fn(vec![1, 1, SIDE, SIDE], |_| rng.random_range(0.1f32..1.0))
}

fn count(m: &Array2<bool>) -> usize {
    m.iter().filter(|&&b| b).count()
}

// ANCHOR: gradient_vs_field
/// Centre unit of the last layer of `stack`: (pixels of its field, pixels with a
/// non-zero gradient, whether every such pixel lies in the field).
fn gradient_vs_field(stack: &[Window], seed: u64) -> (usize, usize, bool) {
    let f = *receptive_fields(stack, SIDE).last().expect("layers");
    let c = f.units / 2;
    let field = f.mask(c, c, SIDE);
    let grad = gradient_field(&mut probe(stack, 2), &positive_input(seed), c, c);
    let inside = grad.iter().zip(&field).all(|(&g, &f)| !g || f);
    (count(&field), count(&grad), inside)
}
// ANCHOR_END: gradient_vs_field

#[test]
fn without_max_pooling_the_gradient_support_is_the_field() {
    let linear_stacks = [
        vec![Window::conv(3, 1, 0); 4],
        vec![Window::conv(3, 2, 0); 3],
        vec![Window::conv(3, 1, 0), avg_pool(2, 2), Window::conv(3, 1, 0)],
        vec![Window::conv(5, 1, 2), avg_pool(3, 2), Window::conv(3, 1, 1)],
    ];
    for (k, stack) in linear_stacks.iter().enumerate() {
        for seed in 0..3 {
            let (field, grad, inside) = gradient_vs_field(stack, seed);
            assert!(
                inside && grad == field,
                "stack {k}: {grad} vs {field} pixels"
            );
        }
    }
}

#[test]
fn through_max_pooling_the_gradient_reaches_only_part_of_the_field() {
    for stack in [
        seed_stack(0),
        vec![
            Window::conv(3, 1, 1),
            max_pool(3, 2),
            Window::conv(3, 1, 1),
            max_pool(3, 2),
        ],
    ] {
        for seed in 0..3 {
            let (field, grad, inside) = gradient_vs_field(&stack, seed);
            assert!(inside, "the gradient stays inside the field");
            assert!(0 < grad && grad < field, "{grad} of {field} pixels");
        }
    }
}

#[test]
fn field_centres_follow_the_jump() {
    let f = Field {
        size: 10,
        jump: 4,
        start: 0,
        units: 5,
    };
    assert_eq!(f.centre(0), 4.5);
    assert_eq!(f.centre(2) - f.centre(1), 4.0);
    let seed = receptive_fields(&seed_stack(0), SIDE);
    for w in seed.windows(2) {
        assert!(w[1].size > w[0].size && w[1].jump >= w[0].jump);
    }
}

#[test]
fn receptive_fields_report_matches_the_recurrence() {
    let r = experiments::quick("receptive_fields", &DataDir::resolve(None))
        .cloned()
        .expect("the experiment runs");
    let last = *receptive_fields(&seed_stack(0), SIDE)
        .last()
        .expect("layers");
    assert_eq!(r.get_fact("seed_field"), Some(last.size as f64));
    assert!(
        last.size < SIDE,
        "the last pool does not see the whole digit"
    );
    assert_eq!(r.get_fact("seed_jump"), Some(last.jump as f64));
    assert_eq!(r.figures.len(), 2);
    assert!(r.table("stacked_vs_single").is_some());
}
