//! A fast-start MP4 writer for one H.264 track: `ftyp`, `moov` (with BT.709 `colr` and `udta` metadata), then
//! `mdat` holding every sample in one chunk.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::h264::EncodedVideo;
use crate::metadata::Metadata;

/// Ticks per frame: movie and media timescales are both `fps * TICKS_PER_FRAME`, so every frame lasts exactly
/// 1/fps s and the clip exactly frames/fps s.
const TICKS_PER_FRAME: u32 = 1000;

/// The unity transformation matrix of `mvhd`/`tkhd`.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Writes `video` as an MP4 of `width` x `height` at `fps`, with `metadata` as title, comment (JSON) and encoder
/// tags.
pub(crate) fn write_mp4(
    out: &mut dyn Write,
    path: &Path,
    video: &EncodedVideo,
    width: usize,
    height: usize,
    fps: u32,
    metadata: &Metadata,
) -> Result<()> {
    let too_large = || Error::H264("coded stream too large for MP4".into());
    let payload: u64 = video.samples.iter().map(|s| s.data.len() as u64).sum();
    let large_mdat = payload + 8 > u64::from(u32::MAX);
    let mdat_header = if large_mdat { 16 } else { 8 };

    let ftyp = ftyp();
    let track = Track {
        video,
        width,
        height,
        fps,
        comment: metadata.to_json()?,
        title: &metadata.prompt,
    };
    let moov_len = track.moov(0).len() as u64;
    let data_offset = ftyp.len() as u64 + moov_len + mdat_header;
    let moov = track.moov(data_offset);

    let io = Error::writing(path);
    out.write_all(&ftyp).map_err(&io)?;
    out.write_all(&moov).map_err(&io)?;
    if large_mdat {
        out.write_all(&1u32.to_be_bytes()).map_err(&io)?;
        out.write_all(b"mdat").map_err(&io)?;
        out.write_all(&(payload + 16).to_be_bytes()).map_err(&io)?;
    } else {
        let size = u32::try_from(payload + 8).map_err(|_| too_large())?;
        out.write_all(&size.to_be_bytes()).map_err(&io)?;
        out.write_all(b"mdat").map_err(&io)?;
    }
    for sample in &video.samples {
        out.write_all(&sample.data).map_err(&io)?;
    }
    Ok(())
}

/// Appends big-endian integers to a byte buffer.
trait Put {
    fn u8(&mut self, v: u8) -> &mut Self;
    fn u16(&mut self, v: u16) -> &mut Self;
    fn u32(&mut self, v: u32) -> &mut Self;
    fn u64(&mut self, v: u64) -> &mut Self;
    fn bytes(&mut self, v: &[u8]) -> &mut Self;
}

impl Put for Vec<u8> {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.extend_from_slice(v);
        self
    }
}

/// A box: 32-bit size, type, body. Bodies here are far below 4 GiB (the only large box, `mdat`, is written
/// separately).
fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.u32((body.len() + 8) as u32).bytes(kind).bytes(body);
    out
}

/// A full box: a box whose body starts with a version byte and 24 bits of flags.
fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(body.len() + 4);
    inner
        .u32((u32::from(version) << 24) | (flags & 0x00ff_ffff))
        .bytes(body);
    boxed(kind, &inner)
}

fn ftyp() -> Vec<u8> {
    let mut body = Vec::new();
    body.bytes(b"isom")
        .u32(0x200)
        .bytes(b"isom")
        .bytes(b"iso2")
        .bytes(b"avc1")
        .bytes(b"mp41");
    boxed(b"ftyp", &body)
}

/// Everything `moov` needs to describe the track.
struct Track<'a> {
    video: &'a EncodedVideo,
    width: usize,
    height: usize,
    fps: u32,
    comment: String,
    title: &'a str,
}

impl Track<'_> {
    fn frame_count(&self) -> u32 {
        self.video.samples.len() as u32
    }

    /// Ticks per second of every duration in the file.
    fn timescale(&self) -> u32 {
        self.fps * TICKS_PER_FRAME
    }

    /// Clip duration in ticks.
    fn duration(&self) -> u32 {
        self.frame_count().saturating_mul(TICKS_PER_FRAME)
    }

    fn moov(&self, data_offset: u64) -> Vec<u8> {
        let mut body = self.mvhd();
        body.extend(self.trak(data_offset));
        body.extend(self.udta());
        boxed(b"moov", &body)
    }

    fn mvhd(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.u32(0).u32(0).u32(self.timescale()).u32(self.duration());
        b.u32(0x0001_0000).u16(0x0100).u16(0).u32(0).u32(0);
        for m in MATRIX {
            b.u32(m);
        }
        b.bytes(&[0; 24]).u32(2);
        full_box(b"mvhd", 0, 0, &b)
    }

    fn trak(&self, data_offset: u64) -> Vec<u8> {
        let mut tkhd = Vec::new();
        tkhd.u32(0).u32(0).u32(1).u32(0).u32(self.duration());
        tkhd.u32(0).u32(0).u16(0).u16(0).u16(0).u16(0);
        for m in MATRIX {
            tkhd.u32(m);
        }
        tkhd.u32((self.width as u32) << 16)
            .u32((self.height as u32) << 16);
        let mut body = full_box(b"tkhd", 0, 0x3, &tkhd);
        body.extend(self.mdia(data_offset));
        boxed(b"trak", &body)
    }

    fn mdia(&self, data_offset: u64) -> Vec<u8> {
        let mut mdhd = Vec::new();
        mdhd.u32(0)
            .u32(0)
            .u32(self.timescale())
            .u32(self.duration());
        // Language "und", ISO-639-2/T packed as three 5-bit letters.
        mdhd.u16(0x55c4).u16(0);
        let mut hdlr = Vec::new();
        hdlr.u32(0)
            .bytes(b"vide")
            .bytes(&[0; 12])
            .bytes(b"VideoHandler\0");
        let mut body = full_box(b"mdhd", 0, 0, &mdhd);
        body.extend(full_box(b"hdlr", 0, 0, &hdlr));
        body.extend(self.minf(data_offset));
        boxed(b"mdia", &body)
    }

    fn minf(&self, data_offset: u64) -> Vec<u8> {
        let mut vmhd = Vec::new();
        vmhd.u16(0).u16(0).u16(0).u16(0);
        let url = full_box(b"url ", 0, 1, &[]);
        let mut dref = Vec::new();
        dref.u32(1).bytes(&url);
        let dinf = boxed(b"dinf", &full_box(b"dref", 0, 0, &dref));
        let mut body = full_box(b"vmhd", 0, 1, &vmhd);
        body.extend(dinf);
        body.extend(self.stbl(data_offset));
        boxed(b"minf", &body)
    }

    fn stbl(&self, data_offset: u64) -> Vec<u8> {
        let n = self.frame_count();
        let mut stts = Vec::new();
        stts.u32(1).u32(n).u32(TICKS_PER_FRAME);
        let mut stsc = Vec::new();
        stsc.u32(1).u32(1).u32(n).u32(1);
        let mut stsz = Vec::new();
        stsz.u32(0).u32(n);
        for sample in &self.video.samples {
            stsz.u32(sample.data.len() as u32);
        }
        let mut body = self.stsd();
        body.extend(full_box(b"stts", 0, 0, &stts));
        if self.video.samples.iter().any(|s| !s.sync) {
            let sync: Vec<u32> = (1..=n)
                .zip(&self.video.samples)
                .filter(|(_, s)| s.sync)
                .map(|(i, _)| i)
                .collect();
            let mut stss = Vec::new();
            stss.u32(sync.len() as u32);
            for i in sync {
                stss.u32(i);
            }
            body.extend(full_box(b"stss", 0, 0, &stss));
        }
        body.extend(full_box(b"stsc", 0, 0, &stsc));
        body.extend(full_box(b"stsz", 0, 0, &stsz));
        match u32::try_from(data_offset) {
            Ok(offset) => {
                let mut stco = Vec::new();
                stco.u32(1).u32(offset);
                body.extend(full_box(b"stco", 0, 0, &stco));
            }
            Err(_) => {
                let mut co64 = Vec::new();
                co64.u32(1).u64(data_offset);
                body.extend(full_box(b"co64", 0, 0, &co64));
            }
        }
        boxed(b"stbl", &body)
    }

    fn stsd(&self) -> Vec<u8> {
        let (sps, pps) = (&self.video.sps, &self.video.pps);
        let mut avcc = Vec::new();
        avcc.u8(1)
            .u8(sps.get(1).copied().unwrap_or(66))
            .u8(sps.get(2).copied().unwrap_or(0));
        avcc.u8(sps.get(3).copied().unwrap_or(0)).u8(0xff).u8(0xe1);
        avcc.u16(sps.len() as u16)
            .bytes(sps)
            .u8(1)
            .u16(pps.len() as u16)
            .bytes(pps);
        // nclx colour: BT.709 primaries, transfer and matrix, limited range.
        let mut colr = Vec::new();
        colr.bytes(b"nclx").u16(1).u16(1).u16(1).u8(0);
        let mut pasp = Vec::new();
        pasp.u32(1).u32(1);

        let mut compressor = [0u8; 32];
        let name = b"wan-rs OpenH264";
        compressor[0] = name.len() as u8;
        compressor[1..=name.len()].copy_from_slice(name);
        let mut avc1 = Vec::new();
        avc1.bytes(&[0; 6]).u16(1).u16(0).u16(0).bytes(&[0; 12]);
        avc1.u16(self.width as u16)
            .u16(self.height as u16)
            .u32(0x0048_0000)
            .u32(0x0048_0000)
            .u32(0)
            .u16(1);
        avc1.bytes(&compressor).u16(0x18).u16(0xffff);
        avc1.extend(boxed(b"avcC", &avcc));
        avc1.extend(boxed(b"colr", &colr));
        avc1.extend(boxed(b"pasp", &pasp));
        let mut stsd = Vec::new();
        stsd.u32(1).bytes(&boxed(b"avc1", &avc1));
        full_box(b"stsd", 0, 0, &stsd)
    }

    /// `udta/meta/ilst` in the iTunes style that players and ffprobe read: title (`©nam`), comment (`©cmt`,
    /// the full metadata as JSON) and encoder (`©too`).
    fn udta(&self) -> Vec<u8> {
        let encoder = format!("wan-rs {}", env!("CARGO_PKG_VERSION"));
        let mut ilst = Vec::new();
        for (kind, text) in [
            (b"\xa9nam", self.title),
            (b"\xa9cmt", &self.comment),
            (b"\xa9too", &encoder),
        ] {
            let mut data = Vec::new();
            // Type 1: UTF-8 text; locale 0.
            data.u32(1).u32(0).bytes(text.as_bytes());
            ilst.extend(boxed(kind, &boxed(b"data", &data)));
        }
        let mut hdlr = Vec::new();
        hdlr.u32(0)
            .bytes(b"mdir")
            .bytes(b"appl")
            .u32(0)
            .u32(0)
            .u8(0);
        let mut meta = full_box(b"hdlr", 0, 0, &hdlr);
        meta.extend(boxed(b"ilst", &ilst));
        boxed(b"udta", &full_box(b"meta", 0, 0, &meta))
    }
}
