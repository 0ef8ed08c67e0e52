mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "eddy:udf/udf-host",
    });
}
