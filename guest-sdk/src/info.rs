//! What Nimbus tells a guest about a request, through `x-nimbus-*` headers.
//!
//! The host drops any `x-nimbus-*` header a caller sends and sets its own, so a
//! guest can trust them. [`RequestInfo::from_headers`] reads them all at once;
//! inside a handler, [`RequestExt::info`](crate::RequestExt::info) does it for you.
//! The names are those of `nimbus-protocol`, the contract the host is built on too.

/// Headers with this prefix come from Nimbus only; callers' are dropped.
///
/// ```
/// assert!(nimbus_sdk::HEADER_FUNCTION.starts_with(nimbus_sdk::HEADER_PREFIX));
/// ```
pub const HEADER_PREFIX: &str = nimbus_protocol::header::PREFIX;
/// The id of the function handling the request.
///
/// ```
/// assert_eq!(nimbus_sdk::HEADER_FUNCTION, "x-nimbus-function");
/// ```
pub const HEADER_FUNCTION: &str = nimbus_protocol::header::FUNCTION;
/// The matched route's path as written in the manifest, e.g. `/hello/:name`.
///
/// ```
/// assert_eq!(nimbus_sdk::HEADER_ROUTE, "x-nimbus-route");
/// ```
pub const HEADER_ROUTE: &str = nimbus_protocol::header::ROUTE;
/// For a `/...` route: the rest of the path it matched, starting with `/`.
///
/// ```
/// assert_eq!(nimbus_sdk::HEADER_PATH_INFO, "x-nimbus-path-info");
/// ```
pub const HEADER_PATH_INFO: &str = nimbus_protocol::header::PATH_INFO;
/// The caller's `ip:port`.
///
/// ```
/// assert_eq!(nimbus_sdk::HEADER_CLIENT_ADDR, "x-nimbus-client-addr");
/// ```
pub const HEADER_CLIENT_ADDR: &str = nimbus_protocol::header::CLIENT_ADDR;
/// For a service call: the id of the calling function.
///
/// ```
/// assert_eq!(nimbus_sdk::HEADER_CALLER, "x-nimbus-caller");
/// ```
pub const HEADER_CALLER: &str = nimbus_protocol::header::CALLER;
/// Followed by a parameter name: its value as in the URL (percent-encoded).
///
/// ```
/// assert_eq!(format!("{}id", nimbus_sdk::HEADER_PARAM_PREFIX), "x-nimbus-param-id");
/// ```
pub const HEADER_PARAM_PREFIX: &str = nimbus_protocol::header::PARAM_PREFIX;
/// The request id, the caller's or one Nimbus made; also on the response.
///
/// ```
/// assert_eq!(nimbus_sdk::HEADER_REQUEST_ID, "x-request-id");
/// ```
pub const HEADER_REQUEST_ID: &str = nimbus_protocol::header::REQUEST_ID;

/// What Nimbus tells a guest about a request.
///
/// ```
/// use nimbus_sdk::RequestInfo;
///
/// let info = RequestInfo::from_headers([("x-nimbus-function", "users")]);
/// assert_eq!(info.function.as_deref(), Some("users"));
/// assert_eq!(info.route, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// The function's id.
    pub function: Option<String>,
    /// The matched route's path pattern.
    pub route: Option<String>,
    /// Path parameters, percent-decoded, in header order.
    pub params: Vec<(String, String)>,
    /// The part of the path matched by a trailing `/...`.
    pub path_info: Option<String>,
    /// The caller's `ip:port`, for requests from the network.
    pub client_addr: Option<String>,
    /// The calling function's id, for service calls.
    pub caller: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
}

impl RequestInfo {
    /// Reads the Nimbus headers out of a request's `(name, value)` pairs.
    /// Names are compared case-insensitively; other headers are ignored.
    ///
    /// ```
    /// use nimbus_sdk::RequestInfo;
    ///
    /// let info = RequestInfo::from_headers([
    ///     ("X-Nimbus-Param-Id", "42"),
    ///     ("x-nimbus-client-addr", "127.0.0.1:5000"),
    ///     ("accept", "*/*"),
    /// ]);
    /// assert_eq!(info.params, [("id".to_owned(), "42".to_owned())]);
    /// assert_eq!(info.client_addr.as_deref(), Some("127.0.0.1:5000"));
    /// ```
    pub fn from_headers<N, V>(headers: impl IntoIterator<Item = (N, V)>) -> RequestInfo
    where
        N: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let mut info = RequestInfo::default();
        for (name, value) in headers {
            let name = name.as_ref().to_ascii_lowercase();
            let value = String::from_utf8_lossy(value.as_ref()).into_owned();
            match name.as_str() {
                HEADER_FUNCTION => info.function = Some(value),
                HEADER_ROUTE => info.route = Some(value),
                HEADER_PATH_INFO => info.path_info = Some(value),
                HEADER_CLIENT_ADDR => info.client_addr = Some(value),
                HEADER_CALLER => info.caller = Some(value),
                HEADER_REQUEST_ID => info.request_id = Some(value),
                n => {
                    if let Some(param) = n.strip_prefix(HEADER_PARAM_PREFIX) {
                        info.params.push((param.to_owned(), percent_decode(&value)));
                    }
                }
            }
        }
        info
    }

    /// A path parameter's decoded value.
    ///
    /// ```
    /// use nimbus_sdk::RequestInfo;
    ///
    /// let info = RequestInfo::from_headers([("x-nimbus-param-name", "a%20b")]);
    /// assert_eq!(info.param("name"), Some("a b"));
    /// ```
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes `%XX` escapes; invalid escapes are kept as written, and bytes
/// that are not UTF-8 become U+FFFD.
///
/// ```
/// assert_eq!(nimbus_sdk::percent_decode("caf%C3%A9%20au%20lait"), "café au lait");
/// assert_eq!(nimbus_sdk::percent_decode("100%"), "100%");
/// ```
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_keeps_bad_ones() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("J%C3%BCrgen"), "Jürgen");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn reads_every_nimbus_header_case_insensitively() {
        let info = RequestInfo::from_headers([
            ("X-Nimbus-Function", "users"),
            ("x-nimbus-param-id", "42"),
            ("x-nimbus-path-info", "/a/b"),
            ("x-nimbus-client-addr", "127.0.0.1:5000"),
            ("x-nimbus-caller", "gateway"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(info.caller.as_deref(), Some("gateway"));
        assert_eq!(info.function.as_deref(), Some("users"));
        assert_eq!(info.param("id"), Some("42"));
        assert_eq!(info.param("nope"), None);
        assert_eq!(info.path_info.as_deref(), Some("/a/b"));
        assert_eq!(info.client_addr.as_deref(), Some("127.0.0.1:5000"));
    }
}
