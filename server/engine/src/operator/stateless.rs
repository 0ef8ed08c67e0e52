//! Stateless operators around user functions: map, filter, flat-map, and union.

use super::{OpContext, Operator};
use crate::error::TaskError;
use crate::function::{FilterFunction, FlatMapFunction, MapFunction};
use eddy_codec::Batch;

/// Applies a [`MapFunction`]; the function must return one record per input record.
pub struct MapOperator {
    function: Box<dyn MapFunction>,
}

impl MapOperator {
    /// Wraps a map function.
    pub fn new(function: Box<dyn MapFunction>) -> MapOperator {
        MapOperator { function }
    }
}

impl Operator for MapOperator {
    fn process(&mut self, _: usize, batch: Batch, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        let output = self.function.map(&batch)?;
        if output.len() != batch.len() {
            return Err(TaskError::user(format!(
                "a map function must return one record per input record: got {} for {}",
                output.len(),
                batch.len()
            )));
        }
        ctx.out.emit(output);
        Ok(())
    }
}

/// Applies a [`FilterFunction`].
pub struct FilterOperator {
    function: Box<dyn FilterFunction>,
    keep: Vec<bool>,
}

impl FilterOperator {
    /// Wraps a filter function.
    pub fn new(function: Box<dyn FilterFunction>) -> FilterOperator {
        FilterOperator { function, keep: Vec::new() }
    }
}

impl Operator for FilterOperator {
    fn process(&mut self, _: usize, mut batch: Batch, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        self.keep.clear();
        self.function.filter(&batch, &mut self.keep)?;
        if self.keep.len() != batch.len() {
            return Err(TaskError::user(format!(
                "a filter must return one flag per input record: got {} for {}",
                self.keep.len(),
                batch.len()
            )));
        }
        batch.retain_by(&self.keep);
        ctx.out.emit(batch);
        Ok(())
    }
}

/// Applies a [`FlatMapFunction`].
pub struct FlatMapOperator {
    function: Box<dyn FlatMapFunction>,
}

impl FlatMapOperator {
    /// Wraps a flat-map function.
    pub fn new(function: Box<dyn FlatMapFunction>) -> FlatMapOperator {
        FlatMapOperator { function }
    }
}

impl Operator for FlatMapOperator {
    fn process(&mut self, _: usize, batch: Batch, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        ctx.out.emit(self.function.flat_map(&batch)?);
        Ok(())
    }
}

/// Passes records of all inputs through unchanged.
#[derive(Debug, Default)]
pub struct UnionOperator;

impl Operator for UnionOperator {
    fn process(&mut self, _: usize, batch: Batch, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        ctx.out.emit(batch);
        Ok(())
    }
}

/// Native functions from closures, for built-ins, tests and benchmarks.
impl<F: FnMut(&Batch) -> Result<Batch, crate::error::UdfError> + Send> MapFunction for F {
    fn map(&mut self, input: &Batch) -> Result<Batch, crate::error::UdfError> {
        self(input)
    }
}
