//! Calibration observers: they watch the values an activation takes over calibration batches
//! and choose its range. Each reports NaN or Inf as an error (the caller adds which layer and
//! batch), since a range computed from them would quantize everything to one value.

use super::scheme::{QParams, QSpec, Scheme};
use crate::tensor::{Error, Result};

/// Which observer calibration uses for activations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ObserverKind {
    /// The smallest and largest value seen (PyTorch's `MinMaxObserver`).
    MinMax,
    /// An exponential moving average of each batch's min and max, the first batch taken as is
    /// (PyTorch's `MovingAverageMinMaxObserver`; PyTorch's default constant is 0.01).
    MovingAverage { averaging_constant: f32 },
    /// A histogram of every value seen; the range keeps the central `percentile` percent
    /// (e.g. 99.99), cutting rare outliers.
    Percentile { percentile: f32 },
    /// A histogram of every value seen; the range minimises the expected squared error of
    /// quantizing the observed distribution (rounding plus clipping).
    Mse,
}

impl ObserverKind {
    pub fn build(self) -> Box<dyn Observer> {
        match self {
            ObserverKind::MinMax => Box::new(MinMaxObserver::default()),
            ObserverKind::MovingAverage { averaging_constant } => Box::new(MovingAverageObserver::new(averaging_constant)),
            ObserverKind::Percentile { percentile } => Box::new(HistogramObserver::new(HistogramChoice::Percentile(percentile))),
            ObserverKind::Mse => Box::new(HistogramObserver::new(HistogramChoice::Mse)),
        }
    }
}

/// Watches values and proposes a per-tensor range.
pub trait Observer: Send {
    /// Records one batch of values.
    ///
    /// # Errors
    /// If the batch holds NaN or Inf.
    fn observe(&mut self, values: &[f32]) -> Result<()>;

    /// The chosen [min, max], or `None` if nothing was observed.
    fn range(&self) -> Option<(f32, f32)>;

    /// Parameters for the chosen range.
    ///
    /// # Errors
    /// If nothing was observed.
    fn qparams(&self, spec: QSpec) -> Result<QParams> {
        let (lo, hi) = self.range().ok_or_else(|| Error::Msg("quant: the observer saw no values".into()))?;
        QParams::from_range(spec, &[lo], &[hi])
    }
}

/// The batch's min and max, or an error naming the first non-finite value.
fn finite_range(values: &[f32]) -> Result<Option<(f32, f32)>> {
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::Msg(format!("{} at flat index {i}", values[i])));
    }
    Ok(tensorbrain_kernels::int8::min_max(values))
}

#[derive(Default, Debug, Clone)]
pub struct MinMaxObserver {
    range: Option<(f32, f32)>,
}

impl Observer for MinMaxObserver {
    fn observe(&mut self, values: &[f32]) -> Result<()> {
        if let Some((lo, hi)) = finite_range(values)? {
            self.range = Some(match self.range {
                None => (lo, hi),
                Some((a, b)) => (a.min(lo), b.max(hi)),
            });
        }
        Ok(())
    }

    fn range(&self) -> Option<(f32, f32)> {
        self.range
    }
}

#[derive(Debug, Clone)]
pub struct MovingAverageObserver {
    constant: f32,
    range: Option<(f32, f32)>,
}

impl MovingAverageObserver {
    pub fn new(averaging_constant: f32) -> Self {
        MovingAverageObserver { constant: averaging_constant, range: None }
    }
}

impl Observer for MovingAverageObserver {
    fn observe(&mut self, values: &[f32]) -> Result<()> {
        if let Some((lo, hi)) = finite_range(values)? {
            let c = self.constant;
            self.range = Some(match self.range {
                None => (lo, hi),
                Some((a, b)) => (a + c * (lo - a), b + c * (hi - b)),
            });
        }
        Ok(())
    }

    fn range(&self) -> Option<(f32, f32)> {
        self.range
    }
}

#[derive(Debug, Clone, Copy)]
enum HistogramChoice {
    Percentile(f32),
    Mse,
}

/// A fixed number of equal bins over the range seen so far; when a batch falls outside, the
/// range widens and the old counts move to the bins their centres fall in.
#[derive(Debug, Clone)]
pub struct HistogramObserver {
    choice: HistogramChoice,
    lo: f32,
    hi: f32,
    counts: Vec<f64>,
}

const BINS: usize = 2048;

impl HistogramObserver {
    fn new(choice: HistogramChoice) -> Self {
        HistogramObserver { choice, lo: 0.0, hi: 0.0, counts: Vec::new() }
    }

    fn width(&self) -> f32 {
        (self.hi - self.lo) / BINS as f32
    }

    fn bin(&self, x: f32) -> usize {
        let w = self.width();
        if w <= 0.0 {
            return 0;
        }
        (((x - self.lo) / w) as usize).min(BINS - 1)
    }

    fn center(&self, b: usize) -> f32 {
        self.lo + (b as f32 + 0.5) * self.width()
    }

    fn widen(&mut self, lo: f32, hi: f32) {
        let old = std::mem::take(&mut self.counts);
        let old_self = HistogramObserver { counts: Vec::new(), ..self.clone() };
        self.lo = self.lo.min(lo);
        self.hi = self.hi.max(hi);
        self.counts = vec![0.0; BINS];
        for (b, &n) in old.iter().enumerate() {
            if n > 0.0 {
                let at = self.bin(old_self.center(b));
                self.counts[at] += n;
            }
        }
    }

    fn percentile_range(&self, p: f32) -> (f32, f32) {
        let total: f64 = self.counts.iter().sum();
        let tail = total * f64::from((100.0 - p.clamp(0.0, 100.0)) / 200.0);
        let mut seen = 0.0;
        let mut lo_bin = 0;
        for (b, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen > tail {
                lo_bin = b;
                break;
            }
        }
        seen = 0.0;
        let mut hi_bin = BINS - 1;
        for (b, &n) in self.counts.iter().enumerate().rev() {
            seen += n;
            if seen > tail {
                hi_bin = b;
                break;
            }
        }
        let w = self.width();
        (self.lo + lo_bin as f32 * w, self.lo + (hi_bin + 1) as f32 * w)
    }

    /// The squared error of quantizing the histogram (bin centres) with range [lo, hi] to u8.
    fn error(&self, lo: f32, hi: f32) -> f64 {
        let spec = QSpec { dtype: super::QDType::U8, scheme: Scheme::Affine, granularity: super::Granularity::PerTensor };
        let Ok(p) = QParams::from_range(spec, &[lo], &[hi]) else { return f64::INFINITY };
        let (scale, zero) = p.get(0);
        let inv = 1.0 / scale;
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0.0)
            .map(|(b, &n)| {
                let x = self.center(b);
                let q = (tensorbrain_kernels::int8::round_half_even(x * inv) + zero as f32).clamp(0.0, 255.0);
                let back = (q - zero as f32) * scale;
                n * f64::from(x - back).powi(2)
            })
            .sum()
    }

    /// Shrinks the range from both ends in 1/128 steps of its width and keeps the pair with
    /// the smallest error.
    fn mse_range(&self) -> (f32, f32) {
        const STEPS: usize = 128;
        let mut best = (self.lo, self.hi);
        let mut best_err = self.error(self.lo, self.hi);
        let span = self.hi - self.lo;
        for i in 0..STEPS {
            for j in 0..STEPS - i {
                let lo = self.lo + span * i as f32 / (2 * STEPS) as f32;
                let hi = self.hi - span * j as f32 / (2 * STEPS) as f32;
                let err = self.error(lo, hi);
                if err < best_err {
                    (best, best_err) = ((lo, hi), err);
                }
            }
        }
        best
    }
}

impl Observer for HistogramObserver {
    fn observe(&mut self, values: &[f32]) -> Result<()> {
        let Some((lo, hi)) = finite_range(values)? else { return Ok(()) };
        if self.counts.is_empty() {
            (self.lo, self.hi) = (lo, hi);
            self.counts = vec![0.0; BINS];
        } else if lo < self.lo || hi > self.hi {
            self.widen(lo, hi);
        }
        for &x in values {
            let b = self.bin(x);
            self.counts[b] += 1.0;
        }
        Ok(())
    }

    fn range(&self) -> Option<(f32, f32)> {
        if self.counts.is_empty() {
            return None;
        }
        Some(match self.choice {
            HistogramChoice::Percentile(p) => self.percentile_range(p),
            HistogramChoice::Mse => self.mse_range(),
        })
    }
}
