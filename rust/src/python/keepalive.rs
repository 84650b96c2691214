//! Python glue for [`crate::keepalive`].

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::buffer::BorrowedBytes;
use crate::keepalive::{self, Action};

/// What to do after `Keepalive.tick`: `kind` is `"ping"` (send a WebSocket ping carrying
/// `payload`) or `"close"` (close the connection; `payload` is `None`). Compares by value.
#[pyclass(
    module = "sagebidi_perf._native",
    name = "KeepaliveAction",
    frozen,
    eq,
    hash
)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeepaliveAction {
    /// The ping payload; `None` for a close.
    ping: Option<Vec<u8>>,
}

impl From<Action> for KeepaliveAction {
    fn from(action: Action) -> Self {
        match action {
            Action::Ping(payload) => KeepaliveAction {
                ping: Some(payload),
            },
            Action::Close { .. } => KeepaliveAction { ping: None },
        }
    }
}

#[pymethods]
impl KeepaliveAction {
    /// `"ping"` or `"close"`.
    #[getter]
    fn kind(&self) -> &'static str {
        if self.ping.is_some() {
            "ping"
        } else {
            "close"
        }
    }

    /// The ping payload (a new `bytes`, at most 125 long), or `None` for a close.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.ping.as_deref().map(|p| PyBytes::new(py, p))
    }

    fn __repr__(&self) -> String {
        match &self.ping {
            Some(p) => {
                let hex: String = p.iter().map(|b| format!("{b:02x}")).collect();
                format!("KeepaliveAction(kind='ping', payload=bytes.fromhex('{hex}'))")
            }
            None => "KeepaliveAction(kind='close', payload=None)".to_owned(),
        }
    }
}

/// The WebSocket keepalive state machine SageMaker's sidecar runs: a ping every `interval`
/// seconds, and a close once `max_missed` consecutive pings went unanswered. Sans-IO: every call
/// takes `now` (seconds, any monotonic clock), so it is deterministic; the owner sends the pings
/// and closes the socket.
///
/// * `start(now)` (or the first `tick`) sets the clock; the first ping is due `interval` later,
///   each next one `interval` after the previous was sent. `next_deadline` says when to tick.
/// * Ping payloads are `payload_prefix + 8-byte big-endian counter (from 1)`; the prefix defaults
///   to 8 random bytes so stale pongs of another connection never match.
/// * `pong(payload, now)` returns the round-trip time of the ping it answers and clears that
///   ping and every earlier one (RFC 6455 lets a peer answer only the latest); an unknown,
///   duplicate or unsolicited pong returns `None` and counts in `unmatched_pongs`.
/// * A ping is missed when the next ping falls due unanswered. `tick` returns a `"close"` action,
///   exactly once, when a ping falls due with `max_missed` pings unanswered: with the defaults at
///   `start + 360 s`. After it every `tick` and `pong` returns `None`.
/// * Feed pongs before ticking at the same instant. A `now` earlier than one already seen counts
///   as the latest seen (clamped); a non-finite `now` raises `InvalidArgumentError`.
/// * Only pongs prove liveness (as in SageMaker); `activity(now)` opts in to counting any frame.
#[pyclass(module = "sagebidi_perf._native", name = "Keepalive")]
#[derive(Debug)]
pub struct PyKeepalive {
    inner: keepalive::Keepalive,
}

#[pymethods]
impl PyKeepalive {
    #[new]
    #[pyo3(signature = (interval = 60.0, max_missed = 5, *, payload_prefix = None))]
    fn new(
        interval: f64,
        max_missed: i64,
        payload_prefix: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let max_missed = u32::try_from(max_missed).map_err(|_| {
            crate::Error::invalid(format!(
                "max_missed must be between 1 and {}, got {max_missed}",
                keepalive::MAX_MISSED_LIMIT
            ))
        })?;
        let prefix = match payload_prefix {
            Some(p) => BorrowedBytes::extract(p)?.as_slice().to_vec(),
            None => keepalive::random_prefix(),
        };
        Ok(PyKeepalive {
            inner: keepalive::Keepalive::new(interval, max_missed, prefix)?,
        })
    }

    /// Start the clock at `now`; the first ping is due at `now + interval`. Raises
    /// `InvalidArgumentError` if already started (by `start` or `tick`).
    fn start(&mut self, now: f64) -> PyResult<()> {
        Ok(self.inner.start(now)?)
    }

    /// Advance to `now`: a `"ping"` action when a ping is due, a `"close"` action (once) when
    /// `max_missed` consecutive pings went unanswered, else `None`. Starts the clock if needed.
    fn tick(&mut self, now: f64) -> PyResult<Option<KeepaliveAction>> {
        Ok(self.inner.tick(now)?.map(KeepaliveAction::from))
    }

    /// A pong carrying `payload` (any bytes-like object; read, not kept) arrived at `now`.
    /// Returns the round-trip time in seconds (>= 0) of the ping it answers, or `None`.
    fn pong(&mut self, payload: &Bound<'_, PyAny>, now: f64) -> PyResult<Option<f64>> {
        let payload = BorrowedBytes::extract(payload)?;
        Ok(self.inner.pong(payload.as_slice(), now)?)
    }

    /// A frame other than a pong arrived at `now`: opt-in liveness (not SageMaker's behaviour)
    /// that forgets every outstanding ping.
    fn activity(&mut self, now: f64) -> PyResult<()> {
        Ok(self.inner.activity(now)?)
    }

    /// When to call `tick` next (seconds on the caller's clock); `None` before the start and
    /// after the close.
    #[getter]
    fn next_deadline(&self) -> Option<f64> {
        self.inner.next_deadline()
    }

    /// Seconds between pings.
    #[getter]
    fn interval(&self) -> f64 {
        self.inner.interval()
    }

    /// Consecutive unanswered pings that close the connection.
    #[getter]
    fn max_missed(&self) -> u32 {
        self.inner.max_missed()
    }

    /// The bytes every ping payload starts with.
    #[getter]
    fn payload_prefix<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.prefix())
    }

    /// Whether the clock has started.
    #[getter]
    fn started(&self) -> bool {
        self.inner.started()
    }

    /// Whether the close action has been returned.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.closed()
    }

    /// Pings sent so far.
    #[getter]
    fn pings_sent(&self) -> u64 {
        self.inner.pings_sent()
    }

    /// Pongs that answered an outstanding ping.
    #[getter]
    fn pongs_received(&self) -> u64 {
        self.inner.pongs_received()
    }

    /// Pongs that matched no outstanding ping.
    #[getter]
    fn unmatched_pongs(&self) -> u64 {
        self.inner.unmatched_pongs()
    }

    /// Pings sent and not answered yet (at most `max_missed`).
    #[getter]
    fn outstanding(&self) -> usize {
        self.inner.outstanding()
    }

    /// Consecutive pings missed so far (unanswered after a full interval).
    #[getter]
    fn missed(&self) -> usize {
        self.inner.missed()
    }

    /// Round-trip time of the latest matched pong in seconds, or `None`.
    #[getter]
    fn last_rtt(&self) -> Option<f64> {
        self.inner.last_rtt()
    }

    fn __repr__(&self) -> String {
        format!(
            "Keepalive(interval={:?}, max_missed={}, pings_sent={}, outstanding={}, closed={})",
            self.inner.interval(),
            self.inner.max_missed(),
            self.inner.pings_sent(),
            self.inner.outstanding(),
            if self.inner.closed() { "True" } else { "False" },
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyKeepalive>()?;
    m.add_class::<KeepaliveAction>()?;
    m.add(
        "SAGEMAKER_PING_INTERVAL",
        keepalive::SAGEMAKER_PING_INTERVAL,
    )?;
    m.add(
        "SAGEMAKER_MAX_MISSED_PINGS",
        keepalive::SAGEMAKER_MAX_MISSED,
    )?;
    Ok(())
}
