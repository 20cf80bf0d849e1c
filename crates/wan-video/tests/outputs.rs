//! Every output format, read back with an independent decoder: MP4 demuxed by a small box parser here and
//! decoded by OpenH264's decoder (plus ffprobe when installed), GIF by the `gif` decoder, WebP by `image-webp`'s
//! decoder, PNG by the `png` decoder, safetensors by the `safetensors` crate.

use std::path::Path;

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use wan_video::{Error, Frames, Metadata, OutputFormat, Rounding, thumbnail_png, write_output};

const W: usize = 64;
const H: usize = 48;
const F: usize = 9;
const FPS: u32 = 16;

/// A smooth moving pattern in [0, 1] (easy to compress, so PSNR is meaningful).
fn pattern(frames: usize, height: usize, width: usize, fps: u32) -> Frames {
    let mut data = Vec::with_capacity(frames * height * width * 3);
    for t in 0..frames {
        for y in 0..height {
            for x in 0..width {
                let (fx, fy, ft) = (
                    x as f32 / width as f32,
                    y as f32 / height as f32,
                    t as f32 / frames as f32,
                );
                data.push(0.5 + 0.45 * (6.0 * fx + 2.0 * ft).sin());
                data.push(0.1 + 0.8 * fy);
                data.push(0.5 + 0.4 * (4.0 * (fx + fy) - 3.0 * ft).cos());
            }
        }
    }
    Frames::new(data, frames, height, width, fps).expect("frames")
}

fn metadata(frames: &Frames) -> Metadata {
    let mut m = Metadata::describing(frames);
    m.prompt = "a red fox in the snow, \"quoted\" ©".into();
    m.negative_prompt = "blurry".into();
    m.seed = 42;
    m.model = "Wan2.1-T2V-1.3B".into();
    m.sampler = "unipc".into();
    m.steps = 30;
    m.guidance = 5.0;
    m.shift = 3.0;
    m.settings
        .insert("vae_tiling".into(), serde_json::json!(false));
    m
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-10)).log10()
}

/// A box of an MP4 file: its type and body.
struct Mp4Box<'a> {
    kind: [u8; 4],
    body: &'a [u8],
}

fn boxes(mut data: &[u8]) -> Vec<Mp4Box<'_>> {
    let mut out = Vec::new();
    while data.len() >= 8 {
        let mut size = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = data[4..8].try_into().unwrap();
        let mut header = 8;
        if size == 1 {
            size = u64::from_be_bytes(data[8..16].try_into().unwrap()) as usize;
            header = 16;
        }
        assert!(
            size >= header && size <= data.len(),
            "bad box size for {:?}",
            String::from_utf8_lossy(&kind)
        );
        out.push(Mp4Box {
            kind,
            body: &data[header..size],
        });
        data = &data[size..];
    }
    assert!(data.is_empty(), "trailing bytes after boxes");
    out
}

/// The body of the box at `path` (each step is a child type), skipping `skip` leading bytes of the named
/// containers that carry fields before their children (`meta` is a full box, `stsd` has a count, `avc1` a
/// 78-byte sample entry).
fn find<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> &'a [u8] {
    let mut body = data;
    for (depth, kind) in path.iter().enumerate() {
        let children = boxes(body);
        let found = children
            .into_iter()
            .find(|b| &b.kind == *kind)
            .unwrap_or_else(|| panic!("no {:?} at depth {depth}", String::from_utf8_lossy(*kind)));
        body = found.body;
        if depth + 1 < path.len() {
            body = match *kind {
                b"meta" => &body[4..],
                b"stsd" => &body[8..],
                b"avc1" => &body[78..],
                _ => body,
            };
        }
    }
    body
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}

/// BT.709 limited-range Y'CbCr -> 8-bit RGB (nearest chroma sample), the inverse of the encoder's conversion.
fn yuv_to_rgb(yuv: &impl YUVSource) -> Vec<u8> {
    let (w, h) = yuv.dimensions();
    let (sy, su, sv) = yuv.strides();
    let mut out = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        for col in 0..w {
            let y = (f32::from(yuv.y()[row * sy + col]) - 16.0) * 255.0 / 219.0;
            let cb = (f32::from(yuv.u()[row / 2 * su + col / 2]) - 128.0) * 255.0 / 224.0;
            let cr = (f32::from(yuv.v()[row / 2 * sv + col / 2]) - 128.0) * 255.0 / 224.0;
            let r = y + 1.5748 * cr;
            let g = y - 0.187_324 * cb - 0.468_124 * cr;
            let b = y + 1.8556 * cb;
            out.extend([r, g, b].map(|v| v.round().clamp(0.0, 255.0) as u8));
        }
    }
    out
}

#[test]
fn mp4_decodes_to_requested_frames_size_and_fps_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let frames = pattern(F, H, W, FPS);
    let meta = metadata(&frames);
    write_output(&path, &frames, &meta).expect("write mp4");
    let file = std::fs::read(&path).unwrap();

    let top: Vec<[u8; 4]> = boxes(&file).iter().map(|b| b.kind).collect();
    assert_eq!(
        top,
        [*b"ftyp", *b"moov", *b"mdat"],
        "fast start: moov before mdat"
    );

    // Timing: mdhd timescale / stts delta = fps; duration = frames / fps.
    let mdhd = find(&file, &[b"moov", b"trak", b"mdia", b"mdhd"]);
    let (timescale, duration) = (be32(mdhd, 12), be32(mdhd, 16));
    let stts = find(
        &file,
        &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"],
    );
    assert_eq!(be32(stts, 4), 1, "one stts run");
    assert_eq!((be32(stts, 8), timescale / be32(stts, 12)), (F as u32, FPS));
    assert_eq!(timescale % be32(stts, 12), 0);
    assert!((f64::from(duration) / f64::from(timescale) - F as f64 / f64::from(FPS)).abs() < 1e-9);
    let mvhd = find(&file, &[b"moov", b"mvhd"]);
    assert_eq!(
        (be32(mvhd, 12), be32(mvhd, 16)),
        (timescale, duration),
        "movie timescale and duration"
    );

    // Sample entry: size, parameter sets, BT.709 colour.
    let stbl = [b"moov", b"trak", b"mdia", b"minf", b"stbl"];
    let avc1 = find(&file, &[stbl.as_slice(), &[b"stsd", b"avc1"]].concat());
    assert_eq!((be16(avc1, 24) as usize, be16(avc1, 26) as usize), (W, H));
    let avcc = find(
        &file,
        &[stbl.as_slice(), &[b"stsd", b"avc1", b"avcC"]].concat(),
    );
    assert_eq!(avcc[1], 66, "Baseline profile");
    let sps_len = be16(avcc, 6) as usize;
    let sps = &avcc[8..8 + sps_len];
    let pps_len = be16(avcc, 9 + sps_len) as usize;
    let pps = &avcc[11 + sps_len..11 + sps_len + pps_len];
    let colr = find(
        &file,
        &[stbl.as_slice(), &[b"stsd", b"avc1", b"colr"]].concat(),
    );
    assert_eq!(colr, b"nclx\0\x01\0\x01\0\x01\0");

    // Samples: sizes and the chunk offset.
    let stsz = find(&file, &[stbl.as_slice(), &[b"stsz"]].concat());
    assert_eq!(be32(stsz, 4), 0);
    let count = be32(stsz, 8) as usize;
    assert_eq!(count, F);
    let stco = find(&file, &[stbl.as_slice(), &[b"stco"]].concat());
    let mut offset = be32(stco, 8) as usize;

    // Decode with OpenH264's decoder from Annex B, sample by sample.
    let mut decoder = Decoder::new().expect("decoder");
    let mut annexb = Vec::new();
    for nal in [sps, pps] {
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend_from_slice(nal);
    }
    let expected: Vec<Vec<u8>> = (0..F)
        .map(|i| frames.frame_rgb8(i, Rounding::Truncate).unwrap())
        .collect();
    let mut decoded = Vec::new();
    for i in 0..count {
        let size = be32(stsz, 12 + 4 * i) as usize;
        let mut sample = &file[offset..offset + size];
        offset += size;
        while !sample.is_empty() {
            let len = be32(sample, 0) as usize;
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(&sample[4..4 + len]);
            sample = &sample[4 + len..];
        }
        if let Some(yuv) = decoder.decode(&annexb).expect("decode") {
            assert_eq!(yuv.dimensions(), (W, H));
            decoded.push(yuv_to_rgb(&yuv));
        }
        annexb.clear();
    }
    for yuv in decoder.flush_remaining().expect("flush") {
        decoded.push(yuv_to_rgb(&yuv));
    }
    assert_eq!(offset, file.len(), "samples end at the end of mdat");
    assert_eq!(decoded.len(), F, "decoded frame count");
    for (i, (ours, theirs)) in decoded.iter().zip(&expected).enumerate() {
        let db = psnr(ours, theirs);
        assert!(db > 30.0, "frame {i}: PSNR {db:.1} dB");
    }

    // Metadata: title = prompt, comment = the full metadata as JSON, encoder tag.
    let ilst = find(&file, &[b"moov", b"udta", b"meta", b"ilst"]);
    let text = |kind: &[u8; 4]| {
        let data = find(ilst, &[kind, b"data"]);
        assert_eq!(be32(data, 0), 1, "UTF-8 text");
        String::from_utf8(data[8..].to_vec()).unwrap()
    };
    assert_eq!(text(b"\xa9nam"), meta.prompt);
    let back: Metadata = serde_json::from_str(&text(b"\xa9cmt")).unwrap();
    assert_eq!(back, meta);
    assert!(text(b"\xa9too").starts_with("wan-rs"));
}

/// An extra check with ffprobe when it is installed (Debian's `ffmpeg` package); skipped otherwise.
#[test]
fn mp4_reads_back_in_ffprobe_when_available() {
    let Ok(version) = std::process::Command::new("ffprobe")
        .arg("-version")
        .output()
    else {
        eprintln!("ffprobe not installed: skipped");
        return;
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let frames = pattern(F, H, W, FPS);
    let meta = metadata(&frames);
    write_output(&path, &frames, &meta).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-of",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "h264");
    assert_eq!(stream["pix_fmt"], "yuv420p");
    assert_eq!(stream["profile"], "Constrained Baseline");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(W as u64), Some(H as u64))
    );
    assert_eq!(stream["r_frame_rate"], "16/1");
    assert_eq!(stream["nb_read_frames"], F.to_string());
    assert_eq!(stream["color_primaries"], "bt709");
    assert_eq!(stream["color_space"], "bt709");
    assert_eq!(stream["color_transfer"], "bt709");
    assert_eq!(probe["format"]["duration"], "0.562500");
    assert_eq!(stream["duration"], "0.562500");
    let tags = &probe["format"]["tags"];
    assert_eq!(tags["title"], meta.prompt.as_str());
    let comment: Metadata = serde_json::from_str(tags["comment"].as_str().unwrap()).unwrap();
    assert_eq!(comment, meta);
}

#[test]
fn gif_has_every_frame_with_the_frame_delay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.gif");
    let frames = pattern(F, H, W, FPS);
    write_output(&path, &frames, &metadata(&frames)).unwrap();
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut decoder = options
        .read_info(std::fs::File::open(&path).unwrap())
        .unwrap();
    assert_eq!(
        (decoder.width() as usize, decoder.height() as usize),
        (W, H)
    );
    let mut count = 0;
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        // diffusers' export_to_gif: duration = 1000 // 16 = 62 ms, which PIL stores as 6 units of 10 ms.
        assert_eq!(frame.delay, 6);
        let rgb: Vec<u8> = frame
            .buffer
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        let db = psnr(&rgb, &frames.frame_rgb8(count, Rounding::Nearest).unwrap());
        // 256 colours per frame over smooth gradients in all three channels: NeuQuant lands near 24 dB.
        assert!(db > 22.0, "frame {count}: PSNR {db:.1} dB");
        count += 1;
    }
    assert_eq!(count, F);
}

#[test]
fn webp_is_lossless_and_animated() {
    let dir = tempfile::tempdir().unwrap();
    let frames = pattern(F, H, W, FPS);
    let path = dir.path().join("clip.webp");
    write_output(&path, &frames, &metadata(&frames)).unwrap();
    let mut decoder =
        image_webp::WebPDecoder::new(std::io::Cursor::new(std::fs::read(&path).unwrap())).unwrap();
    assert!(decoder.is_animated());
    assert_eq!(decoder.num_frames() as usize, F);
    assert_eq!(decoder.dimensions(), (W as u32, H as u32));
    let mut buffer = vec![0u8; decoder.output_buffer_size().unwrap()];
    for i in 0..F {
        let duration = decoder.read_frame(&mut buffer).unwrap();
        assert_eq!(duration, 63, "round(1000 / 16) ms");
        let rgb: Vec<u8> = if decoder.has_alpha() {
            buffer
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect()
        } else {
            buffer.clone()
        };
        assert_eq!(
            rgb,
            frames.frame_rgb8(i, Rounding::Nearest).unwrap(),
            "frame {i}"
        );
    }

    let still = pattern(1, H, W, FPS);
    let path = dir.path().join("still.webp");
    write_output(&path, &still, &metadata(&still)).unwrap();
    let mut decoder =
        image_webp::WebPDecoder::new(std::io::Cursor::new(std::fs::read(&path).unwrap())).unwrap();
    assert!(!decoder.is_animated());
    let mut rgb = vec![0u8; decoder.output_buffer_size().unwrap()];
    decoder.read_image(&mut rgb).unwrap();
    assert_eq!(rgb, still.frame_rgb8(0, Rounding::Nearest).unwrap());
}

fn decode_png(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

#[test]
fn png_folder_and_thumbnail_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let frames = pattern(F, H, W, FPS);
    let meta = metadata(&frames);
    let folder = dir.path().join("frames/");
    write_output(&folder, &frames, &meta).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..F).map(|i| format!("frame_{i:05}.png")).collect();
    expected.push("metadata.json".into());
    assert_eq!(names, expected);
    for i in 0..F {
        let (w, h, rgb) =
            decode_png(&std::fs::read(folder.join(format!("frame_{i:05}.png"))).unwrap());
        assert_eq!((w, h), (W, H));
        assert_eq!(rgb, frames.frame_rgb8(i, Rounding::Nearest).unwrap());
    }
    let back: Metadata =
        serde_json::from_slice(&std::fs::read(folder.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(back, meta);
    assert!(matches!(
        write_output(&folder, &frames, &meta),
        Err(Error::FolderNotEmpty(_))
    ));

    let (w, h, rgb) = decode_png(&thumbnail_png(&frames).unwrap());
    assert_eq!((w, h), (W, H));
    assert_eq!(rgb, frames.frame_rgb8(0, Rounding::Nearest).unwrap());
}

#[test]
fn safetensors_holds_the_exact_frames_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let frames = pattern(F, H, W, FPS);
    let meta = metadata(&frames);
    let path = dir.path().join("clip.safetensors");
    write_output(&path, &frames, &meta).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let tags = header.metadata().as_ref().unwrap();
    assert_eq!(tags["prompt"], meta.prompt);
    assert_eq!(tags["seed"], "42");
    assert_eq!(tags["guidance"], "5.0");
    assert_eq!(tags["settings"], r#"{"vae_tiling":false}"#);
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensor = tensors.tensor(wan_video::FRAMES_TENSOR).unwrap();
    assert_eq!(tensor.dtype(), safetensors::Dtype::F32);
    assert_eq!(tensor.shape(), [F, H, W, 3]);
    let back: Vec<f32> = tensor
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(back, frames.data());
}

#[test]
fn bad_requests_fail_clearly_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let odd = pattern(2, 48, 63, FPS);
    let err = write_output(
        &dir.path().join("odd.mp4"),
        &odd,
        &Metadata::describing(&odd),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("width = 63") && err.to_string().contains("even"),
        "{err}"
    );

    let frames = pattern(2, H, W, FPS);
    let mut meta = Metadata::describing(&frames);
    meta.fps = 24;
    let err = write_output(&dir.path().join("a.gif"), &frames, &meta).unwrap_err();
    assert!(
        matches!(
            err,
            Error::MetadataMismatch {
                field: "fps",
                metadata: 24,
                frames: 16
            }
        ),
        "{err}"
    );

    let err = write_output(
        &dir.path().join("a.mkv"),
        &frames,
        &Metadata::describing(&frames),
    )
    .unwrap_err();
    assert!(matches!(err, Error::UnsupportedExtension { .. }));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
    assert_eq!(
        OutputFormat::from_path(Path::new("x.webp")).unwrap(),
        OutputFormat::WebP
    );
}
