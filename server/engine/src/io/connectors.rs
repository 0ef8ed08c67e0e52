//! Sources and sinks that live outside the engine (Kafka, in the `eddy-kafka` crate): the engine knows their
//! settings from the spec and asks the host's [`Connectors`] to build them, so it never links their clients.

use super::Source;
use crate::error::TaskError;
use crate::operator::Operator;
use crate::spec::{CheckpointSpec, SinkSpec, SourceSpec};

/// What a connector gets to build one subtask.
#[derive(Debug, Clone, Copy)]
pub struct ConnectorContext<'a> {
    /// The job's id (stable across restarts of the job).
    pub job_id: &'a str,
    /// The operator's uid.
    pub uid: &'a str,
    /// The subtask index.
    pub subtask: u32,
    /// The operator's parallelism.
    pub parallelism: u32,
    /// The job's checkpoint settings; none: it takes no checkpoints.
    pub checkpoints: Option<&'a CheckpointSpec>,
}

/// Builds the sources and sinks the engine does not have itself. A method returns `None` for a spec it does not
/// handle, and the deployment then fails with an error naming the connector.
pub trait Connectors: Send + Sync {
    /// A source subtask for `spec`.
    fn source(&self, cx: &ConnectorContext<'_>, spec: &SourceSpec) -> Option<Result<Box<dyn Source>, TaskError>>;

    /// A sink subtask for `spec`.
    fn sink(&self, cx: &ConnectorContext<'_>, spec: &SinkSpec) -> Option<Result<Box<dyn Operator>, TaskError>>;
}

/// The error of a deployment whose host has no connector for `what`.
pub(crate) fn missing(what: &str) -> TaskError {
    TaskError::user(format!(
        "this server has no {what} connector: it was built without Kafka (build Eddy with `--features kafka`)"
    ))
}
