//! Chapter 11.1, the blocks: GELU and its derivative, the feed-forward network, the
//! encoder block and the decoder block (pre-LN and post-LN, with and without residuals
//! and biases), every gradient checked three ways (manual, finite differences, candle
//! autograd in `F64`) over three seeds, and the blocks' outputs against the candle twin.
//!
//! Tolerances are chapter 8's: manual (`f32`) vs candle (`F64`) within `1e-5`; anything
//! involving `f32` finite differences (step `h = 1e-2`) within `1e-3`.

use dlbook::attn::Mask;
use dlbook::nn::gradcheck::{
    finite_diff, manual_grads, max_rel_error, normal, numeric_grads, rel_error, Grads,
};
use dlbook::nn::{Activation, Layer, Mode, Module, Param};
use dlbook::transformer::candle_twin::{
    decoder_forward, decoder_grads, encoder_forward, encoder_grads,
};
use dlbook::transformer::{BlockConfig, DecoderBlock, DecoderMasks, EncoderBlock, Norm};
use ndarray::ArrayD;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::ch08_rnn::{assert_three_ways, contract, f64v};

/// Finite-difference step for the `f32` code.
const H: f32 = 1e-2;

/// Seeds of every three-way check.
const SEEDS: [u64; 3] = [0, 1, 2];

/// The sizes of the checks: batch, target and memory lengths, width, heads.
const B: usize = 2;
const T: usize = 3;
const T_M: usize = 4;
const D: usize = 8;
const D_FF: usize = 12;
const HEADS: usize = 2;

#[test]
fn gelu_derivative_matches_finite_differences() {
    let f = Activation::Gelu;
    let mut worst = 0.0f64;
    for i in -60..=60 {
        let x = i as f64 / 10.0;
        let h = 1e-4;
        let fd = (f64::from(f.f((x + h) as f32)) - f64::from(f.f((x - h) as f32)))
            / (((x + h) as f32 - (x - h) as f32) as f64);
        let manual = f64::from(f.df(x as f32, f.f(x as f32)));
        worst = worst.max((fd - manual).abs());
    }
    assert!(
        worst < 2e-3,
        "GELU derivative vs finite differences: {worst:e}"
    );
    // the exact form: x Phi(x); Phi(1) = 0.841344746...
    assert!((f.f(1.0) - 0.841_344_7).abs() < 1e-6);
    assert!((f.f(-1.0) + 0.158_655_25).abs() < 1e-6);
    // the derivative dips below zero left of about -0.75 and tends to 0 and 1
    assert!(f.df(-1.0, f.f(-1.0)) < 0.0 && f.df(-0.5, f.f(-0.5)) > 0.0);
    assert!(f.df(-8.0, 0.0).abs() < 1e-6 && (f.df(8.0, 8.0) - 1.0).abs() < 1e-6);
}

/// A block config of the checks' sizes.
fn cfg(norm: Norm, residual: bool, bias: bool) -> BlockConfig {
    BlockConfig {
        d_ff: D_FF,
        norm,
        residual,
        bias,
        ..BlockConfig::new(D, HEADS)
    }
}

/// Moves every bias and layer-norm parameter off its initial value, so that their
/// gradients are checked at a generic point.
fn perturb(m: &mut dyn Module, rng: &mut ChaCha8Rng) {
    m.visit_params("", &mut |n, p| {
        if n.ends_with("bias") || n.ends_with("beta") {
            p.value = normal(p.value.shape(), rng) * 0.5;
        } else if n.ends_with("gamma") {
            p.value = normal(p.value.shape(), rng) * 0.3 + 1.0;
        }
    });
}

/// The gradient of a key projection's bias is zero in exact arithmetic (a common shift
/// of every score of a query, which the softmax ignores; chapter 10): checks it is tiny
/// and drops it from the relative comparison.
fn without_key_bias(mut g: Grads, who: &str) -> Grads {
    g.params.retain(|(n, kb)| {
        if !n.ends_with("k.bias") {
            return true;
        }
        let worst = kb.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(worst < 1e-4, "{who}: {n} gradient {worst:e}, not zero");
        false
    });
    g
}

fn errors(a: &Grads, b: &Grads, c: &Grads) -> (f64, f64, f64) {
    (
        max_rel_error(a, b),
        max_rel_error(a, c),
        max_rel_error(b, c),
    )
}

/// An encoder block with a fixed padding mask, as a `Layer` for the checks.
struct Enc(EncoderBlock, Mask);

impl Module for Enc {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.0.visit_params(prefix, f)
    }
}

impl Layer for Enc {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.0.forward_masked(x, Some(&self.1), mode)
    }
    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.0.backward(dy)
    }
}

/// The three pairwise errors of the encoder block's gradients (worst over the seeds),
/// and the worst difference between its output and the twin's.
fn encoder_three_ways(norm: Norm, residual: bool, bias: bool) -> ((f64, f64, f64), f64) {
    let mut worst = ((0.0f64, 0.0f64, 0.0f64), 0.0f64);
    for seed in SEEDS {
        let who = format!("encoder {norm:?} residual {residual} bias {bias} seed {seed}");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut block = EncoderBlock::new(cfg(norm, residual, bias), &mut rng);
        perturb(&mut block, &mut rng);
        let x = normal(&[B, T, D], &mut rng);
        let r = normal(&[B, T, D], &mut rng);
        let mask = Mask::padding(&[T, 2], T, T);
        let mut l = Enc(block, mask.clone());
        let manual = without_key_bias(manual_grads(&mut l, &x, &r), &who);
        let num = without_key_bias(numeric_grads(&mut l, &x, &r, H), &who);
        let candle =
            without_key_bias(encoder_grads(&l.0, &x, Some(&mask), &r).unwrap(), &who);
        let names: Vec<&str> = manual.params.iter().map(|(n, _)| n.as_str()).collect();
        let cnames: Vec<&str> = candle.params.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, cnames, "{who}");
        let e = errors(&manual, &num, &candle);
        assert_three_ways(&who, e);
        let y = l.0.forward_masked(&x, Some(&mask), Mode::Eval);
        let ty = encoder_forward(&l.0, &x, Some(&mask)).unwrap();
        let out = rel_error(&f64v(&y), &ty);
        worst = (
            (
                worst.0 .0.max(e.0),
                worst.0 .1.max(e.1),
                worst.0 .2.max(e.2),
            ),
            worst.1.max(out),
        );
    }
    worst
}

// ANCHOR: encoder_three_ways
#[test]
fn encoder_block_gradients_agree_three_ways() {
    for norm in [Norm::PreLn, Norm::PostLn] {
        for (residual, bias) in [(true, true), (false, true), (true, false)] {
            let (_, out) = encoder_three_ways(norm, residual, bias);
            assert!(out < 1e-5, "{norm:?}: output vs twin {out:e}");
        }
    }
}
// ANCHOR_END: encoder_three_ways

/// A decoder block reading a fixed memory, as a `Layer` in its target input.
struct Dec(DecoderBlock, ArrayD<f32>, Mask, Mask);

impl Dec {
    fn masks(&self) -> DecoderMasks<'_> {
        DecoderMasks {
            target: Some(&self.2),
            memory: Some(&self.3),
        }
    }
}

impl Module for Dec {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.0.visit_params(prefix, f)
    }
}

impl Layer for Dec {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let (m, t, mm) = (self.1.clone(), self.2.clone(), self.3.clone());
        let masks = DecoderMasks {
            target: Some(&t),
            memory: Some(&mm),
        };
        self.0.forward_cross(x, &m, masks, mode)
    }
    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.0.backward_cross(dy).0
    }
}

// ANCHOR: decoder_three_ways
#[test]
fn decoder_block_gradients_agree_three_ways() {
    for norm in [Norm::PreLn, Norm::PostLn] {
        for seed in SEEDS {
            let who = format!("decoder {norm:?} seed {seed}");
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut block = DecoderBlock::new(cfg(norm, true, true), &mut rng);
            perturb(&mut block, &mut rng);
            let x = normal(&[B, T, D], &mut rng);
            let memory = normal(&[B, T_M, D], &mut rng);
            let r = normal(&[B, T, D], &mut rng);
            let target = Mask::padding(&[T, 2], T, T);
            let source = Mask::padding(&[T_M, 3], T, T_M);
            let mut l = Dec(block, memory.clone(), target, source);
            let manual = without_key_bias(manual_grads(&mut l, &x, &r), &who);
            let num = without_key_bias(numeric_grads(&mut l, &x, &r, H), &who);
            let (candle, cmem) = decoder_grads(&l.0, &x, &memory, l.masks(), &r).unwrap();
            let candle = without_key_bias(candle, &who);
            // d memory, by the block's backward and by finite differences
            let (t, mm) = (l.2.clone(), l.3.clone());
            let masks = DecoderMasks {
                target: Some(&t),
                memory: Some(&mm),
            };
            l.0.forward_cross(&x, &memory, masks, Mode::Train);
            let (_, dmem) = l.0.backward_cross(&r);
            let fd_mem = finite_diff(&memory, H, |m| {
                contract(&l.0.forward_cross(&x, m, masks, Mode::Train), &r)
            });
            let (a, b, c) = errors(&manual, &num, &candle);
            let dm = f64v(&dmem);
            let e = (
                a.max(rel_error(&dm, &fd_mem)),
                b.max(rel_error(&dm, &cmem)),
                c.max(rel_error(&fd_mem, &cmem)),
            );
            if norm == Norm::PreLn {
                assert_three_ways(&who, e);
            } else {
                // Post-LN puts three layer norms in series on the path to the
                // self-attention: its gradients come out small, and against them the
                // f32 finite differences are off by up to ~2e-3 whatever the step
                // (smaller steps drown in rounding, larger ones in curvature). The exact
                // comparison with candle keeps chapter 8's tolerance.
                eprintln!(
                    "{who}: manual-fd {:e}, manual-candle {:e}, fd-candle {:e}",
                    e.0, e.1, e.2
                );
                assert!(e.1 < 1e-5, "{who}: manual vs candle {:e}", e.1);
                assert!(e.0 < 5e-3 && e.2 < 5e-3, "{who}: finite differences {e:?}");
            }
            let y = l.0.forward_cross(&x, &memory, masks, Mode::Eval);
            let ty = decoder_forward(&l.0, &x, &memory, masks).unwrap();
            assert!(rel_error(&f64v(&y), &ty) < 1e-5, "{who}: output vs twin");
        }
    }
}
// ANCHOR_END: decoder_three_ways

#[test]
fn block_parameters_are_visited_by_dotted_name() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut names = vec![];
    EncoderBlock::new(cfg(Norm::PreLn, true, true), &mut rng)
        .visit_params("encoder.0", &mut |n, _| names.push(n.to_string()));
    for want in [
        "encoder.0.attn.q.weight",
        "encoder.0.attn.o.bias",
        "encoder.0.ln1.gamma",
        "encoder.0.ffn.fc1.weight",
        "encoder.0.ffn.fc2.bias",
        "encoder.0.ln2.beta",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    // 4 projections (weight, bias), 2 layer norms, 2 linear layers (weight, bias)
    assert_eq!(names.len(), 8 + 4 + 4);
    let mut dec = DecoderBlock::new(cfg(Norm::PostLn, true, false), &mut rng);
    let mut names = vec![];
    dec.visit_params("", &mut |n, _| names.push(n.to_string()));
    assert!(names.contains(&"cross_attn.k.weight".to_string()));
    assert!(names.contains(&"ln3.gamma".to_string()));
    // without biases: 8 projection weights, 2 feed-forward weights, 3 layer norms
    assert_eq!(names.len(), 8 + 2 + 6);
    assert_eq!(dec.n_params(), 8 * D * D + 2 * D * D_FF + 6 * D);
}

#[test]
fn decoder_block_is_causal() {
    for norm in [Norm::PreLn, Norm::PostLn] {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut block = DecoderBlock::new(cfg(norm, true, true), &mut rng);
        let x = normal(&[1, 5, D], &mut rng);
        let memory = normal(&[1, T_M, D], &mut rng);
        let mut x2 = x.clone();
        x2.slice_mut(ndarray::s![.., 3.., ..])
            .assign(&normal(&[1, 2, D], &mut rng));
        let m = DecoderMasks::default();
        let y = block.forward_cross(&x, &memory, m, Mode::Eval);
        let y2 = block.forward_cross(&x2, &memory, m, Mode::Eval);
        assert_eq!(
            y.slice(ndarray::s![.., ..3, ..]),
            y2.slice(ndarray::s![.., ..3, ..])
        );
        assert_ne!(
            y.slice(ndarray::s![.., 3.., ..]),
            y2.slice(ndarray::s![.., 3.., ..])
        );
    }
}

#[test]
#[should_panic(
    expected = "DecoderBlock (memory): input must be (b, t, 8), got [2, 4, 5]"
)]
fn decoder_memory_of_the_wrong_width_panics_naming_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    DecoderBlock::new(cfg(Norm::PreLn, true, true), &mut rng).forward_cross(
        &ArrayD::zeros(vec![2, 3, D]),
        &ArrayD::zeros(vec![2, 4, 5]),
        DecoderMasks::default(),
        Mode::Eval,
    );
}

// --- BERT's encoder from scratch (section 11.5) ---

mod bert_scratch {
    use std::sync::OnceLock;

    use dlbook::data::DataDir;
    use dlbook::experiments::minilm_scratch::{max_differences, sentences};
    use dlbook::models::bert::{cosine, CandleMiniLm};
    use dlbook::transformer::bert::ScratchMiniLm;
    use dlbook::transformer::Norm;

    fn data() -> DataDir {
        DataDir::resolve(None)
    }

    fn candle() -> &'static CandleMiniLm {
        static M: OnceLock<CandleMiniLm> = OnceLock::new();
        M.get_or_init(|| CandleMiniLm::load(&data()).unwrap_or_else(|e| panic!("{e:#}")))
    }

    // ANCHOR: scratch_agrees
    #[test]
    fn scratch_minilm_matches_candle() {
        let mut scratch =
            ScratchMiniLm::load(&data()).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(scratch.layers.len(), 6);
        assert!(scratch.layers.iter().all(|b| b.cfg.norm == Norm::PostLn));
        let text = sentences();
        let batch = candle().tokenizer.encode(&text).unwrap();
        // the sentences differ in length: the batch is padded
        assert!(batch.mask.contains(&0), "no padding in the batch");
        let (hidden, emb) = max_differences(&mut scratch, candle(), &text).unwrap();
        eprintln!("max |scratch - candle|: hidden {hidden:e}, embeddings {emb:e}");
        assert!(hidden < 1e-4, "hidden states differ by {hidden:e}");
        assert!(emb < 1e-5, "embeddings differ by {emb:e}");
        // and the embeddings still tell a paraphrase from an unrelated sentence
        let e = scratch.embed(&text[..3]).unwrap();
        assert!(cosine(&e[0], &e[1]) > cosine(&e[0], &e[2]));
        // every layer's attention weights are there, rows summing to one on real keys
        let w = scratch.attention_weights();
        assert_eq!(w.len(), 6);
        let w0 = w[0].expect("forward ran");
        assert_eq!(w0.shape()[1], 12);
        let s: f32 = w0.slice(ndarray::s![0, 0, 0, ..]).sum();
        assert!((s - 1.0).abs() < 1e-5);
    }
    // ANCHOR_END: scratch_agrees

    #[test]
    fn scratch_minilm_quick_run_agrees() {
        let r = dlbook::experiments::quick("minilm_scratch", &data())
            .unwrap_or_else(|e| panic!("{e:#}"));
        let hidden = r.get_fact("max_diff_hidden").unwrap();
        let emb = r.get_fact("max_diff_embedding").unwrap();
        assert!(hidden < 1e-4 && emb < 1e-5, "{hidden:e} {emb:e}");
        assert_eq!(r.figures.len(), 1);
    }
}

// --- sequence to sequence (section 11.2) ---

mod seq2seq {
    use dlbook::data::DataDir;
    use dlbook::experiments::seq2seq_sort::model_config;
    use dlbook::nn::gradcheck::{finite_diff, rel_error};
    use dlbook::nn::{Mode, Module};
    use dlbook::report::Report;
    use dlbook::transformer::seq2seq::{ids_array, sort_batch, Seq2Seq, Seq2SeqConfig};
    use dlbook::transformer::{BlockConfig, Norm};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn quick(name: &str) -> &'static Report {
        dlbook::experiments::quick(name, &DataDir::resolve(None))
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A tiny random model over `vocab` tokens.
    fn tiny(vocab: usize, norm: Norm, seed: u64) -> Seq2Seq {
        let cfg = Seq2SeqConfig {
            vocab_size: vocab,
            n_layers: 1,
            block: BlockConfig {
                d_ff: 8,
                norm,
                ..BlockConfig::new(4, 2)
            },
            max_len: 8,
        };
        let mut m = Seq2Seq::new(cfg, &mut ChaCha8Rng::seed_from_u64(seed));
        // larger weights: sharper, less uniform distributions to decode
        m.visit_params("", &mut |_, p| p.value *= 2.0);
        m
    }

    /// The whole model's gradient (every parameter, the memory's path through the
    /// encoder included) against finite differences of its loss.
    #[test]
    fn seq2seq_gradient_matches_finite_differences() {
        for norm in [Norm::PreLn, Norm::PostLn] {
            let mut m = tiny(3, norm, 0);
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let (src, tgt_in, tgt) = sort_batch(2, 3, 3, &mut rng);
            let (src, tgt_in, labels) =
                (ids_array(&src), ids_array(&tgt_in), tgt.concat());
            m.zero_grad();
            m.loss_and_backward(&src, &tgt_in, &labels);
            let mut worst = 0.0f64;
            for name in [
                "src_emb.weight",
                "encoder.0.attn.v.weight",
                "decoder.0.cross_attn.k.weight",
                "out.weight",
            ] {
                let mut value = None;
                let mut grad = None;
                m.visit_params("", &mut |n, p| {
                    if n == name {
                        value = Some(p.value.clone());
                        grad = Some(p.grad.mapv(f64::from));
                    }
                });
                let (value, grad) = (value.unwrap(), grad.unwrap());
                let fd = finite_diff(&value, 1e-2, |v| {
                    m.visit_params("", &mut |n, p| {
                        if n == name {
                            p.value.assign(v);
                        }
                    });
                    let logits = m.forward(&src, &tgt_in, Mode::Train);
                    let (b, t, k) =
                        (logits.shape()[0], logits.shape()[1], logits.shape()[2]);
                    let flat = logits.into_shape_with_order(vec![b * t, k]).unwrap();
                    f64::from(dlbook::nn::softmax_cross_entropy(&flat, &labels).0)
                });
                m.visit_params("", &mut |n, p| {
                    if n == name {
                        p.value.assign(&value);
                    }
                });
                worst = worst.max(rel_error(&grad, &fd));
            }
            assert!(worst < 1e-2, "{norm:?}: {worst:e}");
        }
    }

    // ANCHOR: beam_checks
    #[test]
    fn beam_width_one_is_greedy() {
        for seed in 0..3 {
            let mut m = tiny(5, Norm::PreLn, seed);
            let (src, _, _) = sort_batch(4, 5, 5, &mut ChaCha8Rng::seed_from_u64(seed));
            let greedy = m.greedy(&src);
            for (s, g) in src.iter().zip(&greedy) {
                let b = m.beam(s, 1);
                assert_eq!(b.len(), 1);
                assert_eq!(b[0].tokens, g.tokens);
                assert!((b[0].log_prob - g.log_prob).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn beam_is_at_least_greedy_and_wide_beam_is_exhaustive() {
        let (mut better, mut cases) = (0, 0);
        for seed in 0..4 {
            let mut m = tiny(3, Norm::PreLn, seed);
            let (src, _, _) =
                sort_batch(4, 4, 3, &mut ChaCha8Rng::seed_from_u64(10 + seed));
            let greedy = m.greedy(&src);
            for (s, g) in src.iter().zip(&greedy) {
                // the log-probabilities decoding reports are those of a teacher-forced pass
                let scored = m.sequence_log_probs(s, std::slice::from_ref(&g.tokens))[0];
                assert!((scored - g.log_prob).abs() < 1e-4);
                let b3 = m.beam(s, 3);
                assert!(b3[0].log_prob >= g.log_prob - 1e-9);
                better += usize::from(b3[0].log_prob > g.log_prob + 1e-6);
                cases += 1;
                // width V^(n-1) keeps every prefix: the exact best sequence
                let best = m.exhaustive(s);
                let wide = m.beam(s, 3usize.pow(3));
                assert_eq!(wide[0].tokens, best.tokens);
                assert!((wide[0].log_prob - best.log_prob).abs() < 1e-4);
                assert!(best.log_prob >= b3[0].log_prob - 1e-4);
            }
        }
        eprintln!("beam of width 3 beat greedy on {better} of {cases} inputs");
        assert!(better > 0, "the check never separates beam from greedy");
    }
    // ANCHOR_END: beam_checks

    #[test]
    fn sort_quick_run_learns() {
        let r = quick("seq2seq_sort");
        let acc = r.get_fact("greedy_4").unwrap();
        eprintln!("quick greedy accuracy, n = 4: {acc}");
        assert!(acc > 0.5, "greedy accuracy at n = 4: {acc}");
        assert_eq!(
            r.figures
                .iter()
                .filter(|f| f.name.starts_with("cross_attention"))
                .count(),
            4
        );
    }

    #[test]
    fn model_parameters_are_visited_by_dotted_name() {
        let mut m = Seq2Seq::new(
            model_config(2, Norm::PreLn),
            &mut ChaCha8Rng::seed_from_u64(0),
        );
        let mut names = vec![];
        m.visit_params("", &mut |n, _| names.push(n.to_string()));
        for want in [
            "src_emb.weight",
            "encoder.1.ffn.fc2.bias",
            "enc_ln.gamma",
            "decoder.0.cross_attn.q.weight",
            "dec_ln.beta",
            "out.weight",
        ] {
            assert!(names.iter().any(|n| n == want), "{want}");
        }
        let mut post = Seq2Seq::new(
            model_config(2, Norm::PostLn),
            &mut ChaCha8Rng::seed_from_u64(0),
        );
        let mut names = vec![];
        post.visit_params("", &mut |n, _| names.push(n.to_string()));
        assert!(!names.iter().any(|n| n.starts_with("enc_ln")));
    }
}

// --- claims on the committed full runs and the quick runs ---

mod results {
    use dlbook::data::DataDir;
    use dlbook::experiments;
    use dlbook::report::{Report, Value};

    fn committed(name: &str) -> Report {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        experiments::committed(&root, name).unwrap()
    }

    fn fact(r: &Report, name: &str) -> f64 {
        r.get_fact(name).unwrap_or_else(|| panic!("no fact {name}"))
    }

    #[test]
    fn sorting_generalises_within_training_lengths_only() {
        let r = committed("seq2seq_sort");
        for n in [4, 6, 8] {
            assert!(fact(&r, &format!("greedy_{n}")) > 0.95, "n = {n}");
        }
        assert!(fact(&r, "greedy_10") < 0.6);
        assert!(fact(&r, "greedy_12") < 0.1);
    }

    #[test]
    fn beam_and_greedy_agree_on_the_trained_sorter() {
        let r = committed("seq2seq_sort");
        for n in [4, 6, 8, 10, 12] {
            let (g, b) = (
                fact(&r, &format!("greedy_{n}")),
                fact(&r, &format!("beam_{n}")),
            );
            assert!((g - b).abs() <= 0.02, "n = {n}: greedy {g}, beam {b}");
        }
    }

    #[test]
    fn cross_attention_points_at_the_digit_written() {
        assert!(fact(&committed("seq2seq_sort"), "map_on_digit") >= 0.5);
    }

    /// The gradient norms of the blocks in the `grad_norms` table: `(pre-LN, post-LN)`
    /// of the first and the last block of `stack`.
    fn ends(r: &Report, stack: &str) -> ((f64, f64), (f64, f64)) {
        let t = r.table("grad_norms").unwrap();
        let rows: Vec<&Vec<Value>> = t
            .rows
            .iter()
            .filter(|row| matches!(&row[0], Value::Text(n) if n.starts_with(stack)))
            .collect();
        let get = |row: &Vec<Value>| (row[1].number().unwrap(), row[2].number().unwrap());
        (get(rows[0]), get(rows[rows.len() - 1]))
    }

    #[test]
    fn post_ln_gradients_grow_toward_the_output() {
        let quick = experiments::quick("ln_placement", &DataDir::resolve(None))
            .unwrap_or_else(|e| panic!("{e:#}"));
        for r in [quick, &committed("ln_placement")] {
            let ((pre_first, post_first), (pre_last, post_last)) = ends(r, "decoder");
            assert!(
                post_last > 2.0 * post_first,
                "post-LN {post_first} -> {post_last}"
            );
            assert!(pre_last < pre_first, "pre-LN {pre_first} -> {pre_last}");
            assert!(post_last > 2.0 * pre_last);
            let ((pre_enc_first, _), (pre_enc_last, _)) = ends(r, "encoder");
            assert!(pre_enc_last < pre_enc_first);
        }
    }

    #[test]
    fn post_ln_trains_worse_and_warm_up_helps_it() {
        let r = committed("ln_placement");
        assert!(fact(&r, "pre_nowarmup_loss") < fact(&r, "post_nowarmup_loss"));
        assert!(fact(&r, "pre_nowarmup_acc") > fact(&r, "post_nowarmup_acc"));
        assert!(fact(&r, "post_warmup_acc") > fact(&r, "post_nowarmup_acc"));
    }

    #[test]
    fn scratch_encoder_agrees_with_candle_in_the_committed_run() {
        let r = committed("minilm_scratch");
        assert!(fact(&r, "max_diff_hidden") < 1e-4);
        assert!(fact(&r, "max_diff_embedding") < 1e-5);
    }
}
