//! The local file system backend (also used for SFTP- and NFS-mounted paths).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Backend, FileKind};
use crate::{Error, Result};

/// A repository in a local (or mounted) directory.
pub struct LocalBackend {
    root: PathBuf,
    /// Open packs with their sizes: packs never change once written, so a handle stays valid,
    /// and a walk over many small tree blobs costs one `pread` each instead of three syscalls.
    packs: Mutex<HashMap<String, (Arc<File>, u64)>>,
}

/// Open pack handles kept at most.
const PACK_HANDLES: usize = 64;

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

fn err(op: &'static str, path: &Path, source: io::Error) -> Error {
    Error::backend(op, path.display().to_string(), source)
}

impl LocalBackend {
    /// A backend rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend {
            root: root.into(),
            packs: Mutex::new(HashMap::new()),
        }
    }

    fn dir(&self, kind: FileKind) -> PathBuf {
        self.root.join(kind.dir().unwrap_or(""))
    }

    fn path(&self, kind: FileKind, name: &str) -> Result<PathBuf> {
        Ok(self.root.join(super::object_path(kind, name)?))
    }

    /// Stores an object streamed from `body`, through a temporary file like
    /// [`Backend::write`]: `accept` gets `body` back once every byte is on disk and before the
    /// object takes its name, and its error discards the upload. `body` is read to its end even
    /// when the object exists already (then its bytes are dropped).
    pub fn write_from<R: Read>(
        &self,
        kind: FileKind,
        name: &str,
        mut body: R,
        accept: impl FnOnce(R) -> Result<()>,
    ) -> Result<()> {
        let p = self.path(kind, name)?;
        if p.exists() {
            io::copy(&mut body, &mut io::sink()).map_err(|e| Error::io("request body", e))?;
            return accept(body);
        }
        self.store(&p, name, |f, tmp| {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io("request body", e)),
                };
                f.write_all(&buf[..n]).map_err(|e| err("write", tmp, e))?;
            }
            accept(body)
        })
    }

    /// Writes the object at `p` through a file in `tmp/` that `fill` writes: fsync, rename if
    /// the name is still free, directory fsync. The temporary file is removed on failure.
    fn store(
        &self,
        p: &Path,
        name: &str,
        fill: impl FnOnce(&mut File, &Path) -> Result<()>,
    ) -> Result<()> {
        let dir = p
            .parent()
            .expect("object paths have a parent")
            .to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| err("create", &dir, e))?;
        let tmpdir = self.root.join("tmp");
        fs::create_dir_all(&tmpdir).map_err(|e| err("create", &tmpdir, e))?;
        let tmp = tmpdir.join(format!(
            "{}.{}.{}.{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed),
            crate::sys::hostname(),
            name
        ));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| err("write", &tmp, e))?;
            fill(&mut f, &tmp)?;
            f.sync_all().map_err(|e| err("sync", &tmp, e))?;
            drop(f);
            if p.exists() {
                // Another writer stored the same content-addressed object meanwhile.
                let _ = fs::remove_file(&tmp);
                return Ok(());
            }
            fs::rename(&tmp, p).map_err(|e| err("rename", p, e))?;
            sync_dir(&dir).map_err(|e| err("sync", &dir, e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Directory fsync makes the rename durable; some mounted file systems refuse it, which
    // costs durability there but not correctness, so that case is ignored.
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() != ErrorKind::NotFound && e.raw_os_error() != Some(libc::EINVAL) => {
            Err(e)
        }
        _ => Ok(()),
    }
}

impl Backend for LocalBackend {
    fn is_local(&self) -> bool {
        true
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn exists(&self) -> Result<bool> {
        Ok(self.root.join("config").is_file())
    }

    fn create(&self) -> Result<()> {
        for d in FileKind::ALL
            .iter()
            .filter_map(|k| k.dir())
            .chain([super::TMP_DIR])
        {
            let p = self.root.join(d);
            fs::create_dir_all(&p).map_err(|e| err("create", &p, e))?;
        }
        for i in 0..=255u8 {
            let p = self.root.join("data").join(format!("{i:02x}"));
            fs::create_dir_all(&p).map_err(|e| err("create", &p, e))?;
        }
        sync_dir(&self.root).map_err(|e| err("sync", &self.root, e))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        if kind == FileKind::Config {
            let p = self.root.join("config");
            return match fs::metadata(&p) {
                Ok(m) => Ok(vec![("config".into(), m.len())]),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(vec![]),
                Err(e) => Err(err("stat", &p, e)),
            };
        }
        let mut out = Vec::new();
        let base = self.dir(kind);
        let dirs = if kind == FileKind::Pack {
            let mut v = Vec::new();
            for e in fs::read_dir(&base).map_err(|e| err("list", &base, e))? {
                let e = e.map_err(|e| err("list", &base, e))?;
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    v.push(e.path());
                }
            }
            v
        } else {
            vec![base]
        };
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(err("list", &d, e)),
            };
            for e in rd {
                let e = e.map_err(|e| err("list", &d, e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                // Removed since the folder was read (another process's lock, a pruned pack):
                // not listed, as if the listing had come a moment later.
                let md = match e.metadata() {
                    Ok(md) => md,
                    Err(er) if er.kind() == ErrorKind::NotFound => continue,
                    Err(er) => return Err(err("stat", &e.path(), er)),
                };
                if md.is_file() {
                    out.push((name, md.len()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let p = self.path(kind, name)?;
        fs::read(&p).map_err(|e| err("read", &p, e))
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let p = self.path(kind, name)?;
        let cached = (kind == FileKind::Pack)
            .then(|| self.packs.lock().expect("pack handles").get(name).cloned())
            .flatten();
        let (f, size) = match cached {
            Some(c) => c,
            None => {
                let f = File::open(&p).map_err(|e| err("read", &p, e))?;
                let size = f.metadata().map_err(|e| err("stat", &p, e))?.len();
                let c = (Arc::new(f), size);
                if kind == FileKind::Pack {
                    let mut h = self.packs.lock().expect("pack handles");
                    if h.len() >= PACK_HANDLES {
                        h.clear();
                    }
                    h.insert(name.to_string(), c.clone());
                }
                c
            }
        };
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(err(
                "read",
                &p,
                io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("range {offset}+{len} beyond file size {size}"),
                ),
            ));
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| err("read", &p, e))?;
        Ok(buf)
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        let p = self.path(kind, name)?;
        if p.exists() {
            return Ok(());
        }
        self.store(&p, name, |f, tmp| {
            if kind == FileKind::Pack && data.len() > 1 {
                f.write_all(&data[..data.len() / 2])
                    .map_err(|e| err("write", tmp, e))?;
                crate::failpoint::hit("mid-pack-write");
                f.write_all(&data[data.len() / 2..])
                    .map_err(|e| err("write", tmp, e))
            } else {
                f.write_all(data).map_err(|e| err("write", tmp, e))
            }
        })
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        let p = self.path(kind, name)?;
        if kind == FileKind::Pack {
            self.packs.lock().expect("pack handles").remove(name);
        }
        fs::remove_file(&p).map_err(|e| err("remove", &p, e))
    }

    fn remove_stale_temporaries(&self) -> Result<u64> {
        let dir = self.root.join("tmp");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(err("list", &dir, e)),
        };
        let host = crate::sys::hostname();
        let mut removed = 0;
        for e in rd {
            let e = e.map_err(|e| err("list", &dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            // `<pid>.<seq>.<host>.<object>`: a writer on this host that is gone, or anything a
            // day old (a writer elsewhere that died; no write takes that long).
            let mut parts = name.splitn(3, '.');
            let pid = parts.next().and_then(|p| p.parse::<i32>().ok());
            let rest = parts.nth(1).unwrap_or_default();
            let ours_dead = rest.rsplit_once('.').is_some_and(|(h, _)| h == host)
                && pid.is_some_and(|pid| {
                    // SAFETY: kill(pid, 0) only checks for existence.
                    let r = unsafe { libc::kill(pid, 0) };
                    r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
                });
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 24 * 3600);
            if ours_dead || old {
                fs::remove_file(e.path()).map_err(|er| err("remove", &e.path(), er))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let p = self.path(kind, name)?;
        Ok(fs::metadata(&p).map_err(|e| err("stat", &p, e))?.len())
    }
}
