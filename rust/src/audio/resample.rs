//! The streaming resampler: any chunk sizes in, every output sample that the input so far
//! determines out, exact time alignment, and a tail on [`Resampler::flush`].
//!
//! Input is kept per channel in a short history (the frames that future windows still reach).
//! A large mono float32 chunk is read in place: only the frames around its start (windows
//! that also reach into the history) and its tail (kept for the next chunk) are copied.
#![forbid(unsafe_code)]

use std::sync::Arc;

use pulp::Arch;

use super::convert::{check_channels, Samples};
use super::filter::{check_rate, gcd, shared_bank, FilterBank, Layout, Phases, Quality};
use super::filter::{ALIGN_PHASE, LANES};
use super::kernel::{run_channel, Batch, Head, GROUP};
use crate::Result;

/// Outputs per batch, about: bounds the head list, keeps a batch's input window in L1 cache.
const BATCH: usize = 2048;
/// Chunks of at least this many frames (and at least four windows) are read in place.
const DIRECT_MIN: usize = 16384;
/// Other input goes through the history this many frames at a time.
const SEGMENT: usize = 8192;

/// One channel's recent input: frame `start + i` (`start` is kept by the [`Resampler`]) is
/// `buf[off + i]`, placed so that frame `f` sits at a float address `≡ f + ALIGN_PHASE`
/// (mod `LANES`): the decimation kernels' aligned loads are then aligned in memory too.
#[derive(Debug, Default, Clone)]
struct Track {
    buf: Vec<f32>,
    off: usize,
}

impl Track {
    fn frames(&self) -> &[f32] {
        &self.buf[self.off..]
    }

    fn len(&self) -> usize {
        self.buf.len() - self.off
    }

    /// Where frame `start` goes in a buffer at address `base`.
    fn offset_for(base: usize, start: i64) -> usize {
        let misalign = (base / 4 % LANES) as i64;
        (start + ALIGN_PHASE - misalign).rem_euclid(LANES as i64) as usize
    }

    /// Keep the frames from index `drop` on (the first becomes frame `start`), realigned.
    fn keep_from(&mut self, drop: usize, start: i64) {
        let from = self.off + drop.min(self.len());
        let len = self.buf.len() - from;
        let off = Self::offset_for(self.buf.as_ptr().addr(), start);
        if off + len > self.buf.capacity() {
            // Shifting would reallocate (and move the alignment): start a new buffer.
            let kept = self.buf[from..].to_vec();
            self.buf = Vec::new();
            self.fill(&kept, 0, start);
            return;
        }
        if from != off {
            if off > from {
                self.buf.resize(off + len, 0.0);
            }
            self.buf.copy_within(from..from + len, off);
        }
        self.buf.truncate(off + len);
        self.off = off;
    }

    /// Room for `extra` more frames without moving (so alignment holds while appending).
    fn reserve(&mut self, extra: usize, start: i64) {
        if self.buf.capacity() - self.buf.len() >= extra {
            return;
        }
        let old = std::mem::take(&mut self.buf);
        let len = old.len() - self.off;
        self.fill(&old[self.off..], (len + extra).max(2 * len), start);
    }

    /// Replace the contents with `frames` (the first is frame `start`).
    fn replace(&mut self, frames: &[f32], start: i64) {
        self.buf.clear();
        self.fill(frames, frames.len(), start);
    }

    /// Fill the (empty) buffer with `frames`, the first being frame `start`, aligned, with
    /// room for `room` frames in all.
    fn fill(&mut self, frames: &[f32], room: usize, start: i64) {
        debug_assert!(self.buf.is_empty());
        self.buf.reserve(room.max(frames.len()) + LANES);
        let off = Self::offset_for(self.buf.as_ptr().addr(), start);
        self.buf.resize(off, 0.0);
        self.buf.extend_from_slice(frames);
        self.off = off;
    }

    /// Whether frame `start` (the first) sits where the decimation kernels expect it.
    #[cfg(test)]
    fn aligned(&self, start: i64) -> bool {
        let addr = self.frames().as_ptr().addr() / 4;
        (addr as i64 - start - ALIGN_PHASE).rem_euclid(LANES as i64) == 0
    }
}

/// Where the stream is: the next output to compute, counted from the first warm-up sample,
/// and its position: its time is `newest + phase / up` input samples.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    next: u64,
    newest: i64,
    phase: u64,
}

impl Cursor {
    fn at(next: u64, bank: &FilterBank) -> Self {
        let t = u128::from(next) * u128::from(bank.down);
        Cursor {
            next,
            newest: (t / u128::from(bank.up)) as i64,
            phase: (t % u128::from(bank.up)) as u64,
        }
    }

    /// First frame of the next output's window.
    fn window_start(&self, bank: &FilterBank) -> i64 {
        self.newest - (bank.lead + bank.span) as i64 + 1
    }
}

/// Per-stream scratch the emitter reuses.
#[derive(Debug, Default)]
struct Work {
    heads: Vec<Head>,
}

/// A stateful polyphase resampler for interleaved multi-channel float32 audio.
///
/// Output sample `j` lies at input time `j * in_rate / out_rate`: with delay compensation (the
/// default) the first output lines up with the first input, and a stream of `n` input frames
/// gives `ceil(n * out_rate / in_rate)` output frames once flushed, whatever the chunking.
/// Producing output `j` needs input up to `delay` output samples past its time, so a live
/// stream lags by [`Resampler::delay`] output samples. Without compensation the output keeps
/// those `delay` warm-up samples at its start (and `delay` more samples at the end), as a plain
/// causal filter would.
#[derive(Debug)]
pub struct Resampler {
    in_rate: u32,
    out_rate: u32,
    channels: usize,
    quality: Quality,
    compensate: bool,
    /// `None` when the rates are equal (samples pass through unchanged).
    bank: Option<Arc<FilterBank>>,
    arch: Arch,
    /// Input history per channel; `tracks[c].frames()[i]` is input frame `start + i`.
    tracks: Vec<Track>,
    start: i64,
    frames_in: u64,
    frames_out: u64,
    cursor: Cursor,
    work: Work,
}

impl Resampler {
    /// A resampler from `in_rate` to `out_rate` Hz for `channels` interleaved channels.
    pub fn new(
        in_rate: u32,
        out_rate: u32,
        channels: usize,
        quality: Quality,
        compensate_delay: bool,
    ) -> Result<Self> {
        check_rate("input rate", in_rate)?;
        check_rate("output rate", out_rate)?;
        check_channels(channels)?;
        let bank = if in_rate == out_rate {
            None
        } else {
            Some(shared_bank(in_rate, out_rate, quality)?)
        };
        let mut resampler = Resampler {
            in_rate,
            out_rate,
            channels,
            quality,
            compensate: compensate_delay,
            bank,
            arch: Arch::new(),
            tracks: vec![Track::default(); channels],
            start: 0,
            frames_in: 0,
            frames_out: 0,
            cursor: Cursor::default(),
            work: Work::default(),
        };
        resampler.reset();
        Ok(resampler)
    }

    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn quality(&self) -> Quality {
        self.quality
    }

    pub fn compensate_delay(&self) -> bool {
        self.compensate
    }

    /// The filter's group delay in output frames: how far a live stream's output lags its
    /// input (0 when the rates are equal).
    pub fn delay(&self) -> u64 {
        self.bank.as_ref().map_or(0, |b| b.delay)
    }

    /// Input frames received since the last reset.
    pub fn frames_in(&self) -> u64 {
        self.frames_in
    }

    /// Output frames produced since the last reset.
    pub fn frames_out(&self) -> u64 {
        self.frames_out
    }

    /// Output frames a whole stream of `frames_in` input frames gives once flushed.
    pub fn output_frames(&self, frames_in: u64) -> u64 {
        let total = expected_frames(frames_in, self.in_rate, self.out_rate);
        if self.compensate || total == 0 {
            total
        } else {
            total + self.delay()
        }
    }

    /// Run the kernels on `arch` (tests: the scalar path on a machine with SIMD).
    #[cfg(test)]
    pub(crate) fn set_arch(&mut self, arch: Arch) {
        self.arch = arch;
    }

    /// Forget the stream: the next input starts a new one.
    pub fn reset(&mut self) {
        self.frames_in = 0;
        self.frames_out = 0;
        let Some(bank) = self.bank.clone() else {
            for t in &mut self.tracks {
                *t = Track::default();
            }
            return;
        };
        // The first windows reach back before input frame 0: pre-roll zeros.
        let preroll = bank.lead + bank.span - 1;
        self.start = -(preroll as i64);
        let zeros = vec![0.0; preroll];
        for t in &mut self.tracks {
            t.replace(&zeros, self.start);
        }
        self.cursor = Cursor::at(if self.compensate { bank.delay } else { 0 }, &bank);
    }

    /// Feed interleaved samples; returns every output frame they complete (interleaved).
    pub fn process(&mut self, input: Samples<'_>) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.process_into(input, &mut out)?;
        Ok(out)
    }

    /// As [`Resampler::process`], appending to `out`; returns the number of frames appended.
    pub fn process_into(&mut self, input: Samples<'_>, out: &mut Vec<f32>) -> Result<usize> {
        let frames = input.frames(self.channels)?;
        let Some(bank) = self.bank.clone() else {
            out.extend(input.to_f32()?);
            self.frames_in += frames as u64;
            self.frames_out += frames as u64;
            return Ok(frames);
        };
        let first = self.frames_in as i64;
        // One allocation for everything this chunk completes.
        let due = expected_frames(self.frames_in + frames as u64, self.in_rate, self.out_rate)
            + bank.delay;
        out.reserve(due.saturating_sub(self.cursor.next) as usize * self.channels);
        if let Samples::F32(x) = input {
            if self.channels == 1 && self.in_place(&bank, x, first) {
                return Ok(self.process_in_place(&bank, x, out));
            }
        }
        // Through the history, a segment at a time: it stays small and in cache.
        let mut done = 0;
        let mut from = 0;
        while from < frames {
            let to = frames.min(from + SEGMENT);
            let segment = input.frames_range(self.channels, from, to);
            for (c, t) in self.tracks.iter_mut().enumerate() {
                t.reserve(to - from, self.start);
                segment.append_channel(c, self.channels, &mut t.buf);
            }
            self.frames_in += (to - from) as u64;
            done += self.emit_from_tracks(&bank, self.frames_in as i64, u64::MAX, out);
            self.trim(&bank);
            from = to;
        }
        Ok(done)
    }

    /// Whether a mono chunk whose first frame is `first` is read in place: it is long enough
    /// for the copies at its ends not to matter, and (for the decimation layout) aligned like
    /// the history would be.
    fn in_place(&self, bank: &FilterBank, x: &[f32], first: i64) -> bool {
        if x.len() < DIRECT_MIN.max(4 * bank.span) {
            return false;
        }
        bank.layout != Layout::Shifted
            || ((x.as_ptr().addr() / 4) as i64 - first - ALIGN_PHASE).rem_euclid(LANES as i64) == 0
    }

    /// Process a long mono chunk `x` read in place.
    fn process_in_place(&mut self, bank: &FilterBank, x: &[f32], out: &mut Vec<f32>) -> usize {
        let first = self.frames_in as i64;
        let end = first + x.len() as i64;
        // Outputs whose windows start in the history: bridge it with the chunk's first `span`
        // frames (every such window ends within them).
        let track = &mut self.tracks[0];
        track.reserve(bank.span, self.start);
        track.buf.extend_from_slice(&x[..bank.span]);
        let mut done = self.emit_from_tracks(bank, end, u64::MAX, out);
        // Every other ready output's window lies in the chunk.
        done += emit(
            self.arch,
            bank,
            &mut self.cursor,
            &mut self.work,
            &[x],
            first,
            end,
            end,
            u64::MAX,
            out,
        );
        // Keep what future windows reach.
        let keep = self.cursor.window_start(bank).clamp(first, end);
        self.start = keep;
        self.tracks[0].replace(&x[(keep - first) as usize..], keep);
        self.frames_in += x.len() as u64;
        self.frames_out += done as u64;
        done
    }

    /// End the stream: returns the remaining output frames (the input is taken to be followed
    /// by silence), then resets for a new stream.
    pub fn flush(&mut self) -> Vec<f32> {
        let mut out = Vec::new();
        self.flush_into(&mut out);
        out
    }

    /// As [`Resampler::flush`], appending to `out`; returns the number of frames appended.
    pub fn flush_into(&mut self, out: &mut Vec<f32>) -> usize {
        let Some(bank) = self.bank.clone() else {
            self.reset();
            return 0;
        };
        let mut frames = 0;
        if self.frames_in > 0 {
            let end = expected_frames(self.frames_in, self.in_rate, self.out_rate) + bank.delay;
            if end > self.cursor.next {
                // The newest input frame the last output reads; zeros stand in past the end.
                let last =
                    (u128::from(end - 1) * u128::from(bank.down) / u128::from(bank.up)) as i64;
                let available = (last + 1).max(self.frames_in as i64);
                let pad = (available - self.frames_in as i64) as usize;
                for t in &mut self.tracks {
                    t.reserve(pad, self.start);
                    t.buf.resize(t.buf.len() + pad, 0.0);
                }
                frames = self.emit_from_tracks(&bank, available, end, out);
            }
        }
        self.reset();
        frames
    }

    /// Emit from the history the outputs that are ready by `available` frames (and below
    /// `end`) and whose windows it holds.
    fn emit_from_tracks(
        &mut self,
        bank: &FilterBank,
        available: i64,
        end: u64,
        out: &mut Vec<f32>,
    ) -> usize {
        let sources: Vec<&[f32]> = self.tracks.iter().map(Track::frames).collect();
        let src_end = self.start + sources.first().map_or(0, |s| s.len()) as i64;
        let done = emit(
            self.arch,
            bank,
            &mut self.cursor,
            &mut self.work,
            &sources,
            self.start,
            src_end,
            available,
            end,
            out,
        );
        self.frames_out += done as u64;
        done
    }

    /// Drop the history no future window reaches.
    fn trim(&mut self, bank: &FilterBank) {
        let len = self.tracks.first().map_or(0, Track::len) as i64;
        let drop = (self.cursor.window_start(bank) - self.start).clamp(0, len);
        if drop > 0 {
            self.start += drop;
            for t in &mut self.tracks {
                t.keep_from(drop as usize, self.start);
            }
        }
    }
}

/// Outputs per batch for `total` outputs of this table: about [`BATCH`], as even as possible,
/// in whole groups of [`GROUP`] outputs per phase where the period allows it.
fn batch_len(bank: &FilterBank, total: usize) -> usize {
    let batches = total.div_ceil(BATCH).max(1);
    let even = total.div_ceil(batches);
    let up = usize::try_from(bank.up).unwrap_or(usize::MAX);
    let down = usize::try_from(bank.down).unwrap_or(usize::MAX);
    // Outputs that make whole groups of every phase (or alignment).
    let whole = match (bank.layout, bank.phases) {
        (Layout::Rows, Phases::Exact) => GROUP.saturating_mul(up),
        (Layout::Shifted, _) => {
            GROUP * (LANES / gcd(down as u64 % LANES as u64, LANES as u64) as usize)
        }
        _ => 1,
    };
    // Whole groups when that keeps the batch within a few times the target size.
    let len = if whole <= 4 * BATCH {
        even.max(whole).next_multiple_of(whole)
    } else {
        even
    };
    len.min(total)
}

/// Compute outputs from `cursor.next` on while they are ready (newest input frame below
/// `available`), their windows lie in the source (`sources[c][i]` is frame `src_start + i` of
/// channel `c`, up to `src_end`) and their index is below `end`; append them to `out`
/// (interleaved) and return how many.
#[allow(clippy::too_many_arguments)]
fn emit(
    arch: Arch,
    bank: &FilterBank,
    cursor: &mut Cursor,
    work: &mut Work,
    sources: &[&[f32]],
    src_start: i64,
    src_end: i64,
    available: i64,
    end: u64,
    out: &mut Vec<f32>,
) -> usize {
    let (up, down) = (u128::from(bank.up), u128::from(bank.down));
    // Output u is ready when newest(u) < available, i.e. u * down < available * up; its window
    // fits when newest(u) < src_end + lead.
    let limit = available.min(src_end + bank.lead as i64);
    let ready = (limit.max(0) as u128 * up).div_ceil(down);
    let last = ready.min(u128::from(end));
    let total = last.saturating_sub(u128::from(cursor.next)) as usize;
    if total == 0 {
        return 0;
    }
    let channels = sources.len();
    let first_out = out.len();
    out.resize(first_out + total * channels, 0.0);
    let align = (src_start + ALIGN_PHASE).rem_euclid(LANES as i64) as usize;
    let reach = (bank.lead + bank.span) as i64 - 1;
    let period = usize::try_from(bank.up).unwrap_or(usize::MAX);
    let batch_len = batch_len(bank, total);
    // Each output advances the time by down/up input samples: step without dividing.
    let (step_whole, step_phase) = ((bank.down / bank.up) as i64, bank.down % bank.up);
    let mut done = 0;
    while done < total {
        let len = batch_len.min(total - done);
        // The first output of each phase in this batch; later ones follow from it.
        work.heads.clear();
        let (mut newest, mut phase) = (cursor.newest, cursor.phase);
        for _ in 0..period.min(len) {
            let pos = (newest - reach - src_start) as usize;
            work.heads.push(match bank.phases {
                Phases::Exact => Head {
                    row: phase as usize,
                    pos,
                    frac: 0.0,
                },
                Phases::Interpolated(n) => {
                    let scaled = phase * n as u64;
                    Head {
                        row: (scaled / bank.up) as usize,
                        pos,
                        frac: (scaled % bank.up) as f32 / bank.up as f32,
                    }
                }
            });
            newest += step_whole;
            phase += step_phase;
            if phase >= bank.up {
                phase -= bank.up;
                newest += 1;
            }
        }
        let batch = Batch {
            heads: &work.heads,
            len,
            align,
        };
        let out_batch = &mut out[first_out + done * channels..];
        for (c, src) in sources.iter().enumerate() {
            run_channel(arch, bank, src, batch, out_batch, channels, c);
        }
        done += len;
        *cursor = Cursor::at(cursor.next + len as u64, bank);
    }
    total
}

/// `ceil(frames_in * out_rate / in_rate)`: the output frames whose time falls inside a stream
/// of `frames_in` input frames.
pub fn expected_frames(frames_in: u64, in_rate: u32, out_rate: u32) -> u64 {
    let num = u128::from(frames_in) * u128::from(out_rate);
    num.div_ceil(u128::from(in_rate)) as u64
}

/// Resample a whole signal in one call (delay compensated, flushed).
pub fn resample(
    input: Samples<'_>,
    in_rate: u32,
    out_rate: u32,
    channels: usize,
    quality: Quality,
) -> Result<Vec<f32>> {
    let mut r = Resampler::new(in_rate, out_rate, channels, quality, true)?;
    let frames = input.frames(channels)? as u64;
    let mut out =
        Vec::with_capacity(expected_frames(frames, in_rate, out_rate) as usize * channels);
    r.process_into(input, &mut out)?;
    r.flush_into(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The history keeps frame `f` at a float address `f + ALIGN_PHASE (mod LANES)` through
    /// appends, reallocations, trims and replacements, and keeps its contents.
    #[test]
    fn history_stays_aligned() {
        let mut t = Track::default();
        let mut start = -13i64;
        let mut want: Vec<f32> = (0..20).map(|v| v as f32).collect();
        t.replace(&want, start);
        assert!(t.aligned(start));
        let mut next = 20.0f32;
        for round in 0..200usize {
            let n = (round * 37) % 300 + 1;
            t.reserve(n, start);
            for _ in 0..n {
                t.buf.push(next);
                want.push(next);
                next += 1.0;
            }
            assert!(t.aligned(start));
            let drop = (round * 53) % (t.len() + 1);
            start += drop as i64;
            t.keep_from(drop, start);
            want.drain(..drop);
            assert!(t.aligned(start), "round {round}");
            assert_eq!(t.frames(), &want[..]);
        }
    }
}
