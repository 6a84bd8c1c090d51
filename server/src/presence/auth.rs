//! Optional auth for status changes (the user online status design: "UNAUTHORIZED: user not authorized to
//! update status"). When `PRESENCE_AUTH_SECRET` is set, a heartbeat or status change needs
//! `Authorization: Bearer <JWT>` (HS256, signed with that secret, `exp` required) whose
//! `sub` is the user being changed. Without a secret, presence is open. Reads and
//! subscriptions are open either way. Tokens are never logged.
//!
//! `shardgate token --user ID` mints a token with the configured secret.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Error;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

pub struct Auth {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth { .. }") // never print key material
    }
}

impl Auth {
    pub fn new(secret: &[u8]) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        Auth { key: DecodingKey::from_secret(secret), validation }
    }

    /// Checks an `Authorization` header value against the user being changed.
    ///
    /// # Errors
    /// `Unauthenticated` for a missing, malformed, badly signed or expired token;
    /// `Forbidden` for a valid token of another user.
    pub fn check(&self, authorization: Option<&[u8]>, user: &str) -> Result<(), Error> {
        let header = authorization.ok_or(Error::Unauthenticated("a bearer token is required"))?;
        let token = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
            .ok_or(Error::Unauthenticated("authorization must be a bearer token"))?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| Error::Unauthenticated("invalid or expired token"))?;
        if data.claims.sub == user {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }
}

/// A token for `user`, valid `ttl_seconds` from now.
///
/// # Errors
/// Signing failed (it does not for HS256 with any secret).
pub fn mint(secret: &[u8], user: &str, ttl_seconds: u64) -> Result<String, jsonwebtoken::errors::Error> {
    let exp = chrono::Utc::now().timestamp().max(0) as u64 + ttl_seconds;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Claims { sub: user.to_owned(), exp },
        &EncodingKey::from_secret(secret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_for_signature_expiry_and_subject() {
        let auth = Auth::new(b"s3cret");
        let good = format!("Bearer {}", mint(b"s3cret", "alice", 60).unwrap());
        assert!(auth.check(Some(good.as_bytes()), "alice").is_ok());
        assert!(matches!(auth.check(Some(good.as_bytes()), "bob"), Err(Error::Forbidden)));
        let forged = format!("Bearer {}", mint(b"other", "alice", 60).unwrap());
        assert!(matches!(auth.check(Some(forged.as_bytes()), "alice"), Err(Error::Unauthenticated(_))));
        let claims = Claims { sub: "alice".into(), exp: 1_000 };
        let expired = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(b"s3cret")).unwrap();
        let expired = format!("Bearer {expired}");
        assert!(matches!(auth.check(Some(expired.as_bytes()), "alice"), Err(Error::Unauthenticated(_))));
        assert!(matches!(auth.check(None, "alice"), Err(Error::Unauthenticated(_))));
        assert!(matches!(auth.check(Some(b"Basic abc"), "alice"), Err(Error::Unauthenticated(_))));
    }
}
