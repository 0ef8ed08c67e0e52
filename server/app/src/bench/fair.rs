//! `eddy bench fair`: whether a tenant within its CPU share keeps its throughput beside a greedy one. Tenant B runs
//! W1 with native logic at parallelism 1 (one core's worth), first alone, then beside tenant A running the same
//! job endlessly at `--parallelism`; the line gives B's events per second both times and their ratio.
//! `--udf off` (instead of the default) runs without the governor, to show what the operating system alone does.

use super::native::NativeFunctions;
use super::{Catalog, Workload};
use anyhow::{Context, bail};
use eddy_engine::graph::JobGraph;
use eddy_engine::runtime::govern::CpuGovernor;
use eddy_engine::runtime::{DeployEnv, JobState, RunningJob, deploy};
use eddy_engine::spec::JobSpec;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn start(
    tenant: &str,
    parallelism: u32,
    events: Option<u64>,
    governor: &Option<Arc<CpuGovernor>>,
) -> anyhow::Result<RunningJob> {
    let workload = Workload::W1;
    let names = workload.modules().iter().map(|(n, k)| (n.to_string(), (format!("native-{n}"), *k))).collect();
    // A generator without `events` runs until cancelled.
    let mut spec = workload.spec(parallelism, events.unwrap_or(1));
    if events.is_none() {
        spec = spec.replace("events: 1, ", "");
    }
    let spec = JobSpec::parse(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    let graph = JobGraph::build(&spec, &Catalog(names)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut env = DeployEnv::new(tenant, tenant, Arc::new(NativeFunctions));
    env.governor = governor.clone();
    deploy(&graph, env).with_context(|| format!("starting tenant {tenant}'s job"))
}

/// B's events per second over `events` events.
fn run_b(events: u64, governor: &Option<Arc<CpuGovernor>>) -> anyhow::Result<f64> {
    let started = Instant::now();
    let job = start("b", 1, Some(events), governor)?;
    let state = job.handle.wait(Duration::from_secs(3600));
    if state != JobState::Finished {
        bail!("tenant b's job ended {state:?}: {}", job.handle.error().map(|e| e.to_string()).unwrap_or_default());
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// Runs the fairness benchmark and returns its line.
pub fn run(greedy_parallelism: u32, events: u64, governed: bool) -> anyhow::Result<String> {
    let governor = governed.then(CpuGovernor::for_this_machine);
    let alone = run_b(events, &governor)?;
    let greedy = start("a", greedy_parallelism, None, &governor)?;
    std::thread::sleep(Duration::from_millis(500));
    let shared = run_b(events, &governor);
    greedy.handle.cancel();
    greedy.handle.wait(Duration::from_secs(30));
    let shared = shared?;
    Ok(format!(
        "eddy fair governor={} a_parallelism={greedy_parallelism} events={events} b_alone_eps={alone:.0} \
         b_beside_a_eps={shared:.0} ratio={:.2}",
        if governed { "on" } else { "off" },
        shared / alone
    ))
}
