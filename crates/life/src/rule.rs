use serde::{Deserialize, Serialize};

use crate::Board;

/// Which cells count as neighbours. Both rules use the same thresholds: a live cell survives
/// with 2 or 3 live neighbours, a dead cell is born with exactly 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Rule {
    /// The seed's variant: the 4 orthogonal neighbours.
    #[default]
    #[serde(rename = "von-neumann")]
    VonNeumann,
    /// Conway's B3/S23 with the 8 surrounding neighbours.
    #[serde(rename = "conway")]
    Conway,
}

impl Rule {
    pub const ALL: [Rule; 2] = [Rule::VonNeumann, Rule::Conway];

    pub fn name(self) -> &'static str {
        match self {
            Rule::VonNeumann => "von-neumann",
            Rule::Conway => "conway",
        }
    }

    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The neighbour offsets (dy, dx) of this rule.
    pub fn neighbour_offsets(self) -> &'static [(isize, isize)] {
        match self {
            Rule::VonNeumann => &[(-1, 0), (0, -1), (0, 1), (1, 0)],
            Rule::Conway => &[
                (-1, -1),
                (-1, 0),
                (-1, 1),
                (0, -1),
                (0, 1),
                (1, -1),
                (1, 0),
                (1, 1),
            ],
        }
    }

    /// The next state of one cell given its state and its number of live neighbours.
    pub fn next_state(self, alive: bool, live_neighbours: u32) -> bool {
        if alive {
            live_neighbours == 2 || live_neighbours == 3
        } else {
            live_neighbours == 3
        }
    }

    /// One step of the rule; cells off the board are dead.
    pub fn step(self, board: &Board) -> Board {
        let n = board.size();
        let cells = board.cells();
        let offsets = self.neighbour_offsets();
        let mut next = vec![0u8; n * n];
        for y in 0..n {
            for x in 0..n {
                let mut live = 0u32;
                for &(dy, dx) in offsets {
                    let ny = y as isize + dy;
                    let nx = x as isize + dx;
                    if ny >= 0 && nx >= 0 && (ny as usize) < n && (nx as usize) < n {
                        live += u32::from(cells[ny as usize * n + nx as usize]);
                    }
                }
                next[y * n + x] = u8::from(self.next_state(cells[y * n + x] == 1, live));
            }
        }
        Board::from_cells(n, next)
    }

    /// `steps` steps of the rule.
    pub fn step_n(self, board: &Board, steps: u32) -> Board {
        let mut current = board.clone();
        for _ in 0..steps {
            current = self.step(&current);
        }
        current
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_str(rule: Rule, board: &str) -> String {
        rule.step(&board.parse::<Board>().unwrap()).to_string()
    }

    #[test]
    fn von_neumann_birth_needs_exactly_three_orthogonal_neighbours() {
        // centre is dead with 3 orthogonal live neighbours: born; the 3 live cells each see
        // only the (dead) centre orthogonally, so they die.
        let before = "...\n#.#\n.#.";
        let after = "...\n.#.\n...";
        assert_eq!(step_str(Rule::VonNeumann, before), after);
    }

    #[test]
    fn von_neumann_ignores_diagonals() {
        // the centre has 4 diagonal neighbours only: it stays dead, and the corners die alone.
        let before = "#.#\n...\n#.#";
        assert_eq!(step_str(Rule::VonNeumann, before), "...\n...\n...");
        // under conway the centre sees 4 neighbours and stays dead too, corners see 0 and die.
        assert_eq!(step_str(Rule::Conway, before), "...\n...\n...");
    }

    #[test]
    fn von_neumann_survival_with_two_or_three_and_death_with_four() {
        // plus shape: centre has 4 live neighbours -> dies; arms have 1 (centre) -> die;
        // the 4 corners are dead with 2 orthogonal live neighbours -> stay dead.
        let before = ".#.\n###\n.#.";
        assert_eq!(step_str(Rule::VonNeumann, before), "...\n...\n...");
        // a 2x2 block: each cell has 2 orthogonal live neighbours -> survives.
        let block = "....\n.##.\n.##.\n....";
        assert_eq!(step_str(Rule::VonNeumann, block), block);
    }

    #[test]
    fn edge_cells_see_dead_neighbours_off_the_board() {
        // a row across the top edge: wrap-around would give the ends extra neighbours.
        let before = "###\n...\n...";
        // under von-neumann: the middle has 2 live neighbours (left, right) -> survives;
        // the ends have 1 -> die; (1,1) has 1 (above) -> stays dead.
        assert_eq!(step_str(Rule::VonNeumann, before), ".#.\n...\n...");
        // under conway the blinker at the edge: middle survives, (1,1) is born (3 above),
        // the ends die; the cell above the middle would exist only with wrap-around.
        assert_eq!(step_str(Rule::Conway, before), ".#.\n.#.\n...");
    }

    #[test]
    fn conway_blinker_oscillates() {
        let vertical = ".....\n..#..\n..#..\n..#..\n.....";
        let horizontal = ".....\n.....\n.###.\n.....\n.....";
        assert_eq!(step_str(Rule::Conway, vertical), horizontal);
        assert_eq!(step_str(Rule::Conway, horizontal), vertical);
    }

    #[test]
    fn rule_names_round_trip() {
        for rule in Rule::ALL {
            assert_eq!(Rule::from_name(rule.name()), Some(rule));
        }
        assert_eq!(Rule::from_name("moore"), None);
    }
}
