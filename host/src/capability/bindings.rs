//! Host bindings for the interfaces in `guest-sdk/wit`, generated once here.
//! Nothing generated leaves the `capability` module.

wasmtime::component::bindgen!({
    path: "../guest-sdk/wit",
    world: "nimbus:function/imports",
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store.bucket": crate::capability::kv::Bucket,
        "wasi:keyvalue/atomics.cas": crate::capability::kv::Cas,
    },
    trappable_error_type: {
        "wasi:keyvalue/store.error" => crate::capability::kv::KvError,
    },
});
