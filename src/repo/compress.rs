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

/// The most bytes zstd can make of `n` bytes.
pub fn bound(n: usize) -> usize {
    zstd::zstd_safe::compress_bound(n)
}

/// Compresses `data` at `level`, appending the frame to `out` (no intermediate buffer: a
/// caller that reserved [`bound`] bytes gets no reallocation); returns its length.
pub fn compress_append(data: &[u8], level: i32, out: &mut Vec<u8>) -> io::Result<usize> {
    out.reserve(bound(data.len()));
    CCTX.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = Some((level, Compressor::new(level)?));
        }
        let start = out.len() as u64;
        let mut at = io::Cursor::new(out);
        at.set_position(start);
        c.as_mut()
            .expect("set above")
            .1
            .compress_to_buffer(data, &mut at)
    })
}

/// Decompresses one zstd frame into `out` (cleared first, its allocation reused), refusing
/// output beyond `limit` bytes: zstd stops at the end of `out`'s room (`limit` bytes, or
/// more kept from earlier calls, then checked after).
pub fn decompress_into(data: &[u8], limit: usize, out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    out.reserve(limit);
    DCTX.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(Decompressor::new()?);
        }
        d.as_mut()
            .expect("set above")
            .decompress_to_buffer(data, out)?;
        if out.len() > limit {
            return Err(io::Error::other("decompressed size over limit"));
        }
        Ok(())
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

        // Appending after what a buffer holds, and decompressing into a reused buffer.
        let mut out = b"nonce-room".to_vec();
        let n = compress_append(&data, 1, &mut out).unwrap();
        assert_eq!((&out[..10], &out[10..]), (&b"nonce-room"[..], &z1[..]));
        assert_eq!(n, z1.len());
        let mut plain = vec![7u8; 5];
        decompress_into(&out[10..], data.len(), &mut plain).unwrap();
        assert_eq!(plain, data);
        assert!(decompress_into(&z1, data.len() - 1, &mut plain).is_err());
        decompress_into(&compress(b"short", 1).unwrap(), 100, &mut plain).unwrap();
        assert_eq!(plain, b"short");
    }
}
