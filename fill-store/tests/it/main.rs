//! Integration tests of fill-store: the store on a real file system (temp dirs).

mod hostile;
mod store;
