use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// A square board of dead (0) and live (1) cells, row-major.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Board {
    size: usize,
    cells: Vec<u8>,
}

impl Board {
    /// A board from row-major cells (each 0 or 1).
    ///
    /// # Panics
    /// When `cells.len() != size * size` or a cell is neither 0 nor 1: both are programming
    /// errors, never user input (user input goes through [`FromStr`]).
    pub fn from_cells(size: usize, cells: Vec<u8>) -> Board {
        assert_eq!(
            cells.len(),
            size * size,
            "board of size {size} needs {} cells",
            size * size
        );
        assert!(cells.iter().all(|&c| c <= 1), "cells are 0 or 1");
        Board { size, cells }
    }

    pub fn empty(size: usize) -> Board {
        Board {
            size,
            cells: vec![0; size * size],
        }
    }

    /// Each cell alive with probability `density`.
    ///
    /// At density 0.5 every cell takes one bit of a 64-bit draw (the common case, and the
    /// fastest); otherwise each cell compares one 32-bit draw with the threshold.
    pub fn random<R: Rng + ?Sized>(rng: &mut R, size: usize, density: f64) -> Board {
        let n = size * size;
        let mut cells = Vec::with_capacity(n);
        if density == 0.5 {
            while cells.len() < n {
                let mut bits: u64 = rng.random();
                let take = (n - cells.len()).min(64);
                for _ in 0..take {
                    cells.push((bits & 1) as u8);
                    bits >>= 1;
                }
            }
        } else {
            let threshold = (density.clamp(0.0, 1.0) * 4_294_967_296.0) as u64;
            for _ in 0..n {
                let draw: u32 = rng.random();
                cells.push(u8::from(u64::from(draw) < threshold));
            }
        }
        Board { size, cells }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn cells(&self) -> &[u8] {
        &self.cells
    }

    pub fn get(&self, y: usize, x: usize) -> u8 {
        self.cells[y * self.size + x]
    }

    pub fn live_cells(&self) -> usize {
        self.cells.iter().filter(|&&c| c == 1).count()
    }

    /// Rows as vectors, for serialisation.
    pub fn rows(&self) -> Vec<Vec<u8>> {
        self.cells
            .chunks(self.size.max(1))
            .map(<[u8]>::to_vec)
            .collect()
    }
}

/// A board drawn with `.` (dead) and `#` (alive), one row a line.
impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, row) in self.cells.chunks(self.size.max(1)).enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            for &c in row {
                f.write_str(if c == 1 { "#" } else { "." })?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardParseError(pub String);

impl fmt::Display for BoardParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BoardParseError {}

/// Parses a board drawn with `.`/`0` (dead) and `#`/`1` (alive); blank lines and
/// surrounding whitespace are ignored; the board must be square.
impl FromStr for Board {
    type Err = BoardParseError;

    fn from_str(s: &str) -> Result<Board, BoardParseError> {
        let rows: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let size = rows.len();
        let mut cells = Vec::with_capacity(size * size);
        for (y, row) in rows.iter().enumerate() {
            if row.chars().count() != size {
                return Err(BoardParseError(format!(
                    "row {} has {} cells, expected {size} (boards are square)",
                    y + 1,
                    row.chars().count()
                )));
            }
            for ch in row.chars() {
                cells.push(match ch {
                    '.' | '0' => 0,
                    '#' | '1' => 1,
                    other => {
                        return Err(BoardParseError(format!(
                            "row {}: cell {other:?} is neither '.' nor '#'",
                            y + 1
                        )))
                    }
                });
            }
        }
        Ok(Board { size, cells })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{stream_rng, RngStream};

    #[test]
    fn parse_and_display_round_trip() {
        let text = ".#.\n##.\n..#";
        let board: Board = text.parse().unwrap();
        assert_eq!(board.size(), 3);
        assert_eq!(board.live_cells(), 4);
        assert_eq!(board.to_string(), text);
    }

    #[test]
    fn parse_rejects_ragged_and_unknown_cells() {
        assert!("..\n...".parse::<Board>().is_err());
        assert!(".x\n..".parse::<Board>().is_err());
    }

    #[test]
    fn random_density_is_respected() {
        for density in [0.0, 0.2, 0.5, 0.8, 1.0] {
            let mut rng = stream_rng(3, RngStream::TrainData);
            let live: usize = (0..200)
                .map(|_| Board::random(&mut rng, 10, density).live_cells())
                .sum();
            let observed = live as f64 / 20_000.0;
            assert!(
                (observed - density).abs() < 0.02,
                "density {density}: observed {observed}"
            );
        }
    }

    #[test]
    fn random_boards_are_reproducible_from_the_seed() {
        let a = Board::random(&mut stream_rng(9, RngStream::Eval), 7, 0.5);
        let b = Board::random(&mut stream_rng(9, RngStream::Eval), 7, 0.5);
        let c = Board::random(&mut stream_rng(10, RngStream::Eval), 7, 0.5);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
