//! `eddy bench idle`: what jobs cost while no data comes. Deploys `--jobs` jobs that wait for input (an HTTP
//! source, a keyed one-minute window, an HTTP sink), lets them settle, then measures the process's CPU time over
//! ten seconds and its memory.

use super::native::NativeFunctions;
use anyhow::Context;
use eddy_engine::graph::{JobGraph, ModuleCatalog};
use eddy_engine::runtime::{DeployEnv, RunningJob, deploy};
use eddy_engine::spec::{JobSpec, ModuleRef};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SPEC: &str = "name: idle
operators:
  - { uid: src, source: { http: {} }, watermark: { out_of_orderness: 1s } }
  - { uid: counts, input: src, key_by: { json: \"$.key\" }, window: { tumbling: 1m }, aggregate: { builtin: count } }
  - { uid: out, sink: http, input: counts }
";

/// A catalog for a job without modules.
struct NoModules;

impl ModuleCatalog for NoModules {
    fn resolve(&self, module: &ModuleRef, _: eddy_engine::function::UdfKind) -> Result<String, String> {
        Err(format!("the idle benchmark uses no module, not `{module}`"))
    }
}

/// CPU time this process has used (user and system).
fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the rusage it is given; RUSAGE_SELF needs nothing else.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if status != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0, so it initialized the whole struct.
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Runs the idle benchmark with `jobs` jobs and returns its line.
pub fn run(jobs: u32) -> anyhow::Result<String> {
    let spec = JobSpec::parse(SPEC).map_err(|e| anyhow::anyhow!("{e}"))?;
    let graph = JobGraph::build(&spec, &NoModules).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut running: Vec<RunningJob> = Vec::with_capacity(jobs as usize);
    for i in 0..jobs {
        let env = DeployEnv::new(&format!("idle-{i}"), "bench", Arc::new(NativeFunctions));
        running.push(deploy(&graph, env).with_context(|| format!("deploying idle job {i}"))?);
    }
    std::thread::sleep(Duration::from_secs(2));
    let (cpu_before, started) = (process_cpu(), Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let cpu = process_cpu().saturating_sub(cpu_before);
    let secs = started.elapsed().as_secs_f64();
    let line = format!(
        "eddy idle jobs={jobs} threads={} secs={secs:.1} cpu_pct={:.2} rss_mb={}",
        threads(),
        cpu.as_secs_f64() / secs * 100.0,
        super::status_mb("VmRSS")
    );
    for job in &running {
        job.handle.cancel();
    }
    for job in &running {
        job.handle.wait(Duration::from_secs(10));
    }
    Ok(line)
}
