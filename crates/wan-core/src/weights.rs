//! Locating checkpoint weight files and opening them as a [`VarBuilder`].
//!
//! A checkpoint is named by a path that may be a single `.safetensors` file, a sharded
//! checkpoint's `*.safetensors.index.json`, a PyTorch `.pth`/`.pt` pickle, or a folder holding
//! one of those under a conventional file name. Safetensors are memory-mapped, never copied.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::error::{Error, Result};

/// The on-disk format of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// One or more safetensors files (memory-mapped).
    Safetensors,
    /// A PyTorch pickle (`torch.save` of a state dict), read with candle's pickle reader.
    Pth,
}

/// The resolved set of files that make up one model's weights.
#[derive(Debug, Clone)]
pub struct WeightFiles {
    files: Vec<PathBuf>,
    format: WeightFormat,
}

impl WeightFiles {
    /// Resolves `path` to a set of weight files.
    ///
    /// `path` may be a weight file, a shard index, or a folder; for a folder, each stem in
    /// `stems` is tried in order as `{stem}.safetensors.index.json`, `{stem}.safetensors`,
    /// `{stem}.pth`, and the first that exists is used.
    pub fn resolve(path: &Path, stems: &[&str]) -> Result<Self> {
        if !path.exists() {
            return Err(Error::NotFound {
                what: "weights",
                path: path.to_path_buf(),
            });
        }
        if path.is_file() {
            return Self::from_file(path);
        }
        let mut tried = Vec::new();
        for stem in stems {
            for ext in ["safetensors.index.json", "safetensors", "pth"] {
                let candidate = path.join(format!("{stem}.{ext}"));
                if candidate.is_file() {
                    return Self::from_file(&candidate);
                }
                tried.push(format!("{stem}.{ext}"));
            }
        }
        Err(Error::NoWeights {
            dir: path.to_path_buf(),
            expected: tried.join(", "),
        })
    }

    /// Builds the file set from one file: a safetensors file, an index, or a pickle.
    pub fn from_file(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".safetensors.index.json") {
            let files = read_index(path)?;
            Ok(Self {
                files,
                format: WeightFormat::Safetensors,
            })
        } else if name.ends_with(".safetensors") {
            Ok(Self {
                files: vec![path.to_path_buf()],
                format: WeightFormat::Safetensors,
            })
        } else if name.ends_with(".pth") || name.ends_with(".pt") {
            Ok(Self {
                files: vec![path.to_path_buf()],
                format: WeightFormat::Pth,
            })
        } else {
            Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
            })
        }
    }

    /// The files, in shard order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The checkpoint's format.
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// The path to name in messages: the single file, or the first shard.
    pub fn display_path(&self) -> &Path {
        &self.files[0]
    }

    /// The names of every tensor in the checkpoint, sorted. Used to detect key layouts.
    pub fn tensor_names(&self) -> Result<BTreeSet<String>> {
        let mut names = BTreeSet::new();
        match self.format {
            WeightFormat::Safetensors => {
                for file in &self.files {
                    // SAFETY: the file is mapped read-only and not modified while mapped.
                    let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(file) }
                        .map_err(|source| Error::Load {
                            path: file.clone(),
                            source,
                        })?;
                    names.extend(st.tensors().into_iter().map(|(name, _)| name));
                }
            }
            WeightFormat::Pth => {
                let infos = candle_core::pickle::read_pth_tensor_info(&self.files[0], false, None)
                    .map_err(|source| Error::Load {
                        path: self.files[0].clone(),
                        source,
                    })?;
                names.extend(infos.into_iter().map(|info| info.name));
            }
        }
        Ok(names)
    }

    /// Opens the checkpoint as a [`VarBuilder`] producing tensors of `dtype` on `device`.
    ///
    /// Tensors are converted to `dtype` as they are fetched; safetensors stay memory-mapped.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
        let load_err = |source| Error::Load {
            path: self.files[0].clone(),
            source,
        };
        match self.format {
            WeightFormat::Safetensors => {
                // SAFETY: the files are mapped read-only and not modified while mapped.
                unsafe { VarBuilder::from_mmaped_safetensors(&self.files, dtype, device) }
                    .map_err(load_err)
            }
            WeightFormat::Pth => {
                VarBuilder::from_pth(&self.files[0], dtype, device).map_err(load_err)
            }
        }
    }
}

/// Reads a `*.safetensors.index.json` and returns its shard files in first-seen order.
fn read_index(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|source| Error::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::BadIndex {
        path: index.to_path_buf(),
        reason: e.to_string(),
    })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::BadIndex {
            path: index.to_path_buf(),
            reason: "no \"weight_map\" object".to_string(),
        })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = Vec::new();
    for (key, shard) in map {
        let shard = shard.as_str().ok_or_else(|| Error::BadIndex {
            path: index.to_path_buf(),
            reason: format!("shard for {key:?} is not a string"),
        })?;
        if shard.contains('/') || shard.contains('\\') || shard.starts_with("..") {
            return Err(Error::BadIndex {
                path: index.to_path_buf(),
                reason: format!("shard name {shard:?} leaves the checkpoint folder"),
            });
        }
        let file = dir.join(shard);
        if !files.contains(&file) {
            files.push(file);
        }
    }
    if files.is_empty() {
        return Err(Error::BadIndex {
            path: index.to_path_buf(),
            reason: "\"weight_map\" is empty".to_string(),
        });
    }
    for file in &files {
        if !file.is_file() {
            return Err(Error::NotFound {
                what: "shard",
                path: file.clone(),
            });
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;
    use std::collections::HashMap;

    fn tmp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wan-core-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    fn write_shard(path: &Path, name: &str, value: f32) {
        let t = Tensor::full(value, (2, 3), &Device::Cpu).expect("tensor");
        let map: HashMap<String, Tensor> = [(name.to_string(), t)].into_iter().collect();
        candle_core::safetensors::save(&map, path).expect("save");
    }

    #[test]
    fn sharded_checkpoint_loads_every_shard() {
        let dir = tmp_dir("sharded");
        write_shard(&dir.join("m-00001-of-00002.safetensors"), "a.weight", 1.0);
        write_shard(&dir.join("m-00002-of-00002.safetensors"), "b.weight", 2.0);
        std::fs::write(
            dir.join("m.safetensors.index.json"),
            r#"{"metadata":{},"weight_map":{"a.weight":"m-00001-of-00002.safetensors","b.weight":"m-00002-of-00002.safetensors"}}"#,
        )
        .expect("write index");
        let files = WeightFiles::resolve(&dir, &["m"]).expect("resolve");
        assert_eq!(files.files().len(), 2);
        let names = files.tensor_names().expect("names");
        assert!(names.contains("a.weight") && names.contains("b.weight"));
        let vb = files.var_builder(DType::F32, &Device::Cpu).expect("vb");
        let b = vb.get((2, 3), "b.weight").expect("b");
        assert_eq!(
            b.sum_all().and_then(|s| s.to_scalar::<f32>()).expect("sum"),
            12.0
        );
    }

    #[test]
    fn missing_shard_is_named() {
        let dir = tmp_dir("missing");
        write_shard(&dir.join("m-00001-of-00002.safetensors"), "a.weight", 1.0);
        std::fs::write(
            dir.join("m.safetensors.index.json"),
            r#"{"weight_map":{"a.weight":"m-00001-of-00002.safetensors","b.weight":"m-00002-of-00002.safetensors"}}"#,
        )
        .expect("write index");
        let err = WeightFiles::resolve(&dir, &["m"])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("m-00002-of-00002.safetensors"), "{err}");
    }

    #[test]
    fn missing_folder_and_empty_folder_are_named() {
        let err = WeightFiles::resolve(Path::new("/nonexistent/wan"), &["m"])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("/nonexistent/wan"), "{err}");
        let dir = tmp_dir("empty");
        let err = WeightFiles::resolve(&dir, &["diffusion_pytorch_model"])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("diffusion_pytorch_model.safetensors"), "{err}");
    }

    #[test]
    fn shard_names_cannot_escape_the_folder() {
        let dir = tmp_dir("escape");
        std::fs::write(
            dir.join("m.safetensors.index.json"),
            r#"{"weight_map":{"a":"../../etc/passwd"}}"#,
        )
        .expect("write index");
        let err = WeightFiles::resolve(&dir, &["m"])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("leaves the checkpoint folder"), "{err}");
    }
}
