//! Host bindings generated from `wit/` (the only source of truth for the ABI).
//!
//! The lowest layer: `event` holds its types as the host's events and batches, and `runtime`
//! implements its imports, one host file per imported WIT interface
//! (`log.rs` for `flowgate:plugin/log`, `state.rs` for `flowgate:plugin/state`). The
//! `filter` and `aggregator` worlds share the interfaces of the `stage` world.

#![expect(
    missing_docs,
    reason = "generated code: the WIT doc comments become docs, helper items have none"
)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "stage",
    imports: { default: trappable },
    additional_derives: [PartialEq, Eq],
});

/// The `filter` world (since 0.1.1).
pub mod filter {
    #![expect(
        missing_docs,
        reason = "generated code: the WIT doc comments become docs, helper items have none"
    )]
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "filter",
        with: {
            "flowgate:plugin/types": super::flowgate::plugin::types,
            "flowgate:plugin/log": super::flowgate::plugin::log,
            "flowgate:plugin/state": super::flowgate::plugin::state,
        },
        additional_derives: [PartialEq, Eq],
    });
}

/// The `aggregator` world.
pub mod aggregator {
    #![expect(
        missing_docs,
        reason = "generated code: the WIT doc comments become docs, helper items have none"
    )]
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "aggregator",
        with: {
            "flowgate:plugin/types": super::flowgate::plugin::types,
            "flowgate:plugin/log": super::flowgate::plugin::log,
            "flowgate:plugin/state": super::flowgate::plugin::state,
        },
        additional_derives: [PartialEq, Eq],
    });
}
