//! Circuit breakers around dependencies the server can do without for a while: Redis for the
//! shared rate limits, and each outside target of the integrations (a webhook's host, SMTP,
//! Gotenberg), kept by name in [`Breakers`]. After a few consecutive failures a breaker opens: calls are not made at
//! all — the caller takes its fallback at once instead of waiting for a timeout on every request —
//! until a delay passes (1 s, doubling up to 15 s while the dependency stays down); then one
//! call at a time is let through as a probe (half-open) while the others keep taking the
//! fallback, and a probe's success closes the breaker.
//!
//! The state machine is `failsafe`'s; this module names each breaker, exposes its state and
//! reports it in `m_circuit_breaker_state{breaker,state}` and the log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use failsafe::StateMachine;
use failsafe::backoff::{self, Exponential};
use failsafe::failure_policy::{ConsecutiveFailures, consecutive_failures};

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the delay passes.
    Open,
    /// The delay passed: calls go through, and the next outcome decides.
    HalfOpen,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [BreakerState::Closed, BreakerState::Open, BreakerState::HalfOpen];

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    fn from_u8(v: u8) -> BreakerState {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// Consecutive failures that open a breaker.
const FAILURES_TO_OPEN: u32 = 3;
/// The first open period; it doubles while probes fail, up to [`MAX_OPEN`].
const FIRST_OPEN: Duration = Duration::from_secs(1);
const MAX_OPEN: Duration = Duration::from_secs(15);

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the observer records for the breaker's owner to read.
#[derive(Default)]
struct Shared {
    state: AtomicU8,
    /// Times it opened since it was last closed (the open period doubles with each).
    opens: AtomicU32,
    /// When the current open period ends (Unix milliseconds).
    open_until: AtomicU64,
}

/// Records transitions: the state for [`Breaker::state`], the gauge and a log line.
struct Observer {
    name: Arc<str>,
    shared: Arc<Shared>,
}

impl Observer {
    fn set(&self, state: BreakerState) {
        let before = BreakerState::from_u8(self.shared.state.swap(state as u8, Ordering::Relaxed));
        crate::metrics::breaker_state(&self.name, state.as_str(), &BreakerState::ALL.map(BreakerState::as_str));
        match state {
            BreakerState::Open => {
                // The same schedule as the state machine's backoff: 1 s, doubling up to 15 s.
                let n = self.shared.opens.fetch_add(1, Ordering::Relaxed).min(10);
                let period = FIRST_OPEN.saturating_mul(1 << n).min(MAX_OPEN);
                let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
                self.shared.open_until.store(unix_ms().saturating_add(period_ms), Ordering::Relaxed);
            }
            BreakerState::Closed => self.shared.opens.store(0, Ordering::Relaxed),
            BreakerState::HalfOpen => {}
        }
        match (before, state) {
            (_, BreakerState::Open) if before != BreakerState::Open => {
                tracing::warn!(breaker = %self.name, "circuit breaker open: calls are skipped for a while");
            }
            (BreakerState::Open | BreakerState::HalfOpen, BreakerState::Closed) => {
                tracing::info!(breaker = %self.name, "circuit breaker closed: the dependency answers again");
            }
            _ => {}
        }
    }
}

impl failsafe::Instrument for Observer {
    fn on_call_rejected(&self) {}

    fn on_open(&self) {
        self.set(BreakerState::Open);
    }

    fn on_half_open(&self) {
        self.set(BreakerState::HalfOpen);
    }

    fn on_closed(&self) {
        self.set(BreakerState::Closed);
    }
}

/// One named circuit breaker.
pub struct Breaker {
    name: Arc<str>,
    machine: StateMachine<ConsecutiveFailures<Exponential>, Observer>,
    /// Held around every step of the state machine, so the state the observer records (which
    /// failsafe reports after releasing its own lock) is never stale or out of order.
    step: Mutex<()>,
    shared: Arc<Shared>,
    /// A half-open probe is in flight: other calls take the fallback.
    probing: AtomicBool,
}

/// Permission for one call; report its outcome with [`Call::succeeded`] or [`Call::failed`].
/// Dropped without either (the caller was cancelled), it records nothing and frees the probe.
pub struct Call<'a> {
    breaker: &'a Breaker,
    probe: bool,
}

impl Call<'_> {
    pub fn succeeded(self) {
        let _step = self.breaker.step.lock();
        self.breaker.machine.on_success();
    }

    pub fn failed(self) {
        let _step = self.breaker.step.lock();
        self.breaker.machine.on_error();
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

impl Breaker {
    /// A closed breaker. `name` labels its metric and log lines (a small set: one per
    /// dependency or outside host).
    pub fn new(name: impl Into<Arc<str>>) -> Breaker {
        let name = name.into();
        let shared = Arc::new(Shared::default());
        let observer = Observer { name: name.clone(), shared: shared.clone() };
        let policy = consecutive_failures(FAILURES_TO_OPEN, backoff::exponential(FIRST_OPEN, MAX_OPEN));
        Breaker {
            name,
            machine: failsafe::Config::new().failure_policy(policy).instrument(observer).build(),
            step: Mutex::new(()),
            shared,
            probing: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long until a call may be let through again: what is left of the open period (a
    /// second while another call probes a half-open breaker; nothing when closed).
    pub fn retry_after(&self) -> Duration {
        match self.state() {
            BreakerState::Closed => Duration::ZERO,
            BreakerState::HalfOpen => FIRST_OPEN,
            BreakerState::Open => self.waiting().unwrap_or_default().max(Duration::from_millis(100)),
        }
    }

    /// Permission to make a call now, or None (take the fallback). An open breaker whose delay
    /// passed turns half-open and lets one call through at a time.
    pub fn call(&self) -> Option<Call<'_>> {
        let step = self.step.lock();
        if !self.machine.is_call_permitted() {
            return None;
        }
        let state = self.state();
        drop(step);
        if state != BreakerState::HalfOpen {
            return Some(Call { breaker: self, probe: false });
        }
        self.probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Call { breaker: self, probe: true })
    }

    /// While the breaker is open and its open period lasts: what is left of it. None once a
    /// call may be tried (closed, half-open, or open with its period over — the next
    /// [`Breaker::call`] half-opens it).
    pub fn waiting(&self) -> Option<Duration> {
        if self.state() != BreakerState::Open {
            return None;
        }
        let left = self.shared.open_until.load(Ordering::Relaxed).saturating_sub(unix_ms());
        (left > 0).then(|| Duration::from_millis(left))
    }

    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.shared.state.load(Ordering::Relaxed))
    }
}

/// The breakers of one runtime's outside targets, made on first use and kept by name.
#[derive(Clone, Default)]
pub struct Breakers {
    by_name: Arc<Mutex<BTreeMap<String, Arc<Breaker>>>>,
}

impl Breakers {
    /// The breaker named `name` (a new, closed one the first time).
    pub fn get(&self, name: &str) -> Arc<Breaker> {
        let mut map = self.by_name.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(name.to_string()).or_insert_with(|| Arc::new(Breaker::new(name))).clone()
    }

    /// Breakers that are not closed, by name.
    pub fn not_closed(&self) -> Vec<(String, BreakerState)> {
        let map = self.by_name.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter().map(|(n, b)| (n.clone(), b.state())).filter(|(_, s)| *s != BreakerState::Closed).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_closes_after_a_successful_probe() {
        let b = Breaker::new("test");
        b.call().expect("closed").failed();
        b.call().expect("closed").succeeded();
        b.call().expect("closed").failed();
        b.call().expect("closed").failed();
        assert_eq!(b.state(), BreakerState::Closed, "a success resets the count");
        b.call().expect("closed").failed();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.call().is_none(), "an open breaker refuses calls");
        assert!(b.waiting().is_some_and(|w| w <= FIRST_OPEN), "its open period is running");
        std::thread::sleep(FIRST_OPEN + Duration::from_millis(50));
        assert_eq!(b.waiting(), None, "the period is over: a call may be tried");
        let probe = b.call().expect("after the delay one probe goes through");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.call().is_none(), "one probe at a time");
        probe.failed();
        assert_eq!(b.state(), BreakerState::Open, "a failed probe opens it again");
        assert!(b.call().is_none());
        std::thread::sleep(2 * FIRST_OPEN + Duration::from_millis(50));
        drop(b.call().expect("a probe"));
        let probe = b.call().expect("a cancelled probe frees its place");
        probe.succeeded();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.call().is_some() && b.call().is_some(), "closed: every call goes through");
    }
}
