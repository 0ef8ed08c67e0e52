//! Logging from user functions. Lines reach the server's log, labelled with job, operator and subtask, and the last
//! ones are shown when the function fails. A panic's message is logged before the instance traps.

use std::sync::OnceLock;

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something is wrong.
    Error,
}

static INSTALLED: OnceLock<()> = OnceLock::new();

/// Routes panic messages to the log (called by `init`).
pub fn install() {
    if INSTALLED.set(()).is_ok() {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            let location =
                info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
            write(Level::Error, &format!("panicked at {location}: {message}"));
        }));
    }
}

/// Writes a line at `level`.
pub fn write(level: Level, message: &str) {
    use crate::bindings::eddy::udf::log::{Level as L, write};
    let level = match level {
        Level::Trace => L::Trace,
        Level::Debug => L::Debug,
        Level::Info => L::Info,
        Level::Warn => L::Warn,
        Level::Error => L::Error,
    };
    write(level, message);
}

/// Writes an info line.
pub fn info(message: &str) {
    write(Level::Info, message);
}

/// Writes a warning.
pub fn warn(message: &str) {
    write(Level::Warn, message);
}

/// Writes an error line.
pub fn error(message: &str) {
    write(Level::Error, message);
}

/// Writes a debug line.
pub fn debug(message: &str) {
    write(Level::Debug, message);
}
