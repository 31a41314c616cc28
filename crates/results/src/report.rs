//! A sweep's report as one self-contained HTML page (tables and inline SVG figures) and the
//! same content as Markdown (tables, and figures linked as the PNG and SVG files the caller
//! writes beside it).

use serde_json::Value;

use crate::table::text;
use crate::Table;

/// One piece of a report, in reading order.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Heading(String),
    Paragraph(String),
    Table(Table),
    /// A figure: the HTML embeds `svg`; the Markdown links `{name}.png` and `{name}.svg`.
    Figure {
        name: String,
        caption: String,
        svg: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub title: String,
    pub blocks: Vec<Block>,
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;\
padding:0 1em;color:#222}h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;font-size:.85em;margin:1em 0;display:block;overflow-x:auto}\
th,td{padding:.25em .6em;border-bottom:1px solid #e4e4e4;white-space:nowrap}th{text-align:left;background:#f6f6f6}\
td.n{text-align:right;font-variant-numeric:tabular-nums}figure{margin:1.5em 0}\
figure svg{max-width:100%;height:auto}figcaption{font-size:.9em;color:#555}";

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for a Markdown table cell.
fn escape_cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn numeric_columns(table: &Table) -> Vec<bool> {
    (0..table.columns.len())
        .map(|i| {
            table
                .rows
                .iter()
                .all(|r| matches!(r.get(i), Some(Value::Number(_)) | Some(Value::Null)))
                && table
                    .rows
                    .iter()
                    .any(|r| matches!(r.get(i), Some(Value::Number(_))))
        })
        .collect()
}

fn html_table(table: &Table, out: &mut String) {
    let numeric = numeric_columns(table);
    out.push_str("<table>\n<thead><tr>");
    for c in &table.columns {
        out.push_str(&format!("<th>{}</th>", escape_html(c)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &table.rows {
        out.push_str("<tr>");
        for (i, v) in row.iter().enumerate() {
            let class = if numeric.get(i).copied().unwrap_or(false) {
                " class=\"n\""
            } else {
                ""
            };
            out.push_str(&format!("<td{class}>{}</td>", escape_html(&text(v, true))));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

fn markdown_table(table: &Table, out: &mut String) {
    if table.columns.is_empty() {
        return;
    }
    let numeric = numeric_columns(table);
    let header: Vec<String> = table.columns.iter().map(|c| escape_cell(c)).collect();
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    let rule: Vec<&str> = numeric
        .iter()
        .map(|&n| if n { "---:" } else { "---" })
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|v| escape_cell(&text(v, true))).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
}

/// An SVG document ready to inline in HTML: without an XML declaration.
fn inline_svg(svg: &str) -> &str {
    let svg = svg.trim_start();
    if svg.starts_with("<?xml") {
        svg.find("?>")
            .map_or(svg, |end| svg[end + 2..].trim_start())
    } else {
        svg
    }
}

impl Report {
    /// One HTML file with everything in it: no external style sheet, script or image.
    pub fn render_html(&self) -> String {
        let mut out = String::new();
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        out.push_str(&format!("<title>{}</title>\n", escape_html(&self.title)));
        out.push_str(&format!("<style>{STYLE}</style>\n</head>\n<body>\n"));
        out.push_str(&format!("<h1>{}</h1>\n", escape_html(&self.title)));
        for block in &self.blocks {
            match block {
                Block::Heading(h) => out.push_str(&format!("<h2>{}</h2>\n", escape_html(h))),
                Block::Paragraph(p) => out.push_str(&format!("<p>{}</p>\n", escape_html(p))),
                Block::Table(t) => html_table(t, &mut out),
                Block::Figure { name, caption, svg } => {
                    out.push_str(&format!("<figure id=\"{}\">\n", escape_html(name)));
                    out.push_str(inline_svg(svg));
                    out.push_str(&format!(
                        "\n<figcaption>{}</figcaption>\n</figure>\n",
                        escape_html(caption)
                    ));
                }
            }
        }
        out.push_str("</body>\n</html>\n");
        out
    }

    /// The same content as Markdown; figures are links to `{name}.png` (shown) and
    /// `{name}.svg` beside the file.
    pub fn render_markdown(&self) -> String {
        let mut out = format!("# {}\n", self.title);
        for block in &self.blocks {
            out.push('\n');
            match block {
                Block::Heading(h) => out.push_str(&format!("## {h}\n")),
                Block::Paragraph(p) => out.push_str(&format!("{p}\n")),
                Block::Table(t) => markdown_table(t, &mut out),
                Block::Figure { name, caption, .. } => {
                    out.push_str(&format!("![{caption}]({name}.png)\n\n"));
                    out.push_str(&format!(
                        "{caption} ([PNG]({name}.png), [SVG]({name}.svg))\n"
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            title: "Sweep <tiny>".into(),
            blocks: vec![
                Block::Heading("Grid points".into()),
                Block::Paragraph("2 of 3 jobs done & 1 failed".into()),
                Block::Table(Table {
                    columns: vec!["activation".into(), "p".into()],
                    rows: vec![
                        vec![Value::from("Leaky|ReLU"), Value::from(0.123456)],
                        vec![Value::from("ELU"), Value::Null],
                    ],
                }),
                Block::Figure {
                    name: "success_probability".into(),
                    caption: "Success probability".into(),
                    svg: "<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"><text>x</text></svg>"
                        .into(),
                },
            ],
        }
    }

    #[test]
    fn markdown_pins_tables_and_figure_links() {
        let expected = "# Sweep <tiny>\n\n## Grid points\n\n2 of 3 jobs done & 1 failed\n\n\
| activation | p |\n|---|---:|\n| Leaky\\|ReLU | 0.1235 |\n| ELU |  |\n\n\
![Success probability](success_probability.png)\n\n\
Success probability ([PNG](success_probability.png), [SVG](success_probability.svg))\n";
        assert_eq!(report().render_markdown(), expected);
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let html = report().render_html();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<h1>Sweep &lt;tiny&gt;</h1>"));
        assert!(html.contains("<p>2 of 3 jobs done &amp; 1 failed</p>"));
        assert!(html.contains("<td>Leaky|ReLU</td><td class=\"n\">0.1235</td>"));
        assert!(
            html.contains("<figure id=\"success_probability\">\n<svg xmlns"),
            "{html}"
        );
        assert!(
            !html.contains("<?xml"),
            "the XML declaration is dropped when inlined"
        );
        for external in ["src=", "href=", "<link", "<script"] {
            assert!(
                !html.contains(external),
                "{external} in a self-contained page"
            );
        }
    }
}
