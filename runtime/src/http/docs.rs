//! `GET /openapi.json` (the document generated from the DocTypes at build time) and the `/docs`
//! page, whose HTML and script are embedded in the binary (no CDN, no download).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;

const PAGE: &str = include_str!("docs.html");

pub async fn openapi(State(state): State<ApiState>, _: super::NoQuery) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], state.openapi.to_string()).into_response()
}

pub async fn page(_: super::NoQuery) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], PAGE).into_response()
}
