//! Chapter 11.4, GPT and BERT: the published configurations counted from their shapes
//! ([`dlbook::transformer::families`]) and checked against counts made another way: the
//! released checkpoints' exact counts, the authors' rounded figures, MiniLM's weights
//! file and the book's own GPT as built. The MiniLM tests need the model's files;
//! without them they fail with "run `dlbook data fetch minilm`".

use dlbook::data::DataDir;
use dlbook::experiments::{self, transformer_families as tf};
use dlbook::gpt::{self, Gpt, GptConfig};
use dlbook::models::bert::{self, BertConfig};
use dlbook::nn::Module;
use dlbook::report::{Plot, Report};
use dlbook::transformer::families::{
    mask_tokens, published, ModelSpec, Published, Stated, BERT_MASKING,
    GPT2_PAPER_MILLIONS,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn data() -> DataDir {
    DataDir::resolve(None)
}

fn quick() -> &'static Report {
    experiments::quick("transformer_families", &data())
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn model(name: &str) -> Published {
    published()
        .into_iter()
        .find(|p| p.spec.name == name)
        .unwrap_or_else(|| panic!("no published model {name}"))
}

fn minilm_config() -> BertConfig {
    let path = data()
        .verified(bert::CONFIG)
        .unwrap_or_else(|e| panic!("{e:#}"));
    BertConfig::from_file(&path).unwrap()
}

// ANCHOR: minilm_file
/// The `f32` values in MiniLM's weights file, read tensor by tensor, and whether the
/// pooler is among them.
fn minilm_file_values() -> (usize, bool) {
    let path = data()
        .verified(bert::WEIGHTS)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut values = 0;
    let mut pooler = false;
    for (name, view) in st.tensors() {
        if view.dtype() == safetensors::Dtype::F32 {
            values += view.shape().iter().product::<usize>();
            pooler |= name.starts_with("pooler.");
        }
    }
    (values, pooler)
}

/// The count of all-MiniLM-L6-v2 from its `config.json`, and the values in its file.
pub fn minilm_counted_and_stored() -> (usize, usize) {
    let spec = ModelSpec::from_bert("MiniLM", &minilm_config());
    (spec.count().total, minilm_file_values().0)
}
// ANCHOR_END: minilm_file

/// The count from the shape is the number of values in the weights file, pooler
/// included: the file holds the pooler, and the count without it falls short by exactly
/// the pooler's $d^2 + d$.
#[test]
fn minilm_count_matches_its_weights_file() {
    let (counted, stored) = minilm_counted_and_stored();
    assert_eq!(counted, stored);
    let (_, pooler) = minilm_file_values();
    assert!(pooler, "the file holds the pooler");
    let cfg = minilm_config();
    let without = ModelSpec {
        pooler: false,
        ..ModelSpec::from_bert("MiniLM", &cfg)
    };
    let d = cfg.hidden_size;
    assert_eq!(stored - without.count().total, d * d + d);
    // Section 11.5's count from the same file says the same.
    assert_eq!(cfg.params().total, counted);
}

/// Without the model's files, the MiniLM row fails and says how to get them.
#[test]
fn missing_minilm_says_how_to_fetch_it() {
    let d = std::env::temp_dir().join(format!("dlbook-ch11-arch-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let msg = format!("{:#}", tf::minilm_row(&DataDir::new(&d)).unwrap_err());
    assert!(msg.contains("run `dlbook data fetch minilm`"), "{msg}");
    let _ = std::fs::remove_dir_all(&d);
}

/// The book's GPT: the count from its shape is [`GptConfig::n_params`] and the
/// parameters of the built model, for the reference configuration and its ablations
/// (no positions, post-LN).
#[test]
fn book_gpt_count_matches_the_model() {
    let row = tf::book_gpt_row(&data()).unwrap_or_else(|e| panic!("{e:#}"));
    let cfg = GptConfig::reference(row.spec.vocab_size);
    let variants = [
        cfg.clone(),
        GptConfig::tiny(),
        GptConfig {
            positions: false,
            ..cfg.clone()
        },
        GptConfig {
            norm: gpt::Norm::Post,
            ..cfg.clone()
        },
    ];
    for c in &variants {
        let counted = ModelSpec::from_gpt("GPT", c).count().total;
        assert_eq!(counted, c.n_params(), "{c:?}");
        assert_eq!(counted, Gpt::new(c, 1).n_params(), "{c:?}");
    }
    assert_eq!(row.spec.count().total, row.exact);
}

/// Every published count agrees with the count from the shape: exactly with the
/// released checkpoint's, and to the digits stated with the authors' rounded figure.
#[test]
fn published_counts_agree() {
    for p in published() {
        let n = p.spec.count().total;
        assert_eq!(n, p.exact, "{}", p.spec.name);
        assert!(
            p.stated.agrees(n),
            "{}: {n} vs {}M",
            p.spec.name,
            p.stated.millions
        );
    }
    // BERT's counts are section 11.5's formula on the same shapes.
    for name in ["BERT-base", "BERT-large"] {
        let s = model(name).spec;
        let cfg = BertConfig {
            vocab_size: s.vocab_size,
            hidden_size: s.d_model,
            num_hidden_layers: s.n_layers,
            num_attention_heads: s.n_heads,
            intermediate_size: s.d_ff,
            hidden_act: "gelu".into(),
            max_position_embeddings: s.seq_len,
            type_vocab_size: s.n_segments,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
        };
        assert_eq!(cfg.params().total, s.count().total, "{name}");
    }
}

/// A rounded figure agrees with the counts within half a unit of its last non-zero
/// digit, and with no other.
#[test]
fn stated_figures_round_as_written() {
    let s = |millions| Stated {
        millions,
        source: "",
    };
    assert!(s(124).agrees(124_499_999) && s(124).agrees(123_500_000));
    assert!(!s(124).agrees(124_500_001) && !s(124).agrees(123_499_999));
    assert!(s(340).agrees(335_000_000) && !s(340).agrees(334_999_999));
    assert!(s(1558).agrees(1_557_611_200) && !s(1542).agrees(1_557_611_200));
}

/// The GPT-2 paper's four figures match none of the four GPT-2s; its 117M, given for
/// the model "equivalent to the original GPT", is GPT-1's count. GPT-1 and GPT-2 small
/// have blocks of the same size, and GPT-2 small is larger by its embeddings (a larger
/// vocabulary, more positions) and the final layer norm alone.
#[test]
fn gpt2_paper_figures_do_not_match_the_release() {
    let gpt2 = ["GPT-2 small", "GPT-2 medium", "GPT-2 large", "GPT-2 XL"].map(model);
    for (p, paper) in gpt2.iter().zip(GPT2_PAPER_MILLIONS) {
        let stated = Stated {
            millions: paper,
            source: "",
        };
        assert!(!stated.agrees(p.exact), "{}", p.spec.name);
    }
    let (g1, g2) = (model("GPT-1").spec.count(), gpt2[0].spec.count());
    let paper_small = Stated {
        millions: GPT2_PAPER_MILLIONS[0],
        source: "",
    };
    assert!(paper_small.agrees(g1.total));
    assert_eq!(g1.per_layer, g2.per_layer);
    assert_eq!(g1.attention + g1.mlp, g2.attention + g2.mlp);
    let embeddings =
        |c: &dlbook::transformer::families::ParamCount| c.token_embeddings + c.positions;
    let final_norm = 2 * gpt2[0].spec.d_model;
    assert_eq!(
        g2.total - g1.total,
        embeddings(&g2) - embeddings(&g1) + final_norm
    );
    // BERT-base was sized to match GPT-1: the same blocks.
    assert_eq!(model("BERT-base").spec.count().per_layer, g1.per_layer);
}

/// More than half of MiniLM's parameters are its word-embedding table, more than all
/// six blocks together.
#[test]
fn token_embeddings_are_half_of_minilm() {
    let c = ModelSpec::from_bert("MiniLM", &minilm_config()).count();
    assert!(2 * c.token_embeddings > c.total);
    assert!(c.token_embeddings > c.per_layer * minilm_config().num_hidden_layers);
    let r = quick();
    let share = r.get_fact("minilm_token_share").unwrap();
    assert!((share - c.token_embeddings as f64 / c.total as f64).abs() < 1e-9);
}

/// The share of the token embeddings falls as a family grows: the blocks grow as $d^2$
/// and the table as $d$.
#[test]
fn token_share_falls_with_size() {
    let share = |name: &str| {
        let c = model(name).spec.count();
        c.token_embeddings as f64 / c.total as f64
    };
    let gpt2 = ["GPT-2 small", "GPT-2 medium", "GPT-2 large", "GPT-2 XL"].map(share);
    assert!(gpt2.windows(2).all(|w| w[1] < w[0]), "{gpt2:?}");
    assert!(share("BERT-large") < share("BERT-base"));
    let minilm = tf::minilm_row(&data()).unwrap_or_else(|e| panic!("{e:#}"));
    let c = minilm.spec.count();
    assert!(c.token_embeddings as f64 / c.total as f64 > share("BERT-base"));
}

// ANCHOR: masking_usage
/// BERT's masking rule on 200,000 token ids: the share chosen, and among the chosen,
/// the shares replaced by `[MASK]`, by a random token, and kept.
pub fn masking_shares() -> [f64; 4] {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let ids: Vec<u32> = (0..200_000u32).map(|i| 1000 + i % 20_000).collect();
    let (mask_id, vocab) = (103, 30_522);
    let m = mask_tokens(&ids, BERT_MASKING, mask_id, vocab, &mut rng);
    let chosen: Vec<usize> = (0..ids.len()).filter(|&i| m.targets[i].is_some()).collect();
    let n = chosen.len() as f64;
    let masked = chosen.iter().filter(|&&i| m.inputs[i] == mask_id).count();
    let kept = chosen.iter().filter(|&&i| m.inputs[i] == ids[i]).count();
    let random = chosen.len() - masked - kept;
    [
        n / ids.len() as f64,
        masked as f64 / n,
        random as f64 / n,
        kept as f64 / n,
    ]
}
// ANCHOR_END: masking_usage

/// The masking rule chooses its share of the tokens and splits them as the rule says
/// (within 1 % on 200,000 tokens); the tokens not chosen are left alone and have no
/// target, and every chosen one's target is the original.
#[test]
fn masking_follows_the_rule() {
    let [chosen, masked, random, kept] = masking_shares();
    let r = BERT_MASKING;
    assert!((chosen - r.rate).abs() < 0.01, "{chosen}");
    assert!((masked - r.to_mask).abs() < 0.01, "{masked}");
    assert!((random - r.to_random).abs() < 0.01, "{random}");
    assert!(
        (kept - (1.0 - r.to_mask - r.to_random)).abs() < 0.01,
        "{kept}"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let ids: Vec<u32> = (0..5000).map(|i| 2000 + i).collect();
    let m = mask_tokens(&ids, BERT_MASKING, 103, 30_522, &mut rng);
    for (i, t) in m.targets.iter().enumerate() {
        match t {
            Some(t) => assert_eq!(*t, ids[i]),
            None => assert_eq!(m.inputs[i], ids[i]),
        }
    }
}

/// The experiment's tables list every model, and each row of the figure sums to
/// 100 %.
#[test]
fn families_tables_cover_every_model() {
    let r = quick();
    let n = published().len() + 2;
    for t in ["pretraining", "shapes", "params", "checks"] {
        assert_eq!(r.table(t).unwrap().rows.len(), n, "{t}");
    }
    let Plot::Heatmap { values, .. } = &r.figures[0].plot else {
        panic!("the shares figure is a heatmap")
    };
    assert_eq!(values.len(), n);
    for row in values {
        assert!((row.iter().sum::<f64>() - 100.0).abs() < 1e-9);
    }
}

/// Within GPT-2 and within BERT the head width is the same at every size: a wider
/// model has more heads.
#[test]
fn head_width_is_fixed_within_a_family() {
    for family in [
        &["GPT-2 small", "GPT-2 medium", "GPT-2 large", "GPT-2 XL"][..],
        &["BERT-base", "BERT-large"][..],
    ] {
        let specs: Vec<ModelSpec> = family.iter().map(|n| model(n).spec).collect();
        for s in &specs {
            assert_eq!(s.head_size() * s.n_heads, s.d_model, "{}", s.name);
            assert_eq!(s.head_size(), specs[0].head_size(), "{}", s.name);
        }
        assert!(specs.windows(2).all(|w| w[1].n_heads > w[0].n_heads));
    }
}

/// In every model of the tables the MLPs hold twice the attention's parameters,
/// biases aside (the biases move the ratio by less than 1 %).
#[test]
fn mlp_holds_twice_the_attention() {
    let mut specs: Vec<ModelSpec> = published().into_iter().map(|p| p.spec).collect();
    specs.push(
        tf::minilm_row(&data())
            .unwrap_or_else(|e| panic!("{e:#}"))
            .spec,
    );
    specs.push(
        tf::book_gpt_row(&data())
            .unwrap_or_else(|e| panic!("{e:#}"))
            .spec,
    );
    for s in specs {
        let c = s.count();
        let ratio = c.mlp as f64 / c.attention as f64;
        assert!((ratio - 2.0).abs() < 0.02, "{}: {ratio}", s.name);
        let no_bias = ModelSpec {
            biases: false,
            ..s.clone()
        }
        .count();
        assert_eq!(no_bias.mlp, 2 * no_bias.attention, "{}", s.name);
    }
}
