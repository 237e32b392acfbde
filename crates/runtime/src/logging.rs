//! Logs: plain or JSON lines on stderr, filtered by `RUST_LOG` (default `info`).
//! Nothing we log carries a secret value: references and names only.

use std::io::Write;
use std::sync::{Mutex, PoisonError};

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;

pub use contract::args::LogFormat;

/// Libraries that see request and response bodies: whatever RUST_LOG says, they log at
/// info at most, so no body (and no secret value in it) reaches the log. Every crate of
/// the AWS SDK in Cargo.lock is here, and the HTTP and TLS stacks under it and reqwest
/// (a test checks the list against Cargo.lock).
const CLAMPED: &[&str] = &[
    "hyper",
    "hyper_util",
    "hyper_rustls",
    "h2",
    "reqwest",
    "rustls",
    "aws_config",
    "aws_credential_types",
    "aws_runtime",
    "aws_sdk_secretsmanager",
    "aws_sdk_ssm",
    "aws_sdk_sts",
    "aws_sigv4",
    "aws_smithy_async",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_json",
    "aws_smithy_observability",
    "aws_smithy_query",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_schema",
    "aws_smithy_types",
    "aws_smithy_xml",
    "aws_types",
];

/// `RUST_LOG` without the directives that name a clamped library (or a module of
/// one): those could otherwise lift it past the clamp.
fn without_clamped(spec: &str) -> String {
    spec.split(',')
        .filter(|d| {
            let target = d.split(['=', '[']).next().unwrap_or_default().trim();
            !CLAMPED
                .iter()
                .any(|c| target == *c || target.starts_with(&format!("{c}::")))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The level of the clamped libraries: info, or less when RUST_LOG's default is less
/// (a ceiling, never a floor).
fn clamp_level(spec: &str) -> &'static str {
    let global = spec
        .split(',')
        .map(str::trim)
        .rfind(|d| !d.is_empty() && !d.contains('='))
        .unwrap_or("info")
        .to_ascii_lowercase();
    match global.as_str() {
        "off" => "off",
        "error" => "error",
        "warn" => "warn",
        _ => "info",
    }
}

/// Per-review lines held before one write: a write to stderr per review costs about as
/// much as the rest of the log line. A busy webhook writes them in batches of this size
/// (about 60 lines), and at least every [`BATCH_INTERVAL`].
const BATCH_BYTES: usize = 8 * 1024;
pub const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Lines waiting for one write to `sink`, in the order they were logged.
pub struct Batch<W> {
    state: Mutex<(Vec<u8>, W)>,
}

impl<W: Write> Batch<W> {
    pub const fn new(sink: W) -> Self {
        Batch {
            state: Mutex::new((Vec::new(), sink)),
        }
    }

    /// Add `line`; write everything held when `now` or when the batch is full. Held
    /// lines go first, so the order stays.
    pub fn add(&self, line: &[u8], now: bool) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (held, sink) = &mut *state;
        if held.is_empty() && now {
            return sink.write_all(line);
        }
        held.extend_from_slice(line);
        if now || held.len() >= BATCH_BYTES {
            let written = sink.write_all(held);
            held.clear();
            written?;
        }
        Ok(())
    }

    /// Write what is held, unless another thread is writing right now.
    pub fn try_flush(&self) {
        if let Ok(mut state) = self.state.try_lock() {
            Self::write_held(&mut state);
        }
    }

    /// Write what is held.
    pub fn flush(&self) {
        Self::write_held(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn write_held((held, sink): &mut (Vec<u8>, W)) {
        if !held.is_empty() {
            let _ = sink.write_all(held);
            held.clear();
        }
    }
}

/// The process's stderr, as a value a `static` can hold.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write(bytes)
    }
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        std::io::stderr().write_all(bytes)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

static STDERR: Batch<Stderr> = Batch::new(Stderr);

/// Write any held log lines (at exit; `serve` also does it every [`BATCH_INTERVAL`]).
pub fn flush() {
    STDERR.flush();
}

/// Where `serve` logs: the lines of one target (the per-review lines) at info and below
/// are batched; every other line, and every warning or error, is written at once, after
/// the held ones.
#[derive(Clone, Copy)]
struct Batched(&'static str);

struct BatchedLine {
    now: bool,
}

impl Write for BatchedLine {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        STDERR.add(line, self.now)?;
        Ok(line.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = BatchedLine;
    fn make_writer(&'a self) -> BatchedLine {
        BatchedLine { now: true }
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> BatchedLine {
        let review = meta.target() == self.0;
        BatchedLine {
            now: !review || *meta.level() <= Level::WARN,
        }
    }
}

/// What `RUST_LOG` (`spec`) selects: `level` and `target=level` directives (a span or
/// field filter is not supported; an invalid spec means `info`), with the clamped
/// libraries at [`clamp_level`] at most.
fn filter(spec: &str) -> Targets {
    let directives = without_clamped(spec);
    // `Targets` takes any text as a target name; a spec with anything else than target
    // paths, levels and `=` (a span filter, a typo with a space) means the default.
    let plain = |d: &str| {
        d.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '=' | '-'))
    };
    let mut filter: Targets = Some(directives)
        .filter(|d| d.split(',').all(|d| plain(d.trim())))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let level: LevelFilter = clamp_level(spec).parse().expect("a level");
    for target in CLAMPED {
        filter = filter.with_target(*target, level);
    }
    filter
}

/// The most verbose level `filter` lets through for any target.
fn most(filter: &Targets) -> LevelFilter {
    (filter.iter().map(|(_, level)| level))
        .chain(filter.default_level())
        .max()
        .unwrap_or(LevelFilter::OFF)
}

/// Set up logging. `batched` (for `serve`): the info and debug lines of that target (the
/// per-review lines) are written in batches, flushed every [`BATCH_INTERVAL`] by a
/// thread of their own, and by [`flush`].
pub fn init(format: LogFormat, batched: Option<&'static str>) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    let filter = filter(&spec);
    use std::io::IsTerminal;
    // The most any target logs is the process's ceiling: a `debug!` or a `log` record
    // (rustls's, through tracing-log) below it is skipped where it is written, before
    // any filter looks at its target.
    let builder = tracing_subscriber::fmt()
        .with_max_level(most(&filter))
        .with_ansi(std::io::stderr().is_terminal());
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = match (format, batched) {
        (LogFormat::Plain, None) => builder
            .with_writer(std::io::stderr)
            .finish()
            .with(filter)
            .try_init(),
        (LogFormat::Json, None) => builder
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .try_init(),
        (LogFormat::Plain, Some(target)) => builder
            .with_writer(Batched(target))
            .finish()
            .with(filter)
            .try_init(),
        (LogFormat::Json, Some(target)) => builder
            .with_writer(Batched(target))
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .try_init(),
    };
    if batched.is_some() {
        // A panic's message goes straight to stderr: write the held lines first, so the
        // order stays (`try_flush`: the panic may come from inside the writer).
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            STDERR.try_flush();
            report(info);
        }));
        let _ = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(BATCH_INTERVAL);
                    flush();
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held lines wait for a full batch, an urgent line or a flush, and always come out
    /// in the order they were logged.
    #[test]
    fn batched_lines_keep_their_order() {
        let batch = Batch::new(Vec::new());
        let written =
            |b: &Batch<Vec<u8>>| String::from_utf8(b.state.lock().unwrap().1.clone()).unwrap();
        batch.add(b"urgent 1\n", true).unwrap();
        batch.add(b"review 1\n", false).unwrap();
        batch.add(b"review 2\n", false).unwrap();
        assert_eq!(written(&batch), "urgent 1\n");
        batch.add(b"warning\n", true).unwrap();
        assert_eq!(written(&batch), "urgent 1\nreview 1\nreview 2\nwarning\n");
        batch.add(b"review 3\n", false).unwrap();
        batch.flush();
        assert!(written(&batch).ends_with("warning\nreview 3\n"));
        batch.add(b"review 4\n", false).unwrap();
        batch.try_flush();
        assert!(written(&batch).ends_with("review 3\nreview 4\n"));
        let line = [b'x'; 100];
        let before = written(&batch).len();
        let mut lines = 0;
        while written(&batch).len() == before {
            batch.add(&line, false).unwrap();
            lines += 1;
        }
        assert_eq!(
            lines,
            BATCH_BYTES.div_ceil(line.len()),
            "written once the batch is full"
        );
        assert_eq!(written(&batch).len(), before + lines * line.len());
    }

    /// Only the per-review lines at info and below wait; the rest is written at once.
    #[test]
    fn only_review_lines_below_warn_are_batched() {
        use tracing::callsite::Identifier;
        use tracing::field::FieldSet;
        struct Site;
        impl tracing::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static SITE: Site = Site;
        let meta = |target: &'static str, level| {
            Metadata::new(
                "e",
                target,
                level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&SITE)),
                tracing::metadata::Kind::EVENT,
            )
        };
        let review = "reviews";
        for (target, level, now) in [
            (review, Level::INFO, false),
            (review, Level::DEBUG, false),
            (review, Level::WARN, true),
            (review, Level::ERROR, true),
            ("secret_injector_webhook::server", Level::INFO, true),
            ("secret_injector_webhook::run", Level::INFO, true),
        ] {
            assert_eq!(
                Batched(review).make_writer_for(&meta(target, level)).now,
                now,
                "{target} {level}"
            );
        }
    }

    #[test]
    fn directives_for_clamped_libraries_are_dropped() {
        assert_eq!(
            without_clamped(
                "trace,aws_smithy_runtime::client::orchestrator::http=trace,hyper=debug,secret_injector=debug"
            ),
            "trace,secret_injector=debug"
        );
        assert_eq!(without_clamped("reqwest=trace,rustls::client=debug"), "");
    }

    #[test]
    fn the_clamp_is_a_ceiling() {
        assert_eq!(clamp_level("trace"), "info");
        assert_eq!(clamp_level("error"), "error");
        assert_eq!(clamp_level("warn,secret_injector=debug"), "warn");
        assert_eq!(clamp_level("secret_injector=debug"), "info");
    }

    /// Every crate of the AWS SDK that the build links (Cargo.lock) is clamped: a new
    /// SDK crate (a new store, a new credential source) cannot log bodies unnoticed.
    #[test]
    fn every_sdk_and_http_crate_in_the_lock_file_is_clamped() {
        let lock = include_str!("../../../Cargo.lock");
        let names = lock
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .map(|n| n.trim_end_matches('"').replace('-', "_"));
        let mut checked = 0;
        for name in names {
            let sdk = name.starts_with("aws_") && !name.starts_with("aws_lc");
            let http = [
                "hyper",
                "hyper_util",
                "hyper_rustls",
                "h2",
                "reqwest",
                "rustls",
            ]
            .contains(&name.as_str());
            if (sdk || http) && !name.ends_with("_macros") {
                assert!(CLAMPED.contains(&name.as_str()), "{name} is not clamped");
                checked += 1;
            }
        }
        assert!(checked > 20, "only {checked} crates found in Cargo.lock");
    }

    /// RUST_LOG's directives as `EnvFilter` reads them (without its span and field
    /// filters), the clamp on top.
    #[test]
    fn rust_log_selects_by_target_prefix_and_level() {
        use tracing::Level;
        let f = filter("secret_injector=debug");
        assert!(f.would_enable("secret_injector_agent::refresh::session", &Level::DEBUG));
        assert!(f.would_enable("secret_injector::webhook::review", &Level::DEBUG));
        assert!(!f.would_enable("secret_injector_webhook::run", &Level::TRACE));
        assert!(
            !f.would_enable("kube_client", &Level::ERROR),
            "no default: off"
        );
        let f = filter("trace");
        assert!(f.would_enable("kube_client", &Level::TRACE));
        assert!(f.would_enable("hyper::proto", &Level::INFO));
        assert!(!f.would_enable("hyper::proto", &Level::DEBUG), "clamped");
        assert!(
            !f.would_enable("aws_sdk_ssm::client", &Level::DEBUG),
            "clamped"
        );
        let f = filter("warn,hyper=trace");
        assert!(
            !f.would_enable("hyper", &Level::INFO),
            "the clamp follows the default"
        );
        assert!(f.would_enable("hyper", &Level::WARN));
        for invalid in [
            "not a valid spec",
            "secret_injector[init]=debug",
            "info,x=loud",
        ] {
            let f = filter(invalid);
            assert!(
                f.would_enable("secret_injector_agent::init", &Level::INFO),
                "{invalid}"
            );
            assert!(
                !f.would_enable("secret_injector_agent::init", &Level::DEBUG),
                "{invalid}"
            );
        }
    }
}
