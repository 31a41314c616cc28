use std::process::ExitCode;

use anyhow::{bail, Result};
use lifesweep_life::{generate_boards, stream_rng, RngStream, Rule};
use serde_json::json;

use crate::cli::{BoardsArgs, BoardsFormat};

pub fn boards(args: BoardsArgs) -> Result<ExitCode> {
    let Some(rule) = Rule::from_name(&args.rule) else {
        bail!("--rule {:?}: expected von-neumann or conway", args.rule);
    };
    if !(0.0..=1.0).contains(&args.density) {
        bail!(
            "--density {}: expected a probability in [0, 1]",
            args.density
        );
    }
    // The same stream and generator as a run's training data with this seed.
    let mut rng = stream_rng(args.seed, RngStream::TrainData);
    let pairs = generate_boards(
        &mut rng,
        rule,
        args.steps,
        args.size as usize,
        args.count as usize,
        args.density,
    );
    match args.format {
        BoardsFormat::Json => {
            let list: Vec<_> = pairs
                .iter()
                .map(|(board, target)| json!({"board": board.rows(), "target": target.rows()}))
                .collect();
            crate::outln!("{}", serde_json::to_string(&list)?);
        }
        BoardsFormat::Text => {
            for (i, (board, target)) in pairs.iter().enumerate() {
                crate::outln!(
                    "board {} -> after {} step(s) of {}",
                    i + 1,
                    args.steps,
                    rule
                );
                for (a, b) in board.to_string().lines().zip(target.to_string().lines()) {
                    crate::outln!("{a}   {b}");
                }
                crate::outln!();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
