//! Keyed token buckets, as GCRA (the generic cell rate algorithm): each key
//! keeps one number, the time its bucket will be full again, so a check is a
//! hash lookup and an addition. Keys are stored as 64-bit keyed hashes, so a
//! long key (a header value) costs no more than a short one. A key whose
//! bucket is full again carries no information and is dropped first when the
//! limiter is at its cap; past that, the key closest to full is evicted, so
//! memory is bounded and new callers are never locked out.
//!
//! Written here rather than taken from `governor` because the cap matters:
//! a caller inventing a new key per request (a header value, say) must not
//! grow the map without bound, and `governor`'s keyed store has no cap.

use crate::manifest::RateLimitSpec;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys one limiter tracks. A key costs about 32 bytes, so a full
/// limiter holds about 3 MiB; past the cap, idle keys are swept, then the
/// key nearest to a full bucket is evicted (it loses the least).
pub const MAX_KEYS: usize = 100_000;

/// Shards of the key map, so concurrent requests rarely share a lock; each
/// lock is held for one map operation.
const SHARDS: usize = 16;

/// A rate limiter over keys.
pub struct RateLimiter {
    /// Time between two requests at the sustained rate, in nanoseconds.
    emission: u64,
    /// How far ahead of now a key's full-again time may run: `burst`
    /// emissions.
    tolerance: u64,
    epoch: Instant,
    hasher: RandomState,
    shards: Box<[Shard]>,
}

/// Key hashes and the time (ns since `epoch`) each one's bucket is full again.
type Shard = Mutex<HashMap<u64, u64>>;

/// A request over the limit: when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// How long until one request would be allowed.
    pub retry_after: Duration,
}

impl RateLimiter {
    /// A limiter for `spec`'s rate and burst.
    pub fn new(spec: &RateLimitSpec) -> RateLimiter {
        let emission = (spec.per.as_nanos() / u128::from(spec.requests)).max(1);
        let emission = u64::try_from(emission).unwrap_or(u64::MAX);
        RateLimiter {
            emission,
            tolerance: emission.saturating_mul(u64::from(spec.burst)),
            epoch: Instant::now(),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Takes one request from `key`'s bucket.
    pub fn check(&self, key: &str) -> Result<(), Limited> {
        self.check_at(key, self.now())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn check_at(&self, key: &str, now: u64) -> Result<(), Limited> {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[hash as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        let full_at = match map.get(&hash) {
            Some(&t) => t.max(now),
            None => {
                if map.len() >= MAX_KEYS / SHARDS {
                    map.retain(|_, full_at| *full_at > now);
                    if map.len() >= MAX_KEYS / SHARDS
                        && let Some((&nearest, _)) = map.iter().min_by_key(|(_, t)| **t)
                    {
                        map.remove(&nearest);
                    }
                }
                now
            }
        };
        let next = full_at.saturating_add(self.emission);
        let allowed_from = next.saturating_sub(self.tolerance);
        if now < allowed_from {
            return Err(Limited {
                retry_after: Duration::from_nanos(allowed_from - now),
            });
        }
        map.insert(hash, next);
        Ok(())
    }

    /// Keys tracked now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RateKey;

    fn limiter(requests: u32, per: Duration, burst: u32) -> RateLimiter {
        RateLimiter::new(&RateLimitSpec {
            requests,
            per,
            burst,
            key: RateKey::Client,
        })
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn burst_then_the_sustained_rate() {
        let l = limiter(2, Duration::from_secs(1), 3);
        for _ in 0..3 {
            l.check_at("a", 0).unwrap();
        }
        let limited = l.check_at("a", 0).unwrap_err();
        assert_eq!(limited.retry_after, Duration::from_millis(500));
        // Half a second later one request fits, then none.
        l.check_at("a", SEC / 2).unwrap();
        assert!(l.check_at("a", SEC / 2).is_err());
        // Other keys are independent.
        l.check_at("b", SEC / 2).unwrap();
    }

    #[test]
    fn memory_is_capped_and_new_keys_still_get_in() {
        let l = limiter(1, Duration::from_secs(1), 1);
        // More distinct keys than the cap, all active: the map stays capped.
        const KEYS: usize = MAX_KEYS + 2_000;
        for i in 0..KEYS {
            l.check_at(&format!("k{i}"), 0).unwrap();
        }
        assert!(l.len() <= MAX_KEYS);
        // Keys spread unevenly over the shards, so some fill before others.
        assert!(l.len() > MAX_KEYS * 9 / 10, "{}", l.len());
        // A brand-new key is let in (an old one was evicted), and keys that
        // stayed are still limited.
        l.check_at("fresh", 0).unwrap();
        let limited = (KEYS - 100..KEYS)
            .filter(|i| l.check_at(&format!("k{i}"), 0).is_err())
            .count();
        assert!(limited > 90, "{limited}");
    }
}
