//! A summary over seeds or items: mean, standard deviation and a Student-t interval.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Mean, standard deviation and a Student-t confidence interval of the mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of observations.
    pub n: usize,
    /// Sample mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator; 0 for one observation).
    pub sd: f64,
    /// Lower end of the confidence interval of the mean (the mean itself for n < 2).
    pub ci_low: f64,
    /// Upper end of the confidence interval of the mean (the mean itself for n < 2).
    pub ci_high: f64,
    /// Confidence level of the interval, e.g. 0.95.
    pub level: f64,
}

impl Summary {
    /// Summarises `xs` with a two-sided Student-t interval at `level` (e.g. 0.95).
    ///
    /// # Panics
    /// If `xs` is empty or `level` is not in (0, 1).
    pub fn of(xs: &[f64], level: f64) -> Self {
        assert!(!xs.is_empty(), "summary of no observations");
        assert!(
            level > 0.0 && level < 1.0,
            "confidence level {level} not in (0, 1)"
        );
        let n = xs.len();
        // Sum in sorted order: the summary must not depend on the order of the observations.
        let mut sorted = xs.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mean = sorted.iter().sum::<f64>() / n as f64;
        if n < 2 {
            return Self {
                n,
                mean,
                sd: 0.0,
                ci_low: mean,
                ci_high: mean,
                level,
            };
        }
        let var = sorted.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
        let sd = var.sqrt();
        let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
            .expect("n >= 2 gives positive degrees of freedom")
            .inverse_cdf(0.5 + level / 2.0);
        let half = t * sd / (n as f64).sqrt();
        Self {
            n,
            mean,
            sd,
            ci_low: mean - half,
            ci_high: mean + half,
            level,
        }
    }

    /// Whether the whole interval lies above `x`.
    pub fn above(&self, x: f64) -> bool {
        self.ci_low > x
    }

    /// Whether the whole interval lies below `x`.
    pub fn below(&self, x: f64) -> bool {
        self.ci_high < x
    }
}
