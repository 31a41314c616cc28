//! `--where` filters on run parameters: `steps=2`, `activation=LeakyReLU`, `seed<=10`,
//! `m_factor>=5`, `rule!=conway`.

use std::fmt;

use serde_json::{Map, Value};

use crate::{param_names, ResultsError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// One condition on a parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub key: String,
    pub op: Op,
    pub value: String,
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.key, self.op.symbol(), self.value)
    }
}

impl Filter {
    /// Parses `KEY OP VALUE` with OP one of `=`, `!=`, `<`, `<=`, `>`, `>=`, checking that the
    /// key is a parameter and that ordering operators have a number.
    pub fn parse(text: &str) -> Result<Filter, ResultsError> {
        let bad = |message: String| ResultsError::BadFilter {
            filter: text.to_string(),
            message,
        };
        let Some(at) = text.find(['=', '<', '>', '!']) else {
            return Err(bad(
                "expected KEY=VALUE (or !=, <, <=, >, >=), e.g. steps=2 or seed<=10".into(),
            ));
        };
        let rest = &text[at..];
        let (op, len) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("=", Op::Eq),
        ]
        .into_iter()
        .find(|(symbol, _)| rest.starts_with(symbol))
        .map(|(symbol, op)| (op, symbol.len()))
        .ok_or_else(|| bad("expected one of =, !=, <, <=, >, >= after the key".into()))?;
        let key = text[..at].trim();
        let value = rest[len..].trim();
        let known = param_names();
        if !known.iter().any(|k| k == key) {
            return Err(bad(format!(
                "unknown parameter {key:?}; parameters are {}",
                known.join(", ")
            )));
        }
        if value.is_empty() {
            return Err(bad("the value is missing".into()));
        }
        // A value that no run can have is refused, not matched against nothing: the
        // parameter's kind is that of its default.
        let defaults = crate::params_map(&lifesweep_spec::TrainParams::default());
        match defaults.get(key) {
            Some(Value::Number(_)) if value.parse::<f64>().is_err() => {
                return Err(bad(format!("{key} is a number, and {value:?} is not one")));
            }
            Some(Value::Bool(_))
                if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") =>
            {
                return Err(bad(format!("{key} is true or false, not {value:?}")));
            }
            _ => {}
        }
        if !matches!(op, Op::Eq | Op::Ne) && value.parse::<f64>().is_err() {
            return Err(bad(format!(
                "{} compares numbers, and {value:?} is not one",
                op.symbol()
            )));
        }
        Ok(Filter {
            key: key.to_string(),
            op,
            value: value.to_string(),
        })
    }

    /// Whether a run with these parameters passes (numbers compare as numbers, text without
    /// regard to case).
    pub fn matches(&self, params: &Map<String, Value>) -> bool {
        let Some(actual) = params.get(&self.key) else {
            return false;
        };
        let wanted_number = self.value.parse::<f64>().ok();
        match (actual, wanted_number) {
            (Value::Number(n), Some(w)) => {
                let Some(a) = n.as_f64() else { return false };
                match self.op {
                    Op::Eq => a == w,
                    Op::Ne => a != w,
                    Op::Lt => a < w,
                    Op::Le => a <= w,
                    Op::Gt => a > w,
                    Op::Ge => a >= w,
                }
            }
            (other, _) => {
                let text = match other {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                let equal = text.eq_ignore_ascii_case(&self.value);
                match self.op {
                    Op::Eq => equal,
                    Op::Ne => !equal,
                    _ => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifesweep_spec::{Activation, TrainParams};

    fn params(seed: u64, activation: Activation) -> Map<String, Value> {
        crate::params_map(&TrainParams {
            seed,
            activation,
            ..TrainParams::default()
        })
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_refused() {
        for (filter, says) in [
            ("steps=abc", "steps is a number"),
            ("learning_rate!=fast", "learning_rate is a number"),
            ("use_sigmoid=yes", "use_sigmoid is true or false"),
        ] {
            let err = Filter::parse(filter).unwrap_err().to_string();
            assert!(err.contains(says), "{filter}: {err}");
        }
        for ok in [
            "steps=2",
            "learning_rate=1e-3",
            "use_sigmoid=TRUE",
            "activation=relu",
        ] {
            assert!(Filter::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn operators_compare_numbers_and_text() {
        let p = params(7, Activation::LeakyReLU);
        let pass = |f: &str| Filter::parse(f).unwrap().matches(&p);
        assert!(
            pass("seed<=10")
                && pass("seed<8")
                && pass("seed>=7")
                && pass("seed=7")
                && pass("seed!=8")
        );
        assert!(!pass("seed>7") && !pass("seed<7") && !pass("seed=8"));
        assert!(
            pass("activation=leakyrelu") && pass("activation!=ReLU") && !pass("activation=ReLU")
        );
        assert!(pass("d_factor=1") && pass("use_sigmoid=false"));
        assert_eq!(
            Filter::parse(" seed <= 10 ").unwrap().to_string(),
            "seed<=10"
        );
    }

    #[test]
    fn bad_filters_say_why() {
        for (text, says) in [
            ("seed", "expected KEY=VALUE"),
            ("bogus=1", "unknown parameter"),
            ("seed=", "missing"),
            ("activation<ReLU", "compares numbers"),
        ] {
            let err = Filter::parse(text).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains(text), "{text}: {err}");
        }
    }
}
