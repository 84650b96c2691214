//! Per-frame hot paths of sagebidi-perf.
//!
//! Every module except [`python`] is pure Rust (no pyo3) and is tested with `cargo test`.
//! The Python bindings, `sagebidi_perf._native`, live in [`python`] behind the `python` feature.

pub mod audio;
pub mod chunker;
pub mod error;
pub mod eventstream;
pub mod keepalive;
pub mod sigv4;
pub mod websocket;

#[cfg(feature = "python")]
pub mod python;

pub use error::{Error, Result};
