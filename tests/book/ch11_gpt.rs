//! Section 11.3, a GPT from scratch: the parameter count, the causal attention kernel
//! against chapter 10's attention, every gradient of the model checked three ways
//! (manual, finite differences, candle autograd in `F64`) over three seeds and every
//! ablation, the candle twin's logits, causality, the KV cache against the full forward
//! pass, and bad input.
//!
//! Tolerances as in chapters 8 to 10: manual (`f32`) vs candle (`F64`) within `1e-5`;
//! anything with `f32` finite differences (step `1e-2`) within `1e-3`.

use dlbook::attn::{
    scaled_dot_product_attention, scaled_dot_product_attention_backward, Mask,
};
use dlbook::gpt::candle_twin::gpt_grads;
use dlbook::gpt::kernels::{causal_attention, causal_attention_backward};
use dlbook::gpt::{Gpt, GptConfig, Norm, Sampling};
use dlbook::nn::gradcheck::{finite_diff, manual_grads, normal, rel_error};
use dlbook::nn::{Layer, Mode, Module};
use dlbook::seq::text::Batch;
use ndarray::{s, Array2, ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ch08_rnn::{assert_three_ways, contract, f64v};

/// Finite-difference step for the `f32` code.
const H: f32 = 1e-2;

/// Seeds of every three-way check.
const SEEDS: [u64; 3] = [0, 1, 2];

/// Sequences per batch in the checks.
const B: usize = 2;

/// A model of `cfg` whose embeddings are standard normal, layer-norm weights $1 + 0.3 z$
/// and matrices $0.3 z$ ($z$ standard normal, drawn from `seed`): at GPT-2's
/// initialisation (std 0.02) the layer norms divide by tiny deviations, and a
/// finite-difference step of `1e-2` is no longer small next to them.
fn model(cfg: &GptConfig, seed: u64) -> Gpt {
    model_with(cfg, seed, 0.3)
}

/// [`model`] with matrices of standard deviation `std`.
fn model_with(cfg: &GptConfig, seed: u64, std: f32) -> Gpt {
    let mut m = Gpt::new(cfg, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
    m.visit_params("", &mut |name, p| {
        let z = normal(p.value.shape(), &mut rng);
        p.value = if name.starts_with("wte") || name.starts_with("wpe") {
            z
        } else if p.value.ndim() == 1 {
            z * 0.3 + 1.0 // layer-norm weights near their neutral 1
        } else {
            z * std
        };
    });
    m
}

/// Random ids `(b, t)` in `0..V`, as `f32`.
fn ids(cfg: &GptConfig, b: usize, t: usize, rng: &mut ChaCha8Rng) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(&[b, t]), |_| {
        rng.random_range(0..cfg.vocab_size) as f32
    })
}

/// The gradients of $\langle \text{logits}, r\rangle$ by finite differences, parameter
/// by parameter (the ids are integers and have none).
fn fd_grads(
    m: &mut Gpt,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
    h: f32,
) -> Vec<(String, ArrayD<f64>)> {
    let mut values = vec![];
    m.visit_params("", &mut |n, p| {
        values.push((n.to_string(), p.value.clone()))
    });
    let mut out = vec![];
    for (name, value) in values {
        let set = |m: &mut Gpt, v: &ArrayD<f32>| {
            m.visit_params("", &mut |n, p| {
                if n == name {
                    p.value.assign(v);
                }
            })
        };
        let g = finite_diff(&value, h, |v| {
            set(m, v);
            contract(&m.forward(x, Mode::Train), r)
        });
        set(m, &value);
        out.push((name, g));
    }
    out
}

// ANCHOR: gpt_three_ways
/// The largest pairwise errors (manual-fd, manual-candle, fd-candle) over every
/// parameter of a model of `cfg`, and the largest relative error of the from-scratch
/// logits against the twin's.
fn three_ways(cfg: &GptConfig, seed: u64, std: f32, h: f32) -> ((f64, f64, f64), f64) {
    let mut m = model_with(cfg, seed, std);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = ids(cfg, B, cfg.seq_len, &mut rng);
    let r = normal(&[B, cfg.seq_len, cfg.vocab_size], &mut rng);
    let manual = manual_grads(&mut m, &x, &r);
    let fd = fd_grads(&mut m, &x, &r, h);
    let (candle, z) = gpt_grads(&mut m, &x, &r).expect("candle twin");
    let logits = f64v(&m.forward(&x, Mode::Eval));
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for ((mp, fp), cp) in manual.params.iter().zip(&fd).zip(&candle.params) {
        assert!(
            mp.0 == fp.0 && fp.0 == cp.0,
            "parameter order {} {} {}",
            mp.0,
            fp.0,
            cp.0
        );
        worst.0 = worst.0.max(rel_error(&mp.1, &fp.1));
        worst.1 = worst.1.max(rel_error(&mp.1, &cp.1));
        worst.2 = worst.2.max(rel_error(&fp.1, &cp.1));
    }
    (worst, rel_error(&logits, &z))
}
// ANCHOR_END: gpt_three_ways

fn check_config(who: &str, cfg: &GptConfig, std: f32, h: f32) {
    for seed in SEEDS {
        let (e, logits) = three_ways(cfg, seed, std, h);
        assert_three_ways(&format!("{who}, seed {seed}"), e);
        assert!(
            logits < 1e-5,
            "{who}, seed {seed}: logits vs candle {logits:e}"
        );
    }
}

#[test]
fn gpt_gradient_three_ways() {
    check_config("tiny GPT", &GptConfig::tiny(), 0.3, H);
}

#[test]
fn gpt_ablations_gradient_three_ways() {
    let t = GptConfig::tiny();
    check_config(
        "no positions",
        &GptConfig {
            positions: false,
            ..t.clone()
        },
        0.3,
        H,
    );
    check_config(
        "post-LN",
        &GptConfig {
            norm: Norm::Post,
            ..t.clone()
        },
        0.3,
        H,
    );
    check_config(
        "one head",
        &GptConfig {
            n_heads: 1,
            ..t.clone()
        },
        0.3,
        H,
    );
    // Without residuals each sub-layer's small output is all the next layer norm sees,
    // which divides by its small deviation: the logits curve faster, and a smaller step
    // keeps the central difference's truncation error down.
    check_config(
        "no residuals",
        &GptConfig {
            residual: false,
            ..t
        },
        0.3,
        3e-3,
    );
}

/// The training path (cross-entropy over every position, then backward) against finite
/// differences of the mean loss, on the tiny model: the largest relative error.
fn loss_gradient_error(seed: u64) -> f64 {
    let cfg = GptConfig::tiny();
    let mut m = model(&cfg, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = ids(&cfg, B, cfg.seq_len, &mut rng);
    let targets = (0..B * cfg.seq_len)
        .map(|_| rng.random_range(0..cfg.vocab_size))
        .collect();
    let batch = Batch { x, targets };
    m.zero_grad();
    m.loss_and_backward(&batch);
    let mut manual = vec![];
    m.visit_params("", &mut |n, p| {
        manual.push((n.to_string(), p.value.clone(), f64v(&p.grad)))
    });
    let mut worst = 0.0f64;
    for (name, value, g) in manual {
        let fd = finite_diff(&value, H, |v| {
            m.visit_params("", &mut |n, p| {
                if n == name {
                    p.value.assign(v);
                }
            });
            f64::from(m.loss(&batch))
        });
        m.visit_params("", &mut |n, p| {
            if n == name {
                p.value.assign(&value);
            }
        });
        worst = worst.max(rel_error(&g, &fd));
    }
    worst
}

#[test]
fn loss_gradient_matches_finite_differences() {
    for seed in SEEDS {
        let e = loss_gradient_error(seed);
        assert!(
            e < 1e-3,
            "seed {seed}: loss gradient vs finite differences {e:e}"
        );
    }
}

// ANCHOR: reference_params
/// The parameter count of the reference configuration (vocabulary 65), from the formula
/// and from the model built.
fn reference_params() -> (usize, usize) {
    let cfg = GptConfig::reference(65);
    (cfg.n_params(), Gpt::new(&cfg, 0).n_params())
}
// ANCHOR_END: reference_params

#[test]
fn reference_has_the_reference_parameter_count() {
    let (formula, built) = reference_params();
    // The count of the PyTorch reference this configuration reproduces.
    assert_eq!(formula, 812_288);
    assert_eq!(built, formula);
}

#[test]
fn ablation_parameter_counts_follow_the_formula() {
    let r = GptConfig::reference(65);
    for cfg in [
        GptConfig {
            positions: false,
            ..r.clone()
        },
        GptConfig {
            norm: Norm::Post,
            ..r.clone()
        },
        GptConfig {
            n_heads: 1,
            ..r.clone()
        },
        GptConfig {
            residual: false,
            ..r.clone()
        },
    ] {
        assert_eq!(Gpt::new(&cfg, 0).n_params(), cfg.n_params(), "{cfg:?}");
    }
    assert_eq!(
        r.n_params()
            - GptConfig {
                positions: false,
                ..r.clone()
            }
            .n_params(),
        r.seq_len * r.d_model
    );
}

/// `(t, 3d)` random projections split into `(1, heads, t, d_k)` q, k, v.
fn split(qkv: &Array2<f32>, heads: usize) -> [ArrayD<f32>; 3] {
    let (t, d3) = qkv.dim();
    let d = d3 / 3;
    let part = |k: usize| {
        let part: Vec<f32> = qkv
            .slice(s![.., k * d..(k + 1) * d])
            .iter()
            .copied()
            .collect();
        let p = ArrayD::from_shape_vec(IxDyn(&[1, t, d]), part).unwrap();
        dlbook::attn::split_heads(&p, heads)
    };
    [part(0), part(1), part(2)]
}

// ANCHOR: kernel_vs_attn
/// The causal kernel (lower triangle only, in place on the fused projection) against
/// chapter 10's scaled dot-product attention with a causal mask: the largest relative
/// errors of the output, the weights and the three input gradients.
fn kernel_vs_attn(t: usize, heads: usize, dk: usize, seed: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = heads * dk;
    let qkv = normal(&[t, 3 * d], &mut rng).into_dimensionality().unwrap();
    let dout: Array2<f32> = normal(&[t, d], &mut rng).into_dimensionality().unwrap();
    let mut att = vec![0.0; heads * t * t];
    let mut out = Array2::zeros((t, d));
    causal_attention(qkv.view(), heads, &mut att, out.view_mut());
    let mut dqkv = Array2::zeros((t, 3 * d));
    let mut scratch = vec![0.0; t * t];
    causal_attention_backward(
        qkv.view(),
        heads,
        &att,
        dout.view(),
        dqkv.view_mut(),
        &mut scratch,
    );

    let [q, k, v] = split(&qkv, heads);
    let mask = Mask::causal(1, t);
    let reference = scaled_dot_product_attention(&q, &k, &v, Some(&mask));
    let merged = |a: &ArrayD<f32>| f64v(&dlbook::attn::merge_heads(a));
    let out3 = out
        .clone()
        .into_dyn()
        .into_shape_with_order(IxDyn(&[1, t, d]))
        .unwrap();
    let att4 = ArrayD::from_shape_vec(IxDyn(&[1, heads, t, t]), att).unwrap();
    let [.., dout4] = split(
        &ndarray::concatenate(ndarray::Axis(1), &[dout.view(), dout.view(), dout.view()])
            .unwrap(),
        heads,
    );
    let g = scaled_dot_product_attention_backward(&q, &k, &v, &reference.weights, &dout4);
    let [dq, dk_, dv] = split(&dqkv, heads);
    [
        rel_error(&f64v(&out3), &merged(&reference.out)),
        rel_error(&f64v(&att4), &f64v(&reference.weights)),
        rel_error(&f64v(&dq), &f64v(&g.dq)),
        rel_error(&f64v(&dk_), &f64v(&g.dk)),
        rel_error(&f64v(&dv), &f64v(&g.dv)),
    ]
    .into_iter()
    .fold(0.0, f64::max)
}
// ANCHOR_END: kernel_vs_attn

#[test]
fn causal_kernel_matches_chapter_10_attention() {
    // one block, several blocks, a ragged last block
    for (t, heads, dk) in [(6, 2, 4), (64, 4, 8), (77, 2, 16)] {
        for seed in SEEDS {
            let e = kernel_vs_attn(t, heads, dk, seed);
            assert!(
                e < 1e-5,
                "t {t}, heads {heads}, d_k {dk}, seed {seed}: {e:e}"
            );
        }
    }
}

// ANCHOR: causality
/// Changes the last token of a window: the largest change of the logits at the earlier
/// positions, and at the last.
fn causality() -> (f64, f64) {
    let cfg = GptConfig::tiny();
    let mut m = model(&cfg, 0);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x = ids(&cfg, 1, cfg.seq_len, &mut rng);
    let mut y = x.clone();
    let last = cfg.seq_len - 1;
    y[[0, last]] = ((x[[0, last]] as usize + 1) % cfg.vocab_size) as f32;
    let (a, b) = (m.forward(&x, Mode::Eval), m.forward(&y, Mode::Eval));
    let diff = |range: std::ops::Range<usize>| {
        let (sa, sb) = (
            a.slice(s![.., range.clone(), ..]),
            b.slice(s![.., range, ..]),
        );
        sa.iter()
            .zip(sb)
            .fold(0.0f64, |w, (p, q)| w.max(f64::from((p - q).abs())))
    };
    (diff(0..last), diff(last..cfg.seq_len))
}
// ANCHOR_END: causality

#[test]
fn earlier_logits_ignore_later_tokens() {
    let (before, at) = causality();
    assert_eq!(before, 0.0, "earlier positions moved by {before:e}");
    assert!(at > 1e-3, "the changed position did not move ({at:e})");
}

// ANCHOR: cached_logits
/// The KV cache against the full forward pass: for each prefix length of a window,
/// the largest relative error between the logits of [`Gpt::step_cached`] (after a
/// prefill of the first two tokens) and the full forward pass's last-position logits.
fn cached_logits_error(cfg: &GptConfig, seed: u64) -> f64 {
    let mut m = model(cfg, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let toks: Vec<usize> = (0..cfg.seq_len)
        .map(|_| rng.random_range(0..cfg.vocab_size))
        .collect();
    let (mut cache, first) = m.prefill(&toks[..2]);
    let mut worst = rel_error(
        &f64v(&ArrayD::from_shape_vec(IxDyn(&[first.len()]), first).unwrap()),
        &f64v(
            &ArrayD::from_shape_vec(IxDyn(&[cfg.vocab_size]), m.last_logits(&toks[..2]))
                .unwrap(),
        ),
    );
    for s in 2..cfg.seq_len {
        let cached = m.step_cached(&mut cache, toks[s]);
        let full = m.last_logits(&toks[..=s]);
        let v =
            |a: Vec<f32>| f64v(&ArrayD::from_shape_vec(IxDyn(&[a.len()]), a).unwrap());
        worst = worst.max(rel_error(&v(cached), &v(full)));
    }
    worst
}
// ANCHOR_END: cached_logits

#[test]
fn cached_logits_equal_the_full_forward() {
    let t = GptConfig::tiny();
    for cfg in [
        t.clone(),
        GptConfig {
            norm: Norm::Post,
            residual: false,
            positions: false,
            ..t
        },
    ] {
        for seed in SEEDS {
            let e = cached_logits_error(&cfg, seed);
            assert!(e < 1e-5, "{cfg:?}, seed {seed}: cached vs full {e:e}");
        }
    }
}

// ANCHOR: cached_tokens
/// Generated tokens with and without the cache, greedy and sampled, past the context
/// (the window moves several times): whether they are the same.
fn cached_tokens_agree() -> bool {
    let cfg = GptConfig::tiny();
    let mut m = model(&cfg, 3);
    let prompt = [1, 2, 3];
    [
        Sampling {
            temperature: 0.0,
            top_k: None,
        },
        Sampling {
            temperature: 1.0,
            top_k: None,
        },
        Sampling {
            temperature: 0.8,
            top_k: Some(4),
        },
    ]
    .into_iter()
    .all(|s| {
        let (a, b) = (
            m.generate(&prompt, 20, s, 7),
            m.generate_uncached(&prompt, 20, s, 7),
        );
        a.len() == 20 && a == b
    })
}
// ANCHOR_END: cached_tokens

#[test]
fn cached_and_uncached_generation_agree() {
    assert!(cached_tokens_agree());
}

#[test]
#[should_panic(expected = "outside the vocabulary")]
fn out_of_vocabulary_id_panics() {
    let cfg = GptConfig::tiny();
    let mut m = Gpt::new(&cfg, 0);
    let x = ArrayD::from_elem(IxDyn(&[1, 3]), cfg.vocab_size as f32);
    m.forward(&x, Mode::Eval);
}

#[test]
#[should_panic(expected = "context")]
fn window_longer_than_context_panics() {
    let cfg = GptConfig::tiny();
    let mut m = Gpt::new(&cfg, 0);
    m.forward(&ArrayD::zeros(IxDyn(&[1, cfg.seq_len + 1])), Mode::Eval);
}

#[test]
#[should_panic(expected = "not divisible")]
fn heads_must_divide_the_width() {
    Gpt::new(
        &GptConfig {
            n_heads: 3,
            ..GptConfig::tiny()
        },
        0,
    );
}

// ANCHOR: kv_flops
/// Multiply-adds for the logits of the next token at the end of the reference model's
/// context, without the cache and with it, and their ratio.
fn kv_flops() -> (f64, f64, f64) {
    let cfg = GptConfig::reference(65);
    let s = cfg.seq_len;
    let (full, cached) = (cfg.next_token_macs(s, false), cfg.next_token_macs(s, true));
    (full, cached, full / cached)
}
// ANCHOR_END: kv_flops

#[test]
fn the_kv_cache_saves_most_of_the_work() {
    let (full, cached, ratio) = kv_flops();
    assert!(
        (80.0..150.0).contains(&ratio),
        "{full} vs {cached}: {ratio}"
    );
    // linear in s with the cache, quadratic without: doubling s from 64
    let cfg = GptConfig::reference(65);
    let grow =
        |cached| cfg.next_token_macs(128, cached) / cfg.next_token_macs(64, cached);
    assert!(grow(true) < 1.2, "cached growth {}", grow(true));
    assert!(grow(false) > 2.0, "uncached growth {}", grow(false));
}

fn quick() -> &'static dlbook::report::Report {
    dlbook::experiments::quick("gpt_shakespeare", &dlbook::data::DataDir::resolve(None))
        .expect("quick run of gpt_shakespeare")
}

fn seeds(r: &dlbook::report::Report, fact: &str) -> Vec<f64> {
    match &r.facts[fact].value {
        dlbook::report::Value::Seeds(v) => v.clone(),
        v => panic!("{fact} is {v:?}"),
    }
}

#[test]
fn training_lowers_the_validation_loss() {
    let r = quick();
    let (first, last) = (seeds(r, "initial_val_loss"), seeds(r, "final_val_loss"));
    assert_eq!(first.len(), 2);
    for (a, b) in first.iter().zip(&last) {
        assert!(b < &(a - 0.5), "{a} -> {b}");
    }
}

#[test]
fn every_seed_ends_far_below_the_uniform_guess() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let r = dlbook::experiments::committed(&root, "gpt_shakespeare").unwrap();
    let ln_v = r.get_fact("ln_vocab").unwrap();
    let (first, last) = (seeds(&r, "initial_val_loss"), seeds(&r, "final_val_loss"));
    assert_eq!(last.len(), 3);
    for (a, b) in first.iter().zip(&last) {
        assert!((a - ln_v).abs() < 0.2, "initial {a} vs ln V = {ln_v}");
        assert!(*b < ln_v - 2.0, "final {b} vs ln V = {ln_v}");
    }
}

// ---------------------------------------------------------------------------------------
// The ablation and the attention heads (experiment `gpt_ablation`).

use dlbook::experiments::gpt_ablation::{gelu_gap, mean_share, uniform_causal};
use dlbook::report::{Plot, Report};

fn quick_ablation() -> &'static Report {
    dlbook::experiments::quick("gpt_ablation", &dlbook::data::DataDir::resolve(None))
        .expect("quick run of gpt_ablation")
}

fn committed_ablation() -> Report {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dlbook::experiments::committed(&root, "gpt_ablation").unwrap()
}

#[test]
fn head_shares_measure_what_they_say() {
    let (b, t) = (2, 5);
    // a head that looks at the previous character only (the first query at itself)
    let prev = ndarray::Array4::from_shape_fn((b, 1, t, t), |(_, _, q, k)| {
        f32::from(u8::from(k + 1 == q || (q == 0 && k == 0)))
    });
    assert_eq!(mean_share(prev.view(), |_, q, k| k + 1 == q), vec![1.0]);
    assert_eq!(mean_share(prev.view(), |_, q, k| k == q), vec![0.0]);
    // uniform: 1/(q+1) on each key, so the mean over q = 1..t-1 of 1/(q+1)
    let u = uniform_causal(b, 1, t);
    let want = (1..t).map(|q| 1.0 / (q + 1) as f64).sum::<f64>() / (t - 1) as f64;
    let got = mean_share(u.view(), |_, q, k| k + 1 == q)[0];
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    // and the share of all the keys is one
    let all = mean_share(u.view(), |_, _, _| true)[0];
    assert!((all - 1.0).abs() < 1e-6, "{all}");
}

#[test]
fn attention_maps_are_causal_rows_summing_to_one() {
    let r = quick_ablation();
    let maps: Vec<_> = r
        .figures
        .iter()
        .filter(|f| f.name.starts_with("attention_block"))
        .collect();
    assert_eq!(maps.len(), 2, "one map per block of the quick model");
    for f in maps {
        let Plot::Attention(a) = &f.plot else {
            panic!("{} is an attention map", f.name)
        };
        assert_eq!(a.panels.len(), 2);
        assert_eq!(a.query_labels.concat(), "BAPTISTA:↵When␣will␣he␣be␣here?↵");
        for panel in &a.weights {
            for (q, row) in panel.iter().enumerate() {
                let sum: f64 = row.iter().sum();
                assert!(
                    (sum - 1.0).abs() < 1e-4,
                    "{}: row {q} sums to {sum}",
                    f.name
                );
                assert!(
                    row[q + 1..].iter().all(|&w| w == 0.0),
                    "{}: row {q}",
                    f.name
                );
            }
        }
    }
}

#[test]
fn the_tanh_gelu_is_close_to_the_exact_one() {
    let (gap, _) = gelu_gap().unwrap();
    assert!(gap > 0.0 && gap < 1e-3, "{gap}");
    let committed = committed_ablation().get_fact("gelu_max_gap").unwrap();
    assert!((committed - gap).abs() < 1e-3 * gap, "{committed} vs {gap}");
}

/// The mean and spread over seeds of the committed ablation's validation loss of `key`.
fn ablation_val(r: &Report, key: &str) -> (f64, f64) {
    dlbook::report::Value::mean_std(&seeds(r, &format!("val_{key}")))
}

#[test]
fn removing_residuals_costs_by_far_the_most() {
    let r = committed_ablation();
    let gap = |k: &str| r.get_fact(&format!("gap_{k}")).unwrap();
    let worst_other = ["no_positions", "post_ln", "post_ln_warmup", "one_head"]
        .map(gap)
        .into_iter()
        .fold(0.0f64, f64::max);
    assert!(
        gap("no_residual") > 5.0 * worst_other,
        "{} vs {worst_other}",
        gap("no_residual")
    );
}

#[test]
fn positions_and_pre_ln_each_matter() {
    let r = committed_ablation();
    let (reference, ref_sd) = ablation_val(&r, "reference");
    for key in ["no_positions", "post_ln"] {
        let (v, sd) = ablation_val(&r, key);
        assert!(
            v - reference > 2.0 * sd.max(ref_sd),
            "{key}: {v} ± {sd} vs {reference} ± {ref_sd}"
        );
    }
}

#[test]
fn the_warm_up_costs_steps_this_early() {
    let r = committed_ablation();
    assert!(ablation_val(&r, "post_ln_warmup").0 > ablation_val(&r, "post_ln").0);
}

#[test]
fn one_head_costs_least() {
    let r = committed_ablation();
    let one = ablation_val(&r, "one_head").0;
    for key in ["no_positions", "post_ln", "post_ln_warmup", "no_residual"] {
        assert!(one < ablation_val(&r, key).0, "one head {one} vs {key}");
    }
}

/// The committed heads table: each head's four shares, and the uniform head's.
fn head_shares(r: &Report) -> (Vec<(String, Vec<f64>)>, Vec<f64>) {
    let t = r.table("heads").expect("the heads table");
    let rows: Vec<(String, Vec<f64>)> = t
        .rows
        .iter()
        .map(|row| {
            let name = match &row[0] {
                dlbook::report::Value::Text(s) => s.clone(),
                v => panic!("head name {v:?}"),
            };
            let shares = row[1..]
                .iter()
                .map(|v| match v {
                    dlbook::report::Value::Num(x) => *x,
                    v => panic!("share {v:?}"),
                })
                .collect();
            (name, shares)
        })
        .collect();
    let (uniform, heads): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|(n, _)| n.starts_with("uniform"));
    assert_eq!(uniform.len(), 1);
    (heads, uniform[0].1.clone())
}

#[test]
fn the_first_block_is_still_nearly_uniform() {
    let (heads, uniform) = head_shares(&committed_ablation());
    let first: Vec<_> = heads
        .iter()
        .filter(|(n, _)| n.starts_with("block 0"))
        .collect();
    assert_eq!(first.len(), 4);
    for (name, shares) in first {
        for (s, u) in shares.iter().zip(&uniform) {
            assert!((s - u).abs() < 0.04, "{name}: {s} vs uniform {u}");
        }
    }
}

#[test]
fn later_heads_specialise_beyond_uniform() {
    let r = committed_ablation();
    let share = |k: &str| r.get_fact(k).unwrap();
    assert!(share("max_previous") > 3.0 * share("uniform_previous"));
    assert!(share("max_itself") > 3.0 * share("uniform_itself"));
    assert!(share("max_space") > 2.0 * share("uniform_space"));
    // and the maxima are the table's
    let (heads, _) = head_shares(&r);
    let col_max = |c: usize| heads.iter().map(|(_, s)| s[c]).fold(0.0f64, f64::max);
    assert!((col_max(0) - share("max_previous")).abs() < 1e-9);
    assert!((col_max(3) - share("max_space")).abs() < 1e-9);
}

#[test]
fn no_head_is_a_sink_yet() {
    let r = committed_ablation();
    let (max_first, uniform) = (
        r.get_fact("max_first").unwrap(),
        r.get_fact("uniform_first").unwrap(),
    );
    assert!(max_first < uniform + 0.01, "{max_first} vs {uniform}");
}
