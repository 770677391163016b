//! Host bindings generated from `wit/` (the only source of truth for the ABI).
//!
//! Every other file under `runtime/` uses these types; one host file per imported WIT interface
//! (`log.rs` for `flowgate:plugin/log`).

#![expect(
    missing_docs,
    reason = "generated code: the WIT doc comments become docs, helper items have none"
)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "stage",
    additional_derives: [PartialEq, Eq],
});
