//! Interval estimates for success probabilities.

/// The normal quantile of a two-sided 95% interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `successes` out of `n` trials; `None` when `n` is 0.
///
/// Unlike the normal (Wald) interval it stays inside [0, 1] and is not degenerate at 0/n or
/// n/n, which is where most grid points of these sweeps sit.
pub fn wilson_interval(successes: u64, n: u64, z: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let n = n as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    // At 0 successes the lower bound is 0 exactly, at n the upper is 1 (the closed form
    // leaves rounding residue such as 2.8e-17 there).
    let low = if successes == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let high = if successes as f64 == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    Some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn no_success_and_all_successes_give_exact_bounds() {
        for n in 1..=200 {
            assert_eq!(wilson_interval(0, n, 1.96).unwrap().0, 0.0, "0/{n}");
            assert_eq!(wilson_interval(n, n, 1.96).unwrap().1, 1.0, "{n}/{n}");
        }
    }

    #[test]
    fn matches_published_values() {
        // Reference values from the closed form (e.g. statsmodels proportion_confint
        // method="wilson"): 0/10 -> [0, 0.2775], 10/10 -> [0.7225, 1], 5/10 -> [0.2366, 0.7634],
        // 9/10 -> [0.5958, 0.9821], 1/20 -> [0.0089, 0.2361].
        let cases = [
            (0, 10, 0.0, 0.27753),
            (10, 10, 0.72247, 1.0),
            (5, 10, 0.23659, 0.76341),
            (9, 10, 0.59585, 0.98212),
            (1, 20, 0.00888, 0.23611),
        ];
        for (k, n, lo, hi) in cases {
            let (l, h) = wilson_interval(k, n, Z_95).unwrap();
            assert!(
                close(l, lo) && close(h, hi),
                "{k}/{n}: got [{l}, {h}], want [{lo}, {hi}]"
            );
        }
    }

    #[test]
    fn empty_sample_has_no_interval() {
        assert_eq!(wilson_interval(0, 0, Z_95), None);
    }
}
