//! Converters from other tools' configuration into a services.toml.

pub(crate) mod compose;
pub(crate) mod pm2;
