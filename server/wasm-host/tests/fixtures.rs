//! The host against hand-written components that misbehave on purpose (`tests/fixtures/*.wat`).

use eddy_codec::Batch;
use eddy_engine::function::{FunctionFactory, FunctionScope, UdfKind};
use eddy_engine::spec::{ModuleRef, UdfSpec};
use eddy_wasm_host::{Accounts, GuestUsage, Limits, MemoryBudget, ModuleError, WasmFunctions, WasmRuntime};
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
    FunctionScope { job: "job".into(), tenant: "t".into(), operator: "op".into(), subtask: 0, stop: Arc::default() }
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
    let runtime = WasmRuntime::new(None, limits()).expect("runtime");
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
    let runtime = WasmRuntime::new(None, limits()).expect("runtime");
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
    let (hash, artifact) = {
        let runtime = WasmRuntime::new(Some(dir.path().to_path_buf()), limits()).expect("runtime");
        let module = runtime.compile(&fixture("echo")).expect("compiles");
        (module.hash.clone(), module.artifact.clone().expect("cached with its digest"))
    };
    let cached = std::fs::read_dir(dir.path()).expect("cache dir").count();
    assert_eq!(cached, 1, "one compiled artifact on disk");
    let restarted = WasmRuntime::new(Some(dir.path().to_path_buf()), limits()).expect("runtime");
    let module = restarted.load(&hash, Some(&artifact), || None).expect("loads from the cache without the bytes");
    let functions = WasmFunctions::new(Arc::clone(&restarted), limits());
    let mut map = functions.map(&udf(&module.hash), &scope()).expect("instantiates");
    assert_eq!(map.map(&sample()).expect("works"), sample());
    restarted.forget(&hash);
    assert!(restarted.load(&hash, Some(&artifact), || None).is_err(), "forgotten modules are gone from disk too");
}

#[test]
fn compiled_code_that_was_replaced_on_disk_is_never_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = WasmRuntime::new(Some(dir.path().to_path_buf()), limits()).expect("runtime");
    let echo = runtime.compile(&fixture("echo")).expect("compiles");
    let trap = runtime.compile(&fixture("trap")).expect("compiles");
    let path_of = |hash: &str| {
        std::fs::read_dir(dir.path())
            .expect("cache dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(hash)))
            .expect("cached file")
    };
    // Someone puts other compiled code (valid, from this very engine) in place of echo's.
    std::fs::copy(path_of(&trap.hash), path_of(&echo.hash)).expect("overwrite");
    let restarted = WasmRuntime::new(Some(dir.path().to_path_buf()), limits()).expect("runtime");
    let recorded = echo.artifact.as_deref();
    assert!(
        matches!(restarted.load(&echo.hash, recorded, || None), Err(ModuleError::Missing(_))),
        "without the original bytes, the swapped file is refused rather than run"
    );
    let reloaded = restarted.load(&echo.hash, recorded, || Some(fixture("echo"))).expect("compiled again");
    assert_eq!(reloaded.artifact, echo.artifact, "compiling again restores the recorded code");
    let functions = WasmFunctions::new(Arc::clone(&restarted), limits());
    let mut map = functions.map(&udf(&echo.hash), &scope()).expect("instantiates");
    assert_eq!(map.map(&sample()).expect("it is echo, not the planted trap"), sample());
    let other = WasmRuntime::new(None, limits()).expect("runtime");
    assert!(
        matches!(other.load(&echo.hash, None, || Some(fixture("trap"))), Err(ModuleError::Corrupt(_))),
        "stored bytes must have the hash they are stored under"
    );
}

#[test]
fn tables_and_extra_memories_count_against_the_instance_limit_at_upload() {
    let runtime = WasmRuntime::new(None, limits()).expect("runtime");
    for fixture_name in ["table-bomb-at-start", "many-memories"] {
        let refused = runtime.compile(&fixture(fixture_name)).expect_err("refused").to_string();
        assert!(refused.contains("memory limit of 16 MiB"), "{fixture_name}: {refused}");
    }
    let roomy = WasmRuntime::new(None, Limits { memory_bytes: 64 << 20, ..limits() }).expect("runtime");
    roomy.compile(&fixture("many-memories")).expect("24 MiB fit a 64 MiB limit");
}

#[test]
fn instances_share_their_jobs_memory_budget() {
    let runtime = WasmRuntime::new(None, limits()).expect("runtime");
    let module = runtime.compile(&fixture("echo")).expect("compiles");
    // Each echo instance holds one 64 KiB page; the budget has room for two.
    let job = MemoryBudget::new("job j", 160 << 10, None);
    let accounts = Accounts { memory: Some(Arc::clone(&job)), usage: None, journal: None };
    let functions = WasmFunctions::new(Arc::clone(&runtime), limits()).with_accounts(accounts);
    let first = functions.map(&udf(&module.hash), &scope()).expect("fits");
    let second = functions.map(&udf(&module.hash), &scope()).expect("fits");
    let third = functions.map(&udf(&module.hash), &scope()).err().expect("over budget").message;
    assert!(third.contains("job j's memory budget"), "{third}");
    assert_eq!(job.used(), 128 << 10);
    drop((first, second));
    assert_eq!(job.used(), 0, "dropped instances give their memory back");
}

#[test]
fn asking_for_a_kind_the_module_lacks_is_an_error() {
    let runtime = WasmRuntime::new(None, limits()).expect("runtime");
    let module = runtime.compile(&fixture("echo")).expect("compiles");
    let functions = WasmFunctions::new(Arc::clone(&runtime), limits());
    let err = functions.filter(&udf(&module.hash), &scope()).err().expect("no filter export");
    assert!(err.message.contains("does not export a filter"), "{}", err.message);
}

#[test]
fn the_deadline_counts_cpu_time_so_a_busy_server_does_not_fail_healthy_calls() {
    let runtime = WasmRuntime::new(None, limits()).expect("runtime");
    let module = runtime.compile(&fixture("busy")).expect("compiles");
    // The call needs well under the limit of CPU; six spinning threads on this machine stretch its wall time.
    let generous = Limits { call_timeout: Duration::from_secs(2), ..limits() };
    let usage = Arc::new(GuestUsage::default());
    let functions = WasmFunctions::new(Arc::clone(&runtime), generous).with_accounts(Accounts {
        memory: None,
        usage: Some(Arc::clone(&usage)),
        journal: None,
    });
    let mut map = functions.map(&udf(&module.hash), &scope()).expect("instantiates");
    let started = Instant::now();
    map.map(&sample()).expect("runs alone");
    let alone = started.elapsed();
    let cpu_alone = usage.cpu();
    assert!(cpu_alone > Duration::ZERO, "the tenant's meter counts the call's CPU time");
    // A limit over the call's own CPU time (with room for a busy machine's cache misses), under its wall time there.
    let limit = cpu_alone * 5 / 2 + Duration::from_millis(30);
    let tight = WasmFunctions::new(Arc::clone(&runtime), Limits { call_timeout: limit, ..limits() });
    let mut map = tight.map(&udf(&module.hash), &scope()).expect("instantiates");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..6)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let started = Instant::now();
    let loaded = map.map(&sample());
    let wall = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spinners.into_iter().for_each(|t| t.join().expect("spinner"));
    assert_eq!(loaded.expect("the CPU limit is not charged for time spent waiting for a core"), sample());
    eprintln!("alone {alone:?} (cpu {cpu_alone:?}); under load {wall:?} against a limit of {limit:?}");
}

#[test]
fn stopping_the_job_interrupts_a_running_call_at_once() {
    let runtime = WasmRuntime::new(None, limits()).expect("runtime");
    let module = runtime.compile(&fixture("endless-loop")).expect("compiles");
    let patient = Limits { call_timeout: Duration::from_secs(600), ..limits() };
    let functions = WasmFunctions::new(Arc::clone(&runtime), patient);
    let scope = scope();
    let mut map = functions.map(&udf(&module.hash), &scope).expect("instantiates");
    let stop = Arc::clone(&scope.stop);
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let started = Instant::now();
    let err = map.map(&sample()).expect_err("interrupted");
    stopper.join().expect("stopper");
    assert!(err.message.contains("the job is stopping"), "{}", err.message);
    assert!(started.elapsed() < Duration::from_secs(60), "not at the 600 s CPU limit");
}
