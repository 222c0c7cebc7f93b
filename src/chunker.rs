//! Content-defined chunking: FastCDC (2020) with the repository's secret gear seed, driven by our
//! own buffer so one reusable buffer serves every file a reader thread reads.

use std::io::{self, Read};

use fastcdc::v2020::{Normalization, cut_gear, get_gear_with_seed, select_masks};

use crate::repo::config::ChunkerParams;

/// A configured chunker; cheap to share between threads.
#[derive(Clone)]
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    masks: (u64, u64),
    gear: Vec<u64>,
    gear_ls: Vec<u64>,
}

impl Chunker {
    /// Builds a chunker from validated parameters.
    pub fn new(p: &ChunkerParams) -> Self {
        let (gear, gear_ls) = get_gear_with_seed(p.seed);
        Chunker {
            min: p.min as usize,
            avg: p.avg as usize,
            max: p.max as usize,
            masks: select_masks(p.avg as usize, Normalization::Level1),
            gear: gear.into_owned(),
            gear_ls: gear_ls.into_owned(),
        }
    }

    /// Largest chunk this chunker produces.
    pub fn max_size(&self) -> usize {
        self.max
    }

    /// Length of the chunk starting at `data[0]`, or `None` when more data is needed to decide
    /// (fewer than `max` bytes available and not at end of input).
    pub fn next_len(&self, data: &[u8], eof: bool) -> Option<usize> {
        if data.is_empty() {
            return None;
        }
        if data.len() < self.max && !eof {
            return None;
        }
        if data.len() <= self.min {
            return Some(data.len());
        }
        let (ms, ml) = self.masks;
        let (_, cut) = cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            ms,
            ml,
            ms << 1,
            ml << 1,
            &self.gear,
            &self.gear_ls,
        );
        Some(cut.clamp(1, data.len()))
    }

    /// Cuts a complete in-memory buffer into chunk lengths.
    pub fn cut_all(&self, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(n) = self.next_len(&data[pos..], true) {
            out.push(n);
            pos += n;
        }
        out
    }
}

/// Streams chunks out of a reader using a caller-owned, reusable buffer.
pub struct ChunkStream<'a, R: Read> {
    chunker: &'a Chunker,
    src: R,
    buf: &'a mut Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<'a, R: Read> ChunkStream<'a, R> {
    /// Starts chunking `src`; `buf` is grown to twice the maximum chunk size once and reused.
    pub fn new(chunker: &'a Chunker, src: R, buf: &'a mut Vec<u8>) -> Self {
        if buf.len() < 2 * chunker.max {
            buf.resize(2 * chunker.max, 0);
        }
        ChunkStream {
            chunker,
            src,
            buf,
            start: 0,
            end: 0,
            eof: false,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while !self.eof && self.end < self.buf.len() {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next chunk (borrowed from the buffer until the next call), or `None` at the end.
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        let n = match self
            .chunker
            .next_len(&self.buf[self.start..self.end], self.eof)
        {
            Some(n) => n,
            None => {
                self.fill()?;
                match self
                    .chunker
                    .next_len(&self.buf[self.start..self.end], self.eof)
                {
                    Some(n) => n,
                    None => return Ok(None),
                }
            }
        };
        let s = self.start;
        self.start += n;
        Ok(Some(&self.buf[s..s + n]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(seed: u64) -> ChunkerParams {
        ChunkerParams {
            min: 256,
            avg: 1024,
            max: 4096,
            seed,
        }
    }

    fn stream_all(c: &Chunker, data: &[u8], read_size: usize) -> Vec<Vec<u8>> {
        struct Slow<'a>(&'a [u8], usize);
        impl Read for Slow<'_> {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(b.len()).min(self.1);
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut buf = Vec::new();
        let mut s = ChunkStream::new(c, Slow(data, read_size), &mut buf);
        let mut out = Vec::new();
        while let Some(ch) = s.next_chunk().unwrap() {
            out.push(ch.to_vec());
        }
        out
    }

    proptest! {
        #[test]
        fn chunks_reassemble_and_respect_bounds(data in prop::collection::vec(any::<u8>(), 0..40_000), rs in 1usize..10_000, seed in any::<u64>()) {
            let c = Chunker::new(&params(seed));
            let chunks = stream_all(&c, &data, rs);
            prop_assert_eq!(chunks.concat(), data.clone());
            for (i, ch) in chunks.iter().enumerate() {
                prop_assert!(ch.len() <= 4096);
                if i + 1 < chunks.len() { prop_assert!(ch.len() >= 256); }
            }
            // Streaming and whole-buffer cutting agree, whatever the read sizes.
            let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
            prop_assert_eq!(lens, c.cut_all(&data));
        }

        #[test]
        fn boundaries_resynchronise_after_a_prefix_change(data in prop::collection::vec(any::<u8>(), 30_000..40_000), prefix in prop::collection::vec(any::<u8>(), 1..100)) {
            let c = Chunker::new(&params(7));
            let a = stream_all(&c, &data, 1 << 20);
            let mut changed = prefix.clone();
            changed.extend_from_slice(&data);
            let b = stream_all(&c, &changed, 1 << 20);
            // Content-defined: most chunks of the original reappear after an insertion in front.
            let shared = a.iter().filter(|x| b.contains(x)).count();
            prop_assert!(shared * 2 >= a.len().saturating_sub(2), "{shared} of {}", a.len());
        }
    }

    #[test]
    fn seed_changes_boundaries() {
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let a = Chunker::new(&params(1)).cut_all(&data);
        let b = Chunker::new(&params(2)).cut_all(&data);
        assert_ne!(a, b);
    }
}
