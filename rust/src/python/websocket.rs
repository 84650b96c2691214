//! Python glue for [`crate::websocket`]: the sans-IO `WebSocketConnection` and
//! `websocket_accept_key`.
//!
//! Events are plain tuples `(kind, payload, fin)`: the cheapest Python object to build here and to
//! unpack in the caller's loop (`for kind, payload, fin in conn.receive(data)`), with `kind` one
//! of the small-int constants `WS_TEXT`, `WS_BINARY`, `WS_CLOSE`, `WS_PING`, `WS_PONG` (the
//! RFC 6455 opcodes).

use std::mem::MaybeUninit;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use super::buffer::BorrowedBytes;
use crate::websocket::{
    self, Config, Connection, DataKind, Delivery, Handler, Payload, Role, State,
};
use crate::Error;

const WS_TEXT: u8 = 1;
const WS_BINARY: u8 = 2;
const WS_CLOSE: u8 = 8;
const WS_PING: u8 = 9;
const WS_PONG: u8 = 10;

/// Byte work on payloads at least this large (unmasking, copying, UTF-8 validation, framing)
/// runs with the interpreter released. Releasing and re-taking it costs about 0.2 µs alone but
/// can wait up to the switch interval (5 ms) when other threads hold it, so only copies that
/// take tens of microseconds (at ~20 GB/s) are worth it.
const DETACH_THRESHOLD: usize = 256 * 1024;

/// Builds the Python event list as the core reports events.
struct PyEvents<'py> {
    py: Python<'py>,
    list: Bound<'py, PyList>,
    /// Messages mode: text arrives whole, as `str`. Frames mode: text frames are `bytes`.
    text_as_str: bool,
    err: Option<PyErr>,
}

impl<'py> PyEvents<'py> {
    fn push(&mut self, kind: u8, payload: PyResult<Bound<'py, PyAny>>, fin: bool) {
        if self.err.is_some() {
            return;
        }
        let pushed = payload.and_then(|payload| self.list.append((kind, payload, fin)));
        if let Err(e) = pushed {
            self.err = Some(e);
        }
    }
}

/// A new `bytes` of `len` bytes filled by `fill`, which must write every byte. Unlike
/// `PyBytes::new_with` it does not zero the buffer first (a measurable pass at 512 KiB).
fn bytes_filled<'py>(
    py: Python<'py>,
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]),
) -> PyResult<Bound<'py, PyBytes>> {
    let size = ffi::Py_ssize_t::try_from(len)
        .map_err(|_| Error::invalid(format!("payload of {len} bytes is too large")))?;
    // SAFETY: PyBytes_FromStringAndSize(NULL, n) returns a new, unshared bytes object (or NULL
    // with an exception set) whose n content bytes are uninitialized; we own the only
    // reference. The slice covers exactly those n bytes and is seen as MaybeUninit, and `fill`
    // initializes them all before the object is returned (if it panics the object is freed
    // without its bytes being read).
    #[allow(unsafe_code)]
    unsafe {
        let ptr = ffi::PyBytes_FromStringAndSize(std::ptr::null(), size);
        let obj = Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked::<PyBytes>();
        let data = ffi::PyBytes_AsString(ptr).cast::<MaybeUninit<u8>>();
        if len > 0 {
            fill(std::slice::from_raw_parts_mut(data, len));
        }
        Ok(obj)
    }
}

/// A new `bytes` holding the (unmasked) payload: one copy.
fn payload_bytes<'py>(py: Python<'py>, payload: Payload<'_>) -> PyResult<Bound<'py, PyAny>> {
    let len = payload.len();
    if let Payload::Plain(data) = payload {
        if len < DETACH_THRESHOLD {
            return Ok(PyBytes::new(py, data).into_any());
        }
    }
    let obj = bytes_filled(py, len, |buf| {
        if len >= DETACH_THRESHOLD {
            py.detach(|| payload.copy_to_uninit(buf));
        } else {
            payload.copy_to_uninit(buf);
        }
    })?;
    Ok(obj.into_any())
}

impl<'py> Handler for PyEvents<'py> {
    fn data(&mut self, kind: DataKind, payload: Payload<'_>, fin: bool) {
        let py = self.py;
        let (code, obj) = match kind {
            DataKind::Text if self.text_as_str => {
                let obj = match payload {
                    Payload::Plain(text) => PyString::from_bytes(py, text),
                    Payload::Masked { .. } => PyString::from_bytes(py, &payload.to_vec()),
                };
                (WS_TEXT, obj.map(Bound::into_any))
            }
            DataKind::Text => (WS_TEXT, payload_bytes(py, payload)),
            DataKind::Binary => (WS_BINARY, payload_bytes(py, payload)),
        };
        self.push(code, obj, fin);
    }

    fn ping(&mut self, payload: &[u8]) {
        let obj = PyBytes::new(self.py, payload).into_any();
        self.push(WS_PING, Ok(obj), true);
    }

    fn pong(&mut self, payload: &[u8]) {
        let obj = PyBytes::new(self.py, payload).into_any();
        self.push(WS_PONG, Ok(obj), true);
    }

    fn close(&mut self, code: u16, reason: &str, _local: bool) {
        let obj = (code, reason).into_pyobject(self.py).map(Bound::into_any);
        self.push(WS_CLOSE, obj, true);
    }

    fn bulk<R: Send>(&mut self, len: usize, work: impl FnOnce() -> R + Send) -> R {
        if len >= DETACH_THRESHOLD {
            self.py.detach(work)
        } else {
            work()
        }
    }
}

fn limit(value: i64, name: &str) -> Result<u64, Error> {
    u64::try_from(value)
        .map_err(|_| Error::invalid(format!("{name} must not be negative, got {value}")))
}

/// The payload of a send: `str` is text (its UTF-8, zero-copy), any other buffer is binary
/// (borrowed zero-copy).
enum SendData<'py> {
    Text(Bound<'py, PyString>),
    Bytes(BorrowedBytes<'py>),
}

impl<'py> SendData<'py> {
    fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        match obj.cast::<PyString>() {
            Ok(s) => Ok(SendData::Text(s.clone())),
            Err(_) => Ok(SendData::Bytes(BorrowedBytes::extract(obj)?)),
        }
    }

    fn is_text(&self) -> bool {
        matches!(self, SendData::Text(_))
    }

    fn bytes(&self) -> PyResult<&[u8]> {
        match self {
            SendData::Text(s) => Ok(s.to_str()?.as_bytes()),
            SendData::Bytes(b) => Ok(b.as_slice()),
        }
    }
}

/// A sans-IO WebSocket connection (RFC 6455, no extensions) after the HTTP upgrade, for a
/// server (`client=False`: expects masked frames, sends unmasked) or a client (masks what it
/// sends with a random key per frame).
///
/// Feed received bytes, in chunks of any size, to `receive()`, which returns the events they
/// complete; write `outgoing()` to the socket after each batch. Pings are answered
/// automatically (the pong is in `outgoing()` at once). A peer's protocol violation never
/// raises: it yields a `WS_CLOSE` event with our code (1002 framing, 1007 invalid UTF-8, 1009
/// too big), queues a Close frame with it, sets `failed`, and ends the connection.
///
/// `defer_failure_close=True` lets replies to the messages that came before a violation go out
/// before the failure's Close (a peer often sends both in one flight, and they arrive in one
/// `receive()` batch): the `WS_CLOSE` event and `failed` are reported the same way and input is
/// dead from the bad frame on (later frames, pings included, are ignored), but the connection
/// enters the `"failing"` state instead of queueing the Close: `send()`, `send_fragment()`,
/// `ping()` and `pong()` still work, and `close()` queues the Close with the failure's code and
/// reason (its arguments are ignored) and ends the connection. The owner must call `close()`.
///
/// `deliver="messages"` reassembles fragments: one `(WS_TEXT, str, True)` or
/// `(WS_BINARY, bytes, True)` per message. `deliver="frames"` reports each data frame as it
/// completes, `(WS_TEXT|WS_BINARY, bytes, fin)` with the message's kind (text frames are UTF-8
/// `bytes`, validated, that may end inside a character continued by the next frame).
/// Other events: `(WS_PING, bytes, True)`, `(WS_PONG, bytes, True)` and
/// `(WS_CLOSE, (code, reason), True)` (code 1005 for an empty close).
///
/// Limits, checked from frame headers before any payload is buffered (exceeding one is a
/// 1009): `max_message_size` (sum of a message's fragments), `max_frame_size` (one data frame;
/// defaults to `max_message_size`), `max_fragments` (frames per message; the default 2**20
/// lets Autobahn's 16 MiB-in-64-byte-fragments cases pass).
#[pyclass(module = "sagebidi_perf._native", name = "WebSocketConnection")]
#[derive(Debug)]
pub struct PyWebSocketConnection {
    inner: Connection,
}

impl PyWebSocketConnection {
    fn send_kind(
        &mut self,
        py: Python<'_>,
        data: &[u8],
        kind: DataKind,
        fin: Option<bool>,
    ) -> Result<(), Error> {
        let inner = &mut self.inner;
        let mut work = move || match fin {
            None => inner.send(data, kind),
            Some(fin) => inner.send_fragment(data, kind, fin),
        };
        if data.len() >= DETACH_THRESHOLD {
            py.detach(work)
        } else {
            work()
        }
    }
}

#[pymethods]
impl PyWebSocketConnection {
    #[new]
    #[pyo3(signature = (
        *,
        client = false,
        deliver = "messages",
        max_message_size = 16777216,
        max_frame_size = None,
        max_fragments = 1048576,
        defer_failure_close = false
    ))]
    fn new(
        client: bool,
        deliver: &str,
        max_message_size: i64,
        max_frame_size: Option<i64>,
        max_fragments: i64,
        defer_failure_close: bool,
    ) -> Result<Self, Error> {
        let delivery = match deliver {
            "messages" => Delivery::Messages,
            "frames" => Delivery::Frames,
            other => {
                return Err(Error::invalid(format!(
                    "deliver must be \"messages\" or \"frames\", got {other:?}"
                )))
            }
        };
        let max_message_size = limit(max_message_size, "max_message_size")?;
        let cfg = Config {
            role: if client { Role::Client } else { Role::Server },
            delivery,
            max_message_size,
            max_frame_size: match max_frame_size {
                Some(v) => limit(v, "max_frame_size")?,
                None => max_message_size,
            },
            max_fragments: limit(max_fragments, "max_fragments")?,
            defer_failure_close,
        };
        Ok(PyWebSocketConnection {
            inner: Connection::new(cfg)?,
        })
    }

    /// Feeds received bytes (any split; borrowed zero-copy) and returns the events they
    /// complete, in order. Payloads are new objects: a frame that arrived whole in `data` is
    /// unmasked straight into its `bytes` (one copy); others pass through a reassembly buffer
    /// (two copies). Bytes after the connection closed are ignored.
    fn receive<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let data = BorrowedBytes::extract(data)?;
        let mut events = PyEvents {
            py,
            list: PyList::empty(py),
            text_as_str: self.inner.config().delivery == Delivery::Messages,
            err: None,
        };
        self.inner.receive_with(data.as_slice(), &mut events);
        match events.err {
            Some(err) => Err(err),
            None => Ok(events.list),
        }
    }

    /// Queues a whole message as one frame: `str` → text, any other buffer → binary (read
    /// zero-copy, copied once into the outgoing buffer).
    fn send(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = SendData::extract(data)?;
        let kind = if data.is_text() {
            DataKind::Text
        } else {
            DataKind::Binary
        };
        Ok(self.send_kind(py, data.bytes()?, kind, None)?)
    }

    /// Queues one fragment of a message: the first fragment opens a text or binary message,
    /// later ones continue it (same kind), `fin=True` ends it. `text` defaults to whether `data`
    /// is a `str`; `text=True` with a buffer sends its bytes in a text message unvalidated (a
    /// relay may split a character across fragments). Copies `data` once.
    #[pyo3(signature = (data, fin, *, text = None))]
    fn send_fragment(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        fin: bool,
        text: Option<bool>,
    ) -> PyResult<()> {
        let data = SendData::extract(data)?;
        let kind = if text.unwrap_or(data.is_text()) {
            DataKind::Text
        } else {
            DataKind::Binary
        };
        Ok(self.send_kind(py, data.bytes()?, kind, Some(fin))?)
    }

    /// Queues a ping (payload at most 125 bytes).
    #[pyo3(signature = (payload = None))]
    fn ping(&mut self, payload: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let payload = payload.map(BorrowedBytes::extract).transpose()?;
        Ok(self
            .inner
            .ping(payload.as_ref().map_or(&[][..], |p| p.as_slice()))?)
    }

    /// Queues an unsolicited pong (pings are answered automatically).
    #[pyo3(signature = (payload = None))]
    fn pong(&mut self, payload: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let payload = payload.map(BorrowedBytes::extract).transpose()?;
        Ok(self
            .inner
            .pong(payload.as_ref().map_or(&[][..], |p| p.as_slice()))?)
    }

    /// Starts the close handshake with `code` (1000-1003, 1007-1014, 3000-4999) and a reason
    /// of at most 123 UTF-8 bytes. Calling it after a close was sent (ours, or the echo of the
    /// peer's) is an error: check `closed`/`state` first. In the `"failing"` state it queues the
    /// failure's Close (`close_code`, `close_reason`; the arguments are ignored) and the state
    /// becomes `"closed"`.
    #[pyo3(signature = (code = 1000, reason = ""))]
    fn close(&mut self, code: i64, reason: &str) -> Result<(), Error> {
        let code = u16::try_from(code)
            .map_err(|_| Error::invalid(format!("close code {code} is out of range")))?;
        self.inner.close(code, reason)
    }

    /// The bytes to write to the socket (copies them out and empties the buffer); `b""` if
    /// none.
    fn outgoing<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let out = self.inner.outgoing();
        let bytes = if out.len() >= DETACH_THRESHOLD {
            bytes_filled(py, out.len(), |buf| {
                py.detach(|| Payload::Plain(out).copy_to_uninit(buf))
            })?
        } else {
            PyBytes::new(py, out)
        };
        self.inner.clear_outgoing();
        Ok(bytes)
    }

    /// Number of bytes waiting in `outgoing()`.
    #[getter]
    fn outgoing_size(&self) -> usize {
        self.inner.outgoing().len()
    }

    /// "open", "closing" (we sent a close and wait for the peer's; data still arrives),
    /// "failing" (only with `defer_failure_close`: the peer violated the protocol, input is
    /// ignored, `close()` sends the failure's Close) or "closed" (both closes exchanged, or the
    /// connection failed and its Close is queued).
    #[getter]
    fn state(&self) -> &'static str {
        match self.inner.state() {
            State::Open => "open",
            State::Closing => "closing",
            State::Failing => "failing",
            State::Closed => "closed",
        }
    }

    /// True in the "closed" state (not yet while "failing").
    #[getter]
    fn closed(&self) -> bool {
        self.inner.state() == State::Closed
    }

    /// True if we failed the connection on a peer's protocol violation (`close_code` is ours;
    /// the state is "failing" until `close()` if `defer_failure_close`, else "closed").
    #[getter]
    fn failed(&self) -> bool {
        self.inner.failed()
    }

    /// The peer's close code (1005 if its close had none), or ours if we failed the connection;
    /// None before.
    #[getter]
    fn close_code(&self) -> Option<u16> {
        self.inner.close_code()
    }

    #[getter]
    fn close_reason(&self) -> Option<&str> {
        self.inner.close_reason()
    }

    /// Bytes fed to `receive()`.
    #[getter]
    fn bytes_in(&self) -> u64 {
        self.inner.bytes_in()
    }

    /// Bytes returned by `outgoing()`.
    #[getter]
    fn bytes_out(&self) -> u64 {
        self.inner.bytes_out()
    }

    #[getter]
    fn client(&self) -> bool {
        self.inner.config().role == Role::Client
    }

    #[getter]
    fn deliver(&self) -> &'static str {
        match self.inner.config().delivery {
            Delivery::Messages => "messages",
            Delivery::Frames => "frames",
        }
    }

    #[getter]
    fn max_message_size(&self) -> u64 {
        self.inner.config().max_message_size
    }

    #[getter]
    fn max_frame_size(&self) -> u64 {
        self.inner.config().max_frame_size
    }

    #[getter]
    fn max_fragments(&self) -> u64 {
        self.inner.config().max_fragments
    }

    #[getter]
    fn defer_failure_close(&self) -> bool {
        self.inner.config().defer_failure_close
    }

    fn __repr__(&self) -> String {
        format!(
            "<WebSocketConnection {} {} deliver={}>",
            if self.client() { "client" } else { "server" },
            self.state(),
            self.deliver()
        )
    }
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`: base64(SHA-1(key +
/// RFC 6455 GUID)). Raises InvalidArgumentError unless the key is base64 of 16 bytes.
#[pyfunction]
fn websocket_accept_key(key: &Bound<'_, PyAny>) -> PyResult<String> {
    let key: String = match key.cast::<PyBytes>() {
        Ok(b) => std::str::from_utf8(b.as_bytes())
            .map_err(|_| Error::invalid("Sec-WebSocket-Key is not ASCII"))?
            .to_owned(),
        Err(_) => key.extract()?,
    };
    Ok(websocket::accept_key(&key)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWebSocketConnection>()?;
    m.add_function(wrap_pyfunction!(websocket_accept_key, m)?)?;
    m.add("WS_TEXT", WS_TEXT)?;
    m.add("WS_BINARY", WS_BINARY)?;
    m.add("WS_CLOSE", WS_CLOSE)?;
    m.add("WS_PING", WS_PING)?;
    m.add("WS_PONG", WS_PONG)?;
    Ok(())
}
