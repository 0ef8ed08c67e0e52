//! Upgrading a running job's modules. Everything that can be checked is checked here, before the job stops: the
//! new versions exist and export what their operators call, and each process function's new module declares
//! states that fit the old module's. The job's supervisor then carries the switch out (see `supervisor`): a
//! savepoint, the new modules from it, probation until the first checkpoint, and a rollback to the old modules
//! from the same savepoint if the new run fails first.

use super::supervisor::{Command, Phase, Switch};
use super::{Jobs, answer, now_ms, spec_error};
use crate::api::error::ApiError;
use crate::store::{UpgradeOutcome, UpgradeRecord};
use axum::http::StatusCode;
use eddy_engine::graph::JobGraph;
use eddy_engine::spec::{JobSpec, ModuleRef, OperatorKind};
use eddy_engine::state::check_state_upgrade;
use std::collections::BTreeMap;

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

impl Jobs {
    /// Checks an upgrade of a running job's modules and, if it fits, starts it: the answer is the upgrade's record
    /// (outcome `in_progress`, or `failed` if the savepoint failed); the job's status shows how it goes on.
    pub fn upgrade(&self, tenant: &str, id: &str, request: &UpgradeRequest) -> Result<UpgradeRecord, ApiError> {
        let cell = self.cell(tenant, id)?;
        let (record, old_graph) = {
            let state = cell.state.lock();
            if state.upgrading {
                return Err(ApiError::conflict(format!("job {id} is being upgraded already")));
            }
            if state.phase != Phase::Running {
                return Err(ApiError::conflict(format!("job {id} is not running")));
            }
            let graph = state.graph.clone().ok_or_else(|| ApiError::conflict(format!("job {id} is not running")))?;
            (state.record.clone(), graph)
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
        let upgrade = UpgradeRecord {
            number: record.upgrades.len() as u32 + 1,
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
        let switch = Switch {
            upgrade,
            graph: new_graph,
            pins: new_pins,
            allow_non_restored_state: request.allow_non_restored_state,
        };
        answer(&cell, |reply| Command::Upgrade(Box::new(switch), reply))
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
}
