//! Atomic writes: outputs are written under a temporary name in the target folder, then renamed, so a crash
//! never leaves a half-written file or folder under the final name.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::format::parent_folder;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden, unique sibling name for `path`: `.<name>.<pid>.<n>.tmp`.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    parent_folder(path).join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Writes a file through `fill`, then renames it over `path`; on failure the temporary file is removed.
pub(crate) fn write_file(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let temp = temp_sibling(path);
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(Error::io("creating", &temp))?;
        let mut writer = BufWriter::new(file);
        fill(&mut writer)?;
        let file = writer
            .into_inner()
            .map_err(|e| Error::io("writing", &temp)(e.into_error()))?;
        file.sync_all().map_err(Error::io("syncing", &temp))?;
        std::fs::rename(&temp, path).map_err(Error::io("renaming into place", path))
    })();
    if result.is_err() {
        // Best-effort clean-up: the original error is what the caller needs.
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    sync_folder(&parent_folder(path));
    Ok(())
}

/// Fills a fresh folder through `fill`, then renames it to `path` (which must be absent or an empty folder).
pub(crate) fn write_folder(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let target = path.components().collect::<PathBuf>();
    crate::format::check_folder_target(&target)?;
    let temp = temp_sibling(&target);
    let result = (|| {
        std::fs::create_dir(&temp).map_err(Error::io("creating folder", &temp))?;
        fill(&temp)?;
        sync_folder(&temp);
        std::fs::rename(&temp, &target).map_err(Error::io("renaming into place", &target))
    })();
    if result.is_err() {
        // Best-effort clean-up: the original error is what the caller needs.
        let _ = std::fs::remove_dir_all(&temp);
    }
    result?;
    sync_folder(&parent_folder(&target));
    Ok(())
}

/// Creates and removes a probe file in `folder` to show it is writable.
pub(crate) fn probe_writable(folder: &Path) -> Result<()> {
    let probe = temp_sibling(&folder.join("wan-probe"));
    File::options()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|source| Error::NotWritable {
            path: folder.to_path_buf(),
            source,
        })?;
    std::fs::remove_file(&probe).map_err(Error::io("removing probe file", &probe))
}

/// Flushes a folder's entries to disk so a completed rename survives a crash. Some platforms cannot open
/// folders; there the rename is still atomic, only not yet durable, so failures are ignored.
fn sync_folder(folder: &Path) {
    if let Ok(dir) = File::open(folder) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_writes_leave_nothing_and_keep_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.gif");
        std::fs::write(&path, b"old").unwrap();
        let err = write_file(&path, |w| {
            w.write_all(b"partial").map_err(Error::io("writing", "x"))?;
            Err(Error::H264("boom".into()))
        });
        assert!(matches!(err, Err(Error::H264(_))));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        write_file(&path, |w| {
            w.write_all(b"new").map_err(Error::io("writing", "x"))
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");

        let folder = dir.path().join("frames");
        let err = write_folder(&folder, |tmp| {
            std::fs::write(tmp.join("a.png"), b"a").unwrap();
            Err(Error::H264("boom".into()))
        });
        assert!(err.is_err());
        write_folder(&folder, |tmp| {
            std::fs::write(tmp.join("a.png"), b"a").map_err(Error::io("w", tmp))
        })
        .unwrap();
        assert_eq!(std::fs::read(folder.join("a.png")).unwrap(), b"a");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "temporary files left behind: {names:?}");
    }
}
