//! Python glue for [`crate::audio`]: numpy arrays and 16-bit PCM bytes in, numpy arrays out.
//!
//! Input arrays are read in place when C-contiguous (copied to a temporary otherwise); output
//! arrays take ownership of the Rust buffer they were computed in (no copy). Work runs with
//! the interpreter released.

use numpy::{
    PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::buffer::BorrowedBytes;
use crate::audio::{self, Quality, Resampler, Samples};
use crate::Error;

const INPUT_TYPES: &str = "expected 16-bit little-endian PCM bytes (bytes, bytearray, memoryview) \
     or a numpy array of int16, float32 or float64";

/// Samples held for the duration of a call: borrowed from a numpy array or a byte buffer, or
/// a contiguous copy of a strided array.
enum Input<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
    I16(PyReadonlyArrayDyn<'py, i16>),
    F32Owned(Vec<f32>),
    F64Owned(Vec<f64>),
    I16Owned(Vec<i16>),
    Bytes(BorrowedBytes<'py>),
}

impl Input<'_> {
    fn samples(&self) -> Samples<'_> {
        // `as_slice` only fails for arrays that are not C-contiguous, which `extract` copied.
        match self {
            Input::F32(a) => Samples::F32(a.as_slice().unwrap_or(&[])),
            Input::F64(a) => Samples::F64(a.as_slice().unwrap_or(&[])),
            Input::I16(a) => Samples::I16(a.as_slice().unwrap_or(&[])),
            Input::F32Owned(v) => Samples::F32(v),
            Input::F64Owned(v) => Samples::F64(v),
            Input::I16Owned(v) => Samples::I16(v),
            Input::Bytes(b) => Samples::Pcm16Le(b.as_slice()),
        }
    }
}

/// An argument with its shape: `shape` is `None` for byte buffers.
struct Extracted<'py> {
    input: Input<'py>,
    shape: Option<Vec<usize>>,
}

impl Extracted<'_> {
    /// Channels implied by the shape: the last axis of a 2-D array, else `None`.
    fn shape_channels(&self) -> Option<usize> {
        match self.shape.as_deref() {
            Some([_, channels]) => Some(*channels),
            _ => None,
        }
    }

    /// Check the shape against `channels`: 1-D (interleaved) or 2-D `(frames, channels)`.
    fn check_channels(&self, channels: usize) -> Result<(), Error> {
        match self.shape.as_deref() {
            None | Some([_]) => Ok(()),
            Some([_, c]) if *c == channels => Ok(()),
            Some([frames, c]) => Err(Error::invalid(format!(
                "array of shape ({frames}, {c}) does not have {channels} channels"
            ))),
            Some(shape) => Err(Error::invalid(format!(
                "expected a 1-D (interleaved) or 2-D (frames, channels) array, got {} dimensions",
                shape.len()
            ))),
        }
    }
}

fn readonly<'py, T: numpy::Element + Copy>(
    array: &Bound<'py, PyArrayDyn<T>>,
    borrowed: fn(PyReadonlyArrayDyn<'py, T>) -> Input<'py>,
    owned: fn(Vec<T>) -> Input<'py>,
) -> PyResult<Input<'py>> {
    let ro = array.try_readonly()?;
    // Only C order is interleaved in memory (`as_slice` would also take Fortran order).
    if array.is_c_contiguous() && ro.as_slice().is_ok() {
        Ok(borrowed(ro))
    } else {
        // Logical (C) order, so a Fortran-order (frames, channels) array still interleaves.
        Ok(owned(ro.as_array().iter().copied().collect()))
    }
}

fn extract<'py>(data: &Bound<'py, PyAny>) -> PyResult<Extracted<'py>> {
    if let Ok(array) = data.cast::<PyUntypedArray>() {
        let shape = Some(array.shape().to_vec());
        let input = if let Ok(a) = data.cast::<PyArrayDyn<f32>>() {
            readonly(a, Input::F32, Input::F32Owned)?
        } else if let Ok(a) = data.cast::<PyArrayDyn<i16>>() {
            readonly(a, Input::I16, Input::I16Owned)?
        } else if let Ok(a) = data.cast::<PyArrayDyn<f64>>() {
            readonly(a, Input::F64, Input::F64Owned)?
        } else {
            return Err(PyTypeError::new_err(format!(
                "{INPUT_TYPES}, not an array of dtype {}",
                array.dtype()
            )));
        };
        return Ok(Extracted { input, shape });
    }
    match BorrowedBytes::extract(data) {
        Ok(bytes) => Ok(Extracted {
            input: Input::Bytes(bytes),
            shape: None,
        }),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{INPUT_TYPES}, not {}",
            data.get_type().name()?
        ))),
    }
}

fn rate(value: i64, what: &str) -> Result<u32, Error> {
    let rate = u32::try_from(value).map_err(|_| {
        Error::invalid(format!(
            "{what} {value} Hz is out of range: sample rates must be between {} and {} Hz",
            audio::MIN_RATE,
            audio::MAX_RATE
        ))
    })?;
    audio::check_rate(what, rate)?;
    Ok(rate)
}

fn channel_count(value: i64) -> Result<usize, Error> {
    let channels = usize::try_from(value).unwrap_or(0);
    audio::check_channels(channels).map_err(|_| {
        Error::invalid(format!(
            "channel count {value} is out of range: expected 1 to {}",
            audio::MAX_CHANNELS
        ))
    })?;
    Ok(channels)
}

/// Output sample type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutType {
    Float32,
    Int16,
}

impl OutType {
    fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "float32" => Ok(OutType::Float32),
            "int16" => Ok(OutType::Int16),
            other => Err(Error::invalid(format!(
                "unknown output dtype {other:?}: expected \"float32\" or \"int16\""
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            OutType::Float32 => "float32",
            OutType::Int16 => "int16",
        }
    }
}

/// Samples computed without the interpreter, ready to become a numpy array.
enum Output {
    F32(Vec<f32>),
    I16(Vec<i16>),
}

impl Output {
    fn convert(samples: Vec<f32>, out: OutType) -> Self {
        match out {
            OutType::Float32 => Output::F32(samples),
            OutType::Int16 => Output::I16(audio::float32_to_int16(&samples)),
        }
    }

    /// A numpy array that owns the buffer: 1-D for mono, `(frames, channels)` otherwise.
    fn into_array(self, py: Python<'_>, channels: usize) -> PyResult<Bound<'_, PyAny>> {
        fn shaped<'py, T: numpy::Element>(
            py: Python<'py>,
            v: Vec<T>,
            channels: usize,
        ) -> PyResult<Bound<'py, PyAny>> {
            let frames = v.len() / channels;
            let array = PyArray1::from_vec(py, v);
            if channels == 1 {
                Ok(array.into_any())
            } else {
                Ok(array.reshape([frames, channels])?.into_any())
            }
        }
        match self {
            Output::F32(v) => shaped(py, v, channels),
            Output::I16(v) => shaped(py, v, channels),
        }
    }
}

/// Streaming resampler for interleaved audio (any rate to any rate, e.g. 48 kHz -> 16 kHz).
///
/// ``process(chunk)`` takes chunks of any length: 16-bit little-endian PCM bytes, or numpy
/// arrays of int16 (scaled by 1/32768), float32 or float64, 1-D (interleaved) or 2-D
/// ``(frames, channels)``. It returns every output frame the input so far determines, as a
/// numpy array (1-D for mono, ``(frames, channels)`` otherwise) of ``dtype``. ``flush()``
/// returns the tail and resets for a new stream. Input is read in place (copied only when it
/// is a strided array); each result is one new array.
///
/// With ``compensate_delay`` (the default) output sample ``j`` lies exactly at input time
/// ``j * in_rate / out_rate`` and a flushed stream of ``n`` frames gives
/// ``ceil(n * out_rate / in_rate)`` frames whatever the chunking; a live stream lags by
/// ``delay`` output frames. Without it, the first ``delay`` frames are the filter's warm-up.
///
/// ``quality``: ``"fast"``, ``"hq"`` (default) or ``"vhq"``. At 16 kHz out, ``"hq"`` is flat
/// (0.01 dB) to 6.7 kHz, -3 dB at 7.2 kHz, rejects everything from the 8 kHz output Nyquist
/// on by at least 100 dB (aliases, and the images of 8 kHz input), and delays 2.4-2.5 ms from
/// 44.1/48 kHz, 4.9 ms from 8 kHz. ``"fast"``: 0.94 ms, but 8-9.6 kHz may alias into the
/// roll-off band above 6.4 kHz. ``"vhq"``: 125 dB, 4.3 ms (8.5 ms from 8 kHz).
#[pyclass(module = "sagebidi_perf._native", name = "Resampler")]
#[derive(Debug)]
pub struct PyResampler {
    inner: Resampler,
    out: OutType,
}

#[pymethods]
impl PyResampler {
    #[new]
    #[pyo3(signature = (in_rate, out_rate, channels = 1, *, quality = "hq", compensate_delay = true, dtype = "float32"))]
    fn new(
        in_rate: i64,
        out_rate: i64,
        channels: i64,
        quality: &str,
        compensate_delay: bool,
        dtype: &str,
    ) -> Result<Self, Error> {
        let inner = Resampler::new(
            rate(in_rate, "input rate")?,
            rate(out_rate, "output rate")?,
            channel_count(channels)?,
            Quality::parse(quality)?,
            compensate_delay,
        )?;
        Ok(PyResampler {
            inner,
            out: OutType::parse(dtype)?,
        })
    }

    /// Feed a chunk; returns the output frames it completes (possibly none).
    fn process<'py>(
        mut slf: PyRefMut<'py, Self>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let extracted = extract(data)?;
        let this = &mut *slf;
        extracted.check_channels(this.inner.channels())?;
        let samples = extracted.input.samples();
        let (inner, out) = (&mut this.inner, this.out);
        let output = py.detach(|| -> Result<Output, Error> {
            Ok(Output::convert(inner.process(samples)?, out))
        })?;
        output.into_array(py, this.inner.channels())
    }

    /// End the stream: the remaining output frames; the resampler is then ready for a new one.
    fn flush<'py>(mut slf: PyRefMut<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = &mut *slf;
        let (inner, out) = (&mut this.inner, this.out);
        let output = py.detach(|| Output::convert(inner.flush(), out));
        output.into_array(py, this.inner.channels())
    }

    /// Drop any buffered input and start a new stream.
    fn reset(&mut self) {
        self.inner.reset();
    }

    /// Output frames a stream of ``frames_in`` input frames gives once flushed.
    fn output_frames(&self, frames_in: u64) -> u64 {
        self.inner.output_frames(frames_in)
    }

    #[getter]
    fn in_rate(&self) -> u32 {
        self.inner.in_rate()
    }

    #[getter]
    fn out_rate(&self) -> u32 {
        self.inner.out_rate()
    }

    #[getter]
    fn channels(&self) -> usize {
        self.inner.channels()
    }

    #[getter]
    fn quality(&self) -> &'static str {
        self.inner.quality().name()
    }

    #[getter]
    fn compensate_delay(&self) -> bool {
        self.inner.compensate_delay()
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.out.name()
    }

    /// Filter delay in output frames: how far a live stream's output lags its input.
    #[getter]
    fn delay(&self) -> u64 {
        self.inner.delay()
    }

    /// ``delay`` in seconds.
    #[getter]
    fn delay_seconds(&self) -> f64 {
        self.inner.delay() as f64 / f64::from(self.inner.out_rate())
    }

    /// Input frames received since the stream started.
    #[getter]
    fn frames_in(&self) -> u64 {
        self.inner.frames_in()
    }

    /// Output frames returned since the stream started.
    #[getter]
    fn frames_out(&self) -> u64 {
        self.inner.frames_out()
    }

    fn __repr__(&self) -> String {
        format!(
            "Resampler({} -> {} Hz, channels={}, quality={:?}, delay={})",
            self.inner.in_rate(),
            self.inner.out_rate(),
            self.inner.channels(),
            self.inner.quality().name(),
            self.inner.delay()
        )
    }
}

/// Channels of `data`: the explicit count, else the last axis of a 2-D array, else 1.
fn resolve_channels(extracted: &Extracted<'_>, channels: Option<i64>) -> Result<usize, Error> {
    let channels = match channels {
        Some(c) => channel_count(c)?,
        None => match extracted.shape_channels() {
            Some(c) => channel_count(i64::try_from(c).unwrap_or(i64::MAX))?,
            None => 1,
        },
    };
    extracted.check_channels(channels)?;
    Ok(channels)
}

/// Resample a whole signal (delay compensated): ``ceil(n * out_rate / in_rate)`` frames.
///
/// ``data`` as for ``Resampler.process``; ``channels`` defaults to the last axis of a 2-D
/// array, else 1. Returns a new array (1-D for mono, ``(frames, channels)`` otherwise).
#[pyfunction]
#[pyo3(signature = (data, in_rate, out_rate, *, channels = None, quality = "hq", dtype = "float32"))]
fn resample<'py>(
    data: &Bound<'py, PyAny>,
    in_rate: i64,
    out_rate: i64,
    channels: Option<i64>,
    quality: &str,
    dtype: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let py = data.py();
    let extracted = extract(data)?;
    let channels = resolve_channels(&extracted, channels)?;
    let (in_rate, out_rate) = (rate(in_rate, "input rate")?, rate(out_rate, "output rate")?);
    let quality = Quality::parse(quality)?;
    let out = OutType::parse(dtype)?;
    let samples = extracted.input.samples();
    let output = py.detach(|| -> Result<Output, Error> {
        let y = audio::resample(samples, in_rate, out_rate, channels, quality)?;
        Ok(Output::convert(y, out))
    })?;
    output.into_array(py, channels)
}

/// int16 samples (16-bit little-endian PCM bytes, or an int16 array) to float32 ``v / 32768``.
///
/// Returns a new array, of the input array's shape (1-D for bytes).
#[pyfunction]
fn int16_to_float32<'py>(data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = data.py();
    let extracted = extract(data)?;
    let samples = extracted.input.samples();
    if !matches!(samples, Samples::I16(_) | Samples::Pcm16Le(_)) {
        return Err(PyTypeError::new_err(
            "int16_to_float32 expects 16-bit PCM bytes or an int16 array",
        ));
    }
    let values = py.detach(|| samples.to_f32())?;
    let array = PyArray1::from_vec(py, values);
    match extracted.shape {
        Some(shape) if shape.len() != 1 => Ok(array.reshape(shape)?.into_any()),
        _ => Ok(array.into_any()),
    }
}

/// float32 or float64 samples to int16: scaled by 32768, rounded to nearest (ties to even),
/// clipped to [-32768, 32767]; NaN becomes 0.
///
/// Returns a new array of the same shape; ``.tobytes()`` gives little-endian PCM on
/// little-endian machines.
#[pyfunction]
fn float32_to_int16<'py>(data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = data.py();
    let extracted = extract(data)?;
    let values = match extracted.input.samples() {
        Samples::F32(s) => py.detach(|| audio::float32_to_int16(s)),
        Samples::F64(s) => py.detach(|| audio::float64_to_int16(s)),
        _ => {
            return Err(PyTypeError::new_err(
                "float32_to_int16 expects a numpy array of float32 or float64",
            ))
        }
    };
    let array = PyArray1::from_vec(py, values);
    match extracted.shape {
        Some(shape) if shape.len() != 1 => Ok(array.reshape(shape)?.into_any()),
        _ => Ok(array.into_any()),
    }
}

/// Mix interleaved channels down to mono (the mean of each frame) as a new float32 array.
///
/// ``channels`` defaults to the last axis of a 2-D array, else 1.
#[pyfunction]
#[pyo3(signature = (data, channels = None))]
fn downmix<'py>(data: &Bound<'py, PyAny>, channels: Option<i64>) -> PyResult<Bound<'py, PyAny>> {
    let py = data.py();
    let extracted = extract(data)?;
    let channels = resolve_channels(&extracted, channels)?;
    let samples = extracted.input.samples();
    let mono = py.detach(|| audio::downmix(samples, channels))?;
    Ok(PyArray1::from_vec(py, mono).into_any())
}

/// One channel (``index`` from 0) of interleaved audio, as a new float32 array.
///
/// ``channels`` defaults to the last axis of a 2-D array, else 1.
#[pyfunction]
#[pyo3(signature = (data, index, channels = None))]
fn select_channel<'py>(
    data: &Bound<'py, PyAny>,
    index: i64,
    channels: Option<i64>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = data.py();
    let extracted = extract(data)?;
    let channels = resolve_channels(&extracted, channels)?;
    let index = usize::try_from(index).map_err(|_| {
        Error::invalid(format!(
            "channel index {index} is out of range for {channels} channels"
        ))
    })?;
    let samples = extracted.input.samples();
    let one = py.detach(|| audio::select_channel(samples, channels, index))?;
    Ok(PyArray1::from_vec(py, one).into_any())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyResampler>()?;
    m.add_function(wrap_pyfunction!(resample, m)?)?;
    m.add_function(wrap_pyfunction!(int16_to_float32, m)?)?;
    m.add_function(wrap_pyfunction!(float32_to_int16, m)?)?;
    m.add_function(wrap_pyfunction!(downmix, m)?)?;
    m.add_function(wrap_pyfunction!(select_channel, m)?)?;
    m.add("AUDIO_MIN_RATE", audio::MIN_RATE)?;
    m.add("AUDIO_MAX_RATE", audio::MAX_RATE)?;
    m.add("AUDIO_MAX_CHANNELS", audio::MAX_CHANNELS)?;
    Ok(())
}
