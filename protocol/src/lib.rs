//! The contract between the Nimbus host and the guest SDK: the headers the
//! host sets on each request a function receives, and the JSON body of an
//! error response.
//!
//! The host writes these and the SDK reads them (and the SDK writes error
//! bodies in the host's shape), so both take them from here and cannot drift
//! apart. The crate is `no_std` and depends on nothing but `serde`.
//!
//! # Layout
//! - [`header`]: every header name, as a lowercase `&'static str`;
//! - [`ErrorBody`]: `{"error": .., "message": .., "request_id": .., "status": ..}`.
//!
//! # Example
//! ```
//! use nimbus_protocol::{ErrorBody, header};
//!
//! assert_eq!(header::FUNCTION, "x-nimbus-function");
//! assert!(header::FUNCTION.starts_with(header::PREFIX));
//!
//! let body = ErrorBody {
//!     error: "not_found".into(),
//!     message: "no user 42".into(),
//!     request_id: Some("r-1".into()),
//!     status: 404,
//! };
//! assert_eq!(
//!     serde_json::to_string(&body).unwrap(),
//!     r#"{"error":"not_found","message":"no user 42","request_id":"r-1","status":404}"#
//! );
//! ```

#![no_std]
#![deny(missing_docs)]

extern crate alloc;

mod error;
pub mod header;

pub use error::ErrorBody;
