//! Rate limits (GCRA: each key may make `limit` requests per `window`, spread or in a burst).
//! Shared across server instances through Redis — one Lua script, so the check and the update
//! are atomic and use Redis's clock — and kept in process when Redis is not configured or does
//! not answer within a few milliseconds (never unlimited). Both paths run the same algorithm.
//! A circuit breaker stops asking Redis while it keeps failing, so an outage costs requests
//! nothing but the fallback.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One policy: `limit` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub name: &'static str,
    pub limit: u32,
    pub window: Duration,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests left in the window after this one.
    pub remaining: u32,
    /// Seconds until a request would be allowed again (denied) or until the window is whole.
    pub reset_secs: u64,
}

/// GCRA over "theoretical arrival times" in microseconds. Returns the decision and the new TAT
/// to store (None when denied: nothing changes).
fn gcra(policy: Policy, tat: Option<u64>, now: u64) -> (Decision, Option<u64>) {
    let window = u64::try_from(policy.window.as_micros()).unwrap_or(u64::MAX).max(1);
    let limit = u64::from(policy.limit.max(1));
    let interval = (window / limit).max(1);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(window);
    if allow_at > now {
        let wait = allow_at - now;
        return (Decision { allowed: false, remaining: 0, reset_secs: wait.div_ceil(1_000_000).max(1) }, None);
    }
    let remaining = u32::try_from((now + window - new_tat) / interval).unwrap_or(u32::MAX);
    (Decision { allowed: true, remaining, reset_secs: (new_tat - now).div_ceil(1_000_000) }, Some(new_tat))
}

/// The Redis side of [`gcra`] (microseconds): KEYS[1] = key; ARGV = window µs, limit. Returns
/// {allowed, remaining, reset_secs}.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local interval = math.max(math.floor(window / limit), 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if allow_at > now then
  return {0, 0, math.max(math.ceil((allow_at - now) / 1000000), 1)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, math.floor((now + window - new_tat) / interval), math.ceil((new_tat - now) / 1000000)}
";

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The in-process limiter (and the fallback of the shared one).
#[derive(Default)]
struct Local {
    tats: Mutex<HashMap<String, u64>>,
}

/// Entries kept before expired ones are swept.
const LOCAL_SWEEP_AT: usize = 100_000;

impl Local {
    fn check(&self, key: &str, policy: Policy) -> Decision {
        let now = now_us();
        let Ok(mut map) = self.tats.lock() else {
            // A poisoned lock: refuse rather than let everything through.
            return Decision { allowed: false, remaining: 0, reset_secs: 1 };
        };
        if map.len() >= LOCAL_SWEEP_AT {
            map.retain(|_, tat| *tat > now);
        }
        let (decision, store) = gcra(policy, map.get(key).copied(), now);
        if let Some(tat) = store {
            map.insert(key.to_string(), tat);
        }
        decision
    }
}

/// Rate limiting for the server.
pub struct Limiter {
    local: Local,
    redis: Option<Redis>,
    prefix: String,
}

struct Redis {
    breaker: crate::breaker::Breaker,
    conn: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    client: redis::Client,
    script: redis::Script,
}

/// How long a Redis check may take before the in-process limiter answers instead.
const REDIS_BUDGET: Duration = Duration::from_millis(250);

impl Limiter {
    /// `redis_url`: share limits through Redis (`None`: in process only). `prefix` namespaces the
    /// keys (instances of one deployment share it).
    pub fn new(redis_url: Option<&str>, prefix: &str) -> Limiter {
        let redis = redis_url.and_then(|url| match redis::Client::open(url) {
            Ok(client) => Some(Redis {
                breaker: crate::breaker::Breaker::new("redis"),
                conn: tokio::sync::OnceCell::new(),
                client,
                script: redis::Script::new(SCRIPT),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "REDIS_URL is not usable: rate limits are per instance");
                None
            }
        });
        Limiter { local: Local::default(), redis, prefix: prefix.to_string() }
    }

    async fn shared(&self, r: &Redis, key: &str, policy: Policy) -> Result<Decision, String> {
        let conn = r
            .conn
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(REDIS_BUDGET))
                    .set_response_timeout(Some(REDIS_BUDGET));
                redis::aio::ConnectionManager::new_with_config(r.client.clone(), config).await
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut conn = conn.clone();
        let window = u64::try_from(policy.window.as_micros()).unwrap_or(u64::MAX);
        let (allowed, remaining, reset): (i64, i64, i64) = r
            .script
            .key(format!("{}rl:{}:{key}", self.prefix, policy.name))
            .arg(window)
            .arg(policy.limit.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Decision {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            reset_secs: u64::try_from(reset.max(0)).unwrap_or(0),
        })
    }

    /// Count one request of `key` against `policy`.
    pub async fn check(&self, key: &str, policy: Policy) -> Decision {
        if let Some(r) = &self.redis
            && let Some(call) = r.breaker.call()
        {
            match tokio::time::timeout(REDIS_BUDGET, self.shared(r, key, policy)).await {
                Ok(Ok(d)) => {
                    call.succeeded();
                    return d;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "Redis rate limit unavailable; limiting in process"),
                Err(_) => tracing::debug!("Redis rate limit too slow; limiting in process"),
            }
            call.failed();
        }
        self.local.check(key, policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_the_limit_then_spaces_requests() {
        let p = Policy { name: "t", limit: 3, window: Duration::from_secs(60) };
        let (mut tat, now) = (None, 1_000_000_000);
        for left in [2, 1, 0] {
            let (d, t) = gcra(p, tat, now);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            tat = t;
        }
        let (d, t) = gcra(p, tat, now);
        assert!(!d.allowed && t.is_none());
        assert_eq!(d.reset_secs, 20, "one request is allowed again after window / limit");
        let (d, _) = gcra(p, tat, now + 20_000_000);
        assert!(d.allowed);
    }

    #[test]
    fn large_limits_are_not_capped_by_the_clock_resolution() {
        let p = Policy { name: "t", limit: 100_000_000, window: Duration::from_secs(60) };
        let (mut tat, now) = (None, 1_000_000_000);
        for _ in 0..100_000 {
            let (d, t) = gcra(p, tat, now);
            assert!(d.allowed, "a burst well under the limit is allowed");
            tat = t;
        }
    }
}
