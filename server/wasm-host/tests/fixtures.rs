//! The host against hand-written components that misbehave on purpose (`tests/fixtures/*.wat`).

use eddy_codec::Batch;
use eddy_engine::function::{FunctionFactory, FunctionScope, UdfKind};
use eddy_engine::spec::{ModuleRef, UdfSpec};
use eddy_wasm_host::{Limits, ModuleError, WasmFunctions, WasmRuntime};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fixture(name: &str) -> Vec<u8> {
    // The manifest folder cargo gives at run time: a build shared with another checkout has that one's compiled in.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let path = format!("{manifest}/../../tests/fixtures/{name}.wat");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    wat::parse_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn scope() -> FunctionScope {
    FunctionScope { job: "job".into(), tenant: "t".into(), operator: "op".into(), subtask: 0 }
}

fn limits() -> Limits {
    Limits { memory_bytes: 16 << 20, call_timeout: Duration::from_millis(300) }
}

fn udf(hash: &str) -> UdfSpec {
    UdfSpec { module: ModuleRef::Hash(hash.to_string()), config: serde_json::Value::Null }
}

fn sample() -> Batch {
    let mut batch = Batch::new();
    batch.push(1, Some(b"k"), b"hello");
    batch.push(2, None, b"world");
    batch
}

/// Compiles `name` and runs one map call on the sample batch.
fn map_once(name: &str) -> Result<Batch, eddy_engine::UdfError> {
    let runtime = WasmRuntime::new(None).expect("runtime");
    let module = runtime.compile(&fixture(name)).expect("compiles");
    assert_eq!(module.kinds, vec![UdfKind::Map]);
    let functions = WasmFunctions::new(Arc::clone(&runtime), limits());
    let mut map = functions.map(&udf(&module.hash), &scope()).expect("instantiates");
    map.map(&sample())
}

#[test]
fn a_well_behaved_mapper_round_trips_the_batch() {
    let out = map_once("echo").expect("echo works");
    assert_eq!(out, sample());
}

#[test]
fn a_trap_fails_the_call() {
    let err = map_once("trap").expect_err("traps");
    assert!(err.message.contains("trapped"), "{}", err.message);
}

#[test]
fn an_endless_loop_hits_the_deadline_without_stalling_others() {
    let started = Instant::now();
    let looping = std::thread::spawn(|| map_once("endless-loop"));
    // While one instance loops, another on another thread still answers.
    let echo = map_once("echo").expect("echo works meanwhile");
    assert_eq!(echo.len(), 2);
    let err = looping.join().expect("thread").expect_err("deadline");
    assert!(err.message.contains("CPU time limit of 300 ms"), "{}", err.message);
    assert!(started.elapsed() < Duration::from_secs(20), "the deadline stopped the loop");
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let err = map_once("memory-bomb").expect_err("limit");
    assert!(err.message.contains("memory limit of 16 MiB"), "{}", err.message);
}

#[test]
fn malformed_output_and_returned_errors_are_reported() {
    let err = map_once("bad-output").expect_err("bad batch");
    assert!(err.message.contains("not a valid batch"), "{}", err.message);
    let err = map_once("error-result").expect_err("error result");
    assert!(err.message.contains("returned an error"), "{}", err.message);
}

#[test]
fn uploads_that_are_not_eddy_components_are_refused_with_the_reason() {
    let runtime = WasmRuntime::new(None).expect("runtime");
    let refused = |bytes: &[u8]| runtime.compile(bytes).expect_err("refused");
    assert_eq!(refused(b"hello, not wasm"), ModuleError::NotWasm);
    assert_eq!(refused(&fixture("core-module")), ModuleError::CoreModule);
    assert_eq!(refused(&fixture("no-lifecycle")), ModuleError::MissingLifecycle);
    let wrong_world = refused(&fixture("wrong-world")).to_string();
    assert!(wrong_world.contains("exports none of Eddy's function interfaces"), "{wrong_world}");
    assert!(wrong_world.contains("wasi:cli/run@0.2.0"), "names what it exports: {wrong_world}");
    let signature = refused(&fixture("wrong-signature")).to_string();
    assert!(signature.contains("eddy:udf/mapper@0.1.0 does not match"), "{signature}");
    let imports = refused(&fixture("unknown-import")).to_string();
    assert!(imports.contains("acme:net/socket@1.0.0"), "{imports}");
    let mut truncated = fixture("echo");
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(refused(&truncated), ModuleError::Invalid(_)));
}

#[test]
fn compiled_code_is_cached_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = {
        let runtime = WasmRuntime::new(Some(dir.path().to_path_buf())).expect("runtime");
        runtime.compile(&fixture("echo")).expect("compiles").hash.clone()
    };
    let cached = std::fs::read_dir(dir.path()).expect("cache dir").count();
    assert_eq!(cached, 1, "one compiled artifact on disk");
    let restarted = WasmRuntime::new(Some(dir.path().to_path_buf())).expect("runtime");
    let module = restarted.load(&hash, || None).expect("loads from the cache without the original bytes");
    let functions = WasmFunctions::new(Arc::clone(&restarted), limits());
    let mut map = functions.map(&udf(&module.hash), &scope()).expect("instantiates");
    assert_eq!(map.map(&sample()).expect("works"), sample());
    restarted.forget(&hash);
    assert!(restarted.load(&hash, || None).is_err(), "forgotten modules are gone from disk too");
}

#[test]
fn asking_for_a_kind_the_module_lacks_is_an_error() {
    let runtime = WasmRuntime::new(None).expect("runtime");
    let module = runtime.compile(&fixture("echo")).expect("compiles");
    let functions = WasmFunctions::new(Arc::clone(&runtime), limits());
    let err = functions.filter(&udf(&module.hash), &scope()).err().expect("no filter export");
    assert!(err.message.contains("does not export a filter"), "{}", err.message);
}
