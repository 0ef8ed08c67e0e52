//! The host side of the imports guests see. Each function reaches only what the store holds for the current
//! call: the instance's log, and (during a process-function call) the operator's [`ProcessContext`], which
//! scopes state and timers to the current key.
//!
//! [`ProcessContext`]: eddy_engine::operator::process::ProcessContext

pub(crate) mod clocks;
mod context;
mod log;
mod state;

use eddy_engine::operator::process::StateHandle;

/// The host object behind a `value-state` handle.
pub struct ValueState(pub(crate) StateHandle);
/// The host object behind a `list-state` handle.
pub struct ListState(pub(crate) StateHandle);
/// The host object behind a `map-state` handle.
pub struct MapState(pub(crate) StateHandle);
