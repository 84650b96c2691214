//! The inner loops of the resampler: dot products of coefficient rows with windows of input.
//!
//! Written once, generically over `pulp::Simd`, and dispatched at run time to the widest
//! instruction set the CPU has (AVX2 + FMA on x86-64-v3, NEON on aarch64, scalar otherwise),
//! without any `unsafe` here. Multiply-adds are fused where the CPU has FMA.
//!
//! Three shapes, after the table's [`Layout`]:
//! - `Rows` (any ratio): an output is a horizontal dot product of its phase's row with its
//!   window. Eight outputs of the same phase (windows `down` frames apart) share each
//!   coefficient load, each with its own accumulator: eight independent FMA chains keep both
//!   FMA units busy (4-cycle latency). Phases with fewer outputs left in a batch go two
//!   outputs of four phases at a time, or eight outputs with their own rows.
//! - `Shifted` (integer decimation, e.g. 48 kHz -> 16 kHz): as `Rows`, with the row variant
//!   for the window's alignment, so that the loads in the middle of every window are aligned
//!   (no cache-line splits); the eight outputs of a group have windows of the same alignment.
//! - `Vertical` (integer upsampling, e.g. 8 kHz -> 16 kHz): consecutive outputs of one phase
//!   have windows one frame apart, so a vector's lanes are consecutive outputs and a sum over
//!   taps of coefficient times input vector gives them all: no horizontal sums; eight vectors
//!   in flight, and each input vector loaded once for the several (vector, tap) pairs it
//!   feeds (see [`fir_vertical`]).
//!
//! Every output is computed by the same sequence of operations whatever the other outputs of
//! its group or batch are (a group only shares loads): one accumulator, fed the window's
//! blocks in order, then summed across lanes (`Vertical`: fed its taps in a fixed order). So a stream cut into chunks of any size gives
//! bit-identical output to the same stream in one piece. Reads never leave an output's window.
#![forbid(unsafe_code)]

use pulp::{Arch, Scalar, Simd, WithSimd};

use super::filter::{FilterBank, Layout, Phases, Shift, LANES};

/// The first output of one phase in a batch. Outputs `j` and `j + period` of a batch have the
/// same phase (so the same row) and windows `down` input frames apart, where `period` is
/// `up` (or the batch length, when that is shorter).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    /// Row index (the first of two rows when interpolating).
    pub row: usize,
    /// Start of the `span`-frame input window, as an index into the source.
    pub pos: usize,
    /// Weight of the second row when interpolating between rows.
    pub frac: f32,
}

/// A batch of `len` consecutive outputs described by its heads (`heads.len()` is the period).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batch<'a> {
    pub heads: &'a [Head],
    pub len: usize,
    /// `(frame of source index 0 + ALIGN_PHASE) mod LANES`: with it, a window at source index
    /// `pos` uses the `Shifted` variant `(align + pos) mod LANES`.
    pub align: usize,
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
    src: &[f32],
    batch: Batch<'_>,
    out: &mut [f32],
    stride: usize,
    channel: usize,
) {
    arch.dispatch(Channel {
        bank,
        src,
        batch,
        out,
        stride,
        channel,
    });
}

struct Channel<'a> {
    bank: &'a FilterBank,
    src: &'a [f32],
    batch: Batch<'a>,
    out: &'a mut [f32],
    stride: usize,
    channel: usize,
}

impl WithSimd for Channel<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // The tables are laid out in blocks of LANES floats; wider vectors (never dispatched
        // with pulp's default features) take the scalar path.
        if S::F32_LANES > LANES || !LANES.is_multiple_of(S::F32_LANES) {
            return self.with_simd(Scalar::new());
        }
        let Channel {
            bank,
            src,
            batch,
            out,
            stride,
            channel,
        } = self;
        let span = bank.span;
        let down = usize::try_from(bank.down).unwrap_or(usize::MAX);
        let period = batch.heads.len();
        let window = |pos: usize| &src[pos..pos + span];
        let mut store = |index: usize, value: f32| out[index * stride + channel] = value;
        // The Rows layout is the Shifted one with every window aligned: vector 0 at tap 0, then
        // contiguous vectors from tap LANES on, the last at tap span - LANES.
        let plain = Shift {
            gap: LANES,
            middle: (span / LANES).saturating_sub(2),
        };

        match (bank.layout, bank.phases) {
            (Layout::Shifted, _) => {
                let head = batch.heads[0];
                // Windows `p` members apart have the same alignment: a group is
                // `GROUP` of them, `GROUP * p` consecutive outputs make `p` groups.
                let p = LANES / gcd(down % LANES, LANES);
                let pos = |m: usize| head.pos + m * down;
                let variant = |m: usize| (batch.align + pos(m)) % LANES;
                let len = batch.len;
                let mut base = 0;
                // Pairs of neighbours (two alignments) in four windows each: eight outputs
                // from four window loads and two coefficient loads per block. Blocks of `8 *
                // pp` members: `pp / 2` pairs of alignment classes, two halves of four.
                let pp = p.max(2);
                while base + 8 * pp <= len {
                    for c in 0..pp / 2 {
                        for half in 0..2 {
                            let m = base + 2 * c + half * 4 * pp;
                            let (q0, q1) = (variant(m), variant(m + 1));
                            let ys = dot_shifted_pairs(
                                simd,
                                [bank.row(q0), bank.row(q1)],
                                [bank.shifts[q0], bank.shifts[q1]],
                                span,
                                &src[pos(m)..],
                                down,
                                pp * down,
                            );
                            for (r, pair) in ys.into_iter().enumerate() {
                                store(m + r * pp, pair[0]);
                                store(m + 1 + r * pp, pair[1]);
                            }
                        }
                    }
                    base += 8 * pp;
                }
                while base + GROUP * p <= len {
                    for r in 0..p {
                        let m = base + r;
                        let q = variant(m);
                        let ys = dot_strided::<S, GROUP>(
                            simd,
                            bank.row(q),
                            bank.shifts[q],
                            span,
                            &src[pos(m)..],
                            p * down,
                        );
                        for (k, y) in ys.into_iter().enumerate() {
                            store(m + k * p, y);
                        }
                    }
                    base += GROUP * p;
                }
                for r in 0..p.min(len - base) {
                    let m = base + r;
                    let q = variant(m);
                    let count = (len - m).div_ceil(p);
                    shared_tail(simd, bank.row(q), bank.shifts[q], span, count, |k| {
                        window(pos(m + k * p))
                    })
                    .into_iter()
                    .take(count)
                    .enumerate()
                    .for_each(|(k, y)| store(m + k * p, y));
                }
            }
            (Layout::Vertical, _) => {
                let mut scratch = Vec::new();
                for (h, head) in batch.heads.iter().enumerate() {
                    vertical_head(
                        simd,
                        bank.row(head.row),
                        &src[head.pos..],
                        batch.members(h),
                        &mut scratch,
                        |m, y| store(h + m * period, y),
                    );
                }
            }
            (Layout::Rows, Phases::Exact) => {
                let mut leftovers = Vec::new();
                for (h, head) in batch.heads.iter().enumerate() {
                    let row = bank.row(head.row);
                    let members = batch.members(h);
                    let pos = |m: usize| head.pos + m * down;
                    let mut m = 0;
                    while m + GROUP <= members {
                        let ys =
                            dot_strided::<S, GROUP>(simd, row, plain, span, &src[pos(m)..], down);
                        for (k, y) in ys.into_iter().enumerate() {
                            store(h + (m + k) * period, y);
                        }
                        m += GROUP;
                    }
                    leftovers.extend((m..members).map(|m| (h + m * period, head.row, pos(m))));
                }
                let mut singles = Vec::new();
                rows_leftovers(simd, bank, plain, src, &leftovers, &mut singles, &mut store);
            }
            // Any other ratio: blend the two rows around the output's phase.
            (Layout::Rows, Phases::Interpolated(_)) => {
                let mut outputs: Vec<(usize, usize, usize, f32)> = Vec::with_capacity(batch.len);
                for (h, head) in batch.heads.iter().enumerate() {
                    for m in 0..batch.members(h) {
                        outputs.push((h + m * period, head.row, head.pos + m * down, head.frac));
                    }
                }
                for group in outputs.chunks(GROUP / 2) {
                    let pick = |k: usize| group.get(k).copied().unwrap_or(group[0]);
                    let mut rows: [&[f32]; GROUP] = [&[]; GROUP];
                    let mut windows: [&[f32]; GROUP] = [&[]; GROUP];
                    for k in 0..GROUP / 2 {
                        let (_, row, pos, _) = pick(k);
                        rows[2 * k] = bank.row(row);
                        rows[2 * k + 1] = bank.row(row + 1);
                        windows[2 * k] = window(pos);
                        windows[2 * k + 1] = window(pos);
                    }
                    let ys = dot_rows(simd, plain, span, rows, windows);
                    for (k, &(index, _, _, frac)) in group.iter().enumerate() {
                        let (a, b) = (ys[2 * k], ys[2 * k + 1]);
                        store(index, a + frac * (b - a));
                    }
                }
            }
        }
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Outputs per horizontal group: 8 accumulators in flight keep both FMA units of a core busy
/// (4-cycle latency, 2 per cycle) and leave registers for the coefficient vector.
pub(crate) const GROUP: usize = 8;

/// `count` (up to `GROUP`) outputs of one row, four, two and one at a time (array entries
/// past `count` are unspecified).
#[inline(always)]
fn shared_tail<'w, S: Simd>(
    simd: S,
    row: &[f32],
    shift: Shift,
    span: usize,
    count: usize,
    window: impl Fn(usize) -> &'w [f32],
) -> [f32; GROUP] {
    let mut out = [0.0; GROUP];
    let mut k = 0;
    while count - k >= 4 {
        let w = [window(k), window(k + 1), window(k + 2), window(k + 3)];
        out[k..k + 4].copy_from_slice(&dot_shared(simd, row, shift, span, w));
        k += 4;
    }
    if count - k >= 2 {
        let w = [window(k), window(k + 1)];
        out[k..k + 2].copy_from_slice(&dot_shared(simd, row, shift, span, w));
        k += 2;
    }
    if count > k {
        out[k..=k].copy_from_slice(&dot_shared(simd, row, shift, span, [window(k)]));
    }
    out
}

/// The blocks of one window in the vector structure of `shift`: block 0 (`LANES` floats) at
/// window offset 0, blocks `1..=middle` (contiguous) from offset `gap`, the last block at
/// `span - LANES`.
#[inline(always)]
fn blocks<S: Simd>(w: &[f32], shift: Shift, span: usize) -> [&[S::f32s]; 3] {
    let mid_len = shift.middle * LANES;
    [
        S::as_simd_f32s(&w[..LANES]).0,
        S::as_simd_f32s(&w[shift.gap..shift.gap + mid_len]).0,
        S::as_simd_f32s(&w[span - LANES..span]).0,
    ]
}

/// The same cut of a row, whose blocks are stored one after the other.
#[inline(always)]
fn row_blocks<S: Simd>(row: &[f32], shift: Shift) -> [&[S::f32s]; 3] {
    let last = (shift.middle + 1) * LANES;
    [
        S::as_simd_f32s(&row[..LANES]).0,
        S::as_simd_f32s(&row[LANES..last]).0,
        S::as_simd_f32s(&row[last..last + LANES]).0,
    ]
}

/// `N` outputs of one row, each `sum_t row_t * window_t`: one accumulator per output, fed the
/// blocks in order (first, middle, last), then summed across lanes. Each coefficient vector
/// is loaded once for the `N` windows. (Plain loops over fixed-size arrays, no `array::map`:
/// closures that are not inlined would lose the target features.)
#[inline(always)]
fn dot_shared<S: Simd, const N: usize>(
    simd: S,
    row: &[f32],
    shift: Shift,
    span: usize,
    windows: [&[f32]; N],
) -> [f32; N] {
    let [h_first, h_mid, h_last] = row_blocks::<S>(row, shift);
    let n = h_mid.len();
    let mut acc = [simd.splat_f32s(0.0); N];
    for (a, w) in acc.iter_mut().zip(windows) {
        let x = S::as_simd_f32s(&w[..LANES]).0;
        for (&h, &x) in h_first.iter().zip(x) {
            *a = simd.mul_add_e_f32s(h, x, *a);
        }
    }
    // The middle blocks: each coefficient vector once for the N windows. The window slices
    // are cut to the row's length, so that the loop needs no bounds checks.
    let mut x_mid: [&[S::f32s]; N] = [&[]; N];
    for (x, w) in x_mid.iter_mut().zip(windows) {
        *x = &S::as_simd_f32s(&w[shift.gap..]).0[..n];
    }
    for (i, &h) in h_mid.iter().enumerate() {
        for (a, x) in acc.iter_mut().zip(&x_mid) {
            *a = simd.mul_add_e_f32s(h, x[i], *a);
        }
    }
    let mut out = [0.0; N];
    for ((o, mut a), w) in out.iter_mut().zip(acc).zip(windows) {
        let x = S::as_simd_f32s(&w[span - LANES..span]).0;
        for (&h, &x) in h_last.iter().zip(x) {
            a = simd.mul_add_e_f32s(h, x, a);
        }
        *o = simd.reduce_sum_f32s(a);
    }
    out
}

/// [`dot_shared`] for `N` windows `stride` frames apart, the first at `src[0]` (spelled out
/// so that the compiler addresses them from one base register).
#[inline(always)]
fn dot_strided<S: Simd, const N: usize>(
    simd: S,
    row: &[f32],
    shift: Shift,
    span: usize,
    src: &[f32],
    stride: usize,
) -> [f32; N] {
    let [h_first, h_mid, h_last] = row_blocks::<S>(row, shift);
    let n = h_mid.len();
    let mut acc = [simd.splat_f32s(0.0); N];
    for (k, a) in acc.iter_mut().enumerate() {
        let x = S::as_simd_f32s(&src[k * stride..k * stride + LANES]).0;
        for (&h, &x) in h_first.iter().zip(x) {
            *a = simd.mul_add_e_f32s(h, x, *a);
        }
    }
    let mut x_mid: [&[S::f32s]; N] = [&[]; N];
    for (k, x) in x_mid.iter_mut().enumerate() {
        *x = &S::as_simd_f32s(&src[k * stride + shift.gap..]).0[..n];
    }
    for (i, &h) in h_mid.iter().enumerate() {
        for (a, x) in acc.iter_mut().zip(&x_mid) {
            *a = simd.mul_add_e_f32s(h, x[i], *a);
        }
    }
    let mut out = [0.0; N];
    for (k, (o, mut a)) in out.iter_mut().zip(acc).enumerate() {
        let w = &src[k * stride..k * stride + span];
        let x = S::as_simd_f32s(&w[span - LANES..]).0;
        for (&h, &x) in h_last.iter().zip(x) {
            a = simd.mul_add_e_f32s(h, x, a);
        }
        *o = simd.reduce_sum_f32s(a);
    }
    out
}

/// Eight outputs of the `Shifted` layout: for `r` in `0..4`, the windows at
/// `src[r * stride]` (alignment variant 0) and `src[r * stride + next]` (variant 1), where
/// `stride` is a multiple of `LANES`. The aligned middle blocks of the two windows of a row
/// `r` are the same vectors (offset by a whole number of blocks), so each vector is loaded
/// once for two outputs, and each coefficient vector once for four: six loads feed eight
/// FMAs. Each output sees the same operations, in the same order, as in [`dot_shared`].
#[inline(always)]
fn dot_shifted_pairs<S: Simd>(
    simd: S,
    rows: [&[f32]; 2],
    shifts: [Shift; 2],
    span: usize,
    src: &[f32],
    next: usize,
    stride: usize,
) -> [[f32; 2]; 4] {
    const R: usize = 4;
    let h = [
        row_blocks::<S>(rows[0], shifts[0]),
        row_blocks::<S>(rows[1], shifts[1]),
    ];
    let starts = [0, next];
    // Middle blocks: output k's block i is the vector at absolute block `d[k] + i` from the
    // first output's first aligned frame.
    let mid0 = shifts[0].gap;
    let mid1 = next + shifts[1].gap;
    let d1 = (mid1 - mid0) / LANES;
    let (m0, m1) = (h[0][1].len(), h[1][1].len());
    let per = LANES / S::F32_LANES;
    let (m0b, m1b) = (m0 / per, m1 / per);
    let blocks = m0b.max(d1 + m1b);
    let mut acc = [[simd.splat_f32s(0.0); 2]; R];
    let mut xs: [&[S::f32s]; R] = [&[]; R];
    for (r, (a, x)) in acc.iter_mut().zip(&mut xs).enumerate() {
        for k in 0..2 {
            let w = &src[r * stride + starts[k]..];
            for (&c, &v) in h[k][0].iter().zip(S::as_simd_f32s(&w[..LANES]).0) {
                a[k] = simd.mul_add_e_f32s(c, v, a[k]);
            }
        }
        let from = r * stride + mid0;
        *x = S::as_simd_f32s(&src[from..from + blocks * LANES]).0;
    }
    // Blocks before the second output's middle: the first output's alone.
    let lo = d1.min(m0b) * per;
    for i in 0..lo {
        for (a, x) in acc.iter_mut().zip(&xs) {
            a[0] = simd.mul_add_e_f32s(h[0][1][i], x[i], a[0]);
        }
    }
    // Both outputs' blocks, one vector load for two FMAs.
    let hi = (m0b.min(d1 + m1b)).max(d1.min(m0b)) * per;
    let off = d1 * per;
    let n = hi - lo;
    let h0 = &h[0][1][lo..hi];
    let h1 = &h[1][1][lo - off..hi - off];
    let mut xf: [&[S::f32s]; R] = [&[]; R];
    for (f, x) in xf.iter_mut().zip(&xs) {
        *f = &x[lo..hi];
    }
    for i in 0..n {
        let (c0, c1) = (h0[i], h1[i]);
        for (a, x) in acc.iter_mut().zip(&xf) {
            let v = x[i];
            a[0] = simd.mul_add_e_f32s(c0, v, a[0]);
            a[1] = simd.mul_add_e_f32s(c1, v, a[1]);
        }
    }
    // The rest of each output's middle blocks, then its last block.
    for i in hi..m0 {
        for (a, x) in acc.iter_mut().zip(&xs) {
            a[0] = simd.mul_add_e_f32s(h[0][1][i], x[i], a[0]);
        }
    }
    for i in hi.max(off)..off + m1 {
        for (a, x) in acc.iter_mut().zip(&xs) {
            a[1] = simd.mul_add_e_f32s(h[1][1][i - off], x[i], a[1]);
        }
    }
    let mut out = [[0.0; 2]; R];
    for (r, (o, a)) in out.iter_mut().zip(acc).enumerate() {
        for k in 0..2 {
            let w = &src[r * stride + starts[k]..r * stride + starts[k] + span];
            let mut v = a[k];
            for (&c, &x) in h[k][2].iter().zip(S::as_simd_f32s(&w[span - LANES..]).0) {
                v = simd.mul_add_e_f32s(c, x, v);
            }
            o[k] = simd.reduce_sum_f32s(v);
        }
    }
    out
}

/// `N` outputs, each with its own row, in the `Rows` structure `shift`: the same operations,
/// in the same order, as [`dot_shared`] for each output.
#[inline(always)]
fn dot_rows<S: Simd, const N: usize>(
    simd: S,
    shift: Shift,
    span: usize,
    rows: [&[f32]; N],
    windows: [&[f32]; N],
) -> [f32; N] {
    let per = LANES / S::F32_LANES;
    let n = shift.middle * per;
    let mut h: [[&[S::f32s]; 3]; N] = [[&[]; 3]; N];
    let mut x: [[&[S::f32s]; 3]; N] = [[&[]; 3]; N];
    for k in 0..N {
        h[k] = row_blocks::<S>(rows[k], shift);
        x[k] = blocks::<S>(windows[k], shift, span);
        h[k][1] = &h[k][1][..n];
        x[k][1] = &x[k][1][..n];
    }
    let mut acc = [simd.splat_f32s(0.0); N];
    for j in 0..per {
        for ((a, hk), xk) in acc.iter_mut().zip(&h).zip(&x) {
            *a = simd.mul_add_e_f32s(hk[0][j], xk[0][j], *a);
        }
    }
    for i in 0..n {
        for ((a, hk), xk) in acc.iter_mut().zip(&h).zip(&x) {
            *a = simd.mul_add_e_f32s(hk[1][i], xk[1][i], *a);
        }
    }
    for j in 0..per {
        for ((a, hk), xk) in acc.iter_mut().zip(&h).zip(&x) {
            *a = simd.mul_add_e_f32s(hk[2][j], xk[2][j], *a);
        }
    }
    let mut out = [0.0; N];
    for (o, a) in out.iter_mut().zip(acc) {
        *o = simd.reduce_sum_f32s(a);
    }
    out
}

/// `2 * H` outputs: for each of `H` rows, the windows at `src[pos]` and `src[pos + stride]`
/// (two members of one phase). The same operations, in the same order, as [`dot_shared`] for
/// each output.
#[inline(always)]
fn dot_pairs<S: Simd, const H: usize>(
    simd: S,
    shift: Shift,
    span: usize,
    rows: [&[f32]; H],
    firsts: [&[f32]; H],
    stride: usize,
) -> [[f32; 2]; H] {
    let per = LANES / S::F32_LANES;
    let n = shift.middle * per;
    let mut h: [[&[S::f32s]; 3]; H] = [[&[]; 3]; H];
    let mut x: [[&[S::f32s]; 2]; H] = [[&[]; 2]; H];
    let mut acc = [[simd.splat_f32s(0.0); 2]; H];
    for k in 0..H {
        h[k] = row_blocks::<S>(rows[k], shift);
        h[k][1] = &h[k][1][..n];
        for (pair, (a, xk)) in acc[k].iter_mut().zip(&mut x[k]).enumerate() {
            let w = &firsts[k][pair * stride..pair * stride + span];
            for (&c, &v) in h[k][0].iter().zip(S::as_simd_f32s(&w[..LANES]).0) {
                *a = simd.mul_add_e_f32s(c, v, *a);
            }
            *xk = &S::as_simd_f32s(&w[shift.gap..]).0[..n];
        }
    }
    for i in 0..n {
        for ((a, hk), xk) in acc.iter_mut().zip(&h).zip(&x) {
            let c = hk[1][i];
            a[0] = simd.mul_add_e_f32s(c, xk[0][i], a[0]);
            a[1] = simd.mul_add_e_f32s(c, xk[1][i], a[1]);
        }
    }
    let mut out = [[0.0; 2]; H];
    for k in 0..H {
        for (pair, (o, a)) in out[k].iter_mut().zip(acc[k]).enumerate() {
            let w = &firsts[k][pair * stride..pair * stride + span];
            let mut a = a;
            for (&c, &v) in h[k][2].iter().zip(S::as_simd_f32s(&w[span - LANES..]).0) {
                a = simd.mul_add_e_f32s(c, v, a);
            }
            *o = simd.reduce_sum_f32s(a);
        }
    }
    out
}

/// Outputs of the `Rows` layout whose phase has fewer than a group left, by phase: `(output
/// index, row, window start)`, consecutive members of a phase `down` frames apart. Pairs of
/// members of four phases go together; single ones `GROUP` at a time with their own rows.
#[inline(always)]
fn rows_leftovers<S: Simd>(
    simd: S,
    bank: &FilterBank,
    shift: Shift,
    src: &[f32],
    leftovers: &[(usize, usize, usize)],
    singles: &mut Vec<(usize, usize, usize)>,
    store: &mut impl FnMut(usize, f32),
) {
    const H: usize = 4;
    let span = bank.span;
    let down = usize::try_from(bank.down).unwrap_or(usize::MAX);
    // Pairs: two consecutive leftovers of the same row.
    let mut pairs: Vec<(usize, usize, usize, usize)> = Vec::with_capacity(leftovers.len() / 2);
    singles.clear();
    let mut i = 0;
    while i < leftovers.len() {
        let (index, row, pos) = leftovers[i];
        match leftovers.get(i + 1) {
            Some(&(index2, row2, _)) if row2 == row => {
                pairs.push((index, index2, row, pos));
                i += 2;
            }
            _ => {
                singles.push((index, row, pos));
                i += 1;
            }
        }
    }
    let mut quads = pairs.chunks_exact(H);
    for quad in &mut quads {
        let mut rows: [&[f32]; H] = [&[]; H];
        let mut firsts: [&[f32]; H] = [&[]; H];
        for (k, &(_, _, row, pos)) in quad.iter().enumerate() {
            rows[k] = bank.row(row);
            firsts[k] = &src[pos..];
        }
        let ys = dot_pairs(simd, shift, span, rows, firsts, down);
        for (&(i0, i1, _, _), [y0, y1]) in quad.iter().zip(ys) {
            store(i0, y0);
            store(i1, y1);
        }
    }
    for &(i0, i1, row, pos) in quads.remainder() {
        singles.push((i0, row, pos));
        singles.push((i1, row, pos + down));
    }
    for group in singles.chunks(GROUP) {
        // A short group repeats its first output (computed twice, stored once).
        let pick = |k: usize| group.get(k).copied().unwrap_or(group[0]);
        let mut rows: [&[f32]; GROUP] = [&[]; GROUP];
        let mut windows: [&[f32]; GROUP] = [&[]; GROUP];
        for k in 0..GROUP {
            let (_, row, pos) = pick(k);
            rows[k] = bank.row(row);
            windows[k] = &src[pos..pos + span];
        }
        let ys = dot_rows(simd, shift, span, rows, windows);
        for (&(index, _, _), y) in group.iter().zip(ys) {
            store(index, y);
        }
    }
}

/// Store lanes `skip..count` of `y` as members `first + lane`.
#[inline(always)]
fn put_lanes<S: Simd>(
    y: S::f32s,
    first: usize,
    skip: usize,
    count: usize,
    store: &mut impl FnMut(usize, f32),
) {
    let mut lane = [0.0f32; LANES];
    let (v, _) = S::as_mut_simd_f32s(&mut lane[..S::F32_LANES]);
    v[0] = y;
    for (l, &value) in lane.iter().enumerate().take(count).skip(skip) {
        store(first + l, value);
    }
}

/// All `members` outputs of one phase of an integer upsampler: member `m` reads `x[m..m +
/// span]`. Outputs go `lanes` to a vector (consecutive members), eight vectors at a time.
#[inline(always)]
fn vertical_head<S: Simd>(
    simd: S,
    row: &[f32],
    x: &[f32],
    members: usize,
    scratch: &mut Vec<f32>,
    mut store: impl FnMut(usize, f32),
) {
    let lanes = S::F32_LANES;
    let span = row.len();
    let full = members / lanes;
    let mut v = 0;
    while v + 8 <= full {
        let ys = fir_vertical::<S, 8>(simd, row, &x[v * lanes..]);
        for (g, y) in ys.into_iter().enumerate() {
            put_lanes::<S>(y, (v + g) * lanes, 0, lanes, &mut store);
        }
        v += 8;
    }
    while v + 2 <= full {
        let ys = fir_vertical::<S, 2>(simd, row, &x[v * lanes..]);
        for (g, y) in ys.into_iter().enumerate() {
            put_lanes::<S>(y, (v + g) * lanes, 0, lanes, &mut store);
        }
        v += 2;
    }
    if v < full {
        let [y] = fir_vertical::<S, 1>(simd, row, &x[v * lanes..]);
        put_lanes::<S>(y, v * lanes, 0, lanes, &mut store);
    }
    let rest = members - full * lanes;
    if rest > 0 {
        if full > 0 {
            // Recompute the last `lanes` members (same values) and keep the new ones.
            let first = members - lanes;
            let [y] = fir_vertical::<S, 1>(simd, row, &x[first..]);
            put_lanes::<S>(y, first, lanes - rest, lanes, &mut store);
        } else {
            // Fewer members than lanes: the unused lanes read zeros from a scratch copy.
            scratch.clear();
            scratch.extend_from_slice(&x[..members - 1 + span]);
            scratch.resize(span + lanes - 1, 0.0);
            let [y] = fir_vertical::<S, 1>(simd, row, &scratch[..]);
            put_lanes::<S>(y, 0, 0, rest, &mut store);
        }
    }
}

/// Taps sharing one residue that one [`vertical_taps`] call takes: with eight accumulators,
/// five coefficient vectors and a streamed input vector all stay in registers.
const TAPS_PER_STEP: usize = 5;

/// `G` vectors of consecutive outputs of one row, `x` starting at the first output's window:
/// lane `l` of vector `g` is `sum_i row[i] * x[lanes * g + l + i]`.
///
/// The input vector at `x[lanes * j + t..]` is tap `t + lanes * k` of vector `j - k` for every
/// `k`: so the taps are taken `TAPS_PER_STEP` of one residue `t mod lanes` at a time, each
/// input vector loaded once for all the (vector, tap) pairs it feeds, the step's coefficients
/// held in registers. Each output (lane) sums its taps in the same order whatever `G`: tap
/// chunks of `lanes * TAPS_PER_STEP`, within a chunk residue by residue, within a residue in
/// increasing order.
#[inline(always)]
fn fir_vertical<S: Simd, const G: usize>(simd: S, row: &[f32], x: &[f32]) -> [S::f32s; G] {
    let lanes = S::F32_LANES;
    let span = row.len();
    let x = &x[..(G - 1) * lanes + span + lanes - 1];
    let mut acc = [simd.splat_f32s(0.0); G];
    let chunk = lanes * TAPS_PER_STEP;
    let mut base = 0;
    while base < span {
        for residue in 0..lanes {
            let first = base + residue;
            if first >= span {
                break;
            }
            let taps = (span - first).div_ceil(lanes).min(TAPS_PER_STEP);
            match taps {
                5 => vertical_taps::<S, G, 5>(simd, row, x, first, &mut acc),
                4 => vertical_taps::<S, G, 4>(simd, row, x, first, &mut acc),
                3 => vertical_taps::<S, G, 3>(simd, row, x, first, &mut acc),
                2 => vertical_taps::<S, G, 2>(simd, row, x, first, &mut acc),
                _ => vertical_taps::<S, G, 1>(simd, row, x, first, &mut acc),
            }
        }
        base += chunk;
    }
    acc
}

/// Taps `first + lanes * k` (`k < K`) for `G` vectors of outputs.
#[inline(always)]
fn vertical_taps<S: Simd, const G: usize, const K: usize>(
    simd: S,
    row: &[f32],
    x: &[f32],
    first: usize,
    acc: &mut [S::f32s; G],
) {
    let lanes = S::F32_LANES;
    let mut c = [simd.splat_f32s(0.0); K];
    for (k, c) in c.iter_mut().enumerate() {
        *c = simd.splat_f32s(row[first + lanes * k]);
    }
    // Input vector j feeds vector g = j - k with tap k.
    for j in 0..G + K - 1 {
        let at = first + lanes * j;
        let v = S::as_simd_f32s(&x[at..at + lanes]).0[0];
        for (k, &c) in c.iter().enumerate() {
            if j >= k && j - k < G {
                acc[j - k] = simd.mul_add_e_f32s(c, v, acc[j - k]);
            }
        }
    }
}
