//! Bindings for the `nimbus:function/queue-function` world in `guest-sdk/wit`,
//! generated at compile time. Only this crate's safe wrappers use them; none of
//! these types appear in the public API. wasi:http is not generated here: it
//! comes from the pregenerated `wasip2` crate.
//!
//! The world's one export, `wasi:messaging/incoming-handler`, is emitted only
//! where `#[queue_handler]` invokes the generated export macro: with
//! `pub_export_macro`, the component-type section that is always linked lists
//! the imports alone, so a crate with just an HTTP handler exports nothing more.
//! The macro reaches the export's types through `__private::bindings`, which
//! makes them public (though hidden) and so subject to `missing_docs`.

#![allow(missing_docs)]

wit_bindgen::generate!({
    world: "nimbus:function/queue-function",
    path: "wit",
    generate_all,
    pub_export_macro: true,
    export_macro_name: "__export_queue_function",
    default_bindings_module: "::nimbus_sdk::__private::bindings",
});
