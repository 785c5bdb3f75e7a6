//! Accounts and bearer tokens. Passwords are kept as argon2 hashes; tokens are 32 random
//! bytes shown once (`fct_` + 64 hex) and kept as their BLAKE3 hash, with an expiry, and
//! can be revoked. A user's token says who and which role; an appliance's token (made at
//! allocation) may only report for its own serial.

use anyhow::{Context, Result, bail};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sqlx::Row;

use crate::db::Db;

/// How long a user's token lives after login.
pub const USER_TOKEN_SECS: i64 = 12 * 3600;
/// How long an appliance's token lives (it is replaced at re-allocation).
pub const APPLIANCE_TOKEN_SECS: i64 = 10 * 365 * 86400;
/// How long a station's token lives.
pub const STATION_TOKEN_SECS: i64 = 365 * 86400;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The fleet's operator.
    Ops {
        /// The user's email.
        email: String,
    },
    /// A partner's user: sees and acts on that partner's deployments only.
    Partner {
        /// The user's email.
        email: String,
        /// The partner.
        partner: String,
    },
    /// An appliance, reporting for itself.
    Appliance {
        /// Its serial.
        serial: String,
    },
    /// A pre-fill station: reports the pre-fill of allocated appliances, uploads catalogs.
    Station {
        /// Its name.
        name: String,
    },
}

impl Caller {
    /// How events name this caller (`actor`).
    pub fn actor(&self) -> String {
        match self {
            Self::Ops { email } => format!("ops:{email}"),
            Self::Partner { email, .. } => format!("partner:{email}"),
            Self::Appliance { serial } => format!("appliance:{serial}"),
            Self::Station { name } => format!("station:{name}"),
        }
    }
}

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer …`.
    #[error("no bearer token: log in with POST /api/login")]
    Missing,
    /// Unknown, expired or revoked.
    #[error("the token is unknown, expired or revoked")]
    Refused,
}

/// 32 random bytes from the operating system, as hex.
pub fn random_hex() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// The argon2 hash of a password.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?
        .to_string())
}

fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Creates a user (`fill-control user add`); a partner user's partner is created if new.
pub async fn add_user(
    db: &Db,
    email: &str,
    role: &str,
    partner: Option<&str>,
    password: &str,
    now: i64,
) -> Result<()> {
    crate::text::check_email(email)?;
    match (role, partner) {
        ("ops", None) => {}
        ("partner", Some(p)) if crate::text::is_name(p) => {}
        ("partner", Some(p)) => bail!("partner {p:?}: 1 to 64 letters, digits, '-', '_' or '.'"),
        ("partner", None) => bail!("a partner user needs --partner NAME"),
        ("ops", Some(_)) => bail!("an ops user belongs to no partner"),
        _ => bail!("role must be ops or partner, not {role:?}"),
    }
    if password.chars().count() < 12 {
        bail!("a password needs at least 12 characters");
    }
    let hash = hash_password(password)?;
    let mut tx = db.pool.begin().await?;
    if let Some(p) = partner {
        let known = sqlx::query("SELECT name FROM partners WHERE name = $1")
            .bind(p)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            sqlx::query("INSERT INTO partners (name, created) VALUES ($1, $2)")
                .bind(p)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
    }
    sqlx::query(
        "INSERT INTO users (id, email, role, partner, password_hash, created) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(random_hex()?)
    .bind(email)
    .bind(role)
    .bind(partner)
    .bind(hash)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if crate::db::is_conflict(&e) {
            anyhow::anyhow!("a user {email} exists already")
        } else {
            e.into()
        }
    })?;
    tx.commit().await?;
    Ok(())
}

/// Stores a new token for `subject` and returns it (the only time it is seen).
pub async fn issue<'c, E>(exec: E, kind: &str, subject: &str, now: i64, secs: i64) -> Result<String>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let token = format!("fct_{}", random_hex()?);
    sqlx::query(
        "INSERT INTO tokens (hash, kind, subject, created, expires, revoked) VALUES ($1, $2, $3, $4, $5, NULL)",
    )
    .bind(token_hash(&token))
    .bind(kind)
    .bind(subject)
    .bind(now)
    .bind(now + secs)
    .execute(exec)
    .await
    .context("cannot store a token")?;
    Ok(token)
}

/// Failed sign-ins an email may have in a window before its sign-ins are refused.
pub const MAX_FAILURES: i64 = 5;
/// The window, seconds.
pub const FAILURE_WINDOW: i64 = 15 * 60;

/// How a sign-in went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// A token for the user.
    Token(String),
    /// Wrong email or password (an unknown email looks the same).
    Wrong,
    /// Too many failures for this email lately: refused without looking, for this long.
    Throttled {
        /// Seconds until sign-ins are taken again.
        retry_after: i64,
    },
}

/// `POST /api/login` and the portal's sign-in: a token for the user when the password
/// matches. After [`MAX_FAILURES`] failures for an email within [`FAILURE_WINDOW`], its
/// sign-ins are refused until the window ends (kept in the database: every instance
/// counts the same).
pub async fn login(db: &Db, email: &str, password: &str, now: i64) -> Result<Login> {
    let key = email.trim().to_lowercase();
    let failed = sqlx::query("SELECT failures, since FROM login_failures WHERE email = $1")
        .bind(&key)
        .fetch_optional(&db.pool)
        .await?;
    if let Some(f) = &failed {
        let (failures, since): (i64, i64) = (f.try_get("failures")?, f.try_get("since")?);
        if failures >= MAX_FAILURES && now < since + FAILURE_WINDOW {
            return Ok(Login::Throttled {
                retry_after: since + FAILURE_WINDOW - now,
            });
        }
    }
    let row = sqlx::query("SELECT id, password_hash FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(&db.pool)
        .await?;
    // Without an account, or without a password yet (invited), spend the same time as a
    // real check, so such accounts cannot be told apart.
    let (id, hash) = match row {
        Some(r) => (
            r.try_get::<String, _>("id")?,
            r.try_get::<String, _>("password_hash")?,
        ),
        None => (String::new(), String::new()),
    };
    let ok = if hash.is_empty() {
        let _ = password_matches(DUMMY_HASH, password);
        false
    } else {
        password_matches(&hash, password)
    };
    if !ok {
        sqlx::query(
            "INSERT INTO login_failures (email, failures, since) VALUES ($1, 1, $2) \
             ON CONFLICT (email) DO UPDATE SET \
             failures = CASE WHEN login_failures.since + $3 <= excluded.since THEN 1 ELSE login_failures.failures + 1 END, \
             since = CASE WHEN login_failures.since + $4 <= excluded.since THEN excluded.since ELSE login_failures.since END",
        )
        .bind(&key)
        .bind(now)
        .bind(FAILURE_WINDOW)
        .bind(FAILURE_WINDOW)
        .execute(&db.pool)
        .await?;
        return Ok(Login::Wrong);
    }
    if failed.is_some() {
        sqlx::query("DELETE FROM login_failures WHERE email = $1")
            .bind(&key)
            .execute(&db.pool)
            .await?;
    }
    Ok(Login::Token(
        issue(&db.pool, "user", &id, now, USER_TOKEN_SECS).await?,
    ))
}

/// A valid argon2 hash of nothing anyone types, checked when the email is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2uEFqkqlJ8+2LkF3GPeULUkgxfuBWjWJn6BJI0P7V7Q";

/// Revokes a token.
pub async fn revoke(db: &Db, token: &str, now: i64) -> Result<bool> {
    let done = sqlx::query("UPDATE tokens SET revoked = $1 WHERE hash = $2 AND revoked IS NULL")
        .bind(now)
        .bind(token_hash(token))
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Who a bearer token belongs to, if it is valid at `now`.
pub async fn authenticate(db: &Db, token: Option<&str>, now: i64) -> Result<Caller, AuthErrorOr> {
    let token = token.ok_or(AuthErrorOr::Auth(AuthError::Missing))?;
    let row = sqlx::query(
        "SELECT t.kind, t.subject, u.email, u.role, u.partner FROM tokens t \
         LEFT JOIN users u ON t.kind = 'user' AND u.id = t.subject \
         WHERE t.hash = $1 AND t.revoked IS NULL AND t.expires > $2",
    )
    .bind(token_hash(token))
    .bind(now)
    .fetch_optional(&db.read)
    .await
    .map_err(|e| AuthErrorOr::Db(e.into()))?
    .ok_or(AuthErrorOr::Auth(AuthError::Refused))?;
    let get = |c: &str| -> Result<Option<String>, AuthErrorOr> {
        row.try_get::<Option<String>, _>(c)
            .map_err(|e| AuthErrorOr::Db(e.into()))
    };
    let kind = get("kind")?.unwrap_or_default();
    let subject = get("subject")?.unwrap_or_default();
    match (kind.as_str(), get("role")?.as_deref()) {
        ("appliance", _) => Ok(Caller::Appliance { serial: subject }),
        ("station", _) => Ok(Caller::Station { name: subject }),
        ("user", Some("ops")) => Ok(Caller::Ops {
            email: get("email")?.unwrap_or_default(),
        }),
        ("user", Some("partner")) => Ok(Caller::Partner {
            email: get("email")?.unwrap_or_default(),
            partner: get("partner")?.unwrap_or_default(),
        }),
        _ => Err(AuthErrorOr::Auth(AuthError::Refused)),
    }
}

/// An authentication failure, or the database failing.
#[derive(Debug)]
pub enum AuthErrorOr {
    /// Not authenticated.
    Auth(AuthError),
    /// The database failed.
    Db(anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_check() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(password_matches(&h, "correct horse battery"));
        assert!(!password_matches(&h, "correct horse battery!"));
        assert!(!password_matches("not a hash", "x"));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
