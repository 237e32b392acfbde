//! Logs: plain or JSON lines on stderr, filtered by `RUST_LOG` (default `info`).
//! Nothing we log carries a secret value: references and names only.

use std::io::Write;
use std::sync::{Mutex, PoisonError};

use clap::ValueEnum;
use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// Libraries that see request and response bodies: whatever RUST_LOG says, they log at
/// info at most, so no body (and no secret value in it) reaches the log.
const CLAMPED: &[&str] = &[
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_config",
    "aws_sdk_secretsmanager",
    "aws_sdk_sts",
    "aws_sdk_sso",
    "aws_sdk_ssooidc",
    "aws_sigv4",
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

/// Where `serve` logs: the per-review lines at info and below (target
/// [`crate::webhook::server::REVIEW_LOG_TARGET`]) are batched; every other line, and
/// every warning or error, is written at once, after the held ones.
#[derive(Clone, Copy)]
struct Batched;

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
        let review = meta.target() == crate::webhook::server::REVIEW_LOG_TARGET;
        BatchedLine {
            now: !review || *meta.level() <= Level::WARN,
        }
    }
}

/// Set up logging. `batched` (for `serve`): per-review lines are written in batches,
/// flushed every [`BATCH_INTERVAL`] by a thread of their own, and by [`flush`].
pub fn init(format: LogFormat, batched: bool) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    let mut filter =
        EnvFilter::try_new(without_clamped(&spec)).unwrap_or_else(|_| EnvFilter::new("info"));
    let level = clamp_level(&spec);
    for target in CLAMPED {
        filter = filter.add_directive(
            format!("{target}={level}")
                .parse()
                .expect("valid directive"),
        );
    }
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match (format, batched) {
        (LogFormat::Plain, false) => builder.with_writer(std::io::stderr).try_init(),
        (LogFormat::Json, false) => builder
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .try_init(),
        (LogFormat::Plain, true) => builder.with_writer(Batched).try_init(),
        (LogFormat::Json, true) => builder
            .with_writer(Batched)
            .json()
            .flatten_event(true)
            .try_init(),
    };
    if batched {
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

/// The one walker of error chains: `e` and its sources, outermost first.
pub fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The error and its causes on one line (`a: b: c`), each text once (layers often
/// repeat their source's text), without any debug dump.
pub fn chain_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for text in causes(e).map(|c| c.to_string()) {
        if !text.is_empty() && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    one_line(&parts.join(": "))
}

/// The innermost cause on one line, cut at 200 characters: what a person needs,
/// without a library's internals.
pub fn root_cause_line(e: &(dyn std::error::Error + 'static)) -> String {
    let text = one_line(&causes(e).last().map(|c| c.to_string()).unwrap_or_default());
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Control characters and invisible ones (zero-width, bidi overrides, line and
/// paragraph separators) written as escapes; everything else, backslashes included, as
/// it is. For whole messages that quote request values: a value cannot forge a line or
/// reorder what a terminal shows.
pub fn escape_invisible(s: &str) -> String {
    s.chars()
        .map(|ch| {
            if is_invisible(ch) {
                ch.escape_default().to_string()
            } else {
                ch.to_string()
            }
        })
        .collect()
}

fn is_invisible(ch: char) -> bool {
    ch.is_control()
        || matches!(ch, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A string that came from a request (a pod or namespace name, an annotation key), fit
/// for a log line or a message: control and bidi-override characters are escaped
/// (`\n`, `\u{1b}`), so a name cannot forge a line or recolour a terminal, and only
/// the first 200 characters are kept. The API server validates names only after the
/// mutating webhooks have run, so a review can carry anything.
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        const SHOWN: usize = 200;
        for (i, ch) in self.0.chars().enumerate() {
            if i == SHOWN {
                return write!(f, "…({} bytes)", self.0.len());
            }
            if is_invisible(ch) || ch == '\\' {
                write!(f, "{}", ch.escape_default())?;
            } else {
                f.write_char(ch)?;
            }
        }
        Ok(())
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
        let review = crate::webhook::server::REVIEW_LOG_TARGET;
        for (target, level, now) in [
            (review, Level::INFO, false),
            (review, Level::DEBUG, false),
            (review, Level::WARN, true),
            (review, Level::ERROR, true),
            ("secret_injector::webhook::server", Level::INFO, true),
            ("secret_injector::run", Level::INFO, true),
        ] {
            assert_eq!(
                Batched.make_writer_for(&meta(target, level)).now,
                now,
                "{target} {level}"
            );
        }
    }

    #[test]
    fn request_fields_are_escaped_and_cut() {
        let forged = "web\n2026-01-01T00:00:00Z INFO injected namespace=kube-system pod=\u{1b}[2Kx";
        let shown = Escaped(forged).to_string();
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown}"
        );
        assert!(shown.starts_with("web\\n2026"), "{shown}");
        assert!(shown.contains("\\u{1b}"), "{shown}");
        assert_eq!(Escaped("a\\b").to_string(), "a\\\\b");
        assert_eq!(Escaped("\u{202e}x").to_string(), "\\u{202e}x");
        assert_eq!(Escaped("a\u{2028}b").to_string(), "a\\u{2028}b");
        let long = "n".repeat(1 << 20);
        let shown = Escaped(&long).to_string();
        assert!(
            shown.len() < 300 && shown.ends_with("…(1048576 bytes)"),
            "{}",
            shown.len()
        );
        assert_eq!(Escaped("prod-eu").to_string(), "prod-eu");
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
}
