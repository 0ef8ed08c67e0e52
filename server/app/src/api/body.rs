//! Request bodies read within a limit: what a body announces is checked before a byte of it is read, and its bytes
//! go into a buffer of the announced size (collecting into a growing one would briefly hold half as much again).

use super::error::ApiError;
use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_LENGTH;
use http_body_util::BodyExt;

/// The length a request announces (`Content-Length`), if it gives one.
pub(crate) fn announced_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok())
}

/// Reads `body` (`announced` bytes long, if it said) up to `max` bytes: `too_large` past them, 400 `bad_body`
/// naming `what` if the body breaks off.
pub(crate) async fn read(
    body: Body,
    announced: Option<usize>,
    max: usize,
    what: &str,
    too_large: impl Fn() -> ApiError,
) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::with_capacity(announced.unwrap_or(0).min(max));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request("bad_body", format!("cannot read {what}: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if bytes.len() + data.len() > max {
                return Err(too_large());
            }
            bytes.extend_from_slice(data);
        }
    }
    Ok(bytes)
}

/// Reads up to `max` bytes of `body`, a frame at a time, keeping none: a client still sending a body that is
/// refused then gets the answer rather than a reset connection.
pub(crate) async fn discard(body: Body, max: usize) {
    let mut body = body;
    let mut read = 0;
    while let Some(Ok(frame)) = body.frame().await {
        read += frame.data_ref().map_or(0, |d| d.len());
        if read > max {
            return;
        }
    }
}
