//! A table of JSON values with three renderings.

use comfy_table::{presets::UTF8_BORDERS_ONLY, CellAlignment, ContentArrangement};
use serde_json::{Map, Value};

use crate::ResultsError;

/// How a table is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    Csv,
    /// An array of objects, one per row, with typed values.
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// A value as text: strings bare, numbers with at most 4 decimals in tables, empty for null.
pub(crate) fn text(value: &Value, for_terminal: bool) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) if for_terminal && n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x != 0.0 && x.abs() < 1e-3 {
                format!("{x:.3e}")
            } else {
                let s = format!("{x:.4}");
                let s = s.trim_end_matches('0');
                if s.ends_with('.') {
                    format!("{s}0")
                } else {
                    s.to_string()
                }
            }
        }
        Value::Array(_) | Value::Object(_) => value.to_string(),
        other => other.to_string(),
    }
}

impl Table {
    /// The table with only the columns `keep` accepts, in their order.
    pub fn select(&self, keep: impl Fn(&str) -> bool) -> Table {
        let indices: Vec<usize> = (0..self.columns.len())
            .filter(|&i| keep(&self.columns[i]))
            .collect();
        Table {
            columns: indices.iter().map(|&i| self.columns[i].clone()).collect(),
            rows: self
                .rows
                .iter()
                .map(|row| {
                    indices
                        .iter()
                        .map(|&i| row.get(i).cloned().unwrap_or(Value::Null))
                        .collect()
                })
                .collect(),
        }
    }

    pub fn render(&self, format: Format) -> Result<String, ResultsError> {
        match format {
            Format::Table => Ok(self.render_terminal()),
            Format::Csv => self.render_csv(),
            Format::Json => self.render_json(),
        }
    }

    fn render_terminal(&self) -> String {
        let mut table = comfy_table::Table::new();
        table
            .load_preset(UTF8_BORDERS_ONLY)
            .set_content_arrangement(ContentArrangement::Disabled);
        table.set_header(self.columns.clone());
        for row in &self.rows {
            table.add_row(row.iter().map(|v| text(v, true)).collect::<Vec<_>>());
        }
        for (i, _) in self.columns.iter().enumerate() {
            let numeric = self
                .rows
                .iter()
                .all(|r| matches!(r.get(i), Some(Value::Number(_)) | Some(Value::Null)));
            if numeric {
                if let Some(column) = table.column_mut(i) {
                    column.set_cell_alignment(CellAlignment::Right);
                }
            }
        }
        let mut out = table.to_string();
        out.push('\n');
        out
    }

    fn render_csv(&self) -> Result<String, ResultsError> {
        let err = |e: csv::Error| ResultsError::Render {
            format: "csv",
            message: e.to_string(),
        };
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(&self.columns).map_err(err)?;
        for row in &self.rows {
            writer
                .write_record(row.iter().map(|v| text(v, false)))
                .map_err(err)?;
        }
        let bytes = writer.into_inner().map_err(|e| ResultsError::Render {
            format: "csv",
            message: e.to_string(),
        })?;
        String::from_utf8(bytes).map_err(|e| ResultsError::Render {
            format: "csv",
            message: e.to_string(),
        })
    }

    fn render_json(&self) -> Result<String, ResultsError> {
        let objects: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let map: Map<String, Value> = self
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect();
                Value::Object(map)
            })
            .collect();
        let mut out = serde_json::to_string_pretty(&objects).map_err(|e| ResultsError::Render {
            format: "json",
            message: e.to_string(),
        })?;
        out.push('\n');
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        Table {
            columns: vec!["steps".into(), "activation".into(), "p".into()],
            rows: vec![
                vec![Value::from(1), Value::from("ReLU"), Value::from(0.5)],
                vec![Value::from(2), Value::from("Leaky,ReLU"), Value::Null],
            ],
        }
    }

    #[test]
    fn csv_quotes_and_leaves_nulls_empty() {
        let csv = sample().render(Format::Csv).unwrap();
        assert_eq!(csv, "steps,activation,p\n1,ReLU,0.5\n2,\"Leaky,ReLU\",\n");
    }

    #[test]
    fn json_keeps_types() {
        let json: Value = serde_json::from_str(&sample().render(Format::Json).unwrap()).unwrap();
        assert_eq!(json[0]["steps"], Value::from(1));
        assert_eq!(json[0]["p"], Value::from(0.5));
        assert_eq!(json[1]["p"], Value::Null);
    }

    #[test]
    fn terminal_table_has_header_and_rows() {
        let out = sample().render(Format::Table).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines
            .iter()
            .any(|l| l.contains("steps") && l.contains("activation")));
        assert!(lines
            .iter()
            .any(|l| l.contains("ReLU") && l.contains("0.5")));
    }
}
