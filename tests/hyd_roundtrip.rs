//! A generated HydrAIDE root (V3, V2 and V1 Swamps) backed up while nothing writes to it comes
//! back byte for byte, and every restored Swamp loads to the live set of its source.

mod hydcommon;

use hydcommon::*;
use hydrabackup::hyd::replay_file;

#[test]
fn generated_root_round_trips_byte_identical_and_loadable() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 11, 150, "4M", 20, 10);
    let source_swamps = swamps(&src);
    let hyd_count = source_swamps
        .values()
        .filter(|s| matches!(s, Swamp::Hyd(_)))
        .count();
    let v1_count = source_swamps.len() - hyd_count;
    assert!(v1_count > 0 && hyd_count > 0, "the root should mix formats");
    // A compaction's temporary file (about to be renamed over its Swamp) is not backed up;
    // a file that is no Swamp is backed up as it is.
    let some_hyd = source_swamps.values().find_map(|s| match s {
        Swamp::Hyd(p) => Some(p.clone()),
        Swamp::V1(..) => None,
    });
    let compact_temp = format!("{}.compact", some_hyd.unwrap());
    std::fs::copy(
        src.join(&compact_temp[..compact_temp.len() - 8]),
        src.join(&compact_temp),
    )
    .unwrap();
    std::fs::write(src.join("NOTES.txt"), b"not a swamp\n").unwrap();

    let b = hb.backup(&src, &[]);
    assert_eq!(num(&b, "swamps_new"), source_swamps.len() as u64, "{b:#}");
    assert_eq!(num(&b, "swamps_quarantined"), 0, "{b:#}");
    assert_eq!(b["quarantine"].as_array().map(Vec::len), Some(0), "{b:#}");

    // The catalogue lists every Swamp with its format; nothing is quarantined.
    let show = hb.show("latest");
    assert_eq!(show.len(), source_swamps.len());
    let names = swamp_names(&src);
    for (path, row) in &show {
        let s = source_swamps
            .get(path)
            .unwrap_or_else(|| panic!("show lists {path}, which is not a Swamp of the source"));
        let format = row["format"].as_u64().unwrap();
        match s {
            Swamp::Hyd(_) => assert!(format == 2 || format == 3, "{row}"),
            Swamp::V1(..) => assert_eq!(format, 1, "{row}"),
        }
        assert_eq!(row["name"].as_str(), names.get(path).map(String::as_str));
        assert_eq!(row["decision"], "new", "{row}");
        assert!(row["problem"].is_null(), "{row}");
    }
    let formats: Vec<u64> = show
        .values()
        .map(|r| r["format"].as_u64().unwrap())
        .collect();
    for f in [1, 2, 3] {
        assert!(
            formats.contains(&f),
            "no Swamp of format {f} in {formats:?}"
        );
    }

    let out = hb.path("restored");
    let r = hb.restore("latest", &out, &[]);
    let mut before = read_files(&src);
    assert!(before.remove(&compact_temp).is_some());
    assert_eq!(num(&r, "files") as usize, before.len(), "{r:#}");
    let after = read_files(&out);
    assert_same_content(&before, &after);
    for (k, f) in &before {
        assert_eq!(after[k].mtime_ns, f.mtime_ns, "mtime of {k}");
    }

    // Every restored .hyd file loads to the live set of its source.
    for s in source_swamps.values() {
        if let Swamp::Hyd(p) = s {
            let a = replay_file(&src.join(p)).unwrap_or_else(|e| panic!("source {p}: {e}"));
            let b = replay_file(&out.join(p)).unwrap_or_else(|e| panic!("restored {p}: {e}"));
            assert_eq!(a.live, b.live, "live set of {p}");
            assert_eq!(a.name, b.name, "name of {p}");
            assert_eq!(a.blocks, b.blocks, "blocks of {p}");
        }
    }
    assert_hydgen_check(&out);
}

#[test]
fn instance_name_resolves_to_its_data_root() {
    let hb = Hb::new();
    let base = hb.path("srv/hydraide-prod");
    let data = base.join("data");
    gen_root(&data, 12, 30, "600K", 20, 10);
    let home = hb.path("home");
    std::fs::create_dir_all(home.join(".hydraide")).unwrap();
    let meta = serde_json::json!({
        "staging": {"base_path": hb.path("srv/elsewhere")},
        "prod": {"base_path": base},
    });
    std::fs::write(
        home.join(".hydraide/metadata.json"),
        serde_json::to_vec_pretty(&meta).unwrap(),
    )
    .unwrap();
    let with_home = |args: &[&str]| {
        let mut c = hb.command();
        c.env("HOME", &home).args(args);
        run_command(c)
    };

    let b = with_home(&["backup", "--json", "--instance", "prod"])
        .expect(0)
        .json();
    assert_eq!(num(&b, "swamps_new") as usize, swamps(&data).len(), "{b:#}");
    let snaps = hb.json(&["snapshots"]);
    assert_eq!(
        snaps[0]["paths"],
        serde_json::json!([data.to_str().unwrap()]),
        "{snaps:#}"
    );
    let out = hb.path("restored");
    hb.restore("latest", &out, &[]);
    assert_same_content(&read_files(&data), &read_files(&out));

    // An instance that is not listed: a clear error, no snapshot.
    let o = with_home(&["backup", "--instance", "nope"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("nope"), "{}", o.stderr);
    assert_eq!(hb.json(&["snapshots"]).as_array().unwrap().len(), 1);
}
