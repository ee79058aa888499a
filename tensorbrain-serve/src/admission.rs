//! Load shedding in front of the decode, for overloads the batch queue cannot see.
//!
//! The bounded batch queue refuses work when the *model* is the bottleneck. For a small model
//! (the MNIST MLP's forward takes ~50 µs) the bottleneck is the HTTP stage instead: reading and
//! parsing JSON. Then the batch queue stays short while requests wait, unseen, in socket
//! buffers and in the async runtime's run queue, and an overload turns into seconds of latency
//! instead of fast 429s.
//!
//! So the server measures how far its HTTP stage is behind: a probe task yields to the runtime
//! every millisecond and times how long it takes to be polled again, which is how long a newly
//! readable connection waits. As in CoDel, the minimum over a short window is the signal (a
//! standing queue, not one slow moment). While it is above the target the server refuses a
//! growing fraction of new requests before reading their bodies, and it lowers the fraction
//! again once the lag is back under half the target. Refusals are spread evenly (error
//! diffusion), not drawn at random.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Fractions are in units of 1/ONE.
const ONE: u32 = 1 << 16;
/// Probes in the window whose minimum lag is the signal (about 1.0–1.5 ms apart). With 5, this
/// machine's scheduling noise alone shed up to 0.5% of requests at 5,000 JSON requests/s; with
/// 10, two of fourteen runs at that rate shed any (43 and 1 of 25,000 requests).
const WINDOW: usize = 10;
/// How much the refused fraction rises per probe while the lag stands above the target...
const STEP_UP: u32 = ONE / 32;
/// ... and falls per probe once it is under half the target.
const STEP_DOWN: u32 = ONE / 64;

/// The shared shedding state: written by the probe, read by every request.
pub struct Admission {
    target: Option<Duration>,
    /// The fraction of new requests to refuse, in 1/ONE.
    fraction: AtomicU32,
    /// Error-diffusion accumulator: a request is refused when adding `fraction` crosses a
    /// multiple of ONE.
    spread: AtomicU32,
    /// The last window's minimum lag, for the refusal message and metrics.
    lag_us: AtomicU64,
}

impl Admission {
    /// `target`: the HTTP-stage lag above which requests are shed; `None` never sheds.
    pub fn new(target: Option<Duration>) -> Admission {
        Admission { target, fraction: AtomicU32::new(0), spread: AtomicU32::new(0), lag_us: AtomicU64::new(0) }
    }

    /// Whether to refuse the request arriving now.
    pub fn shed(&self) -> bool {
        let fraction = self.fraction.load(Ordering::Relaxed);
        if fraction == 0 {
            return false;
        }
        let before = self.spread.fetch_add(fraction, Ordering::Relaxed);
        // ONE divides 2^32, so wrapping keeps the crossings exact.
        before.wrapping_add(fraction) / ONE != before / ONE || fraction >= ONE
    }

    /// The fraction of requests being refused now, in [0, 1].
    pub fn fraction(&self) -> f64 {
        f64::from(self.fraction.load(Ordering::Relaxed)) / f64::from(ONE)
    }

    /// The HTTP stage's standing lag at the last probe.
    pub fn lag(&self) -> Duration {
        Duration::from_micros(self.lag_us.load(Ordering::Relaxed))
    }

    /// Feeds one window's minimum lag to the controller.
    fn update(&self, standing_lag: Duration) {
        self.lag_us.store(standing_lag.as_micros() as u64, Ordering::Relaxed);
        let Some(target) = self.target else { return };
        let fraction = self.fraction.load(Ordering::Relaxed);
        let next = if standing_lag > target {
            (fraction + STEP_UP).min(ONE)
        } else if standing_lag < target / 2 {
            fraction.saturating_sub(STEP_DOWN)
        } else {
            fraction
        };
        self.fraction.store(next, Ordering::Relaxed);
        crate::metrics::shedding(self.fraction(), standing_lag);
    }

    /// The probe: runs on the server's runtime until the task is aborted.
    pub async fn probe(self: std::sync::Arc<Self>) {
        let mut window = Window::default();
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let asked = Instant::now();
            tokio::task::yield_now().await;
            if let Some(standing) = window.push(asked.elapsed()) {
                self.update(standing);
            }
        }
    }
}

/// The minimum of the last [`WINDOW`] lags, once there are that many.
#[derive(Default)]
struct Window {
    lags: [Duration; WINDOW],
    seen: usize,
}

impl Window {
    fn push(&mut self, lag: Duration) -> Option<Duration> {
        self.lags[self.seen % WINDOW] = lag;
        self.seen += 1;
        (self.seen >= WINDOW).then(|| *self.lags.iter().min().expect("WINDOW > 0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn sheds_only_while_a_lag_stands_above_the_target_and_spreads_refusals_evenly() {
        let a = Admission::new(Some(2 * MS));
        // One slow probe among fast ones is not a standing queue.
        let mut w = Window::default();
        let lags = [0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 0];
        let standing: Vec<_> = lags.iter().filter_map(|&ms| w.push(ms * MS)).collect();
        assert_eq!(standing, vec![Duration::ZERO; lags.len() - WINDOW + 1]);
        // A lag that stands for a whole window is.
        let standing: Vec<_> = (0..WINDOW).filter_map(|_| w.push(3 * MS)).collect();
        assert_eq!(standing.last(), Some(&(3 * MS)));
        // A standing lag raises the refused fraction step by step, up to everything.
        for _ in 0..8 {
            a.update(5 * MS);
        }
        assert_eq!(a.fraction(), 8.0 / 32.0);
        assert_eq!(a.lag(), 5 * MS);
        let refused = (0..1000).filter(|_| a.shed()).count();
        assert_eq!(refused, 250, "a quarter, spread evenly");
        for _ in 0..100 {
            a.update(50 * MS);
        }
        assert_eq!(a.fraction(), 1.0);
        assert!((0..100).all(|_| a.shed()));
        // Between half the target and the target it holds; under half it falls back to zero.
        a.update(MS + MS / 2);
        assert_eq!(a.fraction(), 1.0);
        for _ in 0..64 {
            a.update(MS / 2);
        }
        assert_eq!(a.fraction(), 0.0);
        assert!(!(0..100).any(|_| a.shed()));
    }

    #[test]
    fn without_a_target_nothing_is_shed() {
        let a = Admission::new(None);
        for _ in 0..100 {
            a.update(Duration::from_secs(1));
        }
        assert_eq!(a.fraction(), 0.0);
        assert!(!a.shed());
        assert_eq!(a.lag(), Duration::from_secs(1));
    }
}
