//! A repository on a full disk: the backup fails with exit 14 and one clear line, the repository
//! stays consistent (verify passes), no temporary file is left behind, and once space is freed
//! (here: a repository copied to a roomy disk) backups work again.
//!
//! Needs to mount a small tmpfs (root on Linux), so it is `#[ignore]`d: scripts/test.sh runs it
//! when root (`cargo test --test full_disk -- --ignored`).

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_hydrabackup");

fn run(repo: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("HYDRABACKUP_REPOSITORY", repo)
        .env("HYDRABACKUP_PASSWORD", "pw")
        .env("HYDRABACKUP_KDF_MEMORY", "64")
        .env("HYDRABACKUP_KDF_ITERATIONS", "1")
        .env_remove("HYDRABACKUP_FAILPOINT")
        .output()
        .expect("binary runs")
}

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
#[ignore = "mounts a tmpfs, which needs root: scripts/test.sh runs it when root"]
fn backup_onto_a_full_disk_fails_cleanly_and_leaves_a_consistent_repository() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mnt)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "cannot mount a tmpfs here (needs root on Linux)");
    let _mount = Mount(mnt.clone());
    let repo = mnt.join("repo");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("small"), b"fits").unwrap();

    assert!(run(&repo, &["init", "--pack-size", "1"]).status.success());
    let first = run(&repo, &["backup", src.to_str().unwrap()]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    // 8 MB of incompressible data cannot fit in 3 MB.
    std::fs::write(src.join("big"), pseudo_random(8 << 20, 7)).unwrap();
    let full = run(&repo, &["backup", src.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert_eq!(full.status.code(), Some(14), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line of error, got: {stderr}");
    assert!(lines[0].contains("No space left"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // No half-written object remains, and what is there verifies.
    let leftovers: Vec<_> = std::fs::read_dir(repo.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let verify = run(&repo, &["verify", "--read-data"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let snaps: serde_json::Value =
        serde_json::from_slice(&run(&repo, &["snapshots", "--json"]).stdout).unwrap();
    assert_eq!(
        snaps.as_array().unwrap().len(),
        1,
        "the failed run wrote no snapshot"
    );

    // With room again, the same repository takes the backup.
    let roomy = dir.path().join("roomy");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&repo)
        .arg(&roomy)
        .status()
        .unwrap();
    assert!(cp.success());
    let again = run(&roomy, &["backup", src.to_str().unwrap()]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let out = dir.path().join("out");
    assert!(
        run(
            &roomy,
            &["restore", "latest", "--target", out.to_str().unwrap()]
        )
        .status
        .success()
    );
    assert_eq!(
        std::fs::read(out.join("big")).unwrap(),
        std::fs::read(src.join("big")).unwrap()
    );
}
