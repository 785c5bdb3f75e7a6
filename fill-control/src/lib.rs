//! `fill-control`: the fleet's control plane. It records every appliance of a fleet from
//! a partner's site survey to live, on SQLite (embedded) or PostgreSQL: accounts and
//! tokens (`auth`), the deployment workflow on the database (`workflow`: surveys,
//! allocation, transitions validated by `fill_core::lifecycle`, reports that start burn-in
//! and go live), what each step tells whom (`notify`), the outbox's SMTP sender (`mail`),
//! the HTTP API (`api`, docs/control-api.md), and the database (`db`, docs/control-db.md).
//!
//! Module map (no two import each other): `text` (names and emails) and `db` are the
//! foundations; `auth` ← `workflow` ← `api`; `notify` ← `workflow`; `mail` ← `db`; `server`
//! ties the API and the sender together.

pub mod api;
pub mod app;
pub mod auth;
pub mod db;
pub mod demo;
pub mod invite;
pub mod ledger;
pub mod mail;
pub mod metrics;
pub mod notify;
pub mod portal;
pub mod server;
pub mod text;
pub mod upgrade;
pub mod views;
pub mod waiting;
pub mod watch;
pub mod workflow;
