//! The users table's SQL, one function per statement. Each runs on exactly one shard.

use sqlx::PgPool;

use super::model::{NewUser, User, UserPatch};

pub async fn insert(pool: &PgPool, u: &NewUser) -> Result<User, sqlx::Error> {
    let (created_at, updated_at) = sqlx::query_as(
        "INSERT INTO users (id, first_name, last_name, email, deeplink, promo_message)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at, updated_at",
    )
    .bind(u.id.as_str())
    .bind(&u.first_name)
    .bind(&u.last_name)
    .bind(&u.email)
    .bind(&u.deeplink)
    .bind(&u.promo_message)
    .fetch_one(pool)
    .await?;
    Ok(User {
        id: u.id.as_str().to_owned(),
        first_name: u.first_name.clone(),
        last_name: u.last_name.clone(),
        email: u.email.clone(),
        deeplink: u.deeplink.clone(),
        promo_message: u.promo_message.clone(),
        created_at,
        updated_at,
    })
}

pub async fn get(pool: &PgPool, id: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, first_name, last_name, email, deeplink, promo_message, created_at, updated_at
         FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// One statement: only the given fields change; `updated_at` always moves forward
/// (`clock_timestamp()`, and at least 1 µs past the old value).
pub async fn update(pool: &PgPool, id: &str, p: &UserPatch) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE users SET
            first_name    = coalesce($2, first_name),
            last_name     = coalesce($3, last_name),
            email         = CASE WHEN $4 THEN $5 ELSE email END,
            deeplink      = CASE WHEN $6 THEN $7 ELSE deeplink END,
            promo_message = CASE WHEN $8 THEN $9 ELSE promo_message END,
            updated_at    = greatest(clock_timestamp(), updated_at + interval '1 microsecond')
         WHERE id = $1
         RETURNING id, first_name, last_name, email, deeplink, promo_message, created_at, updated_at",
    )
    .bind(id)
    .bind(&p.first_name)
    .bind(&p.last_name)
    .bind(p.email.is_some())
    .bind(p.email.clone().flatten())
    .bind(p.deeplink.is_some())
    .bind(p.deeplink.clone().flatten())
    .bind(p.promo_message.is_some())
    .bind(p.promo_message.clone().flatten())
    .fetch_optional(pool)
    .await
}

pub async fn delete(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(pool).await?.rows_affected() > 0)
}

/// Newest first, strictly after the cursor `(created_at, id)` when given. Walks the
/// `(created_at DESC, id DESC)` index: the cost does not depend on how deep the page is.
pub async fn page(
    pool: &PgPool,
    after: Option<&(chrono::DateTime<chrono::Utc>, String)>,
    limit: i64,
) -> Result<Vec<User>, sqlx::Error> {
    match after {
        Some((ts, id)) => {
            sqlx::query_as(
                "SELECT id, first_name, last_name, email, deeplink, promo_message, created_at, updated_at
                 FROM users WHERE (created_at, id) < ($1, $2)
                 ORDER BY created_at DESC, id DESC LIMIT $3",
            )
            .bind(ts)
            .bind(id)
            .bind(limit)
            .fetch_all(pool)
            .await
        }
        None => {
            sqlx::query_as(
                "SELECT id, first_name, last_name, email, deeplink, promo_message, created_at, updated_at
                 FROM users ORDER BY created_at DESC, id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
        }
    }
}

pub async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await
}
