//! Keyed token buckets, as GCRA (the generic cell rate algorithm): each key
//! keeps one number, the time its bucket will be full again, so a check is a
//! hash lookup and an addition. A key whose bucket is full again carries no
//! information, so it is dropped; memory per limiter is capped.
//!
//! Written here rather than taken from `governor` because the cap matters:
//! a caller inventing a new key per request (a header value, say) must not
//! grow the map without bound, and `governor`'s keyed store has no cap.

use crate::manifest::RateLimitSpec;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys one limiter tracks. A key costs about 64 bytes, so a full
/// limiter holds about 6 MiB; past the cap, idle keys are swept and a new key
/// is refused until one frees (the refusal is a 429, never unbounded memory).
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

/// Keys and the time (ns since `epoch`) each one's bucket is full again.
type Shard = Mutex<HashMap<Box<str>, u64>>;

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
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        let full_at = match map.get(key) {
            Some(&t) => t.max(now),
            None => {
                if map.len() >= MAX_KEYS / SHARDS {
                    map.retain(|_, full_at| *full_at > now);
                    if map.len() >= MAX_KEYS / SHARDS {
                        return Err(Limited {
                            retry_after: Duration::from_nanos(self.emission),
                        });
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
        match map.get_mut(key) {
            Some(t) => *t = next,
            None => {
                map.insert(key.into(), next);
            }
        }
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
    fn idle_keys_are_swept_at_the_cap() {
        let l = limiter(1, Duration::from_secs(1), 1);
        let per_shard = MAX_KEYS / SHARDS;
        // Fill every shard's worth of keys at t=0; each is full again at t=1s.
        let mut inserted = 0;
        let mut i = 0;
        while inserted < MAX_KEYS {
            if l.check_at(&format!("k{i}"), 0).is_ok() {
                inserted += 1;
            } else {
                break;
            }
            i += 1;
        }
        assert!(l.len() <= MAX_KEYS);
        assert!(l.len() >= per_shard);
        // Two seconds later every old key is idle: a new key fits after a sweep.
        l.check_at("fresh", 2 * SEC).unwrap();
        assert!(l.len() < MAX_KEYS);
    }
}
