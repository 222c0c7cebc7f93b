//! The restore target, reached only through open folder handles: every folder is opened
//! relative to its parent with `O_NOFOLLOW`, every entry is created or replaced relative to its
//! folder, so a restore never follows a symlink on a path it writes under, whatever the target
//! held before or a tree names. Folders are numbered as in the plan (0 is the target itself);
//! a small cache keeps recently used folders and some anchors (every 64th level) open, so depth
//! costs neither path length nor one open descriptor per level.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::plan::Folder;
use crate::repo::tree::name_problem;

/// Recently used folders kept open.
const CACHED: usize = 64;
/// Folders at every `ANCHOR_EVERY`th level kept open (at most `ANCHORS`), so no folder is more
/// than that many opens away from an open one.
const ANCHORS: usize = 256;
const ANCHOR_EVERY: u32 = 64;

/// The open target folder and a cache of open folders below it.
pub(super) struct Target<'a> {
    root: Arc<OwnedFd>,
    folders: &'a [Folder],
    /// Depth of each folder (the target's entries are at 1).
    depth: Vec<u32>,
    cache: Mutex<Cache>,
}

/// Open folder handles by number with a use stamp: recent ones and anchors, each evicted least
/// recently used first.
#[derive(Default)]
struct Cache {
    recent: HashMap<usize, (Arc<OwnedFd>, u64)>,
    anchors: HashMap<usize, (Arc<OwnedFd>, u64)>,
    tick: u64,
}

impl Cache {
    fn get(&mut self, i: usize) -> Option<Arc<OwnedFd>> {
        self.tick += 1;
        let tick = self.tick;
        let e = match self.recent.get_mut(&i) {
            Some(e) => e,
            None => self.anchors.get_mut(&i)?,
        };
        e.1 = tick;
        Some(e.0.clone())
    }

    fn put(&mut self, i: usize, fd: Arc<OwnedFd>, anchor: bool) {
        let (map, cap) = match anchor {
            true => (&mut self.anchors, ANCHORS),
            false => (&mut self.recent, CACHED),
        };
        if map.len() >= cap
            && let Some(&old) = map.iter().min_by_key(|e| e.1.1).map(|e| e.0)
        {
            map.remove(&old);
        }
        self.tick += 1;
        map.insert(i, (fd, self.tick));
    }
}

/// What is at a name in a folder (without following a symlink).
#[derive(PartialEq)]
enum Kind {
    Missing,
    Dir,
    Symlink,
    Other,
}

/// The names in the open folder `dir` (without `.` and `..`).
pub(super) fn names(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    // fdopendir takes ownership of the descriptor it is given: give it a duplicate.
    let dup = dir.try_clone()?;
    // SAFETY: `dup` is an open directory descriptor we own; on success the DIR stream owns it
    // (closedir below closes it), on failure it is still ours and OwnedFd closes it.
    let d = unsafe { libc::fdopendir(dup.as_raw_fd()) };
    if d.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(dup);
    // The listing starts at the beginning whatever was read through other handles.
    // SAFETY: `d` is the valid stream just opened.
    unsafe { libc::rewinddir(d) };
    let mut out = Vec::new();
    loop {
        // SAFETY: `d` is valid until closedir; the returned entry is valid until the next
        // readdir on `d`, and its name is copied out before that.
        let e = unsafe { libc::readdir(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: `e` points to a dirent whose d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*e).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            out.push(name.to_vec());
        }
    }
    // SAFETY: `d` is valid and closed exactly once.
    unsafe { libc::closedir(d) };
    Ok(out)
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The name as a C string, refused unless it is one safe path component (trees are checked when
/// decoded; this is the second check, where names meet the file system).
fn c_name(name: &[u8]) -> io::Result<CString> {
    if let Some(why) = name_problem(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unsafe name: {why}"),
        ));
    }
    CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn open_at(dir: &OwnedFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated string, both alive for
    // the call; openat keeps neither.
    let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, 0o600) })?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_dir(dir: &OwnedFd, name: &CStr) -> io::Result<OwnedFd> {
    open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY)
}

fn kind_at(dir: &OwnedFd, name: &CStr) -> io::Result<Kind> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid descriptor and string as above; `st` is writable memory of the right type,
    // read only after fstatat reported success (and so filled it).
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::NotFound => Ok(Kind::Missing),
            _ => Err(e),
        };
    }
    // SAFETY: fstatat succeeded, so `st` is initialised.
    let mode = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
    Ok(match mode {
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    })
}

fn unlink_at(dir: &OwnedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: valid descriptor and string, alive for the call.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) }).map(drop)
}

fn mkdir_at(dir: &OwnedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: valid descriptor and string, alive for the call.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o777) }).map(drop)
}

fn in_the_way(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::AlreadyExists, what.to_string())
}

/// An entry that exists where a new one was to be created: something put it there during the
/// restore (in a folder the restore made), and it is kept.
fn appeared(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::AlreadyExists => {
            in_the_way("an entry appeared in the target during the restore; not replacing it")
        }
        _ => e,
    }
}

/// Unix time of `ns` nanoseconds as a timespec.
fn timespec(ns: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: ns.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}

impl<'a> Target<'a> {
    /// Opens the target folder `path` (following a symlink there: the caller chose it).
    pub(super) fn open(path: &Path, folders: &'a [Folder]) -> io::Result<Self> {
        let f = File::open(path)?;
        if !f.metadata()?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a folder"));
        }
        let mut depth = vec![0u32; folders.len()];
        for i in 1..folders.len() {
            depth[i] = depth[folders[i].parent] + 1;
        }
        Ok(Target {
            root: Arc::new(OwnedFd::from(f)),
            folders,
            depth,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// An open handle of folder `i`, opened component by component from the nearest open
    /// ancestor, never through a symlink.
    pub(super) fn dir(&self, i: usize) -> io::Result<Arc<OwnedFd>> {
        let mut chain = Vec::new();
        let mut j = i;
        let mut fd = loop {
            if j == 0 {
                break self.root.clone();
            }
            if let Some(fd) = self.cache.lock().expect("folder cache").get(j) {
                break fd;
            }
            chain.push(j);
            j = self.folders[j].parent;
        };
        // Kept open: the folder and its ancestors 1, 2, 4, 8... levels up, so that reaching
        // any folder nearby later costs few opens (deepest-first order included).
        for (d, &k) in chain.iter().enumerate().rev() {
            fd = Arc::new(open_dir(&fd, &c_name(&self.folders[k].name)?)?);
            let anchor = self.depth[k].is_multiple_of(ANCHOR_EVERY);
            if anchor || d & d.wrapping_sub(1) == 0 {
                self.cache
                    .lock()
                    .expect("folder cache")
                    .put(k, fd.clone(), anchor);
            }
        }
        Ok(fd)
    }

    /// Creates folder `i` in its (existing) parent and says whether this call made it (a new,
    /// empty folder). An existing folder is kept, a symlink there is replaced; anything else in
    /// the way is an error.
    pub(super) fn make_dir(&self, i: usize) -> io::Result<bool> {
        let f = &self.folders[i];
        let parent = self.dir(f.parent)?;
        let name = c_name(&f.name)?;
        let made = match mkdir_at(&parent, &name) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match kind_at(&parent, &name)? {
                Kind::Dir => false,
                Kind::Symlink => {
                    unlink_at(&parent, &name)?;
                    mkdir_at(&parent, &name)?;
                    true
                }
                _ => {
                    return Err(in_the_way(
                        "a file is in the way in the target; not replacing it with a folder",
                    ));
                }
            },
            r => {
                r?;
                true
            }
        };
        let fd = Arc::new(open_dir(&parent, &name)?);
        let anchor = self.depth[i].is_multiple_of(ANCHOR_EVERY);
        self.cache.lock().expect("folder cache").put(i, fd, anchor);
        Ok(made)
    }

    /// Creates the new file `name` in `dir` (a folder this restore made), never replacing
    /// anything: an entry that appeared there meanwhile is an error.
    pub(super) fn create_new(&self, dir: &OwnedFd, name: &[u8]) -> io::Result<File> {
        let c = c_name(name)?;
        open_at(dir, &c, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL)
            .map(File::from)
            .map_err(appeared)
    }

    /// Creates a new temporary file in `dir` under the first name `names` yields that neither
    /// `taken` claims nor anything in the folder already has; returns it and its name.
    pub(super) fn create_temp(
        &self,
        dir: &OwnedFd,
        names: impl Iterator<Item = Vec<u8>>,
        taken: impl Fn(&[u8]) -> bool,
    ) -> io::Result<(File, Vec<u8>)> {
        for name in names.filter(|n| !taken(n)) {
            let c = c_name(&name)?;
            match open_at(dir, &c, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL) {
                Ok(fd) => return Ok((File::from(fd), name)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(in_the_way("no free temporary name in the folder"))
    }

    /// Opens an existing temporary file of ours for writing (and reading back: a logical
    /// Swamp's record stream becomes its `.hyd` in place).
    pub(super) fn reopen(&self, dir: &OwnedFd, name: &[u8]) -> io::Result<File> {
        open_at(dir, &c_name(name)?, libc::O_RDWR).map(File::from)
    }

    /// Renames `from` to `to` in `dir`, replacing a file or symlink but never a folder.
    pub(super) fn rename(&self, dir: &OwnedFd, from: &[u8], to: &[u8]) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        // SAFETY: valid descriptor and strings, alive for the call.
        let r =
            unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) };
        cvt(r).map(drop).map_err(|e| match e.raw_os_error() {
            Some(libc::EISDIR | libc::ENOTEMPTY | libc::EEXIST) => {
                in_the_way("a folder is in the way in the target; not replacing it with a file")
            }
            _ => e,
        })
    }

    /// Opens the file `name` in `dir` for reading, not through a symlink.
    pub(super) fn open_read(&self, dir: &OwnedFd, name: &[u8]) -> io::Result<File> {
        open_at(dir, &c_name(name)?, libc::O_RDONLY).map(File::from)
    }

    /// Removes the entry `name` of `dir`: a folder with everything in it, a symlink as the
    /// link (never what it points to). Folders are entered only through `O_NOFOLLOW` handles.
    pub(super) fn remove_all(&self, dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
        let c = c_name(name)?;
        if kind_at(dir, &c)? == Kind::Dir {
            let sub = open_dir(dir, &c)?;
            for n in names(&sub)? {
                self.remove_all(&sub, &n)?;
            }
            // SAFETY: valid descriptor and string, alive for the call.
            return cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })
                .map(drop);
        }
        unlink_at(dir, &c)
    }

    /// Removes `name` from `dir` (best effort, for temporary files).
    pub(super) fn remove(&self, dir: &OwnedFd, name: &[u8]) {
        if let Ok(c) = c_name(name) {
            let _ = unlink_at(dir, &c);
        }
    }

    /// Creates the symlink `name` → `target` in `dir` with modification time `mtime_ns`. In a
    /// folder this restore made (`fresh`) nothing is replaced (an entry that appeared there
    /// meanwhile is an error); elsewhere a file or symlink is replaced, never a folder.
    pub(super) fn symlink(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        target: &[u8],
        mtime_ns: i64,
        fresh: bool,
    ) -> io::Result<()> {
        let name = c_name(name)?;
        let target =
            CString::new(target).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        match fresh {
            true => {}
            false => match kind_at(dir, &name)? {
                Kind::Missing => {}
                Kind::Dir => {
                    return Err(in_the_way(
                        "a folder is in the way in the target; not replacing it with a symlink",
                    ));
                }
                _ => unlink_at(dir, &name)?,
            },
        }
        // SAFETY: valid descriptor and strings, alive for the call.
        cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
            .map_err(appeared)?;
        let t = [timespec(mtime_ns), timespec(mtime_ns)];
        // SAFETY: valid descriptor and string; `t` is the two-element array utimensat reads.
        cvt(unsafe {
            libc::utimensat(
                dir.as_raw_fd(),
                name.as_ptr(),
                t.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map(drop)
    }
}
