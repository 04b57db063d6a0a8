//! How log lines are written: tracing-subscriber's text and JSON formats,
//! with a fast path for the access log, the one line written per request.
//!
//! tracing-subscriber formats each field through `fmt::Debug` and the
//! padding machinery of `core::fmt`, which made the access line cost about
//! 14,000 instructions, 8% of a whole hello request (see BENCHMARKS.md). The
//! access line holds only strings and integers, so [`AccessFast`] writes it
//! directly, byte for byte in the shapes tracing-subscriber gives every other
//! line. Everything else, and the access line on a terminal (where the
//! formatter adds colours), goes to tracing-subscriber's own formatter.

use std::fmt;
use std::time::SystemTime;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The target of the access log's events.
pub const ACCESS_TARGET: &str = "nimbus::access";

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `2026-01-02T03:04:05.678901Z  INFO target: key=value ...`
    Text,
    /// `{"timestamp":...,"level":"INFO","fields":{...},"target":...}`
    Json,
}

/// An event formatter that writes access-log events itself and hands every
/// other event to `inner`, which must produce the same `shape`.
#[derive(Debug)]
pub struct AccessFast<F> {
    inner: F,
    shape: Shape,
}

impl<F> AccessFast<F> {
    /// Wraps `inner`, tracing-subscriber's formatter for `shape`.
    pub fn new(inner: F, shape: Shape) -> AccessFast<F> {
        AccessFast { inner, shape }
    }
}

impl<S, N, F> FormatEvent<S, N> for AccessFast<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        // Spans add context this path does not write; colours are for people.
        if meta.target() != ACCESS_TARGET
            || writer.has_ansi_escapes()
            || ctx.lookup_current().is_some()
        {
            return self.inner.format_event(ctx, writer, event);
        }
        write_event(&mut writer, self.shape, SystemTime::now(), event)
    }
}

/// Writes `event` as one line of `shape`, stamped `now`.
fn write_event(
    out: &mut impl fmt::Write,
    shape: Shape,
    now: SystemTime,
    event: &Event<'_>,
) -> fmt::Result {
    let meta = event.metadata();
    let now = humantime::format_rfc3339_micros(now);
    let mut fields = Fields {
        out,
        shape,
        first: true,
        result: Ok(()),
    };
    match shape {
        Shape::Text => {
            // `write_str`, not `write!`: formatting machinery is what this
            // path saves.
            write!(fields.out, "{now}")?;
            for part in [" ", level_padded(meta.level()), " ", meta.target(), ": "] {
                fields.out.write_str(part)?;
            }
            event.record(&mut fields);
            fields.result?;
            fields.out.write_char('\n')
        }
        Shape::Json => {
            fields.out.write_str("{\"timestamp\":\"")?;
            write!(fields.out, "{now}")?;
            for part in ["\",\"level\":\"", meta.level().as_str(), "\",\"fields\":{"] {
                fields.out.write_str(part)?;
            }
            event.record(&mut fields);
            fields.result?;
            fields.out.write_str("},\"target\":")?;
            json_str(fields.out, meta.target())?;
            fields.out.write_str("}\n")
        }
    }
}

/// The level right-aligned in five columns, as tracing-subscriber writes it.
fn level_padded(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// Writes an event's fields: `name=value` separated by spaces (text), or
/// `"name":value` separated by commas (JSON).
struct Fields<'w, W> {
    out: &'w mut W,
    shape: Shape,
    first: bool,
    result: fmt::Result,
}

impl<W: fmt::Write> Fields<'_, W> {
    /// Writes the separator and the name; false if writing failed before.
    fn name(&mut self, field: &Field) -> bool {
        if self.result.is_err() {
            return false;
        }
        let sep = match (self.first, self.shape) {
            (true, _) => "",
            (false, Shape::Text) => " ",
            (false, Shape::Json) => ",",
        };
        self.first = false;
        self.result = self.out.write_str(sep).and_then(|()| match self.shape {
            // tracing-subscriber writes a text line's message bare.
            Shape::Text if field.name() == "message" => Ok(()),
            Shape::Text => {
                self.out.write_str(field.name())?;
                self.out.write_char('=')
            }
            Shape::Json => {
                json_str(self.out, field.name())?;
                self.out.write_char(':')
            }
        });
        self.result.is_ok()
    }

    /// Writes a number as it is in both shapes.
    fn number(&mut self, field: &Field, value: impl itoa::Integer) {
        if self.name(field) {
            self.result = self.out.write_str(itoa::Buffer::new().format(value));
        }
    }
}

impl<W: fmt::Write> Visit for Fields<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.name(field) {
            return;
        }
        self.result = match self.shape {
            Shape::Text if field.name() == "message" => self.out.write_str(value),
            Shape::Text => debug_str(self.out, value),
            Shape::Json => json_str(self.out, value),
        };
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.name(field) {
            self.result = self.out.write_str(if value { "true" } else { "false" });
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.name(field) {
            return;
        }
        self.result = match self.shape {
            Shape::Text => write!(self.out, "{value:?}"),
            // As tracing-subscriber does: the Debug text, as a JSON string.
            Shape::Json => json_str(self.out, &format!("{value:?}")),
        };
    }
}

/// Writes `s` in double quotes as it is when it needs no escaping in either
/// shape (printable ASCII without quotes or backslashes, which is what access
/// lines hold), else as `escaped` writes it.
fn quoted<W: fmt::Write>(
    out: &mut W,
    s: &str,
    escaped: impl FnOnce(&mut W) -> fmt::Result,
) -> fmt::Result {
    let plain = s
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if plain {
        out.write_char('"')?;
        out.write_str(s)?;
        out.write_char('"')
    } else {
        escaped(out)
    }
}

/// `s` quoted and escaped as `{:?}` writes it.
fn debug_str(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    quoted(out, s, |out| write!(out, "{s:?}"))
}

/// `s` as a JSON string.
fn json_str(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    quoted(out, s, |out| {
        let escaped = serde_json::to_string(s).map_err(|_| fmt::Error)?;
        out.write_str(&escaped)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    /// A writer that keeps what was logged.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Logs the same access events with tracing-subscriber's formatter and
    /// with the fast path, in `shape`: both texts, timestamps removed.
    fn both(shape: Shape, log: impl Fn()) -> (String, String) {
        let run = |fast: bool| {
            let captured = Captured::default();
            let builder = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(captured.clone());
            let dispatch = match (shape, fast) {
                (Shape::Text, false) => tracing::Dispatch::new(builder.finish()),
                (Shape::Text, true) => tracing::Dispatch::new(
                    builder
                        .event_format(AccessFast::new(
                            tracing_subscriber::fmt::format::Format::default(),
                            Shape::Text,
                        ))
                        .finish(),
                ),
                (Shape::Json, false) => tracing::Dispatch::new(builder.json().finish()),
                (Shape::Json, true) => tracing::Dispatch::new(
                    builder
                        .json()
                        .event_format(AccessFast::new(
                            tracing_subscriber::fmt::format::Format::default().json(),
                            Shape::Json,
                        ))
                        .finish(),
                ),
            };
            tracing::dispatcher::with_default(&dispatch, &log);
            strip_timestamps(&captured.text())
        };
        (run(false), run(true))
    }

    /// Replaces each line's timestamp (27 characters) with `T`.
    fn strip_timestamps(text: &str) -> String {
        text.lines()
            .map(|line| match line.strip_prefix("{\"timestamp\":\"") {
                Some(rest) => format!("{{\"timestamp\":\"T{}", &rest[27..]),
                None => format!("T{}", &line[27..]),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn access_lines() {
        let method = http::Method::GET;
        tracing::info!(
            target: "nimbus::access",
            %method, path = "/users/42", route = "/users/:id", status = 200u16,
            function = "users", duration_us = 1234u64, request_id = "3d3654d1-894d",
        );
        // Characters that need escaping, a negative number, a bool, Debug.
        tracing::info!(
            target: "nimbus::access",
            path = "/a\"b\\c\u{e9}\n", delta = -5i64, ok = true, list = ?[1, 2],
            request_id = "abc\"d",
        );
        tracing::warn!(target: "nimbus::access", "a message {}", 7);
    }

    #[test]
    fn access_lines_are_what_tracing_subscriber_writes_in_text() {
        let (slow, fast) = both(Shape::Text, access_lines);
        assert_eq!(fast, slow);
        assert!(
            fast.contains(r#"T  INFO nimbus::access: method=GET path="/users/42""#),
            "{fast}"
        );
    }

    #[test]
    fn access_lines_are_what_tracing_subscriber_writes_in_json() {
        let (slow, fast) = both(Shape::Json, access_lines);
        assert_eq!(fast, slow);
        for line in fast.lines() {
            let _: serde_json::Value = serde_json::from_str(line).unwrap();
        }
    }

    #[test]
    fn other_targets_go_to_the_inner_formatter() {
        let (slow, fast) = both(Shape::Text, || {
            tracing::info!(target: "nimbus::other", x = 1, "hello");
        });
        assert_eq!(fast, slow);
        assert_eq!(fast, "T  INFO nimbus::other: hello x=1");
    }
}
