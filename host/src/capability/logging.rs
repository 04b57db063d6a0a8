//! Guest logs: `wasi:logging` calls and the guest's stdout and stderr go to
//! the host's tracing output, tagged with the function and request id.

use super::bindings::wasi::logging::logging::{self, Level};
use crate::call::CallCtx;
use crate::telemetry::otlp::SpanNotes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime::component::{HasData, Linker};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest log line kept; longer lines are cut, so a guest cannot make the
/// host buffer without bound.
pub const MAX_LINE: usize = 16 * 1024;

/// Who is logging.
#[derive(Clone)]
pub struct LogCtx {
    function: Arc<str>,
    /// Shared with the stdout and stderr streams, which a reused instance
    /// keeps from one invocation to the next; only a guest's log line reads it.
    current: Arc<Mutex<Current>>,
}

/// The invocation a guest's log lines belong to.
#[derive(Clone)]
struct Current {
    request_id: Arc<str>,
    /// Its span, when traces are exported: each line is also an event there.
    span: Option<Arc<SpanNotes>>,
}

impl LogCtx {
    /// Logs of `function` while it runs the invocation `call`.
    pub fn new(function: Arc<str>, call: &CallCtx) -> LogCtx {
        LogCtx {
            function,
            current: Arc::new(Mutex::new(Current {
                request_id: call.request_id.clone(),
                span: call.span.clone(),
            })),
        }
    }

    /// What the guest logs from now on belongs to `call`: a reused
    /// instance's next invocation.
    pub fn set_call(&self, call: &CallCtx) {
        *self.lock() = Current {
            request_id: call.request_id.clone(),
            span: call.span.clone(),
        };
    }

    /// Tags what the guest logs from now on with `request_id` alone, and
    /// attaches it to no span: an instance that runs several requests at
    /// once cannot tell whose line it is.
    pub fn set_request_id(&self, request_id: Arc<str>) {
        *self.lock() = Current {
            request_id,
            span: None,
        };
    }

    fn current(&self) -> Current {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A stream for the guest's stdout or stderr.
    pub fn stream(&self, name: &'static str) -> LogStream {
        LogStream {
            line: Arc::new(Line {
                ctx: self.clone(),
                name,
                bytes: Mutex::default(),
            }),
        }
    }
}

struct HasLog;

impl HasData for HasLog {
    type Data<'a> = &'a LogCtx;
}

/// Adds `wasi:logging/logging` to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> &LogCtx,
) -> wasmtime::Result<()> {
    logging::add_to_linker::<T, HasLog>(linker, view)
}

impl logging::Host for &LogCtx {
    async fn log(
        &mut self,
        level: Level,
        context: String,
        message: String,
    ) -> wasmtime::Result<()> {
        let message = truncate(&message);
        let current = self.current();
        if let Some(span) = &current.span {
            span.log(level_name(level), &context, message);
        }
        let (function, request_id) = (&*self.function, &*current.request_id);
        match level {
            Level::Trace => {
                tracing::trace!(target: "guest", function, request_id, context, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "guest", function, request_id, context, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "guest", function, request_id, context, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "guest", function, request_id, context, "{message}")
            }
            Level::Error | Level::Critical => {
                tracing::error!(target: "guest", function, request_id, context, "{message}")
            }
        }
        Ok(())
    }
}

/// A wasi:logging level as OpenTelemetry's severity text spells it.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
        Level::Critical => "fatal",
    }
}

fn truncate(s: &str) -> &str {
    if s.len() <= MAX_LINE {
        return s;
    }
    let mut end = MAX_LINE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The guest's stdout or stderr, logged line by line at info level.
///
/// Every handle the guest opens on the stream (some toolchains open one per
/// write) writes into the same line, so a line written in pieces through
/// several handles is one record. What is left without a newline is logged
/// when the instance ends, with the stream.
pub struct LogStream {
    line: Arc<Line>,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            line: self.line.clone(),
        })
    }
}

/// One stream's line being written, shared by all its handles.
struct Line {
    ctx: LogCtx,
    name: &'static str,
    bytes: Mutex<Vec<u8>>,
}

impl Line {
    /// Adds `buf`, logging each line it completes.
    fn write(&self, buf: &[u8]) {
        let mut line = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        for &b in buf {
            if line.len() < MAX_LINE {
                line.push(b);
            }
            if b == b'\n' {
                self.emit(&mut line);
            }
        }
    }

    fn emit(&self, line: &mut Vec<u8>) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        let current = self.ctx.current();
        if let Some(span) = &current.span {
            span.log("info", self.name, text);
        }
        tracing::info!(
            target: "guest",
            function = &*self.ctx.function,
            request_id = &*current.request_id,
            stream = self.name,
            "{text}"
        );
        line.clear();
    }
}

impl Drop for Line {
    /// The instance is gone (its last handle with it): logs a partial line.
    fn drop(&mut self) {
        let mut line = std::mem::take(self.bytes.get_mut().unwrap_or_else(PoisonError::into_inner));
        if !line.is_empty() {
            self.emit(&mut line);
        }
    }
}

/// One handle on a [`LogStream`].
struct LineWriter {
    line: Arc<Line>,
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.line.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
