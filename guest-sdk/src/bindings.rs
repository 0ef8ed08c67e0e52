//! Bindings for the imports the SDK itself calls (log, keyed state, context). Each UDF crate generates the
//! bindings of its own world through the attribute macros, so a component exports exactly one kind.

wit_bindgen::generate!({
    inline: "
        package eddy:guest-sdk;
        world imports {
            import eddy:udf/log@0.1.0;
            import eddy:udf/keyed-state@0.1.0;
            import eddy:udf/context@0.1.0;
        }
    ",
    path: "../wit",
    world: "eddy:guest-sdk/imports",
    generate_all,
});
