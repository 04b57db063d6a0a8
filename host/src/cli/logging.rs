//! The log subscriber: text or JSON lines on stderr, filtered by `NIMBUS_LOG`.

use super::LogFormat;

/// Logs go to stderr from a background thread that writes them in batches:
/// with one access-log line per request, a write per line would cost a
/// syscall on every request's path. The channel is not lossy: when the
/// writer falls behind, requests wait rather than lines being dropped.
/// Colors only when stderr is a terminal.
pub fn init(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("NIMBUS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("nimbus-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    // The access log, a line per request, takes a fast path; other lines
    // are tracing-subscriber's own.
    use nimbus::log_format::{AccessFast, Shape};
    use tracing_subscriber::fmt::format::Format;
    match format {
        LogFormat::Text => builder
            .event_format(AccessFast::new(Format::default(), Shape::Text))
            .init(),
        LogFormat::Json => builder
            .json()
            .event_format(AccessFast::new(Format::default().json(), Shape::Json))
            .init(),
    }
    guard
}
