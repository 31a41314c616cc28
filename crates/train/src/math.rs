//! Branch-free f32 `exp` and `ln` for the loss, which runs them on every cell of every batch.
//!
//! libm's `expf`, `log1pf` and `logf` are calls the compiler cannot vectorise; at width 1 the
//! loss spent more time in them than the network in its matmuls. These are polynomial
//! versions written as selects, so that loops over them vectorise, accurate to a few f32 ulps
//! on the ranges the loss needs (tests below), and deterministic on every machine. NaN goes in,
//! NaN comes out: a diverging run must show in its loss.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2: f32 = std::f32::consts::LN_2;
/// ln 2 split for range reduction (Cody and Waite): `LN2_HI` has trailing zero bits so that
/// `n * LN2_HI` is exact for the `n` used here.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `exp(-a)` for `a >= 0` (and NaN); 0 below `exp(-87)`.
#[inline(always)]
pub fn exp_neg(a: f32) -> f32 {
    // written as `a > 87 ? 87 : a`, not `min`, so that NaN stays NaN
    let t = if a > 87.0 { 87.0 } else { a };
    // n = round(t / ln 2) for t >= 0, in 0..=126 (NaN gives 0)
    let n = (t * LOG2E + 0.5) as i32;
    let nf = n as f32;
    // z = -(t - n ln 2), |z| <= ln 2 / 2
    let z = (nf * LN2_HI - t) + nf * LN2_LO;
    // e^z by Taylor to z^7: error below 3e-9 on |z| <= 0.35
    let p = 1.0
        + z * (1.0
            + z * (1.0 / 2.0
                + z * (1.0 / 6.0
                    + z * (1.0 / 24.0
                        + z * (1.0 / 120.0 + z * (1.0 / 720.0 + z * (1.0 / 5040.0)))))));
    // 2^-n, built from its exponent bits (n <= 126 keeps it normal)
    let scale = f32::from_bits(((127 - n) as u32) << 23);
    if a > 87.0 {
        0.0
    } else {
        p * scale
    }
}

/// `2 atanh(s) = ln((1 + s) / (1 - s))` for `|s| <= 1/3`, by its odd series to `s^15`.
#[inline(always)]
fn two_atanh(s: f32) -> f32 {
    let s2 = s * s;
    let series = 1.0
        + s2 * (1.0 / 3.0
            + s2 * (1.0 / 5.0
                + s2 * (1.0 / 7.0
                    + s2 * (1.0 / 9.0
                        + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0 + s2 * (1.0 / 15.0)))))));
    2.0 * s * series
}

/// `ln(1 + e)` for `0 <= e <= 1` (and NaN), accurate also for tiny `e`.
#[inline(always)]
pub fn ln_1p_unit(e: f32) -> f32 {
    // 1 + e = (1 + s) / (1 - s) with s = e / (2 + e) in [0, 1/3]
    two_atanh(e / (2.0 + e))
}

/// `ln(p)` for `0 <= p <= 1`: -inf at 0, NaN for NaN.
#[inline(always)]
pub fn ln_unit(p: f32) -> f32 {
    // subnormals: scale by 2^24 first so that the exponent bits are meaningful
    let tiny = p < f32::MIN_POSITIVE;
    let q = if tiny { p * 16_777_216.0 } else { p };
    let bits = q.to_bits();
    let mut exponent = ((bits >> 23) & 0xff) as i32 - 127;
    let mut mantissa = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    // keep the mantissa in [sqrt(1/2), sqrt(2)) so that |s| <= 0.172
    let high = mantissa > std::f32::consts::SQRT_2;
    mantissa = if high { mantissa * 0.5 } else { mantissa };
    exponent += i32::from(high);
    let value = (exponent as f32) * LN2 + two_atanh((mantissa - 1.0) / (mantissa + 1.0));
    let value = if tiny { value - 24.0 * LN2 } else { value };
    if p > 0.0 {
        value
    } else if p == 0.0 {
        f32::NEG_INFINITY
    } else {
        f32::NAN
    }
}

/// Loss and gradient of one cell of the mean binary cross-entropy, in f32 like PyTorch: with
/// `logits`, the stable form `max(x, 0) - x y + ln(1 + exp(-|x|))` with gradient
/// `sigmoid(x) - y`; without, `BCELoss(clamp(x, 0, 1), y)` with logs clamped at -100 and
/// gradient `(p - y) / max(p (1 - p), 1e-12)` where `0 <= x <= 1`, else 0. Selects, not
/// branches, so that a loop over cells vectorises; NaN stays NaN.
#[inline(always)]
pub fn bce_cell(x: f32, y: f32, logits: bool) -> (f32, f32) {
    if logits {
        let e = exp_neg(x.abs());
        let positive = if x > 0.0 { x } else { 0.0 };
        let loss = positive - x * y + ln_1p_unit(e);
        // sigmoid(x) from the same exponential
        let sigmoid = if x >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        };
        (loss, sigmoid - y)
    } else {
        let clamp_log = |v: f32| if v < -100.0 { -100.0 } else { v };
        let p = x.clamp(0.0, 1.0);
        let q = 1.0 - p;
        let loss = -(y * clamp_log(ln_unit(p)) + (1.0 - y) * clamp_log(ln_unit(q)));
        let denom = p * q;
        let denom = if denom > 1e-12 { denom } else { 1e-12 };
        let grad = if (0.0..=1.0).contains(&x) {
            (p - y) / denom
        } else {
            0.0
        };
        (loss, grad)
    }
}

/// `1 / (1 + exp(-x))` without overflow for large `|x|`.
pub fn stable_sigmoid(x: f32) -> f32 {
    let e = exp_neg(x.abs());
    if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// candle's f32 `erf` (the one its GELU uses).
pub fn erf(v: f32) -> f32 {
    candle_core::cpu::erf::erf_f32(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error against f64 math, with an absolute floor `floor`.
    fn error(got: f32, want: f64, floor: f64) -> f64 {
        (f64::from(got) - want).abs() / want.abs().max(floor)
    }

    #[test]
    fn exp_neg_matches_exp() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let a = i as f32 * 90.0 / 200_000.0;
            let want = (-f64::from(a)).exp();
            if want < 1e-37 {
                continue;
            }
            worst = worst.max(error(exp_neg(a), want, 0.0));
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(exp_neg(0.0), 1.0);
        assert_eq!(exp_neg(100.0), 0.0);
        assert_eq!(exp_neg(f32::INFINITY), 0.0);
        assert!(exp_neg(f32::NAN).is_nan());
    }

    #[test]
    fn ln_1p_unit_matches_ln_1p() {
        let mut worst = 0f64;
        for i in 0..=100_000 {
            for e in [i as f32 / 100_000.0, (i as f32 * -0.001).exp()] {
                let want = f64::from(e).ln_1p();
                worst = worst.max(error(ln_1p_unit(e), want, 1e-30));
            }
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(ln_1p_unit(0.0), 0.0);
        assert!(ln_1p_unit(f32::NAN).is_nan());
    }

    #[test]
    fn ln_unit_matches_ln() {
        let mut worst = 0f64;
        for i in 1..=100_000 {
            for p in [
                i as f32 / 100_000.0,
                (i as f32 * -0.001).exp(),
                f32::from_bits(i * 37),
            ] {
                let want = f64::from(p).ln();
                worst = worst.max(error(ln_unit(p), want, 1e-3));
            }
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(ln_unit(1.0), 0.0);
        assert_eq!(ln_unit(0.0), f32::NEG_INFINITY);
        assert!(ln_unit(f32::NAN).is_nan());
    }
}
