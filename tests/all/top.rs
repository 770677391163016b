//! `flowgate top` in a terminal (tmux, read back with `capture-pane`): it shows the stages of
//! the running pipeline and counts that change while events flow.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flowgate_tests::fixture::{Fixture, flowgate_bin, post_values, sigterm, start_http, wait_exit};
use flowgate_tests::plugins::UPPERCASE;

/// A tmux session running a command; killed when dropped.
struct Tmux(String);

impl Tmux {
    fn start(name: &str, command: &str) -> Tmux {
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "150",
                "-y",
                "40",
                command,
            ])
            .status()
            .unwrap_or_else(|e| {
                panic!("running tmux ({e}): install it with apt-get install -y tmux")
            });
        assert!(status.success(), "tmux new-session failed");
        Tmux(name.to_owned())
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let _ = Command::new("tmux")
            .args(["send-keys", "-t", &self.0, keys])
            .status();
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.0])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// The `in` column of the row of `stage` on the screen.
fn events_in(screen: &str, stage: &str) -> Option<u64> {
    let words = |l: &'_ str| -> Vec<String> {
        l.split(|c: char| c.is_whitespace() || c == '│')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    screen.lines().map(words).find_map(|w| {
        let at = w.iter().position(|w| w == stage)?;
        w.get(at + 1)?.parse().ok()
    })
}

#[test]
fn top_shows_the_stages_and_counts_that_change() {
    let f = Fixture::new(&format!(
        r#"
name = "top"

[http]
listen = "127.0.0.1:0"

[topics.raw]
partitions = 2

[sources.api]
type = "http"
topic = "raw"

[stages.shout]
plugin = "{UPPERCASE}"
input = "raw"
output = "upper"

[sinks.out]
type = "file"
input = "upper"
path = "out.ndjson"
"#
    ));
    let (mut run, addr) = start_http(&f, 0);
    let post = |n: u64| post_values(&addr, "raw", (0..n).map(|i| format!("e{i}")));
    let name = format!("flowgate-top-{}", std::process::id());
    let tmux = Tmux::start(
        &name,
        &format!(
            "{} top --admin {addr} --interval 200ms",
            flowgate_bin().display()
        ),
    );
    // The counts on the screen follow what is posted: each look after a post shows more.
    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    for round in 1..=3u64 {
        post(100);
        loop {
            let screen = tmux.screen();
            if let Some(n) = events_in(&screen, "shout")
                && n >= 100 * round
            {
                assert!(
                    screen.contains("source api") && screen.contains("sink out"),
                    "{screen}"
                );
                assert!(
                    screen.contains("p99 call") && screen.contains("v1"),
                    "{screen}"
                );
                seen.push(n);
                break;
            }
            assert!(
                Instant::now() < until && tmux.alive(),
                "the screen does not show {} events in: {screen}",
                100 * round
            );
            if let Some(status) = wait_exit(&mut run, Duration::from_millis(50)) {
                panic!("the run exited ({status}): {}", f.stderr(0));
            }
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "counts changed: {seen:?}"
    );
    tmux.keys("q");
    let until = Instant::now() + Duration::from_secs(30);
    while tmux.alive() {
        assert!(Instant::now() < until, "q does not quit: {}", tmux.screen());
        if let Some(status) = wait_exit(&mut run, Duration::from_millis(50)) {
            panic!("the run exited ({status}): {}", f.stderr(0));
        }
    }
    sigterm(&run);
    wait_exit(&mut run, Duration::from_secs(60)).expect("stops");
}
