//! Upgrading a running job's modules. Everything that can be checked is checked before the job stops: the new
//! versions exist and export what their operators call, and each process function's new module declares states
//! that fit the old module's. Then the job stops with a savepoint and starts from it with the new modules. The new
//! run is on probation until its first checkpoint completes: if it fails to start, to restore or to process its
//! first records before then, the job starts again from the same savepoint with its old modules.

use super::{Jobs, now_ms, spec_error};
use crate::api::error::ApiError;
use crate::store::{StartFrom, UpgradeOutcome, UpgradeRecord};
use axum::http::StatusCode;
use eddy_engine::graph::JobGraph;
use eddy_engine::runtime::{JobHandle, JobState};
use eddy_engine::spec::{JobSpec, ModuleRef, OperatorKind};
use eddy_engine::state::check_state_upgrade;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What an upgrade asks for.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// New module versions, `name@version` each: every operator that runs module `name` switches to that version.
    pub modules: Vec<String>,
    /// Let a new module stop using state that the old one kept (it stays in the job's state, unused).
    #[serde(default)]
    pub allow_non_restored_state: bool,
}

/// How long a new run that completes no checkpoint (and does not fail) stays on probation.
const PROBATION_LIMIT: Duration = Duration::from_secs(300);

/// The switch from the old run to the new one, decided by [`Jobs::upgrade`] and carried out in the background.
struct Switch {
    tenant: String,
    id: String,
    number: u32,
    old_handle: JobHandle,
    old_graph: JobGraph,
    old_pins: BTreeMap<String, String>,
    new_graph: JobGraph,
    new_pins: BTreeMap<String, String>,
    allow_non_restored_state: bool,
}

impl Jobs {
    /// Checks an upgrade of a running job's modules and, if it fits, starts it: the answer is the upgrade's record
    /// (outcome `in_progress`); the job's status shows how it goes on.
    pub fn upgrade(&self, tenant: &str, id: &str, request: &UpgradeRequest) -> Result<UpgradeRecord, ApiError> {
        let (record, old_graph, old_handle) = {
            let entries = self.inner.entries.lock();
            let entry = entries
                .get(tenant)
                .and_then(|j| j.get(id))
                .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
            if entry.upgrading {
                return Err(ApiError::conflict(format!("job {id} is being upgraded already")));
            }
            let running = entry
                .running
                .as_ref()
                .filter(|r| r.handle.state() == JobState::Running && !entry.restarting)
                .ok_or_else(|| ApiError::conflict(format!("job {id} is not running")))?;
            let graph = entry.graph.clone().ok_or_else(|| ApiError::conflict(format!("job {id} is not running")))?;
            (entry.record.clone(), graph, running.handle.clone())
        };
        if old_graph.checkpoints.is_none() {
            return Err(ApiError::conflict(
                "an upgrade moves the job's state through a savepoint: add `checkpoints` to the job's spec",
            ));
        }
        if request.modules.is_empty() {
            return Err(ApiError::bad_request("invalid_request", "name at least one module version (`name@version`)"));
        }
        let new_pins = self.upgraded_pins(tenant, &record.modules, &request.modules)?;
        let spec = JobSpec::parse(&record.spec).map_err(spec_error)?;
        let new_graph = JobGraph::build(&spec, &self.inner.modules.catalog(tenant, Some(&new_pins))).map_err(|e| {
            let mut error = spec_error(e);
            error.message = format!("the new modules do not fit the job: {}", error.message);
            error
        })?;
        let (refused, warnings) = self.check_states(&old_graph, &new_graph, request.allow_non_restored_state)?;
        if !refused.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "incompatible_upgrade",
                format!("the upgrade was refused and the job runs on unchanged: {}", refused.join("; ")),
            )
            .with_details(refused.into_iter().map(serde_json::Value::String).collect()));
        }
        let upgrade = {
            let mut entries = self.inner.entries.lock();
            let entry = entries
                .get_mut(tenant)
                .and_then(|j| j.get_mut(id))
                .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
            if entry.upgrading {
                return Err(ApiError::conflict(format!("job {id} is being upgraded already")));
            }
            entry.upgrading = true;
            let upgrade = UpgradeRecord {
                number: entry.record.upgrades.len() as u32 + 1,
                requested_at: now_ms(),
                modules: request.modules.clone(),
                from: record.modules.clone(),
                to: new_pins.clone(),
                outcome: UpgradeOutcome::InProgress,
                reason: None,
                warnings,
                savepoint: None,
                downtime_ms: None,
                finished_at: None,
            };
            entry.record.upgrades.push(upgrade.clone());
            upgrade
        };
        self.persist(tenant, id);
        let switch = Switch {
            tenant: tenant.to_string(),
            id: id.to_string(),
            number: upgrade.number,
            old_handle,
            old_graph,
            old_pins: record.modules,
            new_graph,
            new_pins,
            allow_non_restored_state: request.allow_non_restored_state,
        };
        let jobs = self.clone();
        let spawned = std::thread::Builder::new().name(format!("eddy-upgrade-{id}")).spawn(move || jobs.switch(switch));
        if let Err(e) = spawned {
            self.finish_upgrade(tenant, id, upgrade.number, |u| {
                u.outcome = UpgradeOutcome::Failed;
                u.reason = Some(format!("cannot start the upgrade: {e}"));
            });
            return Err(ApiError::internal(format!("cannot start the upgrade: {e}")));
        }
        Ok(upgrade)
    }

    /// The job's module pins with every reference to an upgraded module's name pointing at its new version.
    fn upgraded_pins(
        &self,
        tenant: &str,
        pins: &BTreeMap<String, String>,
        wanted: &[String],
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let uploaded = self.inner.modules.list(tenant);
        let mut new_pins = pins.clone();
        for text in wanted {
            let Ok(ModuleRef::Named { name, version: Some(version) }) = ModuleRef::parse(text) else {
                return Err(ApiError::bad_request(
                    "invalid_module_version",
                    format!("`{text}` is not `name@version`: an upgrade names exact versions"),
                ));
            };
            let target = uploaded.iter().find(|m| m.name == name && m.version == version).ok_or_else(|| {
                ApiError::bad_request("unknown_module", format!("there is no module {name}@{version}"))
            })?;
            let mut used = false;
            for (written, hash) in new_pins.iter_mut() {
                let named = match ModuleRef::parse(written) {
                    Ok(ModuleRef::Named { name: n, .. }) => n == name,
                    // A reference by hash belongs to the module that was uploaded with those bytes.
                    _ => uploaded.iter().any(|m| &m.hash == hash && m.name == name),
                };
                if named {
                    hash.clone_from(&target.hash);
                    used = true;
                }
            }
            if !used {
                return Err(ApiError::bad_request(
                    "module_not_in_job",
                    format!(
                        "the job does not use module `{name}`; it uses {}",
                        pins.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        Ok(new_pins)
    }

    /// Compares the states each process function's old and new module declare: what is refused, and warnings.
    fn check_states(
        &self,
        old: &JobGraph,
        new: &JobGraph,
        allow_non_restored_state: bool,
    ) -> Result<(Vec<String>, Vec<String>), ApiError> {
        let (mut refused, mut warnings) = (Vec::new(), Vec::new());
        let spec_ttl = old.state_ttl.is_some() && new.state_ttl.is_some();
        for (before, after) in old.nodes.iter().zip(&new.nodes) {
            let (
                OperatorKind::Process(was) | OperatorKind::Connect(was),
                OperatorKind::Process(now) | OperatorKind::Connect(now),
            ) = (&before.kind, &after.kind)
            else {
                continue;
            };
            let (ModuleRef::Hash(was), ModuleRef::Hash(now)) = (&was.module, &now.module) else { continue };
            if was == now {
                continue;
            }
            let load = |hash: &str| {
                self.inner
                    .modules
                    .load(hash)
                    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_load_module", e.to_string()))
            };
            let (was, now) = (load(was)?, load(now)?);
            let verdict = check_state_upgrade(
                was.declared_states.as_deref(),
                now.declared_states.as_deref(),
                spec_ttl,
                allow_non_restored_state,
            );
            let uid = &before.uid;
            refused.extend(verdict.refused.into_iter().map(|r| format!("operator `{uid}`: {r}")));
            warnings.extend(verdict.warnings.into_iter().map(|w| format!("operator `{uid}`: {w}")));
        }
        Ok((refused, warnings))
    }

    /// Carries out an upgrade that passed its checks: savepoint, switch, probation, and rollback if needed.
    fn switch(&self, s: Switch) {
        let (tenant, id) = (s.tenant.as_str(), s.id.as_str());
        let stopped_at = Instant::now();
        // Nothing may follow the savepoint's barrier: the new run takes over exactly there. Records posted to HTTP
        // inputs meanwhile wait in their logs for the new run.
        s.old_handle.suspend(false);
        let record = self.inner.entries.lock().get(tenant).and_then(|j| j.get(id)).map(|e| e.record.clone());
        let Some(record) = record else { return };
        let savepoint = match self.write_savepoint(tenant, id, &s.old_handle, &record) {
            Ok(view) => view.id,
            Err(e) => {
                s.old_handle.resume();
                return self.finish_upgrade(tenant, id, s.number, |u| {
                    u.outcome = UpgradeOutcome::Failed;
                    u.reason = Some(format!("{}; the job runs on with its old modules", e.message));
                });
            }
        };
        self.update_upgrade(tenant, id, s.number, |u| u.savepoint = Some(savepoint.clone()));
        self.bump_generation(tenant, id);
        s.old_handle.cancel();
        s.old_handle.wait(Duration::from_secs(30));

        let from = StartFrom { savepoint: savepoint.clone(), allow_non_restored_state: s.allow_non_restored_state };
        let failure = match self.start_with(tenant, id, s.new_graph, s.new_pins, from) {
            Err(why) => Some(why),
            Ok(handle) => {
                let downtime = stopped_at.elapsed().as_millis() as u64;
                self.update_upgrade(tenant, id, s.number, |u| u.downtime_ms = Some(downtime));
                match self.probation(tenant, id, &handle) {
                    Probation::Passed(warning) => {
                        self.finish_upgrade(tenant, id, s.number, |u| {
                            u.outcome = UpgradeOutcome::Upgraded;
                            u.warnings.extend(warning);
                        });
                        return self.watch(tenant, id, handle);
                    }
                    Probation::Canceled => {
                        handle.cancel();
                        return self.finish_upgrade(tenant, id, s.number, |u| u.outcome = UpgradeOutcome::Canceled);
                    }
                    Probation::Failed(why) => {
                        self.bump_generation(tenant, id);
                        handle.cancel();
                        handle.wait(Duration::from_secs(30));
                        Some(why)
                    }
                }
            }
        };
        let Some(why) = failure else { return };
        tracing::warn!(tenant, job = id, "upgrade {} failed, rolling back: {why}", s.number);
        // The failed run's checkpoints (if any) hold the new modules' view: the old ones start from the savepoint.
        let back = StartFrom { savepoint, allow_non_restored_state: false };
        match self.start_with(tenant, id, s.old_graph, s.old_pins, back) {
            Ok(handle) => {
                self.finish_upgrade(tenant, id, s.number, |u| {
                    u.outcome = UpgradeOutcome::RolledBack;
                    u.reason = Some(why);
                });
                self.watch(tenant, id, handle);
            }
            Err(again) => self.finish_upgrade(tenant, id, s.number, |u| {
                u.outcome = UpgradeOutcome::Failed;
                u.reason = Some(format!("{why}; the rollback to the old modules failed too: {again}"));
            }),
        }
    }

    /// Starts a run of the job with `graph` and `pins` from `from`, after dropping the job's own checkpoints
    /// (they belong to the run before): its handle, or why it did not start.
    fn start_with(
        &self,
        tenant: &str,
        id: &str,
        graph: JobGraph,
        pins: BTreeMap<String, String>,
        from: StartFrom,
    ) -> Result<JobHandle, String> {
        self.forget_checkpoints(tenant, id);
        {
            let mut entries = self.inner.entries.lock();
            let entry = entries.get_mut(tenant).and_then(|j| j.get_mut(id)).ok_or("the job was deleted")?;
            entry.graph = Some(graph);
            entry.record.modules = pins;
            entry.record.start_from = Some(from);
        }
        self.persist(tenant, id);
        if !self.should_run(tenant, id) {
            return Err("the job was cancelled".into());
        }
        let (graph, running) = self.deploy(tenant, id).map_err(|e| e.message)?;
        let handle = running.handle.clone();
        let mut entries = self.inner.entries.lock();
        let entry = entries.get_mut(tenant).and_then(|j| j.get_mut(id)).ok_or("the job was deleted")?;
        entry.graph = Some(graph);
        entry.running = Some(running);
        entry.record.state = JobState::Running;
        entry.record.error = None;
        Ok(handle)
    }

    /// Follows a new run until its first checkpoint completes.
    fn probation(&self, tenant: &str, id: &str, handle: &JobHandle) -> Probation {
        let since = Instant::now();
        loop {
            let state = handle.wait(Duration::from_millis(20));
            if state != JobState::Running {
                if !self.should_run(tenant, id) {
                    return Probation::Canceled;
                }
                let cause = handle.error().map_or_else(|| format!("the new run ended ({state:?})"), |e| e.to_string());
                return Probation::Failed(format!("the new modules failed: {cause}"));
            }
            if !self.should_run(tenant, id) {
                return Probation::Canceled;
            }
            if handle.checkpoints().completed > 0 {
                return Probation::Passed(None);
            }
            if since.elapsed() >= PROBATION_LIMIT {
                return Probation::Passed(Some(format!(
                    "the new run completed no checkpoint in its first {} s; it was kept",
                    PROBATION_LIMIT.as_secs()
                )));
            }
        }
    }

    fn bump_generation(&self, tenant: &str, id: &str) {
        if let Some(entry) = self.inner.entries.lock().get_mut(tenant).and_then(|j| j.get_mut(id)) {
            entry.generation += 1;
        }
    }

    fn update_upgrade(&self, tenant: &str, id: &str, number: u32, change: impl FnOnce(&mut UpgradeRecord)) {
        if let Some(entry) = self.inner.entries.lock().get_mut(tenant).and_then(|j| j.get_mut(id))
            && let Some(upgrade) = entry.record.upgrades.iter_mut().find(|u| u.number == number)
        {
            change(upgrade);
        }
        self.persist(tenant, id);
    }

    /// Records an upgrade's outcome; the job takes upgrades, savepoints and stops again.
    fn finish_upgrade(&self, tenant: &str, id: &str, number: u32, change: impl FnOnce(&mut UpgradeRecord)) {
        self.update_upgrade(tenant, id, number, |u| {
            change(u);
            u.finished_at = Some(now_ms());
        });
        if let Some(entry) = self.inner.entries.lock().get_mut(tenant).and_then(|j| j.get_mut(id)) {
            entry.upgrading = false;
            if let Some(upgrade) = entry.record.upgrades.iter().find(|u| u.number == number) {
                tracing::info!(tenant, job = id, "upgrade {number}: {:?} {:?}", upgrade.outcome, upgrade.reason);
            }
        }
    }
}

/// How a new run's probation ended.
enum Probation {
    /// It completed a checkpoint (or ran long enough without one: the warning says so).
    Passed(Option<String>),
    /// It failed first.
    Failed(String),
    /// The job was cancelled meanwhile.
    Canceled,
}
