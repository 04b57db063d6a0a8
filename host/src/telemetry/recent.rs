//! What each function did in the last minutes, second by second: the
//! figures the dashboard and `nimbus top` show (rate, errors, latency
//! percentiles, peak memory), without a metrics server in between.
//!
//! A function keeps one slot per second for [`WINDOW_SECONDS`]; a slot is
//! reused when its second comes round again. Latencies are counted in
//! half-octave buckets (each bound about 1.41 times the one before), so a
//! percentile is known to within about 20%, which is what a dashboard needs
//! and what costs one array increment per invocation.

use serde::{Deserialize, Serialize};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far back a function's figures go.
pub const WINDOW_SECONDS: u64 = 300;

/// Latency buckets: bucket `i` holds durations in
/// `[2^(i/2), 2^((i+1)/2))` microseconds, the last everything longer
/// (2^28 µs is about 4.5 minutes).
const BUCKETS: usize = 56;

/// One second of one function.
#[derive(Clone)]
struct Second {
    /// The second (since the Unix epoch) this slot holds, 0 if none yet.
    at: u64,
    count: u32,
    errors: u32,
    /// The most linear memory one of its invocations' instances held.
    peak_memory: u64,
    latency: [u32; BUCKETS],
}

impl Second {
    const EMPTY: Second = Second {
        at: 0,
        count: 0,
        errors: 0,
        peak_memory: 0,
        latency: [0; BUCKETS],
    };
}

/// The last [`WINDOW_SECONDS`] of one function.
pub struct Recent {
    seconds: Mutex<Vec<Second>>,
}

impl Default for Recent {
    fn default() -> Recent {
        Recent {
            seconds: Mutex::new(vec![Second::EMPTY; WINDOW_SECONDS as usize]),
        }
    }
}

/// One second of a function's figures, for a chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondView {
    /// The second, since the Unix epoch.
    pub at: u64,
    /// Invocations that ended in it.
    pub count: u32,
    /// Those that failed.
    pub errors: u32,
    /// Their 99th percentile latency in milliseconds (0 when none).
    pub p99_ms: f64,
}

/// A function's figures over a window of recent seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentView {
    /// Invocations that ended in the window.
    pub count: u64,
    /// Those that failed: an HTTP status of 500 or more, or a queue
    /// delivery not acknowledged.
    pub errors: u64,
    /// Invocations per second over the window.
    pub per_second: f64,
    /// `errors / count` (0 when there were none).
    pub error_rate: f64,
    /// Median latency in milliseconds (0 when none).
    pub p50_ms: f64,
    /// 99th percentile latency in milliseconds (0 when none).
    pub p99_ms: f64,
    /// The most linear memory an instance held, in bytes.
    pub peak_memory_bytes: u64,
    /// Second by second, oldest first, one entry per second of the window.
    pub seconds: Vec<SecondView>,
}

impl Recent {
    /// Counts an invocation that took `elapsed` and failed or not.
    pub fn record(&self, elapsed: Duration, failed: bool) {
        let bucket = bucket(elapsed);
        self.with_second(now(), |second| {
            second.count = second.count.saturating_add(1);
            second.errors = second.errors.saturating_add(u32::from(failed));
            second.latency[bucket] = second.latency[bucket].saturating_add(1);
        });
    }

    /// Notes that an instance held `bytes` of linear memory at most.
    pub fn memory(&self, bytes: u64) {
        self.with_second(now(), |second| {
            second.peak_memory = second.peak_memory.max(bytes);
        });
    }

    /// Runs `change` on the slot of second `at`, emptied first if it held
    /// an older second.
    fn with_second(&self, at: u64, change: impl FnOnce(&mut Second)) {
        let mut seconds = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = &mut seconds[(at % WINDOW_SECONDS) as usize];
        if slot.at != at {
            *slot = Second::EMPTY;
            slot.at = at;
        }
        change(slot);
    }

    /// The last `window` seconds (at most [`WINDOW_SECONDS`]), the current
    /// one included.
    pub fn view(&self, window: u64) -> RecentView {
        self.view_at(now(), window)
    }

    fn view_at(&self, now: u64, window: u64) -> RecentView {
        let window = window.clamp(1, WINDOW_SECONDS);
        let seconds = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total = Second::EMPTY;
        let mut series = Vec::with_capacity(window as usize);
        for at in now + 1 - window.min(now + 1)..=now {
            let slot = &seconds[(at % WINDOW_SECONDS) as usize];
            let slot = if slot.at == at { slot } else { &Second::EMPTY };
            total.count += slot.count;
            total.errors += slot.errors;
            total.peak_memory = total.peak_memory.max(slot.peak_memory);
            for (sum, n) in total.latency.iter_mut().zip(slot.latency) {
                *sum += n;
            }
            series.push(SecondView {
                at,
                count: slot.count,
                errors: slot.errors,
                p99_ms: percentile_ms(&slot.latency, 0.99),
            });
        }
        drop(seconds);
        let count = u64::from(total.count);
        let errors = u64::from(total.errors);
        RecentView {
            count,
            errors,
            per_second: count as f64 / window as f64,
            error_rate: if count == 0 {
                0.0
            } else {
                errors as f64 / count as f64
            },
            p50_ms: percentile_ms(&total.latency, 0.5),
            p99_ms: percentile_ms(&total.latency, 0.99),
            peak_memory_bytes: total.peak_memory,
            seconds: series,
        }
    }
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The bucket of a latency: twice its base-2 logarithm in microseconds.
fn bucket(elapsed: Duration) -> usize {
    let us = elapsed.as_micros().max(1);
    let log2 = 127 - us.leading_zeros() as usize;
    // In the upper half-octave when us >= 2^log2 * sqrt(2), i.e. us^2 >= 2^(2 log2 + 1).
    let upper = us.saturating_mul(us) >= 1u128 << (2 * log2 + 1).min(127);
    (2 * log2 + usize::from(upper)).min(BUCKETS - 1)
}

/// The `q` quantile of the counts, in milliseconds: the geometric middle of
/// the bucket it falls in; 0 for no counts.
fn percentile_ms(latency: &[u32; BUCKETS], q: f64) -> f64 {
    let total: u64 = latency.iter().map(|&n| u64::from(n)).sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &n) in latency.iter().enumerate() {
        seen += u64::from(n);
        if seen >= rank {
            let us = 2f64.powf((i as f64 + 0.5) / 2.0);
            return us.round() / 1000.0;
        }
    }
    unreachable!("rank is at most the total")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_half_octaves() {
        let us = Duration::from_micros;
        assert_eq!(bucket(Duration::ZERO), 0);
        assert_eq!(bucket(us(1)), 0);
        assert_eq!(bucket(us(2)), 2);
        assert_eq!(bucket(us(3)), 3, "3 > 2 * 1.414");
        assert_eq!(bucket(us(1000)), 19, "1000 is between 2^9.5 and 2^10");
        assert_eq!(bucket(us(1024)), 20);
        assert_eq!(bucket(Duration::from_secs(3600)), BUCKETS - 1);
    }

    #[test]
    fn a_window_sums_its_seconds_and_forgets_older_ones() {
        let recent = Recent::default();
        let ms = Duration::from_millis;
        recent.with_second(1_000, |s| s.count = 7);
        for at in [1_990, 1_999, 2_000] {
            recent.with_second(at, |s| {
                s.count = 10;
                s.errors = 1;
                s.latency[bucket(ms(2))] = 9;
                s.latency[bucket(ms(100))] = 1;
                s.peak_memory = at;
            });
        }
        let view = recent.view_at(2_000, 60);
        assert_eq!(view.count, 30, "1000 is out of the window");
        assert_eq!(view.errors, 3);
        assert_eq!(view.per_second, 0.5);
        assert_eq!(view.error_rate, 0.1);
        assert_eq!(view.peak_memory_bytes, 2_000);
        assert_eq!(view.seconds.len(), 60);
        assert_eq!(view.seconds.first().unwrap().at, 1_941);
        assert_eq!(view.seconds.last().unwrap().count, 10);
        // 2 ms lies in the bucket [1.448, 2.048) ms; 100 ms in [92.7, 131.1).
        assert!((1.4..2.1).contains(&view.p50_ms), "{}", view.p50_ms);
        assert!((92.0..132.0).contains(&view.p99_ms), "{}", view.p99_ms);
        // A slot five minutes old is another second's: it does not count.
        let later = recent.view_at(2_000 + WINDOW_SECONDS, 10);
        assert_eq!(later.count, 0);
        assert_eq!(later.p99_ms, 0.0);
    }

    #[test]
    fn recording_lands_in_the_current_second() {
        let recent = Recent::default();
        recent.record(Duration::from_micros(300), false);
        recent.record(Duration::from_micros(300), true);
        recent.memory(1 << 20);
        let view = recent.view(2);
        assert_eq!((view.count, view.errors), (2, 1));
        assert_eq!(view.peak_memory_bytes, 1 << 20);
        assert!((0.2..0.37).contains(&view.p99_ms), "{}", view.p99_ms);
    }
}
