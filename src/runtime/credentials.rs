//! Who a native service runs as: `user` or `user:group` (names or numeric ids) resolved on this
//! host to a uid, a gid, the user's supplementary groups and home. One resolver serves
//! `validate`, boot, reload and the spawn, so a config they accept always runs.

use std::ffi::CString;
use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User};

/// Who the child runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) groups: Vec<u32>,
    pub(crate) home: PathBuf,
    pub(crate) name: String,
}

/// Why a `user` cannot be resolved here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// No passwd entry: by name, or a numeric uid nobody has (a process could run as it, but
    /// its gid, groups and home would be guesses).
    #[error("user {0:?} does not exist on this host")]
    NoUser(String),
    #[error("group {0:?} does not exist on this host")]
    NoGroup(String),
    #[error("user {user:?}: {problem}")]
    Lookup { user: String, problem: String },
}

/// Resolves `user` or `user:group` to credentials with the user's supplementary groups (of
/// the given group when one is named).
pub(crate) fn resolve(spec: &str) -> Result<Credentials, UserError> {
    let lookup = |e: nix::Error| UserError::Lookup { user: spec.to_owned(), problem: e.to_string() };
    let (user, group) = spec.split_once(':').map_or((spec, None), |(u, g)| (u, Some(g)));
    let found = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) if user.is_empty() => Ok(None),
        Err(_) => User::from_name(user),
    };
    let u = found.map_err(lookup)?.ok_or_else(|| UserError::NoUser(user.to_owned()))?;
    let gid = match group {
        None => u.gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => Gid::from_raw(gid),
            Err(_) if g.is_empty() => return Err(UserError::NoGroup(g.to_owned())),
            Err(_) => {
                Group::from_name(g).map_err(lookup)?.ok_or_else(|| UserError::NoGroup(g.to_owned()))?.gid
            }
        },
    };
    let cname = CString::new(u.name.clone()).map_err(|_| UserError::NoUser(user.to_owned()))?;
    let groups = nix::unistd::getgrouplist(&cname, gid).map_err(lookup)?;
    Ok(Credentials {
        uid: u.uid.as_raw(),
        gid: gid.as_raw(),
        groups: groups.into_iter().map(|g| g.as_raw()).collect(),
        home: u.dir,
        name: u.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_resolve_names_and_ids() {
        let root = resolve("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(resolve("0:0").unwrap().name, "root");
        assert_eq!(resolve("nobody").unwrap().name, "nobody");
    }

    #[test]
    fn unknown_users_and_groups_are_named_numeric_ones_too() {
        assert_eq!(resolve("no-such-user-xyz"), Err(UserError::NoUser("no-such-user-xyz".into())));
        // a uid with no passwd entry: validate, boot and reload all refuse it
        assert_eq!(resolve("4242424"), Err(UserError::NoUser("4242424".into())));
        assert_eq!(resolve("root:no-such-group-xyz"), Err(UserError::NoGroup("no-such-group-xyz".into())));
        assert_eq!(resolve(""), Err(UserError::NoUser(String::new())));
        assert!(resolve("root:").is_err());
    }
}
