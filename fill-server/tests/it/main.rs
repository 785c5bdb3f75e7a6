//! Integration tests of fill-server: the store on a real file system (temp dirs).

mod http;
mod lifecycle;
mod store;
