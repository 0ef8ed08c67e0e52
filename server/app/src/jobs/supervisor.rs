//! One supervisor per job: a thread that is the only writer of the job's runs. API calls send it [`Command`]s and
//! wait for its reply; it starts, watches, restarts, savepoints, upgrades, stops and deletes the job, one thing at
//! a time, in the manner of Arroyo's controller states and Flink's `JobMaster`. Two facts are its alone:
//!
//! 1. **A run starts only after the previous run has ended**: every stop waits until the run's tasks and its
//!    checkpoint coordinator have been joined, so two runs never share state folders or checkpoint files.
//! 2. **Each start is planned once** ([`RunPlan`]): the restore point (the job's newest completed checkpoint, or
//!    the savepoint it goes on from, whichever is newer) and the checkpoint-id floor kept in the job's record,
//!    above every checkpoint and savepoint id the job has used, so ids only grow (an exactly-once Kafka sink's
//!    commit marker trusts that they do).
//!
//! The phases and what moves the job between them:
//!
//! ```text
//! Queued ──start──> Running ──failure──> Restarting ──delay──> Running (or Stopped: failed, not restarted)
//!                    │  │  └─input ends──> Stopped (finished)
//!                    │  └─savepoint{stop}──> Savepointing ──commit──> Stopped (canceled)
//!                    └─upgrade──> Savepointing ──> Switching ──> Probation ──first checkpoint──> Running
//!                                                                   └─failure──> Switching (rollback) ──> Running
//! any ──cancel──> Stopped      any ──delete──> (gone)      any ──shutdown──> (stopped, runs again at the next start)
//! ```

mod switch;

use super::views::{RestartView, SavepointView, failure};
use super::{JobCell, JobIo, RESTARTS_SHOWN, checkpoint_prefix, now_ms, savepoint_folder};
use crate::api::error::ApiError;
use crate::store::{Desired, JobRecord, StartFrom, UpgradeOutcome, UpgradeRecord};
use axum::http::StatusCode;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use eddy_engine::TaskError;
use eddy_engine::checkpoint::coordinator::prepare_restore;
use eddy_engine::checkpoint::{CheckpointId, CheckpointStats, CheckpointStore, Restore};
use eddy_engine::graph::JobGraph;
use eddy_engine::io::IngestLog;
use eddy_engine::runtime::restart::{Decision, RestartPolicy};
use eddy_engine::runtime::{JobHandle, JobState};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the API asks of a job's supervisor; each carries where the answer goes.
pub(crate) enum Command {
    /// Starts the job now (a job queued after the server went down, or a new job).
    Start(Reply<()>),
    /// Stops the job; it will not start again.
    Cancel(Reply<()>),
    /// Stops the job and forgets it: record, checkpoints, input logs and state.
    Delete(Reply<()>),
    /// Takes a savepoint; with `stop` the job stops with it, with `drain` too its event time first runs to the end.
    Savepoint { stop: bool, drain: bool, reply: Reply<SavepointView> },
    /// Switches a running job to new modules (checked already) through a savepoint.
    Upgrade(Box<Switch>, Reply<UpgradeRecord>),
    /// The server stops: stop the run, keep the job's wish to run for the next start.
    Shutdown(Reply<()>),
}

/// How a supervisor begins.
pub(crate) enum Begin {
    /// Start the job at once; the answer (if any) says whether its first run started.
    Start(Option<Reply<()>>),
    /// Wait for a `Start` (a job under suspicion after the server went down).
    Queued,
    /// The job does not run; wait for commands.
    Stopped,
}

/// Where a command's answer goes.
pub(crate) type Reply<T> = Sender<Result<T, ApiError>>;

/// An upgrade that passed its checks.
pub(crate) struct Switch {
    pub(crate) upgrade: UpgradeRecord,
    pub(crate) graph: JobGraph,
    pub(crate) pins: BTreeMap<String, String>,
    pub(crate) allow_non_restored_state: bool,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for its turn to start after the server went down (see [`super::Jobs::open`]).
    Queued,
    /// A run is starting.
    Starting,
    /// A run runs.
    Running,
    /// The last run failed; the next starts after a delay.
    Restarting,
    /// A savepoint is being taken of the running run.
    Savepointing,
    /// An upgrade stopped the old run and starts the new one (or the old one again).
    Switching,
    /// An upgrade's new run runs until its first checkpoint completes.
    Probation,
    /// No run, and none will start (finished, failed, canceled, or held).
    Stopped,
}

/// What a run of the job lets its supervisor do: the engine's run, or a fake in tests.
pub(crate) trait Run: Send + Sync {
    /// Its state.
    fn state(&self) -> JobState;
    /// Waits until it ends or `timeout` passes.
    fn wait(&self, timeout: Duration) -> JobState;
    /// Why it failed.
    fn error(&self) -> Option<TaskError>;
    /// Stops it; it ends as cancelled.
    fn cancel(&self);
    /// Its sources read nothing more (with `drain`, event time runs to the end first).
    fn suspend(&self, drain: bool);
    /// Its sources read again.
    fn resume(&self);
    /// Takes a savepoint into `folder`.
    fn savepoint(&self, folder: &str) -> Result<CheckpointId, String>;
    /// Tells its tasks that `checkpoint` completed and waits until each acted on it.
    fn commit(&self, checkpoint: CheckpointId) -> Result<(), String>;
    /// Its checkpoints.
    fn checkpoints(&self) -> CheckpointStats;
    /// The engine's handle, for counters (none for fakes).
    fn handle(&self) -> Option<&JobHandle>;
}

/// How one start of the job goes, decided once before it starts.
pub(crate) struct RunPlan {
    /// The job's graph (with the modules it runs now).
    pub(crate) graph: JobGraph,
    /// What it restores.
    pub(crate) restore: Option<Restore>,
    /// Whether state of operators the job no longer has may be dropped.
    pub(crate) allow_non_restored_state: bool,
    /// Checkpoint ids go on after this one.
    pub(crate) last_id: CheckpointId,
}

/// What a supervisor needs around it: the control plane, the checkpoint store, and a way to start runs.
pub(crate) trait Host: Send + Sync {
    /// Saves the job's record.
    fn persist(&self, tenant: &str, record: &JobRecord);
    /// Builds the job's graph from its record (when the server starts, graphs are built on first start).
    fn graph(&self, tenant: &str, record: &JobRecord) -> Result<JobGraph, ApiError>;
    /// Whether the tenant may start this job now (quotas, storage); why not.
    fn admit(&self, cell: &JobCell, graph: &JobGraph) -> Result<(), ApiError>;
    /// The job's HTTP inputs and outputs, opened once and kept across its runs.
    fn io(&self, cell: &JobCell, graph: &JobGraph, io: JobIo) -> Result<JobIo, ApiError>;
    /// Starts a run.
    fn launch(&self, cell: &Arc<JobCell>, plan: RunPlan, io: &JobIo) -> Result<Arc<dyn Run>, ApiError>;
    /// Where checkpoints and savepoints are kept.
    fn store(&self) -> &Arc<dyn CheckpointStore>;
    /// Removes the job's files (input logs, state) and its record.
    fn forget(&self, tenant: &str, id: &str) -> Result<(), ApiError>;
    /// Adds what a run of the job did since the last call to its tenant's cumulative usage.
    fn meter(&self, cell: &JobCell, run: &dyn Run);
}

/// Starts a job's run only once it is held so many times in a row: a job that keeps taking the server down.
pub const MAX_CRASH_STREAK: u32 = 3;
/// How long a run must last for its start to count as survived, unless it completes a checkpoint sooner.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(300);
/// How long an upgrade's new run that completes no checkpoint (and does not fail) stays on probation.
const PROBATION_LIMIT: Duration = Duration::from_secs(300);
/// How long a stop waits for the job to read what its inputs accepted.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// How often usage is folded into the tenant's totals while a run runs.
const METER_EVERY: Duration = Duration::from_secs(5);

/// The supervisor of one job.
pub(crate) struct Supervisor {
    cell: Arc<JobCell>,
    commands: Receiver<Command>,
    host: Arc<dyn Host>,
    /// The run it owns, if any (also shown through the cell).
    run: Option<Arc<dyn Run>>,
    policy: Option<RestartPolicy>,
    /// When the current run started (for the restart policy) and whether it was found healthy.
    started: (i64, Instant, bool),
    restart_at: Option<Instant>,
    /// An upgrade's new run on probation: its number, the old modules and the savepoint to roll back to.
    probation: Option<switch::Rollback>,
    last_meter: Instant,
}

/// What a wait saw first.
enum Event {
    Command(Command),
    RunEnded,
    Tick,
    /// Every sender is gone: the server dropped the job.
    Orphaned,
}

impl Supervisor {
    /// Spawns the supervisor of `cell`.
    pub(crate) fn spawn(
        cell: Arc<JobCell>,
        commands: Receiver<Command>,
        host: Arc<dyn Host>,
        begin: Begin,
    ) -> std::io::Result<()> {
        let name = format!("eddy-job-{}", cell.id);
        let mut supervisor = Supervisor {
            cell,
            commands,
            host,
            run: None,
            policy: None,
            started: (0, Instant::now(), false),
            restart_at: None,
            probation: None,
            last_meter: Instant::now(),
        };
        std::thread::Builder::new().name(name).spawn(move || {
            if let Begin::Start(reply) = begin {
                let started = supervisor.start();
                if let Some(reply) = reply {
                    let _ = reply.send(started);
                } else if let Err(e) = started {
                    tracing::warn!(
                        tenant = supervisor.cell.tenant,
                        job = supervisor.cell.id,
                        "cannot resume job: {}",
                        e.message
                    );
                }
            }
            supervisor.serve();
        })?;
        Ok(())
    }

    fn phase(&self) -> Phase {
        self.cell.state.lock().phase
    }

    /// The one place a phase changes.
    fn enter(&self, phase: Phase) {
        let mut state = self.cell.state.lock();
        if state.phase != phase {
            tracing::debug!(tenant = self.cell.tenant, job = self.cell.id, "{:?} -> {phase:?}", state.phase);
            state.phase = phase;
            drop(state);
            let name = format!("{phase:?}").to_lowercase();
            self.cell.journal.event(&name, &format!("the job is {name}"));
        }
    }

    fn record(&self) -> JobRecord {
        self.cell.state.lock().record.clone()
    }

    /// Changes the job's record and saves it.
    fn update(&self, change: impl FnOnce(&mut JobRecord)) {
        let record = {
            let mut state = self.cell.state.lock();
            change(&mut state.record);
            state.record.clone()
        };
        self.host.persist(&self.cell.tenant, &record);
    }

    /// Handles commands and runs until the job is deleted or the server stops.
    fn serve(mut self) {
        loop {
            let timeout = match self.phase() {
                Phase::Running | Phase::Probation => Duration::from_millis(100),
                Phase::Restarting => self
                    .restart_at
                    .map_or(Duration::ZERO, |at| at.saturating_duration_since(Instant::now()))
                    .min(Duration::from_millis(100)),
                _ => Duration::from_secs(3600),
            };
            match self.next_event(timeout) {
                Event::Orphaned => {
                    self.stop_run();
                    return;
                }
                Event::Command(command) => {
                    if !self.on_command(command) {
                        return;
                    }
                }
                Event::RunEnded => self.on_run_ended(),
                Event::Tick => self.on_tick(),
            }
        }
    }

    fn next_event(&self, timeout: Duration) -> Event {
        let deadline = Instant::now() + timeout;
        loop {
            let step = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(20));
            match self.commands.recv_timeout(step) {
                Ok(command) => return Event::Command(command),
                Err(RecvTimeoutError::Disconnected) => return Event::Orphaned,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.run.as_ref().is_some_and(|run| run.state() != JobState::Running) {
                return Event::RunEnded;
            }
            if Instant::now() >= deadline {
                return Event::Tick;
            }
        }
    }

    /// Acts on a command; false once the supervisor is done (the job deleted, or the server stopping).
    fn on_command(&mut self, command: Command) -> bool {
        match command {
            Command::Start(reply) => {
                let result = match self.phase() {
                    Phase::Queued | Phase::Stopped if self.record().desired == Desired::Running => self.start(),
                    _ => Ok(()),
                };
                let _ = reply.send(result);
                true
            }
            Command::Cancel(reply) => {
                self.cancel();
                let _ = reply.send(Ok(()));
                true
            }
            Command::Delete(reply) => {
                self.cancel();
                self.forget_checkpoints();
                let result = self.host.forget(&self.cell.tenant, &self.cell.id);
                let _ = reply.send(result);
                false
            }
            Command::Shutdown(reply) => {
                // The job survived this run: its next start is not under suspicion.
                self.stop_run();
                self.update(|r| r.crash_streak = 0);
                let _ = reply.send(Ok(()));
                false
            }
            Command::Savepoint { stop, drain, reply } => {
                let result = self.savepoint(stop, drain);
                let _ = reply.send(result);
                true
            }
            Command::Upgrade(switch, reply) => {
                let result = self.upgrade(*switch);
                let _ = reply.send(result);
                true
            }
        }
    }

    /// Stops the job for good: no run, none later.
    fn cancel(&mut self) {
        self.stop_run();
        self.restart_at = None;
        if let Some(rollback) = self.probation.take() {
            self.finish_upgrade(rollback.number, |u| u.outcome = UpgradeOutcome::Canceled);
        }
        let retain = self
            .cell
            .state
            .lock()
            .graph
            .as_ref()
            .and_then(|g| g.checkpoints.as_ref())
            .is_some_and(|c| c.retain_on_cancel);
        let stopped_now = self.record().desired == Desired::Running;
        self.update(|r| {
            r.desired = Desired::Stopped;
            if stopped_now || r.state == JobState::Running {
                r.state = JobState::Canceled;
            }
            r.crash_streak = 0;
        });
        if !retain {
            self.forget_checkpoints();
        }
        self.end_outputs();
        self.enter(Phase::Stopped);
    }

    /// Stops the current run, if any, and waits until it has ended (its tasks and coordinator joined).
    fn stop_run(&mut self) {
        if let Some(run) = self.run.take() {
            run.cancel();
            Self::await_end(run.as_ref());
            self.host.meter(&self.cell, run.as_ref());
        }
    }

    /// Waits until `run` has ended; a run that does not end is reported, never abandoned.
    fn await_end(run: &dyn Run) {
        let since = Instant::now();
        while run.wait(Duration::from_secs(10)) == JobState::Running {
            tracing::warn!("a run has not ended {} s after it was stopped; still waiting", since.elapsed().as_secs());
        }
    }

    fn forget_checkpoints(&self) {
        let prefix = checkpoint_prefix(&self.cell.tenant, &self.cell.id);
        if let Err(e) = self.host.store().delete_prefix(&prefix) {
            tracing::warn!(tenant = self.cell.tenant, job = self.cell.id, "cannot delete the job's checkpoints: {e}");
        }
    }

    /// Readers of the job's outputs see their end once the job has ended for good.
    fn end_outputs(&self) {
        let outputs: Vec<_> = self.cell.state.lock().io.outputs.values().cloned().collect();
        for stream in outputs {
            stream.close();
        }
    }

    /// Plans and starts a run (the job must have none). On failure the job is stopped as failed.
    fn start(&mut self) -> Result<(), ApiError> {
        self.enter(Phase::Starting);
        match self.launch() {
            Ok(()) => {
                self.enter(Phase::Running);
                Ok(())
            }
            Err(e) => {
                self.update(|r| {
                    r.state = JobState::Failed;
                    r.error = Some(e.message.clone());
                    r.desired = Desired::Stopped;
                    r.crash_streak = 0;
                });
                self.enter(Phase::Stopped);
                Err(e)
            }
        }
    }

    /// Plans a run and launches it. The start is counted before anything runs, so a start that takes the server
    /// down is remembered.
    fn launch(&mut self) -> Result<(), ApiError> {
        debug_assert!(self.run.is_none(), "a run starts only after the previous one ended");
        let record = self.record();
        let graph = match self.cell.state.lock().graph.clone() {
            Some(graph) => graph,
            None => self.host.graph(&self.cell.tenant, &record)?,
        };
        self.host.admit(&self.cell, &graph)?;
        self.update(|r| r.crash_streak += 1);
        let plan = self.plan(graph.clone(), &record)?;
        self.update(|r| r.checkpoint_id_floor = r.checkpoint_id_floor.max(plan.last_id));
        let io = self.cell.state.lock().io.clone();
        let io = self.host.io(&self.cell, &graph, io)?;
        {
            let mut state = self.cell.state.lock();
            state.io = io.clone();
            state.graph = Some(graph.clone());
        }
        let run = self.host.launch(&self.cell, plan, &io)?;
        {
            let mut state = self.cell.state.lock();
            state.run = Some(Arc::clone(&run));
            state.record.state = JobState::Running;
            state.record.error = None;
            state.gave_up = None;
        }
        self.host.persist(&self.cell.tenant, &self.record());
        if self.policy.is_none() {
            self.policy = Some(RestartPolicy::new(graph.restart.clone()));
        }
        self.started = (now_ms(), Instant::now(), false);
        self.run = Some(run);
        Ok(())
    }

    /// Decides where a run starts from: the newer of the job's newest completed checkpoint and the savepoint it
    /// goes on from (a savepoint of another job counts only until the job has checkpoints of its own), and the
    /// checkpoint-id floor.
    fn plan(&self, graph: JobGraph, record: &JobRecord) -> Result<RunPlan, ApiError> {
        let cannot_start = |e: TaskError| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_start", format!("the job cannot start: {e}"))
        };
        let mut plan =
            RunPlan { graph, restore: None, allow_non_restored_state: false, last_id: record.checkpoint_id_floor };
        if plan.graph.checkpoints.is_none() {
            return Ok(plan);
        }
        let store = self.host.store();
        let (checkpoint, newest_used) =
            prepare_restore(store, &checkpoint_prefix(&self.cell.tenant, &self.cell.id)).map_err(cannot_start)?;
        plan.last_id = plan.last_id.max(newest_used);
        let savepoint_first = match (&checkpoint, &record.start_from) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(checkpoint), Some(from)) => from.checkpoint.is_some_and(|own| own >= checkpoint.checkpoint),
        };
        plan.restore = match (&record.start_from, savepoint_first) {
            (Some(from), true) => {
                let folder = savepoint_folder(&self.cell.tenant, &from.savepoint);
                let what = format!("savepoint {}", from.savepoint);
                plan.allow_non_restored_state = from.allow_non_restored_state;
                Some(Restore::load_folder(store, &folder, &what).map_err(cannot_start)?)
            }
            _ => checkpoint,
        };
        Ok(plan)
    }

    fn on_tick(&mut self) {
        match self.phase() {
            Phase::Restarting if self.restart_at.is_some_and(|at| Instant::now() >= at) => self.restart(),
            Phase::Running | Phase::Probation => self.check_health(),
            _ => {}
        }
    }

    /// Notes a healthy run (its start survived), meters it, and ends an upgrade's probation.
    fn check_health(&mut self) {
        let Some(run) = self.run.clone() else { return };
        let completed = run.checkpoints().completed > 0;
        if !self.started.2 && (completed || self.started.1.elapsed() >= HEALTHY_AFTER) {
            self.started.2 = true;
            self.update(|r| r.crash_streak = 0);
        }
        if self.last_meter.elapsed() >= METER_EVERY {
            self.last_meter = Instant::now();
            self.host.meter(&self.cell, run.as_ref());
        }
        let Some(rollback) = &self.probation else { return };
        let passed = if completed {
            Some(None)
        } else if rollback.switched_at.elapsed() >= PROBATION_LIMIT {
            Some(Some(format!(
                "the new run completed no checkpoint in its first {} s; it was kept",
                PROBATION_LIMIT.as_secs()
            )))
        } else {
            None
        };
        if let Some(warning) = passed {
            let number = rollback.number;
            self.probation = None;
            self.finish_upgrade(number, |u| {
                u.outcome = UpgradeOutcome::Upgraded;
                u.warnings.extend(warning);
            });
            self.enter(Phase::Running);
        }
    }

    fn on_run_ended(&mut self) {
        let Some(run) = self.run.take() else { return };
        Self::await_end(run.as_ref());
        self.host.meter(&self.cell, run.as_ref());
        let state = run.state();
        if let Some(rollback) = self.probation.take() {
            let cause = run.error().map_or_else(|| format!("the new run ended ({state:?})"), |e| e.to_string());
            return self.roll_back(rollback, format!("the new modules failed: {cause}"));
        }
        match state {
            JobState::Failed => {
                let cause = run.error().unwrap_or_else(|| TaskError::internal("the job failed"));
                self.failed(cause);
            }
            other => {
                self.update(|r| {
                    r.state = other;
                    r.desired = Desired::Stopped;
                    r.crash_streak = 0;
                });
                self.end_outputs();
                self.enter(Phase::Stopped);
            }
        }
    }

    /// A run failed (or could not start): restart after the policy's delay, or stop as failed.
    fn failed(&mut self, cause: TaskError) {
        let failed_at = now_ms();
        let random = (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64;
        let policy = self.policy.get_or_insert_with(|| RestartPolicy::new(Default::default()));
        match policy.on_failure(self.started.0, failed_at, random) {
            Decision::Restart(delay) => {
                tracing::warn!(
                    tenant = self.cell.tenant,
                    job = self.cell.id,
                    "job failed, restarting in {delay:?}: {cause}"
                );
                {
                    let mut state = self.cell.state.lock();
                    state.restarts.push(RestartView {
                        failed_at,
                        cause: failure(&cause),
                        delay_ms: delay.as_millis() as u64,
                    });
                    state.restart_count += 1;
                    let excess = state.restarts.len().saturating_sub(RESTARTS_SHOWN);
                    state.restarts.drain(..excess);
                }
                self.restart_at = Some(Instant::now() + delay);
                self.cell.journal.event("failed", &format!("{cause}; restarting in {} ms", delay.as_millis()));
                self.enter(Phase::Restarting);
            }
            Decision::GiveUp(why) => {
                self.cell.journal.event("failed", &format!("{cause} (not restarted: {why})"));
                self.cell.state.lock().gave_up = Some(why.clone());
                self.update(|r| {
                    r.state = JobState::Failed;
                    r.error = Some(format!("{cause} (not restarted: {why})"));
                    r.desired = Desired::Stopped;
                    r.crash_streak = 0;
                });
                self.end_outputs();
                self.enter(Phase::Stopped);
            }
        }
    }

    fn restart(&mut self) {
        self.restart_at = None;
        self.enter(Phase::Starting);
        match self.launch() {
            Ok(()) => self.enter(Phase::Running),
            // Over a quota (lowered meanwhile): trying again would not change that, so the job stops, saying why.
            Err(e) if e.code == "quota_exceeded" => {
                self.cell.state.lock().gave_up = Some(e.message.clone());
                self.update(|r| {
                    r.state = JobState::Failed;
                    r.error = Some(format!("not restarted: {}", e.message));
                    r.desired = Desired::Stopped;
                    r.crash_streak = 0;
                });
                self.end_outputs();
                self.enter(Phase::Stopped);
            }
            Err(e) => {
                self.started.0 = now_ms();
                self.failed(TaskError::external(e.message));
            }
        }
    }

    /// Takes a savepoint of the running job; with `stop`, the job stops with it and every record its HTTP inputs
    /// acknowledged is in the savepoint.
    fn savepoint(&mut self, stop: bool, drain: bool) -> Result<SavepointView, ApiError> {
        let Some(run) = self.run.clone().filter(|_| self.phase() == Phase::Running) else {
            return Err(ApiError::conflict(format!("job {} is not running", self.cell.id)));
        };
        if self.cell.state.lock().graph.as_ref().is_none_or(|g| g.checkpoints.is_none()) {
            return Err(ApiError::conflict(
                "savepoints are taken by the job's checkpoint coordinator: add `checkpoints` to the job's spec",
            ));
        }
        self.enter(Phase::Savepointing);
        let result = if stop { self.stop_with_savepoint(&run, drain) } else { self.write_savepoint(run.as_ref()) };
        if self.phase() == Phase::Savepointing {
            self.enter(Phase::Running);
        }
        result
    }

    fn stop_with_savepoint(&mut self, run: &Arc<dyn Run>, drain: bool) -> Result<SavepointView, ApiError> {
        // Every record acknowledged is in the logs once they are sealed; the job reads them all, then nothing more.
        let logs: Vec<Arc<IngestLog>> = self.cell.state.lock().io.inputs.values().cloned().collect();
        for log in &logs {
            log.seal();
        }
        let unseal = |logs: &[Arc<IngestLog>]| logs.iter().for_each(|log| log.unseal());
        let deadline = Instant::now() + DRAIN_LIMIT;
        while logs.iter().any(|log| log.unread() > 0) {
            if Instant::now() >= deadline || run.state() != JobState::Running {
                unseal(&logs);
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "savepoint_failed",
                    format!(
                        "the job did not read what its inputs accepted within {} s; it runs on",
                        DRAIN_LIMIT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        run.suspend(drain);
        let view = match self.write_savepoint(run.as_ref()) {
            Ok(view) => view,
            Err(e) => {
                run.resume();
                unseal(&logs);
                return Err(e);
            }
        };
        // From here the savepoint is the job's restore point: what it covers is committed, then the job stops.
        self.go_on_from(&view);
        if let Err(e) = run.commit(view.checkpoint) {
            tracing::warn!(tenant = self.cell.tenant, job = self.cell.id, "the stop's commit failed: {e}");
            self.stop_run();
            self.failed(TaskError::external(format!("stopping with savepoint {}: {e}", view.id)));
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "savepoint_failed", e));
        }
        self.cancel();
        Ok(view)
    }

    /// Records that the job goes on from `savepoint` (its own), before anything it covers is committed: a restart
    /// after the commit must not go back to an older checkpoint.
    fn go_on_from(&self, savepoint: &SavepointView) {
        self.update(|r| {
            r.start_from = Some(StartFrom {
                savepoint: savepoint.id.clone(),
                allow_non_restored_state: false,
                checkpoint: Some(savepoint.checkpoint),
            });
            r.checkpoint_id_floor = r.checkpoint_id_floor.max(savepoint.checkpoint);
        });
    }

    /// Takes a savepoint of `run` and records what it is.
    fn write_savepoint(&self, run: &dyn Run) -> Result<SavepointView, ApiError> {
        let savepoint = uuid::Uuid::new_v4().simple().to_string();
        let folder = savepoint_folder(&self.cell.tenant, &savepoint);
        let checkpoint = run.savepoint(&folder).map_err(|e| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "savepoint_failed", format!("the savepoint failed: {e}"))
        })?;
        let record = self.record();
        let bytes = self.host.store().bytes_under(&folder).unwrap_or(0);
        let view = SavepointView {
            id: savepoint,
            job: self.cell.id.clone(),
            job_name: record.name.clone(),
            checkpoint,
            created_at: now_ms(),
            spec: record.spec.clone(),
            bytes,
        };
        let info = serde_json::to_vec_pretty(&view).map_err(|e| ApiError::internal(e.to_string()))?;
        self.host
            .store()
            .put(&format!("{folder}{}", super::SAVEPOINT_INFO), &info)
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "savepoint_failed", e.to_string()))?;
        self.update(|r| r.checkpoint_id_floor = r.checkpoint_id_floor.max(checkpoint));
        Ok(view)
    }
}
