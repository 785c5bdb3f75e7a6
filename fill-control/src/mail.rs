//! The outbox's sender: emails queued by the workflow go out over SMTP, each claimed by one
//! instance at a time (a conditional update: two instances on one database never send the
//! same email), retried with backoff when the server refuses or is away.
//!
//! A crash between the SMTP server's acceptance and the row's `sent` can send one email
//! twice after the claim expires (at least once); nothing else does.

use std::time::Duration;

use anyhow::{Context, Result};
use lettre::message::Mailbox;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use sqlx::Row;

use crate::db::Db;

/// The `[smtp]` section of the control plane's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The server's host name or address.
    pub host: String,
    /// Its port (default 25).
    #[serde(default = "default_port")]
    pub port: u16,
    /// The sender address.
    pub from: String,
    /// `none` (default), `starttls` or `tls`.
    #[serde(default)]
    pub tls: TlsMode,
    /// Login, if the server wants one (the password from `FILL_CONTROL_SMTP_PASSWORD`).
    #[serde(default)]
    pub user: Option<String>,
}

fn default_port() -> u16 {
    25
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain (a relay on the same host or network).
    #[default]
    None,
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte.
    Tls,
}

/// How long a claim holds before another instance may take the email.
const CLAIM_SECS: i64 = 120;
/// The longest wait between tries.
const MAX_BACKOFF_SECS: i64 = 3600;

/// The wait after the `attempts`-th failure: 10 s, doubling, at most an hour.
pub fn backoff(attempts: i64) -> i64 {
    (10i64 << attempts.clamp(0, 20)).min(MAX_BACKOFF_SECS)
}

/// An SMTP sender.
#[derive(Debug, Clone)]
pub struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Sender {
    /// A sender for the config.
    pub fn new(c: &SmtpConfig) -> Result<Self> {
        let tls = || TlsParameters::new(c.host.clone()).context("TLS parameters");
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host)
            .port(c.port)
            .timeout(Some(Duration::from_secs(30)));
        b = match c.tls {
            TlsMode::None => b.tls(Tls::None),
            TlsMode::Starttls => b.tls(Tls::Required(tls()?)),
            TlsMode::Tls => b.tls(Tls::Wrapper(tls()?)),
        };
        if let Some(user) = &c.user {
            let password = std::env::var("FILL_CONTROL_SMTP_PASSWORD")
                .context("smtp.user is set: give the password in FILL_CONTROL_SMTP_PASSWORD")?;
            b = b.credentials(lettre::transport::smtp::authentication::Credentials::new(
                user.clone(),
                password,
            ));
        }
        Ok(Self {
            transport: b.build(),
            from: c
                .from
                .parse()
                .with_context(|| format!("smtp.from {:?}", c.from))?,
        })
    }

    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<()> {
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to.parse().with_context(|| format!("recipient {to:?}"))?)
            .subject(subject)
            .body(body.to_owned())
            .context("cannot build the message")?;
        self.transport
            .send(msg)
            .await
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Sends what is due at `now` (at most `batch`), each claimed first; returns how many went.
pub async fn send_due(db: &Db, sender: &Sender, now: i64, batch: i64) -> Result<usize> {
    let due = sqlx::query(
        "SELECT id FROM emails WHERE sent IS NULL AND next_try <= $1 AND claimed_until < $2 ORDER BY created, id LIMIT $3",
    )
    .bind(now)
    .bind(now)
    .bind(batch)
    .fetch_all(&db.pool)
    .await?;
    let mut sent = 0;
    for row in due {
        let id: String = row.try_get("id")?;
        let claimed = sqlx::query(
            "UPDATE emails SET claimed_until = $1 WHERE id = $2 AND sent IS NULL AND claimed_until < $3",
        )
        .bind(now + CLAIM_SECS)
        .bind(&id)
        .bind(now)
        .execute(&db.pool)
        .await?;
        if claimed.rows_affected() != 1 {
            continue; // another instance has it
        }
        let m = sqlx::query("SELECT recipient, subject, body, attempts FROM emails WHERE id = $1")
            .bind(&id)
            .fetch_one(&db.pool)
            .await?;
        let (to, subject, body, attempts): (String, String, String, i64) = (
            m.try_get("recipient")?,
            m.try_get("subject")?,
            m.try_get("body")?,
            m.try_get("attempts")?,
        );
        match sender.send(&to, &subject, &body).await {
            Ok(()) => {
                sqlx::query(
                    "UPDATE emails SET sent = $1, attempts = $2, last_error = NULL WHERE id = $3",
                )
                .bind(now)
                .bind(attempts + 1)
                .bind(&id)
                .execute(&db.pool)
                .await?;
                sent += 1;
            }
            Err(e) => {
                tracing::warn!("email {id} to {to} not sent (try {}): {e:#}", attempts + 1);
                sqlx::query(
                    "UPDATE emails SET attempts = $1, next_try = $2, claimed_until = 0, last_error = $3 WHERE id = $4",
                )
                .bind(attempts + 1)
                .bind(now + backoff(attempts))
                .bind(format!("{e:#}"))
                .bind(&id)
                .execute(&db.pool)
                .await?;
            }
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_an_hour() {
        assert_eq!(backoff(0), 10);
        assert_eq!(backoff(1), 20);
        assert_eq!(backoff(5), 320);
        assert_eq!(backoff(9), 3600);
        assert_eq!(backoff(1000), 3600);
    }
}
