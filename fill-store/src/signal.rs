//! Waiting for the signals that ask a process to stop: ctrl-c (SIGINT) or SIGTERM (systemd,
//! `kill`). The server drains on it; the client ends a fill as interrupted, resumable.

/// Completes when SIGINT or SIGTERM arrives (a SIGTERM that cannot be listened for is
/// never awaited; ctrl-c still ends it).
pub async fn stop_requested() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
