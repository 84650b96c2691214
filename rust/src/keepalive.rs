//! The WebSocket keepalive (ping/pong) state machine of the SageMaker sidecar: a ping every
//! `interval` seconds (60 s), and the connection closed once `max_missed` (5) consecutive pings
//! went unanswered.
//!
//! It is sans-IO and clock-free: every call takes `now` (seconds on any monotonic clock), so it
//! is deterministic and tested without sleeping. The owner sends the pings and closes the socket.
//!
//! # Semantics
//!
//! * **Clock.** [`Keepalive::start`] (or the first [`Keepalive::tick`]) sets the clock; the first
//!   ping is due `interval` seconds later. Each ping is due `interval` seconds after the previous
//!   one was *sent* (the `now` of the tick that sent it), so every ping gets a full interval to be
//!   answered even when ticks run late. [`Keepalive::next_deadline`] says when to tick next.
//! * **Payloads.** Ping `n` (n = 1, 2, …) carries `prefix ‖ n as 8 big-endian bytes`. The prefix
//!   defaults to 8 random bytes, so that a stale pong from an earlier connection does not match.
//!   Payloads stay within the 125 bytes RFC 6455 allows a control frame.
//! * **Pongs.** A pong whose payload matches an outstanding ping returns its round-trip time and
//!   clears that ping *and every earlier one*: RFC 6455 §5.5.3 lets a peer answer only the most
//!   recent of several pings, and pongs come in order, so the earlier ones are answered or
//!   skipped. A pong for the latest ping therefore clears all outstanding pings (miss count 0);
//!   a late pong for an older ping leaves the later, still unanswered pings outstanding. Unknown,
//!   duplicate and unsolicited pongs (RFC 6455 allows unsolicited pongs) return `None` and are
//!   counted in [`Keepalive::unmatched_pongs`]; they change nothing else.
//! * **Misses and close.** A ping is *missed* when the next ping falls due and it is still
//!   unanswered. When a ping falls due and `max_missed` pings are outstanding (all missed),
//!   `tick` returns [`Action::Close`] instead of a ping: with the defaults, the fifth unanswered
//!   ping is judged missed at `start + 6 × 60 s`. Close is returned exactly once; afterwards the
//!   machine is frozen: `tick` returns `None`, `pong` returns `None` and counts nothing.
//! * **Order within one instant.** Feed received pongs before ticking: a pong that arrives at the
//!   same instant the close is due still saves the connection.
//! * **Time going backwards** (two tasks stamping events with a clock read slightly apart) is
//!   clamped: a `now` earlier than the latest one seen counts as the latest one seen, so RTTs are
//!   never negative and deadlines never move back. A non-finite `now` is an error.
//! * **Other traffic.** SageMaker counts pongs only, and so does this machine by default. A caller
//!   that wants any received frame to prove liveness calls [`Keepalive::activity`], which clears
//!   all outstanding pings (their late pongs then count as unmatched).
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Error, Result};

/// SageMaker's ping interval, seconds.
pub const SAGEMAKER_PING_INTERVAL: f64 = 60.0;
/// SageMaker closes after this many consecutive unanswered pings.
pub const SAGEMAKER_MAX_MISSED: u32 = 5;
/// A control frame payload is at most 125 bytes (RFC 6455 §5.5); the counter takes 8.
pub const MAX_PREFIX_LEN: usize = 125 - 8;
/// Largest accepted `max_missed` (bounds the memory kept for outstanding pings).
pub const MAX_MISSED_LIMIT: u32 = 65_535;
/// Largest accepted interval, seconds (about 31 years).
pub const MAX_INTERVAL: f64 = 1e9;
/// Length of the default random payload prefix.
pub const DEFAULT_PREFIX_LEN: usize = 8;

/// What the owner must do after a [`Keepalive::tick`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send a WebSocket ping with this payload.
    Ping(Vec<u8>),
    /// Close the connection: `missed` consecutive pings went unanswered.
    Close { missed: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    NotStarted,
    Running { next_ping_at: f64 },
    Closed,
}

/// One outstanding ping: its sequence number and when it was sent.
#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u64,
    at: f64,
}

/// The keepalive state machine of one connection. See the module docs for the semantics.
#[derive(Debug, Clone)]
pub struct Keepalive {
    interval: f64,
    max_missed: u32,
    prefix: Vec<u8>,
    state: State,
    /// The latest `now` seen (time never goes back).
    now: f64,
    /// Unanswered pings, oldest first; sequence numbers are consecutive.
    outstanding: VecDeque<Sent>,
    pings_sent: u64,
    pongs_received: u64,
    unmatched_pongs: u64,
    last_rtt: Option<f64>,
}

/// Eight bytes that differ between connections and processes (not secret, just unlikely to
/// collide): std's randomly keyed SipHash over a process-wide counter and the wall clock.
pub fn random_prefix() -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new()
        .hash_one((n, nanos))
        .to_be_bytes()
        .to_vec()
}

fn check_now(now: f64) -> Result<()> {
    if now.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "now must be a finite number of seconds, got {now}"
        )))
    }
}

impl Keepalive {
    /// A keepalive that pings every `interval` seconds and closes after `max_missed` consecutive
    /// unanswered pings; payloads start with `prefix` (at most [`MAX_PREFIX_LEN`] bytes, may be
    /// empty; [`random_prefix`] is the usual choice).
    ///
    /// Errors: `interval` not finite, not positive or above [`MAX_INTERVAL`]; `max_missed` 0 or
    /// above [`MAX_MISSED_LIMIT`]; `prefix` too long.
    pub fn new(interval: f64, max_missed: u32, prefix: Vec<u8>) -> Result<Self> {
        if !interval.is_finite() || interval <= 0.0 || interval > MAX_INTERVAL {
            return Err(Error::invalid(format!(
                "interval must be a positive number of seconds up to {MAX_INTERVAL}, got {interval}"
            )));
        }
        if max_missed == 0 || max_missed > MAX_MISSED_LIMIT {
            return Err(Error::invalid(format!(
                "max_missed must be between 1 and {MAX_MISSED_LIMIT}, got {max_missed}"
            )));
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(Error::invalid(format!(
                "payload prefix must be at most {MAX_PREFIX_LEN} bytes (a ping payload is at most \
                 125 bytes, 8 of them the counter), got {}",
                prefix.len()
            )));
        }
        Ok(Self::unchecked(interval, max_missed, prefix))
    }

    /// SageMaker's settings: 60 s interval, 5 misses, a random prefix.
    pub fn sagemaker() -> Self {
        Self::unchecked(
            SAGEMAKER_PING_INTERVAL,
            SAGEMAKER_MAX_MISSED,
            random_prefix(),
        )
    }

    fn unchecked(interval: f64, max_missed: u32, prefix: Vec<u8>) -> Self {
        Keepalive {
            interval,
            max_missed,
            prefix,
            state: State::NotStarted,
            now: f64::NEG_INFINITY,
            outstanding: VecDeque::with_capacity(max_missed.min(8) as usize),
            pings_sent: 0,
            pongs_received: 0,
            unmatched_pongs: 0,
            last_rtt: None,
        }
    }

    /// Clamp `now` to the latest time seen and remember it.
    fn advance(&mut self, now: f64) -> Result<f64> {
        check_now(now)?;
        if now > self.now {
            self.now = now;
        }
        Ok(self.now)
    }

    /// Start the clock: the first ping is due at `now + interval`.
    ///
    /// Errors: already started (by `start` or a `tick`); `now` not finite.
    pub fn start(&mut self, now: f64) -> Result<()> {
        if self.state != State::NotStarted {
            return Err(Error::invalid("keepalive already started"));
        }
        let now = self.advance(now)?;
        self.state = State::Running {
            next_ping_at: now + self.interval,
        };
        Ok(())
    }

    /// Advance to `now` and say what to do: `Some(Action::Ping(payload))` when a ping is due,
    /// `Some(Action::Close { .. })` (once) when `max_missed` consecutive pings went unanswered,
    /// `None` otherwise. The first call on an unstarted machine starts it and returns `None`.
    ///
    /// Errors: `now` not finite.
    pub fn tick(&mut self, now: f64) -> Result<Option<Action>> {
        match self.state {
            State::Closed => {
                check_now(now)?;
                Ok(None)
            }
            State::NotStarted => {
                self.start(now)?;
                Ok(None)
            }
            State::Running { next_ping_at } => {
                let now = self.advance(now)?;
                if now < next_ping_at {
                    return Ok(None);
                }
                // Every outstanding ping has now had its full interval: all are missed.
                let missed = self.outstanding.len();
                if missed >= self.max_missed as usize {
                    self.state = State::Closed;
                    return Ok(Some(Action::Close {
                        missed: self.max_missed,
                    }));
                }
                self.pings_sent += 1;
                let seq = self.pings_sent;
                self.outstanding.push_back(Sent { seq, at: now });
                self.state = State::Running {
                    next_ping_at: now + self.interval,
                };
                Ok(Some(Action::Ping(self.payload_for(seq))))
            }
        }
    }

    fn payload_for(&self, seq: u64) -> Vec<u8> {
        let mut payload = Vec::with_capacity(self.prefix.len() + 8);
        payload.extend_from_slice(&self.prefix);
        payload.extend_from_slice(&seq.to_be_bytes());
        payload
    }

    /// A pong with `payload` arrived at `now`. Returns the round-trip time in seconds (≥ 0) of
    /// the ping it answers, clearing that ping and every earlier one; `None` for a payload that
    /// matches no outstanding ping (counted in `unmatched_pongs`) and after the close.
    ///
    /// Errors: `now` not finite.
    pub fn pong(&mut self, payload: &[u8], now: f64) -> Result<Option<f64>> {
        check_now(now)?;
        if self.state == State::Closed {
            return Ok(None);
        }
        let now = self.advance(now)?;
        let Some(index) = self.match_outstanding(payload) else {
            self.unmatched_pongs += 1;
            return Ok(None);
        };
        let mut answered = None;
        for _ in 0..=index {
            answered = self.outstanding.pop_front();
        }
        let Some(sent) = answered else {
            // Unreachable: `index` is a valid position. Treat it as unmatched rather than panic.
            self.unmatched_pongs += 1;
            return Ok(None);
        };
        let rtt = (now - sent.at).max(0.0);
        self.pongs_received += 1;
        self.last_rtt = Some(rtt);
        Ok(Some(rtt))
    }

    /// The position in `outstanding` of the ping `payload` answers.
    fn match_outstanding(&self, payload: &[u8]) -> Option<usize> {
        let rest = payload.strip_prefix(self.prefix.as_slice())?;
        let seq = u64::from_be_bytes(rest.try_into().ok()?);
        let first = self.outstanding.front()?.seq;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        (index < self.outstanding.len()).then_some(index)
    }

    /// Any frame arrived at `now`: treat the peer as alive and forget every outstanding ping.
    /// Not SageMaker's behaviour (it counts pongs only); call it only to opt in.
    ///
    /// Errors: `now` not finite.
    pub fn activity(&mut self, now: f64) -> Result<()> {
        check_now(now)?;
        if matches!(self.state, State::Running { .. }) {
            self.advance(now)?;
            self.outstanding.clear();
        }
        Ok(())
    }

    /// When `tick` next has something to do: the next ping (or close) time; `None` before the
    /// start and after the close.
    pub fn next_deadline(&self) -> Option<f64> {
        match self.state {
            State::Running { next_ping_at } => Some(next_ping_at),
            State::NotStarted | State::Closed => None,
        }
    }

    /// Seconds between pings.
    pub fn interval(&self) -> f64 {
        self.interval
    }

    /// Consecutive unanswered pings that close the connection.
    pub fn max_missed(&self) -> u32 {
        self.max_missed
    }

    /// The bytes every ping payload starts with.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// Whether the clock has been started.
    pub fn started(&self) -> bool {
        self.state != State::NotStarted
    }

    /// Whether `tick` has returned [`Action::Close`].
    pub fn closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Pings sent so far.
    pub fn pings_sent(&self) -> u64 {
        self.pings_sent
    }

    /// Pongs that answered an outstanding ping.
    pub fn pongs_received(&self) -> u64 {
        self.pongs_received
    }

    /// Pongs that matched no outstanding ping (unsolicited, duplicate, stale or foreign).
    pub fn unmatched_pongs(&self) -> u64 {
        self.unmatched_pongs
    }

    /// Pings sent and not answered yet (at most `max_missed`).
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Consecutive pings missed so far: outstanding pings whose answer window (one interval) has
    /// passed. Every outstanding ping but the latest is missed while running; all are after the
    /// close.
    pub fn missed(&self) -> usize {
        match self.state {
            State::Closed => self.outstanding.len(),
            State::NotStarted | State::Running { .. } => self.outstanding.len().saturating_sub(1),
        }
    }

    /// Round-trip time of the latest matched pong, seconds.
    pub fn last_rtt(&self) -> Option<f64> {
        self.last_rtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &[u8] = b"conn";

    fn ka(interval: f64, max_missed: u32) -> Keepalive {
        Keepalive::new(interval, max_missed, P.to_vec()).expect("valid")
    }

    fn ping(k: &mut Keepalive, now: f64) -> Vec<u8> {
        match k.tick(now).expect("finite") {
            Some(Action::Ping(p)) => p,
            other => panic!("expected a ping at {now}, got {other:?}"),
        }
    }

    #[test]
    fn payloads_are_prefix_and_counter() {
        let mut k = ka(60.0, 5);
        k.start(0.0).expect("start");
        assert_eq!(ping(&mut k, 60.0), b"conn\0\0\0\0\0\0\0\x01".to_vec());
        assert_eq!(ping(&mut k, 120.0), b"conn\0\0\0\0\0\0\0\x02".to_vec());
        let d = Keepalive::sagemaker();
        assert_eq!(d.prefix().len(), DEFAULT_PREFIX_LEN);
        assert_ne!(Keepalive::sagemaker().prefix(), d.prefix());
    }

    #[test]
    fn all_answered_never_closes() {
        let mut k = ka(60.0, 5);
        assert_eq!(k.tick(0.0), Ok(None)); // starts the clock
        assert!(k.started());
        assert_eq!(k.next_deadline(), Some(60.0));
        for i in 1..=100 {
            let t = 60.0 * f64::from(i);
            assert_eq!(k.tick(t - 1.0), Ok(None));
            let p = ping(&mut k, t);
            assert_eq!(k.pong(&p, t + 0.25), Ok(Some(0.25)));
            assert_eq!(k.outstanding(), 0);
        }
        assert_eq!(k.pings_sent(), 100);
        assert_eq!(k.pongs_received(), 100);
        assert_eq!(k.last_rtt(), Some(0.25));
        assert!(!k.closed());
    }

    #[test]
    fn five_misses_close_at_the_sixth_deadline() {
        let mut k = ka(60.0, 5);
        k.start(0.0).expect("start");
        for i in 1..=5 {
            ping(&mut k, 60.0 * f64::from(i));
            assert_eq!(k.missed(), i as usize - 1);
        }
        assert_eq!(k.tick(359.999), Ok(None));
        assert_eq!(k.tick(360.0), Ok(Some(Action::Close { missed: 5 })));
        assert!(k.closed());
        assert_eq!(k.missed(), 5);
        assert_eq!(k.next_deadline(), None);
        assert_eq!(k.tick(420.0), Ok(None));
        assert_eq!(k.tick(1e6), Ok(None));
        // Frozen: a pong for a real ping no longer counts.
        assert_eq!(k.pong(b"conn\0\0\0\0\0\0\0\x05", 1e6), Ok(None));
        assert_eq!(k.pongs_received(), 0);
        assert_eq!(k.unmatched_pongs(), 0);
    }

    #[test]
    fn late_pong_for_latest_ping_resets() {
        let mut k = ka(60.0, 5);
        k.start(0.0).expect("start");
        let mut last = Vec::new();
        for i in 1..=5 {
            last = ping(&mut k, 60.0 * f64::from(i));
        }
        assert_eq!(k.missed(), 4);
        assert_eq!(k.pong(&last, 359.0), Ok(Some(59.0)));
        assert_eq!(k.outstanding(), 0);
        assert_eq!(k.missed(), 0);
        // A full new round of misses is needed to close.
        for i in 6..=10 {
            ping(&mut k, 60.0 * f64::from(i));
        }
        assert_eq!(k.tick(660.0), Ok(Some(Action::Close { missed: 5 })));
    }

    #[test]
    fn late_pong_for_an_older_ping_clears_only_up_to_it() {
        let mut k = ka(60.0, 5);
        k.start(0.0).expect("start");
        let first = ping(&mut k, 60.0);
        for i in 2..=4 {
            ping(&mut k, 60.0 * f64::from(i));
        }
        assert_eq!(k.pong(&first, 250.0), Ok(Some(190.0)));
        assert_eq!(k.outstanding(), 3); // pings 2, 3, 4
        assert_eq!(k.missed(), 2);
        ping(&mut k, 300.0); // 5
        ping(&mut k, 360.0); // 6: pings 2..6 outstanding
        assert_eq!(k.tick(420.0), Ok(Some(Action::Close { missed: 5 })));
    }

    #[test]
    fn wrong_duplicate_and_stale_pongs_are_ignored() {
        let mut k = ka(10.0, 2);
        k.start(0.0).expect("start");
        let p1 = ping(&mut k, 10.0);
        let mut other = Keepalive::new(10.0, 2, b"othr".to_vec()).expect("valid");
        other.start(0.0).expect("start");
        let foreign = ping(&mut other, 10.0);
        for bad in [
            &b""[..],
            b"conn",
            b"conn\0\0\0\0\0\0\0\x02", // not sent yet
            b"conn\0\0\0\0\0\0\0\0",   // never sent
            b"conn\0\0\0\0\0\0\0\x01\0",
            &foreign,
        ] {
            assert_eq!(k.pong(bad, 11.0), Ok(None), "{bad:?}");
        }
        assert_eq!(k.unmatched_pongs(), 6);
        assert_eq!(k.outstanding(), 1);
        assert_eq!(k.pong(&p1, 12.0), Ok(Some(2.0)));
        assert_eq!(k.pong(&p1, 12.5), Ok(None)); // duplicate
        assert_eq!(k.unmatched_pongs(), 7);
        assert_eq!(k.pongs_received(), 1);
    }

    #[test]
    fn time_going_backwards_is_clamped() {
        let mut k = ka(10.0, 3);
        k.start(100.0).expect("start");
        let p = ping(&mut k, 110.0);
        // A pong stamped before the ping was sent: RTT clamps to 0.
        assert_eq!(k.pong(&p, 105.0), Ok(Some(0.0)));
        assert_eq!(k.tick(50.0), Ok(None)); // counts as 110
        assert_eq!(k.next_deadline(), Some(120.0));
        ping(&mut k, 120.0);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(k.tick(bad).is_err());
            assert!(k.pong(b"x", bad).is_err());
            assert!(k.activity(bad).is_err());
        }
    }

    #[test]
    fn late_ticks_give_each_ping_a_full_interval() {
        let mut k = ka(60.0, 5);
        k.start(0.0).expect("start");
        ping(&mut k, 75.0);
        assert_eq!(k.next_deadline(), Some(135.0));
        assert_eq!(k.tick(134.0), Ok(None));
        ping(&mut k, 1000.0); // very late: one ping, not a burst
        assert_eq!(k.tick(1000.0), Ok(None));
        assert_eq!(k.pings_sent(), 2);
        assert_eq!(k.next_deadline(), Some(1060.0));
    }

    #[test]
    fn pong_at_the_close_instant_saves_the_connection() {
        let mut k = ka(1.0, 1);
        k.start(0.0).expect("start");
        let p = ping(&mut k, 1.0);
        assert_eq!(k.pong(&p, 2.0), Ok(Some(1.0)));
        let _ = ping(&mut k, 2.0);
        assert_eq!(k.tick(3.0), Ok(Some(Action::Close { missed: 1 })));
    }

    #[test]
    fn activity_is_opt_in_liveness() {
        let mut k = ka(60.0, 2);
        k.start(0.0).expect("start");
        let p1 = ping(&mut k, 60.0);
        ping(&mut k, 120.0);
        k.activity(150.0).expect("finite");
        assert_eq!(k.outstanding(), 0);
        assert_eq!(k.pong(&p1, 151.0), Ok(None));
        ping(&mut k, 180.0);
        ping(&mut k, 240.0);
        assert_eq!(k.tick(300.0), Ok(Some(Action::Close { missed: 2 })));
    }

    #[test]
    fn start_rules() {
        let mut k = ka(60.0, 5);
        assert_eq!(k.next_deadline(), None);
        assert_eq!(k.pong(b"conn\0\0\0\0\0\0\0\x01", 0.0), Ok(None));
        k.activity(0.0).expect("no-op");
        assert!(!k.started());
        k.start(5.0).expect("start");
        assert!(k.start(6.0).is_err());
        let mut t = ka(60.0, 5);
        assert_eq!(t.tick(1.0), Ok(None));
        assert!(t.start(2.0).is_err());
        assert!(ka(1.0, 1).start(f64::NAN).is_err());
    }

    #[test]
    fn constructor_validation() {
        for interval in [0.0, -1.0, f64::NAN, f64::INFINITY, MAX_INTERVAL * 2.0] {
            assert!(Keepalive::new(interval, 5, vec![]).is_err(), "{interval}");
        }
        assert!(Keepalive::new(60.0, 0, vec![]).is_err());
        assert!(Keepalive::new(60.0, MAX_MISSED_LIMIT + 1, vec![]).is_err());
        assert!(Keepalive::new(60.0, 5, vec![0; MAX_PREFIX_LEN + 1]).is_err());
        let mut k = Keepalive::new(60.0, 5, vec![7; MAX_PREFIX_LEN]).expect("max prefix");
        k.start(0.0).expect("start");
        assert_eq!(ping(&mut k, 60.0).len(), 125);
        let mut k = Keepalive::new(60.0, 5, vec![]).expect("empty prefix");
        k.start(0.0).expect("start");
        assert_eq!(ping(&mut k, 60.0), 1u64.to_be_bytes().to_vec());
    }

    /// A small deterministic generator, so the random-sequence test needs no crate.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    #[test]
    fn invariants_over_random_sequences() {
        for seed in 0..200 {
            let mut rng = Lcg(seed);
            let max_missed = 1 + (rng.next() % 5) as u32;
            let mut k = ka(1.0 + (rng.next() % 3) as f64, max_missed);
            let mut now = 0.0;
            let mut sent: Vec<Vec<u8>> = Vec::new();
            let mut closes = 0;
            for _ in 0..300 {
                now += (rng.next() % 1000) as f64 / 500.0 - 0.2; // sometimes backwards
                match rng.next() % 4 {
                    0 | 1 => match k.tick(now).expect("finite") {
                        Some(Action::Ping(p)) => sent.push(p),
                        Some(Action::Close { .. }) => closes += 1,
                        None => {}
                    },
                    2 if !sent.is_empty() => {
                        let i = (rng.next() as usize) % sent.len();
                        if let Some(rtt) = k.pong(&sent[i], now).expect("finite") {
                            assert!(rtt >= 0.0);
                        }
                    }
                    _ => {
                        let _ = k.pong(&rng.next().to_be_bytes(), now);
                    }
                }
                assert!(k.outstanding() <= max_missed as usize);
                assert!(k.missed() <= max_missed as usize);
                assert!(closes <= 1);
                assert_eq!(closes == 1, k.closed());
            }
        }
    }
}
