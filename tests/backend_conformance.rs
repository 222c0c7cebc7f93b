//! The conformance suite every backend must pass: one function per property of the
//! [`Backend`] contract, run on each backend through the retry layer as `backend::open_with`
//! builds it: local, in memory, REST (`hydrabackup serve` over TLS), SFTP (a private `sshd`) and
//! S3 (`s3s-fs`). The remote ones are reached through a proxy that can drop a connection
//! mid-answer ([`CutProxy`]). Object names are the BLAKE3 hash of their bytes (except `config`),
//! as the REST server insists.
//!
//! Adding a backend: a fixture function returning a [`Subject`], and one `conformance!` line.

mod common;
mod cutproxy;
mod restcommon;
mod s3common;
mod sshcommon;

use std::any::Any;
use std::io::ErrorKind;
use std::sync::Barrier;
use std::time::Duration;

use common::{TestRepo, random_bytes};
use cutproxy::CutProxy;
use hydrabackup::backend::{
    self, Backend, BackendOptions, FileKind, MemoryBackend, RestOptions, Retry, RetryOptions,
    Secret,
};
use hydrabackup::{Error, Id};

/// A backend under test, with whatever keeps its server running.
struct Subject {
    backend: Box<dyn Backend>,
    /// For backends with a transport: the proxy in front of the server and how to open the
    /// location again.
    remote: Option<Remote>,
    /// Servers and folders, dropped after the backend.
    _keep: Vec<Box<dyn Any>>,
}

struct Remote {
    proxy: CutProxy,
    location: String,
    opts: BackendOptions,
}

impl Subject {
    /// The backend for `location`, created empty.
    fn open(location: String, opts: BackendOptions, remote: Option<CutProxy>) -> Subject {
        let backend = backend::open_with(&location, &opts).expect("open the backend");
        backend.create().expect("create the repository layout");
        Subject {
            backend,
            remote: remote.map(|proxy| Remote {
                proxy,
                location,
                opts,
            }),
            _keep: Vec::new(),
        }
    }

    fn keep(mut self, x: impl Any) -> Subject {
        self._keep.push(Box::new(x));
        self
    }
}

/// Quick retries: the suite's servers are on loopback.
fn retry() -> RetryOptions {
    RetryOptions {
        attempts: 5,
        backoff: Duration::from_millis(10),
    }
}

fn options() -> BackendOptions {
    BackendOptions {
        retry: retry(),
        ..BackendOptions::default()
    }
}

fn local() -> Subject {
    let t = TestRepo::new();
    let location = format!("local:{}", t.repo.display());
    Subject::open(location, options(), None).keep(t)
}

fn memory() -> Subject {
    let backend = Box::new(Retry::new(MemoryBackend::new(), retry()));
    Subject {
        backend,
        remote: None,
        _keep: Vec::new(),
    }
}

fn rest() -> Subject {
    let t = TestRepo::new();
    let (cert, key) = restcommon::certificate(&t);
    let users = restcommon::users(&t);
    let server = restcommon::Server::start(
        &t,
        &["--tls-cert", &cert, "--tls-key", &key, "--users", &users],
    );
    let port: u16 = server.addr().rsplit_once(':').unwrap().1.parse().unwrap();
    let proxy = CutProxy::start(port);
    let location = format!("rest:https://127.0.0.1:{}/repo", proxy.port);
    let opts = BackendOptions {
        rest: RestOptions {
            credentials: Some(("alice".into(), Secret::new("alice pw"))),
            ca_cert: Some(cert.into()),
        },
        ..options()
    };
    Subject::open(location, opts, Some(proxy))
        .keep(server)
        .keep(t)
}

fn sftp() -> Subject {
    let sshd = sshcommon::Sshd::start();
    let t = TestRepo::new();
    let proxy = CutProxy::start(sshd.port);
    sshd.trust_port(proxy.port);
    let location = format!(
        "sftp://{}@127.0.0.1:{}/{}",
        sshd.user,
        proxy.port,
        t.repo.display()
    );
    let opts = BackendOptions {
        sftp: sshd.options(),
        ..options()
    };
    Subject::open(location, opts, Some(proxy))
        .keep(sshd)
        .keep(t)
}

fn s3() -> Subject {
    let server = s3common::S3Server::start();
    let proxy = CutProxy::start(server.port);
    let location = format!("s3:http://127.0.0.1:{}/conformance/pre", proxy.port);
    let opts = BackendOptions {
        s3: server.options(),
        ..options()
    };
    Subject::open(location, opts, Some(proxy)).keep(server)
}

/// Kinds with hashed names (all but the config).
const HASHED: [FileKind; 5] = [
    FileKind::Key,
    FileKind::Pack,
    FileKind::Index,
    FileKind::Snapshot,
    FileKind::Lock,
];

/// `data` with the name a repository gives it.
fn named(data: Vec<u8>) -> (String, Vec<u8>) {
    (Id::of_stored(&data).to_hex(), data)
}

/// The I/O error kind of a backend error (panics on any other error).
fn io_kind(e: &Error) -> ErrorKind {
    match e {
        Error::Backend { source, .. } => source.kind(),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

fn sorted(mut v: Vec<(String, u64)>) -> Vec<(String, u64)> {
    v.sort();
    v
}

/// A new repository layout has no config and lists nothing of any kind.
fn empty_listing(s: &Subject) {
    let b = &s.backend;
    assert!(!b.exists().unwrap());
    for kind in FileKind::ALL {
        assert_eq!(b.list(kind).unwrap(), vec![], "{kind:?}");
    }
}

/// A listing names every object of its kind once, with its size.
fn list(s: &Subject) {
    let b = &s.backend;
    let mut expected = Vec::new();
    for i in 0..12u64 {
        let (name, data) = named(random_bytes(i, 100 + i as usize * 37));
        b.write(FileKind::Index, &name, &data).unwrap();
        expected.push((name, data.len() as u64));
    }
    // An empty object is an object too.
    let (name, data) = named(Vec::new());
    b.write(FileKind::Index, &name, &data).unwrap();
    expected.push((name, 0));
    assert_eq!(sorted(b.list(FileKind::Index).unwrap()), sorted(expected));
    assert_eq!(b.list(FileKind::Snapshot).unwrap(), vec![]);
}

/// A whole read returns the bytes written; `size` agrees.
fn read_whole(s: &Subject) {
    let b = &s.backend;
    let (name, data) = named(random_bytes(7, 300_001));
    b.write(FileKind::Snapshot, &name, &data).unwrap();
    assert_eq!(b.read(FileKind::Snapshot, &name).unwrap(), data);
    assert_eq!(
        b.size(FileKind::Snapshot, &name).unwrap(),
        data.len() as u64
    );
    b.write(FileKind::Config, "config", b"the config").unwrap();
    assert!(b.exists().unwrap());
    assert_eq!(b.read(FileKind::Config, "config").unwrap(), b"the config");
}

/// Ranges return exactly their bytes; a range past the end is an `UnexpectedEof` error, never
/// fewer bytes.
fn read_range(s: &Subject) {
    let b = &s.backend;
    let (name, data) = named(random_bytes(8, 100_000));
    let size = data.len() as u64;
    b.write(FileKind::Pack, &name, &data).unwrap();
    for (offset, len) in [(0, 1), (0, size), (1, 10), (50_000, 4096), (size - 10, 10)] {
        let got = b.read_range(FileKind::Pack, &name, offset, len).unwrap();
        assert!(
            got == data[offset as usize..(offset + len) as usize],
            "{offset}+{len}"
        );
    }
    assert_eq!(
        b.read_range(FileKind::Pack, &name, size, 0).unwrap(),
        Vec::<u8>::new()
    );
    for (offset, len) in [(size - 10, 11), (size, 1), (size + 1, 0), (u64::MAX, 2)] {
        let e = b
            .read_range(FileKind::Pack, &name, offset, len)
            .expect_err("a range past the end");
        assert_eq!(io_kind(&e), ErrorKind::UnexpectedEof, "{offset}+{len}: {e}");
    }
}

/// An object is written once: writing its name again keeps the first bytes.
fn write_once(s: &Subject) {
    let b = &s.backend;
    b.write(FileKind::Config, "config", b"first").unwrap();
    b.write(FileKind::Config, "config", b"second, longer")
        .unwrap();
    assert_eq!(b.read(FileKind::Config, "config").unwrap(), b"first");
    assert_eq!(
        b.list(FileKind::Config).unwrap(),
        vec![("config".into(), 5)]
    );
    let (name, data) = named(random_bytes(9, 5000));
    b.write(FileKind::Lock, &name, &data).unwrap();
    b.write(FileKind::Lock, &name, &data).unwrap();
    assert_eq!(b.list(FileKind::Lock).unwrap(), vec![(name.clone(), 5000)]);
    assert_eq!(b.read(FileKind::Lock, &name).unwrap(), data);
}

/// A removed object is gone from reads and listings; removing it again succeeds or says
/// `NotFound` (S3 cannot tell), never anything else.
fn remove(s: &Subject) {
    let b = &s.backend;
    let (keep, kept) = named(random_bytes(10, 1000));
    let (gone, data) = named(random_bytes(11, 1000));
    b.write(FileKind::Pack, &keep, &kept).unwrap();
    b.write(FileKind::Pack, &gone, &data).unwrap();
    // A handle on the pack may be cached by a ranged read.
    b.read_range(FileKind::Pack, &gone, 0, 10).unwrap();
    b.remove(FileKind::Pack, &gone).unwrap();
    assert_eq!(b.list(FileKind::Pack).unwrap(), vec![(keep.clone(), 1000)]);
    let e = b.read(FileKind::Pack, &gone).expect_err("removed");
    assert_eq!(io_kind(&e), ErrorKind::NotFound, "{e}");
    let e = b
        .read_range(FileKind::Pack, &gone, 0, 10)
        .expect_err("removed");
    assert_eq!(io_kind(&e), ErrorKind::NotFound, "{e}");
    if let Err(e) = b.remove(FileKind::Pack, &gone) {
        assert_eq!(io_kind(&e), ErrorKind::NotFound, "{e}");
    }
    assert_eq!(b.read(FileKind::Pack, &keep).unwrap(), kept);
}

/// Reading, ranging or sizing an object that is not there is a `NotFound` error.
fn missing_object(s: &Subject) {
    let b = &s.backend;
    let (name, _) = named(b"never written".to_vec());
    for kind in HASHED {
        for e in [
            b.read(kind, &name).map(|_| ()),
            b.read_range(kind, &name, 0, 1).map(|_| ()),
            b.size(kind, &name).map(|_| ()),
        ] {
            let e = e.expect_err("missing");
            assert_eq!(io_kind(&e), ErrorKind::NotFound, "{kind:?}: {e}");
            assert!(!e.is_transient(), "{e}");
        }
    }
    let e = b.read(FileKind::Config, "config").expect_err("no config");
    assert_eq!(io_kind(&e), ErrorKind::NotFound, "{e}");
}

/// Every kind is its own namespace (the same name in two kinds is two objects), packs of any
/// first two characters are found, and a name that is not a plain token is refused before
/// anything is stored.
fn every_kind(s: &Subject) {
    let b = &s.backend;
    b.write(FileKind::Config, "config", b"cfg").unwrap();
    let mut written = Vec::new();
    for (i, kind) in HASHED.into_iter().enumerate() {
        let (name, data) = named(random_bytes(20 + i as u64, 64 + i));
        b.write(kind, &name, &data).unwrap();
        written.push((kind, name, data));
    }
    // Two packs in different fan-out folders.
    let (name, data) = named(random_bytes(30, 99));
    b.write(FileKind::Pack, &name, &data).unwrap();
    written.push((FileKind::Pack, name, data));
    assert_eq!(
        b.list(FileKind::Config).unwrap(),
        vec![("config".into(), 3)]
    );
    for kind in HASHED {
        let mine: Vec<(String, u64)> = written
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, n, d)| (n.clone(), d.len() as u64))
            .collect();
        assert_eq!(sorted(b.list(kind).unwrap()), sorted(mine), "{kind:?}");
    }
    for (kind, name, data) in &written {
        assert_eq!(&b.read(*kind, name).unwrap(), data, "{kind:?}");
    }
    // The same bytes under another kind: a second object, not a clash.
    let (kind, name, data) = &written[0];
    b.write(FileKind::Snapshot, name, data).unwrap();
    assert_eq!(b.list(FileKind::Snapshot).unwrap().len(), 2);
    assert_eq!(b.list(*kind).unwrap().len(), 1);
    for bad in ["", "../config", "a/b", ".hidden", "x y", &"a".repeat(129)] {
        let e = b.write(FileKind::Index, bad, b"x").expect_err(bad);
        assert!(matches!(e, Error::InvalidInput(_)), "{bad:?}: {e}");
        assert!(b.read(FileKind::Index, bad).is_err(), "{bad:?}");
    }
    assert_eq!(b.list(FileKind::Index).unwrap().len(), 1);
}

/// An object larger than a pack target (and than any transport buffer) round-trips.
fn large_object(s: &Subject) {
    let b = &s.backend;
    let (name, data) = named(random_bytes(40, 24 << 20));
    b.write(FileKind::Pack, &name, &data).unwrap();
    assert_eq!(b.size(FileKind::Pack, &name).unwrap(), data.len() as u64);
    assert!(b.read(FileKind::Pack, &name).unwrap() == data);
    let tail = b
        .read_range(
            FileKind::Pack,
            &name,
            data.len() as u64 - (1 << 20),
            1 << 20,
        )
        .unwrap();
    assert!(tail == data[data.len() - (1 << 20)..]);
}

/// Writers of the same name at the same instant all succeed and leave one whole object.
fn concurrent_writers(s: &Subject) {
    let b = &s.backend;
    let (name, data) = named(random_bytes(50, 1 << 20));
    const WRITERS: usize = 6;
    let start = Barrier::new(WRITERS);
    std::thread::scope(|sc| {
        for _ in 0..WRITERS {
            sc.spawn(|| {
                start.wait();
                b.write(FileKind::Pack, &name, &data).unwrap();
            });
        }
    });
    assert_eq!(
        b.list(FileKind::Pack).unwrap(),
        vec![(name.clone(), data.len() as u64)]
    );
    assert!(b.read(FileKind::Pack, &name).unwrap() == data);
}

/// A connection dropped in the middle of an answer is a transient error, and the retry layer
/// reads the object whole on a new connection.
fn dropped_connection_mid_read(s: &Subject) {
    let r = s.remote.as_ref().expect("a backend with a transport");
    let (name, data) = named(random_bytes(60, 4 << 20));
    s.backend.write(FileKind::Pack, &name, &data).unwrap();

    // Without repetitions the cut is seen, and judged transient.
    let once = BackendOptions {
        retry: RetryOptions {
            attempts: 1,
            ..retry()
        },
        ..r.opts.clone()
    };
    let single = backend::open_with(&r.location, &once).unwrap();
    r.proxy.cut_after(256 << 10);
    let e = single
        .read(FileKind::Pack, &name)
        .expect_err("the connection was cut");
    assert_eq!(r.proxy.cuts(), 1);
    assert!(e.is_transient(), "not judged transient: {e}");

    // Through the retry layer the read succeeds.
    r.proxy.cut_after(256 << 10);
    assert!(s.backend.read(FileKind::Pack, &name).unwrap() == data);
    assert_eq!(r.proxy.cuts(), 2, "the second read was cut too");
    r.proxy.cut_after(64 << 10);
    let range = s
        .backend
        .read_range(FileKind::Pack, &name, 1 << 20, 2 << 20)
        .unwrap();
    assert!(range == data[1 << 20..3 << 20]);
    assert_eq!(r.proxy.cuts(), 3, "the ranged read was cut too");
}

/// One test per property for a backend: `conformance!(fixture, extra properties...)`.
macro_rules! conformance {
    ($fixture:ident $(, $extra:ident)*) => {
        mod $fixture {
            conformance!(@tests $fixture: empty_listing, list, read_whole, read_range,
                write_once, remove, missing_object, every_kind, large_object,
                concurrent_writers $(, $extra)*);
        }
    };
    (@tests $fixture:ident: $($property:ident),+) => {
        $(
            #[test]
            fn $property() {
                super::$property(&super::$fixture());
            }
        )+
    };
}

conformance!(local);
conformance!(memory);
conformance!(rest, dropped_connection_mid_read);
conformance!(sftp, dropped_connection_mid_read);
conformance!(s3, dropped_connection_mid_read);
