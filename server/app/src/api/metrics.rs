//! `GET /metrics`: Prometheus text exposition of what each tenant uses and what each job's operators do. In open
//! mode anyone on the loopback may read it; with tenants configured it takes the admin token, since it names every
//! tenant.

use super::error::ApiError;
use super::{AppState, bearer, is_admin};
use crate::config::DEFAULT_TENANT;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type ByTenant = Vec<(String, String)>;

fn tenant_label(tenant: &str) -> ByTenant {
    vec![("tenant".to_string(), tenant.to_string())]
}

/// The server's metrics in Prometheus' text format: each tenant's use, each operator's counters.
#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (status = 200, description = "Metrics", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "Tenants are configured and this is not the admin token", body = super::error::ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    let config = &state.config;
    if !config.open_mode() && !is_admin(config, bearer(&headers)) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "/metrics takes the admin token"));
    }
    let mut tenants: Vec<String> = config.tenants.iter().map(|t| t.name.clone()).collect();
    if config.open_mode() {
        tenants.push(DEFAULT_TENANT.to_string());
    }

    let jobs = Family::<ByTenant, Gauge>::default();
    let subtasks = Family::<ByTenant, Gauge>::default();
    let memory = Family::<ByTenant, Gauge>::default();
    let module_bytes = Family::<ByTenant, Gauge>::default();
    let state_bytes = Family::<ByTenant, Gauge>::default();
    let cpu = Family::<ByTenant, Counter<f64, AtomicU64>>::default();
    let records_in = Family::<ByTenant, Counter>::default();
    let records_out = Family::<ByTenant, Counter>::default();
    let quota_jobs = Family::<ByTenant, Gauge>::default();
    let quota_memory = Family::<ByTenant, Gauge>::default();
    for tenant in &tenants {
        let quota = state.modules.quotas().of(tenant);
        quota_jobs.get_or_create(&tenant_label(tenant)).set(i64::from(quota.jobs));
        quota_memory.get_or_create(&tenant_label(tenant)).set((quota.memory_mb << 20) as i64);
        let used = state.jobs.tenant_use(tenant);
        let label = tenant_label(tenant);
        jobs.get_or_create(&label).set(used.jobs as i64);
        subtasks.get_or_create(&label).set(used.parallelism as i64);
        memory.get_or_create(&label).set(used.memory_bytes as i64);
        state_bytes.get_or_create(&label).set(used.state_bytes as i64);
        let modules: u64 = state.modules.list(tenant).iter().map(|m| m.size).sum();
        module_bytes.get_or_create(&label).set(modules as i64);
        cpu.get_or_create(&label).inc_by(used.guest_cpu_seconds);
        records_in.get_or_create(&label).inc_by(used.records_in);
        records_out.get_or_create(&label).inc_by(used.records_out);
    }

    let operator_in = Family::<ByTenant, Counter>::default();
    let operator_out = Family::<ByTenant, Counter>::default();
    let late = Family::<ByTenant, Counter>::default();
    let backpressured = Family::<ByTenant, Counter<f64, AtomicU64>>::default();
    let watermark = Family::<ByTenant, Gauge<f64, AtomicU64>>::default();
    for tenant in &tenants {
        for (job, operator, counters) in state.jobs.operator_counters(tenant) {
            let labels = vec![
                ("tenant".to_string(), tenant.clone()),
                ("job".to_string(), job),
                ("operator".to_string(), operator),
            ];
            operator_in.get_or_create(&labels).inc_by(counters.records_in);
            operator_out.get_or_create(&labels).inc_by(counters.records_out);
            late.get_or_create(&labels).inc_by(counters.late_records_dropped);
            backpressured.get_or_create(&labels).inc_by(counters.backpressured_ms as f64 / 1000.0);
            if let Some(w) = counters.watermark {
                watermark.get_or_create(&labels).set(w as f64 / 1000.0);
            }
        }
    }

    // Jobs: restarts and checkpoints (Flink's numRestarts, numberOfCompletedCheckpoints, lastCheckpointDuration...).
    let restarts = Family::<ByTenant, Counter>::default();
    let completed = Family::<ByTenant, Counter>::default();
    let failed = Family::<ByTenant, Counter>::default();
    let last_duration = Family::<ByTenant, Gauge<f64, AtomicU64>>::default();
    let last_size = Family::<ByTenant, Gauge>::default();
    for tenant in &tenants {
        for (job, restart_count, checkpoints) in state.jobs.job_counters(tenant) {
            let labels = vec![("tenant".to_string(), tenant.clone()), ("job".to_string(), job)];
            restarts.get_or_create(&labels).inc_by(restart_count);
            let Some(checkpoints) = checkpoints else { continue };
            completed.get_or_create(&labels).inc_by(checkpoints.completed);
            failed.get_or_create(&labels).inc_by(checkpoints.failed);
            if let Some(ms) = checkpoints.latest_duration_ms {
                last_duration.get_or_create(&labels).set(ms as f64 / 1000.0);
            }
            if let Some(bytes) = checkpoints.latest_bytes {
                last_size.get_or_create(&labels).set(bytes as i64);
            }
        }
    }

    // Connectors: a Kafka source's partitions, an exactly-once Kafka sink's transactions.
    let partition_offset = Family::<ByTenant, Gauge>::default();
    let partition_committed = Family::<ByTenant, Gauge>::default();
    let partition_lag = Family::<ByTenant, Gauge>::default();
    let uncommitted = Family::<ByTenant, Gauge>::default();
    let commit_seconds = Family::<ByTenant, Gauge<f64, AtomicU64>>::default();
    let commits = Family::<ByTenant, Counter>::default();
    for tenant in &tenants {
        for (job, operator, reports) in state.jobs.connector_reports(tenant) {
            let labels = |extra: &[(&str, String)]| {
                let mut labels = vec![
                    ("tenant".to_string(), tenant.clone()),
                    ("job".to_string(), job.clone()),
                    ("operator".to_string(), operator.clone()),
                ];
                labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
                labels
            };
            for report in &reports {
                for p in &report.partitions {
                    let labels = labels(&[("topic", p.topic.clone()), ("partition", p.partition.to_string())]);
                    if let Some(offset) = p.current_offset {
                        partition_offset.get_or_create(&labels).set(offset as i64);
                    }
                    if let Some(offset) = p.committed_offset {
                        partition_committed.get_or_create(&labels).set(offset as i64);
                    }
                    if let Some(lag) = p.lag {
                        partition_lag.get_or_create(&labels).set(lag as i64);
                    }
                }
                if let Some(t) = &report.transactions {
                    let labels = labels(&[("subtask", report.subtask.to_string())]);
                    uncommitted.get_or_create(&labels).set(t.uncommitted_records as i64);
                    commits.get_or_create(&labels).inc_by(t.commits);
                    if let Some(ms) = t.last_commit_ms {
                        commit_seconds.get_or_create(&labels).set(ms as f64 / 1000.0);
                    }
                }
            }
        }
    }

    let mut registry = Registry::with_prefix("eddy");
    registry.register("tenant_jobs", "Running jobs of a tenant", jobs);
    registry.register("tenant_subtasks", "Subtasks of a tenant's running jobs", subtasks);
    registry.register("tenant_guest_memory_bytes", "Guest memory a tenant's function instances hold", memory);
    registry.register("tenant_module_bytes", "Bytes of a tenant's uploaded modules", module_bytes);
    registry.register("tenant_state_bytes", "Keyed state a tenant's jobs hold", state_bytes);
    registry.register("tenant_guest_cpu_seconds", "CPU time a tenant's functions have used", cpu);
    registry.register("tenant_records_in", "Records a tenant's sources have read", records_in);
    registry.register("tenant_records_out", "Records a tenant's sinks have written", records_out);
    registry.register("tenant_quota_jobs", "The most jobs a tenant may run at once", quota_jobs);
    registry.register("tenant_quota_memory_bytes", "The most guest memory a tenant's instances may hold", quota_memory);
    registry.register("job_restarts", "Times a job restarted after a failure (Flink's numRestarts)", restarts);
    registry.register(
        "job_checkpoints_completed",
        "Checkpoints this run of a job completed (Flink's numberOfCompletedCheckpoints)",
        completed,
    );
    registry.register(
        "job_checkpoints_failed",
        "Checkpoints this run of a job failed (Flink's numberOfFailedCheckpoints)",
        failed,
    );
    registry.register(
        "job_last_checkpoint_duration_seconds",
        "How long a job's newest checkpoint took (Flink's lastCheckpointDuration)",
        last_duration,
    );
    registry.register(
        "job_last_checkpoint_size_bytes",
        "Bytes a job's newest checkpoint wrote (Flink's lastCheckpointSize)",
        last_size,
    );
    registry.register("operator_num_records_in", "Records into an operator (Flink's numRecordsIn)", operator_in);
    registry.register("operator_num_records_out", "Records out of an operator (Flink's numRecordsOut)", operator_out);
    registry.register("operator_late_records_dropped", "Late records a window dropped", late);
    registry.register(
        "operator_back_pressured_seconds",
        "Time an operator spent waiting on full output channels (Flink's backPressuredTimeMsPerSecond, as a rate)",
        backpressured,
    );
    registry.register(
        "operator_current_watermark_seconds",
        "An operator's event-time watermark, Unix seconds (Flink's currentInputWatermark)",
        watermark,
    );
    registry.register(
        "source_partition_current_offset",
        "The next offset a source reads in a partition",
        partition_offset,
    );
    registry.register(
        "source_partition_committed_offset",
        "The offset committed to the broker with the newest completed checkpoint",
        partition_committed,
    );
    registry.register(
        "source_partition_lag",
        "Records between a source's offset and the partition's end",
        partition_lag,
    );
    registry.register(
        "sink_uncommitted_records",
        "Records an exactly-once sink wrote in transactions not yet committed",
        uncommitted,
    );
    registry.register("sink_last_commit_seconds", "How long an exactly-once sink's last commit took", commit_seconds);
    registry.register("sink_transactions_committed", "Transactions an exactly-once sink committed", commits);
    let mut text = String::new();
    encode(&mut text, &registry).map_err(|e| ApiError::internal(format!("cannot encode metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text))
}
