//! Chapter 11.6, fine-tuning: the sentence-polarity data (reader, split, errors), the
//! from-scratch classifier's backward checked three ways (manual, finite differences,
//! candle autograd in `F64` on its twin `MiniLmClassifier`), on a tiny random encoder and
//! on the real one, freezing, the trainable candle encoder (same function as
//! candle-transformers' `BertModel`, gradients that reach exactly the trainable layers),
//! the safetensors checkpoint, and the claims of the comparison. The tests need
//! `dlbook data fetch minilm sentence_polarity`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Module;
use dlbook::data::polarity::{self, parse, LabeledText};
use dlbook::data::DataDir;
use dlbook::experiments;
use dlbook::models::bert::TokenBatch;
use dlbook::models::bert::{
    self, mean_pool_normalize, BertConfig, CandleMiniLm, MiniLmTokenizer,
};
use dlbook::models::bert_finetune::{
    encoder_names, layer_norm, FinetuneConfig, Finetuner, MiniLmClassifier, Start,
    HEAD_BIAS, HEAD_WEIGHT,
};
use dlbook::nn::candle_twin::to_array;
use dlbook::nn::gradcheck::{normal, rel_error};
use dlbook::nn::Module as _;
use dlbook::report::{Report, Value};
use dlbook::transformer::bert::ScratchMiniLm;
use dlbook::transformer::bert_classifier::{ScratchClassifier, ScratchFinetuner};
use ndarray::ArrayD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};

use crate::ch08_rnn::{assert_three_ways, f64v};

fn data() -> DataDir {
    DataDir::resolve(None)
}

fn quick() -> &'static Report {
    experiments::quick("minilm_finetune", &data()).unwrap_or_else(|e| panic!("{e:#}"))
}

fn committed() -> Report {
    experiments::committed(Path::new(env!("CARGO_MANIFEST_DIR")), "minilm_finetune")
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn seeds(r: &Report, fact: &str) -> Vec<f64> {
    match &r.facts[fact].value {
        Value::Seeds(v) => v.clone(),
        v => panic!("{fact}: {v:?}"),
    }
}

fn mean(v: &[f64]) -> f64 {
    Value::mean_std(v).0
}

/// The largest absolute difference between two equally shaped lists of rows.
fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

fn scratch(name: &str) -> PathBuf {
    let d =
        std::env::temp_dir().join(format!("dlbook-ch11ft-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tokenizer(max_len: usize) -> MiniLmTokenizer {
    MiniLmTokenizer::from_file(&data().verified(bert::TOKENIZER).unwrap(), max_len)
        .unwrap()
}

fn config() -> BertConfig {
    BertConfig::from_file(&data().verified(bert::CONFIG).unwrap()).unwrap()
}

fn recipe(batch_size: usize, lr_encoder: f64, lr_head: f64) -> FinetuneConfig {
    FinetuneConfig {
        batch_size,
        lr_encoder,
        lr_head,
        weight_decay: 0.01,
    }
}

fn tiny_set() -> LabeledText {
    LabeledText::new(
        vec![
            "a gorgeous , moving film .".into(),
            "dull and far too long .".into(),
            "one of the year's best .".into(),
            "a tedious mess .".into(),
        ],
        vec![1, 0, 1, 0],
        2,
    )
    .unwrap()
}

// --- the data ---

/// The reader takes the file's format (a byte-order mark, doubled quotes, a text that
/// runs onto the next line) and maps the labels 1 and -1 to positive (1) and negative
/// (0).
#[test]
fn reader_parses_records() {
    let text = "\u{feff}\"1\",\"a \"\"great\"\" film \n\"\n\"-1\",\"dull , dull .\n\"\n";
    let d = parse(text).unwrap();
    assert_eq!(d.texts, vec!["a \"great\" film", "dull , dull ."]);
    assert_eq!(d.labels, vec![1, 0]);
    assert_eq!(d.n_classes, 2);
}

/// Malformed rows are errors naming their line, never panics.
#[test]
fn malformed_rows_are_clear_errors() {
    let cases = [
        ("\"1\",\"ok\"\n\"2\",\"bad label\"\n", "line 2: label `2`"),
        ("\"1\",\"ok\"\n\"1\",\"a\",\"b\"\n", "line 2: 3 field(s)"),
        (
            "\"1\",\"never closed\n",
            "line 1: a quoted field is never closed",
        ),
        (
            "1,\"unquoted label\"\n",
            "line 1: a field must start with a double quote",
        ),
        ("\"1\",\"x\"y\n", "line 1: `y` after a closing quote"),
        ("", "an empty dataset"),
        ("\"1\",\"  \"\n", "row 0: an empty sentence"),
    ];
    for (text, want) in cases {
        let msg = format!("{:#}", parse(text).unwrap_err());
        assert!(msg.contains(want), "{text:?}: {msg}");
    }
}

/// An empty dataset or a label out of range is an error, at construction and when a
/// classifier meets data with other classes.
#[test]
fn empty_dataset_and_label_out_of_range_are_errors() {
    let msg = format!("{:#}", LabeledText::new(vec![], vec![], 2).unwrap_err());
    assert!(msg.contains("empty dataset"), "{msg}");
    let msg = format!(
        "{:#}",
        LabeledText::new(vec!["a".into(), "b".into()], vec![0, 2], 2).unwrap_err()
    );
    assert!(
        msg.contains("row 1: label 2 is out of range for 2 classes"),
        "{msg}"
    );
    let msg = format!(
        "{:#}",
        LabeledText::new(vec!["a".into()], vec![], 2).unwrap_err()
    );
    assert!(msg.contains("1 sentences but 0 labels"), "{msg}");
    // A three-class set given to a two-class classifier.
    let three = LabeledText::new(vec!["a".into(), "b".into()], vec![0, 2], 3).unwrap();
    let model =
        MiniLmClassifier::from_minilm(&data(), Start::Pretrained, 2, 6, 0).unwrap();
    let mut ft = Finetuner::new(model, &recipe(2, 3e-5, 1e-3)).unwrap();
    let msg = format!("{:#}", ft.epoch(&tokenizer(64), &three, 0).unwrap_err());
    assert!(
        msg.contains("the data has 3 classes, the classifier 2"),
        "{msg}"
    );
    let msg = format!(
        "{:#}",
        MiniLmClassifier::from_minilm(&data(), Start::Pretrained, 1, 0, 0)
            .err()
            .unwrap()
    );
    assert!(msg.contains("at least 2"), "{msg}");
}

/// The fetched file is the real set as the package ships it: 4,000 sentences, 2,000 per
/// class, the first being the first line of the original `rt-polarity.pos`; an altered
/// copy fails its sha256 check and says how to fetch it again.
#[test]
fn fetched_sentences_are_the_balanced_sample() {
    let d = polarity::read(&data()).unwrap();
    assert_eq!(d.len(), 4000);
    assert_eq!(d.class_counts(), vec![2000, 2000]);
    assert!(d.texts[0].starts_with("the rock is destined to be the 21st century's new"));
    assert_eq!(d.labels[0], 1);
    let dir = scratch("altered");
    let real = std::fs::read(data().verified(polarity::PATH).unwrap()).unwrap();
    let dest = dir.join(polarity::PATH);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, &real[..real.len() - 100]).unwrap();
    let msg = format!("{:#}", polarity::read(&DataDir::new(&dir)).unwrap_err());
    assert!(msg.contains("dlbook data fetch sentence_polarity"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The split is stratified, disjoint and the same for the same seed.
#[test]
fn split_is_stratified_disjoint_and_seeded() {
    let d = polarity::read(&data()).unwrap();
    let (tr, te) = d.stratified_split(100, 50, 7).unwrap();
    assert_eq!(d.subset(&tr).class_counts(), vec![100, 100]);
    assert_eq!(d.subset(&te).class_counts(), vec![50, 50]);
    assert!(tr.iter().all(|i| !te.contains(i)));
    assert_eq!(d.stratified_split(100, 50, 7).unwrap(), (tr.clone(), te));
    assert_ne!(d.stratified_split(100, 50, 8).unwrap().0, tr);
    assert!(d.stratified_split(1990, 20, 7).is_err());
}

// --- the trainable encoder ---

/// The encoder written with differentiable operations computes what candle-transformers'
/// `BertModel` computes: the same sentence embeddings to float precision.
#[test]
fn trainable_encoder_matches_candle_transformers() {
    let reference = CandleMiniLm::load(&data()).unwrap();
    let ours =
        MiniLmClassifier::from_minilm(&data(), Start::Pretrained, 2, 6, 0).unwrap();
    let sentences = [
        "A man is playing a guitar.",
        "the rock is destined to be great",
        "ok",
    ];
    let want = reference.embed(&sentences).unwrap();
    let batch = reference.tokenizer.encode(&sentences).unwrap();
    let hidden = ours.hidden_states(&batch).unwrap();
    let mask =
        Tensor::from_slice(&batch.mask, (batch.rows, batch.cols), &Device::Cpu).unwrap();
    let got = mean_pool_normalize(&hidden, &mask)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let worst = max_abs_diff(&want, &got);
    assert!(worst < 1e-5, "largest difference {worst}");
}

/// Why the encoder is written out: candle-nn's `LayerNorm` (the one candle-transformers'
/// `BertModel` uses) returns a tensor cut from the graph, so its input gets no gradient;
/// ours passes gradients, and they agree with finite differences.
#[test]
fn fused_layer_norm_blocks_gradients_ours_does_not() {
    let x = Var::from_vec(
        vec![0.3f32, -1.2, 0.7, 2.0, 0.1, -0.4],
        (2, 3),
        &Device::Cpu,
    )
    .unwrap();
    let g = Tensor::new(&[1.0f32, 0.5, 2.0], &Device::Cpu).unwrap();
    let b = Tensor::new(&[0.1f32, 0.0, -0.3], &Device::Cpu).unwrap();
    let w = Tensor::new(&[[0.2f32, -1.0, 0.6], [1.5, 0.3, -0.7]], &Device::Cpu).unwrap();
    let fused = candle_nn::LayerNorm::new(g.clone(), b.clone(), 1e-12);
    let loss = (fused.forward(x.as_tensor()).unwrap() * &w)
        .unwrap()
        .sum_all()
        .unwrap();
    assert!(loss.backward().unwrap().get(x.as_tensor()).is_none());
    let f = |x: &Tensor| -> f64 {
        (layer_norm(x, &g, &b, 1e-12).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let loss = (layer_norm(x.as_tensor(), &g, &b, 1e-12).unwrap() * &w)
        .unwrap()
        .sum_all()
        .unwrap();
    let grad = loss.backward().unwrap();
    let grad = grad
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let base = x
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let h = 1e-2f32;
    for i in 0..base.len() {
        let shifted = |s: f32| {
            let mut v = base.clone();
            v[i] += s;
            f(&Tensor::from_vec(v, (2, 3), &Device::Cpu).unwrap())
        };
        let fd = (shifted(h) - shifted(-h)) / (2.0 * h as f64);
        assert!(
            (fd - grad[i] as f64).abs() < 2e-2,
            "x[{i}]: {fd} vs {}",
            grad[i]
        );
    }
}

/// With the lower 3 layers frozen, the trainable tensors are exactly layers 3..6 and the
/// head, every one of them gets a gradient, and the frozen ones are not variables.
#[test]
fn gradients_reach_exactly_the_trainable_layers() {
    let cfg = config();
    let m = MiniLmClassifier::from_minilm(&data(), Start::Pretrained, 2, 3, 0).unwrap();
    let batch = tokenizer(32).encode(&["a fine film", "a bad one"]).unwrap();
    let target = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
    let loss =
        candle_nn::loss::cross_entropy(&m.logits(&batch).unwrap(), &target).unwrap();
    let grads = loss.backward().unwrap();
    let vars = m.encoder_vars.data().lock().unwrap();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut want: Vec<String> = encoder_names(&cfg)
        .into_iter()
        .filter(|n| {
            ["encoder.layer.3.", "encoder.layer.4.", "encoder.layer.5."]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    want.sort();
    assert_eq!(names, want.iter().collect::<Vec<_>>());
    for (name, v) in vars.iter() {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0, "{name}: zero gradient");
    }
    drop(vars); // `tensors` and `trainable_params` lock the VarMap again
    for name in [HEAD_WEIGHT, HEAD_BIAS] {
        let h = m.head_vars.data().lock().unwrap();
        assert!(
            grads.get(h[name].as_tensor()).is_some(),
            "{name}: no gradient"
        );
    }
    let t = m.tensors();
    assert!(!t["encoder.layer.2.output.dense.weight"].is_variable());
    assert!(!t["embeddings.word_embeddings.weight"].is_variable());
    assert_eq!(
        m.trainable_params(),
        3 * cfg.params().per_layer + 2 * cfg.hidden_size + 2
    );
}

/// The candle twin's own checkpoint: saved as safetensors and loaded back, it predicts
/// identically (the same logits, bit for bit), and the file holds MiniLM's tensor names
/// plus the head.
#[test]
fn candle_checkpoint_round_trip() {
    let tok = tokenizer(32);
    let set = tiny_set();
    let model =
        MiniLmClassifier::from_minilm(&data(), Start::Pretrained, 2, 4, 3).unwrap();
    // Large rates, so one epoch visibly changes the weights.
    let mut ft = Finetuner::new(model, &recipe(4, 1e-3, 1e-2)).unwrap();
    let before = ft.model.tensors()["encoder.layer.5.output.dense.weight"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    ft.epoch(&tok, &set, 0).unwrap();
    let after = ft.model.tensors()["encoder.layer.5.output.dense.weight"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_ne!(before, after, "the step must change the trained layers");
    let dir = scratch("candle-ckpt");
    let path = dir.join("finetuned.safetensors");
    ft.model.save(&path).unwrap();
    let loaded = MiniLmClassifier::load(&path, config(), 2).unwrap();
    assert_eq!(
        ft.model.predict_logits(&tok, &set.texts, 4).unwrap(),
        loaded.predict_logits(&tok, &set.texts, 4).unwrap()
    );
    let file = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let mut names: Vec<String> = file.keys().cloned().collect();
    names.sort();
    let mut want = encoder_names(&config());
    want.extend([HEAD_WEIGHT.to_string(), HEAD_BIAS.to_string()]);
    want.sort();
    assert_eq!(names, want);
    // A truncated checkpoint is an error, not a panic.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let msg = format!(
        "{:#}",
        MiniLmClassifier::load(&path, config(), 2).err().unwrap()
    );
    assert!(msg.contains("not a safetensors file"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

// --- the experiment ---

/// The token cap covers at least 95 % of the sentences and cuts the longest ones.
#[test]
fn token_cap_covers_most_sentences() {
    let r = quick();
    let num = |k: &str| r.facts[k].value.number().unwrap();
    assert!(num("covered") >= 0.95, "{}", num("covered"));
    assert!(num("cap") < num("len_max"));
    assert!(num("len_median") <= num("cap"));
}

/// Fine-tuning beats frozen embeddings with logistic regression, on every seed's mean
/// (committed full results).
#[test]
fn fine_tuning_beats_frozen_logistic_regression() {
    let r = committed();
    let (ft, lr) = (seeds(&r, "acc_full"), seeds(&r, "acc_logreg"));
    assert!(
        mean(&ft) > mean(&lr),
        "fine-tuned {ft:?}, logistic regression {lr:?}"
    );
    // Not only on average: the worst fine-tuned seed beats the best baseline seed.
    let worst_ft = ft.iter().copied().fold(f64::INFINITY, f64::min);
    let best_lr = lr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(
        worst_ft > best_lr,
        "fine-tuned {ft:?}, logistic regression {lr:?}"
    );
}

/// Freezing the lower half of the layers keeps more than half of what fine-tuning
/// gains over the logistic regression, and the head alone on the frozen encoder lands
/// within two points of the logistic regression (the same model, trained another way).
#[test]
fn freezing_half_keeps_most_of_the_gain() {
    let r = committed();
    let (ft, half, head, lr) = (
        mean(&seeds(&r, "acc_full")),
        mean(&seeds(&r, "acc_frozen3")),
        mean(&seeds(&r, "acc_head")),
        mean(&seeds(&r, "acc_logreg")),
    );
    assert!(
        half - lr > 0.5 * (ft - lr),
        "full {ft}, half frozen {half}, logreg {lr}"
    );
    assert!((head - lr).abs() < 0.02, "head only {head}, logreg {lr}");
}

/// The pre-trained encoder beats the same architecture trained the same way from random
/// initialisation, by a wide margin (committed full results).
#[test]
fn pretrained_beats_random_init() {
    let r = committed();
    let (ft, rnd) = (seeds(&r, "acc_full"), seeds(&r, "acc_random"));
    assert!(
        mean(&ft) > mean(&rnd) + 0.1,
        "pre-trained {ft:?}, random {rnd:?}"
    );
    // And random initialisation stays near chance on this little data: its last
    // training loss is nearer a coin toss's ln 2 than the pre-trained encoder's.
    assert!(mean(&rnd) < 0.7, "random {rnd:?}");
    let (rnd_loss, ft_loss) = (
        mean(&last_loss(&r, "random initialisation")),
        mean(&last_loss(&r, "fine-tuned, all")),
    );
    let coin = std::f64::consts::LN_2;
    assert!(
        (rnd_loss - coin).abs() < (rnd_loss - ft_loss).abs(),
        "random {rnd_loss}, pre-trained {ft_loss}"
    );
}

/// The last epoch's training losses over the seeds of the variant whose row in the
/// comparison table starts with `row`.
fn last_loss(r: &Report, row: &str) -> Vec<f64> {
    let t = r.table("comparison").expect("the comparison table");
    let cells = t
        .rows
        .iter()
        .find(|c| matches!(&c[0], Value::Text(s) if s.starts_with(row)))
        .unwrap_or_else(|| panic!("no row {row}"));
    match &cells[3] {
        Value::Seeds(v) => v.clone(),
        v => panic!("{row}: training loss {v:?}"),
    }
}

// --- the from-scratch classifier ---

/// A tiny BERT: 2 layers of width 8, 2 heads, 12 ids, 6 positions.
fn tiny_config() -> BertConfig {
    BertConfig {
        vocab_size: 12,
        hidden_size: 8,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 16,
        hidden_act: "gelu".into(),
        max_position_embeddings: 6,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        pad_token_id: 0,
    }
}

/// A tiny classifier whose parameters are drawn from `seed`: layer-norm gains $1 + 0.3z$,
/// everything else $0.5z$ ($z$ standard normal), so that the layer norms do not divide
/// by tiny deviations and a finite-difference step of `1e-2` stays small.
fn tiny_classifier(seed: u64, frozen: usize) -> ScratchClassifier {
    let enc = ScratchMiniLm::random(tiny_config(), tokenizer(8), seed).unwrap();
    let mut c = ScratchClassifier::new(enc, 2, frozen, seed).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
    c.visit_params("", &mut |name, p| {
        let z = normal(p.value.shape(), &mut rng);
        p.value = if name.ends_with("gamma") {
            z * 0.3 + 1.0
        } else {
            z * 0.5
        };
    });
    c
}

/// Two sentences of 5 and 3 tokens (the second padded), both segments, random ids.
fn tiny_batch(seed: u64) -> TokenBatch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (rows, cols) = (2, 5);
    TokenBatch {
        rows,
        cols,
        ids: (0..rows * cols).map(|_| rng.random_range(0..12)).collect(),
        type_ids: (0..rows * cols).map(|_| rng.random_range(0..2)).collect(),
        mask: vec![1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
        tokens: vec![],
    }
}

/// The classifier's tensors under MiniLM's names (and the head's), as candle tensors of
/// `dtype`: the weights of its candle twin.
fn twin_weights(c: &mut ScratchClassifier, dtype: DType) -> BTreeMap<String, Tensor> {
    let mut w = BTreeMap::new();
    let to = |p: &dlbook::nn::Param| {
        dlbook::nn::candle_twin::to_tensor(&p.value, dtype).unwrap()
    };
    c.encoder.visit_hf(&mut |name, p| {
        w.insert(name.to_string(), to(&*p));
    });
    w.insert(HEAD_WEIGHT.into(), to(&c.head.weight));
    w.insert(HEAD_BIAS.into(), to(&c.head.bias));
    w
}

/// The scratch classifier's gradients under MiniLM's names, in `f64`.
fn scratch_grads(c: &mut ScratchClassifier) -> BTreeMap<String, ArrayD<f64>> {
    let mut g = BTreeMap::new();
    c.encoder.visit_hf(&mut |name, p| {
        g.insert(name.to_string(), f64v(&p.grad));
    });
    g.insert(HEAD_WEIGHT.into(), f64v(&c.head.weight.grad));
    g.insert(HEAD_BIAS.into(), f64v(&c.head.bias.grad));
    g
}

/// The candle twin's (`MiniLmClassifier`, in `F64`) logits and gradients of the mean
/// cross-entropy, by name, for its trainable tensors.
fn candle_grads(
    c: &mut ScratchClassifier,
    batch: &TokenBatch,
    labels: &[usize],
) -> (ArrayD<f64>, HashMap<String, ArrayD<f64>>) {
    let cfg = c.config().clone();
    let twin =
        MiniLmClassifier::new(cfg, &twin_weights(c, DType::F64), 2, c.frozen_layers, 0)
            .unwrap();
    let z = twin.logits(batch).unwrap();
    let target = Tensor::from_vec(
        labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
        labels.len(),
        &Device::Cpu,
    )
    .unwrap();
    let grads = candle_nn::loss::cross_entropy(&z, &target)
        .unwrap()
        .backward()
        .unwrap();
    let mut out = HashMap::new();
    for vm in [&twin.encoder_vars, &twin.head_vars] {
        for (name, v) in vm.data().lock().unwrap().iter() {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            out.insert(name.clone(), to_array(g).unwrap());
        }
    }
    (to_array(&z).unwrap(), out)
}

/// The key projection's bias adds $q \cdot b_k$ to every score of a query, a constant
/// that the softmax removes: its true gradient is exactly zero, and what each method
/// computes is rounding noise, which a relative error cannot compare. Such tensors
/// are checked to be zero to within that noise instead.
fn zero_by_symmetry(name: &str, grads: &[&ArrayD<f64>]) -> bool {
    if !name.ends_with("attention.self.key.bias") {
        return false;
    }
    for g in grads {
        let m = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(m < 1e-4, "{name}: should be zero, has {m:e}");
    }
    true
}

/// The whole classifier's backward (head, masked mean pooling, every post-LN block
/// with padding, the embeddings' layer norm, the word, position and segment tables)
/// checked three ways on a tiny random encoder, over three seeds: manual against finite
/// differences against candle autograd on the twin `MiniLmClassifier` in `F64`, every
/// parameter; and the logits agree.
///
/// The finite differences are taken in `f64` on the twin's forward, which the first
/// assertion ties to ours (logits within 1e-5). Taken on our `f32` forward, rounding
/// in the loss (about 1e-7 of it) divided by the step swamps the smallest tensors'
/// gradients: a query bias whose gradient peaks at 4e-3 missed by 1.6e-3 in relative
/// terms at any step from 1e-2 to 4e-2, with or without Richardson's extrapolation,
/// while manual and candle agreed to 2e-6.
#[test]
fn classifier_gradient_three_ways() {
    let labels = [1, 0];
    for seed in [0, 1, 2] {
        let mut c = tiny_classifier(seed, 0);
        let batch = tiny_batch(seed);
        c.zero_grad();
        c.loss_and_backward(&batch, &labels).unwrap();
        let manual = scratch_grads(&mut c);
        let (z, candle) = candle_grads(&mut c, &batch, &labels);
        let ours = f64v(&c.logits(&batch).unwrap().into_dyn());
        assert!(rel_error(&ours, &z) < 1e-5, "seed {seed}: logits vs candle");
        let cfg = c.config().clone();
        let twin = MiniLmClassifier::new(cfg, &twin_weights(&mut c, DType::F64), 2, 0, 0)
            .unwrap();
        let mut worst = (0.0f64, 0.0f64, 0.0f64);
        assert_eq!(
            manual.len(),
            candle.len(),
            "every tensor has a candle gradient"
        );
        for (name, m) in &manual {
            let fd = twin_finite_diff(&twin, &batch, &labels, name, 1e-6);
            let k = &candle[name];
            if zero_by_symmetry(name, &[m, k, &fd]) {
                continue;
            }
            worst.0 = worst.0.max(rel_error(m, &fd));
            worst.1 = worst.1.max(rel_error(m, k));
            worst.2 = worst.2.max(rel_error(&fd, k));
        }
        assert_three_ways(&format!("tiny classifier, seed {seed}"), worst);
        assert!(
            worst.0 < 1e-5,
            "seed {seed}: manual vs f64 differences {:e}",
            worst.0
        );
    }
}

/// Central differences of the twin's mean cross-entropy (`F64`) with respect to its
/// tensor `name`, one element at a time.
fn twin_finite_diff(
    twin: &MiniLmClassifier,
    batch: &TokenBatch,
    labels: &[usize],
    name: &str,
    h: f64,
) -> ArrayD<f64> {
    let var = [&twin.encoder_vars, &twin.head_vars]
        .iter()
        .find_map(|vm| vm.data().lock().unwrap().get(name).cloned())
        .unwrap_or_else(|| panic!("{name}: not a tensor of the twin"));
    let value = to_array(var.as_tensor()).unwrap();
    let target = Tensor::from_vec(
        labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
        labels.len(),
        &Device::Cpu,
    )
    .unwrap();
    let loss = |v: &ArrayD<f64>| {
        let t = Tensor::from_vec(
            v.iter().copied().collect::<Vec<_>>(),
            v.shape(),
            &Device::Cpu,
        )
        .unwrap();
        var.set(&t).unwrap();
        let z = twin.logits(batch).unwrap();
        candle_nn::loss::cross_entropy(&z, &target)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let mut grad = ArrayD::zeros(value.raw_dim());
    let mut v = value.clone();
    for (i, g) in grad.iter_mut().enumerate() {
        let orig = v.as_slice().unwrap()[i];
        v.as_slice_mut().unwrap()[i] = orig + h;
        let up = loss(&v);
        v.as_slice_mut().unwrap()[i] = orig - h;
        let down = loss(&v);
        v.as_slice_mut().unwrap()[i] = orig;
        *g = (up - down) / (2.0 * h);
    }
    loss(&value);
    grad
}

/// Freezing the lower `k` layers runs no backward below them: their gradients and the
/// embeddings' stay exactly zero, the optimiser sees only layers `k..` and the head, and
/// the gradients of those are the same as without freezing (and as candle's with the
/// same layers frozen).
#[test]
fn freezing_skips_the_backward_below_k() {
    let labels = [0, 1];
    let batch = tiny_batch(5);
    let mut full = tiny_classifier(5, 0);
    full.zero_grad();
    full.loss_and_backward(&batch, &labels).unwrap();
    let want = scratch_grads(&mut full);
    let mut c = tiny_classifier(5, 1);
    c.zero_grad();
    c.loss_and_backward(&batch, &labels).unwrap();
    let got = scratch_grads(&mut c);
    let (_, candle) = candle_grads(&mut c, &batch, &labels);
    for (name, g) in &got {
        let trainable =
            name.starts_with("encoder.layer.1.") || name.starts_with("classifier");
        if trainable {
            assert_eq!(g, &want[name], "{name}: not the unfrozen gradient");
            if zero_by_symmetry(name, &[g, &candle[name]]) {
                continue;
            }
            assert!(rel_error(g, &candle[name]) < 1e-5, "{name}: vs candle");
            assert!(g.iter().any(|&v| v != 0.0), "{name}: no gradient");
        } else {
            assert!(
                g.iter().all(|&v| v == 0.0),
                "{name}: frozen, but has a gradient"
            );
            assert!(!candle.contains_key(name), "{name}: trainable in the twin");
        }
    }
    let mut names = vec![];
    c.trainable()
        .visit_params("", &mut |n, _| names.push(n.to_string()));
    assert!(names
        .iter()
        .all(|n| n.starts_with("encoder.layers.1.") || n.starts_with("head.")));
    assert_eq!(names.len(), candle.len());
}

/// The real all-MiniLM-L6-v2 classifier on two short sentences: the hand-written
/// gradient of every one of its tensors (the 30,522-row word table included) agrees
/// with candle autograd on the twin in `F64`, and so do the logits.
#[test]
fn real_classifier_gradients_match_candle() {
    let enc = ScratchMiniLm::load(&data()).unwrap();
    let mut c = ScratchClassifier::new(enc, 2, 0, 7).unwrap();
    let batch = tokenizer(16)
        .encode(&["a gorgeous , moving film .", "dull ."])
        .unwrap();
    let labels = [1, 0];
    c.zero_grad();
    c.loss_and_backward(&batch, &labels).unwrap();
    let manual = scratch_grads(&mut c);
    let (z, candle) = candle_grads(&mut c, &batch, &labels);
    let ours = f64v(&c.logits(&batch).unwrap().into_dyn());
    let logits = rel_error(&ours, &z);
    let mut worst = (0.0f64, String::new());
    assert_eq!(manual.len(), candle.len());
    for (name, g) in &manual {
        if zero_by_symmetry(name, &[g, &candle[name]]) {
            continue;
        }
        let e = rel_error(g, &candle[name]);
        if e > worst.0 {
            worst = (e, name.clone());
        }
    }
    eprintln!(
        "real classifier: logits {logits:e}, worst gradient {:e} ({})",
        worst.0, worst.1
    );
    assert!(logits < 1e-5, "logits vs candle {logits:e}");
    assert!(
        worst.0 < 1e-4,
        "{}: manual vs candle {:e}",
        worst.1,
        worst.0
    );
}

/// A fine-tuned scratch classifier saved in MiniLM's names and loaded back predicts
/// bit for bit the same; the candle twin reads the same file and gives the same logits
/// to float precision on real sentences of different lengths; a truncated file or one
/// without a head is an error.
#[test]
fn checkpoint_round_trip_predicts_identically() {
    let tok = tokenizer(32);
    let set = tiny_set();
    let enc = ScratchMiniLm::load(&data()).unwrap();
    let model = ScratchClassifier::new(enc, 2, 4, 3).unwrap();
    // Large rates, so one epoch visibly changes the weights.
    let mut ft = ScratchFinetuner::new(model, &recipe(4, 1e-3, 1e-2)).unwrap();
    let before = ft.model.encoder.layers[5].ffn.fc2.weight.value.clone();
    ft.epoch(&tok, &set, 0).unwrap();
    assert_ne!(
        before, ft.model.encoder.layers[5].ffn.fc2.weight.value,
        "the step must change the trained layers"
    );
    assert_eq!(
        before.len(),
        ft.model.encoder.layers[5].ffn.fc2.weight.value.len()
    );
    let dir = scratch("ckpt");
    let path = dir.join("finetuned.safetensors");
    ft.model.save(&path).unwrap();
    let mut loaded = ScratchClassifier::load(&path, config(), tokenizer(32), 2).unwrap();
    let want = ft.model.predict_logits(&tok, &set.texts, 4).unwrap();
    assert_eq!(want, loaded.predict_logits(&tok, &set.texts, 4).unwrap());
    let twin = MiniLmClassifier::load(&path, config(), 2).unwrap();
    let got = twin.predict_logits(&tok, &set.texts, 4).unwrap();
    let worst = max_abs_diff(&want, &got);
    assert!(worst < 1e-5, "scratch vs candle logits: {worst}");
    let file = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let mut names: Vec<String> = file.keys().cloned().collect();
    names.sort();
    let mut want_names = encoder_names(&config());
    want_names.extend([HEAD_WEIGHT.to_string(), HEAD_BIAS.to_string()]);
    want_names.sort();
    assert_eq!(names, want_names);
    // A file without a head, and a truncated one, are errors, not panics.
    let encoder_only = dir.join("encoder.safetensors");
    let mut tensors: HashMap<String, Tensor> = file;
    tensors.remove(HEAD_WEIGHT);
    candle_core::safetensors::save(&tensors, &encoder_only).unwrap();
    let msg = format!(
        "{:#}",
        ScratchClassifier::load(&encoder_only, config(), tokenizer(32), 2)
            .err()
            .unwrap()
    );
    assert!(msg.contains("no classifier head"), "{msg}");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let msg = format!(
        "{:#}",
        ScratchClassifier::load(&path, config(), tokenizer(32), 2)
            .err()
            .unwrap()
    );
    assert!(msg.contains("not a safetensors file"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad input to the scratch classifier is a clear error: labels out of range or of the
/// wrong count, an empty batch, a batch longer than the model's positions, data with
/// other classes, too many frozen layers, a single class.
#[test]
fn scratch_classifier_bad_input_is_an_error() {
    let mut c = tiny_classifier(0, 0);
    let batch = tiny_batch(0);
    let err = |r: anyhow::Result<f32>| format!("{:#}", r.unwrap_err());
    assert!(err(c.loss_and_backward(&batch, &[0, 2]))
        .contains("label 2 of sentence 1 is out of range"));
    assert!(err(c.loss_and_backward(&batch, &[0])).contains("1 labels for a batch of 2"));
    let empty = TokenBatch {
        rows: 0,
        cols: 0,
        ids: vec![],
        type_ids: vec![],
        mask: vec![],
        tokens: vec![],
    };
    assert!(format!("{:#}", c.logits(&empty).unwrap_err()).contains("an empty batch"));
    let long = TokenBatch {
        rows: 1,
        cols: 7,
        ids: vec![1; 7],
        type_ids: vec![0; 7],
        mask: vec![1; 7],
        tokens: vec![],
    };
    assert!(format!("{:#}", c.logits(&long).unwrap_err())
        .contains("more than the model's 6 positions"));
    let three = LabeledText::new(vec!["a".into(), "b".into()], vec![0, 2], 3).unwrap();
    let mut ft = ScratchFinetuner::new(c, &recipe(2, 3e-5, 1e-3)).unwrap();
    let msg = format!("{:#}", ft.epoch(&tokenizer(8), &three, 0).unwrap_err());
    assert!(
        msg.contains("the data has 3 classes, the classifier 2"),
        "{msg}"
    );
    let enc = ScratchMiniLm::random(tiny_config(), tokenizer(8), 0).unwrap();
    let msg = format!("{:#}", ScratchClassifier::new(enc, 2, 3, 0).err().unwrap());
    assert!(
        msg.contains("3 frozen layers, but the encoder has 2"),
        "{msg}"
    );
    let enc = ScratchMiniLm::random(tiny_config(), tokenizer(8), 0).unwrap();
    let msg = format!("{:#}", ScratchClassifier::new(enc, 1, 0, 0).err().unwrap());
    assert!(msg.contains("at least 2"), "{msg}");
}

/// A few steps of the scratch trainer fit four sentences: the training loss falls.
#[test]
fn scratch_finetuning_lowers_the_loss() {
    let tok = tokenizer(32);
    let enc = ScratchMiniLm::load(&data()).unwrap();
    let model = ScratchClassifier::new(enc, 2, 5, 0).unwrap();
    let mut ft = ScratchFinetuner::new(model, &recipe(4, 1e-4, 1e-2)).unwrap();
    let set = tiny_set();
    let first = ft.epoch(&tok, &set, 0).unwrap().loss;
    let mut last = first;
    for e in 1..6 {
        last = ft.epoch(&tok, &set, e).unwrap().loss;
    }
    assert!(last < first, "loss {first} -> {last}");
    let acc = ft.model.accuracy(&tok, &set, 4).unwrap();
    assert_eq!(acc, 1.0, "four sentences, fitted");
}
