//! Observability with the real binary: the `--json` stream of long commands, the Prometheus
//! metrics file and Pushgateway push, notification hooks, `serve`'s `/metrics`, and the
//! progress display (quiet without a terminal, a bar with ETA on one).

mod common;
#[path = "restcommon/mod.rs"]
mod restcommon;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// One sample of a metrics file: its labels and value.
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// A strict parser of the Prometheus text format (0.0.4) as far as hydrabackup writes it:
/// every sample's metric has exactly one `# TYPE` line before it, names and label names are
/// valid, label values are quoted with `\\`, `\"` and `\n` escapes, values are floats.
fn parse_prometheus(text: &str) -> Samples {
    let name_ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Samples::new();
    assert!(text.ends_with('\n'), "no final newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut it = rest.splitn(3, ' ');
            let (kw, name) = (it.next().unwrap(), it.next().unwrap());
            assert!(name_ok(name), "bad name in {line:?}");
            match kw {
                "HELP" => assert!(it.next().is_some_and(|h| !h.is_empty()), "{line:?}"),
                "TYPE" => {
                    let t = it.next().unwrap();
                    assert!(["gauge", "counter"].contains(&t), "{line:?}");
                    assert!(
                        typed.insert(name.into(), t.into()).is_none(),
                        "two TYPE lines for {name}"
                    );
                    assert!(!out.contains_key(name), "TYPE after samples of {name}");
                }
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        let open = line.find('{').expect("labels");
        let name = &line[..open];
        assert!(name_ok(name) && typed.contains_key(name), "{line:?}");
        let mut labels = BTreeMap::new();
        let b = line.as_bytes();
        let mut i = open + 1;
        loop {
            let eq = i + line[i..].find('=').expect("=");
            let key = &line[i..eq];
            assert!(name_ok(key), "bad label name in {line:?}");
            assert_eq!(b[eq + 1], b'"', "{line:?}");
            let mut v = String::new();
            let mut j = eq + 2;
            loop {
                match b[j] {
                    b'\\' => {
                        v.push(match b[j + 1] {
                            b'\\' => '\\',
                            b'"' => '"',
                            b'n' => '\n',
                            c => panic!("bad escape {c} in {line:?}"),
                        });
                        j += 2;
                    }
                    b'"' => break,
                    _ => {
                        let c = line[j..].chars().next().unwrap();
                        v.push(c);
                        j += c.len_utf8();
                    }
                }
            }
            assert!(labels.insert(key.to_string(), v).is_none(), "{line:?}");
            match b[j + 1] {
                b',' => i = j + 2,
                b'}' => {
                    i = j + 2;
                    break;
                }
                _ => panic!("{line:?}"),
            }
        }
        assert_eq!(b[i - 1], b'}');
        let value = line[i..].strip_prefix(' ').expect("space before the value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line:?}"));
        out.entry(name.to_string())
            .or_default()
            .push((labels, value));
    }
    out
}

/// The value of `name` whose extra labels include `extra`, with the common labels checked.
fn value(s: &Samples, name: &str, extra: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = s
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {s:?}"))
        .iter()
        .filter(|(l, _)| {
            extra
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
        })
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(found.len(), 1, "{name} {extra:?}: {found:?}");
    found[0]
}

/// Every file under `dir`, sorted.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Runs the HydrAIDE data-root generator `hydgen ARGS --root ROOT`.
fn hydgen(args: &[&str], root: &std::path::Path) {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("hydgen"));
    c.args(args).arg("--root").arg(root);
    run_cmd(c).expect_code(0);
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn repo_id(t: &TestRepo) -> String {
    let config = hydrabackup::repo::Repository::open(
        std::sync::Arc::from(hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap()),
        t.password.as_bytes(),
    )
    .unwrap();
    config.config().id.to_hex()
}

/// Asserts every sample carries this run's host, repository id and command.
fn assert_labels(s: &Samples, command: &str, id: &str) {
    for (name, samples) in s {
        for (l, _) in samples {
            assert_eq!(l["host"], hostname(), "{name}");
            assert_eq!(l["repository_id"], id, "{name}");
            assert_eq!(l["command"], command, "{name}");
        }
    }
}

#[test]
fn metrics_file_holds_the_runs_counters() {
    let t = TestRepo::init();
    let id = repo_id(&t);
    let root = t.path("data");
    hydgen(
        &[
            "gen",
            "--seed",
            "7",
            "--swamps",
            "40",
            "--size",
            "2M",
            "--v2-percent",
            "50",
            "--v1-percent",
            "10",
        ],
        &root,
    );
    let prom = t.path("textfile/hydrabackup.prom");
    fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let p = prom.to_str().unwrap();
    let r = root.to_str().unwrap();
    t.run(&["backup", "--json", "--metrics-file", p, r])
        .expect_code(0);
    hydgen(&["churn", "--seed", "8"], &root);
    let run = t.run(&["backup", "--json", "--metrics-file", p, r]);
    run.expect_code(0);
    let v = run.json();
    let m = parse_prometheus(&fs::read_to_string(&prom).unwrap());
    assert_labels(&m, "backup", &id);
    for d in [
        "new",
        "unchanged",
        "appended",
        "rewritten",
        "gone",
        "quarantined",
    ] {
        let n = value(&m, "hydrabackup_swamps", &[("decision", d)]);
        assert_eq!(n, v[format!("swamps_{d}")].as_f64().unwrap(), "{d}");
    }
    assert!(value(&m, "hydrabackup_swamps", &[("decision", "unchanged")]) > 0.0);
    for (metric, key) in [
        ("hydrabackup_files_read", "files_read"),
        ("hydrabackup_bytes_read", "bytes_read"),
        ("hydrabackup_bytes_added", "bytes_added"),
        ("hydrabackup_bytes_stored", "bytes_stored"),
        ("hydrabackup_errors", "errors"),
    ] {
        assert_eq!(value(&m, metric, &[]), v[key].as_f64().unwrap(), "{metric}");
    }
    assert_eq!(
        value(&m, "hydrabackup_files", &[("state", "unchanged")]),
        v["files_unchanged"].as_f64().unwrap()
    );
    assert_eq!(value(&m, "hydrabackup_success", &[]), 1.0);
    assert!(value(&m, "hydrabackup_duration_seconds", &[]) > 0.0);
    let stats = t.json(&["stats"]);
    assert_eq!(
        value(&m, "hydrabackup_repository_size_bytes", &[]),
        stats["pack_bytes"].as_f64().unwrap()
    );
    assert_eq!(value(&m, "hydrabackup_repository_snapshots", &[]), 2.0);
    let success = value(&m, "hydrabackup_last_success_timestamp_seconds", &[]);
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!((now - success).abs() < 120.0, "{success} vs {now}");
    // Only the file is left: no temporary beside it.
    assert_eq!(fs::read_dir(prom.parent().unwrap()).unwrap().count(), 1);

    // A Swamp that cannot be captured: quarantined (exit 3), counted, an `error` line.
    let victim = walk_files(&root)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "hyd"))
        .expect("a .hyd file");
    let mut bytes = fs::read(&victim).unwrap();
    bytes[..4].copy_from_slice(b"XYZW");
    fs::write(&victim, &bytes).unwrap();
    let run = t.run(&["backup", "--json", "--metrics-file", p, r]);
    run.expect_code(3);
    let v = run.json();
    let m = parse_prometheus(&fs::read_to_string(&prom).unwrap());
    assert_eq!(
        value(&m, "hydrabackup_swamps", &[("decision", "quarantined")]),
        1.0
    );
    assert_eq!(
        value(&m, "hydrabackup_errors", &[]),
        v["errors"].as_f64().unwrap()
    );
    assert_eq!(value(&m, "hydrabackup_success", &[]), 0.0);
    assert_eq!(value(&m, "hydrabackup_exit_code", &[]), 3.0);
    assert_eq!(
        value(&m, "hydrabackup_last_success_timestamp_seconds", &[]),
        success
    );
    let errors: Vec<Value> = run
        .messages()
        .into_iter()
        .filter(|l| l["message_type"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stdout);
    assert_eq!(errors[0]["item"], victim.to_str().unwrap());
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("quarantined")
    );

    // A failed run says so and keeps the time of the last success.
    let mut c = t.command();
    c.env("HYDRABACKUP_PASSWORD", "wrong")
        .args(["backup", "--metrics-file", p, r]);
    run_cmd(c).expect_code(12);
    let m = parse_prometheus(&fs::read_to_string(&prom).unwrap());
    assert_eq!(value(&m, "hydrabackup_success", &[]), 0.0);
    assert_eq!(value(&m, "hydrabackup_exit_code", &[]), 12.0);
    assert_eq!(
        value(&m, "hydrabackup_last_success_timestamp_seconds", &[]),
        success
    );

    // verify: packs checked and damage found.
    let vp = t.path("verify.prom");
    let run = t.run(&[
        "verify",
        "--json",
        "--read-data",
        "--metrics-file",
        vp.to_str().unwrap(),
    ]);
    run.expect_code(0);
    let v = run.json();
    let m = parse_prometheus(&fs::read_to_string(&vp).unwrap());
    assert_labels(&m, "verify", &id);
    assert_eq!(
        value(&m, "hydrabackup_verify_packs_checked", &[]),
        v["packs"].as_f64().unwrap()
    );
    assert_eq!(
        value(&m, "hydrabackup_verify_packs_read", &[]),
        v["packs_read"].as_f64().unwrap()
    );
    assert_eq!(value(&m, "hydrabackup_verify_damaged", &[]), 0.0);
    let pack = packs(&t.repo)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    bytes[100] ^= 1;
    fs::write(&pack, bytes).unwrap();
    let run = t.run(&[
        "verify",
        "--json",
        "--read-data",
        "--metrics-file",
        vp.to_str().unwrap(),
    ]);
    run.expect_code(13);
    let v = run.json();
    let m = parse_prometheus(&fs::read_to_string(&vp).unwrap());
    let problems = v["problems"].as_array().unwrap().len() as f64;
    assert!(problems > 0.0);
    assert_eq!(value(&m, "hydrabackup_verify_damaged", &[]), problems);
    assert_eq!(value(&m, "hydrabackup_success", &[]), 0.0);
    // The stream named each problem in an `error` line before the summary.
    let errors = run
        .messages()
        .into_iter()
        .filter(|l| l["message_type"] == "error")
        .count() as f64;
    assert_eq!(errors, problems, "{}", run.stdout);

    // restore of a snapshot the damage touches: files restored, and each file given up is an
    // `error` line.
    let affected = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|p| p["affected"].as_array()?.first()?["snapshot"].as_str())
        .expect("a snapshot affected by the damage")
        .to_string();
    let out = t.path("out");
    let rp = t.path("restore.prom");
    let run = t.run(&[
        "restore",
        &affected,
        "--json",
        "--target",
        out.to_str().unwrap(),
        "--metrics-file",
        rp.to_str().unwrap(),
    ]);
    run.expect_code(13);
    let v = run.json();
    let m = parse_prometheus(&fs::read_to_string(&rp).unwrap());
    assert_labels(&m, "restore", &id);
    assert_eq!(
        value(&m, "hydrabackup_restore_files", &[]),
        v["files"].as_f64().unwrap()
    );
    let damaged = v["damaged"].as_array().unwrap().len();
    assert!(damaged > 0);
    assert_eq!(value(&m, "hydrabackup_errors", &[]), damaged as f64);
    let errors: Vec<Value> = run
        .messages()
        .into_iter()
        .filter(|l| l["message_type"] == "error")
        .collect();
    assert_eq!(errors.len(), damaged, "{}", run.stdout);
}

#[test]
fn forget_prune_and_copy_write_metrics() {
    let t = TestRepo::init();
    let id = repo_id(&t);
    let src = t.path("src");
    for seed in 0..3 {
        random_files(&src, seed, 3, 20_000);
        t.backup(&[&src]);
    }
    let p = t.path("m.prom");
    let ps = p.to_str().unwrap();
    let v = t
        .run(&[
            "forget",
            "--yes",
            "--json",
            "--keep-last",
            "1",
            "--metrics-file",
            ps,
        ])
        .expect_code(0)
        .json();
    let m = parse_prometheus(&fs::read_to_string(&p).unwrap());
    assert_labels(&m, "forget", &id);
    assert_eq!(value(&m, "hydrabackup_snapshots_removed", &[]), 2.0);
    assert_eq!(
        value(&m, "hydrabackup_snapshots_kept", &[]),
        v["kept"].as_f64().unwrap()
    );
    let v = t
        .run(&["prune", "--yes", "--json", "--metrics-file", ps])
        .expect_code(0)
        .json();
    let m = parse_prometheus(&fs::read_to_string(&p).unwrap());
    assert_labels(&m, "prune", &id);
    assert_eq!(
        value(&m, "hydrabackup_prune_bytes_deleted", &[]),
        v["bytes_deleted"].as_f64().unwrap()
    );
    assert_eq!(
        value(&m, "hydrabackup_repository_size_bytes", &[]),
        v["pack_bytes_after"].as_f64().unwrap()
    );

    let dst = TestRepo::init();
    let dst_id = repo_id(&dst);
    let mut c = dst.command();
    c.env("HYDRABACKUP_FROM_REPOSITORY", &t.repo)
        .env("HYDRABACKUP_FROM_PASSWORD_FILE", {
            let f = t.path("pw");
            fs::write(&f, PASSWORD).unwrap();
            f
        })
        .args(["copy", "--json", "--metrics-file", ps]);
    let v = run_cmd(c).expect_code(0).json();
    let m = parse_prometheus(&fs::read_to_string(&p).unwrap());
    assert_labels(&m, "copy", &dst_id);
    assert_eq!(value(&m, "hydrabackup_snapshots_copied", &[]), 1.0);
    assert_eq!(
        value(&m, "hydrabackup_bytes_stored", &[]),
        v["bytes_stored"].as_f64().unwrap()
    );

    // Short commands take no metrics options: a clear refusal, exit 2.
    let r = t.run(&["snapshots", "--metrics-file", ps]);
    r.expect_code(2).expect_clean_error();
}

/// A one-shot HTTP server standing in for a Pushgateway: answers `status` to one request and
/// returns (method, path, headers, body).
fn one_request(listener: TcpListener, status: u16) -> (String, String, Vec<String>, String) {
    let (s, _) = listener.accept().unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap().into(), parts.next().unwrap().into());
    let mut headers = Vec::new();
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end().to_string();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        headers.push(h);
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    let mut s = s;
    write!(
        s,
        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    (method, path, headers, String::from_utf8(body).unwrap())
}

#[test]
fn metrics_push_reaches_a_pushgateway() {
    let t = TestRepo::init();
    let id = repo_id(&t);
    let src = t.path("src");
    random_files(&src, 1, 3, 10_000);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://job:s%40cret@{}", l.local_addr().unwrap());
    let gw = std::thread::spawn(move || one_request(l, 200));
    let v = t
        .run(&[
            "backup",
            "--json",
            "--metrics-push",
            &url,
            src.to_str().unwrap(),
        ])
        .expect_code(0)
        .json();
    let (method, path, headers, body) = gw.join().unwrap();
    assert_eq!(method, "PUT");
    assert_eq!(
        path,
        format!(
            "/metrics/job/hydrabackup/instance/{}/command/backup",
            hostname()
        )
    );
    // Credentials in the URL become HTTP Basic (job:s@cret).
    assert!(
        headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("authorization: Basic am9iOnNAY3JldA==")),
        "{headers:?}"
    );
    let m = parse_prometheus(&body);
    assert_labels(&m, "backup", &id);
    assert_eq!(
        value(&m, "hydrabackup_bytes_read", &[]),
        v["bytes_read"].as_f64().unwrap()
    );

    // A gateway that refuses: a warning, the backup's own result stands.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics/job/nightly", l.local_addr().unwrap());
    let gw = std::thread::spawn(move || one_request(l, 500));
    let r = t.run(&["backup", "--metrics-push", &url, src.to_str().unwrap()]);
    r.expect_code(0);
    assert_eq!(gw.join().unwrap().1, "/metrics/job/nightly");
    assert!(
        r.stderr.contains("warning: metrics not pushed") && r.stderr.contains("500"),
        "{}",
        r.stderr
    );
}

#[test]
fn json_stream_reports_status_errors_and_summary() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 1, 4, 50_000);
    t.backup(&[&src]);
    // Two files change; reading any file takes 1.5 s (the run lasts over a second), and the
    // first is replaced by another file between the walk and its read: a source error.
    let names: Vec<String> = {
        let mut n: Vec<String> = fs::read_dir(&src)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        n.sort();
        n
    };
    for n in &names[..2] {
        write(&src.join(n), &random_bytes(9, 60_000));
    }
    let victim = src.join(&names[0]);
    let mut c = t.command();
    c.env(
        "HYDRABACKUP_TEST_HOOK",
        format!(
            "open:sleep 1.5; P=\"$HYDRABACKUP_HOOK_PATH\"; if [ \"$P\" = '{}' ]; then echo x > \"$P.new\"; mv \"$P.new\" \"$P\"; fi",
            victim.display()
        ),
    )
    .args(["backup", "--json"])
    .arg(&src);
    let r = run_cmd(c);
    r.expect_code(3);
    let lines = r.messages();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| l["message_type"].as_str().expect("message_type"))
        .collect();
    assert_eq!(kinds.last(), Some(&"summary"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "summary").count(), 1);
    assert!(kinds.contains(&"status"), "{}", r.stdout);
    let errors: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message_type"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{}", r.stdout);
    assert_eq!(errors[0]["item"], victim.to_str().unwrap());
    let summary = lines.last().unwrap();
    assert_eq!(summary["errors"], 1);
    assert_eq!(summary["source_errors"].as_array().unwrap().len(), 1);
    let status: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message_type"] == "status")
        .collect();
    for s in &status {
        let f = s["percent_done"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&f), "{s}");
        // The totals are known from the start: all four files, unchanged ones included.
        assert_eq!(s["total_files"], 4, "{s}");
        assert!(s["seconds_remaining"].is_u64() || s["seconds_remaining"].is_null());
        // No names without --show-names.
        assert!(s.get("current_files").is_none(), "{s}");
    }
    // The last status line holds the final counts: every file done, every byte but those of
    // the file that could not be read (60,000 when the walk counted it).
    let last = status.last().unwrap();
    assert_eq!(last["files_done"], 4, "{last}");
    assert_eq!(last["total_bytes"], 2 * 50_000 + 2 * 60_000, "{last}");
    assert_eq!(
        last["bytes_done"].as_u64().unwrap() + 60_000,
        last["total_bytes"].as_u64().unwrap(),
        "{last}"
    );
    assert_eq!(last["error_count"], 1, "{last}");
    assert_eq!(
        summary["files_unchanged"].as_u64().unwrap() + summary["files_read"].as_u64().unwrap(),
        4
    );

    // -v adds a verbose_status line per file read.
    let r = t.run(&["backup", "--json", "-v", "--force", src.to_str().unwrap()]);
    r.expect_code(0);
    let verbose = r
        .messages()
        .into_iter()
        .filter(|l| l["message_type"] == "verbose_status")
        .count();
    assert_eq!(verbose, 4, "{}", r.stdout);
}

#[test]
fn hooks_see_the_outcome_and_a_failing_before_hook_aborts() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 1, 2, 1000);
    let dir = t.path("hooks");
    fs::create_dir(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let r = t.run(&[
        "backup",
        "--json",
        "--hook-before",
        &format!("env > {d}/before; echo noise"),
        "--hook-after",
        &format!("env > {d}/after; echo noise"),
        "--hook-failure",
        &format!("touch {d}/failure"),
        src.to_str().unwrap(),
    ]);
    r.expect_code(0);
    // Hook output goes to stderr: stdout stays the JSON stream.
    let v = r.json();
    assert!(r.stderr.contains("noise"));
    let env = |f: &str| -> BTreeMap<String, String> {
        fs::read_to_string(dir.join(f))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.starts_with("HYDRABACKUP_"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let before = env("before");
    assert_eq!(before["HYDRABACKUP_HOOK"], "before");
    assert_eq!(before["HYDRABACKUP_COMMAND"], "backup");
    assert!(!before.contains_key("HYDRABACKUP_EXIT_CODE"));
    // The literal password is not passed on.
    assert!(!before.contains_key("HYDRABACKUP_PASSWORD"));
    let after = env("after");
    assert_eq!(after["HYDRABACKUP_HOOK"], "after");
    assert_eq!(after["HYDRABACKUP_EXIT_CODE"], "0");
    assert_eq!(after["HYDRABACKUP_SUCCESS"], "1");
    assert_eq!(after["HYDRABACKUP_ERROR"], "");
    assert_eq!(
        after["HYDRABACKUP_SNAPSHOT_ID"],
        v["snapshot_id"].as_str().unwrap()
    );
    assert_eq!(after["HYDRABACKUP_REPOSITORY_ID"], repo_id(&t));
    let summary: Value = serde_json::from_str(&after["HYDRABACKUP_SUMMARY"]).unwrap();
    assert_eq!(summary, v);
    assert!(!dir.join("failure").exists());

    // A failed command runs the failure hook with its code and error.
    let out = t.path("out");
    let r = t.run(&[
        "restore",
        "ffffffff",
        "--target",
        out.to_str().unwrap(),
        "--hook-after",
        &format!("touch {d}/after2"),
        "--hook-failure",
        &format!("env > {d}/failure"),
    ]);
    r.expect_code(1);
    let failure = env("failure");
    assert_eq!(failure["HYDRABACKUP_HOOK"], "failure");
    assert_eq!(failure["HYDRABACKUP_COMMAND"], "restore");
    assert_eq!(failure["HYDRABACKUP_EXIT_CODE"], "1");
    assert_eq!(failure["HYDRABACKUP_SUCCESS"], "0");
    assert!(
        failure["HYDRABACKUP_ERROR"].contains("ffffffff"),
        "{failure:?}"
    );
    assert!(!dir.join("after2").exists());

    // A failing before-hook: nothing runs, exit 15, one clean line; no after/failure hook.
    let snaps = t.snapshots().len();
    let r = t.run(&[
        "backup",
        "--hook-before",
        "exit 7",
        "--hook-failure",
        &format!("touch {d}/failure3"),
        src.to_str().unwrap(),
    ]);
    r.expect_code(15).expect_clean_error();
    assert!(r.stderr.contains("exit code 7"), "{}", r.stderr);
    assert_eq!(t.snapshots().len(), snaps);
    assert!(!dir.join("failure3").exists());
    // A failing after-hook is a warning; the command's code stands.
    let r = t.run(&["backup", "--hook-after", "exit 4", src.to_str().unwrap()]);
    r.expect_code(0);
    assert!(
        r.stderr
            .contains("warning: the --hook-after command failed (exit code 4)")
    );
}

/// `GET path` with optional Basic credentials; returns (status, body).
fn http_get(addr: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = auth.map_or(String::new(), |a| {
        use base64::Engine;
        format!(
            "authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(a)
        )
    });
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

fn counter(m: &Samples, name: &str, extra: &[(&str, &str)]) -> f64 {
    m.get(name).map_or(0.0, |v| {
        v.iter()
            .filter(|(l, _)| {
                extra
                    .iter()
                    .all(|(k, x)| l.get(*k).map(String::as_str) == Some(x))
            })
            .map(|(_, v)| v)
            .sum()
    })
}

#[test]
fn serve_metrics_need_auth_and_count_requests() {
    let t = TestRepo::new();
    let users = restcommon::users(&t);
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics"])
        .args([
            "--metrics-listen",
            "127.0.0.1:0",
            "--users",
            &users,
            "--path",
        ])
        .arg(t.path("srv"))
        .env("HYDRABACKUP_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    line.clear();
    out.read_line(&mut line).unwrap();
    let side = line
        .trim()
        .strip_prefix("metrics on http://")
        .unwrap()
        .strip_suffix("/metrics")
        .unwrap()
        .to_string();
    let addr = base.strip_prefix("http://").unwrap().to_string();

    // On the main address /metrics needs a login.
    assert_eq!(http_get(&addr, "/metrics", None).0, 401);
    assert_eq!(http_get(&addr, "/metrics", Some("alice:wrong")).0, 401);
    let (status, body) = http_get(&addr, "/metrics", Some("alice:alice pw"));
    assert_eq!(status, 200);
    let m = parse_prometheus(&body);
    assert_eq!(
        counter(&m, "hydrabackup_server_auth_failures_total", &[]),
        2.0
    );
    assert_eq!(
        counter(
            &m,
            "hydrabackup_server_requests_total",
            &[("status", "401")]
        ),
        2.0
    );

    // A backup through the server; the separate address needs no login.
    let src = t.path("src");
    random_files(&src, 1, 3, 30_000);
    let cred = format!("rest:http://alice:alice%20pw@{addr}/alice");
    restcommon::hb(&t, &cred, None, &["init"]).expect_code(0);
    restcommon::hb(&t, &cred, None, &["backup", src.to_str().unwrap()]).expect_code(0);
    let (status, body) = http_get(&side, "/metrics", None);
    assert_eq!(status, 200);
    let m = parse_prometheus(&body);
    let posts = counter(
        &m,
        "hydrabackup_server_requests_total",
        &[("method", "POST"), ("status", "200")],
    );
    assert!(posts >= 4.0, "{body}");
    let received = counter(&m, "hydrabackup_server_received_bytes_total", &[]);
    let stored: u64 = ["data", "index", "snapshots", "keys", "config"]
        .iter()
        .flat_map(|k| repo_files(&t.path("srv/alice"), k))
        .map(|p| fs::metadata(p).unwrap().len())
        .sum::<u64>()
        + fs::metadata(t.path("srv/alice/config")).unwrap().len();
    // Everything stored came in through requests (locks came and went too).
    assert!(received >= stored as f64, "{received} < {stored}");
    assert!(counter(&m, "hydrabackup_server_sent_bytes_total", &[]) > 0.0);
    assert_eq!(counter(&m, "hydrabackup_server_errors_total", &[]), 0.0);
    assert_eq!(http_get(&side, "/other", None).0, 404);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn progress_is_quiet_without_a_terminal_and_a_bar_on_one() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 1, 3, 200_000);
    let r = t.run(&["backup", src.to_str().unwrap()]);
    r.expect_code(0);
    assert_eq!(r.stderr, "", "stderr is not a terminal: no progress");

    // Under a pseudo-terminal (`script`, util-linux), a slowed backup draws its bar.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("script(1) missing: the terminal half is skipped");
        return;
    }
    random_files(&src, 2, 3, 200_000);
    let log = t.path("typescript");
    let mut c = t.command();
    c.env("HYDRABACKUP_TEST_HOOK", "open:sleep 0.5")
        .env("TERM", "xterm")
        .args(["-qec"])
        .arg(format!(
            "{BIN} backup --show-names {}",
            src.to_str().unwrap()
        ))
        .arg(&log);
    let mut c2 = Command::new("script");
    c2.args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => c2.env(k, v),
            None => c2.env_remove(k),
        };
    }
    c2.stdin(Stdio::null());
    let r = run_cmd(c2);
    r.expect_code(0);
    let screen = fs::read_to_string(&log).unwrap_or_default() + &r.stdout;
    assert!(screen.contains("backup ["), "{screen}");
    assert!(screen.contains("ETA"), "{screen}");
    assert!(screen.contains("/3 items"), "{screen}");
    // --show-names: the current file is shown.
    assert!(screen.contains(src.to_str().unwrap()), "{screen}");
}
