//! The TOML sweep file: `[sweep]`, `[grid]`, `[train]`, `[eval]`.

use serde::Deserialize;

use crate::params::{TrainParams, EVAL_KEYS, TRAIN_KEYS};
use crate::{job_key, JobKey, SpecError};

/// The file as written, before values are checked one by one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    sweep: RawSweep,
    #[serde(default)]
    grid: toml::Table,
    #[serde(default)]
    train: toml::Table,
    #[serde(default)]
    eval: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    name: Option<String>,
    #[serde(default)]
    description: String,
    /// Seeds of one grid point a worker trains as one fused computation. A scheduling choice,
    /// not a training parameter: it changes no job key and no result.
    fuse_seeds: Option<toml::Value>,
}

/// A `{ from = A, to = B }` range on an integer axis (both ends included).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    from: i64,
    to: i64,
}

/// One grid axis: a parameter and the values it takes, in the order written.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<toml::Value>,
}

/// One job of a sweep: its key and its full parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub key: JobKey,
    pub params: TrainParams,
}

/// A parsed and fully validated sweep: every job it expands to has valid parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    pub name: String,
    pub description: String,
    /// The parameters every job shares: defaults overridden by `[train]` and `[eval]`.
    pub base: TrainParams,
    /// Grid axes in canonical order (parameter order, `seed` last so that a grid point's
    /// seeds are neighbours in the queue).
    pub axes: Vec<Axis>,
    /// `[sweep] fuse_seeds`: seeds of one grid point trained as one computation (1..=64).
    pub fuse_seeds: usize,
    jobs: Vec<JobSpec>,
}

fn key_error(origin: &str, key: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Key {
        origin: origin.to_string(),
        key: key.into(),
        message: message.into(),
    }
}

/// Sets `key = value` on `params`, checking the value's type through serde.
fn set_param(params: &TrainParams, key: &str, value: &toml::Value) -> Result<TrainParams, String> {
    let mut table = toml::Table::try_from(params).map_err(|e| e.to_string())?;
    table.insert(key.to_string(), value.clone());
    TrainParams::deserialize(toml::Value::Table(table)).map_err(|e| {
        // serde's message says what was expected; make it read as a sentence about the value.
        let msg = e.to_string();
        let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
        let msg = msg
            .split(" in `")
            .next()
            .unwrap_or(&msg)
            .trim_end_matches('.');
        format!("{msg} (got {value})")
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl SweepSpec {
    /// Parses and validates a sweep. `origin` names the file in errors; `default_name` is used
    /// when `[sweep]` has no name (the CLI passes the file's stem).
    pub fn parse(text: &str, origin: &str, default_name: &str) -> Result<SweepSpec, SpecError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| SpecError::Syntax {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;

        let name = raw.sweep.name.unwrap_or_else(|| default_name.to_string());
        if !valid_name(&name) {
            return Err(key_error(
                origin,
                "[sweep].name",
                format!("{name:?} is not a valid sweep name (letters, digits, '-', '_', '.')"),
            ));
        }

        let fuse_seeds = match &raw.sweep.fuse_seeds {
            None => 1,
            Some(toml::Value::Integer(k)) if (1..=64).contains(k) => *k as usize,
            Some(other) => {
                return Err(key_error(
                    origin,
                    "[sweep].fuse_seeds",
                    format!("expected a whole number from 1 to 64, got {other}"),
                ))
            }
        };

        // [train]: each key on its own, so an error names it.
        let mut base = TrainParams::default();
        for (key, value) in &raw.train {
            let at = format!("[train].{key}");
            if !TRAIN_KEYS.contains(&key.as_str()) {
                return Err(key_error(origin, at, unknown_key_message(key, TRAIN_KEYS)));
            }
            if raw.grid.contains_key(key) {
                return Err(key_error(
                    origin,
                    at,
                    format!("{key} is set in both [train] and [grid]; keep one"),
                ));
            }
            base = set_param(&base, key, value).map_err(|m| key_error(origin, at, m))?;
        }
        for (key, value) in &raw.eval {
            let at = format!("[eval].{key}");
            let Some((_, param)) = EVAL_KEYS.iter().find(|(k, _)| k == key) else {
                let known: Vec<&str> = EVAL_KEYS.iter().map(|(k, _)| *k).collect();
                return Err(key_error(origin, at, unknown_key_message(key, &known)));
            };
            base = set_param(&base, param, value).map_err(|m| key_error(origin, at, m))?;
        }

        // [grid]: lists of values (or integer ranges), each value checked.
        let mut axes = Vec::new();
        for (key, spec) in &raw.grid {
            let at = format!("[grid].{key}");
            if !TRAIN_KEYS.contains(&key.as_str()) {
                return Err(key_error(origin, at, unknown_key_message(key, TRAIN_KEYS)));
            }
            let values = axis_values(spec).map_err(|m| key_error(origin, &at, m))?;
            if values.is_empty() {
                return Err(key_error(
                    origin,
                    at,
                    "the axis has no values; give at least one",
                ));
            }
            for (i, value) in values.iter().enumerate() {
                if values[..i].contains(value) {
                    return Err(key_error(
                        origin,
                        &at,
                        format!("value {value} appears twice"),
                    ));
                }
                set_param(&base, key, value).map_err(|m| key_error(origin, &at, m))?;
            }
            axes.push(Axis {
                key: key.clone(),
                values,
            });
        }
        axes.sort_by_key(|axis| {
            let order = TRAIN_KEYS
                .iter()
                .position(|k| *k == axis.key)
                .unwrap_or(usize::MAX);
            (axis.key == "seed", order)
        });

        let jobs = expand(&base, &axes, origin)?;
        Ok(SweepSpec {
            name,
            description: raw.sweep.description,
            base,
            axes,
            fuse_seeds,
            jobs,
        })
    }

    /// The jobs of the grid's cartesian product, the last axis varying fastest.
    pub fn jobs(&self) -> &[JobSpec] {
        &self.jobs
    }

    /// The grid's axis names.
    pub fn axis_keys(&self) -> Vec<String> {
        self.axes.iter().map(|a| a.key.clone()).collect()
    }

    /// The parameters that name a grid point in results: steps, m_factor, d_factor and
    /// activation always, then every other grid axis but seed, in parameter order.
    pub fn group_keys(&self) -> Vec<String> {
        group_keys_for(&self.axis_keys())
    }
}

/// Default grouping for results given a sweep's axes (see [`SweepSpec::group_keys`]).
pub fn group_keys_for(axes: &[String]) -> Vec<String> {
    const ALWAYS: [&str; 4] = ["steps", "m_factor", "d_factor", "activation"];
    TRAIN_KEYS
        .iter()
        .filter(|k| **k != "seed" && (ALWAYS.contains(k) || axes.iter().any(|a| a == *k)))
        .map(|k| k.to_string())
        .collect()
}

fn unknown_key_message(key: &str, known: &[&str]) -> String {
    format!("unknown key {key:?}; known keys are {}", known.join(", "))
}

fn axis_values(spec: &toml::Value) -> Result<Vec<toml::Value>, String> {
    match spec {
        toml::Value::Array(values) => Ok(values.clone()),
        toml::Value::Table(table) => {
            let range = RawRange::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
                format!(
                    "expected a list of values or {{ from = A, to = B }}: {}",
                    e.to_string().trim()
                )
            })?;
            if range.from > range.to {
                return Err(format!(
                    "range from {} to {} is empty (from must not exceed to)",
                    range.from, range.to
                ));
            }
            if range.to - range.from >= 1_000_000 {
                return Err(format!(
                    "range from {} to {} has more than a million values",
                    range.from, range.to
                ));
            }
            Ok((range.from..=range.to).map(toml::Value::Integer).collect())
        }
        other => Err(format!(
            "expected a list of values or {{ from = A, to = B }}, got {other}"
        )),
    }
}

fn expand(base: &TrainParams, axes: &[Axis], origin: &str) -> Result<Vec<JobSpec>, SpecError> {
    let total: usize = axes.iter().map(|a| a.values.len()).product();
    let mut jobs = Vec::with_capacity(total);
    let mut index = vec![0usize; axes.len()];
    for _ in 0..total {
        let mut params = base.clone();
        for (axis, &i) in axes.iter().zip(&index) {
            // Each value was type-checked on its own during parsing; this cannot fail.
            params = set_param(&params, &axis.key, &axis.values[i])
                .map_err(|m| key_error(origin, format!("[grid].{}", axis.key), m))?;
        }
        if let Err((key, message)) = params.validate() {
            let point: Vec<String> = axes
                .iter()
                .zip(&index)
                .map(|(a, &i)| format!("{}={}", a.key, a.values[i]))
                .collect();
            let at = if axes.iter().any(|a| a.key == key) {
                format!("[grid].{key}")
            } else if let Some((eval_key, _)) = EVAL_KEYS.iter().find(|(_, p)| *p == key) {
                format!("[eval].{eval_key}")
            } else {
                format!("[train].{key}")
            };
            let message = if point.is_empty() {
                message
            } else {
                format!("{message} (at {})", point.join(", "))
            };
            return Err(key_error(origin, at, message));
        }
        jobs.push(JobSpec {
            key: job_key(&params),
            params,
        });
        // Odometer increment, last axis fastest.
        for d in (0..axes.len()).rev() {
            index[d] += 1;
            if index[d] < axes[d].values.len() {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;

    fn parse(text: &str) -> Result<SweepSpec, SpecError> {
        SweepSpec::parse(text, "test.toml", "test")
    }

    #[test]
    fn expands_the_cartesian_product_with_seed_fastest() {
        let spec = parse(
            r#"
            [sweep]
            name = "demo"
            [grid]
            seed = { from = 1, to = 3 }
            m_factor = [1, 5]
            activation = ["ReLU", "LeakyReLU"]
            [train]
            batches = 10
            use_sigmoid = true
            [eval]
            boards = 50
            "#,
        )
        .unwrap();
        assert_eq!(spec.name, "demo");
        assert_eq!(spec.jobs().len(), 12);
        assert_eq!(spec.axis_keys(), ["m_factor", "activation", "seed"]);
        let first: Vec<(u32, Activation, u64)> = spec.jobs()[..4]
            .iter()
            .map(|j| (j.params.m_factor, j.params.activation, j.params.seed))
            .collect();
        assert_eq!(
            first,
            [
                (1, Activation::ReLU, 1),
                (1, Activation::ReLU, 2),
                (1, Activation::ReLU, 3),
                (1, Activation::LeakyReLU, 1)
            ]
        );
        assert!(spec
            .jobs()
            .iter()
            .all(|j| j.params.batches == 10 && j.params.use_sigmoid));
        assert!(spec.jobs().iter().all(|j| j.params.eval_boards == 50));
        let mut keys: Vec<&JobKey> = spec.jobs().iter().map(|j| &j.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 12, "job keys are unique");
        assert_eq!(
            spec.group_keys(),
            ["steps", "m_factor", "d_factor", "activation"]
        );
    }

    #[test]
    fn key_order_in_the_file_does_not_change_job_keys() {
        let a = parse("[grid]\nm_factor = [1, 2]\nsteps = [1]\n[train]\nbatches = 3\nseed = 4")
            .unwrap();
        let b = parse("[train]\nseed = 4\nbatches = 3\n[grid]\nsteps = [1]\nm_factor = [1, 2]")
            .unwrap();
        let ka: Vec<_> = a.jobs().iter().map(|j| j.key.clone()).collect();
        let kb: Vec<_> = b.jobs().iter().map(|j| j.key.clone()).collect();
        assert_eq!(ka, kb);
    }

    #[test]
    fn no_grid_means_one_job_of_the_base_parameters() {
        let spec = parse("[train]\nsteps = 2").unwrap();
        assert_eq!(spec.jobs().len(), 1);
        assert_eq!(spec.jobs()[0].params.steps, 2);
        assert_eq!(spec.name, "test");
    }

    fn error_of(text: &str) -> SpecError {
        parse(text).expect_err("config should be refused")
    }

    #[test]
    fn bad_input_names_the_file_and_the_key() {
        let cases: &[(&str, &str)] = &[
            ("[train]\nbogus = 1", "[train].bogus"),
            ("[grid]\nbogus = [1]", "[grid].bogus"),
            ("[eval]\nbogus = 1", "[eval].bogus"),
            ("[grid]\nm_factor = []", "[grid].m_factor"),
            ("[grid]\nm_factor = [0, 1]", "[grid].m_factor"),
            ("[train]\nm_factor = 0", "[train].m_factor"),
            ("[train]\nm_factor = -3", "[train].m_factor"),
            ("[train]\nsteps = 0", "[train].steps"),
            ("[train]\nbatches = 0", "[train].batches"),
            ("[train]\nbatch_size = 0", "[train].batch_size"),
            ("[grid]\nbatch_size = [32, 0]", "[grid].batch_size"),
            ("[train]\nactivation = \"Tanh\"", "[train].activation"),
            ("[train]\nsteps = \"two\"", "[train].steps"),
            ("[grid]\nseed = { from = 5, to = 1 }", "[grid].seed"),
            ("[grid]\nseed = 3", "[grid].seed"),
            ("[grid]\nsteps = [1, 1]", "[grid].steps"),
            ("[grid]\nsteps = [1]\n[train]\nsteps = 2", "[train].steps"),
            ("[train]\nd_factor = 0.5", "[train].d_factor"),
            ("[train]\nsolve_layers = [3]", "[train].solve_layers"),
            ("[eval]\nboards = 0", "[eval].boards"),
            ("[sweep]\nname = \"a b\"", "[sweep].name"),
            ("[sweep]\nfuse_seeds = 0", "[sweep].fuse_seeds"),
            ("[sweep]\nfuse_seeds = 65", "[sweep].fuse_seeds"),
            ("[sweep]\nfuse_seeds = \"8\"", "[sweep].fuse_seeds"),
            ("[train]\nrule = \"moore\"", "[train].rule"),
        ];
        for (text, key) in cases {
            let err = error_of(text);
            assert_eq!(err.key(), Some(*key), "config {text:?} gave {err}");
            assert!(err.to_string().starts_with("test.toml: "), "{err}");
        }
    }

    #[test]
    fn syntax_errors_and_unknown_sections_name_the_file() {
        for text in ["[train\nsteps = 1", "[bogus]\nx = 1", "steps = 1"] {
            let err = error_of(text);
            assert!(matches!(err, SpecError::Syntax { .. }), "{text:?}: {err:?}");
            assert!(err.to_string().starts_with("test.toml: "));
        }
    }

    #[test]
    fn zero_blocks_at_one_grid_point_names_the_point() {
        let err = error_of("[grid]\nsteps = [1, 2]\n[train]\nd_factor = 0.5");
        assert_eq!(err.key(), Some("[train].d_factor"));
        assert!(err.to_string().contains("steps=1"), "{err}");
    }
}
