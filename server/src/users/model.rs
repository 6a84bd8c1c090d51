//! User types, validated at the edge: a value of [`UserId`], [`NewUser`] or
//! [`UserPatch`] is valid by construction, so the code behind never re-checks.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::http::error::ApiError;

const MAX_NAME: usize = 100;
const MAX_EMAIL: usize = 254;
const MAX_DEEPLINK: usize = 2048;
const MAX_PROMO: usize = 1000;

/// `[A-Za-z0-9_-]{1,64}`: the id of a user (and the key the ring routes on).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// # Errors
    /// 400 `INVALID_ID` unless `[A-Za-z0-9_-]{1,64}`.
    pub fn parse(s: &str) -> Result<UserId, ApiError> {
        if is_valid_id(s) {
            Ok(UserId(s.to_owned()))
        } else {
            Err(ApiError::bad_request("INVALID_ID", "id must match [A-Za-z0-9_-]{1,64}"))
        }
    }

    /// A fresh UUIDv7: time-ordered, so new rows land at the right edge of the index.
    pub fn generate() -> UserId {
        UserId(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A row of the users table.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub deeplink: Option<String>,
    pub promo_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

impl Serialize for User {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            id: &'a str,
            first_name: &'a str,
            last_name: &'a str,
            name: String,
            email: &'a Option<String>,
            deeplink: &'a Option<String>,
            promo_message: &'a Option<String>,
            #[serde(serialize_with = "rfc3339")]
            created_at: &'a DateTime<Utc>,
            #[serde(serialize_with = "rfc3339")]
            updated_at: &'a DateTime<Utc>,
        }
        let name = if self.last_name.is_empty() {
            self.first_name.clone()
        } else {
            format!("{} {}", self.first_name, self.last_name)
        };
        Out {
            id: &self.id,
            first_name: &self.first_name,
            last_name: &self.last_name,
            name,
            email: &self.email,
            deeplink: &self.deeplink,
            promo_message: &self.promo_message,
            created_at: &self.created_at,
            updated_at: &self.updated_at,
        }
        .serialize(s)
    }
}

/// `POST /api/v1/users/` body, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    id: Option<String>,
    name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    deeplink: Option<String>,
    promo_message: Option<String>,
}

/// A validated new user.
#[derive(Debug)]
pub struct NewUser {
    pub id: UserId,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub deeplink: Option<String>,
    pub promo_message: Option<String>,
}

/// `"field": null` is `Some(None)` (clear it); an absent field is `None` (keep it).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `PUT`/`PATCH` body: only the fields given change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    deeplink: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    promo_message: Option<Option<String>>,
}

/// A validated partial update. `Some(None)` clears an optional field.
#[derive(Debug, Default)]
pub struct UserPatch {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<Option<String>>,
    pub deeplink: Option<Option<String>>,
    pub promo_message: Option<Option<String>>,
}

fn invalid(message: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::bad_request("VALIDATION_FAILED", message)
}

/// Lengths count characters (Unicode scalar values) as sent, before any trimming, as
/// JSON Schema's `maxLength` does: openapi.json states these rules exactly (as patterns
/// and lengths), so a client validating against the contract and the server agree.
fn check_text(field: &'static str, v: &str, max: usize, allow_newlines: bool) -> Result<(), ApiError> {
    if v.chars().count() > max {
        return Err(invalid(format!("{field} must be at most {max} characters")));
    }
    if v.chars().any(|c| c.is_control() && !(allow_newlines && (c == '\n' || c == '\t'))) {
        return Err(invalid(format!("{field} must not contain control characters")));
    }
    Ok(())
}

/// At most 100 characters as sent, no control characters; stored trimmed (Unicode
/// white space), and a required name must not be blank.
fn check_name(field: &'static str, v: &str, required: bool) -> Result<String, ApiError> {
    check_text(field, v, MAX_NAME, false)?;
    let v = v.trim();
    if required && v.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    Ok(v.to_owned())
}

/// A deliberately plain shape check, not trimmed: one `@`, a local part of 1 to 64
/// visible ASCII characters (some punctuation excluded), a dotted domain of letters,
/// digits and `-`. Deliverability is not our business.
fn check_email(v: &str) -> Result<String, ApiError> {
    let bad = || invalid("email must look like name@example.com");
    if v.len() > MAX_EMAIL {
        return Err(invalid(format!("email must be at most {MAX_EMAIL} characters")));
    }
    let (local, domain) = v.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'@' | b'"' | b'(' | b')' | b',' | b':' | b';' | b'<' | b'>' | b'[' | b'\\' | b']')
        });
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if local_ok && domain_ok {
        Ok(v.to_owned())
    } else {
        Err(bad())
    }
}

/// `<scheme>://<rest>`, not trimmed: white space or control characters anywhere are refused.
fn check_deeplink(v: &str) -> Result<String, ApiError> {
    if v.chars().count() > MAX_DEEPLINK {
        return Err(invalid(format!("deeplink must be at most {MAX_DEEPLINK} characters")));
    }
    let scheme_ok = v.split_once("://").is_some_and(|(s, rest)| {
        !s.is_empty()
            && !rest.is_empty()
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    });
    if !scheme_ok || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("deeplink must be a URI like myapp://path or https://host/path"));
    }
    Ok(v.to_owned())
}

fn check_promo(v: &str) -> Result<String, ApiError> {
    check_text("promo_message", v, MAX_PROMO, true)?;
    Ok(v.to_owned())
}

/// "John Doe" -> ("John", "Doe"); "Cher" -> ("Cher", ""); split at the first space.
fn split_name(name: &str) -> (String, String) {
    let name = name.trim();
    match name.split_once(' ') {
        Some((first, last)) => (first.to_owned(), last.trim().to_owned()),
        None => (name.to_owned(), String::new()),
    }
}

impl NewUser {
    /// # Errors
    /// 400 `INVALID_ID` or `VALIDATION_FAILED` naming the field.
    pub fn parse(b: CreateBody) -> Result<NewUser, ApiError> {
        let id = match &b.id {
            Some(id) => UserId::parse(id)?,
            None => UserId::generate(),
        };
        let (first, last) = match (b.name, b.first_name, b.last_name) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(invalid("give either name or first_name/last_name, not both"))
            }
            (Some(name), None, None) => {
                check_name("name", &name, true)?;
                split_name(&name)
            }
            (None, Some(f), l) => (f, l.unwrap_or_default()),
            (None, None, _) => return Err(invalid("first_name (or name) is required")),
        };
        Ok(NewUser {
            id,
            first_name: check_name("first_name", &first, true)?,
            last_name: check_name("last_name", &last, false)?,
            email: b.email.as_deref().map(check_email).transpose()?,
            deeplink: b.deeplink.as_deref().map(check_deeplink).transpose()?,
            promo_message: b.promo_message.as_deref().map(check_promo).transpose()?,
        })
    }
}

impl UserPatch {
    /// # Errors
    /// 400 `VALIDATION_FAILED` naming the field, or when nothing would change.
    pub fn parse(b: PatchBody) -> Result<UserPatch, ApiError> {
        let mut p = UserPatch::default();
        match (b.name, &b.first_name, &b.last_name) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(invalid("give either name or first_name/last_name, not both"))
            }
            (Some(None), ..) => return Err(invalid("name cannot be null")),
            (Some(Some(name)), ..) => {
                check_name("name", &name, true)?;
                let (f, l) = split_name(&name);
                p.first_name = Some(check_name("first_name", &f, true)?);
                p.last_name = Some(check_name("last_name", &l, false)?);
            }
            (None, ..) => {}
        }
        match b.first_name {
            Some(None) => return Err(invalid("first_name cannot be null")),
            Some(Some(f)) => p.first_name = Some(check_name("first_name", &f, true)?),
            None => {}
        }
        if let Some(l) = b.last_name {
            p.last_name = Some(check_name("last_name", l.as_deref().unwrap_or(""), false)?);
        }
        p.email = b.email.map(|v| v.as_deref().map(check_email).transpose()).transpose()?;
        p.deeplink = b.deeplink.map(|v| v.as_deref().map(check_deeplink).transpose()).transpose()?;
        p.promo_message = b.promo_message.map(|v| v.as_deref().map(check_promo).transpose()).transpose()?;
        if p.first_name.is_none()
            && p.last_name.is_none()
            && p.email.is_none()
            && p.deeplink.is_none()
            && p.promo_message.is_none()
        {
            return Err(invalid("no fields to update"));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::parse_json;

    fn create(json: &str) -> Result<NewUser, ApiError> {
        NewUser::parse(parse_json::<CreateBody>(json.as_bytes())?)
    }

    #[test]
    fn name_splits_at_the_first_space() {
        let u = create(r#"{"name": "John  van Doe", "email": "john@example.com"}"#).unwrap();
        assert_eq!((u.first_name.as_str(), u.last_name.as_str()), ("John", "van Doe"));
        let u = create(r#"{"name": "Cher"}"#).unwrap();
        assert_eq!((u.first_name.as_str(), u.last_name.as_str()), ("Cher", ""));
        assert!(is_valid_id(u.id.as_str()), "generated id {:?}", u.id);
    }

    #[test]
    fn validation_refuses_bad_input_with_the_field_named() {
        for (body, needle) in [
            (r#"{}"#, "first_name"),
            (r#"{"name": "   "}"#, "name must not be empty"),
            (r#"{"name": "a", "first_name": "b"}"#, "either"),
            (r#"{"first_name": "a", "email": "nope"}"#, "email"),
            (r#"{"first_name": "a", "email": "a@b"}"#, "email"),
            (r#"{"first_name": "a", "email": "a b@c.com"}"#, "email"),
            (r#"{"first_name": "a", "deeplink": "not a link"}"#, "deeplink"),
            (r#"{"first_name": "a\u0000"}"#, "control"),
            (r#"{"id": "bad id!", "first_name": "a"}"#, "id"),
        ] {
            let e = create(body).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            assert!(e.to_string().contains(needle), "{body}: {e}");
        }
        let long = format!(r#"{{"first_name": "{}"}}"#, "x".repeat(101));
        assert!(create(&long).unwrap_err().to_string().contains("at most 100"));
        // Lengths count what was sent, as openapi.json's maxLength does.
        let padded = format!(r#"{{"first_name": " {} "}}"#, "x".repeat(99));
        assert!(create(&padded).unwrap_err().to_string().contains("at most 100"));
        let long_name = format!(r#"{{"name": "{} {}"}}"#, "x".repeat(50), "y".repeat(50));
        assert!(create(&long_name).unwrap_err().to_string().contains("name must be at most 100"));
        // Email and deeplink are not trimmed: white space is refused, not silently cut.
        for body in [
            r#"{"first_name": "a", "email": " a@b.co"}"#,
            r#"{"first_name": "a", "deeplink": "myapp://x "}"#,
            r#"{"first_name": "a", "deeplink": ""}"#,
        ] {
            assert_eq!(create(body).unwrap_err().code(), "VALIDATION_FAILED", "{body}");
        }
        let u = create(r#"{"first_name": "  Ada ", "deeplink": "a+b.c-d://x/\u00e9"}"#).unwrap();
        assert_eq!((u.first_name.as_str(), u.deeplink.as_deref()), ("Ada", Some("a+b.c-d://x/é")));
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        let e = create(r#"{"first_name": "a", "admin": true}"#).unwrap_err();
        assert_eq!(e.code(), "INVALID_BODY");
        let e = create(r#"{"first_name": 42}"#).unwrap_err();
        assert_eq!(e.code(), "INVALID_BODY");
        let e = create(r#"{"first_name": "#).unwrap_err();
        assert_eq!(e.code(), "INVALID_JSON");
        let e = parse_json::<CreateBody>(b"{\"first_name\": \"\xff\"}").unwrap_err();
        assert_eq!(e.code(), "INVALID_JSON");
    }

    #[test]
    fn patch_distinguishes_absent_from_null() {
        let p = UserPatch::parse(parse_json(br#"{"email": null}"#).unwrap()).unwrap();
        assert_eq!(p.email, Some(None));
        assert!(p.first_name.is_none() && p.deeplink.is_none());
        let p = UserPatch::parse(parse_json(br#"{"name": "Jane Doe"}"#).unwrap()).unwrap();
        assert_eq!((p.first_name.as_deref(), p.last_name.as_deref()), (Some("Jane"), Some("Doe")));
        assert!(UserPatch::parse(parse_json(br#"{}"#).unwrap()).is_err());
        assert!(UserPatch::parse(parse_json(br#"{"first_name": null}"#).unwrap()).is_err());
    }
}
