//! Filter design for the polyphase resampler: one Kaiser-windowed sinc kernel, cut into phase
//! rows, shared between all resamplers of the same rates and quality.
//!
//! Time is counted in input samples. Output sample `u` of a stream (counted from the first
//! warm-up sample) sits at input time `u * down / up` (`up / down` = `out_rate / in_rate` in
//! lowest terms); its newest input sample is `newest = floor(u * down / up)` and its phase is
//! `frac = (u * down mod up) / up`. With delay compensation the output is
//! `sum_n x[n] * h(newest + frac - center - n)`: a symmetric kernel `h` of half-width `half`
//! centred `center` input samples back. `center = delay * down / up` is the smallest value on
//! the output grid not below `half`, so the delay is a whole number of output samples (which
//! the stream trims exactly) and no future input is needed.
//!
//! An output reads a *window* of `span` consecutive input frames ending `lead` frames before
//! its newest one: frames `newest - lead - span + 1 ..= newest - lead`. A row stores the
//! window's coefficients oldest first, so an output is a dot product of a row with its window.
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
/// Floats per SIMD vector the tables are laid out for (one AVX vector).
pub(crate) const LANES: usize = 8;
/// Decimation windows are read with vector loads aligned to `LANES` floats when frame `f` sits
/// at a float address `≡ f + ALIGN_PHASE (mod LANES)`. 4 matches buffers whose first frame is
/// 16 bytes past a 32-byte boundary: glibc's large allocations, hence most numpy arrays and
/// Rust vectors of audio, which are then read in place.
pub(crate) const ALIGN_PHASE: i64 = 4;

/// Resampling quality: the anti-alias (or anti-image) filter's passband, stopband and
/// attenuation.
///
/// Edges are fractions of the lower Nyquist frequency (`min(in_rate, out_rate) / 2`). Every
/// frequency above the stopband edge is attenuated by at least the stated amount; between the
/// passband edge and the stopband edge the response rolls off. `High` and `VeryHigh` put the
/// stopband edge at Nyquist, so nothing aliases (or images) by less than their attenuation;
/// `Fast` lets content between Nyquist and 1.2 Nyquist alias into its roll-off band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// Roll-off from 0.75 Nyquist, stopband from 1.2 Nyquist, 100 dB: the shortest delay.
    Fast,
    /// Roll-off from 0.83 Nyquist, stopband from Nyquist, 103 dB (the default).
    High,
    /// Roll-off from 0.88 Nyquist, stopband from Nyquist, 125 dB.
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
    /// stopband attenuation in dB. The passband edge sets the filter length (Kaiser's
    /// estimate); the slack from rounding the length up widens the passband.
    pub fn spec(self) -> (f64, f64, f64) {
        match self {
            Quality::Fast => (0.75, 1.2, 100.0),
            Quality::High => (0.83, 1.0, 103.0),
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

/// How the table is laid out for the kernels (see `kernel.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One row per phase, `span` (a multiple of [`LANES`]) coefficients long: each output is a
    /// horizontal dot product of its row with its window.
    Rows,
    /// Integer decimation (`up == 1`, e.g. 48 kHz -> 16 kHz): the single row in [`LANES`]
    /// variants, one per alignment of the window start (see [`Shift`]), so that all but the
    /// first and last vector loads of a window are aligned.
    Shifted,
    /// Integer upsampling (`down == 1`, e.g. 8 kHz -> 16 kHz): rows of `span` coefficients; the
    /// outputs of one phase have windows one frame apart, so `LANES` of them are computed in the
    /// lanes of one vector (no horizontal sums).
    Vertical,
}

/// The vector structure of one [`Layout::Shifted`] variant, for windows whose first frame `f`
/// has `(f + ALIGN_PHASE) mod LANES == q`: vector 0 is loaded at the window start and holds
/// taps `0..gap`; vectors `1..=middle` are the aligned ones, at taps `gap + LANES * i`; the
/// last vector is loaded at tap `span - LANES`, and holds the taps not covered before. Lanes
/// that hold no tap have zero coefficients; no load reaches outside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Shift {
    pub gap: usize,
    pub middle: usize,
}

impl Shift {
    fn new(q: usize, span: usize) -> Self {
        let gap = LANES - q;
        Shift {
            gap,
            middle: (span - gap) / LANES,
        }
    }

    /// Vectors in the variant's row.
    pub fn vectors(self) -> usize {
        self.middle + 2
    }
}

/// The coefficient table of one (input rate, output rate, quality) triple.
#[derive(Debug)]
pub(crate) struct FilterBank {
    /// Output/input ratio in lowest terms: `up / down`.
    pub up: u64,
    pub down: u64,
    /// Input frames one output reads.
    pub span: usize,
    /// Frames between the newest frame of a window and the newest frame of its output.
    pub lead: usize,
    /// Group delay of the filter, in output samples.
    pub delay: u64,
    pub phases: Phases,
    pub layout: Layout,
    /// `Layout::Shifted` only: the variant for each alignment.
    pub shifts: [Shift; LANES],
    /// Floats from one row to the next (a multiple of [`LANES`] except for `Vertical`).
    stride: usize,
    /// Where row 0 starts in `coeffs` (rows start on 32-byte boundaries).
    offset: usize,
    coeffs: Vec<f32>,
}

impl FilterBank {
    /// The coefficients of row `index` (`stride` floats; for `Shifted`, `index` is the
    /// alignment `q` and the row holds `shifts[q].vectors()` vectors).
    #[inline]
    pub fn row(&self, index: usize) -> &[f32] {
        let start = self.offset + index * self.stride;
        &self.coeffs[start..start + self.stride]
    }

    /// Number of rows.
    #[cfg(test)]
    pub fn rows(&self) -> usize {
        (self.coeffs.len() - self.offset) / self.stride
    }

    /// Coefficient of tap `t` (window frame `t`, oldest first) for the phase of `row` (`row` is
    /// the phase; 0 for `Shifted`): the plain kernel, whatever the layout.
    #[cfg(test)]
    pub fn tap(&self, row: usize, t: usize) -> f32 {
        match self.layout {
            Layout::Rows | Layout::Vertical => self.row(row)[t],
            Layout::Shifted => {
                // Variant 0 (gap = LANES): vector 0 holds taps 0..8, then aligned vectors.
                let shift = self.shifts[0];
                let covered = shift.gap + LANES * shift.middle;
                let r = self.row(0);
                if t < covered {
                    r[t]
                } else {
                    r[(shift.middle + 1) * LANES + t + LANES - self.span]
                }
            }
        }
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

/// Kaiser's length estimate: the window length (in samples) of a filter with this stopband
/// attenuation (dB) and transition width (cycles per sample).
fn kaiser_length(atten_db: f64, transition: f64) -> f64 {
    (atten_db - 7.95) / (14.357 * transition)
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
/// window of half-width `half` (input samples), zero from `|t| >= half` on.
#[derive(Debug, Clone, Copy)]
struct Kernel {
    fc: f64,
    half: f64,
    beta: f64,
    i0_beta: f64,
}

impl Kernel {
    fn at(&self, t: f64) -> f64 {
        let r = t / self.half;
        if r.abs() >= 1.0 {
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
    // Taps the Kaiser estimate needs, rounded to what the kernels compute anyway.
    let needed = kaiser_length(atten, (f_stop - f_pass) / fs_in).ceil() as usize + 1;
    let exact_rows = usize::try_from(up).unwrap_or(usize::MAX);
    let exact = exact_rows <= MAX_EXACT_PHASES;
    let (layout, span) = if exact && up == 1 {
        (Layout::Shifted, needed.max(3 * LANES))
    } else if exact && down == 1 {
        (Layout::Vertical, needed.max(2))
    } else {
        (Layout::Rows, needed.max(2 * LANES).next_multiple_of(LANES))
    };
    // The window spans `span` frames: half-width (span - 1) / 2. Keep the attenuation and the
    // stopband edge; the longer window narrows the transition band, widening the passband.
    let span_u64 = span as u64;
    let half = (span - 1) as f64 / 2.0;
    let transition = (atten - 7.95) / (14.357 * 2.0 * half);
    let fc = f_stop / fs_in - transition / 2.0;
    // center = delay * down / up >= half; lead = floor(center - half) (both exact rationals).
    let delay = ((span_u64 - 1) * up).div_ceil(2 * down).max(1);
    let lead = usize::try_from((2 * delay * down - (span_u64 - 1) * up) / (2 * up))
        .map_err(|_| Error::invalid("resampling filter too long"))?;
    let center = delay as f64 * down as f64 / up as f64;

    let beta = kaiser_beta(atten);
    let kernel = Kernel {
        fc,
        half,
        beta,
        i0_beta: bessel_i0(beta),
    };

    let (phases, row_fracs): (Phases, Vec<f64>) = if exact {
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
    let shifts: [Shift; LANES] = std::array::from_fn(|q| Shift::new(q, span));
    let (rows, stride) = match layout {
        Layout::Shifted => (LANES, shifts[LANES - 1].vectors() * LANES),
        Layout::Rows | Layout::Vertical => (row_fracs.len(), span),
    };
    let table_len = rows.saturating_mul(stride);
    if table_len > MAX_TABLE_LEN {
        return Err(Error::invalid(format!(
            "resampling {in_rate} Hz -> {out_rate} Hz needs a {table_len}-coefficient filter table, \
             more than the limit of {MAX_TABLE_LEN}"
        )));
    }

    // Rows start on a 32-byte boundary: allocate once, skip to the first aligned float.
    let mut coeffs: Vec<f32> = Vec::with_capacity(table_len + LANES);
    let offset = (LANES - (coeffs.as_ptr().addr() / 4) % LANES) % LANES;
    coeffs.resize(offset, 0.0);
    let mut row = vec![0.0f64; span];
    for &frac in &row_fracs {
        for (t, c) in row.iter_mut().enumerate() {
            // Window frame t is `lead + span - 1 - t` frames before the newest.
            let k = (lead + span - 1 - t) as f64;
            *c = kernel.at(k + frac - center);
        }
        // Unity gain at DC for every phase (the raw sums differ from 1 only by the stopband
        // leakage, so this changes nothing else).
        let sum: f64 = row.iter().sum();
        let taps = row.iter().map(|c| (c / sum) as f32);
        match layout {
            Layout::Rows | Layout::Vertical => coeffs.extend(taps),
            Layout::Shifted => {
                let taps: Vec<f32> = taps.collect();
                for shift in shifts {
                    let start = coeffs.len();
                    coeffs.resize(start + stride, 0.0);
                    let out = &mut coeffs[start..];
                    let covered = shift.gap + LANES * shift.middle;
                    out[..shift.gap].copy_from_slice(&taps[..shift.gap]);
                    out[LANES..LANES + covered - shift.gap]
                        .copy_from_slice(&taps[shift.gap..covered]);
                    let last = (shift.middle + 1) * LANES;
                    for (lane, c) in out[last..last + LANES].iter_mut().enumerate() {
                        let t = span - LANES + lane;
                        if t >= covered {
                            *c = taps[t];
                        }
                    }
                }
            }
        }
    }

    Ok(FilterBank {
        up,
        down,
        span,
        lead,
        delay,
        phases,
        layout,
        shifts,
        stride,
        offset,
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

    /// |H(f)| of one phase (row) for an input frequency `f` (cycles per input sample), in f64
    /// from the stored f32 coefficients.
    fn phase_gain(fb: &FilterBank, row: usize, f: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for t in 0..fb.span {
            let c = f64::from(fb.tap(row, t));
            let a = 2.0 * std::f64::consts::PI * f * t as f64;
            re += c * a.cos();
            im += c * a.sin();
        }
        re.hypot(im)
    }

    /// Gain of the interleaved prototype (all `up` phases, at the output rate) at `f` cycles per
    /// input sample: what images of an upsampled tone see.
    fn prototype_gain(fb: &FilterBank, f: f64) -> f64 {
        let up = fb.up as usize;
        let (mut re, mut im) = (0.0, 0.0);
        for r in 0..up {
            for t in 0..fb.span {
                let c = f64::from(fb.tap(r, t));
                let time = r as f64 / up as f64 - t as f64;
                let a = 2.0 * std::f64::consts::PI * f * time;
                re += c * a.cos();
                im += c * a.sin();
            }
        }
        re.hypot(im) / up as f64
    }

    fn db(gain: f64) -> f64 {
        20.0 * gain.log10()
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
    fn rows_have_unity_dc_gain_and_start_aligned() {
        for (a, b) in [
            (48_000, 16_000),
            (44_100, 16_000),
            (8_000, 16_000),
            (44_101, 16_000),
            (96_000, 16_000),
        ] {
            for q in [Quality::Fast, Quality::High, Quality::VeryHigh] {
                let fb = bank(a, b, q);
                assert_eq!(fb.row(0).as_ptr().addr() % 32, 0);
                let phases = if fb.layout == Layout::Shifted {
                    1
                } else {
                    fb.rows()
                };
                for r in 0..phases {
                    let sum: f64 = (0..fb.span).map(|t| f64::from(fb.tap(r, t))).sum();
                    assert!((sum - 1.0).abs() < 1e-5, "{a}->{b} row {r}: {sum}");
                }
                if fb.layout == Layout::Shifted {
                    // Every variant holds each tap exactly once, in the lane it is loaded with.
                    for (q, shift) in fb.shifts.iter().enumerate() {
                        let row = fb.row(q);
                        let mut taps = vec![0.0f32; fb.span];
                        for (lane, &c) in row[..shift.gap].iter().enumerate() {
                            taps[lane] = c;
                        }
                        for i in 0..shift.middle * LANES {
                            taps[shift.gap + i] = row[LANES + i];
                        }
                        let last = (shift.middle + 1) * LANES;
                        let covered = shift.gap + LANES * shift.middle;
                        for lane in 0..LANES {
                            let t = fb.span - LANES + lane;
                            if t >= covered {
                                taps[t] = row[last + lane];
                            } else {
                                assert_eq!(row[last + lane], 0.0);
                            }
                        }
                        assert!(row[shift.gap..LANES].iter().all(|&c| c == 0.0));
                        for (t, &c) in taps.iter().enumerate() {
                            assert_eq!(c, fb.tap(0, t), "{a}->{b} variant {q} tap {t}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn layout_follows_the_ratio() {
        let fb = bank(48_000, 16_000, Quality::High);
        assert_eq!((fb.layout, fb.rows()), (Layout::Shifted, LANES));
        let fb = bank(44_100, 16_000, Quality::High);
        assert_eq!(
            (fb.layout, fb.rows(), fb.span % LANES),
            (Layout::Rows, 160, 0)
        );
        let fb = bank(8_000, 16_000, Quality::High);
        assert_eq!((fb.layout, fb.rows()), (Layout::Vertical, 2));
        let odd = bank(44_101, 16_000, Quality::High);
        assert!(matches!(odd.phases, Phases::Interpolated(n) if odd.rows() == n + 1));
        assert_eq!(odd.layout, Layout::Rows);
    }

    #[test]
    fn window_never_needs_future_input() {
        for (a, b) in [
            (48_000, 16_000),
            (44_100, 16_000),
            (8_000, 16_000),
            (44_101, 16_000),
        ] {
            for q in [Quality::Fast, Quality::High, Quality::VeryHigh] {
                let fb = bank(a, b, q);
                // The kernel is centred `center` frames back, on the output grid, no closer
                // than its half-width (no future input) and less than one output step further
                // (no needless delay); `lead` frames of the newest ones are outside its reach.
                let center = fb.delay as f64 * fb.down as f64 / fb.up as f64;
                let half = (fb.span - 1) as f64 / 2.0;
                assert!(center >= half, "{a}->{b} {q:?}");
                assert!(
                    center - half < fb.down as f64 / fb.up as f64 + 1e-9,
                    "{a}->{b} {q:?}"
                );
                assert!(fb.lead as f64 <= center - half && center - half < fb.lead as f64 + 1.0);
            }
        }
    }

    /// The default quality's stopband starts at the output Nyquist: >= 100 dB at every
    /// frequency from there to the input Nyquist, for every phase; the passband is flat to
    /// 0.01 dB up to 0.4 of the output rate and the -3 dB point is at 0.45 of it or above.
    #[test]
    fn default_quality_response() {
        for in_rate in [48_000u32, 44_100, 32_000, 22_050, 96_000] {
            let fb = bank(in_rate, 16_000, Quality::High);
            let fs = f64::from(in_rate);
            let phases: Vec<usize> = (0..fb.rows().min(8)).map(|i| i * fb.rows() / 8).collect();
            let phases = if fb.layout == Layout::Shifted {
                vec![0]
            } else {
                phases
            };
            for &r in &phases {
                let steps = 400;
                for i in 0..=steps {
                    let f = 8_000.0 + (fs / 2.0 - 8_000.0) * i as f64 / steps as f64;
                    let g = db(phase_gain(&fb, r, f / fs));
                    assert!(g < -100.0, "{in_rate} row {r} {f} Hz: {g} dB");
                }
                for i in 0..=64 {
                    let f = 6_400.0 * i as f64 / 64.0;
                    let g = db(phase_gain(&fb, r, f / fs));
                    assert!(g.abs() < 0.01, "{in_rate} row {r} {f} Hz: {g} dB");
                }
                let g = db(phase_gain(&fb, r, 7_200.0 / fs));
                assert!(g > -3.0, "{in_rate} row {r} 7.2 kHz: {g} dB");
            }
        }
        // 8 kHz -> 16 kHz: images (at and above 4 kHz) >= 100 dB down, flat to 3.2 kHz.
        let fb = bank(8_000, 16_000, Quality::High);
        for i in 0..=400 {
            let f = 4_000.0 + 3_950.0 * f64::from(i) / 400.0;
            let g = db(prototype_gain(&fb, f / 8_000.0));
            assert!(g < -100.0, "8k image {f} Hz: {g} dB");
        }
        for i in 0..=32 {
            let f = 3_200.0 * f64::from(i) / 32.0;
            let g = db(prototype_gain(&fb, f / 8_000.0));
            assert!(g.abs() < 0.01, "8k {f} Hz: {g} dB");
        }
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
        // vhq's longer filter stays under 5 ms when downsampling to 16 kHz.
        for in_rate in [44_100u32, 48_000] {
            let fb = bank(in_rate, 16_000, Quality::VeryHigh);
            assert!(fb.delay as f64 * 1000.0 / 16_000.0 <= 5.0);
        }
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
