//! A histogram kept in module memory between flushes: per-bucket counts in the recorded unit,
//! exported as cumulative `_bucket` counter deltas (see [`super::families`]).

use super::families::HistogramFamily;
use super::StatSink;

/// One labelled histogram.
pub(super) struct Histogram {
    family: &'static HistogramFamily,
    /// Observations per bucket; the last slot is above every bound (`+Inf`).
    counts: Vec<u64>,
    sum: u64,
    /// Cumulative counts and sum at the last flush.
    flushed: Vec<u64>,
    flushed_sum: u64,
    /// Whether every series was defined in Envoy (done at the first flush after the first
    /// observation, so an empty bucket still shows as 0 and `histogram_quantile` sees every
    /// bound).
    defined: bool,
}

/// Flow control's histograms by (fairness id label value, band priority, outcome): a short
/// list, a few flows × bands × outcomes.
pub(super) type FlowKeyed = Vec<((String, i32, &'static str), Histogram)>;

/// Records `v` in the histogram of (`fairness`, `priority`, `outcome`) in `list`, adding one of
/// `family` for a new key (its only allocation: a known key costs none).
pub(super) fn record_keyed(
    list: &mut FlowKeyed,
    (fairness, priority, outcome): (&str, i32, &'static str),
    family: &'static HistogramFamily,
    v: u64,
) {
    match list
        .iter_mut()
        .find(|((f, p, o), _)| f == fairness && *p == priority && *o == outcome)
    {
        Some((_, h)) => h.record(v),
        None => {
            let mut h = Histogram::new(family);
            h.record(v);
            list.push(((fairness.to_string(), priority, outcome), h));
        }
    }
}

impl Histogram {
    pub(super) fn new(family: &'static HistogramFamily) -> Self {
        let n = family.buckets.limits.len() + 1;
        Histogram {
            family,
            counts: vec![0; n],
            sum: 0,
            flushed: vec![0; n],
            flushed_sum: 0,
            defined: false,
        }
    }

    /// One observation `v` in the recorded unit (nanoseconds, bytes or tokens).
    pub(super) fn record(&mut self, v: u64) {
        let i = self.family.buckets.limits.partition_point(|&l| l < v);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum = self.sum.saturating_add(v);
    }

    /// Adds observations already counted per bucket (`counts[i]` in bucket `i`); the sum is
    /// not kept (for families without `_sum`).
    pub(super) fn record_counts(&mut self, counts: &[u32]) {
        for (c, n) in self.counts.iter_mut().zip(counts) {
            *c += u64::from(*n);
        }
    }

    /// Sends what changed since the last flush; `labels` are the family's labels without `le`.
    /// Returns how many observations were new.
    pub(super) fn flush(&mut self, labels: &[&str], sink: &mut dyn StatSink) -> u64 {
        let total: u64 = self.counts.iter().sum();
        let before = self.flushed.last().copied().unwrap_or(0);
        // Nothing new, or never observed (no series until the first observation).
        if total == before {
            return 0;
        }
        let mut with_le: Vec<&str> = Vec::with_capacity(labels.len() + 1);
        with_le.extend_from_slice(labels);
        with_le.push("");
        let le = self.family.buckets.le;
        let mut cum = 0u64;
        for (i, (c, f)) in self.counts.iter().zip(self.flushed.iter_mut()).enumerate() {
            cum += c;
            let delta = cum - *f;
            if delta > 0 || !self.defined {
                if let Some(slot) = with_le.last_mut() {
                    *slot = le.get(i).copied().unwrap_or("+Inf");
                }
                sink.add(&self.family.bucket, &with_le, delta);
            }
            *f = cum;
        }
        sink.add(&self.family.count, labels, total - before);
        if let Some(sum) = &self.family.sum {
            sink.add(sum, labels, self.sum - self.flushed_sum);
        }
        self.flushed_sum = self.sum;
        self.defined = true;
        total - before
    }
}
