//! Borrowing the bytes of any Python buffer (bytes, bytearray, memoryview, numpy array) without
//! copying them.

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Bytes borrowed from a Python object for the duration of a call. Holding it keeps the buffer
/// export alive (a `bytearray` cannot be resized meanwhile).
pub enum BorrowedBytes<'py> {
    Bytes(Bound<'py, PyBytes>),
    Buffer(PyBuffer<u8>),
}

impl<'py> BorrowedBytes<'py> {
    /// Borrow `obj`'s bytes. Any C-contiguous buffer is accepted; a buffer whose items are not
    /// bytes (a numpy int16 array, say) must be cast to bytes first (`memoryview(a).cast("B")`),
    /// which the Python layer does and which copies nothing.
    pub fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(BorrowedBytes::Bytes(b.clone()));
        }
        let buf = PyBuffer::<u8>::get(obj)?;
        if !buf.is_c_contiguous() {
            return Err(pyo3::exceptions::PyBufferError::new_err(
                "buffer must be C-contiguous",
            ));
        }
        Ok(BorrowedBytes::Buffer(buf))
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            BorrowedBytes::Bytes(b) => b.as_bytes(),
            BorrowedBytes::Buffer(buf) => {
                let len = buf.len_bytes();
                if len == 0 {
                    return &[];
                }
                // SAFETY: the buffer is C-contiguous, of `len` bytes, and stays exported (so
                // neither freed nor resized) while `self` lives. Its bytes may be written by
                // other Python code while we read them; callers treat them as plain data.
                #[allow(unsafe_code)]
                unsafe {
                    std::slice::from_raw_parts(buf.buf_ptr() as *const u8, len)
                }
            }
        }
    }
}
