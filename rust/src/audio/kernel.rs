//! The inner loops of the resampler: dot products of coefficient rows with windows of input.
//!
//! Written once, generically over `pulp::Simd`, and dispatched at run time to the widest
//! instruction set the CPU has (AVX2 + FMA on x86-64-v3, NEON on aarch64, scalar otherwise),
//! without any `unsafe` here.
//!
//! Every output is computed by the same sequence of operations whatever the other outputs of
//! its batch are, so a stream cut into chunks of any size gives bit-identical output to the
//! same stream in one piece.
#![forbid(unsafe_code)]

use pulp::{Arch, Simd, WithSimd};

use super::filter::{FilterBank, Phases};

/// The first output of one phase in a batch. Outputs `j` and `j + period` of a batch have the
/// same phase (so the same row) and windows `down` input samples apart, where `period` is
/// `up` (or the batch length, when that is shorter).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    /// Row index (the first of two rows when interpolating).
    pub row: usize,
    /// Start of the `taps`-sample input window, as an index into the channel's history.
    pub pos: usize,
    /// Weight of the second row when interpolating between rows.
    pub frac: f32,
}

/// A batch of `len` consecutive outputs described by its heads (`heads.len()` is the period).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batch<'a> {
    pub heads: &'a [Head],
    pub len: usize,
}

impl Batch<'_> {
    /// Outputs of head `h`: indices `h, h + period, ...` below `len`.
    #[inline(always)]
    fn members(&self, h: usize) -> usize {
        (self.len - h).div_ceil(self.heads.len())
    }
}

/// Compute a batch for one channel, writing output `i` to `out[i * stride + channel]`.
pub(crate) fn run_channel(
    arch: Arch,
    bank: &FilterBank,
    history: &[f32],
    batch: Batch<'_>,
    out: &mut [f32],
    stride: usize,
    channel: usize,
) {
    arch.dispatch(Channel {
        bank,
        history,
        batch,
        out,
        stride,
        channel,
    });
}

struct Channel<'a> {
    bank: &'a FilterBank,
    history: &'a [f32],
    batch: Batch<'a>,
    out: &'a mut [f32],
    stride: usize,
    channel: usize,
}

impl WithSimd for Channel<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Channel {
            bank,
            history,
            batch,
            out,
            stride,
            channel,
        } = self;
        let taps = bank.taps;
        let period = batch.heads.len();
        let down = usize::try_from(bank.down).unwrap_or(usize::MAX);
        let window = |pos: usize| &history[pos..pos + taps];
        let mut store = |index: usize, value: f32| out[index * stride + channel] = value;

        match bank.phases {
            // Integer upsampling (8 kHz -> 16 kHz): the outputs of a head have windows one
            // input sample apart, so `lanes` of them are a sum over taps of coefficient times a
            // vector of input: no horizontal sums. Each output is lane `l` of such a sum
            // whatever group it falls in, so the result does not depend on the batching.
            // Windows of unused lanes may reach `lanes - 1` samples past the input: the caller
            // leaves that much slack.
            Phases::Exact if down == 1 => {
                let lanes = S::F32_LANES;
                // (head, first member, number of members) per group of lanes.
                let mut groups: Vec<(usize, usize, usize)> = Vec::new();
                for h in 0..period {
                    let members = batch.members(h);
                    for first in (0..members).step_by(lanes) {
                        groups.push((h, first, lanes.min(members - first)));
                    }
                }
                for four in groups.chunks(4) {
                    let pick = |k: usize| four.get(k).copied().unwrap_or(four[0]);
                    let g = [pick(0), pick(1), pick(2), pick(3)];
                    let ys = fir_lanes4(
                        simd,
                        g.map(|(h, _, _)| bank.row(batch.heads[h].row)),
                        g.map(|(h, first, _)| {
                            let pos = batch.heads[h].pos + first;
                            &history[pos..pos + taps + lanes - 1]
                        }),
                    );
                    for (y, &(h, first, count)) in ys.iter().zip(four) {
                        for (l, &v) in y[..count].iter().enumerate() {
                            store(h + (first + l) * period, v);
                        }
                    }
                }
            }
            // Exact phases: four outputs of one head share each coefficient load; the rest go
            // four at a time.
            Phases::Exact => {
                let mut leftovers: Vec<(usize, usize, usize)> = Vec::new();
                for (h, head) in batch.heads.iter().enumerate() {
                    let row = bank.row(head.row);
                    let members = batch.members(h);
                    let mut k = 0;
                    while k + 4 <= members {
                        let ys = dot_shared4(
                            simd,
                            row,
                            [0, 1, 2, 3].map(|m| window(head.pos + (k + m) * down)),
                        );
                        for (m, y) in ys.into_iter().enumerate() {
                            store(h + (k + m) * period, y);
                        }
                        k += 4;
                    }
                    for m in k..members {
                        leftovers.push((h + m * period, head.row, head.pos + m * down));
                    }
                }
                for four in leftovers.chunks(4) {
                    // Pad a short group by repeating its first output.
                    let pick = |k: usize| four.get(k).copied().unwrap_or(four[0]);
                    let g = [pick(0), pick(1), pick(2), pick(3)];
                    let ys = dot_multi4(
                        simd,
                        g.map(|(_, row, _)| bank.row(row)),
                        g.map(|(_, _, pos)| window(pos)),
                    );
                    for (&(index, _, _), y) in four.iter().zip(ys) {
                        store(index, y);
                    }
                }
            }
            // Any other ratio: blend the two rows around the output's phase.
            Phases::Interpolated(_) => {
                for (h, head) in batch.heads.iter().enumerate() {
                    let (a, b) = (bank.row(head.row), bank.row(head.row + 1));
                    for m in 0..batch.members(h) {
                        let w = window(head.pos + m * down);
                        let ys = dot_multi4(simd, [a, b, a, b], [w, w, w, w]);
                        store(h + m * period, ys[0] + head.frac * (ys[1] - ys[0]));
                    }
                }
            }
        }
    }
}

/// Four groups of `lanes` consecutive outputs of one row each: lane `l` of group `k` is
/// `sum_i rows[k][i] * x[k][l + i]`, accumulated tap by tap.
#[inline(always)]
fn fir_lanes4<S: Simd>(simd: S, rows: [&[f32]; 4], x: [&[f32]; 4]) -> [[f32; 16]; 4] {
    let lanes = S::F32_LANES;
    let taps = rows[0].len();
    let zero = simd.splat_f32s(0.0);
    let mut acc = [zero; 4];
    for i in 0..taps {
        for ((a, row), w) in acc.iter_mut().zip(rows).zip(x) {
            let (v, _) = S::as_simd_f32s(&w[i..i + lanes]);
            *a = simd.mul_add_e_f32s(simd.splat_f32s(row[i]), v[0], *a);
        }
    }
    let mut out = [[0.0f32; 16]; 4];
    for (o, a) in out.iter_mut().zip(acc) {
        let (v, _) = S::as_mut_simd_f32s(&mut o[..lanes]);
        v[0] = a;
    }
    out
}

// Every output is a dot product computed the same way by both kernels below: two vector
// accumulators (even and odd vectors of the row), added, summed across lanes, plus a scalar
// tail. So an output does not depend on which kernel, or which batch, computed it.

#[inline(always)]
fn finish<S: Simd>(simd: S, acc: [S::f32s; 2], h_tail: &[f32], x_tail: &[f32]) -> f32 {
    let mut sum = simd.reduce_sum_f32s(simd.add_f32s(acc[0], acc[1]));
    for (&c, &s) in h_tail.iter().zip(x_tail) {
        sum += c * s;
    }
    sum
}

/// Four outputs of one row: each coefficient vector is loaded once for four windows.
#[inline(always)]
fn dot_shared4<S: Simd>(simd: S, row: &[f32], x: [&[f32]; 4]) -> [f32; 4] {
    let (h, h_tail) = S::as_simd_f32s(row);
    let v = x.map(|w| S::as_simd_f32s(w));
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; 2]; 4];
    let mut pairs = h.chunks_exact(2);
    let mut i = 0;
    for c in &mut pairs {
        for (a, (w, _)) in acc.iter_mut().zip(&v) {
            a[0] = simd.mul_add_e_f32s(c[0], w[i], a[0]);
            a[1] = simd.mul_add_e_f32s(c[1], w[i + 1], a[1]);
        }
        i += 2;
    }
    if let [c] = pairs.remainder() {
        for (a, (w, _)) in acc.iter_mut().zip(&v) {
            a[0] = simd.mul_add_e_f32s(*c, w[i], a[0]);
        }
    }
    let mut out = [0.0f32; 4];
    for ((o, a), (_, tail)) in out.iter_mut().zip(acc).zip(&v) {
        *o = finish(simd, a, h_tail, tail);
    }
    out
}

/// Four outputs with their own rows.
#[inline(always)]
fn dot_multi4<S: Simd>(simd: S, rows: [&[f32]; 4], x: [&[f32]; 4]) -> [f32; 4] {
    let h = rows.map(|r| S::as_simd_f32s(r));
    let v = x.map(|w| S::as_simd_f32s(w));
    let n = h[0].0.len();
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; 2]; 4];
    let mut i = 0;
    while i + 2 <= n {
        for ((a, (hh, _)), (w, _)) in acc.iter_mut().zip(&h).zip(&v) {
            a[0] = simd.mul_add_e_f32s(hh[i], w[i], a[0]);
            a[1] = simd.mul_add_e_f32s(hh[i + 1], w[i + 1], a[1]);
        }
        i += 2;
    }
    if i < n {
        for ((a, (hh, _)), (w, _)) in acc.iter_mut().zip(&h).zip(&v) {
            a[0] = simd.mul_add_e_f32s(hh[i], w[i], a[0]);
        }
    }
    let mut out = [0.0f32; 4];
    for (((o, a), (_, h_tail)), (_, x_tail)) in out.iter_mut().zip(acc).zip(&h).zip(&v) {
        *o = finish(simd, a, h_tail, x_tail);
    }
    out
}
