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
//!
//! For bindings that convert headers to and from another object model, besides the plain API:
//! [`HeaderBlockBuilder`] encodes a header block one header at a time (checks included, no
//! intermediate list), [`write_message_uninit`] writes a message into memory that was never
//! initialised (a fresh Python `bytes`), [`RawHeaderIter`] walks a checked block without checking
//! its UTF-8 again, and [`decode_message_ref_known`] / [`Decoder::feed_with_known`] skip the
//! header check of a block the caller has seen checked before. The header check itself parses
//! each header once and checks UTF-8 once per block when the block is all ASCII (the usual case).
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::fmt;
use std::mem::MaybeUninit;

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

/// Writes one header whose lengths were checked (name ≤ 255 bytes, value ≤ 32767 bytes).
#[inline]
fn write_header(w: &mut SliceWriter<'_>, name: &str, value: HeaderValueRef<'_>) {
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

fn write_headers<H: AsHeader>(headers: &[H], w: &mut SliceWriter<'_>) {
    for h in headers {
        // Lengths were checked by `headers_encoded_len`.
        write_header(w, h.header_name(), h.header_value());
    }
}

/// Header blocks up to this many bytes are built by [`HeaderBlockBuilder`] without allocating.
const INLINE_BLOCK: usize = 512;
/// Names [`HeaderBlockBuilder`] checks for duplicates without allocating.
const INLINE_NAMES: usize = 16;

/// Encodes a header block one header at a time, checking each header as it comes with the rules
/// of [`headers_encoded_len`] (same errors), so that a caller converting headers from another
/// representation needs no intermediate list and no second pass. Blocks up to 512 bytes live
/// inline (no allocation).
pub struct HeaderBlockBuilder {
    inline: [u8; INLINE_BLOCK],
    /// The whole block once it outgrows `inline` (then `inline` is unused).
    spilled: Vec<u8>,
    len: usize,
    /// Start and length of the first names, for the duplicate check.
    name_at: [u32; INLINE_NAMES],
    name_len: [u8; INLINE_NAMES],
    name_count: usize,
    /// Every name, once there are more than `INLINE_NAMES`.
    many_names: Option<HashSet<Vec<u8>>>,
}

impl fmt::Debug for HeaderBlockBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderBlockBuilder")
            .field("len", &self.len)
            .field("headers", &self.name_count)
            .finish()
    }
}

impl Default for HeaderBlockBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderBlockBuilder {
    pub fn new() -> Self {
        HeaderBlockBuilder {
            inline: [0; INLINE_BLOCK],
            spilled: Vec::new(),
            len: 0,
            name_at: [0; INLINE_NAMES],
            name_len: [0; INLINE_NAMES],
            name_count: 0,
            many_names: None,
        }
    }

    /// The block built so far.
    pub fn block(&self) -> &[u8] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }

    /// Number of headers added.
    pub fn header_count(&self) -> usize {
        self.name_count
    }

    /// The `i`th name (`i` < `INLINE_NAMES`).
    fn inline_name<'b>(&self, block: &'b [u8], i: usize) -> Option<&'b [u8]> {
        let at = *self.name_at.get(i)? as usize;
        block.get(at..at + usize::from(*self.name_len.get(i)?))
    }

    /// True if a header called `name` was added.
    fn has_name(&self, name: &[u8]) -> bool {
        match &self.many_names {
            Some(set) => set.contains(name),
            None => {
                let block = self.block();
                (0..self.name_count).any(|i| {
                    usize::from(self.name_len[i]) == name.len()
                        && self.inline_name(block, i) == Some(name)
                })
            }
        }
    }

    /// Records the name of the header just written at `at`.
    fn record_name(&mut self, name: &[u8], at: usize) {
        if let Some(set) = self.many_names.as_mut() {
            set.insert(name.to_vec());
        } else if self.name_count < INLINE_NAMES {
            // The name follows its one-byte length.
            self.name_at[self.name_count] = at as u32 + 1;
            self.name_len[self.name_count] = name.len() as u8;
        } else {
            let block = self.block();
            let mut set: HashSet<Vec<u8>> = (0..INLINE_NAMES)
                .filter_map(|i| self.inline_name(block, i).map(<[u8]>::to_vec))
                .collect();
            set.insert(name.to_vec());
            self.many_names = Some(set);
        }
    }

    /// Appends one header. On error the block is unchanged.
    pub fn push(&mut self, name: &str, value: HeaderValueRef<'_>) -> Result<()> {
        let at = self.len;
        if name.is_empty() || name.len() > MAX_HEADER_NAME_LEN {
            return Err(Error::invalid(format!(
                "event-stream header name must be 1 to {MAX_HEADER_NAME_LEN} bytes of UTF-8, got {} bytes",
                name.len()
            )));
        }
        if self.has_name(name.as_bytes()) {
            return Err(Error::invalid(format!(
                "duplicate event-stream header name {name:?}"
            )));
        }
        if let HeaderValueRef::Bytes(v) = value {
            check_value_len(v.len(), at)?;
        } else if let HeaderValueRef::String(v) = value {
            check_value_len(v.len(), at)?;
        }
        let size = 2 + name.len() + value.wire_len();
        let end = at + size;
        if end > MAX_HEADERS_LEN {
            return Err(Error::TooLarge {
                offset: PRELUDE_LEN as u64,
                what: "headers",
                size: end as u64,
                limit: MAX_HEADERS_LEN as u64,
            });
        }
        let buf = if self.spilled.is_empty() && end <= INLINE_BLOCK {
            &mut self.inline[at..end]
        } else {
            if self.spilled.is_empty() {
                self.spilled.reserve(end.max(2 * INLINE_BLOCK));
                self.spilled.extend_from_slice(&self.inline[..at]);
            }
            self.spilled.resize(end, 0);
            &mut self.spilled[at..end]
        };
        write_header(&mut SliceWriter { buf, pos: 0 }, name, value);
        self.len = end;
        self.record_name(name.as_bytes(), at);
        self.name_count += 1;
        Ok(())
    }
}

/// Length of a whole message with a header block of `headers_len` bytes (at most 128 KiB) and a
/// payload of `payload_len` bytes: [`Error::TooLarge`] if the payload is over 16 MiB.
pub fn message_len(headers_len: usize, payload_len: usize) -> Result<usize> {
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(Error::TooLarge {
            offset: 0,
            what: "payload",
            size: payload_len as u64,
            limit: MAX_PAYLOAD_LEN as u64,
        });
    }
    if headers_len > MAX_HEADERS_LEN {
        return Err(Error::TooLarge {
            offset: PRELUDE_LEN as u64,
            what: "headers",
            size: headers_len as u64,
            limit: MAX_HEADERS_LEN as u64,
        });
    }
    Ok(MESSAGE_OVERHEAD + headers_len + payload_len)
}

/// Copies `src` into the start of `dst` (bytes, or possibly uninitialised bytes, made by
/// `wrap`); returns the rest of `dst`.
#[inline(always)]
fn put_bytes<'a, T>(dst: &'a mut [T], src: &[u8], wrap: fn(u8) -> T) -> &'a mut [T] {
    let (head, rest) = dst.split_at_mut(src.len());
    // The compiler turns this loop into one memcpy.
    for (d, s) in head.iter_mut().zip(src) {
        *d = wrap(*s);
    }
    rest
}

/// [`write_message_uninit`] and [`encode_raw_to_slice`]: one code path for both kinds of output.
#[inline(always)]
fn write_message_to<T>(header_block: &[u8], payload: &[u8], out: &mut [T], wrap: fn(u8) -> T) {
    let total = out.len();
    assert_eq!(
        total,
        MESSAGE_OVERHEAD + header_block.len() + payload.len(),
        "event-stream message writer: wrong output length"
    );
    let mut prelude = [0u8; PRELUDE_LEN];
    prelude[..4].copy_from_slice(&(total as u32).to_be_bytes());
    prelude[4..8].copy_from_slice(&(header_block.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&prelude[..8]);
    prelude[8..].copy_from_slice(&prelude_crc.to_be_bytes());
    let mut hasher = crc32fast::Hasher::new_with_initial(prelude_crc);
    hasher.update(&prelude[8..]);
    hasher.update(header_block);
    hasher.update(payload);
    let message_crc = hasher.finalize().to_be_bytes();
    let rest = put_bytes(out, &prelude, wrap);
    let rest = put_bytes(rest, header_block, wrap);
    let rest = put_bytes(rest, payload, wrap);
    let rest = put_bytes(rest, &message_crc, wrap);
    debug_assert!(rest.is_empty());
}

/// Writes a message from an encoded header block (built by [`HeaderBlockBuilder`] or checked by
/// [`check_header_block`]) into `out`, whose length must be exactly
/// [`message_len`]`(header_block.len(), payload.len())`. `out` may be uninitialised memory (a
/// fresh Python `bytes`, say): every byte of it is written exactly once and none is read, so no
/// zero-filling is needed. The CRCs are computed from `header_block` and `payload`.
///
/// # Panics
/// If `out` has another length.
pub fn write_message_uninit(header_block: &[u8], payload: &[u8], out: &mut [MaybeUninit<u8>]) {
    write_message_to(header_block, payload, out, MaybeUninit::new);
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
    write_message_to(header_block, payload, out, |b| b);
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

    /// The headers with names and string values as bytes (checked UTF-8, not checked again).
    pub fn raw_headers(&self) -> RawHeaderIter<'a> {
        RawHeaderIter::new(self.header_block)
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
        next_header(self.block, &mut self.pos)?.to_header_ref()
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

/// True if every byte of `b` is ASCII: eight bytes at a time (the compiler vectorises the
/// loop), which beats `str::from_utf8` on the short strings headers hold.
#[inline]
fn is_ascii(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    let mut acc = 0u64;
    for w in words.by_ref() {
        acc |= u64::from_ne_bytes(fixed(w));
    }
    let tail = words.remainder().iter().fold(0u8, |a, &c| a | c);
    (acc & 0x8080_8080_8080_8080) == 0 && tail < 0x80
}

/// True if `b` is UTF-8 (ASCII checked first: the usual case).
#[inline]
fn is_utf8(b: &[u8]) -> bool {
    is_ascii(b) || std::str::from_utf8(b).is_ok()
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
    /// The value, with a string value left as its bytes.
    fn raw_value(self) -> RawValue<'a> {
        let d = self.data;
        RawValue::Other(match self.ty {
            HeaderType::BoolTrue => HeaderValueRef::Bool(true),
            HeaderType::BoolFalse => HeaderValueRef::Bool(false),
            HeaderType::Byte => HeaderValueRef::Byte(i8::from_be_bytes(fixed(d))),
            HeaderType::Short => HeaderValueRef::Short(i16::from_be_bytes(fixed(d))),
            HeaderType::Int => HeaderValueRef::Int(i32::from_be_bytes(fixed(d))),
            HeaderType::Long => HeaderValueRef::Long(i64::from_be_bytes(fixed(d))),
            HeaderType::Timestamp => HeaderValueRef::Timestamp(i64::from_be_bytes(fixed(d))),
            HeaderType::Uuid => HeaderValueRef::Uuid(fixed(d)),
            HeaderType::Bytes => HeaderValueRef::Bytes(d),
            HeaderType::String => return RawValue::String(d),
        })
    }

    /// The typed view. `None` only if the UTF-8 check was bypassed, which cannot happen.
    fn to_header_ref(self) -> Option<HeaderRef<'a>> {
        let name = std::str::from_utf8(self.name).ok()?;
        let value = match self.raw_value() {
            RawValue::String(s) => HeaderValueRef::String(std::str::from_utf8(s).ok()?),
            RawValue::Other(v) => v,
        };
        Some(HeaderRef { name, value })
    }
}

/// A header value of a checked block, a string value left as its bytes (valid UTF-8: the block
/// was checked) so that a caller building its own string object converts it only once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawValue<'a> {
    /// A string value's bytes (UTF-8, checked).
    String(&'a [u8]),
    /// Any other value.
    Other(HeaderValueRef<'a>),
}

/// A header of a checked block, its name as bytes (UTF-8, checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawHeaderRef<'a> {
    pub name: &'a [u8],
    pub value: RawValue<'a>,
}

/// Iterates over a header block checked earlier by [`check_header_block`], without checking
/// its UTF-8 again (see [`RawValue`]).
#[derive(Debug, Clone)]
pub struct RawHeaderIter<'a> {
    block: &'a [u8],
    pos: usize,
}

impl<'a> RawHeaderIter<'a> {
    /// Iterates over `block`, which [`check_header_block`] accepted (on any other block it
    /// stops at the first structural fault and may yield names or strings that are not UTF-8).
    pub fn new(block: &'a [u8]) -> Self {
        RawHeaderIter { block, pos: 0 }
    }
}

impl<'a> Iterator for RawHeaderIter<'a> {
    type Item = RawHeaderRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<RawHeaderRef<'a>> {
        let raw = next_header(self.block, &mut self.pos)?;
        Some(RawHeaderRef {
            name: raw.name,
            value: raw.raw_value(),
        })
    }
}

/// Lossy name for error messages.
fn show(name: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(name))
}

/// The cursor step of both header iterators: the header at `*pos`, advancing `pos`. A fault
/// (unreachable for a checked block) ends the iteration rather than looping.
#[inline]
fn next_header<'a>(block: &'a [u8], pos: &mut usize) -> Option<RawHeader<'a>> {
    if *pos >= block.len() {
        return None;
    }
    match parse_header_fast(block, *pos) {
        Some((raw, next)) => {
            *pos = next;
            Some(raw)
        }
        None => {
            *pos = block.len();
            None
        }
    }
}

/// The header starting at `pos` of a header block and the next position, if it is well formed
/// (UTF-8 not checked); `None` for any fault, which [`header_fault`] then describes. This is the
/// hot path of every decode: no error is built here.
#[inline]
fn parse_header_fast(block: &[u8], pos: usize) -> Option<(RawHeader<'_>, usize)> {
    let name_len = *block.get(pos)? as usize;
    if name_len == 0 {
        return None;
    }
    let name_end = pos + 1 + name_len;
    let name = block.get(pos + 1..name_end)?;
    let code = *block.get(name_end)?;
    let at = name_end + 1;
    let (ty, data_at, len) = match code {
        0 => (HeaderType::BoolTrue, at, 0),
        1 => (HeaderType::BoolFalse, at, 0),
        2 => (HeaderType::Byte, at, 1),
        3 => (HeaderType::Short, at, 2),
        4 => (HeaderType::Int, at, 4),
        5 => (HeaderType::Long, at, 8),
        8 => (HeaderType::Timestamp, at, 8),
        9 => (HeaderType::Uuid, at, 16),
        6 | 7 => {
            let n = u16::from_be_bytes(fixed(block.get(at..at + 2)?)) as usize;
            if n > MAX_HEADER_VALUE_LEN {
                return None;
            }
            let ty = if code == 6 {
                HeaderType::Bytes
            } else {
                HeaderType::String
            };
            (ty, at + 2, n)
        }
        _ => return None,
    };
    let data = block.get(data_at..data_at + len)?;
    Some((RawHeader { name, ty, data }, data_at + len))
}

/// What is wrong with the header at `pos`, which [`parse_header_fast`] refused.
#[cold]
#[inline(never)]
fn header_fault(block: &[u8], pos: usize) -> HeaderFault {
    match parse_header(block, pos) {
        Err(fault) => fault,
        // Unreachable: both parsers apply the same structural rules.
        Ok(_) => HeaderFault::new(pos, "malformed header"),
    }
}

/// Parses and checks the header at `pos` with a precise fault for each rule, in order (the slow
/// path of [`parse_header_fast`]).
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
    // A block that is all ASCII (the usual case: names, string values and small lengths) has
    // only UTF-8 names and strings; one pass over it replaces a check per field.
    let ascii = is_ascii(block);
    let mut names = NameSet::new();
    let mut pos = 0;
    let mut count = 0;
    while pos < block.len() {
        let (h, next) = match parse_header_fast(block, pos) {
            Some((h, next))
                if ascii
                    || (is_utf8(h.name) && (h.ty != HeaderType::String || is_utf8(h.data))) =>
            {
                (h, next)
            }
            // The precise fault, in the order of the rules.
            _ => return Err(header_fault(block, pos).into_error(block_offset)),
        };
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
/// `known`: see [`decode_message_ref_known`].
fn finish_message<'a, K>(
    msg: &'a [u8],
    prelude: Prelude,
    offset: u64,
    known: &mut K,
) -> Result<MessageRef<'a>>
where
    K: FnMut(&[u8]) -> Option<usize>,
{
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
    let header_count = match known(header_block) {
        Some(count) => count,
        None => check_header_block(header_block, offset + PRELUDE_LEN as u64)?,
    };
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
    decode_message_ref_known(bytes, |_| None)
}

/// [`decode_message_ref`] for a caller that remembers header blocks it has seen checked (a
/// cache of the few blocks a stream repeats): `known(block)` returns the header count of a
/// block identical to one that [`check_header_block`] accepted, and that block is then not
/// checked again. Vouching for a block that was never checked is not unsafe, but iterating
/// over it may stop early or yield names and strings that are not UTF-8.
pub fn decode_message_ref_known<K>(bytes: &[u8], mut known: K) -> Result<MessageRef<'_>>
where
    K: FnMut(&[u8]) -> Option<usize>,
{
    let prelude = parse_prelude(bytes, 0)?;
    if bytes.len() < prelude.total_len {
        return Err(Error::Truncated {
            offset: 0,
            missing: (prelude.total_len - bytes.len()) as u64,
        });
    }
    let msg = finish_message(&bytes[..prelude.total_len], prelude, 0, &mut known)?;
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
    pub fn feed_with<F>(&mut self, data: &[u8], on_message: F) -> Result<()>
    where
        F: FnMut(MessageRef<'_>, u64) -> Result<()>,
    {
        self.feed_with_known(data, |_| None, on_message)
    }

    /// [`Decoder::feed_with`] with `known` as in [`decode_message_ref_known`]: header blocks
    /// it vouches for are not checked again.
    pub fn feed_with_known<K, F>(
        &mut self,
        data: &[u8],
        mut known: K,
        mut on_message: F,
    ) -> Result<()>
    where
        K: FnMut(&[u8]) -> Option<usize>,
        F: FnMut(MessageRef<'_>, u64) -> Result<()>,
    {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.feed_inner(data, &mut known, &mut on_message);
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    fn feed_inner<K, F>(&mut self, mut data: &[u8], known: &mut K, on_message: &mut F) -> Result<()>
    where
        K: FnMut(&[u8]) -> Option<usize>,
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
            let msg = finish_message(&self.buf, prelude, at, known)?;
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
            let msg = finish_message(msg_bytes, prelude, at, known)?;
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

    #[test]
    fn header_block_builder_matches_encode() {
        let headers = all_types();
        let mut b = HeaderBlockBuilder::new();
        for h in &headers {
            b.push(&h.name, h.value.as_value_ref()).unwrap();
        }
        let mut expected = Vec::new();
        encode_headers_into(&headers, &mut expected).unwrap();
        assert_eq!(b.block(), &expected[..]);
        assert_eq!(b.header_count(), headers.len());
        // The raw writer (one code path with `write_message_uninit`) gives `encode`'s bytes,
        // overwriting every byte of its output.
        let wire = encode(&headers, b"payload").unwrap();
        let mut out = vec![0xA5; message_len(b.block().len(), 7).unwrap()];
        encode_raw_to_slice(b.block(), b"payload", &mut out);
        assert_eq!(out, wire);
        let mut out = vec![0x5A; 16];
        encode_raw_to_slice(b"", b"", &mut out);
        assert_eq!(out, encode::<Header>(&[], b"").unwrap());
        assert!(std::panic::catch_unwind(|| {
            encode_raw_to_slice(b"", b"x", &mut [0u8; 16]);
        })
        .is_err());
        assert!(matches!(
            message_len(0, MAX_PAYLOAD_LEN + 1),
            Err(Error::TooLarge {
                what: "payload",
                ..
            })
        ));
        assert!(matches!(
            message_len(MAX_HEADERS_LEN + 1, 0),
            Err(Error::TooLarge {
                what: "headers",
                ..
            })
        ));
    }

    #[test]
    fn header_block_builder_rules() {
        use HeaderValueRef as V;
        let mut b = HeaderBlockBuilder::new();
        b.push("a", V::Int(1)).unwrap();
        let before = b.block().to_vec();
        let long = "x".repeat(256);
        let big = vec![0u8; MAX_HEADER_VALUE_LEN + 1];
        for (name, value) in [
            ("", V::Bool(true)),
            (&long[..], V::Bool(true)),
            ("a", V::Int(2)),
        ] {
            assert!(matches!(
                b.push(name, value),
                Err(Error::InvalidArgument(_))
            ));
        }
        assert!(matches!(
            b.push("a", V::Bool(true)),
            Err(Error::InvalidArgument(m)) if m.contains("duplicate")
        ));
        assert_eq!(
            b.push("big", V::Bytes(&big)),
            Err(Error::TooLarge {
                offset: 12 + 7,
                what: "header value",
                size: 32768,
                limit: 32767
            })
        );
        // Nothing was written or recorded by the failed pushes.
        assert_eq!(b.block(), &before[..]);
        assert_eq!(b.header_count(), 1);
        b.push(&long[..255], V::Bytes(&big[1..])).unwrap();
        // A block over 128 KiB.
        let s = "s".repeat(MAX_HEADER_VALUE_LEN);
        let mut b = HeaderBlockBuilder::new();
        let mut err = None;
        for i in 0..5 {
            if let Err(e) = b.push(&format!("v{i}"), V::String(&s)) {
                err = Some(e);
                break;
            }
        }
        assert!(matches!(
            err,
            Some(Error::TooLarge {
                what: "headers",
                ..
            })
        ));
        // Three values of 32767 bytes fit in 128 KiB, the fourth does not.
        assert_eq!(b.header_count(), 3);
        assert_eq!(check_header_block(b.block(), 0).unwrap(), 3);
    }

    #[test]
    fn header_block_builder_spills_and_checks_many_names() {
        // Past the inline 512 bytes and the 16 inline names: same bytes as `encode_headers_into`
        // and duplicates still refused, whether among the first 16 names or later ones.
        let headers: Vec<Header> = (0..40)
            .map(|i| Header::new(format!("name-{i}"), HeaderValue::String("v".repeat(i * 3))))
            .collect();
        let mut b = HeaderBlockBuilder::new();
        for h in &headers {
            b.push(&h.name, h.value.as_value_ref()).unwrap();
        }
        let mut expected = Vec::new();
        encode_headers_into(&headers, &mut expected).unwrap();
        assert!(expected.len() > 512);
        assert_eq!(b.block(), &expected[..]);
        for dup in ["name-0", "name-15", "name-16", "name-39"] {
            assert!(matches!(
                b.push(dup, HeaderValueRef::Bool(true)),
                Err(Error::InvalidArgument(m)) if m.contains("duplicate")
            ));
        }
        b.push("name-40", HeaderValueRef::Bool(false)).unwrap();
        assert_eq!(check_header_block(b.block(), 0).unwrap(), 41);
    }

    #[test]
    fn raw_headers_match_headers() {
        let wire = encode(&all_types(), b"").unwrap();
        let m = decode_message_ref(&wire).unwrap();
        assert_eq!(m.raw_headers().count(), 10);
        for (raw, h) in m.raw_headers().zip(m.headers()) {
            assert_eq!(raw.name, h.name.as_bytes());
            match (raw.value, h.value) {
                (RawValue::String(a), HeaderValueRef::String(b)) => assert_eq!(a, b.as_bytes()),
                (RawValue::Other(a), b) => assert_eq!(a, b),
                (a, b) => panic!("{a:?} vs {b:?}"),
            }
        }
        // On a block that was never checked the iterator stops at a fault, never panics.
        assert_eq!(RawHeaderIter::new(b"\x05ab").count(), 0);
        assert_eq!(RawHeaderIter::new(b"\x01a\x00\x00").count(), 1);
        assert_eq!(RawHeaderIter::new(b"\x01a\x07\x00\x09ab").count(), 0);
    }

    #[test]
    fn non_ascii_blocks_are_checked_field_by_field() {
        // Not all-ASCII (an int of -1, a non-ASCII name): valid UTF-8 passes...
        let ok = [
            Header::new("n\u{e9}", HeaderValue::Int(-1)),
            Header::new("s", HeaderValue::String("\u{263a}".into())),
            Header::new("b", HeaderValue::Bytes(vec![0xFF, 0xFE])),
        ];
        let wire = encode(&ok, b"").unwrap();
        assert_eq!(decode_message(&wire).unwrap().headers, ok);
        // ...and invalid UTF-8 in a string is still refused next to other high bytes.
        let mut block = b"\x01i\x04\xff\xff\xff\xff".to_vec();
        block.extend_from_slice(b"\x01s\x07\x00\x01\xff");
        assert!(malformed(&block).1.contains("not valid UTF-8"));
    }

    #[test]
    fn decode_known_skips_only_vouched_blocks() {
        let wire = encode(&all_types(), b"p").unwrap();
        let block = decode_message_ref(&wire).unwrap().header_block().to_vec();
        // A vouched block is not checked again: its count comes from `known`.
        let m = decode_message_ref_known(&wire, |_| Some(99)).unwrap();
        assert_eq!(m.header_count(), 99);
        let mut asked = 0;
        let m = decode_message_ref_known(&wire, |b| {
            asked += 1;
            assert_eq!(b, &block[..]);
            None
        })
        .unwrap();
        assert_eq!((asked, m.header_count()), (1, 10));
        // Not vouched: a bad block with good CRCs is refused as usual.
        let bad = frame(b"\x01\xff\x00", b"");
        assert!(matches!(
            decode_message_ref_known(&bad, |_| None),
            Err(Error::Malformed { .. })
        ));
        // The message CRC is checked before `known` is asked.
        let mut corrupt = wire.clone();
        corrupt[20] ^= 1;
        assert!(matches!(
            decode_message_ref_known(&corrupt, |_| -> Option<usize> {
                panic!("asked before the CRC check")
            }),
            Err(Error::Checksum { .. })
        ));
        // The incremental decoder asks once per message, for messages split anywhere.
        let mut stream = wire.clone();
        stream.extend_from_slice(&wire);
        let mut d = Decoder::new();
        let (mut asked, mut counts) = (0, Vec::new());
        for part in [
            &stream[..30],
            &stream[30..wire.len() + 5],
            &stream[wire.len() + 5..],
        ] {
            d.feed_with_known(
                part,
                |b| {
                    asked += 1;
                    (b == &block[..]).then_some(7)
                },
                |m, _| {
                    counts.push(m.header_count());
                    Ok(())
                },
            )
            .unwrap();
        }
        d.finish().unwrap();
        assert_eq!((asked, counts), (2, vec![7, 7]));
    }
}
