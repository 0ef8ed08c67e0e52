//! What keeps a web page from driving the API through its visitor's browser. In open mode nothing asks for a
//! token, so any page could otherwise upload a module and submit a job to `127.0.0.1:8080` with `fetch(url,
//! {mode: 'no-cors'})`. Three checks stop it: request bodies must say what they are with a `Content-Type` that a
//! browser sends cross-site only after asking the server first (which Eddy never allows), never `text/plain` or
//! form data; in open mode a request a browser marks as cross-site (`Origin`, `Sec-Fetch-Site`) is refused; and in
//! open mode the `Host` must be a loopback name, so a name of the attacker's that resolves to 127.0.0.1 (DNS
//! rebinding) is refused too.

use super::AppState;
use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

/// What a body may be sent as, by what it holds.
pub(crate) mod media {
    /// A component.
    pub const WASM: &[&str] = &["application/wasm", "application/octet-stream"];
    /// A job spec.
    pub const SPEC: &[&str] = &["application/yaml", "application/x-yaml", "text/yaml", "application/json"];
    /// Records for an HTTP input: JSON lines, or one JSON array.
    pub const JSON_LINES: &[&str] = &["application/x-ndjson", "application/jsonl", "application/json"];
    /// A JSON request.
    pub const JSON: &[&str] = &["application/json"];
}

/// Refuses a body whose `Content-Type` is none of `accepted` (415), naming the ones it takes.
pub(crate) fn require_content_type(headers: &HeaderMap, accepted: &[&str]) -> Result<(), ApiError> {
    let given = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = given.split(';').next().unwrap_or("").trim();
    if accepted.iter().any(|a| a.eq_ignore_ascii_case(media)) {
        return Ok(());
    }
    let shown = if media.is_empty() { "none".to_string() } else { format!("`{media}`") };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("this body must be sent with `Content-Type: {}` (it had {shown})", accepted.join("` or `")),
    ))
}

/// In open mode, refuses requests from other sites and to other host names (403 `cross_site`).
pub(crate) async fn same_site_only(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.config.open_mode()
        && let Some(why) = cross_site(request.headers())
    {
        return ApiError::new(StatusCode::FORBIDDEN, "cross_site", why).into_response();
    }
    next.run(request).await
}

/// Why a request to an open-mode server looks like it comes from another site, if it does.
fn cross_site(headers: &HeaderMap) -> Option<String> {
    let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("?"));
    let host = text(header::HOST)?;
    if !loopback_host(host) {
        return Some(format!(
            "this server runs in open mode and answers only requests addressed to a loopback name (127.0.0.1, [::1], \
             localhost), not to `{host}`: configure tenants to serve other names"
        ));
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Some(format!(
            "the browser marks this request as coming from another site (`Sec-Fetch-Site: {site}`); in open mode \
             only Eddy's own pages, the CLI and tools like curl may call the API"
        ));
    }
    if let Some(origin) = text(header::ORIGIN) {
        let same = origin.strip_prefix("http://").is_some_and(|authority| authority.eq_ignore_ascii_case(host));
        if !same {
            return Some(format!(
                "a page of `{origin}` may not call this server: in open mode only Eddy's own pages, the CLI and tools \
                 like curl may call the API"
            ));
        }
    }
    None
}

/// Whether a `Host` header names this machine's loopback interface.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => {
            host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host })
        }
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn loopback_names_are_this_machine() {
        for host in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:9", "127.1.2.3", "[::1]"] {
            assert!(loopback_host(host), "{host}");
        }
        for host in ["evil.example:8080", "10.0.0.1:8080", "localhost.evil.example", "[::2]:80", "0.0.0.0:8080", ""] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn browsers_marks_of_another_site_are_refused() {
        let ok = [
            headers(&[("host", "127.0.0.1:8080")]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]),
            headers(&[("host", "localhost:8080"), ("sec-fetch-site", "same-origin")]),
            headers(&[("host", "localhost:8080"), ("sec-fetch-site", "none")]),
        ];
        for h in &ok {
            assert_eq!(cross_site(h), None, "{h:?}");
        }
        let refused = [
            (headers(&[]), None),
            (headers(&[("host", "rebound.evil.example:8080")]), Some("runs in open mode and answers only")),
            (
                headers(&[("host", "127.0.0.1:8080"), ("origin", "https://evil.example")]),
                Some("`https://evil.example`"),
            ),
            (headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]), Some("`null`")),
            (headers(&[("host", "127.0.0.1:8080"), ("origin", "http://localhost:8080")]), Some("may not call")),
            (headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]), Some("cross-site")),
            (headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")]), Some("same-site")),
        ];
        for (h, why) in &refused {
            match why {
                Some(why) => assert!(cross_site(h).is_some_and(|w| w.contains(why)), "{h:?}: {:?}", cross_site(h)),
                None => assert_eq!(cross_site(h), None, "no Host: nothing to compare (hyper refuses such requests)"),
            }
        }
    }

    #[test]
    fn bodies_must_say_what_they_are() {
        let wasm = headers(&[("content-type", "application/wasm")]);
        assert!(require_content_type(&wasm, media::WASM).is_ok());
        let spec = headers(&[("content-type", "application/yaml; charset=utf-8")]);
        assert!(require_content_type(&spec, media::SPEC).is_ok());
        for sneaky in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            let h = headers(&[("content-type", sneaky)]);
            let refused = require_content_type(&h, media::SPEC).expect_err(sneaky);
            assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert!(refused.message.contains("application/yaml"), "{}", refused.message);
        }
        let none = require_content_type(&HeaderMap::new(), media::JSON).expect_err("no type");
        assert!(none.message.contains("it had none"), "{}", none.message);
    }
}
