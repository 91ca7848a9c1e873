//! What can go wrong talking to dockerd, typed: code decides on the variant (a container that
//! is gone, a daemon that does not answer), people read the text, which names the object.

use bollard::errors::Error as ApiError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum DockerError {
    #[error("cannot reach dockerd at {host}: {source}")]
    Connect {
        host: String,
        #[source]
        source: ApiError,
    },
    /// A call the daemon answered with an error (or did not answer).
    #[error("cannot {op} {what}: {source}")]
    Api {
        op: &'static str,
        what: String,
        #[source]
        source: ApiError,
    },
    #[error("cannot pull {image}: {detail}")]
    Pull { image: String, detail: String },
    #[error("image {image}: pulled, but its digests are {found:?}, not {digest}")]
    Digest { image: String, found: Vec<String>, digest: String },
    #[error(
        "a container named {name} exists and was not created by this project's supervisor (no \
         {label}={project} with a service and spec-hash label): remove or rename it"
    )]
    NotOurs { name: String, label: &'static str, project: String },
    #[error(
        "project {project} is claimed on this dockerd by another supervisor: {owner}; stop that \
         one first, or give this one another `project` (if it is gone for good: docker volume rm {volume})"
    )]
    Claimed { project: String, volume: String, owner: String },
}

impl DockerError {
    /// A failed call `op` on `what` (an image, a container, a network by name).
    pub(crate) fn api(op: &'static str, what: &str) -> impl FnOnce(ApiError) -> DockerError {
        let what = what.to_owned();
        move |source| DockerError::Api { op, what, source }
    }

    /// The HTTP status dockerd answered with, when it answered.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            DockerError::Api { source, .. } => status_of(source),
            _ => None,
        }
    }

    /// The object does not exist (any more): removed behind our back, or never created.
    pub(crate) fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The container is being removed (a `docker rm -f` from outside still under way): once
    /// it is gone, it can be created again.
    pub(crate) fn is_being_removed(&self) -> bool {
        match self {
            DockerError::Api {
                source: ApiError::DockerResponseServerError { status_code: 409, message },
                ..
            } => message.contains("removal"),
            _ => false,
        }
    }
}

/// The status code of an answer dockerd gave (not of a connection that failed).
pub(crate) fn status_of(e: &ApiError) -> Option<u16> {
    match e {
        ApiError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_container_is_told_by_its_status_not_its_text() {
        let gone = ApiError::DockerResponseServerError { status_code: 404, message: "whatever".into() };
        let e = DockerError::api("start container", "t-api")(gone);
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "cannot start container t-api: Docker responded with status code 404: whatever"
        );
        let busy =
            ApiError::DockerResponseServerError { status_code: 409, message: "No such container".into() };
        assert!(!DockerError::api("start container", "t-api")(busy).is_not_found());
    }
}
