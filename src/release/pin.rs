//! A source services.toml, whose images may be unpinned: read with the project's config parser
//! (`parse_unpinned`), and pinned in place (`pin`) with toml_edit's format-preserving document,
//! so only the `image` values change and every other byte (comments, order, spacing) is kept.

use std::collections::BTreeMap;
use std::path::Path;

use toml_edit::{DocumentMut, Item, Value};

use crate::config::{self, Config, Exec, LoadError, Report, Source};

/// A valid source config: the editable document, the resolved config, and the `image` of each
/// container service as the file writes it.
pub(crate) struct Unpinned {
    pub(crate) doc: DocumentMut,
    pub(crate) config: Config,
    pub(crate) images: BTreeMap<String, String>,
}

/// What stands in for a digest while a source config is checked: never written anywhere.
const PLACEHOLDER: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// `validate --allow-unpinned`: reads and validates a source config whose images may be
/// unpinned, whatever its `[supervisor] require_digests` says.
pub(crate) fn load_unpinned(path: &Path) -> Result<Config, LoadError> {
    let text = read_source(path)?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let source = Source { name: &path.display().to_string(), text: &text, base_dir };
    let unpinned = parse_unpinned(&source, &|name| std::env::var(name).ok()).map_err(LoadError::Invalid)?;
    Ok(unpinned.config)
}

/// The source file's text, bounded as `config::load` bounds it.
pub(crate) fn read_source(path: &Path) -> Result<String, LoadError> {
    let read = |source| LoadError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read)?;
    let bytes = super::read_up_to(file, config::MAX_SIZE)
        .map_err(read)?
        .ok_or_else(|| LoadError::TooLarge { path: path.to_owned() })?;
    String::from_utf8(bytes).map_err(|e| read(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Parses and validates a source config as the config parser would a pinned one: every
/// unpinned image is checked with a placeholder digest appended (the parser then applies
/// `require_digests` to a pinned reference). Lines are unchanged, so every problem keeps its
/// line; a column after an image on the same line (an inline table) moves by the digest's length.
pub(crate) fn parse_unpinned(
    src: &Source<'_>,
    process_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Unpinned, Report> {
    let doc = match src.text.parse::<DocumentMut>() {
        Ok(doc) => doc,
        // the config parser reports the same syntax error, with its line and column
        Err(e) => {
            return Err(config::parse(src, process_env)
                .err()
                .unwrap_or(Report::single(src.name, e.to_string())));
        }
    };
    let written = images(&doc);
    let mut checked = doc.clone();
    for (service, image) in &written {
        let checkable = !image.contains('@') && config::resolve::image_problem(image, false).is_none();
        if checkable {
            pin(&mut checked, service, &format!("{image}@{PLACEHOLDER}"));
        }
    }
    let text = checked.to_string();
    let config = config::parse(&Source { text: &text, ..*src }, process_env)?;
    let images = written
        .into_iter()
        .filter(|(service, _)| config.service(service).is_some_and(|s| matches!(s.exec, Exec::Image { .. })))
        .collect();
    Ok(Unpinned { doc, config, images })
}

/// Replaces `services.<service>.image` with `reference`, keeping the spaces and comment around
/// the value. False when the file has no such string value.
pub(crate) fn pin(doc: &mut DocumentMut, service: &str, reference: &str) -> bool {
    let value = doc
        .get_mut("services")
        .and_then(Item::as_table_like_mut)
        .and_then(|services| services.get_mut(service))
        .and_then(Item::as_table_like_mut)
        .and_then(|table| table.get_mut("image"))
        .and_then(Item::as_value_mut);
    let Some(value @ Value::String(_)) = value else {
        return false;
    };
    let decor = value.decor().clone();
    *value = Value::from(reference);
    *value.decor_mut() = decor;
    true
}

/// `services.<name>.image` of every service that writes one as a string.
fn images(doc: &DocumentMut) -> BTreeMap<String, String> {
    let Some(services) = doc.get("services").and_then(Item::as_table_like) else {
        return BTreeMap::new();
    };
    services
        .iter()
        .filter_map(|(name, item)| {
            let image = item.as_table_like()?.get("image")?.as_str()?;
            Some((name.to_owned(), image.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    const SOURCE: &str = r#"# the source, as engineers write it
[supervisor]
require_digests = true   # enforced on the release, not on this file

[services.api]
image = 'ghcr.io/x/api:1.2'   # tagged
health = { none = true }

[services]
worker = { image = "ghcr.io/x/worker", health = { none = true } }

[services.job]
command = ["/bin/true"]
kind = "oneshot"
"#;

    fn parse(text: &str) -> Result<Unpinned, Report> {
        let src = Source { name: "services.toml", text, base_dir: Path::new("/srv/release") };
        parse_unpinned(&src, &|_| None)
    }

    #[test]
    fn an_unpinned_source_validates_and_names_its_container_images() {
        let unpinned = parse(SOURCE).unwrap();
        let images: Vec<_> = unpinned.images.iter().map(|(s, i)| (s.as_str(), i.as_str())).collect();
        assert_eq!(images, [("api", "ghcr.io/x/api:1.2"), ("worker", "ghcr.io/x/worker")]);
        assert_eq!(unpinned.config.services.len(), 3);
    }

    #[test]
    fn pinning_changes_only_the_image_values() {
        let mut unpinned = parse(SOURCE).unwrap();
        assert!(pin(&mut unpinned.doc, "api", &format!("ghcr.io/x/api@sha256:{HEX}")));
        assert!(pin(&mut unpinned.doc, "worker", &format!("ghcr.io/x/worker@sha256:{HEX}")));
        let expected = SOURCE
            .replace("'ghcr.io/x/api:1.2'", &format!("\"ghcr.io/x/api@sha256:{HEX}\""))
            .replace("\"ghcr.io/x/worker\"", &format!("\"ghcr.io/x/worker@sha256:{HEX}\""));
        assert_eq!(unpinned.doc.to_string(), expected);
    }

    #[test]
    fn there_is_nothing_to_pin_on_a_native_service() {
        let mut unpinned = parse(SOURCE).unwrap();
        assert!(!pin(&mut unpinned.doc, "job", "x@sha256:0"));
        assert!(!pin(&mut unpinned.doc, "nobody", "x@sha256:0"));
        assert_eq!(unpinned.doc.to_string(), SOURCE);
    }

    #[test]
    fn other_problems_of_the_source_are_still_reported_at_their_line() {
        let text = SOURCE.replace("kind = \"oneshot\"", "kind = \"sometimes\"");
        let report = parse(&text).err().unwrap();
        assert_eq!(report.items.len(), 1, "{report}");
        assert_eq!((report.items[0].line, report.items[0].path.as_str()), (14, "services.job.kind"));
    }

    #[test]
    fn a_bad_image_reference_is_reported_as_written() {
        let text = SOURCE.replace("'ghcr.io/x/api:1.2'", "'ghcr.io/x/api 1.2'");
        let report = parse(&text).err().unwrap().to_string();
        assert!(
            report.contains("services.toml:6:9: services.api.image: invalid image reference"),
            "{report}"
        );
        assert!(!report.contains(PLACEHOLDER), "{report}");
    }

    #[test]
    fn a_syntax_error_is_reported_by_the_config_parser() {
        let report = parse("[services.api\nimage = 1\n").err().unwrap().to_string();
        assert!(report.starts_with("services.toml:1:"), "{report}");
    }
}
