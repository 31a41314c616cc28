//! Evaluation: the fraction of fresh random boards the network gets entirely right.
//!
//! `eval_boards` boards of side `eval_board_size` (cells alive with probability `density`)
//! come from the run's `Eval` stream, so every run of a seed sees the same boards whatever its
//! training. Outputs (after the sigmoid when the network ends in one) are clamped to [0, 1]
//! and rounded half to even, like `torch.round`; a board is right iff every cell is.

use candle_core::{Device, Tensor};
use lifesweep_life::{generate_batch, stream_rng, RngStream};
use lifesweep_spec::TrainParams;

use crate::math::stable_sigmoid;
use crate::network::{check_params, Network, Pass};
use crate::TrainError;

/// What evaluation measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalResult {
    /// Boards with every cell right / boards.
    pub success_rate: f64,
    /// Cells right / cells.
    pub cell_accuracy: f64,
}

/// Evaluation runs in chunks of about this many cells to bound memory.
const CHUNK_CELLS: usize = 1 << 16;

/// Scores `net` on the evaluation boards of `params` (see the module documentation).
pub fn evaluate(
    net: &Network,
    params: &TrainParams,
    device: &Device,
) -> Result<EvalResult, TrainError> {
    check_params(params)?;
    let _flush = crate::fpu::FlushSubnormals::new();
    let size = params.eval_board_size as usize;
    let count = params.eval_boards as usize;
    let cells = size * size;
    let mut rng = stream_rng(params.seed, RngStream::Eval);
    let boards = generate_batch(
        &mut rng,
        params.rule,
        params.steps,
        size,
        count,
        params.density,
    );
    let chunk = (CHUNK_CELLS / cells).max(1);
    let (mut boards_right, mut cells_right) = (0usize, 0usize);
    for start in (0..count).step_by(chunk) {
        let end = (start + chunk).min(count);
        let range = start * cells..end * cells;
        let inputs = Tensor::from_slice(
            &boards.inputs[range.clone()],
            (end - start, size, size),
            device,
        )?;
        let raw = net
            .forward(&inputs, Pass::Eval)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for (outputs, targets) in raw.chunks(cells).zip(boards.targets[range].chunks(cells)) {
            let right = outputs
                .iter()
                .zip(targets)
                .filter(|&(&o, &t)| predicted_cell(o, net.ends_in_sigmoid()) == t)
                .count();
            cells_right += right;
            boards_right += usize::from(right == cells);
        }
    }
    Ok(EvalResult {
        success_rate: boards_right as f64 / count as f64,
        cell_accuracy: cells_right as f64 / (count * cells) as f64,
    })
}

/// The 0/1 prediction of one raw output (NaN predicts nothing and is always wrong).
fn predicted_cell(raw: f32, logits: bool) -> f32 {
    let p = if logits { stable_sigmoid(raw) } else { raw };
    p.clamp(0.0, 1.0).round_ties_even()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_round_half_to_even_and_clamp() {
        assert_eq!(predicted_cell(0.5, false), 0.0);
        assert_eq!(predicted_cell(0.51, false), 1.0);
        assert_eq!(predicted_cell(-3.0, false), 0.0);
        assert_eq!(predicted_cell(7.0, false), 1.0);
        assert_eq!(predicted_cell(0.0, true), 0.0);
        assert_eq!(predicted_cell(0.01, true), 1.0);
        assert_eq!(predicted_cell(-1e4, true), 0.0);
        assert!(predicted_cell(f32::NAN, true).is_nan());
    }
}
