//! Deploys: the files a release switch reads and writes (`state`), the checks that verify a
//! release (`verify`), the switch pipeline with its rollback (`switch`), the probation that
//! follows a verified switch (`probation`), and what survives the daemon dying in between
//! (`journal`).

mod fault;
pub(crate) mod journal;
mod migrate;
pub(crate) mod probation;
pub(crate) mod state;
pub(crate) mod switch;
pub(crate) mod verify;
