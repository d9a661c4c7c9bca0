//! Small tabular sets: scikit-learn's iris, wine, breast cancer and digits, exactly as
//! its wheel ships them, and a fixed sample of two moons.
//!
//! A [`Table`] keeps the features in `f64` as written (statistics and linear algebra run
//! in `f64`); [`Dataset::table`] gives the same rows as an `(N, F)` dataset in `f32` for
//! the networks.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ndarray::Array2;

use super::{DataDir, Dataset};

/// The largest decompressed table the reader accepts (digits is 265 kB).
pub const MAX_TABLE_BYTES: u64 = 64 << 20;

/// How a table's CSV file is laid out. In every layout a row is the features, then an
/// integer class label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableLayout {
    /// scikit-learn's own: a first line `n_rows,n_features,class name,...`.
    Counts,
    /// A first line of column names, the last one naming the label (the moons sample).
    Names,
    /// No header line; labels are in `0..n_classes` (scikit-learn's digits file).
    Bare {
        /// Number of classes.
        n_classes: usize,
    },
}

/// The book's tabular sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableSet {
    /// 150 irises x 4 measurements, 3 species.
    Iris,
    /// 178 wines x 13 chemical measurements, 3 cultivars.
    Wine,
    /// 569 tumours x 30 features, malignant (0) or benign (1).
    BreastCancer,
    /// 1,797 8x8 images of digits, values 0..16, 10 classes.
    Digits,
    /// 2,000 points of two moons (noise 0.05), 2 classes.
    Moons,
}

impl TableSet {
    /// Every tabular set.
    pub const ALL: [TableSet; 5] = [
        TableSet::Iris,
        TableSet::Wine,
        TableSet::BreastCancer,
        TableSet::Digits,
        TableSet::Moons,
    ];

    /// Its name in the catalog (`dlbook data verify iris`).
    pub fn name(self) -> &'static str {
        match self {
            TableSet::Iris => "iris",
            TableSet::Wine => "wine",
            TableSet::BreastCancer => "breast_cancer",
            TableSet::Digits => "digits",
            TableSet::Moons => "moons",
        }
    }

    /// Its file, relative to the data folder.
    pub fn file(self) -> &'static str {
        match self {
            TableSet::Iris => "sklearn/iris.csv",
            TableSet::Wine => "sklearn/wine_data.csv",
            TableSet::BreastCancer => "sklearn/breast_cancer.csv",
            TableSet::Digits => "sklearn/digits.csv.gz",
            TableSet::Moons => "sklearn/moons_2000.csv",
        }
    }

    /// How its file is laid out.
    pub fn layout(self) -> TableLayout {
        match self {
            TableSet::Digits => TableLayout::Bare { n_classes: 10 },
            TableSet::Moons => TableLayout::Names,
            _ => TableLayout::Counts,
        }
    }
}

/// Rows of features with a class label each.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// `(N, F)` features, as written in the file.
    pub features: Array2<f64>,
    /// `N` class labels, each below `class_names.len()`.
    pub labels: Vec<usize>,
    /// The name of each class (the file's own, or the class numbers).
    pub class_names: Vec<String>,
}

impl Table {
    /// The rows as a dataset: `x` is `(N, F)` in `f32`, the targets are the classes.
    pub fn to_dataset(&self) -> Dataset {
        Dataset::classes(
            self.features.mapv(|v| v as f32).into_dyn(),
            self.labels.clone(),
        )
    }
}

/// Parses a table from CSV text (no quoting). Every row must have the same number of
/// cells, every feature must be a finite number and every label a class of the table;
/// errors name the line.
pub fn parse_table(text: &str, layout: TableLayout) -> Result<Table> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let split =
        |l: &str| -> Vec<String> { l.split(',').map(|c| c.trim().into()).collect() };
    // What the header promises: (rows, cells per row, class names).
    let (n_rows, mut width, class_names) = match layout {
        TableLayout::Counts => {
            let (_, head) = lines.next().context("empty file: no header line")?;
            let cells = split(head);
            let count = |k: usize, what: &str| -> Result<usize> {
                cells
                    .get(k)
                    .and_then(|c| c.parse::<usize>().ok())
                    .with_context(|| {
                        format!(
                            "line 1: `{head}` is not `rows,features,classes...` ({what})"
                        )
                    })
            };
            let (n, f) = (count(0, "rows")?, count(1, "features")?);
            if cells.len() < 3 {
                bail!("line 1: `{head}` names no classes");
            }
            (Some(n), Some(f + 1), Some(cells[2..].to_vec()))
        }
        TableLayout::Names => {
            let (_, head) = lines.next().context("empty file: no header line")?;
            let cells = split(head);
            if cells.len() < 2 {
                bail!("line 1: `{head}` needs at least one feature and the label");
            }
            (None, Some(cells.len()), None)
        }
        TableLayout::Bare { n_classes } => (
            None,
            None,
            Some((0..n_classes).map(|c| c.to_string()).collect()),
        ),
    };
    let mut values: Vec<f64> = vec![];
    let mut labels: Vec<usize> = vec![];
    for (line, text) in lines {
        let cells = split(text);
        let w = *width.get_or_insert(cells.len());
        if cells.len() != w || w < 2 {
            bail!(
                "line {line}: {} cells, expected {w} (features, then the label)",
                cells.len()
            );
        }
        for c in &cells[..w - 1] {
            let v = c
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .with_context(|| format!("line {line}: `{c}` is not a number"))?;
            values.push(v);
        }
        let last = &cells[w - 1];
        let label = last.parse::<usize>().ok().with_context(|| {
            format!("line {line}: label `{last}` is not a class number")
        })?;
        if let Some(names) = &class_names {
            if label >= names.len() {
                bail!(
                    "line {line}: label {label} is not below the {} classes",
                    names.len()
                );
            }
        }
        labels.push(label);
    }
    if labels.is_empty() {
        bail!("no data rows");
    }
    if let Some(n) = n_rows {
        if n != labels.len() {
            bail!(
                "the header promises {n} rows, the file has {}",
                labels.len()
            );
        }
    }
    let class_names = class_names.unwrap_or_else(|| {
        let k = labels.iter().max().map_or(0, |&m| m + 1);
        (0..k).map(|c| c.to_string()).collect()
    });
    let f = width.expect("a row was read") - 1;
    let features =
        Array2::from_shape_vec((labels.len(), f), values).expect("N * F values");
    Ok(Table {
        features,
        labels,
        class_names,
    })
}

/// Reads a table file (gzip-compressed if its name ends in `.gz`).
pub fn read_table_file(path: &Path, layout: TableLayout) -> Result<Table> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    let mut bytes = vec![];
    let limit = MAX_TABLE_BYTES + 1;
    let read = if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(std::io::BufReader::new(f))
            .take(limit)
            .read_to_end(&mut bytes)
    } else {
        f.take(limit).read_to_end(&mut bytes)
    };
    read.with_context(|| {
        format!("{}: cannot read (corrupt gzip stream?)", path.display())
    })?;
    if bytes.len() as u64 > MAX_TABLE_BYTES {
        bail!(
            "{}: more than the {MAX_TABLE_BYTES}-byte limit",
            path.display()
        );
    }
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
    parse_table(&text, layout).with_context(|| format!("{}", path.display()))
}

/// A tabular set, verified against the catalog, then read.
pub fn read_table(dir: &DataDir, set: TableSet) -> Result<Table> {
    read_table_file(&dir.verified(set.file())?, set.layout())
}

impl Dataset {
    /// A tabular set as an `(N, F)` dataset in `f32` with class targets (see
    /// [`read_table`] for the `f64` features and the class names).
    pub fn table(dir: &DataDir, set: TableSet) -> Result<Dataset> {
        Ok(read_table(dir, set)?.to_dataset())
    }
}
