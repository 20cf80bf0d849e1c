//! Safetensors output: tensor `frames`, f32 [F, H, W, 3] in [0, 1], exactly as decoded, with the metadata as
//! string pairs in the header's `__metadata__`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::frames::Frames;
use crate::metadata::Metadata;

/// Name of the tensor holding the frames.
pub const FRAMES_TENSOR: &str = "frames";

/// Streams `frames` as a safetensors file (little-endian f32, header padded to 8 bytes as the format asks).
pub(crate) fn write_safetensors(
    out: &mut dyn Write,
    path: &Path,
    frames: &Frames,
    metadata: &Metadata,
) -> Result<()> {
    let bytes = frames.data().len() * 4;
    let meta: BTreeMap<String, String> = metadata.to_string_map()?.into_iter().collect();
    let header = serde_json::json!({
        "__metadata__": meta,
        FRAMES_TENSOR: {
            "dtype": "F32",
            "shape": [frames.frame_count(), frames.height(), frames.width(), 3],
            "data_offsets": [0, bytes],
        },
    });
    let mut header = serde_json::to_vec(&header)?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let io = Error::writing(path);
    out.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(&io)?;
    out.write_all(&header).map_err(&io)?;
    let mut buffer = Vec::with_capacity(64 * 1024);
    for chunk in frames.data().chunks(16 * 1024) {
        buffer.clear();
        for x in chunk {
            buffer.extend_from_slice(&x.to_le_bytes());
        }
        out.write_all(&buffer).map_err(&io)?;
    }
    Ok(())
}
