//! Integration tests of fill-server: HTTP over loopback and the lifecycle loop (temp dirs).

mod control;
mod http;
mod lifecycle;
mod relay;
