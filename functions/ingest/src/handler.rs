use aftercare_core::service::api::{self, AccessKeys, ApiRequest};
use aftercare_core::service::App;
use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::{Body, Error, Request, Response};

/// Maps one API Gateway request to the shared API and its answer back.
pub async fn handle(app: &App, keys: &AccessKeys, request: Request) -> Result<Response<Body>, Error> {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let body: &[u8] = match request.body() {
        Body::Empty => b"",
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    };
    let response = api::handle(
        app,
        keys,
        ApiRequest { method: request.method().as_str(), path: request.uri().path(), query: request.uri().query(), authorization: header("authorization"), content_type: header("content-type"), body },
    )
    .await;
    let (content_type, body) = match response.html {
        Some(html) => ("text/html; charset=utf-8", html),
        None => ("application/json", response.body.to_string()),
    };
    Ok(Response::builder().status(response.status).header(CONTENT_TYPE, content_type).body(Body::Text(body))?)
}
