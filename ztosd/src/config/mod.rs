//! The configuration document: types, parsing, validation and JSON Schema.

mod types;

pub use types::*;
