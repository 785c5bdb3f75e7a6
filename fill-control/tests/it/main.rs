//! The control plane end to end, over its HTTP API on loopback, against SQLite (in-process)
//! and a real PostgreSQL server the tests start in a temp dir, with a real SMTP server
//! (aiosmtpd, from PyPI) receiving the emails.

mod browser;
mod demo;
mod harness;
mod invite;
mod portal;
mod security;
mod upgrade;
mod waiting;
mod workflow;

use harness::{Control, Http};
