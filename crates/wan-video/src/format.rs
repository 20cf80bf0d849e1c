//! Output formats, chosen by the output path's extension, and the checks made before any heavy work.

use std::path::{Path, PathBuf};

use crate::atomic;
use crate::error::{Error, Result};

/// The kinds of output [`crate::write_output`] can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// `.mp4`: H.264 (Constrained Baseline, yuv420p, BT.709) in a fast-start MP4 with metadata.
    Mp4,
    /// `.gif`: animated GIF, looping, 256 colours per frame.
    Gif,
    /// `.webp`: lossless WebP, animated when there is more than one frame.
    WebP,
    /// A folder (no extension or a trailing `/`) of `frame_00000.png`... plus `metadata.json`.
    PngFrames,
    /// `.safetensors`: tensor `frames`, f32 [F, H, W, 3] in [0, 1], metadata in the header.
    Safetensors,
}

impl OutputFormat {
    /// The format named by `path`: by extension (case-insensitive), or a PNG folder for a path without
    /// extension or ending in a separator.
    pub fn from_path(path: &Path) -> Result<OutputFormat> {
        if ends_with_separator(path) {
            return Ok(OutputFormat::PngFrames);
        }
        let Some(extension) = path.extension() else {
            return Ok(OutputFormat::PngFrames);
        };
        let lower = extension.to_string_lossy().to_ascii_lowercase();
        match lower.as_str() {
            "mp4" => Ok(OutputFormat::Mp4),
            "gif" => Ok(OutputFormat::Gif),
            "webp" => Ok(OutputFormat::WebP),
            "safetensors" => Ok(OutputFormat::Safetensors),
            _ => Err(Error::UnsupportedExtension {
                path: path.to_path_buf(),
                extension: extension.to_string_lossy().into_owned(),
            }),
        }
    }
}

/// Validates `path` before generation starts: a known format, an existing and writable parent folder, and for
/// a PNG folder, nothing in the way (an existing target must be an empty folder). Leaves nothing behind: the
/// writability probe file is removed at once.
pub fn check_output_path(path: &Path) -> Result<OutputFormat> {
    let format = OutputFormat::from_path(path)?;
    if format == OutputFormat::PngFrames {
        check_folder_target(path)?;
    } else if path.is_dir() {
        return Err(Error::PathIsFolder(path.to_path_buf()));
    }
    let parent = parent_folder(path);
    if !parent.is_dir() {
        return Err(Error::MissingParent(parent));
    }
    atomic::probe_writable(&parent)?;
    Ok(format)
}

/// Fails unless `path` is absent or an empty folder.
pub(crate) fn check_folder_target(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let empty = path.is_dir()
        && std::fs::read_dir(path)
            .map_err(Error::io("reading folder", path))?
            .next()
            .is_none();
    if empty {
        Ok(())
    } else {
        Err(Error::FolderNotEmpty(path.to_path_buf()))
    }
}

/// The folder that holds `path` (`.` for a bare name).
pub(crate) fn parent_folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn ends_with_separator(path: &Path) -> bool {
    let text = path.as_os_str().to_string_lossy();
    text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_extension() {
        assert_eq!(
            OutputFormat::from_path(Path::new("a/b.MP4")).unwrap(),
            OutputFormat::Mp4
        );
        assert_eq!(
            OutputFormat::from_path(Path::new("b.gif")).unwrap(),
            OutputFormat::Gif
        );
        assert_eq!(
            OutputFormat::from_path(Path::new("b.webp")).unwrap(),
            OutputFormat::WebP
        );
        assert_eq!(
            OutputFormat::from_path(Path::new("b.safetensors")).unwrap(),
            OutputFormat::Safetensors
        );
        assert_eq!(
            OutputFormat::from_path(Path::new("out/frames")).unwrap(),
            OutputFormat::PngFrames
        );
        assert_eq!(
            OutputFormat::from_path(Path::new("out/frames.v1/")).unwrap(),
            OutputFormat::PngFrames
        );
        let err = OutputFormat::from_path(Path::new("clip.avi"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"avi\"") && err.contains(".mp4") && err.contains(".webp"),
            "{err}"
        );
    }

    #[test]
    fn check_rejects_missing_parent_and_busy_folder_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope/clip.mp4");
        assert!(
            matches!(check_output_path(&missing), Err(Error::MissingParent(p)) if p == dir.path().join("nope"))
        );
        assert_eq!(
            check_output_path(dir.path()).unwrap(),
            OutputFormat::PngFrames
        );
        std::fs::write(dir.path().join("x.txt"), b"x").unwrap();
        assert!(matches!(
            check_output_path(dir.path()),
            Err(Error::FolderNotEmpty(_))
        ));
        std::fs::create_dir(dir.path().join("taken.mp4")).unwrap();
        assert!(matches!(
            check_output_path(&dir.path().join("taken.mp4")),
            Err(Error::PathIsFolder(_))
        ));
        assert_eq!(
            check_output_path(&dir.path().join("clip.mp4")).unwrap(),
            OutputFormat::Mp4
        );
        assert_eq!(
            check_output_path(&dir.path().join("frames/")).unwrap(),
            OutputFormat::PngFrames
        );
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["taken.mp4", "x.txt"]);
    }
}
