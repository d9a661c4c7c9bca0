//! Section 10.3, attention at work: the lookup task, the attention block and its
//! gradient, the models at one parameter budget, attention against recurrence, the
//! attention maps, and the parallel (batch, head) schedule. The claims about the full
//! run read the committed results (`experiments::committed`), which the `fresh` tests
//! tie to the code; the rest run on the quick preset or on small cases.

use std::sync::OnceLock;

use dlbook::attn::candle_twin::block_grads;
use dlbook::attn::{
    scaled_dot_product_attention_backward_with, scaled_dot_product_attention_with, Mask,
    Schedule,
};
use dlbook::data::{DataDir, Targets};
use dlbook::experiments;
use dlbook::experiments::attention_vs_recurrence::{masks_figure, models, Config};
use dlbook::experiments::Preset;
use dlbook::nn::gradcheck::{manual_grads, max_rel_error, normal, numeric_grads, Grads};
use dlbook::nn::{Module, Named};
use dlbook::report::{Plot, Report, Value};
use dlbook::seq::lookup::{
    attention_model, attention_weights, lookup_task, recurrent_model, recurrent_params,
    step_labels, weight_on_key, AttnBlock, AttnSpec, LookupModel, LookupSpec,
};
use ndarray::{ArrayD, Axis, Ix2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::ch08_rnn::assert_three_ways;

fn root() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

const NAME: &str = "attention_vs_recurrence";

/// The committed full results, read once.
fn full() -> &'static Report {
    static FULL: OnceLock<Report> = OnceLock::new();
    FULL.get_or_init(|| experiments::committed(root(), NAME).unwrap())
}

fn quick() -> &'static Report {
    experiments::quick(NAME, &DataDir::resolve(None)).unwrap()
}

fn mean(v: &[f64]) -> f64 {
    Value::mean_std(v).0
}

/// The per-seed accuracies of `model` at every length of `r`, in order.
fn accuracies(r: &Report, model: &str) -> Vec<Vec<f64>> {
    let t = r.table("accuracy").unwrap();
    let row = t
        .rows
        .iter()
        .find(|x| matches!(&x[0], Value::Text(s) if s == model))
        .unwrap_or_else(|| panic!("accuracy: no row {model:?}"));
    row[2..]
        .iter()
        .map(|v| match v {
            Value::Seeds(s) => s.clone(),
            v => panic!("{model}: {v:?}"),
        })
        .collect()
}

fn fact(r: &Report, name: &str) -> f64 {
    r.get_fact(name)
        .unwrap_or_else(|| panic!("{}: no fact {name}", r.experiment))
}

fn seeds_fact(r: &Report, name: &str) -> Vec<f64> {
    match &r.facts[name].value {
        Value::Seeds(s) => s.clone(),
        v => panic!("{name}: {v:?}"),
    }
}

// ANCHOR: lookup_example
/// One lookup sequence of 12 steps, as the map labels it: `k3:v5` a pair, `v5` noise,
/// `?k3` the query; its answer and the position of the pair it asks for.
fn lookup_example() -> (Vec<String>, usize, usize) {
    let spec = LookupSpec {
        n_keys: 8,
        n_values: 8,
        n_pairs: 4,
    };
    let task = lookup_task(1, 12, &spec, &mut ChaCha8Rng::seed_from_u64(3));
    let x = task.data.x.index_axis(Axis(0), 0).to_owned();
    let labels = step_labels(&x.into_dimensionality::<Ix2>().unwrap(), &spec);
    let Targets::Classes(y) = &task.data.y else {
        unreachable!()
    };
    (labels, y[0], task.key_pos[0])
}
// ANCHOR_END: lookup_example

#[test]
fn lookup_answer_is_the_value_of_the_one_matching_key() {
    let (labels, answer, pos) = lookup_example();
    assert_eq!(labels.len(), 12);
    let query = labels[11].strip_prefix('?').expect("the last step asks");
    assert_eq!(labels[pos], format!("{query}:v{answer}"));
    let pairs: Vec<usize> = (0..11).filter(|&i| labels[i].contains(':')).collect();
    assert_eq!(pairs.len(), 4);
    assert!(
        pairs.iter().all(|&i| i < 11 / 2),
        "pairs in the first half: {labels:?}"
    );
    let matches = labels[..11]
        .iter()
        .filter(|l| l.starts_with(&format!("{query}:")))
        .count();
    assert_eq!(matches, 1, "{labels:?}");
    // and on many sequences: the target is the value one-hot at the asked position
    let spec = LookupSpec {
        n_keys: 5,
        n_values: 3,
        n_pairs: 5,
    };
    let task = lookup_task(200, 20, &spec, &mut ChaCha8Rng::seed_from_u64(1));
    let Targets::Classes(y) = &task.data.y else {
        unreachable!()
    };
    for (n, (&p, &v)) in task.key_pos.iter().zip(y).enumerate() {
        assert!(p < 19 / 2);
        assert_eq!(task.data.x[[n, p, 5 + v]], 1.0);
        assert_eq!(task.data.x[[n, 19, 8]], 1.0, "query marker");
        for k in 0..5 {
            assert_eq!(task.data.x[[n, p, k]], task.data.x[[n, 19, k]], "same key");
        }
    }
}

#[test]
#[should_panic(expected = "do not fit the first half of 8 steps")]
fn too_many_pairs_panics_naming_the_length() {
    let spec = LookupSpec {
        n_keys: 8,
        n_values: 8,
        n_pairs: 4,
    };
    let _ = lookup_task(1, 8, &spec, &mut ChaCha8Rng::seed_from_u64(0));
}

/// Drops the key bias, whose gradient is zero in exact arithmetic (see chapter 10's
/// MHA check), after checking it is tiny in absolute terms.
fn without_key_bias(mut g: Grads, who: &str) -> Grads {
    let i = g
        .params
        .iter()
        .position(|(n, _)| n == "attn.k.bias")
        .expect("a key bias");
    let (_, kb) = g.params.remove(i);
    let worst = kb.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(worst < 1e-4, "{who}: key-bias gradient {worst:e}, not zero");
    g
}

#[test]
fn attention_block_gradient_three_ways() {
    for seed in [0u64, 1, 2] {
        let who = format!("attention block, seed {seed}");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut block = AttnBlock::new(4, 2, None, &mut rng);
        // gamma and beta away from 1 and 0, so their gradients are checked in general
        block.visit_params("", &mut |name, p| {
            if name.contains("norm") {
                p.value = normal(p.value.shape(), &mut rng);
            }
        });
        let x = normal(&[2, 3, 4], &mut rng);
        let r = normal(&[2, 3, 4], &mut rng);
        let manual = manual_grads(&mut block, &x, &r);
        let num = numeric_grads(&mut block, &x, &r, 1e-2);
        let candle = block_grads(&mut block, &x, &r).unwrap();
        let names: Vec<&str> = manual.params.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 16, "{names:?}");
        assert_eq!(names[0], "norm1.gamma");
        assert_eq!(names[15], "mlp.fc2.bias");
        let (manual, num, candle) = (
            without_key_bias(manual, &who),
            without_key_bias(num, &who),
            without_key_bias(candle, &who),
        );
        assert_three_ways(
            &who,
            (
                max_rel_error(&manual, &num),
                max_rel_error(&manual, &candle),
                max_rel_error(&num, &candle),
            ),
        );
    }
}

#[test]
fn whole_attention_model_gradient_matches_finite_differences() {
    let spec = AttnSpec {
        d_model: 4,
        n_heads: 2,
        n_layers: 2,
    };
    let (mut net, _) = attention_model(spec, 5, 3, 6, 0);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x = normal(&[2, 6, 5], &mut rng);
    let r = normal(&[2, 3], &mut rng);
    let manual = manual_grads(&mut net, &x, &r);
    let num = numeric_grads(&mut net, &x, &r, 1e-2);
    let drop_kb = |mut g: Grads| {
        g.params.retain(|(n, _)| !n.ends_with("attn.k.bias"));
        g
    };
    let err = max_rel_error(&drop_kb(manual), &drop_kb(num));
    assert!(err < 1e-3, "manual vs finite differences {err:e}");
}

// ANCHOR: budget_example
/// The parameters of the three models of the full comparison, counted on the built
/// models: `(name, width, parameters)`.
fn budget_example() -> Vec<(String, usize, usize)> {
    let cfg = Config::full();
    models(&cfg)
        .iter()
        .map(|m| {
            let (mut net, _) = m.build(&cfg.task, 16, 0);
            (m.name(), m.width(), net.n_params())
        })
        .collect()
}
// ANCHOR_END: budget_example

#[test]
fn recurrent_models_match_the_attention_budget() {
    let b = budget_example();
    assert_eq!(b.len(), 3);
    let budget = b[0].2 as f64;
    for (name, _, n) in &b[1..] {
        let off = (*n as f64 - budget).abs() / budget;
        assert!(off < 0.02, "{name}: {n} parameters against {budget}");
    }
    // the counts are the formulas', and one width more would be further off
    let cfg = Config::full();
    let (d_in, n_out) = (cfg.task.n_features(), cfg.task.n_values);
    assert_eq!(b[0].2, cfg.attn.params(d_in, n_out));
    for m in models(&cfg) {
        if let LookupModel::Recurrent(c, h) = m {
            let n = recurrent_model(c, d_in, h, n_out, 0).n_params();
            assert_eq!(n, recurrent_params(c, d_in, h, n_out));
            let off = |h| recurrent_params(c, d_in, h, n_out).abs_diff(b[0].2);
            assert!(off(h) <= off(h + 1) && off(h) <= off(h - 1), "{}", c.name());
        }
    }
}

#[test]
fn attention_flops_grow_as_the_square_of_the_length() {
    let cfg = Config::full();
    let (d_in, n_out) = (cfg.task.n_features(), cfg.task.n_values);
    let f = |t| cfg.attn.flops(d_in, n_out, t) as f64;
    // second differences of a quadratic are constant and equal to 2 * 4 d per step^2
    let d = cfg.attn.d_model as f64;
    let second = f(10) - 2.0 * f(11) + f(12);
    assert_eq!(second, 2.0 * 4.0 * d * cfg.attn.n_layers as f64);
    for m in models(&cfg) {
        if let LookupModel::Recurrent(..) = m {
            let g = |t| m.flops(&cfg.task, t) as f64;
            assert_eq!(g(10) - 2.0 * g(11) + g(12), 0.0, "linear in T");
        }
    }
    // the committed ratio attention / LSTM grows with T
    let r = full();
    let ratios: Vec<f64> = cfg
        .lengths
        .iter()
        .map(|t| fact(r, &format!("flops_ratio_{t}")))
        .collect();
    assert!(ratios.windows(2).all(|w| w[1] > w[0]), "{ratios:?}");
}

#[test]
fn parallel_attention_is_bit_identical_to_serial() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for (b, h, t_q, t_k, d) in [(3, 2, 5, 7, 4), (2, 4, 33, 33, 16), (1, 1, 1, 1, 1)] {
        let q = normal(&[b, h, t_q, d], &mut rng);
        let k = normal(&[b, h, t_k, d], &mut rng);
        let v = normal(&[b, h, t_k, d + 1], &mut rng);
        let lengths: Vec<usize> = (0..b).map(|n| t_k - n.min(t_k - 1)).collect();
        let mask = Mask::padding(&lengths, t_q, t_k);
        for m in [None, Some(&mask)] {
            let s = scaled_dot_product_attention_with(&q, &k, &v, m, Schedule::Serial);
            let p = scaled_dot_product_attention_with(&q, &k, &v, m, Schedule::Parallel);
            assert_eq!(s.out, p.out);
            assert_eq!(s.weights, p.weights);
            let dout = normal(s.out.shape(), &mut rng);
            let gs = scaled_dot_product_attention_backward_with(
                &q,
                &k,
                &v,
                &s.weights,
                &dout,
                Schedule::Serial,
            );
            let gp = scaled_dot_product_attention_backward_with(
                &q,
                &k,
                &v,
                &s.weights,
                &dout,
                Schedule::Parallel,
            );
            assert_eq!((gs.dq, gs.dk, gs.dv), (gp.dq, gp.dk, gp.dv));
        }
    }
}

#[test]
fn the_quick_run_fills_every_table_and_figure() {
    let r = quick();
    let cfg = Config::quick();
    let acc = r.table("accuracy").unwrap();
    assert_eq!(acc.rows.len(), 3);
    assert_eq!(acc.columns.len(), 2 + cfg.lengths.len());
    assert_eq!(r.table("cost").unwrap().rows.len(), 3);
    let names: Vec<&str> = r.figures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["accuracy", "map", "masks"]);
    for m in ["attention", "LSTM, forget bias 1", "GRU"] {
        let a = accuracies(r, m);
        assert!(a.iter().flatten().all(|v| (0.0..=1.0).contains(v)), "{m}");
    }
}

#[test]
fn quick_attention_head_finds_the_matching_key() {
    // on the quick preset already, the best head of every seed puts most of the last
    // step's weight on the matching key
    let r = quick();
    let w = seeds_fact(r, "key_weight_best_head");
    assert!(w.iter().all(|&v| v > 0.5), "{w:?}");
    assert!(mean(&w) > 5.0 * fact(r, "key_weight_uniform"));
}

#[test]
fn the_lookup_head_puts_most_weight_on_the_matching_key() {
    let r = full();
    let w = seeds_fact(r, "key_weight_best_head");
    assert!(w.iter().all(|&v| v > 0.5), "{w:?}");
    assert!(mean(&w) > 10.0 * fact(r, "key_weight_uniform"), "{w:?}");
}

#[test]
fn weight_on_key_reads_the_last_query_row() {
    // (b = 2, heads = 2, t = 3): the last row of each map, at the given positions
    let mut w = ArrayD::<f32>::zeros(vec![2, 2, 3, 3]);
    w[[0, 0, 2, 1]] = 0.75;
    w[[1, 0, 2, 0]] = 0.25;
    w[[0, 1, 2, 1]] = 1.0;
    w[[0, 1, 1, 1]] = 0.5; // not the last query: ignored
    let got = weight_on_key(&w, &[1, 0]);
    assert_eq!(got, vec![0.5, 0.5]);
}

#[test]
fn the_map_shows_the_trained_model_on_a_test_sequence() {
    let r = quick();
    let cfg = Config::quick();
    let map = r.figures.iter().find(|f| f.name == "map").unwrap();
    let Plot::Attention(a) = &map.plot else {
        panic!("an attention map")
    };
    assert_eq!(a.panels.len(), cfg.attn.n_heads);
    assert_eq!(a.query_labels.len(), cfg.map_length);
    assert!(a.query_labels.last().unwrap().starts_with('?'));
    for panel in &a.weights {
        for (i, row) in panel.iter().enumerate() {
            let s: f64 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-3, "row {i} sums to {s}");
        }
    }
    // the same weights as the taps give on that sequence, for the first seed's model
    let (mut net, taps): (Named, _) =
        attention_model(cfg.attn, cfg.task.n_features(), cfg.task.n_values, 4, 0);
    let x = normal(
        &[1, 4, cfg.task.n_features()],
        &mut ChaCha8Rng::seed_from_u64(0),
    );
    let w = attention_weights(&mut net, &taps, &x);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].shape(), &[1, cfg.attn.n_heads, 4, 4]);
}

#[test]
fn masks_zero_what_they_hide_and_rows_still_sum_to_one() {
    let fig = masks_figure();
    let Plot::Attention(a) = &fig.plot else {
        panic!("an attention plot")
    };
    let [causal, padding, both, weights] = &a.weights[..] else {
        panic!("four panels")
    };
    for i in 0..6 {
        for j in 0..6 {
            assert_eq!(causal[i][j], f64::from(u8::from(j <= i)));
            assert_eq!(padding[i][j], f64::from(u8::from(j < 4)));
            assert_eq!(both[i][j], causal[i][j] * padding[i][j]);
            if both[i][j] == 0.0 {
                assert_eq!(weights[i][j], 0.0, "({i}, {j}) masked");
            } else {
                assert!(weights[i][j] > 0.0, "({i}, {j}) kept");
            }
        }
        let s: f64 = weights[i].iter().sum();
        assert!((s - 1.0).abs() < 1e-6, "row {i} sums to {s}");
    }
}

#[test]
fn write_attention_map_draws_one_panel_per_head_and_rejects_bad_input() {
    let dir = std::env::temp_dir().join(format!("dlbook-map-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("map.svg");
    let mut w = ndarray::Array3::<f32>::zeros((3, 2, 4));
    w.fill(0.25);
    let q: Vec<String> = ["a", "b"].map(String::from).to_vec();
    let k: Vec<String> = ["w", "x", "y", "z"].map(String::from).to_vec();
    dlbook::report::write_attention_map(w.view(), &q, &k, "test", &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    for h in 0..3 {
        assert!(svg.contains(&format!(">head {h}<")), "panel {h}");
    }
    assert_eq!(svg.matches("<rect").count(), 1 + 3 * (2 * 4 + 1) + 11);
    // labels that do not match, or a weight that is not one
    let err = dlbook::report::write_attention_map(w.view(), &k, &k, "t", &path);
    assert!(format!("{:#}", err.unwrap_err()).contains("labels"));
    w[[0, 0, 0]] = f32::NAN;
    let err = dlbook::report::write_attention_map(w.view(), &q, &k, "t", &path);
    assert!(format!("{:#}", err.unwrap_err()).contains("[0, 1]"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The benchmark runs every measurement on a tiny shape (its timings are only written,
/// never asserted).
#[test]
fn the_mha_benchmark_times_both_schedules_the_twin_and_the_lookup_models() {
    use dlbook::bench::mha::{run, MhaBenchConfig};
    let cfg = MhaBenchConfig::quick();
    let r = run(&cfg, "mha").unwrap();
    assert_eq!(r.tables[0].rows.len(), 6 * cfg.lengths.len());
    assert_eq!(r.tables[1].rows.len(), 3 * cfg.lookup_lengths.len());
    for row in r.tables.iter().flat_map(|t| &t.rows) {
        assert!(row[1].number().unwrap() > 0.0, "{:?}", row[0]);
    }
    // the lookup models it times are those of the experiment
    let full = MhaBenchConfig::full();
    let exp = Config::full();
    assert_eq!(
        (full.task, full.attn, &full.cells, &full.lookup_lengths),
        (exp.task, exp.attn, &exp.cells, &exp.lengths)
    );
    assert_eq!(full.lookup_batch, exp.train.batch_size);
}

#[test]
fn attention_solves_the_lookup_at_every_length() {
    // every seed above 95 % at every length of the committed full run
    let a = accuracies(full(), "attention");
    assert_eq!(a.len(), Config::full().lengths.len());
    for (l, seeds) in a.iter().enumerate() {
        assert!(seeds.iter().all(|&v| v > 0.95), "length {l}: {seeds:?}");
    }
}

#[test]
fn recurrence_fades_towards_chance_with_length() {
    // from the shortest length to the longest, the LSTM and the GRU drop to within
    // twice chance, and attention leads them by more than 60 points from T = 32 on
    let r = full();
    let chance = fact(r, "chance");
    let att = accuracies(r, "attention");
    for m in ["LSTM, forget bias 1", "GRU"] {
        let a = accuracies(r, m);
        let (first, last) = (mean(&a[0]), mean(a.last().unwrap()));
        assert!(last < first, "{m}: {first} -> {last}");
        assert!(last < 2.0 * chance, "{m}: {last} at the longest length");
        for (l, seeds) in a.iter().enumerate().skip(1) {
            assert!(mean(&att[l]) - mean(seeds) > 0.6, "{m}, length {l}");
        }
    }
}
