//! The boards command against an independent implementation of both rules.

use serde_json::Value;

use crate::{expect_code, lifesweep, stdout};

/// A straightforward Life step, written separately from the library's.
fn reference_step(board: &[Vec<u8>], conway: bool) -> Vec<Vec<u8>> {
    let n = board.len() as i64;
    let alive = |y: i64, x: i64| {
        (0..n).contains(&y) && (0..n).contains(&x) && board[y as usize][x as usize] == 1
    };
    let mut next = vec![vec![0u8; n as usize]; n as usize];
    for y in 0..n {
        for x in 0..n {
            let mut count = 0;
            for dy in -1..=1i64 {
                for dx in -1..=1i64 {
                    let orthogonal = dy == 0 || dx == 0;
                    if (dy, dx) != (0, 0) && (conway || orthogonal) && alive(y + dy, x + dx) {
                        count += 1;
                    }
                }
            }
            let live = if alive(y, x) {
                count == 2 || count == 3
            } else {
                count == 3
            };
            next[y as usize][x as usize] = u8::from(live);
        }
    }
    next
}

fn as_board(value: &Value) -> Vec<Vec<u8>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap() as u8)
                .collect()
        })
        .collect()
}

#[test]
fn boards_agree_with_an_independent_rule_for_both_rules() {
    for (rule, conway) in [("von-neumann", false), ("conway", true)] {
        for steps in [1u32, 2, 3] {
            let output = expect_code(
                lifesweep()
                    .args([
                        "boards", "--rule", rule, "--size", "6", "--count", "20", "--seed", "7",
                    ])
                    .args(["--steps", &steps.to_string(), "--format", "json"]),
                0,
            );
            let list: Value = serde_json::from_str(&stdout(&output)).unwrap();
            let list = list.as_array().unwrap();
            assert_eq!(list.len(), 20);
            for item in list {
                let board = as_board(&item["board"]);
                assert_eq!(board.len(), 6);
                let mut expected = board.clone();
                for _ in 0..steps {
                    expected = reference_step(&expected, conway);
                }
                assert_eq!(
                    as_board(&item["target"]),
                    expected,
                    "{rule}, {steps} steps, board {board:?}"
                );
            }
        }
    }
}

#[test]
fn boards_are_reproducible_and_drawn_as_text() {
    let args = [
        "boards", "--steps", "3", "--size", "5", "--count", "10", "--seed", "7", "--format", "text",
    ];
    let a = stdout(&expect_code(lifesweep().args(args), 0));
    let b = stdout(&expect_code(lifesweep().args(args), 0));
    assert_eq!(a, b);
    assert!(a
        .lines()
        .any(|l| l.chars().all(|c| matches!(c, '.' | '#' | ' ')) && l.contains("   ")));
    let other = stdout(&expect_code(
        lifesweep().args([
            "boards", "--steps", "3", "--size", "5", "--count", "10", "--seed", "8",
        ]),
        0,
    ));
    assert_ne!(a, other);
}

#[test]
fn boards_rejects_unknown_rule_and_bad_density() {
    expect_code(lifesweep().args(["boards", "--rule", "moore"]), 2);
    expect_code(lifesweep().args(["boards", "--density", "1.5"]), 2);
    let zero = expect_code(lifesweep().args(["boards", "--steps", "0"]), 2);
    assert!(
        crate::stderr(&zero).contains("--steps"),
        "{}",
        crate::stderr(&zero)
    );
}
