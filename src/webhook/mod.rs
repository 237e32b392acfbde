//! The webhook's edges: the HTTPS server and its accept loop, AdmissionReview in and
//! out, the ServiceAccount cache, TLS and certificates, metrics, and `inject -f` (the
//! same mutation offline).

pub mod accounts;
pub mod admission;
pub mod body;
pub mod certs;
pub mod cluster;
pub mod https;
pub mod inject;
pub mod metrics;
pub mod server;
pub mod tls;
