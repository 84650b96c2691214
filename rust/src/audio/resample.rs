//! The streaming resampler: any chunk sizes in, every output sample that the input so far
//! determines out, exact time alignment, and a tail on [`Resampler::flush`].
#![forbid(unsafe_code)]

use std::sync::Arc;

use pulp::Arch;

use super::convert::{check_channels, Samples};
use super::filter::{check_rate, shared_bank, FilterBank, Phases, Quality};
use super::kernel::{run_channel, Batch, Head};
use crate::Result;

/// Outputs computed per batch: bounds the job list, keeps a batch's input window in cache.
const BATCH: usize = 1024;
/// Zeros appended to the history while kernels run (at least the widest vector, 16 lanes).
const LANE_SLACK: usize = 16;

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
    /// Input history per channel; `history[c][i]` is input frame `start + i`.
    history: Vec<Vec<f32>>,
    start: i64,
    frames_in: u64,
    frames_out: u64,
    /// Next output to compute, counted from the first warm-up sample, and its position:
    /// its time is `newest + phase / up` input samples.
    next: u64,
    newest: i64,
    phase: u64,
    heads: Vec<Head>,
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
            history: vec![Vec::new(); channels],
            start: 0,
            frames_in: 0,
            frames_out: 0,
            next: 0,
            newest: 0,
            phase: 0,
            heads: Vec::new(),
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

    /// Forget the stream: the next input starts a new one.
    pub fn reset(&mut self) {
        self.frames_in = 0;
        self.frames_out = 0;
        for h in &mut self.history {
            h.clear();
        }
        let Some(bank) = self.bank.clone() else {
            return;
        };
        // The first windows reach back before input frame 0: pre-roll zeros.
        let preroll = bank.taps - 1;
        for h in &mut self.history {
            h.resize(preroll, 0.0);
        }
        self.start = -(preroll as i64);
        self.next = if self.compensate { bank.delay } else { 0 };
        let t = u128::from(self.next) * u128::from(bank.down);
        self.newest = (t / u128::from(bank.up)) as i64;
        self.phase = (t % u128::from(bank.up)) as u64;
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
        if self.bank.is_none() {
            out.extend(input.to_f32()?);
            self.frames_in += frames as u64;
            self.frames_out += frames as u64;
            return Ok(frames);
        }
        input.append_deinterleaved(&mut self.history)?;
        self.frames_in += frames as u64;
        let available = self.frames_in as i64;
        Ok(self.emit(available, u64::MAX, out))
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
            if end > self.next {
                // The newest input frame the last output reads; zeros stand in past the end.
                let last =
                    (u128::from(end - 1) * u128::from(bank.down) / u128::from(bank.up)) as i64;
                let available = (last + 1).max(self.frames_in as i64);
                let pad = (available - self.frames_in as i64) as usize;
                for h in &mut self.history {
                    h.resize(h.len() + pad, 0.0);
                }
                frames = self.emit(available, end, out);
            }
        }
        self.reset();
        frames
    }

    /// Compute outputs while their newest input frame is below `available` and their index
    /// below `end`; returns how many.
    fn emit(&mut self, available: i64, end: u64, out: &mut Vec<f32>) -> usize {
        let Some(bank) = self.bank.clone() else {
            return 0;
        };
        let (up, down) = (u128::from(bank.up), u128::from(bank.down));
        // Output u needs input up to floor(u * down / up): it is ready when u * down < available * up.
        let ready = (available.max(0) as u128 * up).div_ceil(down);
        let last = ready.min(u128::from(end));
        let total = last.saturating_sub(u128::from(self.next)) as usize;
        let taps = bank.taps as i64;
        let channels = self.channels;
        let period = usize::try_from(bank.up).unwrap_or(usize::MAX);
        // Each output advances the time by down/up input samples: step without dividing.
        let (step_whole, step_phase) = ((bank.down / bank.up) as i64, bank.down % bank.up);
        let mut done = 0;
        while done < total {
            let len = BATCH.min(total - done);
            // The first output of each phase in this batch; later ones follow from it.
            self.heads.clear();
            let (mut newest, mut phase) = (self.newest, self.phase);
            for _ in 0..period.min(len) {
                let pos = (newest - taps + 1 - self.start) as usize;
                self.heads.push(match bank.phases {
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
            let first = out.len();
            out.resize(first + len * channels, 0.0);
            // Slack past the input for the upsampling kernel's unused vector lanes.
            for h in &mut self.history {
                h.resize(h.len() + LANE_SLACK, 0.0);
            }
            let batch = Batch {
                heads: &self.heads,
                len,
            };
            for (c, history) in self.history.iter().enumerate() {
                run_channel(
                    self.arch,
                    &bank,
                    history,
                    batch,
                    &mut out[first..],
                    channels,
                    c,
                );
            }
            for h in &mut self.history {
                h.truncate(h.len() - LANE_SLACK);
            }
            done += len;
            self.next += len as u64;
            let t = u128::from(self.next) * down;
            self.newest = (t / up) as i64;
            self.phase = (t % up) as u64;
        }
        self.frames_out += total as u64;
        // Drop the history no future window reaches.
        let keep_from = self.newest - taps + 1;
        let len = self.history.first().map_or(0, Vec::len) as i64;
        let drop = (keep_from - self.start).clamp(0, len);
        if drop > 0 {
            for h in &mut self.history {
                h.drain(..drop as usize);
            }
            self.start += drop;
        }
        total
    }
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
    let mut out = Vec::new();
    r.process_into(input, &mut out)?;
    r.flush_into(&mut out);
    Ok(out)
}
