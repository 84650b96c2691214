//! Audio: sample conversion (int16 <-> float32, downmix, channel selection) and a streaming
//! polyphase resampler (any rate to any rate, e.g. 8 / 44.1 / 48 kHz -> 16 kHz for the
//! speech-to-text model).
//!
//! # The resampler
//!
//! A Kaiser-windowed sinc low-pass cut into phase rows; [`Quality`] picks the passband, the
//! stopband and the attenuation. Ratios whose reduced numerator `out_rate / gcd` is at most
//! 1024 (every common rate) use exact phases; others interpolate linearly between 64-2048
//! rows (error near -130 dB). The delay is rounded up to a whole number of output samples,
//! which the stream trims exactly: output `j` sits at input time `j * in_rate / out_rate`. A
//! live stream lags its input by that group delay only: every output is emitted as soon as its
//! last input sample arrives (no block buffering).
//!
//! Measured at 16 kHz out through the resampler (tone sweeps; `tests/test_audio.py` and the
//! unit tests assert the bounds):
//!
//! | quality | delay 48 / 44.1 kHz in | delay 8 kHz in | flat (0.01 dB) to | -3 dB at | rejection from 8 kHz on (48 / 44.1 kHz in) | 8 kHz in: images |
//! |---|---|---|---|---|---|---|
//! | `fast` | 15 samples, 0.94 ms | 29, 1.8 ms | 6.28 kHz | 7.5 kHz | 8-9.6 kHz aliases into 6.4-8 kHz; >= 100 dB from 9.6 kHz | 3.2-4 kHz tones image at 4-4.8 kHz |
//! | `hq` (default) | 39 / 40 samples, 2.4 / 2.5 ms | 78, 4.9 ms | 6.74 kHz | 7.21 kHz | >= 102 dB (design), 108 dB worst tone measured | >= 103 dB |
//! | `vhq` | 68 / 69 samples, 4.25 / 4.3 ms | 136, 8.5 ms | 7.14 kHz | 7.45 kHz | >= 125 dB (design), 128 dB worst tone measured | >= 126 dB |
//!
//! `hq` meets the bounds like for like with soxr HQ (whose stopband also starts at
//! the output Nyquist; soxr's stream holds 36-40 ms): >= 100 dB at and above the output
//! Nyquist, flat to more than 0.4 x out_rate, -3 dB at 0.45 x out_rate, <= 5 ms delay.
//!
//! # Speed
//!
//! An output costs one multiply-add per tap: 235 taps from 48 kHz, 216 from 44.1 kHz, 79 from
//! 8 kHz (`hq`). The kernels (`kernel.rs`) are written once over `pulp::Simd` and dispatched
//! at run time (AVX2+FMA, NEON, scalar), so the crate stays free of `unsafe`: eight outputs
//! share each coefficient load with eight independent FMA chains; integer decimation
//! (48 kHz -> 16 kHz) reads windows with aligned loads (the row is stored in eight shifted
//! variants) and neighbouring outputs share them; integer upsampling (8 kHz -> 16 kHz) puts
//! consecutive outputs in vector lanes and loads each input vector once for several taps.
//! A long mono float32 chunk (`resample` on a whole buffer) is read in place when its memory
//! alignment allows (always, except for decimation, which needs frame `f` at a float address
//! `f + 4 (mod 8)`: glibc's and numpy's large buffers); other input is copied into the
//! history a segment (8192 frames) at a time. Outputs are bit-identical whatever the chunking
//! and the buffer addresses.
//!
//! Why not rubato (5.x): its `Async` sinc resampler (nearest-phase mode at exact phases,
//! 160-256 taps) meets the quality and delay targets but ran at 62-77 M input samples/s for
//! 48 kHz -> 16 kHz against soxr HQ's 268 M/s (per-output overhead of its generic inner
//! loop), and its `Fft` resampler holds a whole FFT block before any output (441 input
//! samples, 10 ms, at 44.1 kHz, plus half a block of filter delay).
#![forbid(unsafe_code)]

mod convert;
mod filter;
mod kernel;
mod resample;

pub use convert::{
    check_channels, downmix, float32_to_int16, float64_to_int16, int16_to_float32, select_channel,
    Samples, MAX_CHANNELS,
};
pub use filter::{check_rate, Quality, MAX_RATE, MIN_RATE};
pub use resample::{expected_frames, resample, Resampler};

#[cfg(test)]
mod tests;
