//! Finding a model's parts on disk: a local folder in the diffusers or the official layout, or a
//! Hugging Face repo id downloaded once into the standard Hugging Face cache.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How a model folder is organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A diffusers repo: `model_index.json`, `transformer/`, `vae/`, `text_encoder/`,
    /// `tokenizer/`, `scheduler/`.
    Diffusers,
    /// An official Wan repo: `config.json` + DiT shards at the top, `Wan2.1_VAE.pth`,
    /// `models_t5_umt5-xxl-enc-bf16.pth`, tokenizer under `google/umt5-xxl/`.
    Official,
}

/// Official-layout file names.
const OFFICIAL_VAE: &str = "Wan2.1_VAE.pth";
const OFFICIAL_T5: &str = "models_t5_umt5-xxl-enc-bf16.pth";
const OFFICIAL_TOKENIZER: &str = "google/umt5-xxl";

/// Where each part of a model lives.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    name: String,
    root: PathBuf,
    layout: Layout,
}

/// How to reach the Hugging Face Hub.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Use only what is already in the cache; never touch the network.
    pub offline: bool,
    /// The revision (branch, tag or commit) to fetch; `main` when `None`.
    pub revision: Option<String>,
    /// Show download progress bars.
    pub progress: bool,
}

impl HubOptions {
    /// Options from the environment: `HF_HUB_OFFLINE=1` turns on offline mode.
    pub fn from_env() -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"))
            .unwrap_or(false);
        Self {
            offline,
            ..Self::default()
        }
    }
}

impl ModelFiles {
    /// Resolves `spec`: an existing folder is used as it is; otherwise `spec` must be a Hugging
    /// Face repo id (`org/name`), fetched into (or, offline, found in) the Hugging Face cache.
    pub fn resolve(spec: &str, hub: &HubOptions) -> Result<Self> {
        let path = Path::new(spec);
        if path.exists() {
            return Self::open_local(path, spec);
        }
        if !is_repo_id(spec) {
            return Err(Error::ModelNotFound {
                spec: spec.to_string(),
                reason: "no such folder, and not a Hugging Face repo id of the form org/name"
                    .to_string(),
            });
        }
        let root = if hub.offline {
            cached_snapshot(spec, hub)?
        } else {
            download(spec, hub)?
        };
        Self::open_local(&root, spec)
    }

    /// Opens a local model folder and detects its layout.
    pub fn open_local(dir: &Path, name: &str) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::ModelNotFound {
                spec: name.to_string(),
                reason: format!("{} is not a folder", dir.display()),
            });
        }
        let layout = if dir.join("model_index.json").is_file() {
            Layout::Diffusers
        } else if dir.join("config.json").is_file() && dir.join(OFFICIAL_VAE).is_file() {
            Layout::Official
        } else {
            return Err(Error::ModelNotFound {
                spec: name.to_string(),
                reason: format!(
                    "{} has neither model_index.json (diffusers layout) nor config.json + {OFFICIAL_VAE} (official layout)",
                    dir.display()
                ),
            });
        };
        Ok(Self {
            name: name.to_string(),
            root: dir.to_path_buf(),
            layout,
        })
    }

    /// The name the model was asked for by (folder or repo id), recorded in outputs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The DiT folder (config + weights).
    pub fn transformer(&self) -> PathBuf {
        match self.layout {
            Layout::Diffusers => self.root.join("transformer"),
            Layout::Official => self.root.clone(),
        }
    }

    /// The VAE folder (diffusers) or `.pth` file (official).
    pub fn vae(&self) -> PathBuf {
        match self.layout {
            Layout::Diffusers => self.root.join("vae"),
            Layout::Official => self.root.join(OFFICIAL_VAE),
        }
    }

    /// The text encoder folder (diffusers) or `.pth` file (official).
    pub fn text_encoder(&self) -> PathBuf {
        match self.layout {
            Layout::Diffusers => self.root.join("text_encoder"),
            Layout::Official => self.root.join(OFFICIAL_T5),
        }
    }

    /// The tokenizer folder.
    pub fn tokenizer(&self) -> PathBuf {
        match self.layout {
            Layout::Diffusers => self.root.join("tokenizer"),
            Layout::Official => self.root.join(OFFICIAL_TOKENIZER),
        }
    }

    /// The sampler settings, when the model ships them (diffusers `scheduler/`).
    pub fn scheduler_config(&self) -> Option<PathBuf> {
        let path = self.root.join("scheduler").join("scheduler_config.json");
        path.is_file().then_some(path)
    }
}

/// `org/name` with plain characters: what the Hub accepts as a repo id.
fn is_repo_id(spec: &str) -> bool {
    let mut parts = spec.split('/');
    let (Some(org), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    ok(org) && ok(name)
}

/// The Hugging Face cache: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
fn hub_cache() -> hf_hub::Cache {
    if let Ok(dir) = std::env::var("HF_HUB_CACHE") {
        return hf_hub::Cache::new(PathBuf::from(dir));
    }
    hf_hub::Cache::from_env()
}

fn hub_repo(spec: &str, hub: &HubOptions) -> hf_hub::Repo {
    hf_hub::Repo::with_revision(
        spec.to_string(),
        hf_hub::RepoType::Model,
        hub.revision.clone().unwrap_or_else(|| "main".to_string()),
    )
}

/// The cached snapshot folder of `spec`, without network access.
fn cached_snapshot(spec: &str, hub: &HubOptions) -> Result<PathBuf> {
    let repo = hub_cache().repo(hub_repo(spec, hub));
    for marker in ["model_index.json", "config.json"] {
        if let Some(file) = repo.get(marker)
            && let Some(dir) = file.parent()
        {
            return Ok(dir.to_path_buf());
        }
    }
    Err(Error::ModelNotFound {
        spec: spec.to_string(),
        reason: format!(
            "offline mode and the repo is not in the Hugging Face cache {}",
            hub_cache().path().display()
        ),
    })
}

/// Whether a repo file is needed to run the model (weights as safetensors or .pth, configs,
/// tokenizer files); other files (images, docs, duplicate weight formats) are skipped.
fn is_needed(file: &str, diffusers: bool) -> bool {
    let name = file.rsplit('/').next().unwrap_or(file);
    if diffusers {
        let top = file.split('/').next().unwrap_or_default();
        let part = matches!(
            top,
            "scheduler" | "tokenizer" | "text_encoder" | "transformer" | "vae"
        );
        file == "model_index.json"
            || (part
                && (name.ends_with(".json")
                    || name.ends_with(".safetensors")
                    || name.ends_with(".model")
                    || name.ends_with(".txt")))
    } else {
        file == "config.json"
            || (!file.contains('/') && name.starts_with("diffusion_pytorch_model"))
            || file == OFFICIAL_VAE
            || file == OFFICIAL_T5
            || (file.starts_with(OFFICIAL_TOKENIZER) && !name.ends_with(".md"))
    }
}

/// Downloads the files `spec` needs into the cache (once) and returns the snapshot folder.
fn download(spec: &str, hub: &HubOptions) -> Result<PathBuf> {
    let hub_err = |e: hf_hub::api::sync::ApiError| Error::Hub {
        repo: spec.to_string(),
        message: e.to_string(),
    };
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hub_cache())
        .with_progress(hub.progress)
        .build()
        .map_err(hub_err)?;
    let repo = api.repo(hub_repo(spec, hub));
    let info = repo.info().map_err(hub_err)?;
    let files: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let diffusers = files.iter().any(|f| f == "model_index.json");
    let mut root = None;
    for file in files.iter().filter(|f| is_needed(f, diffusers)) {
        let local = repo.get(file).map_err(hub_err)?;
        if file == "model_index.json" || file == "config.json" {
            root = local.parent().map(Path::to_path_buf);
        }
    }
    root.ok_or_else(|| Error::ModelNotFound {
        spec: spec.to_string(),
        reason: "the repo has neither model_index.json nor config.json".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_recognised() {
        assert!(is_repo_id("Wan-AI/Wan2.1-T2V-1.3B-Diffusers"));
        assert!(!is_repo_id("Wan2.1"));
        assert!(!is_repo_id("../etc/passwd"));
        assert!(!is_repo_id("a/b/c"));
        assert!(!is_repo_id("/abs/path"));
    }

    #[test]
    fn needed_files_skip_other_formats_and_assets() {
        assert!(is_needed(
            "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
            true
        ));
        assert!(is_needed("tokenizer/tokenizer.json", true));
        assert!(is_needed("model_index.json", true));
        assert!(!is_needed("assets/logo.png", true));
        assert!(!is_needed("transformer/diffusion_pytorch_model.bin", true));
        assert!(is_needed("Wan2.1_VAE.pth", false));
        assert!(is_needed("google/umt5-xxl/tokenizer.json", false));
        assert!(is_needed(
            "diffusion_pytorch_model.safetensors.index.json",
            false
        ));
        assert!(!is_needed("examples/i2v_input.JPG", false));
    }

    #[test]
    fn unknown_model_errors_name_the_spec() {
        let err = ModelFiles::resolve("no-such-folder", &HubOptions::default())
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("no-such-folder"), "{err}");
        let dir = std::env::temp_dir().join(format!("wan-model-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let err = ModelFiles::resolve(dir.to_str().expect("utf8"), &HubOptions::default())
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("model_index.json"), "{err}");
    }

    #[test]
    fn offline_mode_never_touches_the_network() {
        let cache = std::env::temp_dir().join(format!("wan-hub-cache-{}", std::process::id()));
        let repo =
            hf_hub::Cache::new(cache.clone()).repo(hf_hub::Repo::model("org/tiny".to_string()));
        assert!(repo.get("model_index.json").is_none());
        let hub = HubOptions {
            offline: true,
            ..HubOptions::default()
        };
        // SAFETY-free: the variable is read by hub_cache() in this thread only.
        let err = cached_snapshot("org/tiny", &hub)
            .expect_err("not cached")
            .to_string();
        assert!(err.contains("offline"), "{err}");
    }
}
