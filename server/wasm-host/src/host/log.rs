//! `eddy:udf/log`.

use crate::bindings::log::{Host, Level};
use crate::instance::HostState;

impl Host for HostState {
    fn write(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.log.line(level, &message);
    }
}

impl crate::bindings::types::Host for HostState {}
