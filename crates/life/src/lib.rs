//! The Game of Life rules of the experiment and the seeded generator of training and
//! evaluation boards.
//!
//! Boards are finite and square; cells off the edge count as dead (zero padding, no wrap).
//! This crate is pure: it does no IO, knows nothing of tensors, SQL or processes, and every
//! random board comes from an RNG that the caller seeds, so the same seed gives the same boards
//! on every machine.

mod board;
mod rng;
mod rule;

pub use board::{Board, BoardParseError};
pub use rng::{stream_rng, RngStream};
pub use rule::Rule;

use rand::Rng;

/// A batch of boards and their targets, laid out for a network: `count` boards of
/// `size * size` cells each, row-major, as 0.0 / 1.0.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub count: usize,
    pub size: usize,
    pub inputs: Vec<f32>,
    pub targets: Vec<f32>,
}

/// Draws `count` random boards (each cell alive with probability `density`) and computes
/// their targets after `steps` steps of `rule`.
///
/// This is the one generator used by training, evaluation and the `boards` command.
pub fn generate_batch<R: Rng + ?Sized>(
    rng: &mut R,
    rule: Rule,
    steps: u32,
    size: usize,
    count: usize,
    density: f64,
) -> Batch {
    let cells = size * size;
    let mut inputs = Vec::with_capacity(count * cells);
    let mut targets = Vec::with_capacity(count * cells);
    for _ in 0..count {
        let board = Board::random(rng, size, density);
        let target = rule.step_n(&board, steps);
        inputs.extend(board.cells().iter().map(|&c| f32::from(c)));
        targets.extend(target.cells().iter().map(|&c| f32::from(c)));
    }
    Batch { count, size, inputs, targets }
}

/// Like [`generate_batch`] but returns the boards themselves, for display.
pub fn generate_boards<R: Rng + ?Sized>(
    rng: &mut R,
    rule: Rule,
    steps: u32,
    size: usize,
    count: usize,
    density: f64,
) -> Vec<(Board, Board)> {
    (0..count)
        .map(|_| {
            let board = Board::random(rng, size, density);
            let target = rule.step_n(&board, steps);
            (board, target)
        })
        .collect()
}
