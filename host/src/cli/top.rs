//! `nimbus top`: each function's last seconds from `GET /v1/stats`, as a
//! table redrawn in place in a terminal, like `top`. When the output is not
//! a terminal (or with `--once`) it prints the table once.

use super::AdminArgs;
use nimbus::admin::{FunctionStatsView, StatsView};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Moves the cursor home and clears the screen; hides and shows the cursor.
const HOME_AND_CLEAR: &str = "\x1b[H\x1b[2J";
const HIDE_CURSOR: &str = "\x1b[?25l";
const SHOW_CURSOR: &str = "\x1b[?25h";

/// `nimbus top [--interval 1s] [--window 10] [--once]`
pub async fn top(
    interval: Duration,
    window: u64,
    once: bool,
    admin: &AdminArgs,
) -> anyhow::Result<()> {
    let client = admin.client();
    let app = client.health().await?.app;
    let live = !once && std::io::stdout().is_terminal();
    if !live {
        print!(
            "{}",
            table(&app, &admin.admin, &client.stats(window).await?)
        );
        return Ok(());
    }
    let mut out = std::io::stdout();
    write!(out, "{HIDE_CURSOR}")?;
    let result = async {
        let stop = tokio::signal::ctrl_c();
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(interval);
        loop {
            let frame = async {
                ticks.tick().await;
                // A node that stops answering is shown, not fatal: it may be
                // restarting.
                match client.stats(window).await {
                    Ok(stats) => table(&app, &admin.admin, &stats),
                    Err(e) => format!("nimbus top · {}: {e}\n", admin.admin),
                }
            };
            tokio::select! {
                _ = &mut stop => return anyhow::Ok(()),
                frame = frame => {
                    write!(out, "{HOME_AND_CLEAR}{frame}")?;
                    out.flush()?;
                }
            }
        }
    }
    .await;
    write!(out, "{SHOW_CURSOR}")?;
    out.flush()?;
    result
}

/// The whole screen: a title line, then one row per function.
fn table(app: &str, admin: &str, stats: &StatsView) -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let mut text = format!(
        "nimbus top · app {app} at {admin} · the last {} s · {now}\n\n",
        stats.window_seconds
    );
    let _ = writeln!(
        text,
        "{:<24} {:>9} {:>8} {:>10} {:>10} {:>11} {:>9}",
        "FUNCTION", "REQ/S", "ERRORS", "P50", "P99", "PEAK MEM", "IN-FLIGHT"
    );
    for function in &stats.functions {
        let _ = writeln!(text, "{}", row(function));
    }
    text
}

fn row(f: &FunctionStatsView) -> String {
    let r = &f.recent;
    let errors = if r.count == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", r.error_rate * 100.0)
    };
    format!(
        "{:<24} {:>9.1} {:>8} {:>10} {:>10} {:>11} {:>9}",
        f.function,
        r.per_second,
        errors,
        latency(r.p50_ms),
        latency(r.p99_ms),
        memory(r.peak_memory_bytes),
        f.in_flight
    )
}

/// A latency in its unit; `-` for none.
fn latency(ms: f64) -> String {
    match ms {
        0.0 => "-".into(),
        ms if ms < 1.0 => format!("{:.0}µs", ms * 1000.0),
        ms if ms < 1000.0 => format!("{ms:.2}ms"),
        ms => format!("{:.2}s", ms / 1000.0),
    }
}

/// Bytes in MiB (or KiB below one); `-` for none seen.
fn memory(bytes: u64) -> String {
    match bytes {
        0 => "-".into(),
        b if b < 1 << 20 => format!("{} KiB", b / 1024),
        b => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus::telemetry::RecentView;

    #[test]
    fn a_row_shows_each_figure_in_its_unit() {
        let view = FunctionStatsView {
            function: "hello".into(),
            in_flight: 3,
            recent: RecentView {
                count: 200,
                errors: 5,
                per_second: 20.0,
                error_rate: 0.025,
                p50_ms: 0.181,
                p99_ms: 12.5,
                peak_memory_bytes: 3 << 20,
                seconds: vec![],
            },
        };
        let busy = row(&view);
        for part in ["hello", "20.0", "2.5%", "181µs", "12.50ms", "3.0 MiB", " 3"] {
            assert!(busy.contains(part), "{part:?} in {busy:?}");
        }
        let idle = FunctionStatsView {
            recent: RecentView {
                count: 0,
                errors: 0,
                per_second: 0.0,
                error_rate: 0.0,
                p50_ms: 0.0,
                p99_ms: 0.0,
                peak_memory_bytes: 0,
                seconds: vec![],
            },
            ..view
        };
        let idle = row(&idle);
        assert_eq!(idle.matches(" -").count(), 4, "{idle}");
    }
}
