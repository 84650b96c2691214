//! AWS event-stream codec (`application/vnd.amazon.eventstream`): encoder, one-message decoder
//! and an incremental decoder for byte streams split anywhere.
//!
//! Wire format (big-endian):
//!
//! ```text
//! total_length u32 | headers_length u32 | prelude_crc u32 (CRC32 of bytes 0..8)
//! headers (headers_length bytes) | payload | message_crc u32 (CRC32 of everything before it)
//! header = name_len u8 (1..=255) | name (UTF-8) | type u8 | value
//! ```
//!
//! Value types: 0 true, 1 false, 2 int8, 3 int16, 4 int32, 5 int64, 6 bytes (u16 length),
//! 7 string (u16 length, UTF-8), 8 timestamp (int64 ms since the epoch), 9 uuid (16 bytes).
//!
//! Limits (as in the AWS SDKs): payload ≤ 16 MiB, header block ≤ 128 KiB, one bytes/string value
//! ≤ 32767 bytes, so a whole message is at most [`MAX_MESSAGE_LEN`].
//!
//! Decoding is strict. In order, for each message:
//! 1. as soon as the 12-byte prelude is in: `total_length < 16` or `headers_length` not fitting in
//!    it is [`Error::Malformed`]; a message, header block or payload over its limit is
//!    [`Error::TooLarge`] (so a hostile 4 GiB length is refused before anything is buffered);
//!    then the prelude CRC ([`Error::Checksum`]). Limits come before the CRC, as in botocore,
//!    so an absurd length is reported as such.
//! 2. once the whole message is in: the message CRC ([`Error::Checksum`]);
//! 3. the header block: name length 0, a name or value running past the block, an unknown type,
//!    invalid UTF-8 in a name or string, or a duplicate name are [`Error::Malformed`]; a bytes or
//!    string value longer than 32767 bytes is [`Error::TooLarge`].
//!
//! Duplicate header names are rejected (protocol doc §3.1: "Duplicate names are not allowed";
//! botocore's `duplicate_header` vector is rejected for this reason).
//!
//! Error offsets count from the first byte given to the decoder: checksum, size and truncation
//! errors give the offset of the message's first byte, header errors the offset of the faulty
//! field. Encoding errors give offsets inside the message being built.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::fmt;

use crate::{Error, Result};

/// Bytes of the prelude (`total_length`, `headers_length`, `prelude_crc`).
pub const PRELUDE_LEN: usize = 12;
/// Bytes a message has besides its headers and payload (prelude + message CRC).
pub const MESSAGE_OVERHEAD: usize = PRELUDE_LEN + 4;
/// Largest payload accepted or produced (16 MiB).
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;
/// Largest header block accepted or produced (128 KiB).
pub const MAX_HEADERS_LEN: usize = 128 * 1024;
/// Largest bytes or string header value (smithy: 32767).
pub const MAX_HEADER_VALUE_LEN: usize = 32767;
/// Largest header name (its length is one byte).
pub const MAX_HEADER_NAME_LEN: usize = 255;
/// Largest whole message: overhead + largest header block + largest payload.
pub const MAX_MESSAGE_LEN: usize = MESSAGE_OVERHEAD + MAX_HEADERS_LEN + MAX_PAYLOAD_LEN;

/// Names of the ten wire types, indexed by type code.
const TYPE_NAMES: [&str; 10] = [
    "bool_true",
    "bool_false",
    "byte",
    "short",
    "integer",
    "long",
    "byte_array",
    "string",
    "timestamp",
    "uuid",
];

/// The wire type code of a header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HeaderType {
    BoolTrue = 0,
    BoolFalse = 1,
    Byte = 2,
    Short = 3,
    Int = 4,
    Long = 5,
    Bytes = 6,
    String = 7,
    Timestamp = 8,
    Uuid = 9,
}

impl HeaderType {
    /// The type for a wire code, `None` for codes above 9.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => HeaderType::BoolTrue,
            1 => HeaderType::BoolFalse,
            2 => HeaderType::Byte,
            3 => HeaderType::Short,
            4 => HeaderType::Int,
            5 => HeaderType::Long,
            6 => HeaderType::Bytes,
            7 => HeaderType::String,
            8 => HeaderType::Timestamp,
            9 => HeaderType::Uuid,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        TYPE_NAMES[self as usize]
    }
}

/// An owned header value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Vec<u8>),
    String(String),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
}

impl HeaderValue {
    pub fn header_type(&self) -> HeaderType {
        self.as_value_ref().header_type()
    }

    /// A borrowed view of this value.
    pub fn as_value_ref(&self) -> HeaderValueRef<'_> {
        match self {
            HeaderValue::Bool(v) => HeaderValueRef::Bool(*v),
            HeaderValue::Byte(v) => HeaderValueRef::Byte(*v),
            HeaderValue::Short(v) => HeaderValueRef::Short(*v),
            HeaderValue::Int(v) => HeaderValueRef::Int(*v),
            HeaderValue::Long(v) => HeaderValueRef::Long(*v),
            HeaderValue::Bytes(v) => HeaderValueRef::Bytes(v),
            HeaderValue::String(v) => HeaderValueRef::String(v),
            HeaderValue::Timestamp(v) => HeaderValueRef::Timestamp(*v),
            HeaderValue::Uuid(v) => HeaderValueRef::Uuid(*v),
        }
    }
}

/// A header value borrowed from a buffer (what the decoder yields without allocating).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderValueRef<'a> {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(&'a [u8]),
    String(&'a str),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
}

impl<'a> HeaderValueRef<'a> {
    pub fn header_type(&self) -> HeaderType {
        match self {
            HeaderValueRef::Bool(true) => HeaderType::BoolTrue,
            HeaderValueRef::Bool(false) => HeaderType::BoolFalse,
            HeaderValueRef::Byte(_) => HeaderType::Byte,
            HeaderValueRef::Short(_) => HeaderType::Short,
            HeaderValueRef::Int(_) => HeaderType::Int,
            HeaderValueRef::Long(_) => HeaderType::Long,
            HeaderValueRef::Bytes(_) => HeaderType::Bytes,
            HeaderValueRef::String(_) => HeaderType::String,
            HeaderValueRef::Timestamp(_) => HeaderType::Timestamp,
            HeaderValueRef::Uuid(_) => HeaderType::Uuid,
        }
    }

    pub fn to_owned_value(&self) -> HeaderValue {
        match *self {
            HeaderValueRef::Bool(v) => HeaderValue::Bool(v),
            HeaderValueRef::Byte(v) => HeaderValue::Byte(v),
            HeaderValueRef::Short(v) => HeaderValue::Short(v),
            HeaderValueRef::Int(v) => HeaderValue::Int(v),
            HeaderValueRef::Long(v) => HeaderValue::Long(v),
            HeaderValueRef::Bytes(v) => HeaderValue::Bytes(v.to_vec()),
            HeaderValueRef::String(v) => HeaderValue::String(v.to_owned()),
            HeaderValueRef::Timestamp(v) => HeaderValue::Timestamp(v),
            HeaderValueRef::Uuid(v) => HeaderValue::Uuid(v),
        }
    }

    /// Bytes this value takes on the wire after its type byte.
    fn wire_len(&self) -> usize {
        match self {
            HeaderValueRef::Bool(_) => 0,
            HeaderValueRef::Byte(_) => 1,
            HeaderValueRef::Short(_) => 2,
            HeaderValueRef::Int(_) => 4,
            HeaderValueRef::Long(_) | HeaderValueRef::Timestamp(_) => 8,
            HeaderValueRef::Bytes(v) => 2 + v.len(),
            HeaderValueRef::String(v) => 2 + v.len(),
            HeaderValueRef::Uuid(_) => 16,
        }
    }
}

impl From<HeaderValueRef<'_>> for HeaderValue {
    fn from(v: HeaderValueRef<'_>) -> Self {
        v.to_owned_value()
    }
}

/// An owned header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    pub name: String,
    pub value: HeaderValue,
}

impl Header {
    pub fn new(name: impl Into<String>, value: HeaderValue) -> Self {
        Header {
            name: name.into(),
            value,
        }
    }
}

/// A header borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderRef<'a> {
    pub name: &'a str,
    pub value: HeaderValueRef<'a>,
}

/// Anything the encoder can take as a header: [`Header`], [`HeaderRef`] or `(&str, HeaderValueRef)`.
pub trait AsHeader {
    fn header_name(&self) -> &str;
    fn header_value(&self) -> HeaderValueRef<'_>;
}

impl AsHeader for Header {
    fn header_name(&self) -> &str {
        &self.name
    }
    fn header_value(&self) -> HeaderValueRef<'_> {
        self.value.as_value_ref()
    }
}

impl AsHeader for HeaderRef<'_> {
    fn header_name(&self) -> &str {
        self.name
    }
    fn header_value(&self) -> HeaderValueRef<'_> {
        self.value
    }
}

impl<T: AsHeader + ?Sized> AsHeader for &T {
    fn header_name(&self) -> &str {
        (**self).header_name()
    }
    fn header_value(&self) -> HeaderValueRef<'_> {
        (**self).header_value()
    }
}

/// An owned, decoded message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub headers: Vec<Header>,
    pub payload: Vec<u8>,
}

impl Message {
    pub fn new(headers: Vec<Header>, payload: Vec<u8>) -> Self {
        Message { headers, payload }
    }

    /// The value of the header called `name` (names are case-sensitive).
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| &h.value)
    }

    /// This message on the wire.
    pub fn encode(&self) -> Result<Vec<u8>> {
        encode(&self.headers, &self.payload)
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Names already seen, without allocating for the usual handful of headers.
struct NameSet<'a> {
    small: [&'a [u8]; 16],
    len: usize,
    large: Option<HashSet<&'a [u8]>>,
}

impl<'a> NameSet<'a> {
    fn new() -> Self {
        NameSet {
            small: [&[]; 16],
            len: 0,
            large: None,
        }
    }

    /// Adds `name`; false if it was already there.
    fn insert(&mut self, name: &'a [u8]) -> bool {
        if let Some(set) = self.large.as_mut() {
            return set.insert(name);
        }
        if self.small[..self.len].contains(&name) {
            return false;
        }
        if self.len < self.small.len() {
            self.small[self.len] = name;
            self.len += 1;
        } else {
            let mut set: HashSet<&'a [u8]> = self.small.iter().copied().collect();
            set.insert(name);
            self.large = Some(set);
        }
        true
    }
}

/// Checks `headers` against the encoding rules and returns the header block's length.
///
/// Errors: [`Error::InvalidArgument`] for an empty or over-long (> 255 bytes) name or a duplicate
/// name; [`Error::TooLarge`] for a bytes/string value over 32767 bytes or a block over 128 KiB
/// (offsets are inside the message being built).
pub fn headers_encoded_len<H: AsHeader>(headers: &[H]) -> Result<usize> {
    let mut len = 0usize;
    let mut names = NameSet::new();
    for h in headers {
        let name = h.header_name();
        let value = h.header_value();
        if name.is_empty() || name.len() > MAX_HEADER_NAME_LEN {
            return Err(Error::invalid(format!(
                "event-stream header name must be 1 to {MAX_HEADER_NAME_LEN} bytes of UTF-8, got {} bytes",
                name.len()
            )));
        }
        if !names.insert(name.as_bytes()) {
            return Err(Error::invalid(format!(
                "duplicate event-stream header name {name:?}"
            )));
        }
        if let HeaderValueRef::Bytes(v) = value {
            check_value_len(v.len(), len)?;
        } else if let HeaderValueRef::String(v) = value {
            check_value_len(v.len(), len)?;
        }
        len += 2 + name.len() + value.wire_len();
        if len > MAX_HEADERS_LEN {
            return Err(Error::TooLarge {
                offset: PRELUDE_LEN as u64,
                what: "headers",
                size: len as u64,
                limit: MAX_HEADERS_LEN as u64,
            });
        }
    }
    Ok(len)
}

fn check_value_len(value_len: usize, at: usize) -> Result<()> {
    if value_len > MAX_HEADER_VALUE_LEN {
        return Err(Error::TooLarge {
            offset: (PRELUDE_LEN + at) as u64,
            what: "header value",
            size: value_len as u64,
            limit: MAX_HEADER_VALUE_LEN as u64,
        });
    }
    Ok(())
}

/// Length of the whole encoded message, after checking every rule (see [`headers_encoded_len`];
/// also [`Error::TooLarge`] for a payload over 16 MiB).
pub fn encoded_len<H: AsHeader>(headers: &[H], payload_len: usize) -> Result<usize> {
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(Error::TooLarge {
            offset: 0,
            what: "payload",
            size: payload_len as u64,
            limit: MAX_PAYLOAD_LEN as u64,
        });
    }
    Ok(MESSAGE_OVERHEAD + headers_encoded_len(headers)? + payload_len)
}

/// Writes into a slice whose length was computed beforehand.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl SliceWriter<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        self.buf[self.pos..end].copy_from_slice(bytes);
        self.pos = end;
    }
}

fn write_headers<H: AsHeader>(headers: &[H], w: &mut SliceWriter<'_>) {
    for h in headers {
        let name = h.header_name();
        let value = h.header_value();
        // Lengths were checked by `headers_encoded_len`: name ≤ 255, values ≤ 32767.
        w.put(&[name.len() as u8]);
        w.put(name.as_bytes());
        w.put(&[value.header_type().code()]);
        match value {
            HeaderValueRef::Bool(_) => {}
            HeaderValueRef::Byte(v) => w.put(&v.to_be_bytes()),
            HeaderValueRef::Short(v) => w.put(&v.to_be_bytes()),
            HeaderValueRef::Int(v) => w.put(&v.to_be_bytes()),
            HeaderValueRef::Long(v) | HeaderValueRef::Timestamp(v) => w.put(&v.to_be_bytes()),
            HeaderValueRef::Bytes(v) => {
                w.put(&(v.len() as u16).to_be_bytes());
                w.put(v);
            }
            HeaderValueRef::String(v) => {
                w.put(&(v.len() as u16).to_be_bytes());
                w.put(v.as_bytes());
            }
            HeaderValueRef::Uuid(v) => w.put(&v),
        }
    }
}

/// Encodes one message into `out`, whose length must be exactly
/// `encoded_len(headers, payload.len())` (which the caller has called, so the rules are checked).
///
/// # Panics
/// If `out` has another length.
pub fn encode_to_slice<H: AsHeader>(
    headers: &[H],
    headers_len: usize,
    payload: &[u8],
    out: &mut [u8],
) {
    let total = out.len();
    assert_eq!(
        total,
        MESSAGE_OVERHEAD + headers_len + payload.len(),
        "encode_to_slice: wrong output length"
    );
    let mut w = SliceWriter { buf: out, pos: 0 };
    w.put(&(total as u32).to_be_bytes());
    w.put(&(headers_len as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&w.buf[..8]);
    w.put(&prelude_crc.to_be_bytes());
    write_headers(headers, &mut w);
    w.put(payload);
    debug_assert_eq!(w.pos, total - 4);
    let mut hasher = crc32fast::Hasher::new_with_initial(prelude_crc);
    hasher.update(&w.buf[8..total - 4]);
    let message_crc = hasher.finalize();
    w.put(&message_crc.to_be_bytes());
}

/// Writes a message from an already encoded (and checked) header block into `out`, whose
/// length must be exactly `16 + header_block.len() + payload.len()`.
///
/// # Panics
/// If `out` has another length.
pub fn encode_raw_to_slice(header_block: &[u8], payload: &[u8], out: &mut [u8]) {
    let total = out.len();
    assert_eq!(
        total,
        MESSAGE_OVERHEAD + header_block.len() + payload.len(),
        "encode_raw_to_slice: wrong output length"
    );
    let mut w = SliceWriter { buf: out, pos: 0 };
    w.put(&(total as u32).to_be_bytes());
    w.put(&(header_block.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&w.buf[..8]);
    w.put(&prelude_crc.to_be_bytes());
    w.put(header_block);
    w.put(payload);
    let mut hasher = crc32fast::Hasher::new_with_initial(prelude_crc);
    hasher.update(&w.buf[8..total - 4]);
    let message_crc = hasher.finalize();
    w.put(&message_crc.to_be_bytes());
}

/// Appends one encoded message to `out`.
pub fn encode_into<H: AsHeader>(headers: &[H], payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let total = encoded_len(headers, payload.len())?;
    let headers_len = total - MESSAGE_OVERHEAD - payload.len();
    let start = out.len();
    out.resize(start + total, 0);
    encode_to_slice(headers, headers_len, payload, &mut out[start..]);
    Ok(())
}

/// Encodes one message.
pub fn encode<H: AsHeader>(headers: &[H], payload: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(headers, payload, &mut out)?;
    Ok(out)
}

/// Appends only the header block of `headers` to `out` (SigV4 event signing hashes the encoded
/// `:date` header this way).
pub fn encode_headers_into<H: AsHeader>(headers: &[H], out: &mut Vec<u8>) -> Result<()> {
    let len = headers_encoded_len(headers)?;
    let start = out.len();
    out.resize(start + len, 0);
    let mut w = SliceWriter {
        buf: &mut out[start..],
        pos: 0,
    };
    write_headers(headers, &mut w);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// The checked prelude of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prelude {
    pub total_len: usize,
    pub headers_len: usize,
    pub crc: u32,
}

impl Prelude {
    pub fn payload_len(&self) -> usize {
        self.total_len - MESSAGE_OVERHEAD - self.headers_len
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

/// Checks the 12-byte prelude at the start of `bytes` (which must hold at least 12 bytes) of a
/// message that starts at stream offset `offset`: lengths and limits first, then the CRC.
pub fn parse_prelude(bytes: &[u8], offset: u64) -> Result<Prelude> {
    if bytes.len() < PRELUDE_LEN {
        return Err(Error::Truncated {
            offset,
            missing: (PRELUDE_LEN - bytes.len()) as u64,
        });
    }
    let total = be32(bytes, 0) as usize;
    let headers = be32(bytes, 4) as usize;
    let crc = be32(bytes, 8);
    if total < MESSAGE_OVERHEAD {
        return Err(Error::malformed(
            offset,
            format!("total_length {total} is below the minimum of {MESSAGE_OVERHEAD}"),
        ));
    }
    if total > MAX_MESSAGE_LEN {
        return Err(Error::TooLarge {
            offset,
            what: "message",
            size: total as u64,
            limit: MAX_MESSAGE_LEN as u64,
        });
    }
    if headers > MAX_HEADERS_LEN {
        return Err(Error::TooLarge {
            offset,
            what: "headers",
            size: headers as u64,
            limit: MAX_HEADERS_LEN as u64,
        });
    }
    if headers > total - MESSAGE_OVERHEAD {
        return Err(Error::malformed(
            offset + 4,
            format!(
                "headers_length {headers} does not fit in total_length {total} (message at offset {offset})"
            ),
        ));
    }
    let payload = total - MESSAGE_OVERHEAD - headers;
    if payload > MAX_PAYLOAD_LEN {
        return Err(Error::TooLarge {
            offset,
            what: "payload",
            size: payload as u64,
            limit: MAX_PAYLOAD_LEN as u64,
        });
    }
    let actual = crc32fast::hash(&bytes[..8]);
    if actual != crc {
        return Err(Error::Checksum {
            what: "prelude",
            offset,
            expected: crc,
            actual,
        });
    }
    Ok(Prelude {
        total_len: total,
        headers_len: headers,
        crc,
    })
}

/// A decoded message borrowed from the bytes it came in. Its header block has been checked, so
/// iterating over it cannot fail.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MessageRef<'a> {
    header_block: &'a [u8],
    header_count: usize,
    payload: &'a [u8],
}

impl<'a> MessageRef<'a> {
    /// The encoded header block (exactly as on the wire).
    pub fn header_block(&self) -> &'a [u8] {
        self.header_block
    }

    pub fn header_count(&self) -> usize {
        self.header_count
    }

    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            block: self.header_block,
            pos: 0,
        }
    }

    /// The value of the header called `name`.
    pub fn header(&self, name: &str) -> Option<HeaderValueRef<'a>> {
        self.headers().find(|h| h.name == name).map(|h| h.value)
    }

    pub fn to_message(&self) -> Message {
        Message {
            headers: self
                .headers()
                .map(|h| Header {
                    name: h.name.to_owned(),
                    value: h.value.to_owned_value(),
                })
                .collect(),
            payload: self.payload.to_vec(),
        }
    }

    /// Length of this message on the wire.
    pub fn encoded_len(&self) -> usize {
        MESSAGE_OVERHEAD + self.header_block.len() + self.payload.len()
    }
}

impl fmt::Debug for MessageRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageRef")
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// Iterates over a header block that has been checked by [`check_header_block`].
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    block: &'a [u8],
    pos: usize,
}

impl<'a> HeaderIter<'a> {
    /// Iterates over a header block checked earlier by [`check_header_block`] (on an unchecked
    /// block it stops at the first fault).
    pub fn new(block: &'a [u8]) -> Self {
        HeaderIter { block, pos: 0 }
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = HeaderRef<'a>;

    fn next(&mut self) -> Option<HeaderRef<'a>> {
        if self.pos >= self.block.len() {
            return None;
        }
        match parse_header(self.block, self.pos) {
            Ok((raw, next)) => {
                self.pos = next;
                raw.to_header_ref()
            }
            // Unreachable for a checked block; stop rather than loop.
            Err(_) => {
                self.pos = self.block.len();
                None
            }
        }
    }
}

/// A header-block problem: position inside the block and what is wrong.
struct HeaderFault {
    at: usize,
    too_large: Option<usize>,
    message: String,
}

impl HeaderFault {
    fn new(at: usize, message: impl Into<String>) -> Self {
        HeaderFault {
            at,
            too_large: None,
            message: message.into(),
        }
    }

    fn into_error(self, block_offset: u64) -> Error {
        let offset = block_offset + self.at as u64;
        match self.too_large {
            Some(size) => Error::TooLarge {
                offset,
                what: "header value",
                size: size as u64,
                limit: MAX_HEADER_VALUE_LEN as u64,
            },
            None => Error::Malformed {
                offset,
                message: self.message,
            },
        }
    }
}

/// Takes `n` bytes of the block at `at` for the value of header `name`.
#[inline]
fn take<'a>(block: &'a [u8], at: usize, n: usize, name: &[u8]) -> Result<&'a [u8], HeaderFault> {
    match block.get(at..at + n) {
        Some(s) => Ok(s),
        None => Err(HeaderFault::new(
            at,
            format!(
                "value of header {} is cut off: needs {n} bytes, {} left in the header block",
                show(name),
                block.len().saturating_sub(at)
            ),
        )),
    }
}

fn fixed<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

/// True if `b` is UTF-8; the usual all-ASCII case is checked with a loop the compiler
/// vectorises (`str::from_utf8` is slow on the short strings headers hold).
#[inline]
fn is_utf8(b: &[u8]) -> bool {
    b.iter().fold(0u8, |acc, &c| acc | c) < 0x80 || std::str::from_utf8(b).is_ok()
}

/// One header as found in the block, checked (lengths, type, UTF-8) but not yet converted.
#[derive(Clone, Copy)]
struct RawHeader<'a> {
    name: &'a [u8],
    ty: HeaderType,
    /// The value's bytes (after the length prefix for bytes and strings).
    data: &'a [u8],
}

impl<'a> RawHeader<'a> {
    /// The typed view. `None` only if the UTF-8 check was bypassed, which cannot happen.
    fn to_header_ref(self) -> Option<HeaderRef<'a>> {
        let name = std::str::from_utf8(self.name).ok()?;
        let d = self.data;
        let value = match self.ty {
            HeaderType::BoolTrue => HeaderValueRef::Bool(true),
            HeaderType::BoolFalse => HeaderValueRef::Bool(false),
            HeaderType::Byte => HeaderValueRef::Byte(i8::from_be_bytes(fixed(d))),
            HeaderType::Short => HeaderValueRef::Short(i16::from_be_bytes(fixed(d))),
            HeaderType::Int => HeaderValueRef::Int(i32::from_be_bytes(fixed(d))),
            HeaderType::Long => HeaderValueRef::Long(i64::from_be_bytes(fixed(d))),
            HeaderType::Timestamp => HeaderValueRef::Timestamp(i64::from_be_bytes(fixed(d))),
            HeaderType::Uuid => HeaderValueRef::Uuid(fixed(d)),
            HeaderType::Bytes => HeaderValueRef::Bytes(d),
            HeaderType::String => HeaderValueRef::String(std::str::from_utf8(d).ok()?),
        };
        Some(HeaderRef { name, value })
    }
}

/// Lossy name for error messages.
fn show(name: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(name))
}

/// Parses and checks the header starting at `pos` of a header block; returns it and the next
/// position.
fn parse_header(block: &[u8], pos: usize) -> Result<(RawHeader<'_>, usize), HeaderFault> {
    let name_len = block[pos] as usize;
    if name_len == 0 {
        return Err(HeaderFault::new(pos, "header name length is 0"));
    }
    let name_start = pos + 1;
    let name_end = name_start + name_len;
    let name = block.get(name_start..name_end).ok_or_else(|| {
        HeaderFault::new(
            pos,
            format!(
                "header name of {name_len} bytes runs past the header block ({} bytes left)",
                block.len() - name_start
            ),
        )
    })?;
    if !is_utf8(name) {
        return Err(HeaderFault::new(
            name_start,
            "header name is not valid UTF-8",
        ));
    }
    let type_at = name_end;
    let code = *block.get(type_at).ok_or_else(|| {
        HeaderFault::new(type_at, format!("header {} has no value type", show(name)))
    })?;
    let Some(ty) = HeaderType::from_code(code) else {
        return Err(HeaderFault::new(
            type_at,
            format!("header {} has unknown value type 0x{code:02X}", show(name)),
        ));
    };
    let at = type_at + 1;
    let fixed_len = match ty {
        HeaderType::BoolTrue | HeaderType::BoolFalse => 0,
        HeaderType::Byte => 1,
        HeaderType::Short => 2,
        HeaderType::Int => 4,
        HeaderType::Long | HeaderType::Timestamp => 8,
        HeaderType::Uuid => 16,
        HeaderType::Bytes | HeaderType::String => {
            let n = u16::from_be_bytes(fixed(take(block, at, 2, name)?)) as usize;
            let data = take(block, at + 2, n, name).map_err(|mut f| {
                f.at = at;
                f.message = format!(
                    "{} value of header {} declares {n} bytes, {} left in the header block",
                    ty.name(),
                    show(name),
                    block.len() - (at + 2)
                );
                f
            })?;
            if n > MAX_HEADER_VALUE_LEN {
                return Err(HeaderFault {
                    at,
                    too_large: Some(n),
                    message: String::new(),
                });
            }
            if ty == HeaderType::String && !is_utf8(data) {
                return Err(HeaderFault::new(
                    at + 2,
                    format!("string value of header {} is not valid UTF-8", show(name)),
                ));
            }
            return Ok((RawHeader { name, ty, data }, at + 2 + n));
        }
    };
    let data = take(block, at, fixed_len, name)?;
    Ok((RawHeader { name, ty, data }, at + fixed_len))
}

/// Checks a whole header block (types, lengths, UTF-8, no duplicate names) and returns the
/// number of headers. `block_offset` is the stream offset of its first byte, for errors.
pub fn check_header_block(block: &[u8], block_offset: u64) -> Result<usize> {
    let mut names = NameSet::new();
    let mut pos = 0;
    let mut count = 0;
    while pos < block.len() {
        let (h, next) = parse_header(block, pos).map_err(|f| f.into_error(block_offset))?;
        if !names.insert(h.name) {
            return Err(Error::malformed(
                block_offset + pos as u64,
                format!("duplicate header name {}", show(h.name)),
            ));
        }
        pos = next;
        count += 1;
    }
    Ok(count)
}

/// Checks the message CRC and the header block of a whole message whose prelude was checked.
/// `msg` holds exactly `prelude.total_len` bytes; `offset` is its stream offset.
fn finish_message(msg: &[u8], prelude: Prelude, offset: u64) -> Result<MessageRef<'_>> {
    let total = prelude.total_len;
    let expected = be32(msg, total - 4);
    let mut hasher = crc32fast::Hasher::new_with_initial(prelude.crc);
    hasher.update(&msg[8..total - 4]);
    let actual = hasher.finalize();
    if actual != expected {
        return Err(Error::Checksum {
            what: "message",
            offset,
            expected,
            actual,
        });
    }
    let headers_end = PRELUDE_LEN + prelude.headers_len;
    let header_block = &msg[PRELUDE_LEN..headers_end];
    let header_count = check_header_block(header_block, offset + PRELUDE_LEN as u64)?;
    Ok(MessageRef {
        header_block,
        header_count,
        payload: &msg[headers_end..total - 4],
    })
}

/// Decodes exactly one whole message, borrowing from `bytes` (no copy, no allocation for up to
/// 16 headers). Fewer bytes than the message declares is [`Error::Truncated`]; more is
/// [`Error::Malformed`] (reported after the message itself has been checked).
pub fn decode_message_ref(bytes: &[u8]) -> Result<MessageRef<'_>> {
    let prelude = parse_prelude(bytes, 0)?;
    if bytes.len() < prelude.total_len {
        return Err(Error::Truncated {
            offset: 0,
            missing: (prelude.total_len - bytes.len()) as u64,
        });
    }
    let msg = finish_message(&bytes[..prelude.total_len], prelude, 0)?;
    if bytes.len() > prelude.total_len {
        return Err(Error::malformed(
            prelude.total_len as u64,
            format!(
                "{} bytes after the end of the message (total_length {})",
                bytes.len() - prelude.total_len,
                prelude.total_len
            ),
        ));
    }
    Ok(msg)
}

/// Decodes exactly one whole message into owned values (see [`decode_message_ref`]).
pub fn decode_message(bytes: &[u8]) -> Result<Message> {
    decode_message_ref(bytes).map(|m| m.to_message())
}

/// Incremental decoder: feed it bytes split anywhere; it yields each message once complete.
///
/// Complete messages inside a fed slice are decoded straight from that slice; only the bytes of
/// a trailing partial message are copied into the decoder (each byte at most once), so batched
/// input of any size is decoded in linear time. The prelude of a partial message is checked as
/// soon as its 12 bytes are in, so a hostile length is refused before anything is buffered.
///
/// Errors are final: once one is returned the stream cannot be resynchronised, and every later
/// call returns the same error. When complete messages precede the error in the same input,
/// [`Decoder::feed`] returns them first and the error on the next call (nothing is lost).
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes of the one partial message (never a whole message).
    buf: Vec<u8>,
    /// Its checked prelude, once `buf` holds 12 bytes.
    prelude: Option<Prelude>,
    /// Stream offset of the first byte in `buf` (= bytes consumed by complete messages).
    offset: u64,
    /// The error that stopped this decoder.
    failed: Option<Error>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of a partial message held in the decoder.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stream offset where the next message starts: bytes fed minus bytes buffered.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The error that stopped this decoder, if any.
    pub fn error(&self) -> Option<&Error> {
        self.failed.as_ref()
    }

    /// Bytes of the partial message still missing, if one is known (prelude in).
    pub fn expected_len(&self) -> Option<usize> {
        self.prelude.map(|p| p.total_len)
    }

    /// Feeds `data` and calls `on_message(message, stream_offset)` for every message it
    /// completes, in order, borrowing the message from `data` or from the decoder's buffer.
    /// An error from `on_message` stops decoding and is returned (and kept, like any error).
    pub fn feed_with<F>(&mut self, data: &[u8], mut on_message: F) -> Result<()>
    where
        F: FnMut(MessageRef<'_>, u64) -> Result<()>,
    {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.feed_inner(data, &mut on_message);
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    fn feed_inner<F>(&mut self, mut data: &[u8], on_message: &mut F) -> Result<()>
    where
        F: FnMut(MessageRef<'_>, u64) -> Result<()>,
    {
        // 1. Complete the partial message held from earlier feeds.
        if !self.buf.is_empty() {
            if self.prelude.is_none() {
                let need = PRELUDE_LEN - self.buf.len();
                let n = need.min(data.len());
                self.buf.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.buf.len() < PRELUDE_LEN {
                    return Ok(());
                }
                self.prelude = Some(parse_prelude(&self.buf, self.offset)?);
            }
            let Some(prelude) = self.prelude else {
                return Ok(());
            };
            let need = prelude.total_len - self.buf.len();
            let n = need.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() < prelude.total_len {
                return Ok(());
            }
            let at = self.offset;
            let msg = finish_message(&self.buf, prelude, at)?;
            on_message(msg, at)?;
            self.offset += prelude.total_len as u64;
            self.prelude = None;
            // Keep the allocation if it is modest; drop a huge one.
            if self.buf.capacity() > 1 << 20 {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
        }
        // 2. Whole messages straight from `data`.
        while data.len() >= PRELUDE_LEN {
            let prelude = parse_prelude(data, self.offset)?;
            if data.len() < prelude.total_len {
                break;
            }
            let (msg_bytes, rest) = data.split_at(prelude.total_len);
            let at = self.offset;
            let msg = finish_message(msg_bytes, prelude, at)?;
            on_message(msg, at)?;
            self.offset += prelude.total_len as u64;
            data = rest;
        }
        // 3. Keep the trailing partial message (its prelude is already checked if it is in).
        if !data.is_empty() {
            if data.len() >= PRELUDE_LEN {
                self.prelude = Some(parse_prelude(data, self.offset)?);
            }
            self.buf.extend_from_slice(data);
        }
        Ok(())
    }

    /// Feeds `data` and returns the messages it completes, owned. If an error follows complete
    /// messages in `data`, those messages are returned and the error comes from the next call
    /// to `feed` or [`Decoder::finish`].
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        let result = self.feed_with(data, |m, _| {
            out.push(m.to_message());
            Ok(())
        });
        match result {
            Err(err) if out.is_empty() => Err(err),
            _ => Ok(out),
        }
    }

    /// Says the stream is over: [`Error::Truncated`] if a partial message is held (or the
    /// error that stopped the decoder). Its `missing` is exact once the 12-byte prelude is in,
    /// and a lower bound (the rest of the prelude) before.
    pub fn finish(&self) -> Result<()> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let missing = match self.prelude {
            Some(p) => p.total_len - self.buf.len(),
            None => PRELUDE_LEN - self.buf.len(),
        };
        Err(Error::Truncated {
            offset: self.offset,
            missing: missing as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::path::PathBuf;

    fn vectors() -> PathBuf {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        match std::env::var_os("SAGEBIDI_VECTORS") {
            Some(p) => PathBuf::from(p),
            None => root.join("..").join("shared").join("vectors"),
        }
        .join("eventstream")
    }

    fn read(rel: &str) -> Vec<u8> {
        let path = vectors().join(rel);
        std::fs::read(&path).unwrap_or_else(|e| panic!("vector {}: {e}", path.display()))
    }

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// §4.3 of the protocol reference: the first signed DATA frame of a real client (262 bytes).
    const FRAME_4_3: &str = "0000010600000043ceebe946053a6461746508000001a212047518103a6368756e6b2d7369676e61747572650600204f21aacc3a5c6dd0f2da0bccce6883602bdd4165f92c2bc7bb0048fb1eb2c545000000b300000084d890ea940d3a6d6573736167652d747970650700056576656e740b3a6576656e742d7479706507000b5061796c6f616450617274084461746154797065070004555446380f436f6d706c6574696f6e5374617465070008434f4d504c4554450d3a636f6e74656e742d747970650700186170706c69636174696f6e2f6f637465742d73747265616d7b2274797065223a2268656c6c6f222c2274657874223a226669727374227d979aaf57e61ec341";

    fn all_types() -> Vec<Header> {
        vec![
            Header::new("t", HeaderValue::Bool(true)),
            Header::new("f", HeaderValue::Bool(false)),
            Header::new("byte", HeaderValue::Byte(-7)),
            Header::new("short", HeaderValue::Short(-20000)),
            Header::new("int", HeaderValue::Int(500_000)),
            Header::new("long", HeaderValue::Long(-50_000_000_000)),
            Header::new("bytes", HeaderValue::Bytes(b"some bytes".to_vec())),
            Header::new("str", HeaderValue::String("some str \u{263a}".into())),
            Header::new("time", HeaderValue::Timestamp(1_795_598_611_736)),
            Header::new("uuid", HeaderValue::Uuid(*b"0123456789abcdef")),
        ]
    }

    #[test]
    fn round_trip_all_types() {
        let headers = all_types();
        let wire = encode(&headers, b"payload").unwrap();
        let m = decode_message(&wire).unwrap();
        assert_eq!(m.headers, headers);
        assert_eq!(m.payload, b"payload");
        assert_eq!(m.header("short"), Some(&HeaderValue::Short(-20000)));
        assert_eq!(m.header("missing"), None);
        assert_eq!(m.encode().unwrap(), wire);
        // Borrowed headers encode the same bytes.
        let borrowed: Vec<HeaderRef<'_>> = decode_message_ref(&wire).unwrap().headers().collect();
        assert_eq!(encode(&borrowed, b"payload").unwrap(), wire);
        // A Vec and an array of headers both coerce.
        let mut out = Vec::new();
        encode_into(&headers, b"payload", &mut out).unwrap();
        encode_into(&[Header::new("a", HeaderValue::Int(1))], b"", &mut out).unwrap();
        assert_eq!(&out[..wire.len()], &wire[..]);
        assert_eq!(out.len(), wire.len() + 16 + 2 + 1 + 4);
    }

    #[test]
    fn header_block_alone() {
        let date = [Header::new(
            ":date",
            HeaderValue::Timestamp(1_795_598_611_736),
        )];
        let mut out = vec![0xAA];
        encode_headers_into(&date, &mut out).unwrap();
        assert_eq!(out, unhex("aa053a6461746508000001a212047518"));
    }

    #[test]
    fn captured_frame_4_3() {
        let wire = unhex(FRAME_4_3);
        assert_eq!(wire.len(), 262);
        let outer = decode_message(&wire).unwrap();
        assert_eq!(
            outer.header(":date"),
            Some(&HeaderValue::Timestamp(1_795_598_611_736))
        );
        assert_eq!(
            outer.header(":chunk-signature"),
            Some(&HeaderValue::Bytes(unhex(
                "4f21aacc3a5c6dd0f2da0bccce6883602bdd4165f92c2bc7bb0048fb1eb2c545"
            )))
        );
        assert_eq!(outer.encode().unwrap(), wire);
        let inner = decode_message(&outer.payload).unwrap();
        assert_eq!(inner.payload, br#"{"type":"hello","text":"first"}"#);
        let names: Vec<&str> = inner.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                ":message-type",
                ":event-type",
                "DataType",
                "CompletionState",
                ":content-type"
            ]
        );
        assert_eq!(
            inner.header(":event-type"),
            Some(&HeaderValue::String("PayloadPart".into()))
        );
        assert_eq!(inner.encode().unwrap(), outer.payload);
    }

    #[test]
    fn positive_vectors_decode_and_reencode() {
        let files = [
            "aws-sdk-go/encoded/positive/all_headers",
            "aws-sdk-go/encoded/positive/empty_message",
            "aws-sdk-go/encoded/positive/int32_header",
            "aws-sdk-go/encoded/positive/payload_no_headers",
            "aws-sdk-go/encoded/positive/payload_one_str_header",
            "smithy-rs/valid_empty_payload",
            "smithy-rs/valid_no_headers",
            "smithy-rs/valid_with_all_headers_and_payload",
            "botocore/positive/all_header_types",
            "botocore/positive/empty_message",
            "botocore/positive/error_event_message",
            "botocore/positive/int16_header",
            "botocore/positive/int32_header",
            "botocore/positive/int64_header",
            "botocore/positive/int8_header",
            "botocore/positive/payload_no_headers",
            "botocore/positive/payload_one_str_header",
        ];
        for f in files {
            let wire = read(f);
            let m = decode_message(&wire).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(m.encode().unwrap(), wire, "{f}: re-encoding differs");
        }
        let m = decode_message(&read("smithy-rs/valid_with_all_headers_and_payload")).unwrap();
        assert_eq!(m.payload, b"some payload");
        assert_eq!(m.header("short"), Some(&HeaderValue::Short(20000)));
        assert_eq!(m.header("long"), Some(&HeaderValue::Long(50_000_000_000)));
        assert_eq!(
            m.header("time"),
            Some(&HeaderValue::Timestamp(5_000_000_000))
        );
    }

    fn decode_err(wire: &[u8]) -> Error {
        // The one-shot decoder and the incremental decoder must agree.
        let one = decode_message(wire).unwrap_err();
        let mut d = Decoder::new();
        let inc = d.feed(wire).and_then(|_| d.finish()).unwrap_err();
        assert_eq!(one, inc);
        one
    }

    #[test]
    fn negative_vectors() {
        for f in [
            "aws-sdk-go/encoded/negative/corrupted_header_len",
            "aws-sdk-go/encoded/negative/corrupted_length",
            "smithy-rs/invalid_prelude_checksum",
        ] {
            assert!(
                matches!(
                    decode_err(&read(f)),
                    Error::Checksum {
                        what: "prelude",
                        offset: 0,
                        ..
                    }
                ),
                "{f}"
            );
        }
        for f in [
            "aws-sdk-go/encoded/negative/corrupted_headers",
            "aws-sdk-go/encoded/negative/corrupted_payload",
            "botocore/negative/corrupted_headers",
            "botocore/negative/corrupted_payload",
            "smithy-rs/invalid_message_checksum",
            // Stale message CRCs: the CRC is checked before the header block.
            "smithy-rs/invalid_header_name_length",
            "smithy-rs/invalid_header_name_length_too_long",
            "smithy-rs/invalid_header_string_length_cut_off",
            "smithy-rs/invalid_header_string_value_length",
            "smithy-rs/invalid_header_value_type",
        ] {
            assert!(
                matches!(
                    decode_err(&read(f)),
                    Error::Checksum {
                        what: "message",
                        offset: 0,
                        ..
                    }
                ),
                "{f}"
            );
        }
        assert_eq!(
            decode_err(&read("smithy-rs/invalid_message_checksum")),
            Error::Checksum {
                what: "message",
                offset: 0,
                expected: 0xDEAD_BEEF,
                actual: 0x01A0_5860
            }
        );
        assert!(matches!(
            decode_err(&read("botocore/negative/corrupted_header_length")),
            Error::TooLarge {
                what: "headers",
                ..
            }
        ));
        assert!(matches!(
            decode_err(&read("botocore/negative/corrupted_length")),
            Error::TooLarge {
                what: "payload",
                ..
            }
        ));
        match decode_err(&read("botocore/negative/duplicate_header")) {
            Error::Malformed { offset, message } => {
                assert_eq!(offset, 12 + 10);
                assert!(message.contains("duplicate"), "{message}");
            }
            e => panic!("{e:?}"),
        }
        // smithy-rs's invalid_headers_length has a valid prelude CRC (and a header length that
        // does not fit).
        assert!(matches!(
            decode_err(&read("smithy-rs/invalid_headers_length")),
            Error::Malformed { offset: 4, .. }
        ));
    }

    #[test]
    fn derived_recrc_vectors_reach_the_header_parser() {
        let cases: [(&str, u64, &str); 6] = [
            ("invalid_header_name_length", 25, "runs past"),
            ("invalid_header_name_length_too_long", 18, "runs past"),
            ("invalid_header_string_length_cut_off", 88, "cut off"),
            (
                "invalid_header_string_value_length",
                88,
                "declares 65535 bytes",
            ),
            ("invalid_header_value_type", 30, "unknown value type 0x60"),
            ("invalid_headers_length", 4, "does not fit"),
        ];
        for (name, offset, text) in cases {
            match decode_err(&read(&format!("derived-recrc/{name}"))) {
                Error::Malformed { offset: o, message } => {
                    assert_eq!(o, offset, "{name}: {message}");
                    assert!(message.contains(text), "{name}: {message}");
                }
                e => panic!("{name}: {e:?}"),
            }
        }
    }

    fn frame(headers_block: &[u8], payload: &[u8]) -> Vec<u8> {
        let total = 16 + headers_block.len() + payload.len();
        let mut b = Vec::new();
        b.extend_from_slice(&(total as u32).to_be_bytes());
        b.extend_from_slice(&(headers_block.len() as u32).to_be_bytes());
        let c = crc32fast::hash(&b);
        b.extend_from_slice(&c.to_be_bytes());
        b.extend_from_slice(headers_block);
        b.extend_from_slice(payload);
        let c = crc32fast::hash(&b);
        b.extend_from_slice(&c.to_be_bytes());
        b
    }

    fn malformed(block: &[u8]) -> (u64, String) {
        match decode_err(&frame(block, b"")) {
            Error::Malformed { offset, message } => (offset, message),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn header_block_faults() {
        assert!(malformed(b"\x00").1.contains("length is 0"));
        assert!(malformed(b"\x01a").1.contains("no value type"));
        assert!(malformed(b"\x01a\x0a")
            .1
            .contains("unknown value type 0x0A"));
        assert!(malformed(b"\x01a\x04\x00\x00").1.contains("cut off"));
        assert!(malformed(b"\x01a\x07\x00").1.contains("cut off"));
        assert!(malformed(b"\x01a\x07\x00\x02\xff\xfe").1.contains("UTF-8"));
        assert!(malformed(b"\x01\xff\x00").1.contains("UTF-8"));
        assert_eq!(malformed(b"\x01a\x00\x01b\x00\x01a\x01").0, 12 + 6);
        // Many headers: duplicates found past the small-set size too, in linear time.
        let mut block = Vec::new();
        for i in 0..5000u32 {
            let name = format!("h{i}");
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(0);
        }
        let ok = frame(&block, b"");
        assert_eq!(decode_message_ref(&ok).unwrap().header_count(), 5000);
        block.extend_from_slice(b"\x05h4999\x01");
        assert!(malformed(&block)
            .1
            .contains("duplicate header name \"h4999\""));
        // A value over 32767 bytes that fits in the block is too large.
        let mut block = b"\x01a\x06\x80\x00".to_vec();
        block.resize(block.len() + 0x8000, 7);
        assert!(matches!(
            decode_err(&frame(&block, b"")),
            Error::TooLarge {
                what: "header value",
                size: 32768,
                offset: 15,
                ..
            }
        ));
    }

    #[test]
    fn prelude_faults() {
        let prelude = |total: u32, headers: u32| {
            let mut b = total.to_be_bytes().to_vec();
            b.extend_from_slice(&headers.to_be_bytes());
            let c = crc32fast::hash(&b);
            b.extend_from_slice(&c.to_be_bytes());
            b
        };
        assert!(matches!(
            parse_prelude(&prelude(15, 0), 7),
            Err(Error::Malformed { offset: 7, .. })
        ));
        assert!(matches!(
            parse_prelude(&prelude(u32::MAX, 0), 0),
            Err(Error::TooLarge {
                what: "message",
                ..
            })
        ));
        assert!(matches!(
            parse_prelude(&prelude(200_000, 131_073), 0),
            Err(Error::TooLarge {
                what: "headers",
                ..
            })
        ));
        assert!(matches!(
            parse_prelude(&prelude(20, 5), 0),
            Err(Error::Malformed { offset: 4, .. })
        ));
        let max = MAX_MESSAGE_LEN as u32;
        assert!(parse_prelude(&prelude(max, MAX_HEADERS_LEN as u32), 0).is_ok());
        assert!(matches!(
            parse_prelude(&prelude(max, MAX_HEADERS_LEN as u32 - 1), 0),
            Err(Error::TooLarge {
                what: "payload",
                ..
            })
        ));
        // A hostile 4 GiB length is refused from the prelude alone, before buffering.
        let mut d = Decoder::new();
        let err = d.feed(&prelude(u32::MAX, 0)).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }));
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.feed(b"more").unwrap_err(), err, "errors are sticky");
        assert_eq!(d.finish().unwrap_err(), err);
    }

    #[test]
    fn encode_rules() {
        let h = |n: &str, v| Header::new(n, v);
        assert!(matches!(
            encode(&[h("", HeaderValue::Bool(true))], b""),
            Err(Error::InvalidArgument(_))
        ));
        let long = "x".repeat(256);
        assert!(matches!(
            encode(&[h(&long, HeaderValue::Bool(true))], b""),
            Err(Error::InvalidArgument(_))
        ));
        assert!(encode(&[h(&long[..255], HeaderValue::Bool(true))], b"").is_ok());
        assert!(matches!(
            encode(
                &[h("a", HeaderValue::Int(1)), h("a", HeaderValue::Int(2))],
                b""
            ),
            Err(Error::InvalidArgument(_))
        ));
        let big = vec![0u8; MAX_HEADER_VALUE_LEN + 1];
        assert!(matches!(
            encode(&[h("a", HeaderValue::Bytes(big.clone()))], b""),
            Err(Error::TooLarge {
                what: "header value",
                ..
            })
        ));
        assert!(encode(&[h("a", HeaderValue::Bytes(big[1..].to_vec()))], b"").is_ok());
        let many: Vec<Header> = (0..5)
            .map(|i| {
                h(
                    &format!("v{i}"),
                    HeaderValue::String("s".repeat(MAX_HEADER_VALUE_LEN)),
                )
            })
            .collect();
        assert!(matches!(
            encode(&many, b""),
            Err(Error::TooLarge {
                what: "headers",
                ..
            })
        ));
        assert!(matches!(
            encode::<Header>(&[], &vec![0u8; MAX_PAYLOAD_LEN + 1]),
            Err(Error::TooLarge {
                what: "payload",
                ..
            })
        ));
        let wire = encode::<Header>(&[], &vec![1u8; MAX_PAYLOAD_LEN]).unwrap();
        assert_eq!(
            decode_message_ref(&wire).unwrap().payload().len(),
            MAX_PAYLOAD_LEN
        );
    }

    #[test]
    fn decode_message_wants_exactly_one() {
        let wire = encode(&all_types(), b"abc").unwrap();
        for cut in 0..wire.len() {
            assert!(
                matches!(
                    decode_message(&wire[..cut]),
                    Err(Error::Truncated { offset: 0, .. })
                ),
                "{cut}"
            );
        }
        let mut two = wire.clone();
        two.push(0);
        assert_eq!(
            decode_message(&two).unwrap_err().offset(),
            Some(wire.len() as u64)
        );
    }

    #[test]
    fn incremental_any_split() {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for i in 0..40u8 {
            let headers = vec![
                Header::new(":event-type", HeaderValue::String(format!("E{i}"))),
                Header::new("n", HeaderValue::Byte(i as i8)),
            ];
            let payload = vec![i; (i as usize) * 37];
            encode_into(&headers, &payload, &mut stream).unwrap();
            expected.push(Message::new(headers, payload));
        }
        for step in [1usize, 2, 3, 5, 11, 12, 13, 100, 1000, stream.len()] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            let mut fed = 0u64;
            for chunk in stream.chunks(step) {
                got.extend(d.feed(chunk).unwrap());
                fed += chunk.len() as u64;
                // Only one partial message is ever held.
                assert!(d.buffered() <= 16 + 12 + 40 * 37);
                assert_eq!(d.offset() + d.buffered() as u64, fed);
            }
            d.finish().unwrap();
            assert_eq!(got, expected, "step {step}");
            assert_eq!(d.offset(), stream.len() as u64);
        }
    }

    #[test]
    fn truncation_and_offsets() {
        let one = encode(&all_types(), b"xyz").unwrap();
        let mut stream = one.clone();
        stream.extend_from_slice(&one);
        stream.extend_from_slice(&one[..20]);
        let mut d = Decoder::new();
        assert_eq!(d.feed(&stream).unwrap().len(), 2);
        assert_eq!(d.buffered(), 20);
        assert_eq!(
            d.finish().unwrap_err(),
            Error::Truncated {
                offset: 2 * one.len() as u64,
                missing: (one.len() - 20) as u64
            }
        );
        // Fewer than 12 bytes: the prelude is not in yet.
        let mut d = Decoder::new();
        d.feed(&one[..5]).unwrap();
        assert_eq!(
            d.finish().unwrap_err(),
            Error::Truncated {
                offset: 0,
                missing: 7
            }
        );
        // A corrupt third message: the two good ones come first, then the error at its offset.
        let mut bad = stream[..2 * one.len()].to_vec();
        let mut third = one.clone();
        let last = third.len() - 1;
        third[last] ^= 1;
        bad.extend_from_slice(&third);
        let mut d = Decoder::new();
        assert_eq!(d.feed(&bad).unwrap().len(), 2);
        let err = d.feed(b"").unwrap_err();
        assert!(matches!(
            err,
            Error::Checksum {
                what: "message",
                ..
            }
        ));
        assert_eq!(err.offset(), Some(2 * one.len() as u64));
    }

    #[test]
    fn many_small_messages_in_one_feed() {
        let mut stream = Vec::new();
        for i in 0..20_000u32 {
            encode_into(
                &[Header::new("i", HeaderValue::Int(i as i32))],
                &i.to_be_bytes(),
                &mut stream,
            )
            .unwrap();
        }
        let mut d = Decoder::new();
        let mut n = 0u32;
        d.feed_with(&stream, |m, at| {
            assert_eq!(m.header("i"), Some(HeaderValueRef::Int(n as i32)));
            assert_eq!(at, u64::from(n) * 27);
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 20_000);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic xorshift generator: random bytes, and random CRC-fixed header blocks.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = decode_message(&bytes);
            let f = frame(&bytes, b"p");
            match decode_message(&f) {
                Ok(m) => assert_eq!(m.encode().unwrap(), f),
                Err(Error::Malformed { .. } | Error::TooLarge { .. }) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
    }
}
