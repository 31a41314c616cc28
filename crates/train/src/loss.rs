//! The training loss: mean binary cross-entropy over every cell of the batch.
//!
//! A network that ends in a sigmoid is trained on its logits with the stable form
//! `max(x, 0) - x y + ln(1 + exp(-|x|))` (gradient `sigmoid(x) - y`), never on
//! `ln(sigmoid(x))`, which is -inf once the sigmoid saturates; candle_nn's
//! `binary_cross_entropy_with_logit` has exactly that problem. Otherwise the output is clamped
//! to [0, 1] and scored like PyTorch's `BCELoss`: logs clamped at -100, gradient
//! `(p - y) / max(p (1 - p), 1e-12)` where the clamp passes it.
//!
//! Two implementations with the same values and gradients: the cell function of the native
//! CPU path ([`crate::math::bce_cell`]) and one of candle ops for any device, whose gradient
//! comes from a surrogate term (see [`bce_loss_ops`]).

use candle_core::{DType, Result, Tensor};

/// The mean BCE of `output` (logits when `logits`) against 0/1 `targets` of the same number of
/// elements, as a scalar tensor to call `backward` on.
pub fn bce_loss(output: &Tensor, targets: &Tensor, logits: bool) -> Result<Tensor> {
    let x = output.flatten_all()?;
    let y = targets.flatten_all()?.to_dtype(DType::F32)?;
    bce_loss_ops(&x, &y, logits)
}

/// The device-independent form. Its value is computed on the detached output; its gradient
/// comes from adding `sum((x - detach(x)) * g)`, which is exactly zero in value and has
/// gradient `g` (the PyTorch gradient written out above), so neither candle's derivative of
/// `ln` at 0 (NaN) nor its 0.5 split of the clamp's gradient at ties enters training.
pub fn bce_loss_ops(x: &Tensor, y: &Tensor, logits: bool) -> Result<Tensor> {
    let xd = x.detach();
    let (cell_loss, cell_grad) = bce_cells_ops(&xd, y, logits)?;
    let value = cell_loss.mean_all()?;
    let grad = cell_grad.affine(1.0 / x.elem_count() as f64, 0.0)?;
    let surrogate = ((x - &xd)? * grad)?.sum_all()?;
    value + surrogate
}

/// The loss and gradient of each cell (see the module documentation) of detached outputs.
pub(crate) fn bce_cells_ops(xd: &Tensor, y: &Tensor, logits: bool) -> Result<(Tensor, Tensor)> {
    if logits {
        let softplus = xd.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
        let loss = ((xd.relu()? - (xd * y)?)? + softplus)?;
        let grad = (candle_nn::ops::sigmoid(xd)? - y)?;
        Ok((loss, grad))
    } else {
        let p = xd.clamp(0f32, 1f32)?;
        let q = p.affine(-1.0, 1.0)?;
        let log_p = p.log()?.maximum(-100f32)?;
        let log_q = q.log()?.maximum(-100f32)?;
        let loss = ((y * log_p)? + (y.affine(-1.0, 1.0)? * log_q)?)?.neg()?;
        let inside = (xd.ge(0f32)?.to_dtype(DType::F32)? * xd.le(1f32)?.to_dtype(DType::F32)?)?;
        let denom = (&p * &q)?.maximum(1e-12f32)?;
        let grad = (((&p - y)? / denom)? * inside)?;
        Ok((loss, grad))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// Loss and gradient of both implementations at the given outputs: `fused` the cell
    /// function of the native path (mean in f64, like it), else the candle ops.
    fn loss_and_grad(xs: &[f32], ys: &[f32], logits: bool, fused: bool) -> (f32, Vec<f32>) {
        if fused {
            let n = xs.len() as f32;
            let cells: Vec<(f32, f32)> = xs
                .iter()
                .zip(ys)
                .map(|(&x, &y)| crate::math::bce_cell(x, y, logits))
                .collect();
            let mean = cells.iter().map(|&(l, _)| f64::from(l)).sum::<f64>() / xs.len() as f64;
            return (
                mean as f32,
                cells.iter().map(|&(_, g)| g * (1.0 / n)).collect(),
            );
        }
        let x = Var::from_slice(xs, xs.len(), &Device::Cpu).unwrap();
        let y = Tensor::from_slice(ys, ys.len(), &Device::Cpu).unwrap();
        let loss = bce_loss(x.as_tensor(), &y, logits).unwrap();
        let grads = loss.backward().unwrap();
        let grad = grads.get(&x).unwrap().to_vec1::<f32>().unwrap();
        (loss.to_scalar::<f32>().unwrap(), grad)
    }

    #[test]
    fn extreme_logits_give_finite_loss_and_gradients() {
        let xs = [1e4, -1e4, 1e4, -1e4, 0.0, 30.0, -30.0, 1e30];
        let ys = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
        for fused in [true, false] {
            let (loss, grad) = loss_and_grad(&xs, &ys, true, fused);
            assert!(loss.is_finite(), "fused {fused}: loss {loss}");
            assert!(
                grad.iter().all(|g| g.is_finite()),
                "fused {fused}: {grad:?}"
            );
            // (0 + 1e4 + 1e4 + ln 2 + 30 + 30 + 0) / 8
            let expected = (2e4 + std::f64::consts::LN_2 + 60.0) / 8.0;
            assert!(
                (f64::from(loss) - expected).abs() < 1e-2,
                "fused {fused}: loss {loss}"
            );
            let n = xs.len() as f32;
            let expected_grad = [
                0.0,
                0.0,
                1.0 / n,
                -1.0 / n,
                -0.5 / n,
                1.0 / n,
                -1.0 / n,
                0.0,
            ];
            for (g, e) in grad.iter().zip(expected_grad) {
                assert!((g - e).abs() < 1e-6, "fused {fused}: {grad:?}");
            }
        }
    }

    #[test]
    fn clamped_outputs_score_like_pytorch_bce() {
        // outside [0, 1] the clamp stops the gradient; at 0 and 1 the log is clamped at -100.
        let xs = [-3.0, 0.0, 0.0, 1.0, 1.0, 0.25, 1e4, -1e4];
        let ys = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0];
        for fused in [true, false] {
            let (loss, grad) = loss_and_grad(&xs, &ys, false, fused);
            let expected = (0.0 + 0.0 + 100.0 + 0.0 + 100.0 - 0.25f64.ln() + 100.0 + 100.0) / 8.0;
            assert!(
                (f64::from(loss) - expected).abs() < 1e-3,
                "fused {fused}: loss {loss}"
            );
            let n = xs.len() as f32;
            let expected_grad = [
                0.0,
                0.0,
                -1e12 / n,
                0.0,
                1e12 / n,
                -0.75 / (0.25 * 0.75) / n,
                0.0,
                0.0,
            ];
            for (g, e) in grad.iter().zip(expected_grad) {
                assert!(
                    (g - e).abs() <= 1e-6 * e.abs().max(1.0),
                    "fused {fused}: {grad:?}"
                );
            }
        }
    }

    #[test]
    fn both_forms_agree_on_ordinary_outputs() {
        let xs: Vec<f32> = (0..50).map(|i| (i as f32 - 25.0) * 0.13).collect();
        let ys: Vec<f32> = (0..50).map(|i| f32::from(u8::from(i % 3 == 0))).collect();
        for logits in [true, false] {
            let (l1, g1) = loss_and_grad(&xs, &ys, logits, true);
            let (l2, g2) = loss_and_grad(&xs, &ys, logits, false);
            assert!(
                (l1 - l2).abs() < 1e-5 * l1.abs().max(1.0),
                "logits {logits}: {l1} vs {l2}"
            );
            for (a, b) in g1.iter().zip(&g2) {
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs().max(1e-3),
                    "logits {logits}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn nan_outputs_give_a_nan_loss() {
        for logits in [true, false] {
            for fused in [true, false] {
                let (loss, _) = loss_and_grad(&[0.5, f32::NAN], &[1.0, 0.0], logits, fused);
                assert!(loss.is_nan(), "logits {logits} fused {fused}: {loss}");
            }
        }
    }
}
