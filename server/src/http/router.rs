//! The route table: every route the server has, in one place. Matching is a linear scan
//! over a dozen entries (cheaper than building a trie for this size). A path that no
//! route knows is 404; a known path with another method is 405 with `Allow`.
//! A single trailing slash is ignored, so `/api/v1/users/` and `/api/v1/users` are one.

use http::Method;

use super::error::ApiError;

/// What serves a route. Dispatch on it is in `http::dispatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Health,
    Ready,
    Metrics,
    ShardStats,
    CreateUser,
    ListUsers,
    GetUser,
    UpdateUser,
    DeleteUser,
    CacheLookup,
    Checkout,
    Purchase,
    SaleStatus,
    Heartbeat,
    PresenceStatus,
    PresenceStream,
    OpenApi,
    Swagger,
}

/// (method, pattern, handler). `:id` captures one path segment; a final `*` captures
/// the rest of the path (the Swagger UI's assets).
pub static ROUTES: &[(Method, &str, Handler)] = &[
    (Method::GET, "/health", Handler::Health),
    (Method::GET, "/healthz", Handler::Health),
    (Method::GET, "/ready", Handler::Ready),
    (Method::GET, "/metrics", Handler::Metrics),
    (Method::GET, "/api/v1/shards/stats", Handler::ShardStats),
    (Method::POST, "/api/v1/users", Handler::CreateUser),
    (Method::GET, "/api/v1/users", Handler::ListUsers),
    (Method::GET, "/api/v1/users/:id", Handler::GetUser),
    (Method::PUT, "/api/v1/users/:id", Handler::UpdateUser),
    (Method::PATCH, "/api/v1/users/:id", Handler::UpdateUser),
    (Method::DELETE, "/api/v1/users/:id", Handler::DeleteUser),
    (Method::GET, "/v1/users", Handler::CacheLookup),
    (Method::POST, "/checkout", Handler::Checkout),
    (Method::POST, "/purchase", Handler::Purchase),
    // `GET /status` is the sale's (the Flash Sale API); `POST /status` is presence's (the live user status server).
    (Method::GET, "/status", Handler::SaleStatus),
    (Method::POST, "/status", Handler::PresenceStatus),
    (Method::POST, "/heartbeat", Handler::Heartbeat),
    (Method::GET, "/api/v1/presence/stream", Handler::PresenceStream),
    (Method::GET, "/openapi.json", Handler::OpenApi),
    (Method::GET, "/swagger/*", Handler::Swagger),
    (Method::GET, "/swagger", Handler::Swagger),
];

/// A matched route: the handler, its pattern (the metrics label) and the `:id` segment.
#[derive(Debug)]
pub struct Match<'p> {
    pub handler: Handler,
    pub pattern: &'static str,
    pub param: Option<&'p str>,
}

fn matches<'p>(pattern: &str, path: &'p str) -> Option<Option<&'p str>> {
    if let Some(prefix) = pattern.strip_suffix("/*") {
        return path.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('/')).map(Some);
    }
    let mut param = None;
    let mut pat = pattern.split('/');
    let mut segs = path.split('/');
    loop {
        match (pat.next(), segs.next()) {
            (None, None) => return Some(param),
            (Some(p), Some(s)) if p.starts_with(':') => {
                if s.is_empty() {
                    return None;
                }
                param = Some(s);
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

/// Finds the route for `method` and `path`.
///
/// # Errors
/// [`ApiError::NoRoute`] (404) or [`ApiError::MethodNotAllowed`] (405, with `Allow`).
pub fn find<'p>(method: &Method, path: &'p str) -> Result<Match<'p>, ApiError> {
    // HEAD is GET without a body; hyper drops the body of a HEAD response.
    let method = if method == Method::HEAD { &Method::GET } else { method };
    let raw = path;
    let path = if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path };
    let mut allow: Vec<&str> = Vec::new();
    for (m, pattern, handler) in ROUTES {
        // Wildcards see the path as sent: "/swagger/" is the UI's index, "/swagger" is not.
        let subject = if pattern.ends_with("/*") { raw } else { path };
        if let Some(param) = matches(pattern, subject) {
            if m == method {
                return Ok(Match { handler: *handler, pattern, param });
            }
            allow.push(m.as_str());
        }
    }
    if allow.is_empty() {
        Err(ApiError::NoRoute(path.to_string()))
    } else {
        Err(ApiError::MethodNotAllowed { method: method.to_string(), allow: allow.join(", ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_with_and_without_trailing_slash() {
        let m = find(&Method::POST, "/api/v1/users/").unwrap();
        assert_eq!(m.handler, Handler::CreateUser);
        assert_eq!(find(&Method::POST, "/api/v1/users").unwrap().handler, Handler::CreateUser);
        let m = find(&Method::GET, "/api/v1/users/abc").unwrap();
        assert_eq!((m.handler, m.param), (Handler::GetUser, Some("abc")));
        assert_eq!(find(&Method::PATCH, "/api/v1/users/abc/").unwrap().param, Some("abc"));
        let m = find(&Method::GET, "/swagger/swagger-ui.css").unwrap();
        assert_eq!((m.handler, m.param), (Handler::Swagger, Some("swagger-ui.css")));
        assert_eq!(find(&Method::GET, "/swagger").unwrap().param, None);
        assert_eq!(find(&Method::GET, "/swagger/").unwrap().param, Some(""));
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
        assert!(matches!(find(&Method::GET, "/nope"), Err(ApiError::NoRoute(_))));
        assert!(matches!(find(&Method::GET, "/api/v1/users/a/b"), Err(ApiError::NoRoute(_))));
        match find(&Method::POST, "/api/v1/users/abc") {
            Err(ApiError::MethodNotAllowed { allow, .. }) => assert_eq!(allow, "GET, PUT, PATCH, DELETE"),
            other => panic!("{other:?}"),
        }
        assert_eq!(find(&Method::HEAD, "/health").unwrap().handler, Handler::Health);
        match find(&Method::DELETE, "/health") {
            Err(ApiError::MethodNotAllowed { allow, .. }) => assert_eq!(allow, "GET"),
            other => panic!("{other:?}"),
        }
    }
}
