//! Filter design for the polyphase resampler: one Kaiser-windowed sinc kernel, cut into phase
//! rows of equal length, shared between all resamplers of the same rates and quality.
//!
//! Time is counted in input samples. Output sample `j` of a stream sits at input time
//! `j * down / up` (`up / down` = `out_rate / in_rate` in lowest terms) and is
//! `sum_n x[n] * h(j * down / up - n)` with a symmetric kernel `h` of half-length `tau` input
//! samples. `tau = delay * down / up` is chosen so that the delay is a whole number of output
//! samples, which is what lets the streaming resampler trim it exactly.
//!
//! For an output whose time is `n_hi + phase / up` (`n_hi` the newest input sample it needs),
//! the coefficient of `x[n_hi - k]` is `h(k + phase / up - tau)`. A row stores these for
//! `k = taps - 1 .. 0`, oldest sample first, so that an output is a plain dot product of a row
//! with `taps` consecutive input samples.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::{Error, Result};

/// Lowest sample rate accepted, in Hz.
pub const MIN_RATE: u32 = 1_000;
/// Highest sample rate accepted, in Hz.
pub const MAX_RATE: u32 = 768_000;

/// Largest number of exact phases kept in a table; ratios whose reduced numerator is larger use
/// linear interpolation between [`interp_phases`] rows instead.
const MAX_EXACT_PHASES: usize = 1024;
/// Upper bound on a coefficient table, in `f32`s (32 MiB), whatever the rates.
const MAX_TABLE_LEN: usize = 1 << 23;
/// Rows are padded with zero coefficients to a multiple of this many taps (one AVX vector).
const TAP_MULTIPLE: usize = 8;

/// Resampling quality: the anti-alias filter's passband, stopband and attenuation.
///
/// Edges are fractions of the lower Nyquist frequency (`min(in_rate, out_rate) / 2`). Between
/// the passband edge and that Nyquist frequency the response rolls off, and content between
/// Nyquist and the stopband edge may alias, but only into that roll-off band (above the
/// passband edge); everything above the stopband edge is attenuated by at least the stated
/// amount. `VeryHigh` puts the stopband at Nyquist, so nothing aliases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// Passband to 0.75 Nyquist (6 kHz at 16 kHz out), stopband from 1.2 Nyquist, 100 dB.
    Fast,
    /// Passband to 0.85 Nyquist (6.8 kHz at 16 kHz out), stopband from 1.15 Nyquist, 110 dB.
    High,
    /// Passband to 0.88 Nyquist (7.04 kHz at 16 kHz out), stopband from Nyquist, 125 dB.
    VeryHigh,
}

impl Quality {
    /// Parse `"fast"`, `"hq"` or `"vhq"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "fast" => Ok(Quality::Fast),
            "hq" => Ok(Quality::High),
            "vhq" => Ok(Quality::VeryHigh),
            other => Err(Error::invalid(format!(
                "unknown resampling quality {other:?}: expected \"fast\", \"hq\" or \"vhq\""
            ))),
        }
    }

    /// The name [`Quality::parse`] accepts.
    pub fn name(self) -> &'static str {
        match self {
            Quality::Fast => "fast",
            Quality::High => "hq",
            Quality::VeryHigh => "vhq",
        }
    }

    /// (passband edge, stopband edge) as fractions of the lower Nyquist frequency, and the
    /// stopband attenuation in dB.
    pub fn spec(self) -> (f64, f64, f64) {
        match self {
            Quality::Fast => (0.75, 1.2, 100.0),
            Quality::High => (0.85, 1.15, 110.0),
            Quality::VeryHigh => (0.88, 1.0, 125.0),
        }
    }
}

/// How an output's phase selects its coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phases {
    /// One row per phase `0..up`: every output uses exactly the coefficients of its time.
    Exact,
    /// `n + 1` rows at phases `i / n`; an output blends the two rows around its phase linearly.
    Interpolated(usize),
}

/// The coefficient table of one (input rate, output rate, quality) triple.
#[derive(Debug)]
pub(crate) struct FilterBank {
    /// Output/input ratio in lowest terms: `up / down`.
    pub up: u64,
    pub down: u64,
    /// Coefficients per row (a multiple of [`TAP_MULTIPLE`]).
    pub taps: usize,
    /// Group delay of the filter, in output samples.
    pub delay: u64,
    pub phases: Phases,
    /// `rows * taps` coefficients, row after row.
    pub coeffs: Vec<f32>,
}

impl FilterBank {
    /// The coefficients of row `index`.
    #[inline]
    pub fn row(&self, index: usize) -> &[f32] {
        &self.coeffs[index * self.taps..(index + 1) * self.taps]
    }

    /// Number of rows.
    #[cfg(test)]
    pub fn rows(&self) -> usize {
        self.coeffs.len() / self.taps
    }
}

pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Check that a sample rate is one the resampler accepts.
pub fn check_rate(what: &str, rate: u32) -> Result<()> {
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(Error::invalid(format!(
            "{what} {rate} Hz is out of range: sample rates must be between {MIN_RATE} and {MAX_RATE} Hz"
        )));
    }
    Ok(())
}

/// Zeroth-order modified Bessel function of the first kind (power series; converges fast for
/// the arguments a Kaiser window uses).
fn bessel_i0(x: f64) -> f64 {
    let half_sq = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut k = 1.0;
    while term > sum * 1e-17 {
        term *= half_sq / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

/// Kaiser window shape parameter for a stopband attenuation in dB (Kaiser's formula).
fn kaiser_beta(atten_db: f64) -> f64 {
    if atten_db > 50.0 {
        0.1102 * (atten_db - 8.7)
    } else if atten_db >= 21.0 {
        0.5842 * (atten_db - 21.0).powf(0.4) + 0.07886 * (atten_db - 21.0)
    } else {
        0.0
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// The continuous kernel: a sinc of cutoff `fc` (cycles per input sample) under a Kaiser
/// window of half-length `tau` (input samples).
#[derive(Debug, Clone, Copy)]
struct Kernel {
    fc: f64,
    tau: f64,
    beta: f64,
    i0_beta: f64,
}

impl Kernel {
    fn at(&self, t: f64) -> f64 {
        let r = t / self.tau;
        if r.abs() > 1.0 {
            return 0.0;
        }
        let window = bessel_i0(self.beta * (1.0 - r * r).sqrt()) / self.i0_beta;
        2.0 * self.fc * sinc(2.0 * self.fc * t) * window
    }
}

/// Number of interpolated phases that keeps the error of linear interpolation between rows
/// near -130 dB for a kernel of cutoff `fc` cycles per input sample: the error of linear
/// interpolation of a band-limited kernel is about `(2 pi fc / n)^2 / 8`.
fn interp_phases(fc: f64) -> usize {
    let wanted = (4096.0 * fc).ceil() as usize;
    wanted.next_power_of_two().clamp(64, 2048)
}

/// Design the filter bank for `in_rate -> out_rate` (rates already checked, and different).
pub(crate) fn design(in_rate: u32, out_rate: u32, quality: Quality) -> Result<FilterBank> {
    check_rate("input rate", in_rate)?;
    check_rate("output rate", out_rate)?;
    let g = gcd(u64::from(in_rate), u64::from(out_rate));
    let up = u64::from(out_rate) / g;
    let down = u64::from(in_rate) / g;
    let fs_in = f64::from(in_rate);

    let (pass, stop, atten) = quality.spec();
    let nyquist = f64::from(in_rate.min(out_rate)) / 2.0;
    let (f_pass, f_stop) = (pass * nyquist, stop * nyquist);
    // Kaiser's length estimate, in input samples, for the transition band f_pass..f_stop.
    let length = (atten - 7.95) * fs_in / (14.357 * (f_stop - f_pass));
    // Half-length rounded up so that the delay is a whole number of output samples:
    // tau = delay * down / up input samples.
    let delay = ((length / 2.0) * up as f64 / down as f64).ceil().max(1.0) as u64;
    let tau = delay as f64 * down as f64 / up as f64;
    // Coefficients of x[n_hi - k] are non-zero for k + frac - tau in [-tau, tau], k <= 2 tau.
    let needed = (2.0 * tau).floor() as usize + 1;
    let taps = needed.div_ceil(TAP_MULTIPLE) * TAP_MULTIPLE;

    let beta = kaiser_beta(atten);
    let kernel = Kernel {
        fc: (f_pass + f_stop) / 2.0 / fs_in,
        tau,
        beta,
        i0_beta: bessel_i0(beta),
    };

    let exact_rows = usize::try_from(up).unwrap_or(usize::MAX);
    let (phases, row_fracs): (Phases, Vec<f64>) =
        if exact_rows <= MAX_EXACT_PHASES && exact_rows.saturating_mul(taps) <= MAX_TABLE_LEN {
            (
                Phases::Exact,
                (0..up).map(|phase| phase as f64 / up as f64).collect(),
            )
        } else {
            let n = interp_phases(kernel.fc);
            (
                Phases::Interpolated(n),
                (0..=n).map(|i| i as f64 / n as f64).collect(),
            )
        };
    let table_len = row_fracs.len().saturating_mul(taps);
    if table_len > MAX_TABLE_LEN {
        return Err(Error::invalid(format!(
            "resampling {in_rate} Hz -> {out_rate} Hz needs a {table_len}-coefficient filter table, \
             more than the limit of {MAX_TABLE_LEN}"
        )));
    }

    let mut coeffs = Vec::with_capacity(table_len);
    let mut row = vec![0.0f64; taps];
    for frac in row_fracs {
        for (i, c) in row.iter_mut().enumerate() {
            let k = (taps - 1 - i) as f64;
            *c = kernel.at(k + frac - tau);
        }
        // Unity gain at DC for every phase (the raw sums differ from 1 only by the stopband
        // leakage, so this changes nothing else).
        let sum: f64 = row.iter().sum();
        coeffs.extend(row.iter().map(|c| (c / sum) as f32));
    }

    Ok(FilterBank {
        up,
        down,
        taps,
        delay,
        phases,
        coeffs,
    })
}

type BankKey = (u32, u32, Quality);

/// Filter banks kept after their last user is gone, so that one-shot calls and short-lived
/// streams do not design the same filter again (a design costs about as much as resampling
/// a second of audio).
const CACHED_BANKS: usize = 32;

/// The filter bank for these rates, shared with every resampler that uses the same one (a
/// 44.1 kHz -> 16 kHz table is 85 KiB; a thousand streams share one).
pub(crate) fn shared_bank(
    in_rate: u32,
    out_rate: u32,
    quality: Quality,
) -> Result<Arc<FilterBank>> {
    static CACHE: OnceLock<Mutex<HashMap<BankKey, Arc<FilterBank>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (in_rate, out_rate, quality);
    if let Some(bank) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok(Arc::clone(bank));
    }
    // Designed outside the lock: two threads racing here both design, and one table is kept.
    let bank = Arc::new(design(in_rate, out_rate, quality)?);
    let mut map = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if map.len() >= CACHED_BANKS {
        // Forget the banks no resampler holds; if all are in use, just don't cache this one.
        map.retain(|_, b| Arc::strong_count(b) > 1);
    }
    if map.len() < CACHED_BANKS {
        map.insert(key, Arc::clone(&bank));
    }
    Ok(bank)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bank(in_rate: u32, out_rate: u32, quality: Quality) -> FilterBank {
        match design(in_rate, out_rate, quality) {
            Ok(bank) => bank,
            Err(err) => panic!("design {in_rate} -> {out_rate}: {err}"),
        }
    }

    #[test]
    fn bessel_matches_known_values() {
        // I0(0) = 1, I0(1) = 1.2660658777520082, I0(10) = 2815.716628466254.
        assert!((bessel_i0(0.0) - 1.0).abs() < 1e-15);
        assert!((bessel_i0(1.0) - 1.266_065_877_752_008_2).abs() < 1e-12);
        assert!((bessel_i0(10.0) / 2_815.716_628_466_254 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn quality_names_round_trip() {
        for q in [Quality::Fast, Quality::High, Quality::VeryHigh] {
            assert_eq!(Quality::parse(q.name()), Ok(q));
        }
        assert!(matches!(
            Quality::parse("HQ"),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn rates_out_of_range_are_rejected() {
        for (a, b) in [(0, 16_000), (16_000, 0), (999, 16_000), (16_000, 768_001)] {
            assert!(matches!(
                design(a, b, Quality::High),
                Err(Error::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn rows_have_unity_dc_gain_and_padding_is_zero() {
        for (a, b) in [
            (48_000, 16_000),
            (44_100, 16_000),
            (8_000, 16_000),
            (44_101, 16_000),
        ] {
            let fb = bank(a, b, Quality::High);
            assert_eq!(fb.taps % TAP_MULTIPLE, 0);
            for r in 0..fb.rows() {
                let sum: f64 = fb.row(r).iter().map(|&c| f64::from(c)).sum();
                assert!((sum - 1.0).abs() < 1e-5, "{a}->{b} row {r}: {sum}");
            }
            // The padding sits at the oldest end of row 0 (phase 0): h(k - tau) = 0, k > 2 tau.
            let tau = fb.delay as f64 * fb.down as f64 / fb.up as f64;
            let needed = (2.0 * tau).floor() as usize + 1;
            assert!(fb.row(0)[..fb.taps - needed].iter().all(|&c| c == 0.0));
        }
    }

    #[test]
    fn table_kind_follows_the_ratio() {
        assert_eq!(bank(48_000, 16_000, Quality::High).rows(), 1);
        assert_eq!(bank(44_100, 16_000, Quality::High).rows(), 160);
        assert_eq!(bank(8_000, 16_000, Quality::High).rows(), 2);
        let odd = bank(44_101, 16_000, Quality::High);
        assert!(matches!(odd.phases, Phases::Interpolated(n) if odd.rows() == n + 1));
    }

    #[test]
    fn delay_stays_within_five_ms_for_speech_rates() {
        for in_rate in [8_000u32, 11_025, 22_050, 32_000, 44_100, 48_000, 96_000] {
            for q in [Quality::Fast, Quality::High] {
                let fb = bank(in_rate, 16_000, q);
                let ms = fb.delay as f64 * 1000.0 / 16_000.0;
                assert!(ms <= 5.0, "{in_rate} {q:?}: {ms} ms");
            }
        }
        // vhq has no aliasing band; its delay stays under 5 ms when downsampling to 16 kHz.
        let fb = bank(48_000, 16_000, Quality::VeryHigh);
        assert!(fb.delay as f64 * 1000.0 / 16_000.0 <= 5.0);
    }

    #[test]
    fn banks_are_shared() {
        let a = shared_bank(48_000, 16_000, Quality::Fast).ok();
        let b = shared_bank(48_000, 16_000, Quality::Fast).ok();
        match (a, b) {
            (Some(a), Some(b)) => assert!(Arc::ptr_eq(&a, &b)),
            _ => panic!("design failed"),
        }
    }
}
