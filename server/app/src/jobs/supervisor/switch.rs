//! An upgrade's switch, as the supervisor carries it out: a savepoint of the old run, which becomes the job's
//! restore point and is committed; the old run ends; the new modules start from the savepoint and are on
//! probation until their first checkpoint completes; if they fail first, the old modules start again from the
//! same savepoint.

use super::{Phase, Supervisor, Switch};
use crate::api::error::ApiError;
use crate::jobs::now_ms;
use crate::store::{Desired, StartFrom, UpgradeOutcome, UpgradeRecord};
use eddy_engine::TaskError;
use eddy_engine::graph::JobGraph;
use eddy_engine::runtime::JobState;
use std::collections::BTreeMap;
use std::time::Instant;

/// What an upgrade's rollback needs: the old modules and the savepoint.
pub(super) struct Rollback {
    pub(super) number: u32,
    graph: JobGraph,
    pins: BTreeMap<String, String>,
    savepoint: StartFrom,
    pub(super) switched_at: Instant,
}

impl Supervisor {
    /// Starts an upgrade: answers with its record once the switch is under way (or refused), and carries it out.
    pub(super) fn upgrade(&mut self, switch: Switch) -> Result<UpgradeRecord, ApiError> {
        let Some(run) = self.run.clone().filter(|_| self.phase() == Phase::Running) else {
            return Err(ApiError::conflict(format!("job {} is not running", self.cell.id)));
        };
        let number = switch.upgrade.number;
        {
            let mut state = self.cell.state.lock();
            state.upgrading = true;
            state.record.upgrades.push(switch.upgrade.clone());
        }
        self.host.persist(&self.cell.tenant, &self.record());
        let answer = switch.upgrade.clone();
        self.enter(Phase::Savepointing);
        let stopped_at = Instant::now();
        // Nothing may follow the savepoint's barrier: the new run takes over exactly there. Records posted to HTTP
        // inputs meanwhile wait in their logs for the new run.
        run.suspend(false);
        let view = match self.write_savepoint(run.as_ref()) {
            Ok(view) => view,
            Err(e) => {
                run.resume();
                self.enter(Phase::Running);
                self.finish_upgrade(number, |u| {
                    u.outcome = UpgradeOutcome::Failed;
                    u.reason = Some(format!("{}; the job runs on with its old modules", e.message));
                });
                return Ok(answer);
            }
        };
        self.update_upgrade(number, |u| u.savepoint = Some(view.id.clone()));
        self.go_on_from(&view);
        let committed = run.commit(view.checkpoint);
        self.enter(Phase::Switching);
        self.stop_run();
        if let Err(e) = committed {
            self.finish_upgrade(number, |u| {
                u.outcome = UpgradeOutcome::Failed;
                u.reason = Some(format!("the savepoint's output could not be committed: {e}"));
            });
            self.failed(TaskError::external(format!("upgrade {number}: {e}")));
            return Ok(answer);
        }
        let (old_graph, old_pins) = {
            let state = self.cell.state.lock();
            (state.graph.clone(), state.record.modules.clone())
        };
        let Some(old_graph) = old_graph else {
            return Err(ApiError::internal("the job has no graph"));
        };
        let from = StartFrom {
            savepoint: view.id.clone(),
            allow_non_restored_state: switch.allow_non_restored_state,
            checkpoint: Some(view.checkpoint),
        };
        let rollback = Rollback {
            number,
            graph: old_graph,
            pins: old_pins,
            savepoint: StartFrom { allow_non_restored_state: false, ..from.clone() },
            switched_at: Instant::now(),
        };
        match self.switch_to(switch.graph, switch.pins, from) {
            Ok(()) => {
                let downtime = stopped_at.elapsed().as_millis() as u64;
                self.update_upgrade(number, |u| u.downtime_ms = Some(downtime));
                self.probation = Some(Rollback { switched_at: Instant::now(), ..rollback });
                self.enter(Phase::Probation);
            }
            Err(why) => self.roll_back(rollback, why),
        }
        Ok(answer)
    }

    /// Starts the job with `graph` and `pins` from the savepoint `from`, after dropping its checkpoints (they hold
    /// the state of the run before: the savepoint does now).
    fn switch_to(&mut self, graph: JobGraph, pins: BTreeMap<String, String>, from: StartFrom) -> Result<(), String> {
        self.forget_checkpoints();
        {
            let mut state = self.cell.state.lock();
            state.graph = Some(graph);
            state.record.modules = pins;
            state.record.start_from = Some(from);
        }
        self.host.persist(&self.cell.tenant, &self.record());
        self.launch().map_err(|e| e.message)
    }

    /// An upgrade's new run failed: the old modules start again from the same savepoint.
    pub(super) fn roll_back(&mut self, rollback: Rollback, why: String) {
        tracing::warn!(
            tenant = self.cell.tenant,
            job = self.cell.id,
            "upgrade {} failed, rolling back: {why}",
            rollback.number
        );
        self.enter(Phase::Switching);
        self.stop_run();
        match self.switch_to(rollback.graph, rollback.pins, rollback.savepoint) {
            Ok(()) => {
                self.finish_upgrade(rollback.number, |u| {
                    u.outcome = UpgradeOutcome::RolledBack;
                    u.reason = Some(why);
                });
                self.enter(Phase::Running);
            }
            Err(again) => {
                self.finish_upgrade(rollback.number, |u| {
                    u.outcome = UpgradeOutcome::Failed;
                    u.reason = Some(format!("{why}; the rollback to the old modules failed too: {again}"));
                });
                self.update(|r| {
                    r.state = JobState::Failed;
                    r.error = Some(format!("the upgrade and its rollback failed: {again}"));
                    r.desired = Desired::Stopped;
                });
                self.end_outputs();
                self.enter(Phase::Stopped);
            }
        }
    }

    fn update_upgrade(&self, number: u32, change: impl FnOnce(&mut UpgradeRecord)) {
        self.update(|r| {
            if let Some(upgrade) = r.upgrades.iter_mut().find(|u| u.number == number) {
                change(upgrade);
            }
        });
    }

    /// Records an upgrade's outcome; the job takes upgrades, savepoints and stops again.
    pub(super) fn finish_upgrade(&self, number: u32, change: impl FnOnce(&mut UpgradeRecord)) {
        self.update_upgrade(number, |u| {
            change(u);
            u.finished_at = Some(now_ms());
            tracing::info!("upgrade {number}: {:?} {:?}", u.outcome, u.reason);
        });
        self.cell.state.lock().upgrading = false;
    }
}
