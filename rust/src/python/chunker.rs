//! Python glue for [`crate::chunker`]: frames are `memoryview` slices of the caller's buffer.

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyList, PyMemoryView};

use super::buffer::BorrowedBytes;
use crate::chunker::{self, AudioFormat, FramePlan, FrameRanges};
use crate::Error;

/// A non-negative integer argument: a negative value is an `InvalidArgumentError` naming the
/// argument. (Integers beyond 64 bits fail earlier, in pyo3's conversion, with `OverflowError`.)
fn count(value: i64, name: &str) -> Result<u64, Error> {
    u64::try_from(value)
        .map_err(|_| Error::invalid(format!("{name} must not be negative, got {value}")))
}

fn size(value: i64, name: &str) -> Result<usize, Error> {
    let v = count(value, name)?;
    usize::try_from(v).map_err(|_| Error::invalid(format!("{name} is out of range: {v}")))
}

/// A one-dimensional unsigned-byte `memoryview` over `obj` (zero-copy): `memoryview(obj)`, cast
/// to format "B" when the buffer has other items (a numpy int16 array, say).
fn byte_view<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyMemoryView>> {
    let py = obj.py();
    let view = PyMemoryView::from(obj)?;
    if !view
        .getattr(intern!(py, "c_contiguous"))?
        .extract::<bool>()?
    {
        return Err(Error::invalid(
            "buffer must be C-contiguous to be chunked without copying (a strided numpy view or \
             a Fortran-order array is not); np.ascontiguousarray() makes a contiguous copy",
        )
        .into());
    }
    let ndim: usize = view.getattr(intern!(py, "ndim"))?.extract()?;
    let is_bytes = ndim == 1 && view.getattr(intern!(py, "format"))?.eq(intern!(py, "B"))?;
    if is_bytes {
        return Ok(view);
    }
    Ok(view
        .call_method1(intern!(py, "cast"), (intern!(py, "B"),))?
        .cast_into::<PyMemoryView>()?)
}

/// `view[start:end]`, the bounds given as Python ints. Zero-copy: a memoryview slice shares the
/// exporter of `view`.
///
/// Not `PySlice::new`: in pyo3 0.30.1 it hands fresh ints to `PySlice_New`, which takes its own
/// references, so every call leaks three ints (measured: 600 MiB over 10 million frames).
fn slice_view<'py>(
    view: &Bound<'py, PyMemoryView>,
    start: &Bound<'py, PyInt>,
    end: &Bound<'py, PyInt>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = view.py();
    // SAFETY: `PySlice_New` borrows its arguments (taking references of its own; a null step
    // means None) and returns a new reference, or null with an exception set, which
    // `from_owned_ptr_or_err` turns into the error.
    #[allow(unsafe_code)]
    let slice = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PySlice_New(start.as_ptr(), end.as_ptr(), std::ptr::null_mut()),
        )?
    };
    view.get_item(slice)
}

/// Makes the frames of one buffer in order. The int object of a frame's end is kept as the next
/// frame's start, so each frame costs one int, one slice and the memoryview.
struct FrameMaker<'py> {
    view: Bound<'py, PyMemoryView>,
    plan: FramePlan,
    ranges: FrameRanges,
    start: Bound<'py, PyInt>,
}

impl<'py> FrameMaker<'py> {
    fn new(view: Bound<'py, PyMemoryView>, plan: FramePlan) -> Self {
        let start = 0_usize
            .into_pyobject(view.py())
            .unwrap_or_else(|e| match e {});
        FrameMaker {
            ranges: plan.ranges(),
            view,
            plan,
            start,
        }
    }

    /// The next frame: a slice of the view (zero-copy), or for a short last frame that is to be
    /// padded, a view of a new zero-padded `bytes` (copies that one frame).
    fn next_frame(&mut self) -> Option<PyResult<Bound<'py, PyAny>>> {
        let (start, end) = self.ranges.next()?;
        Some(self.frame(start, end))
    }

    fn frame(&mut self, start: usize, end: usize) -> PyResult<Bound<'py, PyAny>> {
        let py = self.view.py();
        let end_obj = end.into_pyobject(py).unwrap_or_else(|e| match e {});
        let slice = slice_view(&self.view, &self.start, &end_obj)?;
        self.start = end_obj;
        if !self.plan.needs_padding(start, end) {
            return Ok(slice);
        }
        let tail = BorrowedBytes::extract(&slice)?;
        let mut padded = Vec::with_capacity(self.plan.frame_bytes());
        padded.extend_from_slice(tail.as_slice());
        padded.resize(self.plan.frame_bytes(), 0);
        Ok(PyMemoryView::from(PyBytes::new(py, &padded).as_any())?.into_any())
    }

    fn remaining(&self) -> usize {
        self.ranges.len()
    }
}

fn frame_list<'py>(
    view: Bound<'py, PyMemoryView>,
    plan: FramePlan,
) -> PyResult<Bound<'py, PyList>> {
    let py = view.py();
    let mut maker = FrameMaker::new(view, plan);
    let mut frames = Vec::with_capacity(maker.remaining());
    while let Some(frame) = maker.next_frame() {
        frames.push(frame?);
    }
    PyList::new(py, frames)
}

fn view_and_plan<'py>(
    buf: &Bound<'py, PyAny>,
    frame_bytes: usize,
    align: usize,
    pad: bool,
) -> PyResult<(Bound<'py, PyMemoryView>, FramePlan)> {
    let view = byte_view(buf)?;
    let plan = FramePlan::new(view.len()?, frame_bytes, align, pad)?;
    Ok((view, plan))
}

/// Split `buf` (bytes, bytearray, memoryview, numpy array or any C-contiguous buffer) into
/// frames of `frame_bytes` bytes. **Zero-copy**: each frame is a `memoryview` slice of `buf`
/// (`frame.obj is buf`, or `buf.obj` for a memoryview `buf`), so writes to a mutable `buf`
/// show through the frames, and a `bytearray` cannot be resized while frames are alive. A numpy
/// array is viewed as its raw bytes.
///
/// Every frame but the last has exactly `frame_bytes` bytes. The last is shorter unless
/// `pad=True`, which zero-pads it to `frame_bytes` (that frame alone **copies**: it views a new
/// `bytes`). An empty buffer gives no frames.
///
/// `align`: `frame_bytes` and `len(buf)` (in bytes) must be multiples of it (use the sample
/// frame size, `channels * sample_width`, for audio).
///
/// Raises `InvalidArgumentError` for `frame_bytes < 1`, `align < 1`, an unaligned size, a
/// non-contiguous buffer or `pad=True` with `frame_bytes` above 2**30; `TypeError` for an object
/// without the buffer protocol.
#[pyfunction]
#[pyo3(signature = (buf, frame_bytes, *, pad = false, align = 1))]
fn chunk_bytes<'py>(
    buf: &Bound<'py, PyAny>,
    frame_bytes: i64,
    pad: bool,
    align: i64,
) -> PyResult<Bound<'py, PyList>> {
    let frame_bytes = size(frame_bytes, "frame_bytes")?;
    let align = size(align, "align")?;
    let (view, plan) = view_and_plan(buf, frame_bytes, align, pad)?;
    frame_list(view, plan)
}

fn audio_format(sample_rate: i64, channels: i64, sample_width: i64) -> Result<AudioFormat, Error> {
    AudioFormat::new(
        count(sample_rate, "sample_rate")?,
        count(channels, "channels")?,
        count(sample_width, "sample_width")?,
    )
}

/// Split interleaved PCM audio into frames of `frame_ms` milliseconds, rounded down to whole
/// sample frames (`channels * sample_width` bytes). **Zero-copy**: frames are `memoryview`
/// slices of `buf`, as in `chunk_bytes`; only a padded last frame (`pad=True`, zero-filled, which
/// is silence for signed and float PCM) **copies**.
///
/// Raises `InvalidArgumentError` when `len(buf)` in bytes is not a whole number of sample frames,
/// when `frame_ms` is shorter than one sample frame, and for out-of-range formats.
#[pyfunction]
#[pyo3(signature = (buf, *, sample_rate, channels = 1, sample_width = 2, frame_ms = 100.0, pad = false))]
fn chunk_audio<'py>(
    buf: &Bound<'py, PyAny>,
    sample_rate: i64,
    channels: i64,
    sample_width: i64,
    frame_ms: f64,
    pad: bool,
) -> PyResult<Bound<'py, PyList>> {
    let format = audio_format(sample_rate, channels, sample_width)?;
    let frame_bytes = chunker::frame_bytes_for(&format, frame_ms)?;
    let align = usize::try_from(format.bytes_per_sample_frame())
        .map_err(|_| Error::invalid("sample frame too large"))?;
    let (view, plan) = view_and_plan(buf, frame_bytes, align, pad)?;
    frame_list(view, plan)
}

/// Bytes in an audio frame of `frame_ms` milliseconds: `floor(sample_rate * frame_ms / 1000)`
/// sample frames (a product within 1e-9 of an integer counts as that integer) of
/// `channels * sample_width` bytes.
///
/// Raises `InvalidArgumentError` for a duration shorter than one sample frame or longer than an
/// hour, and for out-of-range formats.
#[pyfunction]
#[pyo3(signature = (*, sample_rate, channels = 1, sample_width = 2, frame_ms = 100.0))]
fn frame_bytes_for(
    sample_rate: i64,
    channels: i64,
    sample_width: i64,
    frame_ms: f64,
) -> PyResult<usize> {
    let format = audio_format(sample_rate, channels, sample_width)?;
    Ok(chunker::frame_bytes_for(&format, frame_ms)?)
}

/// Send times (seconds) of frames with durations `frame_seconds`: frame `i` goes at
/// `start + sum(frame_seconds[:i]) / speed` (compensated summation, no drift). `speed=1.0` is
/// real time, `2.0` twice as fast, `math.inf` as fast as possible (every frame at `start`).
///
/// Raises `InvalidArgumentError` for a negative or non-finite duration, a speed that is zero,
/// negative or NaN, and a non-finite start.
#[pyfunction]
#[pyo3(signature = (frame_seconds, *, speed = 1.0, start = 0.0))]
fn pacing_schedule(
    py: Python<'_>,
    frame_seconds: Vec<f64>,
    speed: f64,
    start: f64,
) -> PyResult<Vec<f64>> {
    Ok(py.detach(|| chunker::pacing_schedule(&frame_seconds, speed, start))?)
}

/// Send times (seconds) of `n_frames` frames of `frame_seconds` each: `start + i * frame_seconds
/// / speed`. `speed=math.inf` sends every frame at `start`.
///
/// Raises `InvalidArgumentError` for a negative `n_frames` or one above 2**24, a negative or
/// non-finite `frame_seconds`, a speed that is zero, negative or NaN, and a non-finite start.
#[pyfunction]
#[pyo3(signature = (n_frames, frame_seconds, *, speed = 1.0, start = 0.0))]
fn uniform_pacing_schedule(
    py: Python<'_>,
    n_frames: i64,
    frame_seconds: f64,
    speed: f64,
    start: f64,
) -> PyResult<Vec<f64>> {
    let n_frames = count(n_frames, "n_frames")?;
    Ok(py.detach(|| chunker::uniform_pacing_schedule(n_frames, frame_seconds, speed, start))?)
}

/// Iterator over the frames of a buffer, one `memoryview` at a time (**zero-copy**, like
/// `chunk_bytes`; a padded last frame **copies**). It holds a view of the buffer until it is
/// exhausted, so a `bytearray` cannot be resized meanwhile. `len()` is the number of frames left.
#[pyclass(module = "sagebidi_perf._native", name = "FrameIterator")]
struct FrameIterator {
    /// `None` once exhausted (the buffer export is then released).
    state: Option<IterState>,
}

struct IterState {
    view: Py<PyMemoryView>,
    plan: FramePlan,
    ranges: FrameRanges,
    start: Py<PyInt>,
}

#[pymethods]
impl FrameIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(state) = self.state.take() else {
            return Ok(None);
        };
        let mut maker = FrameMaker {
            view: state.view.into_bound(py),
            plan: state.plan,
            ranges: state.ranges,
            start: state.start.into_bound(py),
        };
        let Some(frame) = maker.next_frame() else {
            return Ok(None);
        };
        self.state = Some(IterState {
            view: maker.view.unbind(),
            plan: maker.plan,
            ranges: maker.ranges,
            start: maker.start.unbind(),
        });
        frame.map(Some)
    }

    fn __len__(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.ranges.len())
    }
}

/// Iterate over the frames `chunk_bytes(buf, frame_bytes, pad=pad, align=align)` would return,
/// making each `memoryview` only when it is asked for (**zero-copy**; a padded last frame
/// **copies**). Arguments are checked at once, not at the first `next()`.
#[pyfunction]
#[pyo3(signature = (buf, frame_bytes, *, pad = false, align = 1))]
fn iter_chunks(
    buf: &Bound<'_, PyAny>,
    frame_bytes: i64,
    pad: bool,
    align: i64,
) -> PyResult<FrameIterator> {
    let frame_bytes = size(frame_bytes, "frame_bytes")?;
    let align = size(align, "align")?;
    let (view, plan) = view_and_plan(buf, frame_bytes, align, pad)?;
    let maker = FrameMaker::new(view, plan);
    Ok(FrameIterator {
        state: Some(IterState {
            view: maker.view.unbind(),
            plan: maker.plan,
            ranges: maker.ranges,
            start: maker.start.unbind(),
        }),
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(chunk_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(chunk_audio, m)?)?;
    m.add_function(wrap_pyfunction!(frame_bytes_for, m)?)?;
    m.add_function(wrap_pyfunction!(pacing_schedule, m)?)?;
    m.add_function(wrap_pyfunction!(uniform_pacing_schedule, m)?)?;
    m.add_function(wrap_pyfunction!(iter_chunks, m)?)?;
    m.add_class::<FrameIterator>()?;
    Ok(())
}
