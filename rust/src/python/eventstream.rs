//! Python glue for the event-stream codec ([`crate::eventstream`]): `encode_message`,
//! `decode_message`, `Message` and `EventStreamDecoder`.
//!
//! Hot-path choices (encoding and decoding a 3.2 KB `PayloadPart`, headers and payload read,
//! takes about a microsecond; what is left is mostly the two CRC passes, the two payload
//! copies and their allocations):
//! * encoding converts each Python header straight into the wire block
//!   ([`es::HeaderBlockBuilder`]: one pass, no intermediate list) and writes the message into a
//!   new `bytes` that is not zero-filled first ([`message_bytes`]);
//! * streams repeat a few header sets over and over, so two small caches skip the per-header
//!   work for them: [`EncodeCache`] maps a `dict` of the very same `str` objects to its encoded
//!   block, and [`HeaderCache`] maps a header block to its headers `dict`, which
//!   `Message.headers` copies (a memory copy) instead of building, and which vouches for an
//!   identical block at decode time so that it is not checked again;
//! * a decoded `Message` keeps its checked header block as raw bytes and builds header objects
//!   only when asked, from a second walk over the block that does not check its UTF-8 again;
//! * the header names and values SageMaker and the AWS SDKs send (`:event-type`, `PayloadPart`,
//!   `DataType`, `BINARY`, ...) come from a table of interned `str` objects, whose hashes are
//!   cached, so building a headers `dict` creates and hashes no new string for them.
//!
//! The interpreter is released only when a call handles at least [`DETACH_MIN`] bytes: below
//! that the CRC pass (about 18 GB/s) takes under 8 µs, and releasing and re-taking the
//! interpreter costs more than it frees when other threads want it.

use std::hash::{Hash, Hasher};
use std::mem::MaybeUninit;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDateTime, PyDelta, PyDeltaAccess, PyDict, PyInt, PyList,
    PyMemoryView, PyString, PyTuple, PyType, PyTzInfo, PyTzInfoAccess,
};

use super::buffer::BorrowedBytes;
use crate::eventstream::{
    self as es, Decoder, HeaderBlockBuilder, HeaderType, HeaderValueRef, MessageRef, RawHeaderIter,
    RawValue,
};
use crate::Error;

/// Calls that handle at least this many bytes release the interpreter for the CRC pass.
const DETACH_MIN: usize = 128 * 1024;

static UUID_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn uuid_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    UUID_CLASS.import(py, "uuid", "UUID")
}

fn invalid(name: &str, message: impl std::fmt::Display) -> PyErr {
    Error::invalid(format!("event-stream header {name:?}: {message}")).into()
}

// ---------------------------------------------------------------------------------------------
// Python values -> header values
// ---------------------------------------------------------------------------------------------

fn int_value<T: TryFrom<i64>>(name: &str, v: &Bound<'_, PyAny>, what: &str) -> PyResult<T> {
    if !v.is_instance_of::<PyInt>() || v.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "event-stream header {name:?}: {what} value must be an int, not {}",
            v.get_type().name()?
        )));
    }
    v.extract::<i64>()
        .ok()
        .and_then(|i| T::try_from(i).ok())
        .ok_or_else(|| invalid(name, format_args!("{v} does not fit in {what}")))
}

/// Milliseconds since the epoch of an aware `datetime` (truncated to whole milliseconds).
fn datetime_ms(name: &str, dt: &Bound<'_, PyDateTime>) -> PyResult<i64> {
    if dt.get_tzinfo().is_none() {
        return Err(invalid(
            name,
            "naive datetime; give it a timezone (e.g. datetime.timezone.utc)",
        ));
    }
    let py = dt.py();
    let epoch = PyDateTime::new(
        py,
        1970,
        1,
        1,
        0,
        0,
        0,
        0,
        Some(&PyTzInfo::utc(py)?.to_owned()),
    )?;
    let delta = dt.sub(epoch)?;
    let delta = delta.cast::<PyDelta>()?;
    Ok(i64::from(delta.get_days()) * 86_400_000
        + i64::from(delta.get_seconds()) * 1000
        + i64::from(delta.get_microseconds()) / 1000)
}

fn uuid_bytes(name: &str, v: &Bound<'_, PyAny>) -> PyResult<[u8; 16]> {
    let py = v.py();
    if v.is_instance(uuid_class(py)?)? {
        let b = v.getattr(pyo3::intern!(py, "bytes"))?;
        let b = b.cast::<PyBytes>()?;
        return <[u8; 16]>::try_from(b.as_bytes())
            .map_err(|_| invalid(name, "UUID.bytes is not 16 bytes"));
    }
    let buf = BorrowedBytes::extract(v).map_err(|_| {
        PyTypeError::new_err(format!(
            "event-stream header {name:?}: uuid value must be a uuid.UUID or 16 bytes"
        ))
    })?;
    <[u8; 16]>::try_from(buf.as_slice()).map_err(|_| {
        invalid(
            name,
            format_args!("uuid value must be 16 bytes, got {}", buf.as_slice().len()),
        )
    })
}

fn push(block: &mut HeaderBlockBuilder, name: &str, value: HeaderValueRef<'_>) -> PyResult<()> {
    Ok(block.push(name, value)?)
}

/// `(type_code, value)`: a value of an explicit wire type.
fn push_typed(
    block: &mut HeaderBlockBuilder,
    name: &str,
    tuple: &Bound<'_, PyTuple>,
) -> PyResult<()> {
    if tuple.len() != 2 {
        return Err(PyTypeError::new_err(format!(
            "event-stream header {name:?}: a typed value is a (type_code, value) pair, got a {}-tuple",
            tuple.len()
        )));
    }
    let code_obj = tuple.get_item(0)?;
    let v = tuple.get_item(1)?;
    let code: u8 = int_value(name, &code_obj, "type code")?;
    let Some(ty) = HeaderType::from_code(code) else {
        return Err(invalid(name, format_args!("unknown type code {code}")));
    };
    let value = match ty {
        HeaderType::BoolTrue | HeaderType::BoolFalse => {
            let Ok(b) = v.cast::<PyBool>() else {
                return Err(PyTypeError::new_err(format!(
                    "event-stream header {name:?}: type {code} takes a bool"
                )));
            };
            if b.is_true() != (ty == HeaderType::BoolTrue) {
                return Err(invalid(
                    name,
                    format_args!("type {code} ({}) cannot hold {b}", ty.name()),
                ));
            }
            HeaderValueRef::Bool(b.is_true())
        }
        HeaderType::Byte => HeaderValueRef::Byte(int_value(name, &v, "int8")?),
        HeaderType::Short => HeaderValueRef::Short(int_value(name, &v, "int16")?),
        HeaderType::Int => HeaderValueRef::Int(int_value(name, &v, "int32")?),
        HeaderType::Long => HeaderValueRef::Long(int_value(name, &v, "int64")?),
        HeaderType::Timestamp => HeaderValueRef::Timestamp(match v.cast::<PyDateTime>() {
            Ok(dt) => datetime_ms(name, dt)?,
            Err(_) => int_value(name, &v, "int64 milliseconds")?,
        }),
        HeaderType::Uuid => HeaderValueRef::Uuid(uuid_bytes(name, &v)?),
        HeaderType::String => match v.cast::<PyString>() {
            Ok(s) => return push(block, name, HeaderValueRef::String(s.to_str()?)),
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "event-stream header {name:?}: type 7 (string) takes a str, not {}",
                    v.get_type().name()?
                )))
            }
        },
        HeaderType::Bytes => {
            if v.is_instance_of::<PyString>() {
                return Err(PyTypeError::new_err(format!(
                    "event-stream header {name:?}: type 6 (byte_array) takes bytes, not str"
                )));
            }
            let buf = BorrowedBytes::extract(&v)?;
            return push(block, name, HeaderValueRef::Bytes(buf.as_slice()));
        }
    };
    push(block, name, value)
}

/// Appends one header, its value in the natural mapping: str (first: the usual case), bool,
/// int (int32 if it fits, else int64), bytes-like, aware datetime (timestamp), uuid.UUID, or an
/// explicit `(type_code, value)` pair.
fn push_value(block: &mut HeaderBlockBuilder, name: &str, v: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(s) = v.cast_exact::<PyString>() {
        return push(block, name, HeaderValueRef::String(s.to_str()?));
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return push(block, name, HeaderValueRef::Bool(b.is_true()));
    }
    if v.is_instance_of::<PyInt>() {
        let i: i64 = v
            .extract()
            .map_err(|_| invalid(name, format_args!("{v} does not fit in int64")))?;
        let value = match i32::try_from(i) {
            Ok(i) => HeaderValueRef::Int(i),
            Err(_) => HeaderValueRef::Long(i),
        };
        return push(block, name, value);
    }
    if v.is_instance_of::<PyBytes>()
        || v.is_instance_of::<PyByteArray>()
        || v.is_instance_of::<PyMemoryView>()
    {
        let buf = BorrowedBytes::extract(v)?;
        return push(block, name, HeaderValueRef::Bytes(buf.as_slice()));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return push(block, name, HeaderValueRef::String(s.to_str()?));
    }
    if let Ok(t) = v.cast::<PyTuple>() {
        return push_typed(block, name, t);
    }
    if let Ok(dt) = v.cast::<PyDateTime>() {
        return push(
            block,
            name,
            HeaderValueRef::Timestamp(datetime_ms(name, dt)?),
        );
    }
    if v.is_instance(uuid_class(v.py())?)? {
        return push(block, name, HeaderValueRef::Uuid(uuid_bytes(name, v)?));
    }
    Err(PyTypeError::new_err(format!(
        "event-stream header {name:?}: cannot encode a {} (use bool, int, str, bytes, \
         an aware datetime, uuid.UUID or a (HeaderType, value) pair)",
        v.get_type().name()?
    )))
}

fn push_item(
    block: &mut HeaderBlockBuilder,
    name: &Bound<'_, PyAny>,
    v: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let name = match name.cast::<PyString>() {
        Ok(s) => s.to_str()?,
        Err(_) => {
            return Err(PyTypeError::new_err(format!(
                "event-stream header names must be str, not {}",
                name.get_type().name()?
            )))
        }
    };
    push_value(block, name, v)
}

/// An encoded header block: built, or copied from [`EncodeCache`]. A short-lived stack value
/// (boxing the large variant would allocate on the hot path).
#[allow(clippy::large_enum_variant)]
enum EncodedHeaders {
    Built(HeaderBlockBuilder),
    Cached {
        len: usize,
        bytes: [u8; EncodeCache::MAX_BLOCK],
    },
}

impl EncodedHeaders {
    fn as_slice(&self) -> &[u8] {
        match self {
            EncodedHeaders::Built(b) => b.block(),
            EncodedHeaders::Cached { len, bytes } => &bytes[..*len],
        }
    }
}

/// The header block of headers given as a mapping (order kept) or as an iterable of
/// `(name, value)` pairs.
fn header_block(headers: &Bound<'_, PyAny>) -> PyResult<EncodedHeaders> {
    if let Ok(d) = headers.cast_exact::<PyDict>() {
        let key = StrDictKey::of(d.iter());
        if let Some(cached) = key.as_ref().and_then(EncodeCache::get) {
            return Ok(cached);
        }
        let mut block = HeaderBlockBuilder::new();
        if key.is_none() {
            push_dict(&mut block, d)?;
            return Ok(EncodedHeaders::Built(block));
        }
        // Keep the very objects converted alive until they are offered to the cache, so that
        // the block it may keep is theirs whatever happens to the dict meanwhile.
        let mut items = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            push_item(&mut block, &k, &v)?;
            items.push((k, v));
        }
        EncodeCache::offer(&items, block.block());
        return Ok(EncodedHeaders::Built(block));
    }
    let mut block = HeaderBlockBuilder::new();
    push_headers(&mut block, headers)?;
    Ok(EncodedHeaders::Built(block))
}

fn push_dict(block: &mut HeaderBlockBuilder, d: &Bound<'_, PyDict>) -> PyResult<()> {
    for (k, v) in d.iter() {
        push_item(block, &k, &v)?;
    }
    Ok(())
}

/// The identities of the keys and values, in order, of a `dict` whose keys and values are all
/// exact `str` (immutable: while an object is alive, its identity fixes its text).
struct StrDictKey {
    ptrs: [usize; 2 * EncodeCache::MAX_ITEMS],
    len: usize,
}

impl StrDictKey {
    /// The key of `(key, value)` items, if there are 1 to `MAX_ITEMS` and all are exact `str`.
    fn of<'py, B>(items: impl IntoIterator<Item = (B, B)>) -> Option<Self>
    where
        B: std::borrow::Borrow<Bound<'py, PyAny>>,
    {
        let mut key = StrDictKey {
            ptrs: [0; 2 * EncodeCache::MAX_ITEMS],
            len: 0,
        };
        for (k, v) in items {
            let (k, v) = (k.borrow(), v.borrow());
            if !k.is_exact_instance_of::<PyString>()
                || !v.is_exact_instance_of::<PyString>()
                || key.len + 2 > key.ptrs.len()
            {
                return None;
            }
            key.ptrs[key.len] = k.as_ptr() as usize;
            key.ptrs[key.len + 1] = v.as_ptr() as usize;
            key.len += 2;
        }
        (key.len > 0).then_some(key)
    }

    fn ptrs(&self) -> &[usize] {
        &self.ptrs[..self.len]
    }

    /// A fingerprint for [`EncodeCache`]'s admission list (FxHash-style).
    fn fingerprint(&self) -> u64 {
        self.ptrs().iter().fold(self.len as u64, |h, &p| {
            (h.rotate_left(5) ^ p as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
        })
    }
}

/// The encoded header blocks of recently seen header `dict`s whose keys and values are all
/// exact `str`, keyed by the identities of those objects. Code that sends events builds its
/// headers from the same string constants every time (`{":event-type": "PayloadPart",
/// "DataType": "BINARY", ...}`), so encoding them again is a pointer comparison and a copy of
/// the block instead of a conversion and a check per header.
///
/// Sound because each entry holds strong references to its objects: they stay alive, and a
/// live `str` never changes, so equal identities mean equal text (no reuse of a freed address
/// can match). A key sequence is admitted the second time it is seen (a fingerprint list, so
/// dicts of fresh strings do not churn the cache); [`Self::SLOTS`] entries are kept, replaced
/// round-robin. Under the lock nothing calls into Python; replaced entries are released after.
struct EncodeCache {
    entries: Vec<EncodeEntry>,
    next_entry: usize,
    seen: [u64; Self::SLOTS],
    next_seen: usize,
}

struct EncodeEntry {
    /// Keys and values, in order (strong references).
    objects: Box<[Py<PyString>]>,
    block: Box<[u8]>,
}

static ENCODE_CACHE: std::sync::Mutex<EncodeCache> = std::sync::Mutex::new(EncodeCache {
    entries: Vec::new(),
    next_entry: 0,
    seen: [0; EncodeCache::SLOTS],
    next_seen: 0,
});

impl EncodeCache {
    const SLOTS: usize = 8;
    /// Dicts with more items are not cached.
    const MAX_ITEMS: usize = 16;
    /// Larger blocks are not cached.
    const MAX_BLOCK: usize = 256;

    fn lock() -> std::sync::MutexGuard<'static, EncodeCache> {
        // Nothing under the lock can leave the cache inconsistent.
        ENCODE_CACHE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn matches(entry: &EncodeEntry, key: &StrDictKey) -> bool {
        entry.objects.len() == key.len
            && entry
                .objects
                .iter()
                .zip(key.ptrs())
                .all(|(o, &p)| o.as_ptr() as usize == p)
    }

    fn get(key: &StrDictKey) -> Option<EncodedHeaders> {
        let cache = Self::lock();
        let entry = cache.entries.iter().find(|e| Self::matches(e, key))?;
        let mut bytes = [0u8; Self::MAX_BLOCK];
        bytes
            .get_mut(..entry.block.len())?
            .copy_from_slice(&entry.block);
        Some(EncodedHeaders::Cached {
            len: entry.block.len(),
            bytes,
        })
    }

    /// `block` was just encoded from `items`: cache it if they are all exact `str` and the
    /// same objects were seen before.
    fn offer(items: &[(Bound<'_, PyAny>, Bound<'_, PyAny>)], block: &[u8]) {
        if block.len() > Self::MAX_BLOCK {
            return;
        }
        let Some(key) = StrDictKey::of(items.iter().map(|(k, v)| (k, v))) else {
            return;
        };
        let fingerprint = key.fingerprint();
        {
            let mut cache = Self::lock();
            match cache.seen.iter().position(|&f| f == fingerprint) {
                Some(i) => cache.seen[i] = 0,
                None => {
                    let i = cache.next_seen;
                    cache.seen[i] = fingerprint;
                    cache.next_seen = (i + 1) % Self::SLOTS;
                    return;
                }
            }
        }
        // Seen before: keep strong references to the objects `block` was encoded from.
        let mut objects = Vec::with_capacity(key.len);
        for (k, v) in items {
            for o in [k, v] {
                match o.cast_exact::<PyString>() {
                    Ok(s) => objects.push(s.clone().unbind()),
                    Err(_) => return,
                }
            }
        }
        let entry = EncodeEntry {
            objects: objects.into_boxed_slice(),
            block: block.into(),
        };
        let replaced = {
            let mut cache = Self::lock();
            if cache.entries.iter().any(|e| Self::matches(e, &key)) {
                // Another thread cached it meanwhile.
                Some(entry)
            } else if cache.entries.len() < Self::SLOTS {
                cache.entries.push(entry);
                None
            } else {
                let i = cache.next_entry;
                cache.next_entry = (i + 1) % Self::SLOTS;
                Some(std::mem::replace(&mut cache.entries[i], entry))
            }
        };
        // Released here, with the interpreter attached and the lock free.
        drop(replaced);
    }
}

/// Appends headers given as any mapping or iterable of pairs.
fn push_headers(block: &mut HeaderBlockBuilder, headers: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(d) = headers.cast::<PyDict>() {
        return push_dict(block, d);
    }
    if headers.is_instance_of::<PyString>() || headers.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "headers must be a mapping or a sequence of (name, value) pairs",
        ));
    }
    let py = headers.py();
    let source = if headers.hasattr(pyo3::intern!(py, "items"))? {
        headers.call_method0(pyo3::intern!(py, "items"))?
    } else {
        headers.clone()
    };
    for pair in source.try_iter()? {
        let pair = pair?;
        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract().map_err(|_| {
            PyTypeError::new_err("headers must be a mapping or a sequence of (name, value) pairs")
        })?;
        push_item(block, &k, &v)?;
    }
    Ok(())
}

/// A new `bytes` holding the message made of `header_block` (built by [`HeaderBlockBuilder`] or
/// checked by the decoder) and `payload`, written in place without zero-filling it first.
fn message_bytes<'py>(
    py: Python<'py>,
    header_block: &[u8],
    payload: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let total = es::message_len(header_block.len(), payload.len())?;
    // The length is at most MAX_MESSAGE_LEN (about 16.1 MiB), so it fits.
    let size = ffi::Py_ssize_t::try_from(total)
        .map_err(|_| Error::invalid("event-stream message too large"))?;
    #[allow(unsafe_code)]
    // SAFETY: `PyBytes_FromStringAndSize(NULL, size)` returns a new `bytes` object with room for
    // `size` bytes whose contents are not initialised, or NULL with an exception set (turned
    // into `Err`). We hold the only reference to it until we return it, so nothing else can
    // read or write the bytes meanwhile (also not while the interpreter is released). They are
    // viewed as `MaybeUninit<u8>`, which may hold anything, and `write_message_uninit` writes
    // every one of the `total` bytes (it asserts the length) before the object is handed out.
    // If it panics, the object is released unread when `obj` drops.
    unsafe {
        let ptr = ffi::PyBytes_FromStringAndSize(std::ptr::null(), size);
        let obj = Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked::<PyBytes>();
        let data = ffi::PyBytes_AS_STRING(ptr)
            .cast_mut()
            .cast::<MaybeUninit<u8>>();
        let out = std::slice::from_raw_parts_mut(data, total);
        if total < DETACH_MIN {
            es::write_message_uninit(header_block, payload, out);
        } else {
            py.detach(|| es::write_message_uninit(header_block, payload, out));
        }
        Ok(obj)
    }
}

// ---------------------------------------------------------------------------------------------
// Header values -> Python values
// ---------------------------------------------------------------------------------------------

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A timestamp as an aware UTC `datetime`, or the int milliseconds if `datetime` cannot hold it
/// (before year 1 or after 9999).
fn timestamp_object(py: Python<'_>, ms: i64) -> PyResult<Bound<'_, PyAny>> {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    if !(1..=9999).contains(&year) {
        return Ok(ms.into_pyobject(py)?.into_any());
    }
    let utc = PyTzInfo::utc(py)?.to_owned();
    Ok(PyDateTime::new(
        py,
        year as i32,
        month,
        day,
        (rem / 3_600_000) as u8,
        (rem / 60_000 % 60) as u8,
        (rem / 1000 % 60) as u8,
        (rem % 1000) as u32 * 1000,
        Some(&utc),
    )?
    .into_any())
}

fn uuid_object<'py>(py: Python<'py>, b: &[u8; 16]) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item(pyo3::intern!(py, "bytes"), PyBytes::new(py, b))?;
    uuid_class(py)?.call((), Some(&kwargs))
}

/// Header names and string values of SageMaker bidirectional streams and of the AWS
/// event-stream protocol (reference/sagemaker-bidi-protocol.md), made into Python strings once.
const KNOWN: &[&[u8]] = &[
    b":message-type",
    b":event-type",
    b":content-type",
    b":exception-type",
    b":error-code",
    b":error-message",
    b":date",
    b":chunk-signature",
    b"DataType",
    b"CompletionState",
    b"P",
    b"event",
    b"exception",
    b"error",
    b"PayloadPart",
    b"application/octet-stream",
    b"application/json",
    b"UTF8",
    b"BINARY",
    b"PARTIAL",
    b"COMPLETE",
    b"ModelStreamError",
    b"InternalStreamFailure",
];

const KNOWN_MAX_LEN: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < KNOWN.len() {
        if KNOWN[i].len() > max {
            max = KNOWN[i].len();
        }
        i += 1;
    }
    max
};

/// Up to 4 indexes into [`KNOWN`] per string length (`u8::MAX`: none); built at compile time
/// (which fails if a length has more than 4 strings).
const KNOWN_BY_LEN: [[u8; 4]; KNOWN_MAX_LEN + 1] = {
    let mut table = [[u8::MAX; 4]; KNOWN_MAX_LEN + 1];
    let mut i = 0;
    while i < KNOWN.len() {
        let slots = &mut table[KNOWN[i].len()];
        let mut j = 0;
        while slots[j] != u8::MAX {
            j += 1;
        }
        slots[j] = i as u8;
        i += 1;
    }
    table
};

/// The index of `b` in [`KNOWN`]: a length lookup, then at most 3 comparisons.
#[inline]
fn known_index(b: &[u8]) -> Option<usize> {
    for &i in KNOWN_BY_LEN.get(b.len())? {
        let i = usize::from(i);
        match KNOWN.get(i) {
            Some(k) if *k == b => return Some(i),
            Some(_) => {}
            None => break,
        }
    }
    None
}

static KNOWN_STRINGS: PyOnceLock<Box<[Py<PyString>]>> = PyOnceLock::new();

/// The interned `str` objects of [`KNOWN`], in its order.
fn known_strings(py: Python<'_>) -> &[Py<PyString>] {
    KNOWN_STRINGS.get_or_init(py, || {
        KNOWN
            .iter()
            .map(|k| PyString::intern(py, &String::from_utf8_lossy(k)).unbind())
            .collect()
    })
}

/// A `str` from bytes known to be UTF-8 (a name or string value of a checked header block):
/// a shared interned object for the known strings, else a new one, made without checking the
/// UTF-8 in Rust once more (CPython's decoder checks it while copying, fast for ASCII).
fn str_object<'py>(
    py: Python<'py>,
    known: &[Py<PyString>],
    b: &[u8],
) -> PyResult<Bound<'py, PyString>> {
    if let Some(s) = known_index(b).and_then(|i| known.get(i)) {
        return Ok(s.bind(py).clone());
    }
    let len = ffi::Py_ssize_t::try_from(b.len())
        .map_err(|_| Error::invalid("event-stream string too long"))?;
    #[allow(unsafe_code)]
    // SAFETY: `b` is a live slice of `len` bytes, which CPython copies (and checks) into a new
    // `str`; a NULL result comes with an exception set, which `from_owned_ptr_or_err` returns.
    unsafe {
        let ptr = ffi::PyUnicode_DecodeUTF8(b.as_ptr().cast(), len, std::ptr::null());
        Ok(Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked())
    }
}

/// The headers `dict`s of recently seen header blocks, so that `Message.headers` of a block seen
/// before is a copy of a ready dict (`dict.copy` of a small dict is a memory copy, about ten
/// times cheaper than building it with one insertion per header). Streams repeat a few blocks
/// over and over: a SageMaker `PayloadPart` block only varies in `DataType` and
/// `CompletionState`.
///
/// A block is admitted the second time it is seen (so a stream of unique blocks, such as
/// random `P` padding, does not churn the cache); [`Self::SLOTS`] entries are kept, replaced
/// round-robin. The cached dicts are never handed out, only copies, and every header value
/// object is immutable, so sharing them between messages is invisible. Under the lock nothing
/// calls into Python (replaced entries are dropped after it is released).
struct HeaderCache {
    entries: Vec<HeaderEntry>,
    next_entry: usize,
    /// Blocks seen once.
    seen: Vec<Box<[u8]>>,
    next_seen: usize,
}

struct HeaderEntry {
    block: Box<[u8]>,
    /// Its number of headers.
    count: usize,
    headers: Py<PyDict>,
}

static HEADER_CACHE: std::sync::Mutex<HeaderCache> = std::sync::Mutex::new(HeaderCache {
    entries: Vec::new(),
    next_entry: 0,
    seen: Vec::new(),
    next_seen: 0,
});

impl HeaderCache {
    const SLOTS: usize = 8;
    /// Larger blocks are not cached.
    const MAX_BLOCK: usize = 256;

    fn lock() -> std::sync::MutexGuard<'static, HeaderCache> {
        // Nothing under the lock can leave the cache inconsistent, so a panic elsewhere while
        // it was held does not matter.
        HEADER_CACHE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The header count and the cached dict of `block`, if any.
    fn get(py: Python<'_>, block: &[u8]) -> Option<(usize, Py<PyDict>)> {
        if block.len() > Self::MAX_BLOCK {
            return None;
        }
        let cache = Self::lock();
        cache
            .entries
            .iter()
            .find(|e| *e.block == *block)
            .map(|e| (e.count, e.headers.clone_ref(py)))
    }

    /// For [`es::decode_message_ref_known`]: a cached block was checked when its message was
    /// made (decoded, or built by [`HeaderBlockBuilder`]), so an identical block needs no new
    /// check; its dict goes to the message, for `Message.headers`.
    fn vouch(
        py: Python<'_>,
        block: &[u8],
        headers: &std::cell::Cell<Option<Py<PyDict>>>,
    ) -> Option<usize> {
        let (count, dict) = Self::get(py, block)?;
        headers.set(Some(dict));
        Some(count)
    }

    /// `dict` was just built from `block` (of strings, bools and integers only): remember that
    /// the block was seen, and cache a copy of the dict if it was seen before.
    fn offer(block: &[u8], count: usize, dict: &Bound<'_, PyDict>) -> PyResult<()> {
        let seen_before = {
            let mut cache = Self::lock();
            match cache.seen.iter().position(|b| **b == *block) {
                Some(i) => {
                    cache.seen.swap_remove(i);
                    true
                }
                None => {
                    if cache.seen.len() < Self::SLOTS {
                        cache.seen.push(block.into());
                    } else {
                        let i = cache.next_seen;
                        cache.seen[i] = block.into();
                        cache.next_seen = (i + 1) % Self::SLOTS;
                    }
                    false
                }
            }
        };
        if !seen_before {
            return Ok(());
        }
        let entry = HeaderEntry {
            block: block.into(),
            count,
            headers: dict.copy()?.unbind(),
        };
        let replaced = {
            let mut cache = Self::lock();
            if cache.entries.iter().any(|e| *e.block == *block) {
                // Another thread cached it meanwhile.
                Some(entry)
            } else if cache.entries.len() < Self::SLOTS {
                cache.entries.push(entry);
                None
            } else {
                let i = cache.next_entry;
                cache.next_entry = (i + 1) % Self::SLOTS;
                Some(std::mem::replace(&mut cache.entries[i], entry))
            }
        };
        // Released here, with the interpreter attached and the lock free.
        drop(replaced);
        Ok(())
    }
}

/// `raw_time`: timestamps as int milliseconds (exact) instead of `datetime`.
fn value_object<'py>(
    py: Python<'py>,
    known: &[Py<PyString>],
    v: RawValue<'_>,
    raw_time: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let v = match v {
        RawValue::String(s) => return Ok(str_object(py, known, s)?.into_any()),
        RawValue::Other(v) => v,
    };
    Ok(match v {
        HeaderValueRef::Bool(b) => PyBool::new(py, b).to_owned().into_any(),
        HeaderValueRef::Byte(i) => i.into_pyobject(py)?.into_any(),
        HeaderValueRef::Short(i) => i.into_pyobject(py)?.into_any(),
        HeaderValueRef::Int(i) => i.into_pyobject(py)?.into_any(),
        HeaderValueRef::Long(i) => i.into_pyobject(py)?.into_any(),
        HeaderValueRef::Bytes(b) => PyBytes::new(py, b).into_any(),
        HeaderValueRef::String(s) => PyString::new(py, s).into_any(),
        HeaderValueRef::Timestamp(ms) if raw_time => ms.into_pyobject(py)?.into_any(),
        HeaderValueRef::Timestamp(ms) => timestamp_object(py, ms)?,
        HeaderValueRef::Uuid(u) => uuid_object(py, &u)?,
    })
}

fn type_code(v: RawValue<'_>) -> u8 {
    match v {
        RawValue::String(_) => HeaderType::String.code(),
        RawValue::Other(v) => v.header_type().code(),
    }
}

// ---------------------------------------------------------------------------------------------
// Message
// ---------------------------------------------------------------------------------------------

/// One event-stream message: headers and payload.
///
/// ``Message(headers=(), payload=b"")`` builds one from Python values (the same forms
/// :func:`encode_message` takes; a ``bytes`` payload is kept without copying, other buffers
/// are copied). Decoding makes them too. The message keeps its encoded header block; header
/// objects are built from it when asked.
#[pyclass(frozen, name = "Message", module = "sagebidi_perf._native")]
struct PyMessage {
    /// The checked, encoded header block.
    block: Block,
    payload: Py<PyBytes>,
    /// The headers of this block from [`HeaderCache`], if it had them when this message was
    /// decoded: shared, never handed out (`headers` returns copies).
    cached_headers: Option<Py<PyDict>>,
}

/// Header blocks up to this size are stored inside the `Message` object (no allocation); it
/// holds the usual `PayloadPart` block (133 bytes) and keeps the object within 256 bytes.
const INLINE_BLOCK: usize = 200;

/// A header block, inline when small.
enum Block {
    Inline { len: u8, bytes: [u8; INLINE_BLOCK] },
    Heap(Box<[u8]>),
}

impl Block {
    fn new(block: &[u8]) -> Self {
        match u8::try_from(block.len()) {
            Ok(len) if block.len() <= INLINE_BLOCK => {
                let mut bytes = [0u8; INLINE_BLOCK];
                bytes[..block.len()].copy_from_slice(block);
                Block::Inline { len, bytes }
            }
            _ => Block::Heap(block.into()),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Block::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Block::Heap(b) => b,
        }
    }
}

impl std::ops::Deref for Block {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PyMessage {
    fn from_parts(block: &[u8], payload: Py<PyBytes>) -> Self {
        PyMessage {
            block: Block::new(block),
            payload,
            cached_headers: None,
        }
    }

    fn from_ref(py: Python<'_>, m: MessageRef<'_>, cached_headers: Option<Py<PyDict>>) -> Self {
        PyMessage {
            block: Block::new(m.header_block()),
            payload: PyBytes::new(py, m.payload()).unbind(),
            cached_headers,
        }
    }

    /// The stored block was checked when this message was made: iterating cannot fail and
    /// need not check the UTF-8 again.
    fn raw_headers(&self) -> RawHeaderIter<'_> {
        RawHeaderIter::new(&self.block)
    }

    /// A new dict of the headers: a copy of the cached dict of the same block if there is one
    /// (see [`HeaderCache`]), else built from the block.
    fn headers_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if let Some(cached) = &self.cached_headers {
            return cached.bind(py).copy();
        }
        let block: &[u8] = &self.block;
        let cacheable = block.len() <= HeaderCache::MAX_BLOCK;
        if let Some((_, cached)) = HeaderCache::get(py, block) {
            return cached.bind(py).copy();
        }
        let known = known_strings(py);
        let d = PyDict::new(py);
        // Only blocks of strings, bools and integers repeat from message to message (a
        // timestamp, a signature or a UUID rarely does), so only those are offered.
        let mut repeatable = cacheable;
        let mut count = 0;
        for h in self.raw_headers() {
            count += 1;
            repeatable &= matches!(
                h.value,
                RawValue::String(_)
                    | RawValue::Other(
                        HeaderValueRef::Bool(_)
                            | HeaderValueRef::Byte(_)
                            | HeaderValueRef::Short(_)
                            | HeaderValueRef::Int(_)
                            | HeaderValueRef::Long(_)
                    )
            );
            d.set_item(
                str_object(py, known, h.name)?,
                value_object(py, known, h.value, false)?,
            )?;
        }
        if repeatable {
            HeaderCache::offer(block, count, &d)?;
        }
        Ok(d)
    }

    fn encode_to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        message_bytes(py, &self.block, self.payload.bind(py).as_bytes())
    }
}

#[pymethods]
impl PyMessage {
    #[new]
    #[pyo3(signature = (headers = None, payload = None), text_signature = "(headers=(), payload=b'')")]
    fn py_new(
        py: Python<'_>,
        headers: Option<&Bound<'_, PyAny>>,
        payload: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let block = match headers {
            Some(h) => header_block(h)?,
            None => EncodedHeaders::Built(HeaderBlockBuilder::new()),
        };
        let payload: Py<PyBytes> = match payload {
            None => PyBytes::new(py, b"").unbind(),
            Some(p) => match p.cast::<PyBytes>() {
                Ok(b) => b.clone().unbind(),
                Err(_) => PyBytes::new(py, BorrowedBytes::extract(p)?.as_slice()).unbind(),
            },
        };
        es::message_len(block.as_slice().len(), payload.bind(py).as_bytes().len())?;
        Ok(Self::from_parts(block.as_slice(), payload))
    }

    /// Headers as a new ``dict`` name → value (in wire order): ``bool``, ``int`` (byte, short,
    /// integer, long), ``bytes``, ``str``, an aware UTC ``datetime`` for timestamps (``int``
    /// milliseconds outside years 1-9999) and ``uuid.UUID``. Built from the encoded headers on
    /// each access (keep the dict rather than reading the property in a loop); changing it
    /// does not change the message. Known names and values (``":event-type"``,
    /// ``"PayloadPart"``, ``"BINARY"``, ...) are shared interned strings.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.headers_dict(py)
    }

    /// The payload (the same ``bytes`` object on every access).
    #[getter]
    fn payload(&self, py: Python<'_>) -> Py<PyBytes> {
        self.payload.clone_ref(py)
    }

    /// The value of header ``name`` (as in :attr:`headers`), or ``default``. Builds no dict.
    #[pyo3(signature = (name, default = None))]
    fn header<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        if let Some(cached) = &self.cached_headers {
            return Ok(cached.bind(py).get_item(name)?.or(default));
        }
        match self.raw_headers().find(|h| h.name == name.as_bytes()) {
            Some(h) => Ok(Some(value_object(py, known_strings(py), h.value, false)?)),
            None => Ok(default),
        }
    }

    /// ``[(name, type_code, value), ...]`` in wire order, with timestamps as ``int``
    /// milliseconds, so ``encode_message([(n, (t, v)) for n, t, v in m.header_items()],
    /// m.payload)`` reproduces the message byte for byte.
    fn header_items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let known = known_strings(py);
        let list = PyList::empty(py);
        for h in self.raw_headers() {
            list.append((
                str_object(py, known, h.name)?,
                type_code(h.value),
                value_object(py, known, h.value, true)?,
            ))?;
        }
        Ok(list)
    }

    /// This message on the wire, as new ``bytes`` (copies the payload).
    fn encode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.encode_to_bytes(py)
    }

    fn __eq__(&self, py: Python<'_>, other: PyRef<'_, Self>) -> bool {
        *self.block == *other.block
            && self.payload.bind(py).as_bytes() == other.payload.bind(py).as_bytes()
    }

    fn __hash__(&self, py: Python<'_>) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.block.hash(&mut h);
        self.payload.bind(py).as_bytes().hash(&mut h);
        h.finish()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let headers = self.headers_dict(py)?.repr()?;
        let payload = self.payload.bind(py);
        let bytes = payload.as_bytes();
        if bytes.len() <= 64 {
            Ok(format!(
                "Message(headers={headers}, payload={})",
                payload.repr()?
            ))
        } else {
            let head = PyBytes::new(py, &bytes[..48]).repr()?;
            Ok(format!(
                "Message(headers={headers}, payload=<{} bytes: {head}...>)",
                bytes.len()
            ))
        }
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let py = slf.py();
        let f = py
            .import(pyo3::intern!(py, "sagebidi_perf._native"))?
            .getattr(pyo3::intern!(py, "decode_message"))?;
        Ok((f, (slf.get().encode_to_bytes(py)?,)))
    }
}

// ---------------------------------------------------------------------------------------------
// Functions and the incremental decoder
// ---------------------------------------------------------------------------------------------

/// Encodes one message into new ``bytes``.
///
/// ``headers``: a mapping name → value (order kept) or a sequence of ``(name, value)`` pairs.
/// Values: ``bool``; ``str`` → string; ``bytes``/``bytearray``/``memoryview`` → byte_array;
/// ``int`` → integer (int32) if it fits, else long (int64); an aware ``datetime`` → timestamp
/// (milliseconds); ``uuid.UUID`` → uuid; or ``(HeaderType, value)`` to force a wire type.
/// ``payload``: any bytes-like object, read zero-copy (the result is the one copy).
#[pyfunction]
#[pyo3(signature = (headers, payload = None), text_signature = "(headers, payload=b'')")]
fn encode_message<'py>(
    py: Python<'py>,
    headers: &Bound<'py, PyAny>,
    payload: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let block = header_block(headers)?;
    match payload {
        None => message_bytes(py, block.as_slice(), b""),
        Some(p) => {
            let payload = BorrowedBytes::extract(p)?;
            message_bytes(py, block.as_slice(), payload.as_slice())
        }
    }
}

/// A message checked without the interpreter, located in the input or copied out of the
/// decoder's buffer.
enum Found {
    /// Offsets into the fed data: start of the header block, header block length, payload
    /// length.
    InData {
        block_at: usize,
        block_len: usize,
        payload_len: usize,
    },
    Copied {
        block: Box<[u8]>,
        payload: Vec<u8>,
    },
}

fn build_found(py: Python<'_>, data: &[u8], found: Vec<Found>) -> PyResult<Vec<PyMessage>> {
    found
        .into_iter()
        .map(|f| {
            Ok(match f {
                Found::InData {
                    block_at,
                    block_len,
                    payload_len,
                } => {
                    let payload_at = block_at + block_len;
                    PyMessage::from_parts(
                        &data[block_at..payload_at],
                        PyBytes::new(py, &data[payload_at..payload_at + payload_len]).unbind(),
                    )
                }
                Found::Copied { block, payload } => {
                    PyMessage::from_parts(&block, PyBytes::new(py, &payload).unbind())
                }
            })
        })
        .collect()
}

/// Decodes exactly one whole message (copies its payload into the ``Message``). Raises
/// ``TruncatedMessageError`` if ``data`` is shorter than the message it starts, and
/// ``MalformedMessageError`` if bytes follow it.
#[pyfunction]
fn decode_message(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<PyMessage> {
    let data = BorrowedBytes::extract(data)?;
    let bytes = data.as_slice();
    if bytes.len() < DETACH_MIN {
        let cached = std::cell::Cell::new(None);
        let m = es::decode_message_ref_known(bytes, |b| HeaderCache::vouch(py, b, &cached))?;
        return Ok(PyMessage::from_ref(py, m, cached.take()));
    }
    let block_len = py.detach(|| es::decode_message_ref(bytes).map(|m| m.header_block().len()))?;
    let payload_len = bytes.len() - es::MESSAGE_OVERHEAD - block_len;
    let found = vec![Found::InData {
        block_at: es::PRELUDE_LEN,
        block_len,
        payload_len,
    }];
    build_found(py, bytes, found)?
        .pop()
        .ok_or_else(|| Error::invalid("no message").into())
}

/// Incremental event-stream decoder: ``feed`` it bytes split anywhere (``bytes``,
/// ``bytearray``, ``memoryview``, read zero-copy); it returns each message once complete.
///
/// Only the bytes of a trailing partial message are kept (copied once), so a large batch is
/// decoded in linear time. A bad prelude (length over a limit, bad CRC) is refused as soon as
/// its 12 bytes arrive. Errors are final; when complete messages precede the error in the same
/// ``feed``, they are returned and the error is raised by the next ``feed`` or ``close``.
/// Error offsets count from the first byte ever fed.
#[pyclass(name = "EventStreamDecoder", module = "sagebidi_perf._native")]
struct PyDecoder {
    inner: Decoder,
}

#[pymethods]
impl PyDecoder {
    #[new]
    fn py_new() -> Self {
        PyDecoder {
            inner: Decoder::new(),
        }
    }

    /// Feeds bytes; returns the messages they complete, in order (possibly none).
    fn feed<'py>(&mut self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Vec<PyMessage>> {
        let data = BorrowedBytes::extract(data)?;
        let bytes = data.as_slice();
        let mut out: Vec<PyMessage> = Vec::new();
        let result = if bytes.len() + self.inner.buffered() < DETACH_MIN {
            let cached = std::cell::Cell::new(None);
            self.inner.feed_with_known(
                bytes,
                |b| HeaderCache::vouch(py, b, &cached),
                |m, _| {
                    out.push(PyMessage::from_ref(py, m, cached.take()));
                    Ok(())
                },
            )
        } else {
            let data_start = self.inner.offset() + self.inner.buffered() as u64;
            let inner = &mut self.inner;
            let mut found = Vec::new();
            let result = py.detach(|| {
                inner.feed_with(bytes, |m, at| {
                    let block_len = m.header_block().len();
                    found.push(if at >= data_start {
                        Found::InData {
                            block_at: (at - data_start) as usize + es::PRELUDE_LEN,
                            block_len,
                            payload_len: m.payload().len(),
                        }
                    } else {
                        Found::Copied {
                            block: m.header_block().into(),
                            payload: m.payload().to_vec(),
                        }
                    });
                    Ok(())
                })
            });
            out = build_found(py, bytes, found)?;
            result
        };
        match result {
            Err(err) if out.is_empty() => Err(err.into()),
            _ => Ok(out),
        }
    }

    /// Ends the stream: raises ``TruncatedMessageError`` if a partial message is held (or the
    /// error that stopped the decoder).
    fn close(&self) -> PyResult<()> {
        Ok(self.inner.finish()?)
    }

    /// Bytes of a partial message held.
    #[getter]
    fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    /// Stream offset where the next message starts (bytes fed minus ``buffered``).
    #[getter]
    fn offset(&self) -> u64 {
        self.inner.offset()
    }

    fn __repr__(&self) -> String {
        format!(
            "EventStreamDecoder(offset={}, buffered={}{})",
            self.inner.offset(),
            self.inner.buffered(),
            if self.inner.error().is_some() {
                ", failed"
            } else {
                ""
            }
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMessage>()?;
    m.add_class::<PyDecoder>()?;
    m.add_function(wrap_pyfunction!(encode_message, m)?)?;
    m.add_function(wrap_pyfunction!(decode_message, m)?)?;
    m.add("EVENTSTREAM_MAX_PAYLOAD_LENGTH", es::MAX_PAYLOAD_LEN)?;
    m.add("EVENTSTREAM_MAX_HEADERS_LENGTH", es::MAX_HEADERS_LEN)?;
    m.add(
        "EVENTSTREAM_MAX_HEADER_VALUE_LENGTH",
        es::MAX_HEADER_VALUE_LEN,
    )?;
    m.add("EVENTSTREAM_MAX_MESSAGE_LENGTH", es::MAX_MESSAGE_LEN)?;
    Ok(())
}
