//! `-v` shows each command's progress: its start and end, the index and snapshots it loaded and
//! one line per Swamp captured, every line tagged with the command. Swamp names (user data)
//! appear only with `--show-names`; the password never does.

mod hydcommon;

use hydcommon::*;

#[test]
fn verbose_backup_logs_each_command_and_swamp_without_names() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 5, 6, "64K", 50, 20);
    let names = swamp_names(&src);
    assert!(names.len() >= 4, "{names:?}");

    let out = hb.run(&["-v", "backup", src.to_str().unwrap()]);
    out.expect(0);
    let log = &out.stderr;
    assert!(
        log.contains("command{cmd=\"backup\"}: hydrabackup::cli: started"),
        "{log}"
    );
    assert!(
        log.contains("command{cmd=\"backup\"}: hydrabackup::cli: finished"),
        "{log}"
    );
    assert!(log.contains("index loaded"), "{log}");
    for rel in names.keys() {
        let line = log
            .lines()
            .find(|l| l.contains("swamp{") && l.contains(rel.as_str()))
            .unwrap_or_else(|| panic!("no log line for Swamp {rel}:\n{log}"));
        assert!(line.contains("decision=\"new\""), "{line}");
    }
    for name in names.values() {
        assert!(
            !log.contains(name.as_str()),
            "Swamp name {name} logged:\n{log}"
        );
    }
    assert!(!log.contains(PASSWORD), "password logged:\n{log}");

    // With --show-names, each Swamp's line names it.
    let out = hb.run(&["-v", "backup", "--show-names", src.to_str().unwrap()]);
    out.expect(0);
    for (rel, name) in &names {
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains("swamp{") && l.contains(rel.as_str()))
            .unwrap_or_else(|| panic!("no log line for Swamp {rel}:\n{}", out.stderr));
        assert!(line.contains(name.as_str()), "{line}");
        assert!(line.contains("decision=\"unchanged\""), "{line}");
    }
}
