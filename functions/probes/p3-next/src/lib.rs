//! `p3-next`: a hello handler built on `wasip3` 0.10, which targets
//! `wasi:http@0.3.2`, a newer patch release of WASI 0.3 than the 0.3.0 the
//! host implements. `GET /` (any path) answers `hello from wasi:http@0.3.2`.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

struct P3Next;

wasip3::http::service::export!(P3Next);

impl wasip3::exports::http::handler::Guest for P3Next {
    async fn handle(_request: Request) -> Result<Response, ErrorCode> {
        let headers = Fields::from_list(&[(
            "content-type".to_owned(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("content-type is a valid header");
        let (mut writer, contents) = wit_stream::new();
        let (trailers_writer, trailers) = wit_future::new(|| Ok(None));
        drop(trailers_writer);
        let (response, _sent) = Response::new(headers, Some(contents), trailers);
        wasip3::spawn_local(async move {
            writer
                .write_all(b"hello from wasi:http@0.3.2".to_vec())
                .await;
        });
        Ok(response)
    }
}
