//! The one set of generated bindings for `wit/udf.wit`. State handles map to the host's own resource types.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "eddy:udf/udf-host",
    with: {
        "eddy:udf/keyed-state.value-state": crate::host::ValueState,
        "eddy:udf/keyed-state.list-state": crate::host::ListState,
        "eddy:udf/keyed-state.map-state": crate::host::MapState,
    },
});

pub use eddy::udf::{context, keyed_state, log, types};
pub use exports::eddy::udf::{
    aggregator, filter, flat_mapper, key_selector, lifecycle, mapper, processor, reducer, state_schema,
    timestamp_assigner, window_processor,
};
