//! The bit-parallel batch generator behind [`crate::fill_batch_bits`] (and so
//! [`crate::fill_batch`] and [`crate::generate_batch`]).
//!
//! A board of side `size <= 64` is one `u64` per row (bit `x` is column `x`). A step of a rule
//! adds the neighbour rows (shifted left and right for the horizontal and diagonal neighbours,
//! zero beyond the edges) with bit-sliced counters, so one word operation updates a whole row.
//! Random boards are drawn exactly as [`Board::random`](crate::Board::random) draws them (same
//! calls on the RNG, same bit to cell mapping), so a seed gives the same boards as the
//! cell-by-cell reference ([`Rule::step`](crate::Rule::step)), which the tests check.

use rand::Rng;

use crate::Rule;

/// The widest board one word holds.
pub(crate) const MAX_BITS_SIZE: usize = 64;

/// The largest board of this path: `size * size` bits in `WORDS` words.
const WORDS: usize = MAX_BITS_SIZE * MAX_BITS_SIZE / 64;

/// Each byte value as 8 cells of 0.0 / 1.0, least significant bit first.
static BYTE_CELLS: [[f32; 8]; 256] = byte_cells();

const fn byte_cells() -> [[f32; 8]; 256] {
    let mut table = [[0f32; 8]; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut bit = 0;
        while bit < 8 {
            if byte & (1 << bit) != 0 {
                table[byte][bit] = 1.0;
            }
            bit += 1;
        }
        byte += 1;
    }
    table
}

/// Writes bits `0..out.len()` of `words` (least significant bit of word 0 first) as 0.0 / 1.0.
fn expand_bits(words: &[u64], out: &mut [f32]) {
    let done = out.len() / 8 * 8;
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        let byte = (words[i / 8] >> (8 * (i % 8))) & 0xff;
        chunk.copy_from_slice(&BYTE_CELLS[byte as usize]);
    }
    for (i, cell) in out.iter_mut().enumerate().skip(done) {
        *cell = ((words[i / 64] >> (i % 64)) & 1) as f32;
    }
}

fn row_mask(size: usize) -> u64 {
    if size >= 64 {
        u64::MAX
    } else {
        (1u64 << size) - 1
    }
}

/// Bits `start..start + size` (`size <= 64`) of the bit stream `words`, as a row.
fn read_row(words: &[u64], start: usize, size: usize) -> u64 {
    let (word, offset) = (start / 64, start % 64);
    let mut row = words[word] >> offset;
    if offset + size > 64 {
        row |= words[word + 1] << (64 - offset);
    }
    row & row_mask(size)
}

/// ORs `row` (`size <= 64` bits, the rest zero) into bits `start..start + size` of `words`.
fn write_row(words: &mut [u64], start: usize, size: usize, row: u64) {
    let (word, offset) = (start / 64, start % 64);
    words[word] |= row << offset;
    if offset + size > 64 {
        words[word + 1] |= row >> (64 - offset);
    }
}

/// One step of `rule` on a board of side `size` whose rows are `rows[1..=size]`, with
/// `rows[0]` and `rows[size + 1]` zero (the dead cells beyond the edges), into
/// `next[1..=size]`.
#[inline(always)]
fn step_padded(rule: Rule, rows: &[u64], size: usize, next: &mut [u64]) {
    let mask = row_mask(size);
    let (rows, next) = (&rows[..size + 2], &mut next[1..=size]);
    match rule {
        Rule::VonNeumann => {
            for (next, w) in next.iter_mut().zip(rows.windows(3)) {
                *next = von_neumann_row(w[0], w[1], w[2], mask);
            }
        }
        Rule::Conway => {
            for (next, w) in next.iter_mut().zip(rows.windows(3)) {
                *next = conway_row(w[0], w[1], w[2], mask);
            }
        }
    }
}

// In both rules the next state is: alive with 2 or 3 live neighbours, or dead with exactly 3.
// Bit x of `v << 1` is column x - 1 of v, bit x of `v >> 1` is column x + 1; `mask` keeps the
// board's columns (nothing shifts in from beyond the edges).

/// One row under the von Neumann rule: the 4 orthogonal neighbours, added by two half adders
/// and a third for the two sums. With at most 4 neighbours, "2 or 3" is exactly bit 1 of the
/// count (4 = 0b100 has it clear).
#[inline(always)]
fn von_neumann_row(up: u64, alive: u64, down: u64, mask: u64) -> u64 {
    let (left, right) = ((alive << 1) & mask, alive >> 1);
    let (s1, c1) = (up ^ down, up & down);
    let (s2, c2) = (left ^ right, left & right);
    let ones = s1 ^ s2;
    let twos = c1 ^ c2 ^ (s1 & s2);
    twos & (ones | alive)
}

/// One row under Conway's rule: the 8 neighbours as three column sums (a full adder over the
/// three cells above, one over the three below, a half adder over left and right), then the
/// ones and the twos. The count is 2 or 3 exactly when one of the four bits worth 2 is set.
#[inline(always)]
fn conway_row(up: u64, alive: u64, down: u64, mask: u64) -> u64 {
    let full_adder = |a: u64, b: u64, c: u64| (a ^ b ^ c, (a & b) | (c & (a ^ b)));
    let (s_up, c_up) = full_adder((up << 1) & mask, up, up >> 1);
    let (s_down, c_down) = full_adder((down << 1) & mask, down, down >> 1);
    let (left, right) = ((alive << 1) & mask, alive >> 1);
    let (s_mid, c_mid) = (left ^ right, left & right);
    let (ones, c_ones) = full_adder(s_up, s_down, s_mid);
    // exactly one of c_up, c_down, c_mid, c_ones
    let (p, q) = (c_up ^ c_down, c_up & c_down);
    let (r, t) = (c_mid ^ c_ones, c_mid & c_ones);
    let one_two = (p ^ r) & !(q | t | (p & r));
    one_two & (ones | alive)
}

/// Draws the cells of one board into `words` exactly as `Board::random` does: at density 0.5
/// cell `i` is bit `i % 64` of the `i / 64`-th 64-bit draw, otherwise one 32-bit draw per cell
/// compared with the threshold.
fn draw_board<R: Rng + ?Sized>(rng: &mut R, cells: usize, density: f64, words: &mut [u64]) {
    let used = cells.div_ceil(64);
    if density == 0.5 {
        for (i, word) in words[..used].iter_mut().enumerate() {
            let draw: u64 = rng.random();
            let take = (cells - 64 * i).min(64);
            *word = if take == 64 {
                draw
            } else {
                draw & ((1u64 << take) - 1)
            };
        }
    } else {
        let threshold = (density.clamp(0.0, 1.0) * 4_294_967_296.0) as u64;
        words[..used].fill(0);
        for i in 0..cells {
            let draw: u32 = rng.random();
            words[i / 64] |= u64::from(u64::from(draw) < threshold) << (i % 64);
        }
    }
}

/// [`crate::fill_batch_bits`] for `1 <= size <= 64`: `inputs` and `targets` are zero.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fill_stream<R: Rng + ?Sized>(
    rng: &mut R,
    rule: Rule,
    steps: u32,
    size: usize,
    count: usize,
    density: f64,
    inputs: &mut [u64],
    targets: &mut [u64],
) {
    debug_assert!((1..=MAX_BITS_SIZE).contains(&size));
    let cells = size * size;
    let used = cells.div_ceil(64);
    let mut words = [0u64; WORDS];
    // rows 1..=size of the board, zero rows around it
    let mut rows = [0u64; MAX_BITS_SIZE + 2];
    let mut next = [0u64; MAX_BITS_SIZE + 2];
    for board in 0..count {
        let start = board * cells;
        draw_board(rng, cells, density, &mut words);
        for (i, &word) in words[..used].iter().enumerate() {
            write_row(inputs, start + 64 * i, (cells - 64 * i).min(64), word);
        }
        for (y, row) in rows[1..=size].iter_mut().enumerate() {
            *row = read_row(&words, y * size, size);
        }
        let (mut current, mut other) = (&mut rows, &mut next);
        for _ in 0..steps {
            step_padded(rule, current, size, other);
            std::mem::swap(&mut current, &mut other);
        }
        for (y, &row) in current[1..=size].iter().enumerate() {
            write_row(targets, start + y * size, size, row);
        }
    }
}

/// Writes bits `0..out.len()` of the bit stream `words` as 0.0 / 1.0.
pub(crate) fn expand_stream(words: &[u64], out: &mut [f32]) {
    expand_bits(words, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_expand_least_significant_first() {
        let words = [0b1011u64 | (1 << 63), 0b1];
        let mut out = [9f32; 66];
        expand_bits(&words, &mut out);
        assert_eq!(&out[..5], &[1.0, 1.0, 0.0, 1.0, 0.0]);
        assert!(out[5..63].iter().all(|&c| c == 0.0));
        assert_eq!(&out[63..], &[1.0, 1.0, 0.0]);
    }

    #[test]
    fn rows_round_trip_across_word_boundaries() {
        for size in [1, 5, 7, 10, 13, 31, 33, 63, 64] {
            let rows: Vec<u64> = (0..size as u64)
                .map(|y| y.wrapping_mul(0x9e37_79b9_7f4a_7c15) & row_mask(size))
                .collect();
            let mut words = vec![0u64; (size * size).div_ceil(64)];
            for (y, &row) in rows.iter().enumerate() {
                write_row(&mut words, y * size, size, row);
            }
            for (y, &row) in rows.iter().enumerate() {
                assert_eq!(read_row(&words, y * size, size), row, "size {size} row {y}");
            }
        }
    }
}
