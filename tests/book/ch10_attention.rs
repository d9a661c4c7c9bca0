//! Chapter 10.1-10.2, attention: the masked softmax, scaled dot-product attention with
//! padding and causal masks, multi-head self- and cross-attention (with and without
//! RoPE, with and without biases) and both positional encodings, every gradient checked
//! three ways (manual, finite differences, candle autograd in `F64`) over three seeds;
//! the from-scratch layer against its candle twin; fully masked rows; causality; the
//! variance argument for $1/\sqrt{d_k}$; bad shapes.
//!
//! Tolerances, as in chapters 4 and 8: manual (`f32`) vs candle (`F64`) within `1e-5`;
//! anything involving `f32` finite differences (step `h = 1e-2`) within `1e-3`.

use dlbook::attn::candle_twin::{self, encoding_grads, sdpa_grads, softmax_grads};
use dlbook::attn::{
    masked_softmax, scale_stats, scaled_dot_product_attention,
    scaled_dot_product_attention_backward, softmax_backward, LearnedEncoding, Mask,
    MhaConfig, MultiHeadAttention, Rope, ScoreMask, SinusoidalEncoding,
};
use dlbook::nn::gradcheck::{
    finite_diff, manual_grads, max_rel_error, normal, numeric_grads, rel_error, Grads,
};
use dlbook::nn::{Layer, Mode, Module, Param};
use ndarray::{s, ArrayD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Finite-difference step for the `f32` code.
const H: f32 = 1e-2;

/// Seeds of every three-way check.
const SEEDS: [u64; 3] = [0, 1, 2];

// The tolerances and helpers of chapter 8's three-way checks.
use crate::ch08_rnn::{assert_three_ways, contract, f64v};

/// The three pairwise errors of three gradients of one tensor.
fn three(
    manual: &ArrayD<f64>,
    fd: &ArrayD<f64>,
    candle: &ArrayD<f64>,
) -> (f64, f64, f64) {
    (
        rel_error(manual, fd),
        rel_error(manual, candle),
        rel_error(fd, candle),
    )
}

fn max3(a: (f64, f64, f64), b: (f64, f64, f64)) -> (f64, f64, f64) {
    (a.0.max(b.0), a.1.max(b.1), a.2.max(b.2))
}

fn no_nan(a: &ArrayD<f32>) -> bool {
    a.iter().all(|v| v.is_finite())
}

/// The gradient of the key bias is zero in exact arithmetic (it shifts every score of
/// a query by the same $q \cdot b_k$, which the softmax ignores), so a relative error
/// on it compares rounding noise: checks it is tiny in absolute terms instead and drops
/// it from the relative comparison. With RoPE the bias is rotated by a different angle
/// at each position, no longer a common shift, and its gradient is checked as any other.
fn without_key_bias(mut g: Grads, who: &str, rope: bool) -> Grads {
    if rope {
        return g;
    }
    if let Some(i) = g.params.iter().position(|(n, _)| n == "k.bias") {
        let (_, kb) = g.params.remove(i);
        let worst = kb.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(worst < 1e-4, "{who}: key-bias gradient {worst:e}, not zero");
    }
    g
}

#[test]
fn masked_softmax_gradient_three_ways() {
    for seed in SEEDS {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let s = normal(&[2, 3, 5], &mut rng);
        let r = normal(&[2, 3, 5], &mut rng);
        let mut keep = ArrayD::from_shape_fn(vec![2, 3, 5], |_| rng.random_bool(0.7));
        keep.slice_mut(s![1, 2, ..]).fill(false); // one fully masked row
        let mask = Some(ScoreMask::Keep(&keep));
        let y = masked_softmax(&s, mask);
        let manual = f64v(&softmax_backward(&y, &r));
        let fd = finite_diff(&s, H, |s| contract(&masked_softmax(s, mask), &r));
        let (cy, candle) = softmax_grads(&s, Some(&keep), &r).unwrap();
        assert!(rel_error(&f64v(&y), &cy) < 1e-6, "outputs differ");
        assert_three_ways(
            &format!("masked softmax seed {seed}"),
            three(&manual, &fd, &candle),
        );
        // the additive form of the same mask gives the same weights, bit for bit
        let add = keep.mapv(|k| if k { 0.0 } else { f32::NEG_INFINITY });
        assert_eq!(masked_softmax(&s, Some(ScoreMask::Add(&add))), y);
    }
}

/// q, k, v of scaled dot-product attention and the output weights `r`.
fn qkv(rng: &mut ChaCha8Rng, t_q: usize, t_k: usize) -> [ArrayD<f32>; 4] {
    [
        normal(&[2, 2, t_q, 3], rng),
        normal(&[2, 2, t_k, 3], rng),
        normal(&[2, 2, t_k, 4], rng),
        normal(&[2, 2, t_q, 4], rng),
    ]
}

fn check_sdpa(who: &str, t_q: usize, t_k: usize, mask: &Mask) {
    for seed in SEEDS {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let [q, k, v, r] = qkv(&mut rng, t_q, t_k);
        let att = scaled_dot_product_attention(&q, &k, &v, Some(mask));
        let g = scaled_dot_product_attention_backward(&q, &k, &v, &att.weights, &r);
        let loss = |q: &ArrayD<f32>, k: &ArrayD<f32>, v: &ArrayD<f32>| {
            contract(&scaled_dot_product_attention(q, k, v, Some(mask)).out, &r)
        };
        let fq = finite_diff(&q, H, |q| loss(q, &k, &v));
        let fk = finite_diff(&k, H, |k| loss(&q, k, &v));
        let fv = finite_diff(&v, H, |v| loss(&q, &k, v));
        let [co, cq, ck, cv] = sdpa_grads(&q, &k, &v, Some(mask), &r).unwrap();
        assert!(
            rel_error(&f64v(&att.out), &co) < 1e-5,
            "{who}: outputs differ"
        );
        let e = max3(
            three(&f64v(&g.dq), &fq, &cq),
            max3(three(&f64v(&g.dk), &fk, &ck), three(&f64v(&g.dv), &fv, &cv)),
        );
        assert_three_ways(&format!("{who} seed {seed}"), e);
    }
}

#[test]
fn attention_gradient_three_ways_padding_mask() {
    check_sdpa("attention, padding", 4, 5, &Mask::padding(&[5, 3], 4, 5));
}

#[test]
fn attention_gradient_three_ways_causal_mask() {
    check_sdpa("attention, causal", 4, 4, &Mask::causal(2, 4));
}

fn layer(seed: u64, causal: bool, rope: bool, bias: bool) -> MultiHeadAttention {
    let mut rng = ChaCha8Rng::seed_from_u64(100 + seed);
    let mut cfg = MhaConfig::new(4, 2);
    cfg.causal = causal;
    cfg.rope = rope.then(Rope::default);
    cfg.bias = bias;
    let mut l = MultiHeadAttention::new(cfg, &mut rng);
    // nonzero biases, so that their gradients are checked on a generic point
    if bias {
        l.visit_params("", &mut |n, p| {
            if n.ends_with("bias") {
                p.value = normal(p.value.shape(), &mut rng) * 0.5;
            }
        });
    }
    l
}

/// `MultiHeadAttention` with a fixed padding mask, as a `Layer` for the checks.
struct Masked(MultiHeadAttention, Mask);

impl Module for Masked {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.0.visit_params(prefix, f)
    }
}

impl Layer for Masked {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.0.forward_masked(x, &self.1, mode)
    }
    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.0.backward(dy)
    }
}

#[test]
fn mha_self_attention_gradient_three_ways() {
    for (causal, rope, bias, padded) in [
        (false, false, true, false),
        (true, false, true, false),
        (false, true, true, false),
        (true, true, false, false),
        (false, false, true, true),
        (true, true, true, true),
    ] {
        for seed in SEEDS {
            let who = format!(
                "MHA causal {causal} rope {rope} bias {bias} padded {padded} seed {seed}"
            );
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let x = normal(&[2, 4, 4], &mut rng);
            let r = normal(&[2, 4, 4], &mut rng);
            let mask = Mask::padding(&[4, 2], 4, 4);
            let mut l = Masked(layer(seed, causal, rope, bias), mask.clone());
            let used = padded.then_some(&mask);
            let (manual, num) = if padded {
                (
                    manual_grads(&mut l, &x, &r),
                    numeric_grads(&mut l, &x, &r, H),
                )
            } else {
                (
                    manual_grads(&mut l.0, &x, &r),
                    numeric_grads(&mut l.0, &x, &r, H),
                )
            };
            let (candle, _) = candle_twin::mha_grads(&l.0, &x, None, used, &r).unwrap();
            let (manual, num, candle) = (
                without_key_bias(manual, &who, rope),
                without_key_bias(num, &who, rope),
                without_key_bias(candle, &who, rope),
            );
            let names: Vec<&str> =
                manual.params.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names.len(),
                match (bias, rope) {
                    (false, _) => 4,
                    (true, false) => 7,
                    (true, true) => 8,
                },
                "{who}: {names:?}"
            );
            assert_three_ways(
                &who,
                (
                    max_rel_error(&manual, &num),
                    max_rel_error(&manual, &candle),
                    max_rel_error(&num, &candle),
                ),
            );
            // the outputs agree with the twin's on the same weights
            let y = if padded {
                l.0.forward_masked(&x, &mask, Mode::Eval)
            } else {
                l.0.forward(&x, Mode::Eval)
            };
            let ty = candle_twin::mha_forward(&l.0, &x, None, used).unwrap();
            assert!(rel_error(&f64v(&y), &ty) < 1e-5, "{who}: outputs differ");
        }
    }
}

/// `MultiHeadAttention` reading a fixed memory, as a `Layer` in `x` for the checks.
struct Cross(MultiHeadAttention, ArrayD<f32>, Mask);

impl Module for Cross {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.0.visit_params(prefix, f)
    }
}

impl Layer for Cross {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.0.forward_cross(x, &self.1, Some(&self.2), mode)
    }
    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.0.backward_cross(dy).0
    }
}

// ANCHOR: cross_three_ways
#[test]
fn mha_cross_attention_gradient_three_ways() {
    for rope in [false, true] {
        for seed in SEEDS {
            let who = format!("cross-attention rope {rope} seed {seed}");
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let x = normal(&[2, 3, 4], &mut rng);
            let memory = normal(&[2, 5, 4], &mut rng);
            let r = normal(&[2, 3, 4], &mut rng);
            let mask = Mask::padding(&[5, 3], 3, 5);
            let mut c =
                Cross(layer(seed, false, rope, true), memory.clone(), mask.clone());
            let manual = manual_grads(&mut c, &x, &r);
            let num = numeric_grads(&mut c, &x, &r, H);
            c.0.forward_cross(&x, &memory, Some(&mask), Mode::Train);
            let (_, dmem) = c.0.backward_cross(&r);
            let fd_mem = finite_diff(&memory, H, |m| {
                contract(&c.0.forward_cross(&x, m, Some(&mask), Mode::Train), &r)
            });
            let (candle, cmem) =
                candle_twin::mha_grads(&c.0, &x, Some(&memory), Some(&mask), &r).unwrap();
            let cmem = cmem.expect("memory gradient");
            let (manual, num, candle) = (
                without_key_bias(manual, &who, rope),
                without_key_bias(num, &who, rope),
                without_key_bias(candle, &who, rope),
            );
            let e = (
                max_rel_error(&manual, &num),
                max_rel_error(&manual, &candle),
                max_rel_error(&num, &candle),
            );
            assert_three_ways(&who, max3(e, three(&f64v(&dmem), &fd_mem, &cmem)));
            let y = c.0.forward_cross(&x, &memory, Some(&mask), Mode::Eval);
            let ty =
                candle_twin::mha_forward(&c.0, &x, Some(&memory), Some(&mask)).unwrap();
            assert!(rel_error(&f64v(&y), &ty) < 1e-5, "{who}: outputs differ");
        }
    }
}
// ANCHOR_END: cross_three_ways

#[test]
fn positional_encodings_gradient_three_ways() {
    for seed in SEEDS {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = normal(&[2, 4, 6], &mut rng);
        let r = normal(&[2, 4, 6], &mut rng);
        let mut sin = SinusoidalEncoding::new(7, 6);
        let table = sin.table.clone().into_dyn();
        let manual = manual_grads(&mut sin, &x, &r);
        let num = numeric_grads(&mut sin, &x, &r, H);
        let [cdx, _] = encoding_grads(&x, &table, &r).unwrap();
        let candle = Grads {
            dx: cdx,
            params: vec![],
        };
        assert_three_ways(
            &format!("sinusoidal seed {seed}"),
            (
                max_rel_error(&manual, &num),
                max_rel_error(&manual, &candle),
                max_rel_error(&num, &candle),
            ),
        );
        let mut learned = LearnedEncoding::new(7, 6, &mut rng);
        let manual = manual_grads(&mut learned, &x, &r);
        let num = numeric_grads(&mut learned, &x, &r, H);
        let [cdx, ctable] = encoding_grads(&x, &learned.table.value, &r).unwrap();
        let candle = Grads {
            dx: cdx,
            params: vec![("table".into(), ctable)],
        };
        assert_three_ways(
            &format!("learned seed {seed}"),
            (
                max_rel_error(&manual, &num),
                max_rel_error(&manual, &candle),
                max_rel_error(&num, &candle),
            ),
        );
        // rows past the sequence get no gradient
        assert!(learned
            .table
            .grad
            .slice(s![4.., ..])
            .iter()
            .all(|&g| g == 0.0));
    }
}

#[test]
fn fully_masked_row_gives_zeros_and_no_nan() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let [q, k, v, r] = qkv(&mut rng, 4, 5);
    // the second sequence has no key at all
    let mask = Mask::padding(&[5, 0], 4, 5);
    let att = scaled_dot_product_attention(&q, &k, &v, Some(&mask));
    let g = scaled_dot_product_attention_backward(&q, &k, &v, &att.weights, &r);
    for a in [&att.out, &att.weights, &g.dq, &g.dk, &g.dv] {
        assert!(no_nan(a), "a NaN or infinity");
        assert!(a.slice(s![1, .., .., ..]).iter().all(|&x| x == 0.0));
        assert!(a.slice(s![0, .., .., ..]).iter().any(|&x| x != 0.0));
    }
    // the twin agrees (zeros, no NaN) on the same inputs
    let [co, cq, ck, cv] = sdpa_grads(&q, &k, &v, Some(&mask), &r).unwrap();
    for (a, b) in [(&att.out, &co), (&g.dq, &cq), (&g.dk, &ck), (&g.dv, &cv)] {
        assert!(rel_error(&f64v(a), b) < 1e-5);
    }
    // through a whole layer: no NaN in outputs or in any gradient
    let mut l = Masked(layer(0, true, true, true), Mask::padding(&[4, 0], 4, 4));
    let x = normal(&[2, 4, 4], &mut rng);
    let g = manual_grads(&mut l, &x, &normal(&[2, 4, 4], &mut rng));
    assert!(g.dx.iter().all(|v| v.is_finite()));
    assert!(g
        .params
        .iter()
        .all(|(_, p)| p.iter().all(|v| v.is_finite())));
    let w = l.0.last_weights().expect("forward ran");
    assert!(w.slice(s![1, .., .., ..]).iter().all(|&x| x == 0.0));
}

// ANCHOR: causality
#[test]
fn causal_attention_ignores_later_tokens() {
    for rope in [false, true] {
        let mut l = layer(0, true, rope, true);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let x = normal(&[2, 6, 4], &mut rng);
        let mut x2 = x.clone();
        x2.slice_mut(s![.., 4.., ..])
            .assign(&normal(&[2, 2, 4], &mut rng));
        let y = l.forward(&x, Mode::Eval);
        let y2 = l.forward(&x2, Mode::Eval);
        assert_eq!(
            y.slice(s![.., ..4, ..]),
            y2.slice(s![.., ..4, ..]),
            "rope {rope}"
        );
        assert_ne!(y.slice(s![.., 4.., ..]), y2.slice(s![.., 4.., ..]));
        // without the mask, the change does reach earlier outputs
        l.causal = false;
        let y3 = l.forward(&x2, Mode::Eval);
        assert_ne!(y2.slice(s![.., ..4, ..]), y3.slice(s![.., ..4, ..]));
        // the weights of a causal layer are lower triangular
        l.causal = true;
        l.forward(&x, Mode::Eval);
        let w = l.last_weights().unwrap();
        for ((_, _, i, j), &a) in w
            .view()
            .into_dimensionality::<ndarray::Ix4>()
            .unwrap()
            .indexed_iter()
        {
            assert!(j <= i || a == 0.0);
        }
    }
}
// ANCHOR_END: causality

#[test]
fn scaling_keeps_score_variance_near_one() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut last_raw = 0.0;
    for d_k in [4, 16, 64, 256] {
        let st = scale_stats(d_k, 16, 2000, &mut rng);
        eprintln!("{st:?}");
        let ratio = st.var_raw / d_k as f64;
        assert!(
            (0.9..1.1).contains(&ratio),
            "var(q.k) / d_k = {ratio} at d_k = {d_k}"
        );
        assert!(
            (0.9..1.1).contains(&st.var_scaled),
            "scaled variance {} at d_k {d_k}",
            st.var_scaled
        );
        assert!(
            st.max_weight_raw > last_raw,
            "the unscaled softmax grows more peaked with d_k"
        );
        last_raw = st.max_weight_raw;
        assert!(
            st.max_weight_scaled < 0.5,
            "scaled softmax peaked at {}",
            st.max_weight_scaled
        );
    }
    assert!(
        last_raw > 0.9,
        "unscaled softmax at d_k = 256: max weight {last_raw}"
    );
}

#[test]
fn rope_is_a_rotation_and_scores_depend_on_offsets() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let r = Rope::default();
    let x = normal(&[1, 1, 5, 4], &mut rng);
    // norms preserved, inverse undoes it
    let y = r.rotate(&x, false);
    let back = r.rotate(&y, true);
    assert!(rel_error(&f64v(&back), &f64v(&x)) < 1e-6);
    for p in 0..5 {
        let n =
            |a: &ArrayD<f32>| a.slice(s![0, 0, p, ..]).iter().map(|v| v * v).sum::<f32>();
        assert!((n(&x) - n(&y)).abs() < 1e-4 * n(&x));
    }
    // one q and one k placed at positions (i, j): the rotated score depends on j - i only
    let (q, k) = (normal(&[4], &mut rng), normal(&[4], &mut rng));
    let score = |i: usize, j: usize| {
        let mut a = ArrayD::<f32>::zeros(vec![1, 1, 5, 4]);
        let mut b = ArrayD::<f32>::zeros(vec![1, 1, 5, 4]);
        a.slice_mut(s![0, 0, i, ..]).assign(&q);
        b.slice_mut(s![0, 0, j, ..]).assign(&k);
        let (a, b) = (r.rotate(&a, false), r.rotate(&b, false));
        (a.slice(s![0, 0, i, ..]).to_owned() * b.slice(s![0, 0, j, ..])).sum()
    };
    assert!((score(0, 2) - score(2, 4)).abs() < 1e-5);
    assert!((score(1, 1) - score(3, 3)).abs() < 1e-5);
    assert!((score(0, 2) - score(0, 3)).abs() > 1e-3);
}

#[test]
fn mha_parameters_are_visited_by_name() {
    let mut names = vec![];
    layer(0, false, false, true).visit_params("blocks.0.attn", &mut |n, p| {
        names.push((n.to_string(), p.value.shape().to_vec()))
    });
    let want: Vec<(String, Vec<usize>)> = ["q", "k", "v", "o"]
        .iter()
        .flat_map(|p| {
            [
                (format!("blocks.0.attn.{p}.weight"), vec![4, 4]),
                (format!("blocks.0.attn.{p}.bias"), vec![4]),
            ]
        })
        .collect();
    assert_eq!(names, want);
    assert_eq!(layer(0, false, false, false).n_params(), 4 * 16);
}

#[test]
#[should_panic(expected = "disagree on d_k")]
fn mismatched_head_widths_panic_naming_shapes() {
    let q = ArrayD::<f32>::zeros(vec![1, 2, 3, 4]);
    let k = ArrayD::<f32>::zeros(vec![1, 2, 3, 5]);
    scaled_dot_product_attention(&q, &k, &k, None);
}

#[test]
#[should_panic(expected = "must be (b, t, 4), got [2, 3, 5]")]
fn wrong_model_width_panics_naming_shapes() {
    layer(0, false, false, true).forward(&ArrayD::zeros(vec![2, 3, 5]), Mode::Eval);
}

#[test]
#[should_panic(expected = "mask (2, 3, 3) vs (b, t_q, t_k)")]
fn wrong_mask_panics_naming_shapes() {
    let x = ArrayD::zeros(vec![2, 4, 4]);
    layer(0, false, false, true).forward_masked(
        &x,
        &Mask::padding(&[3, 3], 3, 3),
        Mode::Eval,
    );
}

#[test]
#[should_panic(expected = "length 9 longer than max_len 8")]
fn sequence_longer_than_max_len_panics() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    LearnedEncoding::new(8, 4, &mut rng)
        .forward(&ArrayD::zeros(vec![1, 9, 4]), Mode::Eval);
}

#[test]
#[should_panic(expected = "length 9 longer than max_len 8")]
fn sinusoidal_longer_than_max_len_panics() {
    SinusoidalEncoding::new(8, 4).forward(&ArrayD::zeros(vec![1, 9, 4]), Mode::Eval);
}
