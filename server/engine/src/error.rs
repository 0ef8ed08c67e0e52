//! Errors that stop a task, with the domain that tells a restart policy whether retrying can help.

use std::fmt;

/// Who is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorDomain {
    /// The job's own logic or data: a UDF trapped, a record lacks a field the spec reads.
    User,
    /// Something outside Eddy: a file that cannot be read, a broker that went away.
    External,
    /// A bug in Eddy.
    Internal,
}

/// Why a task stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
pub struct TaskError {
    /// Who is at fault.
    pub domain: ErrorDomain,
    /// The operator whose code failed, if known.
    pub operator: Option<String>,
    /// What happened.
    pub message: String,
    /// The user function's last log lines before the failure, oldest first.
    pub logs: Vec<String>,
}

impl TaskError {
    /// An error caused by the job's logic or data.
    pub fn user(message: impl Into<String>) -> TaskError {
        TaskError { domain: ErrorDomain::User, operator: None, message: message.into(), logs: Vec::new() }
    }

    /// An error from outside Eddy.
    pub fn external(message: impl Into<String>) -> TaskError {
        TaskError { domain: ErrorDomain::External, ..TaskError::user(message) }
    }

    /// A bug in Eddy.
    pub fn internal(message: impl Into<String>) -> TaskError {
        TaskError { domain: ErrorDomain::Internal, ..TaskError::user(message) }
    }

    /// Names the operator, unless one is named already.
    pub fn in_operator(mut self, uid: &str) -> TaskError {
        if self.operator.is_none() {
            self.operator = Some(uid.to_string());
        }
        self
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(op) = &self.operator {
            write!(f, "operator `{op}`: ")?;
        }
        f.write_str(&self.message)?;
        if !self.logs.is_empty() {
            write!(f, "\nlast log lines:")?;
            for line in &self.logs {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

/// A failure inside a user function: a returned error, a trap, a deadline or a memory limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UdfError {
    /// What happened, including the guest's panic message when there was one.
    pub message: String,
    /// The function's last log lines, oldest first.
    pub logs: Vec<String>,
}

impl UdfError {
    /// An error with no log lines.
    pub fn new(message: impl Into<String>) -> UdfError {
        UdfError { message: message.into(), logs: Vec::new() }
    }
}

impl From<UdfError> for TaskError {
    fn from(e: UdfError) -> TaskError {
        TaskError { domain: ErrorDomain::User, operator: None, message: e.message, logs: e.logs }
    }
}
