//! Contacts invited: each contact a site survey names who has no account gets one (a
//! partner user of the survey's partner, with no password yet) and an email with a one-time
//! link. The link's code is 16 random bytes (32 hex digits, so the link fits an email's
//! line), kept as its BLAKE3 hash, valid 7 days, used
//! once: opening the link (`GET /invite/{code}`, the portal's page) and choosing a password
//! there (or `POST /api/invitations/accept`) sets the account's password and signs in.
//!
//! The code itself is in the invitation email's body in the outbox until it is sent (the
//! outbox keeps bodies); the database's users cannot use a hash to log in, but whoever can
//! read the outbox can read a pending invitation.

use sqlx::Row;

use crate::auth;
use crate::db::Db;
use crate::ledger::{Outgoing, Refusal, Tx, invalid};
use crate::notify::{self, Step};

/// How long an invitation stays valid.
pub const INVITATION_SECS: i64 = 7 * 86400;

/// Invites, in a survey's transaction, each of `emails` who has no account yet: an account
/// of `partner` without a password and an invitation email with the link (on `base`, the
/// control plane's public URL). Returns how many were invited. Someone with an account
/// already (of this partner or another) is not invited.
pub async fn invite_contacts(
    tx: &mut Tx<'_>,
    (deployment, site, partner): (&str, &str, &str),
    emails: &[&str],
    base: &str,
    now: i64,
) -> Result<usize, Refusal> {
    let mut invited = 0;
    for &email in emails {
        let known = sqlx::query("SELECT id FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
        if known {
            continue;
        }
        let id = auth::random_hex()?;
        // No password hash: nobody logs in to it until the invitation is accepted.
        sqlx::query(
            "INSERT INTO users (id, email, role, partner, password_hash, created) VALUES ($1, $2, 'partner', $3, '', $4)",
        )
        .bind(&id)
        .bind(email)
        .bind(partner)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let code = auth::random_hex()?[..32].to_owned();
        sqlx::query(
            "INSERT INTO invitations (hash, user_id, created, expires, used) VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(blake3::hash(code.as_bytes()).to_hex().to_string())
        .bind(&id)
        .bind(now)
        .bind(now + INVITATION_SECS)
        .execute(&mut **tx)
        .await?;
        let ctx = notify::Context {
            site: site.to_owned(),
            serial: None,
            detail: format!(
                "Your login: {email}\n\n{}/invite/{code}",
                base.trim_end_matches('/')
            ),
        };
        let key = format!("{deployment}/invite");
        let mail = Outgoing {
            deployment,
            serial: None,
            key: &key,
            step: Step::Invitation,
            ctx: &ctx,
        };
        mail.put(tx, &[email.to_owned()], now).await?;
        invited += 1;
    }
    Ok(invited)
}

/// What accepting an invitation gives: the account's email and a token.
#[derive(Debug, serde::Serialize)]
pub struct Accepted {
    /// The login.
    pub email: String,
    /// A bearer token, as `POST /api/login` gives.
    pub token: String,
    /// When it expires (unix seconds).
    pub expires: i64,
}

/// `POST /api/invitations/accept`: sets the invited account's password, once, while the
/// invitation is valid; logs in. An unknown, used or expired code is the same `NotFound`.
pub async fn accept(db: &Db, code: &str, password: &str, now: i64) -> Result<Accepted, Refusal> {
    let gone = || Refusal::NotFound("this invitation is unknown, used or expired".into());
    if code.len() != 32 || !code.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(gone());
    }
    if password.chars().count() < 12 || password.len() > 1024 {
        return Err(invalid("a password needs 12 to 1024 characters"));
    }
    let hash = auth::hash_password(password)?;
    let mut tx = db.pool.begin().await?;
    let row = sqlx::query(
        "SELECT i.user_id, u.email FROM invitations i JOIN users u ON u.id = i.user_id \
         WHERE i.hash = $1 AND i.used IS NULL AND i.expires > $2",
    )
    .bind(blake3::hash(code.as_bytes()).to_hex().to_string())
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(gone)?;
    let (user, email): (String, String) = (row.try_get("user_id")?, row.try_get("email")?);
    let used = sqlx::query("UPDATE invitations SET used = $1 WHERE hash = $2 AND used IS NULL")
        .bind(now)
        .bind(blake3::hash(code.as_bytes()).to_hex().to_string())
        .execute(&mut *tx)
        .await?;
    if used.rows_affected() != 1 {
        return Err(gone());
    }
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(&user)
        .execute(&mut *tx)
        .await?;
    let token = auth::issue(&mut *tx, "user", &user, now, auth::USER_TOKEN_SECS).await?;
    tx.commit().await?;
    Ok(Accepted {
        email,
        token,
        expires: now + auth::USER_TOKEN_SECS,
    })
}
