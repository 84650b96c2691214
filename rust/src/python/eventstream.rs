//! Python glue for the event-stream codec ([`crate::eventstream`]): `encode_message`,
//! `decode_message`, `Message` and `EventStreamDecoder`.
//!
//! Hot-path choices: a decoded `Message` keeps its (already checked) header block as raw bytes
//! and builds Python header objects only when asked (then caches them); the payload is one
//! `bytes` object made at decode time. The interpreter is released only when a call handles at
//! least [`DETACH_MIN`] bytes, where the CRC pass outweighs the cost of releasing it.

use std::hash::{Hash, Hasher};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDateTime, PyDelta, PyDeltaAccess, PyDict, PyInt, PyList,
    PyMemoryView, PyString, PyTuple, PyType, PyTzInfo, PyTzInfoAccess,
};

use super::buffer::BorrowedBytes;
use crate::eventstream::{
    self as es, AsHeader, Decoder, HeaderRef, HeaderType, HeaderValueRef, MessageRef,
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

/// A header value extracted from Python, borrowing strings and buffers without copying.
enum Val<'py> {
    Scalar(HeaderValueRef<'static>),
    Str(PyBackedStr),
    Buf(BorrowedBytes<'py>),
}

struct Item<'py> {
    name: PyBackedStr,
    val: Val<'py>,
}

impl AsHeader for Item<'_> {
    fn header_name(&self) -> &str {
        &self.name
    }

    fn header_value(&self) -> HeaderValueRef<'_> {
        match &self.val {
            Val::Scalar(v) => *v,
            Val::Str(s) => HeaderValueRef::String(s),
            Val::Buf(b) => HeaderValueRef::Bytes(b.as_slice()),
        }
    }
}

impl Item<'_> {
    fn as_header_ref(&self) -> HeaderRef<'_> {
        HeaderRef {
            name: self.header_name(),
            value: self.header_value(),
        }
    }
}

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

/// `(type_code, value)`: a value of an explicit wire type.
fn typed_value<'py>(name: &str, tuple: &Bound<'py, PyTuple>) -> PyResult<Val<'py>> {
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
    let scalar = |x| Ok(Val::Scalar(x));
    match ty {
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
            scalar(HeaderValueRef::Bool(b.is_true()))
        }
        HeaderType::Byte => scalar(HeaderValueRef::Byte(int_value(name, &v, "int8")?)),
        HeaderType::Short => scalar(HeaderValueRef::Short(int_value(name, &v, "int16")?)),
        HeaderType::Int => scalar(HeaderValueRef::Int(int_value(name, &v, "int32")?)),
        HeaderType::Long => scalar(HeaderValueRef::Long(int_value(name, &v, "int64")?)),
        HeaderType::Timestamp => {
            let ms = match v.cast::<PyDateTime>() {
                Ok(dt) => datetime_ms(name, dt)?,
                Err(_) => int_value(name, &v, "int64 milliseconds")?,
            };
            scalar(HeaderValueRef::Timestamp(ms))
        }
        HeaderType::Uuid => scalar(HeaderValueRef::Uuid(uuid_bytes(name, &v)?)),
        HeaderType::String => match v.cast_into::<PyString>() {
            Ok(s) => Ok(Val::Str(PyBackedStr::try_from(s)?)),
            Err(e) => Err(PyTypeError::new_err(format!(
                "event-stream header {name:?}: type 7 (string) takes a str, not {}",
                e.into_inner().get_type().name()?
            ))),
        },
        HeaderType::Bytes => {
            if v.is_instance_of::<PyString>() {
                return Err(PyTypeError::new_err(format!(
                    "event-stream header {name:?}: type 6 (byte_array) takes bytes, not str"
                )));
            }
            Ok(Val::Buf(BorrowedBytes::extract(&v)?))
        }
    }
}

/// The natural mapping: bool, str, bytes-like, int (int32 if it fits, else int64), aware
/// datetime (timestamp), uuid.UUID, or an explicit `(type_code, value)` pair.
fn value<'py>(name: &str, v: Bound<'py, PyAny>) -> PyResult<Val<'py>> {
    if let Ok(s) = v.cast_exact::<PyString>() {
        return Ok(Val::Str(PyBackedStr::try_from(s.clone())?));
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Val::Scalar(HeaderValueRef::Bool(b.is_true())));
    }
    if v.is_instance_of::<PyInt>() {
        let i: i64 = v
            .extract()
            .map_err(|_| invalid(name, format_args!("{v} does not fit in int64")))?;
        return Ok(Val::Scalar(match i32::try_from(i) {
            Ok(i) => HeaderValueRef::Int(i),
            Err(_) => HeaderValueRef::Long(i),
        }));
    }
    if v.is_instance_of::<PyBytes>()
        || v.is_instance_of::<PyByteArray>()
        || v.is_instance_of::<PyMemoryView>()
    {
        return Ok(Val::Buf(BorrowedBytes::extract(&v)?));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Val::Str(PyBackedStr::try_from(s.clone())?));
    }
    if let Ok(t) = v.cast::<PyTuple>() {
        return typed_value(name, t);
    }
    if let Ok(dt) = v.cast::<PyDateTime>() {
        return Ok(Val::Scalar(HeaderValueRef::Timestamp(datetime_ms(
            name, dt,
        )?)));
    }
    if v.is_instance(uuid_class(v.py())?)? {
        return Ok(Val::Scalar(HeaderValueRef::Uuid(uuid_bytes(name, &v)?)));
    }
    Err(PyTypeError::new_err(format!(
        "event-stream header {name:?}: cannot encode a {} (use bool, int, str, bytes, \
         an aware datetime, uuid.UUID or a (HeaderType, value) pair)",
        v.get_type().name()?
    )))
}

fn item<'py>(name: Bound<'py, PyAny>, v: Bound<'py, PyAny>) -> PyResult<Item<'py>> {
    let name = match name.cast_into::<PyString>() {
        Ok(s) => PyBackedStr::try_from(s)?,
        Err(e) => {
            return Err(PyTypeError::new_err(format!(
                "event-stream header names must be str, not {}",
                e.into_inner().get_type().name()?
            )))
        }
    };
    let val = value(&name, v)?;
    Ok(Item { name, val })
}

/// Headers given as a mapping (order kept) or as an iterable of `(name, value)` pairs.
fn items<'py>(headers: &Bound<'py, PyAny>) -> PyResult<Vec<Item<'py>>> {
    if let Ok(d) = headers.cast::<PyDict>() {
        let mut out = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            out.push(item(k, v)?);
        }
        return Ok(out);
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
    let mut out = Vec::new();
    for pair in source.try_iter()? {
        let pair = pair?;
        let (k, v): (Bound<'py, PyAny>, Bound<'py, PyAny>) = pair.extract().map_err(|_| {
            PyTypeError::new_err("headers must be a mapping or a sequence of (name, value) pairs")
        })?;
        out.push(item(k, v)?);
    }
    Ok(out)
}

/// Encodes items + payload into a new `bytes` (one allocation, written in place).
fn encode_bytes<'py>(
    py: Python<'py>,
    items: &[Item<'py>],
    payload: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let total = es::encoded_len(items, payload.len())?;
    let headers_len = total - es::MESSAGE_OVERHEAD - payload.len();
    if total < DETACH_MIN {
        return PyBytes::new_with(py, total, |out| {
            es::encode_to_slice(items, headers_len, payload, out);
            Ok(())
        });
    }
    let refs: Vec<HeaderRef<'_>> = items.iter().map(Item::as_header_ref).collect();
    PyBytes::new_with(py, total, |out| {
        py.detach(|| es::encode_to_slice(&refs, headers_len, payload, out));
        Ok(())
    })
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

/// `raw_time`: timestamps as int milliseconds (exact) instead of `datetime`.
fn value_object<'py>(
    py: Python<'py>,
    v: HeaderValueRef<'_>,
    raw_time: bool,
) -> PyResult<Bound<'py, PyAny>> {
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

// ---------------------------------------------------------------------------------------------
// Message
// ---------------------------------------------------------------------------------------------

/// One event-stream message: headers and payload.
///
/// ``Message(headers=(), payload=b"")`` builds one from Python values (the same forms
/// :func:`encode_message` takes; a ``bytes`` payload is kept without copying, other buffers
/// are copied). Decoding makes them too. Header objects are built on first access and cached.
#[pyclass(frozen, name = "Message", module = "sagebidi_perf._native")]
struct PyMessage {
    /// The checked, encoded header block.
    block: Box<[u8]>,
    payload: Py<PyBytes>,
    headers: PyOnceLock<Py<PyDict>>,
}

impl PyMessage {
    fn from_parts(block: &[u8], payload: Py<PyBytes>) -> Self {
        PyMessage {
            block: block.into(),
            payload,
            headers: PyOnceLock::new(),
        }
    }

    fn from_ref(py: Python<'_>, m: MessageRef<'_>) -> Self {
        Self::from_parts(m.header_block(), PyBytes::new(py, m.payload()).unbind())
    }

    /// The stored block was checked when this message was made, so this cannot fail.
    fn header_refs(&self) -> es::HeaderIter<'_> {
        es::HeaderIter::new(&self.block)
    }

    fn headers_dict<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyDict>> {
        self.headers
            .get_or_try_init(py, || -> PyResult<Py<PyDict>> {
                let d = PyDict::new(py);
                for h in self.header_refs() {
                    d.set_item(PyString::new(py, h.name), value_object(py, h.value, false)?)?;
                }
                Ok(d.unbind())
            })
            .map(|d| d.bind(py))
    }

    fn encode_to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let payload = self.payload.bind(py).as_bytes();
        let total = es::MESSAGE_OVERHEAD + self.block.len() + payload.len();
        let write = |out: &mut [u8]| es::encode_raw_to_slice(&self.block, payload, out);
        if total < DETACH_MIN {
            PyBytes::new_with(py, total, |out| {
                write(out);
                Ok(())
            })
        } else {
            PyBytes::new_with(py, total, |out| {
                py.detach(|| write(out));
                Ok(())
            })
        }
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
        let items = match headers {
            Some(h) => items(h)?,
            None => Vec::new(),
        };
        let payload: Py<PyBytes> = match payload {
            None => PyBytes::new(py, b"").unbind(),
            Some(p) => match p.cast::<PyBytes>() {
                Ok(b) => b.clone().unbind(),
                Err(_) => PyBytes::new(py, BorrowedBytes::extract(p)?.as_slice()).unbind(),
            },
        };
        es::encoded_len(&items, payload.bind(py).as_bytes().len())?;
        let mut block = Vec::new();
        es::encode_headers_into(&items, &mut block)?;
        Ok(Self::from_parts(&block, payload))
    }

    /// Headers as a new ``dict`` name → value (in wire order): ``bool``, ``int`` (byte, short,
    /// integer, long), ``bytes``, ``str``, an aware UTC ``datetime`` for timestamps (``int``
    /// milliseconds outside years 1-9999) and ``uuid.UUID``. Built once, then copied per access.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.headers_dict(py)?.copy()
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
        if let Some(d) = self.headers.get(py) {
            if let Some(v) = d.bind(py).get_item(name)? {
                return Ok(Some(v));
            }
            return Ok(default);
        }
        match self.header_refs().find(|h| h.name == name) {
            Some(h) => Ok(Some(value_object(py, h.value, false)?)),
            None => Ok(default),
        }
    }

    /// ``[(name, type_code, value), ...]`` in wire order, with timestamps as ``int``
    /// milliseconds, so ``encode_message([(n, (t, v)) for n, t, v in m.header_items()],
    /// m.payload)`` reproduces the message byte for byte.
    fn header_items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for h in self.header_refs() {
            list.append((
                PyString::new(py, h.name),
                h.value.header_type().code(),
                value_object(py, h.value, true)?,
            ))?;
        }
        Ok(list)
    }

    /// This message on the wire, as new ``bytes`` (copies the payload).
    fn encode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.encode_to_bytes(py)
    }

    fn __eq__(&self, py: Python<'_>, other: PyRef<'_, Self>) -> bool {
        self.block == other.block
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
    let items = items(headers)?;
    match payload {
        None => encode_bytes(py, &items, b""),
        Some(p) => {
            let payload = BorrowedBytes::extract(p)?;
            encode_bytes(py, &items, payload.as_slice())
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
                Found::Copied { block, payload } => PyMessage {
                    block,
                    payload: PyBytes::new(py, &payload).unbind(),
                    headers: PyOnceLock::new(),
                },
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
        let m = es::decode_message_ref(bytes)?;
        return Ok(PyMessage::from_ref(py, m));
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
            self.inner.feed_with(bytes, |m, _| {
                out.push(PyMessage::from_ref(py, m));
                Ok(())
            })
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
