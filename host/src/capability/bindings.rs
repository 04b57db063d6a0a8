//! Host bindings for the interfaces in `guest-sdk/wit`, generated once here.
//! Nothing generated leaves the `capability` module, except the queue
//! handler's pre-instantiated export, which the executor calls.

wasmtime::component::bindgen!({
    path: "../guest-sdk/wit",
    world: "nimbus:function/queue-function",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasi:keyvalue/store.bucket": crate::capability::kv::Bucket,
        "wasi:keyvalue/atomics.cas": crate::capability::kv::Cas,
        "wasi:messaging/types.client": crate::capability::messaging::Client,
        "wasi:messaging/types.message": crate::capability::messaging::Message,
    },
    trappable_error_type: {
        "wasi:keyvalue/store.error" => crate::capability::kv::KvError,
    },
});
