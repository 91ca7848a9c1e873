//! Image references as a release sees them: the repository an image names (tag and digest
//! stripped, Docker Hub's short names spelled out), and whether a reference is pinned by digest.

use crate::config::resolve::image_problem;

/// Why `reference` is not `<repo>@sha256:<64 hex>`, if it is not.
pub(crate) fn pin_problem(reference: &str) -> Option<String> {
    if !reference.contains('@') {
        return Some(format!("{reference:?} is not pinned: expected <repo>@sha256:<64 hex>"));
    }
    image_problem(reference, true)
}

/// The repository of an image reference, comparable across spellings: `ghcr.io/x/brain:1.2`,
/// `ghcr.io/x/brain` and `ghcr.io/x/brain@sha256:...` are one repository, and so are `nats`,
/// `library/nats` and `docker.io/library/nats` (Docker's own normalization).
pub(crate) fn repository(image: &str) -> String {
    let name = image.split_once('@').map_or(image, |(name, _)| name);
    // a ':' after the last '/' starts the tag; one before it is a registry's port
    let name = match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => ("docker.io", name),
    };
    let registry = if registry == "index.docker.io" { "docker.io" } else { registry };
    if registry == "docker.io" && !path.contains('/') {
        return format!("docker.io/library/{path}");
    }
    format!("{registry}/{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn tags_and_digests_are_not_part_of_the_repository() {
        let digest = format!("ghcr.io/x/brain@sha256:{HEX}");
        for image in ["ghcr.io/x/brain", "ghcr.io/x/brain:1.2", &digest, "ghcr.io/x/brain:1.2@sha256:ab"] {
            assert_eq!(repository(image), "ghcr.io/x/brain", "{image}");
        }
    }

    #[test]
    fn a_registry_port_is_not_a_tag() {
        assert_eq!(repository("127.0.0.1:5000/titan-testsvc"), "127.0.0.1:5000/titan-testsvc");
        assert_eq!(repository("127.0.0.1:5000/titan-testsvc:2"), "127.0.0.1:5000/titan-testsvc");
        assert_eq!(repository("localhost/app:1"), "localhost/app");
    }

    #[test]
    fn docker_hub_short_names_are_spelled_out() {
        for image in ["nats:2.10", "library/nats", "docker.io/library/nats", "index.docker.io/library/nats:1"]
        {
            assert_eq!(repository(image), "docker.io/library/nats", "{image}");
        }
        assert_eq!(repository("bitnami/redis:7"), "docker.io/bitnami/redis");
        assert_ne!(repository("ghcr.io/nats"), repository("nats"));
    }

    #[test]
    fn only_a_digest_pins() {
        assert_eq!(pin_problem(&format!("nats@sha256:{HEX}")), None);
        assert!(pin_problem("nats:2.10").unwrap().contains("not pinned"));
        assert!(pin_problem("nats@sha256:abc").unwrap().contains("invalid digest"));
        assert!(pin_problem("").unwrap().contains("not pinned"));
    }
}
