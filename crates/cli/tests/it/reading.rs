//! The commands that read a sweep back (results, export, status, plot, report) on the fixture
//! database of `fixture.rs`: pinned output, and the files they write checked by parsing them.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::fixture::{assert_snapshot, fixture_db};
use crate::{expect_code, lifesweep, stderr, stdout};

fn run_ok(db: &Path, args: &[&str]) -> String {
    stdout(&expect_code(lifesweep().args(args).arg("--db").arg(db), 0))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[test]
fn results_table_csv_and_json_are_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    assert_snapshot("results.txt", &run_ok(&db, &["results"]));
    assert_snapshot("results.csv", &run_ok(&db, &["results", "--format", "csv"]));
    assert_snapshot(
        "results.json",
        &run_ok(&db, &["results", "--format", "json"]),
    );
    assert_snapshot(
        "runs.csv",
        &run_ok(&db, &["results", "--runs", "--format", "csv"]),
    );
    assert_snapshot(
        "results-by-steps.txt",
        &run_ok(
            &db,
            &["results", "--group-by", "steps", "--where", "m_factor=1"],
        ),
    );
}

#[test]
fn results_carry_wilson_intervals_and_the_run_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let rows = json(&run_ok(&db, &["results", "--format", "json"]));
    let point = |steps: u64, m: u64| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["steps"] == steps && r["m_factor"] == m)
            .unwrap_or_else(|| panic!("no row for steps {steps} m_factor {m}"))
            .clone()
    };
    // 1 success in 3 runs: Wilson 95% interval [0.0615, 0.7923].
    let p = point(1, 1);
    assert_eq!(
        (p["runs"].as_u64(), p["successes"].as_u64()),
        (Some(3), Some(1))
    );
    let (lo, hi) = (
        p["ci_low"].as_f64().unwrap(),
        p["ci_high"].as_f64().unwrap(),
    );
    assert!(
        (lo - 0.0615).abs() < 1e-4 && (hi - 0.7923).abs() < 1e-4,
        "[{lo}, {hi}]"
    );
    assert_eq!(p["min_success_rate"], 0.25);
    assert_eq!(p["max_success_rate"], 1.0);
    assert!((p["mean_success_rate"].as_f64().unwrap() - 1.75 / 3.0).abs() < 1e-12);
    // 3 of 3: [0.4385, 1].
    let p = point(1, 2);
    assert!((p["ci_low"].as_f64().unwrap() - 0.4385).abs() < 1e-4);
    assert_eq!(p["ci_high"], 1.0);
    // Two finished runs and one failed; the failure is counted, not averaged in.
    let p = point(2, 1);
    assert_eq!(
        (p["runs"].as_u64(), p["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(p["success_probability"], 0.0);
    assert_eq!(p["mean_final_loss"], (0.501 + 0.438_5) / 2.0);
    // One finished, one queued, one running.
    let p = point(2, 2);
    assert_eq!(
        (p["runs"].as_u64(), p["pending"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(
        (p["mean_wall_seconds"].as_f64().unwrap() - 22.1).abs() < 1e-9,
        "{p}"
    );
}

#[test]
fn results_sort_by_columns_with_empty_cells_last() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let csv = run_ok(
        &db,
        &[
            "results",
            "--format",
            "csv",
            "--sort",
            "success_probability:desc,steps",
        ],
    );
    let keys: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
        .collect();
    // p = 1 (1,2), 1 (2,2), 1/3 (1,1), 0 (2,1).
    assert_eq!(keys, ["1,2", "2,2", "1,1", "2,1"]);

    let runs = run_ok(
        &db,
        &[
            "results",
            "--runs",
            "--format",
            "json",
            "--sort",
            "success_rate",
        ],
    );
    let rates: Vec<Value> = json(&runs)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["success_rate"].clone())
        .collect();
    let expected: Vec<Value> = [0.0, 0.125, 0.25, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
        .into_iter()
        .map(Value::from)
        .chain(std::iter::repeat_n(Value::Null, 3))
        .collect();
    assert_eq!(rates, expected);
}

#[test]
fn bad_sort_keys_exit_2_and_say_what_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let out = expect_code(
        lifesweep()
            .args(["results", "--sort", "bogus", "--db"])
            .arg(&db),
        2,
    );
    let err = stderr(&out);
    assert!(
        err.contains("unknown column \"bogus\" in --sort") && err.contains("success_probability"),
        "{err}"
    );
    let out = expect_code(
        lifesweep()
            .args(["results", "--sort", "steps:sideways", "--db"])
            .arg(&db),
        2,
    );
    assert!(
        stderr(&out).contains("neither asc nor desc"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn export_has_every_parameter_and_metric_and_json_the_loss_curve() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let records = json(&run_ok(&db, &["export", "--format", "json"]));
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 12, "one record per job");
    let first = &records[0];
    for key in lifesweep_spec::TRAIN_KEYS
        .iter()
        .copied()
        .chain(["eval_boards", "eval_board_size"])
    {
        assert!(first.get(key).is_some(), "parameter {key} missing: {first}");
    }
    for key in [
        "job_id",
        "job_key",
        "state",
        "attempts",
        "error",
        "success_rate",
        "training_success",
        "cell_accuracy",
        "final_loss",
        "param_count",
        "wall_seconds",
        "device",
        "worker_id",
        "started_at",
        "finished_at",
    ] {
        assert!(first.get(key).is_some(), "{key} missing: {first}");
    }
    assert_eq!(
        first["loss_curve"],
        serde_json::json!([{"batch": 10, "loss": 0.7}, {"batch": 20, "loss": 0.001}])
    );
    let failed = records.iter().find(|r| r["state"] == "failed").unwrap();
    assert_eq!(
        failed["error"],
        "training diverged: loss is NaN at batch 10"
    );
    assert_eq!(failed["loss_curve"], Value::Null);

    let out = dir.path().join("runs.csv");
    expect_code(
        lifesweep()
            .args(["export", "--format", "csv", "--out"])
            .arg(&out)
            .arg("--db")
            .arg(&db),
        0,
    );
    let csv = fs::read_to_string(&out).unwrap();
    assert_snapshot("export.csv", &csv);
}

#[test]
fn status_counts_states_rate_eta_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let status = json(&run_ok(&db, &["status", "--format", "json"]));
    assert_eq!(
        status["jobs"],
        serde_json::json!({"total": 12, "queued": 1, "running": 1, "done": 9, "failed": 1, "cancelled": 0})
    );
    // The 9 results were written just now: 9 in the 5-minute window, 1.8 a minute; 2 jobs left.
    assert_eq!(status["finished_in_window"], 9);
    assert_eq!(status["runs_per_minute"], 1.8);
    let eta = status["eta_seconds"].as_f64().unwrap();
    assert!((eta - 2.0 / 1.8 * 60.0).abs() < 1e-9, "{eta}");
    assert_eq!(
        status["failures"][0]["error"],
        "training diverged: loss is NaN at batch 10"
    );
    assert_eq!(
        status["failures"][0]["params"],
        serde_json::json!({"steps": 2, "m_factor": 1, "seed": 3})
    );

    let text = run_ok(&db, &["status"]);
    assert_snapshot("status.txt", &text);
}

fn assert_svg(path: &Path) {
    let text = fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{}: not XML: {e}", path.display()));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg", "{}", path.display());
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    assert!(
        doc.descendants().any(|n| n.has_tag_name("text")),
        "{}: no text",
        path.display()
    );
}

fn assert_png(path: &Path) {
    let bytes = fs::read(path).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{}: no PNG signature",
        path.display()
    );
    let mut reader = png::Decoder::new(bytes.as_slice()).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert!(
        info.width >= 800 && info.height >= 400,
        "{}: {}x{}",
        path.display(),
        info.width,
        info.height
    );
    // Not blank: a plot has plenty of non-white pixels.
    let inked = pixels
        .chunks(3)
        .filter(|p| p.iter().any(|&c| c < 200))
        .count();
    assert!(
        inked > 5_000,
        "{}: only {inked} inked pixels",
        path.display()
    );
}

#[test]
fn plot_writes_valid_svg_and_png_for_each_figure() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let out = dir.path().join("plots");
    let listing = run_ok(&db, &["plot", "--out", out.to_str().unwrap()]);
    assert!(listing.contains("3 figures (6 files)"), "{listing}");
    for name in ["success_probability", "success_rate", "loss_curves"] {
        assert_svg(&out.join(format!("{name}.svg")));
        assert_png(&out.join(format!("{name}.png")));
    }
    // One line per steps value, named in the legend; the axes are labelled.
    let svg = fs::read_to_string(out.join("success_probability.svg")).unwrap();
    assert!(svg.contains("steps = 1") && svg.contains("steps = 2"));
    assert!(svg.contains("m_factor (width multiplier)"));
}

#[test]
fn plot_where_narrows_the_runs_and_refuses_a_filter_matching_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let out = dir.path().join("by-steps");
    // --where keeps the runs it matches; steps and m_factor are drawn, not split into files,
    // so the file names stay the same.
    run_ok(
        &db,
        &["plot", "--out", out.to_str().unwrap(), "--where", "steps=1"],
    );
    assert_svg(&out.join("success_probability.svg"));
    let svg = fs::read_to_string(out.join("success_probability.svg")).unwrap();
    assert!(svg.contains("steps = 1") && !svg.contains("steps = 2"));

    let out = expect_code(
        lifesweep()
            .args(["plot", "--out"])
            .arg(dir.path().join("none"))
            .args(["--where", "steps=9", "--db"])
            .arg(&db),
        2,
    );
    assert!(
        stderr(&out).contains("no job of sweep \"fixture\" matches --where steps=9"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn report_is_self_contained_html_and_markdown_with_figures_beside() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let out = dir.path().join("report");
    run_ok(&db, &["report", "--out", out.to_str().unwrap()]);

    let html = fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 3, "three figures inline");
    assert!(html.contains("<th>success_probability</th>") && html.contains("<th>ci_low</th>"));
    assert!(
        html.contains("training diverged: loss is NaN at batch 10"),
        "failed jobs listed"
    );
    for external in ["src=\"", "href=\"http", "<link", "<script"] {
        assert!(
            !html.contains(external),
            "{external} in a self-contained page"
        );
    }

    let md = fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.starts_with("# Sweep fixture\n"));
    assert!(
        md.contains("| steps | m_factor | d_factor | activation | runs |"),
        "{md}"
    );
    for name in ["success_probability", "success_rate", "loss_curves"] {
        assert!(md.contains(&format!("({name}.png)")), "{md}");
        assert_png(&out.join(format!("{name}.png")));
        assert_svg(&out.join(format!("{name}.svg")));
    }
}

/// Output that cannot be written is an error (exit 2, saying so), not a panic; a reader that
/// stops early (`| head`) ends the command quietly with 0.
#[test]
fn output_that_cannot_be_written_is_an_error_and_a_closed_pipe_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let full = std::fs::File::create("/dev/full").expect("/dev/full");
    let output = expect_code(
        lifesweep()
            .args(["export", "--format", "json", "--db"])
            .arg(&db)
            .stdout(full),
        2,
    );
    assert!(
        stderr(&output).contains("cannot write the output to stdout"),
        "{}",
        stderr(&output)
    );

    let mut child = lifesweep()
        .args(["results", "--runs", "--format", "json", "--db"])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before anything is written
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}

/// A `--where` value no run can have (a word for a number, yes for a flag) is refused.
#[test]
fn where_values_of_the_wrong_kind_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    for (filter, says) in [
        ("steps=abc", "steps is a number"),
        ("use_sigmoid=yes", "use_sigmoid is true or false"),
    ] {
        let output = expect_code(
            lifesweep()
                .args(["results", "--where", filter, "--db"])
                .arg(&db),
            2,
        );
        assert!(stderr(&output).contains(says), "{}", stderr(&output));
    }
}
