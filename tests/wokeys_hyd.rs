//! A HydrAIDE data root backed up with a write-only key: after a day of churn the second backup
//! reads only what changed (the parent and its Swamp facts come from the send log), and a full
//! key restores every Swamp, by name too (the name index the host wrote).

mod hydcommon;

use std::process::Command;

use hydcommon::*;

const WO_PASSWORD: &str = "database host";

fn on_host(hb: &Hb, args: &[&str]) -> Command {
    let mut c = hb.command();
    c.env("HYDRABACKUP_PASSWORD", WO_PASSWORD)
        .env("HYDRABACKUP_CACHE_DIR", hb.path("host-cache"))
        .args(args);
    c
}

#[test]
fn a_write_only_host_backs_up_a_data_root_incrementally() {
    let hb = Hb::new();
    let mut c = hb.command();
    c.env("HYDRABACKUP_NEW_PASSWORD", WO_PASSWORD)
        .args(["key", "add", "--write-only"]);
    run_command(c).expect(0);
    let src = hb.path("data");
    gen_root(&src, 61, 80, "3M", 20, 10);
    let root = src.to_str().unwrap();
    let first = run_command(on_host(&hb, &["backup", "--json", root]))
        .expect(0)
        .json();
    assert_eq!(num(&first, "swamps_new") as usize, swamps(&src).len());

    churn_root(
        &src,
        7,
        &["--delete-percent", "3", "--append-percent", "12"],
    );
    let second = run_command(on_host(&hb, &["backup", "--json", root]))
        .expect(0)
        .json();
    assert_eq!(second["parent"], first["snapshot_id"], "{second:#}");
    assert!(num(&second, "swamps_unchanged") > 0, "{second:#}");
    assert!(num(&second, "swamps_appended") > 0, "{second:#}");
    assert!(
        num(&second, "bytes_read") < num(&first, "bytes_read") / 2,
        "the incremental read {} of {} bytes: {second:#}",
        num(&second, "bytes_read"),
        num(&first, "bytes_read")
    );

    // The full key restores the whole root, and a single Swamp through the name index.
    let v = hb.json(&["verify", "--read-data"]);
    assert_eq!(v["ok"], true, "{v:#}");
    let out = hb.path("restored");
    hb.restore("latest", &out, &[]);
    assert_same_content(&read_files(&src), &read_files(&out));
    let (path, name) = swamp_names(&src)
        .into_iter()
        .find(|(p, _)| p.ends_with(".hyd"))
        .unwrap();
    let one = hb.path("one");
    hb.restore("latest", &one, &["--swamp", &name]);
    assert_eq!(
        std::fs::read(one.join(&path)).unwrap(),
        std::fs::read(src.join(&path)).unwrap()
    );
}
