//! What a loss-walk job asks for: the run to walk from and how to walk (see the train crate's
//! `walk` module for what is computed).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::JobKey;

/// Where a walk heads from the trained weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalkKind {
    /// The straight line to the presolved weights of the same architecture.
    Presolve,
    /// A random direction of unit L1 norm.
    Random,
}

impl WalkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WalkKind::Presolve => "presolve",
            WalkKind::Random => "random",
        }
    }
}

impl std::str::FromStr for WalkKind {
    type Err = String;
    fn from_str(s: &str) -> Result<WalkKind, String> {
        match s {
            "presolve" => Ok(WalkKind::Presolve),
            "random" => Ok(WalkKind::Random),
            other => Err(format!("expected `presolve` or `random`, got {other:?}")),
        }
    }
}

/// A loss walk of one finished run, as stored with its job (canonical JSON, fields in this
/// order). Its key hashes everything but `weights_path`, so asking for the same walk of the
/// same run twice finds the first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalkSpec {
    /// Key of the trained run (its job in the same sweep).
    pub run_key: String,
    pub kind: WalkKind,
    /// Presolve walks: evenly spaced points, both ends included.
    pub points: u32,
    /// Batches of training boards each point's loss is averaged over.
    pub batches: u32,
    /// Permute the trained hidden channels to best match the solution first.
    pub align: bool,
    /// Random walks: the direction's seed.
    pub seed: u64,
    /// Random walks: the farthest distance (0, 0.1, ..., 1, 2, ..., this).
    pub max_distance: u32,
    /// The run's saved weights (safetensors), as its result recorded them.
    pub weights_path: String,
}

impl WalkSpec {
    /// Checks the numbers; errors name the option as the CLI spells it.
    pub fn validate(&self) -> Result<(), String> {
        if self.kind == WalkKind::Presolve && self.points < 2 {
            return Err(format!(
                "--points: a walk needs at least 2 points, got {}",
                self.points
            ));
        }
        if self.points > 100_000 {
            return Err(format!("--points: at most 100000, got {}", self.points));
        }
        if self.batches == 0 || self.batches > 100_000 {
            return Err(format!(
                "--batches: expected 1 to 100000 batches, got {}",
                self.batches
            ));
        }
        if self.kind == WalkKind::Random && !(1..=10_000).contains(&self.max_distance) {
            return Err(format!(
                "--max-distance: expected 1 to 10000, got {}",
                self.max_distance
            ));
        }
        Ok(())
    }

    /// The canonical JSON stored with the job.
    pub fn to_json(&self) -> String {
        // a plain struct of numbers and strings always serialises
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!())
    }

    /// The job key of the walk: a hash of what it computes (not of where the weights lie).
    pub fn key(&self) -> JobKey {
        let what = WalkSpec {
            weights_path: String::new(),
            ..self.clone()
        };
        let digest = Sha256::digest(format!("walk:{}", what.to_json()).as_bytes());
        JobKey(hex::encode(&digest[..16]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WalkSpec {
        WalkSpec {
            run_key: "abc".into(),
            kind: WalkKind::Presolve,
            points: 50,
            batches: 100,
            align: false,
            seed: 1,
            max_distance: 30,
            weights_path: "/w/a.safetensors".into(),
        }
    }

    #[test]
    fn key_ignores_where_the_weights_lie_but_not_what_is_walked() {
        let a = spec();
        let moved = WalkSpec {
            weights_path: "/elsewhere.safetensors".into(),
            ..a.clone()
        };
        assert_eq!(a.key(), moved.key());
        let aligned = WalkSpec {
            align: true,
            ..a.clone()
        };
        assert_ne!(a.key(), aligned.key());
        let random = WalkSpec {
            kind: WalkKind::Random,
            ..a.clone()
        };
        assert_ne!(a.key(), random.key());
        let back: WalkSpec = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(back, a);
        assert!(a.to_json().contains("\"kind\":\"presolve\""));
    }

    #[test]
    fn bad_numbers_name_the_option() {
        let one_point = WalkSpec {
            points: 1,
            ..spec()
        };
        assert!(one_point.validate().unwrap_err().starts_with("--points"));
        let no_batches = WalkSpec {
            batches: 0,
            ..spec()
        };
        assert!(no_batches.validate().unwrap_err().starts_with("--batches"));
        let far = WalkSpec {
            kind: WalkKind::Random,
            max_distance: 0,
            ..spec()
        };
        assert!(far.validate().unwrap_err().starts_with("--max-distance"));
        assert_eq!(spec().validate(), Ok(()));
        assert_eq!("random".parse::<WalkKind>(), Ok(WalkKind::Random));
        assert!("uphill".parse::<WalkKind>().is_err());
    }
}
