//! zstd with one reusable context per thread: creating a context costs more than compressing
//! a small blob, and trees and HydrAIDE chunks are small.

use std::cell::RefCell;
use std::io::{self, Read};

use zstd::bulk::{Compressor, Decompressor};

thread_local! {
    static CCTX: RefCell<Option<(i32, Compressor<'static>)>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses `data` at `level`.
pub fn compress(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    CCTX.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = Some((level, Compressor::new(level)?));
        }
        c.as_mut().expect("set above").1.compress(data)
    })
}

/// Decompresses one zstd frame, refusing output beyond `limit` bytes (and never allocating
/// more than the frame declares, or than `limit`).
pub fn decompress(data: &[u8], limit: usize) -> io::Result<Vec<u8>> {
    match zstd::zstd_safe::get_frame_content_size(data) {
        Ok(Some(n)) if n > limit as u64 => Err(io::Error::other("decompressed size over limit")),
        Ok(Some(n)) => DCTX.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(Decompressor::new()?);
            }
            let out = d
                .as_mut()
                .expect("set above")
                .decompress(data, n as usize)?;
            if out.len() as u64 != n {
                return Err(io::Error::other("frame shorter than it declares"));
            }
            Ok(out)
        }),
        // No declared size: stream, with the limit enforced as we go and the buffer never
        // grown past it (`read_to_end` doubles, so it could reserve twice the limit).
        _ => {
            let mut out = Vec::new();
            let mut dec = zstd::stream::read::Decoder::with_buffer(data)?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match dec.read(&mut buf) {
                    Ok(0) => return Ok(out),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if n > limit - out.len() {
                    return Err(io::Error::other("decompressed size over limit"));
                }
                if out.capacity() - out.len() < n {
                    let want = (out.capacity() * 2).max(out.len() + n).min(limit);
                    out.reserve_exact(want - out.len());
                }
                out.extend_from_slice(&buf[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let data = b"hello hello hello hello hello hello".repeat(100);
        let z = compress(&data, 3).unwrap();
        assert_eq!(decompress(&z, data.len()).unwrap(), data);
        assert!(decompress(&z, data.len() - 1).is_err());
        assert!(decompress(b"not zstd at all", 100).is_err());
        let z1 = compress(&data, 1).unwrap();
        assert_eq!(decompress(&z1, 1 << 20).unwrap(), data);
    }
}
