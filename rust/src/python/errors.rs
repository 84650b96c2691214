//! The one conversion from [`crate::Error`] to a Python exception. The exception classes are
//! defined in Python (`sagebidi_perf.errors`) so that they can inherit from two bases.

use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

use crate::Error;

pyo3::import_exception!(sagebidi_perf.errors, ChecksumError);
pyo3::import_exception!(sagebidi_perf.errors, MalformedMessageError);
pyo3::import_exception!(sagebidi_perf.errors, MessageTooLargeError);
pyo3::import_exception!(sagebidi_perf.errors, TruncatedMessageError);
pyo3::import_exception!(sagebidi_perf.errors, SignatureMismatchError);
pyo3::import_exception!(sagebidi_perf.errors, InvalidArgumentError);

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let message = err.to_string();
        let offset = err.offset();
        match err {
            Error::Checksum { .. } => ChecksumError::new_err((message, offset)),
            Error::Malformed { .. } => MalformedMessageError::new_err((message, offset)),
            Error::TooLarge { .. } => MessageTooLargeError::new_err((message, offset)),
            Error::Truncated { .. } => TruncatedMessageError::new_err((message, offset)),
            Error::SignatureMismatch { .. } => SignatureMismatchError::new_err(message),
            Error::InvalidArgument(_) => InvalidArgumentError::new_err(message),
        }
    }
}

/// A `ValueError` for argument conversions that fail before reaching the core.
pub fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}
