//! Fixture tests for both hierarchies: a fake `/sys/fs/cgroup` in a temp dir, filled with the
//! control files the kernel would make, and `/proc/self` texts shaped like real ones. Plain
//! files read back what was written, so these check paths, values, order and error messages;
//! the kernel's own behaviour is covered by `tests/cgroup.rs`.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

const V1_MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:5 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const V1_PROC: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n\
                       2:cpu,cpuacct:/\n0::/\n";

const V2_MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";
const V2_PROC: &str = "0::/system.slice/titan.service\n";

/// Makes `dir` and the given files in it.
fn populate(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, content) in files {
        fs::write(dir.join(name), content).unwrap();
    }
}

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path).unwrap()
}

fn limits(memory_max: Option<u64>, pids_max: Option<u32>) -> Limits {
    Limits {
        memory_max,
        pids_max,
    }
}

const MIB32: u64 = 32 << 20;

// ---- v1 ----

struct V1 {
    _tmp: tempfile::TempDir,
    memory: PathBuf,
    pids: PathBuf,
    cgroups: Cgroups,
}

/// Our own v1 cgroups, and a `titan-web` service cgroup as the kernel makes it on mkdir.
fn v1() -> V1 {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("sys/fs/cgroup");
    let memory = base.join("memory/process_api/abc");
    let pids = base.join("pids");
    populate(&memory, &[("cgroup.procs", "1\n7\n")]);
    populate(&pids, &[("cgroup.procs", "1\n")]);
    let memory_files = [
        ("cgroup.procs", ""),
        ("memory.limit_in_bytes", "9223372036854771712\n"),
        ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
        ("memory.usage_in_bytes", "1052672\n"),
        (
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        ),
    ];
    populate(&memory.join("titan-web"), &memory_files);
    populate(
        &pids.join("titan-web"),
        &[("cgroup.procs", ""), ("pids.max", "max\n")],
    );
    let cgroups = Cgroups::from_proc(V1_PROC, V1_MOUNTINFO, tmp.path()).unwrap();
    V1 {
        _tmp: tmp,
        memory,
        pids,
        cgroups,
    }
}

#[test]
fn v1_detection_maps_each_controller_to_our_own_cgroup() {
    let f = v1();
    assert_eq!(f.cgroups.version(), 1);
    let Hierarchy::V1 { controllers } = f.cgroups.hierarchy() else {
        panic!("expected v1: {:?}", f.cgroups);
    };
    assert_eq!(controllers["memory"], f.memory);
    assert_eq!(controllers["pids"], f.pids, "`/` is the hierarchy's root");
    assert_eq!(controllers["cpu"], controllers["cpuacct"], "co-mounted");
    assert!(controllers.contains_key("name=systemd"));
    assert_eq!(controllers.len(), 5, "{controllers:?}");
}

#[test]
fn v1_create_writes_and_reads_back_every_limit() {
    let f = v1();
    let cg = f
        .cgroups
        .create("titan", "web", &limits(Some(MIB32), Some(16)))
        .unwrap();
    let (mem, pids) = (f.memory.join("titan-web"), f.pids.join("titan-web"));
    assert_eq!(cg.dirs(), [mem.clone(), pids.clone()]);
    assert_eq!(read(mem.join("memory.limit_in_bytes")), "33554432");
    assert_eq!(
        read(mem.join("memory.memsw.limit_in_bytes")),
        "33554432",
        "swap capped too"
    );
    assert_eq!(read(pids.join("pids.max")), "16");
    let join: Vec<_> = cg
        .join_files()
        .iter()
        .map(|c| c.to_str().unwrap())
        .collect();
    let want = [mem.join("cgroup.procs"), pids.join("cgroup.procs")];
    assert_eq!(
        join,
        want.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>()
    );
}

#[test]
fn v1_without_a_pids_cap_uses_the_memory_hierarchy_only() {
    let f = v1();
    let cg = f
        .cgroups
        .create("titan", "web", &limits(None, None))
        .unwrap();
    assert_eq!(cg.dirs(), [f.memory.join("titan-web")]);
    assert_eq!(cg.join_files().len(), 1);
    let mem = f.memory.join("titan-web");
    assert_eq!(
        read(mem.join("memory.limit_in_bytes")),
        "-1",
        "a reused cgroup loses old caps"
    );
    assert_eq!(
        read(f.pids.join("titan-web/pids.max")),
        "max\n",
        "pids untouched"
    );
}

#[test]
fn v1_reads_oom_kills_usage_and_pids_from_the_memory_cgroup() {
    let f = v1();
    let cg = f
        .cgroups
        .create("titan", "web", &limits(Some(MIB32), None))
        .unwrap();
    assert_eq!(cg.oom_kills().unwrap(), 3);
    assert_eq!(cg.memory_current().unwrap(), 1_052_672);
    fs::write(f.memory.join("titan-web/cgroup.procs"), "10\n11\n").unwrap();
    assert_eq!(cg.pids().unwrap(), [10, 11]);
    let oom = f.memory.join("titan-web/memory.oom_control");
    fs::write(&oom, "oom_kill_disable 0\nunder_oom 1\n").unwrap();
    let err = cg.oom_kills().unwrap_err().to_string();
    assert!(
        err.contains("memory.oom_control") && err.contains("no `oom_kill` line"),
        "{err}"
    );
}

#[test]
fn v1_pids_cap_without_a_pids_hierarchy_is_an_error_only_when_asked_for() {
    let f = v1();
    let proc = "4:memory:/process_api/abc\n0::/\n";
    let cgroups = Cgroups::from_proc(proc, V1_MOUNTINFO, f._tmp.path()).unwrap();
    let err = cgroups
        .create("titan", "web", &limits(Some(MIB32), Some(16)))
        .unwrap_err();
    assert!(matches!(&err, CgroupError::NoController { controller, .. } if controller == "pids"));
    assert!(err.to_string().contains("`pids` is not available"), "{err}");
    cgroups
        .create("titan", "web", &limits(Some(MIB32), None))
        .unwrap();
}

#[test]
fn v1_a_limit_file_that_cannot_be_written_fails_naming_it_and_undoes_the_mkdir() {
    let f = v1();
    // A fresh directory: plain mkdir makes no control files, so the write finds none.
    let err = f
        .cgroups
        .create("titan", "api", &limits(Some(MIB32), None))
        .unwrap_err();
    let path = f.memory.join("titan-api/memory.limit_in_bytes");
    assert!(
        matches!(&err, CgroupError::Write { path: p, value, .. } if *p == path && value == "33554432"),
        "{err:?}"
    );
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    assert!(
        !f.memory.join("titan-api").exists(),
        "the half-made cgroup is removed"
    );
}

#[test]
fn v1_a_limit_that_does_not_read_back_is_an_error() {
    let f = v1();
    let limit = f.memory.join("titan-web/memory.limit_in_bytes");
    fs::remove_file(&limit).unwrap();
    std::os::unix::fs::symlink("/dev/null", &limit).unwrap(); // swallows writes, reads ""
    let err = f
        .cgroups
        .create("titan", "web", &limits(Some(MIB32), None))
        .unwrap_err();
    assert!(
        matches!(&err, CgroupError::Readback { got, .. } if got.is_empty()),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("memory.limit_in_bytes") && msg.contains("not applied"),
        "{msg}"
    );
}

#[test]
fn v1_a_reused_cgroup_must_be_empty() {
    let f = v1();
    fs::write(f.memory.join("titan-web/cgroup.procs"), "321\n").unwrap();
    let err = f
        .cgroups
        .create("titan", "web", &limits(Some(MIB32), None))
        .unwrap_err();
    assert!(
        matches!(&err, CgroupError::NotEmpty { pids, .. } if *pids == [321]),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("titan-web already exists and still holds 1"),
        "{err}"
    );
}

#[test]
fn v1_existing_finds_what_a_previous_run_left() {
    let f = v1();
    let cg = f.cgroups.existing("titan", "web").unwrap().unwrap();
    assert_eq!(
        cg.dirs(),
        [f.memory.join("titan-web"), f.pids.join("titan-web")]
    );
    assert!(f.cgroups.existing("titan", "gone").unwrap().is_none());
}

// ---- v2 ----

struct V2 {
    _tmp: tempfile::TempDir,
    own: PathBuf,
    cgroups: Cgroups,
}

/// Our own delegated v2 cgroup holding the supervisor (pid 4242), and a `titan-web` service
/// cgroup and a `supervisor` leaf as the kernel makes them on mkdir.
fn v2(own_files: &[(&str, &str)]) -> V2 {
    let tmp = tempfile::tempdir().unwrap();
    let own = tmp.path().join("sys/fs/cgroup/system.slice/titan.service");
    populate(
        &own,
        &[
            ("cgroup.controllers", "cpu io memory pids\n"),
            ("cgroup.subtree_control", "\n"),
            ("cgroup.type", "domain\n"),
            ("cgroup.procs", "4242\n"),
        ],
    );
    populate(&own, own_files);
    populate(&own.join(SUPERVISOR_LEAF), &[("cgroup.procs", "")]);
    populate(
        &own.join("titan-web"),
        &[
            ("cgroup.procs", ""),
            ("memory.max", "max\n"),
            ("memory.swap.max", "max\n"),
            ("memory.current", "2097152\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n",
            ),
            ("pids.max", "max\n"),
        ],
    );
    let cgroups = Cgroups::from_proc(V2_PROC, V2_MOUNTINFO, tmp.path()).unwrap();
    V2 {
        _tmp: tmp,
        own,
        cgroups,
    }
}

#[test]
fn v2_detection_finds_our_own_cgroup() {
    let f = v2(&[]);
    assert_eq!(f.cgroups.version(), 2);
    assert_eq!(f.cgroups.hierarchy(), &Hierarchy::V2 { own: f.own.clone() });
}

#[test]
fn v2_detection_sees_through_the_supervisor_leaf() {
    let f = v2(&[]);
    let proc = "0::/system.slice/titan.service/supervisor\n";
    let cgroups = Cgroups::from_proc(proc, V2_MOUNTINFO, f._tmp.path()).unwrap();
    assert_eq!(cgroups.hierarchy(), &Hierarchy::V2 { own: f.own.clone() });
}

#[test]
fn v2_create_moves_us_to_a_leaf_enables_controllers_and_writes_limits() {
    let f = v2(&[]);
    let cg = f
        .cgroups
        .create("titan", "web", &limits(Some(MIB32), Some(16)))
        .unwrap();
    assert_eq!(
        read(f.own.join("supervisor/cgroup.procs")),
        "4242",
        "moved out first"
    );
    assert_eq!(read(f.own.join("cgroup.subtree_control")), "+memory +pids");
    let dir = f.own.join("titan-web");
    assert_eq!(cg.dirs(), std::slice::from_ref(&dir));
    assert_eq!(read(dir.join("memory.max")), "33554432");
    assert_eq!(
        read(dir.join("memory.swap.max")),
        "0",
        "no swapping around the cap"
    );
    assert_eq!(read(dir.join("pids.max")), "16");
    assert_eq!(
        cg.join_files()[0].to_str().unwrap(),
        dir.join("cgroup.procs").to_str().unwrap()
    );
}

#[test]
fn v2_enabled_controllers_are_left_alone_and_nobody_moves() {
    let f = v2(&[("cgroup.subtree_control", "memory pids\n")]);
    f.cgroups
        .create("titan", "web", &limits(Some(MIB32), None))
        .unwrap();
    assert_eq!(read(f.own.join("cgroup.subtree_control")), "memory pids\n");
    assert_eq!(read(f.own.join("supervisor/cgroup.procs")), "");
    let dir = f.own.join("titan-web");
    assert_eq!(
        read(dir.join("pids.max")),
        "max",
        "a reused cgroup loses an old pids cap"
    );
}

#[test]
fn v2_only_enables_pids_when_a_pids_cap_is_asked_for() {
    let f = v2(&[("cgroup.controllers", "memory\n")]);
    f.cgroups
        .create("titan", "web", &limits(None, None))
        .unwrap();
    assert_eq!(read(f.own.join("cgroup.subtree_control")), "+memory");
    let dir = f.own.join("titan-web");
    assert_eq!(read(dir.join("memory.max")), "max");
    assert_eq!(read(dir.join("memory.swap.max")), "max");
}

#[test]
fn v2_the_root_cgroup_keeps_its_processes() {
    let f = v2(&[]);
    fs::remove_file(f.own.join("cgroup.type")).unwrap(); // only the root has none
    f.cgroups
        .create("titan", "web", &limits(Some(MIB32), None))
        .unwrap();
    assert_eq!(read(f.own.join("supervisor/cgroup.procs")), "");
    assert_eq!(read(f.own.join("cgroup.subtree_control")), "+memory");
}

#[test]
fn v2_an_undelegated_controller_is_a_clear_error() {
    let f = v2(&[("cgroup.controllers", "cpu memory\n")]);
    let err = f
        .cgroups
        .create("titan", "web", &limits(Some(MIB32), Some(16)))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(&err, CgroupError::NoController { controller, .. } if controller == "pids"));
    assert!(
        msg.contains("titan.service/cgroup.controllers") && msg.contains("Delegate=yes"),
        "{msg}"
    );
    assert_eq!(
        read(f.own.join("cgroup.subtree_control")),
        "\n",
        "nothing written"
    );
}

#[test]
fn v2_reads_oom_kills_and_usage() {
    let f = v2(&[]);
    let cg = f
        .cgroups
        .create("titan", "web", &limits(Some(MIB32), None))
        .unwrap();
    assert_eq!(cg.oom_kills().unwrap(), 1, "oom_kill, not oom or max");
    assert_eq!(cg.memory_current().unwrap(), 2_097_152);
    assert!(cg.pids().unwrap().is_empty());
}

#[test]
fn v2_kill_all_never_signals_pid_0() {
    let f = v2(&[]);
    let cg = f
        .cgroups
        .create("titan", "web", &limits(Some(MIB32), None))
        .unwrap();
    // 0 is how cgroup.procs shows a process outside our pid namespace; kill(0) would hit us.
    fs::write(f.own.join("titan-web/cgroup.procs"), "0\n").unwrap();
    fs::write(f.own.join("titan-web/cgroup.kill"), "").unwrap();
    assert_eq!(cg.kill_all().unwrap(), 0);
    assert_eq!(
        read(f.own.join("titan-web/cgroup.kill")),
        "",
        "nothing to kill"
    );
}

// ---- both ----

#[test]
fn names_that_would_leave_the_directory_are_refused() {
    let f = v2(&[]);
    for (prefix, service) in [
        ("titan", "a/b"),
        ("", "web"),
        ("titan", ""),
        ("ti\0tan", "x"),
    ] {
        let err = f
            .cgroups
            .create(prefix, service, &Limits::default())
            .unwrap_err();
        assert!(
            matches!(err, CgroupError::InvalidName { .. }),
            "{prefix:?} {service:?}: {err}"
        );
    }
}

#[test]
fn remove_tolerates_directories_already_gone() {
    let f = v2(&[]);
    let cg = f.cgroups.existing("titan", "web").unwrap().unwrap();
    fs::remove_dir_all(f.own.join("titan-web")).unwrap();
    cg.remove().unwrap();
}

#[test]
fn join_current_writes_0_to_each_file_or_returns_the_errno() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::write(&a, "").unwrap();
    fs::write(&b, "").unwrap();
    let files = [
        fsio::c_path(a.clone()).unwrap(),
        fsio::c_path(b.clone()).unwrap(),
    ];
    join_current(&files).unwrap();
    assert_eq!((read(&a), read(&b)), ("0".to_string(), "0".to_string()));
    let missing = [fsio::c_path(tmp.path().join("nope")).unwrap()];
    assert_eq!(join_current(&missing), Err(libc::ENOENT));
}

#[test]
fn no_mounted_hierarchy_is_a_parse_error() {
    let err = Cgroups::from_proc(
        "0::/\n",
        "27 1 254:0 / / rw - ext4 /dev/vda rw\n",
        Path::new("/"),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("no mounted cgroup hierarchy"),
        "{err}"
    );
}
