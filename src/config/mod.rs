//! The services.toml model.
