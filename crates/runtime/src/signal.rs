//! The end of a process: SIGTERM from the kubelet, or Ctrl-C by hand.

use std::future::Future;

/// SIGTERM (or Ctrl-C), watched from the moment this is called: a signal that arrives
/// before the future is first polled is not lost, and never kills the process.
/// Call it inside the runtime.
pub fn terminated() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).ok();
    async move {
        let term = async {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = term => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
}
