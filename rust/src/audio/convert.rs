//! Sample formats: int16 <-> float32, channel downmix and selection.
//!
//! Float samples are full scale at +-1.0; int16 `v` is `v / 32768`. The way back scales by
//! 32768, rounds to nearest (ties to even, like `numpy.rint`) and saturates to
//! `-32768..=32767`; NaN becomes 0.
#![forbid(unsafe_code)]

use crate::{Error, Result};

/// Most channels a stream may have.
pub const MAX_CHANNELS: usize = 64;

const INT16_SCALE: f32 = 1.0 / 32768.0;

/// Interleaved input samples in one of the accepted formats, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub enum Samples<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    I16(&'a [i16]),
    /// Raw 16-bit little-endian PCM; must hold an even number of bytes.
    Pcm16Le(&'a [u8]),
}

/// Check a channel count.
pub fn check_channels(channels: usize) -> Result<()> {
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(Error::invalid(format!(
            "channel count {channels} is out of range: expected 1 to {MAX_CHANNELS}"
        )));
    }
    Ok(())
}

#[inline]
fn pcm16(pair: &[u8]) -> f32 {
    f32::from(i16::from_le_bytes([pair[0], pair[1]])) * INT16_SCALE
}

impl<'a> Samples<'a> {
    /// Number of samples (all channels together).
    pub fn len(&self) -> Result<usize> {
        match *self {
            Samples::F32(s) => Ok(s.len()),
            Samples::F64(s) => Ok(s.len()),
            Samples::I16(s) => Ok(s.len()),
            Samples::Pcm16Le(b) => {
                if b.len() % 2 != 0 {
                    return Err(Error::invalid(format!(
                        "16-bit PCM needs an even number of bytes, got {}",
                        b.len()
                    )));
                }
                Ok(b.len() / 2)
            }
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        matches!(self.len(), Ok(0))
    }

    /// Number of frames for `channels` interleaved channels; an error if the samples do not
    /// divide into whole frames.
    pub fn frames(&self, channels: usize) -> Result<usize> {
        check_channels(channels)?;
        let len = self.len()?;
        if len % channels != 0 {
            return Err(Error::invalid(format!(
                "{len} samples do not divide into frames of {channels} channels"
            )));
        }
        Ok(len / channels)
    }

    /// All samples as float32 (copies).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        self.len()?;
        Ok(match *self {
            Samples::F32(s) => s.to_vec(),
            Samples::F64(s) => s.iter().map(|&v| v as f32).collect(),
            Samples::I16(s) => int16_to_float32(s),
            Samples::Pcm16Le(b) => b.chunks_exact(2).map(pcm16).collect(),
        })
    }

    /// Frames `from..to` of `channels` interleaved channels (in range: the caller checked).
    pub(crate) fn frames_range(&self, channels: usize, from: usize, to: usize) -> Samples<'a> {
        let (a, b) = (from * channels, to * channels);
        match *self {
            Samples::F32(s) => Samples::F32(&s[a..b]),
            Samples::F64(s) => Samples::F64(&s[a..b]),
            Samples::I16(s) => Samples::I16(&s[a..b]),
            Samples::Pcm16Le(s) => Samples::Pcm16Le(&s[2 * a..2 * b]),
        }
    }

    /// Append channel `channel` of `channels` interleaved channels, converted to float32, to
    /// `dst` (the caller has checked that the samples divide into frames).
    pub(crate) fn append_channel(&self, channel: usize, channels: usize, dst: &mut Vec<f32>) {
        if channels == 1 {
            match *self {
                Samples::F32(s) => dst.extend_from_slice(s),
                Samples::F64(s) => dst.extend(s.iter().map(|&v| v as f32)),
                Samples::I16(s) => dst.extend(s.iter().map(|&v| f32::from(v) * INT16_SCALE)),
                Samples::Pcm16Le(b) => dst.extend(b.chunks_exact(2).map(pcm16)),
            }
            return;
        }
        match *self {
            Samples::F32(s) => dst.extend(s.iter().skip(channel).step_by(channels).copied()),
            Samples::F64(s) => {
                dst.extend(s.iter().skip(channel).step_by(channels).map(|&v| v as f32));
            }
            Samples::I16(s) => dst.extend(
                s.iter()
                    .skip(channel)
                    .step_by(channels)
                    .map(|&v| f32::from(v) * INT16_SCALE),
            ),
            Samples::Pcm16Le(b) => {
                dst.extend(b.chunks_exact(2).skip(channel).step_by(channels).map(pcm16));
            }
        }
    }
}

/// int16 -> float32, `v / 32768` (exact).
pub fn int16_to_float32(src: &[i16]) -> Vec<f32> {
    src.iter().map(|&v| f32::from(v) * INT16_SCALE).collect()
}

/// float32 -> int16: scale by 32768, round to nearest (ties to even), saturate; NaN -> 0.
pub fn float32_to_int16(src: &[f32]) -> Vec<i16> {
    // `as` saturates at the i16 range and maps NaN to 0.
    src.iter()
        .map(|&v| (v * 32768.0).round_ties_even() as i16)
        .collect()
}

/// float64 -> int16, as [`float32_to_int16`] (rounded in float64).
pub fn float64_to_int16(src: &[f64]) -> Vec<i16> {
    src.iter()
        .map(|&v| (v * 32768.0).round_ties_even() as i16)
        .collect()
}

/// The mean of the channels of every frame (a mono float32 signal).
pub fn downmix(samples: Samples<'_>, channels: usize) -> Result<Vec<f32>> {
    samples.frames(channels)?;
    let owned;
    let data: &[f32] = match samples {
        Samples::F32(s) => s,
        other => {
            owned = other.to_f32()?;
            &owned
        }
    };
    if channels == 1 {
        return Ok(data.to_vec());
    }
    let scale = 1.0 / channels as f32;
    Ok(data
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() * scale)
        .collect())
}

/// One channel of an interleaved signal, as float32.
pub fn select_channel(samples: Samples<'_>, channels: usize, index: usize) -> Result<Vec<f32>> {
    samples.frames(channels)?;
    if index >= channels {
        return Err(Error::invalid(format!(
            "channel index {index} is out of range for {channels} channels"
        )));
    }
    let mut out = vec![Vec::new()];
    match samples {
        Samples::F32(s) => out[0].extend(s.iter().skip(index).step_by(channels).copied()),
        Samples::F64(s) => out[0].extend(s.iter().skip(index).step_by(channels).map(|&v| v as f32)),
        Samples::I16(s) => out[0].extend(
            s.iter()
                .skip(index)
                .step_by(channels)
                .map(|&v| f32::from(v) * INT16_SCALE),
        ),
        Samples::Pcm16Le(b) => {
            out[0].extend(b.chunks_exact(2).skip(index).step_by(channels).map(pcm16))
        }
    }
    Ok(out.swap_remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int16_round_trip_is_exact() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        assert_eq!(float32_to_int16(&int16_to_float32(&all)), all);
    }

    #[test]
    fn float_to_int16_rounds_and_saturates() {
        let half = 0.5 / 32768.0;
        let x = [
            1.0,
            -1.0,
            1.5,
            -7.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            half,       // 0.5 -> 0 (ties to even)
            3.0 * half, // 1.5 -> 2
            -half,      // -0.5 -> -0
            0.25 / 32768.0,
        ];
        assert_eq!(
            float32_to_int16(&x),
            [32767, -32768, 32767, -32768, 32767, -32768, 0, 0, 2, 0, 0]
        );
        assert_eq!(float64_to_int16(&[0.75 / 32768.0, 2.0]), [1, 32767]);
    }

    #[test]
    fn pcm_bytes_are_little_endian_and_must_be_even() {
        let bytes = [0x00, 0x80, 0xff, 0x7f, 0x01, 0x00];
        assert_eq!(
            Samples::Pcm16Le(&bytes).to_f32(),
            Ok(vec![-1.0, 32767.0 / 32768.0, 1.0 / 32768.0])
        );
        assert!(matches!(
            Samples::Pcm16Le(&bytes[..5]).len(),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn frames_need_whole_frames_and_sane_channel_counts() {
        let s = [0i16; 6];
        assert_eq!(Samples::I16(&s).frames(3), Ok(2));
        for bad in [0, 4, MAX_CHANNELS + 1] {
            assert!(Samples::I16(&s).frames(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn downmix_and_select() {
        let x = [0.5f32, -0.5, 1.0, 0.0, 0.25, 0.75];
        assert_eq!(downmix(Samples::F32(&x), 2), Ok(vec![0.0, 0.5, 0.5]));
        assert_eq!(
            select_channel(Samples::F32(&x), 2, 1),
            Ok(vec![-0.5, 0.0, 0.75])
        );
        assert_eq!(select_channel(Samples::F32(&x), 3, 2), Ok(vec![1.0, 0.75]));
        let pcm: Vec<u8> = [16384i16, -16384]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(downmix(Samples::Pcm16Le(&pcm), 2), Ok(vec![0.0]));
        assert_eq!(select_channel(Samples::Pcm16Le(&pcm), 2, 0), Ok(vec![0.5]));
        assert!(select_channel(Samples::F32(&x), 2, 2).is_err());
        assert!(downmix(Samples::F32(&x), 4).is_err());
    }

    #[test]
    fn deinterleave_matches_select() {
        let x: Vec<i16> = (0..60).map(|v| v * 100 - 3000).collect();
        let pcm: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f: Vec<f32> = x.iter().map(|&v| f32::from(v) / 32768.0).collect();
        let d: Vec<f64> = f.iter().map(|&v| f64::from(v)).collect();
        for samples in [
            Samples::I16(&x),
            Samples::Pcm16Le(&pcm),
            Samples::F32(&f),
            Samples::F64(&d),
        ] {
            for c in 0..3 {
                let mut got = vec![7.0];
                samples.append_channel(c, 3, &mut got);
                assert_eq!(got[0], 7.0);
                assert_eq!(Ok(got[1..].to_vec()), select_channel(samples, 3, c));
            }
            let mut mono = Vec::new();
            samples.append_channel(0, 1, &mut mono);
            assert_eq!(Ok(mono), samples.to_f32());
        }
    }
}
