//! The attribute macros of [`nimbus-sdk`](../nimbus_sdk/index.html).
//!
//! Use them through `nimbus_sdk`, which re-exports them and documents them with
//! examples; the code they generate names only `::nimbus_sdk` paths, so a function
//! crate depends on `nimbus-sdk` alone.
//!
//! There is one macro per trigger kind: `#[http_handler]` exports
//! `wasi:http/incoming-handler`, `#[queue_handler]` exports
//! `wasi:messaging/incoming-handler`. Both keep the function as written and add
//! the export in an anonymous `const` block, so one crate may use both. The export
//! itself exists only when compiling for `wasm32`: natively the glue still
//! type-checks, but a `cdylib` with export names such as
//! `wasi:http/incoming-handler@0.2.12#handle` would not link, and a function crate
//! should build and test natively like any other.
//!
//! Every signature mistake is reported as a compile error on the offending tokens
//! (`syn::Error::to_compile_error`), and the function is emitted unchanged next to
//! the error so that it does not cause a second, confusing "not found" error.

#![deny(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type};

/// Makes a free function the component's `wasi:http/incoming-handler`.
///
/// The function may be sync or `async`, take no argument or one whose type
/// implements `nimbus_sdk::FromRequest` (usually `nimbus_sdk::Request`), and return
/// anything that implements `nimbus_sdk::IntoResponse`. See `nimbus_sdk::http_handler`
/// for examples.
#[proc_macro_attribute]
pub fn http_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_or_error(attr, item, expand_http_handler)
}

/// Makes a free function the component's `wasi:messaging/incoming-handler`.
///
/// The function may be sync or `async`, take no argument or a
/// `nimbus_sdk::queue::Message`, and return `()` or a `Result<(), E>` where `E`
/// implements `Display` (anything `nimbus_sdk::queue::Outcome`). See
/// `nimbus_sdk::queue_handler` for examples.
#[proc_macro_attribute]
pub fn queue_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_or_error(attr, item, expand_queue_handler)
}

/// Parses the function and expands it, or emits the error next to the function
/// unchanged.
fn expand_or_error(
    attr: TokenStream,
    item: TokenStream,
    expand: fn(TokenStream2, &ItemFn) -> syn::Result<TokenStream2>,
) -> TokenStream {
    let attr = TokenStream2::from(attr);
    let function = syn::parse_macro_input!(item as ItemFn);
    match expand(attr, &function) {
        Ok(expanded) => expanded.into(),
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#error #function).into()
        }
    }
}

/// What differs between the handler kinds in the signature checks' messages.
struct Kind {
    /// The attribute, as written: `#[http_handler]`.
    attribute: &'static str,
    /// The handler, with its article: `an HTTP handler`.
    noun: &'static str,
    /// What the one argument may be, for the "too many arguments" error.
    argument: &'static str,
    /// An argument type to name instead of `impl Trait`.
    example_type: &'static str,
}

const HTTP: Kind = Kind {
    attribute: "#[http_handler]",
    noun: "an HTTP handler",
    argument: "the `Request` (or another `FromRequest` type such as `Json<T>`); \
               read the rest from it with `RequestExt`",
    example_type: "nimbus_sdk::Request",
};

const QUEUE: Kind = Kind {
    attribute: "#[queue_handler]",
    noun: "a queue handler",
    argument: "the `nimbus_sdk::queue::Message`; read the payload, headers, id and \
               attempt from it",
    example_type: "nimbus_sdk::queue::Message",
};

/// The handler function and the export glue that calls it.
fn expand_http_handler(attr: TokenStream2, function: &ItemFn) -> syn::Result<TokenStream2> {
    check_signature(&HTTP, attr, function)?;
    let sig = &function.sig;
    let name = &sig.ident;

    // How the one argument, if any, is made from the request. The span puts a
    // "`X` does not implement `FromRequest`" error on the argument's type.
    let argument = match sig.inputs.first() {
        Some(FnArg::Typed(arg)) => {
            let ty = &arg.ty;
            quote_spanned! {ty.span()=>
                match <#ty as ::nimbus_sdk::FromRequest>::from_request(request) {
                    ::core::result::Result::Ok(argument) => argument,
                    ::core::result::Result::Err(rejection) => {
                        return ::nimbus_sdk::__private::into_response(rejection);
                    }
                }
            }
        }
        // Receivers were rejected above; no argument means the request is unused.
        _ => quote!(),
    };
    let drop_request = if sig.inputs.is_empty() {
        quote!(::core::mem::drop(request);)
    } else {
        quote!()
    };

    // The span puts a "`X` does not implement `IntoResponse`" error on the return type.
    let (call, output_span) = call_and_output_span(sig, name, &argument);
    let into_response = quote_spanned! {output_span=>
        ::nimbus_sdk::__private::into_response(output)
    };

    Ok(quote! {
        #function

        const _: () = {
            struct __NimbusHttpHandler;

            impl ::nimbus_sdk::__private::Guest for __NimbusHttpHandler {
                fn handle(
                    request: ::nimbus_sdk::__private::IncomingRequest,
                    response_out: ::nimbus_sdk::__private::ResponseOutparam,
                ) {
                    ::nimbus_sdk::__private::serve(
                        request,
                        response_out,
                        |request: ::nimbus_sdk::Request| -> ::nimbus_sdk::Response {
                            #drop_request
                            let output = #call;
                            #into_response
                        },
                    );
                }
            }

            // Only a wasm component has these exports. Natively (a crate's unit tests,
            // a root `cargo build`) the linker would reject their names, which no native
            // symbol can have (`wasi:http/incoming-handler@0.2.12#handle`); there the
            // reference below stands in for the export, so that the handler and what it
            // calls do not look unused.
            #[cfg(target_arch = "wasm32")]
            ::nimbus_sdk::__private::wasip2::http::proxy::export!(__NimbusHttpHandler);
            #[cfg(not(target_arch = "wasm32"))]
            let _ = <__NimbusHttpHandler as ::nimbus_sdk::__private::Guest>::handle;
        };
    })
}

/// The handler function and the `wasi:messaging/incoming-handler` export that
/// calls it.
fn expand_queue_handler(attr: TokenStream2, function: &ItemFn) -> syn::Result<TokenStream2> {
    check_signature(&QUEUE, attr, function)?;
    let sig = &function.sig;
    let name = &sig.ident;

    // The span puts a "cannot take `X`" error on the argument's type.
    let (argument, drop_message) = match sig.inputs.first() {
        Some(FnArg::Typed(arg)) => {
            let ty = &arg.ty;
            let argument = quote_spanned! {ty.span()=>
                <#ty as ::nimbus_sdk::__private::QueueArgument>::from_message(message)
            };
            (argument, quote!())
        }
        _ => (quote!(), quote!(::core::mem::drop(message);)),
    };

    // The span puts a "cannot return `X`" error on the return type.
    let (call, output_span) = call_and_output_span(sig, name, &argument);
    let into_outcome = quote_spanned! {output_span=>
        ::nimbus_sdk::__private::into_outcome(output)
    };

    Ok(quote! {
        #function

        const _: () = {
            struct __NimbusQueueHandler;

            impl ::nimbus_sdk::__private::QueueGuest for __NimbusQueueHandler {
                fn handle(
                    message: ::nimbus_sdk::__private::WasiMessage,
                ) -> ::core::result::Result<(), ::nimbus_sdk::__private::MessagingError> {
                    ::nimbus_sdk::__private::handle_message(
                        message,
                        |message: ::nimbus_sdk::queue::Message| {
                            #drop_message
                            let output = #call;
                            #into_outcome
                        },
                    )
                }
            }

            // Only on wasm, as for `#[http_handler]`.
            #[cfg(target_arch = "wasm32")]
            ::nimbus_sdk::__private::bindings::__export_queue_function!(
                __NimbusQueueHandler with_types_in ::nimbus_sdk::__private::bindings
            );
            #[cfg(not(target_arch = "wasm32"))]
            let _ = <__NimbusQueueHandler as ::nimbus_sdk::__private::QueueGuest>::handle;
        };
    })
}

/// Rejects what the generated glue cannot call: arguments to the attribute,
/// methods, generics, more than one argument, `unsafe` or foreign functions.
fn check_signature(kind: &Kind, attr: TokenStream2, function: &ItemFn) -> syn::Result<()> {
    let Kind {
        attribute,
        noun,
        argument,
        example_type,
    } = kind;
    if !attr.is_empty() {
        return Err(syn::Error::new_spanned(
            attr,
            format!("`{attribute}` takes no arguments"),
        ));
    }
    let sig = &function.sig;
    if let Some(receiver) = sig.receiver() {
        return Err(syn::Error::new_spanned(
            receiver,
            format!(
                "{noun} must be a free function, not a method: remove `self` \
                 and move the function out of the `impl` block"
            ),
        ));
    }
    let generic_message = format!(
        "{noun} cannot be generic: the export glue must name one concrete function; \
         remove the generic parameters"
    );
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&sig.generics, generic_message));
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        return Err(syn::Error::new_spanned(where_clause, generic_message));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new_spanned(
            unsafety,
            format!("{noun} cannot be `unsafe fn`"),
        ));
    }
    if let Some(abi) = &sig.abi {
        return Err(syn::Error::new_spanned(
            abi,
            format!("{noun} cannot have an `extern` ABI; the macro writes the export"),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            format!("{noun} cannot be variadic"),
        ));
    }
    if sig.inputs.len() > 1 {
        let extra: Vec<_> = sig.inputs.iter().skip(1).collect();
        return Err(syn::Error::new_spanned(
            quote!(#(#extra),*),
            format!("{noun} takes at most one argument: {argument}"),
        ));
    }
    if let Some(FnArg::Typed(arg)) = sig.inputs.first()
        && let Type::ImplTrait(impl_trait) = &*arg.ty
    {
        return Err(syn::Error::new_spanned(
            impl_trait,
            format!(
                "{noun} cannot take `impl Trait`: name the argument's type, e.g. `{example_type}`"
            ),
        ));
    }
    Ok(())
}

/// The handler call (run on `block_on` when it is `async`) and the span of
/// its return type, where a wrong return type's error belongs.
fn call_and_output_span(
    sig: &syn::Signature,
    name: &syn::Ident,
    argument: &proc_macro2::TokenStream,
) -> (proc_macro2::TokenStream, proc_macro2::Span) {
    let call = if sig.asyncness.is_some() {
        quote!(::nimbus_sdk::__private::block_on(#name(#argument)))
    } else {
        quote!(#name(#argument))
    };
    let output_span = match &sig.output {
        ReturnType::Default => name.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    (call, output_span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(attr: TokenStream2, function: TokenStream2) -> Result<(), String> {
        check_as(&HTTP, attr, function)
    }

    fn check_as(kind: &Kind, attr: TokenStream2, function: TokenStream2) -> Result<(), String> {
        let function: ItemFn = syn::parse2(function).expect("a function");
        check_signature(kind, attr, &function).map_err(|err| err.to_string())
    }

    #[test]
    fn accepts_the_supported_shapes() {
        for function in [
            quote!(
                fn a() {}
            ),
            quote!(
                fn b(req: Request) -> String {
                    todo!()
                }
            ),
            quote!(
                async fn c(_: Request) -> Result<Json<T>, Error> {
                    todo!()
                }
            ),
            quote!(
                pub fn d(Json(x): Json<X>) -> impl IntoResponse {
                    x
                }
            ),
        ] {
            assert_eq!(check(quote!(), function), Ok(()));
        }
    }

    #[test]
    fn rejects_what_the_glue_cannot_call() {
        let cases = [
            (
                quote!(),
                quote!(
                    fn f(a: A, b: B) {}
                ),
                "at most one argument",
            ),
            (
                quote!(),
                quote!(
                    fn f(&self) {}
                ),
                "not a method",
            ),
            (
                quote!(),
                quote!(
                    fn f<T>() {}
                ),
                "cannot be generic",
            ),
            (
                quote!(),
                quote!(
                    fn f()
                    where
                        A: B,
                    {
                    }
                ),
                "cannot be generic",
            ),
            (
                quote!(),
                quote!(
                    unsafe fn f() {}
                ),
                "`unsafe fn`",
            ),
            (
                quote!(),
                quote!(
                    extern "C" fn f() {}
                ),
                "`extern` ABI",
            ),
            (
                quote!(),
                quote!(
                    fn f(x: impl Tr) {}
                ),
                "`impl Trait`",
            ),
            (
                quote!(path = "/"),
                quote!(
                    fn f() {}
                ),
                "takes no arguments",
            ),
        ];
        for (attr, function, expected) in cases {
            let error = check(attr, function.clone()).expect_err(&function.to_string());
            assert!(error.contains(expected), "{function}: {error}");
        }
    }

    #[test]
    fn queue_handler_errors_name_the_queue_handler() {
        let cases = [
            (
                quote!(),
                quote!(
                    fn f(message: Message, extra: u32) {}
                ),
                "a queue handler takes at most one argument: the `nimbus_sdk::queue::Message`",
            ),
            (
                quote!(),
                quote!(
                    fn f(&self) {}
                ),
                "a queue handler must be a free function",
            ),
            (
                quote!(),
                quote!(
                    fn f(message: impl Into<Message>) {}
                ),
                "e.g. `nimbus_sdk::queue::Message`",
            ),
            (
                quote!(topic = "orders"),
                quote!(
                    fn f() {}
                ),
                "`#[queue_handler]` takes no arguments",
            ),
        ];
        for (attr, function, expected) in cases {
            let error = check_as(&QUEUE, attr, function.clone()).expect_err(&function.to_string());
            assert!(error.contains(expected), "{function}: {error}");
        }
        for function in [
            quote!(
                fn a() {}
            ),
            quote!(
                async fn b(message: Message) -> Result<(), String> {
                    todo!()
                }
            ),
        ] {
            assert_eq!(check_as(&QUEUE, quote!(), function), Ok(()));
        }
    }

    #[test]
    fn async_handlers_are_driven_by_block_on() {
        let function: ItemFn = syn::parse2(quote!(
            async fn f() {}
        ))
        .unwrap();
        let expanded = expand_http_handler(quote!(), &function)
            .unwrap()
            .to_string();
        assert!(expanded.contains("block_on"), "{expanded}");
        assert!(expanded.contains("export !"), "{expanded}");

        let expanded = expand_queue_handler(quote!(), &function)
            .unwrap()
            .to_string();
        assert!(expanded.contains("block_on"), "{expanded}");
        assert!(expanded.contains("__export_queue_function !"), "{expanded}");
    }

    #[test]
    fn a_queue_handler_without_argument_drops_the_message() {
        let function: ItemFn = syn::parse2(quote!(
            fn f() {}
        ))
        .unwrap();
        let expanded = expand_queue_handler(quote!(), &function)
            .unwrap()
            .to_string();
        assert!(expanded.contains("drop (message)"), "{expanded}");
        assert!(!expanded.contains("from_message"), "{expanded}");
    }
}
