//! Bounded retries of transient database failures, where repeating the operation is safe:
//! reads on any transient failure (a connection that died, a pool that could not connect, a
//! serialization failure or deadlock); writes only when the database rolled the transaction back
//! itself (serialization failure, deadlock), never after a lost connection, whose commit may or
//! may not have happened.

use std::future::Future;
use std::time::Duration;

use crate::repo::RepoError;

/// Attempts in all, and the pause before each retry.
const BACKOFF: [Duration; 2] = [Duration::from_millis(25), Duration::from_millis(150)];

fn retryable(e: &RepoError, idempotent: bool) -> bool {
    match e {
        RepoError::Transient(_) => true,
        RepoError::Unavailable(_) => idempotent,
        _ => false,
    }
}

/// Run `op`, again (up to twice, with backoff) while it fails with a retryable error.
pub async fn retrying<T, F, Fut>(idempotent: bool, mut op: F) -> Result<T, RepoError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RepoError>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Err(e) if attempt < BACKOFF.len() && retryable(&e, idempotent) => {
                tracing::debug!(attempt, error = %e, "retrying after a transient database failure");
                tokio::time::sleep(BACKOFF[attempt]).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    async fn failing(calls: &AtomicUsize, failures: usize, e: fn() -> RepoError) -> Result<usize, RepoError> {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        if n < failures { Err(e()) } else { Ok(n) }
    }

    #[tokio::test]
    async fn reads_retry_transient_failures_a_bounded_number_of_times() {
        let calls = AtomicUsize::new(0);
        let r = retrying(true, || failing(&calls, 2, || RepoError::Unavailable("reset".into()))).await;
        assert_eq!(r.ok(), Some(2));
        let calls = AtomicUsize::new(0);
        let r = retrying(true, || failing(&calls, 5, || RepoError::Unavailable("down".into()))).await;
        assert!(matches!(r, Err(RepoError::Unavailable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 3, "three attempts in all");
    }

    #[tokio::test]
    async fn writes_retry_only_what_the_database_rolled_back() {
        let calls = AtomicUsize::new(0);
        let r = retrying(false, || failing(&calls, 1, || RepoError::Unavailable("reset".into()))).await;
        assert!(r.is_err(), "a lost connection may have committed: not retried");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let calls = AtomicUsize::new(0);
        let r = retrying(false, || failing(&calls, 2, || RepoError::Transient("deadlock".into()))).await;
        assert_eq!(r.ok(), Some(2));
        let calls = AtomicUsize::new(0);
        let r = retrying(false, || failing(&calls, 1, || RepoError::NotFound)).await;
        assert!(matches!(r, Err(RepoError::NotFound)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
