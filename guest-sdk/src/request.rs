//! The request a handler receives, and the ways to read it.

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::info::{HEADER_PARAM_PREFIX, HEADER_PATH_INFO, HEADER_REQUEST_ID, percent_decode};
use crate::{Error, Json, RequestInfo};

/// An incoming HTTP request, with its whole body read into memory.
///
/// It is the `http` crate's [`Request`](::http::Request) with a [`Bytes`] body. The
/// URI is in origin form, the path and query exactly as the caller sent them
/// (`/users/42?full=1`); the headers include the `x-nimbus-*` headers the host sets
/// (see [`RequestInfo`]). The host caps the body at the function's `max_body`
/// (1 MiB unless the manifest says otherwise), so reading it whole is bounded.
///
/// ```
/// use nimbus_sdk::{Request, RequestExt};
///
/// let request: Request = nimbus_sdk::http::Request::builder()
///     .uri("/hello/you?shout=1")
///     .header("x-nimbus-param-name", "you")
///     .body(Default::default())
///     .unwrap();
/// assert_eq!(request.uri().path(), "/hello/you");
/// assert_eq!(request.param("name").as_deref(), Some("you"));
/// ```
pub type Request = ::http::Request<Bytes>;

/// Reading a [`Request`]: JSON and text bodies, path parameters, the query string
/// and the Nimbus request information.
///
/// Implemented for every `http::Request` whose body is bytes, so it works on
/// requests built in unit tests as well as on the one a handler receives.
///
/// ```
/// use nimbus_sdk::{Request, RequestExt};
///
/// #[derive(serde::Deserialize)]
/// struct NewUser {
///     name: String,
/// }
///
/// let request: Request = nimbus_sdk::http::Request::builder()
///     .method("POST")
///     .uri("/teams/red%20team/users?notify=yes")
///     .header("x-nimbus-param-team", "red%20team")
///     .header("x-request-id", "req-7")
///     .body(r#"{"name": "Ada"}"#.into())
///     .unwrap();
/// let user: NewUser = request.json().unwrap();
/// assert_eq!(user.name, "Ada");
/// assert_eq!(request.param("team").as_deref(), Some("red team"));
/// assert_eq!(request.query("notify").as_deref(), Some("yes"));
/// assert_eq!(request.request_id(), Some("req-7"));
/// ```
pub trait RequestExt {
    /// The body parsed as JSON into `T`.
    ///
    /// A body that is not valid JSON for `T` is a `400 bad_request` [`Error`]
    /// carrying serde's message, so `?` in a handler answers the caller with it.
    /// The `content-type` header is not checked.
    ///
    /// ```
    /// use nimbus_sdk::{Request, RequestExt};
    ///
    /// let request: Request = nimbus_sdk::http::Request::new("[1, 2".into());
    /// let error = request.json::<Vec<u32>>().unwrap_err();
    /// assert_eq!(error.status(), 400);
    /// assert!(error.message().contains("EOF"));
    /// ```
    fn json<T: DeserializeOwned>(&self) -> Result<T, Error>;

    /// The body as UTF-8 text; a body that is not UTF-8 is a `400 bad_request`.
    ///
    /// ```
    /// use nimbus_sdk::{Request, RequestExt};
    ///
    /// let request: Request = nimbus_sdk::http::Request::new("hi".into());
    /// assert_eq!(request.text().unwrap(), "hi");
    /// ```
    fn text(&self) -> Result<String, Error>;

    /// The path parameter `name` of the matched route (`:name`), percent-decoded.
    ///
    /// Read from the `x-nimbus-param-NAME` header the host sets; `None` when the
    /// route has no such parameter.
    ///
    /// ```
    /// use nimbus_sdk::{Request, RequestExt};
    ///
    /// let request: Request = nimbus_sdk::http::Request::builder()
    ///     .header("x-nimbus-param-name", "J%C3%BCrgen")
    ///     .body(Default::default())
    ///     .unwrap();
    /// assert_eq!(request.param("name").as_deref(), Some("Jürgen"));
    /// assert_eq!(request.param("id"), None);
    /// ```
    fn param(&self, name: &str) -> Option<String>;

    /// The first value of the query parameter `name`, decoded (`+` is a space,
    /// `%XX` escapes are decoded). A parameter without `=` has the value `""`.
    ///
    /// ```
    /// use nimbus_sdk::{Request, RequestExt};
    ///
    /// let request: Request = nimbus_sdk::http::Request::builder()
    ///     .uri("/search?q=red+shoes&size=42&q=ignored&exact")
    ///     .body(Default::default())
    ///     .unwrap();
    /// assert_eq!(request.query("q").as_deref(), Some("red shoes"));
    /// assert_eq!(request.query("exact").as_deref(), Some(""));
    /// assert_eq!(request.query("page"), None);
    /// ```
    fn query(&self, name: &str) -> Option<String>;

    /// Everything the host says about the request, from its `x-nimbus-*` headers.
    ///
    /// ```
    /// use nimbus_sdk::{Request, RequestExt};
    ///
    /// let request: Request = nimbus_sdk::http::Request::builder()
    ///     .header("x-nimbus-route", "/files/...")
    ///     .header("x-nimbus-path-info", "/a/b.txt")
    ///     .body(Default::default())
    ///     .unwrap();
    /// let info = request.info();
    /// assert_eq!(info.route.as_deref(), Some("/files/..."));
    /// assert_eq!(info.path_info.as_deref(), Some("/a/b.txt"));
    /// ```
    fn info(&self) -> RequestInfo;

    /// The request id (`x-request-id`): the caller's, or one the host made. The
    /// host puts the same id on the response.
    ///
    /// ```
    /// use nimbus_sdk::{Request, RequestExt};
    ///
    /// let request: Request = nimbus_sdk::http::Request::builder()
    ///     .header("x-request-id", "abc")
    ///     .body(Default::default())
    ///     .unwrap();
    /// assert_eq!(request.request_id(), Some("abc"));
    /// ```
    fn request_id(&self) -> Option<&str>;

    /// For a `/...` route, the rest of the path it matched, starting with `/`
    /// (from `x-nimbus-path-info`, as sent: not decoded).
    ///
    /// ```
    /// use nimbus_sdk::{Request, RequestExt};
    ///
    /// let request: Request = nimbus_sdk::http::Request::builder()
    ///     .header("x-nimbus-path-info", "/css/site.css")
    ///     .body(Default::default())
    ///     .unwrap();
    /// assert_eq!(request.path_info(), Some("/css/site.css"));
    /// ```
    fn path_info(&self) -> Option<&str>;

    /// The path's segments, percent-decoded, empty ones skipped: for a
    /// handler that serves several paths and dispatches on them itself.
    ///
    /// ```
    /// use nimbus_sdk::{Request, RequestExt};
    ///
    /// let request: Request = nimbus_sdk::http::Request::builder()
    ///     .uri("/products/green%20tea/")
    ///     .body(Default::default())
    ///     .unwrap();
    /// assert_eq!(request.path_segments(), ["products", "green tea"]);
    /// ```
    fn path_segments(&self) -> Vec<String>;

    /// The method to dispatch on: `GET` for a `HEAD` request (the host sends
    /// the answer's head without its body), the request's method otherwise.
    ///
    /// ```
    /// use nimbus_sdk::{Request, RequestExt};
    ///
    /// let request: Request = nimbus_sdk::http::Request::builder()
    ///     .method("HEAD")
    ///     .body(Default::default())
    ///     .unwrap();
    /// assert_eq!(request.dispatch_method(), "GET");
    /// ```
    fn dispatch_method(&self) -> &str;

    /// The caller's token claims, verified by the gateway; `None` on a route
    /// that does not require a token. See [`auth`](crate::auth).
    ///
    /// ```
    /// use nimbus_sdk::{Request, RequestExt};
    ///
    /// let request: Request = nimbus_sdk::http::Request::builder()
    ///     .header("x-nimbus-auth-provider", "users")
    ///     .header("x-nimbus-auth-subject", "alice")
    ///     .body(Default::default())
    ///     .unwrap();
    /// assert_eq!(request.claims().unwrap().subject.as_deref(), Some("alice"));
    /// ```
    fn claims(&self) -> Option<crate::auth::Claims>;
}

impl<B: AsRef<[u8]>> RequestExt for ::http::Request<B> {
    fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(self.body().as_ref())?)
    }

    fn text(&self) -> Result<String, Error> {
        body_text(self.body().as_ref())
    }

    fn param(&self, name: &str) -> Option<String> {
        let header = format!("{HEADER_PARAM_PREFIX}{}", name.to_ascii_lowercase());
        let value = self.headers().get(header.as_str())?;
        Some(percent_decode(&String::from_utf8_lossy(value.as_bytes())))
    }

    fn query(&self, name: &str) -> Option<String> {
        query_param(self.uri().query()?, name)
    }

    fn info(&self) -> RequestInfo {
        RequestInfo::from_headers(
            self.headers()
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes())),
        )
    }

    fn request_id(&self) -> Option<&str> {
        header_str(self, HEADER_REQUEST_ID)
    }

    fn path_info(&self) -> Option<&str> {
        header_str(self, HEADER_PATH_INFO)
    }

    fn path_segments(&self) -> Vec<String> {
        self.uri()
            .path()
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(crate::percent_decode)
            .collect()
    }

    fn claims(&self) -> Option<crate::auth::Claims> {
        crate::auth::Claims::from_headers(self.headers())
    }

    fn dispatch_method(&self) -> &str {
        match self.method().as_str() {
            "HEAD" => "GET",
            method => method,
        }
    }
}

fn header_str<'a, B>(request: &'a ::http::Request<B>, name: &str) -> Option<&'a str> {
    request.headers().get(name)?.to_str().ok()
}

fn body_text(body: &[u8]) -> Result<String, Error> {
    String::from_utf8(body.to_vec())
        .map_err(|err| Error::bad_request(format!("the request body is not UTF-8: {err}")))
}

/// The first value of `name` in a query string, `application/x-www-form-urlencoded`
/// style: pairs split on `&`, `+` means a space, `%XX` escapes decoded.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| form_decode(key) == name)
        .map(|(_, value)| form_decode(value))
}

fn form_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

/// Something a handler can take as its argument, made from the whole request.
///
/// `#[http_handler]` calls [`from_request`](FromRequest::from_request) before the
/// handler; an `Err` is sent as the response and the handler does not run.
/// Implemented for [`Request`] itself, [`Json<T>`] (the body as JSON, `400` if it
/// does not parse), `String` (the body as UTF-8, `400` if it is not), [`Bytes`] and
/// `Vec<u8>` (the raw body), and [`RequestInfo`].
///
/// ```
/// use nimbus_sdk::{FromRequest, Json, Request};
///
/// #[derive(serde::Deserialize)]
/// struct Order {
///     item: String,
/// }
///
/// let request: Request = nimbus_sdk::http::Request::new(r#"{"item": "tea"}"#.into());
/// let Json(order) = Json::<Order>::from_request(request).unwrap();
/// assert_eq!(order.item, "tea");
/// ```
///
/// Your own types can implement it too:
///
/// ```
/// use nimbus_sdk::{Error, FromRequest, Request, RequestExt};
///
/// struct UserId(u64);
///
/// impl FromRequest for UserId {
///     fn from_request(request: Request) -> Result<Self, Error> {
///         let id = request.param("id").ok_or_else(|| Error::bad_request("no user id"))?;
///         id.parse()
///             .map(UserId)
///             .map_err(|_| Error::bad_request(format!("`{id}` is not a user id")))
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "a handler cannot take `{Self}` as its argument",
    label = "this does not implement `FromRequest`",
    note = "take a `Request`, `Json<T>`, `String`, `Bytes`, `Vec<u8>` or `RequestInfo`, \
            or implement `FromRequest` for this type"
)]
pub trait FromRequest: Sized {
    /// Makes the argument, or the response to send instead.
    ///
    /// ```
    /// use nimbus_sdk::{FromRequest, Request};
    ///
    /// let request: Request = nimbus_sdk::http::Request::new("plain text".into());
    /// assert_eq!(String::from_request(request).unwrap(), "plain text");
    /// ```
    fn from_request(request: Request) -> Result<Self, Error>;
}

impl FromRequest for Request {
    fn from_request(request: Request) -> Result<Self, Error> {
        Ok(request)
    }
}

impl<T: DeserializeOwned> FromRequest for Json<T> {
    fn from_request(request: Request) -> Result<Self, Error> {
        request.json().map(Json)
    }
}

impl FromRequest for String {
    fn from_request(request: Request) -> Result<Self, Error> {
        String::from_utf8(Vec::from(request.into_body()))
            .map_err(|err| Error::bad_request(format!("the request body is not UTF-8: {err}")))
    }
}

impl FromRequest for Bytes {
    fn from_request(request: Request) -> Result<Self, Error> {
        Ok(request.into_body())
    }
}

impl FromRequest for Vec<u8> {
    fn from_request(request: Request) -> Result<Self, Error> {
        Ok(request.into_body().into())
    }
}

/// A handler taking `Claims` runs only with a verified token; without one
/// (a public route) the caller gets a `401`.
impl FromRequest for crate::auth::Claims {
    fn from_request(request: Request) -> Result<Self, Error> {
        request.claims().ok_or_else(|| {
            Error::unauthorized("this endpoint needs a token verified by the gateway")
        })
    }
}

impl FromRequest for RequestInfo {
    fn from_request(request: Request) -> Result<Self, Error> {
        Ok(request.info())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str) -> Request {
        ::http::Request::builder()
            .uri(uri)
            .body(Bytes::new())
            .unwrap()
    }

    #[test]
    fn query_params_are_form_decoded() {
        let request = request("/x?a=1&b=two+words&c=%C3%BC&d&e=&a=2&f%20g=h");
        assert_eq!(request.query("a").as_deref(), Some("1"));
        assert_eq!(request.query("b").as_deref(), Some("two words"));
        assert_eq!(request.query("c").as_deref(), Some("ü"));
        assert_eq!(request.query("d").as_deref(), Some(""));
        assert_eq!(request.query("e").as_deref(), Some(""));
        assert_eq!(request.query("f g").as_deref(), Some("h"));
        assert_eq!(request.query("z"), None);
        assert_eq!(self::request("/x").query("a"), None);
    }

    #[test]
    fn params_are_case_insensitive_and_decoded() {
        let request = ::http::Request::builder()
            .header("X-Nimbus-Param-Key", "a%2Fb")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(request.param("key").as_deref(), Some("a/b"));
        assert_eq!(request.param("Key").as_deref(), Some("a/b"));
    }

    #[test]
    fn bad_json_is_a_400_with_serde_message() {
        let request = ::http::Request::new(Bytes::from_static(b"{\"a\": }"));
        let error = request.json::<serde_json::Value>().unwrap_err();
        assert_eq!(error.status(), ::http::StatusCode::BAD_REQUEST);
        assert_eq!(error.code(), "bad_request");
        assert!(error.message().contains("expected value"), "{error}");
    }

    #[test]
    fn string_argument_rejects_non_utf8() {
        let request = ::http::Request::new(Bytes::from_static(b"\xff"));
        let error = String::from_request(request).unwrap_err();
        assert_eq!(error.status(), ::http::StatusCode::BAD_REQUEST);
    }
}
