//! Ordering a table's rows by one or more of its columns.

use std::cmp::Ordering;

use serde_json::Value;

use crate::{ResultsError, Table};

/// One `--sort` key: a column, ascending unless `:desc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub column: String,
    pub descending: bool,
}

impl SortKey {
    /// Parses `COLUMN`, `COLUMN:asc` or `COLUMN:desc`.
    pub fn parse(text: &str) -> Result<SortKey, ResultsError> {
        let (column, direction) = match text.rsplit_once(':') {
            Some((column, direction)) => (column.trim(), Some(direction.trim())),
            None => (text.trim(), None),
        };
        let descending = match direction.map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ResultsError::BadSortKey {
                    key: text.to_string(),
                    message: format!("direction {other:?} is neither asc nor desc"),
                })
            }
        };
        if column.is_empty() {
            return Err(ResultsError::BadSortKey {
                key: text.to_string(),
                message: "no column named".to_string(),
            });
        }
        Ok(SortKey {
            column: column.to_string(),
            descending,
        })
    }
}

/// Rank of a value's kind: numbers and booleans before strings before lists; null apart.
fn kind(value: &Value) -> u8 {
    match value {
        Value::Bool(_) => 0,
        Value::Number(_) => 1,
        Value::String(_) => 2,
        Value::Array(_) | Value::Object(_) => 3,
        Value::Null => 4,
    }
}

/// Compares two non-null values: numbers as numbers, strings as text, mixed kinds by kind.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.total_cmp(&y)
        }
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => kind(a)
            .cmp(&kind(b))
            .then_with(|| a.to_string().cmp(&b.to_string())),
    }
}

impl Table {
    /// Sorts the rows by `keys`, the first key first; ties keep their order. Empty cells (null)
    /// go last in either direction.
    pub fn sort(&mut self, keys: &[SortKey]) -> Result<(), ResultsError> {
        let mut indices = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(index) = self.columns.iter().position(|c| *c == key.column) else {
                return Err(ResultsError::UnknownSortColumn {
                    column: key.column.clone(),
                    known: self.columns.join(", "),
                });
            };
            indices.push((index, key.descending));
        }
        self.rows.sort_by(|a, b| {
            for &(index, descending) in &indices {
                let (x, y) = (
                    a.get(index).unwrap_or(&Value::Null),
                    b.get(index).unwrap_or(&Value::Null),
                );
                let order = match (x.is_null(), y.is_null()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    (false, false) if descending => compare(y, x),
                    (false, false) => compare(x, y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
            Ordering::Equal
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            columns: vec!["steps".into(), "activation".into(), "p".into()],
            rows: vec![
                vec![Value::from(2), Value::from("ReLU"), Value::from(0.5)],
                vec![Value::from(1), Value::from("GELU"), Value::Null],
                vec![Value::from(10), Value::from("ELU"), Value::from(0.9)],
                vec![Value::from(1), Value::from("ELU"), Value::from(0.1)],
            ],
        }
    }

    fn column(table: &Table, i: usize) -> Vec<Value> {
        table.rows.iter().map(|r| r[i].clone()).collect()
    }

    #[test]
    fn parses_direction() {
        assert_eq!(
            SortKey::parse("p:desc").unwrap(),
            SortKey {
                column: "p".into(),
                descending: true
            }
        );
        assert_eq!(
            SortKey::parse("steps").unwrap(),
            SortKey {
                column: "steps".into(),
                descending: false
            }
        );
        assert_eq!(
            SortKey::parse("steps:ASC").unwrap(),
            SortKey {
                column: "steps".into(),
                descending: false
            }
        );
        assert!(matches!(
            SortKey::parse("p:down"),
            Err(ResultsError::BadSortKey { .. })
        ));
        assert!(matches!(
            SortKey::parse(":desc"),
            Err(ResultsError::BadSortKey { .. })
        ));
    }

    #[test]
    fn numbers_sort_as_numbers_and_nulls_go_last_both_ways() {
        let mut t = table();
        t.sort(&[SortKey::parse("steps").unwrap()]).unwrap();
        assert_eq!(column(&t, 0), [1, 1, 2, 10].map(Value::from));
        t.sort(&[SortKey::parse("p:desc").unwrap()]).unwrap();
        assert_eq!(
            column(&t, 2),
            vec![
                Value::from(0.9),
                Value::from(0.5),
                Value::from(0.1),
                Value::Null
            ]
        );
        t.sort(&[SortKey::parse("p").unwrap()]).unwrap();
        assert_eq!(
            column(&t, 2),
            vec![
                Value::from(0.1),
                Value::from(0.5),
                Value::from(0.9),
                Value::Null
            ]
        );
    }

    #[test]
    fn later_keys_break_ties() {
        let mut t = table();
        t.sort(&[
            SortKey::parse("steps").unwrap(),
            SortKey::parse("activation").unwrap(),
        ])
        .unwrap();
        assert_eq!(
            column(&t, 1),
            ["ELU", "GELU", "ReLU", "ELU"].map(Value::from)
        );
    }

    #[test]
    fn unknown_column_names_the_known_ones() {
        let err = table()
            .sort(&[SortKey::parse("bogus").unwrap()])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown column \"bogus\" in --sort; columns are steps, activation, p"
        );
    }
}
