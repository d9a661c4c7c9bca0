//! A model registry in MLflow's own format: registered models, their numbered versions
//! with lineage (the run that made them, the data's sha256, the commit, the artifact),
//! and aliases such as `production` that name one version and move when a better one
//! is promoted. What `dlbook models` writes, MLflow's `MlflowClient` reads, and what
//! `dlbook serve` loads.
//!
//! In a file store the registry sits next to the runs, as MLflow's `FileStore` lays it
//! out:
//!
//! ```text
//! mlruns/models/<name>/
//!   meta.yaml                   name, creation and last-update times, description
//!   aliases/<alias>             the version the alias points at, as text
//!   version-<n>/meta.yaml       version, source (the artifact's URI), run_id, status
//!   version-<n>/tags/<key>      lineage: git_commit, data_sha256
//! ```
//!
//! **Crash safety.** A version is written whole into a hidden staging folder and renamed
//! to `version-<n>` (a rename onto a folder that is not empty fails, so two writers
//! never get the same number: the loser takes the next); an alias is one file replaced
//! by a rename, so a reader sees the old version or the new, never a torn number. A
//! registered model's folder is claimed with one `mkdir` (atomic) before its
//! `meta.yaml` is written; a process killed between the two leaves a folder without
//! `meta.yaml`, which [`Registry::models`] skips and [`Registry::create_model`] repairs.
//!
//! **A server instead.** Built from a [`Tracker`] that talks to an MLflow server, the
//! registry makes the same calls over its REST API: `registered-models/create`,
//! `model-versions/create`, `POST registered-models/alias`, `GET
//! registered-models/alias` (a version by alias), `model-versions/get`,
//! `registered-models/search` and `model-versions/search`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::logging::{TAG_COMMIT, TAG_DATA};
use super::rest::{self, error_code, RestClient};
use super::tracking::{
    check_key, file_names, now_ms, read_yaml, write_atomic, yaml_str, Tracker,
};

/// The artifact a registered version of the MNIST CNN is made from.
pub const MODEL_ARTIFACT: &str = "model.safetensors";

/// The longest alias MLflow accepts.
const MAX_ALIAS_LEN: usize = 255;

/// One version of a registered model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelVersion {
    /// The registered model's name.
    pub name: String,
    /// Its number: 1, 2, ... in the order registered.
    pub version: u64,
    /// The URI of the model's artifact (`file://...` or `mlflow-artifacts:/...`).
    pub source: String,
    /// The run that made it.
    pub run_id: String,
    /// Its tags: the lineage ([`TAG_COMMIT`], [`TAG_DATA`]) and any others.
    pub tags: BTreeMap<String, String>,
    /// The aliases pointing at it.
    pub aliases: Vec<String>,
    /// When it was registered, ms since 1970.
    pub creation_timestamp: i64,
}

impl ModelVersion {
    /// The commit of the code that trained it (`unknown` if the run did not say).
    pub fn git_commit(&self) -> &str {
        self.tags.get(TAG_COMMIT).map_or("unknown", String::as_str)
    }

    /// The sha256 of the data it was trained on (`unknown` if the run did not say).
    pub fn data_sha256(&self) -> &str {
        self.tags.get(TAG_DATA).map_or("unknown", String::as_str)
    }

    /// A version as the server's JSON `model_version` object.
    fn from_json(v: &Value) -> Result<ModelVersion> {
        let version = rest::str_of(v, "version")?;
        let mut tags = BTreeMap::new();
        for t in v
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            tags.insert(
                rest::str_of(t, "key")?.to_string(),
                rest::str_of(t, "value")?.to_string(),
            );
        }
        Ok(ModelVersion {
            name: rest::str_of(v, "name")?.to_string(),
            version: version
                .parse()
                .with_context(|| format!("version {version:?} is not a number"))?,
            source: v
                .get("source")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            run_id: v
                .get("run_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            tags,
            aliases: v
                .get("aliases")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
            creation_timestamp: v
                .get("creation_timestamp")
                .and_then(rest::i64_of)
                .unwrap_or(0),
        })
    }
}

/// A registered model: its versions (oldest first) and aliases.
#[derive(Clone, Debug, PartialEq)]
pub struct RegisteredModel {
    /// Its name.
    pub name: String,
    /// Every version, in number order.
    pub versions: Vec<ModelVersion>,
    /// Alias → version number.
    pub aliases: BTreeMap<String, u64>,
}

/// What a new version records of where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Lineage {
    /// The run that made the model.
    pub run_id: String,
    /// The URI of the model's artifact.
    pub source: String,
    /// The commit of the code.
    pub git_commit: String,
    /// The sha256 of the data.
    pub data_sha256: String,
}

/// Checks a registered model's name: MLflow refuses `/`, `:` and `%`, and here it is
/// also a folder name, so only letters, digits, `_ - .` and spaces, not starting with
/// `.`.
pub fn check_model_name(name: &str) -> Result<()> {
    let ok = !name.trim().is_empty()
        && name.len() <= 250
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-. ".contains(c));
    if !ok {
        bail!(
            "model name {name:?}: use 1 to 250 letters, digits, `_`, `-`, `.` or spaces, \
             not starting with `.`"
        );
    }
    Ok(())
}

/// Checks an alias as MLflow does: letters, digits, `_` and `-`; not `latest` and not
/// `v<number>` (MLflow reserves both).
pub fn check_alias(alias: &str) -> Result<()> {
    if alias.is_empty()
        || alias.len() > MAX_ALIAS_LEN
        || !alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    {
        bail!("alias {alias:?}: use 1 to {MAX_ALIAS_LEN} letters, digits, `_` or `-`");
    }
    let lower = alias.to_ascii_lowercase();
    let versionlike = lower.len() > 1
        && lower.starts_with('v')
        && lower[1..].bytes().all(|b| b.is_ascii_digit());
    if lower == "latest" || versionlike {
        bail!("alias {alias:?} is reserved by MLflow (`latest` and `v<number>` name versions)");
    }
    Ok(())
}

/// A model registry: the `models/` folder of a file store, or a tracking server's.
#[derive(Clone, Debug)]
pub struct Registry {
    store: Store,
}

#[derive(Clone, Debug)]
enum Store {
    File(PathBuf),
    Rest(RestClient),
}

impl Registry {
    /// The registry that lives with `tracker`'s runs, as MLflow's default registry
    /// URI is its tracking URI.
    pub fn of(tracker: &Tracker) -> Registry {
        let store = match (tracker.root(), tracker.rest_client()) {
            (Some(root), _) => Store::File(root.join("models")),
            (None, Some(c)) => Store::Rest(c.clone()),
            (None, None) => unreachable!("a tracker is a folder or a server"),
        };
        Registry { store }
    }

    /// Where the registry is, for messages.
    pub fn location(&self) -> String {
        match &self.store {
            Store::File(dir) => dir.display().to_string(),
            Store::Rest(c) => c.uri().to_string(),
        }
    }

    /// Creates the registered model `name` if it does not exist (an existing one is
    /// left as it is).
    pub fn create_model(&self, name: &str) -> Result<()> {
        check_model_name(name)?;
        let dir = match &self.store {
            Store::File(dir) => dir.join(name),
            Store::Rest(c) => {
                return match c.call(
                    "POST",
                    "/api/2.0/mlflow/registered-models/create",
                    &[],
                    Some(&json!({ "name": name })),
                ) {
                    Err(e) if error_code(&e) == Some("RESOURCE_ALREADY_EXISTS") => Ok(()),
                    r => r.map(drop),
                }
            }
        };
        if dir.join("meta.yaml").exists() {
            return Ok(());
        }
        fs::create_dir_all(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let t = now_ms();
        write_model_meta(&dir, name, t, t)
    }

    /// Registers a new version of model `name` (created if needed) with `lineage`;
    /// returns it, numbered one past the highest so far.
    pub fn create_version(&self, name: &str, lineage: &Lineage) -> Result<ModelVersion> {
        self.create_model(name)?;
        let tags = [
            (TAG_COMMIT, lineage.git_commit.as_str()),
            (TAG_DATA, lineage.data_sha256.as_str()),
        ];
        let dir = match &self.store {
            Store::File(dir) => dir.join(name),
            Store::Rest(c) => {
                let tags: Vec<Value> = tags
                    .iter()
                    .map(|(k, v)| json!({ "key": k, "value": v }))
                    .collect();
                let v = c.call(
                    "POST",
                    "/api/2.0/mlflow/model-versions/create",
                    &[],
                    Some(&json!({
                        "name": name,
                        "source": lineage.source,
                        "run_id": lineage.run_id,
                        "tags": tags,
                    })),
                )?;
                return ModelVersion::from_json(
                    v.get("model_version")
                        .with_context(|| format!("model-versions/create answered {v}"))?,
                );
            }
        };
        let t = now_ms();
        // Hidden (MLflow lists only `version-*` folders), unique per process and call.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let staging = dir.join(format!(
            ".staging-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(staging.join("tags"))
            .with_context(|| format!("creating {}", staging.display()))?;
        for (k, v) in tags {
            write_atomic(&staging.join("tags").join(k), v.as_bytes())?;
        }
        let mut version = self.versions(name)?.last().map_or(1, |v| v.version + 1);
        loop {
            let meta = format!(
                "creation_timestamp: {t}\ncurrent_stage: None\ndescription: null\n\
                 last_updated_timestamp: {t}\nname: {}\nrun_id: {}\nrun_link: null\n\
                 source: {}\nstatus: READY\nstatus_message: null\nstorage_location: {}\n\
                 user_id: null\nversion: {version}\n",
                yaml_str(name),
                yaml_str(&lineage.run_id),
                yaml_str(&lineage.source),
                yaml_str(&lineage.source),
            );
            write_atomic(&staging.join("meta.yaml"), meta.as_bytes())?;
            let target = dir.join(format!("version-{version}"));
            match fs::rename(&staging, &target) {
                Ok(()) => break,
                // Another writer took this number (its folder is not empty): next one.
                Err(_) if target.join("meta.yaml").exists() => version += 1,
                Err(e) => {
                    let _ = fs::remove_dir_all(&staging);
                    return Err(e)
                        .with_context(|| format!("renaming onto {}", target.display()));
                }
            }
        }
        self.touch(name, t)?;
        self.version(name, version)
    }

    /// Points `alias` of model `name` at `version` (which must exist).
    pub fn set_alias(&self, name: &str, alias: &str, version: u64) -> Result<()> {
        check_alias(alias)?;
        // An unknown model or version is an error naming it, before anything is written.
        self.version(name, version)?;
        match &self.store {
            Store::File(dir) => {
                write_atomic(
                    &dir.join(name).join("aliases").join(alias),
                    version.to_string().as_bytes(),
                )?;
                self.touch(name, now_ms())
            }
            Store::Rest(c) => c
                .call(
                    "POST",
                    "/api/2.0/mlflow/registered-models/alias",
                    &[],
                    Some(&json!({
                        "name": name, "alias": alias, "version": version.to_string(),
                    })),
                )
                .map(drop),
        }
    }

    /// Version `version` of model `name`; an unknown model or version is an error
    /// naming the versions there are.
    pub fn version(&self, name: &str, version: u64) -> Result<ModelVersion> {
        check_model_name(name)?;
        if let Store::Rest(c) = &self.store {
            let v = c.call(
                "GET",
                "/api/2.0/mlflow/model-versions/get",
                &[("name", name), ("version", &version.to_string())],
                None,
            )?;
            return ModelVersion::from_json(
                v.get("model_version")
                    .with_context(|| format!("model-versions/get answered {v}"))?,
            );
        }
        let versions = self.versions(name)?;
        versions
            .iter()
            .find(|v| v.version == version)
            .cloned()
            .with_context(|| {
                let have: Vec<String> =
                    versions.iter().map(|v| v.version.to_string()).collect();
                format!(
                    "model {name:?} has no version {version} (it has: {})",
                    if have.is_empty() {
                        "none".into()
                    } else {
                        have.join(", ")
                    }
                )
            })
    }

    /// The version alias `alias` of model `name` points at; an unknown model or alias
    /// is an error naming the aliases there are.
    pub fn version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        check_model_name(name)?;
        check_alias(alias)?;
        let dir = match &self.store {
            Store::File(dir) => dir.join(name),
            Store::Rest(c) => {
                let v = c.call(
                    "GET",
                    "/api/2.0/mlflow/registered-models/alias",
                    &[("name", name), ("alias", alias)],
                    None,
                )?;
                return ModelVersion::from_json(
                    v.get("model_version").with_context(|| {
                        format!("registered-models/alias answered {v}")
                    })?,
                );
            }
        };
        let aliases = read_aliases(&dir, name)?;
        let version = aliases.get(alias).with_context(|| {
            format!(
                "model {name:?} has no alias {alias:?} (it has: {})",
                if aliases.is_empty() {
                    "none".to_string()
                } else {
                    aliases.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            )
        })?;
        self.version(name, *version)
    }

    /// Every version of model `name`, in number order; an unknown model is an error
    /// naming the models there are.
    pub fn versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        check_model_name(name)?;
        let dir = match &self.store {
            Store::File(dir) => dir.join(name),
            Store::Rest(c) => {
                let filter = format!("name='{}'", name.replace('\'', "\\'"));
                let mut out = vec![];
                for v in c.search_all(
                    "/api/2.0/mlflow/model-versions/search",
                    "model_versions",
                    &[("filter", &filter)],
                )? {
                    out.push(ModelVersion::from_json(&v)?);
                }
                if out.is_empty() {
                    // Tells an unknown model from one without versions.
                    c.call(
                        "GET",
                        "/api/2.0/mlflow/registered-models/get",
                        &[("name", name)],
                        None,
                    )?;
                }
                out.sort_by_key(|v| v.version);
                return Ok(out);
            }
        };
        let aliases = read_aliases(&dir, name)?;
        let mut out = vec![];
        for entry in
            fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            let file = path.file_name().map(|f| f.to_string_lossy().to_string());
            let Some(n) = file.as_deref().and_then(|f| f.strip_prefix("version-")) else {
                continue;
            };
            if !path.join("meta.yaml").exists() {
                continue;
            }
            let meta = read_yaml(&path.join("meta.yaml"))?;
            let get = |k: &str| {
                meta.get(k).cloned().with_context(|| {
                    format!("{}: no {k}", path.join("meta.yaml").display())
                })
            };
            let version: u64 = n
                .parse()
                .with_context(|| format!("{}: not a version number", path.display()))?;
            let mut tags = BTreeMap::new();
            for key in file_names(&path.join("tags"))? {
                let text = fs::read_to_string(path.join("tags").join(&key))?;
                tags.insert(key, text);
            }
            out.push(ModelVersion {
                name: name.to_string(),
                version,
                source: get("source")?,
                run_id: get("run_id")?,
                tags,
                aliases: aliases
                    .iter()
                    .filter(|(_, v)| **v == version)
                    .map(|(a, _)| a.clone())
                    .collect(),
                creation_timestamp: get("creation_timestamp")?
                    .parse()
                    .context("creation_timestamp is a number")?,
            });
        }
        out.sort_by_key(|v| v.version);
        Ok(out)
    }

    /// Every registered model with its versions and aliases, by name.
    pub fn models(&self) -> Result<Vec<RegisteredModel>> {
        let names: Vec<String> = match &self.store {
            Store::File(dir) => {
                if !dir.exists() {
                    return Ok(vec![]);
                }
                let mut names = vec![];
                for entry in fs::read_dir(dir)? {
                    let path = entry?.path();
                    if path.join("meta.yaml").exists() {
                        names.push(
                            path.file_name().unwrap().to_string_lossy().to_string(),
                        );
                    }
                }
                names
            }
            Store::Rest(c) => c
                .search_all(
                    "/api/2.0/mlflow/registered-models/search",
                    "registered_models",
                    &[],
                )?
                .iter()
                .map(|m| rest::str_of(m, "name").map(str::to_string))
                .collect::<Result<_>>()?,
        };
        let mut out = vec![];
        for name in names {
            let versions = self.versions(&name)?;
            let mut aliases = BTreeMap::new();
            for v in &versions {
                for a in &v.aliases {
                    aliases.insert(a.clone(), v.version);
                }
            }
            out.push(RegisteredModel {
                name,
                versions,
                aliases,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The model file of `version` on this machine: its path in a file store, or a
    /// copy downloaded from the server's artifact proxy into `cache`.
    pub fn artifact(&self, version: &ModelVersion, cache: &Path) -> Result<PathBuf> {
        let source = &version.source;
        if let Some(path) = source.strip_prefix("file://") {
            return Ok(PathBuf::from(path));
        }
        let Store::Rest(c) = &self.store else {
            bail!(
                "version {} of {}: source {source:?} is not a file",
                version.version,
                version.name
            )
        };
        let (dir, file) = source
            .rsplit_once('/')
            .with_context(|| format!("source {source:?} names no file"))?;
        let bytes = c.get_artifact(dir, file)?;
        let path = cache.join(format!("{}-v{}-{file}", version.name, version.version));
        write_atomic(&path, &bytes)?;
        Ok(path)
    }

    /// Sets the registered model's last-update time (file store).
    fn touch(&self, name: &str, t: i64) -> Result<()> {
        if let Store::File(dir) = &self.store {
            let dir = dir.join(name);
            let meta = read_yaml(&dir.join("meta.yaml"))?;
            let created = meta
                .get("creation_timestamp")
                .and_then(|c| c.parse().ok())
                .unwrap_or(t);
            write_model_meta(&dir, name, created, t)?;
        }
        Ok(())
    }
}

/// Writes a registered model's `meta.yaml` (the fields MLflow's `FileStore` writes).
fn write_model_meta(dir: &Path, name: &str, created: i64, updated: i64) -> Result<()> {
    let meta = format!(
        "creation_timestamp: {created}\ndescription: null\nlast_updated_timestamp: \
         {updated}\nname: {}\n",
        yaml_str(name)
    );
    write_atomic(&dir.join("meta.yaml"), meta.as_bytes())
}

/// Alias → version of the registered model in folder `dir`; a missing model is an error
/// naming the models there are.
fn read_aliases(dir: &Path, name: &str) -> Result<BTreeMap<String, u64>> {
    if !dir.join("meta.yaml").exists() {
        let root = dir.parent().unwrap_or(dir);
        let mut have: Vec<String> = fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("meta.yaml").exists())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        have.sort();
        bail!(
            "no registered model {name:?} in {} (there are: {})",
            root.display(),
            if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            }
        );
    }
    let mut out = BTreeMap::new();
    for alias in file_names(&dir.join("aliases"))? {
        let text = fs::read_to_string(dir.join("aliases").join(&alias))?;
        let v = text.trim().parse().with_context(|| {
            format!("alias {alias} of {name}: {text:?} is not a version number")
        })?;
        out.insert(alias, v);
    }
    Ok(out)
}

/// Registers the model artifact `artifact` of run `run_id` (found in `tracker`) as a new
/// version of `name` in `registry`, with the run's lineage tags. A run without that
/// artifact is an error saying which artifacts it has.
pub fn register_run(
    tracker: &Tracker,
    registry: &Registry,
    run_id: &str,
    name: &str,
    artifact: &str,
) -> Result<ModelVersion> {
    check_key(artifact)?;
    let run = tracker.find_run(run_id)?;
    if !run.artifacts.iter().any(|a| a == artifact) {
        bail!(
            "run {run_id} has no artifact {artifact:?} to register (its artifacts: {}); \
             train with `dlbook train mnist-cnn`, which logs one",
            if run.artifacts.is_empty() {
                "none".to_string()
            } else {
                run.artifacts.join(", ")
            }
        );
    }
    let tag = |k: &str| {
        run.record
            .tags
            .get(k)
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    };
    registry.create_version(
        name,
        &Lineage {
            run_id: run_id.to_string(),
            source: format!("{}/{artifact}", run.artifact_uri.trim_end_matches('/')),
            git_commit: tag(TAG_COMMIT),
            data_sha256: tag(TAG_DATA),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_are_checked_as_mlflow_does() {
        for bad in ["", "a/b", "a:b", "50%", ".hidden", "../x"] {
            assert!(check_model_name(bad).is_err(), "{bad:?}");
        }
        check_model_name("mnist_cnn").unwrap();
        for bad in ["", "latest", "LATEST", "v3", "V12", "prod uction", "a/b"] {
            assert!(check_alias(bad).is_err(), "{bad:?}");
        }
        for good in ["production", "staging", "champion-2", "v", "vx1"] {
            check_alias(good).unwrap();
        }
    }
}
