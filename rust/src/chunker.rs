//! Frame chunking and pacing: the arithmetic behind cutting a buffer into frames and sending them
//! at real-time pace.
//!
//! Nothing here touches bytes: [`FrameRanges`] yields the `(start, end)` byte ranges of the frames
//! and the caller (the Python binding) turns them into views of its own buffer, so chunking copies
//! nothing. A padded last frame is the caller's business too: [`FrameRanges`] reports the range
//! that exists, and [`FramePlan::padded_len`] says how long the frame should be.
//!
//! Audio frames hold whole *sample frames* (one sample for every channel,
//! `channels × sample_width` bytes); [`frame_bytes_for`] turns a duration into a byte count by
//! rounding down to whole sample frames.
//!
//! Pacing: the send time of frame `i` is `start + (d_0 + … + d_{i-1}) / speed`, where `d_j` is the
//! duration of frame `j` in seconds. Frame 0 goes at `start`; the duration of the last frame never
//! matters. `speed = 1` is real time, `speed = 2` twice as fast; `speed = +inf` means "as fast as
//! possible" (every frame at `start`). A zero, negative or NaN speed is rejected: "0× real time"
//! would never send anything, so it is almost certainly a mistake rather than a request.
#![forbid(unsafe_code)]

use crate::{Error, Result};

/// Largest accepted sample rate (Hz). Far above any audio format; it only exists so that the
/// byte arithmetic cannot overflow.
pub const MAX_SAMPLE_RATE: u64 = 1 << 24;
/// Largest accepted channel count (WAV stores it in 16 bits).
pub const MAX_CHANNELS: u64 = u16::MAX as u64;
/// Largest accepted sample width in bytes (float64 samples).
pub const MAX_SAMPLE_WIDTH: u64 = 8;
/// Longest accepted audio frame (one hour), in milliseconds.
pub const MAX_FRAME_MS: f64 = 3_600_000.0;
/// Largest accepted number of frames in a uniform pacing schedule (the schedule is materialised;
/// 2^24 frames of 10 ms are 46 hours).
pub const MAX_SCHEDULE_FRAMES: u64 = 1 << 24;
/// Largest frame size accepted with padding: a padded last frame is allocated at full size.
pub const MAX_PADDED_FRAME_BYTES: usize = 1 << 30;

/// The layout of interleaved PCM audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFormat {
    /// Sample frames per second.
    pub sample_rate: u64,
    /// Interleaved channels.
    pub channels: u64,
    /// Bytes per sample of one channel.
    pub sample_width: u64,
}

impl AudioFormat {
    /// Validate and build a format: every field at least 1 and at most its `MAX_*` constant.
    pub fn new(sample_rate: u64, channels: u64, sample_width: u64) -> Result<Self> {
        check_range("sample_rate", sample_rate, MAX_SAMPLE_RATE)?;
        check_range("channels", channels, MAX_CHANNELS)?;
        check_range("sample_width", sample_width, MAX_SAMPLE_WIDTH)?;
        Ok(AudioFormat {
            sample_rate,
            channels,
            sample_width,
        })
    }

    /// Bytes of one sample frame (one sample of every channel): `channels × sample_width`.
    pub fn bytes_per_sample_frame(&self) -> u64 {
        // Both are bounded by `new`, so the product fits easily.
        self.channels * self.sample_width
    }

    /// Bytes of one second of audio.
    pub fn bytes_per_second(&self) -> u64 {
        self.sample_rate * self.bytes_per_sample_frame()
    }

    /// Duration in seconds of `n_bytes` of audio in this format.
    pub fn seconds(&self, n_bytes: u64) -> f64 {
        n_bytes as f64 / self.bytes_per_second() as f64
    }
}

fn check_range(name: &str, value: u64, max: u64) -> Result<()> {
    if value == 0 {
        return Err(Error::invalid(format!("{name} must be at least 1, got 0")));
    }
    if value > max {
        return Err(Error::invalid(format!(
            "{name} must be at most {max}, got {value}"
        )));
    }
    Ok(())
}

/// Bytes in an audio frame of `frame_ms` milliseconds, rounded down to whole sample frames.
///
/// The number of sample frames is `floor(sample_rate × frame_ms / 1000)`, except that a product
/// within 1e-9 (relative) of an integer counts as that integer, so that decimal durations such as
/// `0.1` ms at 10 kHz (exactly one sample) are not lost to binary rounding.
///
/// Errors: `frame_ms` not finite, not positive or above [`MAX_FRAME_MS`]; a duration shorter than
/// one sample frame.
pub fn frame_bytes_for(format: &AudioFormat, frame_ms: f64) -> Result<usize> {
    if !frame_ms.is_finite() || frame_ms <= 0.0 {
        return Err(Error::invalid(format!(
            "frame_ms must be a positive finite number, got {frame_ms}"
        )));
    }
    if frame_ms > MAX_FRAME_MS {
        return Err(Error::invalid(format!(
            "frame_ms must be at most {MAX_FRAME_MS} (one hour), got {frame_ms}"
        )));
    }
    let exact = format.sample_rate as f64 * frame_ms / 1000.0;
    let nearest = exact.round();
    let samples = if (exact - nearest).abs() <= 1e-9 * exact.max(1.0) {
        nearest
    } else {
        exact.floor()
    };
    if samples < 1.0 {
        return Err(Error::invalid(format!(
            "frame_ms={frame_ms} is shorter than one sample frame at {} Hz",
            format.sample_rate
        )));
    }
    // samples ≤ 2^24 × 3.6e3 < 2^36 and bytes_per_sample_frame ≤ 2^19: the product is < 2^55.
    let bytes = (samples as u64)
        .checked_mul(format.bytes_per_sample_frame())
        .ok_or_else(|| Error::invalid("audio frame size overflows"))?;
    usize::try_from(bytes)
        .map_err(|_| Error::invalid(format!("audio frame of {bytes} bytes is too large")))
}

/// How a buffer of `len` bytes is cut into frames of `frame_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePlan {
    len: usize,
    frame_bytes: usize,
    pad: bool,
}

impl FramePlan {
    /// Plan the frames of a `len`-byte buffer.
    ///
    /// `align` is the unit both `frame_bytes` and `len` must be whole multiples of (the sample
    /// frame size for audio; 1 for plain bytes), so that no frame splits a sample. With `pad`, a
    /// short last frame is to be padded up to `frame_bytes` (see [`FramePlan::padded_len`]).
    ///
    /// Errors: `frame_bytes` or `align` zero; `frame_bytes` not a multiple of `align`; `len` not a
    /// multiple of `align`; `pad` with `frame_bytes` above [`MAX_PADDED_FRAME_BYTES`].
    pub fn new(len: usize, frame_bytes: usize, align: usize, pad: bool) -> Result<Self> {
        if frame_bytes == 0 {
            return Err(Error::invalid("frame_bytes must be at least 1, got 0"));
        }
        if pad && frame_bytes > MAX_PADDED_FRAME_BYTES {
            return Err(Error::invalid(format!(
                "frame_bytes must be at most {MAX_PADDED_FRAME_BYTES} with pad=True (the padded \
                 last frame is allocated), got {frame_bytes}"
            )));
        }
        if align == 0 {
            return Err(Error::invalid("align must be at least 1, got 0"));
        }
        if !frame_bytes.is_multiple_of(align) {
            return Err(Error::invalid(format!(
                "frame_bytes={frame_bytes} is not a multiple of the sample frame size {align}"
            )));
        }
        if !len.is_multiple_of(align) {
            return Err(Error::invalid(format!(
                "buffer length {len} is not a multiple of the sample frame size {align} \
                 ({} trailing bytes)",
                len % align
            )));
        }
        Ok(FramePlan {
            len,
            frame_bytes,
            pad,
        })
    }

    /// Number of frames (0 for an empty buffer).
    pub fn frame_count(&self) -> usize {
        self.len.div_ceil(self.frame_bytes)
    }

    /// Bytes of the frame size requested.
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Whether the last frame is to be padded.
    pub fn pad(&self) -> bool {
        self.pad
    }

    /// The length the frame with range `(start, end)` is to have once padded: `frame_bytes` for
    /// a short last frame when padding, else `end - start`.
    pub fn padded_len(&self, start: usize, end: usize) -> usize {
        if self.pad {
            self.frame_bytes
        } else {
            end - start
        }
    }

    /// Whether the frame `(start, end)` needs padding (only a short last frame with `pad`).
    pub fn needs_padding(&self, start: usize, end: usize) -> bool {
        self.pad && end - start < self.frame_bytes
    }

    /// The byte ranges of the frames, in order.
    pub fn ranges(&self) -> FrameRanges {
        FrameRanges {
            next: 0,
            len: self.len,
            frame_bytes: self.frame_bytes,
        }
    }
}

/// Iterator over the `(start, end)` byte ranges of the frames of a [`FramePlan`]: every frame
/// but the last is exactly `frame_bytes` long; the last is `1..=frame_bytes` bytes.
#[derive(Debug, Clone)]
pub struct FrameRanges {
    next: usize,
    len: usize,
    frame_bytes: usize,
}

impl Iterator for FrameRanges {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.next >= self.len {
            return None;
        }
        let start = self.next;
        // `len - start ≥ 1`, so `min` keeps `end ≤ len` without overflowing.
        let end = start + self.frame_bytes.min(self.len - start);
        self.next = end;
        Some((start, end))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.len - self.next.min(self.len)).div_ceil(self.frame_bytes);
        (n, Some(n))
    }
}

impl ExactSizeIterator for FrameRanges {}

fn check_speed(speed: f64) -> Result<()> {
    if speed.is_nan() || speed <= 0.0 {
        return Err(Error::invalid(format!(
            "speed must be positive (1.0 = real time, inf = as fast as possible), got {speed}"
        )));
    }
    Ok(())
}

fn check_start(start: f64) -> Result<()> {
    if !start.is_finite() {
        return Err(Error::invalid(format!(
            "start must be a finite number, got {start}"
        )));
    }
    Ok(())
}

/// Send times of frames with the given durations (seconds): `start + (sum of the durations of
/// the previous frames) / speed`. The sums are compensated (Neumaier), so a long stream of short
/// frames does not drift. `speed = +inf` puts every frame at `start`.
///
/// Errors: a duration that is negative or not finite (its index is in the message); `speed` zero,
/// negative or NaN; `start` not finite.
pub fn pacing_schedule(durations: &[f64], speed: f64, start: f64) -> Result<Vec<f64>> {
    check_speed(speed)?;
    check_start(start)?;
    if let Some((i, d)) = durations
        .iter()
        .enumerate()
        .find(|(_, d)| !d.is_finite() || **d < 0.0)
    {
        return Err(Error::invalid(format!(
            "frame duration {i} must be a finite number ≥ 0, got {d}"
        )));
    }
    let mut out = Vec::with_capacity(durations.len());
    if speed.is_infinite() {
        out.resize(durations.len(), start);
        return Ok(out);
    }
    let (mut sum, mut compensation) = (0.0_f64, 0.0_f64);
    for &d in durations {
        out.push(start + (sum + compensation) / speed);
        // Neumaier's variant of Kahan summation.
        let t = sum + d;
        if sum.abs() >= d.abs() {
            compensation += (sum - t) + d;
        } else {
            compensation += (d - t) + sum;
        }
        sum = t;
    }
    Ok(out)
}

/// Send times of `n_frames` frames of `frame_seconds` each: `start + i × frame_seconds / speed`
/// (a product per frame, no accumulated rounding). `speed = +inf` puts every frame at `start`.
///
/// Errors: `frame_seconds` negative or not finite; `n_frames` above [`MAX_SCHEDULE_FRAMES`];
/// `speed` zero, negative or NaN; `start` not finite.
pub fn uniform_pacing_schedule(
    n_frames: u64,
    frame_seconds: f64,
    speed: f64,
    start: f64,
) -> Result<Vec<f64>> {
    check_speed(speed)?;
    check_start(start)?;
    if !frame_seconds.is_finite() || frame_seconds < 0.0 {
        return Err(Error::invalid(format!(
            "frame_seconds must be a finite number ≥ 0, got {frame_seconds}"
        )));
    }
    if n_frames > MAX_SCHEDULE_FRAMES {
        return Err(Error::invalid(format!(
            "n_frames must be at most {MAX_SCHEDULE_FRAMES}, got {n_frames}"
        )));
    }
    let step = if speed.is_infinite() {
        0.0
    } else {
        frame_seconds / speed
    };
    Ok((0..n_frames).map(|i| start + i as f64 * step).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm16k() -> AudioFormat {
        AudioFormat::new(16_000, 1, 2).expect("valid format")
    }

    fn ranges(len: usize, frame: usize, align: usize) -> Vec<(usize, usize)> {
        FramePlan::new(len, frame, align, false)
            .expect("valid plan")
            .ranges()
            .collect()
    }

    #[test]
    fn frame_bytes_for_common_formats() {
        assert_eq!(frame_bytes_for(&pcm16k(), 100.0), Ok(3200));
        assert_eq!(frame_bytes_for(&pcm16k(), 20.0), Ok(640));
        let stereo = AudioFormat::new(44_100, 2, 2).expect("valid");
        // 441 sample frames of 4 bytes.
        assert_eq!(frame_bytes_for(&stereo, 10.0), Ok(1764));
        // 44.1 samples per ms: 0.5 ms is 22.05 sample frames → 22.
        assert_eq!(frame_bytes_for(&stereo, 0.5), Ok(88));
        let f32x6 = AudioFormat::new(48_000, 6, 4).expect("valid");
        assert_eq!(frame_bytes_for(&f32x6, 20.0), Ok(960 * 24));
    }

    #[test]
    fn frame_bytes_for_rounds_down_to_whole_sample_frames() {
        let fmt = AudioFormat::new(8_000, 3, 3).expect("valid");
        // 8 samples per ms: 1.99 ms = 15.92 samples → 15 sample frames of 9 bytes.
        assert_eq!(frame_bytes_for(&fmt, 1.99), Ok(15 * 9));
        // 0.1 ms at 10 kHz is one sample even though 10000 × 0.1 is not exact in binary.
        let fmt = AudioFormat::new(10_000, 1, 2).expect("valid");
        assert_eq!(frame_bytes_for(&fmt, 0.1), Ok(2));
        assert_eq!(frame_bytes_for(&fmt, 0.3), Ok(6));
    }

    #[test]
    fn frame_bytes_for_rejects_bad_durations() {
        for ms in [0.0, -1.0, f64::NAN, f64::INFINITY, MAX_FRAME_MS * 2.0] {
            assert!(
                matches!(
                    frame_bytes_for(&pcm16k(), ms),
                    Err(Error::InvalidArgument(_))
                ),
                "{ms}"
            );
        }
        // 0.05 ms at 16 kHz is 0.8 samples.
        let err = frame_bytes_for(&pcm16k(), 0.05).expect_err("too short");
        assert!(err.to_string().contains("shorter than one sample"), "{err}");
        // The largest everything still fits.
        let big = AudioFormat::new(MAX_SAMPLE_RATE, MAX_CHANNELS, MAX_SAMPLE_WIDTH).expect("ok");
        let bytes = frame_bytes_for(&big, MAX_FRAME_MS);
        if usize::BITS >= 64 {
            assert_eq!(
                bytes,
                Ok((MAX_SAMPLE_RATE * 3600 * MAX_CHANNELS * MAX_SAMPLE_WIDTH) as usize)
            );
        }
    }

    #[test]
    fn audio_format_validation() {
        assert!(AudioFormat::new(0, 1, 2).is_err());
        assert!(AudioFormat::new(16_000, 0, 2).is_err());
        assert!(AudioFormat::new(16_000, 1, 0).is_err());
        assert!(AudioFormat::new(MAX_SAMPLE_RATE + 1, 1, 2).is_err());
        assert!(AudioFormat::new(16_000, MAX_CHANNELS + 1, 2).is_err());
        assert!(AudioFormat::new(16_000, 1, 9).is_err());
        let fmt = AudioFormat::new(16_000, 2, 3).expect("valid");
        assert_eq!(fmt.bytes_per_sample_frame(), 6);
        assert_eq!(fmt.bytes_per_second(), 96_000);
        assert!((fmt.seconds(9_600) - 0.1).abs() < 1e-15);
    }

    #[test]
    fn ranges_exact_short_and_empty() {
        assert_eq!(ranges(10, 5, 1), vec![(0, 5), (5, 10)]);
        assert_eq!(ranges(11, 5, 1), vec![(0, 5), (5, 10), (10, 11)]);
        assert_eq!(ranges(3, 5, 1), vec![(0, 3)]);
        assert_eq!(ranges(0, 5, 1), vec![]);
        assert_eq!(ranges(6, 1, 1).len(), 6);
        assert_eq!(ranges(12, 4, 2), vec![(0, 4), (4, 8), (8, 12)]);
        assert_eq!(ranges(usize::MAX, usize::MAX, 1), vec![(0, usize::MAX)]);
        assert_eq!(
            ranges(usize::MAX, usize::MAX - 1, 1),
            vec![(0, usize::MAX - 1), (usize::MAX - 1, usize::MAX)]
        );
    }

    #[test]
    fn ranges_size_hint_is_exact() {
        let plan = FramePlan::new(1001, 100, 1, false).expect("valid");
        let mut it = plan.ranges();
        assert_eq!(plan.frame_count(), 11);
        for left in (0..=11).rev() {
            assert_eq!(it.len(), left);
            it.next();
        }
        assert_eq!(it.next(), None);
    }

    #[test]
    fn plan_validation() {
        assert!(FramePlan::new(10, 0, 1, false).is_err());
        assert!(FramePlan::new(10, 4, 0, false).is_err());
        let err = FramePlan::new(12, 5, 2, false).expect_err("unaligned frame");
        assert!(err.to_string().contains("frame_bytes=5"), "{err}");
        let err = FramePlan::new(11, 4, 2, false).expect_err("unaligned buffer");
        assert!(err.to_string().contains("buffer length 11"), "{err}");
        assert!(FramePlan::new(0, 4, 2, true).is_ok());
        assert!(FramePlan::new(10, MAX_PADDED_FRAME_BYTES, 1, true).is_ok());
        let err = FramePlan::new(10, MAX_PADDED_FRAME_BYTES + 1, 1, true).expect_err("huge pad");
        assert!(err.to_string().contains("pad=True"), "{err}");
        assert!(FramePlan::new(10, usize::MAX, 1, false).is_ok());
    }

    #[test]
    fn padding_only_touches_a_short_last_frame() {
        let plan = FramePlan::new(11, 5, 1, true).expect("valid");
        let frames: Vec<_> = plan.ranges().collect();
        assert_eq!(frames.len(), 3);
        assert!(!plan.needs_padding(0, 5));
        assert!(plan.needs_padding(10, 11));
        assert_eq!(plan.padded_len(10, 11), 5);
        let unpadded = FramePlan::new(11, 5, 1, false).expect("valid");
        assert!(!unpadded.needs_padding(10, 11));
        assert_eq!(unpadded.padded_len(10, 11), 1);
    }

    #[test]
    fn pacing_real_time_and_faster() {
        let d = [0.1, 0.1, 0.1, 0.05];
        assert_eq!(
            pacing_schedule(&d, 1.0, 0.0),
            Ok(vec![0.0, 0.1, 0.2, 0.30000000000000004])
        );
        let fast = pacing_schedule(&d, 2.0, 10.0).expect("valid");
        let want = [10.0, 10.05, 10.1, 10.15];
        for (got, want) in fast.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert_eq!(pacing_schedule(&d, f64::INFINITY, 5.0), Ok(vec![5.0; 4]));
        assert_eq!(pacing_schedule(&[], 1.0, 0.0), Ok(vec![]));
        // Frame i's time depends only on the frames before it.
        assert_eq!(pacing_schedule(&[7.0], 1.0, 3.0), Ok(vec![3.0]));
    }

    #[test]
    fn pacing_does_not_drift() {
        // 360 000 frames of 10 ms = one hour: compensated summation lands on 3600 - 0.01.
        let d = vec![0.01; 360_000];
        let s = pacing_schedule(&d, 1.0, 0.0).expect("valid");
        let last = s.last().copied().unwrap_or_default();
        assert!((last - 3599.99).abs() < 1e-9, "{last}");
        let u = uniform_pacing_schedule(360_000, 0.01, 1.0, 0.0).expect("valid");
        assert!((u[359_999] - 3599.99).abs() < 1e-9);
    }

    #[test]
    fn pacing_rejects_bad_arguments() {
        for speed in [0.0, -1.0, f64::NAN, f64::NEG_INFINITY] {
            assert!(pacing_schedule(&[0.1], speed, 0.0).is_err(), "{speed}");
            assert!(
                uniform_pacing_schedule(3, 0.1, speed, 0.0).is_err(),
                "{speed}"
            );
        }
        for start in [f64::NAN, f64::INFINITY] {
            assert!(pacing_schedule(&[0.1], 1.0, start).is_err());
            assert!(uniform_pacing_schedule(3, 0.1, 1.0, start).is_err());
        }
        let err = pacing_schedule(&[0.1, -0.1], 1.0, 0.0).expect_err("negative");
        assert!(err.to_string().contains("frame duration 1"), "{err}");
        assert!(pacing_schedule(&[f64::NAN], 1.0, 0.0).is_err());
        assert!(pacing_schedule(&[f64::INFINITY], 1.0, 0.0).is_err());
        assert!(uniform_pacing_schedule(3, -0.1, 1.0, 0.0).is_err());
        assert!(uniform_pacing_schedule(3, f64::NAN, 1.0, 0.0).is_err());
        assert!(uniform_pacing_schedule(MAX_SCHEDULE_FRAMES + 1, 0.1, 1.0, 0.0).is_err());
    }

    #[test]
    fn uniform_schedule() {
        assert_eq!(
            uniform_pacing_schedule(4, 0.02, 1.0, 1.0),
            Ok(vec![1.0, 1.02, 1.04, 1.06])
        );
        assert_eq!(
            uniform_pacing_schedule(3, 0.02, f64::INFINITY, 1.0),
            Ok(vec![1.0; 3])
        );
        assert_eq!(uniform_pacing_schedule(0, 0.02, 1.0, 1.0), Ok(vec![]));
        assert_eq!(uniform_pacing_schedule(3, 0.0, 1.0, 2.0), Ok(vec![2.0; 3]));
    }
}
