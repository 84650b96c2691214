//! The crate's one error type. Python sees it through `python::errors` (one conversion, at the
//! boundary), as `sagebidi_perf.errors.SageBidiError` and its subclasses.
#![forbid(unsafe_code)]

use std::fmt;

/// Everything that can go wrong in the native core. Offsets are byte offsets into the input
/// stream given to the decoder (counted from the first byte ever fed), so a caller can find the
/// bad frame in a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A CRC32 did not match: `what` is "prelude" or "message".
    Checksum {
        what: &'static str,
        offset: u64,
        expected: u32,
        actual: u32,
    },
    /// A length field or the header block is malformed (bad lengths, bad header name/type/value,
    /// invalid UTF-8, duplicate header, truncated value).
    Malformed { offset: u64, message: String },
    /// A size limit was exceeded (`what`: "message", "payload", "headers", "header value").
    TooLarge {
        offset: u64,
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// The input ended inside a message (only raised when the caller says the stream is over).
    Truncated { offset: u64, missing: u64 },
    /// A SigV4 request or event signature did not verify.
    SignatureMismatch { message: String },
    /// A caller passed an argument outside its domain (zero sample rate, unaligned buffer, ...).
    InvalidArgument(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn malformed(offset: u64, message: impl Into<String>) -> Self {
        Error::Malformed {
            offset,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    /// The byte offset the error refers to, where there is one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::Checksum { offset, .. }
            | Error::Malformed { offset, .. }
            | Error::TooLarge { offset, .. }
            | Error::Truncated { offset, .. } => Some(*offset),
            Error::SignatureMismatch { .. } | Error::InvalidArgument(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Checksum {
                what,
                offset,
                expected,
                actual,
            } => {
                let title = if *what == "prelude" {
                    "Prelude"
                } else {
                    "Message"
                };
                write!(
                    f,
                    "{title} checksum mismatch at offset {offset}: expected 0x{expected:08X}, computed 0x{actual:08X}"
                )
            }
            Error::Malformed { offset, message } => {
                write!(f, "malformed event-stream message at offset {offset}: {message}")
            }
            Error::TooLarge {
                offset,
                what,
                size,
                limit,
            } => write!(
                f,
                "{what} too large at offset {offset}: {size} bytes, limit {limit}"
            ),
            Error::Truncated { offset, missing } => write!(
                f,
                "stream ended inside a message that starts at offset {offset}: {missing} more bytes expected"
            ),
            Error::SignatureMismatch { message } => write!(f, "signature mismatch: {message}"),
            Error::InvalidArgument(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}
