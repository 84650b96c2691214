//! Python bindings: the private module `sagebidi_perf._native`. Only glue lives here: argument
//! extraction, releasing the interpreter around real work, and building Python results. The
//! logic is in the pure-Rust modules of the crate.

use pyo3::prelude::*;

mod audio;
mod buffer;
mod chunker;
pub mod errors;
mod eventstream;
mod keepalive;
mod sigv4;
mod websocket;

#[pymodule]
#[pyo3(name = "_native")]
fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    eventstream::register(m)?;
    sigv4::register(m)?;
    chunker::register(m)?;
    audio::register(m)?;
    keepalive::register(m)?;
    websocket::register(m)?;
    Ok(())
}
