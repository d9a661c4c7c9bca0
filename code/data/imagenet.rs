//! The names of the 1000 ImageNet-1k classes, in the order of a classifier's outputs.
//!
//! Two files (from the `imagenet_classes` dataset): the WordNet ids of the classes in
//! output order (`n01440764` is output 0), and WordNet's names for every id
//! (`n01440764<TAB>tench, Tinca tinca`).

use std::collections::HashMap;

use anyhow::{ensure, Context, Result};

use super::DataDir;

/// The 1000 class names, output order: WordNet's lemmas (`"tabby, tabby cat"`).
pub fn imagenet_classes(dir: &DataDir) -> Result<Vec<String>> {
    let ids = std::fs::read_to_string(dir.verified("imagenet/imagenet_synsets.txt")?)?;
    let lemmas =
        std::fs::read_to_string(dir.verified("imagenet/imagenet_synset_to_lemma.txt")?)?;
    let names: HashMap<&str, &str> =
        lemmas.lines().filter_map(|l| l.split_once('\t')).collect();
    let out = ids
        .lines()
        .map(|id| {
            names
                .get(id)
                .map(|n| n.to_string())
                .with_context(|| format!("no name for ImageNet class {id}"))
        })
        .collect::<Result<Vec<_>>>()?;
    ensure!(
        out.len() == 1000,
        "{} ImageNet classes, expected 1000",
        out.len()
    );
    Ok(out)
}
