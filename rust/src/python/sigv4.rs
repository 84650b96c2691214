//! Python glue for SigV4 ([`crate::sigv4`]): request signing, presigning and verification, the
//! signing key, and the event-stream signature chain (`EventSigner`, `EventVerifier`).
//!
//! Per-event calls keep the interpreter (releasing it costs more than hashing a few KiB) unless
//! they handle at least [`DETACH_MIN`] bytes.

use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::buffer::BorrowedBytes;
use crate::sigv4::{self as s, AmzDate, HeaderPair, HttpRequest};
use crate::Error;

/// Calls that hash at least this many bytes release the interpreter.
const DETACH_MIN: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Argument helpers
// ---------------------------------------------------------------------------------------------

/// `str` (UTF-8) or `bytes` as bytes (copies).
fn text_or_bytes(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(text) = obj.cast::<PyString>() {
        return Ok(text.to_str()?.as_bytes().to_vec());
    }
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(bytes.as_bytes().to_vec());
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be str or bytes, not {}",
        obj.get_type().name()?
    )))
}

/// An iterable of `(name, value)` pairs of `str`/`bytes` (copies; headers are small).
fn header_list(headers: &Bound<'_, PyAny>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
    if headers.is_instance_of::<PyString>() || headers.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "headers must be an iterable of (name, value) pairs, not a string",
        ));
    }
    let mut out = Vec::new();
    for item in headers.try_iter()? {
        let item = item?;
        let pair = item
            .cast::<PyTuple>()
            .map_err(|_| PyTypeError::new_err("each header must be a (name, value) tuple"))?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err(format!(
                "each header must be a (name, value) tuple, got a {}-tuple",
                pair.len()
            )));
        }
        out.push((
            text_or_bytes(&pair.get_item(0)?, "a header name")?,
            text_or_bytes(&pair.get_item(1)?, "a header value")?,
        ));
    }
    Ok(out)
}

/// A request's path, query and headers, taken from Python the same way by every signing call
/// (copies; requests are small).
struct RequestParts {
    path: Vec<u8>,
    query: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RequestParts {
    fn extract(
        path: &Bound<'_, PyAny>,
        query: Option<&Bound<'_, PyAny>>,
        headers: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        Ok(RequestParts {
            path: text_or_bytes(path, "path")?,
            query: query.map(|q| text_or_bytes(q, "query")).transpose()?,
            headers: header_list(headers)?,
        })
    }

    fn header_pairs(&self) -> Vec<HeaderPair<'_>> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect()
    }

    fn request<'a>(&'a self, method: &'a str, headers: &'a [HeaderPair<'a>]) -> HttpRequest<'a> {
        HttpRequest {
            method,
            path: &self.path,
            query: self.query.as_deref(),
            headers,
        }
    }
}

fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Key and low-level event functions
// ---------------------------------------------------------------------------------------------

/// The SigV4 signing key (32 bytes): HMAC-SHA256 chain ``"AWS4"+secret`` → ``date`` (YYYYMMDD)
/// → ``region`` → ``service`` → ``"aws4_request"``.
#[pyfunction]
fn derive_signing_key<'py>(
    py: Python<'py>,
    secret_access_key: &str,
    date: &str,
    region: &str,
    service: &str,
) -> Result<Bound<'py, PyBytes>, Error> {
    let key = s::derive_signing_key(secret_access_key, date, region, service)?;
    Ok(PyBytes::new(py, &key))
}

/// The string to sign of one event (``AWS4-HMAC-SHA256-PAYLOAD``), hashing ``headers_bytes``
/// and ``payload_bytes`` exactly as given (zero-copy). For SageMaker these are the encoded
/// ``:date`` header block and the encoded inner message.
#[pyfunction]
#[pyo3(signature = (*, amz_date, region, service, prior_signature, headers_bytes, payload_bytes))]
fn event_string_to_sign(
    py: Python<'_>,
    amz_date: &str,
    region: &str,
    service: &str,
    prior_signature: &str,
    headers_bytes: &Bound<'_, PyAny>,
    payload_bytes: &Bound<'_, PyAny>,
) -> Result<String, PyErr> {
    let date = AmzDate::parse(amz_date)?;
    let headers = BorrowedBytes::extract(headers_bytes)?;
    let payload = BorrowedBytes::extract(payload_bytes)?;
    let (h, p) = (headers.as_slice(), payload.as_slice());
    let run = || s::event_string_to_sign(&date, region, service, prior_signature, h, p);
    Ok(if h.len() + p.len() >= DETACH_MIN {
        py.detach(run)
    } else {
        run()
    }?)
}

/// The hex signature of one event over raw ``headers_bytes`` and ``payload_bytes`` (zero-copy),
/// chained from ``prior_signature``: the low-level step :class:`EventSigner` wraps.
#[pyfunction]
#[pyo3(signature = (*, secret_access_key, amz_date, region, service, prior_signature, headers_bytes, payload_bytes))]
#[allow(clippy::too_many_arguments)]
fn sign_event_raw(
    py: Python<'_>,
    secret_access_key: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    prior_signature: &str,
    headers_bytes: &Bound<'_, PyAny>,
    payload_bytes: &Bound<'_, PyAny>,
) -> Result<String, PyErr> {
    let date = AmzDate::parse(amz_date)?;
    let headers = BorrowedBytes::extract(headers_bytes)?;
    let payload = BorrowedBytes::extract(payload_bytes)?;
    let (h, p) = (headers.as_slice(), payload.as_slice());
    let run = || {
        s::sign_event_raw(
            secret_access_key,
            region,
            service,
            &date,
            prior_signature,
            h,
            p,
        )
    };
    let sig = if h.len() + p.len() >= DETACH_MIN {
        py.detach(run)
    } else {
        run()
    }?;
    Ok(s::hex_string(&sig))
}

/// The encoded ``:date`` header block of an event envelope (15 bytes), the first hashed line of
/// the event string to sign.
#[pyfunction]
fn date_header_bytes(py: Python<'_>, date_ms: i64) -> Bound<'_, PyBytes> {
    PyBytes::new(py, &s::date_header_bytes(date_ms))
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// The result of :func:`sign_request`. ``added_headers`` are the headers to add to the request,
/// in order (``x-amz-date``, ``x-amz-security-token``, ``x-amz-content-sha256`` where the
/// request lacks them, then ``authorization``).
#[pyclass(frozen, name = "SignedRequest", module = "sagebidi_perf._native")]
struct PySignedRequest {
    #[pyo3(get)]
    authorization: String,
    /// Hex signature: the seed of the event chain.
    #[pyo3(get)]
    signature: String,
    #[pyo3(get)]
    canonical_request: String,
    #[pyo3(get)]
    string_to_sign: String,
    #[pyo3(get)]
    signed_headers: String,
    #[pyo3(get)]
    scope: String,
    #[pyo3(get)]
    amz_date: String,
    added: Vec<(String, String)>,
    secret: String,
    region: String,
    service: String,
}

#[pymethods]
impl PySignedRequest {
    /// A new list of ``(name, value)`` pairs.
    #[getter]
    fn added_headers(&self) -> Vec<(String, String)> {
        self.added.clone()
    }

    /// An :class:`EventSigner` for the request body, seeded with this signature.
    fn event_signer(&self) -> Result<PyEventSigner, Error> {
        Ok(PyEventSigner::wrap(s::EventSigner::new(
            &self.secret,
            &self.region,
            &self.service,
            &self.signature,
        )?))
    }

    fn __repr__(&self) -> String {
        format!(
            "SignedRequest(scope={:?}, signed_headers={:?}, signature={:?})",
            self.scope, self.signed_headers, self.signature
        )
    }
}

/// Sign an HTTP request with SigV4 (header auth; copies its arguments).
///
/// ``path`` is the path as sent (already percent-encoded); with ``query=None`` it may carry
/// ``?query`` (an HTTP/2 ``:path``). ``headers`` must include ``host`` (or ``:authority``);
/// unsigned headers (``user-agent``, ``accept``, ...) and pseudo-headers are skipped.
/// ``payload_hash`` is the hex SHA-256 of the body or a marker such as
/// ``STREAMING-AWS4-HMAC-SHA256-EVENTS``; ``content_sha256_header=True`` also adds and signs
/// ``x-amz-content-sha256``. ``session_token`` adds and signs ``x-amz-security-token``.
#[pyfunction]
#[pyo3(signature = (
    *, method, path, query = None, headers, payload_hash, access_key_id, secret_access_key,
    region, service, amz_date, session_token = None, normalize_path = true,
    content_sha256_header = false,
))]
#[allow(clippy::too_many_arguments)]
fn sign_request(
    method: &str,
    path: &Bound<'_, PyAny>,
    query: Option<&Bound<'_, PyAny>>,
    headers: &Bound<'_, PyAny>,
    payload_hash: &str,
    access_key_id: &str,
    secret_access_key: &str,
    region: &str,
    service: &str,
    amz_date: &str,
    session_token: Option<&str>,
    normalize_path: bool,
    content_sha256_header: bool,
) -> PyResult<PySignedRequest> {
    let parts = RequestParts::extract(path, query, headers)?;
    let header_pairs = parts.header_pairs();
    let req = parts.request(method, &header_pairs);
    let params = s::SigningParams {
        credentials: s::Credentials {
            access_key_id,
            secret_access_key,
            session_token,
        },
        region,
        service,
        amz_date,
        payload_hash,
        normalize_path,
        content_sha256_header,
    };
    let signed = s::sign_request(&req, &params)?;
    Ok(PySignedRequest {
        signature: signed.signature_hex(),
        authorization: signed.authorization,
        canonical_request: lossy(&signed.canonical_request),
        string_to_sign: signed.string_to_sign,
        signed_headers: signed.signed_headers,
        scope: signed.scope.to_string(),
        amz_date: amz_date.to_owned(),
        added: signed.added_headers,
        secret: secret_access_key.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
    })
}

/// The result of :func:`presign_request`: send ``query`` (which ends with ``X-Amz-Signature``)
/// as the request's query string.
#[pyclass(
    frozen,
    get_all,
    name = "PresignedRequest",
    module = "sagebidi_perf._native"
)]
struct PyPresignedRequest {
    query: String,
    signature: String,
    canonical_request: String,
    string_to_sign: String,
    signed_headers: String,
    scope: String,
}

#[pymethods]
impl PyPresignedRequest {
    fn __repr__(&self) -> String {
        format!(
            "PresignedRequest(scope={:?}, signed_headers={:?}, signature={:?})",
            self.scope, self.signed_headers, self.signature
        )
    }
}

/// Sign an HTTP request in its query string (a presigned URL valid ``expires_seconds``;
/// copies its arguments). Arguments as for :func:`sign_request`; ``payload_hash`` is usually
/// ``UNSIGNED-PAYLOAD``.
#[pyfunction]
#[pyo3(signature = (
    *, method, path, query = None, headers, payload_hash, access_key_id, secret_access_key,
    region, service, amz_date, expires_seconds, session_token = None, normalize_path = true,
))]
#[allow(clippy::too_many_arguments)]
fn presign_request(
    method: &str,
    path: &Bound<'_, PyAny>,
    query: Option<&Bound<'_, PyAny>>,
    headers: &Bound<'_, PyAny>,
    payload_hash: &str,
    access_key_id: &str,
    secret_access_key: &str,
    region: &str,
    service: &str,
    amz_date: &str,
    expires_seconds: u64,
    session_token: Option<&str>,
    normalize_path: bool,
) -> PyResult<PyPresignedRequest> {
    let parts = RequestParts::extract(path, query, headers)?;
    let header_pairs = parts.header_pairs();
    let req = parts.request(method, &header_pairs);
    let params = s::SigningParams {
        credentials: s::Credentials {
            access_key_id,
            secret_access_key,
            session_token,
        },
        region,
        service,
        amz_date,
        payload_hash,
        normalize_path,
        content_sha256_header: false,
    };
    let signed = s::presign_request(&req, &params, expires_seconds)?;
    Ok(PyPresignedRequest {
        signature: s::hex_string(&signed.signature),
        query: signed.query,
        canonical_request: lossy(&signed.canonical_request),
        string_to_sign: signed.string_to_sign,
        signed_headers: signed.signed_headers,
        scope: signed.scope.to_string(),
    })
}

/// A request whose SigV4 signature verified (see :func:`verify_request`).
#[pyclass(frozen, name = "VerifiedRequest", module = "sagebidi_perf._native")]
struct PyVerifiedRequest {
    #[pyo3(get)]
    access_key_id: String,
    /// Hex request signature: the seed of the event chain.
    #[pyo3(get)]
    signature: String,
    #[pyo3(get)]
    amz_date: String,
    #[pyo3(get)]
    scope: String,
    #[pyo3(get)]
    region: String,
    #[pyo3(get)]
    service: String,
    #[pyo3(get)]
    payload_hash: String,
    #[pyo3(get)]
    session_token: Option<String>,
    #[pyo3(get)]
    canonical_request: String,
    signed: Vec<String>,
    secret: String,
}

#[pymethods]
impl PyVerifiedRequest {
    /// The signed header names, sorted (a new list).
    #[getter]
    fn signed_headers(&self) -> Vec<String> {
        self.signed.clone()
    }

    /// An :class:`EventVerifier` for the request body, seeded with this signature and keyed with
    /// the secret that verified it.
    fn event_verifier(&self) -> Result<PyEventVerifier, Error> {
        Ok(PyEventVerifier {
            inner: s::EventVerifier::new(
                &self.secret,
                &self.region,
                &self.service,
                &self.signature,
            )?,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "VerifiedRequest(access_key_id={:?}, scope={:?}, amz_date={:?}, payload_hash={:?})",
            self.access_key_id, self.scope, self.amz_date, self.payload_hash
        )
    }
}

/// The secret of `access_key_id` from a mapping or a callable; `None` if unknown.
fn lookup_secret(credentials: &Bound<'_, PyAny>, access_key_id: &str) -> PyResult<Option<String>> {
    let found = if credentials.is_callable() {
        credentials.call1((access_key_id,))?
    } else {
        match credentials.get_item(access_key_id) {
            Ok(v) => v,
            Err(e) if e.is_instance_of::<PyKeyError>(credentials.py()) => return Ok(None),
            Err(e) => return Err(e),
        }
    };
    if found.is_none() {
        return Ok(None);
    }
    Ok(Some(found.extract::<String>().map_err(|_| {
        PyTypeError::new_err("the credentials lookup must give a str secret access key or None")
    })?))
}

/// Verify the SigV4 ``Authorization`` header of a received request (copies its arguments).
///
/// ``headers`` as received (``str`` or ``bytes``), pseudo-headers included: ``:authority`` is
/// used as ``host``. ``credentials`` maps access key id → secret (a ``Mapping``, or a callable
/// returning the secret or ``None``). ``payload_hash=None`` takes the signed
/// ``x-amz-content-sha256`` header. ``now`` (seconds since the epoch, default: the clock) and
/// ``max_skew_seconds`` (``None``: no check) bound the request's ``x-amz-date``.
///
/// Raises :class:`SignatureMismatchError` (missing or garbled ``Authorization``, unknown access
/// key, scope/region/service mismatch, date skew, missing signed header, wrong signature); the
/// message never contains the expected signature.
#[pyfunction]
#[pyo3(
    signature = (
        *, method, path, query = None, headers, credentials, region, service, payload_hash = None,
        now = None, max_skew_seconds = Some(s::DEFAULT_MAX_SKEW_SECONDS), normalize_path = true,
    ),
    text_signature = "(*, method, path, query=None, headers, credentials, region, service, payload_hash=None, now=None, max_skew_seconds=300.0, normalize_path=True)"
)]
#[allow(clippy::too_many_arguments)]
fn verify_request(
    method: &str,
    path: &Bound<'_, PyAny>,
    query: Option<&Bound<'_, PyAny>>,
    headers: &Bound<'_, PyAny>,
    credentials: &Bound<'_, PyAny>,
    region: &str,
    service: &str,
    payload_hash: Option<&str>,
    now: Option<f64>,
    max_skew_seconds: Option<f64>,
    normalize_path: bool,
) -> PyResult<PyVerifiedRequest> {
    let parts = RequestParts::extract(path, query, headers)?;
    let header_pairs = parts.header_pairs();
    let req = parts.request(method, &header_pairs);
    let auth = s::Authorization::from_headers(&header_pairs)?;
    auth.check_scope(region, service)?;
    let secret = lookup_secret(credentials, &auth.access_key_id)?
        .ok_or_else(|| s::unknown_key(&auth.access_key_id))?;
    let params = s::VerifyParams {
        region,
        service,
        payload_hash,
        now_unix: now,
        max_skew_seconds,
        normalize_path,
    };
    let verified = s::verify_request(&req, &auth, &secret, &params)?;
    Ok(PyVerifiedRequest {
        access_key_id: verified.access_key_id,
        signature: s::hex_string(&verified.signature),
        amz_date: verified.amz_date.as_str().to_owned(),
        scope: verified.scope.to_string(),
        region: verified.scope.region,
        service: verified.scope.service,
        payload_hash: verified.payload_hash,
        session_token: verified.session_token,
        canonical_request: lossy(&verified.canonical_request),
        signed: verified.signed_headers,
        secret,
    })
}

// ---------------------------------------------------------------------------------------------
// Event chain
// ---------------------------------------------------------------------------------------------

/// Signs the events of one request body. Each :meth:`sign` wraps an encoded inner message into
/// an outer message with ``:date`` and ``:chunk-signature`` headers, chained from the previous
/// signature (the first from ``seed_signature``, the request's hex signature).
#[pyclass(name = "EventSigner", module = "sagebidi_perf._native")]
struct PyEventSigner {
    inner: s::EventSigner,
}

impl PyEventSigner {
    fn wrap(inner: s::EventSigner) -> Self {
        PyEventSigner { inner }
    }

    fn sign_bytes<'py>(
        &mut self,
        py: Python<'py>,
        inner: &[u8],
        date_ms: i64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let signer = &mut self.inner;
        let signature = if inner.len() >= DETACH_MIN {
            py.detach(|| signer.next_signature(inner, date_ms))
        } else {
            signer.next_signature(inner, date_ms)
        }?;
        PyBytes::new_with(py, s::ENVELOPE_OVERHEAD + inner.len(), |out| {
            s::write_envelope(date_ms, &signature, inner, out);
            Ok(())
        })
    }
}

#[pymethods]
impl PyEventSigner {
    #[new]
    #[pyo3(signature = (*, secret_access_key, region, service, seed_signature))]
    fn py_new(
        secret_access_key: &str,
        region: &str,
        service: &str,
        seed_signature: &str,
    ) -> Result<Self, Error> {
        Ok(Self::wrap(s::EventSigner::new(
            secret_access_key,
            region,
            service,
            seed_signature,
        )?))
    }

    /// The signed outer message (``bytes``, 83 bytes longer) carrying ``inner``, an encoded
    /// event-stream message read zero-copy, at ``date_ms`` (ms since the epoch; default now).
    #[pyo3(signature = (inner, date_ms = None))]
    fn sign<'py>(
        &mut self,
        py: Python<'py>,
        inner: &Bound<'py, PyAny>,
        date_ms: Option<i64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let buf = BorrowedBytes::extract(inner)?;
        let bytes = buf.as_slice();
        if bytes.is_empty() {
            return Err(Error::invalid(
                "the inner message is empty; end the stream with sign_end()",
            )
            .into());
        }
        self.sign_bytes(py, bytes, date_ms.unwrap_or_else(now_ms))
    }

    /// The final signed empty frame (83 bytes) at ``date_ms`` (default now); nothing may follow.
    #[pyo3(signature = (date_ms = None))]
    fn sign_end<'py>(
        &mut self,
        py: Python<'py>,
        date_ms: Option<i64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.sign_bytes(py, &[], date_ms.unwrap_or_else(now_ms))
    }

    /// Hex signature of the last event signed (the seed before the first).
    #[getter]
    fn prior_signature(&self) -> String {
        s::hex_string(&self.inner.prior_signature())
    }

    /// Events signed so far, the final frame included.
    #[getter]
    fn count(&self) -> u64 {
        self.inner.count()
    }

    /// Whether :meth:`sign_end` was called.
    #[getter]
    fn ended(&self) -> bool {
        self.inner.ended()
    }

    fn __repr__(&self) -> String {
        format!(
            "EventSigner(count={}, ended={})",
            self.inner.count(),
            if self.inner.ended() { "True" } else { "False" }
        )
    }
}

/// Verifies the signed events of one request body, in order, from ``seed_signature`` (the
/// request's hex signature). Give it whole outer messages (:meth:`verify`) or raw stream bytes
/// split anywhere (:meth:`feed`), not both. Any failure is final: every later call raises the
/// same error, and the stream must be dropped.
#[pyclass(name = "EventVerifier", module = "sagebidi_perf._native")]
struct PyEventVerifier {
    inner: s::EventVerifier,
}

#[pymethods]
impl PyEventVerifier {
    #[new]
    #[pyo3(signature = (*, secret_access_key, region, service, seed_signature))]
    fn py_new(
        secret_access_key: &str,
        region: &str,
        service: &str,
        seed_signature: &str,
    ) -> Result<Self, Error> {
        Ok(PyEventVerifier {
            inner: s::EventVerifier::new(secret_access_key, region, service, seed_signature)?,
        })
    }

    /// Verify one whole outer message (read zero-copy) and return its payload, the inner message
    /// (copied into a new ``bytes``; empty for the final frame). Raises
    /// :class:`SignatureMismatchError` for a broken chain, :class:`MalformedMessageError` (or
    /// another :class:`EventStreamError`) for a bad envelope.
    fn verify<'py>(
        &mut self,
        py: Python<'py>,
        outer: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let buf = BorrowedBytes::extract(outer)?;
        let bytes = buf.as_slice();
        let verifier = &mut self.inner;
        let range = if bytes.len() >= DETACH_MIN {
            py.detach(|| verifier.verify(bytes))
        } else {
            verifier.verify(bytes)
        }?;
        Ok(PyBytes::new(py, &bytes[range]))
    }

    /// Feed raw stream bytes (read zero-copy; a partial message is kept) and return the inner
    /// messages of the events they complete, verified, in order (each copied into a new
    /// ``bytes``). The final empty frame yields nothing but sets :attr:`ended`. If an error
    /// follows complete events in ``data``, those are returned and the error is raised by the
    /// next call (and by :meth:`finish`).
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let buf = BorrowedBytes::extract(data)?;
        let bytes = buf.as_slice();
        let verifier = &mut self.inner;
        let (inners, result) = if bytes.len() >= DETACH_MIN {
            py.detach(|| {
                let mut inners: Vec<Vec<u8>> = Vec::new();
                let r = verifier.feed_with(bytes, |m| {
                    inners.push(m.to_vec());
                    Ok(())
                });
                (inners, r)
            })
        } else {
            let mut inners: Vec<Vec<u8>> = Vec::new();
            let r = verifier.feed_with(bytes, |m| {
                inners.push(m.to_vec());
                Ok(())
            });
            (inners, r)
        };
        match result {
            Err(e) if inners.is_empty() => Err(e.into()),
            _ => PyList::new(py, inners.iter().map(|m| PyBytes::new(py, m))),
        }
    }

    /// Mark the stream as over and return whether it ended with the final signed empty frame
    /// (``False`` for clients before 0.12, which send none: not an error). Raises only the error
    /// that already stopped the stream, or :class:`TruncatedMessageError` if :meth:`feed` holds
    /// part of a message.
    fn finish(&mut self) -> Result<bool, Error> {
        self.inner.finish()
    }

    /// Whether the final signed empty frame was verified.
    #[getter]
    fn ended(&self) -> bool {
        self.inner.ended()
    }

    /// Events verified so far, the final frame included.
    #[getter]
    fn count(&self) -> u64 {
        self.inner.count()
    }

    /// Whether verification failed (the verifier then refuses everything).
    #[getter]
    fn failed(&self) -> bool {
        self.inner.failed()
    }

    /// Bytes of a partial outer message held by :meth:`feed`.
    #[getter]
    fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    /// Hex signature of the last verified event (the seed before the first).
    #[getter]
    fn prior_signature(&self) -> String {
        s::hex_string(&self.inner.prior_signature())
    }

    fn __repr__(&self) -> String {
        let b = |v: bool| if v { "True" } else { "False" };
        format!(
            "EventVerifier(count={}, ended={}, failed={})",
            self.inner.count(),
            b(self.inner.ended()),
            b(self.inner.failed())
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add(
        "SIGV4_STREAMING_EVENTS_PAYLOAD",
        s::STREAMING_EVENTS_PAYLOAD,
    )?;
    m.add("SIGV4_UNSIGNED_PAYLOAD", s::UNSIGNED_PAYLOAD)?;
    m.add("SIGV4_EMPTY_SHA256", s::EMPTY_SHA256_HEX)?;
    m.add(
        "SIGV4_DEFAULT_MAX_SKEW_SECONDS",
        s::DEFAULT_MAX_SKEW_SECONDS,
    )?;
    m.add("SIGV4_ENVELOPE_OVERHEAD", s::ENVELOPE_OVERHEAD)?;
    m.add_function(wrap_pyfunction!(derive_signing_key, m)?)?;
    m.add_function(wrap_pyfunction!(event_string_to_sign, m)?)?;
    m.add_function(wrap_pyfunction!(sign_event_raw, m)?)?;
    m.add_function(wrap_pyfunction!(date_header_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(sign_request, m)?)?;
    m.add_function(wrap_pyfunction!(presign_request, m)?)?;
    m.add_function(wrap_pyfunction!(verify_request, m)?)?;
    m.add_class::<PySignedRequest>()?;
    m.add_class::<PyPresignedRequest>()?;
    m.add_class::<PyVerifiedRequest>()?;
    m.add_class::<PyEventSigner>()?;
    m.add_class::<PyEventVerifier>()?;
    Ok(())
}
