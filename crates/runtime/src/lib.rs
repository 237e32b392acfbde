//! What the webhook and the agent do the same way at their edges, and nothing of either
//! role: logging ([`logging`]), the bounded accept loop of every listener ([`listen`]),
//! the one atomic file writer ([`files`]), SIGTERM ([`signal`]), and the I/O error type
//! [`Error`].

pub mod files;
pub mod listen;
pub mod logging;
pub mod signal;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate or key that cannot be used (the webhook's TLS).
    #[error("{0}")]
    Tls(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
