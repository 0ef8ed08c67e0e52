//! Running a job: chains, subtasks, channels, threads, and the handle the server keeps.
//!
//! [`deploy`] turns a [`JobGraph`] into tasks. Operators joined by a forward edge of equal parallelism share a
//! task (a *chain*: no channel between them); every other edge becomes bounded channels, one per pair of sending
//! and receiving subtasks. Each task runs on its own thread, so a slow or looping user function never stalls
//! another job. The first task to fail cancels the rest; a supervisor thread records the outcome.

pub(crate) mod chain;
pub(crate) mod channel;
mod commits;
mod deploy;
pub mod govern;
pub(crate) mod input_task;
mod metrics;
pub mod restart;
pub(crate) mod route;
pub(crate) mod source_task;

pub use crate::control::Control;
pub use deploy::{
    DeployEnv, OperatorOverride, OverrideContext, build_single_operator, build_single_operator_from, deploy,
};
pub use metrics::{OperatorCounters, OperatorMetrics};

use crate::checkpoint::coordinator::TriggerRequest;
use crate::checkpoint::{CheckpointId, CheckpointStats};
use crate::error::TaskError;
use crate::io::{IngestHandle, OutputStream};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long to wait from `now` until processing time `at` (none: no deadline).
fn until(at: Option<i64>, now: i64) -> Option<Duration> {
    at.map(|t| Duration::from_millis(t.saturating_sub(now).max(0) as u64))
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Tasks are running.
    Running,
    /// Every source ended and every task finished.
    Finished,
    /// A task failed; see the error.
    Failed,
    /// Cancelled by a user or by shutdown.
    Canceled,
}

struct Outcome {
    state: JobState,
    error: Option<TaskError>,
}

/// State shared between a job's tasks, its supervisor and its handle.
pub(crate) struct Shared {
    outcome: Mutex<Outcome>,
    done: Condvar,
    cancel: Arc<AtomicBool>,
    cancel_requested: AtomicBool,
    /// Every task's control sender, to wake tasks that wait for input.
    controls: Mutex<Vec<crossbeam_channel::Sender<Control>>>,
    /// Checkpoint figures, kept by the coordinator.
    checkpoints: Arc<Mutex<CheckpointStats>>,
    /// Asks the coordinator for a checkpoint now; none: the job takes no checkpoints.
    trigger: Mutex<Option<crossbeam_channel::Sender<TriggerRequest>>>,
    /// Which tasks acted on the completion of a savepoint the job stops with.
    commits: Arc<commits::Commits>,
}

impl Shared {
    /// A job's shared state; `cancel` is the flag its tasks and function instances watch.
    fn new(cancel: Arc<AtomicBool>) -> Shared {
        Shared {
            outcome: Mutex::new(Outcome { state: JobState::Running, error: None }),
            done: Condvar::new(),
            cancel,
            cancel_requested: AtomicBool::new(false),
            controls: Mutex::new(Vec::new()),
            checkpoints: Arc::new(Mutex::new(CheckpointStats::default())),
            trigger: Mutex::new(None),
            commits: Arc::default(),
        }
    }

    /// Raises the stop flag and wakes every task, wherever it waits.
    fn stop_all(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        for control in self.controls.lock().iter() {
            // A task that has ended has dropped its receiver; nothing to wake.
            let _ = control.send(Control::Stop);
        }
    }

    /// Records the first failure and stops every task.
    fn fail(&self, error: TaskError) {
        let mut outcome = self.outcome.lock();
        if outcome.error.is_none() && !self.cancel.load(Ordering::SeqCst) {
            outcome.error = Some(error);
        }
        drop(outcome);
        self.stop_all();
    }

    fn complete(&self) {
        let mut outcome = self.outcome.lock();
        outcome.state = if outcome.error.is_some() {
            JobState::Failed
        } else if self.cancel_requested.load(Ordering::SeqCst) {
            JobState::Canceled
        } else {
            JobState::Finished
        };
        self.done.notify_all();
    }
}

/// The server's handle on a running job.
#[derive(Clone)]
pub struct JobHandle {
    shared: Arc<Shared>,
    metrics: Arc<Vec<Arc<OperatorMetrics>>>,
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle").field("state", &self.state()).finish()
    }
}

impl JobHandle {
    /// The job's state.
    pub fn state(&self) -> JobState {
        self.shared.outcome.lock().state
    }

    /// Why the job failed, if it did.
    pub fn error(&self) -> Option<TaskError> {
        self.shared.outcome.lock().error.clone()
    }

    /// Counters per operator, in graph order.
    pub fn operators(&self) -> Vec<(String, OperatorCounters)> {
        self.metrics.iter().map(|m| (m.uid.clone(), m.snapshot())).collect()
    }

    /// What the job's connector subtasks reported last, by operator uid.
    pub fn connector_reports(&self) -> Vec<(String, Vec<crate::io::ConnectorReport>)> {
        self.metrics.iter().map(|m| (m.uid.clone(), m.reports())).filter(|(_, r)| !r.is_empty()).collect()
    }

    /// Checkpoint figures.
    pub fn checkpoints(&self) -> CheckpointStats {
        self.shared.checkpoints.lock().clone()
    }

    /// Takes a checkpoint now (or as soon as the ones in progress allow) and waits up to `timeout` for it.
    pub fn checkpoint_now(&self, timeout: Duration) -> Result<CheckpointId, String> {
        self.trigger(None, timeout)
    }

    /// Takes a savepoint into `folder` (ending in `/`) of the job's checkpoint store and waits up to `timeout`.
    /// Nothing commits what a savepoint covers (as in Flink, a savepoint is not a restore point of the running
    /// job): outputs become visible with the next checkpoint, or with [`JobHandle::commit`] when the job stops
    /// with the savepoint.
    pub fn savepoint(&self, folder: &str, timeout: Duration) -> Result<CheckpointId, String> {
        self.trigger(Some(folder.to_string()), timeout)
    }

    /// Tells every task that `checkpoint` (a savepoint the job stops with) completed, so that sinks commit what it
    /// covers, and waits up to `timeout` until each has done so or ended. Fails if the job failed meanwhile.
    pub fn commit(&self, checkpoint: CheckpointId, timeout: Duration) -> Result<(), String> {
        self.shared.commits.watch(checkpoint);
        for control in self.shared.controls.lock().iter() {
            let _ = control.send(Control::CheckpointComplete(checkpoint));
        }
        let committed = self.shared.commits.wait(checkpoint, timeout);
        if let Some(error) = self.error() {
            return Err(format!("the job failed while committing checkpoint {checkpoint}: {error}"));
        }
        if committed { Ok(()) } else { Err(format!("checkpoint {checkpoint} was not committed within {timeout:?}")) }
    }

    /// Makes the sources read nothing more, so that a savepoint taken next is the job's last word (nothing
    /// follows its barrier); with `drain`, they first advance the watermark to the end of time, which fires every
    /// event-time window and timer. [`JobHandle::resume`] undoes it (a drained watermark stays at the end).
    pub fn suspend(&self, drain: bool) {
        for control in self.shared.controls.lock().iter() {
            let _ = control.send(Control::Suspend { drain });
        }
    }

    /// The sources read again after [`JobHandle::suspend`].
    pub fn resume(&self) {
        for control in self.shared.controls.lock().iter() {
            let _ = control.send(Control::Resume);
        }
    }

    fn trigger(&self, savepoint: Option<String>, timeout: Duration) -> Result<CheckpointId, String> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let request = TriggerRequest { reply, savepoint };
        match &*self.shared.trigger.lock() {
            Some(trigger) => trigger.send(request).map_err(|_| "the job has stopped".to_string())?,
            None => return Err("the job takes no checkpoints (its spec has no `checkpoints`)".into()),
        }
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(_) => Err(format!("no checkpoint completed within {} ms", timeout.as_millis())),
        }
    }

    /// Stops every task; the job ends as cancelled.
    pub fn cancel(&self) {
        self.shared.cancel_requested.store(true, Ordering::SeqCst);
        self.shared.stop_all();
    }

    /// Waits until the job ends or `timeout` passes; returns the state then.
    pub fn wait(&self, timeout: Duration) -> JobState {
        let mut outcome = self.shared.outcome.lock();
        if outcome.state == JobState::Running {
            self.shared.done.wait_for(&mut outcome, timeout);
        }
        outcome.state
    }
}

/// A deployed job: its handle and the HTTP endpoints of its built-in sources and sinks.
#[derive(Debug, Clone)]
pub struct RunningJob {
    /// Status, counters, cancellation.
    pub handle: JobHandle,
    /// HTTP sources by operator uid.
    pub inputs: HashMap<String, IngestHandle>,
    /// HTTP sinks by operator uid.
    pub outputs: HashMap<String, Arc<OutputStream>>,
}
