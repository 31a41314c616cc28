//! The bit-parallel batch generator behind [`crate::generate_batch`] and [`crate::fill_batch`].
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

/// Bits `start..start + size` of the bit stream `words`, as a row.
fn read_row(words: &[u64], start: usize, size: usize) -> u64 {
    let (word, offset) = (start / 64, start % 64);
    let mut row = words[word] >> offset;
    if offset + size > 64 {
        row |= words[word + 1] << (64 - offset);
    }
    row & row_mask(size)
}

/// ORs `row` into bits `start..start + size` of `words`.
fn write_row(words: &mut [u64], start: usize, size: usize, row: u64) {
    let (word, offset) = (start / 64, start % 64);
    words[word] |= row << offset;
    if offset + size > 64 {
        words[word + 1] |= row >> (64 - offset);
    }
}

/// Bit-sliced counter of up to 15 one-bit inputs per column.
#[derive(Clone, Copy, Default)]
struct Count([u64; 4]);

impl Count {
    #[inline(always)]
    fn add(&mut self, mut carry: u64) {
        for plane in &mut self.0 {
            let next = *plane & carry;
            *plane ^= carry;
            carry = next;
        }
    }

    /// Columns whose count is 3, or 2 where `alive` is set: the next state under both rules.
    #[inline(always)]
    fn next_state(&self, alive: u64) -> u64 {
        let [b0, b1, b2, b3] = self.0;
        b1 & !b2 & !b3 & (b0 | alive)
    }
}

/// One step of `rule` on the rows of a board of side `size`, into `next`.
pub(crate) fn step_rows(rule: Rule, rows: &[u64], size: usize, next: &mut [u64]) {
    let mask = row_mask(size);
    for y in 0..size {
        let alive = rows[y];
        let up = if y > 0 { rows[y - 1] } else { 0 };
        let down = if y + 1 < size { rows[y + 1] } else { 0 };
        let mut count = Count::default();
        // bit x of `v << 1` is column x - 1 of v, bit x of `v >> 1` is column x + 1
        count.add(up);
        count.add(down);
        count.add((alive << 1) & mask);
        count.add(alive >> 1);
        if rule == Rule::Conway {
            count.add((up << 1) & mask);
            count.add(up >> 1);
            count.add((down << 1) & mask);
            count.add(down >> 1);
        }
        next[y] = count.next_state(alive);
    }
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

/// [`crate::fill_batch`] for `1 <= size <= 64`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fill_batch_bits<R: Rng + ?Sized>(
    rng: &mut R,
    rule: Rule,
    steps: u32,
    size: usize,
    count: usize,
    density: f64,
    inputs: &mut [f32],
    targets: &mut [f32],
) {
    debug_assert!((1..=MAX_BITS_SIZE).contains(&size));
    let cells = size * size;
    let used = cells.div_ceil(64);
    let mut words = [0u64; WORDS];
    let mut rows = [0u64; MAX_BITS_SIZE];
    let mut next = [0u64; MAX_BITS_SIZE];
    let boards = inputs
        .chunks_exact_mut(cells)
        .zip(targets.chunks_exact_mut(cells));
    for (input, target) in boards.take(count) {
        draw_board(rng, cells, density, &mut words);
        expand_bits(&words[..used], input);
        for (y, row) in rows[..size].iter_mut().enumerate() {
            *row = read_row(&words, y * size, size);
        }
        for _ in 0..steps {
            step_rows(rule, &rows[..size], size, &mut next[..size]);
            rows[..size].copy_from_slice(&next[..size]);
        }
        words[..used].fill(0);
        for (y, &row) in rows[..size].iter().enumerate() {
            write_row(&mut words, y * size, size, row);
        }
        expand_bits(&words[..used], target);
    }
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
