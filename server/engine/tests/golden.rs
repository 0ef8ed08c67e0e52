//! Golden tests of the window operator, written from Flink's semantics.
//!
//! Every folder under `tests/cases/windows/` (at the repository root) is one case:
//!
//! - `spec.yaml`: a job spec whose operator `w` is the window operator under test (modules are the native test
//!   functions of `eddy_engine::testing`);
//! - `input.jsonl`: harness commands (`{"record": ..}`, `{"watermark": N}`, `{"processing_time": N}`,
//!   `{"end": true}`);
//! - `expected.jsonl`: the exact output lines, in order, compared as JSON values; or `error.txt`: a substring of the
//!   error that building or running the operator must fail with;
//! - optionally `dropped.txt`: how many late records the operator must have dropped (no side output);
//! - optionally `README`: one line saying what the case checks.
//!
//! Every case with expected output also runs checkpointed and restored before each input command, and (unless
//! it moves processing time) in five task threads fed over one-batch channels under a CPU governor.
//!
//! A case that misses a required file, or holds an unknown one, fails: no case can pass silently. Set
//! `GOLDEN_CASE=<part of a name>` to run only matching cases.

use eddy_engine::testing::{harness_for, operator_for, run_lines_in_tasks};
use serde_json::Value;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

const KNOWN_FILES: [&str; 6] = ["README", "spec.yaml", "input.jsonl", "expected.jsonl", "error.txt", "dropped.txt"];

fn cases_dir() -> PathBuf {
    // The manifest folder cargo gives at run time: a build shared with another checkout has that one's compiled in.
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    manifest.join("../../tests/cases/windows")
}

fn optional(dir: &Path, name: &str) -> Result<Option<String>, String> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    fs::read_to_string(&path).map(Some).map_err(|e| format!("cannot read {name}: {e}"))
}

fn required(dir: &Path, name: &str) -> Result<String, String> {
    optional(dir, name)?.ok_or_else(|| format!("has no {name}"))
}

fn parse_lines(text: &str, file: &str) -> Result<Vec<Value>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("{file} line {}: not JSON: {e}", n + 1)))
        .collect()
}

/// What a case expects.
enum Expect {
    Lines(Vec<Value>),
    Error(String),
}

/// A line diff of expected and actual output (longest common subsequence): `  ` both, `- ` expected only,
/// `+ ` actual only.
fn diff(expected: &[Value], actual: &[Value]) -> String {
    let (e, a): (Vec<String>, Vec<String>) =
        (expected.iter().map(Value::to_string).collect(), actual.iter().map(Value::to_string).collect());
    let (n, m) = (e.len(), a.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            let _ = writeln!(out, "    {}", e[i]);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "  + {}", a[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "  - {}", e[i]);
            i += 1;
        }
    }
    out
}

fn run_case(dir: &Path) -> Result<(), String> {
    let mut unknown = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| format!("cannot list the folder: {e}"))? {
        let name = entry.map_err(|e| e.to_string())?.file_name().to_string_lossy().into_owned();
        if !KNOWN_FILES.contains(&name.as_str()) {
            unknown.push(name);
        }
    }
    if !unknown.is_empty() {
        unknown.sort();
        return Err(format!("holds unknown files {unknown:?} (known: {KNOWN_FILES:?})"));
    }
    let spec = required(dir, "spec.yaml")?;
    let input = required(dir, "input.jsonl")?;
    if input.trim().is_empty() {
        return Err("input.jsonl is empty".into());
    }
    let expect = match (optional(dir, "expected.jsonl")?, optional(dir, "error.txt")?) {
        (Some(lines), None) => Expect::Lines(parse_lines(&lines, "expected.jsonl")?),
        (None, Some(error)) if !error.trim().is_empty() => Expect::Error(error.trim().to_string()),
        (None, Some(_)) => return Err("error.txt is empty".into()),
        (None, None) => return Err("has neither expected.jsonl nor error.txt".into()),
        (Some(_), Some(_)) => return Err("has both expected.jsonl and error.txt; give one".into()),
    };
    let dropped = match optional(dir, "dropped.txt")? {
        Some(text) => Some(text.trim().parse::<u64>().map_err(|e| format!("dropped.txt: not a count: {e}"))?),
        None => None,
    };
    let outcome = harness_for(&spec, "w").and_then(|mut h| {
        let lines = h.run_lines(&input)?;
        Ok((lines, h.late_records_dropped()))
    });
    if let (Expect::Lines(expected), Ok(_)) = (&expect, &outcome) {
        restarts_change_nothing(&spec, &input, expected)?;
        tasks_change_nothing(&spec, &input, expected)?;
    }
    match (expect, outcome) {
        (Expect::Error(wanted), Ok((lines, _))) => {
            let shown: Vec<String> = lines.iter().map(|l| format!("    {l}")).collect();
            Err(format!("expected an error containing `{wanted}`, but it ran and emitted:\n{}", shown.join("\n")))
        }
        (Expect::Error(wanted), Err(error)) if error.contains(&wanted) => Ok(()),
        (Expect::Error(wanted), Err(error)) => {
            Err(format!("expected an error containing `{wanted}`, got:\n    {error}"))
        }
        (Expect::Lines(_), Err(error)) => Err(format!("failed:\n    {error}")),
        (Expect::Lines(expected), Ok((actual, late_dropped))) => {
            let mut problems = String::new();
            if expected != actual {
                let _ = write!(
                    problems,
                    "output differs (- expected only, + actual only; {} expected, {} actual lines):\n{}",
                    expected.len(),
                    actual.len(),
                    diff(&expected, &actual)
                );
            }
            if let Some(wanted) = dropped
                && wanted != late_dropped
            {
                let _ = writeln!(problems, "dropped {late_dropped} late records, expected {wanted}");
            }
            if problems.is_empty() { Ok(()) } else { Err(problems) }
        }
    }
}

/// Checkpoint, crash and restore before every input command in turn: each run's output must be the expected
/// output. The output before the checkpoint is kept, as an exactly-once sink keeps what a completed checkpoint
/// covers; the restored operator is a new one, as after a restart.
fn restarts_change_nothing(spec: &str, input: &str, expected: &[Value]) -> Result<(), String> {
    let commands = input.lines().filter(|l| !l.trim().is_empty()).count();
    for cut in 1..commands {
        let mut harness = harness_for(spec, "w")?;
        let actual = harness.run_lines_restarting(input, Some(cut), &mut |_, _| operator_for(spec, "w"))?;
        if actual != expected {
            return Err(format!(
                "restored from a checkpoint before input command {}, the output differs:\n{}",
                cut + 1,
                diff(expected, &actual)
            ));
        }
    }
    Ok(())
}

/// Five copies of the operator, each in a task of its own fed over one-batch channels by one feeder, on one and on
/// two run slots of a CPU governor (a fan-out wider than the slots, as a job's): each copy's output must be the
/// expected output. Cases that move processing time need the harness's clock and run only there.
fn tasks_change_nothing(spec: &str, input: &str, expected: &[Value]) -> Result<(), String> {
    if input.contains("processing_time") {
        return Ok(());
    }
    for cores in [1, 2] {
        for (copy, actual) in run_lines_in_tasks(spec, "w", input, 5, cores)?.iter().enumerate() {
            if actual != expected {
                return Err(format!(
                    "run in tasks on {cores} run slot(s), copy {copy}'s output differs:\n{}",
                    diff(expected, actual)
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn window_cases() {
    let root = cases_dir();
    let filter = std::env::var("GOLDEN_CASE").ok();
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()))
        .map(|entry| entry.expect("folder entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut ran = 0;
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        if let Err(problem) = run_case(dir) {
            let about = optional(dir, "README").ok().flatten().map(|r| format!(" ({})", r.trim())).unwrap_or_default();
            failures.push(format!("case {name}{about}: {}", problem.trim_end()));
        }
    }
    assert!(ran > 0, "no golden cases found under {} (filter {filter:?})", root.display());
    assert!(failures.is_empty(), "{} of {ran} golden cases failed:\n\n{}\n", failures.len(), failures.join("\n\n"));
    println!("{ran} golden cases passed");
}
