//! Configuration and the commands restic users reach for, with the real binary: profiles
//! (precedence command line > environment > profile, `config show`), the stored retention
//! policy (`policy`, `forget` without arguments, `purge`, refused through an append-only
//! server), `diff`, `find`, `tag`, `repair index|snapshots`, completions, man pages, `--threads`
//! and the bandwidth limits.

mod common;
mod restcommon;

use std::fs;
use std::path::Path;
use std::time::Instant;

use common::*;
use serde_json::Value;

/// Writes `text` as a profile file in the test folder; returns its path.
fn profile_file(t: &TestRepo, text: &str) -> String {
    let p = t.path("profiles.toml");
    fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// The binary with neither repository nor password in the environment (the profile gives them).
fn bare(t: &TestRepo) -> std::process::Command {
    let mut c = t.command();
    c.env_remove("HYDRABACKUP_REPOSITORY")
        .env_remove("HYDRABACKUP_PASSWORD");
    c
}

fn run_bare(t: &TestRepo, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut c = bare(t);
    c.envs(env.iter().copied()).args(args);
    run_cmd(c)
}

/// Paths (relative, `/` first) of the files in snapshot `snap` of the repository at `repo`.
fn files_of(t: &TestRepo, repo: &Path, snap: &str) -> Vec<String> {
    let mut c = t.command();
    c.env("HYDRABACKUP_REPOSITORY", repo)
        .args(["ls", snap, "--json"]);
    let v = run_cmd(c).expect_code(0).json();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "file")
        .map(|e| {
            let p = e["path"].as_str().unwrap();
            format!("/{}", p.trim_start_matches('/'))
        })
        .collect()
}

fn snapshot_count(t: &TestRepo, repo: &Path) -> usize {
    let mut c = t.command();
    c.env("HYDRABACKUP_REPOSITORY", repo)
        .args(["snapshots", "--json"]);
    run_cmd(c).expect_code(0).json().as_array().unwrap().len()
}

#[test]
fn a_profile_drives_a_backup_and_the_environment_and_command_line_override_it() {
    let t = TestRepo::new();
    let pw = t.path("pw");
    fs::write(&pw, format!("{}\n", t.password)).unwrap();
    let src = t.path("src");
    write(&src.join("keep.txt"), b"kept");
    write(&src.join("skip.tmp"), b"excluded by the profile");
    let (a, b, c) = (t.path("a"), t.path("b"), t.path("c"));
    let f = profile_file(
        &t,
        &format!(
            r#"
[prod]
repo = "{}"
password-file = "{}"

[prod.backup]
paths = ["{}"]
exclude = ["*.tmp"]
tag = ["nightly", "profile"]
metrics-file = "{}"
hook-after = "touch {}"
"#,
            a.display(),
            pw.display(),
            src.display(),
            t.path("backup.prom").display(),
            t.path("hooked").display()
        ),
    );
    let p = ["-P", "prod", "--profile-file", f.as_str()];
    let with =
        |extra: &[&str]| -> Vec<String> { p.iter().chain(extra).map(|s| s.to_string()).collect() };
    let run = |env: &[(&str, &str)], extra: &[&str]| {
        let args = with(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_bare(&t, env, &args)
    };
    // Repository and password file from the profile.
    run(&[], &["init"]).expect_code(0);
    let v = run(&[], &["backup", "--json"]).expect_code(0).json();
    let id = v["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(files_of(&t, &a, &id), vec!["/keep.txt".to_string()]);
    // Metrics and hooks are keys like any other.
    let prom = fs::read_to_string(t.path("backup.prom")).unwrap();
    assert!(prom.contains("command=\"backup\""), "{prom}");
    assert!(
        t.path("hooked").exists(),
        "the profile's hook-after did not run"
    );
    let snaps = {
        let mut c = t.command();
        c.env("HYDRABACKUP_REPOSITORY", &a)
            .args(["snapshots", "--json"]);
        run_cmd(c).expect_code(0).json()
    };
    assert_eq!(snaps[0]["tags"], serde_json::json!(["nightly", "profile"]));

    // The environment overrides the profile...
    let b_s = b.to_str().unwrap();
    run(&[("HYDRABACKUP_REPOSITORY", b_s)], &["init"]).expect_code(0);
    run(&[("HYDRABACKUP_REPOSITORY", b_s)], &["backup", "-q"]).expect_code(0);
    // ... and the command line overrides both (a path given replaces the profile's paths).
    let c_s = c.to_str().unwrap();
    run(&[("HYDRABACKUP_REPOSITORY", b_s)], &["-r", c_s, "init"]).expect_code(0);
    let only = src.join("skip.tmp");
    run(
        &[("HYDRABACKUP_REPOSITORY", b_s)],
        &[
            "-r",
            c_s,
            "backup",
            "-q",
            "--exclude",
            "nothing",
            only.to_str().unwrap(),
        ],
    )
    .expect_code(0);
    assert_eq!(snapshot_count(&t, &a), 1);
    assert_eq!(snapshot_count(&t, &b), 1);
    assert_eq!(snapshot_count(&t, &c), 1);
    // The command line's --exclude replaced the profile's, so the .tmp file is in.
    assert_eq!(files_of(&t, &c, "latest"), vec!["/skip.tmp".to_string()]);
}

#[test]
fn config_show_merges_profile_environment_and_command_line_and_redacts_secrets() {
    let t = TestRepo::new();
    let f = profile_file(
        &t,
        r#"
[p]
repo = "rest:https://alice:s3cret@backup.example:8443/alice"
password-command = "echo hunter2"
key-hint = "abcd"

[p.backup]
exclude = ["cache", "*.tmp"]
password-file = "/from/profile"

[p.forget]
keep-daily = 7
"#,
    );
    let args = [
        "-P",
        "p",
        "--profile-file",
        f.as_str(),
        "config",
        "show",
        "--json",
    ];
    let v = run_bare(&t, &[], &args).expect_code(0).json();
    let g = &v["global"];
    assert_eq!(
        g["repo"]["value"],
        "rest:https://alice:<redacted>@backup.example:8443/alice"
    );
    assert_eq!(g["repo"]["source"], "profile");
    assert_eq!(g["password-command"]["value"], "<redacted>");
    assert_eq!(g["key-hint"]["source"], "profile");
    assert_eq!(
        v["commands"]["backup"]["exclude"]["value"],
        serde_json::json!(["cache", "*.tmp"])
    );
    assert_eq!(v["commands"]["forget"]["keep-daily"]["value"], 7);
    assert!(v["commands"]["backup"]["password-file"]["overridden_by"].is_null());
    let all = v.to_string();
    assert!(!all.contains("s3cret") && !all.contains("hunter2"), "{all}");

    // The environment beats the profile, the command line beats the environment.
    let env = [
        ("HYDRABACKUP_KEY_HINT", "fromenv"),
        ("HYDRABACKUP_PASSWORD_FILE", "/from/env"),
        ("HYDRABACKUP_REPOSITORY", "/env/repo"),
    ];
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["-r", "/line/repo"]);
    let v = run_bare(&t, &env, &a).expect_code(0).json();
    let g = &v["global"];
    assert_eq!(g["key-hint"]["value"], "fromenv");
    assert!(
        g["key-hint"]["source"]
            .as_str()
            .unwrap()
            .starts_with("environment"),
        "{g}"
    );
    assert_eq!(g["repo"]["value"], "/line/repo");
    assert_eq!(g["repo"]["source"], "command line");
    assert_eq!(
        v["commands"]["backup"]["password-file"]["overridden_by"],
        "environment variable HYDRABACKUP_PASSWORD_FILE"
    );
    let over: Vec<(&str, &str)> = v["overridden"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["key"].as_str().unwrap(),
                o["overridden_by"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(over.contains(&("repo", "command line")), "{over:?}");
    assert!(
        over.contains(&("key-hint", "environment variable HYDRABACKUP_KEY_HINT")),
        "{over:?}"
    );
    assert!(!v.to_string().contains("s3cret"));

    // The profile can be chosen by the environment too.
    let env = [
        ("HYDRABACKUP_PROFILE", "p"),
        ("HYDRABACKUP_PROFILE_FILE", f.as_str()),
    ];
    let v = run_bare(&t, &env, &["config", "show", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(v["profile"], "p");
    assert_eq!(v["global"]["key-hint"]["value"], "abcd");

    // Human output names the profile and each source.
    let r = run_bare(&t, &[], &args[..args.len() - 1]);
    r.expect_code(0);
    assert!(r.stdout.contains("# profile p from"), "{}", r.stdout);
    assert!(
        r.stdout.contains("[forget]\nkeep-daily = 7  # profile"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("hunter2"));
}

#[test]
fn bad_profiles_are_clear_errors() {
    let t = TestRepo::new();
    let cases = [
        ("[p]\nrepoo = \"/x\"\n", "\"repoo\""),
        ("[p.backup]\nexclud = [\"a\"]\n", "[backup] \"exclud\""),
        ("[p]\nexclude = [\"a\"]\n", "not a global option"),
        ("[p.bakup]\nexclude = [\"a\"]\n", "no such command"),
        ("[p.forget]\nkeep-daily = [1, 2]\n", "takes one value"),
        ("[p]\njson = \"yes\"\n", "true or false"),
        ("[p]\nrepo = \n", "profile file"),
        ("[q]\nrepo = \"/x\"\n", "profile p (looked in"),
    ];
    for (text, want) in cases {
        let f = profile_file(&t, text);
        let r = run_bare(&t, &[], &["-P", "p", "--profile-file", &f, "snapshots"]);
        r.expect_code(2).expect_clean_error();
        assert!(r.stderr.contains(want), "{text:?}: {}", r.stderr);
    }
}

/// Backs up generation `g` of a small source at day `day` of December 2026.
fn backup_at(t: &TestRepo, src: &Path, day: u32) -> String {
    write(&src.join("f"), format!("day {day}").as_bytes());
    let time = format!("2026-12-{day:02} 03:00");
    let v = t.backup_args(&[src], &["--time", &time]);
    v["snapshot_id"].as_str().unwrap().to_string()
}

#[test]
fn the_stored_policy_drives_forget_without_arguments_and_purge() {
    let t = TestRepo::init();
    let src = t.path("src");
    let ids: Vec<String> = (1..=4).map(|d| backup_at(&t, &src, d)).collect();

    // Nothing stored yet: clear errors, nothing removed.
    let r = t.run(&["policy", "show"]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("policy set"), "{}", r.stderr);
    t.run(&["forget", "--yes"])
        .expect_code(1)
        .expect_clean_error();
    assert_eq!(t.snapshots().len(), 4);
    t.run(&["policy", "set", "--retention", "7x"])
        .expect_code(1)
        .expect_clean_error();

    let set = t.json(&["policy", "set", "--retention", "3l"]);
    assert_eq!(set["policy"]["retention"], "3l");
    assert_eq!(set["replaced"], 0);
    let show = t.json(&["policy", "show"]);
    assert_eq!(show["id"], set["id"]);
    assert_eq!(show["policy"]["group_by"], "host,paths");

    // forget without arguments applies it (a dry run first changes nothing).
    let dry = t.json(&["forget", "--dry-run"]);
    assert_eq!(dry["removed"], 1);
    assert_eq!(t.snapshots().len(), 4);
    let out = t.json(&["forget", "--yes"]);
    assert_eq!(out["removed"], 1);
    assert_eq!(out["groups"][0]["remove"][0]["id"], ids[0].as_str());

    // A new policy replaces the old object; purge = forget by it + prune.
    let set2 = t.json(&["policy", "set", "--retention", "1l", "--keep-tag", "gold"]);
    assert_eq!(set2["replaced"], 1);
    assert_eq!(fs::read_dir(t.repo.join("policy")).unwrap().count(), 1);
    // purge deletes: without a terminal it wants --yes (a dry run does not).
    let r = t.run(&["purge"]);
    r.expect_code(17).expect_clean_error();
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);
    assert_eq!(t.json(&["purge", "--dry-run"])["removed"], 2);
    assert_eq!(t.snapshots().len(), 3);
    let purge = t.json(&["purge", "--yes"]);
    assert_eq!(purge["removed"], 2);
    assert!(
        purge["prune"]["pack_bytes_after"].as_u64().is_some(),
        "{purge}"
    );
    let left: Vec<String> = t
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, vec![ids[3].clone()]);
    t.assert_verify_ok(&[]);
    // Explicit rules still win over the stored policy.
    let explicit = t.json(&["forget", "--keep-last", "5", "--dry-run"]);
    assert_eq!(explicit["removed"], 0);

    // A damaged policy object is damage to verify and stops forget by policy.
    let obj = fs::read_dir(t.repo.join("policy"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = fs::read(&obj).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&obj, bytes).unwrap();
    let (code, v) = t.verify(&[]);
    assert_eq!(code, 13);
    assert_eq!(v["problems"][0]["kind"], "policy", "{v:#}");
    t.run(&["forget", "--yes"])
        .expect_code(13)
        .expect_clean_error();
    assert_eq!(t.snapshots().len(), 1);
    t.json(&["policy", "set", "--retention", "2l"]);
    t.assert_verify_ok(&[]);
    // Explicit rules still win over the stored policy.
    let explicit = t.json(&["forget", "--keep-last", "5", "--dry-run"]);
    assert_eq!(explicit["removed"], 0);
}

#[test]
fn an_append_only_server_refuses_to_change_the_policy() {
    use restcommon::*;
    let t = TestRepo::new();
    let open = Server::start(&t, &["--no-auth"]);
    let loc = open.location(None, "r");
    hb(&t, &loc, None, &["init"]).expect_code(0);
    // Through a server that allows it, the policy is stored and read back.
    hb(&t, &loc, None, &["policy", "set", "--retention", "7d,4w"]).expect_code(0);
    let v = hb(&t, &loc, None, &["policy", "show", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(v["policy"]["retention"], "7d,4w");
    drop(open);
    let s = Server::start(&t, &["--no-auth", "--append-only"]);
    let loc = s.location(None, "r");
    let r = hb(&t, &loc, None, &["policy", "set", "--retention", "1l"]);
    r.expect_code(1).expect_clean_error();
    assert!(
        r.stderr.contains("policy cannot be changed"),
        "{}",
        r.stderr
    );
    let v = hb(&t, &loc, None, &["policy", "show", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(v["policy"]["retention"], "7d,4w");
}

#[test]
fn diff_and_find_report_known_changes() {
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("same"), b"unchanged");
    write(&src.join("edit"), b"before");
    write(&src.join("gone"), &random_bytes(1, 1000));
    write(&src.join("dir/inner"), b"x");
    let first = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    write(&src.join("edit"), b"after, longer");
    fs::remove_file(src.join("gone")).unwrap();
    write(&src.join("new/deep/file"), &random_bytes(2, 5000));
    let second = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();

    let v = t.json(&["diff", &first, &second]);
    let changes: Vec<(String, String)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("modified", "/edit"),
        ("removed", "/gone"),
        ("added", "/new"),
        ("added", "/new/deep"),
        ("added", "/new/deep/file"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(changes, want, "{v:#}");
    let tot = &v["totals"];
    assert_eq!(tot["files_added"], 1);
    assert_eq!(tot["bytes_added"], 5000);
    assert_eq!(tot["files_removed"], 1);
    assert_eq!(tot["bytes_removed"], 1000);
    assert_eq!(tot["files_modified"], 1);
    assert_eq!(tot["dirs_added"], 2);
    let edit = &v["changes"][0];
    assert_eq!(
        (edit["size_before"].as_u64(), edit["size_after"].as_u64()),
        (Some(6), Some(13))
    );
    // The same snapshot twice: nothing.
    let none = t.json(&["diff", &second, &second]);
    assert_eq!(none["changes"].as_array().unwrap().len(), 0);
    let human = t
        .run(&["diff", &first, &second])
        .expect_code(0)
        .stdout
        .clone();
    assert!(
        human.contains("M    /edit\n-    /gone\n+    /new/\n"),
        "{human}"
    );

    // find: by name in the newer snapshot only; by path glob; in both, newest first.
    let v = t.json(&["find", "file"]);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["snapshot"], second.as_str());
    assert_eq!(v[0]["matches"][0]["path"], "/new/deep/file");
    assert_eq!(v[0]["matches"][0]["size"], 5000);
    let v = t.json(&["find", "gone"]);
    assert_eq!(v[0]["snapshot"], first.as_str());
    let v = t.json(&["find", "/dir/*"]);
    let snaps: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(snaps, vec![second.as_str(), first.as_str()]);
    assert_eq!(
        t.json(&["find", "nothing*here"]).as_array().unwrap().len(),
        0
    );
}

/// The Swamp name of every `.hyd` file under `root`, by path relative to it.
fn swamp_names(root: &Path) -> std::collections::BTreeMap<String, String> {
    use hydrabackup::hyd::walk::{Found, walk_root};
    walk_root(root)
        .unwrap()
        .into_iter()
        .filter_map(|f| match f {
            Found::Hyd(p) => {
                let name = hydrabackup::hyd::replay_file(&p).unwrap().name?;
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                Some((rel, name))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn find_and_diff_name_swamps() {
    let t = TestRepo::init();
    let root = t.path("data");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_hydgen"))
        .args([
            "gen",
            "--seed",
            "11",
            "--swamps",
            "4",
            "--size",
            "200K",
            "--v1-percent",
            "0",
        ])
        .arg("--root")
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    let names = swamp_names(&root);
    assert_eq!(names.len(), 4);
    let first = t.backup(&[&root])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    // One Swamp destroyed.
    let (gone_path, gone_name) = names.iter().next().unwrap();
    fs::remove_file(root.join(gone_path)).unwrap();
    let second = t.backup(&[&root])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();

    let v = t.json(&["diff", &first, &second]);
    assert_eq!(v["totals"]["swamps_removed"], 1, "{v:#}");
    assert_eq!(v["totals"]["swamps_added"], 0);
    assert_eq!(v["swamps"][0]["name"], gone_name.as_str());
    assert_eq!(v["swamps"][0]["change"], "removed");
    // find by Swamp name: only the first snapshot holds the destroyed one, both hold the rest.
    let v = t.json(&["find", gone_name]);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v[0]["snapshot"], first.as_str());
    assert_eq!(v[0]["matches"][0]["swamp"], gone_name.as_str());
    assert_eq!(v[0]["matches"][0]["path"], format!("/{gone_path}"));
    let (kept_path, kept_name) = names.iter().nth(1).unwrap();
    let v = t.json(&["find", kept_name]);
    let snaps: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(snaps, vec![second.as_str(), first.as_str()], "newest first");
    assert_eq!(v[0]["matches"][0]["path"], format!("/{kept_path}"));

    // A day of churn: diff's Swamp counts agree with the backup's own decisions.
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_hydgen"))
        .args(["churn", "--seed", "12", "--root"])
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let third = t.backup(&[&root]);
    let s = &third;
    let v = t.json(&["diff", &second, third["snapshot_id"].as_str().unwrap()]);
    let d = &v["totals"];
    let n = |k: &str| d[k].as_u64().unwrap();
    assert!(
        n("swamps_added") + n("swamps_removed") + n("swamps_modified") > 0,
        "the churn changed nothing: {v:#}"
    );
    assert_eq!(d["swamps_added"], s["swamps_new"], "{v:#}");
    assert_eq!(d["swamps_removed"], s["swamps_gone"]);
    assert_eq!(
        d["swamps_modified"].as_u64().unwrap(),
        s["swamps_appended"].as_u64().unwrap() + s["swamps_rewritten"].as_u64().unwrap()
    );
}

#[test]
fn tag_rewrites_snapshots_keeping_their_time_and_recording_the_original() {
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("f"), b"data");
    let id = t.backup_args(&[&src], &["--tag", "a", "--tag", "b"])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = t.snapshots()[0].clone();

    let v = t.json(&["tag", &id[..8], "--add", "c", "--remove", "a"]);
    let new = v["changed"][0]["new"].as_str().unwrap().to_string();
    assert_eq!(v["changed"][0]["old"], id.as_str());
    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 1);
    let s = &snaps[0];
    assert_eq!(s["id"], new.as_str());
    assert_eq!(s["tags"], serde_json::json!(["b", "c"]));
    assert_eq!(s["time"], before["time"]);
    assert_eq!(s["tree"], before["tree"]);
    assert_eq!(s["original"], id.as_str());

    // Killed between the new snapshot and the removal of the old one: both are there, whole.
    let mut c = t.command();
    c.env("HYDRABACKUP_FAILPOINT", "tag-after-save")
        .args(["tag", "latest", "--add", "killed"]);
    assert_eq!(run_cmd(c).signal, Some(9), "tag was not killed");
    assert_eq!(t.snapshots().len(), 2);
    t.assert_verify_ok(&[]);
    let killed = t
        .snapshots()
        .into_iter()
        .find(|s| s["tags"].as_array().unwrap().iter().any(|t| t == "killed"))
        .unwrap();
    t.json(&["forget", "--yes", killed["id"].as_str().unwrap()]);

    // Asking for what is already there changes nothing; --set replaces; the original stays
    // the first id.
    let v = t.json(&["tag", "latest", "--add", "b"]);
    assert_eq!(v["changed"].as_array().unwrap().len(), 0);
    assert_eq!(v["unchanged"][0], new.as_str());
    let v = t.json(&["tag", "latest", "--set", "gold"]);
    let s = &t.snapshots()[0];
    assert_eq!(s["tags"], serde_json::json!(["gold"]));
    assert_eq!(s["id"], v["changed"][0]["new"]);
    assert_eq!(s["original"], id.as_str());
    t.run(&["tag", "latest"])
        .expect_code(1)
        .expect_clean_error();
    t.run(&["tag", "latest", "--set", "x", "--add", "y"])
        .expect_code(2);
    t.assert_verify_ok(&[]);
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_eq!(fs::read(out.join("f")).unwrap(), b"data");
}

/// Every file under `dir` with its bytes.
fn tree_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                v.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    v.sort();
    v
}

#[test]
fn repair_index_rebuilds_lost_index_files_from_pack_headers() {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    let src = t.path("src");
    random_files(&src, 7, 6, 400_000);
    t.backup(&[&src]);
    write(&src.join("later"), &random_bytes(9, 300_000));
    t.backup(&[&src]);
    for e in fs::read_dir(t.repo.join("index")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let (code, _) = t.verify(&[]);
    assert_eq!(code, 13, "lost index files are damage");

    let dry = t.json(&["repair", "index", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(fs::read_dir(t.repo.join("index")).unwrap().count(), 0);
    // Killed after writing the new index files, before removing old ones: already whole.
    let mut c = t.command();
    c.env("HYDRABACKUP_FAILPOINT", "repair-index-before-delete")
        .args(["repair", "index"]);
    assert_eq!(run_cmd(c).signal, Some(9), "repair was not killed");
    t.assert_verify_ok(&[]);
    let v = t.json(&["repair", "index"]);
    let packs = v["packs"].as_u64().unwrap();
    assert!(packs >= 4, "{v:#}");
    assert_eq!(v["packs_added"], 0, "the killed run had indexed them all");
    assert_eq!(v["index_files_removed"], 1);
    assert_eq!(v["damaged_packs"].as_array().unwrap().len(), 0);
    t.assert_verify_ok(&["--read-data"]);
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_eq!(tree_of(&out), tree_of(&src));
}

#[test]
fn repair_snapshots_drops_what_a_lost_pack_held_and_keeps_the_rest() {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    let src = t.path("src");
    write(&src.join("old"), &random_bytes(1, 200_000));
    t.backup(&[&src]);
    let before: std::collections::BTreeSet<_> = pack_files(&t.repo);
    write(&src.join("new"), &random_bytes(2, 200_000));
    let second = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The data pack the second backup wrote holds only `new`'s data: lose it.
    let added: Vec<_> = pack_files(&t.repo).difference(&before).cloned().collect();
    let data_pack = added
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    fs::remove_file(data_pack).unwrap();

    t.json(&["repair", "index"]);
    let dry = t.json(&["repair", "snapshots", "--dry-run"]);
    assert_eq!(dry["repaired"][0]["new"], Value::Null);
    assert_eq!(t.snapshots().len(), 2);
    let v = t.json(&["repair", "snapshots", "--forget"]);
    assert_eq!(v["checked"], 2);
    let r = &v["repaired"][0];
    assert_eq!(r["old"], second.as_str());
    assert_eq!(r["removed"], serde_json::json!(["/new"]));
    assert_eq!(r["forgotten"], true);
    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 2);
    let repaired = snaps
        .iter()
        .find(|s| s["id"] == r["new"])
        .expect("the repaired snapshot");
    assert_eq!(repaired["tags"], serde_json::json!(["repaired"]));
    assert_eq!(repaired["original"], second.as_str());
    t.assert_verify_ok(&["--read-data"]);
    let out = t.path("out");
    t.restore(r["new"].as_str().unwrap(), &out, &[]);
    assert_eq!(fs::read(out.join("old")).unwrap(), random_bytes(1, 200_000));
    assert!(!out.join("new").exists());
    // A second run finds nothing to repair.
    let again = t.json(&["repair", "snapshots"]);
    assert_eq!(again["repaired"].as_array().unwrap().len(), 0);
}

fn pack_files(repo: &Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    let mut s = std::collections::BTreeSet::new();
    for d in fs::read_dir(repo.join("data")).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            s.insert(f.unwrap().path());
        }
    }
    s
}

#[test]
fn completions_for_three_shells_and_man_pages() {
    let t = TestRepo::new();
    for shell in ["bash", "zsh", "fish"] {
        let r = t.run(&["completion", shell]);
        r.expect_code(0);
        for word in ["backup", "restore", "purge", "diff", "keep-daily"] {
            assert!(r.stdout.contains(word), "{shell} completion lacks {word}");
        }
        if shell == "bash" {
            let f = t.path("hb.bash");
            fs::write(&f, &r.stdout).unwrap();
            let st = std::process::Command::new("bash")
                .arg("-n")
                .arg(&f)
                .status()
                .unwrap();
            assert!(st.success(), "bash -n rejects the completion script");
        }
    }
    t.run(&["completion", "tcsh"]).expect_code(2);

    let dir = t.path("man");
    let v = t.json(&["man", dir.to_str().unwrap()]);
    let pages: Vec<&str> = v["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for want in [
        "hydrabackup.1",
        "hydrabackup-backup.1",
        "hydrabackup-key-add.1",
        "hydrabackup-repair-index.1",
    ] {
        assert!(pages.contains(&want), "{want} missing from {pages:?}");
    }
    let page = fs::read_to_string(dir.join("hydrabackup-backup.1")).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(
        page.contains("exclude"),
        "the backup page documents --exclude"
    );
}

#[test]
fn bandwidth_limits_hold_transfers_to_their_rate() {
    let t = TestRepo::init();
    let src = t.path("src");
    // 3 MiB of incompressible data at 1 MiB/s: at least 2 s (the first second's worth passes
    // at once), however fast the machine.
    write(&src.join("big"), &random_bytes(3, 3 << 20));
    let start = Instant::now();
    t.backup_args(&[&src], &["--limit-upload", "1024"]);
    let up = start.elapsed().as_secs_f64();
    assert!(
        up >= 1.8,
        "3 MiB stored in {up:.2} s despite a 1 MiB/s limit"
    );
    let out = t.path("out");
    let start = Instant::now();
    t.restore("latest", &out, &["--limit-download", "1024"]);
    let down = start.elapsed().as_secs_f64();
    assert!(
        down >= 1.8,
        "3 MiB read in {down:.2} s despite a 1 MiB/s limit"
    );
    assert_eq!(fs::read(out.join("big")).unwrap().len(), 3 << 20);
    t.run(&["--limit-upload", "0", "snapshots"]).expect_code(2);
}

#[test]
fn threads_bound_the_worker_pool() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 4, 8, 100_000);
    let a = t.backup_args(&[&src], &["--threads", "1"]);
    let b = t.backup_args(&[&src], &["--force"]);
    assert_eq!(a["total_bytes"].as_u64(), Some(800_000));
    assert_eq!(b["total_bytes"], a["total_bytes"]);
    assert_eq!(b["files_read"], 8, "--force reads everything again");
    let mut c = t.command();
    c.env("HYDRABACKUP_THREADS", "1")
        .args(["verify", "--read-data", "--json"]);
    assert_eq!(run_cmd(c).expect_code(0).json()["ok"], true);
    t.run(&["--threads", "0", "snapshots"]).expect_code(2);
}
