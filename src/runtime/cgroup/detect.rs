//! Finding this process's own cgroups: parses `/proc/self/cgroup` and `/proc/self/mountinfo`
//! and joins each hierarchy's mount point with our path inside it. Pure text in, paths out, so
//! it is tested against fixtures; mount points are re-rooted under a given directory.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::{CgroupError, Hierarchy};

/// One line of `/proc/self/cgroup`: `hierarchy-id:controller,list:/path`.
#[derive(Debug, PartialEq, Eq)]
struct Membership {
    id: u32,
    controllers: Vec<String>,
    path: String,
}

/// A cgroup filesystem mount from `/proc/self/mountinfo`.
#[derive(Debug, PartialEq, Eq)]
struct CgroupMount {
    /// The path inside the hierarchy that is mounted (`/` unless a subtree is bind-mounted).
    root: String,
    mount_point: PathBuf,
    /// `cgroup` (v1) or `cgroup2`.
    fstype: String,
    /// Super options; for v1 they name the controllers (`rw,memory`, `rw,cpu,cpuacct`).
    options: Vec<String>,
}

/// Decides the hierarchy: v1 when the memory controller is on a mounted v1 hierarchy (hybrid
/// hosts mount an empty `unified` v2 beside it), else v2 when there is a `0::` line and a
/// cgroup2 mount, else v1 with whatever controllers are mounted.
pub(super) fn hierarchy(
    proc_self_cgroup: &str,
    mountinfo: &str,
    fs_root: &Path,
) -> Result<Hierarchy, CgroupError> {
    let members = parse_proc_cgroup(proc_self_cgroup)?;
    let mounts = parse_mountinfo(mountinfo)?;
    let controllers = v1_controllers(&members, &mounts, fs_root)?;
    if controllers.contains_key("memory") {
        return Ok(Hierarchy::V1 { controllers });
    }
    let unified = members
        .iter()
        .find(|m| m.id == 0 && m.controllers.is_empty());
    let v2_mount = mounts.iter().find(|m| m.fstype == "cgroup2");
    if let (Some(member), Some(mount)) = (unified, v2_mount) {
        let own = own_dir(mount, &member.path, fs_root)?;
        return Ok(Hierarchy::V2 { own });
    }
    if controllers.is_empty() {
        return Err(CgroupError::Parse {
            what: "/proc/self/cgroup and /proc/self/mountinfo".into(),
            detail: "no mounted cgroup hierarchy (v1 or v2) holds this process".into(),
        });
    }
    Ok(Hierarchy::V1 { controllers })
}

/// Every v1 controller of ours whose hierarchy is mounted, mapped to our directory in it.
fn v1_controllers(
    members: &[Membership],
    mounts: &[CgroupMount],
    fs_root: &Path,
) -> Result<BTreeMap<String, PathBuf>, CgroupError> {
    let mut out = BTreeMap::new();
    for member in members.iter().filter(|m| !m.controllers.is_empty()) {
        for controller in &member.controllers {
            let candidates = mounts
                .iter()
                .filter(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == controller));
            // A hierarchy may be mounted several times; take the first that shows our cgroup.
            let mut found = None;
            for mount in candidates {
                if under_root(&member.path, &mount.root).is_some() {
                    found = Some(own_dir(mount, &member.path, fs_root)?);
                    break;
                }
            }
            if let Some(dir) = found {
                out.insert(controller.clone(), dir);
            }
        }
    }
    Ok(out)
}

/// `fs_root` + mount point + our path relative to the mount's root.
fn own_dir(mount: &CgroupMount, path: &str, fs_root: &Path) -> Result<PathBuf, CgroupError> {
    let rel = under_root(path, &mount.root).ok_or_else(|| CgroupError::Parse {
        what: format!("cgroup path {path}"),
        detail: format!(
            "not inside the subtree {} mounted at {}",
            mount.root,
            mount.mount_point.display()
        ),
    })?;
    let rel = Path::new(rel.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(CgroupError::Parse {
            what: format!("cgroup path {path}"),
            detail: "it leaves its hierarchy (`..`): this process is outside its cgroup namespace"
                .into(),
        });
    }
    let mount_point = mount
        .mount_point
        .strip_prefix("/")
        .unwrap_or(&mount.mount_point);
    Ok(fs_root.join(mount_point).join(rel))
}

/// The part of `path` below `root`, if `path` is `root` or lies under it.
fn under_root<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    if root == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(root)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

fn parse_proc_cgroup(text: &str) -> Result<Vec<Membership>, CgroupError> {
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |detail: &str| CgroupError::Parse {
            what: format!("/proc/self/cgroup line {}", n + 1),
            detail: format!("{detail}: {line:?}"),
        };
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(list), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected `id:controllers:path`"));
        };
        let id = id
            .parse()
            .map_err(|_| bad("hierarchy id is not a number"))?;
        let controllers = list.split(',').filter(|c| !c.is_empty()).map(String::from);
        out.push(Membership {
            id,
            controllers: controllers.collect(),
            path: path.to_string(),
        });
    }
    Ok(out)
}

/// Keeps only cgroup and cgroup2 mounts. Format (proc(5)): `id parent maj:min root mount-point
/// options [optional fields...] - fstype source super-options`.
fn parse_mountinfo(text: &str) -> Result<Vec<CgroupMount>, CgroupError> {
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-");
        let (Some(sep), Some(root), Some(mount_point)) = (sep, fields.get(3), fields.get(4)) else {
            return Err(CgroupError::Parse {
                what: format!("/proc/self/mountinfo line {}", n + 1),
                detail: format!(
                    "expected `... root mount-point ... - fstype source options`: {line:?}"
                ),
            });
        };
        let fstype = fields.get(sep + 1).copied().unwrap_or_default();
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let options = fields.get(sep + 3).copied().unwrap_or_default();
        out.push(CgroupMount {
            root: unescape(root),
            mount_point: PathBuf::from(unescape(mount_point)),
            fstype: fstype.to_string(),
            options: options.split(',').map(String::from).collect(),
        });
    }
    Ok(out)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_lines() {
        let got = parse_proc_cgroup("4:memory:/a/b\n2:cpu,cpuacct:/\n0::/x:y\n").unwrap();
        assert_eq!(got[0].controllers, ["memory"]);
        assert_eq!(got[0].path, "/a/b");
        assert_eq!(got[1].controllers, ["cpu", "cpuacct"]);
        assert_eq!(got[2].id, 0);
        assert!(got[2].controllers.is_empty());
        assert_eq!(got[2].path, "/x:y", "a colon in the path stays in the path");
    }

    #[test]
    fn proc_cgroup_garbage_is_a_parse_error_naming_the_line() {
        let err = parse_proc_cgroup("0::/\nnonsense\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/proc/self/cgroup line 2"), "{err}");
        let err = parse_proc_cgroup("x:memory:/\n").unwrap_err().to_string();
        assert!(err.contains("not a number"), "{err}");
    }

    #[test]
    fn mountinfo_keeps_cgroup_mounts_with_optional_fields_and_escapes() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
            35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n\
            41 31 0:38 /sub /my\\040cg rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let got = parse_mountinfo(text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].mount_point, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(got[0].options, ["rw", "memory"]);
        assert_eq!(got[1].root, "/sub");
        assert_eq!(got[1].mount_point, Path::new("/my cg"));
        assert_eq!(got[1].fstype, "cgroup2");
    }

    #[test]
    fn mountinfo_without_separator_is_an_error() {
        let err = parse_mountinfo("1 2 3:4 / /x rw cgroup\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mountinfo line 1"), "{err}");
    }

    #[test]
    fn paths_relative_to_a_bind_mounted_root() {
        assert_eq!(under_root("/a/b", "/"), Some("/a/b"));
        assert_eq!(under_root("/a/b", "/a"), Some("/b"));
        assert_eq!(under_root("/a", "/a"), Some(""));
        assert_eq!(under_root("/ab", "/a"), None);
        let mount = CgroupMount {
            root: "/a".into(),
            mount_point: "/sys/fs/cgroup".into(),
            fstype: "cgroup2".into(),
            options: vec![],
        };
        let dir = own_dir(&mount, "/a/svc", Path::new("/tmp/r")).unwrap();
        assert_eq!(dir, Path::new("/tmp/r/sys/fs/cgroup/svc"));
        let err = own_dir(&mount, "/b", Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not inside the subtree /a"), "{err}");
        let err = own_dir(&mount, "/a/../..", Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside its cgroup namespace"), "{err}");
    }
}
