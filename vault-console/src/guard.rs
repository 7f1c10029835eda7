//! What keeps a browser from being turned against the console: strict response headers on
//! every answer, the session cookie's flags, and the checks every form post passes (its own
//! origin, and the session's form token compared in constant time).

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

/// The session cookie: `__Host-` makes browsers refuse it unless Secure, host-only, Path=/.
pub const SESSION_COOKIE: &str = "__Host-mnl-console";
/// The sign-in form's token cookie (a login form cannot be posted from another site either).
pub const SIGNIN_COOKIE: &str = "__Host-mnl-signin";

/// No script at all, styles and images from this console only, forms only to itself, never in
/// a frame.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every response: no caching (pages show who may do what), no
/// framing, no sniffing, no referrer to other sites (`same-origin`: with `no-referrer` browsers send
/// `Origin: null` on the console's own forms).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A `Set-Cookie` value for `name`: Secure, HttpOnly, SameSite=Strict, host-only, for this
/// browser session only (empty `value`: the cookie is removed).
pub fn set_cookie(name: &str, value: &str) -> HeaderValue {
    let expiry = if value.is_empty() { "; Max-Age=0" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{expiry}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of cookie `name` in `headers`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Why a form post was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// Posted from another site (its `Origin` or `Sec-Fetch-Site` says so).
    #[error("the form was sent from another site ({0})")]
    CrossSite(String),
    /// Without the session's form token, or with another.
    #[error("the form's token is missing or not this session's")]
    BadFormToken,
}

impl Forbidden {
    /// The machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Forbidden::CrossSite(_) => "CROSS_SITE_REQUEST",
            Forbidden::BadFormToken => "CSRF_TOKEN_INVALID",
        }
    }
}

/// Checks a form post: sent by this console's own pages (`origin` is the console's
/// `scheme://host:port`), carrying `expected` as its form token.
pub fn check_post(
    headers: &HeaderMap,
    origin: &str,
    expected: &str,
    presented: Option<&str>,
) -> Result<(), Forbidden> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return Err(Forbidden::CrossSite(format!("Sec-Fetch-Site {site}")));
    }
    if let Some(sent) = headers.get(header::ORIGIN) {
        let sent = sent.to_str().unwrap_or("?");
        if sent != origin {
            return Err(Forbidden::CrossSite(format!("Origin {sent}")));
        }
    }
    let presented = presented.unwrap_or("");
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
        return Err(Forbidden::BadFormToken);
    }
    Ok(())
}

/// The console's own origin for a request's `Host` (what a same-origin form's `Origin` is).
pub fn own_origin(headers: &HeaderMap, tls: bool) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    format!("{}://{host}", if tls { "https" } else { "http" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_post_needs_its_own_origin_and_the_sessions_token() {
        let own = "http://localhost:8080";
        let same = headers(&[("origin", "http://localhost:8080")]);
        assert_eq!(check_post(&same, own, "abc", Some("abc")), Ok(()));
        assert_eq!(
            check_post(&same, own, "abc", Some("abd")),
            Err(Forbidden::BadFormToken)
        );
        assert_eq!(
            check_post(&same, own, "abc", None),
            Err(Forbidden::BadFormToken)
        );
        assert_eq!(
            check_post(&same, own, "", Some("")),
            Err(Forbidden::BadFormToken)
        );
        let other = headers(&[("origin", "http://evil.example")]);
        assert!(matches!(
            check_post(&other, own, "abc", Some("abc")),
            Err(Forbidden::CrossSite(_))
        ));
        let fetched = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(matches!(
            check_post(&fetched, own, "abc", Some("abc")),
            Err(Forbidden::CrossSite(_))
        ));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let map = headers(&[("cookie", "a=1; __Host-mnl-console=xyz; b=2")]);
        assert_eq!(cookie(&map, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&map, "mnl-console"), None);
        let set = set_cookie(SESSION_COOKIE, "id");
        let set = set.to_str().unwrap();
        for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(flag), "{set}");
        }
    }
}
