//! The backup's read pipeline: reader threads cut files into chunks, workers hash, deduplicate
//! and seal them for the pack writer; each file's chunk ids and facts wait in [`Results`] until
//! the walk takes them to build the file's folder.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender};

use crate::Id;
use crate::chunker::{ChunkStream, Chunker};
use crate::logical::BackupMode;
use crate::logical::capture::{Buffer, Converted, LogicalCtx, MAX_LOGICAL_FILE, Stream};
use crate::repo::Repository;
use crate::repo::blob::{BlobType, SealedBlob, seal_blob};
use crate::repo::config::HydChunking;
use crate::repo::idset::IdSet;
use crate::repo::index::Index;
use crate::repo::tree::{Decision, SwampInfo};
use crate::source::hydraide::{Capture, ChunkSink, HydCapture, capture};
use crate::source::walk::{FileJob, JobKind};
use crate::source::{Identity, Tally, Trouble, open_checked, trouble};

/// What a reader learned about one file.
#[derive(Default)]
pub(crate) struct FileDone {
    /// Chunks that make up the file: those numbered from `seq_base` on (lower numbers belong
    /// to an abandoned attempt).
    pub(crate) chunks: u32,
    pub(crate) seq_base: u32,
    /// Stored length.
    pub(crate) size: u64,
    /// Bytes read from the source.
    pub(crate) read: u64,
    /// Blob ids reused from the parent, inserted before the `reuse_at`-th kept chunk.
    pub(crate) reuse: Vec<Id>,
    pub(crate) reuse_at: u32,
    /// Swamp facts (for `.hyd` files).
    pub(crate) swamp: Option<SwampInfo>,
    /// A quarantined Swamp stored as its loadable prefix: its raw bytes, the `chunks` chunks
    /// numbered from `seq_base`, `size` bytes in all.
    pub(crate) raw: Option<RawDone>,
    pub(crate) error: Option<String>,
    /// The error is that the file was replaced during the backup.
    pub(crate) changed: bool,
    /// The file vanished before it could be read.
    pub(crate) gone: bool,
    /// Chunks sent to the workers for it (abandoned attempts included).
    pub(crate) sent: u32,
}

impl FileDone {
    /// Records a source error: a vanished file is gone, anything else an error.
    pub(crate) fn fail(&mut self, e: std::io::Error) {
        match trouble(&e) {
            Trouble::Gone => self.gone = true,
            t => {
                self.changed = t == Trouble::Changed;
                self.error = Some(e.to_string());
            }
        }
    }
}

/// Where the raw bytes of a quarantined Swamp went.
pub(crate) struct RawDone {
    pub(crate) seq_base: u32,
    pub(crate) chunks: u32,
    pub(crate) size: u64,
}

pub(crate) struct ChunkJob {
    pub(crate) file: usize,
    pub(crate) seq: u32,
    pub(crate) data: Vec<u8>,
}

/// Each file's results until the walk takes them: the chunk ids from the workers and the facts
/// from its reader. A file is complete when its reader is done and every chunk it sent has an
/// id; once the pipeline is closed (the writer failed) nothing more arrives.
#[derive(Default)]
pub(crate) struct Results {
    state: Mutex<ResultState>,
}

#[derive(Default)]
struct ResultState {
    files: HashMap<usize, FileResult>,
    closed: bool,
}

#[derive(Default)]
struct FileResult {
    chunks: Vec<(u32, Id)>,
    done: Option<FileDone>,
    /// The walking thread waiting for it (woken alone when it is complete).
    waiter: Option<std::thread::Thread>,
}

impl FileResult {
    fn complete(&self) -> bool {
        self.done
            .as_ref()
            .is_some_and(|d| d.sent as usize == self.chunks.len())
    }
}

impl Results {
    fn update(&self, file: usize, f: impl FnOnce(&mut FileResult)) {
        let mut s = self.state.lock().expect("results");
        let r = s.files.entry(file).or_default();
        f(r);
        if r.complete()
            && let Some(t) = r.waiter.take()
        {
            t.unpark();
        }
    }

    /// A chunk of `file` has its blob id.
    pub(crate) fn chunk(&self, file: usize, seq: u32, id: Id) {
        self.update(file, |r| r.chunks.push((seq, id)));
    }

    /// The reader of `file` is done with it.
    pub(crate) fn done(&self, file: usize, done: FileDone) {
        self.update(file, |r| r.done = Some(done));
    }

    /// Nothing more will arrive: waiters take what there is.
    pub(crate) fn close(&self) {
        let mut s = self.state.lock().expect("results");
        s.closed = true;
        for t in s.files.values_mut().filter_map(|r| r.waiter.take()) {
            t.unpark();
        }
    }

    /// Waits for `file` to be complete (or the pipeline closed) and takes its chunk ids and
    /// facts; a file never read is reported as such.
    pub(crate) fn take(&self, file: usize) -> (Vec<(u32, Id)>, FileDone) {
        loop {
            let mut s = self.state.lock().expect("results");
            if s.closed || s.files.get(&file).is_some_and(FileResult::complete) {
                let r = s.files.remove(&file).unwrap_or_default();
                let done = r.done.unwrap_or_else(|| FileDone {
                    error: Some("not read (backup aborted)".into()),
                    ..FileDone::default()
                });
                return (r.chunks, done);
            }
            s.files.entry(file).or_default().waiter = Some(std::thread::current());
            drop(s);
            // Woken by `update` or `close` (an unpark before this park is not lost); any other
            // wake-up just checks again.
            std::thread::park();
        }
    }
}

/// Shared state of the chunk workers.
pub(crate) struct Workers<'a> {
    pub(crate) repo: &'a Repository,
    pub(crate) index: &'a Index,
    pub(crate) seen: Mutex<IdSet>,
    pub(crate) blobs_added: AtomicU64,
    pub(crate) bytes_added: AtomicU64,
    pub(crate) bytes_stored: AtomicU64,
    /// zstd level of the data blobs (0: uncompressed).
    pub(crate) level: i32,
}

impl Workers<'_> {
    pub(crate) fn run(&self, rx: Receiver<ChunkJob>, results: &Results, blobs: Sender<SealedBlob>) {
        let level = self.level;
        for job in rx.iter() {
            let id = self.repo.keys().blob_id(&job.data);
            let new = !self.index.contains(BlobType::Data, &id)
                && self.seen.lock().expect("dedup set").insert(id);
            if new {
                let b = seal_blob(self.repo.keys(), BlobType::Data, id, &job.data, level);
                self.blobs_added.fetch_add(1, Ordering::Relaxed);
                self.bytes_added
                    .fetch_add(job.data.len() as u64, Ordering::Relaxed);
                self.bytes_stored
                    .fetch_add(b.sealed.len() as u64, Ordering::Relaxed);
                if blobs.send(b).is_err() {
                    // The writer stopped: no file will be complete any more.
                    results.close();
                    return;
                }
            }
            results.chunk(job.file, job.seq, id);
        }
    }
}

/// One reader thread's tools.
pub(crate) struct Reader<'a> {
    pub(crate) chunker: &'a Chunker,
    pub(crate) hyd: HydChunking,
    pub(crate) buf: Vec<u8>,
    pub(crate) chunks: Sender<ChunkJob>,
    /// Chunks sent for the file being read.
    pub(crate) sent: Rc<Cell<u32>>,
    /// Bytes read.
    pub(crate) progress: Tally<'a>,
    /// Logical capture of `.hyd` files (`--mode logical|auto`), if on.
    pub(crate) logical: Option<LogicalCtx<'a>>,
}

/// Sends one file's chunks to the workers, numbering them; an attempt that starts over gets a
/// fresh range of numbers, with the first one kept for the header blob.
pub(crate) struct FileSink<'r> {
    pub(crate) chunks: &'r Sender<ChunkJob>,
    pub(crate) sent: &'r Cell<u32>,
    pub(crate) progress: Tally<'r>,
    pub(crate) file: usize,
    pub(crate) next: u32,
    pub(crate) base: u32,
}

impl FileSink<'_> {
    pub(crate) fn send(&mut self, seq: u32, data: Vec<u8>) -> bool {
        (self.progress)(0, data.len() as u64);
        let ok = self
            .chunks
            .send(ChunkJob {
                file: self.file,
                seq,
                data,
            })
            .is_ok();
        self.sent.set(self.sent.get() + u32::from(ok));
        ok
    }
}

impl ChunkSink for FileSink<'_> {
    fn restart(&mut self) {
        self.base = self.next;
        self.next += 1;
    }

    fn chunk(&mut self, data: Vec<u8>) -> bool {
        let seq = self.next;
        self.next += 1;
        self.send(seq, data)
    }
}

/// Hands a buffered capture's chunks to the file's sink as a new attempt.
fn forward(sink: &mut FileSink<'_>, buf: Buffer) {
    sink.restart();
    for ch in buf.chunks {
        if !sink.chunk(ch) {
            return;
        }
    }
}

impl Reader<'_> {
    pub(crate) fn read(&mut self, job: FileJob) -> FileDone {
        crate::failpoint::hook("open", &job.display);
        self.sent.set(0);
        let mut done = FileDone::default();
        match job.kind {
            JobKind::Plain => self.read_plain(job.idx, &job.path, job.expect, 0, &mut done),
            JobKind::Stream(src) => self.read_from(job.idx, src, 0, &mut done),
            JobKind::Bytes(data) => {
                let mut sink = self.sink(job.idx);
                let mut pos = 0;
                done.size = data.len() as u64;
                done.read = data.len() as u64;
                for n in self.chunker.cut_all(&data) {
                    if !sink.chunk(data[pos..pos + n].to_vec()) {
                        done.error = Some("backup aborted".into());
                        break;
                    }
                    pos += n;
                }
                done.chunks = sink.next;
            }
            JobKind::Hyd(parent) => {
                let (chunks, progress, sent) =
                    (self.chunks.clone(), self.progress, self.sent.clone());
                let mut sink = FileSink {
                    chunks: &chunks,
                    sent: &sent,
                    progress,
                    file: job.idx,
                    next: 0,
                    base: 0,
                };
                // `auto` captures a Swamp the parent does not hold as a file: stream it
                // (flat memory, as in file mode) instead of buffering it for a conversion.
                let logical = self.logical.filter(|lc| {
                    !(lc.mode == BackupMode::Auto && parent.is_none())
                        && std::fs::symlink_metadata(&job.path)
                            .is_ok_and(|m| m.len() <= MAX_LOGICAL_FILE)
                });
                let result = match logical {
                    None => capture(&job.path, parent.as_ref(), &self.hyd, &mut sink),
                    Some(lc) => {
                        // Logical mode reads whole; auto lets the capture prove an append.
                        let p = parent.as_ref().filter(|_| lc.mode == BackupMode::Auto);
                        let mut buf = Buffer::default();
                        match capture(&job.path, p, &self.hyd, &mut buf) {
                            Ok(Capture::Captured(mut c)) => {
                                if parent.is_some() && c.swamp.decision == Decision::New {
                                    c.swamp.decision = Decision::Rewritten;
                                }
                                match lc.convert(&c, &buf.chunks) {
                                    Converted::Stream(st) => {
                                        done.read = c.bytes_read;
                                        Self::stored_stream(&mut sink, c, st, &mut done);
                                        done.sent = self.sent.get();
                                        return done;
                                    }
                                    Converted::File => {
                                        forward(&mut sink, buf);
                                        Ok(Capture::Captured(c))
                                    }
                                    Converted::Bad(reason) => {
                                        forward(&mut sink, buf);
                                        Ok(Capture::Quarantine {
                                            reason,
                                            swamp: c.swamp.clone(),
                                            prefix: Some(Box::new(c)),
                                        })
                                    }
                                }
                            }
                            Ok(q) => {
                                forward(&mut sink, buf);
                                Ok(q)
                            }
                            Err(e) => Err(e),
                        }
                    }
                };
                match result {
                    Ok(Capture::Captured(c)) => {
                        done.read = c.bytes_read;
                        Self::captured(&mut sink, c, &mut done);
                    }
                    Ok(Capture::Quarantine {
                        reason,
                        mut swamp,
                        prefix,
                    }) => {
                        // Never lose data: store the bytes as they are, and report the file.
                        let first = sink.next;
                        let mut raw = FileDone::default();
                        self.read_plain(job.idx, &job.path, None, first, &mut raw);
                        swamp.decision = Decision::Quarantined;
                        swamp.problem = Some(reason);
                        swamp.tail = None;
                        match prefix {
                            // The loadable prefix is the Swamp; the raw bytes are kept beside it.
                            Some(c) if raw.error.is_none() && !raw.gone => {
                                done.read = c.bytes_read + raw.read;
                                Self::captured(&mut sink, *c, &mut done);
                                done.raw = Some(RawDone {
                                    seq_base: first,
                                    chunks: raw.chunks,
                                    size: raw.size,
                                });
                            }
                            _ => done = raw,
                        }
                        done.swamp = Some(swamp);
                    }
                    Err(e) => done.fail(e),
                }
            }
        }
        done.sent = self.sent.get();
        done
    }

    /// Records a consistent capture: the header blob (sent now, numbered first) and the chunks
    /// sent since the attempt began.
    pub(crate) fn captured(sink: &mut FileSink<'_>, c: HydCapture, done: &mut FileDone) {
        done.size = c.size;
        done.reuse = c.reuse;
        done.reuse_at = 1;
        done.swamp = Some(c.swamp);
        done.seq_base = sink.base;
        done.chunks = c.chunks + 1;
        let base = sink.base;
        if !sink.send(base, c.header_blob) {
            done.error = Some("backup aborted".into());
        }
    }

    /// Records a logical capture: its record groups and block recipe (numbered as the file's
    /// chunks), then its index pages (stored, named in the Swamp facts, not part of the content).
    pub(crate) fn stored_stream(
        sink: &mut FileSink<'_>,
        c: HydCapture,
        st: Stream,
        done: &mut FileDone,
    ) {
        sink.restart();
        done.seq_base = sink.next;
        done.chunks = (st.groups.len() + usize::from(st.recipe.is_some())) as u32;
        done.size = c.size;
        let mut swamp = c.swamp;
        swamp.tail = None;
        swamp.logical = Some(Box::new(st.info));
        done.swamp = Some(swamp);
        for data in st.groups.into_iter().chain(st.recipe).chain(st.pages) {
            if !sink.chunk(data) {
                done.error = Some("backup aborted".into());
                return;
            }
        }
    }

    pub(crate) fn sink(&self, file: usize) -> FileSink<'_> {
        FileSink {
            chunks: &self.chunks,
            sent: &self.sent,
            progress: self.progress,
            file,
            next: 0,
            base: 0,
        }
    }

    /// Reads a whole file with the generic chunker, numbering chunks from `first`; the file
    /// must be the one the walk saw (`expect`).
    pub(crate) fn read_plain(
        &mut self,
        file: usize,
        path: &Path,
        expect: Option<Identity>,
        first: u32,
        done: &mut FileDone,
    ) {
        let f = match open_checked(path, expect) {
            Ok(f) => f,
            Err(e) => {
                done.seq_base = first;
                return done.fail(e);
            }
        };
        self.read_from(file, f, first, done);
    }

    /// Reads `src` to its end with the generic chunker, numbering chunks from `first`.
    pub(crate) fn read_from(
        &mut self,
        file: usize,
        src: impl std::io::Read,
        first: u32,
        done: &mut FileDone,
    ) {
        done.seq_base = first;
        let f = src;
        let mut stream = ChunkStream::new(self.chunker, f, &mut self.buf);
        let mut seq = first;
        loop {
            match stream.next_chunk() {
                Ok(Some(c)) => {
                    done.size += c.len() as u64;
                    (self.progress)(0, c.len() as u64);
                    let cj = ChunkJob {
                        file,
                        seq,
                        data: c.to_vec(),
                    };
                    seq += 1;
                    if self.chunks.send(cj).is_err() {
                        done.error = Some("backup aborted".into());
                        break;
                    }
                    self.sent.set(self.sent.get() + 1);
                }
                Ok(None) => break,
                Err(e) => {
                    done.error = Some(e.to_string());
                    break;
                }
            }
        }
        done.chunks = seq - first;
        done.read = done.size;
    }
}
