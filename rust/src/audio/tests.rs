//! Resampler tests: the fast streaming path against a plain f64 evaluation of the same
//! filter, chunking invariance, lengths, alignment, and the frequency response.
#![forbid(unsafe_code)]

use super::filter::{shared_bank, FilterBank, Phases};
use super::*;
use crate::Error;

fn make(in_rate: u32, out_rate: u32, channels: usize, quality: Quality, comp: bool) -> Resampler {
    match Resampler::new(in_rate, out_rate, channels, quality, comp) {
        Ok(r) => r,
        Err(err) => panic!("{in_rate} -> {out_rate}: {err}"),
    }
}

fn run_whole(r: &mut Resampler, x: &[f32]) -> Vec<f32> {
    let mut out = match r.process(Samples::F32(x)) {
        Ok(out) => out,
        Err(err) => panic!("{err}"),
    };
    out.extend(r.flush());
    out
}

/// Deterministic pseudo-random numbers (xorshift), no extra crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..n).map(|_| rng.uniform() * 0.5).collect()
}

fn bank(in_rate: u32, out_rate: u32, quality: Quality) -> std::sync::Arc<FilterBank> {
    match shared_bank(in_rate, out_rate, quality) {
        Ok(b) => b,
        Err(err) => panic!("{err}"),
    }
}

/// Output `j` (delay compensated) of channel `c`, straight from the definition, in f64.
fn reference(bank: &FilterBank, x: &[f32], channels: usize, c: usize, j: u64) -> f64 {
    let t = u128::from(j + bank.delay) * u128::from(bank.down);
    let newest = (t / u128::from(bank.up)) as i64;
    let phase = (t % u128::from(bank.up)) as u64;
    let frames = (x.len() / channels) as i64;
    let coeff = |i: usize| -> f64 {
        match bank.phases {
            Phases::Exact => f64::from(bank.tap(phase as usize, i)),
            Phases::Interpolated(n) => {
                let pos = phase as f64 * n as f64 / bank.up as f64;
                let row = pos.floor() as usize;
                let frac = pos - row as f64;
                let a = f64::from(bank.tap(row, i));
                let b = f64::from(bank.tap(row + 1, i));
                a + frac * (b - a)
            }
        }
    };
    let first = newest - (bank.lead + bank.span) as i64 + 1;
    (0..bank.span)
        .map(|i| {
            let n = first + i as i64;
            if (0..frames).contains(&n) {
                coeff(i) * f64::from(x[n as usize * channels + c])
            } else {
                0.0
            }
        })
        .sum()
}

#[test]
fn streaming_output_matches_the_definition() {
    let cases: &[(u32, u32, usize)] = &[
        (48_000, 16_000, 1),
        (44_100, 16_000, 1),
        (8_000, 16_000, 1),
        (16_000, 48_000, 1),
        (44_101, 16_000, 1), // interpolated phases
        (48_000, 16_000, 2),
        (22_050, 16_000, 3),
    ];
    for &(a, b, ch) in cases {
        let fb = bank(a, b, Quality::High);
        let x = noise(a as usize / 10 * ch, u64::from(a) + ch as u64);
        let mut r = make(a, b, ch, Quality::High, true);
        let y = run_whole(&mut r, &x);
        let frames = x.len() / ch;
        assert_eq!(
            y.len() as u64,
            expected_frames(frames as u64, a, b) * ch as u64,
            "{a}->{b}"
        );
        for (k, &got) in y.iter().enumerate() {
            let want = reference(&fb, &x, ch, k % ch, (k / ch) as u64);
            assert!(
                (f64::from(got) - want).abs() < 2e-6,
                "{a}->{b} ch{ch} sample {k}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn chunked_equals_whole_bit_for_bit() {
    for &(a, b, ch) in &[
        (48_000u32, 16_000u32, 1usize),
        (44_100, 16_000, 2),
        (8_000, 16_000, 1),
        (44_101, 16_000, 1),
    ] {
        for comp in [true, false] {
            let x = noise(a as usize / 8 * ch, 7);
            let whole = run_whole(&mut make(a, b, ch, Quality::High, comp), &x);
            let mut r = make(a, b, ch, Quality::High, comp);
            let mut rng = Rng(99);
            let mut out = Vec::new();
            let mut pos = 0;
            let frames = x.len() / ch;
            while pos < frames {
                // Mostly tiny chunks (1-sample ones included), some large.
                let size = match rng.next() % 4 {
                    0 => 1,
                    1 => (rng.next() % 7) as usize,
                    2 => (rng.next() % 300) as usize,
                    _ => (rng.next() % 5000) as usize,
                };
                let end = (pos + size).min(frames);
                match r.process(Samples::F32(&x[pos * ch..end * ch])) {
                    Ok(y) => out.extend(y),
                    Err(err) => panic!("{err}"),
                }
                pos = end;
            }
            out.extend(r.flush());
            assert_eq!(out, whole, "{a}->{b} ch{ch} comp={comp}");
        }
    }
}

#[test]
fn uncompensated_output_is_the_same_signal_delayed() {
    let x = noise(4_410, 3);
    let comp = run_whole(&mut make(44_100, 16_000, 1, Quality::Fast, true), &x);
    let mut r = make(44_100, 16_000, 1, Quality::Fast, false);
    let d = r.delay() as usize;
    let raw = run_whole(&mut r, &x);
    assert_eq!(raw.len(), comp.len() + d);
    assert_eq!(&raw[d..], &comp[..]);
    assert_eq!(r.output_frames(4_410), raw.len() as u64);
}

#[test]
fn live_output_lags_by_exactly_the_delay() {
    for &(a, b) in &[(48_000u32, 16_000u32), (44_100, 16_000), (8_000, 16_000)] {
        let mut r = make(a, b, 1, Quality::High, true);
        let x = noise(a as usize, 5);
        let mut emitted = 0u64;
        for (i, chunk) in x.chunks(160).enumerate() {
            match r.process(Samples::F32(chunk)) {
                Ok(y) => emitted += y.len() as u64,
                Err(err) => panic!("{err}"),
            }
            let fed = ((i + 1) * 160).min(x.len()) as u64;
            // Everything whose last input sample has arrived is out.
            let due = expected_frames(fed, a, b).saturating_sub(r.delay());
            assert!(emitted.abs_diff(due) <= 1, "{a}: {emitted} vs {due}");
        }
    }
}

#[test]
fn flush_resets_for_a_new_stream() {
    let x = noise(3_000, 11);
    let mut r = make(48_000, 16_000, 1, Quality::High, true);
    let first = run_whole(&mut r, &x);
    assert_eq!((r.frames_in(), r.frames_out()), (0, 0));
    assert_eq!(run_whole(&mut r, &x), first);
    // A flush with nothing fed gives nothing.
    assert!(r.flush().is_empty());
}

#[test]
fn same_rate_passes_through() {
    let x = [0.5f32, -0.25, 0.125, 1.0];
    let mut r = make(16_000, 16_000, 2, Quality::High, true);
    assert_eq!(r.delay(), 0);
    assert_eq!(r.process(Samples::F32(&x)), Ok(x.to_vec()));
    assert!(r.flush().is_empty());
    let pcm: Vec<u8> = [16384i16, -32768]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(r.process(Samples::Pcm16Le(&pcm)), Ok(vec![0.5, -1.0]));
}

#[test]
fn bad_arguments_are_rejected() {
    for (a, b, ch) in [
        (0, 16_000, 1),
        (16_000, 0, 1),
        (4_000_000_000, 16_000, 1),
        (48_000, 16_000, 0),
    ] {
        assert!(matches!(
            Resampler::new(a, b, ch, Quality::High, true),
            Err(Error::InvalidArgument(_))
        ));
    }
    let mut r = make(48_000, 16_000, 2, Quality::High, true);
    assert!(matches!(
        r.process(Samples::F32(&[0.0; 3])),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        r.process(Samples::Pcm16Le(&[0; 7])),
        Err(Error::InvalidArgument(_))
    ));
    // A rejected chunk changes nothing.
    assert_eq!(r.frames_in(), 0);
}

/// Gain of a steady sine through the resampler, in dB (RMS out / RMS in, edges trimmed).
fn gain_db(a: u32, b: u32, quality: Quality, freq: f64) -> f64 {
    let n = a as usize / 2;
    let x: Vec<f32> = (0..n)
        .map(|i| (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(a)).sin()) as f32)
        .collect();
    let y = run_whole(&mut make(a, b, 1, quality, true), &x);
    let edge = y.len() / 10;
    let rms =
        |s: &[f32]| (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
    20.0 * (rms(&y[edge..y.len() - edge]) / rms(&x)).log10()
}

#[test]
fn passband_is_flat_and_aliases_are_rejected() {
    for quality in [Quality::Fast, Quality::High, Quality::VeryHigh] {
        for a in [48_000, 44_100] {
            let pass = gain_db(a, 16_000, quality, 1_000.0);
            assert!(pass.abs() < 0.01, "{a} {quality:?} 1 kHz: {pass} dB");
            let alias = gain_db(a, 16_000, quality, 10_000.0);
            assert!(alias < -100.0, "{a} {quality:?} 10 kHz: {alias} dB");
        }
        let up = gain_db(8_000, 16_000, quality, 1_000.0);
        assert!(up.abs() < 0.01, "8k {quality:?} 1 kHz: {up} dB");
    }
}

/// The same samples at every float alignment, fed whole (read in place when long and aligned
/// like the history) and in chunks large and small: every result is bit-identical.
#[test]
fn buffer_alignment_and_in_place_reading_change_nothing() {
    for &(a, b) in &[
        (48_000u32, 16_000u32),
        (44_100, 16_000),
        (8_000, 16_000),
        (32_000, 16_000),
    ] {
        let x = noise(a as usize, u64::from(a) ^ 0x5eed);
        let reference = run_whole(&mut make(a, b, 1, Quality::High, true), &x);
        for offset in 0..8 {
            let mut padded = vec![0.0f32; x.len() + 8];
            padded[offset..offset + x.len()].copy_from_slice(&x);
            let shifted = &padded[offset..offset + x.len()];
            let whole = match resample(Samples::F32(shifted), a, b, 1, Quality::High) {
                Ok(y) => y,
                Err(err) => panic!("{err}"),
            };
            assert_eq!(whole, reference, "{a}->{b} offset {offset}");
            let mut r = make(a, b, 1, Quality::High, true);
            let mut out = Vec::new();
            let mut pos = 0;
            for size in [1usize, 20_000, 3, 17_001, 999].iter().cycle() {
                if pos >= shifted.len() {
                    break;
                }
                let end = (pos + size).min(shifted.len());
                match r.process_into(Samples::F32(&shifted[pos..end]), &mut out) {
                    Ok(_) => {}
                    Err(err) => panic!("{err}"),
                }
                pos = end;
            }
            r.flush_into(&mut out);
            assert_eq!(out, reference, "{a}->{b} offset {offset} chunked");
        }
    }
}

/// Multi-channel and int16 input go through the history a segment at a time: the same result
/// as the float32 mono path, channel by channel.
#[test]
fn long_multichannel_input_matches_mono() {
    let frames = 40_000;
    let left = noise(frames, 21);
    let right = noise(frames, 22);
    let stereo: Vec<f32> = left
        .iter()
        .zip(&right)
        .flat_map(|(&l, &r)| [l, r])
        .collect();
    for &(a, b) in &[(48_000u32, 16_000u32), (44_100, 16_000)] {
        let y = match resample(Samples::F32(&stereo), a, b, 2, Quality::High) {
            Ok(y) => y,
            Err(err) => panic!("{err}"),
        };
        for (c, mono) in [&left, &right].into_iter().enumerate() {
            let want = run_whole(&mut make(a, b, 1, Quality::High, true), mono);
            let got: Vec<f32> = y.iter().skip(c).step_by(2).copied().collect();
            assert_eq!(got, want, "{a}->{b} channel {c}");
        }
    }
}

/// Every layout and many ratios (integer decimation by 2..768, integer upsampling by 2..768,
/// exact and interpolated phases), every quality: the streamed output is the definition.
#[test]
fn every_layout_matches_the_definition() {
    let cases: &[(u32, u32)] = &[
        (32_000, 16_000),
        (64_000, 16_000),
        (96_000, 16_000),
        (128_000, 16_000),
        (768_000, 1_000),
        (16_000, 48_000),
        (8_000, 48_000),
        (1_000, 768_000),
        (22_050, 16_000),
        (16_000, 22_050),
        (24_000, 16_000),
        (48_000, 44_100),
        (44_101, 16_000),
        (16_000, 44_101),
    ];
    for &(a, b) in cases {
        // The extreme ratios need 10^4-tap filters: one quality is enough there.
        let qualities: &[Quality] = if a.max(b) / a.min(b) > 100 {
            &[Quality::Fast]
        } else {
            &[Quality::Fast, Quality::High, Quality::VeryHigh]
        };
        for &quality in qualities {
            let fb = bank(a, b, quality);
            // About 300 outputs, with frames past the filter's reach on both sides.
            let frames = (300 * a / b).max(fb.span as u32 * 2) as usize;
            let x = noise(frames, u64::from(a + b));
            let mut r = make(a, b, 1, quality, true);
            let mut y = Vec::new();
            for chunk in x.chunks(frames / 3 + 1) {
                match r.process_into(Samples::F32(chunk), &mut y) {
                    Ok(_) => {}
                    Err(err) => panic!("{err}"),
                }
            }
            r.flush_into(&mut y);
            assert_eq!(y.len() as u64, expected_frames(frames as u64, a, b));
            let step = (y.len() / 400).max(1);
            for k in (0..y.len()).step_by(step) {
                let want = reference(&fb, &x, 1, 0, k as u64);
                assert!(
                    (f64::from(y[k]) - want).abs() < 2e-6,
                    "{a}->{b} {quality:?} sample {k}: {} vs {want}",
                    y[k]
                );
            }
        }
    }
}

/// The portable path (one lane, what a CPU without AVX2 runs; NEON has four) computes the
/// same filter: against the definition, and chunking still changes no bit.
#[test]
fn scalar_kernels_match_the_definition() {
    for &(a, b) in &[
        (48_000u32, 16_000u32),
        (44_100, 16_000),
        (8_000, 16_000),
        (44_101, 16_000),
        (32_000, 16_000),
    ] {
        let fb = bank(a, b, Quality::High);
        let x = noise(a as usize / 20, u64::from(a) + 9);
        let scalar = || {
            let mut r = make(a, b, 1, Quality::High, true);
            r.set_arch(pulp::Arch::Scalar);
            r
        };
        let y = run_whole(&mut scalar(), &x);
        for (k, &got) in y.iter().enumerate() {
            let want = reference(&fb, &x, 1, 0, k as u64);
            assert!((f64::from(got) - want).abs() < 2e-6, "{a}->{b} sample {k}");
        }
        let mut r = scalar();
        let mut out = Vec::new();
        for chunk in x.chunks(333) {
            match r.process_into(Samples::F32(chunk), &mut out) {
                Ok(_) => {}
                Err(err) => panic!("{err}"),
            }
        }
        r.flush_into(&mut out);
        assert_eq!(out, y, "{a}->{b} chunked");
    }
}
