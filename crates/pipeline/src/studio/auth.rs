//! Who may talk to the studio: requests must name this server in their Host header (DNS
//! rebinding), come from its own page when they carry an Origin (cross-site requests), and
//! every API call must carry the session token printed with the URL.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Studio;
use super::error::ApiError;

/// The header the page sends the token in (links to audio and downloads use `?token=`).
pub const TOKEN_HEADER: &str = "x-distill-token";

/// A new random session token: 32 bytes from the operating system's generator, as hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which Host headers name this server.
#[derive(Debug, Clone)]
pub struct HostCheck {
    pub port: u16,
    pub bind: IpAddr,
}

impl HostCheck {
    /// `localhost:PORT` or an IP literal with the server's port: the bound address, or
    /// (bound to 0.0.0.0 / ::) any IP literal. Names other than localhost are refused,
    /// which is what defeats DNS rebinding: a rebinding page's requests carry its own name.
    pub fn allows(&self, host: &str) -> bool {
        let Some((name, port)) = host.rsplit_once(':') else {
            return false;
        };
        if port.parse::<u16>().ok() != Some(self.port) {
            return false;
        }
        if name == "localhost" {
            return true;
        }
        let name = name.trim_start_matches('[').trim_end_matches(']');
        match name.parse::<IpAddr>() {
            Ok(ip) if self.bind.is_unspecified() => !ip.is_multicast(),
            Ok(ip) => ip == self.bind || (self.bind.is_loopback() && ip.is_loopback()),
            Err(_) => false,
        }
    }
}

fn header(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The token of a request: its header, else its `token` query parameter.
fn request_token(req: &Request) -> Option<String> {
    if let Some(t) = header(req.headers(), TOKEN_HEADER) {
        return Some(t.to_string());
    }
    req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    })
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Checks one request (see the module docs); `Ok` lets it through.
pub fn check(studio: &Studio, req: &Request) -> Result<(), ApiError> {
    let headers = req.headers();
    let host = header(headers, HOST).unwrap_or_default();
    if !studio.hosts.allows(host) {
        return Err(ApiError::forbidden(format!(
            "refused: this server answers only to 127.0.0.1:{0} or localhost:{0} (Host '{host}'; protection against DNS rebinding)",
            studio.hosts.port
        )));
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let ok = origin.to_str().is_ok_and(|o| o == format!("http://{host}"));
        if !ok {
            return Err(ApiError::forbidden(format!(
                "refused: a request from another site ({})",
                origin.to_str().unwrap_or("?")
            )));
        }
    }
    if req.uri().path().starts_with("/api/") {
        match request_token(req) {
            None => {
                return Err(ApiError::new(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "missing session token: open the URL that `distill studio` printed",
                ));
            }
            Some(t) if !same(&t, &studio.token) => {
                return Err(ApiError::forbidden(
                    "wrong session token: open the URL that `distill studio` printed (the token changes at every start)",
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The middleware: [`check`], then security headers on every answer.
pub async fn guard(State(studio): State<Arc<Studio>>, req: Request, next: Next) -> Response {
    let mut response = match check(&studio, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    // The token is in the page's URL: never send it to anyone in a Referer.
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-frame-options", "DENY");
    set(h, "cross-origin-resource-policy", "same-origin");
    if !h.contains_key("cache-control") {
        set(h, "cache-control", "no-store");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_must_name_this_server() {
        let local = HostCheck {
            port: 8080,
            bind: "127.0.0.1".parse().expect("ip"),
        };
        for ok in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"] {
            assert!(local.allows(ok), "{ok}");
        }
        for bad in [
            "evil.com:8080",
            "127.0.0.1:80",
            "127.0.0.1",
            "",
            "192.168.1.2:8080",
            "localhost.evil.com:8080",
        ] {
            assert!(!local.allows(bad), "{bad}");
        }
        let any = HostCheck {
            port: 9,
            bind: "0.0.0.0".parse().expect("ip"),
        };
        assert!(any.allows("192.168.1.2:9") && !any.allows("rebind.example:9"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        assert_eq!(new_token().len(), 64);
    }
}
