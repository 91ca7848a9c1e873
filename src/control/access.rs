//! Who may do what on the control socket, in three grades: `read` (status, logs, events,
//! metrics, releases), `operate` (start, stop, restart a service) and `deploy` (switch,
//! rollback, reload, upgrade — everything). Peers are known by SO_PEERCRED and their groups;
//! root and `allow_uids`/`allow_gids` may do everything, `operate_uids`/`operate_gids` operate,
//! `read_uids`/`read_gids` read. A verb beyond a peer's grade is refused with 403 naming the verb
//! and the peer.

use std::fmt;

use hyper::Method;

use crate::config::Supervisor;

/// What a request needs, and what a peer may do; ordered, each grade including the ones below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Grade {
    Read,
    Operate,
    Deploy,
}

impl fmt::Display for Grade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Grade::Read => "read",
            Grade::Operate => "operate",
            Grade::Deploy => "deploy",
        })
    }
}

/// Uids and gids given one grade.
#[derive(Clone, Debug, Default)]
struct Grant {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl Grant {
    fn covers(&self, uid: u32, gid: u32, groups: &dyn Fn() -> Vec<u32>) -> bool {
        self.uids.contains(&uid)
            || self.gids.contains(&gid)
            || (!self.gids.is_empty() && groups().iter().any(|g| self.gids.contains(g)))
    }
}

/// The grades of `[supervisor]`, and where the logs are.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    deploy: Grant,
    operate: Grant,
    read: Grant,
    pub(crate) log_dir: std::path::PathBuf,
}

impl Access {
    pub(crate) fn of(settings: &Supervisor) -> Access {
        let grant = |uids: &[u32], gids: &[u32]| Grant { uids: uids.to_vec(), gids: gids.to_vec() };
        Access {
            deploy: grant(&settings.allow_uids, &settings.allow_gids),
            operate: grant(&settings.operate_uids, &settings.operate_gids),
            read: grant(&settings.read_uids, &settings.read_gids),
            log_dir: settings.log_dir.clone(),
        }
    }

    /// The highest grade of a peer (`groups`: its supplementary groups, asked only when a
    /// grade is given to groups); `None`: it may do nothing. Root may do everything.
    pub(crate) fn grade(&self, uid: u32, gid: u32, groups: &dyn Fn() -> Vec<u32>) -> Option<Grade> {
        if uid == 0 || self.deploy.covers(uid, gid, groups) {
            Some(Grade::Deploy)
        } else if self.operate.covers(uid, gid, groups) {
            Some(Grade::Operate)
        } else if self.read.covers(uid, gid, groups) {
            Some(Grade::Read)
        } else {
            None
        }
    }
}

/// The grade a request needs: changing what runs (a service's start, stop, restart) is
/// `operate`; changing what is deployed or the daemon itself is `deploy`; the rest reads.
pub(crate) fn needed(method: &Method, parts: &[&str]) -> Grade {
    match (method, parts) {
        (&Method::POST, ["v1", "services", _, _]) => Grade::Operate,
        (&Method::POST, _) => Grade::Deploy,
        _ => Grade::Read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        let mut settings =
            Supervisor { allow_uids: vec![1000], allow_gids: vec![2000], ..Supervisor::default() };
        settings.operate_uids = vec![1500];
        settings.read_gids = vec![3000];
        Access::of(&settings)
    }

    #[test]
    fn each_peer_gets_its_highest_grade() {
        let a = access();
        let none = || Vec::new();
        assert_eq!(a.grade(0, 0, &none), Some(Grade::Deploy), "root");
        assert_eq!(a.grade(1000, 1000, &none), Some(Grade::Deploy));
        assert_eq!(a.grade(1234, 2000, &none), Some(Grade::Deploy), "by primary group");
        assert_eq!(a.grade(1500, 1500, &none), Some(Grade::Operate));
        assert_eq!(a.grade(1600, 1600, &|| vec![3000]), Some(Grade::Read), "by a supplementary group");
        assert_eq!(a.grade(1600, 1600, &none), None);
    }

    #[test]
    fn restarting_a_service_is_operating_and_switching_is_deploying() {
        assert_eq!(needed(&Method::POST, &["v1", "services", "hunter", "restart"]), Grade::Operate);
        for deploy in [["v1", "switch"], ["v1", "rollback"], ["v1", "reload"], ["v1", "upgrade"]] {
            assert_eq!(needed(&Method::POST, &deploy), Grade::Deploy, "{deploy:?}");
        }
        for read in [&["v1", "status"][..], &["v1", "logs", "a"], &["metrics"], &["v1", "releases"]] {
            assert_eq!(needed(&Method::GET, read), Grade::Read, "{read:?}");
        }
    }
}
