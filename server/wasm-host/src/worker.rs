//! Compiling in a separate process, so that one upload's compile is bounded in time and memory: the server starts
//! its own binary as a worker (`eddy compile-worker`), hands it the bytes on standard input, and reads the
//! compiled code from its standard output. A worker that runs past its time is killed; its address space is
//! limited, so a compile that needs more memory fails in the worker instead of taking the server's.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How the server runs compile workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileWorker {
    /// The program to run: the server's own binary.
    pub program: PathBuf,
    /// Arguments that make it a worker (`compile-worker`).
    pub args: Vec<String>,
    /// Longest a compile may take.
    pub timeout: Duration,
    /// Most memory (address space) a worker may use.
    pub memory_bytes: u64,
}

/// Compiles `bytes` in a worker; the serialized component, or why not.
pub(crate) fn compile(worker: &CompileWorker, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new(&worker.program)
        .args(&worker.args)
        .arg(worker.memory_bytes.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start a compile worker ({}): {e}", worker.program.display()))?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        return Err("a compile worker has no pipes".into());
    };
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= worker.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "compiling took longer than this server allows ({} s); a smaller component may fit",
                    worker.timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("cannot wait for a compile worker: {e}")),
        }
    };
    let _ = writer.join();
    let compiled = reader.join().map_err(|_| "a compile worker's output was lost".to_string())?;
    let message = errors.join().unwrap_or_default();
    if !status.success() {
        // The worker reports a component it cannot compile as `error: invalid component: ...`; anything else means
        // it died on the way, which within its limits is mostly for want of memory.
        let first_line = message.lines().next().unwrap_or_default().trim();
        return Err(match first_line.strip_prefix("error: invalid component: ") {
            Some(reason) => reason.to_string(),
            None => format!(
                "compiling failed within this server's limits for one compile ({} MiB of memory): {}",
                worker.memory_bytes >> 20,
                if first_line.is_empty() { status.to_string() } else { first_line.to_string() }
            ),
        });
    }
    compiled.map_err(|e| format!("cannot read a compile worker's output: {e}"))
}

/// The worker's side: limits its own address space to `memory_bytes`, reads a component from standard input,
/// compiles it with Eddy's engine configuration, and writes the compiled code to standard output.
pub fn run_worker(memory_bytes: u64) -> Result<(), String> {
    let limit = libc::rlimit { rlim_cur: memory_bytes, rlim_max: memory_bytes };
    // SAFETY: setrlimit reads the rlimit it is given; lowering this process's own limit affects nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
        return Err(format!("cannot limit the worker's memory: {}", std::io::Error::last_os_error()));
    }
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).map_err(|e| format!("cannot read the component: {e}"))?;
    let engine = wasmtime::Engine::new(&crate::compile::engine_config()).map_err(|e| format!("{e:#}"))?;
    let compiled = engine.precompile_component(&bytes).map_err(|e| format!("invalid component: {e:#}"))?;
    std::io::stdout().write_all(&compiled).map_err(|e| format!("cannot write the compiled code: {e}"))
}
