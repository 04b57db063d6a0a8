//! Bindings for the `nimbus:function/imports` world in `guest-sdk/wit`, generated
//! at compile time. Only this crate's safe wrappers use them; none of these types
//! appear in the public API. wasi:http is not generated here: it comes from the
//! pregenerated `wasip2` crate.

wit_bindgen::generate!({
    world: "nimbus:function/imports",
    path: "wit",
    generate_all,
});
