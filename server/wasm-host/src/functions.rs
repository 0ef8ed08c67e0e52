//! Wasm instances as the engine's function traits. Every call sends one batch in the flat encoding and checks
//! what comes back before the engine sees it.

use crate::bindings::{
    aggregator, filter, flat_mapper, key_selector, mapper, processor, reducer, timestamp_assigner, types,
    window_processor,
};
use crate::compile::{CompiledModule, WasmRuntime};
use crate::instance::{Accounts, Instance};
use crate::limits::Limits;
use eddy_codec::Batch;
use eddy_engine::function::*;
use eddy_engine::operator::process::{FiredTimer, ProcessContext};
use eddy_engine::spec::{ModuleRef, UdfSpec};
use eddy_engine::timers::TimeDomain;
use eddy_engine::window::Window;
use eddy_engine::{TaskError, UdfError};
use std::sync::Arc;

/// Creates Wasm function instances for jobs.
#[derive(Debug, Clone)]
pub struct WasmFunctions {
    runtime: Arc<WasmRuntime>,
    limits: Limits,
    accounts: Accounts,
}

impl WasmFunctions {
    /// Functions from modules loaded into `runtime`, each instance limited by `limits`.
    pub fn new(runtime: Arc<WasmRuntime>, limits: Limits) -> WasmFunctions {
        WasmFunctions { runtime, limits, accounts: Accounts::default() }
    }

    /// Accounts every instance's memory and CPU time to `accounts` (a job's budget, its tenant's meter).
    pub fn with_accounts(mut self, accounts: Accounts) -> WasmFunctions {
        self.accounts = accounts;
        self
    }

    fn instance(
        &self,
        udf: &UdfSpec,
        kind: UdfKind,
        scope: &FunctionScope,
    ) -> Result<(Arc<CompiledModule>, Instance), TaskError> {
        let ModuleRef::Hash(hash) = &udf.module else {
            return Err(TaskError::internal(format!("module `{}` was not resolved to a hash", udf.module)));
        };
        let module =
            self.runtime.get(hash).ok_or_else(|| TaskError::internal(format!("module sha256:{hash} is not loaded")))?;
        if !module.kinds.contains(&kind) {
            return Err(TaskError::user(format!("module sha256:{hash} does not export a {} function", kind.name())));
        }
        let instance = Instance::new(&module, &self.limits, &self.accounts, scope, &udf.config)
            .map_err(|e| TaskError::from(e).in_operator(&scope.operator))?;
        Ok((module, instance))
    }
}

fn missing(kind: UdfKind) -> TaskError {
    TaskError::internal(format!("the module lost its {} export", kind.name()))
}

fn load_err(e: wasmtime::Error) -> TaskError {
    TaskError::internal(format!("cannot load an export: {e:#}"))
}

fn returned(what: &str) -> impl Fn(eddy_codec::DecodeError) -> UdfError + '_ {
    move |e| UdfError::new(format!("the function returned {what} that is not a valid batch: {e}"))
}

struct Map {
    instance: Instance,
    guest: mapper::Guest,
    wire: Vec<u8>,
}

impl MapFunction for Map {
    fn map(&mut self, input: &Batch) -> Result<Batch, UdfError> {
        let (guest, wire) = (&self.guest, input.wire(&mut self.wire));
        let out = self.instance.call(|s| guest.call_map_batch(s, wire))?;
        Batch::from_wire(out).map_err(returned("records"))
    }
}

struct Filter {
    instance: Instance,
    guest: filter::Guest,
    wire: Vec<u8>,
}

impl FilterFunction for Filter {
    fn filter(&mut self, input: &Batch, keep: &mut Vec<bool>) -> Result<(), UdfError> {
        let (guest, wire) = (&self.guest, input.wire(&mut self.wire));
        *keep = self.instance.call(|s| guest.call_filter_batch(s, wire))?;
        Ok(())
    }
}

struct FlatMap {
    instance: Instance,
    guest: flat_mapper::Guest,
    wire: Vec<u8>,
}

impl FlatMapFunction for FlatMap {
    fn flat_map(&mut self, input: &Batch) -> Result<Batch, UdfError> {
        let (guest, wire) = (&self.guest, input.wire(&mut self.wire));
        let out = self.instance.call(|s| guest.call_flat_map_batch(s, wire))?;
        Batch::from_wire(out).map_err(returned("records"))
    }
}

struct KeySelector {
    instance: Instance,
    guest: key_selector::Guest,
    wire: Vec<u8>,
}

impl KeySelectorFunction for KeySelector {
    fn select_keys(&mut self, input: &Batch, keys: &mut Batch) -> Result<(), UdfError> {
        let (guest, wire) = (&self.guest, input.wire(&mut self.wire));
        let out = self.instance.call(|s| guest.call_select_keys(s, wire))?;
        *keys = Batch::from_wire(out).map_err(returned("keys"))?;
        Ok(())
    }
}

struct TimestampAssigner {
    instance: Instance,
    guest: timestamp_assigner::Guest,
    wire: Vec<u8>,
}

impl TimestampAssignerFunction for TimestampAssigner {
    fn timestamps(&mut self, input: &Batch, timestamps: &mut Vec<i64>) -> Result<(), UdfError> {
        let (guest, wire) = (&self.guest, input.wire(&mut self.wire));
        *timestamps = self.instance.call(|s| guest.call_extract_timestamps(s, wire))?;
        Ok(())
    }
}

/// Moves what a function returned into the engine's outputs.
fn take_outputs(outputs: types::Outputs, into: &mut Outputs) -> Result<(), UdfError> {
    let main = Batch::from_wire(outputs.main).map_err(returned("main output"))?;
    into.main.extend_from(&main);
    for side in outputs.side {
        if !eddy_engine_tag_ok(&side.tag) {
            return Err(UdfError::new(format!("side output tag `{}` is not a valid name", side.tag)));
        }
        let records = Batch::from_wire(side.records).map_err(returned("side output"))?;
        match into.side.iter_mut().find(|(t, _)| *t == side.tag) {
            Some((_, batch)) => batch.extend_from(&records),
            None => into.side.push((side.tag, records)),
        }
    }
    Ok(())
}

fn eddy_engine_tag_ok(tag: &str) -> bool {
    !tag.is_empty() && tag.len() <= 100 && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

struct Process {
    instance: Instance,
    guest: processor::Guest,
    wire: Vec<u8>,
}

impl Process {
    /// Runs `call` with the operator's context moved into the store, so host functions reach it.
    fn with_context<R>(
        &mut self,
        ctx: &mut ProcessContext,
        call: impl FnOnce(&mut Instance, &processor::Guest, &Vec<u8>) -> Result<R, UdfError>,
    ) -> Result<R, UdfError> {
        std::mem::swap(ctx, &mut self.instance.store.data_mut().process);
        let result = call(&mut self.instance, &self.guest, &self.wire);
        std::mem::swap(ctx, &mut self.instance.store.data_mut().process);
        result
    }
}

impl ProcessFunction for Process {
    fn process(&mut self, input: usize, records: &Batch, ctx: &mut ProcessContext) -> Result<(), UdfError> {
        records.write_wire(&mut self.wire);
        let outputs = self
            .with_context(ctx, |instance, guest, wire| instance.call(|s| guest.call_process(s, input as u32, wire)))?;
        take_outputs(outputs, &mut ctx.out)
    }

    fn on_timers(&mut self, timers: &[FiredTimer], ctx: &mut ProcessContext) -> Result<(), UdfError> {
        let fired: Vec<processor::FiredTimer> = timers
            .iter()
            .map(|t| processor::FiredTimer {
                key: t.key.clone(),
                timestamp: t.timestamp,
                domain: match t.domain {
                    TimeDomain::EventTime => types::TimeDomain::EventTime,
                    TimeDomain::ProcessingTime => types::TimeDomain::ProcessingTime,
                },
            })
            .collect();
        let outputs =
            self.with_context(ctx, |instance, guest, _| instance.call(|s| guest.call_on_timers(s, &fired)))?;
        take_outputs(outputs, &mut ctx.out)
    }
}

struct Aggregate {
    instance: Instance,
    guest: aggregator::Guest,
    wires: [Vec<u8>; 2],
}

impl AggregateFunction for Aggregate {
    fn create_accumulator(&mut self) -> Result<Vec<u8>, UdfError> {
        let guest = &self.guest;
        self.instance.call(|s| guest.call_create_accumulator(s))
    }

    fn add(&mut self, accumulators: &Batch, inputs: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
        let [accs, ins] = &mut self.wires;
        let (guest, accs, ins) = (&self.guest, accumulators.wire(accs), inputs.wire(ins));
        let out = self.instance.call(|s| guest.call_add(s, accs, ins, targets))?;
        Batch::from_wire(out).map_err(returned("accumulators"))
    }

    fn merge(&mut self, accumulators: &Batch, others: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
        let [accs, scratch] = &mut self.wires;
        let (guest, accs, others) = (&self.guest, accumulators.wire(accs), others.wire(scratch));
        let out = self.instance.call(|s| guest.call_merge(s, accs, others, targets))?;
        Batch::from_wire(out).map_err(returned("accumulators"))
    }

    fn get_result(&mut self, accumulators: &Batch) -> Result<Batch, UdfError> {
        let (guest, accs) = (&self.guest, accumulators.wire(&mut self.wires[0]));
        let out = self.instance.call(|s| guest.call_get_result(s, accs))?;
        Batch::from_wire(out).map_err(returned("results"))
    }
}

struct Reduce {
    instance: Instance,
    guest: reducer::Guest,
    wires: [Vec<u8>; 2],
}

impl ReduceFunction for Reduce {
    fn reduce(&mut self, accumulators: &Batch, inputs: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
        let [accs, ins] = &mut self.wires;
        let (guest, accs, ins) = (&self.guest, accumulators.wire(accs), inputs.wire(ins));
        let out = self.instance.call(|s| guest.call_reduce(s, accs, ins, targets))?;
        Batch::from_wire(out).map_err(returned("records"))
    }
}

struct ProcessWindow {
    instance: Instance,
    guest: window_processor::Guest,
}

impl ProcessWindowFunction for ProcessWindow {
    fn process_windows(&mut self, windows: &[WindowContents], out: &mut Outputs) -> Result<(), UdfError> {
        let contents: Vec<window_processor::WindowContents> = windows
            .iter()
            .map(|w| window_processor::WindowContents {
                key: w.key.clone(),
                window: match w.window {
                    Window::Time { start, end } => types::Window::Time(types::TimeWindow { start, end }),
                    Window::Global => types::Window::Global,
                },
                elements: w.elements.to_wire(),
            })
            .collect();
        let guest = &self.guest;
        let outputs = self.instance.call(|s| guest.call_process_windows(s, &contents))?;
        take_outputs(outputs, out)
    }
}

impl FunctionFactory for WasmFunctions {
    fn map(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn MapFunction>, TaskError> {
        let (module, mut instance) = self.instance(udf, UdfKind::Map, scope)?;
        let indices = module.exports.mapper.as_ref().ok_or_else(|| missing(UdfKind::Map))?;
        let guest = indices.load(&mut instance.store, &instance.instance).map_err(load_err)?;
        Ok(Box::new(Map { instance, guest, wire: Vec::new() }))
    }

    fn filter(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn FilterFunction>, TaskError> {
        let (module, mut instance) = self.instance(udf, UdfKind::Filter, scope)?;
        let indices = module.exports.filter.as_ref().ok_or_else(|| missing(UdfKind::Filter))?;
        let guest = indices.load(&mut instance.store, &instance.instance).map_err(load_err)?;
        Ok(Box::new(Filter { instance, guest, wire: Vec::new() }))
    }

    fn flat_map(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn FlatMapFunction>, TaskError> {
        let (module, mut instance) = self.instance(udf, UdfKind::FlatMap, scope)?;
        let indices = module.exports.flat_mapper.as_ref().ok_or_else(|| missing(UdfKind::FlatMap))?;
        let guest = indices.load(&mut instance.store, &instance.instance).map_err(load_err)?;
        Ok(Box::new(FlatMap { instance, guest, wire: Vec::new() }))
    }

    fn key_selector(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn KeySelectorFunction>, TaskError> {
        let (module, mut instance) = self.instance(udf, UdfKind::KeySelector, scope)?;
        let indices = module.exports.key_selector.as_ref().ok_or_else(|| missing(UdfKind::KeySelector))?;
        let guest = indices.load(&mut instance.store, &instance.instance).map_err(load_err)?;
        Ok(Box::new(KeySelector { instance, guest, wire: Vec::new() }))
    }

    fn timestamp_assigner(
        &self,
        udf: &UdfSpec,
        scope: &FunctionScope,
    ) -> Result<Box<dyn TimestampAssignerFunction>, TaskError> {
        let (module, mut instance) = self.instance(udf, UdfKind::TimestampAssigner, scope)?;
        let indices = module.exports.timestamp_assigner.as_ref().ok_or_else(|| missing(UdfKind::TimestampAssigner))?;
        let guest = indices.load(&mut instance.store, &instance.instance).map_err(load_err)?;
        Ok(Box::new(TimestampAssigner { instance, guest, wire: Vec::new() }))
    }

    fn process(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn ProcessFunction>, TaskError> {
        let (module, mut instance) = self.instance(udf, UdfKind::Process, scope)?;
        let indices = module.exports.processor.as_ref().ok_or_else(|| missing(UdfKind::Process))?;
        let guest = indices.load(&mut instance.store, &instance.instance).map_err(load_err)?;
        Ok(Box::new(Process { instance, guest, wire: Vec::new() }))
    }

    fn aggregate(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn AggregateFunction>, TaskError> {
        let (module, mut instance) = self.instance(udf, UdfKind::Aggregate, scope)?;
        let indices = module.exports.aggregator.as_ref().ok_or_else(|| missing(UdfKind::Aggregate))?;
        let guest = indices.load(&mut instance.store, &instance.instance).map_err(load_err)?;
        Ok(Box::new(Aggregate { instance, guest, wires: [Vec::new(), Vec::new()] }))
    }

    fn reduce(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn ReduceFunction>, TaskError> {
        let (module, mut instance) = self.instance(udf, UdfKind::Reduce, scope)?;
        let indices = module.exports.reducer.as_ref().ok_or_else(|| missing(UdfKind::Reduce))?;
        let guest = indices.load(&mut instance.store, &instance.instance).map_err(load_err)?;
        Ok(Box::new(Reduce { instance, guest, wires: [Vec::new(), Vec::new()] }))
    }

    fn process_window(
        &self,
        udf: &UdfSpec,
        scope: &FunctionScope,
    ) -> Result<Box<dyn ProcessWindowFunction>, TaskError> {
        let (module, mut instance) = self.instance(udf, UdfKind::ProcessWindow, scope)?;
        let indices = module.exports.window_processor.as_ref().ok_or_else(|| missing(UdfKind::ProcessWindow))?;
        let guest = indices.load(&mut instance.store, &instance.instance).map_err(load_err)?;
        Ok(Box::new(ProcessWindow { instance, guest }))
    }
}
