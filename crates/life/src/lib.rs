//! The Game of Life rules of the experiment and the seeded generator of training and
//! evaluation boards.
//!
//! Boards are finite and square; cells off the edge count as dead (zero padding, no wrap).
//! This crate is pure: it does no IO, knows nothing of tensors, SQL or processes, and every
//! random board comes from an RNG that the caller seeds, so the same seed gives the same boards
//! on every machine.

mod bits;
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
/// This is the one generator used by training, evaluation and the `boards` command; see
/// [`fill_batch`] for the same boards written into the caller's buffers.
pub fn generate_batch<R: Rng + ?Sized>(
    rng: &mut R,
    rule: Rule,
    steps: u32,
    size: usize,
    count: usize,
    density: f64,
) -> Batch {
    let cells = size * size;
    let mut inputs = vec![0f32; count * cells];
    let mut targets = vec![0f32; count * cells];
    fill_batch(
        rng,
        rule,
        steps,
        size,
        count,
        density,
        &mut inputs,
        &mut targets,
    );
    Batch {
        count,
        size,
        inputs,
        targets,
    }
}

/// [`generate_batch`] into `inputs` and `targets` (each `count * size * size` cells, row-major
/// boards one after the other, 0.0 / 1.0), drawing the same boards from the RNG.
///
/// # Panics
/// When a buffer does not hold exactly `count * size * size` cells (a programming error).
#[allow(clippy::too_many_arguments)]
pub fn fill_batch<R: Rng + ?Sized>(
    rng: &mut R,
    rule: Rule,
    steps: u32,
    size: usize,
    count: usize,
    density: f64,
    inputs: &mut [f32],
    targets: &mut [f32],
) {
    let cells = count * size * size;
    assert_eq!(
        inputs.len(),
        cells,
        "inputs of {count} boards of size {size}"
    );
    assert_eq!(
        targets.len(),
        cells,
        "targets of {count} boards of size {size}"
    );
    let mut input_bits = vec![0u64; bit_words(cells)];
    let mut target_bits = vec![0u64; bit_words(cells)];
    fill_batch_bits(
        rng,
        rule,
        steps,
        size,
        count,
        density,
        &mut input_bits,
        &mut target_bits,
    );
    bits::expand_stream(&input_bits, inputs);
    bits::expand_stream(&target_bits, targets);
}

/// The number of 64-bit words that hold `cells` bits.
pub fn bit_words(cells: usize) -> usize {
    cells.div_ceil(64)
}

/// The batch of [`generate_batch`] as bit streams: cell `i` of board `b` (row-major) is bit
/// `(b * size * size + i) % 64` of word `(b * size * size + i) / 64` of `inputs` (the boards)
/// and `targets` (after `steps` steps), each [`bit_words`]`(count * size * size)` long; bits
/// past the last cell are 0. Draws the same boards from the RNG as [`generate_batch`].
///
/// Boards up to 64 cells wide are drawn and stepped a row per machine word (see the private
/// `bits` module); wider ones cell by cell.
///
/// # Panics
/// When a buffer does not have exactly `bit_words(count * size * size)` words.
#[allow(clippy::too_many_arguments)]
pub fn fill_batch_bits<R: Rng + ?Sized>(
    rng: &mut R,
    rule: Rule,
    steps: u32,
    size: usize,
    count: usize,
    density: f64,
    inputs: &mut [u64],
    targets: &mut [u64],
) {
    let cells = size * size;
    let words = bit_words(count * cells);
    assert_eq!(
        inputs.len(),
        words,
        "input bits of {count} boards of size {size}"
    );
    assert_eq!(
        targets.len(),
        words,
        "target bits of {count} boards of size {size}"
    );
    inputs.fill(0);
    targets.fill(0);
    if cells == 0 {
        return;
    }
    if size <= bits::MAX_BITS_SIZE {
        bits::fill_stream(rng, rule, steps, size, count, density, inputs, targets);
        return;
    }
    for board in 0..count {
        let input = Board::random(rng, size, density);
        let target = rule.step_n(&input, steps);
        for (i, (&a, &b)) in input.cells().iter().zip(target.cells()).enumerate() {
            let bit = board * cells + i;
            inputs[bit / 64] |= u64::from(a) << (bit % 64);
            targets[bit / 64] |= u64::from(b) << (bit % 64);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch drawn and stepped cell by cell with `Board::random` and `Rule::step_n`.
    fn reference_batch(
        seed: u64,
        rule: Rule,
        steps: u32,
        size: usize,
        count: usize,
        density: f64,
    ) -> Batch {
        let mut rng = stream_rng(seed, RngStream::TrainData);
        let (mut inputs, mut targets) = (Vec::new(), Vec::new());
        for _ in 0..count {
            let board = Board::random(&mut rng, size, density);
            let target = rule.step_n(&board, steps);
            inputs.extend(board.cells().iter().map(|&c| f32::from(c)));
            targets.extend(target.cells().iter().map(|&c| f32::from(c)));
        }
        Batch {
            count,
            size,
            inputs,
            targets,
        }
    }

    #[test]
    fn the_bit_parallel_generator_matches_the_cell_by_cell_reference() {
        for rule in Rule::ALL {
            for size in (1..=66).filter(|s| *s <= 12 || s % 7 == 0 || *s >= 62) {
                for (steps, density) in [(0, 0.5), (1, 0.5), (3, 0.5), (5, 0.3), (2, 1.0)] {
                    let seed = size as u64 * 31 + u64::from(steps);
                    let mut rng = stream_rng(seed, RngStream::TrainData);
                    let fast = generate_batch(&mut rng, rule, steps, size, 7, density);
                    let reference = reference_batch(seed, rule, steps, size, 7, density);
                    assert_eq!(
                        fast, reference,
                        "{rule} size {size} steps {steps} density {density}"
                    );
                }
            }
        }
    }

    #[test]
    fn consecutive_batches_continue_the_stream() {
        let mut rng = stream_rng(5, RngStream::Eval);
        let first = generate_batch(&mut rng, Rule::Conway, 2, 10, 3, 0.5);
        let second = generate_batch(&mut rng, Rule::Conway, 2, 10, 3, 0.5);
        let both = reference_batch(5, Rule::Conway, 2, 10, 6, 0.5);
        let mut rng = stream_rng(5, RngStream::Eval);
        let reference = generate_batch(&mut rng, Rule::Conway, 2, 10, 6, 0.5);
        assert_eq!(reference.inputs, [first.inputs, second.inputs].concat());
        assert_eq!(reference.targets, [first.targets, second.targets].concat());
        assert_ne!(
            both.inputs, reference.inputs,
            "reference_batch uses the TrainData stream"
        );
    }

    #[test]
    fn bit_batches_are_the_batches_as_bits() {
        for size in [3, 10, 65] {
            let mut rng = stream_rng(8, RngStream::TrainData);
            let batch = generate_batch(&mut rng, Rule::Conway, 2, size, 5, 0.5);
            let mut rng = stream_rng(8, RngStream::TrainData);
            let words = bit_words(5 * size * size);
            let (mut inputs, mut targets) = (vec![7u64; words], vec![7u64; words]);
            fill_batch_bits(
                &mut rng,
                Rule::Conway,
                2,
                size,
                5,
                0.5,
                &mut inputs,
                &mut targets,
            );
            for (bits, cells) in [(&inputs, &batch.inputs), (&targets, &batch.targets)] {
                for (i, &cell) in cells.iter().enumerate() {
                    assert_eq!(
                        (bits[i / 64] >> (i % 64)) & 1,
                        cell as u64,
                        "size {size} cell {i}"
                    );
                }
                let tail = cells.len() % 64;
                if tail > 0 {
                    assert_eq!(
                        bits[words - 1] >> tail,
                        0,
                        "size {size}: bits past the last cell"
                    );
                }
            }
        }
    }

    #[test]
    fn fill_batch_handles_empty_batches() {
        let mut rng = stream_rng(1, RngStream::TrainData);
        let batch = generate_batch(&mut rng, Rule::VonNeumann, 1, 10, 0, 0.5);
        assert!(batch.inputs.is_empty() && batch.targets.is_empty());
    }
}
