//! `flowgate top`: a live table of a running pipeline's stages (events in and out per second,
//! errors, lag, p99 plugin call time, live version) and of its sources and sinks, from the same
//! admin status and Prometheus metrics the other commands read. `q` (or Esc, Ctrl-C) quits.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Row, Table};
use serde_json::Value;

use super::admin::{Target, call};

/// Arguments of `flowgate top`.
#[derive(Debug, clap::Args)]
pub(crate) struct TopArgs {
    /// How often to look again.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    #[command(flatten)]
    target: Target,
}

/// One look at the running pipeline.
struct Look {
    at: Instant,
    status: Value,
    /// Per stage: the call-time histogram's buckets (upper bound, cumulative count).
    calls: BTreeMap<String, Vec<(f64, f64)>>,
}

fn look(addr: &str) -> anyhow::Result<Look> {
    let (code, body) = call(addr, "GET", "/admin/status", b"")?;
    if code != 200 {
        anyhow::bail!("GET /admin/status answered {code}: {body}");
    }
    let status: Value = serde_json::from_str(&body).context("the status is not JSON")?;
    let (_, metrics) = call(addr, "GET", "/metrics", b"")?;
    Ok(Look {
        at: Instant::now(),
        status,
        calls: call_buckets(&metrics),
    })
}

/// `flowgate_stage_call_seconds_bucket{…stage="s"…,le="x"} n` lines, per stage.
fn call_buckets(metrics: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("flowgate_stage_call_seconds_bucket{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                .and_then(|v| v.strip_suffix('"'))
        };
        let (Some(stage), Some(le), Ok(n)) = (label("stage"), label("le"), value.trim().parse())
        else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        out.entry(stage.to_owned()).or_default().push((le, n));
    }
    for b in out.values_mut() {
        b.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The 99th percentile of the calls made between two looks (the bucket bound it falls in).
fn p99(before: Option<&Vec<(f64, f64)>>, now: Option<&Vec<(f64, f64)>>) -> Option<f64> {
    let now = now?;
    let delta: Vec<(f64, f64)> = now
        .iter()
        .map(|&(le, n)| {
            let was = before
                .and_then(|b| b.iter().find(|(l, _)| *l == le))
                .map_or(0.0, |(_, n)| *n);
            (le, n - was)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, n)| *n >= 0.99 * total)
        .map(|(le, _)| *le)
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn per_second(now: u64, before: Option<u64>, secs: f64) -> String {
    match before {
        Some(b) if secs > 0.0 => format!("{:.0}", now.saturating_sub(b) as f64 / secs),
        _ => "-".into(),
    }
}

fn millis(s: Option<f64>) -> String {
    match s {
        Some(s) if s.is_finite() => format!("{:.2} ms", s * 1000.0),
        Some(_) => "> max".into(),
        None => "-".into(),
    }
}

/// The rows of the stages, sources and sinks.
fn rows(now: &Look, before: Option<&Look>) -> (Vec<Row<'static>>, Vec<Row<'static>>) {
    let secs = before.map_or(0.0, |b| (now.at - b.at).as_secs_f64());
    let find = |list: &str, key: &str, name: &str| {
        before.and_then(|b| {
            b.status[list]
                .as_array()?
                .iter()
                .find(|s| s[key] == name)
                .cloned()
        })
    };
    let mut stages = Vec::new();
    for s in now.status["stages"].as_array().into_iter().flatten() {
        let name = s["stage"].as_str().unwrap_or_default().to_owned();
        let was = find("stages", "stage", &name);
        let e = &s["events"];
        let lag: u64 = s["partitions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| count(&p["lag"]))
            .sum();
        let call = p99(
            before.and_then(|b| b.calls.get(&name)),
            now.calls.get(&name),
        );
        stages.push(Row::new(vec![
            name.clone(),
            count(&e["in"]).to_string(),
            per_second(
                count(&e["in"]),
                was.as_ref().map(|w| count(&w["events"]["in"])),
                secs,
            ),
            per_second(
                count(&e["out"]),
                was.as_ref().map(|w| count(&w["events"]["out"])),
                secs,
            ),
            (count(&e["errors"]) + count(&e["dead_letters"])).to_string(),
            lag.to_string(),
            millis(call),
            format!("v{}", count(&s["live"]["version"])),
        ]));
    }
    let mut edges = Vec::new();
    for s in now.status["sources"].as_array().into_iter().flatten() {
        let name = s["source"].as_str().unwrap_or_default().to_owned();
        let was = find("sources", "source", &name).map(|w| count(&w["events"]));
        edges.push(Row::new(vec![
            format!("source {name}"),
            s["type"].as_str().unwrap_or_default().to_owned(),
            count(&s["events"]).to_string(),
            per_second(count(&s["events"]), was, secs),
            count(&s["rejected"]).to_string(),
        ]));
    }
    for s in now.status["sinks"].as_array().into_iter().flatten() {
        let name = s["sink"].as_str().unwrap_or_default().to_owned();
        let was = find("sinks", "sink", &name).map(|w| count(&w["events"]));
        edges.push(Row::new(vec![
            format!("sink {name}"),
            s["type"].as_str().unwrap_or_default().to_owned(),
            count(&s["events"]).to_string(),
            per_second(count(&s["events"]), was, secs),
            count(&s["dead_letters"]).to_string(),
        ]));
    }
    (stages, edges)
}

pub(crate) fn top(args: TopArgs) -> anyhow::Result<ExitCode> {
    let addr = args.target.addr()?;
    // The first look before the terminal is taken over: an unreachable pipeline is a plain
    // error message.
    let mut now = look(&addr)?;
    let mut before: Option<Look> = None;
    let mut terminal = ratatui::init();
    let result = (|| -> anyhow::Result<()> {
        let mut problem: Option<String> = None;
        loop {
            let (stages, edges) = rows(&now, before.as_ref());
            let pipeline = now.status["pipeline"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let title = format!(
                " flowgate top: {pipeline} at {addr}, every {} (q quits) {}",
                humantime::format_duration(args.interval),
                problem.as_deref().unwrap_or_default()
            );
            terminal.draw(|f| {
                let [top, bottom] =
                    Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)])
                        .areas(f.area());
                let bold = Style::default().add_modifier(Modifier::BOLD);
                let stage_table = Table::new(
                    stages,
                    [
                        Constraint::Length(20),
                        Constraint::Length(12),
                        Constraint::Length(10),
                        Constraint::Length(10),
                        Constraint::Length(10),
                        Constraint::Length(10),
                        Constraint::Length(12),
                        Constraint::Length(8),
                    ],
                )
                .header(
                    Row::new(vec![
                        "stage", "in", "in/s", "out/s", "errors", "lag", "p99 call", "version",
                    ])
                    .style(bold),
                )
                .block(Block::bordered().title(Line::from(title.clone())));
                f.render_widget(stage_table, top);
                let edge_table = Table::new(
                    edges,
                    [
                        Constraint::Length(24),
                        Constraint::Length(14),
                        Constraint::Length(12),
                        Constraint::Length(10),
                        Constraint::Length(22),
                    ],
                )
                .header(
                    Row::new(vec![
                        "source / sink",
                        "type",
                        "events",
                        "events/s",
                        "rejected / dead",
                    ])
                    .style(bold),
                )
                .block(Block::bordered());
                f.render_widget(edge_table, bottom);
            })?;
            // Keys until the next look is due.
            let due = Instant::now() + args.interval;
            while let Some(left) = due.checked_duration_since(Instant::now()) {
                if event::poll(left)?
                    && let Event::Key(k) = event::read()?
                {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                        return Ok(());
                    }
                }
            }
            match look(&addr) {
                Ok(next) => {
                    before = Some(std::mem::replace(&mut now, next));
                    problem = None;
                }
                Err(e) => problem = Some(format!("- {e:#}")),
            }
        }
    })();
    ratatui::restore();
    result.map(|()| ExitCode::SUCCESS)
}
