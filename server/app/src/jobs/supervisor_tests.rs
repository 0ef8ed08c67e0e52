//! The supervisor's transitions, driven with fake runs: what it starts when, and in what order it stops, commits
//! and plans.

use super::supervisor::{Begin, Command, Host, Phase, Run, RunPlan, Supervisor, Switch};
use super::{JobCell, JobIo, JobShared, answer};
use crate::api::error::ApiError;
use crate::store::{Desired, JobRecord, UpgradeOutcome, UpgradeRecord};
use eddy_engine::TaskError;
use eddy_engine::checkpoint::{CheckpointId, CheckpointStats, CheckpointStore, LocalStore};
use eddy_engine::graph::JobGraph;
use eddy_engine::runtime::{JobHandle, JobState};
use eddy_engine::spec::JobSpec;
use eddy_engine::testing::TestFunctions;
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A run the test ends when it likes; it records what the supervisor asked of it.
struct FakeRun {
    number: usize,
    state: Mutex<JobState>,
    ended: Condvar,
    /// Whether `cancel` ends it at once (else the test ends it: a run still committing).
    ends_on_cancel: bool,
    log: Arc<Mutex<Vec<String>>>,
    checkpoints: Mutex<CheckpointStats>,
    next_savepoint: CheckpointId,
    store: Arc<dyn CheckpointStore>,
}

impl FakeRun {
    fn end(&self, state: JobState) {
        *self.state.lock() = state;
        self.ended.notify_all();
    }

    fn note(&self, what: &str) {
        self.log.lock().push(format!("run {} {what}", self.number));
    }
}

impl Run for FakeRun {
    fn state(&self) -> JobState {
        *self.state.lock()
    }

    fn wait(&self, timeout: Duration) -> JobState {
        let mut state = self.state.lock();
        if *state == JobState::Running {
            self.ended.wait_for(&mut state, timeout);
        }
        *state
    }

    fn error(&self) -> Option<TaskError> {
        (self.state() == JobState::Failed).then(|| TaskError::user("the fake run failed"))
    }

    fn cancel(&self) {
        self.note("cancel");
        if self.ends_on_cancel {
            self.end(JobState::Canceled);
        }
    }

    fn suspend(&self, _drain: bool) {
        self.note("suspend");
    }

    fn resume(&self) {
        self.note("resume");
    }

    fn savepoint(&self, folder: &str) -> Result<CheckpointId, String> {
        self.note(&format!("savepoint {}", self.next_savepoint));
        // A savepoint of a job without state: its metadata only.
        let metadata =
            format!(r#"{{"format":1,"checkpoint":{},"completed_at_ms":0,"tasks":{{}}}}"#, self.next_savepoint);
        self.store.put(&format!("{folder}_metadata"), metadata.as_bytes()).map_err(|e| e.to_string())?;
        Ok(self.next_savepoint)
    }

    fn commit(&self, checkpoint: CheckpointId) -> Result<(), String> {
        self.note(&format!("commit {checkpoint}"));
        Ok(())
    }

    fn checkpoints(&self) -> CheckpointStats {
        self.checkpoints.lock().clone()
    }

    fn handle(&self) -> Option<&JobHandle> {
        None
    }
}

/// The world around a supervisor: a real checkpoint folder, records kept in memory, fake runs.
struct FakeHost {
    store: Arc<dyn CheckpointStore>,
    _dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
    runs: Mutex<Vec<Arc<FakeRun>>>,
    plans: Mutex<Vec<(CheckpointId, bool)>>,
    ends_on_cancel: Mutex<bool>,
    fail_launches: Mutex<usize>,
    /// The record as last saved.
    saved: Mutex<Option<JobRecord>>,
    next_savepoint: CheckpointId,
}

impl FakeHost {
    fn new() -> Arc<FakeHost> {
        let dir = tempfile::tempdir().expect("tempdir");
        Arc::new(FakeHost {
            store: Arc::new(LocalStore::new(dir.path())),
            _dir: dir,
            log: Arc::default(),
            runs: Mutex::default(),
            plans: Mutex::default(),
            ends_on_cancel: Mutex::new(true),
            fail_launches: Mutex::new(0),
            saved: Mutex::default(),
            next_savepoint: 40,
        })
    }

    fn run(&self, n: usize) -> Arc<FakeRun> {
        Arc::clone(&self.runs.lock()[n])
    }

    fn launches(&self) -> usize {
        self.runs.lock().len()
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().clone()
    }
}

impl Host for FakeHost {
    fn persist(&self, _tenant: &str, record: &JobRecord) {
        let before = self.saved.lock().replace(record.clone());
        if let Some(from) = &record.start_from
            && before.and_then(|b| b.start_from) != record.start_from
        {
            self.log.lock().push(format!("saved start_from {}", from.savepoint));
        }
    }

    fn graph(&self, _tenant: &str, record: &JobRecord) -> Result<JobGraph, ApiError> {
        Ok(graph(&record.spec))
    }

    fn admit(&self, _cell: &JobCell, _graph: &JobGraph) -> Result<(), ApiError> {
        Ok(())
    }

    fn io(&self, _cell: &JobCell, _graph: &JobGraph, io: JobIo) -> Result<JobIo, ApiError> {
        Ok(io)
    }

    fn launch(&self, _cell: &Arc<JobCell>, plan: RunPlan, _io: &JobIo) -> Result<Arc<dyn Run>, ApiError> {
        self.plans.lock().push((plan.last_id, plan.restore.is_some()));
        {
            let mut fail = self.fail_launches.lock();
            if *fail > 0 {
                *fail -= 1;
                return Err(ApiError::internal("the fake launch failed"));
            }
        }
        let mut runs = self.runs.lock();
        let run = Arc::new(FakeRun {
            number: runs.len(),
            state: Mutex::new(JobState::Running),
            ended: Condvar::new(),
            ends_on_cancel: *self.ends_on_cancel.lock(),
            log: Arc::clone(&self.log),
            checkpoints: Mutex::default(),
            next_savepoint: self.next_savepoint,
            store: Arc::clone(&self.store),
        });
        run.note("started");
        runs.push(Arc::clone(&run));
        Ok(run)
    }

    fn store(&self) -> &Arc<dyn CheckpointStore> {
        &self.store
    }

    fn forget(&self, _tenant: &str, _id: &str) -> Result<(), ApiError> {
        self.log.lock().push("forgotten".into());
        Ok(())
    }

    fn meter(&self, _cell: &JobCell, _run: &dyn Run) {}
}

fn graph(spec: &str) -> JobGraph {
    let spec = JobSpec::parse(spec).unwrap_or_else(|e| panic!("{e}"));
    JobGraph::build(&spec, &TestFunctions).unwrap_or_else(|e| panic!("{e}"))
}

const SPEC: &str = "name: t\ncheckpoints: { interval: 1h }\nrestart: { strategy: fixed_delay, attempts: 2, delay: 200ms }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: discard, input: src }\n";

fn record(spec: &str) -> JobRecord {
    JobRecord {
        id: "j".into(),
        name: "t".into(),
        spec: spec.into(),
        modules: BTreeMap::new(),
        submitted_at: 0,
        desired: Desired::Running,
        state: JobState::Running,
        error: None,
        crash_streak: 0,
        start_from: None,
        upgrades: Vec::new(),
        checkpoint_id_floor: 0,
    }
}

/// A supervised job that starts at once; returns once its first start answered.
fn supervised(host: &Arc<FakeHost>, record: JobRecord) -> Arc<JobCell> {
    let (commands, receiver) = crossbeam_channel::unbounded();
    let cell = Arc::new(JobCell {
        journal: Arc::new(super::journal::Journal::new(&eddy_engine::memory::MemoryBudget::new("test", 1 << 20, None))),
        tenant: "t".into(),
        id: record.id.clone(),
        state: Mutex::new(JobShared {
            graph: Some(graph(&record.spec)),
            record,
            run: None,
            io: JobIo::default(),
            restarts: Vec::new(),
            restart_count: 0,
            phase: Phase::Starting,
            gave_up: None,
            upgrading: false,
            metered: (0, 0),
        }),
        commands,
    });
    let (reply, started) = crossbeam_channel::bounded(1);
    let host_dyn: Arc<dyn Host> = Arc::clone(host) as Arc<dyn Host>;
    Supervisor::spawn(Arc::clone(&cell), receiver, host_dyn, Begin::Start(Some(reply))).expect("spawn");
    started.recv_timeout(Duration::from_secs(10)).expect("answer").expect("first start");
    cell
}

fn phase(cell: &JobCell) -> Phase {
    cell.state.lock().phase
}

fn eventually(what: &str, done: impl Fn() -> bool) {
    let since = Instant::now();
    while !done() {
        assert!(since.elapsed() < Duration::from_secs(10), "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_failed_run_restarts_after_its_delay_and_the_strategy_gives_up_in_the_end() {
    let host = FakeHost::new();
    let cell = supervised(&host, record(SPEC));
    for attempt in 1..=2 {
        host.run(attempt - 1).end(JobState::Failed);
        eventually("the job restarts", || phase(&cell) == Phase::Restarting);
        assert_eq!(host.launches(), attempt, "no start before the delay");
        eventually("the next run starts", || host.launches() == attempt + 1);
        eventually("it runs", || phase(&cell) == Phase::Running);
    }
    host.run(2).end(JobState::Failed);
    eventually("the strategy gives up", || phase(&cell) == Phase::Stopped);
    let record = cell.state.lock().record.clone();
    assert_eq!((record.state, record.desired), (JobState::Failed, Desired::Stopped));
    assert!(record.error.as_deref().is_some_and(|e| e.contains("not restarted")), "{record:?}");
    assert_eq!(host.launches(), 3);
}

#[test]
fn a_cancel_during_the_restart_delay_leaves_no_run() {
    let host = FakeHost::new();
    let cell = supervised(&host, record(SPEC));
    host.run(0).end(JobState::Failed);
    eventually("the job restarts", || phase(&cell) == Phase::Restarting);
    answer(&cell, Command::Cancel).expect("cancel");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(host.launches(), 1, "nothing started after the cancel");
    assert_eq!(phase(&cell), Phase::Stopped);
    assert_eq!(cell.state.lock().record.desired, Desired::Stopped);
}

#[test]
fn a_new_run_starts_only_after_the_old_one_ended() {
    let host = FakeHost::new();
    *host.ends_on_cancel.lock() = false;
    let cell = supervised(&host, record(SPEC));
    let switch = Switch {
        upgrade: upgrade_record(),
        graph: graph(SPEC),
        pins: BTreeMap::new(),
        allow_non_restored_state: false,
    };
    let upgrading = std::thread::spawn({
        let cell = Arc::clone(&cell);
        move || answer(&cell, |reply| Command::Upgrade(Box::new(switch), reply))
    });
    eventually("the old run is stopped", || host.log().contains(&"run 0 cancel".to_string()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(host.launches(), 1, "the old run has not ended: no new run yet");
    host.run(0).end(JobState::Canceled);
    upgrading.join().expect("thread").expect("the upgrade is under way");
    eventually("the new run starts", || host.launches() == 2);
    let log = host.log();
    let ended_at = log.iter().position(|l| l == "run 0 cancel").expect("cancel");
    let started_at = log.iter().position(|l| l == "run 1 started").expect("start");
    assert!(ended_at < started_at, "{log:?}");
}

fn upgrade_record() -> UpgradeRecord {
    UpgradeRecord {
        number: 1,
        requested_at: 0,
        modules: vec!["m@2".into()],
        from: BTreeMap::new(),
        to: BTreeMap::new(),
        outcome: UpgradeOutcome::InProgress,
        reason: None,
        warnings: Vec::new(),
        savepoint: None,
        downtime_ms: None,
        finished_at: None,
    }
}

#[test]
fn a_stop_records_its_savepoint_as_the_restore_point_before_committing_then_stops() {
    let host = FakeHost::new();
    let cell = supervised(&host, record(SPEC));
    let view = answer(&cell, |reply| Command::Savepoint { stop: true, drain: false, reply }).expect("savepoint");
    assert_eq!(view.checkpoint, 40);
    let log = host.log();
    let order: Vec<&str> =
        log.iter().map(String::as_str).filter(|l| l.starts_with("run 0") || l.starts_with("saved")).collect();
    let saved = format!("saved start_from {}", view.id);
    assert_eq!(
        order,
        ["run 0 started", "run 0 suspend", "run 0 savepoint 40", &saved, "run 0 commit 40", "run 0 cancel"]
    );
    let record = host.saved.lock().clone().expect("saved");
    assert_eq!((record.desired, record.state), (Desired::Stopped, JobState::Canceled));
    assert!(record.checkpoint_id_floor >= 40, "the savepoint's id is below the floor");
    assert_eq!(phase(&cell), Phase::Stopped);
}

#[test]
fn checkpoint_ids_go_on_after_every_id_used_even_once_checkpoints_are_gone() {
    let host = FakeHost::new();
    let cell = supervised(&host, record(SPEC));
    // An upgrade takes savepoint 40, drops the job's checkpoints and starts the new run from the savepoint.
    let switch = Switch {
        upgrade: upgrade_record(),
        graph: graph(SPEC),
        pins: BTreeMap::new(),
        allow_non_restored_state: false,
    };
    answer(&cell, |reply| Command::Upgrade(Box::new(switch), reply)).expect("upgrade");
    eventually("the new run starts", || host.launches() == 2);
    let plans = host.plans.lock().clone();
    assert_eq!(plans[0], (0, false), "the first run starts afresh");
    assert!(plans[1].0 >= 40 && plans[1].1, "the new run restores the savepoint, ids after 40: {plans:?}");
    // A failure before the new run's first checkpoint rolls back to the old modules from the same savepoint.
    host.run(1).end(JobState::Failed);
    eventually("the rollback starts", || host.launches() == 3);
    let plans = host.plans.lock().clone();
    assert!(plans[2].0 >= 40 && plans[2].1, "{plans:?}");
    eventually("the upgrade is rolled back", || {
        cell.state.lock().record.upgrades.last().is_some_and(|u| u.outcome == UpgradeOutcome::RolledBack)
    });
}

#[test]
fn a_delete_during_a_failing_start_leaves_nothing_running() {
    let host = FakeHost::new();
    let cell = supervised(&host, record(SPEC));
    *host.fail_launches.lock() = 1;
    host.run(0).end(JobState::Failed);
    eventually("the restart's start failed", || host.plans.lock().len() == 2);
    answer(&cell, Command::Delete).expect("delete");
    std::thread::sleep(Duration::from_millis(400));
    assert!(host.log().contains(&"forgotten".to_string()));
    let running = host.runs.lock().iter().filter(|r| r.state() == JobState::Running).count();
    assert_eq!(running, 0, "no run is left");
    assert!(cell.commands.send(Command::Cancel(crossbeam_channel::bounded(1).0)).is_err(), "the supervisor is gone");
}
