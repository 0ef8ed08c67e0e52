//! `eddy:udf/context`: the current record, time and timers of a process-function call.

use crate::bindings::context::Host;
use crate::instance::HostState;
use eddy_engine::timers::TimeDomain;

impl Host for HostState {
    fn enter(&mut self, index: u32) -> Result<(), String> {
        self.process.enter(index as usize)
    }

    fn current_key(&mut self) -> Option<Vec<u8>> {
        self.process.current_key().map(<[u8]>::to_vec)
    }

    fn current_watermark(&mut self) -> i64 {
        self.process.watermark()
    }

    fn current_processing_time(&mut self) -> i64 {
        self.process.processing_time()
    }

    fn register_event_time_timer(&mut self, timestamp: i64) -> Result<(), String> {
        self.process.register_timer(TimeDomain::EventTime, timestamp)
    }

    fn delete_event_time_timer(&mut self, timestamp: i64) -> Result<(), String> {
        self.process.delete_timer(TimeDomain::EventTime, timestamp)
    }

    fn register_processing_time_timer(&mut self, timestamp: i64) -> Result<(), String> {
        self.process.register_timer(TimeDomain::ProcessingTime, timestamp)
    }

    fn delete_processing_time_timer(&mut self, timestamp: i64) -> Result<(), String> {
        self.process.delete_timer(TimeDomain::ProcessingTime, timestamp)
    }
}
