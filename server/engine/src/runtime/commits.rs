//! Which tasks have acted on a checkpoint's completion. A stop with a savepoint tells every task that the savepoint
//! completed (sinks commit what it covers), and the job may stop only once each has done so: this tally lets the
//! job's handle wait for that.

use crate::control::CheckpointId;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Per watched checkpoint, which tasks committed it; and which tasks have ended (they commit nothing more).
#[derive(Default)]
pub(crate) struct Commits {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    ended: Vec<bool>,
    watched: HashMap<CheckpointId, Vec<bool>>,
}

impl Commits {
    /// Counts `tasks` tasks (once the job's tasks are known).
    pub(crate) fn set_tasks(&self, tasks: usize) {
        self.state.lock().ended = vec![false; tasks];
    }

    /// Starts counting the tasks that commit `checkpoint`.
    pub(crate) fn watch(&self, checkpoint: CheckpointId) {
        let mut state = self.state.lock();
        let tasks = state.ended.len();
        state.watched.entry(checkpoint).or_insert_with(|| vec![false; tasks]);
    }

    /// Task `task` acted on the completion of `checkpoint`.
    pub(crate) fn committed(&self, task: usize, checkpoint: CheckpointId) {
        let mut state = self.state.lock();
        if let Some(done) = state.watched.get_mut(&checkpoint).and_then(|d| d.get_mut(task)) {
            *done = true;
            self.changed.notify_all();
        }
    }

    /// Task `task` has ended.
    pub(crate) fn ended(&self, task: usize) {
        let mut state = self.state.lock();
        if let Some(ended) = state.ended.get_mut(task) {
            *ended = true;
        }
        self.changed.notify_all();
    }

    /// Waits until every task committed `checkpoint` or ended, or `timeout` passes; whether they all did.
    pub(crate) fn wait(&self, checkpoint: CheckpointId, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        loop {
            let all = match state.watched.get(&checkpoint) {
                Some(done) => done.iter().zip(&state.ended).all(|(committed, ended)| *committed || *ended),
                None => false,
            };
            if all {
                state.watched.remove(&checkpoint);
                return true;
            }
            if self.changed.wait_until(&mut state, deadline).timed_out() {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_done_once_every_task_committed_it_or_ended() {
        let commits = std::sync::Arc::new(Commits::default());
        commits.set_tasks(3);
        commits.watch(7);
        commits.committed(0, 7);
        commits.committed(1, 6);
        assert!(!commits.wait(7, Duration::from_millis(10)), "tasks 1 and 2 have not");
        commits.committed(1, 7);
        let waiter = std::thread::spawn({
            let commits = std::sync::Arc::clone(&commits);
            move || commits.wait(7, Duration::from_secs(10))
        });
        commits.ended(2);
        assert!(waiter.join().expect("waiter"), "task 2 ended: nothing more to commit");
    }
}
