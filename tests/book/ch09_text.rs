//! Section 9.3, character-level text generation: the vocabulary, the split, the batches,
//! sampling, the fast activations and the LSTM's fast path (checked three ways against
//! finite differences and candle, and against the exact path), the fused read-out and
//! cross-entropy, the whole model's gradients three ways, the quick run, and bad input.
//!
//! Tolerances as in chapter 8: manual (`f32`, fast activations included) vs candle
//! (`F64`) within `1e-5`; anything with `f32` finite differences (step `1e-2`) within
//! `1e-3`; the fast path against the exact one within `1e-5`.

use candle_core::DType;
use dlbook::bench::char_lstm::CandleCharLstm;
use dlbook::data::DataDir;
use dlbook::experiments;
use dlbook::nn::candle_twin::to_array;
use dlbook::nn::gradcheck::{
    finite_diff, manual_grads, max_rel_error, normal, numeric_grads, rel_error, Grads,
};
use dlbook::nn::{softmax_cross_entropy, Layer, Mode, Module};
use dlbook::report::Report;
use dlbook::rnn::candle_twin::{self, Cell};
use dlbook::rnn::{sigmoid_fast, tanh_fast, Lstm};
use dlbook::seq::text::{
    cross_entropy, generate, random_batch, sample, validation_batches, CharCorpus,
    CharLstm, CharLstmConfig, SampleSpec, Vocab,
};
use ndarray::{Array2, ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn dir() -> DataDir {
    DataDir::resolve(None)
}

fn corpus() -> CharCorpus {
    CharCorpus::tiny_shakespeare(&dir()).expect("Tiny Shakespeare in the data folder")
}

fn quick() -> &'static Report {
    experiments::quick("char_lstm", &dir()).expect("quick run of char_lstm")
}

fn fact(name: &str) -> f64 {
    quick()
        .get_fact(name)
        .unwrap_or_else(|| panic!("fact {name}"))
}

// ANCHOR: vocab_round_trip
/// Tiny Shakespeare's vocabulary size, and whether decoding the encoded text gives it
/// back.
fn vocab_round_trip() -> (usize, bool) {
    let text = dlbook::data::read_corpus(&dir().verified("tinyshakespeare.txt").unwrap())
        .unwrap();
    let vocab = Vocab::from_text(&text).unwrap();
    let ids = vocab.encode(&text).unwrap();
    (vocab.len(), vocab.decode(&ids) == text)
}
// ANCHOR_END: vocab_round_trip

#[test]
fn the_vocabulary_has_65_characters_and_round_trips() {
    assert_eq!(vocab_round_trip(), (65, true));
}

#[test]
fn the_split_is_disjoint_and_in_order() {
    let c = corpus();
    let text = dlbook::data::read_corpus(&dir().verified("tinyshakespeare.txt").unwrap())
        .unwrap();
    let all = c.vocab.encode(&text).unwrap();
    assert_eq!(c.valid.len(), all.len() / 10);
    assert_eq!(c.train.len() + c.valid.len(), all.len());
    // The training part is the start of the text and the validation part its end.
    assert_eq!(&all[..c.train.len()], &c.train[..]);
    assert_eq!(&all[c.train.len()..], &c.valid[..]);
}

#[test]
fn validation_batches_are_fixed_windows() {
    let c = corpus();
    let a = validation_batches(&c.valid, 4, 10, 3).unwrap();
    let b = validation_batches(&c.valid, 4, 10, 3).unwrap();
    assert_eq!(a, b, "the same batches on every call");
    assert_eq!(a.len(), 3);
    // Consecutive windows, targets shifted by one.
    let x: Vec<u32> = a
        .iter()
        .flat_map(|b| b.x.iter().map(|&v| v as u32).collect::<Vec<_>>())
        .collect();
    assert_eq!(&x[..], &c.valid[..120]);
    let y: Vec<usize> = a.iter().flat_map(|b| b.targets.clone()).collect();
    let want: Vec<usize> = (0..12)
        .flat_map(|w| (0..10).map(move |s| w * 10 + s + 1))
        .map(|i| c.valid[i] as usize)
        .collect();
    assert_eq!(y, want);
    // Training windows: targets follow inputs.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let tb = random_batch(&c.train, 3, 5, &mut rng);
    assert_eq!(tb.x.shape(), &[3, 5]);
    for i in 0..3 {
        for s in 0..4 {
            assert_eq!(tb.x[[i, s + 1]] as usize, tb.targets[i * 5 + s]);
        }
    }
}

// ANCHOR: sampling
/// Draws from logits `[0, 3, 1, 2.9, -1]`: how many of 2,000 draws with top-k 2 fall
/// outside the two largest, and the draws at temperature 0 and at 10^-3.
fn sampling() -> (usize, usize, Vec<usize>) {
    let z = [0.0, 3.0, 1.0, 2.9, -1.0];
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let top2 = SampleSpec {
        temperature: 1.0,
        top_k: Some(2),
    };
    let outside = (0..2000)
        .filter(|_| !matches!(sample(&z, top2, &mut rng), 1 | 3))
        .count();
    let greedy = SampleSpec {
        temperature: 0.0,
        top_k: None,
    };
    let cold = SampleSpec {
        temperature: 1e-3,
        top_k: None,
    };
    let g = sample(&z, greedy, &mut rng);
    let c = (0..200).map(|_| sample(&z, cold, &mut rng)).collect();
    (outside, g, c)
}
// ANCHOR_END: sampling

#[test]
fn sampling_respects_top_k_and_cold_temperature_is_argmax() {
    let (outside, greedy, cold) = sampling();
    assert_eq!(outside, 0);
    assert_eq!(greedy, 1);
    assert!(cold.iter().all(|&k| k == 1), "{cold:?}");
    // At temperature 1 with every character, both of the two close logits are drawn.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let spec = SampleSpec {
        temperature: 1.0,
        top_k: None,
    };
    let draws: Vec<usize> = (0..500)
        .map(|_| sample(&[0.0, 3.0, 1.0, 2.9, -1.0], spec, &mut rng))
        .collect();
    assert!(draws.contains(&1) && draws.contains(&3) && draws.contains(&2));
}

// ANCHOR: fast_activation_error
/// The largest absolute error of [`tanh_fast`] and [`sigmoid_fast`] against `f64` on
/// every 10^-4 of [-20, 20].
fn fast_activation_error() -> (f64, f64) {
    let (mut et, mut es) = (0.0f64, 0.0f64);
    for i in -200_000..=200_000 {
        let x = i as f32 * 1e-4;
        let xd = f64::from(x);
        et = et.max((f64::from(tanh_fast(x)) - xd.tanh()).abs());
        es = es.max((f64::from(sigmoid_fast(x)) - 1.0 / (1.0 + (-xd).exp())).abs());
    }
    (et, es)
}
// ANCHOR_END: fast_activation_error

#[test]
fn fast_tanh_and_sigmoid_are_within_4e_7() {
    let (et, es) = fast_activation_error();
    eprintln!("tanh_fast {et:e}, sigmoid_fast {es:e}");
    assert!(et < 4e-7, "tanh_fast error {et:e}");
    assert!(es < 3e-7, "sigmoid_fast error {es:e}");
    assert_eq!(tanh_fast(100.0), 1.0);
    assert_eq!(tanh_fast(-100.0), -1.0);
    assert_eq!(tanh_fast(0.0), 0.0);
}

/// A fast-path LSTM with a random initial state: batch 16 (two blocks of rows on two
/// threads), input 3, hidden 4, `t` steps.
fn fast_case(t: usize, seed: u64) -> (Lstm, ArrayD<f32>, Vec<ArrayD<f32>>, ArrayD<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut layer = Lstm::new(3, 4, &mut rng);
    layer.fast_gates = true;
    let x = normal(&[16, t, 3], &mut rng);
    let init: Vec<ArrayD<f32>> =
        (0..2).map(|_| normal(&[16, 4], &mut rng) * 0.5).collect();
    let r = normal(&[16, t, 4], &mut rng);
    set_init(&mut layer, &init);
    (layer, x, init, r)
}

fn set_init(layer: &mut Lstm, init: &[ArrayD<f32>]) {
    let m = |a: &ArrayD<f32>| a.clone().into_dimensionality().unwrap();
    layer.set_initial_state(m(&init[0]), m(&init[1]));
}

// ANCHOR: fast_lstm_three_ways
/// The fast path's `(manual-fd, manual-candle, fd-candle)` disagreement over three
/// seeds, the initial state's gradients included.
fn fast_lstm_three_ways() -> (f64, f64, f64) {
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for seed in 0..3 {
        let (mut layer, x, init, r) = fast_case(5, seed);
        let mut m = manual_grads(&mut layer, &x, &r);
        let (dh0, dc0) = (layer.dh0().unwrap().clone(), layer.dc0().unwrap().clone());
        m.params.push(("h0".into(), dh0.mapv(f64::from).into_dyn()));
        m.params.push(("c0".into(), dc0.mapv(f64::from).into_dyn()));
        let mut n = numeric_grads(&mut layer, &x, &r, 1e-2);
        for k in 0..2 {
            let d = finite_diff(&init[k], 1e-2, |v| {
                let mut s = init.clone();
                s[k] = v.clone();
                set_init(&mut layer, &s);
                let y = layer.forward(&x, Mode::Train);
                y.iter()
                    .zip(&r)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum()
            });
            set_init(&mut layer, &init);
            n.params.push((["h0", "c0"][k].into(), d));
        }
        let c = candle_twin::sequence_grads(Cell::Lstm, &layer.weights, &x, &init, &r)
            .expect("candle twin");
        worst = (
            worst.0.max(max_rel_error(&m, &n)),
            worst.1.max(max_rel_error(&m, &c)),
            worst.2.max(max_rel_error(&n, &c)),
        );
    }
    worst
}
// ANCHOR_END: fast_lstm_three_ways

#[test]
fn fast_lstm_gradients_agree_three_ways() {
    let (a, b, c) = fast_lstm_three_ways();
    eprintln!("fast LSTM: manual-fd {a:e}, manual-candle {b:e}, fd-candle {c:e}");
    assert!(b < 1e-5, "manual vs candle {b:e}");
    assert!(a < 1e-3, "manual vs finite differences {a:e}");
    assert!(c < 1e-3, "finite differences vs candle {c:e}");
}

/// The largest relative difference between the fast and the exact path: outputs and
/// every gradient, batch 32, 20 steps.
fn fast_vs_exact() -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut exact = Lstm::new(5, 24, &mut rng);
    let mut fast = exact.clone();
    fast.fast_gates = true;
    let x = normal(&[32, 20, 5], &mut rng);
    let r = normal(&[32, 20, 24], &mut rng);
    let ye = exact.forward(&x, Mode::Train).mapv(f64::from);
    let yf = fast.forward(&x, Mode::Train).mapv(f64::from);
    let ge = manual_grads(&mut exact, &x, &r);
    let gf = manual_grads(&mut fast, &x, &r);
    rel_error(&ye, &yf).max(max_rel_error(&ge, &gf))
}

#[test]
fn fast_lstm_agrees_with_the_exact_path() {
    let e = fast_vs_exact();
    eprintln!("fast vs exact LSTM: {e:e}");
    assert!(e > 0.0 && e < 1e-5, "{e:e}");
}

#[test]
fn fused_cross_entropy_equals_the_library_one() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let z = normal(&[40, 65], &mut rng) * 4.0;
    let y: Vec<usize> = (0..40).map(|i| (i * 7) % 65).collect();
    let (l_ref, g_ref) = softmax_cross_entropy(&z, &y);
    let mut z2: Array2<f32> = z.clone().into_dimensionality().unwrap();
    let l = cross_entropy(&mut z2, &y);
    assert!((l - l_ref).abs() < 1e-5, "{l} vs {l_ref}");
    let err = rel_error(&g_ref.mapv(f64::from), &z2.into_dyn().mapv(f64::from));
    assert!(err < 1e-5, "gradient {err:e}");
}

/// The whole model's parameter gradients of $\langle \text{logits}, r\rangle$, three
/// ways: its own backward (fused read-out, fast LSTM, embedding), finite differences,
/// and candle's autograd on the twin in `F64`.
fn char_lstm_three_ways() -> (f64, f64, f64) {
    let cfg = CharLstmConfig {
        vocab_size: 7,
        d_embed: 3,
        hidden: 4,
    };
    let mut model = CharLstm::new(&cfg, 5);
    let x =
        ArrayD::from_shape_fn(IxDyn(&[2, 6]), |ix| ((ix[0] * 5 + ix[1] * 3) % 7) as f32);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let r = normal(&[2, 6, 7], &mut rng);
    let m = manual_grads(&mut model, &x, &r);
    let mut names = vec![];
    model.visit_params("", &mut |n, _| names.push(n.to_string()));
    let mut n = Grads {
        dx: m.dx.clone(),
        params: vec![],
    };
    for name in &names {
        let mut value = None;
        model.visit_params("", &mut |nm, p| {
            if nm == name {
                value = Some(p.value.clone());
            }
        });
        let d = finite_diff(&value.clone().unwrap(), 1e-2, |v| {
            model.visit_params("", &mut |nm, p| {
                if nm == name {
                    p.value = v.clone();
                }
            });
            let y = model.forward(&x, Mode::Train);
            y.iter()
                .zip(&r)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum()
        });
        model.visit_params("", &mut |nm, p| {
            if nm == name {
                p.value = value.clone().unwrap();
            }
        });
        n.params.push((name.clone(), d));
    }
    let twin = CandleCharLstm::new(&model, 1e-3, DType::F64).unwrap();
    let logits = twin.logits(&x).unwrap();
    let rt = dlbook::nn::candle_twin::to_tensor(
        &r.clone().into_shape_with_order((12, 7)).unwrap().into_dyn(),
        DType::F64,
    )
    .unwrap();
    let loss = (logits * rt).unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    let c = Grads {
        dx: m.dx.clone(),
        params: twin
            .named_vars()
            .into_iter()
            .map(|(name, v)| (name.to_string(), to_array(g.get(v).unwrap()).unwrap()))
            .collect(),
    };
    (
        max_rel_error(&m, &n),
        max_rel_error(&m, &c),
        max_rel_error(&n, &c),
    )
}

#[test]
fn char_lstm_gradients_agree_three_ways() {
    let (a, b, c) = char_lstm_three_ways();
    eprintln!("char LSTM: manual-fd {a:e}, manual-candle {b:e}, fd-candle {c:e}");
    assert!(b < 1e-5, "manual vs candle {b:e}");
    assert!(a < 1e-3, "manual vs finite differences {a:e}");
    assert!(c < 1e-3, "finite differences vs candle {c:e}");
}

#[test]
fn the_quick_run_learns_from_the_uniform_guess() {
    let (start, end, ln_v) = (
        fact("initial_val_loss"),
        fact("final_val_loss"),
        fact("ln_vocab"),
    );
    assert!(
        (start - ln_v).abs() < 0.1,
        "starts at {start}, ln V = {ln_v}"
    );
    assert!(end < start - 0.5, "{start} -> {end}");
    assert_eq!(quick().table("samples").unwrap().rows.len(), 5);
}

#[test]
fn bad_input_is_a_clear_error() {
    let c = corpus();
    let mut model = CharLstm::new(
        &CharLstmConfig {
            vocab_size: c.vocab.len(),
            d_embed: 4,
            hidden: 8,
        },
        0,
    );
    let spec = SampleSpec {
        temperature: 1.0,
        top_k: None,
    };
    let err = generate(&mut model, &c.vocab, "ROMEO: ~", 5, spec, 0).unwrap_err();
    assert!(format!("{err:#}").contains("'~'"), "{err:#}");
    let err = generate(&mut model, &c.vocab, "", 5, spec, 0).unwrap_err();
    assert!(format!("{err:#}").contains("empty"), "{err:#}");
    assert!(Vocab::from_text("").is_err());
    assert!(CharCorpus::from_text("", 0.1).is_err());
    assert!(CharCorpus::from_text("ab", 0.1).is_err()); // no validation character
    let d = std::env::temp_dir().join(format!("dlbook-ch09-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let empty = d.join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    let err = CharCorpus::read(&empty, 0.1).unwrap_err();
    assert!(format!("{err:#}").contains("empty"), "{err:#}");
    std::fs::remove_dir_all(&d).unwrap();
    assert!(validation_batches(&c.valid[..50], 4, 100, 1).is_err());
    // Generation after a valid prompt works and leaves the model as it was.
    let text = generate(&mut model, &c.vocab, "ROMEO:", 20, spec, 0).unwrap();
    assert_eq!(text.chars().count(), 20);
    assert!(!model.lstm.carry_state);
}

fn committed(name: &str) -> Report {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    experiments::committed(&root, name).unwrap()
}

// ANCHOR: flops_per_token
/// FLOPs per character of a training step of the reference model, and the sum written
/// out by hand: 6 per multiply-add of the input projection, the recurrent product and
/// the read-out.
fn flops_per_token() -> (f64, f64) {
    let cfg = CharLstmConfig {
        vocab_size: 65,
        d_embed: 64,
        hidden: 256,
    };
    let by_hand = 6.0 * (64.0 * 1024.0 + 256.0 * 1024.0 + 256.0 * 65.0);
    (cfg.train_flops_per_char(), by_hand)
}
// ANCHOR_END: flops_per_token

#[test]
fn flops_per_token_counts_the_three_products() {
    let (counted, by_hand) = flops_per_token();
    assert_eq!(counted, by_hand);
    assert!((2.0e6..2.1e6).contains(&counted), "{counted}");
}

#[test]
fn every_seed_beats_the_uniform_guess_by_far() {
    let r = committed("char_lstm");
    let ln_v = r.get_fact("ln_vocab").unwrap();
    let finals = match &r.facts["final_val_loss"].value {
        dlbook::report::Value::Seeds(v) => v.clone(),
        v => panic!("final_val_loss is {v:?}"),
    };
    let trigram_nats = committed("information")
        .get_fact("trigram_heldout_bits")
        .unwrap()
        * std::f64::consts::LN_2;
    assert_eq!(finals.len(), 3);
    for l in finals {
        assert!(l < ln_v - 2.0, "{l} vs ln V = {ln_v}");
        assert!(l < trigram_nats, "{l} vs the trigram's {trigram_nats}");
    }
}

/// Over the second half of the ten-minute run, the validation loss moves by less than
/// 0.02 nats while the training loss (mean over each interval) falls by more than 0.05,
/// and the gap between the two grows. (A timing report: regenerated by
/// `dlbook bench --name char_lstm_budget`.)
#[test]
fn the_budget_run_plateaus_while_the_training_loss_falls() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = dlbook::book::generated_dir(&root).join("ch09/char_lstm_budget.json");
    let r = Report::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let budget = r.config["budget_secs"].as_f64().unwrap();
    let table = r.table("budget").expect("budget table");
    let num = |row: &Vec<dlbook::report::Value>, i: usize| match &row[i] {
        dlbook::report::Value::Num(v) => Some(*v),
        _ => None,
    };
    let late: Vec<(f64, f64)> = table
        .rows
        .iter()
        .filter(|row| num(row, 0).unwrap() >= budget / 2.0)
        .map(|row| (num(row, 2).unwrap(), num(row, 3).unwrap()))
        .collect();
    assert!(
        late.len() >= 5,
        "{} validations in the second half",
        late.len()
    );
    let val = late.iter().map(|v| v.0);
    let (lo, hi) = (
        val.clone().fold(f64::MAX, f64::min),
        val.fold(f64::MIN, f64::max),
    );
    assert!(hi - lo < 0.02, "validation from {lo} to {hi}");
    let ((v0, t0), (v1, t1)) = (late[0], late[late.len() - 1]);
    assert!(t0 - t1 > 0.05, "training loss {t0} -> {t1}");
    assert!(v1 - t1 > v0 - t0, "gap {} -> {}", v0 - t0, v1 - t1);
    assert_eq!(r.get_fact("budget_val_loss"), Some(v1));
    assert_eq!(r.get_fact("budget_train_loss_last"), Some(t1));
    let best = r.get_fact("budget_best_val_loss").unwrap();
    assert!(table.rows.iter().all(|row| num(row, 2).unwrap() >= best));
}

/// The gates figure of the committed run: for each unit shown, the forget gate is below
/// 0.1 at every space and line break of the passage, and averages above 0.4 over its
/// letters; the passage has at least two spaces.
#[test]
fn some_units_clear_their_cell_at_word_boundaries() {
    let r = committed("char_lstm");
    let fig = r
        .figures
        .iter()
        .find(|f| f.name == "gates")
        .expect("gates figure");
    let dlbook::report::Plot::Heatmap {
        row_labels,
        col_labels,
        values,
        ..
    } = &fig.plot
    else {
        panic!("the gates figure is a heatmap");
    };
    let boundary = |c: &str| c == "␣" || c == "↵";
    assert!(col_labels.iter().filter(|c| c.as_str() == "␣").count() >= 2);
    let mut units = 0;
    for (label, row) in row_labels.iter().zip(values) {
        if !label.ends_with(": f") {
            continue;
        }
        units += 1;
        let (mut letters, mut n) = (0.0, 0);
        for (c, &v) in col_labels.iter().zip(row) {
            if boundary(c) {
                assert!(v < 0.1, "{label} at {c:?}: {v}");
            } else if c.chars().all(char::is_alphabetic) {
                (letters, n) = (letters + v, n + 1);
            }
        }
        assert!(
            letters / n as f64 > 0.4,
            "{label}: letters {}",
            letters / n as f64
        );
    }
    assert_eq!(units, 4);
}
