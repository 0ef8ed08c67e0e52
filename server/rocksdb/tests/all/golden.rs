//! The window operator's golden cases with RocksDB state: every case must produce exactly what it produces with
//! in-memory state (whose output the engine's own golden test holds to `expected.jsonl`), also when restored from a
//! checkpoint into a fresh RocksDB store halfway through.

use eddy_engine::graph::JobGraph;
use eddy_engine::operator::Operator;
use eddy_engine::runtime::{DeployEnv, build_single_operator, build_single_operator_from};
use eddy_engine::spec::JobSpec;
use eddy_engine::state::{FetchObject, MemoryBackend, StateBackend, StateError, StateFiles};
use eddy_engine::testing::{Harness, TestFunctions};
use std::path::PathBuf;
use std::sync::Arc;

fn cases_dir() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    manifest.join("../../tests/cases/windows")
}

/// Builds the case's operator `w` over `state`, restored from `files` if there are any.
fn operator(
    spec: &str,
    state: Arc<dyn StateBackend>,
    files: &[StateFiles],
    fetch: FetchObject<'_>,
) -> Result<Box<dyn Operator>, String> {
    let spec = JobSpec::parse(spec).map_err(|e| e.to_string())?;
    let graph = JobGraph::build(&spec, &TestFunctions).map_err(|e| e.to_string())?;
    let mut env = DeployEnv::new("test", "test", Arc::new(TestFunctions));
    env.state = state;
    let built = if files.is_empty() {
        build_single_operator(&graph, "w", 0, &env)
    } else {
        build_single_operator_from(&graph, "w", 0, &env, files, fetch)
    };
    built.map_err(|e| e.to_string())
}

fn no_files(object: &str) -> Result<Vec<u8>, StateError> {
    Err(StateError(format!("no state file {object}")))
}

/// The output lines (or the error) of a run, with a restart before command `cut` if given, and late drops.
fn run(spec: &str, input: &str, memory: bool, cut: Option<usize>) -> Result<(Vec<serde_json::Value>, u64), String> {
    let (dir, backend) = crate::backend();
    let state: Arc<dyn StateBackend> = if memory { Arc::new(MemoryBackend::default()) } else { Arc::new(backend) };
    let mut harness = Harness::new(operator(spec, Arc::clone(&state), &[], &no_files)?);
    // The restored operator gets a store of a backend of its own: the harness builds it while the old one is open.
    // Its checkpoint holds RocksDB's files, which it downloads (the harness stands in for checkpoint storage).
    let mut fresh = |files: &[StateFiles], fetch: FetchObject<'_>| -> Result<Box<dyn Operator>, String> {
        if !memory && files.is_empty() {
            return Err("a RocksDB checkpoint without state files".into());
        }
        let state: Arc<dyn StateBackend> = if memory {
            Arc::new(MemoryBackend::default())
        } else {
            Arc::new(eddy_rocksdb::RocksDbBackend::new(dir.path().join("restored"), Default::default()))
        };
        operator(spec, state, files, fetch)
    };
    let lines = harness.run_lines_restarting(input, cut, &mut fresh)?;
    Ok((lines, harness.late_records_dropped()))
}

#[test]
fn window_cases_do_not_depend_on_the_backend() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("the golden cases")
        .map(|entry| entry.expect("folder entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let filter = std::env::var("GOLDEN_CASE").ok();
    let mut ran = 0;
    // Cases that ran to output, not to an expected error: a broken harness must not pass by failing alike twice.
    let mut produced = 0;
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let (Ok(spec), Ok(input)) =
            (std::fs::read_to_string(dir.join("spec.yaml")), std::fs::read_to_string(dir.join("input.jsonl")))
        else {
            failures.push(format!("{name}: cannot read spec.yaml or input.jsonl"));
            continue;
        };
        ran += 1;
        let expected = run(&spec, &input, true, None);
        let actual = run(&spec, &input, false, None);
        if actual != expected {
            failures.push(format!("{name}: memory {expected:?}\nrocksdb {actual:?}"));
            continue;
        }
        produced += usize::from(expected.as_ref().is_ok_and(|(lines, _)| !lines.is_empty()));
        let commands = input.lines().filter(|l| !l.trim().is_empty()).count();
        if expected.is_ok() && commands > 1 {
            let cut = commands / 2;
            let restarted = run(&spec, &input, false, Some(cut)).map(|(lines, _)| lines);
            if restarted != expected.clone().map(|(lines, _)| lines) {
                failures.push(format!("{name}: restored before command {cut}: {restarted:?}"));
            }
        }
    }
    assert!(ran > 0, "no golden cases found under {}", cases_dir().display());
    assert!(produced * 2 > ran, "only {produced} of {ran} cases produced output");
    println!("{ran} golden cases ({produced} with output) behave alike over both backends");
    assert!(failures.is_empty(), "{} of {ran} cases differ:\n{}", failures.len(), failures.join("\n\n"));
}
