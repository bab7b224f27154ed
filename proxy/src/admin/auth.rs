//! Who may use `/admin/...`: a bearer token from `proxy.admin` (inline, environment or file),
//! or, when none is configured, only clients on loopback. The read endpoints (`/healthz`,
//! `/metrics`, `/servers`) never come here.

use crate::frontend::exchange::secret_eq;
use binlog_reader::http::{Reply, Request};
use router::config::AdminConfig;

/// Why a request may not use the admin API, as the reply it gets.
pub fn check(admin: &AdminConfig, req: &Request) -> Result<(), Reply> {
    if !admin.is_configured() {
        if req.peer.ip().is_loopback() {
            return Ok(());
        }
        return Err(Reply::text(
            403,
            "forbidden: no proxy.admin.token is configured, so /admin is open to loopback clients only\n",
        ));
    }
    let Some(expected) = crate::frontend::users::resolve(&admin.secret()) else {
        tracing::error!(
            "proxy.admin token source is configured but yields no token (unset variable or unreadable file): /admin refuses everyone"
        );
        return Err(Reply::text(
            503,
            "admin token unavailable: proxy.admin.token_env / token_file yields nothing (see the proxy's log)\n",
        ));
    };
    let given = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(token) if secret_eq(token.as_bytes(), expected.trim().as_bytes()) => Ok(()),
        Some(_) => Err(Reply::text(401, "unauthorized: wrong admin token\n")),
        None => Err(Reply::text(
            401,
            "unauthorized: send `Authorization: Bearer <proxy.admin token>`\n",
        )),
    }
}

/// Says at start how `/admin` is protected, so an operator never learns it from a breach.
pub fn announce(admin: &AdminConfig) {
    if admin.is_configured() {
        tracing::info!("/admin requires the proxy.admin bearer token");
    } else {
        tracing::warn!(
            "no proxy.admin.token configured: /admin (changes to the running proxy) is open to loopback clients only"
        );
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use hyper::header::{HeaderValue, AUTHORIZATION};
    use std::net::SocketAddr;

    fn request(peer: [u8; 4], token: Option<&str>) -> Request {
        let mut req = Request::new("POST", "/admin/reload", SocketAddr::from((peer, 9)));
        if let Some(t) = token {
            let v = HeaderValue::from_str(&format!("Bearer {t}")).expect("header");
            req.headers.insert(AUTHORIZATION, v);
        }
        req
    }

    fn status(r: Result<(), Reply>) -> u16 {
        r.err().map_or(200, |reply| reply.status)
    }

    #[test]
    fn without_a_token_only_loopback_is_let_in() {
        let none = AdminConfig::default();
        assert_eq!(status(check(&none, &request([127, 0, 0, 1], None))), 200);
        assert_eq!(status(check(&none, &request([10, 0, 0, 7], None))), 403);
        assert_eq!(
            status(check(&none, &request([10, 0, 0, 7], Some("x")))),
            403
        );
    }

    #[test]
    fn with_a_token_everyone_needs_it_loopback_included() {
        let admin = AdminConfig {
            token: Some("s3cret".into()),
            ..AdminConfig::default()
        };
        assert_eq!(
            status(check(&admin, &request([10, 0, 0, 7], Some("s3cret")))),
            200
        );
        assert_eq!(status(check(&admin, &request([127, 0, 0, 1], None))), 401);
        assert_eq!(
            status(check(&admin, &request([127, 0, 0, 1], Some("s3cre")))),
            401
        );
    }

    #[test]
    fn a_token_source_that_yields_nothing_refuses_everyone() {
        let admin = AdminConfig {
            token_env: Some("RWSPLIT_TEST_SURELY_UNSET_ADMIN_TOKEN".into()),
            ..AdminConfig::default()
        };
        assert_eq!(
            status(check(&admin, &request([127, 0, 0, 1], Some("")))),
            503
        );
    }
}
