//! Circuit breakers around dependencies the server can do without for a while (Redis for the
//! shared rate limits). After a few consecutive failures a breaker opens: calls are not made at
//! all — the caller takes its fallback at once instead of waiting for a timeout on every request —
//! until a delay passes (1 s, doubling up to 15 s while the dependency stays down); then one
//! call at a time is let through as a probe (half-open) while the others keep taking the
//! fallback, and a probe's success closes the breaker.
//!
//! The state machine is `failsafe`'s; this module names each breaker, exposes its state and
//! reports it in `m_circuit_breaker_state{breaker,state}` and the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

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

/// Records transitions: the state for [`Breaker::state`], the gauge and a log line.
struct Observer {
    name: &'static str,
    state: Arc<AtomicU8>,
}

impl Observer {
    fn set(&self, state: BreakerState) {
        let before = BreakerState::from_u8(self.state.swap(state as u8, Ordering::Relaxed));
        crate::metrics::breaker_state(self.name, state.as_str(), &BreakerState::ALL.map(BreakerState::as_str));
        match (before, state) {
            (_, BreakerState::Open) if before != BreakerState::Open => {
                tracing::warn!(breaker = self.name, "circuit breaker open: calls are skipped for a while");
            }
            (BreakerState::Open | BreakerState::HalfOpen, BreakerState::Closed) => {
                tracing::info!(breaker = self.name, "circuit breaker closed: the dependency answers again");
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
    machine: StateMachine<ConsecutiveFailures<Exponential>, Observer>,
    /// Held around every step of the state machine, so the state the observer records (which
    /// failsafe reports after releasing its own lock) is never stale or out of order.
    step: std::sync::Mutex<()>,
    state: Arc<AtomicU8>,
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
    /// A closed breaker. `name` labels its metric and log lines (a fixed, small set).
    pub fn new(name: &'static str) -> Breaker {
        let state = Arc::new(AtomicU8::new(BreakerState::Closed as u8));
        let observer = Observer { name, state: state.clone() };
        let policy = consecutive_failures(FAILURES_TO_OPEN, backoff::exponential(FIRST_OPEN, MAX_OPEN));
        Breaker {
            machine: failsafe::Config::new().failure_policy(policy).instrument(observer).build(),
            step: std::sync::Mutex::new(()),
            state,
            probing: AtomicBool::new(false),
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

    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Relaxed))
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
        std::thread::sleep(FIRST_OPEN + Duration::from_millis(50));
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
